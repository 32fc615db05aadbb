//! Backpressure for long polling: the daemon asks Telegram for more updates only while fewer
//! than `[telegram] max_pending_updates` are in its hands (waiting in a chat's queue or being
//! handled).
//!
//! teloxide's dispatcher fetches updates as fast as Telegram gives them and queues them per
//! chat, without a bound over all chats. After a restart, or in a morning burst across
//! thousands of groups, the whole backlog then sits in memory while two cores work through it
//! (BENCHMARKS.md: 10,000 tips released at once took the peak RSS past 130 MiB). Telegram
//! keeps undelivered updates for 24 hours, so the backlog is better left there: the
//! [`Bounded`] listener waits for room before it passes on the next update, and each update
//! holds an [`InHand`] token from the root of the handler tree until its handling ends.
//!
//! Updates are still taken in Telegram's order and each chat's in turn; only the fetching
//! waits. The token lives in the update's dependency map, so it is released however the
//! update ends (answered, not matched, failed): there is no path that forgets it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::{BoxStream, StreamExt};
use teloxide::stop::StopToken;
use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use teloxide::update_listeners::{AsUpdateStream, UpdateListener};
use tokio::sync::Notify;

/// How many updates are in hand, and the most there may be.
#[derive(Debug)]
pub struct Backlog {
    pending: AtomicUsize,
    room: Notify,
    limit: usize,
}

impl Backlog {
    pub fn new(limit: usize) -> Arc<Backlog> {
        Arc::new(Backlog { pending: AtomicUsize::new(0), room: Notify::new(), limit: limit.max(1) })
    }

    /// Updates in hand now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits until there is room, then counts one more update in hand. Called by the one
    /// listener only.
    pub async fn admit(&self) {
        loop {
            let room = self.room.notified();
            if self.pending.load(Ordering::Acquire) < self.limit {
                self.pending.fetch_add(1, Ordering::AcqRel);
                return;
            }
            room.await;
        }
    }

    /// The token of an admitted update; dropping it makes room for the next.
    pub fn token(self: &Arc<Self>) -> InHand {
        InHand(self.clone())
    }
}

/// Held by an update from the root of the handler tree until its handling ends.
#[derive(Debug)]
pub struct InHand(Arc<Backlog>);

impl Drop for InHand {
    fn drop(&mut self) {
        let _ = self.0.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.0.room.notify_one();
    }
}

/// An update listener that passes on an update only when the [`Backlog`] has room.
pub struct Bounded<L> {
    inner: L,
    backlog: Arc<Backlog>,
}

impl<L> Bounded<L> {
    pub fn new(inner: L, backlog: Arc<Backlog>) -> Self {
        Bounded { inner, backlog }
    }
}

impl<'a, L> AsUpdateStream<'a> for Bounded<L>
where
    L: UpdateListener + Send + 'static,
    L::Err: Send + 'static,
{
    type StreamErr = L::Err;
    type Stream = BoxStream<'a, Result<Update, L::Err>>;

    fn as_stream(&'a mut self) -> Self::Stream {
        let backlog = self.backlog.clone();
        self.inner
            .as_stream()
            .then(move |item| {
                let backlog = backlog.clone();
                async move {
                    // teloxide drops an update it could not parse before any handler runs,
                    // so such an update takes no room.
                    if matches!(&item, Ok(update) if !matches!(update.kind, UpdateKind::Error(_))) {
                        backlog.admit().await;
                    }
                    item
                }
            })
            .boxed()
    }
}

impl<L> UpdateListener for Bounded<L>
where
    L: UpdateListener + Send + 'static,
    L::Err: Send + 'static,
{
    type Err = L::Err;

    fn stop_token(&mut self) -> StopToken {
        self.inner.stop_token()
    }

    fn hint_allowed_updates(&mut self, hint: &mut dyn Iterator<Item = AllowedUpdate>) {
        self.inner.hint_allowed_updates(hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_listener_waits_while_the_limit_is_in_hand_and_goes_on_when_one_is_done() {
        let backlog = Backlog::new(2);
        backlog.admit().await;
        let first = backlog.token();
        backlog.admit().await;
        let second = backlog.token();
        assert_eq!(backlog.pending(), 2);

        let mut third = std::pin::pin!(backlog.admit());
        assert!(futures::poll!(&mut third).is_pending(), "no room while two are in hand");
        drop(first);
        assert!(futures::poll!(&mut third).is_ready(), "room once one is done");
        assert_eq!(backlog.pending(), 2);
        drop(second);
        assert_eq!(backlog.pending(), 1);
    }

    #[test]
    fn a_token_never_takes_the_count_below_zero() {
        let backlog = Backlog::new(1);
        drop(backlog.token());
        assert_eq!(backlog.pending(), 0);
    }
}
