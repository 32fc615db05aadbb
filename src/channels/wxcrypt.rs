//! WeCom's callback encryption, the WXBizMsgCrypt scheme used by customer service (微信客服),
//! application callbacks and the smart robot: every callback carries `msg_signature`,
//! `timestamp`, `nonce` and an `Encrypt` value.
//!
//! - key: `base64(EncodingAESKey + "=")`, 32 bytes; IV: its first 16 bytes; AES-256-CBC;
//! - padding: PKCS#7 to a **32-byte** block (pad values 1..=32; a stock 16-byte unpadder
//!   refuses valid messages);
//! - plaintext: 16 random bytes ‖ message length (u32, big-endian) ‖ message ‖ receive id
//!   (the CorpID; empty for the smart robot);
//! - `msg_signature = sha1(sorted [token, timestamp, nonce, encrypt] concatenated)`, checked
//!   (in constant time) before anything is decrypted.
//!
//! Written here on RustCrypto's `aes`/`cbc`/`sha1` rather than taken from a crate: the WeCom
//! crypto crates are small single-author projects, and the scheme is short. The tests use
//! the official SDK's sample values.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// The padding block of the scheme.
const BLOCK: usize = 32;

/// Why a callback was refused. Never says more than the kind: the caller logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    #[error("the EncodingAESKey is not 43 characters of base64")]
    BadKey,
    #[error("the msg_signature does not match")]
    BadSignature,
    #[error("the encrypted text is not base64 of whole AES blocks")]
    BadCiphertext,
    #[error("the decrypted text is malformed (padding or length)")]
    BadPlaintext,
    #[error("the message is for another receive id")]
    WrongReceiver,
}

/// One WeCom callback configuration: the token, the AES key and the receive id.
#[derive(Clone)]
pub struct WxCrypt {
    token: String,
    key: [u8; 32],
    receive_id: String,
}

impl std::fmt::Debug for WxCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the key.
        f.debug_struct("WxCrypt").field("receive_id", &self.receive_id).finish_non_exhaustive()
    }
}

impl WxCrypt {
    /// `encoding_aes_key` is the 43-character EncodingAESKey of the admin console.
    pub fn new(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<WxCrypt, CryptError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptError::BadKey);
        }
        // The admin console's keys do not always end in canonical base64 bits, and WeCom's own
        // SDKs decode them leniently.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = lenient.decode(format!("{encoding_aes_key}=")).map_err(|_| CryptError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptError::BadKey)?;
        Ok(WxCrypt { token: token.to_string(), key, receive_id: receive_id.to_string() })
    }

    /// `sha1` of the sorted, concatenated values, in lowercase hex.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let digest = Sha1::digest(parts.concat().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks the signature, then decrypts: the callback's message (XML or JSON), or the
    /// URL check's `echostr` to answer with.
    pub fn open(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<String, CryptError> {
        let expected = self.signature(timestamp, nonce, encrypted);
        if !bool::from(expected.as_bytes().ct_eq(msg_signature.to_ascii_lowercase().as_bytes())) {
            return Err(CryptError::BadSignature);
        }
        self.decrypt(encrypted)
    }

    /// Decrypts an `Encrypt` value (the signature already checked).
    fn decrypt(&self, encrypted: &str) -> Result<String, CryptError> {
        let mut data = BASE64.decode(encrypted.trim()).map_err(|_| CryptError::BadCiphertext)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptError::BadCiphertext);
        }
        let plain = Decryptor::new(&self.key.into(), self.key[..16].into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| CryptError::BadCiphertext)?;
        let pad = usize::from(*plain.last().ok_or(CryptError::BadPlaintext)?);
        if pad == 0
            || pad > BLOCK
            || pad > plain.len()
            || plain[plain.len() - pad..].iter().any(|&b| usize::from(b) != pad)
        {
            return Err(CryptError::BadPlaintext);
        }
        let body = &plain[..plain.len() - pad];
        let len_bytes: [u8; 4] = body.get(16..20).ok_or(CryptError::BadPlaintext)?.try_into().expect("4 bytes");
        let len = u32::from_be_bytes(len_bytes) as usize;
        let message = body.get(20..20 + len).ok_or(CryptError::BadPlaintext)?;
        let receiver = &body[20 + len..];
        if receiver != self.receive_id.as_bytes() {
            return Err(CryptError::WrongReceiver);
        }
        String::from_utf8(message.to_vec()).map_err(|_| CryptError::BadPlaintext)
    }

    /// Encrypts `message` with the 16 random bytes `random` (a reply to a callback, or a
    /// test's callback): the `Encrypt` value.
    pub fn seal(&self, message: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(message.len() + self.receive_id.len() + 20 + BLOCK);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(self.receive_id.as_bytes());
        let pad = BLOCK - plain.len() % BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let len = plain.len();
        let sealed = Encryptor::new(&self.key.into(), self.key[..16].into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .expect("whole blocks");
        BASE64.encode(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official WXBizMsgCrypt SDK's sample (Sample.cpp / Sample.cs of WeCom's download).
    const TOKEN: &str = "QDG6eK";
    const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const CORP_ID: &str = "wx5823bf96d3bd56c7";
    const ENCRYPTED: &str = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";

    fn sample() -> WxCrypt {
        WxCrypt::new(TOKEN, AES_KEY, CORP_ID).unwrap()
    }

    #[test]
    fn the_official_sample_callback_opens_to_its_xml() {
        let xml =
            sample().open("477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149", ENCRYPTED).unwrap();
        assert!(xml.starts_with("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"), "{xml}");
        assert!(xml.ends_with("</xml>"), "{xml}");
    }

    #[test]
    fn the_official_sample_url_check_gives_back_its_echostr() {
        let echostr = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
        let plain = sample().open("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780", echostr);
        assert_eq!(plain.unwrap(), "1616140317555161061");
    }

    #[test]
    fn a_wrong_signature_is_refused_before_anything_is_decrypted() {
        let c = sample();
        let wrong = "477715d11cdb4164915debcba66cb864d751f3e7";
        assert_eq!(c.open(wrong, "1409659813", "1372623149", ENCRYPTED), Err(CryptError::BadSignature));
        // A valid signature over garbage: the signature passes, the decryption refuses.
        let garbage = "bm90IGJsb2Nrcw==";
        let sig = c.signature("1", "2", garbage);
        assert_eq!(c.open(&sig, "1", "2", garbage), Err(CryptError::BadCiphertext));
    }

    #[test]
    fn a_message_for_another_corp_is_refused() {
        let other = WxCrypt::new(TOKEN, AES_KEY, "ww_other").unwrap();
        let sig = other.signature("1409659813", "1372623149", ENCRYPTED);
        assert_eq!(other.open(&sig, "1409659813", "1372623149", ENCRYPTED), Err(CryptError::WrongReceiver));
    }

    #[test]
    fn sealing_pads_to_32_byte_blocks_and_opens_again() {
        let c = sample();
        for message in
            ["", "短", "x".repeat(12).as_str(), "测试一下中文的情况，消息长度是按字节来算的", &"y".repeat(100)]
        {
            let sealed = c.seal(message, [7; 16]);
            let raw = BASE64.decode(&sealed).unwrap();
            assert_eq!(raw.len() % 32, 0, "{message:?} sealed to whole 32-byte blocks");
            let sig = c.signature("1700000000", "nonce", &sealed);
            assert_eq!(c.open(&sig, "1700000000", "nonce", &sealed).unwrap(), message);
        }
    }

    #[test]
    fn a_short_key_is_refused() {
        assert_eq!(WxCrypt::new(TOKEN, "short", CORP_ID).unwrap_err(), CryptError::BadKey);
    }
}
