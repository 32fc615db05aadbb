//! Micro-benchmarks of what every contact question costs besides triage: the registry
//! lookups of routing and the rendering of the answer.
//!
//! - `routing`: `routing::village_of_chat` then `routing::duty_chain` on a generated registry
//!   of 1,000 villages in an SQLite file, for a chat cycling through the bound supergroups;
//!   `in_memory` is the daemon's steady state (the registry is in memory, `store/cache.rs`),
//!   `database` is the moments after a start or a registry change, before it is loaded
//!   again: all three queries go to SQLite.
//! - `templates`: the contact card (`core::contact_card`, which the daemon answers with;
//!   three officers) and the emergency reply (`emergency_reply`).
//!
//! Run with `cargo bench --bench micro` (about a minute).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};
use cunjing::core::contact_card;
use cunjing::core::routing;

use cunjing::store::{Store, StoreOptions};
use cunjing::texts::{Msg, Texts};
use cunjing::triage::EmergencyKind;
use tokio::runtime::Runtime;

const VILLAGES: usize = 1_000;
const OFFICES: usize = 100;
const STATIONS: usize = 10;
/// Police officers (resident and contact), then auxiliaries.
const POLICE: usize = 200;
const AUXILIARIES: usize = 60;

fn chat_id(village: usize) -> i64 {
    -1_001_000_000_000 - village as i64
}

fn badge(k: usize) -> String {
    if k < POLICE { format!("P{k:06}") } else { format!("F{k:06}") }
}

/// The five registry files: every village with a resident officer, every third with a
/// contact officer, every fourth with an auxiliary (village 0 has all three).
fn write_registry(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    let mut t = String::from("code,name,duty_phone,address\n");
    for s in 0..STATIONS {
        writeln!(t, "S{s:04},第{s}派出所,0371-6258{s:04},某县某镇人民路{s}号").unwrap();
    }
    w("stations.csv", &t);
    let mut t = String::from("code,station,name,kind,address,hours,phone\n");
    for o in 0..OFFICES {
        writeln!(
            t,
            "O{o:05},S{:04},第{o}警务室,office,第{o}村村委会东侧,周一至周五 8:30-12:00 14:30-18:00,0371-6{o:07}",
            o * STATIONS / OFFICES
        )
        .unwrap();
    }
    w("offices.csv", &t);
    let mut t = String::from("code,name,kind,office,households,population\n");
    for v in 0..VILLAGES {
        writeln!(t, "41{v:010},第{v}村,village,O{:05},{},{}", v * OFFICES / VILLAGES, 200 + v % 600, 800 + v % 2400)
            .unwrap();
    }
    w("villages.csv", &t);
    let mut t = String::from("badge,name,kind,phone,station\n");
    for k in 0..POLICE + AUXILIARIES {
        let kind = if k < POLICE { "police" } else { "auxiliary" };
        writeln!(t, "{},警员{k},{kind},139{k:08},S{:04}", badge(k), k % STATIONS).unwrap();
    }
    w("officers.csv", &t);
    let mut t = String::from("village,badge,role,since,until\n");
    for v in 0..VILLAGES {
        let resident = v * POLICE / VILLAGES;
        writeln!(t, "41{v:010},{},resident,2024-01-01,", badge(resident)).unwrap();
        if v % 3 == 0 {
            writeln!(t, "41{v:010},{},contact,2024-01-01,", badge((resident + POLICE / 2) % POLICE)).unwrap();
        }
        if v % 4 == 0 {
            writeln!(t, "41{v:010},{},auxiliary,2024-03-01,", badge(POLICE + v * AUXILIARIES / VILLAGES)).unwrap();
        }
    }
    w("assignments.csv", &t);
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    chats: Vec<i64>,
    today: NaiveDate,
}

/// An SQLite file with the registry imported, a supergroup bound to every village and every
/// officer enrolled on Telegram.
fn fixture(rt: &Runtime) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("registry");
    write_registry(&csv);
    let url = format!("sqlite://{}", dir.path().join("micro.sqlite").display());
    let today = chrono::Utc::now().date_naive();
    let store = rt.block_on(async {
        let store = Store::connect(&StoreOptions { url, max_connections: 4, busy_timeout: Duration::from_secs(5) })
            .await
            .unwrap();
        cunjing::registry::import_dir(&store, &csv, today).await.unwrap_or_else(|e| panic!("import failed: {e}"));
        for village in store.all_villages().await.unwrap() {
            let v: usize = village.code[2..].parse().unwrap();
            store.bind_chat_to_village("telegram", chat_id(v), "村民群", village.id, None).await.unwrap();
        }
        for officer in store.all_officers().await.unwrap() {
            let k: i64 = officer.badge[1..].parse().unwrap();
            store.link_identity_directly(officer.id, "telegram", 900_000_000 + k).await.unwrap();
        }
        store
    });
    Fixture { _dir: dir, store, chats: (0..VILLAGES).map(chat_id).collect(), today }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn route(store: &Store, chat: i64, today: NaiveDate) -> routing::DutyChain {
    let village = routing::village_of_chat(store, "telegram", chat).await.unwrap().expect("bound chat");
    routing::duty_chain(store, village, today).await.unwrap()
}

fn routing(c: &mut Criterion) {
    let rt = runtime();
    let f = fixture(&rt);
    let chain = rt.block_on(route(&f.store, f.chats[0], f.today));
    assert_eq!(chain.members.len(), 3, "village 0 has a resident, a contact officer and an auxiliary");
    let mut group = c.benchmark_group("routing");
    let mut i = 0;
    assert!(!f.store.registry_in_memory());
    group.bench_function("database", |b| {
        b.iter(|| {
            let chat = f.chats[i % f.chats.len()];
            i += 1;
            rt.block_on(route(&f.store, black_box(chat), f.today))
        })
    });
    assert!(rt.block_on(f.store.load_registry_now()).unwrap());
    group.bench_function("in_memory", |b| {
        b.iter(|| {
            let chat = f.chats[i % f.chats.len()];
            i += 1;
            rt.block_on(route(&f.store, black_box(chat), f.today))
        })
    });
    assert!(f.store.registry_in_memory(), "nothing changed the registry meanwhile");
    group.finish();
    rt.block_on(f.store.close());
}

fn templates(c: &mut Criterion) {
    let texts = Texts::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bot-config/templates"), "zh-CN").unwrap();
    let rt = runtime();
    let f = fixture(&rt);
    let (village, assigned) = rt.block_on(async {
        let village = routing::village_of_chat(&f.store, "telegram", f.chats[0]).await.unwrap().expect("bound chat");
        let assigned = f.store.assigned_officers(village.id, &f.today.to_string()).await.unwrap();
        f.store.close().await;
        (village, assigned)
    });
    assert_eq!(assigned.len(), 3);
    // A context the template does not accept renders as "[contact_card]": make sure it is the card.
    let text = contact_card(&texts, &village, assigned.clone());
    assert!(text.contains(&village.name) && text.contains("警员") && !text.starts_with('['), "{text}");
    let kind = EmergencyKind::Police.as_str();
    let text = texts.render(Msg::EmergencyReply, minijinja::context! { kind });
    assert!(text.contains("110") && !text.starts_with('['), "{text}");

    let mut group = c.benchmark_group("templates");
    group.bench_function("contact_card", |b| b.iter(|| contact_card(&texts, black_box(&village), assigned.clone())));
    group.bench_function("emergency_reply", |b| {
        b.iter(|| texts.render(Msg::EmergencyReply, minijinja::context! { kind => black_box(kind) }))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = routing, templates
}
criterion_main!(benches);
