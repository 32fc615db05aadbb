//! The coverage check (`cunjing registry check`): what keeps a village from having a named,
//! reachable officer, for the station staff to act on; with areas, also the areas nobody is
//! on duty for today and, once any area exists, the villages still without one.
//!
//! The village limit counts resident, contact and auxiliary assignments: an area chief leads
//! several villages by design, and volunteers hold no police duty.

use std::fmt;

use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::{AssignmentRole, OfficerKind};
use crate::store::Store;

/// A village in the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VillageItem {
    pub code: String,
    pub name: String,
}

/// An officer in the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OfficerItem {
    pub badge: String,
    pub name: String,
    /// Villages served today (only filled for the over-the-limit list).
    pub villages: i64,
}

/// The gaps, each list ordered by code or badge.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    pub villages: i64,
    pub villages_without_resident_officer: Vec<VillageItem>,
    pub villages_without_group: Vec<VillageItem>,
    pub officers_without_phone: Vec<OfficerItem>,
    pub officers_not_enrolled: Vec<OfficerItem>,
    pub max_villages_per_officer: usize,
    pub officers_over_limit: Vec<OfficerItem>,
    /// Villages with an area but no officer on duty today (assigned, not off duty): a tip
    /// located there reaches only the station's duty line.
    pub areas_without_officer_on_duty: Vec<VillageItem>,
    /// Once any area exists: every village without one (a location there is routed only by
    /// the nearest area). Empty while the registry has no areas at all.
    pub villages_without_area: Vec<VillageItem>,
}

const ACTIVE: &str = "a.since <= $1 AND (a.until IS NULL OR a.until > $1)";

/// Computes the report for `today`.
pub async fn check(store: &Store, today: NaiveDate, max_villages_per_officer: usize) -> anyhow::Result<CoverageReport> {
    let pool = store.pool();
    let day = today.to_string();
    let villages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM villages").fetch_one(pool).await?;
    let to_villages =
        |rows: Vec<(String, String)>| rows.into_iter().map(|(code, name)| VillageItem { code, name }).collect();
    let to_officers = |rows: Vec<(String, String, i64)>| {
        rows.into_iter().map(|(badge, name, villages)| OfficerItem { badge, name, villages }).collect()
    };

    let sql = format!(
        "SELECT v.code, v.name FROM villages v WHERE NOT EXISTS \
         (SELECT 1 FROM assignments a WHERE a.village_id = v.id AND a.role = $2 AND {ACTIVE}) ORDER BY v.code"
    );
    let no_resident: Vec<(String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&day).bind(AssignmentRole::Resident).fetch_all(pool).await?;
    let no_group: Vec<(String, String)> = sqlx::query_as(
        "SELECT v.code, v.name FROM villages v WHERE NOT EXISTS \
         (SELECT 1 FROM chats c WHERE c.village_id = v.id AND c.active = 1) ORDER BY v.code",
    )
    .fetch_all(pool)
    .await?;
    let no_phone: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT badge, name, 0 FROM officers WHERE kind <> $1 AND (phone IS NULL OR phone = '') ORDER BY badge",
    )
    .bind(OfficerKind::Volunteer)
    .fetch_all(pool)
    .await?;
    let not_enrolled: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT f.badge, f.name, 0 FROM officers f WHERE f.kind <> $1 AND NOT EXISTS \
         (SELECT 1 FROM officer_identities i WHERE i.officer_id = f.id) ORDER BY f.badge",
    )
    .bind(OfficerKind::Volunteer)
    .fetch_all(pool)
    .await?;
    let sql = format!(
        "SELECT f.badge, f.name, COUNT(DISTINCT a.village_id) AS n FROM officers f JOIN assignments a ON a.officer_id = f.id \
         WHERE a.role IN ($3, $4, $5) AND {ACTIVE} GROUP BY f.id, f.badge, f.name \
         HAVING COUNT(DISTINCT a.village_id) > $2 ORDER BY f.badge"
    );
    let over: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&day)
        .bind(i64::try_from(max_villages_per_officer).unwrap_or(i64::MAX))
        .bind(AssignmentRole::Resident)
        .bind(AssignmentRole::Contact)
        .bind(AssignmentRole::Auxiliary)
        .fetch_all(pool)
        .await?;
    let sql = format!(
        "SELECT v.code, v.name FROM villages v JOIN areas r ON r.village_id = v.id WHERE NOT EXISTS \
         (SELECT 1 FROM assignments a JOIN officers f ON f.id = a.officer_id WHERE a.village_id = v.id AND {ACTIVE} \
         AND f.on_duty = 1 AND (f.off_until IS NULL OR f.off_until <= $1)) ORDER BY v.code"
    );
    let area_no_officer: Vec<(String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&day).fetch_all(pool).await?;
    let no_area: Vec<(String, String)> = sqlx::query_as(
        "SELECT v.code, v.name FROM villages v WHERE EXISTS (SELECT 1 FROM areas) AND NOT EXISTS \
         (SELECT 1 FROM areas r WHERE r.village_id = v.id) ORDER BY v.code",
    )
    .fetch_all(pool)
    .await?;
    Ok(CoverageReport {
        villages,
        villages_without_resident_officer: to_villages(no_resident),
        villages_without_group: to_villages(no_group),
        officers_without_phone: to_officers(no_phone),
        officers_not_enrolled: to_officers(not_enrolled),
        max_villages_per_officer,
        officers_over_limit: to_officers(over),
        areas_without_officer_on_duty: to_villages(area_no_officer),
        villages_without_area: to_villages(no_area),
    })
}

impl fmt::Display for CoverageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Coverage of {} villages/grids", self.villages)?;
        let mut section = |title: String, items: Vec<String>| -> fmt::Result {
            if items.is_empty() {
                writeln!(f, "  ✓ {title}: none")
            } else {
                writeln!(f, "  ✗ {title}: {}", items.len())?;
                items.iter().try_for_each(|i| writeln!(f, "      {i}"))
            }
        };
        section(
            "villages with no resident officer".into(),
            self.villages_without_resident_officer.iter().map(|v| format!("{} {}", v.code, v.name)).collect(),
        )?;
        section(
            "villages with no bound group".into(),
            self.villages_without_group.iter().map(|v| format!("{} {}", v.code, v.name)).collect(),
        )?;
        section(
            "officers with no phone".into(),
            self.officers_without_phone.iter().map(|o| format!("{} {}", o.badge, o.name)).collect(),
        )?;
        section(
            "officers not enrolled (cunjing officer enrol BADGE)".into(),
            self.officers_not_enrolled.iter().map(|o| format!("{} {}", o.badge, o.name)).collect(),
        )?;
        section(
            format!("officers serving more than {} villages", self.max_villages_per_officer),
            self.officers_over_limit
                .iter()
                .map(|o| format!("{} {} ({} villages)", o.badge, o.name, o.villages))
                .collect(),
        )?;
        section(
            "areas whose village has no officer on duty today".into(),
            self.areas_without_officer_on_duty.iter().map(|v| format!("{} {}", v.code, v.name)).collect(),
        )?;
        section(
            "villages without an area (areas.geojson)".into(),
            self.villages_without_area.iter().map(|v| format!("{} {}", v.code, v.name)).collect(),
        )
    }
}
