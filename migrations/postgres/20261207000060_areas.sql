-- The ground each village or urban grid covers (issue #24), as imported from the registry's
-- areas.geojson: the GeoJSON geometry (Polygon or MultiPolygon) in the datum it was drawn in,
-- so that an export gives back what was imported. The daemon indexes them in WGS-84.
CREATE TABLE areas (
    village_id  BIGINT NOT NULL PRIMARY KEY REFERENCES villages(id),
    datum       TEXT   NOT NULL CHECK (datum IN ('WGS84', 'GCJ02', 'CGCS2000')),
    geometry    TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- A tip whose location lies in another village's area is routed to that village; the
-- village of the group (or the resident's own) it was reported from is kept here.
ALTER TABLE tips ADD COLUMN reported_village_id BIGINT REFERENCES villages(id);
