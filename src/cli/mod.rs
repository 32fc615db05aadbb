//! The command line: `cunjing run` (the daemon, also what a bare `cunjing` does) and the
//! administration commands for the registry, officers and chats. Output for people is
//! English; `--json` gives machine-readable output where it makes sense.
//!
//! This module holds the clap types, the dispatch and the audit record each command leaves;
//! the commands themselves live one file per noun:
//!
//! - `registry`: `cunjing registry import|export|wecom|check`.
//! - `boards`: `cunjing board`, the printable contact boards.
//! - `officers`: `cunjing officer enrol|grant|revoke`.
//! - `staff`: `cunjing staff add`, the console's accounts.
//! - `chats`: `cunjing chat bind|unbind|list`.
//! - `audit`: `cunjing audit` and `cunjing secrets rotate`.
//! - `tips`: `cunjing tips list|show|export`.
//! - `broadcast`: `cunjing broadcast send|status|cancel|correct|export-cap|import-cap`.
//! - `report`: `cunjing report monthly`.
//! - `triage`: `cunjing triage`, classifying messages and measuring triage.
//!
//! The library never imports this module: what the commands share with the daemon and the
//! console (months and local midnights, export rows, the CAP mapping) lives in the library.

mod audit;
mod boards;
mod broadcast;
mod chats;
mod officers;
mod registry;
mod report;
mod staff;
mod tips;
mod triage;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, TimeZone};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::config::{DEFAULT_CONFIG_PATH, Settings};
use crate::daemon::{self, ChannelChoice};
use crate::domain::{BroadcastKind, Datum, Grant, Severity};
use crate::store::Store;

/// cunjing (村警): every village group gets its named officer.
#[derive(Debug, Parser)]
#[command(name = "cunjing", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "CUNJING_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chain: every record matches its hash and follows the one before it.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Seal every tipster's phone and chat again under the current CUNJING_DATA_KEY (set the
    /// new key there and the old one in CUNJING_DATA_KEYS_OLD first; the daemon does the
    /// same at every start).
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default): Telegram when TELOXIDE_TOKEN is set, otherwise the
    /// local console demo.
    Run {
        /// A channel to serve; repeat it to serve several at once
        /// (`--channel telegram --channel console`). Default: `[general] channels`.
        #[arg(long, value_enum)]
        channel: Vec<ChannelChoice>,
        /// Take Telegram's updates by webhook at this public HTTPS URL (served on
        /// `[http] listen`, behind a TLS reverse proxy) instead of long polling.
        #[arg(long, value_name = "URL")]
        webhook: Option<url::Url>,
    },
    /// Import, export and check the registry (stations, offices, villages, officers,
    /// assignments).
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Print contact boards (警民联系牌, A4 SVG and PNG): a village's, or every village of a
    /// station.
    Board {
        /// The village code.
        village: Option<String>,
        /// Every village of this station (code) instead.
        #[arg(long)]
        station: Option<String>,
        /// Where the SVG files go.
        #[arg(long, default_value = "boards")]
        out: PathBuf,
    },
    /// Officer accounts.
    #[command(subcommand)]
    Officer(OfficerCommand),
    /// Group chats and their bindings.
    #[command(subcommand)]
    Chat(ChatCommand),
    /// Tips residents reported: list, show, export. Tipsters are never shown.
    #[command(subcommand)]
    Tips(TipsCommand),
    /// Security warnings and notices to village groups: send, follow, cancel, CAP 1.2.
    #[command(subcommand)]
    Broadcast(BroadcastCommand),
    /// Monthly figures per officer.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Accounts of the station console (the web page of `[web]`).
    #[command(subcommand)]
    Staff(StaffCommand),
    /// The keys that seal tipsters' phones and chats at rest.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// The audit log: every privileged action (by the bot's users and at this command line)
    /// and every showing of a tipster's contact details.
    /// `cunjing audit verify` checks the log's hash chain and names the first record that was
    /// altered or whose predecessor is missing.
    Audit {
        #[command(subcommand)]
        action: Option<AuditAction>,
        /// From this day (YYYY-MM-DD, in general.timezone) or instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// CSV (UTF-8 with BOM, for Excel) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Classify messages: one message per line on stdin, one JSON object per line on stdout
    /// ({"intent", "kind"|"category"|"topic", "layer", "rule", "confidence"}). With
    /// --evaluate, measure triage against a labelled corpus instead; with --cross-validate,
    /// measure the model on its own examples, each fold by a model trained on the others.
    Triage {
        /// Rules file [default: paths.intents_file of the configuration].
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Take every message as forwarded.
        #[arg(long)]
        forwarded: bool,
        /// Take every message as written by an officer.
        #[arg(long)]
        officer: bool,
        /// Take every message as written in a private chat (long texts are not articles).
        #[arg(long)]
        private: bool,
        /// The rules alone, without the model of [model].
        #[arg(long)]
        no_model: bool,
        /// Train another learner than [model] kind: logistic or naive_bayes.
        #[arg(long, value_name = "KIND", value_parser = ["logistic", "naive_bayes"])]
        learner: Option<String>,
        /// A corpus of `label<TAB>flags<TAB>text` lines: print per-intent precision and
        /// recall, emergency recall, hard-negative false alarms and the confusion matrix
        /// (Markdown).
        #[arg(long, value_name = "FILE", conflicts_with = "cross_validate")]
        evaluate: Option<PathBuf>,
        /// K-fold cross-validation on the model's own examples (for tuning thresholds
        /// without touching a held-out set).
        #[arg(long, value_name = "K")]
        cross_validate: Option<usize>,
        /// With --evaluate or --cross-validate: list every message triage got wrong.
        #[arg(long)]
        misses: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BroadcastCommand {
    /// Queue a broadcast; the running daemon delivers it (and records each group's outcome).
    Send {
        /// village:CODE, office:CODE, station:CODE, all, area:CODE (the village's or grid's
        /// area and the areas touching it) or near:LAT,LON,KM; repeat or separate by commas.
        #[arg(long, required_unless_present = "near", value_delimiter = ',')]
        to: Vec<String>,
        /// LAT,LON,KM: the villages whose areas come within KM (at most 50) of the point
        /// (WGS-84 unless --datum says otherwise); the same as --to near:LAT,LON,KM.
        #[arg(long, value_name = "LAT,LON,KM", allow_hyphen_values = true)]
        near: Option<String>,
        /// The datum of --near's point: WGS84 (GPS, the default), GCJ02 (Chinese web maps),
        /// CGCS2000.
        #[arg(long, requires = "near", value_parser = datum)]
        datum: Option<Datum>,
        /// warning (治安预警) or notice.
        #[arg(long, default_value_t = BroadcastKind::Notice, value_parser = broadcast_kind)]
        kind: BroadcastKind,
        /// urgent, important or normal.
        #[arg(long, default_value_t = Severity::Normal, value_parser = severity)]
        severity: Severity,
        #[arg(long)]
        text: String,
        /// The headline residents see above the text [default: by kind, from the templates].
        #[arg(long)]
        event: Option<String>,
        /// Send at this local time (YYYY-MM-DD HH:MM or RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Do not send to groups not reached by this local time.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Progress of a broadcast: totals by state (they add up to the targets) and, with
    /// --ledger, every target.
    Status {
        id: i64,
        #[arg(long)]
        ledger: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop a broadcast: pending targets are not sent; sent messages are deleted (within
    /// Telegram's 48 hours) or followed by a correction.
    Cancel { id: i64 },
    /// Send a correction: a new text to every group that got broadcast ID, as a reply to it.
    Correct {
        id: i64,
        #[arg(long)]
        text: String,
    },
    /// Write broadcast ID as a CAP 1.2 alert (stdout, or --out FILE).
    ExportCap {
        id: i64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Turn a CAP 1.2 alert into a broadcast. Only status=Actual reaches real groups; an
    /// Update or Cancel of an alert imported earlier corrects or cancels that broadcast.
    ImportCap {
        file: PathBuf,
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per officer: warnings published, tips received / acknowledged / resolved, median
    /// time to acknowledge, ratings.
    Monthly {
        /// YYYY-MM [default: last month].
        #[arg(long)]
        month: Option<String>,
        /// Only this station.
        #[arg(long)]
        station: Option<String>,
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TipsCommand {
    /// List tips, newest first.
    List {
        /// Only this station's villages.
        #[arg(long)]
        station: Option<String>,
        /// new, acknowledged, in_progress, resolved, rejected, merged, or open (the first three).
        #[arg(long)]
        status: Option<crate::domain::StatusFilter>,
        /// Only tips from this day on (YYYY-MM-DD, local time zone).
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Show one tip with its timeline.
    Show { number: String },
    /// Write tips to a CSV file that Excel opens with Chinese intact (UTF-8 with BOM).
    Export {
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        station: Option<String>,
        #[arg(long)]
        status: Option<crate::domain::StatusFilter>,
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
    },
    /// Give tip NUMBER to the officer with BADGE (who must serve the tip's village today).
    Assign {
        number: String,
        badge: String,
        /// Act as an operator of this station (code): only its tips.
        #[arg(long)]
        station: Option<String>,
    },
    /// Close tip NUMBER as resolved (or rejected) with a note the tipster reads.
    Close {
        number: String,
        #[arg(long)]
        note: String,
        /// 不予受理 instead of 已办结.
        #[arg(long)]
        reject: bool,
        #[arg(long)]
        station: Option<String>,
    },
    /// Reopen a resolved or rejected tip (处理中 again) for a reason written to its timeline.
    Reopen {
        number: String,
        #[arg(long)]
        note: String,
        #[arg(long)]
        station: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Import the five CSV files of DIR; nothing is imported if any line is wrong.
    Import { dir: PathBuf },
    /// Write the registry to DIR in the import format.
    Export { dir: PathBuf },
    /// Set (or with no URL, remove) the WeCom group robot of a village or office:
    /// broadcasts to it are posted there too.
    Wecom {
        /// village:CODE or office:CODE.
        target: String,
        /// The robot's webhook URL (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…).
        url: Option<String>,
    },
    /// Print coverage gaps: villages without a resident officer or a group, officers
    /// without a phone or not enrolled, officers with too many villages.
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OfficerCommand {
    /// Issue a one-time enrolment code for the officer with BADGE; the officer sends it to
    /// the bot in a private chat (or opens the printed link).
    Enrol {
        badge: String,
        #[arg(long)]
        json: bool,
    },
    /// Give the officer with BADGE a station role on top of their kind: `staff` (内勤) or
    /// `admin` of their station, or `system` (every station). See README "Who may do what".
    Grant {
        badge: String,
        #[arg(long, value_parser = grant_parser())]
        role: Grant,
    },
    /// Take the station role away from the officer with BADGE.
    Revoke { badge: String },
}

/// `--role`: one of the stored spellings of [`Grant`] (staff, admin, system).
fn grant_parser() -> impl clap::builder::TypedValueParser<Value = Grant> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Grant::codes())
        .map(|code| Grant::from_code(&code).expect("the parser offers only grants"))
}

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Create (or reset) a console account; the password is read from stdin (one line, at
    /// least 10 characters). Admins always get a TOTP second factor: its secret is printed
    /// once, to add to an authenticator app.
    Add {
        username: String,
        /// The account's station (not for `--role system`).
        #[arg(long)]
        station: Option<String>,
        #[arg(long, value_parser = grant_parser())]
        role: Grant,
        /// Give a staff account a TOTP second factor too.
        #[arg(long)]
        totp: bool,
        /// The person's name (e.g. 张三), shown in the console where the account's actions
        /// appear (内勤 张三); the login name otherwise.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Bind a group chat to a village.
    Bind {
        /// The chat id (Telegram group ids are negative: pass them as `-- -100…` or `=-100…`).
        #[arg(allow_negative_numbers = true)]
        chat_id: i64,
        village_code: String,
        #[arg(long, default_value = "telegram")]
        platform: String,
    },
    /// Remove a group chat's binding.
    Unbind {
        #[arg(allow_negative_numbers = true)]
        chat_id: i64,
        #[arg(long, default_value = "telegram")]
        platform: String,
    },
    /// List the group chats the bot knows.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line; the process exit code comes back.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Run { channel: Vec::new(), webhook: None }) {
        Command::Run { channel, webhook } => {
            if let Some(url) = webhook {
                anyhow::ensure!(
                    url.scheme() == "https",
                    "--webhook {url} must be an https:// URL (Telegram calls only HTTPS)"
                );
                settings.webhook = Some(url);
            }
            let channels = if channel.is_empty() { settings.file.general.channels.clone() } else { channel };
            run_until_stopped(settings, channels).await
        }
        command => run_privileged(&settings, command).await,
    }
}

/// What a command does, for the audit log (`None`: it changes and reveals nothing).
fn audit_entry(command: &Command) -> Option<(&'static str, String)> {
    Some(match command {
        Command::Registry(RegistryCommand::Import { dir }) => ("registry_import", dir.display().to_string()),
        Command::Registry(RegistryCommand::Wecom { target, .. }) => ("bind", format!("wecom {target}")),
        Command::Registry(_) | Command::Run { .. } | Command::Triage { .. } | Command::Board { .. } => return None,
        Command::Officer(OfficerCommand::Enrol { badge, .. }) => ("enrol", format!("officer:{badge}")),
        Command::Officer(OfficerCommand::Grant { badge, role }) => ("enrol", format!("officer:{badge} grant {role}")),
        Command::Officer(OfficerCommand::Revoke { badge }) => ("enrol", format!("officer:{badge} revoke")),
        Command::Chat(ChatCommand::Bind { chat_id, village_code, .. }) => {
            ("bind", format!("chat:{chat_id} village:{village_code}"))
        }
        Command::Chat(ChatCommand::Unbind { chat_id, .. }) => ("bind", format!("chat:{chat_id} unbind")),
        Command::Chat(ChatCommand::List { .. }) => return None,
        Command::Tips(TipsCommand::Show { number }) => ("view_contact", format!("tip:{number}")),
        // Decided by the tip workflow, which writes the decision (allowed or denied) itself.
        Command::Tips(TipsCommand::Assign { .. } | TipsCommand::Close { .. } | TipsCommand::Reopen { .. }) => {
            return None;
        }
        Command::Tips(_) => ("export", "tips".to_string()),
        Command::Broadcast(BroadcastCommand::Status { .. } | BroadcastCommand::ExportCap { .. }) => return None,
        Command::Broadcast(cmd) => ("broadcast", format!("{cmd:?}").split_whitespace().next().unwrap_or("").into()),
        Command::Report(_) => ("export", "report".to_string()),
        Command::Audit { action: Some(AuditAction::Verify), .. } => ("audit_verify", String::new()),
        Command::Secrets { action: SecretsAction::Rotate } => ("rotate_keys", "tips".to_string()),
        Command::Audit { since, .. } => ("audit_read", format!("since {}", since.as_deref().unwrap_or(""))),
        Command::Staff(StaffCommand::Add { username, role, .. }) => ("enrol", format!("web:{username} {role}")),
    })
}

/// How the audit log names the operator at the command line: `cli:USER`.
pub fn cli_label() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    if user.is_empty() { "cli".to_string() } else { format!("cli:{user}") }
}

/// The commands that use the database, each written to the audit log first (the operator
/// at the command line is a system admin).
async fn run_privileged(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    if let Some((action, target)) = audit_entry(&command) {
        let store = open_store(settings).await?;
        let actor = cli_label();
        store.audit(crate::store::now_ms(), &actor, action, &target, "allowed", "").await?;
        store.close().await;
    }
    match command {
        Command::Run { .. } => unreachable!("handled by run"),
        Command::Registry(cmd) => registry::run(settings, cmd).await,
        Command::Board { village, station, out } => boards::run(settings, village, station, &out).await,
        Command::Officer(cmd) => officers::run(settings, cmd).await,
        Command::Audit { action: Some(AuditAction::Verify), .. } => audit::verify(settings).await,
        Command::Secrets { action: SecretsAction::Rotate } => audit::rotate_keys(settings).await,
        Command::Audit { since: Some(since), csv, .. } => audit::list(settings, &since, csv).await,
        Command::Audit { since: None, .. } => {
            eprintln!("cunjing audit needs --since DAY (YYYY-MM-DD) to list records, or `verify` to check the chain.");
            Ok(ExitCode::FAILURE)
        }
        Command::Staff(cmd) => staff::run(settings, cmd).await,
        Command::Chat(cmd) => chats::run(settings, cmd).await,
        Command::Tips(cmd) => tips::run(settings, &open_store(settings).await?, cmd).await,
        Command::Broadcast(cmd) => broadcast::run(settings, open_store(settings).await?, cmd).await,
        Command::Report(cmd) => report::run(settings, open_store(settings).await?, cmd).await,
        Command::Triage { rules, forwarded, officer, private, no_model, learner, evaluate, cross_validate, misses } => {
            let how = crate::triage::Load {
                without_model: no_model,
                learner: learner.map(|l| {
                    if l == "naive_bayes" {
                        crate::triage::model::ModelKind::NaiveBayes
                    } else {
                        crate::triage::model::ModelKind::Logistic
                    }
                }),
            };
            let task = match (evaluate, cross_validate) {
                (Some(corpus), _) => triage::Task::Evaluate(corpus),
                (None, Some(k)) => triage::Task::CrossValidate(k),
                (None, None) => triage::Task::Classify(crate::triage::Context {
                    forwarded,
                    from_officer: officer,
                    private,
                    in_tip: false,
                }),
            };
            triage::run(&rules.unwrap_or_else(|| settings.intents_file()), how, task, misses)
        }
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.store_options(&settings.file.database.url)).await
}

fn today(settings: &Settings) -> chrono::NaiveDate {
    chrono::Utc::now().with_timezone(&settings.timezone()).date_naive()
}

/// A local time (`YYYY-MM-DD HH:MM`) or RFC 3339, as UTC ms.
/// `--kind`: a broadcast kind as stored.
fn broadcast_kind(s: &str) -> Result<BroadcastKind, String> {
    BroadcastKind::from_code(s).ok_or_else(|| format!("kind {s:?}: use warning or notice"))
}

/// `--datum`: a map datum by name (aliases as `Datum::parse` takes them).
fn datum(s: &str) -> Result<Datum, String> {
    Datum::parse(s).map_err(|e| e.to_string())
}

/// `--severity`: a severity as stored.
fn severity(s: &str) -> Result<Severity, String> {
    Severity::from_code(s).ok_or_else(|| format!("severity {s:?}: use urgent, important or normal"))
}

fn parse_time(settings: &Settings, s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .with_context(|| format!("{s:?} is not a time: write YYYY-MM-DD HH:MM (local) or 2026-11-23T09:00:00+08:00"))?;
    let local = settings
        .timezone()
        .from_local_datetime(&naive)
        .earliest()
        .with_context(|| format!("{s:?} does not exist in {}", settings.timezone()))?;
    Ok(local.timestamp_millis())
}

/// The bot's username from Telegram when a token is configured (for the deep link).
async fn bot_username(settings: &Settings) -> Option<String> {
    use teloxide::prelude::Requester;
    let token = settings.telegram_token.as_ref()?;
    let bot = crate::channels::telegram::build_bot(settings, token).ok()?;
    match bot.get_me().await {
        Ok(me) => me.username.clone(),
        Err(e) => {
            let redacted = e.to_string().replace(token.expose_secret(), "<token>");
            tracing::warn!(error = %redacted, "could not ask Telegram for the bot's username");
            None
        }
    }
}

/// Runs the daemon until Ctrl-C or SIGTERM, then gives it `general.shutdown_timeout_secs` to
/// finish what it has in hand. Exit code 0 for a clean stop, 1 when the time ran out.
async fn run_until_stopped(settings: Settings, channels: Vec<ChannelChoice>) -> anyhow::Result<ExitCode> {
    let timeout = std::time::Duration::from_secs(settings.file.general.shutdown_timeout_secs.max(1));
    let signalled = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = signalled.clone();
    let daemon = daemon::run(settings, &channels, async move {
        shutdown_signal().await;
        notify.notify_one();
    });
    tokio::pin!(daemon);
    tokio::select! {
        result = &mut daemon => {
            result?;
            tracing::info!("stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        _ = async { signalled.notified().await; tokio::time::sleep(timeout).await } => {
            tracing::error!(timeout_secs = timeout.as_secs(), "shutdown did not finish in time; work in flight is abandoned");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
