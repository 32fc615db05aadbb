//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default given by the caller).
//! Logs carry ids, intents and lengths, never message text, names or the bot token.

use tracing_subscriber::EnvFilter;

/// How a chat appears in logs: a group by its id, a private chat only as "private" — a
/// private chat's id is the person's account id, and a tipster's must never be logged.
pub fn chat_label(chat_id: i64) -> String {
    if chat_id < 0 { chat_id.to_string() } else { "private".to_string() }
}

/// Installs the global subscriber once; later calls do nothing.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
