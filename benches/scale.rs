//! Province-scale benchmark (issue #6): does the daemon still start, idle and route at the
//! size of a province?
//!
//! It generates a synthetic province registry as the five CSV files (by default 500
//! stations, 5,000 offices, 46,000 villages and 12,000 officers, every village with a
//! resident officer, a third of them with a contact officer and a quarter with an auxiliary,
//! so duty chains have 1–3 members) and measures:
//!
//! - **import**: `cunjing::registry::import_dir` into a fresh SQLite file (target ≤ 10 s).
//!   Binding one supergroup per village and enrolling every officer on Telegram follow,
//!   timed separately: they are setup through the public per-row API, not the import;
//! - **startup**: the production daemon `target/production/cunjing` against a minimal fake Bot
//!   API, from spawn to its first `getUpdates` (median of `--runs`, target ≤ 1 s); then
//!   until its log says the registry is in memory, and its idle RSS (`VmRSS`) at that point;
//! - **routing**: in process, `routing::village_of_chat` then `routing::duty_chain` for
//!   20,000 random bound chats (fixed seed): first from the database (as in the moments
//!   after a start or a registry change, before the registry is in memory), then from the
//!   registry in memory, each chat's first lookup and again, p50/p99/max in µs (target
//!   p99 ≤ 50 µs); and how long loading the province into memory takes.
//!
//! ```sh
//! cargo build --profile production --bin cunjing
//! cargo bench --bench scale -- [--villages 46000] [--officers 12000] [--offices 5000] [--stations 500] [--runs 3] [--lookups 20000] [--keep DIR]
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use cunjing::core::routing;
use cunjing::store::{Store, StoreOptions};

mod common;

use common::{TOKEN, arg_usize, chat_id, median, officer_account, ok, splitmix};

const IMPORT_TARGET_S: f64 = 10.0;
const STARTUP_TARGET_MS: f64 = 1000.0;
const ROUTING_TARGET_P99_US: f64 = 50.0;

#[derive(Clone, Copy)]
struct Sizes {
    stations: usize,
    offices: usize,
    villages: usize,
    officers: usize,
}

impl Sizes {
    /// Four in five officers are police (resident and contact officers), the rest auxiliaries.
    fn police(&self) -> usize {
        (self.officers * 4 / 5).max(1)
    }

    fn auxiliaries(&self) -> usize {
        self.officers - self.police()
    }

    fn office_of_village(&self, v: usize) -> usize {
        v * self.offices / self.villages
    }

    fn station_of_office(&self, o: usize) -> usize {
        o * self.stations / self.offices
    }

    fn station_of_village(&self, v: usize) -> usize {
        self.station_of_office(self.office_of_village(v))
    }

    /// The resident officer of village v: police officers serve neighbouring villages.
    fn resident(&self, v: usize) -> usize {
        v * self.police() / self.villages
    }
}

/// Badge of officer k: police first, then auxiliaries.
fn badge(sizes: &Sizes, k: usize) -> String {
    if k < sizes.police() { format!("P{k:06}") } else { format!("F{k:06}") }
}

/// Writes the five registry files; returns the number of assignments.
fn write_registry(dir: &Path, s: &Sizes) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();

    let mut t = String::from("code,name,duty_phone,address\n");
    for st in 0..s.stations {
        writeln!(t, "S{st:04},第{st}派出所,0371-6258{:04},某县某镇人民路{st}号", st % 10_000).unwrap();
    }
    w("stations.csv", &t);

    let mut t = String::from("code,station,name,kind,address,hours,phone\n");
    for o in 0..s.offices {
        let kind = if o % 5 == 4 { "workstation" } else { "office" };
        writeln!(
            t,
            "O{o:05},S{:04},第{o}警务室,{kind},第{o}村村委会东侧,周一至周五 8:30-12:00 14:30-18:00,0371-6{:07}",
            s.station_of_office(o),
            o % 10_000_000
        )
        .unwrap();
    }
    w("offices.csv", &t);

    let mut t = String::from("code,name,kind,office,households,population\n");
    for v in 0..s.villages {
        let kind = if v % 10 == 9 { "grid" } else { "village" };
        let households = 200 + v % 600;
        writeln!(t, "41{v:010},第{v}村,{kind},O{:05},{households},{}", s.office_of_village(v), households * 4).unwrap();
    }
    w("villages.csv", &t);

    let (police, aux) = (s.police(), s.auxiliaries());
    let mut t = String::from("badge,name,kind,phone,station\n");
    for k in 0..s.officers {
        // Each officer belongs to the station of the first village they serve.
        let (kind, station) = if k < police {
            ("police", s.station_of_village(k * s.villages / police))
        } else {
            ("auxiliary", s.station_of_village((k - police) * s.villages / aux))
        };
        writeln!(t, "{},警员{k},{kind},139{:08},S{station:04}", badge(s, k), k % 100_000_000).unwrap();
    }
    w("officers.csv", &t);

    let mut t = String::from("village,badge,role,since,until\n");
    let mut n = 0;
    for v in 0..s.villages {
        let resident = s.resident(v);
        writeln!(t, "41{v:010},{},resident,2024-01-01,", badge(s, resident)).unwrap();
        n += 1;
        if v % 3 == 0 && police > 1 {
            let contact = (resident + police / 2) % police;
            writeln!(t, "41{v:010},{},contact,2024-01-01,", badge(s, contact)).unwrap();
            n += 1;
        }
        if v % 4 == 0 && aux > 0 {
            let auxiliary = police + v * aux / s.villages;
            writeln!(t, "41{v:010},{},auxiliary,2024-03-01,", badge(s, auxiliary)).unwrap();
            n += 1;
        }
    }
    w("assignments.csv", &t);
    n
}

async fn open(url: &str) -> Store {
    Store::connect(&StoreOptions { url: url.to_string(), max_connections: 4, busy_timeout: Duration::from_secs(5) })
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e:#}"))
}

/// Minimal fake Bot API: enough for the daemon to start and long-poll an empty queue.
#[derive(Default)]
struct Fake {
    first_poll: Mutex<Option<Instant>>,
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
            fake.first_poll.lock().unwrap().get_or_insert_with(Instant::now);
            let timeout = params["timeout"].as_u64().unwrap_or(0).min(30);
            tokio::time::sleep(Duration::from_secs(timeout)).await;
            ok("[]")
        }
        "getmycommands" => ok("[]"),
        "getwebhookinfo" => ok(common::NO_WEBHOOK),
        // setMyCommands, deleteWebhook and anything else.
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

/// One start of the daemon: milliseconds from spawn to its first getUpdates, and its RSS
/// (MiB) a second later.
async fn start_once(daemon: &Path, url: &str, log: &Path) -> (f64, f64, f64) {
    let fake = Arc::new(Fake::default());
    let port = serve(fake.clone()).await;
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bot-config/cunjing.toml");
    let stderr = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(daemon);
    cmd.env_clear()
        .env("CUNJING_CONFIG", &config)
        .env("DATABASE_URL", url)
        .env("TELOXIDE_TOKEN", TOKEN)
        .env("TELOXIDE_API_URL", format!("http://127.0.0.1:{port}/"))
        .env("CUNJING__TELEGRAM__POLL_TIMEOUT_SECS", "10")
        .env("RUST_LOG", "warn,cunjing::store::cache=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {}: {e}; build it first: cargo build --profile production --bin cunjing", daemon.display())
    });
    let pid = child.id();
    let deadline = t0 + Duration::from_secs(60);
    let first = loop {
        if let Some(t) = *fake.first_poll.lock().unwrap() {
            break t;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the daemon exited ({status}) before polling; its stderr:\n{err}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the daemon did not call getUpdates within 60 s; its stderr:\n{err}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let startup_ms = first.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    let loaded = loop {
        if std::fs::read_to_string(log).unwrap_or_default().contains("registry in memory") {
            break Instant::now();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not load the registry into memory within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let loaded_ms = loaded.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = common::memory_mib(pid, "VmRSS");
    let _ = child.kill();
    let _ = child.wait();
    (startup_ms, loaded_ms, rss)
}

/// p50, p99 and max of microsecond samples.
fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (pct(0.5), pct(0.99), v[v.len() - 1])
}

/// Times `village_of_chat` + `duty_chain` for each chat, in µs.
async fn route_all(store: &Store, chats: &[i64], today: chrono::NaiveDate) -> (Vec<f64>, usize) {
    let mut times = Vec::with_capacity(chats.len());
    let mut members = 0;
    for &chat in chats {
        let t = Instant::now();
        let village = routing::village_of_chat(store, "telegram", chat)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("chat {chat} is not bound to a village"));
        let chain = routing::duty_chain(store, village, today).await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        members += chain.members.len();
    }
    (times, members)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut best = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() { newest(&path) } else { entry.metadata().ok().and_then(|m| m.modified().ok()) };
        best = best.max(t);
    }
    best
}

#[tokio::main]
async fn main() {
    let offices = arg_usize("--offices", 5_000).max(1);
    let sizes = Sizes {
        stations: arg_usize("--stations", 500).clamp(1, offices),
        offices,
        villages: arg_usize("--villages", 46_000).max(1),
        officers: arg_usize("--officers", 12_000).max(2),
    };
    let runs = arg_usize("--runs", 3).max(1);
    let lookups = arg_usize("--lookups", 20_000).max(1);

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let daemon = manifest.join("target/production/cunjing");
    let built = std::fs::metadata(&daemon).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!("{}: {e}; build it first: cargo build --profile production --bin cunjing", daemon.display())
    });
    if newest(&manifest.join("src")).is_some_and(|src| src > built) {
        println!("note: {} is older than src/; rebuild it for current figures", daemon.display());
    }

    // `--keep DIR` leaves the generated registry and database there (for a heap profile).
    let dir = tempfile::tempdir().unwrap();
    let dir = match common::arg("--keep") {
        Some(keep) => {
            let keep = PathBuf::from(keep);
            let _ = std::fs::remove_dir_all(&keep);
            std::fs::create_dir_all(&keep).unwrap();
            println!("keeping the registry and database in {}", keep.display());
            keep
        }
        None => dir.path().to_path_buf(),
    };
    let csv = dir.join("registry");
    let t = Instant::now();
    let assignments = write_registry(&csv, &sizes);
    println!(
        "registry: {} stations, {} offices, {} villages, {} officers ({} police, {} auxiliaries), {assignments} assignments (CSV written in {:.2} s)",
        sizes.stations,
        sizes.offices,
        sizes.villages,
        sizes.officers,
        sizes.police(),
        sizes.auxiliaries(),
        t.elapsed().as_secs_f64()
    );

    // Import.
    let url = format!("sqlite://{}", dir.join("province.sqlite").display());
    let store = open(&url).await;
    let today = chrono::Utc::now().date_naive();
    let t = Instant::now();
    let summary =
        cunjing::registry::import_dir(&store, &csv, today).await.unwrap_or_else(|e| panic!("import failed: {e}"));
    let import_s = t.elapsed().as_secs_f64();
    println!("import: {import_s:.2} s ({summary})");

    // Setup: one supergroup per village, every officer enrolled. One row per call is all the
    // public API offers, so this is sequential (SQLite has one writer anyway).
    let t = Instant::now();
    let villages = store.all_villages().await.unwrap();
    for village in &villages {
        let v: usize = village.code[2..].parse().unwrap();
        store
            .bind_chat_to_village("telegram", chat_id(v), &format!("{}村民群", village.name), village.id, None)
            .await
            .unwrap();
    }
    let bind_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let officers = store.all_officers().await.unwrap();
    for officer in &officers {
        let k: usize = officer.badge[1..].parse().unwrap();
        store.link_identity_directly(officer.id, "telegram", officer_account(k)).await.unwrap();
    }
    let link_s = t.elapsed().as_secs_f64();
    println!(
        "setup: {} chats bound in {bind_s:.2} s ({:.0} µs each), {} officers enrolled in {link_s:.2} s ({:.0} µs each)",
        villages.len(),
        bind_s * 1e6 / villages.len() as f64,
        officers.len(),
        link_s * 1e6 / officers.len().max(1) as f64
    );
    store.close().await;
    drop(store);
    let db_mib = std::fs::metadata(dir.join("province.sqlite")).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    println!("database file: {db_mib:.1} MiB");

    // Startup.
    let log = dir.join("daemon.stderr");
    let mut starts = Vec::new();
    let mut loads = Vec::new();
    let mut rss = Vec::new();
    for run in 1..=runs {
        let (ms, loaded_ms, mib) = start_once(&daemon, &url, &log).await;
        println!(
            "startup run {run}: first getUpdates after {ms:.0} ms, registry in memory after {loaded_ms:.0} ms, idle RSS {mib:.1} MiB"
        );
        starts.push(ms);
        loads.push(loaded_ms);
        rss.push(mib);
    }
    let startup_ms = median(starts);
    let loaded_ms = median(loads);
    let idle_rss = median(rss.clone());
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    let err: Vec<&str> = err.lines().filter(|l| !l.contains("registry in memory")).collect();
    if !err.is_empty() {
        println!("daemon stderr (last run, RUST_LOG=warn):\n{}", err.join("\n"));
    }

    // Routing.
    let store = open(&url).await;
    let chats: Vec<i64> =
        (0..lookups).map(|i| chat_id((splitmix(0x5ca1e ^ i as u64) % sizes.villages as u64) as usize)).collect();
    assert!(!store.registry_in_memory());
    let (database, members) = route_all(&store, &chats, today).await;
    let t = Instant::now();
    assert!(store.load_registry_now().await.unwrap(), "nothing changes the registry here");
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (first, members_in_memory) = route_all(&store, &chats, today).await;
    assert_eq!(members, members_in_memory, "memory and database give the same duty chains");
    let (again, _) = route_all(&store, &chats, today).await;
    store.close().await;
    let database = percentiles(database);
    let first = percentiles(first);
    let again = percentiles(again);
    let distinct = chats.iter().collect::<std::collections::HashSet<_>>().len();
    println!(
        "routing: {lookups} lookups of village_of_chat + duty_chain over {distinct} distinct chats, {:.2} chain members on average",
        members as f64 / lookups as f64
    );
    println!("  registry loaded into memory in process in {load_ms:.0} ms");
    let rows = [("database", database), ("memory, first", first), ("memory, again", again)];
    for (label, (p50, p99, max)) in rows {
        println!("  {label}: p50 {p50:.1} µs  p99 {p99:.1} µs  max {max:.0} µs");
    }

    println!();
    println!(
        "summary ({} villages, {} officers, {} offices, {} stations)",
        sizes.villages, sizes.officers, sizes.offices, sizes.stations
    );
    println!(
        "  import                    {:>9.2} s    target ≤ {IMPORT_TARGET_S:.0} s      {}",
        import_s,
        verdict(import_s <= IMPORT_TARGET_S)
    );
    println!("  setup: bind chats         {bind_s:>9.2} s    (not part of the import)");
    println!("  setup: enrol officers     {link_s:>9.2} s    (not part of the import)");
    println!(
        "  startup (median of {runs})    {startup_ms:>9.0} ms   target ≤ {STARTUP_TARGET_MS:.0} ms   {}",
        verdict(startup_ms <= STARTUP_TARGET_MS)
    );
    println!("  registry in memory after  {loaded_ms:>9.0} ms   (median, from spawn)");
    println!("  idle RSS (median)         {idle_rss:>9.1} MiB  (runs: {rss:.1?}), registry in memory");
    println!(
        "  routing from the database {:>6.1} / {:<6.1} µs  (p50 / p99; before the registry is in memory)",
        database.0, database.1
    );
    for (label, (p50, p99, _)) in [("first", first), ("again", again)] {
        println!(
            "  routing in memory, {label} {p50:>6.1} / {p99:<6.1} µs  target p99 ≤ {ROUTING_TARGET_P99_US:.0} µs  {}",
            verdict(p99 <= ROUTING_TARGET_P99_US)
        );
    }
}
