//! End-to-end load benchmark (issue #6): the real `cunjing` daemon binary against a fast fake
//! Bot API on 127.0.0.1, beside the bare teloxide echo bot of `examples/echo.rs` (the
//! ceiling), in alternating runs on the same machine.
//!
//! The fake holds N pre-serialised updates over G village supergroups and releases them all
//! at once; it honours offsets and long polling, answers `sendMessage` with a full `Message`,
//! logs nothing, and records when each update was served and when each reply arrived. For each
//! bot it prints updates/s (median of the runs), p50/p99 from an update being served to its
//! reply arriving, CPU seconds and peak RSS, and the ratio cunjing / echo.
//!
//! ```sh
//! cargo build --release --bin cunjing --example echo
//! cargo bench --bench load -- [--updates 20000] [--groups 1000] [--runs 3]
//! ```
//!
//! Workload (a) for now: every message is a contact question ("俺村片警是谁啊"), so each needs
//! a registry lookup and a reply (the contact card).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::response::IntoResponse;
use tokio::sync::Notify;

const TOKEN: &str = "4242:bench-token";

struct Fake {
    /// Pre-serialised updates, index = update_id - 1.
    updates: Vec<String>,
    released: Mutex<Option<Instant>>,
    arrived: Notify,
    /// When each update was first served.
    served: Mutex<Vec<Option<Instant>>>,
    /// Replies per chat, in arrival order.
    replies: Mutex<HashMap<i64, Vec<Instant>>>,
    reply_count: std::sync::atomic::AtomicUsize,
    polled: std::sync::atomic::AtomicBool,
}

fn chat_id(group: usize) -> i64 {
    -1_001_000_000_000 - group as i64
}

impl Fake {
    fn new(updates: usize, groups: usize, text: &str) -> Fake {
        let updates: Vec<String> = (0..updates)
            .map(|i| {
                let chat = chat_id(i % groups);
                let from = 100_000 + i as i64;
                format!(
                    r#"{{"update_id":{},"message":{{"message_id":{},"date":1763880000,"chat":{{"id":{chat},"type":"supergroup","title":"村民群"}},"from":{{"id":{from},"is_bot":false,"first_name":"村民"}},"text":"{text}"}}}}"#,
                    i + 1,
                    i / groups + 1,
                )
            })
            .collect();
        let n = updates.len();
        Fake {
            updates,
            released: Mutex::new(None),
            arrived: Notify::new(),
            served: Mutex::new(vec![None; n]),
            replies: Mutex::default(),
            reply_count: Default::default(),
            polled: Default::default(),
        }
    }
}

fn ok(result: &str) -> axum::response::Response {
    ([("content-type", "application/json")], format!(r#"{{"ok":true,"result":{result}}}"#)).into_response()
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    UrlPath((_bot, method)): UrlPath<(String, String)>,
    body: Bytes,
) -> axum::response::Response {
    let params: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(
            r#"{"id":4242,"is_bot":true,"first_name":"村警","username":"bench_bot","can_join_groups":true,"can_read_all_group_messages":true,"supports_inline_queries":false,"can_connect_to_business":false,"has_main_web_app":false}"#,
        ),
        "getupdates" => {
            fake.polled.store(true, std::sync::atomic::Ordering::SeqCst);
            let offset = params["offset"].as_i64().unwrap_or(0).max(1) as usize;
            let limit = params["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
            let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let notified = fake.arrived.notified();
                if fake.released.lock().unwrap().is_some() && offset <= fake.updates.len() {
                    let end = (offset - 1 + limit).min(fake.updates.len());
                    let now = Instant::now();
                    let mut served = fake.served.lock().unwrap();
                    for s in &mut served[offset - 1..end] {
                        s.get_or_insert(now);
                    }
                    return ok(&format!("[{}]", fake.updates[offset - 1..end].join(",")));
                }
                if timeout.is_zero() || tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return ok("[]");
                }
            }
        }
        "sendmessage" => {
            let chat = params["chat_id"].as_i64().unwrap_or(0);
            let n = fake.reply_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            fake.replies.lock().unwrap().entry(chat).or_default().push(Instant::now());
            ok(&format!(
                r#"{{"message_id":{},"date":1763880000,"chat":{{"id":{chat},"type":"supergroup","title":"村民群"}},"from":{{"id":4242,"is_bot":true,"first_name":"村警","username":"bench_bot"}},"text":"ok"}}"#,
                1_000_000 + n
            ))
        }
        "getchatmember" => ok(r#"{"status":"member","user":{"id":1,"is_bot":false,"first_name":"x"}}"#),
        "getmycommands" => ok("[]"),
        _ => ok("true"),
    }
}

async fn serve(fake: Arc<Fake>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route("/{bot}/{method}", axum::routing::post(handle).get(handle)).with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// CPU seconds (user + system) of a process so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of a process in MiB, from /proc.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct RunResult {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s: f64,
    rss_mib: f64,
}

/// One run: start the bot, wait for its first poll, release the updates, wait for every reply.
async fn run(bot: &Path, env: &[(String, String)], updates: usize, groups: usize) -> RunResult {
    let fake = Arc::new(Fake::new(updates, groups, "俺村片警是谁啊"));
    let port = serve(fake.clone()).await;
    let mut cmd = std::process::Command::new(bot);
    cmd.env_clear()
        .env("TELOXIDE_TOKEN", TOKEN)
        .env("TELOXIDE_API_URL", format!("http://127.0.0.1:{port}/"))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child =
        cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}; build it first (see the module docs)", bot.display()));
    let pid = child.id();
    while !fake.polled.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_before = cpu_seconds(pid);
    let t0 = Instant::now();
    *fake.released.lock().unwrap() = Some(t0);
    fake.arrived.notify_waiters();
    let deadline = t0 + Duration::from_secs(300);
    loop {
        let got = fake.reply_count.load(std::sync::atomic::Ordering::SeqCst);
        if got >= updates {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{}: {got} of {updates} replies within 5 minutes", bot.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds(pid) - cpu_before;
    let rss_mib = peak_rss_mib(pid);
    let _ = child.kill();
    let _ = child.wait();
    // The k-th reply in a chat answers its k-th update (each bot answers a chat's updates in order).
    let served = fake.served.lock().unwrap();
    let replies = fake.replies.lock().unwrap();
    let mut latencies: Vec<f64> = Vec::with_capacity(updates);
    for g in 0..groups {
        let chat = chat_id(g);
        let in_chat: Vec<Instant> = (g..updates).step_by(groups).filter_map(|i| served[i]).collect();
        for (s, r) in in_chat.iter().zip(replies.get(&chat).map(Vec::as_slice).unwrap_or(&[])) {
            latencies.push(r.saturating_duration_since(*s).as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    RunResult { per_sec: updates as f64 / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99), cpu_s, rss_mib }
}

/// An SQLite database with one station, G villages (each with a resident officer) and a
/// bound supergroup per village.
async fn registry(dir: &Path, groups: usize) -> String {
    let csv = dir.join("registry");
    std::fs::create_dir_all(&csv).unwrap();
    let offices = groups.div_ceil(20);
    let w = |name: &str, text: String| std::fs::write(csv.join(name), text).unwrap();
    w("stations.csv", "code,name,duty_phone,address\nBENCH,压测派出所,0371-62581110,某路1号\n".into());
    let mut s = String::from("code,station,name,kind,address,hours,phone\n");
    for o in 0..offices {
        s += &format!("O{o:04},BENCH,第{o}警务室,office,地址,每天,0371-6258{:04}\n", o % 10_000);
    }
    w("offices.csv", s);
    let (mut v, mut f, mut a) = (
        String::from("code,name,kind,office,households,population\n"),
        String::from("badge,name,kind,phone,station\n"),
        String::from("village,badge,role,since,until\n"),
    );
    for g in 0..groups {
        v += &format!("V{g:06},第{g}村,village,O{:04},500,2000\n", g / 20);
        f += &format!("P{g:06},民警{g},police,139{:08},BENCH\n", g);
        a += &format!("V{g:06},P{g:06},resident,2024-01-01,\n");
    }
    w("villages.csv", v);
    w("officers.csv", f);
    w("assignments.csv", a);
    let url = format!("sqlite://{}", dir.join("bench.sqlite").display());
    let store = cunjing::store::Store::connect(&cunjing::store::StoreOptions {
        url: url.clone(),
        max_connections: 1,
        busy_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap();
    let today = chrono::Utc::now().date_naive();
    cunjing::registry::import_dir(&store, &csv, today).await.map_err(|e| e.to_string()).unwrap();
    for village in store.all_villages().await.unwrap() {
        let g: usize = village.code[1..].parse().unwrap();
        store.bind_chat_to_village("telegram", chat_id(g), "村民群", village.id, None).await.unwrap();
    }
    store.close().await;
    url
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let updates = arg("--updates", 20_000);
    let groups = arg("--groups", 1_000);
    let runs = arg("--runs", 3).max(1);
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release");
    let echo = target.join("examples/echo");
    let daemon = target.join("cunjing");
    let dir = tempfile::tempdir().unwrap();
    let url = registry(dir.path(), groups).await;
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bot-config/cunjing.toml");
    let cunjing_env: Vec<(String, String)> = [
        ("CUNJING_CONFIG", config.to_string_lossy().to_string()),
        ("DATABASE_URL", url),
        ("CUNJING__TELEGRAM__POLL_TIMEOUT_SECS", "10".into()),
        ("CUNJING__TELEGRAM__MESSAGES_PER_SEC_CHAT", "1000000".into()),
        ("CUNJING__TELEGRAM__MESSAGES_PER_MIN_GROUP", "1000000".into()),
        ("CUNJING__TELEGRAM__MESSAGES_PER_SEC_OVERALL", "1000000".into()),
        ("CUNJING__TRIAGE__REPEAT_WINDOW_MINUTES", "0".into()),
        ("CUNJING__TRIAGE__MAX_ANSWERS_PER_GROUP_PER_MINUTE", "1000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    println!("workload (a) contact questions: {updates} updates over {groups} groups, {runs} alternating runs");
    let (mut e, mut c) = (Vec::new(), Vec::new());
    let no_env: Vec<(String, String)> = Vec::new();
    let bots = [("echo", &echo, &no_env), ("cunjing", &daemon, &cunjing_env)];
    for i in 0..runs {
        for (name, bot, env) in &bots {
            let r = run(bot, env, updates, groups).await;
            println!(
                "  run {} {name:<7} {:>8.0}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  cpu {:>5.2} s  rss {:>5.1} MiB",
                i + 1,
                r.per_sec,
                r.p50_ms,
                r.p99_ms,
                r.cpu_s,
                r.rss_mib
            );
            if *name == "echo" { e.push(r) } else { c.push(r) }
        }
    }
    let summary = |name: &str, rs: &[RunResult]| {
        let per_sec = median(rs.iter().map(|r| r.per_sec).collect());
        println!(
            "{name:<8} median {:>8.0} updates/s  p50 {:>7.1} ms  p99 {:>7.1} ms  cpu {:>5.2} s  peak rss {:>5.1} MiB",
            per_sec,
            median(rs.iter().map(|r| r.p50_ms).collect()),
            median(rs.iter().map(|r| r.p99_ms).collect()),
            median(rs.iter().map(|r| r.cpu_s).collect()),
            rs.iter().map(|r| r.rss_mib).fold(0.0, f64::max),
        );
        per_sec
    };
    let echo_rate = summary("echo", &e);
    let cunjing_rate = summary("cunjing", &c);
    println!("ratio cunjing / echo: {:.2}", cunjing_rate / echo_rate);
}
