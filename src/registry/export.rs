//! Writing the registry back to the five CSV files, in the import format (English headers),
//! and its areas to `areas.geojson` (each feature in the datum it was imported in, named in
//! `properties.datum`), so that an export imports again unchanged.

use std::path::Path;

use anyhow::Context;
use sqlx::Row;

use super::areas::{AREAS_FILE, feature_collection};
use super::import::FILES;
use crate::domain::Datum;
use crate::store::Store;

/// Each file: its header and the query that yields its columns, all as text, in order.
const QUERIES: [(&[&str], &str); 5] = [
    (&["code", "name", "duty_phone", "address"], "SELECT code, name, duty_phone, address FROM stations ORDER BY code"),
    (
        &["code", "station", "name", "kind", "address", "hours", "phone"],
        "SELECT o.code, s.code, o.name, o.kind, o.address, o.hours, o.phone \
         FROM offices o JOIN stations s ON s.id = o.station_id ORDER BY o.code",
    ),
    (
        &["code", "name", "kind", "office", "households", "population"],
        "SELECT v.code, v.name, v.kind, o.code, CAST(v.households AS TEXT), CAST(v.population AS TEXT) \
         FROM villages v JOIN offices o ON o.id = v.office_id ORDER BY v.code",
    ),
    (
        &["badge", "name", "kind", "phone", "station"],
        "SELECT f.badge, f.name, f.kind, f.phone, s.code FROM officers f JOIN stations s ON s.id = f.station_id ORDER BY f.badge",
    ),
    (
        &["village", "badge", "role", "since", "until"],
        "SELECT v.code, f.badge, a.role, a.since, a.until FROM assignments a \
         JOIN villages v ON v.id = a.village_id JOIN officers f ON f.id = a.officer_id \
         ORDER BY v.code, a.since, f.badge, a.role",
    ),
];

/// Writes the registry (assignment history included) to `dir`, creating it; `areas.geojson`
/// only when there are areas.
pub async fn export_dir(store: &Store, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
    for (file, (header, sql)) in FILES.iter().zip(QUERIES) {
        let path = dir.join(file);
        let rows = sqlx::query(sql)
            .fetch_all(store.pool())
            .await
            .with_context(|| format!("Failed to read the rows of {file}"))?;
        let mut w = csv::Writer::from_path(&path).with_context(|| format!("Failed to create {}", path.display()))?;
        crate::csv_cells::write_record(&mut w, header.iter())?;
        for row in rows {
            let fields = (0..header.len())
                .map(|i| row.try_get::<Option<String>, _>(i).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()?;
            crate::csv_cells::write_record(&mut w, fields)?;
        }
        w.flush().with_context(|| format!("Failed to write {}", path.display()))?;
    }
    let areas: Vec<(String, String, Datum, String)> = sqlx::query_as(
        "SELECT v.code, v.name, a.datum, a.geometry FROM areas a JOIN villages v ON v.id = a.village_id ORDER BY v.code",
    )
    .fetch_all(store.pool())
    .await
    .context("Failed to read the areas")?;
    if !areas.is_empty() {
        let path = dir.join(AREAS_FILE);
        std::fs::write(&path, feature_collection(&areas)?)
            .with_context(|| format!("Failed to write {}", path.display()))?;
    }
    Ok(())
}
