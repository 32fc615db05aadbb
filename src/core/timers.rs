//! The daemon's timer loop: for every channel it serves, whatever is due by the core's (injected) clock — tips not
//! acknowledged in time, scheduled notices and the monthly jobs — is turned into
//! [`Outbound`] actions and handed to that channel, with the actions the command line
//! queued for it.
//!
//! Deadlines live in the database, so the loop holds no state: after a restart it finds the
//! same overdue tips. It wakes every `interval`, and at once when `wake` is notified (tests
//! move their clock and notify, so no test sleeps).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Core, Platform};

/// Runs until `stop` turns true (or a channel's outbox is gone).
pub async fn run(
    core: Core,
    outboxes: super::Outboxes,
    wake: Arc<Notify>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let platforms: Vec<Platform> = outboxes.platforms().collect();
        for platform in platforms {
            match core.send_queued(platform, &outboxes).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "queued actions not taken; retrying at the next round")
                }
            }
            match core.escalate_overdue(platform).await {
                Ok(actions) => {
                    for action in actions {
                        if !outboxes.send(platform, action) {
                            return;
                        }
                    }
                }
                Err(e) => tracing::error!(error = format!("{e:#}"), "timer round failed; retrying at the next"),
            }
            match core.run_schedule(platform).await {
                Ok(actions) => {
                    for action in actions {
                        if !outboxes.send(platform, action) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "scheduled jobs failed; retrying at the next round")
                }
            }
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
    let live = store.live_daemons(now - lease).await?;
    let before = core.opts.live_daemons.swap(u32::try_from(live).unwrap_or(u32::MAX).max(1), Ordering::Relaxed);
    if before != live.max(1) as u32 {
        tracing::info!(daemons = live, "daemons alive for this bot; each sends its share of the bot's limits");
    }
    let n = store.requeue_orphans(now - lease).await?;
    if n > 0 {
        tracing::warn!(deliveries = n, "broadcast sends left in flight by a stopped daemon are sent again");
    }
    Ok(())
}

/// At start, before [`announce`]: the sends this daemon's own earlier run left in flight
/// (it crashed) are sent again at once, without waiting for its heartbeat to age (issue
/// #20). On SQLite that is every row another run claimed (one daemon per file); on
/// PostgreSQL, the rows of runs on this host whose process is gone (or whose process id is
/// now ours, as in a restarted container).
pub async fn resume_own(core: &Core) -> anyhow::Result<u64> {
    let store = core.store();
    let dead: Vec<String> = match store.backend() {
        crate::store::Backend::Sqlite => store.daemons_except(core.daemon_id()).await?,
        crate::store::Backend::Postgres => store
            .daemons_on_host(&host_name())
            .await?
            .into_iter()
            .filter(|id| id != core.daemon_id() && run_is_gone(id))
            .collect(),
    };
    if dead.is_empty() {
        return Ok(0);
    }
    let n = store.requeue_claimed_by(&dead).await?;
    if n > 0 {
        tracing::warn!(deliveries = n, "broadcast sends left in flight by this daemon's earlier run are sent again");
    }
    Ok(n)
}

/// Whether the run `PID-RANDOM` of this host has no process any more: its process id is
/// ours (a restarted container) or no process has it.
fn run_is_gone(id: &str) -> bool {
    let Some(pid) = id.split_once('-').and_then(|(p, _)| p.parse::<u32>().ok()) else { return false };
    pid == std::process::id() || (cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists())
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
