//! Messages waiting for a daemon: actions decided where no channel runs (the command line)
//! are stored as JSON by platform, and a daemon serving that platform takes them (each once,
//! even with several daemons) and sends them. The store keeps them opaque; the core writes
//! and reads them.

use super::Store;

impl Store {
    /// Queues `actions` (serialised) for `platform`, in order.
    pub async fn queue_outbound(&self, platform: &str, actions: &[String], now: i64) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        for action in actions {
            sqlx::query("INSERT INTO queued_outbound (platform, action, created_at) VALUES ($1, $2, $3)")
                .bind(platform)
                .bind(action)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes up to `limit` queued actions for `platform`, oldest first; they are gone from the
    /// queue once taken, so no other daemon sends them again.
    pub async fn take_queued_outbound(&self, platform: &str, limit: i64) -> anyhow::Result<Vec<String>> {
        let mut rows: Vec<(i64, String)> = sqlx::query_as(
            "DELETE FROM queued_outbound WHERE id IN \
             (SELECT id FROM queued_outbound WHERE platform = $1 ORDER BY id LIMIT $2) RETURNING id, action",
        )
        .bind(platform)
        .bind(limit)
        .fetch_all(self.writer())
        .await?;
        rows.sort_unstable_by_key(|(id, _)| *id);
        Ok(rows.into_iter().map(|(_, action)| action).collect())
    }
}
