//! The daemon's composition root: builds the store, the texts, the triage rules and the core
//! once, starts every worker once (presence, timers, broadcast deliveries, the WeCom robots,
//! the station console, the HTTP server), and runs any number of channels beside them until
//! the shutdown future resolves (Ctrl-C or SIGTERM in `main`, a handle in tests) or a channel
//! asks for the stop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use anyhow::Context;

use crate::channels::{self, Channel, Shutdown};
use crate::config::Settings;
use crate::core::flood::FloodLimits;
use crate::core::{Clock, Core, CoreOptions, Outboxes, Platform};
use crate::store::Store;
use crate::texts::{Msg, Texts};
use crate::triage::Triage;

pub use crate::config::ChannelChoice;

/// What a test (or an embedding program) can inject into the daemon.
#[derive(Clone)]
pub struct Hooks {
    /// The clock deadlines are set and checked by.
    pub clock: Clock,
    /// Notified to make the timer loop look for due work at once.
    pub wake: Arc<Notify>,
    /// How often the timer loop looks without being woken.
    pub timer_interval: Duration,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            clock: Arc::new(chrono::Utc::now),
            wake: Arc::new(Notify::new()),
            timer_interval: Duration::from_secs(30),
        }
    }
}

/// Loads what every part of the program needs and builds the core over `store`.
pub fn build_core(settings: &Settings, store: Store, clock: Clock) -> anyhow::Result<Core> {
    let texts = Texts::load(&settings.templates_dir(), &settings.file.general.locale)?;
    let triage = Triage::load(&settings.intents_file())?;
    let tips = &settings.file.tips;
    for code in &tips.categories {
        texts.check(Msg::CategoryLabel, minijinja::context! { code }).with_context(|| {
            format!("tips.categories names {code:?}, which has no label in the template \"category_label\"")
        })?;
    }
    let mut opts = CoreOptions::new(settings.timezone());
    opts.clock = clock;
    opts.ack_timeout_ms = i64::from(tips.ack_timeout_minutes.max(1)) * 60_000;
    opts.max_tips_per_hour = i64::from(tips.max_per_hour.max(1));
    opts.max_wrong_status_per_hour = i64::from(tips.max_wrong_passwords_per_hour.max(1));
    opts.max_wrong_status_per_tip = i64::from(tips.max_wrong_passwords_per_tip.max(1));
    opts.delete_group_tips = tips.delete_group_tips;
    opts.tip_categories = tips.categories.clone();
    opts.conversation_ttl_ms = i64::from(tips.conversation_timeout_minutes.max(1)) * 60_000;
    let flood = &settings.file.triage;
    opts.flood = FloodLimits {
        answers_per_group_per_minute: flood.max_answers_per_group_per_minute.max(1) as usize,
        repeat_window_ms: i64::from(flood.repeat_window_minutes) * 60_000,
        non_police_repeat_ms: i64::from(flood.non_police_repeat_hours) * 3_600_000,
    };
    opts.triage_path = Some(settings.intents_file());
    opts.pin_severities = settings.file.broadcast.pin_severities.clone();
    opts.broadcast_per_second = settings.file.broadcast.messages_per_sec;
    opts.max_wrong_codes_per_hour = i64::from(settings.file.enrolment.max_wrong_codes_per_hour.max(1));
    opts.retention = crate::core::Retention::from_settings(settings);
    opts.confirm_within_m = f64::from(settings.file.places.confirm_within_m);
    opts.unknown_datum = settings.file.places.unknown_datum;
    opts.schedule =
        Some(Arc::new(crate::core::schedule::Schedule::load(&settings.schedule_file(), &texts, settings.timezone())?));
    Ok(Core::new(store, Arc::new(texts), Arc::new(triage), opts))
}

/// Runs the daemon on the chosen channels until `shutdown`.
pub async fn run(
    settings: Settings,
    channels: &[ChannelChoice],
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with(settings, channels, shutdown, Hooks::default()).await
}

/// [`run`] with injected hooks (clock, timer wake-up).
pub async fn run_with(
    settings: Settings,
    choices: &[ChannelChoice],
    shutdown: impl Future<Output = ()> + Send,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let token = settings.telegram_token.clone();
    let choices = if choices.is_empty() { &[ChannelChoice::Auto][..] } else { choices };
    // Without a token and without an explicit DATABASE_URL, `auto` is the demo: the console
    // on its own SQLite file, seeded from the example registry, every group pre-bound.
    let demo = choices == [ChannelChoice::Auto] && token.is_none() && !settings.database_url_from_env;
    let mut channels: Vec<Box<dyn Channel>> = Vec::new();
    for choice in choices {
        let platform = match (choice, &token) {
            (ChannelChoice::Auto, Some(_)) | (ChannelChoice::Telegram, _) => Platform::Telegram,
            (ChannelChoice::Auto, None) | (ChannelChoice::Console, _) => Platform::Console,
            (ChannelChoice::Wechat, _) => Platform::Wechat,
            (ChannelChoice::Wecom, _) => Platform::WecomBot,
        };
        if channels.iter().any(|c| c.platform() == platform) {
            continue;
        }
        // Adding a platform: its channel module, and its line here.
        channels.push(match platform {
            Platform::Telegram => {
                let Some(token) = token.clone() else {
                    anyhow::bail!("`--channel telegram` needs the bot token in TELOXIDE_TOKEN")
                };
                Box::new(channels::telegram::TelegramChannel::new(&settings, token)?)
            }
            Platform::Wechat => {
                let Some(secrets) = &settings.wecom_kf_secrets else {
                    anyhow::bail!(
                        "`--channel wechat` needs CUNJING_WECOM_KF_SECRET, CUNJING_WECOM_KF_TOKEN and CUNJING_WECOM_KF_AES_KEY"
                    )
                };
                anyhow::ensure!(
                    !settings.file.http.listen.trim().is_empty(),
                    "`--channel wechat` needs [http] listen (CUNJING__HTTP__LISTEN): WeCom posts its callbacks there"
                );
                let timeout = Duration::from_secs(settings.file.wecom.timeout_secs.max(1));
                Box::new(channels::wechat::WechatChannel::new(&settings.file.wecom.kf, secrets, timeout)?)
            }
            Platform::WecomBot => {
                let Some(secret) = settings.wecom_robot_secret.clone() else {
                    anyhow::bail!("`--channel wecom` needs the smart robot's secret in CUNJING_WECOM_ROBOT_SECRET")
                };
                Box::new(channels::wecom_bot::WecomBotChannel::new(&settings.file.wecom.robot, secret)?)
            }
            Platform::Console => Box::new(channels::console::ConsoleChannel::stdio(demo)),
        });
    }
    anyhow::ensure!(
        settings.webhook.is_none() || channels.iter().any(|c| c.platform() == Platform::Telegram),
        "--webhook serves Telegram: set TELOXIDE_TOKEN"
    );
    run_channels(settings, channels, demo, shutdown, hooks).await
}

/// The composition root: one store, one core, one set of workers (presence, timers, the
/// console, the HTTP server, the WeCom robots) and every channel in `channels` at once,
/// until `shutdown` or a channel asks for the stop.
pub async fn run_channels(
    settings: Settings,
    mut channels: Vec<Box<dyn Channel>>,
    demo: bool,
    shutdown: impl Future<Output = ()> + Send,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let url = if demo { settings.file.demo.database_url.clone() } else { settings.file.database.url.clone() };
    let mut offers = Vec::new();
    for channel in &mut channels {
        offers.push((channel.platform(), channel.connect().await?));
    }
    let store = Store::connect(&settings.store_options(&url)).await?;
    store.keep_registry_in_memory();
    if store.secrets().key_in_database() && !demo {
        tracing::warn!(
            "CUNJING_DATA_KEY is not set: tipsters' phones and chats are sealed with a key kept in the database itself, which a copy of the database holds; set it (README, Privacy)"
        );
    }
    let mut core = build_core(&settings, store.clone(), hooks.clock.clone())?;
    for (platform, offer) in offers {
        if offer.bot_username.is_some() {
            core.set_bot_username(offer.bot_username);
        }
        if let Some(members) = offer.members {
            core.set_member_check(platform, members);
        }
        if let Some(media) = offer.media {
            core.set_media_source(platform, media);
        }
    }
    core.set_served(channels.iter().map(|c| c.platform()).collect());
    let core = core;
    let reloader = reload_on_hangup(core.clone())?;
    if demo {
        seed_demo(&settings, &core).await?;
        print_demo_banner(&settings, &core, &url).await?;
    }
    let presence = start_presence(&settings, &core).await?;
    let wecom = spawn_wecom(&settings, &core)?;

    let stop = Shutdown::default();
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let mut receivers = Vec::new();
    let mut senders = HashMap::new();
    for channel in &channels {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        senders.insert(channel.platform(), tx);
        receivers.push(rx);
    }
    let outboxes = Outboxes::new(senders.clone());
    let mut serving = Vec::new();
    for (channel, outbox) in channels.into_iter().zip(receivers) {
        tracing::info!(channel = channel.platform().as_str(), "serving");
        serving.push(channel.serve(channels::Wiring {
            core: core.clone(),
            outbox,
            outboxes: outboxes.clone(),
            workers_stopped: workers_stopped.clone(),
            worker: crate::core::broadcast::WorkerOptions::from_settings(&settings),
            shutdown: stop.clone(),
        })?);
    }
    let timers = tokio::spawn(crate::core::timers::run(
        core.clone(),
        outboxes,
        hooks.wake.clone(),
        hooks.timer_interval,
        workers_stopped.clone(),
    ));
    let web = crate::web::start(&settings, &core, senders).await?;

    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut routes = Vec::new();
    let mut probe = None;
    let mut starts = Vec::new();
    for s in serving {
        routes.extend(s.routes);
        probe = probe.or(s.probe);
        starts.push(s.task);
    }
    let http = match settings.file.http.listen.trim() {
        "" => None,
        listen => {
            let listener = crate::http::bind(listen).await?;
            let health = crate::http::HealthState { core: core.clone(), telegram: probe };
            let router = routes.into_iter().fold(crate::http::health_router(health), |r, route| r.merge(route));
            Some(tokio::spawn(crate::http::serve(listener, router, async move {
                let _ = http_stopped.await;
            })))
        }
    };
    // After the server listens: a channel may tell its platform where to post (a webhook).
    // A channel that ends (its input closed, or it failed) stops the daemon.
    let tasks: Vec<_> = starts
        .into_iter()
        .map(|task| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let result = task.await;
                if let Err(e) = &result {
                    tracing::error!(error = format!("{e:#}"), "a channel failed; the daemon stops");
                }
                stop.request();
                result
            })
        })
        .collect();

    tokio::select! {
        _ = shutdown => stop.request(),
        _ = stop.requested() => {}
    }
    // The channels stop taking updates; the workers stop, which closes the outboxes; the
    // channels perform what is left in them and end.
    if let Some(web) = web {
        web.stop().await?;
    }
    let _ = stop_workers.send(true);
    timers.await.context("the timer loop panicked")?;
    let mut result = Ok(());
    for task in tasks {
        let outcome = task.await.context("a channel panicked").and_then(|r| r);
        if result.is_ok() {
            result = outcome;
        }
    }
    wecom.stop().await;
    presence.stop().await;
    let _ = stop_http.send(());
    if let Some(http) = http {
        http.await.context("the HTTP server panicked")??;
    }
    reloader.abort();
    store.close().await;
    result
}

/// The demo's first lines: what this is and how to ask.
async fn print_demo_banner(settings: &Settings, core: &Core, url: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let banner = format!(
        "cunjing DEMO: local console channel, no Telegram (set TELOXIDE_TOKEN to serve Telegram).\n\
         Database: {url}, seeded from the example registry {}.\n\
         Ask like a villager, e.g.: {}\n",
        settings.resolve(&settings.file.demo.registry_dir).display(),
        core.triage().first_example().unwrap_or("/officer"),
    );
    tokio::io::stdout().write_all(banner.as_bytes()).await?;
    Ok(())
}

/// A background worker and the switch that stops it.
struct Worker {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "a background worker panicked");
        }
    }
}

/// Announces this daemon (taking over sends a stopped daemon left in flight) before any
/// worker starts, then keeps its heartbeat.
async fn start_presence(settings: &Settings, core: &Core) -> anyhow::Result<Worker> {
    let heartbeat = Duration::from_secs(settings.file.general.heartbeat_secs.max(1));
    let (phones, chats) = core.store().seal_contacts().await?;
    if phones + chats > 0 {
        tracing::info!(phones, chats, "tipsters' phones and chats sealed under the current data key");
    }
    crate::core::timers::resume_own(core).await?;
    crate::core::timers::announce(core, heartbeat).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(crate::core::timers::presence(core.clone(), heartbeat, stopped));
    Ok(Worker { stop, task })
}

/// The WeCom robots' delivery worker (runs beside any channel; it has nothing to do when no
/// village or office has a robot).
fn spawn_wecom(settings: &Settings, core: &Core) -> anyhow::Result<Worker> {
    let w = &settings.file.wecom;
    let deliverer =
        channels::wecom::WecomDeliverer::new(w.messages_per_min_per_robot, Duration::from_secs(w.timeout_secs.max(1)))?;
    let mut opts = crate::core::broadcast::WorkerOptions::from_settings(settings);
    opts.per_second = 0; // each robot has its own limit
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Robots report to nobody: the channels' workers tell the sender.
    let task = tokio::spawn(crate::core::broadcast::run_deliveries(
        core.clone(),
        Arc::new(deliverer),
        opts,
        Outboxes::default(),
        stopped,
    ));
    Ok(Worker { stop, task })
}

/// Reloads the triage rules on SIGHUP (a bad file is logged and changes nothing).
fn reload_on_hangup(core: Core) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("Failed to listen for SIGHUP")?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if let Err(e) = core.reload_triage() {
                tracing::error!(error = format!("{e:#}"), "triage rules not reloaded; the old rules stay in force");
            }
        }
    }))
}

/// Imports the example registry and binds a console group to every village.
async fn seed_demo(settings: &Settings, core: &Core) -> anyhow::Result<()> {
    let dir = settings.resolve(&settings.file.demo.registry_dir);
    crate::registry::import_dir(core.store(), &dir, core.today())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("Failed to seed the demo from {}", dir.display()))?;
    // Every officer can be reached on the console, so the demo shows where tips go.
    for o in core.store().all_officers().await? {
        let user = channels::console::officer_user_id(o.id);
        core.store().link_identity_directly(o.id, Platform::Console.as_str(), user).await?;
    }
    for v in core.store().all_villages().await? {
        let chat_id = channels::console::group_chat_id(v.id);
        core.store().bind_chat_to_village(Platform::Console.as_str(), chat_id, &v.name, v.id, None).await?;
    }
    Ok(())
}
