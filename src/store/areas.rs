//! The `areas` table (issue #24): each village's or grid's ground as imported, and the
//! in-memory [`AreaIndex`] built from it.
//!
//! The index is rebuilt when the table changed: each use compares the table's row count and
//! latest `updated_at` with those the index was built from (one indexed read), so an import
//! by the command line or another daemon is seen at the next location. Locations are rare
//! next to messages; a province's index builds in well under a second (BENCHMARKS.md).

use std::sync::Arc;

use anyhow::Context;

use super::Store;
use crate::domain::Datum;
use crate::places::{Area, AreaIndex, shape_from_text};

/// One stored area, as imported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredArea {
    pub village_id: i64,
    pub code: String,
    pub station_id: i64,
    pub datum: Datum,
    /// The GeoJSON geometry as imported, in `datum`.
    pub geometry: String,
}

/// The table's row count and latest `updated_at`: what an index was built from.
type Fingerprint = (i64, i64);

/// The index with what it was built from.
#[derive(Default)]
pub(super) struct AreaCache {
    built: tokio::sync::Mutex<Option<(Fingerprint, Arc<AreaIndex>)>>,
}

impl std::fmt::Debug for AreaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AreaCache")
    }
}

impl Store {
    /// Every stored area with its village code and station, by village code.
    pub async fn stored_areas(&self) -> anyhow::Result<Vec<StoredArea>> {
        sqlx::query_as(
            "SELECT a.village_id, v.code, o.station_id, a.datum, a.geometry FROM areas a \
             JOIN villages v ON v.id = a.village_id JOIN offices o ON o.id = v.office_id ORDER BY v.code",
        )
        .fetch_all(&self.pool)
        .await
        .context("Failed to read the areas")
    }

    /// The areas, indexed; rebuilt when the table changed since the last build.
    pub async fn area_index(&self) -> anyhow::Result<Arc<AreaIndex>> {
        let fingerprint: Fingerprint = sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM areas")
            .fetch_one(&self.pool)
            .await
            .context("Failed to read the areas' version")?;
        let mut built = self.areas.built.lock().await;
        if let Some((seen, index)) = built.as_ref()
            && *seen == fingerprint
        {
            return Ok(index.clone());
        }
        let stored = self.stored_areas().await?;
        let index = Arc::new(tokio::task::spawn_blocking(move || index_of(stored)).await??);
        *built = Some((fingerprint, index.clone()));
        Ok(index)
    }
}

/// Builds the index of stored areas (a geometry that no longer parses is an error: the
/// import checked every one).
pub fn index_of(stored: Vec<StoredArea>) -> anyhow::Result<AreaIndex> {
    let areas = stored
        .into_iter()
        .map(|s| {
            let shape = shape_from_text(&s.geometry, s.datum)
                .with_context(|| format!("The stored area of village {} cannot be read", s.code))?;
            Ok(Area { village_id: s.village_id, code: s.code.into(), station_id: s.station_id, shape })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AreaIndex::build(areas))
}
