//! Telegram's sending limits, kept by GCRA rate limiters (`governor`): so many messages a
//! second in one chat, so many a minute in one group, so many a second in all, and a pause
//! for everyone after Telegram answers 429 with `retry_after`.
//!
//! Each send waits for exactly the moment its quota allows and no longer. (teloxide's
//! `Throttle` adaptor, used before, releases its queue on a 250 ms tick, which put a quarter of
//! a second on every reply even when no limit was near; see BENCHMARKS.md.)

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// The limits, from the `[telegram]` section of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PaceLimits {
    /// Messages a second to one chat (private or group).
    pub per_sec_chat: u32,
    /// Messages a minute to one group or channel.
    pub per_min_group: u32,
    /// Messages a second over all chats.
    pub per_sec_overall: u32,
}

/// The shared pacing of every message the Telegram channel sends: replies, alerts and
/// broadcasts alike.
pub struct Pace {
    per_chat: DefaultKeyedRateLimiter<i64>,
    per_group: DefaultKeyedRateLimiter<i64>,
    overall: DefaultDirectRateLimiter,
    /// Until when Telegram asked us to send nothing (429 `retry_after`).
    frozen_until: Mutex<Option<Instant>>,
}

fn quota_per_second(n: u32) -> Quota {
    let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(n).allow_burst(n)
}

impl Pace {
    pub fn new(limits: PaceLimits) -> Pace {
        let per_min = NonZeroU32::new(limits.per_min_group).unwrap_or(NonZeroU32::MIN);
        Pace {
            per_chat: RateLimiter::keyed(quota_per_second(limits.per_sec_chat)),
            per_group: RateLimiter::keyed(Quota::per_minute(per_min).allow_burst(per_min)),
            overall: RateLimiter::direct(quota_per_second(limits.per_sec_overall)),
            frozen_until: Mutex::new(None),
        }
    }

    /// Waits until a message to `chat` may go: after any flood-control pause, within the
    /// chat's own limit (and the group's, for a group, whose ids are negative), then within
    /// the overall limit.
    pub async fn ready(&self, chat: i64) {
        loop {
            let until = *self.frozen_until.lock().expect("pace lock");
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        self.per_chat.until_key_ready(&chat).await;
        if chat < 0 {
            self.per_group.until_key_ready(&chat).await;
        }
        self.overall.until_ready().await;
    }

    /// Telegram answered 429: nothing more goes out for `pause`.
    pub fn freeze(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut frozen = self.frozen_until.lock().expect("pace lock");
        if frozen.is_none_or(|f| f < until) {
            *frozen = Some(until);
        }
    }

    /// Forgets chats whose quota is whole again (call now and then; the keyed state otherwise
    /// grows with every chat ever written to).
    pub fn shrink(&self) {
        self.per_chat.retain_recent();
        self.per_group.retain_recent();
        self.per_chat.shrink_to_fit();
        self.per_group.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_gets_its_burst_and_then_waits_while_other_chats_go_on() {
        let pace = Pace::new(PaceLimits { per_sec_chat: 2, per_min_group: 3, per_sec_overall: 1000 });
        assert!(pace.per_chat.check_key(&42).is_ok() && pace.per_chat.check_key(&42).is_ok());
        assert!(pace.per_chat.check_key(&42).is_err(), "the third message in the same second waits");
        assert!(pace.per_chat.check_key(&43).is_ok(), "another chat has its own quota");
        for _ in 0..3 {
            assert!(pace.per_group.check_key(&-100).is_ok());
        }
        assert!(pace.per_group.check_key(&-100).is_err(), "a group's fourth message in the minute waits");
    }

    #[tokio::test]
    async fn a_flood_control_pause_holds_every_chat_until_it_ends() {
        let pace = Pace::new(PaceLimits { per_sec_chat: 100, per_min_group: 1000, per_sec_overall: 1000 });
        pace.freeze(Duration::from_millis(200));
        pace.freeze(Duration::from_millis(50)); // a shorter pause does not cut the longer one
        let t0 = Instant::now();
        pace.ready(7).await;
        assert!(t0.elapsed() >= Duration::from_millis(200), "{:?}", t0.elapsed());
    }
}
