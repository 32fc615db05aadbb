//! [`Core::handle`]: one inbound update in, the actions to take out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::flood::{FloodGuard, FloodLimits};
use super::routing;
use super::wire::{ButtonData, Command, MenuItem, StartPayload};
use super::{Button, ChatKind, Event, Inbound, Outbound, Sender};
use crate::domain::{BroadcastKind, Severity};
use crate::store::Store;
use crate::store::officers::looks_like_enrolment_code;
use crate::texts::{Msg, Texts};
use crate::triage::{self, EmergencyKind, Intent, Triage};

/// A source of the current time, injected so that tests can fix "today".
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// What the core needs besides the store, the texts and the rules.
#[derive(Clone)]
pub struct CoreOptions {
    /// Decides "today" for dated assignments.
    pub timezone: chrono_tz::Tz,
    /// The bot's own username, once the adapter knows it: a command addressed to another bot
    /// (`/help@otherbot`) is not ours.
    pub bot_username: Option<String>,
    pub clock: Clock,
    /// Tip categories offered as buttons, in order (codes; labels are templates).
    pub tip_categories: Vec<String>,
    /// How long a guided conversation (a tip being written) waits for the next answer.
    pub conversation_ttl_ms: i64,
    /// How long an officer has to acknowledge a tip before it goes to the next in the chain.
    pub ack_timeout_ms: i64,
    /// Most tips one chat may submit in an hour.
    pub max_tips_per_hour: i64,
    /// Delete a tip posted in a group (where the bot is admin) once it is recorded.
    pub delete_group_tips: bool,
    /// Limits on the answers triage gives in groups.
    pub flood: FloodLimits,
    /// Where the triage rules came from, for SIGHUP and `/reload`.
    pub triage_path: Option<PathBuf>,
    /// Warnings of these severities are pinned in groups where the bot is an admin.
    pub pin_severities: Vec<Severity>,
    /// Recurring notices and monthly jobs (`None`: no scheduler, as in the CLI).
    pub schedule: Option<Arc<super::schedule::Schedule>>,
    /// Notified when a broadcast is created or cancelled, so the delivery workers start at once.
    pub broadcast_wake: Arc<tokio::sync::Notify>,
    /// This daemon's name in the `daemons` table and on the delivery rows it claims.
    pub daemon_id: String,
    /// How many daemons are alive (by their heartbeats), this one included: they share the
    /// bot's sending limits.
    pub live_daemons: Arc<std::sync::atomic::AtomicU32>,
    /// How each channel answers "is this person still in the group?" (set by the channel).
    pub members: Arc<RwLock<HashMap<super::Platform, Arc<dyn super::MemberCheck>>>>,
    /// How each channel fetches a file by id (set by the channel).
    pub media: Arc<RwLock<HashMap<super::Platform, Arc<dyn super::MediaSource>>>>,
    /// Wrong enrolment codes one account may try in an hour before it has to wait.
    pub max_wrong_codes_per_hour: i64,
    /// Wrong `/status` passwords one account may give in an hour before it has to wait.
    pub max_wrong_status_per_hour: i64,
    /// Wrong `/status` passwords a tip takes in an hour before its status is locked for the
    /// rest of that hour, whoever asks.
    pub max_wrong_status_per_tip: i64,
    /// How long closed tips, their tipsters' mappings and audit records are kept.
    pub retention: Retention,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Broadcast messages sent a second (`[broadcast] messages_per_sec`; 0: no limit), for the
    /// time a broadcast will take.
    pub broadcast_per_second: u32,
    /// The platforms this daemon serves, in the order of its channels: an officer with no
    /// account on a tip's platform is reached on the first of these where they have one.
    pub served: Vec<super::Platform>,
    /// A location this close (metres) to another area makes the resident confirm the
    /// village (`[places] confirm_within_m`).
    pub confirm_within_m: f64,
    /// The datum taken for a location whose platform does not say it (`[places]
    /// unknown_datum`); `None`: both readings.
    pub unknown_datum: Option<crate::places::Datum>,
}

/// Retention periods, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A closed tip's mapping to its tipster's chat.
    pub relay_ms: i64,
    /// A closed tip itself.
    pub tips_ms: i64,
    /// An audit record.
    pub audit_ms: i64,
}

impl Default for Retention {
    fn default() -> Retention {
        const DAY: i64 = 86_400_000;
        Retention { relay_ms: 30 * DAY, tips_ms: 1095 * DAY, audit_ms: 365 * DAY }
    }
}

impl Retention {
    /// The periods of `[retention]`.
    pub fn from_settings(settings: &crate::config::Settings) -> Retention {
        const DAY: i64 = 86_400_000;
        let r = &settings.file.retention;
        Retention {
            relay_ms: i64::from(r.relay_days) * DAY,
            tips_ms: i64::from(r.tips_days) * DAY,
            audit_ms: i64::from(r.audit_days) * DAY,
        }
    }
}

impl CoreOptions {
    pub fn new(timezone: chrono_tz::Tz) -> CoreOptions {
        CoreOptions {
            timezone,
            bot_username: None,
            clock: Arc::new(Utc::now),
            tip_categories: triage::TipCategory::ALL.map(|c| c.as_str().to_string()).to_vec(),
            conversation_ttl_ms: 30 * 60_000,
            ack_timeout_ms: 30 * 60_000,
            max_tips_per_hour: 5,
            delete_group_tips: false,
            flood: FloodLimits::default(),
            triage_path: None,
            pin_severities: vec![Severity::Urgent],
            schedule: None,
            broadcast_wake: Arc::new(tokio::sync::Notify::new()),
            daemon_id: new_daemon_id(),
            live_daemons: Arc::new(std::sync::atomic::AtomicU32::new(1)),
            members: Arc::default(),
            media: Arc::default(),
            max_wrong_codes_per_hour: 5,
            max_wrong_status_per_hour: 5,
            max_wrong_status_per_tip: 10,
            retention: Retention::default(),
            metrics: Arc::default(),
            broadcast_per_second: 25,
            served: Vec::new(),
            confirm_within_m: 700.0,
            unknown_datum: None,
        }
    }
}

/// The transport-agnostic bot. Cheap to clone; share one per daemon.
#[derive(Clone)]
pub struct Core {
    pub(super) store: Store,
    pub(super) texts: Arc<Texts>,
    /// Swapped whole by [`Core::reload_triage`]; readers take a cheap clone of the `Arc`.
    triage: Arc<RwLock<Arc<Triage>>>,
    flood: Arc<FloodGuard>,
    /// Where this daemon last saw each officer, and when it last wrote that down
    /// (`officer_last_used`; see [`Core::note_officer_seen`]).
    pub(super) seen: Arc<std::sync::Mutex<HashMap<i64, (super::Platform, i64)>>>,
    pub(super) opts: CoreOptions,
}

/// How long the check whether a sender is an officer may hold up an answer (a slow
/// database must not delay an emergency's).
const OFFICER_CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// What an update is counted as in `/metrics`: the intent of a text, or the kind of event.
fn update_label(intent: Option<&Intent>, event: &Event) -> &'static str {
    match (intent, event) {
        (Some(Intent::Emergency(_)), _) => "emergency",
        (Some(i), _) => i.as_str(),
        (None, Event::Text { .. }) => "command",
        (None, Event::Media { .. }) => "media",
        (None, Event::Location { .. }) => "location",
        (None, Event::Button { .. }) => "button",
        (None, Event::Unsupported { .. }) => "unsupported",
        (None, _) => "membership",
    }
}

/// A name for this run of the daemon, `PID-RANDOM`: unique enough for heartbeats, and its
/// process id lets a restarted daemon on the same host know its own earlier run is dead
/// ([`crate::core::timers::resume_own`]).
fn new_daemon_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{random}", std::process::id())
}

impl Core {
    /// The channel's way of checking group membership, if it has one.
    pub(super) fn members(&self, platform: super::Platform) -> Option<Arc<dyn super::MemberCheck>> {
        self.opts.members.read().expect("members lock").get(&platform).cloned()
    }

    /// Installs how `platform` checks group membership (privileged actions in groups ask it).
    pub fn set_member_check(&self, platform: super::Platform, check: Arc<dyn super::MemberCheck>) {
        self.opts.members.write().expect("members lock").insert(platform, check);
    }

    /// Installs how `platform` fetches files (the console shows tips' photos with it).
    pub fn set_media_source(&self, platform: super::Platform, source: Arc<dyn super::MediaSource>) {
        self.opts.media.write().expect("media lock").insert(platform, source);
    }

    /// The channel's file fetcher, if it has one.
    pub fn media_source(&self, platform: super::Platform) -> Option<Arc<dyn super::MediaSource>> {
        self.opts.media.read().expect("media lock").get(&platform).cloned()
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.opts.metrics
    }

    pub fn daemon_id(&self) -> &str {
        &self.opts.daemon_id
    }

    /// How many daemons share the bot's sending limits (kept by the heartbeat).
    pub fn live_daemons(&self) -> Arc<std::sync::atomic::AtomicU32> {
        self.opts.live_daemons.clone()
    }

    pub fn new(store: Store, texts: Arc<Texts>, triage: Arc<Triage>, opts: CoreOptions) -> Core {
        let flood = Arc::new(FloodGuard::new(opts.flood));
        Core { store, texts, triage: Arc::new(RwLock::new(triage)), flood, seen: Arc::default(), opts }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn texts(&self) -> &Texts {
        &self.texts
    }

    /// The rules in force.
    pub fn triage(&self) -> Arc<Triage> {
        self.triage.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the rules file again and, if it is good, puts it in force for the next message.
    /// A bad file changes nothing; the error says what is wrong where. Returns the number of
    /// rules.
    pub fn reload_triage(&self) -> anyhow::Result<usize> {
        let path =
            self.opts.triage_path.as_ref().ok_or_else(|| anyhow::anyhow!("the rules were not loaded from a file"))?;
        let fresh = Triage::load(path)?;
        let n = fresh.rule_count();
        *self.triage.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        tracing::info!(rules = n, path = %path.display(), "triage rules reloaded");
        Ok(n)
    }

    /// Takes one answer from a group's per-minute budget (private chats have none).
    pub(super) fn group_may_answer(&self, inbound: &Inbound) -> bool {
        inbound.chat.kind != ChatKind::Group
            || self.flood.take_answer(inbound.platform.as_str(), inbound.chat.id, self.now_ms())
    }

    /// The tip categories offered, in order (codes).
    pub fn tip_categories(&self) -> &[String] {
        &self.opts.tip_categories
    }

    /// The label residents see for a tip category.
    pub fn category_label(&self, code: &str) -> String {
        self.texts.render(Msg::CategoryLabel, minijinja::context! { code })
    }

    /// The bot's username on Telegram, once connected.
    pub fn bot_username(&self) -> Option<String> {
        self.opts.bot_username.clone()
    }

    pub(super) fn conversation_ttl_ms(&self) -> i64 {
        self.opts.conversation_ttl_ms
    }

    pub(super) fn ack_timeout_ms(&self) -> i64 {
        self.opts.ack_timeout_ms
    }

    pub(super) fn delete_group_tips(&self) -> bool {
        self.opts.delete_group_tips
    }

    /// `[places] confirm_within_m`.
    pub(super) fn confirm_within_m(&self) -> f64 {
        self.opts.confirm_within_m
    }

    /// A shared point as the index reads it: its own datum, else `[places] unknown_datum`.
    pub(super) fn spot(&self, lat: f64, lon: f64, datum: Option<crate::places::Datum>) -> crate::places::Spot {
        crate::places::Spot { lat, lon, datum: datum.or(self.opts.unknown_datum) }
    }

    pub(super) fn max_tips_per_hour(&self) -> i64 {
        self.opts.max_tips_per_hour
    }

    /// The configured time zone ("today", schedules, the console's times).
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.opts.timezone
    }

    /// Now, by the injected clock, as UTC milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.opts.clock)().timestamp_millis()
    }

    /// Tells the core its username on the platform (learnt by the adapter at start).
    pub fn set_bot_username(&mut self, username: Option<String>) {
        self.opts.bot_username = username;
    }

    /// The platforms the daemon serves, in the order of its channels (set by the daemon
    /// before the core is shared).
    pub fn set_served(&mut self, served: Vec<super::Platform>) {
        self.opts.served = served;
    }

    /// The station's staff groups on `first` and on every other platform the daemon serves.
    pub(super) async fn station_chats_everywhere(
        &self,
        station_id: i64,
        first: &str,
    ) -> anyhow::Result<Vec<(super::Platform, i64)>> {
        let mut platforms: Vec<super::Platform> = super::Platform::parse(first).into_iter().collect();
        platforms.extend(self.opts.served.iter().copied().filter(|p| p.as_str() != first));
        let mut chats = Vec::new();
        for p in platforms {
            chats.extend(self.store.station_chats(station_id, p.as_str()).await?.into_iter().map(|c| (p, c)));
        }
        Ok(chats)
    }

    /// Where to reach officer `officer_id`: their account on the platform they used last,
    /// else on `preferred` (the platform the tip or the emergency came from), else on the
    /// first platform the daemon serves where they have one. The last-used platform is read
    /// only for an officer with accounts on several (most have one: no query for them).
    pub async fn officer_reach(
        &self,
        officer_id: i64,
        preferred: &str,
    ) -> anyhow::Result<Option<(super::Platform, i64)>> {
        let mut order: Vec<super::Platform> = super::Platform::parse(preferred).into_iter().collect();
        order.extend(self.opts.served.iter().copied().filter(|p| p.as_str() != preferred));
        let mut accounts: Vec<(super::Platform, i64)> = Vec::with_capacity(order.len());
        for p in order {
            if let Some(account) = self.store.officer_account(officer_id, p.as_str()).await? {
                accounts.push((p, account));
            }
        }
        if accounts.len() > 1
            && let Some(last) = self.store.officer_last_platform(officer_id).await?
            && let Some(found) = accounts.iter().find(|(p, _)| p.as_str() == last)
        {
            return Ok(Some(*found));
        }
        Ok(accounts.first().copied())
    }

    /// Today in the configured time zone.
    pub fn today(&self) -> NaiveDate {
        (self.opts.clock)().with_timezone(&self.opts.timezone).date_naive()
    }

    /// Handles one update. Never fails: an internal error is logged and, where the person
    /// expects an answer, answered with an apology that points to 110.
    pub async fn handle(&self, inbound: &Inbound) -> Vec<Outbound> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.handle_into(inbound, &tx).await;
        drop(tx);
        let mut out = Vec::new();
        while let Ok(action) = rx.try_recv() {
            out.push(action);
        }
        out
    }

    /// [`Core::handle`], handing each action to `tx` as soon as it is decided: the channel
    /// sends the emergency answer while the officers are still being looked up (or while the
    /// database does not answer at all).
    /// Whether handling this update again could do nothing: a group message that triage
    /// reads as chatter (no answer, nothing stored), a forwarded article, a bot's message. Such
    /// an update need not be recorded as handled (`handled_updates`), and most of a busy
    /// group's traffic is like that: recording it too cost a quarter of the throughput of a
    /// group mix (BENCHMARKS.md).
    pub fn leaves_no_trace(&self, inbound: &Inbound) -> bool {
        let Event::Text { text, forwarded, .. } = &inbound.event else { return false };
        if inbound.chat.kind != ChatKind::Group {
            return false;
        }
        if matches!(inbound.sender, Sender::User { is_bot: true, .. }) {
            return true;
        }
        if Command::parse(text, self.opts.bot_username.as_deref()).is_some() {
            return false;
        }
        let context = triage::Context { forwarded: *forwarded, from_officer: false, private: false, in_tip: false };
        *forwarded || self.triage().classify_in(text, context).intent == Intent::Chatter
    }

    pub async fn handle_into(&self, inbound: &Inbound, tx: &tokio::sync::mpsc::UnboundedSender<Outbound>) {
        let emit = |actions: Vec<Outbound>| {
            for action in actions {
                let _ = tx.send(action);
            }
        };
        // An emergency is answered first, from the rules and templates alone, so the answer
        // goes out even when the database is down; alerting the officers comes after.
        // Triage runs once per message, here; the handlers below get its verdict.
        let (intent, repeat_of) = self.text_intent(inbound).await;
        self.metrics().update(update_label(intent.as_ref(), &inbound.event));
        if let Some(earlier) = repeat_of {
            // Asked again in the group: a short line pointing to the earlier answer (a reply
            // to the earlier message, which the answer itself replied to), not silence.
            if self.group_may_answer(inbound) {
                let kind = match &intent {
                    Some(Intent::Emergency(k)) => Some(k.as_str()),
                    _ => None,
                };
                let text = self.texts.render(Msg::RepeatPointer, minijinja::context! { kind });
                emit(vec![Outbound::Message {
                    chat_id: inbound.chat.id,
                    text,
                    buttons: vec![],
                    reply_to: Some(earlier),
                }]);
            }
            return;
        }
        if let (Some(Intent::Emergency(kind)), Event::Text { text, .. }, Some(_)) =
            (&intent, &inbound.event, inbound.sender.person())
        {
            let kind = *kind;
            if self.group_may_answer(inbound) {
                emit(vec![self.emergency_reply(inbound, kind)]);
            } else {
                tracing::warn!(kind = kind.as_str(), "emergency answer held back by the group's flood limit");
            }
            match self.emergency_alerts(inbound, kind, text).await {
                Ok(alerts) => emit(alerts),
                Err(e) => tracing::error!(error = format!("{e:#}"), "could not alert the officers of an emergency"),
            }
        }
        let urgent = matches!(intent, Some(Intent::Emergency(_)));
        match self.dispatch(inbound, intent).await {
            Ok(more) => emit(more),
            Err(_) if urgent => {}
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "failed to handle an update");
                let expects_answer = match &inbound.event {
                    Event::Text { text, .. } => inbound.chat.kind == ChatKind::Private || text.starts_with('/'),
                    Event::Button { .. } => true,
                    _ => false,
                };
                if let Event::Button { callback_id, .. } = &inbound.event {
                    emit(vec![Outbound::AnswerButton { callback_id: callback_id.clone(), text: None }]);
                }
                if expects_answer {
                    emit(vec![Outbound::text(inbound.chat.id, self.texts.plain(Msg::InternalError))]);
                }
            }
        }
    }

    /// What a message asks for, for the messages triage applies to: text that is not a
    /// command and not from a bot. A forwarded message, an officer's message in a group and
    /// a message repeated in the same group are not acted on.
    /// The second value is the message a repeated group message repeats.
    async fn text_intent(&self, inbound: &Inbound) -> (Option<Intent>, Option<i64>) {
        let Event::Text { text, forwarded, message_id } = &inbound.event else { return (None, None) };
        if matches!(inbound.sender, Sender::User { is_bot: true, .. })
            || Command::parse(text, self.opts.bot_username.as_deref()).is_some()
        {
            return (None, None);
        }
        let rules = self.triage();
        let mut context = triage::Context {
            forwarded: *forwarded,
            from_officer: false,
            private: inbound.chat.kind == ChatKind::Private,
            in_tip: false,
        };
        let mut verdict = rules.classify_in(text, context);
        let in_group = inbound.chat.kind == ChatKind::Group;
        if !in_group && matches!(verdict.intent, Intent::Emergency(_)) {
            // Inside a tip conversation the text is the tip's detail (triage's in_tip); as
            // for officers, a slow database does not hold the emergency answer up.
            if let Ok(Ok(true)) = tokio::time::timeout(OFFICER_CHECK_TIMEOUT, self.tip_in_progress(inbound)).await {
                context.in_tip = true;
                verdict = rules.classify_in(text, context);
            }
        }
        let reportish = matches!(verdict.intent, Intent::Emergency(_) | Intent::Tip(_) | Intent::NonPolice(_));
        if in_group && reportish {
            // An officer's notice quotes 诈骗 and 110; but an emergency is not held up by a
            // slow or broken database: without an answer in time, the sender is a resident.
            if let Ok(Ok(Some(_))) = tokio::time::timeout(OFFICER_CHECK_TIMEOUT, self.officer_of(inbound)).await {
                context.from_officer = true;
                verdict = rules.classify_in(text, context);
            }
        }
        if in_group
            && verdict.intent != Intent::Chatter
            && let Some(earlier) = self.flood.repeat_of(
                inbound.platform.as_str(),
                inbound.chat.id,
                &triage::normalise(text),
                *message_id,
                self.now_ms(),
            )
        {
            tracing::info!(
                intent = verdict.intent.as_str(),
                "repeated message in the group: pointed to the earlier answer"
            );
            return (Some(verdict.intent), Some(earlier));
        }
        tracing::info!(
            intent = verdict.intent.as_str(),
            layer = verdict.layer.as_str(),
            confidence = verdict.confidence.map(f64::from),
            rule = verdict.rule.as_deref().unwrap_or("-"),
            len = text.chars().count(),
            "message triaged"
        );
        (Some(verdict.intent), None)
    }

    fn emergency_reply(&self, inbound: &Inbound, kind: EmergencyKind) -> Outbound {
        tracing::warn!(kind = kind.as_str(), "emergency reported");
        let text = self.texts.render(Msg::EmergencyReply, minijinja::context! { kind => kind.as_str() });
        let reply_to = match &inbound.event {
            Event::Text { message_id, .. } if inbound.chat.kind == ChatKind::Group => Some(*message_id),
            _ => None,
        };
        Outbound::Message { chat_id: inbound.chat.id, text, buttons: vec![], reply_to }
    }

    /// Tells the village's reachable officers and the station's staff groups, at once.
    async fn emergency_alerts(
        &self,
        inbound: &Inbound,
        kind: EmergencyKind,
        text: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        let platform = inbound.platform.as_str();
        let village = match inbound.chat.kind {
            ChatKind::Group => routing::village_of_chat(&self.store, platform, inbound.chat.id).await?,
            ChatKind::Private => match inbound.sender.person() {
                Some(user) => match self.store.resident_village(platform, user).await? {
                    Some(id) => self.store.village_by_id(id).await?,
                    None => None,
                },
                None => None,
            },
        };
        let Some(village) = village else { return Ok(vec![]) };
        let alert = self.texts.render(
            Msg::EmergencyAlert,
            minijinja::context! { kind => kind.as_str(), village => &village.name, text, in_group => inbound.chat.kind == ChatKind::Group },
        );
        let mut out = Vec::new();
        let chain = routing::duty_chain(&self.store, village.clone(), self.today()).await?;
        for member in &chain.members {
            if let Some((on, account)) = self.officer_reach(member.officer_id, platform).await? {
                out.push(Outbound::on(on, Outbound::text(account, alert.clone())));
            }
        }
        for (on, chat) in self.station_chats_everywhere(village.station_id, platform).await? {
            out.push(Outbound::on(on, Outbound::text(chat, alert.clone())));
        }
        Ok(out)
    }

    async fn dispatch(&self, inbound: &Inbound, intent: Option<Intent>) -> anyhow::Result<Vec<Outbound>> {
        let intent = intent.unwrap_or(Intent::Chatter);
        let platform = inbound.platform.as_str();
        match &inbound.event {
            Event::BotAdded => {
                if inbound.chat.kind != ChatKind::Group {
                    return Ok(vec![]);
                }
                let chat = self.store.chat_joined(platform, inbound.chat.id, &inbound.chat.title).await?;
                tracing::info!(chat_id = inbound.chat.id, "added to a group");
                let village = match chat.village_id {
                    Some(id) => self.store.village_by_id(id).await?,
                    None => None,
                };
                let text = self.texts.render(
                    Msg::GroupGreeting,
                    minijinja::context! { bound => village.is_some(), village_name => village.as_ref().map(|v| v.name.clone()) },
                );
                Ok(vec![Outbound::text(inbound.chat.id, text)])
            }
            Event::BotAdmin { admin } => {
                if inbound.chat.kind == ChatKind::Group {
                    self.store.chat_joined(platform, inbound.chat.id, &inbound.chat.title).await?;
                    self.store.set_bot_admin(platform, inbound.chat.id, *admin).await?;
                    tracing::info!(chat_id = inbound.chat.id, admin, "bot's admin rights changed");
                }
                Ok(vec![])
            }
            Event::BotRemoved => {
                if inbound.chat.kind == ChatKind::Group {
                    self.store.chat_left(platform, inbound.chat.id).await?;
                    tracing::info!(chat_id = inbound.chat.id, "removed from a group");
                }
                Ok(vec![])
            }
            Event::Migrated { from_chat_id, to_chat_id } => {
                self.store.chat_migrated(platform, *from_chat_id, *to_chat_id).await?;
                tracing::info!(from_chat_id, to_chat_id, "group migrated to a supergroup");
                Ok(vec![])
            }
            Event::Button { callback_id, data, .. } => self.on_button(inbound, callback_id, data).await,
            Event::Unsupported { .. } => {
                // Only a person writing a tip is waiting for an answer.
                if Self::is_private_person(inbound) && self.tip_in_progress(inbound).await? {
                    return Ok(vec![Outbound::text(inbound.chat.id, self.texts.plain(Msg::TipUnsupported))]);
                }
                Ok(vec![])
            }
            Event::Media { .. } | Event::Location { .. } => {
                if !Self::is_private_person(inbound) {
                    return Ok(vec![]);
                }
                let mut out: Vec<Outbound> = self.expired_conversation_notice(inbound).await?.into_iter().collect();
                match self.tip_message(inbound).await? {
                    Some(more) => out.extend(more),
                    None => match &inbound.event {
                        Event::Location { latitude, longitude, datum, .. } => {
                            let spot = self.spot(*latitude, *longitude, *datum);
                            out.extend(self.location_found(inbound, &spot).await?)
                        }
                        _ => out.push(Outbound::text(inbound.chat.id, self.texts.plain(Msg::MediaOutsideTip))),
                    },
                }
                Ok(out)
            }
            Event::Text { message_id, text, forwarded } => {
                if let Sender::User { is_bot: true, .. } = inbound.sender {
                    return Ok(vec![]);
                }
                if let Some((cmd, args)) = Command::parse(text, self.opts.bot_username.as_deref()) {
                    return self.on_command(inbound, *message_id, cmd, args).await;
                }
                if *forwarded {
                    // A forwarded article is not the sender's own question.
                    return Ok(vec![]);
                }
                match inbound.chat.kind {
                    ChatKind::Group => self.on_group_text(inbound, *message_id, intent).await,
                    ChatKind::Private => {
                        let mut out: Vec<Outbound> =
                            self.expired_conversation_notice(inbound).await?.into_iter().collect();
                        match self.tip_message(inbound).await? {
                            Some(more) => out.extend(more),
                            None => out.extend(self.on_private_text(inbound, text, intent).await?),
                        }
                        Ok(out)
                    }
                }
            }
        }
    }

    async fn on_command(
        &self,
        inbound: &Inbound,
        message_id: i64,
        cmd: Command,
        args: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let in_group = inbound.chat.kind == ChatKind::Group;
        tracing::info!(command = cmd.name(), "command");
        if in_group && let Some(out) = self.on_staff_command(inbound, message_id, &cmd, args).await? {
            return Ok(out);
        }
        match cmd {
            Command::Card => {
                if in_group {
                    self.group_card(inbound, Some(message_id)).await
                } else {
                    self.private_card(inbound).await
                }
            }
            Command::Help => {
                let msg = if in_group { Msg::HelpGroup } else { Msg::HelpPrivate };
                Ok(vec![Outbound::text(chat_id, self.texts.plain(msg))])
            }
            Command::Start if !in_group => self.on_start(inbound, StartPayload::parse(args)).await,
            Command::Tip if !in_group => self.start_tip(inbound, None).await,
            Command::Tip => self.group_tip(inbound, message_id, args).await,
            Command::Status if !in_group => self.on_status(inbound, args).await,
            Command::Cancel if !in_group => self.cancel_conversation(inbound).await,
            Command::Stop if !in_group => self.stop_relays(inbound).await,
            Command::Duty if !in_group => self.on_duty(inbound, args).await,
            Command::Whoami if !in_group => self.on_whoami(inbound).await,
            Command::Alert => self.start_compose(inbound, BroadcastKind::Warning).await,
            Command::Notice => self.start_compose(inbound, BroadcastKind::Notice).await,
            Command::Bind | Command::Unbind if !in_group => {
                Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::GroupOnly))])
            }
            Command::Bind => self.on_bind(inbound, message_id, args).await,
            Command::BindStation => self.on_bind_station(inbound, message_id, args).await,
            Command::Unbind => self.on_unbind(inbound, message_id).await,
            // Unknown commands in a group may belong to another bot: stay quiet.
            _ if in_group => Ok(vec![]),
            _ => Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::HelpPrivate))]),
        }
    }

    /// Plain text in a group: answered only when triage recognises it, within the group's
    /// flood limit.
    async fn on_group_text(&self, inbound: &Inbound, message_id: i64, intent: Intent) -> anyhow::Result<Vec<Outbound>> {
        // Emergencies are answered in `handle`, before anything that needs the database.
        if matches!(intent, Intent::Emergency(_) | Intent::Chatter) {
            return Ok(vec![]);
        }
        if let Intent::NonPolice(topic) = &intent {
            let Some(user) = inbound.sender.person() else { return Ok(vec![]) };
            if !self.flood.first_pointer(inbound.platform.as_str(), user, topic, self.now_ms()) {
                return Ok(vec![]);
            }
        }
        if !self.group_may_answer(inbound) {
            tracing::info!(intent = intent.as_str(), "answer held back by the group's flood limit");
            return Ok(vec![]);
        }
        match intent {
            Intent::ContactQuery => self.group_card(inbound, Some(message_id)).await,
            Intent::Tip(category) => self.group_tip_noticed(inbound, message_id, category).await,
            Intent::NonPolice(topic) => {
                Ok(self.reply(inbound.chat.id, message_id, Msg::NonPoliceHint, minijinja::context! { topic }))
            }
            Intent::StatusQuery => Ok(vec![Outbound::Message {
                chat_id: inbound.chat.id,
                text: self.texts.plain(Msg::StatusInGroup),
                buttons: vec![vec![Button::StartPrivate {
                    label: self.texts.plain(Msg::ButtonPrivateStatus),
                    payload: StartPayload::Status.into(),
                }]],
                reply_to: Some(message_id),
            }]),
            Intent::Emergency(_) | Intent::Chatter => Ok(vec![]),
        }
    }

    async fn on_private_text(&self, inbound: &Inbound, text: &str, intent: Intent) -> anyhow::Result<Vec<Outbound>> {
        let trimmed = text.trim();
        if looks_like_enrolment_code(trimmed) {
            return self.enrol(inbound, trimmed).await;
        }
        match intent {
            Intent::Emergency(_) => Ok(vec![]), // answered in `handle`
            Intent::ContactQuery => self.private_card(inbound).await,
            Intent::Tip(category) => self.start_tip_from_text(inbound, category, trimmed).await,
            Intent::StatusQuery => self.my_tips(inbound).await,
            Intent::NonPolice(topic)
                if inbound.sender.person().is_some_and(|user| {
                    self.flood.first_pointer(inbound.platform.as_str(), user, &topic, self.now_ms())
                }) =>
            {
                Ok(vec![Outbound::text(
                    inbound.chat.id,
                    self.texts.render(Msg::NonPoliceHint, minijinja::context! { topic }),
                )])
            }
            Intent::NonPolice(_) | Intent::Chatter => self.village_search(inbound, trimmed).await,
        }
    }

    async fn on_button(&self, inbound: &Inbound, callback_id: &str, data: &str) -> anyhow::Result<Vec<Outbound>> {
        let answer = Outbound::AnswerButton { callback_id: callback_id.to_string(), text: None };
        let Some(button) = ButtonData::parse(data) else {
            tracing::info!("a button the bot never drew");
            return Ok(vec![answer]);
        };
        if let ButtonData::Ack(delivery) = button {
            // Answered with the confirmation itself.
            return self.acknowledge(inbound, callback_id, delivery).await;
        }
        let mut out = vec![answer];
        match button {
            ButtonData::Ack(_) => {}
            ButtonData::Compose(b) => out.extend(self.compose_button(inbound, b).await?),
            ButtonData::Tip(b) => out.extend(self.tip_button(inbound, b).await?),
            ButtonData::Officer(b) => out.extend(self.officer_tip_button(inbound, b).await?),
            ButtonData::PickVillage(code) => out.extend(self.choose_village(inbound, &code).await?),
            ButtonData::Menu(item) if Self::is_private_person(inbound) => out.extend(match item {
                MenuItem::Card => self.private_card(inbound).await?,
                MenuItem::Tip => self.start_tip(inbound, None).await?,
                MenuItem::Status => self.my_tips(inbound).await?,
            }),
            ButtonData::Menu(_) => {}
        }
        Ok(out)
    }

    async fn on_start(&self, inbound: &Inbound, payload: StartPayload) -> anyhow::Result<Vec<Outbound>> {
        match payload {
            StartPayload::Village(code) => self.choose_village(inbound, &code).await,
            // From a group where triage recognised a tip.
            StartPayload::Tip { village, category } => {
                let village = self.store.village_by_code(&village).await?;
                match category {
                    Some(c) => self.start_tip_in_category(inbound, village, c).await,
                    None => self.start_tip(inbound, village).await,
                }
            }
            StartPayload::Status => self.my_tips(inbound).await,
            StartPayload::Other(code) if looks_like_enrolment_code(&code) => self.enrol(inbound, &code).await,
            StartPayload::Other(_) => Ok(vec![Outbound::text(inbound.chat.id, self.texts.plain(Msg::PrivateWelcome))]),
        }
    }

    pub(super) fn reply(&self, chat_id: i64, message_id: i64, msg: Msg, ctx: impl Serialize) -> Vec<Outbound> {
        vec![Outbound::Message {
            chat_id,
            text: self.texts.render(msg, ctx),
            buttons: vec![],
            reply_to: Some(message_id),
        }]
    }
}
