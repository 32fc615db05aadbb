//! The append-only audit log: each record chained to the one before it by a hash, the check
//! of that chain, and the pages the console shows. The log has an insert and a purge of rows
//! past the retention period (`trust.rs`), nothing else; the database refuses updates and
//! early deletes by trigger as well.

use anyhow::Context as _;
use serde::Serialize;
use sqlx::FromRow;

use super::Store;

/// One audit record.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub detail: String,
}

/// One record with its links, for [`Store::verify_audit`].
#[derive(Debug, FromRow)]
struct ChainRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    result: String,
    detail: String,
    prev_hash: Option<String>,
    hash: Option<String>,
}

/// What `cunjing audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCheck {
    /// Every chained record matches its hash and follows the one before it.
    Intact { checked: usize, before_chain: usize },
    /// The first broken link: the record and what is wrong with it.
    Broken { id: i64, why: &'static str },
}

/// SHA-256 over the previous hash and the record's fields, each prefixed by its length (so no
/// two different records hash alike), in hex.
fn audit_hash(prev: &str, at: i64, actor: &str, action: &str, target: &str, result: &str, detail: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let at = at.to_string();
    for part in [prev, at.as_str(), actor, action, target, result, detail] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Appends one record to the audit log, chained to the one before it: its hash covers
    /// the previous record's hash and its own fields. Appends are serialised (SQLite's one
    /// writer; an advisory lock on PostgreSQL, for several daemons).
    pub async fn audit(
        &self,
        at: i64,
        actor: &str,
        action: &str,
        target: &str,
        result: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7272027)").execute(&mut *tx).await?;
        }
        let last: Option<Option<String>> = sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .context("Failed to read the audit log's last hash")?;
        let prev = match last {
            Some(hash) => hash.unwrap_or_default(),
            None => sqlx::query_scalar::<_, String>("SELECT hash FROM audit_anchor WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or_default(),
        };
        let hash = audit_hash(&prev, at, actor, action, target, result, detail);
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, result, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(result)
        .bind(detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .context("Failed to append to the audit log")?;
        tx.commit().await.context("Failed to commit an audit record")?;
        Ok(())
    }

    /// Walks the chain in id order: the first record that was altered, or whose predecessor
    /// is missing, or `Intact`.
    pub async fn verify_audit(&self) -> anyhow::Result<AuditCheck> {
        let anchor: Option<String> = sqlx::query_scalar("SELECT hash FROM audit_anchor WHERE id = 1")
            .fetch_optional(self.pool())
            .await
            .context("Failed to read the audit anchor")?;
        let rows: Vec<ChainRow> = sqlx::query_as(
            "SELECT id, at, actor, action, target, result, detail, prev_hash, hash FROM audit_log ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .context("Failed to read the audit log")?;
        let mut before_chain = 0;
        let mut expected: Option<String> = None;
        let mut checked = 0;
        for r in &rows {
            let (Some(prev), Some(hash)) = (&r.prev_hash, &r.hash) else {
                if expected.is_some() {
                    return Ok(AuditCheck::Broken { id: r.id, why: "has no hash: it was written around the chain" });
                }
                before_chain += 1;
                continue;
            };
            let link_ok = match &expected {
                Some(e) => prev == e,
                // The first chained record follows the last purged one, or the last record
                // from before the chain, or nothing.
                None => anchor.as_deref().is_some_and(|a| a == prev) || prev.is_empty() || before_chain > 0,
            };
            if !link_ok {
                return Ok(AuditCheck::Broken { id: r.id, why: "the record before it is missing or was altered" });
            }
            if audit_hash(prev, r.at, &r.actor, &r.action, &r.target, &r.result, &r.detail) != *hash {
                return Ok(AuditCheck::Broken { id: r.id, why: "it was altered: its fields do not match its hash" });
            }
            expected = Some(hash.clone());
            checked += 1;
        }
        Ok(AuditCheck::Intact { checked, before_chain })
    }

    /// Audit records at or after `since` (UTC ms), oldest first.
    pub async fn audit_since(&self, since: i64) -> anyhow::Result<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, target, result, detail FROM audit_log WHERE at >= $1 ORDER BY at, id",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }

    /// How many times `actor` was refused `action` since `since`.
    pub async fn audit_denials(&self, actor: &str, action: &str, since: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE actor = $1 AND action = $2 AND result = 'denied' AND at >= $3",
        )
        .bind(actor)
        .bind(action)
        .bind(since)
        .fetch_one(self.pool())
        .await?)
    }

    /// A page of the audit log, newest first, and how many records match: those of
    /// `station_id`'s people (its console accounts and its officers; all with `None`),
    /// between `since` and `until` (UTC ms), of `actor`, `action` and `result` when given.
    pub async fn audit_page(&self, q: &AuditQuery, limit: i64, skip: i64) -> anyhow::Result<(Vec<AuditRow>, i64)> {
        let condition = "($1 = 0 OR actor IN (SELECT 'web:' || username FROM web_users WHERE station_id = $1 \
             UNION SELECT badge FROM officers WHERE station_id = $1)) \
             AND at >= $2 AND at < $3 AND ($4 = '' OR actor = $4) AND ($5 = '' OR action = $5) \
             AND ($6 = '' OR result = $6)";
        let bind = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(q.station_id.unwrap_or(0))
                .bind(q.since)
                .bind(q.until)
                .bind(q.actor.clone())
                .bind(q.action.clone())
                .bind(q.result.clone())
        };
        use sqlx::Row;
        let total: i64 = bind(format!("SELECT COUNT(*) FROM audit_log WHERE {condition}"))
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        let rows = bind(format!(
            "SELECT id, at, actor, action, target, result, detail FROM audit_log WHERE {condition} \
             ORDER BY at DESC, id DESC LIMIT {} OFFSET {}",
            limit.max(1),
            skip.max(0)
        ))
        .fetch_all(self.pool())
        .await?;
        let rows = rows.iter().map(AuditRow::from_row).collect::<Result<_, _>>()?;
        Ok((rows, total))
    }
}

/// Which audit records [`Store::audit_page`] shows.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub station_id: Option<i64>,
    pub since: i64,
    pub until: i64,
    pub actor: String,
    pub action: String,
    pub result: String,
}
