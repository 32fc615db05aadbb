-- Faster lookups. The registry's change count: daemons keep the registry lookups every message makes in
-- memory (src/store/cache.rs); every change to these tables, by whoever makes it (the CLI,
-- another daemon, a hand-written UPDATE), moves the count, and a daemon that sees it move
-- forgets what it had.
CREATE TABLE registry_version (
    id  BIGINT  PRIMARY KEY CHECK (id = 1),
    v   BIGINT  NOT NULL
);
INSERT INTO registry_version (id, v) VALUES (1, 0);

CREATE FUNCTION registry_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_version SET v = v + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER stations_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stations FOR EACH STATEMENT EXECUTE FUNCTION registry_counted();
CREATE TRIGGER offices_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON offices FOR EACH STATEMENT EXECUTE FUNCTION registry_counted();
CREATE TRIGGER villages_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON villages FOR EACH STATEMENT EXECUTE FUNCTION registry_counted();
CREATE TRIGGER officers_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON officers FOR EACH STATEMENT EXECUTE FUNCTION registry_counted();
CREATE TRIGGER assignments_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON assignments FOR EACH STATEMENT EXECUTE FUNCTION registry_counted();
CREATE TRIGGER officer_identities_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON officer_identities FOR EACH STATEMENT EXECUTE FUNCTION registry_counted();
CREATE TRIGGER chats_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON chats FOR EACH STATEMENT EXECUTE FUNCTION registry_counted();

-- A tipster's own tips ("my reports", the hourly limit): found by chat, not by scanning
-- every mapping (the load benchmark found each tip costing a scan of all earlier ones).
CREATE INDEX tip_reporters_chat ON tip_reporters(platform, chat_id);
