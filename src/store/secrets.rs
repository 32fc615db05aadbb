//! The database's own secret keys, and what they protect: the tip passwords a resident
//! gets to ask after a tip with `/status`, and the tipsters' phone numbers and chat ids at
//! rest.
//!
//! A password is six digits, so its hash must not be computable by whoever holds a copy of
//! the database: it is an HMAC-SHA256 keyed with a random key made for this database (the
//! `secret_keys` table) and, when `CUNJING_PEPPER` is set, with that value from the
//! environment too, which a copy of the database does not hold. Before this, passwords were
//! unsalted SHA-256 of "number:password": those still verify (`legacy`), new ones do not use it.
//!
//! Phone numbers and the chat a tip came from are sealed with ChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`) under the key of `CUNJING_DATA_KEY` (32 bytes, base64), the column's
//! name as associated data, so a value cannot be moved to another column. A sealed value is
//! `e1:KEYID:BASE64(nonce ‖ ciphertext)`; `CUNJING_DATA_KEYS_OLD` lists earlier keys that
//! still open values, and `cunjing secrets rotate` seals everything again under the current
//! key. Without `CUNJING_DATA_KEY` a key made for the database is used (and a warning says
//! that a copy of the database then holds its key). Chats are looked up by a blind index, an
//! HMAC of the chat id under the database's key, never by the sealed value.

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use subtle::ConstantTimeEq;

/// The environment variable whose value is mixed into the keys (never stored, never logged).
pub const PEPPER_ENV: &str = "CUNJING_PEPPER";

/// The key that seals tipsters' phones and chat ids (base64 of 32 bytes).
pub const DATA_KEY_ENV: &str = "CUNJING_DATA_KEY";
/// Earlier data keys, comma-separated, that still open values sealed before a rotation.
pub const OLD_DATA_KEYS_ENV: &str = "CUNJING_DATA_KEYS_OLD";

/// How a stored password hash of the current scheme begins.
const SCHEME: &str = "h1$";
/// How a sealed value begins.
const SEALED: &str = "e1:";

/// One key that seals values: its id (in every value it sealed) and its cipher.
struct DataKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl DataKey {
    fn new(key: &[u8; 32]) -> DataKey {
        let id: String = Sha256::digest([b"cunjing data key\0".as_slice(), key].concat())[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        DataKey { id, cipher: ChaCha20Poly1305::new(key.into()) }
    }

    /// A key written as base64, as in `CUNJING_DATA_KEY`.
    fn parse(text: &str, name: &str) -> anyhow::Result<DataKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| anyhow!("{name} is not base64; make a key with `openssl rand -base64 32`"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow!("{name} is not 32 bytes; make a key with `openssl rand -base64 32`"))?;
        Ok(DataKey::new(&key))
    }
}

/// The keys of one database, loaded (or made, the first time) when the store opens.
pub struct Secrets {
    tip_passwords: [u8; 32],
    chat_index: [u8; 32],
    /// The current data key first, then the old ones.
    data: Vec<DataKey>,
    /// Whether the current data key is the database's own (`CUNJING_DATA_KEY` unset).
    key_in_database: bool,
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
        let stored = database_key(writer, "tip_passwords").await?;
        let pepper = std::env::var(PEPPER_ENV).unwrap_or_default();
        let mut secrets = Secrets::from_parts(&stored, &pepper);
        match std::env::var(DATA_KEY_ENV) {
            Ok(key) if !key.trim().is_empty() => {
                secrets.data = vec![DataKey::parse(&key, DATA_KEY_ENV)?];
                for old in std::env::var(OLD_DATA_KEYS_ENV).unwrap_or_default().split(',') {
                    if !old.trim().is_empty() {
                        secrets.data.push(DataKey::parse(old, OLD_DATA_KEYS_ENV)?);
                    }
                }
                // What was sealed before a key was set still opens (and is sealed again).
                secrets.data.push(database_data_key(writer).await?);
            }
            _ => {
                secrets.data.push(database_data_key(writer).await?);
                secrets.key_in_database = true;
            }
        }
        Ok(secrets)
    }

    /// The keys from the database's secret and the pepper (no data key yet).
    fn from_parts(stored: &str, pepper: &str) -> Secrets {
        let derive = |purpose: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(purpose);
            h.update(stored.as_bytes());
            h.update(b"\0");
            h.update(pepper.as_bytes());
            h.finalize().into()
        };
        Secrets {
            tip_passwords: derive(b"cunjing tip passwords\0"),
            chat_index: derive(b"cunjing chat index\0"),
            data: Vec::new(),
            key_in_database: false,
        }
    }

    /// `plain` sealed for the column `what` (e.g. `tips.contact_phone`) under the current key.
    pub fn seal(&self, what: &str, plain: &str) -> String {
        let key = &self.data[0];
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plain.as_bytes(), aad: what.as_bytes() })
            .expect("ChaCha20-Poly1305 seals any length we store");
        let body = base64::engine::general_purpose::STANDARD.encode([nonce.as_slice(), &sealed].concat());
        format!("{SEALED}{}:{body}", key.id)
    }

    /// The plain value of a value of column `what`: opened if sealed (by the current or an old
    /// key), as it is if it was stored before sealing began.
    pub fn open(&self, what: &str, stored: &str) -> anyhow::Result<String> {
        let Some(rest) = stored.strip_prefix(SEALED) else { return Ok(stored.to_string()) };
        let (id, body) = rest.split_once(':').context("a sealed value without its key id")?;
        let key = self.data.iter().find(|k| k.id == id).with_context(|| {
            format!("a value of {what} is sealed with key {id}, which is not set: add it to {OLD_DATA_KEYS_ENV}")
        })?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(body).context("a sealed value is not base64")?;
        anyhow::ensure!(bytes.len() > 12, "a sealed value of {what} is too short");
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
        let plain = key
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: what.as_bytes() })
            .map_err(|_| anyhow!("a sealed value of {what} does not open: altered, or moved from another column"))?;
        String::from_utf8(plain).context("a sealed value is not text")
    }

    /// Whether values are sealed with the database's own key, which a copy of the database
    /// holds (`CUNJING_DATA_KEY` is not set).
    pub fn key_in_database(&self) -> bool {
        self.key_in_database
    }

    /// How every value sealed under the current key begins.
    pub fn current_prefix(&self) -> String {
        format!("{SEALED}{}:", self.data[0].id)
    }

    /// The blind index of a chat: how rows are found by chat without the chat id in them.
    pub fn chat_index(&self, platform: &str, chat_id: i64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.chat_index).expect("any key length");
        mac.update(format!("{platform}:{chat_id}").as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The blind index of a phone number (its digits only): how the console finds a named
    /// tipster's tips by the phone they left, which is stored sealed.
    pub fn phone_index(&self, phone: &str) -> String {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.chat_index).expect("any key length");
        mac.update(format!("phone:{digits}").as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What is stored for the password of tip `number`.
    pub fn tip_password_hash(&self, number: &str, password: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.tip_passwords).expect("any key length");
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

/// The database's random secret `name`, made on first use (two daemons starting at once
/// agree on the first one written).
async fn database_key(writer: &AnyPool, name: &str) -> anyhow::Result<String> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    sqlx::query("INSERT INTO secret_keys (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(&fresh)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(writer)
        .await?;
    Ok(sqlx::query_scalar("SELECT secret FROM secret_keys WHERE name = $1").bind(name).fetch_one(writer).await?)
}

/// The data key made for the database, used while `CUNJING_DATA_KEY` is not set.
async fn database_data_key(writer: &AnyPool) -> anyhow::Result<DataKey> {
    let stored = database_key(writer, "data_at_rest").await?;
    Ok(DataKey::new(&Sha256::digest(stored.as_bytes()).into()))
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

    fn with_key(key: u8) -> Secrets {
        let mut s = Secrets::from_parts("aa", "");
        s.data.push(DataKey::new(&[key; 32]));
        s
    }

    #[test]
    fn a_sealed_phone_opens_only_with_its_key_and_in_its_own_column() {
        let s = with_key(1);
        let sealed = s.seal("tips.contact_phone", "13800001111");
        assert!(!sealed.contains("13800001111") && sealed.starts_with("e1:"));
        assert_ne!(sealed, s.seal("tips.contact_phone", "13800001111"), "a fresh nonce each time");
        assert_eq!(s.open("tips.contact_phone", &sealed).unwrap(), "13800001111");
        assert!(s.open("tip_reporters.chat", &sealed).is_err(), "not in another column");
        assert!(with_key(2).open("tips.contact_phone", &sealed).is_err(), "not with another key");
        let mut tampered = sealed.clone();
        tampered.replace_range(tampered.len() - 3.., "AAA");
        assert!(s.open("tips.contact_phone", &tampered).is_err(), "not once altered");
        assert_eq!(s.open("tips.contact_phone", "13900002222").unwrap(), "13900002222", "stored before sealing");
    }

    #[test]
    fn after_a_rotation_the_old_key_still_opens_and_values_are_known_to_need_sealing_again() {
        let old = with_key(1);
        let sealed = old.seal("tips.contact_phone", "13800001111");
        let mut new = with_key(2);
        new.data.push(DataKey::new(&[1; 32]));
        assert_eq!(new.open("tips.contact_phone", &sealed).unwrap(), "13800001111");
        assert!(!sealed.starts_with(&new.current_prefix()) && new.seal("x", "y").starts_with(&new.current_prefix()));
        assert!(DataKey::parse("not base64!", DATA_KEY_ENV).is_err());
        assert!(DataKey::parse("AAAA", DATA_KEY_ENV).err().unwrap().to_string().contains("32 bytes"));
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
