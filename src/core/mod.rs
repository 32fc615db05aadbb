//! The core: everything the bot decides, with no platform types in sight.
//!
//! A channel adapter (Telegram, the local console, later WeCom) turns what arrives into an
//! [`Inbound`], calls [`Core::handle`], and performs the [`Outbound`] actions it gets back.
//! The tests and the console drive exactly the code the Telegram adapter drives.
//!
//! The rooms:
//!
//! - `handler`: [`Core`] and its options, and the router: triage, the emergency answer,
//!   then each update to the room it belongs to. [`wire`] turns commands, button data and
//!   deep links into types once; every prefix is spelled there.
//! - `contact`: the contact card, the village search, the private menu.
//! - `locate`: a location sent in a private chat finds its area's card (or asks which of
//!   two villages near a boundary, or gives the nearest station's duty line).
//! - `officers`: enrolment, `/whoami`, `/duty`. `binding`: `/bind`, `/unbind`.
//! - `access`: who the sender is ([`crate::authz::Actor`]), authorisation with the group
//!   membership check, the audit line, and where an officer was last seen.
//! - `tips`: the resident's tip conversation, the receipt, the officer's card and buttons,
//!   relays, `/status`, ratings. [`workflow`]: the one tip workflow (assign, acknowledge,
//!   close, reopen, merge, reply, note) that the officer's buttons, the staff group
//!   (`staff`), the console (`desk`) and the command line all call; it refuses with
//!   [`CoreError`].
//! - [`broadcast`]: the compose flow, 收到, cancel, and the delivery worker.
//! - [`schedule`], [`timers`]: recurring notices and reminders; escalations and expiries.
//! - [`routing`]: who is responsible (chat → village → duty chain). [`flood`]: the group
//!   limits of triage's answers.

mod access;
mod binding;
pub mod broadcast;
mod contact;
mod desk;
mod error;
pub mod flood;
mod handler;
mod locate;
mod officers;
mod queued;
pub mod routing;
pub mod schedule;
mod staff;
pub mod timers;
mod tips;
pub mod wire;
pub mod workflow;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use contact::{CardOfficer, card_officers, contact_card};
pub use desk::DeskResult;
pub use error::CoreError;
pub use handler::{Clock, Core, CoreOptions, Retention};

/// Where the actions for each platform the daemon serves go: every channel performs what
/// reaches its outbox. Workers that serve no one platform (the timers, the broadcast
/// workers' reports) hand an action to the platform it is for.
#[derive(Clone, Default)]
pub struct Outboxes(Arc<HashMap<Platform, mpsc::UnboundedSender<Outbound>>>);

impl Outboxes {
    pub fn new(outboxes: HashMap<Platform, mpsc::UnboundedSender<Outbound>>) -> Outboxes {
        Outboxes(Arc::new(outboxes))
    }

    /// The platforms served.
    pub fn platforms(&self) -> impl Iterator<Item = Platform> + '_ {
        self.0.keys().copied()
    }

    /// Hands `action` to `platform`'s channel; false when the daemon does not serve that
    /// platform or its channel has stopped.
    pub fn send(&self, platform: Platform, action: Outbound) -> bool {
        self.0.get(&platform).is_some_and(|tx| tx.send(action).is_ok())
    }

    /// A handle that does not keep the outboxes open (a channel holds it: its own outbox
    /// must close when the daemon's workers stop).
    pub fn downgrade(&self) -> WeakOutboxes {
        WeakOutboxes(Arc::downgrade(&self.0))
    }
}

/// [`Outboxes`] as a channel holds them.
#[derive(Clone, Default)]
pub struct WeakOutboxes(std::sync::Weak<HashMap<Platform, mpsc::UnboundedSender<Outbound>>>);

impl WeakOutboxes {
    /// What the channel of `own` should perform of `action`: the action itself, or its
    /// content when it is marked for `own`; `None` when it was for another platform and has
    /// been handed to that platform's channel (or, when no channel of the daemon serves it,
    /// logged as not sent).
    pub fn route(&self, own: Platform, action: Outbound) -> Option<Outbound> {
        let Outbound::On { platform, action } = action else { return Some(action) };
        if platform == own {
            return Some(*action);
        }
        let sent = self.0.upgrade().is_some_and(|map| map.get(&platform).is_some_and(|tx| tx.send(*action).is_ok()));
        if !sent {
            tracing::error!(
                from = own.as_str(),
                to = platform.as_str(),
                "a message for another platform could not be passed on (that channel is not served, or the daemon is stopping); not sent"
            );
        }
        None
    }
}

/// A channel's way to fetch a file people sent (a tip's photo or voice message) by its
/// platform file id, for the station console.
pub trait MediaSource: Send + Sync {
    fn fetch(&self, file_id: &str) -> futures::future::BoxFuture<'_, anyhow::Result<Vec<u8>>>;
}

/// A channel's answer to "is this person still a member of this group?", asked before a
/// privileged action in a group.
pub trait MemberCheck: Send + Sync {
    fn is_member(&self, chat_id: i64, user_id: i64) -> futures::future::BoxFuture<'_, anyhow::Result<bool>>;
}

/// Which messaging platform an update came from. Stored with chats and identities, so the
/// same numeric id on two platforms never mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Telegram,
    Console,
    /// Ordinary WeChat users, through WeCom customer service (微信客服).
    Wechat,
    /// WeCom members (officers, cadres), through the WeCom smart robot (智能机器人).
    WecomBot,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Telegram => "telegram",
            Platform::Console => "console",
            Platform::Wechat => "wechat",
            Platform::WecomBot => "wecom_bot",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        match s {
            "telegram" => Some(Platform::Telegram),
            "console" => Some(Platform::Console),
            "wechat" => Some(Platform::Wechat),
            "wecom_bot" => Some(Platform::WecomBot),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Private chat with one person, or a group (basic group or supergroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Private,
    Group,
}

/// The chat an update happened in.
#[derive(Debug, Clone)]
pub struct ChatRef {
    pub id: i64,
    pub kind: ChatKind,
    /// The group's title (empty for private chats); kept with the binding so staff can tell
    /// groups apart.
    pub title: String,
}

/// Who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A person's (or another bot's) account.
    User { id: i64, is_bot: bool },
    /// Sent on behalf of a chat (an anonymous group admin, a linked channel). Never counts as
    /// an officer: there is no account to check enrolment against.
    Chat { id: i64 },
}

impl Sender {
    /// The account id of a person (not a bot, not a chat).
    pub fn person(self) -> Option<i64> {
        match self {
            Sender::User { id, is_bot: false } => Some(id),
            _ => None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// A text message (or a media caption).
    Text { message_id: i64, text: String, forwarded: bool },
    /// A photo, voice message or video (with its caption, if any).
    Media { message_id: i64, kind: MediaKind, file_id: String, caption: Option<String> },
    /// Something the bot cannot take (a sticker, a document, a video note …).
    Unsupported { message_id: i64 },
    /// A shared location, with the datum of its coordinates when the platform says which
    /// (`None`: unknown, as on Telegram; see [`crate::places::Spot`]).
    Location { message_id: i64, latitude: f64, longitude: f64, datum: Option<crate::places::Datum> },
    /// A button under one of the bot's messages was pressed.
    Button { callback_id: String, message_id: i64, data: String },
    /// The bot was added to the chat (or its membership was restored).
    BotAdded,
    /// The bot was removed from the chat or left it.
    BotRemoved,
    /// The bot was made an admin of the group, or is no longer one.
    BotAdmin { admin: bool },
    /// A group became a supergroup with a new id. Telegram says so in both chats (the old
    /// one's `migrate_to_chat_id`, the new one's `migrate_from_chat_id`); either is enough.
    Migrated { from_chat_id: i64, to_chat_id: i64 },
}

/// The media a tip can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MediaKind {
    Photo,
    Voice,
    Video,
}

/// One update, as the core sees it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub platform: Platform,
    pub chat: ChatRef,
    pub sender: Sender,
    pub event: Event,
}

/// A button under a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Button {
    /// Sends `data` back to the core as [`Event::Button`].
    Callback { label: String, data: String },
    /// Opens a private chat with the bot that starts with `/start <payload>` (a Telegram
    /// deep link `t.me/<bot>?start=<payload>`).
    StartPrivate { label: String, payload: String },
}

/// What the core wants done. Serialisable: actions decided by the command line wait in the
/// database for a daemon to send them (`queued`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Outbound {
    /// Send a message to a chat of the same platform.
    Message { chat_id: i64, text: String, buttons: Vec<Vec<Button>>, reply_to: Option<i64> },
    /// Send a photo, voice message or video by the platform's file id.
    Media { chat_id: i64, kind: MediaKind, file_id: String, caption: Option<String> },
    /// Send a location.
    Location { chat_id: i64, latitude: f64, longitude: f64 },
    /// Delete a message from a group (the bot must be an admin there).
    DeleteMessage { chat_id: i64, message_id: i64 },
    /// Acknowledge a button press (stops the spinner), optionally with a short notice.
    AnswerButton { callback_id: String, text: Option<String> },
    /// An action for a chat on a given platform: an officer's card on the platform the
    /// officer uses, a tipster's notice on the platform the tip came from. The channel that
    /// gets it performs it when it is its own platform and passes it on otherwise
    /// ([`Outboxes::route`]).
    On { platform: Platform, action: Box<Outbound> },
}

impl Outbound {
    pub fn text(chat_id: i64, text: impl Into<String>) -> Outbound {
        Outbound::Message { chat_id, text: text.into(), buttons: Vec::new(), reply_to: None }
    }

    /// `action` for a chat on `platform`.
    pub fn on(platform: Platform, action: Outbound) -> Outbound {
        match action {
            Outbound::On { action, .. } => Outbound::On { platform, action },
            action => Outbound::On { platform, action: Box::new(action) },
        }
    }

    /// Every action of `actions` for chats on `platform`.
    pub fn all_on(platform: Platform, actions: Vec<Outbound>) -> Vec<Outbound> {
        actions.into_iter().map(|a| Outbound::on(platform, a)).collect()
    }
}
