-- The station desk's lists (issue #23): a named tipster's tips are found by the phone they
-- left through its blind index (an HMAC under the database's key; the phone itself stays
-- sealed in `contact_phone`). The daemon fills it for older rows at its next start
-- (`seal_contacts`). The lists filter and count on the tip's own columns: a page of the
-- newest walks the creation index, the counters of a station the village index, both
-- without reading the rows.
ALTER TABLE tips ADD COLUMN phone_index TEXT;
CREATE INDEX tips_phone_index ON tips(phone_index);
CREATE INDEX tips_created ON tips(created_at, id, village_id, status);
CREATE INDEX tips_village_status ON tips(village_id, status, created_at);

-- The counters above the tips list: how many tips each village has in each status, kept by
-- a trigger as tips arrive, change status or are purged, so the counters of a station's
-- whole year are a few rows, not a count of every tip on every page view.
CREATE TABLE tip_status_counts (
    village_id  BIGINT  NOT NULL,
    status      TEXT    NOT NULL,
    n           BIGINT  NOT NULL,
    PRIMARY KEY (village_id, status)
);
INSERT INTO tip_status_counts (village_id, status, n)
    SELECT village_id, status, COUNT(*) FROM tips GROUP BY village_id, status;
CREATE FUNCTION tips_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE tip_status_counts SET n = n - 1 WHERE village_id = OLD.village_id AND status = OLD.status;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO tip_status_counts (village_id, status, n) VALUES (NEW.village_id, NEW.status, 1)
            ON CONFLICT (village_id, status) DO UPDATE SET n = tip_status_counts.n + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tips_counted AFTER INSERT OR DELETE OR UPDATE OF status, village_id ON tips
    FOR EACH ROW EXECUTE FUNCTION tips_counted();
