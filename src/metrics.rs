//! What the daemon counts for `/metrics` (Prometheus text format): updates by intent,
//! replies, escalations, Telegram errors by kind, the handling latency, and — read from the
//! database at each scrape — deliveries by state.
//!
//! Labels never carry a chat, a person or any text: intents, states and error kinds only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::DeliveryState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntentLabel {
    pub intent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// The daemon's metrics. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    pub updates: Family<IntentLabel, Counter>,
    pub duplicate_updates: Counter,
    pub replies: Counter,
    pub escalations: Counter,
    pub telegram_errors: Family<KindLabel, Counter>,
    pub handle_seconds: Histogram,
    pub deliveries: Family<StateLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("cunjing");
        let updates = Family::<IntentLabel, Counter>::default();
        registry.register("updates", "Updates handled, by what the message was taken for", updates.clone());
        let duplicate_updates = Counter::default();
        registry.register(
            "duplicate_updates",
            "Updates skipped because another daemon (or an earlier run) handled them",
            duplicate_updates.clone(),
        );
        let replies = Counter::default();
        registry.register("replies", "Messages sent in answer to updates and timers", replies.clone());
        let escalations = Counter::default();
        registry.register(
            "escalations",
            "Tips handed to the next officer because nobody acknowledged",
            escalations.clone(),
        );
        let telegram_errors = Family::<KindLabel, Counter>::default();
        registry.register("telegram_errors", "Telegram requests that failed, by kind", telegram_errors.clone());
        let handle_seconds = Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        registry.register(
            "handle_seconds",
            "Time from an update's arrival to its answer being sent",
            handle_seconds.clone(),
        );
        let deliveries = Family::<StateLabel, Gauge>::default();
        registry.register("deliveries", "Broadcast delivery rows by state (read at each scrape)", deliveries.clone());
        Metrics {
            registry,
            updates,
            duplicate_updates,
            replies,
            escalations,
            telegram_errors,
            handle_seconds,
            deliveries,
        }
    }
}

impl Metrics {
    pub fn update(&self, intent: &str) {
        self.updates.get_or_create(&IntentLabel { intent: intent.to_string() }).inc();
    }

    pub fn telegram_error(&self, kind: &str) {
        self.telegram_errors.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
    }

    /// Sets the delivery gauges (every known state, zero when absent).
    pub fn set_deliveries(&self, counts: &[(DeliveryState, i64)]) {
        for &state in DeliveryState::ALL {
            let n = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
            self.deliveries.get_or_create(&StateLabel { state: state.to_string() }).set(n);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_format_with_their_labels() {
        let m = Metrics::default();
        m.update("contact");
        m.update("contact");
        m.telegram_error("rate_limited");
        m.handle_seconds.observe(0.003);
        m.set_deliveries(&[(DeliveryState::Sent, 7)]);
        let text = m.encode();
        assert!(text.contains("cunjing_updates_total{intent=\"contact\"} 2"), "{text}");
        assert!(text.contains("cunjing_telegram_errors_total{kind=\"rate_limited\"} 1"), "{text}");
        assert!(text.contains("cunjing_deliveries{state=\"sent\"} 7"), "{text}");
        assert!(text.contains("cunjing_deliveries{state=\"pending\"} 0"), "{text}");
        assert!(text.contains("cunjing_handle_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
