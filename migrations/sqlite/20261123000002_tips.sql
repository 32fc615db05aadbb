-- Tips (线索): what residents report, routed to the responsible officer. The tipster's
-- account never sits in a tip row: `tip_reporters` maps a tip to the chat that reported it
-- under an alias, apart from the tip, so that it can be purged.

CREATE TABLE tips (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    number              TEXT    NOT NULL UNIQUE,
    village_id          BIGINT  NOT NULL REFERENCES villages(id),
    category            TEXT    NOT NULL,
    -- The platform the tip came in on: where its officers are reached.
    platform            TEXT    NOT NULL,
    source              TEXT    NOT NULL CHECK (source IN ('private', 'group')),
    anonymous           BIGINT  NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'new'
                        CHECK (status IN ('new', 'acknowledged', 'in_progress', 'resolved', 'rejected', 'merged')),
    summary             TEXT    NOT NULL,
    contact_phone       TEXT,
    password_hash       TEXT    NOT NULL,
    assigned_officer_id BIGINT  REFERENCES officers(id),
    -- Escalation: the tip goes to the next officer of the duty chain when it is not
    -- acknowledged by this instant (UTC ms); `escalation_level` is the position reached.
    ack_deadline        BIGINT,
    escalation_level    BIGINT  NOT NULL DEFAULT 0,
    public_note         TEXT,
    merged_into         BIGINT  REFERENCES tips(id),
    rating              TEXT    CHECK (rating IN ('satisfied', 'fair', 'dissatisfied')),
    created_at          BIGINT  NOT NULL,
    acknowledged_at     BIGINT,
    resolved_at         BIGINT,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX tips_village ON tips(village_id, created_at);
CREATE INDEX tips_status ON tips(status, created_at);
CREATE INDEX tips_deadline ON tips(status, ack_deadline);

-- The numbering of tips per day: T20261123-0007.
CREATE TABLE tip_counters (
    day         TEXT    PRIMARY KEY,
    last        BIGINT  NOT NULL
);

-- What the tip consists of, in the order it was sent: text, media by platform file id,
-- locations (in millionths of a degree: integers, because sqlx's Any driver mistypes NULL
-- floats on PostgreSQL).
CREATE TABLE tip_items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tip_id      BIGINT  NOT NULL REFERENCES tips(id),
    position    BIGINT  NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('text', 'photo', 'voice', 'video', 'location')),
    text        TEXT,
    file_id     TEXT,
    latitude_e6  BIGINT,
    longitude_e6 BIGINT
);
CREATE INDEX tip_items_tip ON tip_items(tip_id, position);

-- Who reported a tip, apart from the tip: the chat to answer, under an alias.
CREATE TABLE tip_reporters (
    tip_id      BIGINT  PRIMARY KEY REFERENCES tips(id),
    platform    TEXT    NOT NULL,
    chat_id     BIGINT  NOT NULL,
    alias       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Every change of a tip: when, who (officer id, or none for the resident/system), what.
CREATE TABLE tip_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tip_id      BIGINT  NOT NULL REFERENCES tips(id),
    at          BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    officer_id  BIGINT  REFERENCES officers(id),
    kind        TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX tip_events_tip ON tip_events(tip_id, at);

-- Guided conversations in private chats (a tip being written …), per person, so they survive
-- a restart; `state` is JSON.
CREATE TABLE conversations (
    platform    TEXT    NOT NULL,
    user_id     BIGINT  NOT NULL,
    state       TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    PRIMARY KEY (platform, user_id)
);

-- An officer's leave: off duty until this day (exclusive), on top of the on_duty switch.
ALTER TABLE officers ADD COLUMN off_until TEXT;

-- Whether the bot is an admin of the group (it may then delete a tip posted in public).
ALTER TABLE chats ADD COLUMN bot_admin BIGINT NOT NULL DEFAULT 0;
