//! Channel adapters: each turns a platform's updates into [`crate::core::Inbound`] and the
//! core's [`crate::core::Outbound`] actions back into platform calls. Nothing in here
//! decides anything.
//!
//! Every adapter is a [`Channel`]; the composition root ([`crate::daemon`]) runs any number
//! of them beside one core, one set of workers and one HTTP server. Adding a platform is a
//! module here plus one line in [`crate::daemon::ChannelChoice`]'s match.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use crate::core::broadcast::WorkerOptions;
use crate::core::{Core, MediaSource, MemberCheck, Outbound, Outboxes, Platform};

pub mod backlog;
pub mod console;
pub mod pace;
pub mod telegram;
pub mod wechat;
pub mod wecom;
pub mod wecom_bot;
pub mod wxcrypt;

/// What a platform offers the core, learnt when the channel connects (before the core is
/// built): the bot's name for deep links, whether a user is in a chat, files of tips.
#[derive(Default)]
pub struct Offers {
    pub bot_username: Option<String>,
    pub members: Option<Arc<dyn MemberCheck>>,
    pub media: Option<Arc<dyn MediaSource>>,
}

/// The daemon's stop switch: the process (a signal, a test) or a channel (the console's
/// input ended) asks for the stop; every channel then stops taking updates.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown { tx: Arc::new(tx), rx }
    }
}

impl Shutdown {
    /// Asks the whole daemon to stop.
    pub fn request(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once the stop was asked for.
    pub async fn requested(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// What the daemon hands a channel to serve with.
pub struct Wiring {
    pub core: Core,
    /// Actions for this platform from the rest of the daemon (escalations, scheduled
    /// notices, the console's replies, broadcast reports). Performed until it closes: the
    /// daemon closes it after its workers stopped, so nothing produced during the stop is
    /// lost.
    pub outbox: mpsc::UnboundedReceiver<Outbound>,
    /// Every channel's outbox (this one's included), for the channel's broadcast worker's
    /// reports to senders, who may be on another platform.
    pub outboxes: Outboxes,
    /// Stops the channel's broadcast worker (with the daemon's other workers).
    pub workers_stopped: watch::Receiver<bool>,
    pub worker: WorkerOptions,
    pub shutdown: Shutdown,
}

/// A channel being served: the routes it adds to the daemon's HTTP server (Telegram's
/// webhook), its health probe, and the task that ends once it stopped and its outbox closed.
pub struct Serving {
    pub routes: Option<axum::Router>,
    pub probe: Option<crate::http::Probe>,
    pub task: BoxFuture<'static, anyhow::Result<()>>,
}

/// One messaging platform as the daemon runs it.
pub trait Channel: Send + 'static {
    fn platform(&self) -> Platform;

    /// Reaches the platform (Telegram: `getMe`, the webhook) before the core is built, and
    /// says what it offers the core.
    fn connect(&mut self) -> BoxFuture<'_, anyhow::Result<Offers>>;

    /// Starts serving with the finished core: updates in, the outbox out, broadcasts
    /// delivered, until [`Wiring::shutdown`] and the outbox's end.
    fn serve(self: Box<Self>, ctx: Wiring) -> anyhow::Result<Serving>;
}
