//! The station desk with a big year (issue #23): does the tips list stay quick with 100,000
//! tips?
//!
//! For each engine (SQLite file; PostgreSQL when `CUNJING_BENCH_POSTGRES_URL` is set, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`, on a database it creates and drops), it imports
//! the example registry, writes `--tips` tips over 和庄派出所's villages and the past year
//! (`common/seed.rs`; 100 of them left by named tipsters with a phone, through
//! `Store::create_tip`), starts the console in process and, logged in as station staff over
//! HTTP on localhost, times `--runs` requests of each kind, whole answers as the browser gets
//! them (so a little more than the server's own time):
//!
//! - **page**: a random page of 50 of the whole list (a jump: 跳至第 N 页); the next page
//!   from there (下一页, which starts after the last tip shown); the open tips; the overdue
//!   queue sorted overdue first; one village; target p95 ≤ 50 ms;
//! - **search**: by a random tip number, by a word in one text in seven, by a phone number
//!   (the blind index); target p95 ≤ 100 ms;
//! - **export**: the CSV and the Excel file of the last 36 days (about 10,000 rows); target
//!   ≤ 2 s each.
//!
//! ```sh
//! CUNJING_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench desk -- [--tips 100000] [--runs 40]
//! ```
//!
//! Exits with status 1 when a target is missed.

use std::path::PathBuf;
use std::time::Instant;

use cunjing::config::Settings;
use cunjing::store::Store;

mod common;

use common::seed::{SEED_WORD, seed_tips};
use common::{arg_usize, splitmix};

const PAGE_P95_MS: f64 = 50.0;
const SEARCH_P95_MS: f64 = 100.0;
const EXPORT_MS: f64 = 2000.0;
const PASSWORD: &str = "bench password 1";
const DAY_MS: i64 = 86_400_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A logged-in console session over plain HTTP.
struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Session {
    async fn login(port: u16) -> Session {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let form = http.get(format!("{base}/login")).send().await.unwrap();
        let cookie = cookies(&form);
        let body = form.text().await.unwrap();
        let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &body[at..at + 64];
        let done = http
            .post(format!("{base}/login"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf), ("username", "bench"), ("password", PASSWORD), ("totp", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 303, "logged in");
        Session { cookie: cookies(&done), http, base }
    }

    /// GETs `path`; the milliseconds until the whole answer was read, and its size.
    async fn time(&self, path: &str) -> (f64, usize) {
        let start = Instant::now();
        let resp = self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let bytes = resp.bytes().await.unwrap();
        (start.elapsed().as_secs_f64() * 1000.0, bytes.len())
    }
}

fn cookies(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

fn pages_of(tips: usize) -> u64 {
    tips.div_ceil(50) as u64
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

/// One line of the report; whether the target was met.
fn report(what: &str, times: Vec<f64>, target: f64, note: &str) -> bool {
    let (p50, p95) = (percentile(times.clone(), 0.5), percentile(times, 0.95));
    let ok = p95 <= target;
    println!(
        "  {what:<34} p50 {p50:>7.1} ms  p95 {p95:>7.1} ms  (target {target:.0} ms) {} {note}",
        if ok { "✓" } else { "✗" }
    );
    ok
}

async fn run(engine: &str, url: &str, tips: usize, runs: usize) -> bool {
    let mut settings = Settings::load(&root().join("bot-config/cunjing.toml")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    settings.file.web.enabled = true;
    settings.file.web.listen = format!("127.0.0.1:{port}");
    settings.file.web.secure_cookies = false;
    let store = Store::connect(&settings.store_options(url)).await.unwrap();
    let today = chrono::Utc::now().date_naive();
    cunjing::registry::import_dir(&store, &root().join("bot-config/example"), today).await.unwrap();
    let station = store.station_id("HZPCS").await.unwrap().unwrap();
    let villages: Vec<i64> =
        store.all_villages().await.unwrap().into_iter().filter(|v| v.station_id == station).map(|v| v.id).collect();
    let now = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    seed_tips(&store, &villages, tips, now, 365 * DAY_MS).await;
    let phones: Vec<String> = (0..100).map(|i| format!("139037{:05}", i)).collect();
    for (i, phone) in phones.iter().enumerate() {
        let tip = cunjing::store::tips::NewTip {
            village_id: villages[i % villages.len()],
            reported_village_id: None,
            category: "fraud".into(),
            source: cunjing::domain::TipSource::Private,
            anonymous: false,
            contact_phone: Some(phone.clone()),
            items: vec![cunjing::store::tips::TipItem::Text { text: "有人冒充客服打电话让转账".into() }],
            reporter_platform: "telegram".into(),
            reporter_chat_id: 1_000_000 + i as i64,
            day: today.format("%Y%m%d").to_string(),
        };
        store.create_tip(&tip).await.unwrap();
    }
    // What a daemon has after its next start (SQLite's `PRAGMA optimize`) and PostgreSQL after
    // autovacuum: the planner knows the tables' sizes. SQLite's statistics reach only
    // connections opened after them, so the store is opened again, as a restart would.
    let analyze = if engine == "postgres" { "VACUUM ANALYZE" } else { "ANALYZE" };
    sqlx::query(analyze).execute(store.writer()).await.unwrap();
    store.close().await;
    let store = Store::connect(&settings.store_options(url)).await.unwrap();
    println!(
        "{engine}: {tips} tips over {} villages written in {:.1} s",
        villages.len(),
        started.elapsed().as_secs_f64()
    );
    let hash = cunjing::web::hash_password(PASSWORD).unwrap();
    store.upsert_web_user("bench", Some(station), cunjing::domain::Grant::Staff, &hash, None, 0).await.unwrap();
    let core = cunjing::daemon::build_core(&settings, store.clone(), std::sync::Arc::new(chrono::Utc::now)).unwrap();
    let web = cunjing::web::start(&settings, &core, Default::default()).await.unwrap().expect("the console is on");
    let s = Session::login(port).await;

    let pages = tips.div_ceil(50) as u64;
    let mut met = true;
    let times = |f: &dyn Fn(u64) -> String| (0..runs as u64).map(move |i| f(splitmix(i))).collect::<Vec<_>>();
    let measure = async |paths: Vec<String>| {
        let mut t = vec![];
        s.time(&paths[0]).await; // warm
        for p in &paths {
            t.push(s.time(p).await.0);
        }
        t
    };
    met &= report(
        "page: any page of the list",
        measure(times(&|r| format!("/tips?page={}", 1 + r % pages))).await,
        PAGE_P95_MS,
        "",
    );
    // 下一页 from a random page: the pager's link starts after the last tip shown.
    let mut next = vec![];
    for i in 0..runs as u64 {
        let from =
            s.http.get(format!("{}/tips?page={}", s.base, 1 + splitmix(i) % (pages - 1))).header("cookie", &s.cookie);
        let body = from.send().await.unwrap().text().await.unwrap();
        let end = body.find("\" id=\"next\"").expect("a next link on every page but the last");
        let href = body[body[..end].rfind("href=\"").unwrap() + 6..end].replace("&amp;", "&");
        next.push(s.time(&href).await.0);
    }
    met &= report("page: 下一页 from a random page", next, PAGE_P95_MS, "");
    met &= report(
        "page: open tips",
        measure(times(&|r| format!("/tips?status=open&page={}", 1 + r % 50))).await,
        PAGE_P95_MS,
        "",
    );
    met &= report(
        "page: overdue queue, overdue first",
        measure(times(&|_| "/tips?overdue=1&sort=overdue".into())).await,
        PAGE_P95_MS,
        "",
    );
    met &= report(
        "page: one village, by status",
        measure(times(&|_| "/tips?village=410184101202&sort=status".into())).await,
        PAGE_P95_MS,
        "",
    );
    met &= report(
        "search: a tip number",
        measure(times(&|r| {
            let i = r as usize % tips;
            format!("/tips?q=T{}-{:04}", 20250101 + i / 10000, i % 10000)
        }))
        .await,
        SEARCH_P95_MS,
        "",
    );
    let word: String = url::form_urlencoded::byte_serialize(SEED_WORD.as_bytes()).collect();
    met &= report(
        "search: a word (one tip in seven)",
        measure(times(&|_| format!("/tips?q={word}"))).await,
        SEARCH_P95_MS,
        "",
    );
    met &= report(
        "search: a named tipster's phone",
        measure(times(&|r| format!("/tips?q={}", phones[r as usize % phones.len()]))).await,
        SEARCH_P95_MS,
        "",
    );
    // Where a page's time goes: the store's two queries alone, without HTTP or the page.
    let station_filter = |only_overdue: bool| cunjing::store::tip_list::TipFilter {
        station: Some("HZPCS".into()),
        clock: Some((chrono::Utc::now().timestamp_millis(), cunjing::web::WebOptions::from_settings(&settings).sla)),
        only_overdue,
        ..Default::default()
    };
    if engine == "sqlite" {
        // The plan of a deep page's ids, as the store asks for them.
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT t.id FROM tips t WHERE TRUE AND (+t.village_id IN (SELECT v2.id FROM villages v2 \
             JOIN offices o2 ON o2.id = v2.office_id JOIN stations s2 ON s2.id = o2.station_id WHERE s2.code = $1)) \
             ORDER BY t.created_at DESC, t.id DESC LIMIT 50 OFFSET 50000",
        )
        .bind("HZPCS")
        .fetch_all(store.pool())
        .await
        .unwrap();
        println!("  (plan of a deep page: {})", plan.iter().map(|p| p.3.as_str()).collect::<Vec<_>>().join("; "));
    }
    for (what, overdue) in [("all", false), ("overdue", true)] {
        let filter = station_filter(overdue);
        let (mut counts, mut pages) = (vec![], vec![]);
        for i in 0..runs as u64 {
            let started = Instant::now();
            store.count_tips(&filter).await.unwrap();
            counts.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            let skip = (splitmix(i) % pages_of(tips)) as i64 * 50;
            store.list_tips_page(&filter, Some((50, cunjing::store::tip_list::PageAt::Skip(skip)))).await.unwrap();
            pages.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "  (store, {what}: counters p50 {:.1} ms, a random page's rows p50 {:.1} ms)",
            percentile(counts, 0.5),
            percentile(pages, 0.5)
        );
    }
    let tz = settings.timezone();
    let from = (chrono::Utc::now().with_timezone(&tz) - chrono::Duration::days(36)).format("%Y-%m-%d");
    for kind in ["csv", "xlsx"] {
        let path = format!("/tips/export.{kind}?from={from}");
        let mut t = vec![];
        let mut size = 0;
        for _ in 0..3 {
            let (ms, bytes) = s.time(&path).await;
            t.push(ms);
            size = bytes;
        }
        met &= report(&format!("export: {kind}, last 36 days"), t, EXPORT_MS, &format!("({} KB)", size / 1024));
    }
    let rows = store
        .list_tips(&cunjing::store::tip_list::TipFilter { since_ms: Some(now - 36 * DAY_MS), ..Default::default() })
        .await
        .unwrap()
        .len();
    println!("  (the export held about {rows} rows)");
    web.stop().await.unwrap();
    store.close().await;
    met
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tips = arg_usize("--tips", 100_000);
    let runs = arg_usize("--runs", 40);
    let mut met = true;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("desk.db").display());
    met &= run("sqlite", &sqlite, tips, runs).await;
    if let Ok(base) = std::env::var("CUNJING_BENCH_POSTGRES_URL") {
        let admin = sqlx::PgPool::connect(&base).await.expect("PostgreSQL answers");
        sqlx::query("DROP DATABASE IF EXISTS cunjing_bench_desk").execute(&admin).await.unwrap();
        sqlx::query("CREATE DATABASE cunjing_bench_desk").execute(&admin).await.unwrap();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/cunjing_bench_desk"),
            None => panic!("CUNJING_BENCH_POSTGRES_URL names no database: {base}"),
        };
        met &= run("postgres", &url, tips, runs).await;
        sqlx::query("DROP DATABASE IF EXISTS cunjing_bench_desk WITH (FORCE)").execute(&admin).await.unwrap();
    } else {
        println!("postgres: skipped (set CUNJING_BENCH_POSTGRES_URL)");
    }
    if !met {
        std::process::exit(1);
    }
}
