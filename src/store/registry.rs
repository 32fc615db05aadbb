//! Read queries of the registry: villages, their office and station, the assignments active
//! on a day, and the lookups of stations and offices by id or code. The importer
//! (`crate::registry`) does the writes.

use serde::Serialize;
use sqlx::FromRow;

use super::Store;
use super::mapping::Flag;
use crate::domain::{AssignmentRole, OfficeKind, OfficerKind, VillageKind};

/// A village or grid with what a contact card needs of its office and station.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct VillageRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub kind: VillageKind,
    pub office_id: i64,
    pub office_code: String,
    pub office_name: String,
    pub office_kind: OfficeKind,
    pub office_address: String,
    pub office_hours: String,
    pub office_phone: Option<String>,
    pub station_id: i64,
    pub station_code: String,
    pub station_name: String,
    pub station_duty_phone: String,
}

const VILLAGE_SELECT: &str = "SELECT v.id, v.code, v.name, v.kind, v.office_id, o.code AS office_code, \
     o.name AS office_name, o.kind AS office_kind, o.address AS office_address, o.hours AS office_hours, \
     o.phone AS office_phone, s.id AS station_id, s.code AS station_code, s.name AS station_name, \
     s.duty_phone AS station_duty_phone \
     FROM villages v JOIN offices o ON o.id = v.office_id JOIN stations s ON s.id = o.station_id";

/// One active assignment of a village, with the officer's details and whether the officer
/// can be reached through the bot (enrolled on some platform and on duty).
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct AssignedOfficer {
    pub officer_id: i64,
    pub role: AssignmentRole,
    pub badge: String,
    pub name: String,
    pub kind: OfficerKind,
    pub phone: Option<String>,
    /// True unless the officer switched duty off or is on leave on the day asked about.
    #[sqlx(try_from = "Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub on_duty: bool,
    #[sqlx(try_from = "Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub enrolled: bool,
}

/// The ordering of roles in a duty chain (the order of [`AssignmentRole`]'s variants:
/// resident, contact, auxiliary, area chief, volunteer), as an SQL expression on `a.role`.
fn role_order() -> String {
    let whens: String =
        AssignmentRole::ALL.iter().enumerate().map(|(i, r)| format!(" WHEN '{}' THEN {}", r.as_str(), i + 1)).collect();
    format!("CASE a.role{whens} ELSE {} END", AssignmentRole::ALL.len() + 1)
}

impl Store {
    pub async fn village_by_code(&self, code: &str) -> anyhow::Result<Option<VillageRow>> {
        let sql = format!("{VILLAGE_SELECT} WHERE v.code = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(code).fetch_optional(self.pool()).await?)
    }

    pub async fn village_by_id(&self, id: i64) -> anyhow::Result<Option<VillageRow>> {
        let load = async {
            let sql = format!("{VILLAGE_SELECT} WHERE v.id = $1");
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?)
        };
        match self.cache.ready().await {
            Some(registry) => Ok(registry.village(id)),
            None => load.await,
        }
    }

    /// Villages whose name contains `query` (exact name first), at most `limit`.
    pub async fn search_villages(&self, query: &str, limit: i64) -> anyhow::Result<Vec<VillageRow>> {
        let pattern = format!("%{}%", query.replace(['%', '_'], ""));
        let sql = format!(
            "{VILLAGE_SELECT} WHERE v.name LIKE $1 OR v.code = $2 \
             ORDER BY CASE WHEN v.name = $2 THEN 0 ELSE 1 END, length(v.name), v.code LIMIT $3"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(pattern)
            .bind(query)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// The officers serving a village on `day` (ISO date), in duty-chain order.
    pub async fn assigned_officers(&self, village_id: i64, day: &str) -> anyhow::Result<Vec<AssignedOfficer>> {
        let load = async {
            let role_order = role_order();
            let sql = format!(
                "SELECT f.id AS officer_id, a.role, f.badge, f.name, f.kind, f.phone, \
             CASE WHEN f.on_duty = 1 AND (f.off_until IS NULL OR f.off_until <= $2) THEN 1 ELSE 0 END AS on_duty, \
             CASE WHEN EXISTS (SELECT 1 FROM officer_identities i WHERE i.officer_id = f.id) THEN 1 ELSE 0 END AS enrolled \
             FROM assignments a JOIN officers f ON f.id = a.officer_id \
             WHERE a.village_id = $1 AND a.since <= $2 AND (a.until IS NULL OR a.until > $2) \
             ORDER BY {role_order}, a.since, f.badge"
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(village_id).bind(day).fetch_all(self.pool()).await?)
        };
        match self.cache.ready().await.and_then(|registry| registry.assigned(village_id, day)) {
            Some(officers) => Ok(officers),
            None => load.await,
        }
    }

    /// The villages an officer serves on `day`, with the role, ordered by village code.
    pub async fn officer_villages(
        &self,
        officer_id: i64,
        day: &str,
    ) -> anyhow::Result<Vec<(String, String, AssignmentRole)>> {
        let rows: Vec<(String, String, AssignmentRole)> = sqlx::query_as(
            "SELECT v.code, v.name, a.role FROM assignments a JOIN villages v ON v.id = a.village_id \
             WHERE a.officer_id = $1 AND a.since <= $2 AND (a.until IS NULL OR a.until > $2) ORDER BY v.code, a.role",
        )
        .bind(officer_id)
        .bind(day)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Whether the officer serves the village on `day` in a role of the duty chain.
    pub async fn officer_serves_village(&self, officer_id: i64, village_id: i64, day: &str) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM assignments WHERE officer_id = $1 AND village_id = $2 \
             AND role <> $4 AND since <= $3 AND (until IS NULL OR until > $3)",
        )
        .bind(officer_id)
        .bind(village_id)
        .bind(day)
        .bind(AssignmentRole::Volunteer)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    /// The village that has the smallest code (the demo's default group).
    pub async fn first_village(&self) -> anyhow::Result<Option<VillageRow>> {
        let sql = format!("{VILLAGE_SELECT} ORDER BY v.id LIMIT 1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_optional(self.pool()).await?)
    }

    /// All villages, ordered as they were imported.
    pub async fn all_villages(&self) -> anyhow::Result<Vec<VillageRow>> {
        let sql = format!("{VILLAGE_SELECT} ORDER BY v.id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?)
    }
}

impl Store {
    /// The code of the station with `id`.
    pub async fn station_code(&self, id: i64) -> anyhow::Result<String> {
        Ok(sqlx::query_scalar("SELECT code FROM stations WHERE id = $1").bind(id).fetch_one(self.pool()).await?)
    }

    /// The id of the station with `code`.
    pub async fn station_id(&self, code: &str) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM stations WHERE code = $1").bind(code).fetch_optional(self.pool()).await?)
    }

    /// A station's code and name.
    pub async fn station_of(&self, station_id: i64) -> anyhow::Result<(String, String)> {
        Ok(sqlx::query_as("SELECT code, name FROM stations WHERE id = $1")
            .bind(station_id)
            .fetch_one(self.pool())
            .await?)
    }

    /// A station's offices: (code, name).
    pub async fn offices_of_station(&self, station_id: i64) -> anyhow::Result<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT code, name FROM offices WHERE station_id = $1 ORDER BY code")
            .bind(station_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn office_station(&self, code: &str) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT station_id FROM offices WHERE code = $1")
            .bind(code)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn office_name(&self, code: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM offices WHERE code = $1")
            .bind(code)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Every station: (id, name).
    pub async fn stations(&self) -> anyhow::Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as("SELECT id, name FROM stations ORDER BY code").fetch_all(self.pool()).await?)
    }
}
