-- The station console: accounts of station staff (passwords as argon2 hashes, an optional
-- TOTP secret, required for admins), and their sessions (only a SHA-256 of the session
-- token is kept, with the CSRF token of the session).

CREATE TABLE web_users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL UNIQUE,
    station_id      BIGINT  REFERENCES stations(id),
    role            TEXT    NOT NULL CHECK (role IN ('staff', 'admin', 'system')),
    password_hash   TEXT    NOT NULL,
    totp_secret     TEXT,
    failed_logins   BIGINT  NOT NULL DEFAULT 0,
    locked_until    BIGINT,
    created_at      BIGINT  NOT NULL,
    CHECK ((role = 'system') = (station_id IS NULL))
);

CREATE TABLE web_sessions (
    token_hash      TEXT    PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES web_users(id),
    csrf            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    last_seen_at    BIGINT  NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);
