-- The platform each officer used last (issue #21): an officer with accounts on several
-- platforms gets tip cards and alerts where they were last seen. Kept apart from
-- officer_identities, whose changes count as registry changes and reload every daemon's cache.
CREATE TABLE officer_last_used (
    officer_id BIGINT PRIMARY KEY REFERENCES officers(id),
    platform   TEXT   NOT NULL,
    used_at    BIGINT NOT NULL
);
