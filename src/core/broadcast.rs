//! Broadcasts: security warnings (治安预警) and notices from officers, station staff, the CLI
//! and the scheduler to village groups, and the worker that delivers them.
//!
//! Creating a broadcast writes one ledger row per target in the same transaction
//! ([`crate::store::broadcasts`]). A [`Deliverer`] per channel (Telegram, the console, WeCom
//! robots) is driven by [`run_deliveries`]: it claims due rows, sends at the configured rate,
//! settles each row as it goes (sent, retried with backoff, failed, lost) and tells the sender
//! how far it got. Rows stay in the database, so a daemon killed mid-broadcast finishes it
//! after a restart; only a send in flight at the kill can reach its group twice.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::wire::{ButtonData, ComposeButton, ComposeTarget};
use super::{Button, ChatKind, Core, Inbound, Outbound, Platform};
use crate::authz::{Action, Actor, Subject};
use crate::domain::{BroadcastKind, BroadcastStatus, CapStatus, Severity};
use crate::store::broadcasts::{BroadcastRow, ClaimedDelivery, Near, NewBroadcast, Settle, Target};
use crate::store::officers::OfficerRow;
use crate::texts::Msg;

/// Telegram lets a bot delete its messages in groups for 48 hours; after that a correction
/// is posted instead.
const DELETE_WINDOW_MS: i64 = 47 * 3_600_000;

/// One message for a [`Deliverer`] to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub delivery_id: i64,
    pub chat_id: i64,
    /// The WeCom robot's webhook URL.
    pub address: Option<String>,
    pub text: String,
    pub photo: Option<String>,
    pub buttons: Vec<Vec<Button>>,
    /// For corrections: the original message in that chat.
    pub reply_to: Option<i64>,
    /// Pin it (the bot is an admin there and the severity asks for it).
    pub pin: bool,
    /// Asked at the last moment, after the channel's pacing wait: false when a cancel, a
    /// correction or the expiry came in the meantime, and the message must not go.
    pub still_wanted: StillWanted,
}

/// Whether a claimed send is still wanted (see [`Delivery::still_wanted`]).
#[derive(Clone, Default)]
pub struct StillWanted(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl StillWanted {
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> StillWanted {
        StillWanted(Some(Arc::new(check)))
    }

    pub fn check(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f())
    }
}

impl std::fmt::Debug for StillWanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "StillWanted(checked)" } else { "StillWanted(always)" })
    }
}

/// What became of one send.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Sent {
        message_id: Option<i64>,
        pinned: bool,
        /// Something worth keeping in the ledger (a pin that failed …).
        note: Option<String>,
        /// The group had become a supergroup: the new chat (the binding is updated).
        migrated_to: Option<i64>,
    },
    /// A passing failure (flood control, 5xx, network): try again, not before `after`.
    Retry { after: Duration, detail: String },
    /// The chat is gone for the bot (kicked, deleted): the chat is marked lost.
    Lost(String),
    /// The request itself failed; trying again cannot help.
    Failed(String),
    /// Not sent: it was no longer wanted when its turn came ([`Delivery::still_wanted`]).
    Stopped,
}

/// A channel's way of sending broadcast messages.
pub trait Deliverer: Send + Sync + 'static {
    /// The ledger's `channel` this deliverer serves (`telegram`, `console`, `wecom`).
    fn channel(&self) -> &'static str;
    /// Whether this channel talks to people (and so reports progress to senders).
    fn reports(&self) -> bool {
        true
    }
    fn send(&self, delivery: Delivery) -> impl Future<Output = SendOutcome> + Send;
    /// Deletes a sent message; false when the platform refused.
    fn delete(&self, chat_id: i64, message_id: i64) -> impl Future<Output = bool> + Send;
}

/// How the worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Sends per second over all targets of this channel (0: no limit of its own; the
    /// channel's limiter still applies).
    pub per_second: u32,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Attempts before a target is recorded as failed.
    pub max_attempts: i64,
    /// Backoff after the first passing failure, doubled each attempt (at most 10 minutes).
    pub retry_base: Duration,
    /// How often the worker looks for due work when not woken.
    pub idle: Duration,
    /// How often a sender hears how far a long broadcast got.
    pub progress_every: Duration,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            per_second: 25,
            concurrency: 64,
            max_attempts: 5,
            retry_base: Duration::from_secs(2),
            idle: Duration::from_secs(2),
            progress_every: Duration::from_secs(60),
        }
    }
}

impl WorkerOptions {
    /// The pacing of `[broadcast]`.
    pub fn from_settings(settings: &crate::config::Settings) -> WorkerOptions {
        let b = &settings.file.broadcast;
        WorkerOptions {
            per_second: b.messages_per_sec,
            concurrency: b.concurrency.max(1),
            max_attempts: b.max_attempts.max(1),
            retry_base: Duration::from_millis(b.retry_base_ms),
            // Retries are looked for at least as often as the first backoff.
            idle: Duration::from_millis(b.retry_base_ms.clamp(10, 2000)),
            progress_every: Duration::from_secs(b.progress_every_secs.max(1)),
        }
    }
}

/// A broadcast asked for by a person, the CLI or the scheduler.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: BroadcastKind,
    pub severity: Severity,
    pub text: String,
    pub event: Option<String>,
    pub photo: Option<String>,
    pub targets: Vec<Target>,
    pub sender: Option<OfficerRow>,
    /// Who sent it when no officer did ("CLI", a schedule job's name …).
    pub sender_label: String,
    pub report: Option<(String, i64)>,
    pub send_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub cap_status: CapStatus,
    pub cap_identifier: Option<String>,
    pub cap_references: Option<String>,
    pub references_id: Option<i64>,
    pub schedule_job: Option<String>,
}

impl Request {
    pub fn new(
        kind: BroadcastKind,
        severity: Severity,
        text: &str,
        targets: Vec<Target>,
        sender_label: &str,
    ) -> Request {
        Request {
            kind,
            severity,
            text: text.to_string(),
            event: None,
            photo: None,
            targets,
            sender: None,
            sender_label: sender_label.to_string(),
            report: None,
            send_at: None,
            expires_at: None,
            cap_status: CapStatus::Actual,
            cap_identifier: None,
            cap_references: None,
            references_id: None,
            schedule_job: None,
        }
    }
}

/// A broadcast created: its id and how many targets its ledger holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub id: i64,
    pub targets: i64,
}

/// The radii offered around a shared location, in kilometres.
const RADII_KM: [u32; 3] = [1, 3, 5];

/// A guided `/alert` or `/notice` in an officer's private chat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Compose {
    kind: BroadcastKind,
    targets: Vec<String>,
    target_label: String,
    severity: Option<Severity>,
    text: Option<String>,
    photo: Option<String>,
    step: ComposeStep,
    /// "By location": the point the officer shared, (latitude, longitude) in WGS-84.
    #[serde(default)]
    point: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ComposeStep {
    Targets,
    /// "By location" pressed: waiting for the officer to share one.
    Location,
    /// A location shared: waiting for the radius.
    Radius,
    Severity,
    Text,
    Confirm,
}

fn new_identifier() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("cunjing.{hex}")
}

impl Core {
    /// Validates and creates a broadcast; the worker delivers it. Errors are for the person
    /// who asked (unknown codes, a bad kind …) and say what to fix.
    pub async fn create_broadcast(&self, req: Request) -> anyhow::Result<Created> {
        anyhow::ensure!(!req.text.trim().is_empty() || req.photo.is_some(), "the broadcast has no text");
        anyhow::ensure!(!req.targets.is_empty() || req.references_id.is_some(), "the broadcast has no target");
        let unknown = self.store().unknown_targets(&req.targets).await?;
        anyhow::ensure!(unknown.is_empty(), "not in the registry: {}", unknown.join(", "));
        let now = self.now_ms();
        if let Some(exp) = req.expires_at {
            anyhow::ensure!(exp > req.send_at.unwrap_or(now), "the expiry is not after the sending time");
        }
        let event = req
            .event
            .clone()
            .unwrap_or_else(|| self.texts().render(Msg::BroadcastEvent, minijinja::context! { kind => &req.kind }));
        let new = NewBroadcast {
            kind: req.kind,
            severity: req.severity,
            cap_status: req.cap_status,
            cap_identifier: req.cap_identifier.clone().unwrap_or_else(new_identifier),
            cap_references: req.cap_references.clone(),
            references_id: req.references_id,
            event,
            text: req.text.trim().to_string(),
            photo_file_id: req.photo.clone(),
            targets: req.targets.clone(),
            sender_officer_id: req.sender.as_ref().map(|o| o.id),
            sender_label: req.sender.as_ref().map(|o| o.name.clone()).unwrap_or_else(|| req.sender_label.clone()),
            report: req.report.clone(),
            schedule_job: req.schedule_job.clone(),
            send_at: req.send_at.unwrap_or(now),
            expires_at: req.expires_at,
            now,
        };
        let (id, targets) = self.store().create_broadcast(&new).await?;
        tracing::info!(broadcast = id, targets, kind = %req.kind, severity = %req.severity, "broadcast created");
        self.opts.broadcast_wake.notify_waiters();
        Ok(Created { id, targets })
    }

    /// The message residents see.
    pub fn broadcast_text(&self, b: &BroadcastRow, markdown: bool) -> String {
        let station_label = b.sender_label.clone();
        self.texts().render(
            if markdown { Msg::BroadcastWecom } else { Msg::BroadcastMessage },
            minijinja::context! {
                kind => &b.kind, severity => &b.severity, event => &b.event, text => &b.text,
                sender => station_label, correction => b.references_id.is_some(),
                test => b.cap_status != CapStatus::Actual,
            },
        )
    }

    /// "已送达 4,987 / 5,000，失败 13" and what else the sender should know.
    pub async fn broadcast_report(&self, id: i64, done: bool) -> anyhow::Result<Option<Outbound>> {
        let Some(b) = self.store().broadcast(id).await? else { return Ok(None) };
        let Some(chat_id) = b.report_chat_id else { return Ok(None) };
        let c = self.store().broadcast_counts(id).await?;
        let text = self.texts().render(
            Msg::BroadcastProgress,
            minijinja::context! { id, done, status => &b.status, kind => &b.kind, counts => &c, event => &b.event },
        );
        let mut buttons = vec![Button::Callback {
            label: self.texts().plain(Msg::BroadcastLedgerButton),
            data: ButtonData::Compose(ComposeButton::Report(id)).into(),
        }];
        if b.status != BroadcastStatus::Cancelled {
            buttons.push(Button::Callback {
                label: self.texts().plain(Msg::BroadcastCancelButton),
                data: ButtonData::Compose(ComposeButton::CancelSend(id)).into(),
            });
        }
        Ok(Some(Outbound::Message { chat_id, text, buttons: vec![buttons], reply_to: None }))
    }

    /// The ledger by group, with each group's "收到" count, for the sender.
    pub async fn broadcast_ledger_text(&self, id: i64) -> anyhow::Result<String> {
        let rows = self.store().broadcast_ledger(id).await?;
        let counts = self.store().broadcast_counts(id).await?;
        Ok(self.texts().render(Msg::BroadcastLedger, minijinja::context! { id, rows => &rows, counts => &counts }))
    }

    /// `/alert` (warning) and `/notice` in a private chat: who may, and the choice of targets.
    pub(super) async fn start_compose(&self, inbound: &Inbound, kind: BroadcastKind) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        if inbound.chat.kind != ChatKind::Private {
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::PrivateOnly))]);
        }
        let Some(officer) = self.officer_of(inbound).await? else {
            let actor = self.actor_of(inbound).await?;
            self.store()
                .audit(self.now_ms(), &actor.label(), "broadcast", kind.as_str(), "denied", "not enrolled")
                .await?;
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::BroadcastRefused))]);
        };
        let mut rows: Vec<Vec<Button>> = Vec::new();
        let villages = self.served_villages(officer.id).await?;
        let cb = |label: String, target: ComposeTarget| Button::Callback {
            label,
            data: ButtonData::Compose(ComposeButton::Target(target)).into(),
        };
        if villages.len() > 1 {
            rows.push(vec![cb(self.texts().plain(Msg::BroadcastAllMyVillages), ComposeTarget::Mine)]);
        }
        for (code, name) in &villages {
            rows.push(vec![cb(name.clone(), ComposeTarget::Village(code.clone()))]);
        }
        let actor = self.actor_of(inbound).await?;
        if crate::authz::permits(actor.role, Action::Broadcast, crate::authz::Scope::OwnStation) {
            let (station_code, station_name) = self.store().station_of(officer.station_id).await?;
            rows.push(vec![cb(station_name, ComposeTarget::Station(station_code))]);
            for (code, name) in self.store().offices_of_station(officer.station_id).await? {
                rows.push(vec![cb(name, ComposeTarget::Office(code))]);
            }
            // Around a point: only once areas are imported.
            if !self.store().area_index().await?.is_empty() {
                rows.push(vec![cb(self.texts().plain(Msg::BroadcastByLocationButton), ComposeTarget::Location)]);
            }
        }
        if rows.is_empty() {
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::BroadcastRefused))]);
        }
        let compose = Compose {
            kind,
            targets: vec![],
            target_label: String::new(),
            severity: None,
            text: None,
            photo: None,
            step: ComposeStep::Targets,
            point: None,
        };
        self.save_compose(inbound, &compose).await?;
        let text = self.texts().render(Msg::BroadcastChooseTargets, minijinja::context! { kind });
        Ok(vec![Outbound::Message { chat_id, text, buttons: rows, reply_to: None }])
    }

    /// The villages an officer serves today in any role but volunteer: (code, name), each once.
    async fn served_villages(&self, officer_id: i64) -> anyhow::Result<Vec<(String, String)>> {
        let rows = self.store().officer_villages(officer_id, &self.today().to_string()).await?;
        let served: std::collections::BTreeMap<String, String> = rows
            .into_iter()
            .filter(|(_, _, role)| role.is_on_duty_chain())
            .map(|(code, name, _)| (code, name))
            .collect();
        Ok(served.into_iter().collect())
    }

    /// Whether the sender may send to `target` (asked of the authorisation module, and
    /// written to the audit log).
    async fn may_broadcast_to(&self, inbound: &Inbound, actor: &Actor, target: &Target) -> anyhow::Result<bool> {
        let Some(subject) = self.target_subject(target).await? else { return Ok(false) };
        self.authorize(inbound, actor, Action::Broadcast, subject, &target.to_spec()).await
    }

    /// What a broadcast target is to the authorisation module: a village, a station (an
    /// office's, or the station itself) or everything; `None` for an unknown code.
    pub async fn target_subject(&self, target: &Target) -> anyhow::Result<Option<Subject>> {
        let store = self.store();
        Ok(match target {
            Target::All => Some(Subject::Everything),
            Target::Village(code) => store
                .village_by_code(code)
                .await?
                .map(|v| Subject::Village { village_id: v.id, station_id: v.station_id }),
            Target::Office(code) => store.office_station(code).await?.map(|station_id| Subject::Station { station_id }),
            Target::Station(code) => store.station_id(code).await?.map(|station_id| Subject::Station { station_id }),
            // A place is the villages it reaches now: one village, their station, or all.
            Target::Area(_) | Target::Near(_) => {
                let places = store.resolve_places(std::slice::from_ref(target)).await?;
                if !places.problems.is_empty() || places.villages.is_empty() {
                    return Ok(None);
                }
                let villages = store.target_villages(std::slice::from_ref(target)).await?;
                Some(match villages.as_slice() {
                    [(village_id, station_id)] => Subject::Village { village_id: *village_id, station_id: *station_id },
                    _ => subject_of(&villages),
                })
            }
        })
    }

    /// A sent broadcast as a whole, to the authorisation module: the station all the
    /// villages it reached belong to, or everything when they span stations.
    pub async fn broadcast_subject(&self, b: &BroadcastRow) -> anyhow::Result<Subject> {
        Ok(subject_of(&self.store().broadcast_villages(b.id).await?))
    }

    async fn save_compose(&self, inbound: &Inbound, compose: &Compose) -> anyhow::Result<()> {
        self.save_conversation(inbound, &super::tips::Conversation::Broadcast(compose.clone())).await
    }

    async fn load_compose(&self, inbound: &Inbound) -> anyhow::Result<Option<Compose>> {
        match self.load_conversation(inbound).await? {
            Some(super::tips::Conversation::Broadcast(c)) => Ok(Some(c)),
            _ => Ok(None),
        }
    }

    /// A button of the compose flow or of the sender's reports.
    pub(super) async fn compose_button(
        &self,
        inbound: &Inbound,
        button: ComposeButton,
    ) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let texts = self.texts();
        let Some(officer) = self.officer_of(inbound).await? else {
            return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastRefused))]);
        };
        let actor = self.actor_of(inbound).await?;
        if let ComposeButton::Report(id) = button {
            if !self.may_manage(inbound, &actor, id).await? {
                return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastRefused))]);
            }
            return Ok(vec![Outbound::text(chat_id, self.broadcast_ledger_text(id).await?)]);
        }
        if let ComposeButton::CancelSend(id) = button {
            if !self.may_manage(inbound, &actor, id).await? {
                return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastRefused))]);
            }
            let cancelled = self.cancel_broadcast(id).await?;
            let text = texts.render(Msg::BroadcastCancelled, minijinja::context! { id, cancelled });
            return Ok(vec![Outbound::text(chat_id, text)]);
        }
        let Some(mut compose) = self.load_compose(inbound).await? else {
            return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::ConversationExpired))]);
        };
        if button == ComposeButton::Drop {
            self.end_draft(inbound).await?;
            return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::TipCancelled))]);
        }
        if let ComposeButton::Radius(km) = button {
            let (Some((lat, lon)), ComposeStep::Radius) = (compose.point, compose.step) else {
                return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::ConversationExpired))]);
            };
            let Ok(near) = Near::new(lat, lon, f64::from(km)) else {
                return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::ConversationExpired))]);
            };
            let target = Target::Near(near);
            let places = self.store().resolve_places(std::slice::from_ref(&target)).await?;
            if !places.problems.is_empty() || places.villages.is_empty() {
                return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastNothingNear))]);
            }
            if !self.may_broadcast_to(inbound, &actor, &target).await? {
                return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastBeyondReach))]);
            }
            return self.targets_chosen(inbound, compose, vec![target], false).await;
        }
        if let ComposeButton::Target(target) = button {
            let all_mine = target == ComposeTarget::Mine;
            let targets: Vec<Target> = match target {
                ComposeTarget::Mine => {
                    self.served_villages(officer.id).await?.into_iter().map(|(code, _)| Target::Village(code)).collect()
                }
                ComposeTarget::Village(code) => vec![Target::Village(code)],
                ComposeTarget::Office(code) => vec![Target::Office(code)],
                ComposeTarget::Station(code) => vec![Target::Station(code)],
                ComposeTarget::Location => {
                    compose.step = ComposeStep::Location;
                    self.save_compose(inbound, &compose).await?;
                    return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastAskLocation))]);
                }
            };
            for target in &targets {
                if !self.may_broadcast_to(inbound, &actor, target).await? {
                    return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastRefused))]);
                }
            }
            return self.targets_chosen(inbound, compose, targets, all_mine).await;
        }
        if let ComposeButton::Severity(s) = button {
            compose.severity = Some(s);
            compose.step = ComposeStep::Text;
            self.save_compose(inbound, &compose).await?;
            let text = texts.render(Msg::BroadcastAskText, minijinja::context! { kind => &compose.kind });
            return Ok(vec![Outbound::text(chat_id, text)]);
        }
        if button == ComposeButton::Send && compose.step == ComposeStep::Confirm {
            self.end_draft(inbound).await?;
            let targets = compose.targets.iter().map(|t| Target::parse(t)).collect::<Result<Vec<_>, _>>();
            let Ok(targets) = targets else {
                return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::ConversationExpired))]);
            };
            for target in &targets {
                if !self.may_broadcast_to(inbound, &actor, target).await? {
                    return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastRefused))]);
                }
            }
            let mut req = Request::new(
                compose.kind,
                compose.severity.unwrap_or(Severity::Normal),
                compose.text.as_deref().unwrap_or(""),
                targets,
                &officer.name,
            );
            req.photo = compose.photo.clone();
            req.sender = Some(officer);
            req.report = Some((inbound.platform.as_str().to_string(), chat_id));
            let created = self.create_broadcast(req).await?;
            let text = texts
                .render(Msg::BroadcastQueued, minijinja::context! { id => created.id, targets => created.targets });
            return Ok(vec![Outbound::text(chat_id, text)]);
        }
        Ok(vec![])
    }

    /// The targets are chosen (and allowed): on to the severity.
    async fn targets_chosen(
        &self,
        inbound: &Inbound,
        mut compose: Compose,
        targets: Vec<Target>,
        all_mine: bool,
    ) -> anyhow::Result<Vec<Outbound>> {
        let (chat_id, texts) = (inbound.chat.id, self.texts());
        let villages = self.store().target_villages(&targets).await?.len();
        compose.targets = targets.iter().map(Target::to_spec).collect();
        compose.target_label = texts.render(
            Msg::BroadcastTargetLabel,
            minijinja::context! { villages, all_mine, label => self.target_name(&targets[0]).await? },
        );
        compose.step = ComposeStep::Severity;
        self.save_compose(inbound, &compose).await?;
        // Most pressing first, as everywhere severities are offered.
        let buttons = Severity::ALL
            .iter()
            .copied()
            .map(|s| Button::Callback {
                label: texts.render(Msg::SeverityLabel, minijinja::context! { severity => s.as_str() }),
                data: ButtonData::Compose(ComposeButton::Severity(s)).into(),
            })
            .collect();
        let text = texts.render(Msg::BroadcastChooseSeverity, minijinja::context! { target => &compose.target_label });
        Ok(vec![Outbound::Message { chat_id, text, buttons: vec![buttons], reply_to: None }])
    }

    /// A location shared while "by location" waits for one (`lat`, `lon` in WGS-84): the
    /// radius buttons, each with how many villages and groups it reaches.
    async fn compose_location(
        &self,
        inbound: &Inbound,
        mut compose: Compose,
        lat: f64,
        lon: f64,
    ) -> anyhow::Result<Vec<Outbound>> {
        let (chat_id, texts) = (inbound.chat.id, self.texts());
        let Ok(point) = Near::new(lat, lon, 1.0) else {
            return Ok(vec![Outbound::text(chat_id, texts.plain(Msg::BroadcastAskLocation))]);
        };
        compose.point = Some((point.lat, point.lon));
        compose.step = ComposeStep::Radius;
        self.save_compose(inbound, &compose).await?;
        let mut buttons = Vec::new();
        for km in RADII_KM {
            let target = [Target::Near(Near { km: f64::from(km), ..point })];
            let villages = self.store().resolve_places(&target).await?.villages.len();
            let groups = if villages == 0 { 0 } else { self.store().count_destinations(&target).await? };
            buttons.push(vec![Button::Callback {
                label: texts.render(Msg::BroadcastRadiusButton, minijinja::context! { km, villages, groups }),
                data: ButtonData::Compose(ComposeButton::Radius(km)).into(),
            }]);
        }
        let text = texts.plain(Msg::BroadcastChooseRadius);
        Ok(vec![Outbound::Message { chat_id, text, buttons, reply_to: None }])
    }

    pub async fn target_name(&self, target: &Target) -> anyhow::Result<String> {
        Ok(match target {
            Target::Village(code) => self.store().village_by_code(code).await?.map(|v| v.name).unwrap_or_default(),
            Target::Office(code) => self.store().office_name(code).await?.unwrap_or_default(),
            Target::Station(code) => {
                let id = self.store().station_id(code).await?.unwrap_or_default();
                self.store().station_of(id).await?.1
            }
            Target::All => String::new(),
            Target::Area(code) => {
                let name = self.store().village_by_code(code).await?.map(|v| v.name).unwrap_or(code.clone());
                self.texts().render(Msg::BroadcastPlaceName, minijinja::context! { name, km => None::<String> })
            }
            Target::Near(n) => self
                .texts()
                .render(Msg::BroadcastPlaceName, minijinja::context! { name => None::<String>, km => n.km_text() }),
        })
    }

    /// Whether the sender may see the ledger of, cancel or correct broadcast `id`: its sender,
    /// or whoever may broadcast to all its targets.
    async fn may_manage(&self, inbound: &Inbound, actor: &Actor, id: i64) -> anyhow::Result<bool> {
        let Some(b) = self.store().broadcast(id).await? else { return Ok(false) };
        let target = format!("broadcast:{id}");
        if b.sender_officer_id.is_some() && b.sender_officer_id == actor.officer_id {
            self.store().audit(self.now_ms(), &actor.label(), "broadcast", &target, "allowed", "own").await?;
            return Ok(true);
        }
        let subject = self.broadcast_subject(&b).await?;
        self.authorize(inbound, actor, Action::Broadcast, subject, &target).await
    }

    /// A private message while a broadcast is being composed: its text (and photo).
    pub(super) async fn compose_message(
        &self,
        inbound: &Inbound,
        mut compose: Compose,
    ) -> anyhow::Result<Option<Vec<Outbound>>> {
        let chat_id = inbound.chat.id;
        // A location while one is awaited, or instead of the radius (another point).
        if let (
            ComposeStep::Location | ComposeStep::Radius,
            super::Event::Location { latitude, longitude, datum, .. },
        ) = (compose.step, &inbound.event)
        {
            // A point of unknown datum (Telegram) is taken as GPS (WGS-84): a radius of
            // kilometres does not turn on the few hundred metres GCJ-02 would shift it.
            let (lon, lat) = datum.unwrap_or(crate::domain::Datum::Wgs84).to_wgs84(*longitude, *latitude);
            return Ok(Some(self.compose_location(inbound, compose, lat, lon).await?));
        }
        if compose.step == ComposeStep::Location {
            return Ok(Some(vec![Outbound::text(chat_id, self.texts().plain(Msg::BroadcastAskLocation))]));
        }
        if compose.step != ComposeStep::Text {
            // A message while a button is expected: show the question again.
            return Ok(Some(vec![Outbound::text(chat_id, self.texts().plain(Msg::BroadcastUseButtons))]));
        }
        match &inbound.event {
            super::Event::Text { text, .. } => compose.text = Some(text.trim().to_string()),
            super::Event::Media { kind: super::MediaKind::Photo, file_id, caption, .. } => {
                compose.photo = Some(file_id.clone());
                compose.text = caption.clone().or(compose.text.take());
            }
            _ => return Ok(Some(vec![Outbound::text(chat_id, self.texts().plain(Msg::BroadcastUseButtons))])),
        }
        if compose.text.as_deref().is_none_or(|t| t.is_empty()) {
            // A photo without a caption: wait for the text.
            self.save_compose(inbound, &compose).await?;
            let text = self.texts().render(Msg::BroadcastAskText, minijinja::context! { kind => &compose.kind });
            return Ok(Some(vec![Outbound::text(chat_id, text)]));
        }
        compose.step = ComposeStep::Confirm;
        self.save_compose(inbound, &compose).await?;
        let targets: Vec<Target> = compose.targets.iter().filter_map(|t| Target::parse(t).ok()).collect();
        let groups = self.store().count_destinations(&targets).await?;
        let preview = BroadcastRow {
            id: 0,
            kind: compose.kind,
            severity: compose.severity.unwrap_or(Severity::Normal),
            status: BroadcastStatus::Scheduled,
            cap_status: CapStatus::Actual,
            cap_identifier: String::new(),
            cap_references: None,
            references_id: None,
            event: self.texts().render(Msg::BroadcastEvent, minijinja::context! { kind => &compose.kind }),
            text: compose.text.clone().unwrap_or_default(),
            photo_file_id: compose.photo.clone(),
            target_spec: String::new(),
            sender_officer_id: None,
            sender_label: self.officer_of(inbound).await?.map(|o| o.name).unwrap_or_default(),
            report_platform: None,
            report_chat_id: None,
            last_report_at: None,
            send_at: 0,
            expires_at: None,
            created_at: 0,
            finished_at: None,
        };
        let text = self.texts().render(
            Msg::BroadcastPreview,
            minijinja::context! {
                message => self.broadcast_text(&preview, false),
                target => &compose.target_label,
                groups,
                photo => compose.photo.is_some(),
                eta_minutes => self.broadcast_eta(groups).as_secs().div_ceil(60),
            },
        );
        let buttons = vec![vec![
            Button::Callback {
                label: self.texts().plain(Msg::BroadcastConfirmButton),
                data: ButtonData::Compose(ComposeButton::Send).into(),
            },
            Button::Callback {
                label: self.texts().plain(Msg::ButtonCancel),
                data: ButtonData::Compose(ComposeButton::Drop).into(),
            },
        ]];
        Ok(Some(vec![Outbound::Message { chat_id, text, buttons, reply_to: None }]))
    }

    /// How long sending to `groups` groups takes at the configured broadcast rate.
    pub fn broadcast_eta(&self, groups: i64) -> Duration {
        match self.opts.broadcast_per_second {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(groups.max(0) as f64 / f64::from(rate)),
        }
    }

    /// "收到" under a warning: counted once per person.
    pub(super) async fn acknowledge(
        &self,
        inbound: &Inbound,
        callback_id: &str,
        id: i64,
    ) -> anyhow::Result<Vec<Outbound>> {
        let callback_id = callback_id.to_string();
        let Some(user) = inbound.sender.person() else {
            return Ok(vec![Outbound::AnswerButton { callback_id, text: None }]);
        };
        let first = self.store().acknowledge_delivery(id, user, self.now_ms()).await?;
        let msg = if first { Msg::BroadcastAcked } else { Msg::BroadcastAckedAgain };
        Ok(vec![Outbound::AnswerButton { callback_id, text: Some(self.texts().plain(msg)) }])
    }

    /// Cancels a broadcast: nothing more is sent, and what was sent is taken back (deleted
    /// within Telegram's 48 hours, otherwise corrected by a reply). False when it was already
    /// cancelled or does not exist.
    pub async fn cancel_broadcast(&self, id: i64) -> anyhow::Result<bool> {
        let done = self.store().cancel_broadcast(id, self.now_ms()).await?;
        if done {
            tracing::info!(broadcast = id, "broadcast cancelled");
            self.opts.broadcast_wake.notify_waiters();
        }
        Ok(done)
    }
}

/// The subject of a set of villages: their station when they share one, else everything.
fn subject_of(villages: &[(i64, i64)]) -> Subject {
    match villages.first() {
        Some((_, station_id)) if villages.iter().all(|(_, s)| s == station_id) => {
            Subject::Station { station_id: *station_id }
        }
        _ => Subject::Everything,
    }
}

/// Delivers the broadcasts of one channel until `stop` turns true.
pub async fn run_deliveries<D: Deliverer>(
    core: Core,
    deliverer: Arc<D>,
    opts: WorkerOptions,
    reports: super::Outboxes,
    mut stop: watch::Receiver<bool>,
) {
    let channel = deliverer.channel();
    let wake = core.opts.broadcast_wake.clone();
    let limiter = NonZeroU32::new(opts.per_second)
        .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n).allow_burst(NonZeroU32::MIN)));
    let limiter = Arc::new(limiter);
    loop {
        if *stop.borrow() {
            return;
        }
        // Woken during a round: look again at once.
        let woken = wake.notified();
        let busy = match round(&core, &deliverer, &opts, &limiter, &reports).await {
            Ok(busy) => busy,
            Err(e) => {
                tracing::error!(channel, error = format!("{e:#}"), "delivery round failed; retrying");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = woken => {}
            _ = tokio::time::sleep(opts.idle) => {}
        }
    }
}

type Limiter = Option<governor::DefaultDirectRateLimiter>;

/// How often a worker looks whether the sends it holds were cancelled, corrected or expired
/// (a cancel in the same process is seen at once).
const STOP_POLL: Duration = Duration::from_millis(250);

/// Most outcomes written in one transaction.
const SETTLE_CHUNK: usize = 64;

/// One round: expiries, retractions, a batch of sends, reports. True when more work is
/// waiting.
async fn round<D: Deliverer>(
    core: &Core,
    deliverer: &Arc<D>,
    opts: &WorkerOptions,
    limiter: &Arc<Limiter>,
    reports: &super::Outboxes,
) -> anyhow::Result<bool> {
    let channel = deliverer.channel();
    let store = core.store();
    let now = core.now_ms();
    store.expire_deliveries(now).await?;
    for r in store.claim_retractions(channel, 100).await? {
        let outcome = match r.message_id {
            Some(message_id) if r.sent_at.is_some_and(|t| now - t < DELETE_WINDOW_MS) && r.address.is_none() => {
                if deliverer.delete(r.chat_id, message_id).await {
                    "deleted"
                } else {
                    "failed"
                }
            }
            reply_to => {
                let text = core.texts().plain(Msg::BroadcastRetracted);
                let d = Delivery {
                    delivery_id: r.id,
                    chat_id: r.chat_id,
                    address: r.address.clone(),
                    text,
                    photo: None,
                    buttons: vec![],
                    reply_to,
                    pin: false,
                    still_wanted: StillWanted::default(),
                };
                match deliverer.send(d).await {
                    SendOutcome::Sent { .. } => "corrected",
                    _ => "failed",
                }
            }
        };
        store.settle_retraction(r.id, outcome, core.now_ms()).await?;
    }
    let batch_size = (opts.concurrency * 4).max(16) as i64;
    let batch = store.claim_deliveries(channel, core.daemon_id(), now, batch_size).await?;
    let full = batch.len() as i64 == batch_size;
    if !batch.is_empty() {
        let mut broadcasts: HashMap<i64, Arc<BroadcastRow>> = HashMap::new();
        for d in &batch {
            if !broadcasts.contains_key(&d.broadcast_id)
                && let Some(b) = store.broadcast(d.broadcast_id).await?
            {
                broadcasts.insert(d.broadcast_id, Arc::new(b));
            }
        }
        let markdown = channel == "wecom";
        let texts: HashMap<i64, String> =
            broadcasts.iter().map(|(id, b)| (*id, core.broadcast_text(b, markdown))).collect();
        // Outcomes are written in chunks, one transaction each, as sends complete: a commit per
        // send would cap a 46,000-group warning at the database's commit rate. The writer runs
        // beside the sends (not between them), so a send waiting for a connection never waits
        // on a writer that waits for it.
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i64, Settle)>();
        // Rows of this batch that a cancel, a correction or an expiry took back while they
        // waited their turn, looked up every STOP_POLL (and at once when a cancel in this
        // process wakes the workers), so that a cancelled warning stops within a second.
        let stopped: Arc<std::sync::Mutex<HashSet<i64>>> = Arc::default();
        let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
        let (sent_all_tx, mut sent_all) = watch::channel(false);
        let watching = async {
            let wake = core.opts.broadcast_wake.clone();
            loop {
                let woken = wake.notified();
                tokio::select! {
                    _ = sent_all.changed() => return,
                    _ = woken => {}
                    _ = tokio::time::sleep(STOP_POLL) => {}
                }
                match store.stopped_deliveries(&ids).await {
                    Ok(found) => stopped.lock().expect("stopped lock").extend(found),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "could not look for cancelled sends"),
                }
            }
        };
        let (broadcasts, texts, stopped_ref) = (&broadcasts, &texts, &stopped);
        let sending = futures::stream::iter(batch)
            .map(move |d| {
                let b = broadcasts.get(&d.broadcast_id).cloned();
                let text = texts.get(&d.broadcast_id).cloned().unwrap_or_default();
                let done_tx = done_tx.clone();
                let still_wanted = {
                    let (stopped, id, clock) = (stopped_ref.clone(), d.id, core.opts.clock.clone());
                    let expires = b.as_ref().and_then(|b| b.expires_at);
                    StillWanted::new(move || {
                        !stopped.lock().expect("stopped lock").contains(&id)
                            && expires.is_none_or(|e| clock().timestamp_millis() < e)
                    })
                };
                async move {
                    let Some(b) = b else { return Ok(()) };
                    if let Some(l) = limiter.as_ref() {
                        l.until_ready().await;
                    }
                    let outcome = deliver_one(core, deliverer.as_ref(), opts, &b, d, text, still_wanted).await?;
                    let _ = done_tx.send(outcome);
                    Ok::<(), anyhow::Error>(())
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect::<Vec<anyhow::Result<()>>>();
        let settling = async {
            let mut chunk = Vec::with_capacity(SETTLE_CHUNK);
            while let Some(first) = done_rx.recv().await {
                chunk.push(first);
                while chunk.len() < SETTLE_CHUNK {
                    match done_rx.try_recv() {
                        Ok(next) => chunk.push(next),
                        Err(_) => break,
                    }
                }
                store.settle_deliveries(&chunk, core.now_ms()).await?;
                chunk.clear();
            }
            Ok::<(), anyhow::Error>(())
        };
        let sending = async {
            let sent = sending.await;
            let _ = sent_all_tx.send(true);
            sent
        };
        let (sent, settled, ()) = tokio::join!(sending, settling, watching);
        settled?;
        sent.into_iter().collect::<anyhow::Result<()>>()?;
    }
    if deliverer.reports() {
        let now = core.now_ms();
        for b in store.finish_broadcasts(now).await? {
            tracing::info!(broadcast = b.id, "broadcast finished");
            // Whichever worker finishes it, the report goes to the sender's platform.
            if let Some(platform) = b.report_platform.as_deref().and_then(Platform::parse)
                && let Some(out) = core.broadcast_report(b.id, true).await?
            {
                reports.send(platform, out);
            }
        }
        let every = opts.progress_every.as_millis() as i64;
        for b in store.broadcasts_due_progress(channel, now - every).await? {
            store.broadcast_reported(b.id, now).await?;
            if let Some(platform) = Platform::parse(channel)
                && let Some(out) = core.broadcast_report(b.id, false).await?
            {
                reports.send(platform, out);
            }
        }
    }
    Ok(full)
}

async fn deliver_one<D: Deliverer>(
    core: &Core,
    deliverer: &D,
    opts: &WorkerOptions,
    b: &BroadcastRow,
    d: ClaimedDelivery,
    text: String,
    still_wanted: StillWanted,
) -> anyhow::Result<(i64, Settle)> {
    let store = core.store();
    if !still_wanted.check() {
        return Ok((d.id, Settle::Stopped));
    }
    // Only an Actual alert reaches real groups; exercises and tests stop here, recorded.
    let settle = if b.cap_status != CapStatus::Actual {
        Settle::Failed(format!("not sent: CAP status {}", b.cap_status))
    } else {
        let buttons = if b.kind == BroadcastKind::Warning && d.address.is_none() {
            vec![vec![Button::Callback {
                label: core.texts().plain(Msg::BroadcastAckButton),
                data: ButtonData::Ack(d.id).into(),
            }]]
        } else {
            vec![]
        };
        let pin = d.bot_admin && b.kind == BroadcastKind::Warning && core.opts.pin_severities.contains(&b.severity);
        let delivery = Delivery {
            delivery_id: d.id,
            chat_id: d.chat_id,
            address: d.address.clone(),
            text,
            photo: b.photo_file_id.clone(),
            buttons,
            reply_to: d.reply_to,
            pin,
            still_wanted,
        };
        match deliverer.send(delivery).await {
            SendOutcome::Sent { message_id, pinned, note, migrated_to } => {
                if let Some(to) = migrated_to {
                    store.delivery_migrated(d.id, to).await?;
                }
                Settle::Sent { message_id, pinned, detail: note }
            }
            SendOutcome::Retry { after, detail } if d.attempts < opts.max_attempts => {
                let backoff = opts.retry_base.saturating_mul(1 << (d.attempts - 1).clamp(0, 16) as u32);
                let wait = after.max(backoff).min(Duration::from_secs(600));
                Settle::Retry { at: core.now_ms() + wait.as_millis() as i64, detail }
            }
            SendOutcome::Retry { detail, .. } | SendOutcome::Failed(detail) => Settle::Failed(detail),
            SendOutcome::Stopped => Settle::Stopped,
            SendOutcome::Lost(detail) => {
                if d.address.is_none() {
                    store.chat_left(deliverer.channel(), d.chat_id).await?;
                }
                Settle::Lost(detail)
            }
        }
    };
    Ok((d.id, settle))
}
