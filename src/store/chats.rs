//! Group chats the bot is in and what each is bound to; the village a resident chose in a
//! private chat; sends that failed for good. Ordinary group messages are never stored.

use serde::Serialize;
use sqlx::FromRow;

use super::{Store, now_ms};

/// A group chat the bot knows.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct ChatRow {
    pub id: i64,
    pub platform: String,
    pub chat_id: i64,
    pub title: String,
    pub village_id: Option<i64>,
    pub station_id: Option<i64>,
    pub bound_by: Option<i64>,
    pub bound_at: Option<i64>,
    #[sqlx(try_from = "super::mapping::Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub active: bool,
    #[sqlx(try_from = "super::mapping::Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub bot_admin: bool,
}

const CHAT_COLUMNS: &str =
    "id, platform, chat_id, title, village_id, station_id, bound_by, bound_at, active, bot_admin";

impl Store {
    pub async fn chat(&self, platform: &str, chat_id: i64) -> anyhow::Result<Option<ChatRow>> {
        let load = async {
            let sql = format!("SELECT {CHAT_COLUMNS} FROM chats WHERE platform = $1 AND chat_id = $2");
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(platform)
                .bind(chat_id)
                .fetch_optional(self.pool())
                .await?)
        };
        match self.cache.ready().await {
            Some(registry) => Ok(registry.chat(platform, chat_id)),
            None => load.await,
        }
    }

    /// Records that the bot is (again) in a group, keeping any binding it had.
    pub async fn chat_joined(&self, platform: &str, chat_id: i64, title: &str) -> anyhow::Result<ChatRow> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO chats (platform, chat_id, title, active, added_at, updated_at) VALUES ($1, $2, $3, 1, $4, $4) \
             ON CONFLICT (platform, chat_id) DO UPDATE SET title = excluded.title, active = 1, updated_at = excluded.updated_at",
        )
        .bind(platform)
        .bind(chat_id)
        .bind(title)
        .bind(now)
        .execute(self.writer())
        .await?;
        self.registry_changed();
        Ok(self.chat(platform, chat_id).await?.expect("just upserted"))
    }

    /// Records whether the bot is an admin of a group.
    pub async fn set_bot_admin(&self, platform: &str, chat_id: i64, admin: bool) -> anyhow::Result<()> {
        sqlx::query("UPDATE chats SET bot_admin = $3, updated_at = $4 WHERE platform = $1 AND chat_id = $2")
            .bind(platform)
            .bind(chat_id)
            .bind(i64::from(admin))
            .bind(now_ms())
            .execute(self.writer())
            .await?;
        self.registry_changed();
        Ok(())
    }

    /// Marks a group the bot left or was removed from; the binding is kept for history and
    /// comes back if the bot is added again.
    pub async fn chat_left(&self, platform: &str, chat_id: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE chats SET active = 0, updated_at = $3 WHERE platform = $1 AND chat_id = $2")
            .bind(platform)
            .bind(chat_id)
            .bind(now_ms())
            .execute(self.writer())
            .await?;
        self.registry_changed();
        Ok(())
    }

    /// Binds a group to a village (creating the chat row if the bot never saw it join).
    /// `officer_id` is who bound it (`None`: the CLI or the demo).
    pub async fn bind_chat_to_village(
        &self,
        platform: &str,
        chat_id: i64,
        title: &str,
        village_id: i64,
        officer_id: Option<i64>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO chats (platform, chat_id, title, village_id, station_id, bound_by, bound_at, active, added_at, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, 1, $6, $6) \
             ON CONFLICT (platform, chat_id) DO UPDATE SET village_id = excluded.village_id, station_id = NULL, \
             bound_by = excluded.bound_by, bound_at = excluded.bound_at, active = 1, updated_at = excluded.updated_at",
        )
        .bind(platform)
        .bind(chat_id)
        .bind(title)
        .bind(village_id)
        .bind(officer_id)
        .bind(now)
        .execute(self.writer())
        .await?;
        self.registry_changed();
        Ok(())
    }

    /// Binds a group as the staff group of a station (new-tip and escalation notices, staff
    /// commands).
    pub async fn bind_chat_to_station(
        &self,
        platform: &str,
        chat_id: i64,
        title: &str,
        station_id: i64,
        officer_id: Option<i64>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO chats (platform, chat_id, title, village_id, station_id, bound_by, bound_at, active, added_at, updated_at) \
             VALUES ($1, $2, $3, NULL, $4, $5, $6, 1, $6, $6) \
             ON CONFLICT (platform, chat_id) DO UPDATE SET village_id = NULL, station_id = excluded.station_id, \
             bound_by = excluded.bound_by, bound_at = excluded.bound_at, active = 1, updated_at = excluded.updated_at",
        )
        .bind(platform)
        .bind(chat_id)
        .bind(title)
        .bind(station_id)
        .bind(officer_id)
        .bind(now)
        .execute(self.writer())
        .await?;
        self.registry_changed();
        Ok(())
    }

    /// The active staff groups of a station on a platform.
    pub async fn station_chats(&self, station_id: i64, platform: &str) -> anyhow::Result<Vec<i64>> {
        let load = async {
            Ok(sqlx::query_scalar(
                "SELECT chat_id FROM chats WHERE station_id = $1 AND platform = $2 AND active = 1 ORDER BY chat_id",
            )
            .bind(station_id)
            .bind(platform)
            .fetch_all(self.pool())
            .await?)
        };
        match self.cache.ready().await {
            Some(registry) => Ok(registry.station_chats(station_id, platform)),
            None => load.await,
        }
    }

    pub async fn unbind_chat(&self, platform: &str, chat_id: i64) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "UPDATE chats SET village_id = NULL, station_id = NULL, bound_by = NULL, bound_at = NULL, updated_at = $3 \
             WHERE platform = $1 AND chat_id = $2",
        )
        .bind(platform)
        .bind(chat_id)
        .bind(now_ms())
        .execute(self.writer())
        .await?
        .rows_affected();
        self.registry_changed();
        Ok(n > 0)
    }

    /// A group became a supergroup with a new id: the binding moves to the new id. If the
    /// bot already met the new id (its own row), the old row's binding wins and the stray
    /// row goes.
    pub async fn chat_migrated(&self, platform: &str, old_id: i64, new_id: i64) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        // Telegram tells both chats, so two handlers may run this at once. Touching the old
        // row first locks it (PostgreSQL; SQLite writers are serial anyway): the second
        // waits, then finds no old row and leaves the migrated one alone.
        let old = sqlx::query("UPDATE chats SET updated_at = $3 WHERE platform = $1 AND chat_id = $2")
            .bind(platform)
            .bind(old_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if old > 0 {
            sqlx::query("DELETE FROM chats WHERE platform = $1 AND chat_id = $2")
                .bind(platform)
                .bind(new_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE chats SET chat_id = $3, active = 1, updated_at = $4 WHERE platform = $1 AND chat_id = $2",
            )
            .bind(platform)
            .bind(old_id)
            .bind(new_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.registry_changed();
        Ok(())
    }

    /// All group chats of a platform (all platforms when `None`), bound ones first.
    pub async fn list_chats(&self, platform: Option<&str>) -> anyhow::Result<Vec<ChatRow>> {
        let sql = format!(
            "SELECT {CHAT_COLUMNS} FROM chats WHERE ($1 = '' OR platform = $1) \
             ORDER BY CASE WHEN village_id IS NULL THEN 1 ELSE 0 END, platform, chat_id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(platform.unwrap_or("")).fetch_all(self.pool()).await?)
    }

    /// The village a resident chose in a private chat.
    pub async fn resident_village(&self, platform: &str, user_id: i64) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT village_id FROM resident_villages WHERE platform = $1 AND user_id = $2")
            .bind(platform)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn set_resident_village(&self, platform: &str, user_id: i64, village_id: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO resident_villages (platform, user_id, village_id, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (platform, user_id) DO UPDATE SET village_id = excluded.village_id, updated_at = excluded.updated_at",
        )
        .bind(platform)
        .bind(user_id)
        .bind(village_id)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records a send that failed for good: where, what kind of error, a redacted detail.
    pub async fn record_send_failure(
        &self,
        platform: &str,
        chat_id: i64,
        kind: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO send_failures (platform, chat_id, error_kind, detail, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(platform)
        .bind(chat_id)
        .bind(kind)
        .bind(detail)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Failed sends, newest first (for the CLI and the tests).
    pub async fn send_failures(&self) -> anyhow::Result<Vec<(String, i64, String, String)>> {
        Ok(sqlx::query_as("SELECT platform, chat_id, error_kind, detail FROM send_failures ORDER BY id DESC")
            .fetch_all(self.pool())
            .await?)
    }
}
