//! Configuration: `bot-config/cunjing.toml`, overridden by `CUNJING__SECTION__KEY`
//! environment variables, `DATABASE_URL` and `TELOXIDE_API_URL`; the bot token only from
//! `TELOXIDE_TOKEN`.
//!
//! The file documents every key. Unknown keys are an error, so a typo never silently falls
//! back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;

use crate::store::StoreOptions;

/// Where the configuration file is looked for when neither `--config` nor `CUNJING_CONFIG`
/// names one.
pub const DEFAULT_CONFIG_PATH: &str = "bot-config/cunjing.toml";

/// The whole configuration, as the daemon and the CLI use it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sections of the file (after environment overrides).
    pub file: FileSettings,
    /// Directory of the configuration file; relative paths in the file are relative to it.
    pub base_dir: PathBuf,
    /// Bot token from `TELOXIDE_TOKEN`; `None` runs the local console demo.
    pub telegram_token: Option<SecretString>,
    /// Whether `DATABASE_URL` named the database explicitly (the demo then uses it as is).
    pub database_url_from_env: bool,
    /// `cunjing run --webhook URL`: take Telegram's updates by webhook at this URL.
    pub webhook: Option<url::Url>,
    /// The webhook's secret token, from `CUNJING_WEBHOOK_SECRET` (when unset, one is derived
    /// from the bot token, so every daemon of a deployment agrees without more setup).
    pub webhook_secret: Option<SecretString>,
    /// WeCom customer service's secrets, from `CUNJING_WECOM_KF_SECRET`,
    /// `CUNJING_WECOM_KF_TOKEN` and `CUNJING_WECOM_KF_AES_KEY` (all three, or none).
    pub wecom_kf_secrets: Option<KfSecrets>,
    /// The WeCom smart robot's secret, from `CUNJING_WECOM_ROBOT_SECRET`.
    pub wecom_robot_secret: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub general: General,
    pub database: Database,
    pub telegram: Telegram,
    pub registry: Registry,
    pub enrolment: Enrolment,
    pub tips: Tips,
    pub triage: TriageSettings,
    pub broadcast: BroadcastSettings,
    pub wecom: Wecom,
    pub http: Http,
    pub web: Web,
    pub retention: RetentionSettings,
    pub paths: Paths,
    pub demo: Demo,
    /// Added with areas (issue #24): a configuration file written before still loads.
    #[serde(default)]
    pub places: Places,
}

/// `[places]`: how a location is matched to the villages' and grids' areas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Places {
    /// A location within this many metres of another area's boundary (or sent without its
    /// datum, so it could be GCJ-02, whose offsets reach ~700 m) makes the resident confirm
    /// the village among the two nearest.
    pub confirm_within_m: u32,
    /// The datum of a location whose platform does not say it (Telegram). Unset: read both
    /// as sent and as GCJ-02, and ask when the two fall in different areas. `WGS84` suits
    /// residents who share their phone's GPS position, with a small `confirm_within_m`.
    pub unknown_datum: Option<crate::domain::Datum>,
}

impl Default for Places {
    fn default() -> Places {
        Places { confirm_within_m: 700, unknown_datum: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct General {
    pub locale: String,
    pub timezone: String,
    /// The channels `cunjing run` serves when no `--channel` is given.
    #[serde(default = "default_channels")]
    pub channels: Vec<ChannelChoice>,
    pub shutdown_timeout_secs: u64,
    pub heartbeat_secs: u64,
}

/// A channel `cunjing run` serves (`--channel`, repeatable; `[general] channels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelChoice {
    /// Telegram when TELOXIDE_TOKEN is set, otherwise the local console demo.
    Auto,
    /// Telegram (TELOXIDE_TOKEN required).
    Telegram,
    /// The local console on stdin/stdout.
    Console,
    /// WeChat residents through WeCom customer service (`[wecom.kf]`, the secrets in the
    /// environment).
    Wechat,
    /// Officers through the WeCom smart robot (`[wecom.robot]`, the secret in the
    /// environment).
    Wecom,
}

fn default_channels() -> Vec<ChannelChoice> {
    vec![ChannelChoice::Auto]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: String,
    pub max_connections: u32,
    pub busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telegram {
    pub api_url: String,
    pub poll_timeout_secs: u32,
    /// How long one Bot API request may take; it must outlast a long poll. Unset: the poll
    /// timeout plus [`HTTP_MARGIN_SECS`].
    #[serde(default)]
    pub http_timeout_secs: Option<u32>,
    pub messages_per_sec_chat: u32,
    pub messages_per_min_group: u32,
    pub messages_per_sec_overall: u32,
    /// The window of `messages_per_min_group`: Telegram's minute. Not in the shipped file;
    /// tests shorten it to measure the pacing without waiting minutes.
    #[serde(default)]
    pub group_window_ms: Option<u64>,
    pub send_retries: u32,
    /// Updates in hand before long polling waits; unset, [`Telegram::pending_limit`]
    /// chooses by the database.
    #[serde(default)]
    pub max_pending_updates: Option<usize>,
}

/// How much longer than a long poll a Bot API request may take (the poll's answer still has
/// to travel back after Telegram held it for the whole timeout).
pub const HTTP_MARGIN_SECS: u32 = 15;

impl Telegram {
    /// The HTTP client's timeout: longer than a long poll, or a quiet bot's every poll fails
    /// as a network error and teloxide backs off (issue #20). Refuses a configured value that
    /// does not outlast the poll by at least 5 s.
    pub fn http_timeout(&self) -> anyhow::Result<std::time::Duration> {
        let secs = self.http_timeout_secs.unwrap_or(self.poll_timeout_secs + HTTP_MARGIN_SECS);
        if secs < self.poll_timeout_secs + 5 {
            anyhow::bail!(
                "telegram.http_timeout_secs = {secs} does not outlast telegram.poll_timeout_secs = {} by 5 s: every quiet long poll would fail; raise it or leave it unset ({} s)",
                self.poll_timeout_secs,
                self.poll_timeout_secs + HTTP_MARGIN_SECS
            );
        }
        Ok(std::time::Duration::from_secs(secs.into()))
    }

    /// Updates the daemon holds at most before it asks Telegram for more: the configured
    /// number, else 64 on SQLite and 256 on PostgreSQL. On SQLite the two cores are the
    /// limit, and more updates in hand only hold more memory; on PostgreSQL a tip waits
    /// for two durable group commits on the server, and with 64 in hand the cores sat idle
    /// between them (BENCHMARKS.md: tips 2,688/s at 64, 3,488/s at 256).
    pub fn pending_limit(&self, backend: crate::store::Backend) -> usize {
        self.max_pending_updates.unwrap_or(match backend {
            crate::store::Backend::Sqlite => 64,
            crate::store::Backend::Postgres => 256,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub max_villages_per_officer: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    pub code_ttl_hours: u64,
    pub max_wrong_codes_per_hour: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub listen: String,
    pub webhook_path: String,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Web {
    pub enabled: bool,
    pub listen: String,
    pub secure_cookies: bool,
    pub session_idle_minutes: u32,
    pub session_max_hours: u32,
    pub max_failed_logins: u32,
    pub lockout_minutes: u32,
    pub acknowledge_within_hours: u32,
    pub resolve_within_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    pub relay_days: u32,
    pub tips_days: u32,
    pub audit_days: u32,
}

/// Audit records are kept at least this long (the database refuses earlier deletes too).
pub const MIN_AUDIT_DAYS: u32 = 183;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tips {
    pub categories: Vec<String>,
    pub conversation_timeout_minutes: u32,
    pub ack_timeout_minutes: u32,
    pub max_per_hour: u32,
    pub delete_group_tips: bool,
    /// Added after the first release: a configuration file written before still loads.
    #[serde(default = "default_wrong_passwords_per_hour")]
    pub max_wrong_passwords_per_hour: u32,
    #[serde(default = "default_wrong_passwords_per_tip")]
    pub max_wrong_passwords_per_tip: u32,
}

fn default_wrong_passwords_per_hour() -> u32 {
    5
}

fn default_wrong_passwords_per_tip() -> u32 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageSettings {
    pub max_answers_per_group_per_minute: u32,
    pub repeat_window_minutes: u32,
    pub non_police_repeat_hours: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastSettings {
    pub messages_per_sec: u32,
    pub concurrency: usize,
    pub max_attempts: i64,
    pub retry_base_ms: u64,
    pub pin_severities: Vec<crate::domain::Severity>,
    pub progress_every_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wecom {
    pub messages_per_min_per_robot: u32,
    pub timeout_secs: u64,
    /// WeChat residents through WeCom customer service (微信客服).
    #[serde(default)]
    pub kf: WecomKf,
    /// Officers through the WeCom smart robot (智能机器人), long connection.
    #[serde(default)]
    pub robot: WecomRobot,
}

/// `[wecom.robot]`: the smart robot officers use. Its secret comes only from the environment
/// (`CUNJING_WECOM_ROBOT_SECRET`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WecomRobot {
    pub bot_id: String,
    /// The long connection's endpoint (tests point it at a fake).
    pub ws_url: String,
    /// The first wait before connecting again (doubling up to 30 s). Not in the shipped
    /// file (1 s); tests set 0 to see at once whether a connection would be made again.
    pub reconnect_min_ms: u64,
}

impl Default for WecomRobot {
    fn default() -> WecomRobot {
        WecomRobot { bot_id: String::new(), ws_url: "wss://openws.work.weixin.qq.com".into(), reconnect_min_ms: 1000 }
    }
}

/// `[wecom.kf]`: the customer-service account residents reach from ordinary WeChat. Its
/// secrets come only from the environment ([`Settings::wecom_kf_secrets`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WecomKf {
    /// The organisation's CorpID (the callbacks' receive id).
    pub corp_id: String,
    /// The customer-service account (`wk…`).
    pub open_kfid: String,
    /// Where WeCom posts its callbacks on `[http] listen`.
    pub callback_path: String,
    /// The API's base URL (tests point it at a fake).
    pub api_base: String,
    /// The account's link for residents (from the admin console or `kf/add_contact_way`);
    /// the boards add each village's code to it as `scene_param`.
    pub contact_url: String,
}

impl Default for WecomKf {
    fn default() -> WecomKf {
        WecomKf {
            corp_id: String::new(),
            open_kfid: String::new(),
            callback_path: "/wecom/kf".into(),
            api_base: "https://qyapi.weixin.qq.com".into(),
            contact_url: String::new(),
        }
    }
}

/// The customer-service account's secrets (their `Debug` shows no value).
#[derive(Clone, Debug)]
pub struct KfSecrets {
    /// The app secret for `gettoken`.
    pub secret: SecretString,
    /// The callback token (signatures).
    pub token: SecretString,
    /// The 43-character EncodingAESKey.
    pub aes_key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub templates_dir: PathBuf,
    pub intents_file: PathBuf,
    pub schedule_file: PathBuf,
    pub web_templates_dir: PathBuf,
    /// The contact board's page (`cunjing board`).
    #[serde(default = "default_board_template")]
    pub board_template: PathBuf,
}

fn default_board_template() -> PathBuf {
    PathBuf::from("boards/board.svg")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demo {
    pub database_url: String,
    pub registry_dir: PathBuf,
}

impl Settings {
    /// Reads the file at `path` and applies the environment: the way `cunjing` starts.
    pub fn load(path: &Path) -> anyhow::Result<Settings> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut s = Self::from_file(path, true)?;
        if let Some(url) = env("DATABASE_URL") {
            s.file.database.url = url;
            s.database_url_from_env = true;
        }
        if let Some(url) = env("TELOXIDE_API_URL") {
            s.file.telegram.api_url = url;
        }
        s.telegram_token = env("TELOXIDE_TOKEN").map(SecretString::from);
        s.webhook_secret = env("CUNJING_WEBHOOK_SECRET").map(SecretString::from);
        s.wecom_robot_secret = env("CUNJING_WECOM_ROBOT_SECRET").map(SecretString::from);
        let kf = ["CUNJING_WECOM_KF_SECRET", "CUNJING_WECOM_KF_TOKEN", "CUNJING_WECOM_KF_AES_KEY"].map(env);
        s.wecom_kf_secrets = match kf {
            [Some(secret), Some(token), Some(aes_key)] => {
                Some(KfSecrets { secret: secret.into(), token: token.into(), aes_key: aes_key.into() })
            }
            [None, None, None] => None,
            _ => anyhow::bail!(
                "WeChat customer service needs all three of CUNJING_WECOM_KF_SECRET, CUNJING_WECOM_KF_TOKEN and CUNJING_WECOM_KF_AES_KEY; some are missing"
            ),
        };
        Ok(s)
    }

    /// Reads the file alone (with `CUNJING__…` overrides when `with_env`); no token. Tests
    /// start from this so that the machine's environment cannot change what they check.
    pub fn from_file(path: &Path, with_env: bool) -> anyhow::Result<Settings> {
        let mut builder =
            config::Config::builder().add_source(config::File::from(path).format(config::FileFormat::Toml));
        if with_env {
            builder = builder.add_source(
                config::Environment::with_prefix("CUNJING").prefix_separator("__").separator("__").try_parsing(true),
            );
        }
        let file: FileSettings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .with_context(|| format!("Failed to read the configuration {}", path.display()))?;
        file.general.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            anyhow::anyhow!(
                "{}: general.timezone {:?} is not an IANA time zone (e.g. Asia/Shanghai)",
                path.display(),
                file.general.timezone
            )
        })?;
        anyhow::ensure!(
            file.retention.audit_days >= MIN_AUDIT_DAYS,
            "{}: retention.audit_days is {}; audit records must be kept at least {MIN_AUDIT_DAYS} days (6 months)",
            path.display(),
            file.retention.audit_days
        );
        anyhow::ensure!(
            file.retention.relay_days <= file.retention.tips_days,
            "{}: retention.relay_days ({}) is longer than retention.tips_days ({}); a tipster's mapping cannot outlive the tip",
            path.display(),
            file.retention.relay_days,
            file.retention.tips_days
        );
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Settings {
            file,
            base_dir,
            telegram_token: None,
            database_url_from_env: false,
            webhook: None,
            webhook_secret: None,
            wecom_kf_secrets: None,
            wecom_robot_secret: None,
        })
    }

    /// A path from the file, resolved against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }

    pub fn schedule_file(&self) -> PathBuf {
        self.resolve(&self.file.paths.schedule_file)
    }

    pub fn timezone(&self) -> chrono_tz::Tz {
        self.file.general.timezone.parse().expect("checked at load")
    }

    pub fn store_options(&self, url: &str) -> StoreOptions {
        StoreOptions {
            url: url.to_string(),
            max_connections: self.file.database.max_connections,
            busy_timeout: Duration::from_millis(self.file.database.busy_timeout_ms),
        }
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.resolve(&self.file.paths.templates_dir)
    }

    pub fn intents_file(&self) -> PathBuf {
        self.resolve(&self.file.paths.intents_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_timeout_outlasts_the_long_poll_or_the_daemon_refuses_to_start() {
        let mut t = Settings::from_file(Path::new(DEFAULT_CONFIG_PATH), false).unwrap().file.telegram;
        t.poll_timeout_secs = 30;
        t.http_timeout_secs = None;
        assert_eq!(t.http_timeout().unwrap(), std::time::Duration::from_secs(45));
        t.http_timeout_secs = Some(17);
        let err = t.http_timeout().unwrap_err().to_string();
        assert!(err.contains("does not outlast telegram.poll_timeout_secs = 30"), "{err}");
        t.http_timeout_secs = Some(35);
        assert_eq!(t.http_timeout().unwrap(), std::time::Duration::from_secs(35));
    }

    #[test]
    fn the_shipped_configuration_file_loads() {
        let s = Settings::from_file(Path::new(DEFAULT_CONFIG_PATH), false).unwrap();
        assert_eq!(s.file.general.locale, "zh-CN");
        assert_eq!(s.timezone(), chrono_tz::Asia::Shanghai);
        assert!(s.templates_dir().join("zh-CN.toml").exists());
    }

    #[test]
    fn a_misspelt_key_is_an_error_not_a_silent_default() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(DEFAULT_CONFIG_PATH).unwrap().replace("max_connections", "max_conections");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", Settings::from_file(&path, false).unwrap_err());
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn updates_in_hand_are_chosen_by_the_database_unless_configured() {
        use crate::store::Backend;
        let s = Settings::from_file(Path::new(DEFAULT_CONFIG_PATH), false).unwrap();
        assert_eq!(s.file.telegram.pending_limit(Backend::Sqlite), 64);
        assert_eq!(s.file.telegram.pending_limit(Backend::Postgres), 256);
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(DEFAULT_CONFIG_PATH)
            .unwrap()
            .replace("# max_pending_updates = 64", "max_pending_updates = 100");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let s = Settings::from_file(&path, false).unwrap();
        assert_eq!(s.file.telegram.pending_limit(Backend::Postgres), 100);
        assert_eq!(s.file.telegram.pending_limit(Backend::Sqlite), 100);
    }

    #[test]
    fn the_datum_of_points_that_do_not_say_it_is_read_from_places_and_a_misspelling_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let shipped = std::fs::read_to_string(DEFAULT_CONFIG_PATH).unwrap();
        assert_eq!(Settings::from_file(Path::new(DEFAULT_CONFIG_PATH), false).unwrap().file.places.unknown_datum, None);
        std::fs::write(&path, shipped.replace("# unknown_datum = \"WGS84\"", "unknown_datum = \"WGS84\"")).unwrap();
        let s = Settings::from_file(&path, false).unwrap();
        assert_eq!(s.file.places.unknown_datum, Some(crate::domain::Datum::Wgs84));
        std::fs::write(&path, shipped.replace("# unknown_datum = \"WGS84\"", "unknown_datum = \"WSG84\"")).unwrap();
        let err = format!("{:#}", Settings::from_file(&path, false).unwrap_err());
        assert!(err.contains("WSG84"), "{err}");
    }

    #[test]
    fn an_audit_retention_under_six_months_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(DEFAULT_CONFIG_PATH).unwrap().replace("audit_days = 365", "audit_days = 90");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", Settings::from_file(&path, false).unwrap_err());
        assert!(err.contains("at least 183 days"), "{err}");
    }
}
