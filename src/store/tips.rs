//! Tips and their history; the guided conversations of private chats.
//!
//! A tip row holds what was reported, never who reported it: the reporting chat lives in
//! `tip_reporters` under an alias, so officers, staff and exports see only the alias.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::{Store, now_ms};

/// One part of a tip as the resident sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TipItem {
    Text { text: String },
    Photo { file_id: String },
    Voice { file_id: String },
    Video { file_id: String },
    Location { latitude: f64, longitude: f64 },
}

/// A tip about to be committed.
#[derive(Debug, Clone)]
pub struct NewTip {
    pub village_id: i64,
    pub category: String,
    /// `private` or `group`.
    pub source: &'static str,
    pub anonymous: bool,
    pub contact_phone: Option<String>,
    pub items: Vec<TipItem>,
    /// The chat that reported it (kept apart from the tip).
    pub reporter_platform: String,
    pub reporter_chat_id: i64,
    /// `YYYYMMDD` in the configured time zone, for the number.
    pub day: String,
}

/// What the resident gets back: the number and the password, shown once.
#[derive(Debug, Clone)]
pub struct TipReceipt {
    pub id: i64,
    pub number: String,
    pub password: String,
    pub alias: String,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct TipRow {
    pub id: i64,
    pub number: String,
    pub village_id: i64,
    pub category: String,
    pub source: String,
    pub anonymous: i64,
    pub status: String,
    pub summary: String,
    pub contact_phone: Option<String>,
    pub assigned_officer_id: Option<i64>,
    pub platform: String,
    pub ack_deadline: Option<i64>,
    pub escalation_level: i64,
    pub public_note: Option<String>,
    pub rating: Option<String>,
    pub created_at: i64,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

const TIP_COLUMNS: &str = "id, number, village_id, category, source, anonymous, status, summary, contact_phone, \
     assigned_officer_id, platform, ack_deadline, escalation_level, public_note, rating, created_at, acknowledged_at, \
     resolved_at";

/// The reporting side of a tip.
#[derive(Debug, Clone, FromRow)]
pub struct TipReporter {
    pub platform: String,
    pub chat_id: i64,
    pub alias: String,
}

fn password_hash(number: &str, password: &str) -> String {
    let digest = Sha256::digest(format!("{number}:{}", password.trim()).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored tip item: kind, text, file id, latitude and longitude in millionths of a degree.
type ItemRow = (String, Option<String>, Option<String>, Option<i64>, Option<i64>);

/// Degrees as stored: millionths of a degree (about 0.1 m).
fn to_e6(degrees: f64) -> i64 {
    (degrees * 1e6).round() as i64
}

fn from_e6(e6: i64) -> f64 {
    e6 as f64 / 1e6
}

/// The text of a tip: its text items, one per line.
pub fn summary_of(items: &[TipItem]) -> String {
    items
        .iter()
        .filter_map(|i| match i {
            TipItem::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Store {
    /// Commits a tip with its items, its reporter mapping and a `created` event, and numbers
    /// it; all in one transaction, before anyone is told about it.
    pub async fn create_tip(&self, tip: &NewTip) -> anyhow::Result<TipReceipt> {
        let (password, alias) = {
            let mut rng = rand::rng();
            let password = format!("{:06}", rng.random_range(0..1_000_000));
            let alias: String =
                (0..4).map(|_| char::from(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[rng.random_range(0..32)])).collect();
            (password, alias)
        };
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO tip_counters (day, last) VALUES ($1, 1) \
             ON CONFLICT (day) DO UPDATE SET last = tip_counters.last + 1 RETURNING last",
        )
        .bind(&tip.day)
        .fetch_one(&mut *tx)
        .await?;
        let number = format!("T{}-{:04}", tip.day, seq);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tips (number, village_id, category, platform, source, anonymous, status, summary, contact_phone, \
             password_hash, created_at, updated_at) VALUES ($1, $2, $3, $10, $4, $5, 'new', $6, $7, $8, $9, $9) RETURNING id",
        )
        .bind(&number)
        .bind(tip.village_id)
        .bind(&tip.category)
        .bind(tip.source)
        .bind(i64::from(tip.anonymous))
        .bind(summary_of(&tip.items))
        .bind(tip.contact_phone.clone())
        .bind(password_hash(&number, &password))
        .bind(now)
        .bind(&tip.reporter_platform)
        .fetch_one(&mut *tx)
        .await?;
        for (position, item) in tip.items.iter().enumerate() {
            let (kind, text, file_id, lat, lon) = match item {
                TipItem::Text { text } => ("text", Some(text.clone()), None, None, None),
                TipItem::Photo { file_id } => ("photo", None, Some(file_id.clone()), None, None),
                TipItem::Voice { file_id } => ("voice", None, Some(file_id.clone()), None, None),
                TipItem::Video { file_id } => ("video", None, Some(file_id.clone()), None, None),
                TipItem::Location { latitude, longitude } => {
                    ("location", None, None, Some(to_e6(*latitude)), Some(to_e6(*longitude)))
                }
            };
            sqlx::query(
                "INSERT INTO tip_items (tip_id, position, kind, text, file_id, latitude_e6, longitude_e6) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(position as i64)
            .bind(kind)
            .bind(text)
            .bind(file_id)
            .bind(lat)
            .bind(lon)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO tip_reporters (tip_id, platform, chat_id, alias, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(&tip.reporter_platform)
        .bind(tip.reporter_chat_id)
        .bind(&alias)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO tip_events (tip_id, at, actor, kind) VALUES ($1, $2, 'resident', 'created')")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TipReceipt { id, number, password, alias })
    }

    pub async fn tip(&self, id: i64) -> anyhow::Result<Option<TipRow>> {
        let sql = format!("SELECT {TIP_COLUMNS} FROM tips WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?)
    }

    /// The tip with this number, if the password is right; `None` for a wrong number or a
    /// wrong password alike.
    pub async fn tip_for_status(&self, number: &str, password: &str) -> anyhow::Result<Option<TipRow>> {
        let number = number.trim().to_ascii_uppercase();
        let sql = format!("SELECT {TIP_COLUMNS} FROM tips WHERE number = $1 AND password_hash = $2");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&number)
            .bind(password_hash(&number, password))
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn tip_items(&self, tip_id: i64) -> anyhow::Result<Vec<TipItem>> {
        let rows: Vec<ItemRow> = sqlx::query_as(
            "SELECT kind, text, file_id, latitude_e6, longitude_e6 FROM tip_items WHERE tip_id = $1 ORDER BY position",
        )
        .bind(tip_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, text, file, lat, lon)| match kind.as_str() {
                "text" => Some(TipItem::Text { text: text.unwrap_or_default() }),
                "photo" => Some(TipItem::Photo { file_id: file? }),
                "voice" => Some(TipItem::Voice { file_id: file? }),
                "video" => Some(TipItem::Video { file_id: file? }),
                "location" => Some(TipItem::Location { latitude: from_e6(lat?), longitude: from_e6(lon?) }),
                _ => None,
            })
            .collect())
    }

    pub async fn tip_reporter(&self, tip_id: i64) -> anyhow::Result<Option<TipReporter>> {
        Ok(sqlx::query_as("SELECT platform, chat_id, alias FROM tip_reporters WHERE tip_id = $1")
            .bind(tip_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Records that the tip was sent to `officer_id`, at position `level` of the duty chain,
    /// to be acknowledged by `deadline` (UTC ms); `kind` is `routed` or `escalated`.
    pub async fn tip_routed(
        &self,
        tip_id: i64,
        officer_id: i64,
        level: i64,
        deadline: i64,
        kind: &str,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE tips SET assigned_officer_id = $1, escalation_level = $2, ack_deadline = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(officer_id)
        .bind(level)
        .bind(deadline)
        .bind(now)
        .bind(tip_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO tip_events (tip_id, at, actor, officer_id, kind) VALUES ($1, $2, 'system', $3, $4)")
            .bind(tip_id)
            .bind(now)
            .bind(officer_id)
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves a tip's acknowledgement deadline (a reminder round that found nobody new).
    pub async fn set_ack_deadline(&self, tip_id: i64, deadline: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE tips SET ack_deadline = $1 WHERE id = $2")
            .bind(deadline)
            .bind(tip_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Tips of `platform` still waiting for acknowledgement whose deadline has passed.
    pub async fn overdue_tips(&self, platform: &str, now: i64) -> anyhow::Result<Vec<TipRow>> {
        let sql = format!(
            "SELECT {TIP_COLUMNS} FROM tips WHERE status = 'new' AND platform = $1 AND ack_deadline IS NOT NULL \
             AND ack_deadline <= $2 ORDER BY ack_deadline, id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(platform).bind(now).fetch_all(self.pool()).await?)
    }

    /// Moves a tip from one of the `from` statuses to `to` on behalf of `officer_id`, with an
    /// event; `false` when the tip was not in one of those statuses (a button pressed twice).
    pub async fn change_tip_status(
        &self,
        tip_id: i64,
        officer_id: i64,
        from: &[&str],
        to: &str,
        note: Option<&str>,
    ) -> anyhow::Result<bool> {
        self.change_tip_status_by(tip_id, Some(officer_id), "officer", from, to, note).await
    }

    /// [`Store::change_tip_status`] by anyone: `actor` names them in the timeline
    /// (`officer`, `staff:NAME` …), `officer_id` when they are an officer.
    pub async fn change_tip_status_by(
        &self,
        tip_id: i64,
        officer_id: Option<i64>,
        actor: &str,
        from: &[&str],
        to: &str,
        note: Option<&str>,
    ) -> anyhow::Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM tips WHERE id = $1").bind(tip_id).fetch_optional(&mut *tx).await?;
        if !current.is_some_and(|s| from.contains(&s.as_str())) {
            return Ok(false);
        }
        let stamp = match to {
            "acknowledged" => "acknowledged_at = $2, ",
            "resolved" | "rejected" => "resolved_at = $2, ",
            _ => "",
        };
        let sql = format!(
            "UPDATE tips SET status = $1, {stamp}assigned_officer_id = COALESCE(assigned_officer_id, $3), \
             public_note = COALESCE($4, public_note), updated_at = $2 WHERE id = $5"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to)
            .bind(now)
            .bind(officer_id)
            .bind(note)
            .bind(tip_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tip_events (tip_id, at, actor, officer_id, kind, detail) VALUES ($1, $2, $6, $3, $4, $5)",
        )
        .bind(tip_id)
        .bind(now)
        .bind(officer_id)
        .bind(to)
        .bind(note.unwrap_or(""))
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks `tip_id` as a duplicate of `into_id` (staff `/merge`), if it is still open.
    pub async fn merge_tip(&self, tip_id: i64, into_id: i64, officer_id: i64) -> anyhow::Result<bool> {
        self.merge_tip_by(tip_id, into_id, Some(officer_id), "officer").await
    }

    /// [`Store::merge_tip`] by anyone (see [`Store::change_tip_status_by`]).
    pub async fn merge_tip_by(
        &self,
        tip_id: i64,
        into_id: i64,
        officer_id: Option<i64>,
        actor: &str,
    ) -> anyhow::Result<bool> {
        let open = ["new", "acknowledged", "in_progress"];
        let merged = self.change_tip_status_by(tip_id, officer_id, actor, &open, "merged", None).await?;
        if merged {
            sqlx::query("UPDATE tips SET merged_into = $1 WHERE id = $2")
                .bind(into_id)
                .bind(tip_id)
                .execute(self.pool())
                .await?;
        }
        Ok(merged)
    }

    /// Records an event of a tip (a relayed message, …).
    pub async fn tip_event(
        &self,
        tip_id: i64,
        actor: &str,
        officer_id: Option<i64>,
        kind: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO tip_events (tip_id, at, actor, officer_id, kind, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tip_id)
        .bind(now_ms())
        .bind(actor)
        .bind(officer_id)
        .bind(kind)
        .bind(detail)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Stores the tipster's rating once; `false` if the tip was already rated.
    pub async fn rate_tip(&self, tip_id: i64, rating: &str) -> anyhow::Result<bool> {
        let n = sqlx::query("UPDATE tips SET rating = $1, updated_at = $2 WHERE id = $3 AND rating IS NULL")
            .bind(rating)
            .bind(now_ms())
            .bind(tip_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 1 {
            self.tip_event(tip_id, "resident", None, "rated", rating).await?;
        }
        Ok(n == 1)
    }

    /// The latest tips this chat reported (while it has not asked to be forgotten).
    pub async fn tips_of_reporter(&self, platform: &str, chat_id: i64, limit: i64) -> anyhow::Result<Vec<TipRow>> {
        let columns = TIP_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {columns} FROM tip_reporters r JOIN tips t ON t.id = r.tip_id \
             WHERE r.platform = $1 AND r.chat_id = $2 ORDER BY t.id DESC LIMIT $3"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(platform)
            .bind(chat_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// How many tips this chat reported since `since` (UTC ms).
    pub async fn tips_reported_since(&self, platform: &str, chat_id: i64, since: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM tip_reporters r JOIN tips t ON t.id = r.tip_id \
             WHERE r.platform = $1 AND r.chat_id = $2 AND t.created_at >= $3",
        )
        .bind(platform)
        .bind(chat_id)
        .bind(since)
        .fetch_one(self.pool())
        .await?)
    }

    /// `/stop`: forgets which chat reported which tip, for every tip of this chat. Returns how
    /// many mappings were deleted.
    pub async fn forget_reporter(&self, platform: &str, chat_id: i64) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM tip_reporters WHERE platform = $1 AND chat_id = $2")
            .bind(platform)
            .bind(chat_id)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// The kinds of the events of a tip, oldest first.
    pub async fn tip_event_kinds(&self, tip_id: i64) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT kind FROM tip_events WHERE tip_id = $1 ORDER BY at, id")
            .bind(tip_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// The account of `officer_id` on `platform`, if enrolled there.
    pub async fn officer_account(&self, officer_id: i64, platform: &str) -> anyhow::Result<Option<i64>> {
        let load = async {
            Ok(sqlx::query_scalar("SELECT user_id FROM officer_identities WHERE officer_id = $1 AND platform = $2")
                .bind(officer_id)
                .bind(platform)
                .fetch_optional(self.pool())
                .await?)
        };
        self.cache.get(&self.cache.accounts, (officer_id, platform.to_string()), load).await
    }

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
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn end_conversation(&self, platform: &str, user_id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM conversations WHERE platform = $1 AND user_id = $2")
            .bind(platform)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// A tip as staff list and export it: no reporter, only the alias-free facts.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct TipListRow {
    pub number: String,
    pub created_at: i64,
    pub station_code: String,
    pub village_code: String,
    pub village_name: String,
    pub category: String,
    pub source: String,
    pub anonymous: i64,
    pub status: String,
    pub officer_badge: Option<String>,
    pub officer_name: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub rating: Option<String>,
    pub summary: String,
    /// Still new past its acknowledgement deadline.
    pub overdue: i64,
}

/// Which tips to list.
#[derive(Debug, Clone, Default)]
pub struct TipFilter {
    pub station: Option<String>,
    /// A status, or `open` for new, acknowledged and in progress.
    pub status: Option<String>,
    /// Created at or after this instant (UTC ms).
    pub since_ms: Option<i64>,
    /// Only this village (code).
    pub village: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only tips assigned to this officer (badge).
    pub officer: Option<String>,
    /// Created before this instant (UTC ms).
    pub until_ms: Option<i64>,
    /// Only tips not acknowledged by their deadline (as of this instant, UTC ms).
    pub overdue_at: Option<i64>,
}

impl Store {
    /// Tips matching `filter`, newest first.
    pub async fn list_tips(&self, filter: &TipFilter) -> anyhow::Result<Vec<TipListRow>> {
        let status = filter.status.clone().unwrap_or_default();
        Ok(sqlx::query_as(
            "SELECT t.number, t.created_at, s.code AS station_code, v.code AS village_code, v.name AS village_name, \
             t.category, t.source, t.anonymous, t.status, f.badge AS officer_badge, f.name AS officer_name, \
             t.acknowledged_at, t.resolved_at, t.rating, t.summary, \
             CASE WHEN t.status = 'new' AND t.ack_deadline IS NOT NULL AND t.ack_deadline < $9 THEN 1 ELSE 0 END AS overdue \
             FROM tips t JOIN villages v ON v.id = t.village_id JOIN offices o ON o.id = v.office_id \
             JOIN stations s ON s.id = o.station_id LEFT JOIN officers f ON f.id = t.assigned_officer_id \
             WHERE ($1 = '' OR s.code = $1) \
             AND ($2 = '' OR t.status = $2 OR ($2 = 'open' AND t.status IN ('new', 'acknowledged', 'in_progress'))) \
             AND t.created_at >= $3 AND ($4 = '' OR v.code = $4) AND ($5 = '' OR t.category = $5) \
             AND ($6 = '' OR f.badge = $6) AND t.created_at < $7 \
             AND ($8 = 0 OR (t.status = 'new' AND t.ack_deadline IS NOT NULL AND t.ack_deadline < $9)) \
             ORDER BY t.created_at DESC, t.id DESC",
        )
        .bind(filter.station.clone().unwrap_or_default())
        .bind(status)
        .bind(filter.since_ms.unwrap_or(0))
        .bind(filter.village.clone().unwrap_or_default())
        .bind(filter.category.clone().unwrap_or_default())
        .bind(filter.officer.clone().unwrap_or_default())
        .bind(filter.until_ms.unwrap_or(i64::MAX))
        .bind(i64::from(filter.overdue_at.is_some()))
        .bind(filter.overdue_at.unwrap_or_else(now_ms))
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn tip_by_number(&self, number: &str) -> anyhow::Result<Option<TipRow>> {
        let sql = format!("SELECT {TIP_COLUMNS} FROM tips WHERE number = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(number.trim().to_ascii_uppercase())
            .fetch_optional(self.pool())
            .await?)
    }

    /// The timeline of a tip: (at, actor, officer badge, kind, detail), oldest first.
    pub async fn tip_timeline(
        &self,
        tip_id: i64,
    ) -> anyhow::Result<Vec<(i64, String, Option<String>, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT e.at, e.actor, f.badge, e.kind, e.detail FROM tip_events e LEFT JOIN officers f ON f.id = e.officer_id \
             WHERE e.tip_id = $1 ORDER BY e.at, e.id",
        )
        .bind(tip_id)
        .fetch_all(self.pool())
        .await?)
    }
}
