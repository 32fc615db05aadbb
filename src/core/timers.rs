//! The timer loop of a channel: whatever is due by the core's (injected) clock — tips not
//! acknowledged in time, scheduled notices and the monthly jobs — is turned into
//! [`Outbound`] actions and handed to the channel.
//!
//! Deadlines live in the database, so the loop holds no state: after a restart it finds the
//! same overdue tips. It wakes every `interval`, and at once when `wake` is notified (tests
//! move their clock and notify, so no test sleeps).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use super::{Core, Outbound, Platform};

/// Runs until `stop` turns true (or the channel's receiver is gone).
pub async fn run(
    core: Core,
    platform: Platform,
    wake: Arc<Notify>,
    interval: Duration,
    tx: mpsc::UnboundedSender<Outbound>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match core.escalate_overdue(platform).await {
            Ok(actions) => {
                for action in actions {
                    if tx.send(action).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "timer round failed; retrying at the next"),
        }
        match core.run_schedule(platform).await {
            Ok(actions) => {
                for action in actions {
                    if tx.send(action).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "scheduled jobs failed; retrying at the next round"),
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// A daemon silent for this many heartbeats is taken for stopped.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Records that this daemon is alive and takes over the broadcast sends of daemons that are
/// not (including this daemon's own earlier run). Done once before the workers start.
pub async fn announce(core: &Core, heartbeat: Duration) -> anyhow::Result<()> {
    let now = core.now_ms();
    let store = core.store();
    store.heartbeat(core.daemon_id(), &host_name(), now).await?;
    let lease = i64::try_from((heartbeat * MISSED_HEARTBEATS).as_millis()).unwrap_or(i64::MAX);
    let n = store.requeue_orphans(now - lease).await?;
    if n > 0 {
        tracing::warn!(deliveries = n, "broadcast sends left in flight by a stopped daemon are sent again");
    }
    Ok(())
}

/// [`announce`] every `heartbeat` until `stop` turns true; then signs this daemon off.
pub async fn presence(core: Core, heartbeat: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(heartbeat) => {}
        }
        if let Err(e) = announce(&core, heartbeat).await {
            tracing::error!(error = format!("{e:#}"), "heartbeat failed; retrying");
        }
    }
    if let Err(e) = core.store().sign_off(core.daemon_id()).await {
        tracing::warn!(error = format!("{e:#}"), "could not sign off");
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".to_string())
}
