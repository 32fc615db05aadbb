//! Residents on ordinary WeChat, through WeCom customer service (微信客服, "kf"): any WeChat
//! user reaches the station's kf account by a link or a QR code on the village's board, with
//! no friend request; the link's `scene_param` names the village.
//!
//! WeCom posts an encrypted callback (`kf_msg_or_event`, [`super::wxcrypt`]) to the daemon's
//! HTTP server; the channel then pulls the messages with `cgi-bin/kf/sync_msg` from the cursor
//! it keeps in the database (a restart neither loses nor repeats a message, and a message id
//! seen before is dropped), hands each to the core as a private chat, and answers with
//! `cgi-bin/kf/send_msg` (buttons become a `msgmenu`; the first answer after a resident enters
//! the conversation goes by `send_msg_on_event` with its welcome code).
//!
//! WeCom lets customer service send at most 5 messages within 48 hours of the resident's last
//! message. What does not fit is kept in the database and sent when the resident writes again,
//! never dropped. Residents' string ids (`external_userid`) get integer ids in the store, so
//! the core sees them like any other account. The access token is cached and fetched again
//! when WeCom says it expired (errcode 40014, 42001).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use super::wxcrypt::WxCrypt;
use super::{Channel, Offers, Serving, Shutdown, Wiring};
use crate::config::{KfSecrets, WecomKf};
use crate::core::{Button, ChatKind, ChatRef, Core, Event, Inbound, MediaKind, Outbound, Platform, Sender};

use crate::store::wechat::{WINDOW_MESSAGES, WINDOW_MS};
/// WeCom's answers for an access token that expired or is not valid.
const TOKEN_EXPIRED: [i64; 3] = [40014, 42001, 40001];
/// Button data that opens a conversation (`/start PAYLOAD`) rather than pressing a button.
const START_PREFIX: &str = "start:";

/// The WeChat channel (WeCom customer service).
pub struct WechatChannel {
    options: WecomKf,
    crypt: WxCrypt,
    api: Arc<Api>,
}

impl WechatChannel {
    /// The channel of `[wecom.kf]` with its secrets; `timeout` bounds each API call.
    pub fn new(options: &WecomKf, secrets: &KfSecrets, timeout: Duration) -> anyhow::Result<WechatChannel> {
        anyhow::ensure!(
            !options.corp_id.is_empty() && !options.open_kfid.is_empty(),
            "the WeChat channel needs [wecom.kf] corp_id and open_kfid (CUNJING__WECOM__KF__CORP_ID, …)"
        );
        let crypt = WxCrypt::new(secrets.token.expose_secret(), secrets.aes_key.expose_secret(), &options.corp_id)
            .map_err(|e| anyhow::anyhow!("CUNJING_WECOM_KF_AES_KEY: {e}"))?;
        let base = url::Url::parse(&options.api_base)
            .with_context(|| format!("[wecom.kf] api_base {:?} is not a URL", options.api_base))?;
        let client = reqwest::Client::builder().timeout(timeout).build().context("Failed to build the WeCom client")?;
        let api = Api {
            client,
            base,
            corp_id: options.corp_id.clone(),
            secret: secrets.secret.clone(),
            token: Mutex::new(None),
        };
        Ok(WechatChannel { options: options.clone(), crypt, api: Arc::new(api) })
    }
}

/// WeCom's HTTP API with a cached access token.
struct Api {
    client: reqwest::Client,
    base: url::Url,
    corp_id: String,
    secret: SecretString,
    token: Mutex<Option<(String, Instant)>>,
}

impl Api {
    /// The cached token, or a new one (`fresh`: WeCom said the cached one expired).
    async fn access_token(&self, fresh: bool) -> anyhow::Result<String> {
        let mut cached = self.token.lock().await;
        if let (false, Some((token, until))) = (fresh, cached.as_ref())
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let mut url = self.base.join("cgi-bin/gettoken").context("the gettoken URL")?;
        url.query_pairs_mut()
            .append_pair("corpid", &self.corp_id)
            .append_pair("corpsecret", self.secret.expose_secret());
        // reqwest's errors carry the URL, which carries the secret: never log them with it.
        let answer: Value = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("WeCom gettoken failed: {}", e.without_url()))?
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("WeCom gettoken answered no JSON: {}", e.without_url()))?;
        let code = answer["errcode"].as_i64().unwrap_or(0);
        anyhow::ensure!(
            code == 0,
            "WeCom refused the customer-service secret (gettoken errcode {code}: {}); check CUNJING_WECOM_KF_SECRET",
            answer["errmsg"].as_str().unwrap_or("")
        );
        let token = answer["access_token"].as_str().context("gettoken answered no access_token")?.to_string();
        // Fetched again a little before WeCom's expiry.
        let life = answer["expires_in"].as_u64().unwrap_or(7200).saturating_sub(300).max(60);
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(life)));
        Ok(token)
    }

    /// POSTs `body` to `path`; once more with a fresh token when WeCom says it expired.
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        for fresh in [false, true] {
            let token = self.access_token(fresh).await?;
            let mut url = self.base.join(path).with_context(|| format!("the URL of {path}"))?;
            url.query_pairs_mut().append_pair("access_token", &token);
            let answer: Value = self
                .client
                .post(url)
                .json(body)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("WeCom {path} failed: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| anyhow::anyhow!("WeCom {path} answered no JSON: {}", e.without_url()))?;
            let code = answer["errcode"].as_i64().unwrap_or(0);
            if code == 0 {
                return Ok(answer);
            }
            if fresh || !TOKEN_EXPIRED.contains(&code) {
                anyhow::bail!("WeCom {path}: errcode {code} ({})", answer["errmsg"].as_str().unwrap_or(""));
            }
            tracing::info!(path, errcode = code, "WeCom access token expired; fetching a new one");
        }
        unreachable!("the second attempt returns")
    }
}

impl Api {
    /// A file a resident sent (`cgi-bin/media/get`), once more with a fresh token when WeCom
    /// says it expired.
    async fn media(&self, media_id: &str) -> anyhow::Result<Vec<u8>> {
        for fresh in [false, true] {
            let token = self.access_token(fresh).await?;
            let mut url = self.base.join("cgi-bin/media/get").context("the media URL")?;
            url.query_pairs_mut().append_pair("access_token", &token).append_pair("media_id", media_id);
            let answer = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("WeCom media/get failed: {}", e.without_url()))?;
            let json = answer
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .is_some_and(|t| t.to_str().unwrap_or_default().starts_with("application/json"));
            let bytes = answer.bytes().await.map_err(|e| anyhow::anyhow!("WeCom media/get: {}", e.without_url()))?;
            if !json {
                return Ok(bytes.to_vec());
            }
            // An error comes as JSON instead of the file.
            let error: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let code = error["errcode"].as_i64().unwrap_or(-1);
            if fresh || !TOKEN_EXPIRED.contains(&code) {
                anyhow::bail!("WeCom media/get: errcode {code} ({})", error["errmsg"].as_str().unwrap_or(""));
            }
        }
        unreachable!("the second attempt returns")
    }
}

/// Files residents sent, for the station console.
struct Media(Arc<Api>);

impl crate::core::MediaSource for Media {
    fn fetch(&self, file_id: &str) -> BoxFuture<'_, anyhow::Result<Vec<u8>>> {
        let file_id = file_id.to_string();
        Box::pin(async move { self.0.media(&file_id).await })
    }
}

/// The query of a callback.
#[derive(Debug, Deserialize)]
struct Signed {
    msg_signature: String,
    timestamp: String,
    nonce: String,
    #[serde(default)]
    echostr: Option<String>,
}

/// The outer XML of a callback: only `Encrypt` is read.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "Encrypt")]
    encrypt: String,
}

/// The decrypted event.
#[derive(Debug, Deserialize)]
struct KfEvent {
    #[serde(rename = "Event", default)]
    event: String,
    #[serde(rename = "Token", default)]
    token: String,
}

#[derive(Clone)]
struct CallbackState {
    crypt: WxCrypt,
    /// Wakes the puller with the event's token.
    pull: mpsc::UnboundedSender<String>,
}

/// GET: WeCom checks the URL; the decrypted `echostr` goes back as it is.
async fn verify_url(State(s): State<CallbackState>, Query(q): Query<Signed>) -> (StatusCode, String) {
    let Some(echostr) = q.echostr.as_deref() else { return (StatusCode::BAD_REQUEST, String::new()) };
    match s.crypt.open(&q.msg_signature, &q.timestamp, &q.nonce, echostr) {
        Ok(plain) => (StatusCode::OK, plain),
        Err(e) => {
            tracing::warn!(error = %e, "WeCom URL check refused");
            (StatusCode::FORBIDDEN, String::new())
        }
    }
}

/// POST: an encrypted event. The signature is checked before anything is decrypted; the
/// messages are pulled after the answer (WeCom wants it within 5 s).
async fn callback(State(s): State<CallbackState>, Query(q): Query<Signed>, body: String) -> (StatusCode, &'static str) {
    let Ok(envelope) = quick_xml::de::from_str::<Envelope>(&body) else {
        tracing::warn!(bytes = body.len(), "WeCom callback without an Encrypt element; refused");
        return (StatusCode::BAD_REQUEST, "");
    };
    let plain = match s.crypt.open(&q.msg_signature, &q.timestamp, &q.nonce, &envelope.encrypt) {
        Ok(plain) => plain,
        Err(e) => {
            tracing::warn!(error = %e, "WeCom callback refused");
            return (StatusCode::FORBIDDEN, "");
        }
    };
    match quick_xml::de::from_str::<KfEvent>(&plain) {
        Ok(event) if event.event == "kf_msg_or_event" => {
            let _ = s.pull.send(event.token);
        }
        Ok(event) => tracing::debug!(event = %event.event, "WeCom callback of another kind; ignored"),
        Err(_) => tracing::warn!("WeCom callback decrypted to no event; ignored"),
    }
    (StatusCode::OK, "success")
}

/// Sends to residents, within WeCom's window.
struct Sending {
    core: Core,
    /// Passes on what is for another platform.
    forward: crate::core::WeakOutboxes,
    api: Arc<Api>,
    open_kfid: String,
}

impl Sending {
    /// The JSON body of `action` for the resident, or `None` for what customer service cannot
    /// do (delete a message, answer a button's spinner).
    async fn body(&self, action: &Outbound) -> anyhow::Result<Option<(i64, Value)>> {
        let (chat_id, mut body) = match action {
            Outbound::Message { chat_id, text, buttons, .. } => {
                let items: Vec<Value> = buttons
                    .iter()
                    .flatten()
                    .map(|b| match b {
                        Button::Callback { label, data } => json!({"type": "click", "click": {"id": data, "content": label}}),
                        Button::StartPrivate { label, payload } => {
                            json!({"type": "click", "click": {"id": format!("{START_PREFIX}{payload}"), "content": label}})
                        }
                    })
                    .collect();
                let body = if items.is_empty() {
                    json!({"msgtype": "text", "text": {"content": text}})
                } else {
                    json!({"msgtype": "msgmenu", "msgmenu": {"head_content": text, "list": items}})
                };
                (*chat_id, body)
            }
            Outbound::Location { chat_id, latitude, longitude } => {
                (*chat_id, json!({"msgtype": "location", "location": {"latitude": latitude, "longitude": longitude}}))
            }
            Outbound::Media { chat_id, caption, .. } => {
                // Files of another platform cannot be sent here: the caption goes alone.
                let Some(caption) = caption else { return Ok(None) };
                (*chat_id, json!({"msgtype": "text", "text": {"content": caption}}))
            }
            Outbound::DeleteMessage { .. } | Outbound::AnswerButton { .. } | Outbound::On { .. } => return Ok(None),
        };
        let touser = self
            .core
            .store()
            .external_id_of(Platform::Wechat.as_str(), chat_id)
            .await?
            .with_context(|| format!("no WeChat resident has id {chat_id}"))?;
        body["touser"] = json!(touser);
        body["open_kfid"] = json!(self.open_kfid);
        Ok(Some((chat_id, body)))
    }

    /// Sends `action` now if the resident's window allows, or keeps it until they write.
    async fn perform(&self, action: Outbound) {
        let Some(action) = self.forward.route(Platform::Wechat, action) else { return };
        let result = async {
            let Some((user, body)) = self.body(&action).await? else { return Ok(()) };
            let now = self.core.now_ms();
            if self.core.store().wechat_take_send(user, now, WINDOW_MS, WINDOW_MESSAGES).await? {
                self.api.post("cgi-bin/kf/send_msg", &body).await?;
            } else {
                self.core.store().wechat_hold(user, &body.to_string(), now).await?;
                tracing::info!("WeChat message held until the resident writes again (48-hour window)");
            }
            anyhow::Ok(())
        };
        if let Err(e) = result.await {
            tracing::error!(error = format!("{e:#}"), "WeChat send failed");
        }
    }

    /// The resident wrote: their window opens; what was held goes out first, in order.
    async fn window_opened(&self, user: i64) -> anyhow::Result<()> {
        let now = self.core.now_ms();
        self.core.store().wechat_window_opened(user, now).await?;
        for (id, body) in self.core.store().wechat_held(user).await? {
            if !self.core.store().wechat_take_send(user, now, WINDOW_MS, WINDOW_MESSAGES).await? {
                break;
            }
            let body: Value = serde_json::from_str(&body).context("a held WeChat message")?;
            self.api.post("cgi-bin/kf/send_msg", &body).await?;
            self.core.store().wechat_release(id).await?;
        }
        Ok(())
    }

    /// Pulls every message since the stored cursor, handles each once, and moves the cursor
    /// after each page.
    async fn pull(&self, token: &str) -> anyhow::Result<()> {
        let store = self.core.store();
        loop {
            let cursor = store.wechat_cursor(&self.open_kfid).await?.unwrap_or_default();
            let mut body = json!({"cursor": cursor, "limit": 1000, "open_kfid": self.open_kfid});
            if !token.is_empty() {
                body["token"] = json!(token);
            }
            let page = self.api.post("cgi-bin/kf/sync_msg", &body).await?;
            for message in page["msg_list"].as_array().into_iter().flatten() {
                if let Err(e) = self.handle(message).await {
                    tracing::error!(error = format!("{e:#}"), "a WeChat message could not be handled");
                }
            }
            if let Some(next) = page["next_cursor"].as_str() {
                store.set_wechat_cursor(&self.open_kfid, next, self.core.now_ms()).await?;
            }
            if page["has_more"].as_i64().unwrap_or(0) == 0 {
                return Ok(());
            }
        }
    }

    /// One message of `sync_msg`: a resident's message or an event.
    async fn handle(&self, m: &Value) -> anyhow::Result<()> {
        let store = self.core.store();
        let msgid = m["msgid"].as_str().unwrap_or_default();
        if msgid.is_empty() || !store.wechat_first_seen(msgid, self.core.now_ms()).await? {
            return Ok(());
        }
        let (external, welcome, event) = match m["origin"].as_i64() {
            // A resident's message.
            Some(3) => {
                let event = match m["msgtype"].as_str().unwrap_or_default() {
                    "text" => match m["text"]["menu_id"].as_str().filter(|id| !id.is_empty()) {
                        Some(id) => match id.strip_prefix(START_PREFIX) {
                            Some(payload) => text_event(format!("/start {payload}")),
                            None => {
                                Event::Button { callback_id: msgid.to_string(), message_id: 0, data: id.to_string() }
                            }
                        },
                        None => text_event(m["text"]["content"].as_str().unwrap_or_default().to_string()),
                    },
                    kind @ ("image" | "voice" | "video") => Event::Media {
                        message_id: 0,
                        kind: match kind {
                            "image" => MediaKind::Photo,
                            "voice" => MediaKind::Voice,
                            _ => MediaKind::Video,
                        },
                        file_id: m[kind]["media_id"].as_str().unwrap_or_default().to_string(),
                        caption: None,
                    },
                    // Tencent Maps' points are GCJ-02.
                    "location" => Event::Location {
                        message_id: 0,
                        latitude: m["location"]["latitude"].as_f64().unwrap_or_default(),
                        longitude: m["location"]["longitude"].as_f64().unwrap_or_default(),
                        datum: Some(crate::places::Datum::Gcj02),
                    },
                    _ => Event::Unsupported { message_id: 0 },
                };
                (m["external_userid"].as_str(), None, event)
            }
            // An event: a resident opened the conversation, from a village's link or board.
            Some(4) if m["event"]["event_type"] == "enter_session" => {
                let scene = m["event"]["scene_param"].as_str().unwrap_or_default();
                let start = if scene.is_empty() { "/start".to_string() } else { format!("/start v_{scene}") };
                (m["event"]["external_userid"].as_str(), m["event"]["welcome_code"].as_str(), text_event(start))
            }
            _ => return Ok(()),
        };
        let Some(external) = external.filter(|e| !e.is_empty()) else { return Ok(()) };
        let user = store.external_user(Platform::Wechat.as_str(), external, self.core.now_ms()).await?;
        if welcome.is_none() {
            self.window_opened(user).await?;
        }
        let inbound = Inbound {
            platform: Platform::Wechat,
            chat: ChatRef { id: user, kind: ChatKind::Private, title: String::new() },
            sender: Sender::User { id: user, is_bot: false },
            event,
        };
        let mut welcome = welcome.map(str::to_string);
        for action in self.core.handle(&inbound).await {
            let Some(action) = self.forward.route(Platform::Wechat, action) else { continue };
            // The first answer to entering the conversation goes with its welcome code.
            if let Some(code) = welcome.take()
                && let Some((_, mut body)) = self.body(&action).await?
            {
                body["code"] = json!(code);
                for key in ["touser", "open_kfid"] {
                    body.as_object_mut().expect("an object").remove(key);
                }
                self.api.post("cgi-bin/kf/send_msg_on_event", &body).await?;
                continue;
            }
            self.perform(action).await;
        }
        Ok(())
    }
}

fn text_event(text: String) -> Event {
    Event::Text { message_id: 0, text, forwarded: false }
}

impl Channel for WechatChannel {
    fn platform(&self) -> Platform {
        Platform::Wechat
    }

    /// Fetches an access token: a wrong secret stops the start with a clear message.
    fn connect(&mut self) -> BoxFuture<'_, anyhow::Result<Offers>> {
        Box::pin(async move {
            self.api.access_token(true).await?;
            tracing::info!(open_kfid = %self.options.open_kfid, "connected to WeCom customer service");
            Ok(Offers { media: Some(Arc::new(Media(self.api.clone()))), ..Offers::default() })
        })
    }

    fn serve(self: Box<Self>, ctx: Wiring) -> anyhow::Result<Serving> {
        let Wiring { core, mut outbox, outboxes, shutdown, .. } = ctx;
        let (pull, mut pulls) = mpsc::unbounded_channel::<String>();
        let routes = axum::Router::new()
            .route(&self.options.callback_path, axum::routing::get(verify_url).post(callback))
            .with_state(CallbackState { crypt: self.crypt.clone(), pull: pull.clone() });
        let sending = Arc::new(Sending {
            core,
            forward: outboxes.downgrade(),
            api: self.api.clone(),
            open_kfid: self.options.open_kfid.clone(),
        });
        let task = async move {
            // What arrived while the daemon was down is pulled at once.
            let _ = pull.send(String::new());
            drop(pull);
            let outgoing = tokio::spawn({
                let sending = sending.clone();
                async move {
                    while let Some(action) = outbox.recv().await {
                        sending.perform(action).await;
                    }
                }
            });
            pull_until(&sending, &mut pulls, &shutdown).await;
            outgoing.await.context("the WeChat outbox panicked")
        };
        Ok(Serving { routes: Some(routes), probe: None, task: Box::pin(task) })
    }
}

/// Pulls on every callback until the daemon stops.
async fn pull_until(sending: &Sending, pulls: &mut mpsc::UnboundedReceiver<String>, shutdown: &Shutdown) {
    loop {
        let token = tokio::select! {
            token = pulls.recv() => token,
            _ = shutdown.requested() => None,
        };
        let Some(token) = token else { return };
        if let Err(e) = sending.pull(&token).await {
            tracing::error!(error = format!("{e:#}"), "pulling WeChat messages failed; the next callback tries again");
        }
    }
}
