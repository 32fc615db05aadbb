-- Registry: stations, offices, villages, officers and their dated assignments; the chats bound
-- to villages or stations; officer enrolment. Timestamps are UTC milliseconds since the epoch
-- (BIGINT), calendar dates are ISO `YYYY-MM-DD` text, flags are 0/1 integers: one encoding that
-- SQLite and PostgreSQL share, so the same SQL runs on both.

CREATE TABLE stations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    duty_phone  TEXT    NOT NULL,
    address     TEXT    NOT NULL DEFAULT '',
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE offices (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code        TEXT    NOT NULL UNIQUE,
    station_id  BIGINT  NOT NULL REFERENCES stations(id),
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('office', 'workstation')),
    address     TEXT    NOT NULL DEFAULT '',
    hours       TEXT    NOT NULL DEFAULT '',
    phone       TEXT,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX offices_station ON offices(station_id);

CREATE TABLE villages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('village', 'grid')),
    office_id   BIGINT  NOT NULL REFERENCES offices(id),
    households  BIGINT,
    population  BIGINT,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX villages_office ON villages(office_id);
CREATE INDEX villages_name ON villages(name);

CREATE TABLE officers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    badge       TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('police', 'auxiliary', 'volunteer')),
    phone       TEXT,
    station_id  BIGINT  NOT NULL REFERENCES stations(id),
    on_duty     BIGINT  NOT NULL DEFAULT 1,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX officers_station ON officers(station_id);

-- `until` is the first day the officer no longer serves the village (NULL: open-ended).
CREATE TABLE assignments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    village_id  BIGINT  NOT NULL REFERENCES villages(id),
    officer_id  BIGINT  NOT NULL REFERENCES officers(id),
    role        TEXT    NOT NULL CHECK (role IN ('resident', 'contact', 'auxiliary', 'area_chief', 'volunteer')),
    since       TEXT    NOT NULL,
    until       TEXT,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (village_id, officer_id, role, since)
);
CREATE INDEX assignments_village ON assignments(village_id, until);
CREATE INDEX assignments_officer ON assignments(officer_id, until);

-- A platform account (Telegram user id, console persona …) linked to an officer by enrolment.
CREATE TABLE officer_identities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    officer_id  BIGINT  NOT NULL REFERENCES officers(id),
    platform    TEXT    NOT NULL,
    user_id     BIGINT  NOT NULL,
    enrolled_at BIGINT  NOT NULL,
    UNIQUE (platform, user_id)
);
CREATE INDEX officer_identities_officer ON officer_identities(officer_id);

-- One-time enrolment codes: only a SHA-256 of the code is kept.
CREATE TABLE enrolment_codes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    officer_id  BIGINT  NOT NULL REFERENCES officers(id),
    code_hash   TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT
);

-- Group chats the bot is in, and what each is bound to.
CREATE TABLE chats (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT    NOT NULL,
    chat_id     BIGINT  NOT NULL,
    title       TEXT    NOT NULL DEFAULT '',
    village_id  BIGINT  REFERENCES villages(id),
    station_id  BIGINT  REFERENCES stations(id),
    bound_by    BIGINT  REFERENCES officers(id),
    bound_at    BIGINT,
    active      BIGINT  NOT NULL DEFAULT 1,
    added_at    BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (platform, chat_id)
);
CREATE INDEX chats_village ON chats(village_id);

-- The village a resident chose in a private chat, so that the next question needs no choice.
CREATE TABLE resident_villages (
    platform    TEXT    NOT NULL,
    user_id     BIGINT  NOT NULL,
    village_id  BIGINT  NOT NULL REFERENCES villages(id),
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (platform, user_id)
);

-- Sends that failed for good (after the adapter's retries): what failed and why, never the text.
CREATE TABLE send_failures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT    NOT NULL,
    chat_id     BIGINT  NOT NULL,
    error_kind  TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);
