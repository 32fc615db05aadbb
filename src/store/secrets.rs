//! The database's own secret keys, and what they protect: the tip passwords a resident
//! gets to ask after a tip with `/status`.
//!
//! A password is six digits, so its hash must not be computable by whoever holds a copy of
//! the database: it is an HMAC-SHA256 keyed with a random key made for this database (the
//! `secret_keys` table) and, when `CUNJING_PEPPER` is set, with that value from the
//! environment too, which a copy of the database does not hold. Before this, passwords were
//! unsalted SHA-256 of "number:password": those still verify (`legacy`), new ones do not use it.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use subtle::ConstantTimeEq;

/// The environment variable whose value is mixed into the keys (never stored, never logged).
pub const PEPPER_ENV: &str = "CUNJING_PEPPER";

/// How a stored password hash of the current scheme begins.
const SCHEME: &str = "h1$";

/// The keys of one database, loaded (or made, the first time) when the store opens.
pub struct Secrets {
    tip_passwords: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// Reads the database's key, making it on first use (two daemons starting at once agree
    /// on the first one written).
    pub async fn load(writer: &AnyPool) -> anyhow::Result<Secrets> {
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query(
            "INSERT INTO secret_keys (name, secret, created_at) VALUES ('tip_passwords', $1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&fresh)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(writer)
        .await?;
        let stored: String =
            sqlx::query_scalar("SELECT secret FROM secret_keys WHERE name = 'tip_passwords'").fetch_one(writer).await?;
        let pepper = std::env::var(PEPPER_ENV).unwrap_or_default();
        Ok(Secrets::from_parts(&stored, &pepper))
    }

    /// The keys from the database's secret and the pepper.
    fn from_parts(stored: &str, pepper: &str) -> Secrets {
        let mut h = Sha256::new();
        h.update(b"cunjing tip passwords\0");
        h.update(stored.as_bytes());
        h.update(b"\0");
        h.update(pepper.as_bytes());
        Secrets { tip_passwords: h.finalize().into() }
    }

    /// What is stored for the password of tip `number`.
    pub fn tip_password_hash(&self, number: &str, password: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.tip_passwords).expect("any key length");
        mac.update(number.as_bytes());
        mac.update(b":");
        mac.update(password.trim().as_bytes());
        let tag: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("{SCHEME}{tag}")
    }

    /// Whether `password` is the one stored as `stored` for tip `number` (compared in
    /// constant time; hashes of the old scheme are still recognised).
    pub fn tip_password_matches(&self, number: &str, password: &str, stored: &str) -> bool {
        let expected = if stored.starts_with(SCHEME) {
            self.tip_password_hash(number, password)
        } else {
            legacy(number, password)
        };
        expected.as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

/// The scheme before issue #20: unsalted SHA-256 of "number:password".
fn legacy(number: &str, password: &str) -> String {
    let digest = Sha256::digest(format!("{number}:{}", password.trim()).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_password_hashes_differently_in_another_database_or_with_another_pepper() {
        let (a, b, c) = (Secrets::from_parts("aa", ""), Secrets::from_parts("bb", ""), Secrets::from_parts("aa", "p"));
        let h = a.tip_password_hash("T20261203-0001", "123456");
        assert!(h.starts_with(SCHEME));
        assert_ne!(h, b.tip_password_hash("T20261203-0001", "123456"));
        assert_ne!(h, c.tip_password_hash("T20261203-0001", "123456"));
        assert_ne!(h, legacy("T20261203-0001", "123456"), "not the old unkeyed hash");
    }

    #[test]
    fn the_right_password_matches_and_a_wrong_one_or_an_old_scheme_hash_is_told_apart() {
        let s = Secrets::from_parts("aa", "");
        let stored = s.tip_password_hash("T1", "123456");
        assert!(s.tip_password_matches("T1", " 123456 ", &stored));
        assert!(!s.tip_password_matches("T1", "123457", &stored));
        assert!(!s.tip_password_matches("T2", "123456", &stored));
        assert!(s.tip_password_matches("T1", "123456", &legacy("T1", "123456")), "old tips still answer");
    }
}
