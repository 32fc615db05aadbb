//! Trust data: station grants and the actor they make, the updates already handled, the
//! daemons' heartbeats, and the retention purges (the audit log's among them: its records
//! are written in `audit.rs`).

use anyhow::Context as _;
use serde::Serialize;

use super::{Store, batch};
use crate::authz::{Actor, Role};
use crate::domain::{AssignmentRole, Grant, OfficerKind, TipStatus};

/// What a retention run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Tipster mappings (`tip_reporters`) of closed tips.
    pub relays: u64,
    /// Tips (with their items and events).
    pub tips: u64,
    pub audit: u64,
    pub handled_updates: u64,
}

/// Tip states after which nobody works the tip any more, as an SQL list (`('resolved', …)`).
fn closed() -> String {
    let codes: Vec<String> = TipStatus::ALL.iter().filter(|s| !s.is_open()).map(|s| format!("'{s}'")).collect();
    format!("({})", codes.join(", "))
}

impl Store {
    /// The actor an officer is: role from their kind and grant, station, villages served on
    /// `day`.
    pub async fn actor_of_officer(&self, officer_id: i64, day: &str) -> anyhow::Result<Actor> {
        type Row = (String, OfficerKind, i64, Option<Grant>, Option<i64>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT f.badge, f.kind, f.station_id, g.role, g.station_id FROM officers f \
             LEFT JOIN staff_grants g ON g.officer_id = f.id WHERE f.id = $1",
        )
        .bind(officer_id)
        .fetch_optional(self.pool())
        .await?;
        let Some((badge, kind, station_id, grant, grant_station)) = row else { return Ok(Actor::resident()) };
        let villages: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT village_id FROM assignments WHERE officer_id = $1 AND role <> $3 \
             AND since <= $2 AND (until IS NULL OR until > $2)",
        )
        .bind(officer_id)
        .bind(day)
        .bind(AssignmentRole::Volunteer)
        .fetch_all(self.pool())
        .await?;
        let role = Role::of_officer(kind, grant);
        Ok(Actor {
            officer_id: Some(officer_id),
            badge: Some(badge),
            account: None,
            role,
            station_id: Some(grant_station.unwrap_or(station_id)),
            villages,
        })
    }

    /// Gives the officer with `badge` a station role (`staff`, `admin` of their own station,
    /// or `system`); `None` removes it. False when there is no such officer.
    pub async fn set_grant(&self, badge: &str, role: Option<Grant>, now: i64) -> anyhow::Result<bool> {
        let Some(officer) = self.officer_by_badge(badge).await? else { return Ok(false) };
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM staff_grants WHERE officer_id = $1").bind(officer.id).execute(&mut *tx).await?;
        if let Some(role) = role {
            let station = (role != Grant::System).then_some(officer.station_id);
            sqlx::query("INSERT INTO staff_grants (officer_id, role, station_id, granted_at) VALUES ($1, $2, $3, $4)")
                .bind(officer.id)
                .bind(role)
                .bind(station)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records that this daemon takes update `update_id`; false when another (or an earlier
    /// run) already did. Claims made at the same moment are recorded together
    /// ([`commit_claims`]).
    pub async fn claim_update(&self, platform: &str, update_id: i64, now: i64) -> anyhow::Result<bool> {
        let claim = Claim { platform: platform.to_string(), update_id, at: now };
        batch::submit(&self.claim_jobs, claim, "update record").await
    }

    /// This daemon's sign of life.
    pub async fn heartbeat(&self, daemon: &str, host: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO daemons (id, host, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(daemon)
        .bind(host)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// How many daemons have given a sign of life since `since`.
    pub async fn live_daemons(&self, since: i64) -> anyhow::Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM daemons WHERE heartbeat_at >= $1")
            .bind(since)
            .fetch_one(self.pool())
            .await
            .context("Failed to count the live daemons")
    }

    /// Every daemon run recorded but `me`.
    pub async fn daemons_except(&self, me: &str) -> anyhow::Result<Vec<String>> {
        sqlx::query_scalar("SELECT id FROM daemons WHERE id <> $1")
            .bind(me)
            .fetch_all(self.pool())
            .await
            .context("Failed to list the daemons")
    }

    /// The daemon runs recorded on `host`.
    pub async fn daemons_on_host(&self, host: &str) -> anyhow::Result<Vec<String>> {
        sqlx::query_scalar("SELECT id FROM daemons WHERE host = $1")
            .bind(host)
            .fetch_all(self.pool())
            .await
            .context("Failed to list the daemons of this host")
    }

    /// Deliveries in flight for the runs `ids` (known dead) are pending again, and the runs
    /// are forgotten.
    pub async fn requeue_claimed_by(&self, ids: &[String]) -> anyhow::Result<u64> {
        let mut tx = self.writer().begin().await?;
        let mut n = 0;
        for id in ids {
            n += sqlx::query(
                "UPDATE broadcast_deliveries SET state = 'pending', claimed_at = NULL, claimed_by = NULL \
                 WHERE state = 'sending' AND claimed_by = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("Failed to requeue a dead run's deliveries")?
            .rows_affected();
            sqlx::query("DELETE FROM daemons WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Removes this daemon from the table at a clean stop.
    pub async fn sign_off(&self, daemon: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM daemons WHERE id = $1").bind(daemon).execute(self.writer()).await?;
        Ok(())
    }

    /// The retention purges, each in its own transaction:
    /// - the tipster mapping of a tip closed more than `relay_ms` ago (nobody can be answered
    ///   or asked to rate it after that);
    /// - tips closed more than `tips_ms` ago, with their items and events;
    /// - audit records older than `audit_ms`;
    /// - handled-update records older than a week.
    pub async fn purge_expired(&self, now: i64, relay_ms: i64, tips_ms: i64, audit_ms: i64) -> anyhow::Result<Purged> {
        let mut purged = Purged::default();
        let closed_before = |ms: i64| now - ms;
        let closed = closed();

        let mut tx = self.begin_write().await?;
        purged.relays = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM tip_reporters WHERE tip_id IN (SELECT id FROM tips WHERE status IN {closed} \
             AND COALESCE(resolved_at, updated_at) < $1)"
        )))
        .bind(closed_before(relay_ms))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;

        let mut tx = self.begin_write().await?;
        let old: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM tips WHERE status IN {closed} AND COALESCE(resolved_at, updated_at) < $1"
        )))
        .bind(closed_before(tips_ms))
        .fetch_all(&mut *tx)
        .await?;
        for chunk in old.chunks(500) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            for sql in [
                format!("UPDATE tips SET merged_into = NULL WHERE merged_into IN ({list})"),
                format!("DELETE FROM tip_items WHERE tip_id IN ({list})"),
                format!("DELETE FROM tip_events WHERE tip_id IN ({list})"),
                format!("DELETE FROM tip_reporters WHERE tip_id IN ({list})"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false).execute(&mut *tx).await?;
            }
            purged.tips += sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM tips WHERE id IN ({list})")))
                .persistent(false)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;

        // Old audit records go in id order, up to the first that is still kept; the hash of
        // the last one removed becomes the anchor the remaining chain starts from.
        let mut tx = self.begin_write().await?;
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7272027)").execute(&mut *tx).await?;
        }
        let kept: Option<i64> = sqlx::query_scalar("SELECT MIN(id) FROM audit_log WHERE at >= $1")
            .bind(now - audit_ms)
            .fetch_one(&mut *tx)
            .await?;
        let kept = kept.unwrap_or(i64::MAX);
        let last: Option<(Option<String>, i64)> =
            sqlx::query_as("SELECT hash, at FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT 1")
                .bind(kept)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((Some(hash), at)) = last {
            sqlx::query(
                "INSERT INTO audit_anchor (id, hash, purged_through) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, purged_through = excluded.purged_through",
            )
            .bind(hash)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        purged.audit =
            sqlx::query("DELETE FROM audit_log WHERE id < $1").bind(kept).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        purged.handled_updates = sqlx::query("DELETE FROM handled_updates WHERE at < $1")
            .bind(now - 7 * 86_400_000)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(purged)
    }
}

/// An update a daemon is about to handle.
#[derive(Debug)]
pub(crate) struct Claim {
    platform: String,
    update_id: i64,
    at: i64,
}

/// Most claims one statement records.
const MAX_CLAIMS_PER_COMMIT: usize = 128;

/// The claim writer of a [`Store`]: records the claims that arrive together in one
/// multi-row `INSERT … ON CONFLICT DO NOTHING` (`batch.rs`). One commit an update made each
/// update wait for PostgreSQL's WAL flush: contact questions on PostgreSQL ran at 0.28 of
/// the echo ceiling (BENCHMARKS.md).
pub(crate) async fn commit_claims(
    writer: sqlx::AnyPool,
    backend: super::Backend,
    jobs: tokio::sync::mpsc::UnboundedReceiver<batch::Job<Claim, bool>>,
) {
    batch::run(jobs, MAX_CLAIMS_PER_COMMIT, "update record", |claims: &[Claim]| {
        let writer = writer.clone();
        Box::pin(async move {
            let sql = format!(
                "INSERT INTO handled_updates (platform, update_id, at) VALUES {} \
                 ON CONFLICT (platform, update_id) DO NOTHING RETURNING platform, update_id",
                batch::placeholders(backend, claims.len(), 3)
            );
            let mut insert = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql)).persistent(false);
            for c in claims {
                insert = insert.bind(&c.platform).bind(c.update_id).bind(c.at);
            }
            let mut recorded: std::collections::HashSet<(String, i64)> =
                insert.fetch_all(&writer).await?.into_iter().collect();
            // The same update twice in one group (a webhook delivered again at once): the
            // first takes it.
            Ok(claims.iter().map(|c| recorded.remove(&(c.platform.clone(), c.update_id))).collect())
        })
    })
    .await
}
