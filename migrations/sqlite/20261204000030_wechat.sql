-- WeChat residents reached through WeCom customer service (微信客服, issue #22).
-- Their ids are strings (`external_userid`); the core works with integers, so each gets a
-- stable integer id here, by platform. Only what replying needs is kept.
CREATE TABLE external_ids (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    UNIQUE (platform, external_id)
);

-- Where `kf/sync_msg` left off, per customer-service account: a restart neither loses nor
-- repeats messages.
CREATE TABLE wechat_cursors (
    open_kfid  TEXT   PRIMARY KEY,
    cursor     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Message ids already handled (WeCom may hand a message out twice); purged after a week.
CREATE TABLE wechat_seen (
    msgid   TEXT   PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX wechat_seen_at ON wechat_seen(seen_at);

-- The 48-hour window: customer service may send at most 5 messages within 48 hours of the
-- resident's last message. What does not fit waits here for the resident's next message.
CREATE TABLE wechat_windows (
    user_id         BIGINT PRIMARY KEY,
    last_inbound_at BIGINT NOT NULL,
    sent            BIGINT NOT NULL
);
CREATE TABLE wechat_held (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX wechat_held_user ON wechat_held(user_id, id);
