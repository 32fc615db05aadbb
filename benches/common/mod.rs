//! What the benchmarks share: the fake Bot API's token and answers, command-line flags, a
//! fixed pseudo-random sequence, the test registry's chat and account numbering, and
//! reading a process's memory from /proc. Each bench includes it with `mod common;`.

#![allow(dead_code)] // each bench uses its own part

use axum::response::IntoResponse;

pub mod places;
pub mod seed;

pub const TOKEN: &str = "4242:bench-token";

/// The `getMe` answer of the fake Bot API.
pub const GET_ME: &str = r#"{"id":4242,"is_bot":true,"first_name":"村警","username":"bench_bot","can_join_groups":true,"can_read_all_group_messages":true,"supports_inline_queries":false,"can_connect_to_business":false,"has_main_web_app":false}"#;

/// The `getWebhookInfo` answer: no webhook.
pub const NO_WEBHOOK: &str = r#"{"url":"","has_custom_certificate":false,"pending_update_count":0}"#;

/// A Bot API success with `result`.
pub fn ok(result: &str) -> axum::response::Response {
    ([("content-type", "application/json")], format!(r#"{{"ok":true,"result":{result}}}"#)).into_response()
}

/// A fixed pseudo-random sequence (splitmix64), so every run sees the same inputs.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The supergroup of village i.
pub fn chat_id(village: usize) -> i64 {
    -1_001_000_000_000 - village as i64
}

/// The Telegram account of officer k.
pub fn officer_account(officer: usize) -> i64 {
    900_000_000 + officer as i64
}

/// The value after flag `name`.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

pub fn arg_usize(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}")))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A memory figure of a process in MiB from /proc/PID/status: `VmRSS` (now) or `VmHWM` (peak).
pub fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
