-- Faster lookups. The registry's change count: daemons keep the registry lookups every message makes in
-- memory (src/store/cache.rs); every change to these tables, by whoever makes it (the CLI,
-- another daemon, a hand-written UPDATE), moves the count, and a daemon that sees it move
-- forgets what it had.
CREATE TABLE registry_version (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    v   BIGINT  NOT NULL
);
INSERT INTO registry_version (id, v) VALUES (1, 0);
CREATE TRIGGER stations_insert_counted AFTER INSERT ON stations BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER stations_update_counted AFTER UPDATE ON stations BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER stations_delete_counted AFTER DELETE ON stations BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER offices_insert_counted AFTER INSERT ON offices BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER offices_update_counted AFTER UPDATE ON offices BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER offices_delete_counted AFTER DELETE ON offices BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER villages_insert_counted AFTER INSERT ON villages BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER villages_update_counted AFTER UPDATE ON villages BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER villages_delete_counted AFTER DELETE ON villages BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER officers_insert_counted AFTER INSERT ON officers BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER officers_update_counted AFTER UPDATE ON officers BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER officers_delete_counted AFTER DELETE ON officers BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER assignments_insert_counted AFTER INSERT ON assignments BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER assignments_update_counted AFTER UPDATE ON assignments BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER assignments_delete_counted AFTER DELETE ON assignments BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER officer_identities_insert_counted AFTER INSERT ON officer_identities BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER officer_identities_update_counted AFTER UPDATE ON officer_identities BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER officer_identities_delete_counted AFTER DELETE ON officer_identities BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER chats_insert_counted AFTER INSERT ON chats BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER chats_update_counted AFTER UPDATE ON chats BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;
CREATE TRIGGER chats_delete_counted AFTER DELETE ON chats BEGIN UPDATE registry_version SET v = v + 1 WHERE id = 1; END;

-- A tipster's own tips ("my reports", the hourly limit): found by chat, not by scanning
-- every mapping (the load benchmark found each tip costing a scan of all earlier ones).
CREATE INDEX tip_reporters_chat ON tip_reporters(platform, chat_id);
