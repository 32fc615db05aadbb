//! The guided conversations of private chats: one state per person and platform, with its
//! expiry.

use super::Store;

impl Store {
    /// The conversation in progress with a person, unless it has expired.
    /// The conversation with a person and whether it had expired by `now` (UTC ms).
    pub async fn conversation(&self, platform: &str, user_id: i64, now: i64) -> anyhow::Result<Option<(String, bool)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT state, expires_at FROM conversations WHERE platform = $1 AND user_id = $2")
                .bind(platform)
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(state, expires_at)| (state, expires_at <= now)))
    }

    /// Stores a conversation's state, to expire `ttl_ms` after `now` (UTC ms, the core's clock).
    pub async fn save_conversation(
        &self,
        platform: &str,
        user_id: i64,
        state: &str,
        now: i64,
        ttl_ms: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO conversations (platform, user_id, state, updated_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (platform, user_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, \
             expires_at = excluded.expires_at",
        )
        .bind(platform)
        .bind(user_id)
        .bind(state)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn end_conversation(&self, platform: &str, user_id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM conversations WHERE platform = $1 AND user_id = $2")
            .bind(platform)
            .bind(user_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}
