//! Actions decided where no channel runs: the command line's tip actions (the officer's
//! card, the tipster's notice) go to the database, and the daemon's timer loop takes those
//! of the platforms it serves and hands them to their channels. With no daemon running they
//! wait; none is sent twice.

use super::handler::Core;
use super::{Outbound, Outboxes, Platform};

/// Most queued actions one timer round takes for one platform.
const ROUND: i64 = 200;

impl Core {
    /// Queues `actions` for the daemon: each for its own platform when it names one
    /// ([`Outbound::On`]), otherwise for `platform`. Returns how many were queued.
    pub async fn queue_for_daemon(&self, platform: Platform, actions: Vec<Outbound>) -> anyhow::Result<usize> {
        let n = actions.len();
        let mut by_platform: Vec<(Platform, Vec<String>)> = Vec::new();
        for action in actions {
            let (on, action) = match action {
                Outbound::On { platform, action } => (platform, *action),
                action => (platform, action),
            };
            let json = serde_json::to_string(&action)?;
            match by_platform.iter_mut().find(|(p, _)| *p == on) {
                Some((_, list)) => list.push(json),
                None => by_platform.push((on, vec![json])),
            }
        }
        for (on, list) in by_platform {
            self.store().queue_outbound(on.as_str(), &list, self.now_ms()).await?;
        }
        Ok(n)
    }

    /// Hands the queued actions of `platform` to its channel. False when the channel has
    /// stopped; what it could not take goes back to the queue for the next daemon.
    pub async fn send_queued(&self, platform: Platform, outboxes: &Outboxes) -> anyhow::Result<bool> {
        loop {
            let taken = self.store().take_queued_outbound(platform.as_str(), ROUND).await?;
            let full = taken.len() as i64 == ROUND;
            for (i, json) in taken.iter().enumerate() {
                match serde_json::from_str::<Outbound>(json) {
                    Ok(action) => {
                        if !outboxes.send(platform, action) {
                            self.store().queue_outbound(platform.as_str(), &taken[i..], self.now_ms()).await?;
                            return Ok(false);
                        }
                    }
                    // Written by another version of the program: kept out of the way, logged.
                    Err(e) => tracing::error!(error = %e, "a queued action could not be read and is dropped"),
                }
            }
            if !full {
                return Ok(true);
            }
        }
    }
}
