//! Officers as the bot meets them: identity (a platform account linked by enrolment, and an
//! officer's account on a platform) and one-time enrolment codes. Names and usernames never decide who someone is.

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::mapping::Flag;
use super::{Store, now_ms};
use crate::domain::OfficerKind;

/// An officer from the registry.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct OfficerRow {
    pub id: i64,
    pub badge: String,
    pub name: String,
    pub kind: OfficerKind,
    pub phone: Option<String>,
    pub station_id: i64,
    #[sqlx(try_from = "Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub on_duty: bool,
}

/// A fresh enrolment code, shown once to whoever issues it.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolmentCode {
    pub badge: String,
    pub name: String,
    /// 32 hex digits (128 random bits); usable as a Telegram `/start` payload.
    pub code: String,
    /// UTC milliseconds after which the code no longer works.
    pub expires_at: i64,
}

/// Why a code did not enrol anyone. The resident-facing answer is the same for all three,
/// so a guesser learns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolFailure {
    Unknown,
    Used,
    Expired,
}

const OFFICER_COLUMNS: &str = "f.id, f.badge, f.name, f.kind, f.phone, f.station_id, f.on_duty";

fn hash_code(code: &str) -> String {
    let digest = Sha256::digest(code.trim().to_ascii_lowercase().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` has the shape of an enrolment code (so `/start` can tell it from other
/// payloads without a database look-up).
pub fn looks_like_enrolment_code(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Makes `user_id` on `platform` the officer's one account there: the account's earlier link
/// and the officer's earlier account on the platform go.
async fn link_identity(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    officer_id: i64,
    platform: &str,
    user_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM officer_identities WHERE platform = $1 AND (user_id = $2 OR officer_id = $3)")
        .bind(platform)
        .bind(user_id)
        .bind(officer_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO officer_identities (officer_id, platform, user_id, enrolled_at) VALUES ($1, $2, $3, $4)")
        .bind(officer_id)
        .bind(platform)
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    pub async fn officer_by_badge(&self, badge: &str) -> anyhow::Result<Option<OfficerRow>> {
        let sql = format!("SELECT {OFFICER_COLUMNS} FROM officers f WHERE f.badge = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(badge).fetch_optional(self.pool()).await?)
    }

    pub async fn officer_by_id(&self, id: i64) -> anyhow::Result<Option<OfficerRow>> {
        let load = async {
            let sql = format!("SELECT {OFFICER_COLUMNS} FROM officers f WHERE f.id = $1");
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?)
        };
        match self.cache.ready().await {
            Some(registry) => Ok(registry.officer(id)),
            None => load.await,
        }
    }

    /// Every officer, by badge.
    pub async fn all_officers(&self) -> anyhow::Result<Vec<OfficerRow>> {
        let sql = format!("SELECT {OFFICER_COLUMNS} FROM officers f ORDER BY f.badge");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?)
    }

    /// The officer a platform account is enrolled as, if any.
    pub async fn officer_by_identity(&self, platform: &str, user_id: i64) -> anyhow::Result<Option<OfficerRow>> {
        let load = async {
            let sql = format!(
                "SELECT {OFFICER_COLUMNS} FROM officer_identities i JOIN officers f ON f.id = i.officer_id \
                 WHERE i.platform = $1 AND i.user_id = $2"
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(platform)
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?)
        };
        match self.cache.ready().await {
            Some(registry) => Ok(registry.officer_by_identity(platform, user_id)),
            None => load.await,
        }
    }

    /// Issues a one-time code for the officer with `badge`; only its hash is stored.
    pub async fn issue_enrolment_code(&self, badge: &str, ttl_ms: i64) -> anyhow::Result<Option<EnrolmentCode>> {
        let Some(officer) = self.officer_by_badge(badge).await? else {
            return Ok(None);
        };
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let code: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = now_ms();
        let expires_at = now + ttl_ms;
        sqlx::query(
            "INSERT INTO enrolment_codes (officer_id, code_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(officer.id)
        .bind(hash_code(&code))
        .bind(now)
        .bind(expires_at)
        .execute(self.writer())
        .await?;
        Ok(Some(EnrolmentCode { badge: officer.badge, name: officer.name, code, expires_at }))
    }

    /// Redeems a code for a platform account: single use, before expiry. The account then
    /// belongs to that officer (replacing the officer's earlier account on the platform and
    /// any earlier link of the account).
    pub async fn redeem_enrolment_code(
        &self,
        code: &str,
        platform: &str,
        user_id: i64,
    ) -> anyhow::Result<Result<OfficerRow, EnrolFailure>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row: Option<(i64, i64, i64, Option<i64>)> =
            sqlx::query_as("SELECT id, officer_id, expires_at, used_at FROM enrolment_codes WHERE code_hash = $1")
                .bind(hash_code(code))
                .fetch_optional(&mut *tx)
                .await?;
        let Some((code_id, officer_id, expires_at, used_at)) = row else {
            return Ok(Err(EnrolFailure::Unknown));
        };
        if used_at.is_some() {
            return Ok(Err(EnrolFailure::Used));
        }
        if expires_at <= now {
            return Ok(Err(EnrolFailure::Expired));
        }
        // Single use even under a race: only the update that flips used_at wins.
        let claimed = sqlx::query("UPDATE enrolment_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(now)
            .bind(code_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed != 1 {
            return Ok(Err(EnrolFailure::Used));
        }
        link_identity(&mut tx, officer_id, platform, user_id, now).await?;
        let sql = format!("SELECT {OFFICER_COLUMNS} FROM officers f WHERE f.id = $1");
        let officer: OfficerRow = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(officer_id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        self.registry_changed();
        Ok(Ok(officer))
    }

    /// `/duty`: switches an officer on or off duty; `off_until` (exclusive day) makes it a
    /// leave that ends by itself.
    pub async fn set_duty(&self, officer_id: i64, on: bool, off_until: Option<&str>) -> anyhow::Result<()> {
        sqlx::query("UPDATE officers SET on_duty = $1, off_until = $2, updated_at = $3 WHERE id = $4")
            .bind(i64::from(on || off_until.is_some()))
            .bind(off_until)
            .bind(now_ms())
            .bind(officer_id)
            .execute(self.writer())
            .await?;
        self.registry_changed();
        Ok(())
    }

    /// Links an account to an officer without a code. Only for the local console, whose user
    /// is the operator at the machine.
    pub async fn link_identity_directly(&self, officer_id: i64, platform: &str, user_id: i64) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        link_identity(&mut tx, officer_id, platform, user_id, now_ms()).await?;
        tx.commit().await?;
        self.registry_changed();
        Ok(())
    }

    /// Records that the officer used `platform` at `now` (the router calls it when the
    /// platform changes, and now and then while it does not).
    pub async fn note_officer_platform(&self, officer_id: i64, platform: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO officer_last_used (officer_id, platform, used_at) VALUES ($1, $2, $3) \
             ON CONFLICT (officer_id) DO UPDATE SET platform = excluded.platform, used_at = excluded.used_at",
        )
        .bind(officer_id)
        .bind(platform)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The platform the officer used last, if they have been seen since the record began.
    pub async fn officer_last_platform(&self, officer_id: i64) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT platform FROM officer_last_used WHERE officer_id = $1")
            .bind(officer_id)
            .fetch_optional(self.pool())
            .await?)
    }
}

impl Store {
    /// The account of `officer_id` on `platform`, if enrolled there.
    pub async fn officer_account(&self, officer_id: i64, platform: &str) -> anyhow::Result<Option<i64>> {
        let load = async {
            Ok(sqlx::query_scalar("SELECT user_id FROM officer_identities WHERE officer_id = $1 AND platform = $2")
                .bind(officer_id)
                .bind(platform)
                .fetch_optional(self.pool())
                .await?)
        };
        match self.cache.ready().await {
            Some(registry) => Ok(registry.account(officer_id, platform)),
            None => load.await,
        }
    }
}
