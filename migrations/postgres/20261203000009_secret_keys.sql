-- Tip passwords that cannot be guessed (issue #20).
--
-- Secret keys made for this database: the key of the tip passwords' HMAC.
-- Whoever can read this table can test passwords; set CUNJING_PEPPER so that a copy of the
-- database alone is not enough (README, "Privacy").
CREATE TABLE secret_keys (
    name        TEXT    PRIMARY KEY,
    secret      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Wrong passwords given for a tip in the hour since the first of them: at the limit the
-- tip's status is not shown for the rest of that hour, whoever asks. Counted on the tip, not
-- in the audit log, so that no record links an account to a tip number.
ALTER TABLE tips ADD COLUMN wrong_passwords BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tips ADD COLUMN wrong_passwords_since BIGINT;
