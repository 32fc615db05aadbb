//! The daemon: wires the store, the texts, the triage rules and the core to a channel, and
//! runs until the shutdown future resolves (Ctrl-C or SIGTERM in `main`, a handle in tests).

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use anyhow::Context;

use crate::channels;
use crate::config::Settings;
use crate::core::flood::FloodLimits;
use crate::core::{Clock, Core, CoreOptions, Platform};
use crate::store::Store;
use crate::texts::{Msg, Texts};
use crate::triage::Triage;

/// Which channel `cunjing run` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChannelChoice {
    /// Telegram when TELOXIDE_TOKEN is set, otherwise the local console demo.
    Auto,
    /// Telegram (TELOXIDE_TOKEN required).
    Telegram,
    /// The local console on stdin/stdout.
    Console,
}

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
    opts.retention = settings.retention();
    opts.schedule =
        Some(Arc::new(crate::core::schedule::Schedule::load(&settings.schedule_file(), &texts, settings.timezone())?));
    Ok(Core::new(store, Arc::new(texts), Arc::new(triage), opts))
}

/// Runs the daemon on the chosen channel until `shutdown`.
pub async fn run(
    settings: Settings,
    channel: ChannelChoice,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with(settings, channel, shutdown, Hooks::default()).await
}

/// [`run`] with injected hooks (clock, timer wake-up).
pub async fn run_with(
    settings: Settings,
    channel: ChannelChoice,
    shutdown: impl Future<Output = ()> + Send,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let token = settings.telegram_token.clone();
    let use_telegram = match channel {
        ChannelChoice::Auto => token.is_some(),
        ChannelChoice::Telegram => {
            anyhow::ensure!(token.is_some(), "`--channel telegram` needs the bot token in TELOXIDE_TOKEN");
            true
        }
        ChannelChoice::Console => false,
    };
    if let (true, Some(token)) = (use_telegram, token) {
        let store = Store::connect(&settings.store_options(&settings.file.database.url)).await?;
        store.keep_registry_in_memory();
        if store.secrets().key_in_database() {
            tracing::warn!(
                "CUNJING_DATA_KEY is not set: tipsters' phones and chats are sealed with a key kept in the database itself, which a copy of the database holds; set it (README, Privacy)"
            );
        }
        let core = build_core(&settings, store.clone(), hooks.clock.clone())?;
        let reloader = reload_on_hangup(core.clone())?;
        let presence = start_presence(&settings, &core).await?;
        let wecom = spawn_wecom(&settings, &core)?;
        tracing::info!("serving Telegram");
        let result = channels::telegram::run(core, &settings, token, shutdown, &hooks).await;
        wecom.stop().await;
        presence.stop().await;
        reloader.abort();
        store.close().await;
        return result;
    }

    anyhow::ensure!(settings.webhook.is_none(), "--webhook serves Telegram: set TELOXIDE_TOKEN");
    // The console. Without a token and without an explicit DATABASE_URL this is the demo:
    // its own SQLite file, seeded from the example registry, every group pre-bound.
    let demo = channel == ChannelChoice::Auto && !settings.database_url_from_env;
    let url = if demo { settings.file.demo.database_url.clone() } else { settings.file.database.url.clone() };
    let store = Store::connect(&settings.store_options(&url)).await?;
    store.keep_registry_in_memory();
    let core = build_core(&settings, store.clone(), hooks.clock.clone())?;
    let reloader = reload_on_hangup(core.clone())?;
    let start_village = if demo {
        seed_demo(&settings, &core).await?;
        store.first_village().await?
    } else {
        None
    };
    let mut out = tokio::io::stdout();
    if demo {
        use tokio::io::AsyncWriteExt;
        let banner = format!(
            "cunjing DEMO: local console channel, no Telegram (set TELOXIDE_TOKEN to serve Telegram).\n\
             Database: {url}, seeded from the example registry {}.\n\
             Ask like a villager, e.g.: {}\n",
            settings.resolve(&settings.file.demo.registry_dir).display(),
            core.triage().first_example().unwrap_or("/officer"),
        );
        out.write_all(banner.as_bytes()).await?;
    }
    let presence = start_presence(&settings, &core).await?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = match settings.file.http.listen.trim() {
        "" => None,
        listen => {
            let listener = crate::http::bind(listen).await?;
            let router = crate::http::health_router(crate::http::HealthState { core: core.clone(), telegram: None });
            Some(tokio::spawn(crate::http::serve(listener, router, async move {
                let _ = http_stopped.await;
            })))
        }
    };
    let interactive = std::io::stdin().is_terminal();
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    let (timer_tx, timer_rx) = tokio::sync::mpsc::unbounded_channel();
    let web =
        crate::web::start(&settings, &core, std::collections::HashMap::from([(Platform::Console, timer_tx.clone())]))
            .await?;
    let (stop_timers, timers_stopped) = tokio::sync::watch::channel(false);
    let timers = tokio::spawn(crate::core::timers::run(
        core.clone(),
        Platform::Console,
        hooks.wake.clone(),
        hooks.timer_interval,
        timer_tx.clone(),
        timers_stopped,
    ));
    let broadcasts = tokio::spawn(crate::core::broadcast::run_deliveries(
        core.clone(),
        Arc::new(channels::console::ConsoleDeliverer::new(timer_tx.clone())),
        settings.worker_options(),
        timer_tx,
        stop_timers.subscribe(),
    ));
    let wecom = spawn_wecom(&settings, &core)?;
    let result = channels::console::run(core, input, out, interactive, start_village, timer_rx, shutdown).await;
    if let Some(web) = web {
        web.stop().await?;
    }
    let _ = stop_timers.send(true);
    let _ = timers.await;
    let _ = broadcasts.await;
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
    let mut opts = settings.worker_options();
    opts.per_second = 0; // each robot has its own limit
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Robots report to nobody: the channel's worker tells the sender.
    let (reports, _) = tokio::sync::mpsc::unbounded_channel();
    let task =
        tokio::spawn(crate::core::broadcast::run_deliveries(core.clone(), Arc::new(deliverer), opts, reports, stopped));
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
