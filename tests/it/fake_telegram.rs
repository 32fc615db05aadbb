//! A fake Telegram Bot API server that behaves like Telegram where the daemon can tell:
//! `bot<TOKEN>/<Method>` routes with case-insensitive (PascalCase) method names, Telegram's
//! `{"ok":…}` envelope, full `Message`/`Update` objects, `getUpdates` offsets and long polling,
//! 429 with `retry_after`, 403 for kicked bots and blocked users, 400 with
//! `migrate_to_chat_id` after a group became a supergroup.
//!
//! Tests inject updates (`send_text`, `add_bot_to_group`, `press_button` …), inject faults
//! (`fail_next`), and observe what the bot did (`sent`, `calls`, `wait_for_sent`). Waiting
//! uses notifications, never sleeps, and gives up after 10 seconds of real time with a list of
//! what was sent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

/// The token the fake accepts; any other gets 401.
pub const TOKEN: &str = "1:fake-token-of-the-test-bot-api";
pub const BOT_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "cunjing_test_bot";
/// Telegram's account that stands for anonymous group admins.
const GROUP_ANONYMOUS_BOT: i64 = 1_087_968_824;
/// How long a test waits for the bot before failing.
const WAIT: Duration = Duration::from_secs(10);

/// A Telegram account as tests create them.
#[derive(Debug, Clone)]
pub struct TgUser {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
    pub is_bot: bool,
}

impl TgUser {
    pub fn new(id: i64, first_name: &str) -> TgUser {
        TgUser { id, first_name: first_name.to_string(), username: Some(format!("user{id}")), is_bot: false }
    }

    pub fn bot(id: i64, first_name: &str) -> TgUser {
        TgUser { id, first_name: first_name.to_string(), username: Some(format!("bot{id}_bot")), is_bot: true }
    }

    fn json(&self) -> Value {
        let mut u = json!({"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name});
        if let Some(name) = &self.username {
            u["username"] = json!(name);
        }
        u
    }
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "村警", "username": BOT_USERNAME})
}

/// A message the bot sent successfully.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub method: String,
    pub chat_id: i64,
    pub message_id: i32,
    pub text: String,
    pub reply_markup: Option<Value>,
    /// The whole request body.
    pub body: Value,
    /// When the fake accepted it.
    pub at: std::time::Instant,
}

/// A failure the fake serves instead of the next call(s) of a method.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after`.
    RetryAfter(u32),
    /// 500 `Internal Server Error`.
    ServerError,
    /// 403 with this description (e.g. `Forbidden: bot was blocked by the user`).
    Forbidden(&'static str),
    /// 400 with this description.
    BadRequest(String),
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// The connection breaks before any answer; the request has no effect.
    Disconnect,
    /// The request takes effect (a message is sent) but the connection breaks before the
    /// answer arrives, as when a client times out after its request went through.
    LostAnswer,
}

/// Telegram's flood control, as the fake enforces it once a test asks
/// ([`FakeTelegram::enforce_flood_control`]): a send over a limit is refused with 429 and
/// `retry_after`, and every send during that pause is refused too (and counted).
#[derive(Debug, Clone, Copy)]
pub struct FloodControl {
    /// Messages in any second to one chat.
    pub per_chat: usize,
    /// Messages in any `group_window` to one group.
    pub per_group: usize,
    pub group_window: Duration,
    /// Messages in any second over all chats.
    pub overall: usize,
    /// The pause a refusal asks for, in seconds.
    pub retry_after: u32,
}

#[derive(Default)]
struct FakeState {
    flood: Option<FloodControl>,
    /// When the last 429 was answered, and until when it asked the bot to send nothing.
    flood_pause: Option<(std::time::Instant, std::time::Instant)>,
    /// Sends refused for going over a limit or during a pause; of those, the sends already on
    /// the wire when the 429 was answered; and the sends that came later in the pause.
    flood_refusals: usize,
    sends_on_the_wire: usize,
    sends_during_pause: usize,
    next_update_id: i64,
    /// Updates not yet confirmed by an offset.
    updates: VecDeque<(i64, Value)>,
    /// Every update ever queued, by id, to deliver one again.
    history: HashMap<i64, Value>,
    confirmed_offset: i64,
    chats: HashMap<i64, Value>,
    kicked: HashSet<i64>,
    migrated: HashMap<i64, i64>,
    blocked_users: HashSet<i64>,
    next_message_id: HashMap<i64, i32>,
    /// Every message in every chat (users' and the bot's), for callback queries and replies.
    messages: HashMap<(i64, i32), Value>,
    sent: Vec<SentMessage>,
    calls: Vec<(String, Value)>,
    faults: HashMap<String, VecDeque<Fault>>,
    faults_served: usize,
    /// Long polls whose client hung up before the answer (a client timeout shorter than the
    /// poll): Telegram would see the same.
    abandoned_polls: usize,
    allowed_updates: Option<Vec<String>>,
    next_callback_id: u64,
    member_status: HashMap<(i64, i64), String>,
}

struct Inner {
    state: Mutex<FakeState>,
    /// Wakes long-polling `getUpdates` calls.
    updates_arrived: Notify,
    /// Bumped on every recorded call, for the waiters.
    calls_tx: watch::Sender<usize>,
    port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A handle to a running fake; clones share it. The server stops with the last handle.
#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Inner>,
}

/// A serial number for file ids. Real file ids are opaque; these must not contain the
/// sender's id either, or a privacy check on stored file ids would find it there.
fn fake_file_no() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Length of `s` in UTF-16 code units, as Telegram counts entity offsets.
fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

impl FakeTelegram {
    /// Binds 127.0.0.1 on a free port and serves until the last handle is dropped.
    pub async fn start() -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Bot API");
        let port = listener.local_addr().unwrap().port();
        let (calls_tx, _) = watch::channel(0usize);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let app = Router::new()
                .route("/{bot}/{method}", axum::routing::post(handle).get(handle))
                .route("/file/{bot}/{*path}", axum::routing::get(download))
                .with_state(weak.clone());
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Inner {
                state: Mutex::new(FakeState { next_update_id: 1, ..FakeState::default() }),
                updates_arrived: Notify::new(),
                calls_tx,
                port,
                server,
            }
        });
        FakeTelegram { inner }
    }

    /// The base URL to give teloxide (`Bot::set_api_url`).
    pub fn api_url(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/", self.inner.port)).unwrap()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.inner.state.lock().unwrap()
    }

    // ----- chats and updates a test creates -----

    /// Makes a group (`supergroup: false` for a basic group) known to Telegram.
    pub fn group(&self, id: i64, title: &str, supergroup: bool) {
        let kind = if supergroup { "supergroup" } else { "group" };
        self.state().chats.insert(id, json!({"id": id, "type": kind, "title": title}));
    }

    /// Makes the private chat between `user` and the bot known; returns its chat id.
    pub fn private_chat(&self, user: TgUser) -> i64 {
        let mut chat = json!({"id": user.id, "type": "private", "first_name": user.first_name});
        if let Some(u) = &user.username {
            chat["username"] = json!(u);
        }
        self.state().chats.insert(user.id, chat);
        user.id
    }

    /// A user account blocks the bot: sends to its private chat answer 403.
    pub fn block_bot(&self, user_id: i64) {
        self.state().blocked_users.insert(user_id);
    }

    /// What `getChatMember` answers for (chat, user); default `member`.
    pub fn set_member_status(&self, chat_id: i64, user_id: i64, status: &str) {
        self.state().member_status.insert((chat_id, user_id), status.to_string());
    }

    fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut st = self.state();
            let id = st.next_update_id;
            st.next_update_id += 1;
            update["update_id"] = json!(id);
            st.history.insert(id, update.clone());
            st.updates.push_back((id, update));
            id
        };
        self.inner.updates_arrived.notify_waiters();
        id
    }

    /// Serves update `id` again, as Telegram does when a daemon crashed after handling it but
    /// before confirming it: a client that asks from the start (no offset, as a restarted
    /// daemon does) gets it once more.
    pub fn deliver_again(&self, id: i64) {
        {
            let mut st = self.state();
            let update = st.history.get(&id).cloned().unwrap_or_else(|| panic!("no update {id}"));
            let at = st.updates.iter().position(|(u, _)| *u > id).unwrap_or(st.updates.len());
            st.updates.insert(at, (id, update));
        }
        self.inner.updates_arrived.notify_waiters();
    }

    /// Queues any update (its `update_id` is set by the fake).
    pub fn push_raw_update(&self, update: Value) -> i64 {
        self.push_update(update)
    }

    fn chat_json(&self, chat_id: i64) -> Value {
        self.state()
            .chats
            .get(&chat_id)
            .cloned()
            .unwrap_or_else(|| panic!("chat {chat_id} is not known to the fake; create it first"))
    }

    fn new_message(&self, chat_id: i64, from: Value, fields: Value) -> Value {
        let chat = self.chat_json(chat_id);
        let mut st = self.state();
        let id = st.next_message_id.entry(chat_id).or_insert(0);
        *id += 1;
        let id = *id;
        let mut msg = json!({"message_id": id, "date": now(), "chat": chat, "from": from});
        for (k, v) in fields.as_object().unwrap() {
            msg[k] = v.clone();
        }
        st.messages.insert((chat_id, id), msg.clone());
        msg
    }

    fn text_fields(text: &str) -> Value {
        let mut f = json!({"text": text});
        if text.starts_with('/') {
            let cmd = text.split_whitespace().next().unwrap_or(text);
            f["entities"] = json!([{"type": "bot_command", "offset": 0, "length": utf16_len(cmd)}]);
        }
        f
    }

    /// `user` writes `text` in `chat_id`; returns the message id.
    pub fn send_text(&self, chat_id: i64, user: &TgUser, text: &str) -> i32 {
        self.send_text_update(chat_id, user, text).0
    }

    /// [`FakeTelegram::send_text`], returning the message id and the update id.
    pub fn send_text_update(&self, chat_id: i64, user: &TgUser, text: &str) -> (i32, i64) {
        let msg = self.new_message(chat_id, user.json(), Self::text_fields(text));
        let id = msg["message_id"].as_i64().unwrap() as i32;
        (id, self.push_update(json!({"message": msg})))
    }

    /// The update of `user` writing `text` in `chat_id`, with a fresh update id, as Telegram
    /// would post it to a webhook (not queued for `getUpdates`).
    pub fn text_update(&self, chat_id: i64, user: &TgUser, text: &str) -> Value {
        let msg = self.new_message(chat_id, user.json(), Self::text_fields(text));
        let mut st = self.state();
        let id = st.next_update_id;
        st.next_update_id += 1;
        json!({"update_id": id, "message": msg})
    }

    /// `user` forwards someone else's text into `chat_id`.
    pub fn send_forwarded_text(&self, chat_id: i64, user: &TgUser, text: &str) -> i32 {
        let mut fields = Self::text_fields(text);
        fields["forward_origin"] =
            json!({"type": "user", "date": now() - 3600, "sender_user": TgUser::new(9999, "转发来源").json()});
        let msg = self.new_message(chat_id, user.json(), fields);
        let id = msg["message_id"].as_i64().unwrap() as i32;
        self.push_update(json!({"message": msg}));
        id
    }

    /// A message sent on behalf of a chat (an anonymous admin when `sender_chat_id` is the
    /// group itself, a linked channel otherwise).
    pub fn send_as_chat(&self, chat_id: i64, sender_chat_id: i64, text: &str) -> i32 {
        let mut fields = Self::text_fields(text);
        let sender_chat = self
            .state()
            .chats
            .get(&sender_chat_id)
            .cloned()
            .unwrap_or_else(|| json!({"id": sender_chat_id, "type": "channel", "title": "频道"}));
        fields["sender_chat"] = sender_chat;
        let from =
            json!({"id": GROUP_ANONYMOUS_BOT, "is_bot": true, "first_name": "Group", "username": "GroupAnonymousBot"});
        let msg = self.new_message(chat_id, from, fields);
        let id = msg["message_id"].as_i64().unwrap() as i32;
        self.push_update(json!({"message": msg}));
        id
    }

    /// `user` sends a photo with an optional caption.
    pub fn send_photo(&self, chat_id: i64, user: &TgUser, caption: Option<&str>) -> i32 {
        let n = self.state().next_message_id.get(&chat_id).copied().unwrap_or(0) + 1;
        let mut fields = json!({"photo": [
            {"file_id": format!("AgACAgIAAx{n:04}s-{}", fake_file_no()), "file_unique_id": format!("ph{n}s"), "width": 90, "height": 90, "file_size": 1200},
            {"file_id": format!("AgACAgIAAx{n:04}-{}", fake_file_no()), "file_unique_id": format!("ph{n}"), "width": 1280, "height": 960, "file_size": 98000}
        ]});
        if let Some(c) = caption {
            fields["caption"] = json!(c);
        }
        let msg = self.new_message(chat_id, user.json(), fields);
        let id = msg["message_id"].as_i64().unwrap() as i32;
        self.push_update(json!({"message": msg}));
        id
    }

    /// `user` sends a voice message.
    pub fn send_voice(&self, chat_id: i64, user: &TgUser) -> i32 {
        let n = self.state().next_message_id.get(&chat_id).copied().unwrap_or(0) + 1;
        let fields = json!({"voice": {"file_id": format!("AwACAgIAAx{n:04}-{}", fake_file_no()), "file_unique_id": format!("vo{n}"), "duration": 7, "mime_type": "audio/ogg", "file_size": 14000}});
        let msg = self.new_message(chat_id, user.json(), fields);
        let id = msg["message_id"].as_i64().unwrap() as i32;
        self.push_update(json!({"message": msg}));
        id
    }

    /// `user` shares a location.
    pub fn send_location(&self, chat_id: i64, user: &TgUser, latitude: f64, longitude: f64) -> i32 {
        let fields = json!({"location": {"latitude": latitude, "longitude": longitude}});
        let msg = self.new_message(chat_id, user.json(), fields);
        let id = msg["message_id"].as_i64().unwrap() as i32;
        self.push_update(json!({"message": msg}));
        id
    }

    /// `user` shares a place picked from the map (a venue): as the Bot API sends it, the
    /// venue with its location, and the location again beside it for older clients.
    pub fn send_venue(&self, chat_id: i64, user: &TgUser, latitude: f64, longitude: f64, title: &str) -> i32 {
        let location = json!({"latitude": latitude, "longitude": longitude});
        let fields = json!({
            "venue": {"location": location, "title": title, "address": "新郑市和庄镇"},
            "location": location,
        });
        let msg = self.new_message(chat_id, user.json(), fields);
        let id = msg["message_id"].as_i64().unwrap() as i32;
        self.push_update(json!({"message": msg}));
        id
    }

    fn membership(&self, chat_id: i64, by: &TgUser, old: Value, new: Value) -> i64 {
        let chat = self.chat_json(chat_id);
        self.push_update(json!({"my_chat_member": {
            "chat": chat, "from": by.json(), "date": now(),
            "old_chat_member": old, "new_chat_member": new,
        }}))
    }

    /// `by` adds the bot to a group: a `my_chat_member` update and the service message, as
    /// Telegram sends both.
    pub fn add_bot_to_group(&self, chat_id: i64, by: &TgUser) {
        self.state().kicked.remove(&chat_id);
        self.membership(
            chat_id,
            by,
            json!({"user": bot_user(), "status": "left"}),
            json!({"user": bot_user(), "status": "member"}),
        );
        let msg = self.new_message(chat_id, by.json(), json!({"new_chat_members": [bot_user()]}));
        self.push_update(json!({"message": msg}));
    }

    /// `by` makes the bot an admin of the group.
    pub fn promote_bot(&self, chat_id: i64, by: &TgUser) {
        let admin = json!({
            "user": bot_user(), "status": "administrator", "can_be_edited": false, "is_anonymous": false,
            "can_manage_chat": true, "can_delete_messages": true, "can_manage_video_chats": true,
            "can_restrict_members": true, "can_promote_members": false, "can_change_info": true,
            "can_invite_users": true, "can_post_stories": false, "can_edit_stories": false,
            "can_delete_stories": false, "can_pin_messages": true, "can_manage_topics": false,
        });
        self.membership(chat_id, by, json!({"user": bot_user(), "status": "member"}), admin);
    }

    /// `by` removes the bot; later sends to the group answer 403.
    pub fn remove_bot_from_group(&self, chat_id: i64, by: &TgUser) {
        self.state().kicked.insert(chat_id);
        self.membership(
            chat_id,
            by,
            json!({"user": bot_user(), "status": "member"}),
            json!({"user": bot_user(), "status": "kicked", "until_date": 0}),
        );
    }

    /// A basic group becomes a supergroup: the service messages in both chats, and sends to
    /// the old id answer 400 with `migrate_to_chat_id`.
    pub fn migrate_group(&self, old_id: i64, new_id: i64) {
        let old = self.chat_json(old_id);
        let title = old["title"].as_str().unwrap_or("").to_string();
        self.group(new_id, &title, true);
        self.state().migrated.insert(old_id, new_id);
        let admin = TgUser::new(5999, "群主");
        let m1 = self.new_message(old_id, admin.json(), json!({"migrate_to_chat_id": new_id}));
        self.push_update(json!({"message": m1}));
        let m2 = self.new_message(
            new_id,
            json!({"id": GROUP_ANONYMOUS_BOT, "is_bot": true, "first_name": "Group", "username": "GroupAnonymousBot"}),
            json!({"migrate_from_chat_id": old_id}),
        );
        self.push_update(json!({"message": m2}));
    }

    /// The bot was removed from the group while the daemon did not see it (no update):
    /// sends to the group answer 403.
    pub fn kick_silently(&self, chat_id: i64) {
        self.state().kicked.insert(chat_id);
    }

    /// The group became a supergroup while the daemon did not see it (no update): sends to
    /// the old id answer 400 with `migrate_to_chat_id`.
    pub fn migrate_silently(&self, old_id: i64, new_id: i64) {
        let title = self.chat_json(old_id)["title"].as_str().unwrap_or("").to_string();
        self.group(new_id, &title, true);
        self.state().migrated.insert(old_id, new_id);
    }

    /// Whether a message the bot sent is still there (not deleted).
    pub fn message_exists(&self, chat_id: i64, message_id: i32) -> bool {
        self.state().messages.contains_key(&(chat_id, message_id))
    }

    /// `user` presses a button with `data` under the bot's message; returns the query id.
    pub fn press_button(&self, chat_id: i64, user: &TgUser, message_id: i32, data: &str) -> String {
        let (id, message) = {
            let mut st = self.state();
            st.next_callback_id += 1;
            let message = st
                .messages
                .get(&(chat_id, message_id))
                .cloned()
                .unwrap_or_else(|| panic!("no message {message_id} in chat {chat_id}"));
            (format!("cbq{}", st.next_callback_id), message)
        };
        self.push_update(json!({"callback_query": {
            "id": id, "from": user.json(), "message": message, "chat_instance": format!("ci{chat_id}"), "data": data,
        }}));
        id
    }

    // ----- faults -----

    /// The next `times` calls of `method` (case-insensitive) get `fault` instead of an answer.
    pub fn fail_next(&self, method: &str, fault: Fault, times: usize) {
        let mut st = self.state();
        let q = st.faults.entry(method.to_ascii_lowercase()).or_default();
        for _ in 0..times {
            q.push_back(fault.clone());
        }
    }

    /// From now on, refuse sends over Telegram's limits as Telegram does.
    pub fn enforce_flood_control(&self, limits: FloodControl) {
        self.state().flood = Some(limits);
    }

    /// Sends refused with 429 by the flood control (over a limit or during a pause); of
    /// those, the ones that came while a pause lasted although the bot had had time to read
    /// the 429; and the ones already on the wire when it was answered.
    pub fn flood_refusals(&self) -> (usize, usize, usize) {
        let st = self.state();
        (st.flood_refusals, st.sends_during_pause, st.sends_on_the_wire)
    }

    pub fn faults_served(&self) -> usize {
        self.state().faults_served
    }

    /// How many `getUpdates` calls the client gave up on before they were answered.
    pub fn abandoned_polls(&self) -> usize {
        self.state().abandoned_polls
    }

    // ----- observation -----

    pub fn sent(&self) -> Vec<SentMessage> {
        self.state().sent.clone()
    }

    pub fn sent_to(&self, chat_id: i64) -> Vec<SentMessage> {
        self.state().sent.iter().filter(|m| m.chat_id == chat_id).cloned().collect()
    }

    /// Request bodies of every call of `method` (case-insensitive), failed ones included.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        let m = method.to_ascii_lowercase();
        self.state().calls.iter().filter(|(name, _)| *name == m).map(|(_, b)| b.clone()).collect()
    }

    pub fn call_count(&self, method: &str) -> usize {
        self.calls(method).len()
    }

    /// The `allowed_updates` of the last `getUpdates` that sent them.
    pub fn allowed_updates(&self) -> Option<Vec<String>> {
        self.state().allowed_updates.clone()
    }

    /// The highest offset the bot has confirmed.
    pub fn confirmed_offset(&self) -> i64 {
        self.state().confirmed_offset
    }

    /// Updates not yet confirmed.
    pub fn pending_updates(&self) -> usize {
        self.state().updates.len()
    }

    /// How many messages the bot has sent so far: a mark for [`Self::wait_for_new`].
    pub fn mark(&self) -> usize {
        self.state().sent.len()
    }

    /// Waits until a sent message matches (already sent ones count); panics after 10 s with
    /// the list of what was sent. For tests in real time (not `tokio::time::pause`).
    pub async fn wait_for_sent(&self, pred: impl Fn(&SentMessage) -> bool) -> SentMessage {
        self.wait_for_new(0, pred).await
    }

    /// Like [`Self::wait_for_sent`], but only messages sent after `mark` count, so a test
    /// cannot mistake an earlier answer with the same words for the one it waits for.
    pub async fn wait_for_new(&self, mark: usize, pred: impl Fn(&SentMessage) -> bool) -> SentMessage {
        let mut rx = self.inner.calls_tx.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(m) = self.state().sent.iter().skip(mark).find(|m| pred(m)) {
                return m.clone();
            }
            if !changed_before(&mut rx, deadline).await {
                let sent: Vec<String> =
                    self.sent().iter().map(|m| format!("{} → {}: {:?}", m.method, m.chat_id, m.text)).collect();
                panic!("no matching message was sent within {WAIT:?}; sent so far:\n{}", sent.join("\n"));
            }
        }
    }

    /// Waits until `method` has been called at least `n` times.
    pub async fn wait_for_calls(&self, method: &str, n: usize) -> Vec<Value> {
        self.wait_for_calls_within(method, n, WAIT).await
    }

    /// [`FakeTelegram::wait_for_calls`] with a longer limit, for long polls held in full.
    pub async fn wait_for_calls_within(&self, method: &str, n: usize, wait: Duration) -> Vec<Value> {
        let mut rx = self.inner.calls_tx.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let calls = self.calls(method);
            if calls.len() >= n {
                return calls;
            }
            if !changed_before(&mut rx, deadline).await {
                panic!("{method} was called {} times within {wait:?}, expected {n}", calls.len());
            }
        }
    }
}

/// Waits for the next API call before `deadline`; false once the deadline has passed. Checked
/// before waiting too: with calls arriving back to back, `timeout_at` alone returns the ready
/// change every time and never the deadline, and a waiter on a daemon stuck in a loop of
/// calls waited for ever instead of failing with what was sent.
async fn changed_before(rx: &mut tokio::sync::watch::Receiver<usize>, deadline: tokio::time::Instant) -> bool {
    tokio::time::Instant::now() < deadline
        && matches!(tokio::time::timeout_at(deadline, rx.changed()).await, Ok(Ok(())))
}

/// The buttons of a sent message as (label, callback data or URL), row by row.
pub fn buttons(m: &SentMessage) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(rows) = m.reply_markup.as_ref().and_then(|k| k["inline_keyboard"].as_array()) {
        for b in rows.iter().filter_map(|r| r.as_array()).flatten() {
            let target = b["callback_data"].as_str().or_else(|| b["url"].as_str()).unwrap_or("");
            out.push((b["text"].as_str().unwrap_or("").to_string(), target.to_string()));
        }
    }
    out
}

/// The fields of a multipart request (teloxide sends files this way, even a `file_id`) as a
/// JSON object: values that parse as JSON (numbers, markup) become JSON, the rest strings;
/// uploaded files become `"<upload>"`.
async fn multipart_params(request: axum::extract::Request) -> Result<Value, String> {
    use axum::extract::FromRequest;
    let mut form = axum::extract::Multipart::from_request(request, &()).await.map_err(|e| e.to_string())?;
    let mut out = serde_json::Map::new();
    while let Some(field) = form.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or("").to_string();
        if field.file_name().is_some() {
            out.insert(name, json!("<upload>"));
            continue;
        }
        let text = field.text().await.map_err(|e| e.to_string())?;
        let value = match serde_json::from_str::<Value>(&text) {
            Ok(v) if !v.is_string() => v,
            _ => Value::String(text),
        };
        out.insert(name, value);
    }
    Ok(Value::Object(out))
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": true, "result": result}))).into_response()
}

fn error(code: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RetryAfter(s) => {
            error(429, &format!("Too Many Requests: retry after {s}"), Some(json!({"retry_after": s})))
        }
        Fault::ServerError => error(500, "Internal Server Error", None),
        Fault::Forbidden(d) => error(403, d, None),
        Fault::BadRequest(d) => error(400, &d, None),
        Fault::MalformedJson => (StatusCode::OK, "<html>502 Bad Gateway</html>").into_response(),
        Fault::Disconnect | Fault::LostAnswer => broken_response(),
    }
}

/// Headers, then a body that fails: the server drops the connection mid-answer.
fn broken_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

/// A file's bytes, as `https://api.telegram.org/file/bot<token>/<file_path>` serves them: here
/// the text `FILE:<file_path>`, so a test can tell which file it got.
async fn download(Path((bot, path)): Path<(String, String)>) -> Response {
    if bot != format!("bot{TOKEN}") {
        return error(401, "Unauthorized", None);
    }
    (StatusCode::OK, format!("FILE:{path}")).into_response()
}

async fn handle(
    State(inner): State<std::sync::Weak<Inner>>,
    Path((bot, method)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    let Some(inner) = inner.upgrade() else { return error(503, "Service Unavailable", None) };
    let fake = FakeTelegram { inner };
    if bot != format!("bot{TOKEN}") {
        return error(401, "Unauthorized", None);
    }
    let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let params = if content_type.starts_with("multipart/") {
        match multipart_params(request).await {
            Ok(v) => v,
            Err(e) => return error(400, &format!("Bad Request: {e}"), None),
        }
    } else {
        let body = match axum::body::to_bytes(request.into_body(), 1 << 20).await {
            Ok(b) => b,
            Err(_) => return error(400, "Bad Request: body too large", None),
        };
        if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => return error(400, "Bad Request: can't parse JSON", None),
            }
        }
    };
    let method = method.to_ascii_lowercase();
    let fault = {
        let mut st = fake.state();
        st.calls.push((method.clone(), params.clone()));
        let f = st.faults.get_mut(&method).and_then(|q| q.pop_front());
        if f.is_some() {
            st.faults_served += 1;
        }
        f
    };
    // Waiters see the call as soon as it arrives (a long poll may take a while to answer)…
    fake.inner.calls_tx.send_modify(|n| *n += 1);
    let response = match fault {
        Some(Fault::LostAnswer) => {
            let _ = answer(&fake, &method, &params);
            broken_response()
        }
        Some(Fault::RetryAfter(s)) => {
            // Telegram's pause begins with its answer: a send before it ends is refused too.
            let now = std::time::Instant::now();
            fake.state().flood_pause = Some((now, now + Duration::from_secs(s.into())));
            fault_response(Fault::RetryAfter(s))
        }
        Some(f) => fault_response(f),
        None if method == "getupdates" => get_updates(&fake, &params).await,
        None => answer(&fake, &method, &params),
    };
    // …and again once its effects (a sent message) are recorded.
    fake.inner.calls_tx.send_modify(|n| *n += 1);
    response
}

async fn get_updates(fake: &FakeTelegram, params: &Value) -> Response {
    /// Counts the poll as abandoned if its future is dropped (the client hung up) before it
    /// answered.
    struct Answered<'a>(&'a FakeTelegram, bool);
    impl Drop for Answered<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.state().abandoned_polls += 1;
            }
        }
    }
    let mut guard = Answered(fake, false);
    let response = hold_poll(fake, params).await;
    guard.1 = true;
    response
}

async fn hold_poll(fake: &FakeTelegram, params: &Value) -> Response {
    let offset = params["offset"].as_i64().unwrap_or(0);
    let limit = params["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0));
    if let Some(kinds) = params["allowed_updates"].as_array() {
        fake.state().allowed_updates = Some(kinds.iter().filter_map(|k| k.as_str().map(String::from)).collect());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = fake.inner.updates_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = fake.state();
            if offset > 0 {
                // Confirmed for good: Telegram never serves these again.
                while st.updates.front().is_some_and(|(id, _)| *id < offset) {
                    st.updates.pop_front();
                }
                st.confirmed_offset = st.confirmed_offset.max(offset);
            }
            let batch: Vec<Value> =
                st.updates.iter().filter(|(id, _)| *id >= offset).take(limit).map(|(_, u)| u.clone()).collect();
            if !batch.is_empty() || timeout.is_zero() {
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

/// A Bot API error answer.
struct ApiErr {
    code: u16,
    description: String,
    parameters: Option<Value>,
}

impl ApiErr {
    fn new(code: u16, description: &str) -> ApiErr {
        ApiErr { code, description: description.to_string(), parameters: None }
    }
}

/// The chat of a send request, if the bot may post there, as Telegram would decide.
fn postable_chat(fake: &FakeTelegram, params: &Value) -> Result<i64, ApiErr> {
    let chat_id = params["chat_id"].as_i64().ok_or_else(|| ApiErr::new(400, "Bad Request: chat not found"))?;
    let st = fake.state();
    if let Some(to) = st.migrated.get(&chat_id) {
        return Err(ApiErr {
            code: 400,
            description: "Bad Request: group chat was upgraded to a supergroup chat".into(),
            parameters: Some(json!({"migrate_to_chat_id": to})),
        });
    }
    let Some(chat) = st.chats.get(&chat_id) else {
        return Err(ApiErr::new(400, "Bad Request: chat not found"));
    };
    if st.kicked.contains(&chat_id) {
        let d = if chat["type"] == "supergroup" {
            "Forbidden: bot was kicked from the supergroup chat"
        } else {
            "Forbidden: bot was kicked from the group chat"
        };
        return Err(ApiErr::new(403, d));
    }
    if chat["type"] == "private" && st.blocked_users.contains(&chat_id) {
        return Err(ApiErr::new(403, "Forbidden: bot was blocked by the user"));
    }
    drop(st);
    flood_check(fake, chat_id)?;
    Ok(chat_id)
}

/// How long after a 429 answer a request may still have been on its way (sent before the
/// bot read the answer), on this machine's loopback.
const ON_THE_WIRE: Duration = Duration::from_millis(100);

/// Telegram's flood control for one more send to `chat_id`, when the test turned it on.
fn flood_check(fake: &FakeTelegram, chat_id: i64) -> Result<(), ApiErr> {
    let mut st = fake.state();
    let Some(fc) = st.flood else { return Ok(()) };
    let now = std::time::Instant::now();
    let refuse = |st: &mut FakeState, pause: Duration| {
        st.flood_refusals += 1;
        let secs = pause.as_secs_f64().ceil().max(1.0) as u64;
        ApiErr {
            code: 429,
            description: format!("Too Many Requests: retry after {secs}"),
            parameters: Some(json!({"retry_after": secs})),
        }
    };
    if let Some((began, until)) = st.flood_pause.filter(|(_, u)| *u > now) {
        // A request that left before the 429 reached the bot cannot have known of it.
        if now - began < ON_THE_WIRE {
            st.sends_on_the_wire += 1;
        } else {
            st.sends_during_pause += 1;
        }
        return Err(refuse(&mut st, until - now));
    }
    let second = Duration::from_secs(1);
    let within = |st: &FakeState, span: Duration, chat: Option<i64>| {
        st.sent.iter().rev().take_while(|m| now - m.at < span).filter(|m| chat.is_none_or(|c| m.chat_id == c)).count()
    };
    let over = within(&st, second, Some(chat_id)) >= fc.per_chat
        || (chat_id < 0 && within(&st, fc.group_window, Some(chat_id)) >= fc.per_group)
        || within(&st, second, None) >= fc.overall;
    if over {
        let pause = Duration::from_secs(fc.retry_after.into());
        st.flood_pause = Some((now, now + pause));
        return Err(refuse(&mut st, pause));
    }
    Ok(())
}

/// Records a message from the bot and returns it whole.
fn bot_message(fake: &FakeTelegram, method: &str, chat_id: i64, text: &str, params: &Value, fields: Value) -> Value {
    let mut st = fake.state();
    let chat = st.chats[&chat_id].clone();
    let id = st.next_message_id.entry(chat_id).or_insert(0);
    *id += 1;
    let message_id = *id;
    let mut msg = json!({"message_id": message_id, "date": now(), "chat": chat, "from": bot_user()});
    for (k, v) in fields.as_object().unwrap() {
        msg[k] = v.clone();
    }
    if params.get("reply_markup").is_some_and(|m| m.get("inline_keyboard").is_some()) {
        msg["reply_markup"] = params["reply_markup"].clone();
    }
    st.messages.insert((chat_id, message_id), msg.clone());
    st.sent.push(SentMessage {
        method: method.to_string(),
        chat_id,
        message_id,
        text: text.to_string(),
        reply_markup: params.get("reply_markup").cloned(),
        body: params.clone(),
        at: std::time::Instant::now(),
    });
    msg
}

fn answer(fake: &FakeTelegram, method: &str, params: &Value) -> Response {
    match answer_json(fake, method, params) {
        Ok(v) => ok(v),
        Err(e) => error(e.code, &e.description, e.parameters),
    }
}

fn answer_json(fake: &FakeTelegram, method: &str, params: &Value) -> Result<Value, ApiErr> {
    match method {
        "getme" => Ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "村警", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "deletewebhook"
        | "setmycommands"
        | "deletemycommands"
        | "setwebhook"
        | "answercallbackquery"
        | "pinchatmessage"
        | "unpinchatmessage"
        | "leavechat"
        | "setchatmenubutton" => Ok(json!(true)),
        "getmycommands" => Ok(json!([])),
        "getwebhookinfo" => Ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0})),
        "sendmessage" => {
            let chat_id = postable_chat(fake, params)?;
            let text = params["text"].as_str().unwrap_or("");
            if text.trim().is_empty() {
                return Err(ApiErr::new(400, "Bad Request: message text is empty"));
            }
            if utf16_len(text) > 4096 {
                return Err(ApiErr::new(400, "Bad Request: message is too long"));
            }
            Ok(bot_message(fake, "sendMessage", chat_id, text, params, json!({"text": text})))
        }
        "sendphoto" | "sendvoice" | "sendvideo" | "senddocument" => {
            let chat_id = postable_chat(fake, params)?;
            let kind = &method[4..];
            let file = params[kind].as_str().unwrap_or("file").to_string();
            let caption = params["caption"].as_str().unwrap_or("").to_string();
            let media = if kind == "photo" {
                json!([{"file_id": file, "file_unique_id": "u", "width": 1280, "height": 960}])
            } else {
                json!({"file_id": file, "file_unique_id": "u", "duration": 1})
            };
            let mut fields = json!({ kind: media });
            if !caption.is_empty() {
                fields["caption"] = json!(caption);
            }
            let name = match kind {
                "photo" => "sendPhoto",
                "voice" => "sendVoice",
                "video" => "sendVideo",
                _ => "sendDocument",
            };
            Ok(bot_message(fake, name, chat_id, &caption, params, fields))
        }
        "sendlocation" => {
            let chat_id = postable_chat(fake, params)?;
            let loc = json!({"latitude": params["latitude"], "longitude": params["longitude"]});
            Ok(bot_message(fake, "sendLocation", chat_id, "", params, json!({"location": loc})))
        }
        "copymessage" => {
            let chat_id = postable_chat(fake, params)?;
            let from =
                (params["from_chat_id"].as_i64().unwrap_or(0), params["message_id"].as_i64().unwrap_or(0) as i32);
            let Some(original) = fake.state().messages.get(&from).cloned() else {
                return Err(ApiErr::new(400, "Bad Request: message to copy not found"));
            };
            let text = original["text"].as_str().or(original["caption"].as_str()).unwrap_or("").to_string();
            let msg = bot_message(fake, "copyMessage", chat_id, &text, params, json!({"text": text}));
            Ok(json!({"message_id": msg["message_id"]}))
        }
        "editmessagetext" | "editmessagereplymarkup" => {
            let key = (params["chat_id"].as_i64().unwrap_or(0), params["message_id"].as_i64().unwrap_or(0) as i32);
            let mut st = fake.state();
            let Some(msg) = st.messages.get_mut(&key) else {
                return Err(ApiErr::new(400, "Bad Request: message to edit not found"));
            };
            if let Some(t) = params["text"].as_str() {
                msg["text"] = json!(t);
            }
            if let Some(m) = params.get("reply_markup") {
                msg["reply_markup"] = m.clone();
            }
            Ok(msg.clone())
        }
        "deletemessage" => {
            let key = (params["chat_id"].as_i64().unwrap_or(0), params["message_id"].as_i64().unwrap_or(0) as i32);
            match fake.state().messages.remove(&key) {
                Some(_) => Ok(json!(true)),
                None => Err(ApiErr::new(400, "Bad Request: message to delete not found")),
            }
        }
        "getchat" => {
            let chat_id = params["chat_id"].as_i64().unwrap_or(0);
            match fake.state().chats.get(&chat_id) {
                Some(c) => {
                    let mut full = c.clone();
                    full["accent_color_id"] = json!(0);
                    full["max_reaction_count"] = json!(11);
                    Ok(full)
                }
                None => Err(ApiErr::new(400, "Bad Request: chat not found")),
            }
        }
        "getfile" => {
            let id = params["file_id"].as_str().unwrap_or_default();
            Ok(
                json!({"file_id": id, "file_unique_id": format!("u{id}"), "file_size": 64, "file_path": format!("photos/{id}.jpg")}),
            )
        }
        "getchatmember" => {
            let chat_id = params["chat_id"].as_i64().unwrap_or(0);
            let user_id = params["user_id"].as_i64().unwrap_or(0);
            let status =
                fake.state().member_status.get(&(chat_id, user_id)).cloned().unwrap_or_else(|| "member".into());
            Ok(json!({"status": status, "user": TgUser::new(user_id, "成员").json()}))
        }
        _ => Err(ApiErr::new(404, "Not Found: method not found")),
    }
}

#[cfg(test)]
mod self_tests {
    //! The fake against the real teloxide client: if these fail, the daemon tests mean nothing.

    use teloxide::prelude::*;
    use teloxide::types::UpdateKind;
    use teloxide::{ApiError, RequestError};

    use super::*;

    fn bot(fake: &FakeTelegram) -> Bot {
        Bot::new(TOKEN).set_api_url(fake.api_url())
    }

    #[tokio::test]
    async fn get_me_returns_the_bots_username() {
        let fake = FakeTelegram::start().await;
        let me = bot(&fake).get_me().await.unwrap();
        assert_eq!(me.username.as_deref(), Some(BOT_USERNAME));
        assert_eq!(fake.call_count("getMe"), 1, "PascalCase GetMe is matched case-insensitively");
    }

    #[tokio::test]
    async fn a_wrong_token_is_unauthorised() {
        let fake = FakeTelegram::start().await;
        let err = Bot::new("1:wrong").set_api_url(fake.api_url()).get_me().await.unwrap_err();
        assert!(matches!(err, RequestError::Api(ApiError::InvalidToken)), "{err:?}");
    }

    #[tokio::test]
    async fn send_message_returns_a_full_message_and_is_recorded() {
        let fake = FakeTelegram::start().await;
        fake.group(-100, "群", true);
        let msg = bot(&fake).send_message(ChatId(-100), "你好").await.unwrap();
        assert_eq!(msg.chat.id, ChatId(-100));
        assert_eq!(msg.text(), Some("你好"));
        assert_eq!(fake.sent_to(-100)[0].text, "你好");
    }

    #[tokio::test]
    async fn offsets_confirm_updates_for_good_and_long_polling_delivers_new_ones() {
        let fake = FakeTelegram::start().await;
        let user = TgUser::new(1, "甲");
        fake.group(-100, "群", true);
        fake.send_text(-100, &user, "一");
        let b = bot(&fake);
        let first = b.get_updates().await.unwrap();
        assert_eq!(first.len(), 1);
        let next = first[0].id.0 as i32 + 1;
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.get_updates().offset(next).timeout(5).await.unwrap() }
        });
        fake.wait_for_calls("getUpdates", 2).await;
        fake.send_text(-100, &user, "二");
        let second = waiting.await.unwrap();
        assert_eq!(second.len(), 1, "only the new update is served");
        match &second[0].kind {
            UpdateKind::Message(m) => assert_eq!(m.text(), Some("二")),
            other => panic!("{other:?}"),
        }
        assert_eq!(fake.confirmed_offset(), next as i64);
    }

    #[tokio::test]
    async fn a_429_surfaces_as_retry_after_with_its_seconds() {
        let fake = FakeTelegram::start().await;
        fake.group(-100, "群", true);
        fake.fail_next("sendMessage", Fault::RetryAfter(7), 1);
        let err = bot(&fake).send_message(ChatId(-100), "x").await.unwrap_err();
        match err {
            RequestError::RetryAfter(s) => assert_eq!(s.seconds(), 7),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_kicked_bot_gets_403_and_a_migrated_group_names_its_new_id() {
        let fake = FakeTelegram::start().await;
        let user = TgUser::new(1, "甲");
        fake.group(-100, "群", true);
        fake.remove_bot_from_group(-100, &user);
        let err = bot(&fake).send_message(ChatId(-100), "x").await.unwrap_err();
        assert!(matches!(err, RequestError::Api(ApiError::BotKickedFromSupergroup)), "{err:?}");

        fake.group(-5, "小群", false);
        fake.migrate_group(-5, -1005);
        let err = bot(&fake).send_message(ChatId(-5), "x").await.unwrap_err();
        assert!(matches!(err, RequestError::MigrateToChatId(ChatId(-1005))), "{err:?}");
    }

    #[tokio::test]
    async fn every_injected_update_kind_deserializes_in_teloxide() {
        let fake = FakeTelegram::start().await;
        let user = TgUser::new(1, "甲");
        fake.group(-100, "群", true);
        fake.add_bot_to_group(-100, &user);
        fake.send_text(-100, &user, "/bind 4101");
        fake.send_forwarded_text(-100, &user, "转发的文章");
        fake.send_as_chat(-100, -100, "匿名管理员");
        fake.send_photo(-100, &user, Some("照片"));
        fake.send_voice(-100, &user);
        fake.send_location(-100, &user, 34.4, 113.7);
        fake.send_venue(-100, &user, 34.4, 113.7, "村委会");
        fake.promote_bot(-100, &user);
        let b = bot(&fake);
        let sent = b.send_message(ChatId(-100), "带按钮").await.unwrap();
        fake.press_button(-100, &user, sent.id.0, "v:1");
        fake.migrate_group(-100, -1000100);
        let updates = b.get_updates().await.unwrap();
        let ids: Vec<u32> = updates.iter().map(|u| u.id.0).collect();
        assert_eq!(updates.len(), 13, "every injected update arrives: {ids:?}");
        let mut kinds = Vec::new();
        for u in &updates {
            kinds.push(match &u.kind {
                UpdateKind::MyChatMember(_) => "my_chat_member",
                UpdateKind::CallbackQuery(_) => "callback_query",
                UpdateKind::Message(m) if m.forward_origin().is_some() => "forwarded",
                UpdateKind::Message(m) if m.sender_chat.is_some() => "sender_chat",
                UpdateKind::Message(m) if m.text().is_some_and(|t| t.starts_with('/')) => {
                    assert!(
                        m.entities().unwrap().iter().any(|e| e.kind == teloxide::types::MessageEntityKind::BotCommand)
                    );
                    "command"
                }
                UpdateKind::Message(m) if m.photo().is_some() => "photo",
                UpdateKind::Message(m) if m.voice().is_some() => "voice",
                UpdateKind::Message(m) if m.location().is_some() => "location",
                UpdateKind::Message(m) if m.venue().is_some() => "venue",
                UpdateKind::Message(m) if m.migrate_to_chat_id().is_some() => "migrate_to",
                UpdateKind::Message(_) => "other message",
                UpdateKind::Error(v) => panic!("teloxide could not parse an update: {v}"),
                _ => "other",
            });
        }
        for k in [
            "my_chat_member",
            "callback_query",
            "forwarded",
            "sender_chat",
            "command",
            "photo",
            "voice",
            "location",
            "venue",
            "migrate_to",
        ] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
    }
}
