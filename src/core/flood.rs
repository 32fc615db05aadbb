//! Flood control for the answers triage gives on its own (not for commands): at most N
//! answers per group per minute, the same message repeated in a group is answered once,
//! and the 12345 pointer is given once per person and topic.
//!
//! The state is in memory, per daemon: hashes of normalised texts and timestamps, never
//! the texts themselves, pruned as they age. A restart forgets it, which at worst means
//! one more answer.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// The limits, from `[triage]` in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct FloodLimits {
    /// Most answers in one group within a minute.
    pub answers_per_group_per_minute: usize,
    /// How long an identical message in the same group is not answered again.
    pub repeat_window_ms: i64,
    /// How long the 12345 pointer is not given again to the same person for the same topic.
    pub non_police_repeat_ms: i64,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits { answers_per_group_per_minute: 6, repeat_window_ms: 10 * 60_000, non_police_repeat_ms: 86_400_000 }
    }
}

type ChatKey = (&'static str, i64);

#[derive(Default)]
struct State {
    /// Times of the answers given in each group during the last minute.
    answers: HashMap<ChatKey, VecDeque<i64>>,
    /// (hash of the normalised text, time, message id) of recent actionable messages in
    /// each group.
    recent: HashMap<ChatKey, VecDeque<(u64, i64, i64)>>,
    /// Hash of (person, topic) → when they were last pointed to 12345.
    told: HashMap<u64, i64>,
    /// Calls since the last sweep of idle entries.
    calls: u32,
}

/// See the module documentation.
pub struct FloodGuard {
    limits: FloodLimits,
    state: Mutex<State>,
}

fn hash_of(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl FloodGuard {
    pub fn new(limits: FloodLimits) -> FloodGuard {
        FloodGuard { limits, state: Mutex::new(State::default()) }
    }

    fn with_state<T>(&self, now: i64, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.calls += 1;
        if state.calls >= 1024 {
            state.calls = 0;
            let (minute, window, told) =
                (now - 60_000, now - self.limits.repeat_window_ms, now - self.limits.non_police_repeat_ms);
            state.answers.retain(|_, q| q.back().is_some_and(|t| *t > minute));
            state.recent.retain(|_, q| q.back().is_some_and(|(_, t, _)| *t > window));
            state.told.retain(|_, t| *t > told);
        }
        f(&mut state)
    }

    /// The message that said the same (normalised) text in this group within the repeat
    /// window, if one did; remembers this one (`message_id`) otherwise.
    pub fn repeat_of(
        &self,
        platform: &'static str,
        chat_id: i64,
        normalised: &str,
        message_id: i64,
        now: i64,
    ) -> Option<i64> {
        let h = hash_of(normalised);
        let since = now - self.limits.repeat_window_ms;
        self.with_state(now, |s| {
            let q = s.recent.entry((platform, chat_id)).or_default();
            while q.front().is_some_and(|(_, t, _)| *t <= since) {
                q.pop_front();
            }
            let seen = q.iter().find(|(x, _, _)| *x == h).map(|(_, _, id)| *id);
            if seen.is_none() {
                q.push_back((h, now, message_id));
            }
            seen
        })
    }

    /// Takes one answer from the group's budget for this minute; `false` when it is spent.
    pub fn take_answer(&self, platform: &'static str, chat_id: i64, now: i64) -> bool {
        let since = now - 60_000;
        let max = self.limits.answers_per_group_per_minute;
        self.with_state(now, |s| {
            let q = s.answers.entry((platform, chat_id)).or_default();
            while q.front().is_some_and(|t| *t <= since) {
                q.pop_front();
            }
            if q.len() >= max {
                return false;
            }
            q.push_back(now);
            true
        })
    }

    /// Whether this person has not been pointed to 12345 for this topic lately; remembers
    /// that they now have.
    pub fn first_pointer(&self, platform: &'static str, user: i64, topic: &str, now: i64) -> bool {
        let key = hash_of((platform, user, topic));
        let since = now - self.limits.non_police_repeat_ms;
        self.with_state(now, |s| match s.told.get(&key) {
            Some(t) if *t > since => false,
            _ => {
                s.told.insert(key, now);
                true
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_gets_at_most_its_answers_per_minute_then_more_a_minute_later() {
        let g = FloodGuard::new(FloodLimits { answers_per_group_per_minute: 2, ..FloodLimits::default() });
        assert!(g.take_answer("t", -1, 0));
        assert!(g.take_answer("t", -1, 10));
        assert!(!g.take_answer("t", -1, 20));
        assert!(g.take_answer("t", -2, 20), "another group has its own budget");
        assert!(g.take_answer("t", -1, 60_001));
    }

    #[test]
    fn the_same_text_in_the_same_group_is_a_repeat_until_the_window_passes() {
        let g = FloodGuard::new(FloodLimits::default());
        assert_eq!(g.repeat_of("t", -1, "着火了", 7, 0), None);
        assert_eq!(g.repeat_of("t", -1, "着火了", 8, 1_000), Some(7), "points to the first");
        assert_eq!(g.repeat_of("t", -2, "着火了", 9, 1_000), None);
        assert_eq!(g.repeat_of("t", -1, "着火了", 10, 10 * 60_000 + 1), None);
    }

    #[test]
    fn the_hotline_pointer_is_given_once_per_person_and_topic() {
        let g = FloodGuard::new(FloodLimits::default());
        assert!(g.first_pointer("t", 7, "streetlight", 0));
        assert!(!g.first_pointer("t", 7, "streetlight", 5_000));
        assert!(g.first_pointer("t", 7, "rubbish", 5_000));
        assert!(g.first_pointer("t", 8, "streetlight", 5_000));
        assert!(g.first_pointer("t", 7, "streetlight", 86_400_001));
    }
}
