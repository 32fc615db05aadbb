-- The station desk's lists (issue #23): a named tipster's tips are found by the phone they
-- left through its blind index (an HMAC under the database's key; the phone itself stays
-- sealed in `contact_phone`). The daemon fills it for older rows at its next start
-- (`seal_contacts`). The lists filter and count on the tip's own columns: a page of the
-- newest walks the creation index, the counters of a station the village index, both
-- without reading the rows.
ALTER TABLE tips ADD COLUMN phone_index TEXT;
CREATE INDEX tips_phone_index ON tips(phone_index);
CREATE INDEX tips_created ON tips(created_at, village_id, status);
CREATE INDEX tips_village_status ON tips(village_id, status, created_at);
