//! A fake WeCom customer-service API on 127.0.0.1, as strict as the real one where cunjing
//! depends on it: `gettoken` hands out tokens that can be made to expire (then every call
//! with the old one answers errcode 42001), `kf/sync_msg` pages from a cursor, `kf/send_msg`
//! refuses a message outside the 48-hour / 5-message window (errcode 95001 here), and
//! residents' messages are announced to the daemon by an encrypted, signed callback as WeCom
//! does.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use cunjing::channels::wxcrypt::WxCrypt;
use serde_json::{Value, json};

pub const CORP_ID: &str = "ww_test_corp";
pub const OPEN_KFID: &str = "wk_test_kf";
pub const SECRET: &str = "kf-secret";
pub const TOKEN: &str = "kfToken123";
pub const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

/// A message the fake sent to a resident.
#[derive(Debug, Clone)]
pub struct Sent {
    pub touser: String,
    /// `send_msg` or `send_msg_on_event`.
    pub via: &'static str,
    pub text: String,
    /// The menu's items (label, id) of a `msgmenu`.
    pub menu: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    /// Tokens handed out; only the last is valid.
    tokens: Vec<String>,
    expired: bool,
    /// Every message residents sent, in order; a cursor is an index into it.
    messages: Vec<Value>,
    sent: Vec<Sent>,
    /// Per resident: messages sent since their last message (the real window also has 48 h).
    window: std::collections::HashMap<String, usize>,
    sync_calls: usize,
    /// Files residents sent, by media id.
    media: std::collections::HashMap<String, Vec<u8>>,
}

#[derive(Clone)]
pub struct FakeWecom {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
    crypt: WxCrypt,
}

impl FakeWecom {
    pub async fn start() -> FakeWecom {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/cgi-bin/gettoken", get(gettoken))
            .route("/cgi-bin/kf/sync_msg", post(sync_msg))
            .route("/cgi-bin/kf/send_msg", post(send_msg))
            .route("/cgi-bin/kf/send_msg_on_event", post(send_msg_on_event))
            .route("/cgi-bin/media/get", get(media_get))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeWecom { inner, url, crypt: WxCrypt::new(TOKEN, AES_KEY, CORP_ID).unwrap() }
    }

    /// The next call with the current token answers 42001.
    pub fn expire_token(&self) {
        self.inner.lock().unwrap().expired = true;
    }

    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().unwrap().tokens.len()
    }

    pub fn sync_calls(&self) -> usize {
        self.inner.lock().unwrap().sync_calls
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.inner.lock().unwrap().sent.clone()
    }

    pub fn sent_to(&self, user: &str) -> Vec<Sent> {
        self.sent().into_iter().filter(|s| s.touser == user).collect()
    }

    fn queue(&self, message: Value) -> String {
        let mut inner = self.inner.lock().unwrap();
        let msgid = format!("msg{}", inner.messages.len() + 1);
        let mut message = message;
        message["msgid"] = json!(msgid);
        message["open_kfid"] = json!(OPEN_KFID);
        if let Some(user) = message["external_userid"].as_str() {
            inner.window.insert(user.to_string(), 0);
        }
        inner.messages.push(message);
        msgid
    }

    /// A resident writes `text`; returns the message id.
    pub fn resident_says(&self, user: &str, text: &str) -> String {
        self.queue(
            json!({"external_userid": user, "origin": 3, "msgtype": "text", "send_time": 0, "text": {"content": text}}),
        )
    }

    /// A resident sends a photo (kept by the fake as `media_id` → `bytes`).
    pub fn resident_sends_image(&self, user: &str, media_id: &str, bytes: &[u8]) -> String {
        self.inner.lock().unwrap().media.insert(media_id.to_string(), bytes.to_vec());
        self.queue(json!({"external_userid": user, "origin": 3, "msgtype": "image", "send_time": 0, "image": {"media_id": media_id}}))
    }

    /// A resident shares a location (Tencent Maps: GCJ-02 coordinates).
    pub fn resident_sends_location(&self, user: &str, latitude: f64, longitude: f64) -> String {
        self.queue(json!({"external_userid": user, "origin": 3, "msgtype": "location", "send_time": 0,
                          "location": {"latitude": latitude, "longitude": longitude, "name": "和庄镇", "address": "新郑市"}}))
    }

    /// A resident taps a menu item.
    pub fn resident_taps(&self, user: &str, id: &str, label: &str) -> String {
        self.queue(json!({"external_userid": user, "origin": 3, "msgtype": "text", "send_time": 0, "text": {"content": label, "menu_id": id}}))
    }

    /// A resident opens the conversation from a link with `scene_param`.
    pub fn resident_enters(&self, user: &str, scene: &str) -> String {
        let mut inner = self.inner.lock().unwrap();
        let msgid = format!("msg{}", inner.messages.len() + 1);
        inner.messages.push(json!({
            "msgid": msgid, "open_kfid": OPEN_KFID, "origin": 4, "msgtype": "event", "send_time": 0,
            "event": {"event_type": "enter_session", "open_kfid": OPEN_KFID, "external_userid": user,
                      "scene_param": scene, "welcome_code": format!("welcome-{msgid}")}
        }));
        msgid
    }

    /// The same message delivered once more, as WeCom may.
    pub fn repeat(&self, msgid: &str) {
        let mut inner = self.inner.lock().unwrap();
        let again = inner.messages.iter().find(|m| m["msgid"] == msgid).cloned().expect("a queued message");
        inner.messages.push(again);
    }

    /// The signed query and XML body of a `kf_msg_or_event` callback, as WeCom posts it.
    pub fn callback(&self) -> (String, String) {
        let inner = format!(
            "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><CreateTime>1700000000</CreateTime>\
             <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
             <Token><![CDATA[ENCsync]]></Token><OpenKfId><![CDATA[{OPEN_KFID}]]></OpenKfId></xml>"
        );
        let encrypt = self.crypt.seal(&inner, *b"0123456789abcdef");
        let (timestamp, nonce) = ("1700000000", "n0nce");
        let signature = self.crypt.signature(timestamp, nonce, &encrypt);
        let query = format!("msg_signature={signature}&timestamp={timestamp}&nonce={nonce}");
        let body = format!(
            "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
        );
        (query, body)
    }

    /// Posts the callback to the daemon at `url`; returns its status.
    pub async fn notify(&self, url: &str) -> u16 {
        let (query, body) = self.callback();
        reqwest::Client::new().post(format!("{url}?{query}")).body(body).send().await.unwrap().status().as_u16()
    }

    /// A URL check as WeCom makes it: the signed, encrypted `echostr`.
    pub fn url_check(&self, echo: &str) -> String {
        let encrypt = self.crypt.seal(echo, *b"fedcba9876543210");
        let signature = self.crypt.signature("1700000001", "n1", &encrypt);
        let echostr: String = url::form_urlencoded::byte_serialize(encrypt.as_bytes()).collect();
        format!("msg_signature={signature}&timestamp=1700000001&nonce=n1&echostr={echostr}")
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

#[derive(serde::Deserialize)]
struct TokenQuery {
    #[serde(default)]
    access_token: String,
}

/// The errcode for a call with `token`, or 0.
fn token_error(inner: &Inner, token: &str) -> i64 {
    match inner.tokens.last() {
        Some(current) if current == token && !inner.expired => 0,
        Some(current) if current == token => 42001,
        _ => 40014,
    }
}

async fn gettoken(State(inner): Shared, Query(q): Query<std::collections::HashMap<String, String>>) -> Json<Value> {
    if q.get("corpid").map(String::as_str) != Some(CORP_ID) || q.get("corpsecret").map(String::as_str) != Some(SECRET) {
        return Json(json!({"errcode": 40001, "errmsg": "invalid credential"}));
    }
    let mut inner = inner.lock().unwrap();
    let token = format!("token-{}", inner.tokens.len() + 1);
    inner.tokens.push(token.clone());
    inner.expired = false;
    Json(json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}))
}

#[derive(serde::Deserialize)]
struct MediaQuery {
    #[serde(default)]
    access_token: String,
    media_id: String,
}

async fn media_get(State(inner): Shared, Query(q): Query<MediaQuery>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let inner = inner.lock().unwrap();
    let code = token_error(&inner, &q.access_token);
    if code != 0 {
        return Json(json!({"errcode": code, "errmsg": "access_token expired or invalid"})).into_response();
    }
    match inner.media.get(&q.media_id) {
        Some(bytes) => ([(axum::http::header::CONTENT_TYPE, "image/jpeg")], bytes.clone()).into_response(),
        None => Json(json!({"errcode": 40007, "errmsg": "invalid media_id"})).into_response(),
    }
}

async fn sync_msg(State(inner): Shared, Query(q): Query<TokenQuery>, Json(body): Json<Value>) -> Json<Value> {
    let mut inner = inner.lock().unwrap();
    let code = token_error(&inner, &q.access_token);
    if code != 0 {
        return Json(json!({"errcode": code, "errmsg": "access_token expired or invalid"}));
    }
    inner.sync_calls += 1;
    let from: usize = body["cursor"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit = body["limit"].as_u64().unwrap_or(1000).min(1000) as usize;
    let page: Vec<Value> = inner.messages.iter().skip(from).take(limit).cloned().collect();
    let next = from + page.len();
    let has_more = i64::from(next < inner.messages.len());
    Json(json!({"errcode": 0, "errmsg": "ok", "next_cursor": next.to_string(), "has_more": has_more, "msg_list": page}))
}

fn record(inner: &mut Inner, body: &Value, via: &'static str, touser: String) {
    let text =
        body["text"]["content"].as_str().or(body["msgmenu"]["head_content"].as_str()).unwrap_or_default().to_string();
    let menu = body["msgmenu"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["click"]["content"].as_str().unwrap_or_default().to_string(),
                i["click"]["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    inner.sent.push(Sent { touser, via, text, menu });
}

async fn send_msg(State(inner): Shared, Query(q): Query<TokenQuery>, Json(body): Json<Value>) -> Json<Value> {
    let mut inner = inner.lock().unwrap();
    let code = token_error(&inner, &q.access_token);
    if code != 0 {
        return Json(json!({"errcode": code, "errmsg": "access_token expired or invalid"}));
    }
    let touser = body["touser"].as_str().unwrap_or_default().to_string();
    let Some(count) = inner.window.get(&touser).copied() else {
        return Json(json!({"errcode": 95001, "errmsg": "the customer has not written (fake)"}));
    };
    if count >= 5 {
        return Json(json!({"errcode": 95001, "errmsg": "more than 5 messages in the window (fake)"}));
    }
    inner.window.insert(touser.clone(), count + 1);
    record(&mut inner, &body, "send_msg", touser);
    Json(json!({"errcode": 0, "errmsg": "ok", "msgid": format!("out{}", inner.sent.len())}))
}

async fn send_msg_on_event(State(inner): Shared, Query(q): Query<TokenQuery>, Json(body): Json<Value>) -> Json<Value> {
    let mut inner = inner.lock().unwrap();
    let code = token_error(&inner, &q.access_token);
    if code != 0 {
        return Json(json!({"errcode": code, "errmsg": "access_token expired or invalid"}));
    }
    let Some(welcome) = body["code"].as_str() else {
        return Json(json!({"errcode": 40001, "errmsg": "no welcome code"}));
    };
    let touser = inner
        .messages
        .iter()
        .find(|m| m["event"]["welcome_code"] == welcome)
        .and_then(|m| m["event"]["external_userid"].as_str())
        .unwrap_or_default()
        .to_string();
    record(&mut inner, &body, "send_msg_on_event", touser);
    Json(json!({"errcode": 0, "errmsg": "ok", "msgid": format!("out{}", inner.sent.len())}))
}

pub const ROBOT_ID: &str = "aib_test_robot";
pub const ROBOT_SECRET: &str = "robot-secret";

/// What the fake robot endpoint got from the daemon for a WeCom user.
#[derive(Debug, Clone)]
pub struct RobotSent {
    pub userid: String,
    /// `aibot_respond_msg` or `aibot_send_msg`.
    pub cmd: String,
    /// The markdown or stream text, or a card's title and text.
    pub text: String,
    /// A card's buttons: (label, key).
    pub buttons: Vec<(String, String)>,
}

#[derive(Default)]
struct RobotInner {
    connections: usize,
    /// Connections the daemon closed.
    closed: usize,
    subscribed: usize,
    sent: Vec<RobotSent>,
    /// The req_id of each callback, and the user it came from.
    callbacks: std::collections::HashMap<String, String>,
    to_daemon: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    next: u64,
}

/// A fake WeCom smart-robot endpoint: WebSocket frames as WeCom speaks them. It checks the
/// subscription's bot id and secret (errcode 40058 otherwise, then closes), acknowledges
/// pings and sends, and pushes callbacks to the connected daemon.
#[derive(Clone)]
pub struct FakeRobot {
    inner: Arc<Mutex<RobotInner>>,
    pub url: String,
}

impl FakeRobot {
    pub async fn start() -> FakeRobot {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let inner = Arc::new(Mutex::new(RobotInner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let state = inner.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                    let (mut sink, mut stream) = ws.split();
                    state.lock().unwrap().connections += 1;
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                    let writer = tokio::spawn(async move {
                        while let Some(frame) = rx.recv().await {
                            if sink.send(Message::text(frame)).await.is_err() {
                                break;
                            }
                        }
                        let _ = sink.close().await;
                    });
                    while let Some(Ok(Message::Text(text))) = stream.next().await {
                        let v: Value = serde_json::from_str(&text).unwrap();
                        let req = v["headers"]["req_id"].clone();
                        let mut s = state.lock().unwrap();
                        match v["cmd"].as_str().unwrap_or_default() {
                            "aibot_subscribe" => {
                                if v["body"]["bot_id"] != ROBOT_ID || v["body"]["secret"] != ROBOT_SECRET {
                                    let _ = tx.send(json!({"headers": {"req_id": req}, "errcode": 40058, "errmsg": "invalid secret"}).to_string());
                                    break;
                                }
                                s.subscribed += 1;
                                s.to_daemon = Some(tx.clone());
                            }
                            cmd @ ("aibot_send_msg" | "aibot_respond_msg") => {
                                let body = &v["body"];
                                let userid = match cmd {
                                    "aibot_send_msg" => body["chatid"].as_str().unwrap_or_default().to_string(),
                                    _ => s.callbacks.get(req.as_str().unwrap_or_default()).cloned().unwrap_or_default(),
                                };
                                let card = &body["template_card"];
                                let text = body["markdown"]["content"]
                                    .as_str()
                                    .or(body["stream"]["content"].as_str())
                                    .map(str::to_string)
                                    .unwrap_or_else(|| {
                                        format!(
                                            "{}\n{}",
                                            card["main_title"]["title"].as_str().unwrap_or_default(),
                                            card["sub_title_text"].as_str().unwrap_or_default()
                                        )
                                    });
                                let buttons = card["button_list"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|b| {
                                        (
                                            b["text"].as_str().unwrap_or_default().to_string(),
                                            b["key"].as_str().unwrap_or_default().to_string(),
                                        )
                                    })
                                    .collect();
                                s.sent.push(RobotSent { userid, cmd: cmd.to_string(), text, buttons });
                            }
                            _ => {}
                        }
                        let _ = tx.send(json!({"headers": {"req_id": req}, "errcode": 0, "errmsg": "ok"}).to_string());
                    }
                    state.lock().unwrap().closed += 1;
                    drop(tx);
                    let _ = writer.await;
                });
            }
        });
        FakeRobot { inner, url }
    }

    fn push(&self, userid: &str, cmd: &str, body: Value) {
        self.push_in(userid, None, cmd, body)
    }

    /// A callback from `userid`, in the WeCom group `chat` when given; answers to it are
    /// recorded for the group (or the user).
    fn push_in(&self, userid: &str, chat: Option<&str>, cmd: &str, body: Value) {
        let mut s = self.inner.lock().unwrap();
        s.next += 1;
        let req = format!("cb{}", s.next);
        s.callbacks.insert(req.clone(), chat.unwrap_or(userid).to_string());
        let mut body = body;
        body["msgid"] = json!(format!("m{}", s.next));
        body["aibotid"] = json!(ROBOT_ID);
        match chat {
            Some(chat) => {
                body["chattype"] = json!("group");
                body["chatid"] = json!(chat);
            }
            None => body["chattype"] = json!("single"),
        }
        body["from"] = json!({"userid": userid});
        let frame = json!({"cmd": cmd, "headers": {"req_id": req}, "body": body});
        s.to_daemon.as_ref().expect("the daemon is connected").send(frame.to_string()).unwrap();
    }

    /// A WeCom user writes to the robot.
    pub fn user_says(&self, userid: &str, text: &str) {
        self.push(userid, "aibot_msg_callback", json!({"msgtype": "text", "text": {"content": text}}));
    }

    /// A WeCom user @-mentions the robot in the internal group `chat`.
    pub fn user_says_in_group(&self, userid: &str, chat: &str, text: &str) {
        self.push_in(userid, Some(chat), "aibot_msg_callback", json!({"msgtype": "text", "text": {"content": text}}));
    }

    /// A WeCom user presses a card's button.
    pub fn user_presses(&self, userid: &str, key: &str) {
        self.push(
            userid,
            "aibot_event_callback",
            json!({"event": {"eventtype": "template_card_event", "template_card_event": {"card_type": "button_interaction", "event_key": key, "task_id": "t"}}}),
        );
    }

    /// A newer connection of the bot takes over.
    pub fn take_over(&self) {
        let s = self.inner.lock().unwrap();
        let frame = json!({"cmd": "aibot_event_callback", "headers": {"req_id": "kick"}, "body": {"event": {"eventtype": "disconnected_event"}}});
        s.to_daemon.as_ref().unwrap().send(frame.to_string()).unwrap();
    }

    pub fn closed(&self) -> usize {
        self.inner.lock().unwrap().closed
    }

    pub fn connections(&self) -> usize {
        self.inner.lock().unwrap().connections
    }

    pub fn sent_to(&self, userid: &str) -> Vec<RobotSent> {
        self.inner.lock().unwrap().sent.iter().filter(|s| s.userid == userid).cloned().collect()
    }
}
