//! Tips and their history (the guided conversations of private chats are in
//! `conversations.rs`).
//!
//! A tip row holds what was reported, never who reported it: the reporting chat lives in
//! `tip_reporters` under an alias, so officers, staff and exports see only the alias.

use anyhow::Context as _;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{Store, batch, now_ms};
use crate::domain::{Rating, TipSource, TipStatus};

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
    /// The village responsible: where the tip's location lies, else where it was reported.
    pub village_id: i64,
    /// The village the tip was reported from (its group's, or the one the resident chose),
    /// when its location put it in another village; `None` otherwise.
    pub reported_village_id: Option<i64>,
    pub category: String,
    pub source: TipSource,
    pub anonymous: bool,
    pub contact_phone: Option<String>,
    pub items: Vec<TipItem>,
    /// The chat that reported it (kept apart from the tip).
    pub reporter_platform: String,
    pub reporter_chat_id: i64,
    /// `YYYYMMDD` in the configured time zone, for the number.
    pub day: String,
}

/// The officer a new tip goes to, chosen from the duty chain before it is committed.
#[derive(Debug, Clone, Copy)]
pub struct TipRoute {
    pub officer_id: i64,
    /// Position in the village's duty chain (0: the first officer).
    pub level: i64,
    /// UTC ms by which the officer must acknowledge it, or it goes on up the chain.
    pub ack_deadline: i64,
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
    /// The village responsible (whose officers the tip goes to).
    pub village_id: i64,
    /// The village it was reported from, when its location put it in `village_id` instead.
    pub reported_village_id: Option<i64>,
    pub category: String,
    pub source: TipSource,
    #[sqlx(try_from = "super::mapping::Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub anonymous: bool,
    pub status: TipStatus,
    pub summary: String,
    /// The phone the tipster left, sealed ([`Store::tip_phone`] opens it).
    #[sqlx(rename = "contact_phone")]
    pub sealed_phone: Option<String>,
    pub assigned_officer_id: Option<i64>,
    pub platform: String,
    pub ack_deadline: Option<i64>,
    pub escalation_level: i64,
    pub public_note: Option<String>,
    pub rating: Option<Rating>,
    pub created_at: i64,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

const TIP_COLUMNS: &str = "id, number, village_id, reported_village_id, category, source, anonymous, status, summary, contact_phone, \
     assigned_officer_id, platform, ack_deadline, escalation_level, public_note, rating, created_at, acknowledged_at, \
     resolved_at";

const HOUR_MS: i64 = 3_600_000;

/// The associated data of sealed phones and reporter chats (see `secrets.rs`).
const PHONE: &str = "tips.contact_phone";
const CHAT: &str = "tip_reporters.chat";

/// What `/status NUMBER PASSWORD` found.
#[derive(Debug)]
pub enum StatusCheck {
    Found(Box<TipRow>),
    /// No such number, or a wrong password.
    NotFound,
    /// That wrong password was the last one the tip allows in the hour.
    NowLocked,
    /// The tip had too many wrong passwords in the last hour: not even looked at.
    Locked,
}

/// The reporting side of a tip.
#[derive(Debug, Clone, FromRow)]
pub struct TipReporter {
    pub platform: String,
    pub chat_id: i64,
    pub alias: String,
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

/// The hourly limit a new tip is held to, checked in the transaction that would commit it,
/// so two tips of one chat sent at the same moment cannot both slip under it.
#[derive(Debug, Clone, Copy)]
pub struct TipLimit {
    /// Most tips a chat may report since `since`.
    pub max: i64,
    /// UTC ms: the start of the window (an hour ago, by the core's clock).
    pub since: i64,
}

/// What became of a new tip.
#[derive(Debug)]
pub enum TipOutcome {
    Created(TipReceipt, Box<TipRow>),
    /// The chat had already reported `reported` tips in the window; nothing was written.
    OverLimit {
        reported: i64,
    },
}

/// A tip for the tip writer: what to write, to whom it goes, the limit it is held to.
#[derive(Debug)]
pub(crate) struct TipRequest {
    tip: NewTip,
    route: Option<TipRoute>,
    limit: Option<TipLimit>,
}

/// A tip as the writer takes it: what to write, to whom it goes, the limit it is held to.
type TipWrite<'a> = (&'a NewTip, Option<&'a TipRoute>, Option<&'a TipLimit>);

/// Most tips one transaction takes (its statements then bind at most ~900 values).
const MAX_TIPS_PER_COMMIT: usize = 64;

/// The tip writer of a [`Store`]: commits the tips that arrive together in one transaction
/// (`batch.rs`). Tip by tip, the one SQLite writer was held for ~7 round trips to its
/// connection thread each, which capped tips at ~1,000/s (BENCHMARKS.md).
pub(crate) async fn commit_tips(
    writer: sqlx::AnyPool,
    backend: super::Backend,
    keys: std::sync::Arc<super::secrets::Secrets>,
    jobs: tokio::sync::mpsc::UnboundedReceiver<batch::Job<TipRequest, TipOutcome>>,
) {
    batch::run(jobs, MAX_TIPS_PER_COMMIT, "tip", |requests: &[TipRequest]| {
        let writer = writer.clone();
        let keys = keys.clone();
        Box::pin(async move {
            let tips: Vec<TipWrite> = requests.iter().map(|r| (&r.tip, r.route.as_ref(), r.limit.as_ref())).collect();
            write_tips(&writer, backend, &keys, &tips).await
        })
    })
    .await
}

/// Commits `tips` in one transaction, in order: each that its limit allows, with its items,
/// reporter mapping, `created` event and, if routed, its assignment and `routed` event.
async fn write_tips(
    writer: &sqlx::AnyPool,
    backend: super::Backend,
    keys: &super::secrets::Secrets,
    tips: &[TipWrite<'_>],
) -> anyhow::Result<Vec<TipOutcome>> {
    use anyhow::Context;
    let mut tx = match backend {
        super::Backend::Sqlite => writer.begin_with("BEGIN IMMEDIATE").await,
        super::Backend::Postgres => writer.begin().await,
    }
    .context("Failed to start a database transaction")?;

    // The limits: what each limited chat reported in the window (one query per platform),
    // then the batch's own tips counted in order.
    let mut reported: std::collections::HashMap<(&str, i64), i64> = std::collections::HashMap::new();
    let limited: Vec<(&NewTip, &TipLimit)> =
        tips.iter().filter_map(|(tip, _, limit)| Some((*tip, (*limit)?))).collect();
    if let Some(since) = limited.iter().map(|(_, l)| l.since).min() {
        let mut platforms: Vec<&str> = limited.iter().map(|(t, _)| t.reporter_platform.as_str()).collect();
        platforms.sort_unstable();
        platforms.dedup();
        for platform in platforms {
            let mut chats: Vec<i64> = limited
                .iter()
                .filter(|(t, _)| t.reporter_platform == platform)
                .map(|(t, _)| t.reporter_chat_id)
                .collect();
            chats.sort_unstable();
            chats.dedup();
            let sql = format!(
                "SELECT r.chat_index, COUNT(*) FROM tip_reporters r JOIN tips t ON t.id = r.tip_id \
                 WHERE r.platform = {} AND t.created_at >= {} AND r.chat_index IN {} GROUP BY r.chat_index",
                batch::param(backend, 1),
                batch::param(backend, 2),
                batch::placeholders_from(backend, 1, chats.len(), 3)
            );
            let by_index: std::collections::HashMap<String, i64> =
                chats.iter().map(|c| (keys.chat_index(platform, *c), *c)).collect();
            let mut query = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(platform)
                .bind(since);
            for chat in &chats {
                query = query.bind(keys.chat_index(platform, *chat));
            }
            for (index, n) in query.fetch_all(&mut *tx).await? {
                if let Some(chat) = by_index.get(&index) {
                    reported.insert((platform, *chat), n);
                }
            }
        }
    }
    let mut allowed = Vec::with_capacity(tips.len());
    let mut refused = Vec::with_capacity(tips.len());
    for (tip, route, limit) in tips {
        let Some(limit) = limit else {
            allowed.push((*tip, *route));
            refused.push(None);
            continue;
        };
        let n = reported.entry((tip.reporter_platform.as_str(), tip.reporter_chat_id)).or_insert(0);
        if *n >= limit.max {
            refused.push(Some(*n));
        } else {
            *n += 1;
            allowed.push((*tip, *route));
            refused.push(None);
        }
    }
    let mut written = insert_tips(&mut tx, backend, keys, &allowed).await?.into_iter();
    tx.commit().await?;
    Ok(refused
        .into_iter()
        .map(|refused| match refused {
            Some(reported) => TipOutcome::OverLimit { reported },
            None => {
                let (receipt, row) = written.next().expect("one row for each tip allowed");
                TipOutcome::Created(receipt, Box::new(row))
            }
        })
        .collect())
}

/// Writes `tips` (numbered in order) in the transaction `tx`.
async fn insert_tips(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: super::Backend,
    keys: &super::secrets::Secrets,
    tips: &[(&NewTip, Option<&TipRoute>)],
) -> anyhow::Result<Vec<(TipReceipt, TipRow)>> {
    use anyhow::Context;
    if tips.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let secrets: Vec<(String, String)> = {
        let mut rng = rand::rng();
        tips.iter()
            .map(|_| {
                let password = format!("{:06}", rng.random_range(0..1_000_000));
                let alias: String =
                    (0..4).map(|_| char::from(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[rng.random_range(0..32)])).collect();
                (password, alias)
            })
            .collect()
    };
    // Numbers: each day's counter moves once by the number of its tips.
    let mut numbers = Vec::with_capacity(tips.len());
    let mut last_of_day: Vec<(&str, i64)> = Vec::new();
    for (tip, _) in tips {
        if !last_of_day.iter().any(|(day, _)| *day == tip.day) {
            let n = tips.iter().filter(|(t, _)| t.day == tip.day).count() as i64;
            let last: i64 = sqlx::query_scalar(
                "INSERT INTO tip_counters (day, last) VALUES ($1, $2) \
                 ON CONFLICT (day) DO UPDATE SET last = tip_counters.last + excluded.last RETURNING last",
            )
            .bind(&tip.day)
            .bind(n)
            .fetch_one(&mut **tx)
            .await?;
            last_of_day.push((&tip.day, last - n));
        }
        let slot = last_of_day.iter_mut().find(|(day, _)| *day == tip.day).expect("counted above");
        slot.1 += 1;
        numbers.push(format!("T{}-{:04}", tip.day, slot.1));
    }

    let summaries: Vec<String> = tips.iter().map(|(tip, _)| summary_of(&tip.items)).collect();
    let phones: Vec<Option<(String, String)>> = tips
        .iter()
        .map(|(tip, _)| tip.contact_phone.as_deref().map(|p| (keys.seal(PHONE, p), keys.phone_index(p))))
        .collect();
    let sql = format!(
        "INSERT INTO tips (number, village_id, category, platform, source, anonymous, status, summary, contact_phone, \
         phone_index, password_hash, created_at, updated_at, assigned_officer_id, escalation_level, ack_deadline, \
         reported_village_id) VALUES {} RETURNING id, number",
        batch::placeholders(backend, tips.len(), 17)
    );
    let mut insert = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql)).persistent(false);
    for (i, (tip, route)) in tips.iter().enumerate() {
        insert = insert
            .bind(&numbers[i])
            .bind(tip.village_id)
            .bind(&tip.category)
            .bind(&tip.reporter_platform)
            .bind(tip.source)
            .bind(i64::from(tip.anonymous))
            .bind(TipStatus::New)
            .bind(&summaries[i])
            .bind(phones[i].as_ref().map(|(sealed, _)| sealed.clone()))
            .bind(phones[i].as_ref().map(|(_, index)| index.clone()))
            .bind(keys.tip_password_hash(&numbers[i], &secrets[i].0))
            .bind(now)
            .bind(now)
            .bind(route.map(|r| r.officer_id))
            .bind(route.map_or(0, |r| r.level))
            .bind(route.map(|r| r.ack_deadline))
            .bind(tip.reported_village_id);
    }
    let returned = insert.fetch_all(&mut **tx).await?;
    let ids: Vec<i64> = numbers
        .iter()
        .map(|number| returned.iter().find(|(_, n)| n == number).map(|(id, _)| *id))
        .collect::<Option<_>>()
        .context("the database did not return every new tip's id")?;

    // Items, in chunks so a tip with many photos stays under the engines' bind limits.
    let items: Vec<(i64, usize, &TipItem)> = tips
        .iter()
        .zip(&ids)
        .flat_map(|((tip, _), id)| tip.items.iter().enumerate().map(move |(pos, item)| (*id, pos, item)))
        .collect();
    for chunk in items.chunks(500) {
        let sql = format!(
            "INSERT INTO tip_items (tip_id, position, kind, text, file_id, latitude_e6, longitude_e6) VALUES {}",
            batch::placeholders(backend, chunk.len(), 7)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        for (id, position, item) in chunk {
            let (kind, text, file_id, lat, lon) = match item {
                TipItem::Text { text } => ("text", Some(text.clone()), None, None, None),
                TipItem::Photo { file_id } => ("photo", None, Some(file_id.clone()), None, None),
                TipItem::Voice { file_id } => ("voice", None, Some(file_id.clone()), None, None),
                TipItem::Video { file_id } => ("video", None, Some(file_id.clone()), None, None),
                TipItem::Location { latitude, longitude } => {
                    ("location", None, None, Some(to_e6(*latitude)), Some(to_e6(*longitude)))
                }
            };
            insert = insert.bind(*id).bind(*position as i64).bind(kind).bind(text).bind(file_id).bind(lat).bind(lon);
        }
        insert.execute(&mut **tx).await?;
    }

    let sql = format!(
        "INSERT INTO tip_reporters (tip_id, platform, chat_id, chat_sealed, chat_index, alias, created_at) VALUES {}",
        batch::placeholders(backend, tips.len(), 7)
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    for (i, (tip, _)) in tips.iter().enumerate() {
        // The chat id itself is not stored (0): sealed, and a blind index to find it by.
        insert = insert
            .bind(ids[i])
            .bind(&tip.reporter_platform)
            .bind(0_i64)
            .bind(keys.seal(CHAT, &tip.reporter_chat_id.to_string()))
            .bind(keys.chat_index(&tip.reporter_platform, tip.reporter_chat_id))
            .bind(&secrets[i].1)
            .bind(now);
    }
    insert.execute(&mut **tx).await?;

    // Events: `created` by the resident, then `routed` by the system where there is a route.
    let mut events: Vec<(i64, &str, Option<i64>, &str)> = Vec::with_capacity(tips.len() * 2);
    for (i, (_, route)) in tips.iter().enumerate() {
        events.push((ids[i], "resident", None, "created"));
        if let Some(route) = route {
            events.push((ids[i], "system", Some(route.officer_id), "routed"));
        }
    }
    let sql = format!(
        "INSERT INTO tip_events (tip_id, at, actor, officer_id, kind) VALUES {}",
        batch::placeholders(backend, events.len(), 5)
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    for (id, actor, officer, kind) in events {
        insert = insert.bind(id).bind(now).bind(actor).bind(officer).bind(kind);
    }
    insert.execute(&mut **tx).await?;

    Ok(tips
        .iter()
        .zip(ids)
        .zip(numbers)
        .zip(summaries)
        .zip(secrets)
        .enumerate()
        .map(|(i, (((((tip, route), id), number), summary), (password, alias)))| {
            let row = TipRow {
                id,
                number: number.clone(),
                village_id: tip.village_id,
                reported_village_id: tip.reported_village_id,
                category: tip.category.clone(),
                source: tip.source,
                anonymous: tip.anonymous,
                status: TipStatus::New,
                summary,
                sealed_phone: phones[i].as_ref().map(|(sealed, _)| sealed.clone()),
                assigned_officer_id: route.map(|r| r.officer_id),
                platform: tip.reporter_platform.clone(),
                ack_deadline: route.map(|r| r.ack_deadline),
                escalation_level: route.map_or(0, |r| r.level),
                public_note: None,
                rating: None,
                created_at: now,
                acknowledged_at: None,
                resolved_at: None,
            };
            (TipReceipt { id, number, password, alias }, row)
        })
        .collect())
}

impl Store {
    /// Commits a tip with its items, its reporter mapping and a `created` event, and numbers
    /// it; all in one transaction, before anyone is told about it.
    pub async fn create_tip(&self, tip: &NewTip) -> anyhow::Result<TipReceipt> {
        match self.create_routed_tip(tip, None, None).await? {
            TipOutcome::Created(receipt, _) => Ok(receipt),
            TipOutcome::OverLimit { .. } => unreachable!("a tip without a limit is never over it"),
        }
    }

    /// [`Store::create_tip`], already given to the officer of `route` (with a `routed` event)
    /// in the same transaction, unless the chat is over `limit`. Returns the row as written,
    /// so the officer's card needs no read back.
    ///
    /// Tips that arrive together are committed together (see [`commit_tips`]): a morning
    /// burst costs a few transactions, not one per tip.
    pub async fn create_routed_tip(
        &self,
        tip: &NewTip,
        route: Option<&TipRoute>,
        limit: Option<TipLimit>,
    ) -> anyhow::Result<TipOutcome> {
        let request = TipRequest { tip: tip.clone(), route: route.copied(), limit };
        batch::submit(&self.tip_jobs, request, "tip").await
    }

    pub async fn tip(&self, id: i64) -> anyhow::Result<Option<TipRow>> {
        let sql = format!("SELECT {TIP_COLUMNS} FROM tips WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?)
    }

    /// The tip with this number, if the password is right; `None` for a wrong number or a
    /// wrong password alike.
    pub async fn tip_for_status(&self, number: &str, password: &str) -> anyhow::Result<Option<TipRow>> {
        Ok(match self.check_tip_password(number, password, i64::MAX, now_ms()).await? {
            StatusCheck::Found(tip) => Some(*tip),
            _ => None,
        })
    }

    /// `/status NUMBER PASSWORD`: the tip if the password is right and the tip has had fewer
    /// than `max_wrong` wrong passwords in the hour since the first; a wrong password counts.
    pub async fn check_tip_password(
        &self,
        number: &str,
        password: &str,
        max_wrong: i64,
        now: i64,
    ) -> anyhow::Result<StatusCheck> {
        let number = number.trim().to_ascii_uppercase();
        let sql = format!(
            "SELECT {TIP_COLUMNS}, password_hash, wrong_passwords, wrong_passwords_since FROM tips WHERE number = $1"
        );
        let row: Option<sqlx::any::AnyRow> =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&number).fetch_optional(self.pool()).await?;
        let Some(row) = row else { return Ok(StatusCheck::NotFound) };
        let stored: String = sqlx::Row::try_get(&row, "password_hash")?;
        let wrong: i64 = sqlx::Row::try_get(&row, "wrong_passwords")?;
        let since: Option<i64> = sqlx::Row::try_get(&row, "wrong_passwords_since")?;
        let tip = TipRow::from_row(&row)?;
        let in_window = since.is_some_and(|s| now - s < HOUR_MS);
        if in_window && wrong >= max_wrong {
            return Ok(StatusCheck::Locked);
        }
        if self.secrets().tip_password_matches(&number, password, &stored) {
            return Ok(StatusCheck::Found(Box::new(tip)));
        }
        let (wrong, since) = if in_window { (wrong + 1, since.unwrap_or(now)) } else { (1, now) };
        sqlx::query("UPDATE tips SET wrong_passwords = $2, wrong_passwords_since = $3 WHERE id = $1")
            .bind(tip.id)
            .bind(wrong)
            .bind(since)
            .execute(self.writer())
            .await?;
        Ok(if wrong >= max_wrong { StatusCheck::NowLocked } else { StatusCheck::NotFound })
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
        let row: Option<(String, i64, Option<String>, String)> =
            sqlx::query_as("SELECT platform, chat_id, chat_sealed, alias FROM tip_reporters WHERE tip_id = $1")
                .bind(tip_id)
                .fetch_optional(self.pool())
                .await?;
        let Some((platform, chat_id, sealed, alias)) = row else { return Ok(None) };
        let chat_id = match sealed {
            Some(sealed) => self.secrets().open(CHAT, &sealed)?.parse().context("a sealed chat id is not a number")?,
            None => chat_id, // not yet sealed (sealed at the next start)
        };
        Ok(Some(TipReporter { platform, chat_id, alias }))
    }

    /// The phone a tipster left with a tip, opened; who sees it is the caller's to check
    /// (and audit).
    pub fn tip_phone(&self, tip: &TipRow) -> anyhow::Result<Option<String>> {
        tip.sealed_phone.as_deref().map(|p| self.secrets().open(PHONE, p)).transpose()
    }

    /// Seals what is not yet sealed under the current data key: phones and reporter chats
    /// stored before sealing began, or under a key since rotated. Done at every start (cheap
    /// when nothing is left) and by `cunjing secrets rotate`. Returns (phones, chats).
    pub async fn seal_contacts(&self) -> anyhow::Result<(u64, u64)> {
        let keys = self.secrets();
        let current = format!("{}%", keys.current_prefix());
        let phones: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, contact_phone FROM tips WHERE contact_phone IS NOT NULL \
             AND (contact_phone NOT LIKE $1 OR phone_index IS NULL)",
        )
        .bind(&current)
        .fetch_all(self.pool())
        .await?;
        let chats: Vec<(i64, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT tip_id, platform, chat_id, chat_sealed FROM tip_reporters WHERE chat_sealed IS NULL OR chat_sealed NOT LIKE $1",
        )
        .bind(&current)
        .fetch_all(self.pool())
        .await?;
        let mut tx = self.begin_write().await?;
        for (id, stored) in &phones {
            let plain = keys.open(PHONE, stored)?;
            sqlx::query("UPDATE tips SET contact_phone = $2, phone_index = $3 WHERE id = $1")
                .bind(*id)
                .bind(keys.seal(PHONE, &plain))
                .bind(keys.phone_index(&plain))
                .execute(&mut *tx)
                .await?;
        }
        for (tip_id, platform, chat_id, sealed) in &chats {
            let chat: i64 = match sealed {
                Some(s) => keys.open(CHAT, s)?.parse().context("a sealed chat id is not a number")?,
                None => *chat_id,
            };
            sqlx::query("UPDATE tip_reporters SET chat_id = 0, chat_sealed = $2, chat_index = $3 WHERE tip_id = $1")
                .bind(*tip_id)
                .bind(keys.seal(CHAT, &chat.to_string()))
                .bind(keys.chat_index(platform, chat))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((phones.len() as u64, chats.len() as u64))
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
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Tips of `platform` still waiting for acknowledgement whose deadline has passed.
    pub async fn overdue_tips(&self, platform: &str, now: i64) -> anyhow::Result<Vec<TipRow>> {
        let sql = format!(
            "SELECT {TIP_COLUMNS} FROM tips WHERE status = $3 AND platform = $1 AND ack_deadline IS NOT NULL \
             AND ack_deadline <= $2 ORDER BY ack_deadline, id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(platform)
            .bind(now)
            .bind(TipStatus::New)
            .fetch_all(self.pool())
            .await?)
    }

    /// Moves a tip from one of the `from` statuses to `to` on behalf of `officer_id`, with an
    /// event; `false` when the tip was not in one of those statuses (a button pressed twice).
    pub async fn change_tip_status(
        &self,
        tip_id: i64,
        officer_id: i64,
        from: &[TipStatus],
        to: TipStatus,
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
        from: &[TipStatus],
        to: TipStatus,
        note: Option<&str>,
    ) -> anyhow::Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let current: Option<TipStatus> =
            sqlx::query_scalar("SELECT status FROM tips WHERE id = $1").bind(tip_id).fetch_optional(&mut *tx).await?;
        if !current.is_some_and(|s| from.contains(&s)) {
            return Ok(false);
        }
        let stamp = match to {
            TipStatus::Acknowledged => "acknowledged_at = $2, ",
            TipStatus::Resolved | TipStatus::Rejected => "resolved_at = $2, ",
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

    /// Reopens a resolved or rejected tip: in progress again, its resolution time cleared
    /// (the figures count it when it is resolved again), with a `reopened` event naming
    /// `actor` and `reason`. `false` when the tip was not resolved or rejected.
    pub async fn reopen_tip(&self, tip_id: i64, actor: &str, reason: &str) -> anyhow::Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE tips SET status = $3, resolved_at = NULL, updated_at = $2 WHERE id = $1 AND status IN ($4, $5)",
        )
        .bind(tip_id)
        .bind(now)
        .bind(TipStatus::InProgress)
        .bind(TipStatus::Resolved)
        .bind(TipStatus::Rejected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO tip_events (tip_id, at, actor, kind, detail) VALUES ($1, $2, $3, 'reopened', $4)")
            .bind(tip_id)
            .bind(now)
            .bind(actor)
            .bind(reason)
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
        let open: Vec<TipStatus> = TipStatus::ALL.iter().copied().filter(|s| s.is_open()).collect();
        let merged = self.change_tip_status_by(tip_id, officer_id, actor, &open, TipStatus::Merged, None).await?;
        if merged {
            sqlx::query("UPDATE tips SET merged_into = $1 WHERE id = $2")
                .bind(into_id)
                .bind(tip_id)
                .execute(self.writer())
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
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Stores the tipster's rating once; `false` if the tip was already rated.
    pub async fn rate_tip(&self, tip_id: i64, rating: Rating) -> anyhow::Result<bool> {
        let n = sqlx::query("UPDATE tips SET rating = $1, updated_at = $2 WHERE id = $3 AND rating IS NULL")
            .bind(rating)
            .bind(now_ms())
            .bind(tip_id)
            .execute(self.writer())
            .await?
            .rows_affected();
        if n == 1 {
            self.tip_event(tip_id, "resident", None, "rated", rating.as_str()).await?;
        }
        Ok(n == 1)
    }

    /// The latest tips this chat reported (while it has not asked to be forgotten).
    pub async fn tips_of_reporter(&self, platform: &str, chat_id: i64, limit: i64) -> anyhow::Result<Vec<TipRow>> {
        let columns = TIP_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {columns} FROM tip_reporters r JOIN tips t ON t.id = r.tip_id \
             WHERE r.platform = $1 AND r.chat_index = $2 ORDER BY t.id DESC LIMIT $3"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(platform)
            .bind(self.secrets().chat_index(platform, chat_id))
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// How many tips this chat reported since `since` (UTC ms).
    pub async fn tips_reported_since(&self, platform: &str, chat_id: i64, since: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM tip_reporters r JOIN tips t ON t.id = r.tip_id \
             WHERE r.platform = $1 AND r.chat_index = $2 AND t.created_at >= $3",
        )
        .bind(platform)
        .bind(self.secrets().chat_index(platform, chat_id))
        .bind(since)
        .fetch_one(self.pool())
        .await?)
    }

    /// `/stop`: forgets which chat reported which tip, for every tip of this chat. Returns how
    /// many mappings were deleted.
    pub async fn forget_reporter(&self, platform: &str, chat_id: i64) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM tip_reporters WHERE platform = $1 AND chat_index = $2")
            .bind(platform)
            .bind(self.secrets().chat_index(platform, chat_id))
            .execute(self.writer())
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
}

impl Store {
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
