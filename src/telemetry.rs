//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default given by the caller).
//! Logs carry ids, intents and lengths, never message text, names or the bot token.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
