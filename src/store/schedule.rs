//! Runs of the scheduled jobs (each due run claimed once, by one daemon) and what the jobs ask
//! of the database beyond their own tables.

use super::Store;
use crate::domain::{BroadcastKind, BroadcastStatus, CapStatus};

impl Store {
    /// Claims one run of a scheduled job; false when that run was already done (by this or
    /// another daemon).
    pub async fn claim_schedule_run(&self, job: &str, due_at: i64, now: i64) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "INSERT INTO schedule_runs (job, due_at, ran_at) VALUES ($1, $2, $3) ON CONFLICT (job, due_at) DO NOTHING",
        )
        .bind(job)
        .bind(due_at)
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn schedule_runs(&self, job: &str) -> anyhow::Result<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT due_at FROM schedule_runs WHERE job = $1 ORDER BY due_at")
            .bind(job)
            .fetch_all(self.pool())
            .await?)
    }

    /// Villages an officer serves (any role but volunteer) that got no warning from that
    /// officer between `from` and `to`: (code, name).
    pub async fn villages_without_warning(
        &self,
        officer_id: i64,
        day: &str,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT v.code, v.name FROM assignments a JOIN villages v ON v.id = a.village_id \
             WHERE a.officer_id = $1 AND a.role <> $8 AND a.since <= $2 AND (a.until IS NULL OR a.until > $2) \
             AND NOT EXISTS (SELECT 1 FROM broadcast_villages bv JOIN broadcasts b ON b.id = bv.broadcast_id \
             WHERE bv.village_id = v.id AND b.sender_officer_id = $1 AND b.kind = $5 AND b.status <> $6 \
             AND b.cap_status = $7 AND b.created_at >= $3 AND b.created_at < $4) ORDER BY v.code",
        )
        .bind(officer_id)
        .bind(day)
        .bind(from)
        .bind(to)
        .bind(BroadcastKind::Warning)
        .bind(BroadcastStatus::Cancelled)
        .bind(CapStatus::Actual)
        .bind(crate::domain::AssignmentRole::Volunteer)
        .fetch_all(self.pool())
        .await?)
    }
}
