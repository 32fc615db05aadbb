//! The local console channel: a person at the terminal (or a script on stdin) plays a
//! resident in a village group, a resident in a private chat, or an officer, and sees what
//! the bot answers. It drives the same [`Core`] as Telegram.
//!
//! Console commands (everything else is sent to the bot as a message):
//! `/as resident`, `/as officer BADGE`, `/in VILLAGE_CODE`, `/in private`, `/press N`,
//! `/loc LAT,LON` (shares a WGS-84 location), `/who`, `/quit`. The console is local and trusted: `/as officer` links the console
//! persona to that officer without an enrolment code.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use futures::future::BoxFuture;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::{Channel, Offers, Serving, Shutdown, Wiring};

use crate::core::{Button, ChatKind, ChatRef, Core, Event, Inbound, Outbound, Platform, Sender};
use crate::store::registry::VillageRow;

/// The console resident's account id.
const RESIDENT_ID: i64 = 1001;
/// Console officers get account ids above this (plus their registry id).
const OFFICER_BASE: i64 = 2_000_000;
/// Console group chats are `-(GROUP_BASE + village id)`.
const GROUP_BASE: i64 = 1_000_000;

/// The console account (and private chat) of an officer.
pub fn officer_user_id(officer_id: i64) -> i64 {
    OFFICER_BASE + officer_id
}

/// The console group chat id of a village.
pub fn group_chat_id(village_id: i64) -> i64 {
    -(GROUP_BASE + village_id)
}

/// `LAT,LON` (or `LAT LON`) in degrees, within range.
fn parse_lat_lon(s: &str) -> Option<(f64, f64)> {
    let mut parts = s.split([',', ' ', '，']).filter(|p| !p.is_empty());
    let lat: f64 = parts.next()?.parse().ok()?;
    let lon: f64 = parts.next()?.parse().ok()?;
    let ok = parts.next().is_none() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
    ok.then_some((lat, lon))
}

#[derive(Debug, Clone)]
enum Persona {
    Resident,
    Officer { badge: String, name: String, user_id: i64 },
}

#[derive(Debug, Clone)]
enum Place {
    Group { chat_id: i64, title: String },
    Private,
}

struct Session<W> {
    core: Core,
    /// Passes on what is for another platform.
    forward: crate::core::WeakOutboxes,
    out: W,
    /// Whether a person is typing (prompts) or a script is feeding lines (echo the input).
    interactive: bool,
    persona: Persona,
    place: Place,
    next_message_id: i64,
    /// Buttons of the last bot message with buttons, per chat, for `/press N`.
    buttons: HashMap<i64, (i64, Vec<Button>)>,
    /// Labels of chats for the output headers.
    labels: HashMap<i64, String>,
}

/// The console as a [`Channel`]: a person at the terminal or a script on a pipe.
pub struct ConsoleChannel {
    input: Box<dyn AsyncBufRead + Unpin + Send>,
    out: Box<dyn AsyncWrite + Unpin + Send>,
    interactive: bool,
    /// The demo: the resident starts in the first village's group.
    demo: bool,
}

impl ConsoleChannel {
    /// The console on stdin and stdout (prompts when stdin is a terminal).
    pub fn stdio(demo: bool) -> ConsoleChannel {
        use std::io::IsTerminal;
        let interactive = std::io::stdin().is_terminal();
        ConsoleChannel::new(tokio::io::BufReader::new(tokio::io::stdin()), tokio::io::stdout(), interactive, demo)
    }

    /// The console on any input and output (tests feed it through a pipe).
    pub fn new(
        input: impl AsyncBufRead + Unpin + Send + 'static,
        out: impl AsyncWrite + Unpin + Send + 'static,
        interactive: bool,
        demo: bool,
    ) -> ConsoleChannel {
        ConsoleChannel { input: Box::new(input), out: Box::new(out), interactive, demo }
    }
}

impl Channel for ConsoleChannel {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    fn connect(&mut self) -> BoxFuture<'_, anyhow::Result<Offers>> {
        Box::pin(async { Ok(Offers::default()) })
    }

    fn serve(self: Box<Self>, ctx: Wiring) -> anyhow::Result<Serving> {
        let Wiring { core, outbox, outboxes, workers_stopped, worker, shutdown } = ctx;
        let forward = outboxes.downgrade();
        let broadcasts = tokio::spawn(crate::core::broadcast::run_deliveries(
            core.clone(),
            Arc::new(ConsoleDeliverer::new(outboxes.clone())),
            worker,
            outboxes.clone(),
            workers_stopped,
        ));
        let task = async move {
            let start_village = if self.demo { core.store().first_village().await? } else { None };
            let io = *self;
            run(io, core, start_village, outbox, forward, shutdown).await?;
            broadcasts.await.context("the console's broadcast worker panicked")
        };
        Ok(Serving { routes: None, probe: None, task: Box::pin(task) })
    }
}

/// Runs the console until the input ends, `/quit`, or the daemon's stop (the first two stop
/// the daemon), then shows what the daemon still sends until the outbox closes.
/// `start_village` is where the resident starts (the demo: the first example village).
async fn run(
    io: ConsoleChannel,
    core: Core,
    start_village: Option<VillageRow>,
    mut outbox: tokio::sync::mpsc::UnboundedReceiver<Outbound>,
    forward: crate::core::WeakOutboxes,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let ConsoleChannel { input, out, interactive, .. } = io;
    let place = match &start_village {
        Some(v) => Place::Group { chat_id: group_chat_id(v.id), title: v.name.clone() },
        None => Place::Private,
    };
    let mut session = Session {
        core,
        forward,
        out,
        interactive,
        persona: Persona::Resident,
        place,
        next_message_id: 1,
        buttons: HashMap::new(),
        labels: HashMap::new(),
    };
    session.say(&format!(
        "Console commands: /as resident | /as officer BADGE, /in VILLAGE_CODE | /in private, /press N, /loc LAT,LON, /who, /quit\n{}",
        session.whereabouts()
    ))
    .await?;
    let mut lines = input.lines();
    loop {
        session.prompt().await?;
        let line = tokio::select! {
            line = lines.next_line() => line?,
            Some(action) = outbox.recv() => {
                session.show(action).await?;
                continue;
            }
            _ = shutdown.requested() => None,
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !session.interactive {
            let who = session.who_short();
            session.say(&format!("> [{who}] {line}")).await?;
        }
        if !session.console_command(line).await? {
            break;
        }
    }
    shutdown.request();
    while let Some(action) = outbox.recv().await {
        session.show(action).await?;
    }
    session.out.flush().await?;
    Ok(())
}

impl<W: AsyncWrite + Unpin> Session<W> {
    async fn say(&mut self, text: &str) -> anyhow::Result<()> {
        self.out.write_all(text.as_bytes()).await?;
        self.out.write_all(b"\n").await?;
        self.out.flush().await?;
        Ok(())
    }

    async fn prompt(&mut self) -> anyhow::Result<()> {
        if self.interactive {
            let who = self.who_short();
            self.out.write_all(format!("[{who}]> ").as_bytes()).await?;
            self.out.flush().await?;
        }
        Ok(())
    }

    fn user_id(&self) -> i64 {
        match &self.persona {
            Persona::Resident => RESIDENT_ID,
            Persona::Officer { user_id, .. } => *user_id,
        }
    }

    fn who_short(&self) -> String {
        let who = match &self.persona {
            Persona::Resident => "resident".to_string(),
            Persona::Officer { badge, name, .. } => format!("officer {name} {badge}"),
        };
        match &self.place {
            Place::Group { title, .. } => format!("{who} @ group {title}"),
            Place::Private => format!("{who} @ private chat"),
        }
    }

    fn whereabouts(&self) -> String {
        format!("You are: {}", self.who_short())
    }

    /// Handles one input line; `false` ends the session.
    async fn console_command(&mut self, line: &str) -> anyhow::Result<bool> {
        let mut words = line.split_whitespace();
        match words.next().unwrap_or("") {
            "/quit" | "/exit" => return Ok(false),
            "/who" => {
                let w = self.whereabouts();
                self.say(&w).await?;
            }
            "/as" => match (words.next(), words.next()) {
                (Some("resident"), _) => {
                    self.persona = Persona::Resident;
                    let w = self.whereabouts();
                    self.say(&w).await?;
                }
                (Some("officer"), Some(badge)) => match self.core.store().officer_by_badge(badge).await? {
                    Some(officer) => {
                        let user_id = officer_user_id(officer.id);
                        self.core
                            .store()
                            .link_identity_directly(officer.id, Platform::Console.as_str(), user_id)
                            .await?;
                        self.labels.insert(user_id, format!("private chat with {} {}", officer.name, officer.badge));
                        self.persona = Persona::Officer { badge: officer.badge, name: officer.name, user_id };
                        let w = self.whereabouts();
                        self.say(&w).await?;
                    }
                    None => self.say(&format!("No officer with badge {badge:?} in the registry.")).await?,
                },
                _ => self.say("Usage: /as resident | /as officer BADGE").await?,
            },
            "/in" => match words.next() {
                Some("private") => {
                    self.place = Place::Private;
                    let w = self.whereabouts();
                    self.say(&w).await?;
                }
                Some(code) => match self.core.store().village_by_code(code).await? {
                    Some(v) => {
                        self.place = Place::Group { chat_id: group_chat_id(v.id), title: v.name.clone() };
                        let w = self.whereabouts();
                        self.say(&w).await?;
                    }
                    None => self.say(&format!("No village with code {code:?} in the registry.")).await?,
                },
                None => self.say("Usage: /in VILLAGE_CODE | /in private").await?,
            },
            "/loc" => match parse_lat_lon(&words.collect::<Vec<_>>().join(" ")) {
                Some((latitude, longitude)) => {
                    let event = Event::Location {
                        message_id: self.next_id(),
                        latitude,
                        longitude,
                        datum: Some(crate::places::Datum::Wgs84),
                    };
                    self.send(event).await?;
                }
                None => self.say("Usage: /loc LAT,LON (WGS-84 degrees, e.g. /loc 34.489044,113.710898)").await?,
            },
            "/press" => {
                let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                self.press(n).await?;
            }
            _ => {
                let event = Event::Text { message_id: self.next_id(), text: line.to_string(), forwarded: false };
                self.send(event).await?;
            }
        }
        Ok(true)
    }

    fn next_id(&mut self) -> i64 {
        self.next_message_id += 1;
        self.next_message_id
    }

    fn chat_ref(&self) -> ChatRef {
        match &self.place {
            Place::Group { chat_id, title } => ChatRef { id: *chat_id, kind: ChatKind::Group, title: title.clone() },
            Place::Private => ChatRef { id: self.user_id(), kind: ChatKind::Private, title: String::new() },
        }
    }

    async fn send(&mut self, event: Event) -> anyhow::Result<()> {
        let chat = self.chat_ref();
        self.labels.entry(chat.id).or_insert_with(|| match chat.kind {
            ChatKind::Group => format!("group {}", chat.title),
            ChatKind::Private => match &self.persona {
                Persona::Resident => "private chat with the resident".to_string(),
                Persona::Officer { badge, name, .. } => format!("private chat with {name} {badge}"),
            },
        });
        let inbound = Inbound {
            platform: Platform::Console,
            chat,
            sender: Sender::User { id: self.user_id(), is_bot: false },
            event,
        };
        let actions = self.core.handle(&inbound).await;
        for action in actions {
            self.show(action).await?;
        }
        Ok(())
    }

    async fn show(&mut self, action: Outbound) -> anyhow::Result<()> {
        let Some(action) = self.forward.route(Platform::Console, action) else { return Ok(()) };
        match action {
            // Passed on by `route`.
            Outbound::On { .. } => Ok(()),
            Outbound::Message { chat_id, text, buttons, .. } => {
                let label = self.label(chat_id).await;
                let mut block = format!("── bot → {label}\n");
                for line in text.lines() {
                    block.push_str("   ");
                    block.push_str(line);
                    block.push('\n');
                }
                let flat: Vec<Button> = buttons.into_iter().flatten().collect();
                for (i, b) in flat.iter().enumerate() {
                    let (label, what) = match b {
                        Button::Callback { label, .. } => (label, String::new()),
                        Button::StartPrivate { label, payload } => {
                            (label, format!(" (opens a private chat: /start {payload})"))
                        }
                    };
                    block.push_str(&format!("   [{}] {label}{what}\n", i + 1));
                }
                if !flat.is_empty() {
                    let id = self.next_message_id;
                    self.buttons.insert(chat_id, (id, flat));
                }
                self.say(block.trim_end()).await
            }
            Outbound::Media { chat_id, kind, file_id, .. } => {
                let label = self.label(chat_id).await;
                self.say(&format!("── bot → {label}\n   [{kind:?}: {file_id}]")).await
            }
            Outbound::Location { chat_id, latitude, longitude } => {
                let label = self.label(chat_id).await;
                self.say(&format!("── bot → {label}\n   [location {latitude}, {longitude}]")).await
            }
            Outbound::DeleteMessage { chat_id, message_id } => {
                let label = self.label(chat_id).await;
                self.say(&format!("── bot → {label}\n   [deleted message {message_id}]")).await
            }
            // The console has no spinner to stop; a notice is shown.
            Outbound::AnswerButton { text: Some(t), .. } => self.say(&format!("── bot (notice): {t}")).await,
            Outbound::AnswerButton { text: None, .. } => Ok(()),
        }
    }

    /// How a chat is named in the output: known places, or an officer's private chat.
    async fn label(&mut self, chat_id: i64) -> String {
        if let Some(l) = self.labels.get(&chat_id) {
            return l.clone();
        }
        let label = match self.core.store().officer_by_id(chat_id - OFFICER_BASE).await {
            Ok(Some(o)) if chat_id > OFFICER_BASE => format!("private chat with {} {}", o.name, o.badge),
            _ => format!("chat {chat_id}"),
        };
        self.labels.insert(chat_id, label.clone());
        label
    }

    async fn press(&mut self, n: usize) -> anyhow::Result<()> {
        let chat_id = self.chat_ref().id;
        let Some((message_id, button)) = self
            .buttons
            .get(&chat_id)
            .and_then(|(id, bs)| n.checked_sub(1).and_then(|i| bs.get(i)).map(|b| (*id, b.clone())))
        else {
            return self
                .say("No such button here. Buttons are numbered [1], [2] … under the bot's last message.")
                .await;
        };
        match button {
            Button::Callback { data, .. } => {
                let event = Event::Button { callback_id: format!("console-{message_id}-{n}"), message_id, data };
                self.send(event).await
            }
            Button::StartPrivate { payload, .. } => {
                self.place = Place::Private;
                let w = self.whereabouts();
                self.say(&w).await?;
                let event =
                    Event::Text { message_id: self.next_id(), text: format!("/start {payload}"), forwarded: false };
                self.send(event).await
            }
        }
    }
}

/// Broadcasts on the console: each group's message is printed like any other bot message.
pub struct ConsoleDeliverer {
    out: crate::core::Outboxes,
    next_id: std::sync::atomic::AtomicI64,
}

impl ConsoleDeliverer {
    pub fn new(out: crate::core::Outboxes) -> ConsoleDeliverer {
        ConsoleDeliverer { out, next_id: std::sync::atomic::AtomicI64::new(1_000_000) }
    }
}

impl crate::core::broadcast::Deliverer for ConsoleDeliverer {
    fn channel(&self) -> &'static str {
        Platform::Console.as_str()
    }

    async fn send(&self, d: crate::core::broadcast::Delivery) -> crate::core::broadcast::SendOutcome {
        use crate::core::broadcast::SendOutcome;
        let text = if d.photo.is_some() { format!("[photo]\n{}", d.text) } else { d.text };
        let message = Outbound::Message { chat_id: d.chat_id, text, buttons: d.buttons, reply_to: d.reply_to };
        if !self.out.send(Platform::Console, message) {
            return SendOutcome::Retry { after: std::time::Duration::from_secs(1), detail: "console closed".into() };
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SendOutcome::Sent { message_id: Some(id), pinned: d.pin, note: None, migrated_to: None }
    }

    async fn delete(&self, chat_id: i64, message_id: i64) -> bool {
        self.out.send(Platform::Console, Outbound::DeleteMessage { chat_id, message_id })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_lat_lon;

    #[test]
    fn a_typed_location_is_latitude_then_longitude_in_range() {
        assert_eq!(parse_lat_lon("34.489044,113.710898"), Some((34.489044, 113.710898)));
        assert_eq!(parse_lat_lon("34.5 113.7"), Some((34.5, 113.7)));
        assert_eq!(parse_lat_lon("34.5，113.7"), Some((34.5, 113.7)));
        assert_eq!(parse_lat_lon("113.7,34.5"), None, "a longitude first is out of the latitude's range");
        assert_eq!(parse_lat_lon("34.5"), None);
        assert_eq!(parse_lat_lon("34.5,113.7,1"), None);
    }
}
