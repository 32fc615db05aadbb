//! The Telegram channel, through teloxide: long polling or a webhook, Telegram's flood
//! limits (kept by [`super::pace::Pace`] for every message sent), command menus, and sends
//! that are retried or recorded, never silently dropped.
//!
//! The bot token only ever lives inside teloxide's `Bot` and in [`Redactor`], which scrubs it
//! from every error before the error is logged or stored (reqwest errors carry the URL,
//! and Telegram's URLs carry the token).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use teloxide::dispatching::{DpHandlerDescription, UpdateHandler};
use teloxide::dptree::HandlerDescription as _;
use teloxide::error_handlers::ErrorHandler;
use teloxide::prelude::*;
use teloxide::types::UpdateKind;
use teloxide::types::{
    BotCommand, BotCommandScope, ChatMemberUpdated, FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile,
    MessageId, ReplyParameters,
};
use teloxide::update_listeners::{Polling, UpdateListener as _};
use teloxide::{ApiError, RequestError};
use tracing::Instrument;

use crate::config::Settings;
use crate::core::{Button, ChatKind, ChatRef, Core, Event, Inbound, MediaKind, Outbound, Platform, Sender};
use crate::texts::Msg;

use super::backlog::{Backlog, Bounded};
use super::pace::{Pace, PaceLimits};
use super::{Channel, Offers, Serving, Shutdown, Wiring};

/// The bot type every handler takes. Flood limits are kept by the adapter's
/// [`super::pace::Pace`], not by an adaptor, so that a reply waits only as long as a limit
/// requires.
pub type TgBot = Bot;

/// Scrubs the bot token out of text that may contain a Telegram URL.
#[derive(Clone)]
pub struct Redactor {
    token: Arc<SecretString>,
}

impl Redactor {
    pub fn new(token: SecretString) -> Redactor {
        Redactor { token: Arc::new(token) }
    }

    /// `text` without the token (reqwest's errors carry the request URL, token included),
    /// on one line.
    pub fn redact(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        let text = if token.is_empty() { text.to_string() } else { text.replace(token, "<token>") };
        crate::telemetry::one_line(&text)
    }
}

/// Shared state of the handlers.
struct Adapter {
    core: Core,
    redactor: Redactor,
    /// The bot's username, for deep links (`t.me/<username>?start=…`).
    username: String,
    /// Attempts for a send that failed for a passing reason (network, 5xx).
    send_retries: u32,
    /// Telegram's sending limits, shared by replies, alerts and broadcasts.
    pace: Pace,
    /// Updates in hand, so that long polling waits when there are too many (`backlog.rs`).
    backlog: Arc<Backlog>,
    /// Passes on what is for another platform (an officer who uses another one).
    forward: crate::core::WeakOutboxes,
}

/// Logs update-listener errors (failed `getUpdates`) without the token, and counts them.
struct ListenerErrors(Redactor, Core);

impl ErrorHandler<RequestError> for ListenerErrors {
    fn handle_error(self: Arc<Self>, error: RequestError) -> BoxFuture<'static, ()> {
        self.1.metrics().telegram_error(error_kind(&error));
        let text = self.0.redact(&error.to_string());
        Box::pin(async move { tracing::warn!(error = %text, "getUpdates failed; polling goes on") })
    }
}

/// Logs handler errors without the token (the handlers catch their own; this is the net).
struct HandlerErrors(Redactor);

impl ErrorHandler<anyhow::Error> for HandlerErrors {
    fn handle_error(self: Arc<Self>, error: anyhow::Error) -> BoxFuture<'static, ()> {
        let text = self.0.redact(&format!("{error:#}"));
        Box::pin(async move { tracing::error!(error = %text, "update handler failed") })
    }
}

/// Builds the bot for `settings` and `token`: API URL, an HTTP client whose timeout outlasts
/// the long poll (teloxide's default client gives up after 17 s).
pub fn build_bot(settings: &Settings, token: &SecretString) -> anyhow::Result<TgBot> {
    let t = &settings.file.telegram;
    let client = teloxide::net::default_reqwest_settings()
        .timeout(t.http_timeout()?)
        .build()
        .context("Failed to build the HTTP client for the Bot API")?;
    let mut bot = Bot::with_client(token.expose_secret(), client);
    if !t.api_url.is_empty() {
        let url =
            url::Url::parse(&t.api_url).with_context(|| format!("telegram.api_url {:?} is not a URL", t.api_url))?;
        bot = bot.set_api_url(url);
    }
    Ok(bot)
}

/// The sending limits of the `[telegram]` section.
fn pace(t: &crate::config::Telegram, core: &Core) -> Pace {
    let limits = PaceLimits {
        per_sec_chat: t.messages_per_sec_chat,
        per_min_group: t.messages_per_min_group,
        per_sec_overall: t.messages_per_sec_overall,
        group_window: Duration::from_millis(t.group_window_ms.unwrap_or(60_000)),
    };
    Pace::new(limits, core.live_daemons())
}

/// Where Telegram posts updates in webhook mode.
struct Webhook {
    /// The public HTTPS URL registered with Telegram.
    url: url::Url,
    /// The path served on the daemon's `[http] listen`.
    path: String,
    /// Telegram's `X-Telegram-Bot-Api-Secret-Token`.
    secret: String,
    max_body_bytes: usize,
}

/// The Telegram channel: long polling, or a webhook served on the daemon's HTTP server.
pub struct TelegramChannel {
    bot: TgBot,
    redactor: Redactor,
    options: crate::config::Telegram,
    webhook: Option<Webhook>,
    /// Learnt at [`Channel::connect`].
    username: String,
}

impl TelegramChannel {
    /// The channel for `token`, with the `[telegram]` section and, when `--webhook` was
    /// given, the `[http]` webhook settings.
    pub fn new(settings: &Settings, token: SecretString) -> anyhow::Result<TelegramChannel> {
        let webhook = match settings.webhook.clone() {
            None => None,
            Some(url) => {
                anyhow::ensure!(
                    !settings.file.http.listen.trim().is_empty(),
                    "--webhook needs [http] listen (CUNJING__HTTP__LISTEN) for Telegram to reach the daemon"
                );
                let path = match url.path() {
                    "" | "/" => settings.file.http.webhook_path.clone(),
                    p => p.to_string(),
                };
                let secret = webhook_secret(settings, &token);
                Some(Webhook { url, path, secret, max_body_bytes: settings.file.http.max_body_bytes })
            }
        };
        Ok(TelegramChannel {
            bot: build_bot(settings, &token)?,
            redactor: Redactor::new(token),
            options: settings.file.telegram.clone(),
            webhook,
            username: String::new(),
        })
    }
}

impl Channel for TelegramChannel {
    fn platform(&self) -> Platform {
        Platform::Telegram
    }

    fn connect(&mut self) -> BoxFuture<'_, anyhow::Result<Offers>> {
        Box::pin(async move {
            let me = get_me_with_retry(&self.bot, &self.redactor).await?;
            self.username = me.username.clone().unwrap_or_default();
            tracing::info!(username = %self.username, "connected to Telegram");
            let (bot, redactor) = (self.bot.clone(), self.redactor.clone());
            Ok(Offers {
                bot_username: Some(self.username.clone()),
                members: Some(Arc::new(Members { bot: bot.clone(), redactor: redactor.clone() })),
                media: Some(Arc::new(Files { bot, redactor })),
            })
        })
    }

    /// Takes updates (polling, or the webhook's route) until the daemon stops, then lets
    /// the updates in hand finish, and performs the outbox until it closes.
    fn serve(self: Box<Self>, ctx: Wiring) -> anyhow::Result<Serving> {
        let Wiring { core, mut outbox, outboxes, workers_stopped, worker, shutdown } = ctx;
        let TelegramChannel { bot, redactor, options, webhook, username } = *self;
        let backlog = Backlog::new(options.pending_limit(core.store().backend()));
        let adapter = Arc::new(Adapter {
            pace: pace(&options, &core),
            core,
            redactor: redactor.clone(),
            username,
            send_retries: options.send_retries,
            backlog,
            forward: outboxes.downgrade(),
        });
        let broadcasts = tokio::spawn(crate::core::broadcast::run_deliveries(
            adapter.core.clone(),
            Arc::new(TelegramDeliverer { adapter: adapter.clone(), bot: bot.clone() }),
            worker,
            outboxes.clone(),
            workers_stopped,
        ));
        let probe: crate::http::Probe = {
            let bot = bot.clone();
            Arc::new(move || {
                let bot = bot.clone();
                Box::pin(async move { bot.get_me().await.is_ok() })
            })
        };
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let routes = webhook.as_ref().map(|w| {
            let route = axum::Router::new().route(&w.path, axum::routing::post(on_webhook)).with_state(WebhookState {
                adapter: adapter.clone(),
                bot: bot.clone(),
                stopping: stopping.clone(),
            });
            crate::http::guard_webhook(route, &w.secret, w.max_body_bytes)
        });
        let task = async move {
            // The daemon's HTTP server listens before this task starts, so Telegram finds the
            // route as soon as it knows it.
            if let Some(w) = &webhook {
                bot.set_webhook(w.url.clone())
                    .secret_token(w.secret.clone())
                    .allowed_updates(ALLOWED_UPDATES.to_vec())
                    .max_connections(40)
                    .await
                    .map_err(|e| anyhow::anyhow!("setWebhook failed: {}", redactor.redact(&e.to_string())))?;
                tracing::info!(path = %w.path, "webhook registered with Telegram");
            }
            register_commands(&bot, &adapter.core, &redactor).await;
            // The limiters keep a little state per chat written to; forget the chats that are idle.
            let shrinking = tokio::spawn({
                let adapter = adapter.clone();
                async move {
                    let mut every = tokio::time::interval(Duration::from_secs(60));
                    loop {
                        every.tick().await;
                        adapter.pace.shrink();
                    }
                }
            });
            // What the rest of the daemon sends on Telegram goes out like any reply.
            let delivery = tokio::spawn({
                let (adapter, bot) = (adapter.clone(), bot.clone());
                async move {
                    while let Some(action) = outbox.recv().await {
                        adapter.perform(&bot, action).await;
                    }
                }
            });
            if webhook.is_some() {
                shutdown.requested().await;
                tracing::info!("shutting down the Telegram webhook");
                // New deliveries are refused (Telegram sends them again, to another daemon or
                // to this one after the restart); those being handled finish.
                stopping.store(true, std::sync::atomic::Ordering::SeqCst);
            } else {
                poll(&options, bot, adapter, redactor, shutdown).await?;
            }
            broadcasts.await.context("the broadcast worker panicked")?;
            delivery.await.context("the Telegram outbox panicked")?;
            shrinking.abort();
            Ok(())
        };
        Ok(Serving { routes, probe: Some(probe), task: Box::pin(task) })
    }
}

/// Long polling until the daemon stops; the updates in hand finish first.
async fn poll(
    options: &crate::config::Telegram,
    bot: TgBot,
    adapter: Arc<Adapter>,
    redactor: Redactor,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let listener = Polling::builder(bot.clone())
        .timeout(Duration::from_secs(options.poll_timeout_secs.into()))
        .delete_webhook()
        .await
        .build();
    let mut listener = Bounded::new(listener, adapter.backlog.clone());
    // The listener's own stop, kept to be pulled beside the dispatcher's (below).
    let stop_polling = listener.stop_token();
    let unknown = adapter.clone();
    let mut dispatcher = Dispatcher::builder(bot, schema())
        .dependencies(dptree::deps![adapter.clone()])
        .default_handler(move |_upd| {
            let adapter = unknown.clone();
            async move { adapter.core.metrics().update("unknown") }
        })
        .error_handler(Arc::new(HandlerErrors(redactor.clone())))
        .build();
    let stop = dispatcher.shutdown_token();
    let listener_errors = Arc::new(ListenerErrors(redactor, adapter.core.clone()));
    let mut dispatching = tokio::spawn(async move {
        dispatcher.dispatch_with_listener(listener, listener_errors).await;
    });
    shutdown.requested().await;
    tracing::info!("shutting down the Telegram channel");
    // teloxide's dispatcher learns of a shutdown from a notice that only reaches it while it
    // waits for the next update: one that comes while it is starting or handling an update
    // is lost, and it polled on for ever (a daemon that did not stop on SIGTERM; seen as a
    // rare hang of the tests' restarts). Stopping the listener as well ends the updates
    // either way: the long poll in flight returns, the offset of what was handled is
    // confirmed, and the dispatcher ends when its stream does.
    stop_polling.stop();
    loop {
        match stop.shutdown() {
            Ok(done) => {
                // teloxide's "done" listens for the dispatcher's last notice only once first
                // polled: a dispatcher that finishes in between is never heard of, and the
                // daemon would wait for ever. So whichever comes first: that notice, or the
                // dispatching task's end.
                tokio::select! {
                    () = done => break,
                    finished = &mut dispatching => return finished.context("the Telegram dispatcher panicked"),
                }
            }
            // A shutdown that arrives while the dispatcher is still starting finds it idle:
            // wait for it to start (it takes one getMe), then stop it.
            Err(_idle) if !dispatching.is_finished() => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_idle) => break,
        }
    }
    dispatching.await.context("the Telegram dispatcher panicked")
}

async fn get_me_with_retry(bot: &TgBot, redactor: &Redactor) -> anyhow::Result<teloxide::types::Me> {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=5 {
        match bot.get_me().await {
            Ok(me) => return Ok(me),
            Err(RequestError::Api(ApiError::InvalidToken)) => {
                anyhow::bail!("Telegram refused the bot token (TELOXIDE_TOKEN): check it with @BotFather")
            }
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %redactor.redact(&e.to_string()), attempt, "getMe failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => anyhow::bail!("Failed to reach Telegram (getMe): {}", redactor.redact(&e.to_string())),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Registers the command menus for private chats and for groups. Failing is not fatal: the
/// commands work without a menu.
async fn register_commands(bot: &TgBot, core: &Core, redactor: &Redactor) {
    let t = core.texts();
    let cmd = |name: &str, msg: Msg| BotCommand::new(name, t.plain(msg));
    let private = vec![
        cmd("tip", Msg::CommandTip),
        cmd("status", Msg::CommandStatus),
        cmd("cancel", Msg::CommandCancel),
        cmd("stop", Msg::CommandStop),
        cmd("officer", Msg::CommandOfficer),
        cmd("help", Msg::CommandHelp),
        cmd("whoami", Msg::CommandWhoami),
        cmd("duty", Msg::CommandDuty),
        cmd("start", Msg::CommandStart),
    ];
    let groups = vec![
        cmd("officer", Msg::CommandOfficer),
        cmd("tip", Msg::CommandTip),
        cmd("help", Msg::CommandHelp),
        cmd("bind", Msg::CommandBind),
        cmd("unbind", Msg::CommandUnbind),
        cmd("bindstation", Msg::CommandBindStation),
    ];
    for (commands, scope) in [(private, BotCommandScope::AllPrivateChats), (groups, BotCommandScope::AllGroupChats)] {
        if let Err(e) = bot.set_my_commands(commands).scope(scope).await {
            tracing::warn!(error = %redactor.redact(&e.to_string()), "could not register the command menu; commands still work");
        }
    }
}

/// The handler tree. Each branch names an update kind, and the dispatcher asks Telegram for
/// exactly these kinds: `my_chat_member` must be here or the bot never learns it was added.
fn schema() -> UpdateHandler<anyhow::Error> {
    // Every update holds a token of the backlog until its handling ends, whichever branch
    // (or none) takes it: long polling waits while too many are in hand. Described as an
    // entry, not as a map (which would count as interest in every kind of update, and make
    // teloxide ask Telegram for all of them).
    dptree::map_with_description(DpHandlerDescription::entry(), |adapter: Arc<Adapter>| adapter.backlog.token())
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback))
        .branch(Update::filter_my_chat_member().endpoint(on_my_chat_member))
}

fn chat_ref(chat: &teloxide::types::Chat) -> Option<ChatRef> {
    let kind = if chat.is_private() {
        ChatKind::Private
    } else if chat.is_group() || chat.is_supergroup() {
        ChatKind::Group
    } else {
        return None; // channels: not served
    };
    Some(ChatRef { id: chat.id.0, kind, title: chat.title().unwrap_or_default().to_string() })
}

/// Turns a Telegram message into an [`Inbound`]; `None` for what the core does not serve
/// (channel posts, stickers without text, service messages other than migration).
pub fn message_to_inbound(msg: &Message) -> Option<Inbound> {
    let chat = chat_ref(&msg.chat)?;
    let sender = if let Some(sc) = &msg.sender_chat {
        Sender::Chat { id: sc.id.0 }
    } else {
        let u = msg.from.as_ref()?;
        Sender::User { id: u.id.0 as i64, is_bot: u.is_bot }
    };
    let message_id = i64::from(msg.id.0);
    let caption = msg.caption().map(str::to_string);
    let media = |kind, file_id: &FileId| Event::Media {
        message_id,
        kind,
        file_id: file_id.0.clone(),
        caption: caption.clone(),
    };
    let event = if let Some(to) = msg.migrate_to_chat_id() {
        Event::Migrated { from_chat_id: chat.id, to_chat_id: to.0 }
    } else if let Some(from) = msg.migrate_from_chat_id() {
        Event::Migrated { from_chat_id: from.0, to_chat_id: chat.id }
    } else if let Some(sizes) = msg.photo() {
        // Telegram sends several sizes, smallest first: keep the largest.
        media(MediaKind::Photo, &sizes.last()?.file.id)
    } else if let Some(voice) = msg.voice() {
        media(MediaKind::Voice, &voice.file.id)
    } else if let Some(video) = msg.video() {
        media(MediaKind::Video, &video.file.id)
    } else if let Some(loc) = msg.location().or_else(|| msg.venue().map(|v| &v.location)) {
        // Device GPS is WGS-84, but a point picked on a Chinese phone's map may be GCJ-02:
        // Telegram does not say which.
        Event::Location { message_id, latitude: loc.latitude, longitude: loc.longitude, datum: None }
    } else if let Some(text) = msg.text().or_else(|| msg.caption()) {
        Event::Text { message_id, text: text.to_string(), forwarded: msg.forward_origin().is_some() }
    } else if msg.sticker().is_some()
        || msg.document().is_some()
        || msg.audio().is_some()
        || msg.video_note().is_some()
        || msg.animation().is_some()
        || msg.contact().is_some()
    {
        Event::Unsupported { message_id }
    } else {
        return None; // service messages and the like
    };
    Some(Inbound { platform: Platform::Telegram, chat, sender, event })
}

/// Turns a change of the bot's own membership into an [`Inbound`].
pub fn membership_to_inbound(upd: &ChatMemberUpdated) -> Option<Inbound> {
    let chat = chat_ref(&upd.chat)?;
    let was = upd.old_chat_member.is_present();
    let is = upd.new_chat_member.is_present();
    let event = match (was, is) {
        (false, true) => Event::BotAdded,
        (true, false) => Event::BotRemoved,
        (true, true) => Event::BotAdmin { admin: upd.new_chat_member.is_privileged() },
        (false, false) => return None,
    };
    let sender = Sender::User { id: upd.from.id.0 as i64, is_bot: upd.from.is_bot };
    Some(Inbound { platform: Platform::Telegram, chat, sender, event })
}

fn callback_to_inbound(q: &CallbackQuery) -> Option<Inbound> {
    let msg = q.message.as_ref()?;
    let chat = chat_ref(msg.chat())?;
    Some(Inbound {
        platform: Platform::Telegram,
        chat,
        sender: Sender::User { id: q.from.id.0 as i64, is_bot: q.from.is_bot },
        event: Event::Button {
            callback_id: q.id.0.clone(),
            message_id: msg.id().0.into(),
            data: q.data.clone().unwrap_or_default(),
        },
    })
}

async fn on_message(bot: TgBot, adapter: Arc<Adapter>, upd: Update, msg: Message) -> anyhow::Result<()> {
    if let Some(inbound) = message_to_inbound(&msg) {
        adapter.serve(&bot, upd.id.0, inbound).await;
    }
    Ok(())
}

async fn on_callback(bot: TgBot, adapter: Arc<Adapter>, upd: Update, q: CallbackQuery) -> anyhow::Result<()> {
    match callback_to_inbound(&q) {
        Some(inbound) => adapter.serve(&bot, upd.id.0, inbound).await,
        // A button on a message too old to see: still stop the spinner.
        None => adapter.perform(&bot, Outbound::AnswerButton { callback_id: q.id.0.clone(), text: None }).await,
    }
    Ok(())
}

async fn on_my_chat_member(
    bot: TgBot,
    adapter: Arc<Adapter>,
    upd: Update,
    member: ChatMemberUpdated,
) -> anyhow::Result<()> {
    if let Some(inbound) = membership_to_inbound(&member) {
        adapter.serve(&bot, upd.id.0, inbound).await;
    }
    Ok(())
}

/// How long recording an update may take before it is handled anyway.
const CLAIM_TIMEOUT: Duration = Duration::from_millis(500);

/// The update kinds the daemon takes, asked for explicitly in webhook mode (the polling
/// dispatcher asks for what its handler tree uses: the same three).
const ALLOWED_UPDATES: [teloxide::types::AllowedUpdate; 3] = [
    teloxide::types::AllowedUpdate::Message,
    teloxide::types::AllowedUpdate::CallbackQuery,
    teloxide::types::AllowedUpdate::MyChatMember,
];

/// The webhook's secret token: `CUNJING_WEBHOOK_SECRET`, or one derived from the bot token
/// (64 hex digits, as Telegram allows), the same on every daemon of the deployment.
fn webhook_secret(settings: &Settings, token: &SecretString) -> String {
    use sha2::Digest;
    match &settings.webhook_secret {
        Some(secret) => secret.expose_secret().to_string(),
        None => {
            let digest = sha2::Sha256::digest(format!("cunjing-webhook:{}", token.expose_secret()).as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

#[derive(Clone)]
struct WebhookState {
    adapter: Arc<Adapter>,
    bot: TgBot,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// One update posted by Telegram (the secret and the size were checked before). Answered
/// after it was handled; while stopping, refused so that Telegram delivers it again.
async fn on_webhook(
    axum::extract::State(w): axum::extract::State<WebhookState>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    if w.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match serde_json::from_slice::<Update>(&body) {
        Ok(update) => w.adapter.serve_update(&w.bot, update).await,
        Err(e) => {
            // Never the body: it holds people's messages. Telegram would only send it again.
            w.adapter.core.metrics().telegram_error("bad_update");
            tracing::warn!(
                bytes = body.len(),
                line = e.line(),
                column = e.column(),
                "webhook body is not an update; dropped"
            );
        }
    }
    StatusCode::OK
}

/// Telegram's limit on a message's text, in UTF-16 code units.
const TELEGRAM_TEXT_LIMIT: usize = 4096;

/// Splits `text` into parts of at most `limit` UTF-16 code units, at line ends where it can.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    // UTF-8 takes at least as many bytes as UTF-16 takes units: a reply this short (almost
    // every one) is whole, and is not scanned line by line.
    if text.len() <= limit {
        return vec![text.to_string()];
    }
    let mut parts = vec![String::new()];
    let units = |s: &str| s.encode_utf16().count();
    for line in text.split_inclusive('\n') {
        let current = parts.last_mut().expect("never empty");
        if units(current) + units(line) <= limit {
            current.push_str(line);
            continue;
        }
        // The line does not fit: start a new part, cutting the line itself if it is too long.
        let mut piece = String::new();
        for c in line.chars() {
            if units(&piece) + c.len_utf16() > limit {
                parts.push(std::mem::take(&mut piece));
            }
            piece.push(c);
        }
        if parts.last().is_some_and(|p| p.is_empty()) {
            *parts.last_mut().expect("never empty") = piece;
        } else {
            parts.push(piece);
        }
    }
    parts.retain(|p| !p.trim().is_empty());
    if parts.is_empty() {
        parts.push(text.to_string());
    }
    parts
}

/// `sendMessage` as the daemon sends it: text, an inline keyboard, the message it answers.
///
/// teloxide's own `SendMessage` reads Telegram's answer into a whole `Message` (the text
/// again, the keyboard, the message replied to), through untagged enums that try variant
/// after variant; the daemon only ever wants the new message's id. This payload goes through
/// teloxide's request path all the same (the same URL, errors, `retry_after` and
/// `migrate_to_chat_id`) and reads back just `message_id`: under a burst of tips, each of
/// them three sends, that parse was a visible share of the daemon's time (BENCHMARKS.md).
#[derive(Debug, Clone, serde::Serialize)]
struct SendText {
    chat_id: i64,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_parameters: Option<ReplyParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<InlineKeyboardMarkup>,
}

impl teloxide::requests::Payload for SendText {
    type Output = MessageId;
    const NAME: &'static str = "SendMessage";
}

impl SendText {
    /// A message to `chat_id`, answering `reply_to` if that message is still there (sent
    /// anyway if it was deleted).
    fn new(chat_id: i64, text: String, keyboard: Option<InlineKeyboardMarkup>, reply_to: Option<i64>) -> SendText {
        let reply_parameters = reply_to
            .and_then(|id| i32::try_from(id).ok())
            .map(|id| ReplyParameters::new(MessageId(id)).allow_sending_without_reply());
        SendText { chat_id, text, reply_parameters, reply_markup: keyboard }
    }

    fn request(self, bot: &TgBot) -> teloxide::requests::JsonRequest<SendText> {
        teloxide::requests::JsonRequest::new(bot.clone(), self)
    }
}

/// How a failed send is treated.
enum Failure {
    /// Try again after a pause (network, server errors, flood control).
    Transient(Duration),
    /// The chat is gone for the bot (kicked, blocked, deleted): stop sending there.
    ChatLost,
    /// The request itself is wrong; trying again cannot help.
    Permanent,
}

fn classify(err: &RequestError) -> Failure {
    match err {
        RequestError::RetryAfter(secs) => Failure::Transient(secs.duration()),
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => {
            Failure::Transient(Duration::from_millis(500))
        }
        RequestError::Api(
            ApiError::BotBlocked
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::ChatNotFound
            | ApiError::UserDeactivated
            | ApiError::GroupDeactivated,
        ) => Failure::ChatLost,
        // Telegram's current wording for a basic group teloxide does not map to a variant
        // ("Forbidden: bot was kicked from the group chat", "… is not a member of …").
        RequestError::Api(ApiError::Unknown(text))
            if text.starts_with("Forbidden:")
                && ["kicked", "not a member", "deactivated", "blocked"].iter().any(|w| text.contains(w)) =>
        {
            Failure::ChatLost
        }
        RequestError::Api(ApiError::Unknown(text))
            if text.contains("Internal Server Error") || text.contains("Bad Gateway") =>
        {
            Failure::Transient(Duration::from_millis(500))
        }
        _ => Failure::Permanent,
    }
}

fn error_kind(err: &RequestError) -> &'static str {
    match err {
        RequestError::Api(_) => "api",
        RequestError::MigrateToChatId(_) => "migrated",
        RequestError::RetryAfter(_) => "retry_after",
        RequestError::Network(_) => "network",
        RequestError::InvalidJson { .. } => "invalid_json",
        RequestError::Io(_) => "io",
    }
}

impl Adapter {
    /// An update from the webhook, routed as the polling dispatcher's handler tree does.
    async fn serve_update(&self, bot: &TgBot, update: Update) {
        let id = update.id.0;
        match update.kind {
            UpdateKind::Message(msg) => {
                if let Some(inbound) = message_to_inbound(&msg) {
                    self.serve(bot, id, inbound).await;
                }
            }
            UpdateKind::CallbackQuery(q) => match callback_to_inbound(&q) {
                Some(inbound) => self.serve(bot, id, inbound).await,
                None => self.perform(bot, Outbound::AnswerButton { callback_id: q.id.0.clone(), text: None }).await,
            },
            UpdateKind::MyChatMember(member) => {
                if let Some(inbound) = membership_to_inbound(&member) {
                    self.serve(bot, id, inbound).await;
                }
            }
            _ => self.core.metrics().update("unknown"),
        }
    }

    /// Runs one update through the core and performs what it returns, inside a span that
    /// names the update and the chat (never the text or the sender).
    ///
    /// With several daemons, an update Telegram sends again (a webhook whose answer was
    /// lost, long polling after a crash before the offset was confirmed) the update is
    /// handled once: the first daemon to record its id takes it. Every mode records it (a
    /// lone polling daemon on SQLite too; group commit keeps the write cheap), except an
    /// update whose handling leaves no trace ([`Core::leaves_no_trace`]: group chatter).
    /// If the database cannot say, the update is handled anyway — an answer twice is better
    /// than none (the emergency answer needs no database at all).
    async fn serve(&self, bot: &TgBot, update_id: u32, inbound: Inbound) {
        let span = tracing::info_span!("update", update_id, chat = %crate::telemetry::chat_label(inbound.chat.id));
        async {
            let started = std::time::Instant::now();
            let metrics = self.core.metrics();
            let claim =
                self.core.store().claim_update(Platform::Telegram.as_str(), update_id.into(), self.core.now_ms());
            let claimed = async {
                match self.core.leaves_no_trace(&inbound) {
                    true => Ok(Ok(true)),
                    false => tokio::time::timeout(CLAIM_TIMEOUT, claim).await,
                }
            };
            match claimed.await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    metrics.duplicate_updates.inc();
                    tracing::info!("update already handled by another daemon; skipped");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = format!("{e:#}"), "could not record the update; handling it anyway")
                }
                Err(_) => tracing::warn!("the database did not record the update in time; handling it anyway"),
            }
            // Actions are performed as the core decides them: the emergency answer does not
            // wait for the officers' alerts (or for a database that is down).
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let handling = async move { self.core.handle_into(&inbound, &tx).await };
            let performing = async {
                while let Some(out) = rx.recv().await {
                    self.perform(bot, out).await;
                }
            };
            tokio::join!(handling, performing);
            metrics.handle_seconds.observe(started.elapsed().as_secs_f64());
        }
        .instrument(span)
        .await
    }

    async fn perform(&self, bot: &TgBot, out: Outbound) {
        let Some(out) = self.forward.route(Platform::Telegram, out) else { return };
        match out {
            // Passed on by `route`.
            Outbound::On { .. } => {}
            Outbound::Message { chat_id, text, buttons, reply_to } => {
                let markup = self.keyboard(&buttons);
                // Telegram takes at most 4096 characters a message: longer text goes out in
                // parts, the buttons under the last.
                let parts = split_text(&text, TELEGRAM_TEXT_LIMIT);
                let last = parts.len() - 1;
                for (n, part) in parts.into_iter().enumerate() {
                    let markup = if n == last { markup.clone() } else { None };
                    let reply_to = if n == 0 { reply_to } else { None };
                    self.send_with_policy(chat_id, |chat| {
                        let req = SendText::new(chat, part.clone(), markup.clone(), reply_to).request(bot);
                        async move { req.await.map(drop) }
                    })
                    .await;
                }
            }
            Outbound::Media { chat_id, kind, file_id, caption } => {
                self.send_with_policy(chat_id, |chat| {
                    let file = InputFile::file_id(FileId(file_id.clone()));
                    let caption = caption.clone();
                    async move {
                        match kind {
                            MediaKind::Photo => {
                                let mut req = bot.send_photo(ChatId(chat), file);
                                if let Some(c) = caption {
                                    req = req.caption(c);
                                }
                                req.await.map(drop)
                            }
                            MediaKind::Voice => {
                                let mut req = bot.send_voice(ChatId(chat), file);
                                if let Some(c) = caption {
                                    req = req.caption(c);
                                }
                                req.await.map(drop)
                            }
                            MediaKind::Video => {
                                let mut req = bot.send_video(ChatId(chat), file);
                                if let Some(c) = caption {
                                    req = req.caption(c);
                                }
                                req.await.map(drop)
                            }
                        }
                    }
                })
                .await;
            }
            Outbound::Location { chat_id, latitude, longitude } => {
                self.send_with_policy(chat_id, |chat| {
                    let req = bot.send_location(ChatId(chat), latitude, longitude);
                    async move { req.await.map(drop) }
                })
                .await;
            }
            Outbound::DeleteMessage { chat_id, message_id } => {
                let Ok(id) = i32::try_from(message_id) else { return };
                if let Err(e) = bot.delete_message(ChatId(chat_id), MessageId(id)).await {
                    let detail = self.redactor.redact(&e.to_string());
                    tracing::warn!(chat = %crate::telemetry::chat_label(chat_id), error = %detail, "could not delete a message");
                    if let Err(e) = self.core.store().record_send_failure("telegram", chat_id, "delete", &detail).await
                    {
                        tracing::error!(error = format!("{e:#}"), "failed to record a failed delete");
                    }
                }
            }
            Outbound::AnswerButton { callback_id, text } => {
                let mut req = bot.answer_callback_query(teloxide::types::CallbackQueryId(callback_id));
                if let Some(t) = text {
                    req = req.text(t);
                }
                if let Err(e) = req.await {
                    // An unanswered button only keeps spinning on the user's screen.
                    tracing::warn!(error = %self.redactor.redact(&e.to_string()), "answerCallbackQuery failed");
                }
            }
        }
    }

    fn keyboard(&self, rows: &[Vec<Button>]) -> Option<InlineKeyboardMarkup> {
        if rows.is_empty() {
            return None;
        }
        let rows = rows.iter().map(|row| {
            row.iter()
                .filter_map(|b| match b {
                    Button::Callback { label, data } => {
                        Some(InlineKeyboardButton::callback(label.clone(), data.clone()))
                    }
                    Button::StartPrivate { label, payload } => {
                        let link = format!("https://t.me/{}?start={}", self.username, payload);
                        url::Url::parse(&link).ok().map(|u| InlineKeyboardButton::url(label.clone(), u))
                    }
                })
                .collect::<Vec<_>>()
        });
        Some(InlineKeyboardMarkup::new(rows))
    }

    /// Sends with the delivery policy: follow a group's migration once, wait out flood
    /// control, retry passing failures, and record what still fails.
    async fn send_with_policy<F, Fut>(&self, chat_id: i64, send: F)
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<(), RequestError>>,
    {
        let platform = Platform::Telegram.as_str();
        let store = self.core.store();
        let mut chat = chat_id;
        let mut migrated = false;
        let mut attempt = 0;
        loop {
            self.pace.ready(chat).await;
            let err = match send(chat).await {
                Ok(()) => {
                    self.core.metrics().replies.inc();
                    return;
                }
                Err(e) => e,
            };
            self.core.metrics().telegram_error(error_kind(&err));
            if let RequestError::RetryAfter(secs) = &err {
                self.pace.freeze(secs.duration());
            }
            if let RequestError::MigrateToChatId(new_id) = &err
                && !migrated
            {
                migrated = true;
                tracing::info!(chat = %crate::telemetry::chat_label(chat), to_chat_id = new_id.0, "group was migrated; sending to the supergroup");
                if let Err(e) = store.chat_migrated(platform, chat, new_id.0).await {
                    tracing::error!(error = format!("{e:#}"), "failed to record a group migration");
                }
                chat = new_id.0;
                continue;
            }
            let detail = self.redactor.redact(&err.to_string());
            let kind = error_kind(&err);
            match classify(&err) {
                Failure::Transient(pause) if attempt < self.send_retries => {
                    attempt += 1;
                    tracing::warn!(chat = %crate::telemetry::chat_label(chat), attempt, error = %detail, "send failed; retrying");
                    tokio::time::sleep(pause * attempt).await;
                    continue;
                }
                Failure::ChatLost => {
                    tracing::warn!(chat = %crate::telemetry::chat_label(chat), error = %detail, "chat is lost for the bot");
                    if chat < 0
                        && let Err(e) = store.chat_left(platform, chat).await
                    {
                        tracing::error!(error = format!("{e:#}"), "failed to mark a chat inactive");
                    }
                }
                _ => {
                    tracing::error!(chat = %crate::telemetry::chat_label(chat), error = %detail, "send failed for good")
                }
            }
            if let Err(e) = store.record_send_failure(platform, chat, kind, &detail).await {
                tracing::error!(error = format!("{e:#}"), "failed to record a failed send");
            }
            return;
        }
    }
}

/// Group membership by `getChatMember`: privileged actions in a group need the sender to be
/// in it still.
struct Members {
    bot: TgBot,
    redactor: Redactor,
}

impl crate::core::MemberCheck for Members {
    fn is_member(&self, chat_id: i64, user_id: i64) -> BoxFuture<'_, anyhow::Result<bool>> {
        Box::pin(async move {
            let user = teloxide::types::UserId(u64::try_from(user_id).context("not a user id")?);
            match self.bot.get_chat_member(ChatId(chat_id), user).await {
                Ok(member) => Ok(member.is_present()),
                Err(e) => Err(anyhow::anyhow!("getChatMember failed: {}", self.redactor.redact(&e.to_string()))),
            }
        })
    }
}

/// Files people sent, fetched by id (`getFile`, then the download), for the station console.
/// Telegram lets bots download files up to 20 MB.
struct Files {
    bot: TgBot,
    redactor: Redactor,
}

impl crate::core::MediaSource for Files {
    fn fetch(&self, file_id: &str) -> BoxFuture<'_, anyhow::Result<Vec<u8>>> {
        let file_id = file_id.to_string();
        Box::pin(async move {
            use teloxide::net::Download;
            let redact = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}", self.redactor.redact(&e.to_string()));
            let file = self.bot.get_file(FileId(file_id)).await.map_err(|e| redact(&e))?;
            let mut bytes = Vec::new();
            self.bot.download_file(&file.path, &mut bytes).await.map_err(|e| redact(&e))?;
            Ok(bytes)
        })
    }
}

/// Broadcast messages to Telegram groups, paced with the replies by the adapter's [`Pace`]
/// (so together they stay within Telegram's limits; a 429 pauses both).
pub struct TelegramDeliverer {
    adapter: Arc<Adapter>,
    bot: TgBot,
}

impl TelegramDeliverer {
    /// Sends a delivery once its turn comes; `None` when by then it is no longer wanted
    /// (cancelled, corrected or expired while it waited).
    async fn send_once(&self, d: &crate::core::broadcast::Delivery, chat: i64) -> Result<Option<i64>, RequestError> {
        let pace = &self.adapter.pace;
        pace.ready(chat).await;
        if !d.still_wanted.check() {
            return Ok(None);
        }
        if let Some(photo) = &d.photo {
            self.bot.send_photo(ChatId(chat), InputFile::file_id(FileId(photo.clone()))).await?;
            pace.ready(chat).await;
        }
        let req = SendText::new(chat, d.text.clone(), self.adapter.keyboard(&d.buttons), d.reply_to);
        Ok(Some(i64::from(req.request(&self.bot).await?.0)))
    }
}

impl crate::core::broadcast::Deliverer for TelegramDeliverer {
    fn channel(&self) -> &'static str {
        Platform::Telegram.as_str()
    }

    async fn send(&self, d: crate::core::broadcast::Delivery) -> crate::core::broadcast::SendOutcome {
        use crate::core::broadcast::SendOutcome;
        let mut chat = d.chat_id;
        let mut migrated_to = None;
        let result = match self.send_once(&d, chat).await {
            Err(RequestError::MigrateToChatId(new_id)) => {
                // The group became a supergroup: move the binding and send there, once.
                if let Err(e) = self.adapter.core.store().chat_migrated("telegram", chat, new_id.0).await {
                    tracing::error!(error = format!("{e:#}"), "failed to record a group migration");
                }
                chat = new_id.0;
                migrated_to = Some(chat);
                self.send_once(&d, chat).await
            }
            other => other,
        };
        match result {
            Ok(None) => SendOutcome::Stopped,
            Ok(Some(message_id)) => {
                let mut pinned = false;
                let mut note = None;
                if d.pin
                    && let Ok(id) = i32::try_from(message_id)
                {
                    match self.bot.pin_chat_message(ChatId(chat), MessageId(id)).await {
                        Ok(_) => pinned = true,
                        Err(e) => note = Some(format!("not pinned: {}", self.adapter.redactor.redact(&e.to_string()))),
                    }
                }
                SendOutcome::Sent { message_id: Some(message_id), pinned, note, migrated_to }
            }
            Err(err) => {
                let detail = self.adapter.redactor.redact(&err.to_string());
                if let RequestError::RetryAfter(secs) = &err {
                    self.adapter.pace.freeze(secs.duration());
                }
                match classify(&err) {
                    Failure::Transient(after) => SendOutcome::Retry { after, detail },
                    Failure::ChatLost => SendOutcome::Lost(detail),
                    Failure::Permanent => SendOutcome::Failed(detail),
                }
            }
        }
    }

    async fn delete(&self, chat_id: i64, message_id: i64) -> bool {
        let Ok(id) = i32::try_from(message_id) else { return false };
        match self.bot.delete_message(ChatId(chat_id), MessageId(id)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %self.adapter.redactor.redact(&e.to_string()), "could not delete a broadcast message");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SendText, split_text};
    use teloxide::payloads::SendMessageSetters as _;
    use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, ReplyParameters};

    #[test]
    fn a_lean_send_puts_on_the_wire_what_teloxides_send_message_would() {
        let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("确认收到", "o:ack:7")]]);
        let ours = SendText::new(-100_123, "📇 和庄村".into(), Some(keyboard.clone()), Some(42));
        let theirs = teloxide::payloads::SendMessage::new(ChatId(-100_123), "📇 和庄村")
            .reply_markup(keyboard)
            .reply_parameters(ReplyParameters::new(MessageId(42)).allow_sending_without_reply());
        assert_eq!(serde_json::to_value(&ours).unwrap(), serde_json::to_value(&theirs).unwrap());
        let plain = SendText::new(5, "好".into(), None, None);
        let theirs = teloxide::payloads::SendMessage::new(ChatId(5), "好");
        assert_eq!(serde_json::to_value(&plain).unwrap(), serde_json::to_value(&theirs).unwrap());
        assert_eq!(<SendText as teloxide::requests::Payload>::NAME, "SendMessage");
    }

    #[test]
    fn a_lean_send_reads_the_new_message_id_out_of_telegrams_whole_message() {
        let answer = r#"{"message_id":1000007,"date":1763880000,"chat":{"id":-100123,"type":"supergroup","title":"村民群"},"from":{"id":4242,"is_bot":true,"first_name":"村警"},"text":"ok","reply_to_message":{"message_id":42,"date":1,"chat":{"id":-100123,"type":"supergroup","title":"村民群"},"text":"民警电话"}}"#;
        let id: <SendText as teloxide::requests::Payload>::Output = serde_json::from_str(answer).unwrap();
        assert_eq!(id, MessageId(1_000_007));
    }

    #[test]
    fn a_long_text_is_split_at_line_ends_within_the_limit() {
        let line = format!("{}\n", "民".repeat(30));
        let text = line.repeat(10);
        let parts = split_text(&text, 100);
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 100), "{parts:?}");
        assert_eq!(parts.concat(), text, "nothing is lost");
        assert!(parts.iter().all(|p| p.ends_with('\n')), "cuts fall on line ends");
    }

    #[test]
    fn a_single_overlong_line_is_cut_and_a_short_text_is_left_alone() {
        let text = "a".repeat(250);
        let parts = split_text(&text, 100);
        assert_eq!(parts.iter().map(String::len).collect::<Vec<_>>(), [100, 100, 50]);
        assert_eq!(split_text("你好", 4096), ["你好"]);
    }

    #[test]
    fn a_text_that_fits_is_one_part_exactly_as_written() {
        for text in
            ["📇 和庄村 警民联系卡\n驻村民警：张建国\n\n🚨 紧急情况请直接拨打 110\n", "\n", "🚨".repeat(1024).as_str()]
        {
            assert_eq!(split_text(text, 4096), [text], "{text:?}");
        }
        let units = "🚨".repeat(1025); // 2,050 UTF-16 units, 4,100 bytes: fits by units
        assert_eq!(split_text(&units, 4096), std::slice::from_ref(&units));
    }
}
