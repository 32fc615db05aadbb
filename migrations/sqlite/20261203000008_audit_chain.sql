-- The audit log as a hash chain (issue #20): each record carries the hash of the one before
-- it, so `cunjing audit verify` finds a record altered or removed. Records written before
-- this migration have no hash and are reported as before the chain.
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;

-- The hash of the last record the retention purge removed: where the remaining chain starts.
CREATE TABLE audit_anchor (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    hash            TEXT    NOT NULL,
    purged_through  BIGINT  NOT NULL
);
