-- Messages decided where no channel runs (the command line's tip actions, issue #21): the
-- officer's card, the tipster's notice. A daemon serving the platform takes them at its next
-- timer round and sends them; nothing is lost when no daemon is running, they wait here.
CREATE TABLE queued_outbound (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    platform   TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX queued_outbound_platform ON queued_outbound(platform, id);
