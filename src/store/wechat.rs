//! What the WeChat channel (WeCom customer service) keeps: residents' string ids mapped to
//! the integer ids the core uses, the `sync_msg` cursor, the message ids already handled, and
//! the 48-hour window with the messages waiting for it to open again.

use sqlx::Row;

use super::Store;

/// WeCom customer service may send at most this many messages …
pub const WINDOW_MESSAGES: i64 = 5;
/// … within this long after the resident's last message.
pub const WINDOW_MS: i64 = 48 * 3_600_000;

impl Store {
    /// Whether a message to resident `user_id` could go out now (their window is open and
    /// not used up).
    pub async fn wechat_window_has_room(&self, user_id: i64, now: i64) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM wechat_windows WHERE user_id = $1 AND last_inbound_at >= $2 AND sent < $3",
        )
        .bind(user_id)
        .bind(now - WINDOW_MS)
        .bind(WINDOW_MESSAGES)
        .fetch_one(self.writer())
        .await?;
        Ok(n > 0)
    }

    /// The integer id of `external_id` on `platform`, made on first sight.
    pub async fn external_user(&self, platform: &str, external_id: &str, now: i64) -> anyhow::Result<i64> {
        sqlx::query(
            "INSERT INTO external_ids (platform, external_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (platform, external_id) DO NOTHING",
        )
        .bind(platform)
        .bind(external_id)
        .bind(now)
        .execute(self.writer())
        .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM external_ids WHERE platform = $1 AND external_id = $2")
            .bind(platform)
            .bind(external_id)
            .fetch_one(self.writer())
            .await?;
        Ok(id)
    }

    /// The platform's own id of integer id `id`.
    pub async fn external_id_of(&self, platform: &str, id: i64) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT external_id FROM external_ids WHERE platform = $1 AND id = $2")
            .bind(platform)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Where `kf/sync_msg` left off for a customer-service account.
    pub async fn wechat_cursor(&self, open_kfid: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT cursor FROM wechat_cursors WHERE open_kfid = $1")
            .bind(open_kfid)
            .fetch_optional(self.writer())
            .await?)
    }

    pub async fn set_wechat_cursor(&self, open_kfid: &str, cursor: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO wechat_cursors (open_kfid, cursor, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (open_kfid) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(open_kfid)
        .bind(cursor)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// True the first time `msgid` is seen; false when it was handled before. Ids older than
    /// a week are forgotten.
    pub async fn wechat_first_seen(&self, msgid: &str, now: i64) -> anyhow::Result<bool> {
        const WEEK_MS: i64 = 7 * 24 * 3_600_000;
        sqlx::query("DELETE FROM wechat_seen WHERE seen_at < $1").bind(now - WEEK_MS).execute(self.writer()).await?;
        let done =
            sqlx::query("INSERT INTO wechat_seen (msgid, seen_at) VALUES ($1, $2) ON CONFLICT (msgid) DO NOTHING")
                .bind(msgid)
                .bind(now)
                .execute(self.writer())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The resident wrote: the window opens again (no message sent in it yet).
    pub async fn wechat_window_opened(&self, user_id: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO wechat_windows (user_id, last_inbound_at, sent) VALUES ($1, $2, 0) \
             ON CONFLICT (user_id) DO UPDATE SET last_inbound_at = excluded.last_inbound_at, sent = 0",
        )
        .bind(user_id)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Takes one of the window's sends when the window is open (the resident wrote within
    /// `window_ms` and fewer than `max` messages went out since); false when it is not.
    pub async fn wechat_take_send(&self, user_id: i64, now: i64, window_ms: i64, max: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE wechat_windows SET sent = sent + 1 WHERE user_id = $1 AND last_inbound_at >= $2 AND sent < $3",
        )
        .bind(user_id)
        .bind(now - window_ms)
        .bind(max)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps a message (the platform's JSON body) until the resident writes again.
    pub async fn wechat_hold(&self, user_id: i64, body: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO wechat_held (user_id, body, created_at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(body)
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The messages held for a resident, oldest first, with their row ids.
    pub async fn wechat_held(&self, user_id: i64) -> anyhow::Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT id, body FROM wechat_held WHERE user_id = $1 ORDER BY id")
            .bind(user_id)
            .fetch_all(self.writer())
            .await?;
        Ok(rows.iter().map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))).collect())
    }

    /// A held message went out.
    pub async fn wechat_release(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM wechat_held WHERE id = $1").bind(id).execute(self.writer()).await?;
        Ok(())
    }
}
