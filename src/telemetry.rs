//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default given by the caller).
//! Logs carry ids, intents and lengths, never message text, names or the bot token.

use tracing_subscriber::EnvFilter;

/// How a chat appears in logs: a group by its id, a private chat only as "private" — a
/// private chat's id is the person's account id, and a tipster's must never be logged.
pub fn chat_label(chat_id: i64) -> String {
    if chat_id < 0 { chat_id.to_string() } else { "private".to_string() }
}

/// `s` on one line: CR, LF and other control characters become spaces, so text that came
/// from outside (an error's description, a user-supplied value) cannot forge log lines.
pub fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Installs the global subscriber once; later calls do nothing. Colours only on a terminal
/// (and never with `NO_COLOR` set): a log file or a pipe gets plain text.
pub fn init(default_filter: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_new_log_line() {
        assert_eq!(one_line("ok\r\nERROR forged line\tx"), "ok  ERROR forged line x");
        assert_eq!(chat_label(5_123_456_789), "private");
        assert_eq!(chat_label(-100_123), "-100123");
    }
}
