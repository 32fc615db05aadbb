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
