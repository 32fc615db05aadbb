-- A broadcast's pending targets in id order, so the delivery worker's claim (one broadcast
-- at a time, `ORDER BY d.id LIMIT n`) reads the first n from the index instead of sorting
-- every pending target on each round. SQLite needs no such index: its
-- broadcast_deliveries_broadcast (broadcast_id, state) entries already end with the rowid.
CREATE INDEX broadcast_deliveries_next ON broadcast_deliveries (broadcast_id, state, id);
