-- Broadcasts (治安预警 warnings and notices) to village groups, with a delivery ledger: one
-- row per target chat or WeCom robot, committed with the broadcast, so that a restart finds
-- every target that is still to be done.

CREATE TABLE broadcasts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT    NOT NULL CHECK (kind IN ('warning', 'notice')),
    severity            TEXT    NOT NULL CHECK (severity IN ('urgent', 'important', 'normal')),
    -- scheduled: waiting for send_at or being sent; done: every target settled; cancelled.
    status              TEXT    NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'done', 'cancelled')),
    -- CAP's status: only Actual ever reaches real groups.
    cap_status          TEXT    NOT NULL DEFAULT 'Actual',
    cap_identifier      TEXT    NOT NULL UNIQUE,
    cap_references      TEXT,
    -- The broadcast this one corrects or updates (its messages are replied to).
    references_id       BIGINT  REFERENCES broadcasts(id),
    event               TEXT    NOT NULL DEFAULT '',
    text                TEXT    NOT NULL,
    photo_file_id       TEXT,
    -- What was asked for ("village:V001 office:O01 …"), for the ledger and the report.
    target_spec         TEXT    NOT NULL,
    sender_officer_id   BIGINT  REFERENCES officers(id),
    sender_label        TEXT    NOT NULL,
    -- Where the progress and final report go (the sender's private chat), if anywhere.
    report_platform     TEXT,
    report_chat_id      BIGINT,
    last_report_at      BIGINT,
    -- The schedule job that made it, if any (one broadcast per job and due time).
    schedule_job        TEXT,
    send_at             BIGINT  NOT NULL,
    expires_at          BIGINT,
    created_at          BIGINT  NOT NULL,
    finished_at         BIGINT,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX broadcasts_status ON broadcasts(status, send_at);
CREATE INDEX broadcasts_sender ON broadcasts(sender_officer_id, created_at);

CREATE TABLE broadcast_deliveries (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    broadcast_id        BIGINT  NOT NULL REFERENCES broadcasts(id),
    -- telegram, console (chat_id) or wecom (address: the robot's webhook URL).
    channel             TEXT    NOT NULL,
    chat_id             BIGINT  NOT NULL DEFAULT 0,
    address             TEXT,
    village_id          BIGINT  REFERENCES villages(id),
    state               TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'lost', 'expired', 'cancelled')),
    attempts            BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT  NOT NULL DEFAULT 0,
    claimed_at          BIGINT,
    message_id          BIGINT,
    reply_to            BIGINT,
    pinned              BIGINT  NOT NULL DEFAULT 0,
    -- After a cancel: pending → deleted | corrected | failed.
    retract             TEXT,
    detail              TEXT,
    sent_at             BIGINT,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX broadcast_deliveries_work ON broadcast_deliveries(channel, state, next_attempt_at);
CREATE INDEX broadcast_deliveries_broadcast ON broadcast_deliveries(broadcast_id, state);
CREATE INDEX broadcast_deliveries_retract ON broadcast_deliveries(channel, retract);

-- "收到" presses: one per person and delivered message.
CREATE TABLE broadcast_acks (
    delivery_id         BIGINT  NOT NULL REFERENCES broadcast_deliveries(id),
    user_id             BIGINT  NOT NULL,
    at                  BIGINT  NOT NULL,
    PRIMARY KEY (delivery_id, user_id)
);

-- Runs of scheduled jobs, one row per job and due instant: a run is done at most once.
CREATE TABLE schedule_runs (
    job                 TEXT    NOT NULL,
    due_at              BIGINT  NOT NULL,
    ran_at              BIGINT  NOT NULL,
    outcome             TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (job, due_at)
);

-- A WeCom group robot (企业微信群机器人) per village or office: broadcasts are posted there too.
ALTER TABLE villages ADD COLUMN wecom_webhook TEXT;
ALTER TABLE offices ADD COLUMN wecom_webhook TEXT;

-- The villages a broadcast was addressed to (whether or not they have a group yet): the
-- monthly duty "one warning per village" is counted from here.
CREATE TABLE broadcast_villages (
    broadcast_id        BIGINT  NOT NULL REFERENCES broadcasts(id),
    village_id          BIGINT  NOT NULL REFERENCES villages(id),
    PRIMARY KEY (broadcast_id, village_id)
);
CREATE INDEX broadcast_villages_village ON broadcast_villages(village_id);
