//! `spawn_app`: the real daemon (library entry point) on a fresh database seeded with the
//! example registry, serving a fake Telegram Bot API. Every daemon test starts here.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cunjing::config::Settings;
use cunjing::daemon::{ChannelChoice, Hooks};
use cunjing::store::Store;
use tokio::sync::Notify;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::db::{self, Engine, TestDb};
use crate::fake_telegram::{FakeTelegram, SentMessage, TOKEN, TgUser, buttons};

/// The example registry the demo and the tests use.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config/example")
}

/// The example registry with `edits` (file, from, to) applied, in a temp dir.
pub fn example_registry_with(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in cunjing::registry::FILES {
        let mut t = std::fs::read_to_string(example_dir().join(f)).unwrap();
        for (file, from, to) in edits {
            if *file == f {
                assert!(t.contains(from), "{from:?} not in {f}");
                t = t.replacen(from, to, 1);
            }
        }
        std::fs::write(dir.path().join(f), t).unwrap();
    }
    dir
}

/// Settings from the shipped configuration file, pointed at `fake` and `url`, with flood
/// limits (Telegram's and triage's) high enough that tests never meet them.
pub fn test_settings(fake: &FakeTelegram, url: &str) -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config/cunjing.toml");
    let mut s = Settings::from_file(&path, false).expect("shipped configuration loads");
    s.file.database.url = url.to_string();
    s.database_url_from_env = true;
    s.file.telegram.api_url = fake.api_url().to_string();
    s.file.telegram.poll_timeout_secs = 1;
    s.file.telegram.messages_per_sec_chat = 1000;
    s.file.telegram.messages_per_min_group = 60_000;
    s.file.telegram.messages_per_sec_overall = 1000;
    // Triage's own flood control has its own tests; the others ask freely.
    s.file.triage.max_answers_per_group_per_minute = 10_000;
    s.file.triage.repeat_window_minutes = 0;
    // Broadcast pacing has its own tests; retries come quickly.
    s.file.broadcast.messages_per_sec = 0;
    s.file.broadcast.retry_base_ms = 20;
    s.telegram_token = Some(TOKEN.to_string().into());
    s
}

/// A running daemon and what a test needs around it.
pub struct TestApp {
    pub fake: FakeTelegram,
    pub db: TestDb,
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// How far the daemon's clock is ahead of the real one (ms): tests move time by hand.
    clock_offset: Arc<AtomicI64>,
    wake: Arc<Notify>,
}

impl TestApp {
    pub fn store(&self) -> &Store {
        &self.db.store
    }

    /// Starts the daemon on a fresh database of `engine` with the example registry imported.
    /// `None` when the engine is not configured on this machine.
    pub async fn spawn(engine: Engine) -> Option<TestApp> {
        if let Ok(filter) = std::env::var("CUNJING_TEST_LOG") {
            cunjing::telemetry::init(&filter);
        }
        let db = db::fresh(engine).await?;
        import_example(&db.store).await;
        let fake = FakeTelegram::start().await;
        let settings = test_settings(&fake, &db.url);
        let mut app = TestApp {
            fake,
            db,
            settings,
            stop: None,
            task: None,
            clock_offset: Arc::new(AtomicI64::new(0)),
            wake: Arc::new(Notify::new()),
        };
        app.start();
        Some(app)
    }

    fn hooks(&self) -> Hooks {
        let offset = self.clock_offset.clone();
        Hooks {
            clock: Arc::new(move || chrono::Utc::now() + chrono::Duration::milliseconds(offset.load(Ordering::SeqCst))),
            wake: self.wake.clone(),
            // Timers run when a test wakes them, never on their own during a test.
            timer_interval: Duration::from_secs(3600),
        }
    }

    /// The daemon's clock (moved by [`TestApp::advance`]), as UTC milliseconds.
    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.clock_offset.load(Ordering::SeqCst)
    }

    fn start(&mut self) {
        self.launch(|settings, hooks, stop| async move {
            cunjing::daemon::run_with(settings, &[ChannelChoice::Telegram], stop, hooks).await
        });
    }

    /// Runs `daemon` (given the settings, the hooks and the future that resolves on
    /// [`TestApp::stop`]) as this app's daemon.
    fn launch<F, Fut>(&mut self, daemon: F)
    where
        F: FnOnce(Settings, Hooks, futures::future::BoxFuture<'static, ()>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let stop = Box::pin(async move {
            let _ = rx.await;
        });
        self.task = Some(tokio::spawn(daemon(self.settings.clone(), self.hooks(), stop)));
        self.stop = Some(tx);
    }

    /// Stops the daemon and starts it again serving Telegram and the local console at once;
    /// the console reads what is written to the returned [`ConsolePipe`] and its output
    /// collects there.
    pub async fn restart_with_console(&mut self) -> ConsolePipe {
        self.stop().await;
        let (input, feed) = tokio::io::duplex(64 * 1024);
        let (output, mut screen) = tokio::io::duplex(64 * 1024);
        let seen = Arc::new(std::sync::Mutex::new(String::new()));
        let collected = seen.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = screen.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        self.launch(|settings, hooks, stop| async move {
            let token = settings.telegram_token.clone().expect("the test settings carry a token");
            let channels: Vec<Box<dyn cunjing::channels::Channel>> = vec![
                Box::new(cunjing::channels::telegram::TelegramChannel::new(&settings, token)?),
                Box::new(cunjing::channels::console::ConsoleChannel::new(
                    tokio::io::BufReader::new(input),
                    output,
                    false,
                    false,
                )),
            ];
            cunjing::daemon::run_channels(settings, channels, false, stop, hooks).await
        });
        ConsolePipe { feed, seen }
    }

    /// Points the daemon's WeChat channel at the fake `wecom`; returns the callback URL.
    fn configure_wechat(&mut self, wecom: &crate::fake_wecom::FakeWecom) -> String {
        use crate::fake_wecom::{AES_KEY, CORP_ID, OPEN_KFID, SECRET, TOKEN};
        if self.settings.file.http.listen.is_empty() {
            self.settings.file.http.listen = format!("127.0.0.1:{}", free_port());
        }
        let kf = &mut self.settings.file.wecom.kf;
        kf.corp_id = CORP_ID.into();
        kf.open_kfid = OPEN_KFID.into();
        kf.api_base = wecom.url.clone();
        self.settings.wecom_kf_secrets = Some(cunjing::config::KfSecrets {
            secret: SECRET.to_string().into(),
            token: TOKEN.to_string().into(),
            aes_key: AES_KEY.to_string().into(),
        });
        format!("http://{}{}", self.settings.file.http.listen, self.settings.file.wecom.kf.callback_path)
    }

    /// Points the daemon's WeCom smart-robot channel at the fake `robot`, with `secret`.
    fn configure_robot(&mut self, robot: &crate::fake_wecom::FakeRobot, secret: &str) {
        self.settings.file.wecom.robot.bot_id = crate::fake_wecom::ROBOT_ID.into();
        self.settings.file.wecom.robot.ws_url = robot.url.clone();
        self.settings.wecom_robot_secret = Some(secret.to_string().into());
    }

    /// Stops the daemon and starts it again serving `channels`.
    async fn restart_serving(&mut self, channels: &'static [ChannelChoice]) {
        self.stop().await;
        self.launch(move |settings, hooks, stop| async move {
            cunjing::daemon::run_with(settings, channels, stop, hooks).await
        });
    }

    /// Waits until the daemon's HTTP server answers at `url`.
    async fn listening(url: &str) {
        eventually("the daemon's HTTP server listens", || async {
            reqwest::Client::new().get(url).send().await.is_ok()
        })
        .await;
    }

    /// Stops the daemon and starts it again serving Telegram and WeChat (customer service
    /// against `wecom`) at once; returns the callback URL WeCom posts to.
    pub async fn restart_with_wechat(&mut self, wecom: &crate::fake_wecom::FakeWecom) -> String {
        let url = self.configure_wechat(wecom);
        self.restart_serving(&[ChannelChoice::Telegram, ChannelChoice::Wechat]).await;
        Self::listening(&url).await;
        url
    }

    /// Stops the daemon and starts it again serving Telegram and the WeCom smart robot (the
    /// fake at `robot`, with `secret`: a wrong one makes the start fail).
    pub async fn restart_with_robot(&mut self, robot: &crate::fake_wecom::FakeRobot, secret: &str) {
        self.configure_robot(robot, secret);
        self.restart_serving(&[ChannelChoice::Telegram, ChannelChoice::Wecom]).await;
    }

    /// Stops the daemon and starts it again serving Telegram, WeChat and the WeCom smart
    /// robot at once; returns WeChat's callback URL.
    pub async fn restart_with_wecom(
        &mut self,
        wecom: &crate::fake_wecom::FakeWecom,
        robot: &crate::fake_wecom::FakeRobot,
    ) -> String {
        let url = self.configure_wechat(wecom);
        self.configure_robot(robot, crate::fake_wecom::ROBOT_SECRET);
        self.restart_serving(&[ChannelChoice::Telegram, ChannelChoice::Wechat, ChannelChoice::Wecom]).await;
        Self::listening(&url).await;
        url
    }

    /// The daemon's end, when it ended on its own (a start that failed).
    pub async fn ended(&mut self) -> Option<anyhow::Result<()>> {
        let task = self.task.take()?;
        let result = tokio::time::timeout(Duration::from_secs(20), task).await;
        self.stop = None;
        Some(result.expect("the daemon ended").expect("the daemon task did not panic"))
    }

    /// Moves the daemon's clock forward and lets its timers look for due work.
    pub fn advance(&self, by: Duration) {
        self.clock_offset.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Stops the daemon and waits until it has returned (its result must be `Ok`).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("daemon task panicked").expect("daemon returned an error");
        }
    }

    /// Stops the daemon and starts a new one on the same database and fake Telegram.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start();
    }

    /// `user` writes `text` in `chat`; returns the bot's first answer in that chat after it.
    pub async fn ask(&self, chat: i64, user: &TgUser, text: &str) -> SentMessage {
        let mark = self.fake.mark();
        self.fake.send_text(chat, user, text);
        self.fake.wait_for_new(mark, |m| m.chat_id == chat).await
    }

    /// Issues an enrolment code for `badge` (as `cunjing officer enrol` does) and has
    /// `user_id` redeem it in a private chat; returns after the bot confirmed.
    pub async fn enrol(&self, badge: &str, user: &TgUser) {
        let code = self.store().issue_enrolment_code(badge, 3_600_000).await.unwrap().expect("badge exists");
        let chat = self.fake.private_chat(user.clone());
        let answer = self.ask(chat, user, &format!("/start {}", code.code)).await;
        assert!(answer.text.contains("登记成功"), "{}", answer.text);
    }
}

/// A free TCP port on 127.0.0.1 for a daemon's HTTP server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it is true (at most 20 s).
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presses the button whose label contains `label` under `msg`; returns the next message the
/// bot sends to `chat`.
pub async fn press(app: &TestApp, chat: i64, user: &TgUser, msg: &SentMessage, label: &str) -> SentMessage {
    let all = buttons(msg);
    let (_, data) = all.iter().find(|(l, _)| l.contains(label)).unwrap_or_else(|| panic!("no {label:?} in {all:?}"));
    let mark = app.fake.mark();
    app.fake.press_button(msg.chat_id, user, msg.message_id, data);
    app.fake.wait_for_new(mark, |m| m.chat_id == chat).await
}

/// Imports the example registry into `store`, as of today.
pub async fn import_example(store: &Store) {
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    cunjing::registry::import_dir(store, &example_dir(), today).await.expect("example registry imports");
}

/// Runs a daemon scenario on SQLite and on PostgreSQL:
/// `app_test!(name, |app| { … })` — `app` is a running [`TestApp`], stopped after the body.
#[macro_export]
macro_rules! app_test {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario(#[allow(unused_mut)] mut $app: $crate::app::TestApp) {
                // A hang is a failure with a message, not a stuck CI run; the message says
                // whether the steps or the daemon's stop hung.
                let steps_done = std::sync::atomic::AtomicBool::new(false);
                let run = async {
                    $body
                    steps_done.store(true, std::sync::atomic::Ordering::SeqCst);
                    $app.stop().await;
                };
                if tokio::time::timeout(std::time::Duration::from_secs(60), run).await.is_err() {
                    let hung = if steps_done.load(std::sync::atomic::Ordering::SeqCst) {
                        "the daemon's stop"
                    } else {
                        "a step of the scenario"
                    };
                    panic!("the scenario did not finish within 60 s: {hung} hung");
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let app = $crate::app::TestApp::spawn($crate::db::Engine::Sqlite).await.expect("SQLite is always there");
                scenario(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if let Some(app) = $crate::app::TestApp::spawn($crate::db::Engine::Postgres).await {
                    scenario(app).await;
                }
            }
        }
    };
}

/// The console channel of a daemon started by [`TestApp::restart_with_console`].
pub struct ConsolePipe {
    feed: tokio::io::DuplexStream,
    seen: Arc<std::sync::Mutex<String>>,
}

impl ConsolePipe {
    /// Types a line at the console.
    pub async fn type_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.feed.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }

    /// Everything the console printed so far.
    pub fn screen(&self) -> String {
        self.seen.lock().unwrap().clone()
    }
}
