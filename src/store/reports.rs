//! Figures over a period: each officer's warnings, notices and tips for the monthly report
//! and the console, the console's own broadcasts per station, and tips per village by
//! category and by month.

use serde::Serialize;

use super::Store;
use crate::domain::{BroadcastKind, BroadcastStatus, CapStatus};

/// One officer's figures for a period (`cunjing report monthly`, the staff groups' summary).
#[derive(Debug, Clone, Serialize)]
pub struct OfficerFigures {
    pub badge: String,
    pub name: String,
    pub station_code: String,
    /// Whether the monthly minimum of warnings applies: it is a police officer's duty (民警),
    /// not an auxiliary's or a volunteer's.
    pub owes_warnings: bool,
    pub warnings: i64,
    pub notices: i64,
    pub tips_received: i64,
    pub tips_acknowledged: i64,
    pub tips_resolved: i64,
    pub median_ack_minutes: Option<i64>,
    pub rated_satisfied: i64,
    pub rated_fair: i64,
    pub rated_dissatisfied: i64,
}

impl OfficerFigures {
    /// The figures as the exports write them, after who the officer is: station, warnings,
    /// notices, tips received, acknowledged, resolved, median minutes to acknowledge, and
    /// the ratings satisfied, fair, dissatisfied.
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.station_code.clone(),
            self.warnings.to_string(),
            self.notices.to_string(),
            self.tips_received.to_string(),
            self.tips_acknowledged.to_string(),
            self.tips_resolved.to_string(),
            self.median_ack_minutes.map(|m| m.to_string()).unwrap_or_default(),
            self.rated_satisfied.to_string(),
            self.rated_fair.to_string(),
            self.rated_dissatisfied.to_string(),
        ]
    }
}

/// One village's (or grid's) tips over a period: those it is responsible for (the tips
/// whose location lies in its area, or without a location reported from it) and, of those,
/// how many were reported from another village (a group elsewhere, a resident who chose
/// another village).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct VillageTips {
    pub village_id: i64,
    pub code: String,
    pub name: String,
    pub tips: i64,
    pub from_elsewhere: i64,
}

/// The median of waits in milliseconds, in whole minutes (rounded).
fn median_minutes(mut waits: Vec<i64>) -> i64 {
    waits.sort_unstable();
    let mid = waits.len() / 2;
    let ms = if waits.len().is_multiple_of(2) { (waits[mid - 1] + waits[mid]) / 2 } else { waits[mid] };
    (ms + 30_000) / 60_000
}

impl Store {
    /// Per officer (of one station, or all), between `from` and `to` (UTC ms): one grouped
    /// query per measure, whatever the number of officers.
    pub async fn officer_figures(
        &self,
        from: i64,
        to: i64,
        station_id: Option<i64>,
    ) -> anyhow::Result<Vec<OfficerFigures>> {
        use std::collections::HashMap;
        let officers: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT f.id, f.badge, f.name, s.code, f.kind FROM officers f JOIN stations s ON s.id = f.station_id \
             WHERE $1 = 0 OR f.station_id = $1 ORDER BY s.code, f.badge",
        )
        .bind(station_id.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        let published: Vec<(i64, BroadcastKind, i64)> = sqlx::query_as(
            "SELECT sender_officer_id, kind, COUNT(*) FROM broadcasts WHERE sender_officer_id IS NOT NULL \
             AND status <> $3 AND cap_status = $4 AND created_at >= $1 AND created_at < $2 \
             GROUP BY sender_officer_id, kind",
        )
        .bind(from)
        .bind(to)
        .bind(BroadcastStatus::Cancelled)
        .bind(CapStatus::Actual)
        .fetch_all(self.pool())
        .await?;
        let tips: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT officer_id, \
             COUNT(DISTINCT CASE WHEN kind IN ('routed', 'escalated', 'assigned', 'reassigned') THEN tip_id END), \
             COUNT(DISTINCT CASE WHEN kind = 'acknowledged' THEN tip_id END), \
             COUNT(DISTINCT CASE WHEN kind = 'resolved' THEN tip_id END) \
             FROM tip_events WHERE officer_id IS NOT NULL AND at >= $1 AND at < $2 GROUP BY officer_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        let acknowledged: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT e.officer_id, t.id, t.acknowledged_at - t.created_at FROM tip_events e \
             JOIN tips t ON t.id = e.tip_id WHERE e.kind = 'acknowledged' AND e.officer_id IS NOT NULL \
             AND e.at >= $1 AND e.at < $2 AND t.acknowledged_at IS NOT NULL",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        let ratings: Vec<(i64, crate::domain::Rating, i64)> = sqlx::query_as(
            "SELECT assigned_officer_id, rating, COUNT(*) FROM tips WHERE assigned_officer_id IS NOT NULL \
             AND rating IS NOT NULL AND resolved_at >= $1 AND resolved_at < $2 GROUP BY assigned_officer_id, rating",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        let tips: HashMap<i64, (i64, i64, i64)> = tips.into_iter().map(|(o, r, a, d)| (o, (r, a, d))).collect();
        let mut waits: HashMap<i64, Vec<i64>> = HashMap::new();
        for (officer, _, wait) in acknowledged {
            waits.entry(officer).or_default().push(wait);
        }
        let sent = |officer: i64, what: BroadcastKind| {
            published.iter().filter(|(o, k, _)| *o == officer && *k == what).map(|(_, _, n)| *n).sum::<i64>()
        };
        let rated = |officer: i64, rating: crate::domain::Rating| {
            ratings.iter().filter(|(o, r, _)| *o == officer && *r == rating).map(|(_, _, n)| *n).sum::<i64>()
        };
        Ok(officers
            .into_iter()
            .map(|(id, badge, name, station_code, kind)| {
                let (tips_received, tips_acknowledged, tips_resolved) = tips.get(&id).copied().unwrap_or_default();
                OfficerFigures {
                    badge,
                    name,
                    station_code,
                    owes_warnings: kind == crate::domain::OfficerKind::Police.as_str(),
                    warnings: sent(id, BroadcastKind::Warning),
                    notices: sent(id, BroadcastKind::Notice),
                    tips_received,
                    tips_acknowledged,
                    tips_resolved,
                    median_ack_minutes: waits.remove(&id).map(median_minutes),
                    rated_satisfied: rated(id, crate::domain::Rating::Satisfied),
                    rated_fair: rated(id, crate::domain::Rating::Fair),
                    rated_dissatisfied: rated(id, crate::domain::Rating::Dissatisfied),
                }
            })
            .collect())
    }

    /// Warnings and notices sent from the console in `[from, to)`, per station of the sending
    /// account: (station name, warnings, notices). They count for the station, not for an
    /// officer.
    pub async fn desk_broadcast_figures(
        &self,
        from: i64,
        to: i64,
        station_id: Option<i64>,
    ) -> anyhow::Result<Vec<(String, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT s.name, SUM(CASE WHEN b.kind = $4 THEN 1 ELSE 0 END), \
             SUM(CASE WHEN b.kind = $5 THEN 1 ELSE 0 END) \
             FROM broadcasts b JOIN web_users w ON b.sender_label = 'web:' || w.username \
             JOIN stations s ON s.id = w.station_id \
             WHERE b.sender_officer_id IS NULL AND b.status <> $6 AND b.cap_status = $7 \
             AND b.created_at >= $1 AND b.created_at < $2 AND ($3 = 0 OR w.station_id = $3) \
             GROUP BY s.code, s.name ORDER BY s.code",
        )
        .bind(from)
        .bind(to)
        .bind(station_id.unwrap_or(0))
        .bind(BroadcastKind::Warning)
        .bind(BroadcastKind::Notice)
        .bind(BroadcastStatus::Cancelled)
        .bind(CapStatus::Actual)
        .fetch_all(self.pool())
        .await?)
    }

    /// Tips per village and category since `since` (UTC ms), for one station or all.
    pub async fn village_category_counts(
        &self,
        station_id: Option<i64>,
        since: i64,
    ) -> anyhow::Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT v.name, t.category, COUNT(*) FROM tips t JOIN villages v ON v.id = t.village_id \
             JOIN offices o ON o.id = v.office_id WHERE ($1 = 0 OR o.station_id = $1) AND t.created_at >= $2 \
             GROUP BY v.name, t.category ORDER BY v.name, t.category",
        )
        .bind(station_id.unwrap_or(0))
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every village of the station (all with `None`), by code, with its tips created in
    /// `[from, to)` (see [`VillageTips`]).
    pub async fn village_tips(&self, station_id: Option<i64>, from: i64, to: i64) -> anyhow::Result<Vec<VillageTips>> {
        Ok(sqlx::query_as(
            "SELECT v.id AS village_id, v.code, v.name, COUNT(t.id) AS tips, \
             COALESCE(SUM(CASE WHEN t.reported_village_id IS NOT NULL AND t.reported_village_id <> t.village_id \
             THEN 1 ELSE 0 END), 0) AS from_elsewhere \
             FROM villages v JOIN offices o ON o.id = v.office_id \
             LEFT JOIN tips t ON t.village_id = v.id AND t.created_at >= $2 AND t.created_at < $3 \
             WHERE ($1 = 0 OR o.station_id = $1) GROUP BY v.id, v.code, v.name ORDER BY v.code",
        )
        .bind(station_id.unwrap_or(0))
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }

    /// Tips per village and month: for each village of the station (all with `None`) that
    /// had any, its name and the count in each `[bounds[i], bounds[i + 1])`.
    pub async fn village_month_counts(
        &self,
        station_id: Option<i64>,
        bounds: &[i64],
    ) -> anyhow::Result<Vec<(String, Vec<i64>)>> {
        let (Some(first), Some(last)) = (bounds.first(), bounds.last()) else { return Ok(vec![]) };
        // The bounds are our own numbers, so they are written into the SQL; one column a month.
        let columns: String = bounds
            .windows(2)
            .map(|w| format!(", SUM(CASE WHEN t.created_at >= {} AND t.created_at < {} THEN 1 ELSE 0 END)", w[0], w[1]))
            .collect();
        let sql = format!(
            "SELECT v.name{columns} FROM tips t JOIN villages v ON v.id = t.village_id \
             JOIN offices o ON o.id = v.office_id WHERE ($1 = 0 OR o.station_id = $1) \
             AND t.created_at >= {first} AND t.created_at < {last} GROUP BY v.code, v.name ORDER BY v.code"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(station_id.unwrap_or(0)).fetch_all(self.pool()).await?;
        use sqlx::Row;
        rows.iter()
            .map(|r| {
                let counts = (1..bounds.len()).map(|i| r.try_get::<Option<i64>, _>(i).map(Option::unwrap_or_default));
                Ok((r.try_get(0)?, counts.collect::<Result<_, _>>()?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_wait_is_in_rounded_minutes_for_odd_and_even_counts() {
        assert_eq!(median_minutes(vec![600_000, 60_000, 180_000]), 3);
        assert_eq!(median_minutes(vec![60_000, 120_000]), 2, "(1 + 2) / 2 = 1.5 min rounds to 2");
        assert_eq!(median_minutes(vec![29_000]), 0);
    }
}
