//! Telegram's sending limits, kept exactly: so many messages in any second to one chat, so
//! many in any minute to one group, so many in any second over all chats, nothing at all
//! while Telegram's 429 `retry_after` lasts, and no burst when it ends. When several daemons
//! send for one bot, each keeps its share of the bot's budget (the limits divided by the
//! number of live daemons, from their heartbeats), so together they stay within it.
//!
//! Each limit is a sliding window: the times of the last sends are kept, and a message may go
//! when fewer than the limit went in the window before it. (A token bucket, used before, let a
//! full bucket plus the refill through: 21 and more in a minute to one group, and every sender
//! at once after a pause.) Each send waits for exactly the moment the windows allow and no
//! longer, so a reply in a quiet chat goes at once; see BENCHMARKS.md for why teloxide's
//! `Throttle` adaptor was replaced.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Kept between two sends on top of every window, so that a message that travelled faster
/// than the one before it still arrives outside the window Telegram counts.
const SLACK: Duration = Duration::from_millis(50);

/// The limits, from the `[telegram]` section of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PaceLimits {
    /// Messages in any second to one chat (private or group).
    pub per_sec_chat: u32,
    /// Messages in any `group_window` (Telegram: a minute) to one group or channel.
    pub per_min_group: u32,
    /// Messages in any second over all chats.
    pub per_sec_overall: u32,
    /// Telegram's group window, 60 s; only tests shorten it.
    pub group_window: Duration,
}

/// One sliding-window limit: at most `count` sends in any `span`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limit {
    count: usize,
    span: Duration,
}

impl Limit {
    /// This daemon's part of a limit shared by `daemons`: the count divided among them, or
    /// (when there are more daemons than messages) the window stretched.
    fn share(count: u32, span: Duration, daemons: u32) -> Limit {
        let (count, daemons) = (count.max(1), daemons.max(1));
        if count >= daemons {
            Limit { count: (count / daemons) as usize, span: span + SLACK }
        } else {
            Limit { count: 1, span: span * daemons / count + SLACK }
        }
    }

    /// The earliest moment a new send fits, given the past sends in `log` (oldest first).
    fn next_free(&self, log: &VecDeque<Instant>, now: Instant) -> Instant {
        match log.len().checked_sub(self.count) {
            Some(i) => (log[i] + self.span).max(now),
            None => now,
        }
    }
}

/// Drops the sends that no window can count any more.
fn forget_before(log: &mut VecDeque<Instant>, horizon: Instant) {
    while log.front().is_some_and(|t| *t <= horizon) {
        log.pop_front();
    }
}

#[derive(Default)]
struct Windows {
    chats: HashMap<i64, VecDeque<Instant>>,
    groups: HashMap<i64, VecDeque<Instant>>,
    overall: VecDeque<Instant>,
    /// Until when Telegram asked us to send nothing (429 `retry_after`).
    frozen_until: Option<Instant>,
}

/// The shared pacing of every message the Telegram channel sends: replies, alerts and
/// broadcasts alike.
pub struct Pace {
    limits: PaceLimits,
    /// How many daemons share the bot's budget (1 alone); kept by the heartbeat.
    daemons: Arc<AtomicU32>,
    windows: Mutex<Windows>,
}

impl Pace {
    /// A pace for the limits, shared with as many daemons as `daemons` says at each send.
    pub fn new(limits: PaceLimits, daemons: Arc<AtomicU32>) -> Pace {
        Pace { limits, daemons, windows: Mutex::new(Windows::default()) }
    }

    fn shares(&self) -> (Limit, Limit, Limit) {
        let n = self.daemons.load(Ordering::Relaxed);
        let l = &self.limits;
        let second = Duration::from_secs(1);
        (
            Limit::share(l.per_sec_chat, second, n),
            Limit::share(l.per_min_group, l.group_window, n),
            Limit::share(l.per_sec_overall, second, n),
        )
    }

    /// Waits until a message to `chat` may go, and counts it as sent: after any flood-control
    /// pause, within the chat's own limit (and the group's, for a group, whose ids are
    /// negative) and within the overall limit. A pause that begins while this waits is waited
    /// out too.
    pub async fn ready(&self, chat: i64) {
        loop {
            let at = {
                let now = Instant::now();
                let (per_chat, per_group, overall) = self.shares();
                let mut w = self.windows.lock().expect("pace lock");
                let mut at = w.frozen_until.map_or(now, |f| f.max(now));
                let log = w.chats.entry(chat).or_default();
                forget_before(log, now.checked_sub(per_chat.span).unwrap_or(now));
                at = at.max(per_chat.next_free(log, now));
                if chat < 0 {
                    let log = w.groups.entry(chat).or_default();
                    forget_before(log, now.checked_sub(per_group.span).unwrap_or(now));
                    at = at.max(per_group.next_free(log, now));
                }
                forget_before(&mut w.overall, now.checked_sub(overall.span).unwrap_or(now));
                at = at.max(overall.next_free(&w.overall, now));
                if at <= now {
                    w.chats.entry(chat).or_default().push_back(now);
                    if chat < 0 {
                        w.groups.entry(chat).or_default().push_back(now);
                    }
                    w.overall.push_back(now);
                    return;
                }
                at
            };
            tokio::time::sleep_until(at).await;
        }
    }

    /// Telegram answered 429: nothing more goes out for `pause`, and after it the sends
    /// resume at the overall rate, one after another, not all at once.
    pub fn freeze(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let (_, _, overall) = self.shares();
        let mut w = self.windows.lock().expect("pace lock");
        if w.frozen_until.is_some_and(|f| f >= until) {
            return;
        }
        w.frozen_until = Some(until);
        // The overall window is full just before the pause ends, one send every
        // span/count: the first send after it goes at once, the next ones at the steady rate.
        let step = overall.span / overall.count.max(1) as u32;
        let start = until.checked_sub(overall.span).unwrap_or(until);
        w.overall = (0..overall.count as u32).map(|i| start + step * i).collect();
    }

    /// Forgets chats that no window counts any more (call now and then; the state otherwise
    /// grows with every chat ever written to).
    pub fn shrink(&self) {
        let now = Instant::now();
        let (per_chat, per_group, _) = self.shares();
        let mut w = self.windows.lock().expect("pace lock");
        let old = |span: Duration| now.checked_sub(span).unwrap_or(now);
        w.chats.retain(|_, log| log.back().is_some_and(|t| *t > old(per_chat.span)));
        w.groups.retain(|_, log| log.back().is_some_and(|t| *t > old(per_group.span)));
        w.chats.shrink_to_fit();
        w.groups.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_sec_chat: u32, per_min_group: u32, per_sec_overall: u32) -> PaceLimits {
        PaceLimits { per_sec_chat, per_min_group, per_sec_overall, group_window: Duration::from_secs(60) }
    }

    fn alone(l: PaceLimits) -> Pace {
        Pace::new(l, Arc::new(AtomicU32::new(1)))
    }

    /// The most sends of `times` in any window of `span` that starts at a send.
    fn most_in_any(times: &[Instant], span: Duration) -> usize {
        times.iter().map(|&t0| times.iter().filter(|&&t| t >= t0 && t < t0 + span).count()).max().unwrap_or(0)
    }

    /// Sends `n` messages to each chat of `chats` at once, each from its own task, and returns
    /// when each went, per chat.
    async fn send_all(pace: Arc<Pace>, chats: &[i64], n: usize) -> HashMap<i64, Vec<Instant>> {
        let mut tasks = Vec::new();
        for &chat in chats {
            for _ in 0..n {
                let pace = pace.clone();
                tasks.push(tokio::spawn(async move {
                    pace.ready(chat).await;
                    (chat, Instant::now())
                }));
            }
        }
        let mut out: HashMap<i64, Vec<Instant>> = HashMap::new();
        for t in tasks {
            let (chat, at) = t.await.unwrap();
            out.entry(chat).or_default().push(at);
        }
        for times in out.values_mut() {
            times.sort();
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn thirty_notices_to_one_group_go_twenty_in_any_minute_and_the_rest_after_it() {
        let pace = Arc::new(alone(limits(1000, 20, 1000)));
        let t0 = Instant::now();
        let sent = send_all(pace, &[-100], 30).await;
        let times = &sent[&-100];
        assert_eq!(most_in_any(times, Duration::from_secs(60)), 20);
        assert!(times[19] - t0 < Duration::from_secs(1), "the first twenty go at once");
        assert!(times[20] - t0 >= Duration::from_secs(60), "the 21st waits for the minute: {:?}", times[20] - t0);
        assert!(times[29] - t0 < Duration::from_secs(62), "and the rest go as soon as it ends");
    }

    #[tokio::test(start_paused = true)]
    async fn one_chat_gets_one_message_a_second_while_other_chats_go_on() {
        let pace = Arc::new(alone(limits(1, 1000, 1000)));
        let t0 = Instant::now();
        let sent = send_all(pace, &[7, 8], 5).await;
        for chat in [7, 8] {
            let times = &sent[&chat];
            assert_eq!(most_in_any(times, Duration::from_secs(1)), 1, "chat {chat}");
            assert!(times[4] - t0 < Duration::from_secs(5) + 5 * SLACK, "{:?}", times[4] - t0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_control_pause_holds_everything_and_ends_without_a_burst() {
        let pace = Arc::new(alone(limits(1000, 1000, 30)));
        pace.freeze(Duration::from_secs(5));
        pace.freeze(Duration::from_secs(1)); // a shorter pause does not cut the longer one
        let t0 = Instant::now();
        let chats: Vec<i64> = (1..=60).collect();
        let sent = send_all(pace, &chats, 1).await;
        let times: Vec<Instant> = {
            let mut all: Vec<Instant> = sent.values().flatten().copied().collect();
            all.sort();
            all
        };
        assert!(times[0] - t0 >= Duration::from_secs(5), "nothing during the pause");
        let most = most_in_any(&times, Duration::from_secs(1));
        assert!(most <= 30, "{most} in one second after the pause");
        let first_tenth = times.iter().filter(|&&t| t < times[0] + Duration::from_millis(100)).count();
        assert!(first_tenth <= 4, "{first_tenth} sends in the first 100 ms after the pause: a burst");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_that_begins_while_a_send_waits_is_waited_out() {
        let pace = Arc::new(alone(limits(1, 1000, 1000)));
        pace.ready(5).await;
        let waiting = {
            let pace = pace.clone();
            tokio::spawn(async move {
                pace.ready(5).await; // waits for the chat's second
                Instant::now()
            })
        };
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        pace.freeze(Duration::from_secs(10));
        let went = waiting.await.unwrap();
        assert!(went - t0 >= Duration::from_secs(10), "sent {:?} into a 10 s pause", went - t0);
    }

    #[tokio::test(start_paused = true)]
    async fn two_daemons_each_keep_half_of_the_bots_budget() {
        let daemons = Arc::new(AtomicU32::new(2));
        let (a, b) = (
            Arc::new(Pace::new(limits(1000, 20, 30), daemons.clone())),
            Arc::new(Pace::new(limits(1000, 20, 30), daemons.clone())),
        );
        let (sa, sb) = tokio::join!(send_all(a, &[-1], 20), send_all(b, &[-1], 20));
        let mut both: Vec<Instant> = sa[&-1].iter().chain(&sb[&-1]).copied().collect();
        both.sort();
        assert_eq!(most_in_any(&both, Duration::from_secs(60)), 20, "the group's 20 a minute, between them");
        let chats: Vec<i64> = (1..=60).collect();
        let (a, b) = (
            Arc::new(Pace::new(limits(1000, 1000, 30), daemons.clone())),
            Arc::new(Pace::new(limits(1000, 1000, 30), daemons)),
        );
        let (sa, sb) = tokio::join!(send_all(a, &chats, 1), send_all(b, &chats, 1));
        let mut all: Vec<Instant> = sa.values().chain(sb.values()).flatten().copied().collect();
        all.sort();
        assert_eq!(most_in_any(&all, Duration::from_secs(1)), 30, "30 a second for the bot, not each");
    }

    #[test]
    fn a_limit_smaller_than_the_daemons_stretches_its_window() {
        assert_eq!(
            Limit::share(1, Duration::from_secs(1), 3),
            Limit { count: 1, span: Duration::from_secs(3) + SLACK }
        );
        assert_eq!(
            Limit::share(20, Duration::from_secs(60), 3),
            Limit { count: 6, span: Duration::from_secs(60) + SLACK }
        );
        assert_eq!(Limit::share(30, Duration::from_secs(1), 0).count, 30, "no heartbeat yet counts as one");
    }
}
