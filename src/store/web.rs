//! Accounts and sessions of the station console. Passwords are argon2 hashes (made by the
//! caller); a session is known by the SHA-256 of its random token only, so a copy of the
//! database cannot be used to log in.

use serde::Serialize;
use sqlx::FromRow;

use super::Store;
use super::trust::AuditRow;

/// A console account.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct WebUser {
    pub id: i64,
    pub username: String,
    pub station_id: Option<i64>,
    pub role: String,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    /// The person's name (张三), when given.
    pub display_name: Option<String>,
}

/// A live session and its account.
#[derive(Debug, Clone, FromRow)]
pub struct WebSession {
    pub user_id: i64,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

const USER_COLUMNS: &str =
    "id, username, station_id, role, password_hash, totp_secret, failed_logins, locked_until, display_name";

/// The SHA-256 of a session token, as stored.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Creates or replaces the account `username`.
    /// Sets the name a console account is shown by (`None` or empty: its login name).
    pub async fn set_web_user_display_name(&self, username: &str, name: Option<&str>) -> anyhow::Result<bool> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let done = sqlx::query("UPDATE web_users SET display_name = $1 WHERE username = $2")
            .bind(name)
            .bind(username)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn upsert_web_user(
        &self,
        username: &str,
        station_id: Option<i64>,
        role: &str,
        password_hash: &str,
        totp_secret: Option<&str>,
        now: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM web_users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(id) = existing {
            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE web_users SET station_id = $1, role = $2, password_hash = $3, totp_secret = $4, \
                 failed_logins = 0, locked_until = NULL WHERE id = $5",
            )
            .bind(station_id)
            .bind(role)
            .bind(password_hash)
            .bind(totp_secret)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO web_users (username, station_id, role, password_hash, totp_secret, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(username)
            .bind(station_id)
            .bind(role)
            .bind(password_hash)
            .bind(totp_secret)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn web_user_by_name(&self, username: &str) -> anyhow::Result<Option<WebUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM web_users WHERE username = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(username).fetch_optional(self.pool()).await?)
    }

    pub async fn web_user(&self, id: i64) -> anyhow::Result<Option<WebUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM web_users WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?)
    }

    /// The console accounts of a station (every account with `None`), by name.
    pub async fn web_users_of(&self, station_id: Option<i64>) -> anyhow::Result<Vec<WebUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM web_users WHERE $1 = 0 OR station_id = $1 ORDER BY username");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(station_id.unwrap_or(0)).fetch_all(self.pool()).await?)
    }

    /// Locks an account until `until` (UTC ms; `i64::MAX`: until unlocked) and ends its
    /// sessions, or unlocks it (`None`).
    pub async fn set_web_user_lock(&self, id: i64, until: Option<i64>) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE web_users SET locked_until = $1, failed_logins = 0 WHERE id = $2")
            .bind(until)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if until.is_some() {
            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed login; the account is locked for `lock_ms` once `max` failures in a
    /// row are reached. Returns whether it is now locked.
    pub async fn web_login_failed(&self, id: i64, max: i64, lock_ms: i64, now: i64) -> anyhow::Result<bool> {
        let failed: i64 = sqlx::query_scalar(
            "UPDATE web_users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        )
        .bind(id)
        .fetch_one(self.writer())
        .await?;
        if failed >= max {
            sqlx::query("UPDATE web_users SET locked_until = $1, failed_logins = 0 WHERE id = $2")
                .bind(now + lock_ms)
                .bind(id)
                .execute(self.writer())
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// A successful login: the failure count is cleared and a session created.
    pub async fn web_login(&self, id: i64, token: &str, csrf: &str, now: i64) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE web_users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(token_hash(token))
        .bind(id)
        .bind(csrf)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session of `token`, if it exists and is neither idle longer than `idle_ms` nor
    /// older than `max_ms`; its last use is moved to `now`. An expired one is deleted.
    pub async fn web_session(
        &self,
        token: &str,
        idle_ms: i64,
        max_ms: i64,
        now: i64,
    ) -> anyhow::Result<Option<WebSession>> {
        let hash = token_hash(token);
        let session: Option<WebSession> =
            sqlx::query_as("SELECT user_id, csrf, created_at, last_seen_at FROM web_sessions WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(self.pool())
                .await?;
        let Some(session) = session else { return Ok(None) };
        if now - session.last_seen_at > idle_ms || now - session.created_at > max_ms {
            self.web_logout(token).await?;
            return Ok(None);
        }
        if now - session.last_seen_at > 60_000 {
            sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(&hash)
                .execute(self.writer())
                .await?;
        }
        Ok(Some(session))
    }

    pub async fn web_logout(&self, token: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(self.writer())
            .await?;
        Ok(())
    }
}

impl Store {
    /// The latest broadcasts that reached a village of `station_id` (all with `None`).
    pub async fn station_broadcasts(
        &self,
        station_id: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<super::broadcasts::BroadcastRow>> {
        Ok(sqlx::query_as(
            "SELECT id, kind, severity, status, cap_status, cap_identifier, cap_references, references_id, event, text, \
             photo_file_id, target_spec, sender_officer_id, sender_label, report_platform, report_chat_id, \
             last_report_at, send_at, expires_at, created_at, finished_at FROM broadcasts b \
             WHERE $1 = 0 OR b.id IN (SELECT bv.broadcast_id FROM broadcast_villages bv \
             JOIN villages v ON v.id = bv.village_id JOIN offices o ON o.id = v.office_id WHERE o.station_id = $1) \
             ORDER BY b.id DESC LIMIT $2",
        )
        .bind(station_id.unwrap_or(0))
        .bind(limit)
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
