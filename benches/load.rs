//! End-to-end load benchmark (issue #6): the real `cunjing` daemon binary against a fast fake
//! Bot API on 127.0.0.1, beside the bare teloxide echo bot of `examples/echo.rs` (the
//! ceiling), in alternating runs on the same machine.
//!
//! The fake holds N pre-serialised updates over G village supergroups and releases them all
//! at once (or, with `--rate R`, R a second); it honours offsets and long polling, answers
//! `sendMessage` with a full `Message`, logs nothing, and records when each update was served
//! and when the reply to it (by `reply_parameters`) arrived. For each bot it prints updates/s
//! (median of the runs), p50/p99 from an update being served to its reply arriving, CPU
//! seconds and peak RSS, and the ratio cunjing / echo. With `--half` it then runs both bots
//! at half cunjing's measured rate and prints the latencies there.
//!
//! ```sh
//! cargo build --profile production --bin cunjing --example echo
//! cargo bench --bench load -- [--workload a|b|c|all] [--updates 20000] [--groups 1000] [--runs 3] [--half]
//! cargo bench --bench load -- --broadcast 46000 [--sample 600]
//! ```
//!
//! With `--postgres SERVER` (e.g. `postgres://postgres@127.0.0.1:5432`) the daemon runs on a
//! fresh database `cunjing_bench` made on that server for each workload (dropped and made
//! again: use a server where that name is free) instead of a fresh SQLite file.
//!
//! Variables `CUNJING__SECTION__KEY` (configuration) and `MIMALLOC_…` (the allocator) in the
//! bench's environment are passed to the daemon, to compare settings.
//!
//! `BENCH_DB_CONNECTIONS` sets the daemon's pool size (8); `BENCH_RUST_LOG` and
//! `BENCH_LOG_FILE` keep its log (e.g. `sqlx=debug`, every statement with its time). Each
//! run releases its updates once the daemon logs that its registry is in memory; with
//! `--cold`, at its first poll instead, while it is still loading the registry (a restart
//! into a backlog).
//!
//! `--broadcast N` measures a warning to N bound groups instead: queued with
//! `cunjing broadcast send` (which states the plan's time), delivered by the running daemon,
//! first with no rate limit (the internal speed, sends/s from the first send to the last),
//! then to a sample of groups at Telegram's 30 messages/s (the time taken against the plan's).
//!
//! Workloads: (a) contact questions in the groups, each needing a registry lookup and the
//! contact card; (b) tips sent in the groups with `/tip …`, each committed and answered with
//! a pointer in the group, a receipt to the tipster and the card to the village's officer;
//! (c) a group mix: 80 % chatter that needs no answer, 10 % contact questions, 8 % tips told
//! in passing (answered with the private-report button), 2 % emergencies (answered with
//! 110, the officer alerted). In (c) each group's last message is a contact question, so the
//! run ends when every group's last answer is in. The echo bot answers every message in
//! every workload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use tokio::sync::Notify;

mod common;

use common::{TOKEN, arg, arg_usize, chat_id, median, officer_account, ok, splitmix};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Chatter,
    Contact,
    /// Told in passing in the group: answered with the private-report button.
    TipInPassing,
    /// `/tip …` in the group: recorded, receipt and officer's card.
    TipCommand,
    Emergency,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Chatter => "今天集上的白菜真便宜，大家去看看",
            Kind::Contact => "俺村片警是谁啊",
            Kind::TipInPassing => "俺家电动车昨晚被偷了",
            Kind::TipCommand => "/tip 村口小卖部门口有人卖假药",
            Kind::Emergency => "有人在村口打架了，快来人",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    A,
    B,
    C,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::A => "(a) contact questions",
            Workload::B => "(b) tips",
            Workload::C => "(c) group mix",
        }
    }

    /// The kind of each update, in order; update i goes to group i % groups.
    fn kinds(self, updates: usize, groups: usize) -> Vec<Kind> {
        (0..updates)
            .map(|i| match self {
                Workload::A => Kind::Contact,
                Workload::B => Kind::TipCommand,
                Workload::C if i + groups >= updates => Kind::Contact,
                Workload::C => match splitmix(i as u64) % 100 {
                    0..80 => Kind::Chatter,
                    80..90 => Kind::Contact,
                    90..98 => Kind::TipInPassing,
                    _ => Kind::Emergency,
                },
            })
            .collect()
    }
}

/// What a bot is expected to send for a run to be complete: replies in the groups and
/// messages to private chats (receipts, officers' cards and alerts).
fn expected(echo: bool, kinds: &[Kind]) -> (usize, usize) {
    if echo {
        return (kinds.len(), 0);
    }
    let count = |k: Kind| kinds.iter().filter(|x| **x == k).count();
    (kinds.len() - count(Kind::Chatter), 2 * count(Kind::TipCommand) + count(Kind::Emergency))
}

struct Fake {
    /// Pre-serialised updates, index = update_id - 1.
    updates: Vec<String>,
    groups: usize,
    /// Updates released a second (0: all at once).
    rate: f64,
    released: Mutex<Option<Instant>>,
    arrived: Notify,
    /// When each update was first served.
    served: Mutex<Vec<Option<Instant>>>,
    /// Served → reply, in milliseconds, for every reply that names the update it answers.
    latencies: Mutex<Vec<f64>>,
    group_replies: AtomicUsize,
    private_sends: AtomicUsize,
    polled: AtomicBool,
    /// When the first and the latest message of any kind arrived.
    sends: Mutex<Option<(Instant, Instant)>>,
}

fn group_of(chat: i64) -> usize {
    (-1_001_000_000_000 - chat) as usize
}

impl Fake {
    fn new(kinds: &[Kind], groups: usize, rate: f64) -> Fake {
        let updates: Vec<String> = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let chat = chat_id(i % groups);
                let from = 100_000 + i as i64;
                format!(
                    r#"{{"update_id":{},"message":{{"message_id":{},"date":1763880000,"chat":{{"id":{chat},"type":"supergroup","title":"村民群"}},"from":{{"id":{from},"is_bot":false,"first_name":"村民"}},"text":"{}"}}}}"#,
                    i + 1,
                    i / groups + 1,
                    kind.text(),
                )
            })
            .collect();
        let n = updates.len();
        Fake {
            updates,
            groups,
            rate,
            released: Mutex::new(None),
            arrived: Notify::new(),
            served: Mutex::new(vec![None; n]),
            latencies: Mutex::default(),
            group_replies: AtomicUsize::new(0),
            private_sends: AtomicUsize::new(0),
            polled: AtomicBool::new(false),
            sends: Mutex::new(None),
        }
    }

    /// How many updates are released by now, and when the next one will be.
    fn available(&self, now: Instant) -> (usize, Option<Instant>) {
        let Some(t0) = *self.released.lock().unwrap() else { return (0, None) };
        let n = self.updates.len();
        if self.rate <= 0.0 {
            return (n, None);
        }
        let avail = ((now - t0).as_secs_f64() * self.rate).floor() as usize;
        let avail = avail.min(n);
        let next = (avail < n).then(|| t0 + Duration::from_secs_f64((avail + 1) as f64 / self.rate));
        (avail, next)
    }
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    UrlPath((_bot, method)): UrlPath<(String, String)>,
    body: Bytes,
) -> axum::response::Response {
    let params: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(common::GET_ME),
        "getupdates" => {
            fake.polled.store(true, Ordering::SeqCst);
            let offset = params["offset"].as_i64().unwrap_or(0).max(1) as usize;
            let limit = params["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
            let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let notified = fake.arrived.notified();
                let now = Instant::now();
                let (avail, next) = fake.available(now);
                if offset <= avail {
                    let end = (offset - 1 + limit).min(avail);
                    let mut served = fake.served.lock().unwrap();
                    for s in &mut served[offset - 1..end] {
                        s.get_or_insert(now);
                    }
                    return ok(&format!("[{}]", fake.updates[offset - 1..end].join(",")));
                }
                if timeout.is_zero() {
                    return ok("[]");
                }
                let wake = next.map_or(deadline, |n| tokio::time::Instant::from_std(n).min(deadline));
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(wake) => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    return ok("[]");
                }
            }
        }
        "sendmessage" => {
            let now = Instant::now();
            let first = fake.sends.lock().unwrap().map_or(now, |(first, _)| first);
            *fake.sends.lock().unwrap() = Some((first, now));
            let chat = params["chat_id"].as_i64().unwrap_or(0);
            if chat < 0 {
                let n = fake.group_replies.fetch_add(1, Ordering::SeqCst);
                if let Some(message_id) = params["reply_parameters"]["message_id"].as_u64() {
                    let index = (message_id as usize - 1) * fake.groups + group_of(chat);
                    if let Some(Some(served)) = fake.served.lock().unwrap().get(index) {
                        let ms = now.saturating_duration_since(*served).as_secs_f64() * 1000.0;
                        fake.latencies.lock().unwrap().push(ms);
                    }
                }
                sent(chat, "supergroup", n)
            } else {
                let n = fake.private_sends.fetch_add(1, Ordering::SeqCst);
                sent(chat, "private", n)
            }
        }
        "getchatmember" => ok(r#"{"status":"member","user":{"id":1,"is_bot":false,"first_name":"x"}}"#),
        "getmycommands" => ok("[]"),
        "getwebhookinfo" => ok(common::NO_WEBHOOK),
        _ => ok("true"),
    }
}

fn sent(chat: i64, kind: &str, n: usize) -> axum::response::Response {
    ok(&format!(
        r#"{{"message_id":{},"date":1763880000,"chat":{{"id":{chat},"type":"{kind}","title":"村民群","first_name":"x"}},"from":{{"id":4242,"is_bot":true,"first_name":"村警","username":"bench_bot"}},"text":"ok"}}"#,
        1_000_000 + n
    ))
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

struct RunResult {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s: f64,
    rss_mib: f64,
}

struct Bot<'a> {
    name: &'static str,
    path: &'a Path,
    env: &'a [(String, String)],
    echo: bool,
    /// The daemon's database, shared by the runs of a workload.
    database: Option<String>,
}

/// Every run's fake numbers its updates from 1, as a new bot would; on PostgreSQL the daemon
/// records the updates it handles (for several daemons), so a later run's would all look
/// handled already. Each run starts with none recorded.
async fn forget_handled_updates(url: &str) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    db.execute("DELETE FROM handled_updates").await.unwrap();
    db.close().await.unwrap();
}

/// `--cold`: release the updates at the daemon's first poll, before its registry is in memory.
fn cold() -> bool {
    std::env::args().any(|a| a == "--cold")
}

/// One run: start the bot, wait for its first poll, release the updates, wait for every
/// expected answer.
async fn run(bot: &Bot<'_>, kinds: &[Kind], groups: usize, rate: f64) -> RunResult {
    if let Some(url) = &bot.database {
        forget_handled_updates(url).await;
    }
    let fake = Arc::new(Fake::new(kinds, groups, rate));
    let (want_group, want_private) = expected(bot.echo, kinds);
    let port = serve(fake.clone()).await;
    let log = std::env::var("BENCH_LOG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("cunjing-load-{}.log", std::process::id())));
    let mut cmd = std::process::Command::new(bot.path);
    cmd.env_clear()
        .env("TELOXIDE_TOKEN", TOKEN)
        .env("TELOXIDE_API_URL", format!("http://127.0.0.1:{port}/"))
        .env(
            "RUST_LOG",
            format!(
                "{},cunjing::store::cache=info",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "error".into())
            ),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in bot.env {
        cmd.env(k, v);
    }
    // Settings to compare (`CUNJING__SECTION__KEY`, the allocator's `MIMALLOC_…`) reach the
    // daemon; the echo bot ignores them.
    cmd.envs(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_") || k.starts_with("CUNJING__")));
    let mut child =
        cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}; build it first (see the module docs)", bot.path.display()));
    let pid = child.id();
    while !fake.polled.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The daemon polls at once but answers from the database until its registry is in
    // memory (a second for a province): the burst waits for that, so the figures are of
    // the daemon at work, not of its first second.
    let started = Instant::now();
    while !bot.echo && !cold() && !std::fs::read_to_string(&log).unwrap_or_default().contains("registry in memory") {
        assert!(started.elapsed() < Duration::from_secs(120), "the daemon did not load its registry within 2 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_before = cpu_seconds(pid);
    let t0 = Instant::now();
    *fake.released.lock().unwrap() = Some(t0);
    fake.arrived.notify_waiters();
    let deadline = t0 + Duration::from_secs(300);
    loop {
        let (g, p) = (fake.group_replies.load(Ordering::SeqCst), fake.private_sends.load(Ordering::SeqCst));
        if g >= want_group && p >= want_private {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{}: {g} of {want_group} group replies and {p} of {want_private} private messages within 5 minutes",
                bot.name
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds(pid) - cpu_before;
    let rss_mib = common::memory_mib(pid, "VmHWM");
    let _ = child.kill();
    let _ = child.wait();
    let mut latencies = std::mem::take(&mut *fake.latencies.lock().unwrap());
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    RunResult { per_sec: kinds.len() as f64 / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99), cpu_s, rss_mib }
}

/// An SQLite database with one station, G villages (each with a resident officer, enrolled
/// on Telegram) and a bound supergroup per village.
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
    let url = fresh_database(dir).await;
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
    for officer in store.all_officers().await.unwrap() {
        let g: usize = officer.badge[1..].parse().unwrap();
        store.link_identity_directly(officer.id, "telegram", officer_account(g)).await.unwrap();
    }
    store.close().await;
    url
}

/// The database of a run: a new SQLite file in `dir`, or with `--postgres SERVER` the
/// database `cunjing_bench` made anew on that server.
async fn fresh_database(dir: &Path) -> String {
    use sqlx::{Connection, Executor};
    let Some(server) = arg("--postgres") else {
        return format!("sqlite://{}", dir.join("bench.sqlite").display());
    };
    let server = server.trim_end_matches('/');
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("--postgres {server}: {e}"));
    admin.execute("DROP DATABASE IF EXISTS cunjing_bench WITH (FORCE)").await.unwrap();
    admin.execute("CREATE DATABASE cunjing_bench").await.unwrap();
    admin.close().await.unwrap();
    format!("{server}/cunjing_bench")
}

fn print_run(label: &str, name: &str, r: &RunResult) {
    println!(
        "  {label:<9} {name:<7} {:>8.0}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  cpu {:>5.2} s  rss {:>5.1} MiB",
        r.per_sec, r.p50_ms, r.p99_ms, r.cpu_s, r.rss_mib
    );
}

/// The daemon's environment: the bench's database, the fake, the limits given.
fn daemon_env(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bot-config/cunjing.toml");
    let mut env: Vec<(String, String)> = [
        ("CUNJING_CONFIG", config.to_string_lossy().as_ref()),
        ("DATABASE_URL", url),
        ("CUNJING__TELEGRAM__POLL_TIMEOUT_SECS", "10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// One warning to every bound group, queued by the CLI and sent by the running daemon at
/// `per_sec` (0: no limit). Prints the plan's time, the time taken and sends/s.
async fn broadcast_run(daemon: &Path, url: &str, groups: usize, per_sec: u32) {
    let fake = Arc::new(Fake::new(&[], groups, 0.0));
    let port = serve(fake.clone()).await;
    let rate = per_sec.to_string();
    let telegram_overall = if per_sec == 0 { "1000000".to_string() } else { rate.clone() };
    let env = daemon_env(
        url,
        &[
            ("CUNJING__BROADCAST__MESSAGES_PER_SEC", &rate),
            ("CUNJING__TELEGRAM__MESSAGES_PER_SEC_OVERALL", &telegram_overall),
            ("CUNJING__BROADCAST__RETRY_BASE_MS", "100"),
        ],
    );
    let mut cmd = std::process::Command::new(daemon);
    cmd.env_clear()
        .envs(env.iter().cloned())
        .env("TELOXIDE_TOKEN", TOKEN)
        .env("TELOXIDE_API_URL", format!("http://127.0.0.1:{port}/"))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}; build it first", daemon.display()));
    while !fake.polled.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = std::process::Command::new(daemon)
        .env_clear()
        .envs(env.iter().cloned())
        .args([
            "broadcast",
            "send",
            "--to",
            "station:BENCH",
            "--kind",
            "warning",
            "--text",
            "近期有冒充公检法诈骗，请勿转账。",
            "--json",
        ])
        .output()
        .expect("cunjing broadcast send");
    assert!(out.status.success(), "broadcast send failed: {}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from broadcast send");
    let targets = plan["targets"].as_u64().unwrap_or(0) as usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    while fake.group_replies.load(Ordering::SeqCst) < targets {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} of {targets} groups reached within 10 minutes", fake.group_replies.load(Ordering::SeqCst));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (first, last) = fake.sends.lock().unwrap().expect("sends arrived");
    let rss = common::memory_mib(child.id(), "VmHWM");
    let _ = child.kill();
    let _ = child.wait();
    let took = (last - first).as_secs_f64();
    let limit = if per_sec == 0 { "no limit".to_string() } else { format!("{per_sec}/s") };
    print!(
        "  {limit:<9} {targets} groups in {took:.2} s from the first send to the last: {:.0} sends/s",
        targets as f64 / took.max(1e-9)
    );
    if per_sec > 0 {
        let eta = plan["eta_secs"].as_f64().unwrap_or(0.0);
        print!("; the plan said {eta:.0} s, off by {:.1} %", (took - eta) / eta * 100.0);
    }
    println!("; peak rss {rss:.1} MiB");
}

#[tokio::main]
async fn main() {
    if let Some(n) = arg("--broadcast").and_then(|v| v.parse::<usize>().ok()) {
        let daemon = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/production/cunjing");
        println!("broadcast: one warning to {n} bound groups");
        let dir = tempfile::tempdir().unwrap();
        let url = registry(dir.path(), n).await;
        broadcast_run(&daemon, &url, n, 0).await;
        let sample = arg_usize("--sample", 600);
        let dir = tempfile::tempdir().unwrap();
        let url = registry(dir.path(), sample).await;
        broadcast_run(&daemon, &url, sample, 30).await;
        return;
    }
    let updates = arg_usize("--updates", 20_000);
    let groups = arg_usize("--groups", 1_000);
    let runs = arg_usize("--runs", 3).max(1);
    let half = std::env::args().any(|a| a == "--half");
    let workloads = match arg("--workload").as_deref().unwrap_or("all") {
        "a" => vec![Workload::A],
        "b" => vec![Workload::B],
        "c" => vec![Workload::C],
        _ => vec![Workload::A, Workload::B, Workload::C],
    };
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/production");
    let echo = target.join("examples/echo");
    let daemon = target.join("cunjing");
    let no_env: Vec<(String, String)> = Vec::new();
    let engine = if arg("--postgres").is_some() { "PostgreSQL" } else { "SQLite" };
    println!("{updates} updates over {groups} groups, {runs} alternating runs a workload, cunjing on {engine}");
    for workload in workloads {
        // A fresh database for each workload, so tips of one do not weigh on the next.
        let dir = tempfile::tempdir().unwrap();
        let url = registry(dir.path(), groups).await;
        let connections = std::env::var("BENCH_DB_CONNECTIONS").unwrap_or_else(|_| "8".into());
        let cunjing_env = daemon_env(
            &url,
            &[
                ("CUNJING__TELEGRAM__MESSAGES_PER_SEC_CHAT", "1000000"),
                ("CUNJING__TELEGRAM__MESSAGES_PER_MIN_GROUP", "1000000"),
                ("CUNJING__TELEGRAM__MESSAGES_PER_SEC_OVERALL", "1000000"),
                ("CUNJING__TRIAGE__REPEAT_WINDOW_MINUTES", "0"),
                ("CUNJING__TRIAGE__MAX_ANSWERS_PER_GROUP_PER_MINUTE", "1000000"),
                ("CUNJING__TIPS__MAX_PER_HOUR", "1000000"),
                ("CUNJING__DATABASE__MAX_CONNECTIONS", &connections),
            ],
        );
        let bots = [
            Bot { name: "echo", path: &echo, env: &no_env, echo: true, database: None },
            Bot { name: "cunjing", path: &daemon, env: &cunjing_env, echo: false, database: Some(url.clone()) },
        ];
        let kinds = workload.kinds(updates, groups);
        println!("workload {}", workload.name());
        let mut results: [Vec<RunResult>; 2] = [Vec::new(), Vec::new()];
        for i in 0..runs {
            for (b, bot) in bots.iter().enumerate() {
                let r = run(bot, &kinds, groups, 0.0).await;
                print_run(&format!("run {}", i + 1), bot.name, &r);
                results[b].push(r);
            }
        }
        let mut rates = [0.0; 2];
        for (b, bot) in bots.iter().enumerate() {
            let rs = &results[b];
            rates[b] = median(rs.iter().map(|r| r.per_sec).collect());
            println!(
                "  {:<9} {:<7} {:>8.0}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  cpu {:>5.2} s  rss {:>5.1} MiB (peak)",
                "median",
                bot.name,
                rates[b],
                median(rs.iter().map(|r| r.p50_ms).collect()),
                median(rs.iter().map(|r| r.p99_ms).collect()),
                median(rs.iter().map(|r| r.cpu_s).collect()),
                rs.iter().map(|r| r.rss_mib).fold(0.0, f64::max),
            );
        }
        println!("  ratio cunjing / echo: {:.2}", rates[1] / rates[0]);
        if half {
            let rate = rates[1] / 2.0;
            println!("  at half cunjing's rate, {rate:.0} updates/s:");
            for bot in &bots {
                let r = run(bot, &kinds, groups, rate).await;
                print_run("half", bot.name, &r);
            }
        }
    }
}
