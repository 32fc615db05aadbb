//! Places benchmark (issue #24): a province's areas imported, checked and looked up.
//!
//! It writes a province with areas (`benches/common/places.rs`: by default 23 × 20 stations
//! of 10 × 10 villages = 46,000 polygons of 20–36 vertices, a jittered grid tiling, half of
//! them in a GCJ-02 layer) and measures:
//!
//! - **import**: `registry::parse_dir` (CSV and areas read, every check: rings, validity,
//!   overlaps and gaps per station), then `registry::import_dir` into a fresh SQLite file,
//!   whose extra time over the parse is the writing (target ≤ 20 s for both);
//! - **lookup**: the areas index built from the database (`Store::area_index`), then
//!   `AreaIndex::containing` and `AreaIndex::locate` (WGS-84 point; unknown datum, looked up
//!   both ways) for `--points` random points in the province (fixed seed), each timed
//!   alone, p50/p99/max in µs (target p99 ≤ 10 µs);
//! - **memory**: `AreaIndex::heap_bytes()` and the process's RSS before and after the index
//!   was built (target ≤ 40 MiB).
//!
//! ```sh
//! cargo bench --profile release --bench places -- [--stations-x 23] [--stations-y 20] [--cols 10] [--rows 10] [--points 100000] [--margin 100]
//! ```

use std::time::{Duration, Instant};

use cunjing::places::{Datum, Located, Spot};
use cunjing::store::{Store, StoreOptions};

mod common;

use common::places::{Plan, write_province};
use common::{arg_usize, memory_mib, splitmix};

const IMPORT_TARGET_S: f64 = 20.0;
const LOOKUP_TARGET_P99_US: f64 = 10.0;
const MEMORY_TARGET_MIB: f64 = 40.0;

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗ over the target" }
}

#[tokio::main]
async fn main() {
    let plan = Plan {
        stations_x: arg_usize("--stations-x", 23),
        stations_y: arg_usize("--stations-y", 20),
        cols: arg_usize("--cols", 10),
        rows: arg_usize("--rows", 10),
    };
    let points = arg_usize("--points", 100_000);
    let margin = arg_usize("--margin", 100) as f64;
    let pid = std::process::id();

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let written = write_province(dir.path(), plan, false);
    let bytes: u64 =
        std::fs::read_dir(dir.path().join("areas")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    println!(
        "province: {} stations × {} villages = {} polygons, {:.1} vertices each on average, {:.1} MB of GeoJSON (written in {:.2} s)",
        plan.stations_x * plan.stations_y,
        plan.cols * plan.rows,
        written.features,
        written.vertices as f64 / written.features as f64,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let parsed = cunjing::registry::parse_dir(dir.path());
    let parse_s = t.elapsed().as_secs_f64();
    if let Err(errors) = &parsed {
        panic!("the generated province has errors: {:#?}", &errors[..errors.len().min(10)]);
    }
    drop(parsed);
    println!("parse + check (CSV and areas): {parse_s:.2} s");

    let url = format!("sqlite://{}", dir.path().join("places.sqlite").display());
    let store =
        Store::connect(&StoreOptions { url, max_connections: 4, busy_timeout: Duration::from_secs(5) }).await.unwrap();
    let today = chrono::Utc::now().date_naive();
    let t = Instant::now();
    let summary = cunjing::registry::import_dir(&store, dir.path(), today).await.unwrap_or_else(|e| panic!("{e}"));
    let import_s = t.elapsed().as_secs_f64();
    println!(
        "import: {import_s:.2} s, of which writing ≈ {:.2} s ({summary}) {}",
        import_s - parse_s,
        mark(import_s <= IMPORT_TARGET_S)
    );

    let rss_before = memory_mib(pid, "VmRSS");
    let t = Instant::now();
    let index = store.area_index().await.unwrap();
    let build_s = t.elapsed().as_secs_f64();
    let rss_after = memory_mib(pid, "VmRSS");
    let heap = index.heap_bytes() as f64 / (1024.0 * 1024.0);
    println!(
        "index: {} areas read and built in {build_s:.2} s; heap_bytes {heap:.1} MiB {}; RSS {rss_before:.1} → {rss_after:.1} MiB (+{:.1})",
        index.len(),
        mark(heap <= MEMORY_TARGET_MIB),
        rss_after - rss_before
    );

    // Random points over the province's box.
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for a in index.areas() {
        let (l, h) = cunjing::places::bounds(&a.shape).unwrap();
        lo = [lo[0].min(l[0]), lo[1].min(l[1])];
        hi = [hi[0].max(h[0]), hi[1].max(h[1])];
    }
    let spots: Vec<(f64, f64)> = (0..points as u64)
        .map(|i| {
            let u = |k: u64| (splitmix(i * 2 + k) >> 11) as f64 / (1u64 << 53) as f64;
            (lo[0] + u(0) * (hi[0] - lo[0]), lo[1] + u(1) * (hi[1] - lo[1]))
        })
        .collect();

    let mut inside = 0usize;
    let mut times = Vec::with_capacity(points);
    for (lon, lat) in &spots {
        let t = Instant::now();
        let found = index.containing(*lon, *lat);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        inside += usize::from(found.is_some());
    }
    let (p50, p99, max) = percentiles(times);
    println!(
        "containing: {points} points ({inside} inside an area): p50 {p50:.2} µs, p99 {p99:.2} µs, max {max:.1} µs {}",
        mark(p99 <= LOOKUP_TARGET_P99_US)
    );

    for (label, datum) in [("WGS-84", Some(Datum::Wgs84)), ("unknown datum", None)] {
        let mut times = Vec::with_capacity(points);
        let mut counts = [0usize; 3];
        for (lon, lat) in &spots {
            let spot = Spot { lat: *lat, lon: *lon, datum };
            let t = Instant::now();
            let found = index.locate(&spot, margin);
            times.push(t.elapsed().as_secs_f64() * 1e6);
            counts[match found {
                Located::Inside(_) => 0,
                Located::Ambiguous(_) => 1,
                Located::Outside { .. } => 2,
            }] += 1;
        }
        let (p50, p99, max) = percentiles(times);
        println!(
            "locate ({label}, margin {margin} m): inside {}, ambiguous {}, outside {}: p50 {p50:.2} µs, p99 {p99:.2} µs, max {max:.1} µs {}",
            counts[0],
            counts[1],
            counts[2],
            mark(p99 <= LOOKUP_TARGET_P99_US)
        );
    }
}
