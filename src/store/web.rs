//! Accounts and sessions of the station console. Passwords are argon2 hashes (made by the
//! caller); a session is known by the SHA-256 of its random token only, so a copy of the
//! database cannot be used to log in.

use serde::Serialize;
use sqlx::FromRow;

use super::Store;
use crate::domain::Grant;

/// A console account.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct WebUser {
    pub id: i64,
    pub username: String,
    pub station_id: Option<i64>,
    pub role: Grant,
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
        role: Grant,
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
