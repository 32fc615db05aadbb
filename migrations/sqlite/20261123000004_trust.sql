-- Trust: station roles granted to enrolled officers, the append-only audit log, the updates
-- already handled (several daemons on one database handle each update once) and the daemons'
-- heartbeats (a stopped daemon's unfinished sends are taken over by the others).

-- A station role on top of an officer's kind: 'staff' (内勤) and 'admin' of one station, or
-- 'system' (every station; station_id NULL).
CREATE TABLE staff_grants (
    officer_id  BIGINT  PRIMARY KEY REFERENCES officers(id),
    role        TEXT    NOT NULL CHECK (role IN ('staff', 'admin', 'system')),
    station_id  BIGINT  REFERENCES stations(id),
    granted_at  BIGINT  NOT NULL,
    CHECK ((role = 'system') = (station_id IS NULL))
);

-- Every privileged action and every view of a tipster's contact details. Nothing in the code
-- updates or deletes a row; the triggers refuse an update, and a delete of a row younger
-- than 183 days (the retention job removes only rows past the configured period).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    result      TEXT    NOT NULL CHECK (result IN ('allowed', 'denied', 'failed')),
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_actor ON audit_log(actor, action, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_early_delete BEFORE DELETE ON audit_log
WHEN OLD.at > (CAST(strftime('%s', 'now') AS INTEGER) - 183 * 86400) * 1000
BEGIN
    SELECT RAISE(ABORT, 'audit_log rows are kept at least 183 days');
END;

-- Updates already taken by a daemon: the first to insert handles it.
CREATE TABLE handled_updates (
    platform    TEXT    NOT NULL,
    update_id   BIGINT  NOT NULL,
    at          BIGINT  NOT NULL,
    PRIMARY KEY (platform, update_id)
);
CREATE INDEX handled_updates_at ON handled_updates(at);

-- Running daemons and their last sign of life.
CREATE TABLE daemons (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    started_at   BIGINT  NOT NULL,
    heartbeat_at BIGINT  NOT NULL
);

ALTER TABLE broadcast_deliveries ADD COLUMN claimed_by TEXT;
