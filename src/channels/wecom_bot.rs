//! Officers, auxiliaries and village cadres on WeCom, through the smart robot (智能机器人) in
//! long-connection mode: one WebSocket to `[wecom.robot] ws_url`, no public address and no
//! callback crypto. Every frame is `{cmd, headers: {req_id}, body}`; acknowledgements carry
//! `errcode` and no `cmd`.
//!
//! - `aibot_subscribe` with the bot id and secret at the start (a refusal stops the start
//!   with a clear message), a `ping` every 30 s, and a new connection with backoff (1 s up to
//!   30 s) when the old one drops — but none after `disconnected_event`: a newer connection of
//!   the same bot took over.
//! - `aibot_msg_callback`: a direct message, or an @-mention in a WeCom internal group
//!   (voice arrives as text, transcribed by WeCom); a 32-character enrolment code on its own
//!   enrols the officer. `aibot_event_callback` `template_card_event`: a card's button.
//!   Message ids seen before are dropped.
//! - The first answer to a callback goes by `aibot_respond_msg` with its `req_id`; everything
//!   else (a tip's card from another platform, an escalation) by `aibot_send_msg`. Text goes
//!   as markdown (WeCom refuses plain text there); buttons as a `button_interaction` template
//!   card (受理 / 回复 / 转派 / 办结), at most 6.
//!
//! WeCom user ids and chat ids are strings: they get integer ids in the store
//! (`external_ids`, prefixed `chat:` for group chats, whose integer ids are negative).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::{Channel, Offers, Serving, Shutdown, Wiring};
use crate::core::{Button, ChatKind, ChatRef, Core, Event, Inbound, Outbound, Platform, Sender, WeakOutboxes};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How often the connection is kept alive.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Most buttons on one template card.
const MAX_BUTTONS: usize = 6;
/// Button keys that open a conversation (`/start PAYLOAD`) rather than press a button.
const START_PREFIX: &str = "start:";

/// The smart robot's channel.
pub struct WecomBotChannel {
    url: String,
    bot_id: String,
    secret: SecretString,
    /// The first wait before connecting again.
    backoff: Duration,
    /// The connection made (and subscribed) by `connect`.
    socket: Option<Socket>,
}

impl WecomBotChannel {
    pub fn new(options: &crate::config::WecomRobot, secret: SecretString) -> anyhow::Result<WecomBotChannel> {
        anyhow::ensure!(
            !options.bot_id.is_empty(),
            "the WeCom smart robot needs [wecom.robot] bot_id (CUNJING__WECOM__ROBOT__BOT_ID)"
        );
        Ok(WecomBotChannel {
            url: options.ws_url.clone(),
            bot_id: options.bot_id.clone(),
            secret,
            backoff: Duration::from_millis(options.reconnect_min_ms),
            socket: None,
        })
    }
}

static REQ: AtomicU64 = AtomicU64::new(1);

fn req_id(kind: &str) -> String {
    format!("cunjing-{kind}-{}", REQ.fetch_add(1, Ordering::Relaxed))
}

/// Opens the connection and subscribes; WeCom's refusal is an error that says so.
async fn subscribe(url: &str, bot_id: &str, secret: &SecretString) -> anyhow::Result<Socket> {
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(15), tokio_tungstenite::connect_async(url))
        .await
        .with_context(|| format!("no answer from the WeCom smart robot endpoint {url} in 15 s"))?
        .with_context(|| format!("Failed to connect to the WeCom smart robot endpoint {url}"))?;
    let id = req_id("subscribe");
    let frame = json!({"cmd": "aibot_subscribe", "headers": {"req_id": id}, "body": {"bot_id": bot_id, "secret": secret.expose_secret()}});
    socket.send(Frame::text(frame.to_string())).await.context("Failed to subscribe the WeCom smart robot")?;
    let ack = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(frame) = socket.next().await {
            let Ok(Frame::Text(text)) = frame else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            if v["headers"]["req_id"] == id.as_str() {
                return Some(v);
            }
        }
        None
    })
    .await
    .context("WeCom did not acknowledge the smart robot's subscription in 15 s")?
    .context("the WeCom smart robot connection closed during the subscription")?;
    let code = ack["errcode"].as_i64().unwrap_or(0);
    anyhow::ensure!(
        code == 0,
        "WeCom refused the smart robot (errcode {code}: {}); check [wecom.robot] bot_id and CUNJING_WECOM_ROBOT_SECRET",
        ack["errmsg"].as_str().unwrap_or("")
    );
    Ok(socket)
}

impl Channel for WecomBotChannel {
    fn platform(&self) -> Platform {
        Platform::WecomBot
    }

    fn connect(&mut self) -> BoxFuture<'_, anyhow::Result<Offers>> {
        Box::pin(async move {
            self.socket = Some(subscribe(&self.url, &self.bot_id, &self.secret).await?);
            tracing::info!("connected to the WeCom smart robot");
            Ok(Offers::default())
        })
    }

    fn serve(self: Box<Self>, ctx: Wiring) -> anyhow::Result<Serving> {
        let Wiring { core, outbox, outboxes, shutdown, .. } = ctx;
        let (frames, frames_rx) = mpsc::unbounded_channel::<String>();
        let robot = Arc::new(Robot { core, forward: outboxes.downgrade(), frames });
        let task = run(*self, robot, outbox, frames_rx, shutdown);
        Ok(Serving { routes: None, probe: None, task: Box::pin(task) })
    }
}

/// What the handlers share: the core, and the frames to write.
struct Robot {
    core: Core,
    forward: WeakOutboxes,
    frames: mpsc::UnboundedSender<String>,
}

impl Robot {
    /// The integer id of a WeCom user or group chat (negative for chats).
    async fn id_of(&self, external: &str, group: bool) -> anyhow::Result<i64> {
        let key = if group { format!("chat:{external}") } else { external.to_string() };
        let id = self.core.store().external_user(Platform::WecomBot.as_str(), &key, self.core.now_ms()).await?;
        Ok(if group { -id } else { id })
    }

    /// WeCom's chat id and chat type (1 single, 2 group) of an integer chat id.
    async fn chat_of(&self, chat_id: i64) -> anyhow::Result<(String, i64)> {
        let external = self
            .core
            .store()
            .external_id_of(Platform::WecomBot.as_str(), chat_id.abs())
            .await?
            .with_context(|| format!("no WeCom chat has id {chat_id}"))?;
        Ok(match external.strip_prefix("chat:") {
            Some(chat) => (chat.to_string(), 2),
            None => (external, 1),
        })
    }

    /// The body of a message: markdown, or a button card.
    fn message_body(text: &str, buttons: &[Vec<Button>]) -> Value {
        let buttons: Vec<Value> = buttons
            .iter()
            .flatten()
            .map(|b| match b {
                Button::Callback { label, data } => json!({"text": label, "style": 1, "key": data}),
                Button::StartPrivate { label, payload } => {
                    json!({"text": label, "style": 1, "key": format!("{START_PREFIX}{payload}")})
                }
            })
            .collect();
        if buttons.is_empty() {
            return json!({"msgtype": "markdown", "markdown": {"content": text}});
        }
        if buttons.len() > MAX_BUTTONS {
            tracing::warn!(buttons = buttons.len(), "a WeCom card takes at most 6 buttons; the rest are left off");
        }
        let (title, rest) = text.split_once('\n').unwrap_or((text, ""));
        json!({"msgtype": "template_card", "template_card": {
            "card_type": "button_interaction",
            "main_title": {"title": title},
            "sub_title_text": rest,
            "button_list": buttons.into_iter().take(MAX_BUTTONS).collect::<Vec<_>>(),
            "task_id": req_id("card"),
        }})
    }

    /// Sends `action` (after passing on what is for another platform); `reply_to`: the
    /// callback's req_id and chat, answered with `aibot_respond_msg` once.
    async fn perform(&self, action: Outbound, reply_to: &mut Option<(String, i64)>) {
        let Some(action) = self.forward.route(Platform::WecomBot, action) else { return };
        let result = async {
            let (chat_id, body) = match &action {
                Outbound::Message { chat_id, text, buttons, .. } => (*chat_id, Robot::message_body(text, buttons)),
                Outbound::Media { chat_id, caption: Some(caption), .. } => {
                    (*chat_id, Robot::message_body(caption, &[]))
                }
                Outbound::Location { chat_id, latitude, longitude } => {
                    (*chat_id, Robot::message_body(&format!("📍 {latitude:.5}, {longitude:.5}"), &[]))
                }
                _ => return Ok(()),
            };
            let frame = match reply_to.take_if(|(_, chat)| *chat == chat_id) {
                Some((req, _)) => {
                    let body = match body["msgtype"].as_str() {
                        // A reply's text goes as a finished stream.
                        Some("markdown") => json!({"msgtype": "stream", "stream": {
                            "id": req_id("stream"), "finish": true, "content": body["markdown"]["content"],
                        }}),
                        _ => body,
                    };
                    json!({"cmd": "aibot_respond_msg", "headers": {"req_id": req}, "body": body})
                }
                None => {
                    let (chatid, chat_type) = self.chat_of(chat_id).await?;
                    let mut body = body;
                    body["chatid"] = json!(chatid);
                    body["chat_type"] = json!(chat_type);
                    json!({"cmd": "aibot_send_msg", "headers": {"req_id": req_id("send")}, "body": body})
                }
            };
            self.frames.send(frame.to_string()).map_err(|_| anyhow::anyhow!("the WeCom connection is closed"))
        };
        if let Err(e) = result.await {
            tracing::error!(error = format!("{e:#}"), "WeCom smart robot send failed");
        }
    }

    /// One callback frame: a message or an event.
    async fn callback(&self, frame: Value) -> anyhow::Result<()> {
        let req = frame["headers"]["req_id"].as_str().unwrap_or_default().to_string();
        let body = &frame["body"];
        let msgid = body["msgid"].as_str().unwrap_or_default();
        if !msgid.is_empty()
            && !self.core.store().wechat_first_seen(&format!("bot:{msgid}"), self.core.now_ms()).await?
        {
            return Ok(());
        }
        let group = body["chattype"] == "group";
        let Some(user) = body["from"]["userid"].as_str() else { return Ok(()) };
        let user_id = self.id_of(user, false).await?;
        let chat_id = match body["chatid"].as_str().filter(|c| group && !c.is_empty()) {
            Some(chat) => self.id_of(chat, true).await?,
            None => user_id,
        };
        let event = match frame["cmd"].as_str() {
            Some("aibot_msg_callback") => {
                let text = match body["msgtype"].as_str() {
                    Some("text") => body["text"]["content"].as_str(),
                    Some("voice") => body["voice"]["content"].as_str(),
                    _ => None,
                };
                match text.map(str::trim) {
                    // An enrolment code sent on its own.
                    Some(t) if !group && crate::store::officers::looks_like_enrolment_code(t) => {
                        text_event(format!("/start {t}"))
                    }
                    Some(t) => text_event(t.to_string()),
                    None => Event::Unsupported { message_id: 0 },
                }
            }
            Some("aibot_event_callback") => match body["event"]["eventtype"].as_str() {
                Some("template_card_event") => {
                    let key = body["event"]["template_card_event"]["event_key"].as_str().unwrap_or_default();
                    match key.strip_prefix(START_PREFIX) {
                        Some(payload) => text_event(format!("/start {payload}")),
                        None => Event::Button { callback_id: req.clone(), message_id: 0, data: key.to_string() },
                    }
                }
                Some("enter_chat") => text_event("/start".into()),
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let inbound = Inbound {
            platform: Platform::WecomBot,
            chat: ChatRef {
                id: chat_id,
                kind: if group { ChatKind::Group } else { ChatKind::Private },
                title: String::new(),
            },
            sender: Sender::User { id: user_id, is_bot: false },
            event,
        };
        let mut reply_to = Some((req, chat_id));
        for action in self.core.handle(&inbound).await {
            self.perform(action, &mut reply_to).await;
        }
        Ok(())
    }
}

fn text_event(text: String) -> Event {
    Event::Text { message_id: 0, text, forwarded: false }
}

/// Serves the connection until the daemon stops, connecting again when it drops.
async fn run(
    channel: WecomBotChannel,
    robot: Arc<Robot>,
    mut outbox: mpsc::UnboundedReceiver<Outbound>,
    mut frames: mpsc::UnboundedReceiver<String>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut socket = channel.socket;
    let mut backoff = channel.backoff;
    let mut taken_over = false;
    let mut stopping = false;
    let mut handlers = tokio::task::JoinSet::new();
    loop {
        let Some(mut ws) = socket.take() else {
            if stopping || taken_over {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.requested() => { stopping = true; continue; }
            }
            match subscribe(&channel.url, &channel.bot_id, &channel.secret).await {
                Ok(ws) => {
                    tracing::info!("WeCom smart robot connected again");
                    backoff = channel.backoff;
                    socket = Some(ws);
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "WeCom smart robot: connecting again failed");
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
                }
            }
            continue;
        };
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut unanswered = 0u32;
        let dropped = loop {
            tokio::select! {
                frame = ws.next() => {
                    let Some(Ok(frame)) = frame else { break true };
                    let Frame::Text(text) = frame else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                    match v["cmd"].as_str() {
                        None => {
                            unanswered = 0;
                            let code = v["errcode"].as_i64().unwrap_or(0);
                            if code != 0 {
                                tracing::error!(errcode = code, errmsg = v["errmsg"].as_str().unwrap_or(""), "WeCom refused a smart robot frame");
                            }
                        }
                        Some("aibot_event_callback") if v["body"]["event"]["eventtype"] == "disconnected_event" => {
                            tracing::warn!("a newer connection of this WeCom smart robot took over; this daemon does not connect again");
                            taken_over = true;
                            break true;
                        }
                        Some(_) => {
                            let robot = robot.clone();
                            handlers.spawn(async move {
                                if let Err(e) = robot.callback(v).await {
                                    tracing::error!(error = format!("{e:#}"), "a WeCom smart robot callback could not be handled");
                                }
                            });
                        }
                    }
                }
                Some(frame) = frames.recv() => {
                    if ws.send(Frame::text(frame)).await.is_err() {
                        break true;
                    }
                }
                Some(action) = outbox.recv() => {
                    let robot = robot.clone();
                    handlers.spawn(async move { robot.perform(action, &mut None).await });
                }
                _ = ping.tick() => {
                    unanswered += 1;
                    if unanswered > 2 {
                        tracing::warn!("the WeCom smart robot answers no pings; connecting again");
                        break true;
                    }
                    let frame = json!({"cmd": "ping", "headers": {"req_id": req_id("ping")}});
                    if ws.send(Frame::text(frame.to_string())).await.is_err() {
                        break true;
                    }
                }
                _ = shutdown.requested(), if !stopping => { stopping = true; break false; }
            }
        };
        if dropped && !stopping && !taken_over {
            tracing::warn!("the WeCom smart robot connection dropped; connecting again");
        }
        if taken_over {
            // The newer connection serves the bot now: this one is closed and not made again.
            let _ = ws.close(None).await;
            break;
        }
        if stopping {
            // Callbacks in hand finish; what the daemon still sends goes out on this
            // connection until the outbox closes.
            while handlers.join_next().await.is_some() {}
            loop {
                tokio::select! {
                    Some(frame) = frames.recv() => { let _ = ws.send(Frame::text(frame)).await; }
                    action = outbox.recv() => match action {
                        Some(action) => robot.perform(action, &mut None).await,
                        None => break,
                    },
                }
            }
            while let Ok(frame) = frames.try_recv() {
                let _ = ws.send(Frame::text(frame)).await;
            }
            let _ = ws.close(None).await;
            return Ok(());
        }
    }
    // Taken over before a connection stood, or stopping while none did: the outbox still
    // closes, and what is in it cannot be sent.
    while let Some(_action) = outbox.recv().await {
        tracing::error!("the WeCom smart robot is not connected; a message for it is not sent");
    }
    Ok(())
}
