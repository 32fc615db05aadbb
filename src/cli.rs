//! The command line: `cunjing run` (the daemon, also what a bare `cunjing` does) and the
//! administration commands for the registry, officers and chats. Output for people is
//! English; `--json` gives machine-readable output where it makes sense.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::config::{DEFAULT_CONFIG_PATH, Settings};
use crate::core::Platform;
use crate::daemon::{self, ChannelChoice};
use crate::registry::{self, ImportError};
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
    /// The audit log: every privileged action (by the bot's users and at this command line)
    /// and every showing of a tipster's contact details.
    /// `cunjing audit verify` checks the log's hash chain and names the first record that was
    /// altered or whose predecessor is missing.
    /// The keys that seal tipsters' phones and chats at rest.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
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
        /// village:CODE, office:CODE, station:CODE or all; repeat or separate by commas.
        #[arg(long, required = true, value_delimiter = ',')]
        to: Vec<String>,
        /// warning (治安预警) or notice.
        #[arg(long, default_value = "notice")]
        kind: String,
        /// urgent, important or normal.
        #[arg(long, default_value = "normal")]
        severity: String,
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
        status: Option<String>,
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
        status: Option<String>,
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
        #[arg(long, value_parser = ["staff", "admin", "system"])]
        role: String,
    },
    /// Take the station role away from the officer with BADGE.
    Revoke { badge: String },
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
        #[arg(long, value_parser = ["staff", "admin", "system"])]
        role: String,
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
        Command::Registry(cmd) => registry_command(settings, cmd).await,
        Command::Board { village, station, out } => boards(settings, village, station, &out).await,
        Command::Officer(OfficerCommand::Enrol { badge, json }) => enrol(settings, &badge, json).await,
        Command::Officer(OfficerCommand::Grant { badge, role }) => grant(settings, &badge, Some(&role)).await,
        Command::Officer(OfficerCommand::Revoke { badge }) => grant(settings, &badge, None).await,
        Command::Audit { action: Some(AuditAction::Verify), .. } => audit_verify(settings).await,
        Command::Secrets { action: SecretsAction::Rotate } => {
            let store = open_store(settings).await?;
            let (phones, chats) = store.seal_contacts().await?;
            println!("Sealed again under the current data key: {phones} phone numbers, {chats} reporter chats.");
            println!("Once no daemon runs with the old key, remove it from CUNJING_DATA_KEYS_OLD.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { since: Some(since), csv, .. } => audit(settings, &since, csv).await,
        Command::Audit { since: None, .. } => {
            eprintln!("cunjing audit needs --since DAY (YYYY-MM-DD) to list records, or `verify` to check the chain.");
            Ok(ExitCode::FAILURE)
        }
        Command::Staff(StaffCommand::Add { username, station, role, totp, name }) => {
            staff_add(settings, &username, station.as_deref(), &role, totp, name.as_deref()).await
        }
        Command::Chat(cmd) => chat_command(settings, cmd).await,
        Command::Tips(cmd) => crate::tips_cli::run(settings, &open_store(settings).await?, cmd).await,
        Command::Broadcast(cmd) => crate::broadcast_cli::run(settings, open_store(settings).await?, cmd).await,
        Command::Report(cmd) => crate::broadcast_cli::report(settings, open_store(settings).await?, cmd).await,
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
            let started = std::time::Instant::now();
            let rules = crate::triage::Triage::load_as(&rules.unwrap_or_else(|| settings.intents_file()), how)?;
            tracing::info!(loaded_ms = started.elapsed().as_millis() as u64, "triage loaded: {}", rules.describe());
            match (evaluate, cross_validate) {
                (Some(corpus), _) => evaluate_corpus(&rules, &corpus, misses),
                (None, Some(k)) => cross_validate_examples(&rules, k, misses),
                (None, None) => triage_stdin(
                    &rules,
                    crate::triage::Context { forwarded, from_officer: officer, private, in_tip: false },
                ),
            }
        }
    }
}

/// `cunjing triage`: stdin lines → JSON lines.
fn triage_stdin(rules: &crate::triage::Triage, context: crate::triage::Context) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.context("Failed to read stdin (is it UTF-8 text?)")?;
        writeln!(out, "{}", rules.classify_in(&line, context).to_json())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `cunjing triage --cross-validate K`: the examples folder of the rules' [model].
fn cross_validate_examples(rules: &crate::triage::Triage, k: usize, misses: bool) -> anyhow::Result<ExitCode> {
    use crate::triage::corpus;
    let dir = rules.examples_dir().ok_or_else(|| anyhow::anyhow!("the rules have no [model] examples to validate"))?;
    let samples = corpus::read_dir(dir)?;
    let e = corpus::cross_validate(rules, &samples, k)?;
    print_evaluation(&e, misses);
    Ok(ExitCode::SUCCESS)
}

/// `cunjing triage --evaluate FILE`.
fn evaluate_corpus(rules: &crate::triage::Triage, corpus: &std::path::Path, misses: bool) -> anyhow::Result<ExitCode> {
    use crate::triage::corpus;
    let raw = std::fs::read_to_string(corpus).with_context(|| format!("Failed to read {}", corpus.display()))?;
    let samples = corpus::parse(&raw, &corpus.display().to_string())?;
    let e = corpus::evaluate(rules, &samples);
    print_evaluation(&e, misses);
    Ok(ExitCode::SUCCESS)
}

fn print_evaluation(e: &crate::triage::corpus::Evaluation, misses: bool) {
    print!("{}", e.markdown());
    if misses {
        println!();
        for m in &e.misses {
            let confidence = m.confidence.map(|c| format!(" {c:.2}")).unwrap_or_default();
            println!(
                "{}:{}: expected {}, got {} ({}{confidence}, rule {}): {}",
                m.source,
                m.line,
                m.expected,
                m.got,
                m.layer,
                m.rule.as_deref().unwrap_or("-"),
                m.text
            );
        }
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.store_options(&settings.file.database.url)).await
}

fn today(settings: &Settings) -> chrono::NaiveDate {
    chrono::Utc::now().with_timezone(&settings.timezone()).date_naive()
}

async fn registry_command(settings: &Settings, cmd: RegistryCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    match cmd {
        RegistryCommand::Import { dir } => match registry::import_dir(&store, &dir, today(settings)).await {
            Ok(summary) => {
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(ImportError::Invalid(errors)) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "{} error(s); nothing was imported. Fix the lines above and run the import again.",
                    errors.len()
                );
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        },
        RegistryCommand::Export { dir } => {
            registry::export_dir(&store, &dir).await?;
            println!("Registry written to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Wecom { target, url } => {
            let url = url.filter(|u| !u.is_empty());
            if let Some(u) = &url {
                let parsed = url::Url::parse(u)
                    .map_err(|e| anyhow::anyhow!("{u:?} is not a URL ({e}): give the robot's webhook address"))?;
                anyhow::ensure!(
                    matches!(parsed.scheme(), "https" | "http"),
                    "the webhook URL must start with https://"
                );
            }
            let found = match crate::store::broadcasts::Target::parse(&target).map_err(anyhow::Error::msg)? {
                crate::store::broadcasts::Target::Village(code) => {
                    store.set_village_wecom(&code, url.as_deref()).await?
                }
                crate::store::broadcasts::Target::Office(code) => store.set_office_wecom(&code, url.as_deref()).await?,
                _ => anyhow::bail!("a robot belongs to a village or an office: write village:CODE or office:CODE"),
            };
            anyhow::ensure!(found, "{target} is not in the registry");
            println!("{} {target}", if url.is_some() { "WeCom robot set for" } else { "WeCom robot removed from" });
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Check { json } => {
            let report =
                registry::check(&store, today(settings), settings.file.registry.max_villages_per_officer).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn enrol(settings: &Settings, badge: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let ttl_ms = i64::try_from(settings.file.enrolment.code_ttl_hours).unwrap_or(24) * 3_600_000;
    let Some(code) = store.issue_enrolment_code(badge, ttl_ms).await? else {
        eprintln!("No officer with badge {badge:?} in the registry; import it first (cunjing registry import DIR).");
        return Ok(ExitCode::FAILURE);
    };
    let username = bot_username(settings).await;
    let link = format!("https://t.me/{}?start={}", username.as_deref().unwrap_or("<bot_username>"), code.code);
    let expires = chrono::DateTime::from_timestamp_millis(code.expires_at)
        .map(|t| t.with_timezone(&settings.timezone()).to_rfc3339())
        .unwrap_or_default();
    if json {
        let out = serde_json::json!({
            "badge": code.badge, "name": code.name, "code": code.code,
            "expires_at": expires, "deep_link": link,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("Enrolment code for {} ({}): {}", code.name, code.badge, code.code);
        println!("Valid once, until {expires}.");
        println!("The officer opens {link}");
        println!("or sends the bot, in a private chat: /start {}", code.code);
    }
    Ok(ExitCode::SUCCESS)
}

/// `cunjing staff add`.
async fn staff_add(
    settings: &Settings,
    username: &str,
    station: Option<&str>,
    role: &str,
    totp: bool,
    name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let username = username.trim();
    anyhow::ensure!(name.is_none_or(|n| n.trim().chars().count() <= 32), "the --name must be at most 32 characters");
    anyhow::ensure!(
        !username.is_empty() && username.len() <= 64 && !username.chars().any(char::is_whitespace),
        "the user name must be 1–64 characters without spaces"
    );
    let store = open_store(settings).await?;
    let station_id = match (role, station) {
        ("system", None) => None,
        ("system", Some(_)) => anyhow::bail!("a system account is not tied to a station: leave out --station"),
        (_, None) => anyhow::bail!("--station CODE is required for a staff or admin account"),
        (_, Some(code)) => match store.station_id(code).await? {
            Some(id) => Some(id),
            None => anyhow::bail!("no station with code {code:?} in the registry"),
        },
    };
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("Failed to read the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(password.chars().count() >= 10, "the password must have at least 10 characters");
    let hash = crate::web::hash_password(password)?;
    let secret = (totp || role != "staff").then(crate::web::new_totp_secret);
    store.upsert_web_user(username, station_id, role, &hash, secret.as_deref(), crate::store::now_ms()).await?;
    store.set_web_user_display_name(username, name).await?;
    println!("Console account {username} ({role}) is ready.");
    if let Some(secret) = secret {
        println!("Second factor (TOTP, shown once): add this secret to an authenticator app:");
        println!("  {secret}");
        println!("  otpauth://totp/cunjing:{username}?secret={secret}&issuer=cunjing");
    }
    Ok(ExitCode::SUCCESS)
}

/// `cunjing officer grant|revoke`.
async fn grant(settings: &Settings, badge: &str, role: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    if !store.set_grant(badge, role, crate::store::now_ms()).await? {
        eprintln!("No officer with badge {badge:?} in the registry; import it first (cunjing registry import DIR).");
        return Ok(ExitCode::FAILURE);
    }
    match role {
        Some(role) => println!("Officer {badge} is now {role}"),
        None => println!("Officer {badge} has no station role any more"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `cunjing audit verify`.
async fn audit_verify(settings: &Settings) -> anyhow::Result<ExitCode> {
    use crate::store::audit::AuditCheck;
    match open_store(settings).await?.verify_audit().await? {
        AuditCheck::Intact { checked, before_chain } => {
            println!("The audit log's chain is intact: {checked} records verified.");
            if before_chain > 0 {
                println!("{before_chain} older records were written before the chain and cannot be verified.");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCheck::Broken { id, why } => {
            println!("The audit log's chain is broken at record {id}: {why}.");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `cunjing audit --since … [--csv]`.
async fn audit(settings: &Settings, since: &str, csv: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let tz = settings.timezone();
    let since = match chrono::NaiveDate::parse_from_str(since.trim(), "%Y-%m-%d") {
        Ok(day) => crate::domain::midnight_ms(tz, day),
        Err(_) => crate::broadcast_cli::parse_time(settings, since)?,
    };
    let rows = store.audit_since(since).await?;
    let when = |at: i64| {
        chrono::DateTime::from_timestamp_millis(at).map(|t| t.with_timezone(&tz).to_rfc3339()).unwrap_or_default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if csv {
        use std::io::Write;
        out.write_all("\u{feff}".as_bytes())?;
        let mut w = ::csv::Writer::from_writer(out);
        crate::csv_cells::write_record(&mut w, ["at", "actor", "action", "target", "result", "detail"])?;
        for r in &rows {
            crate::csv_cells::write_record(
                &mut w,
                [when(r.at), r.actor.clone(), r.action.clone(), r.target.clone(), r.result.clone(), r.detail.clone()],
            )?;
        }
        w.flush()?;
    } else {
        use std::io::Write;
        for r in &rows {
            writeln!(
                out,
                "{}  {:<24} {:<14} {:<8} {} {}",
                when(r.at),
                r.actor,
                r.action,
                r.result,
                r.target,
                r.detail
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cunjing board`: the boards of a village or of a station's villages.
async fn boards(
    settings: &Settings,
    village: Option<String>,
    station: Option<String>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let all = store.all_villages().await?;
    let villages: Vec<_> = match (&village, &station) {
        (Some(code), None) => all.into_iter().filter(|v| &v.code == code).collect(),
        (None, Some(code)) => all.into_iter().filter(|v| &v.station_code == code).collect(),
        _ => {
            eprintln!("cunjing board needs a village code, or --station CODE for every village of a station.");
            return Ok(ExitCode::FAILURE);
        }
    };
    if villages.is_empty() {
        eprintln!(
            "No village with {} in the registry; `cunjing registry export DIR` lists the codes.",
            village
                .map_or_else(|| format!("station code {:?}", station.unwrap_or_default()), |v| format!("code {v:?}"))
        );
        return Ok(ExitCode::FAILURE);
    }
    let links = crate::boards::Links {
        wechat: Some(settings.file.wecom.kf.contact_url.clone()),
        telegram_bot: bot_username(settings).await,
    };
    if links.for_village("").is_empty() {
        eprintln!("Note: no QR codes: set [wecom.kf] contact_url for WeChat, TELOXIDE_TOKEN for the Telegram link.");
    }
    let template = settings.resolve(&settings.file.paths.board_template);
    let today = chrono::Utc::now().with_timezone(&settings.timezone()).date_naive().to_string();
    let files = crate::boards::write_boards(&store, &template, &villages, &links, &today, out).await?;
    for file in &files {
        println!("{}", file.display());
    }
    println!("{} board(s) written as SVG and PNG; print them on A4.", files.len() / 2);
    Ok(ExitCode::SUCCESS)
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

async fn chat_command(settings: &Settings, cmd: ChatCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    match cmd {
        ChatCommand::Bind { chat_id, village_code, platform } => {
            let platform = Platform::parse(&platform)
                .with_context(|| format!("unknown platform {platform:?}; use telegram or console"))?;
            let Some(village) = store.village_by_code(&village_code).await? else {
                eprintln!("No village with code {village_code:?} in the registry.");
                return Ok(ExitCode::FAILURE);
            };
            let title = store.chat(platform.as_str(), chat_id).await?.map(|c| c.title).unwrap_or_default();
            store.bind_chat_to_village(platform.as_str(), chat_id, &title, village.id, None).await?;
            println!("Chat {chat_id} ({platform}) bound to {} ({})", village.name, village.code);
            Ok(ExitCode::SUCCESS)
        }
        ChatCommand::Unbind { chat_id, platform } => {
            if store.unbind_chat(&platform, chat_id).await? {
                println!("Chat {chat_id} ({platform}) unbound");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("The bot does not know chat {chat_id} on {platform}.");
                Ok(ExitCode::FAILURE)
            }
        }
        ChatCommand::List { json } => {
            let chats = store.list_chats(None).await?;
            if json {
                // Each chat with its village's code and name beside the internal ids.
                let mut rows = Vec::with_capacity(chats.len());
                for c in &chats {
                    let village = match c.village_id {
                        Some(id) => store.village_by_id(id).await?,
                        None => None,
                    };
                    let mut row = serde_json::to_value(c)?;
                    row["village_code"] = serde_json::json!(village.as_ref().map(|v| v.code.clone()));
                    row["village_name"] = serde_json::json!(village.as_ref().map(|v| v.name.clone()));
                    rows.push(row);
                }
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for c in chats {
                    let village = match c.village_id {
                        Some(id) => store.village_by_id(id).await?.map(|v| format!("{} ({})", v.name, v.code)),
                        None => None,
                    };
                    println!(
                        "{:<9} {:>16}  {:<8} {:<24} {}",
                        c.platform,
                        c.chat_id,
                        if c.active == 1 { "active" } else { "inactive" },
                        village.unwrap_or_else(|| "(not bound)".into()),
                        c.title
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
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
