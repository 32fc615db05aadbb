//! The registry in memory: every lookup a message makes (a chat's binding, a village with its
//! office and station, the officers assigned to a village on a day, an officer by id or by
//! account, an officer's account, a station's staff groups) answered without a query.
//!
//! The registry changes rarely (an import, a binding, an enrolment, a duty switch) and is
//! read on almost every message. A daemon ([`super::Store::keep_registry_in_memory`]) loads
//! all of it in one read transaction into a [`Snapshot`] and answers from that; a province
//! (46,000 villages and groups, 12,000 officers) loads in about a second and takes about
//! 15 MiB: chats, villages and officers are sorted slices found by binary search, allocated
//! at their exact size, villages share their office and station, assignments keep only ids,
//! a one-byte role and day numbers (BENCHMARKS.md). There is no per-key cache to warm: once
//! the snapshot is there, no lookup is cold.
//!
//! Freshness. The snapshot is either current or absent, never stale:
//!
//! - every write the [`Store`](super::Store) makes to a registry table drops it once the
//!   write is committed, and all handles to one database in a process share one cache, so
//!   this process never reads its own change stale. Lookups then go to the database until
//!   the loader has read the registry again (it waits as long as its last load took, at
//!   most a second, so a burst of writes does not keep it busy);
//! - triggers count every change to those tables in `registry_version` (migration 000006),
//!   whoever makes it: the CLI, another daemon, a hand-written `UPDATE`. A watcher compares
//!   the count every second ([`super::REGISTRY_POLL`]) and drops the snapshot when it moved.
//!   Another process's change is seen within that time. The loader reads the count in the
//!   same transaction as the tables, so a daemon's own load does not look like a change.
//!
//! A load that started before a change is not installed: each install checks the generation
//! the load started at.
//!
//! Startup. Until the daemon's first load is done (about a second for a province), lookups
//! wait for it ([`RegistryCache::ready`], at most [`FIRST_LOAD_WAIT`]) instead of asking the
//! database: a restart into a province-size backlog otherwise sent its first second of
//! messages to the database beside the load, three queries a lookup (p99 2.3 s, 109 MiB
//! peak in BENCHMARKS.md). The wait is bounded twice: by the updates in hand
//! (`channels::backlog`) and by the time; a load that fails lets them go to the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use tokio::sync::Notify;

use super::Backend;
use super::chats::ChatRow;
use super::mapping::Flag;
use super::officers::OfficerRow;
use super::registry::{AssignedOfficer, VillageRow};
use crate::domain::{AssignmentRole, OfficeKind, OfficerKind, VillageKind};

/// `seen_version` before the version was first read.
const UNSEEN: i64 = i64::MIN;

/// The longest the loader rests between two loads while the registry keeps changing.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The longest a lookup waits for the daemon's first load before it asks the database.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(5);

struct Station {
    id: i64,
    code: Box<str>,
    name: Box<str>,
    duty_phone: Box<str>,
}

struct Office {
    id: i64,
    code: Box<str>,
    name: Box<str>,
    kind: OfficeKind,
    address: Box<str>,
    hours: Box<str>,
    phone: Option<Box<str>>,
    station: Arc<Station>,
}

struct Village {
    code: Box<str>,
    name: Box<str>,
    kind: VillageKind,
    /// Shared by the 5–8 villages of an office: a province holds each office once.
    office: Arc<Office>,
}

/// One assignment, with its dates as `YYYYMMDD` numbers (ordered as the ISO text is; 0 for
/// an open end).
struct Assignment {
    village_id: i64,
    officer_id: i64,
    since: u32,
    until: u32,
    role: AssignmentRole,
}

struct Officer {
    badge: Box<str>,
    name: Box<str>,
    kind: OfficerKind,
    phone: Option<Box<str>>,
    station_id: i64,
    on_duty: bool,
    /// On leave until this ISO day (compared as text, as the query does).
    off_until: Option<Box<str>>,
    /// Linked to an account on some platform.
    enrolled: bool,
}

impl Officer {
    fn row(&self, id: i64) -> OfficerRow {
        OfficerRow {
            id,
            badge: self.badge.to_string(),
            name: self.name.to_string(),
            kind: self.kind,
            phone: self.phone.as_deref().map(str::to_string),
            station_id: self.station_id,
            on_duty: self.on_duty,
        }
    }
}

/// A bound (or once bound) chat; its platform is the map it is in.
struct Chat {
    id: i64,
    village_id: Option<i64>,
    station_id: Option<i64>,
    bound_by: Option<i64>,
    bound_at: Option<i64>,
    title: Box<str>,
    active: bool,
    bot_admin: bool,
}

/// A map kept as one sorted slice, found by binary search: no spare capacity and nothing
/// per entry but the entry. A province's 46,000 chats in a `HashMap` took 15 MiB at the
/// peak of its growth (heaptrack; BENCHMARKS.md), as a slice 4.6 MiB.
struct SortedMap<K, V>(Box<[(K, V)]>);

impl<K: Ord + Copy, V> SortedMap<K, V> {
    fn new(mut entries: Vec<(K, V)>) -> Self {
        entries.sort_unstable_by_key(|(k, _)| *k);
        SortedMap(entries.into_boxed_slice())
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.0.binary_search_by_key(key, |(k, _)| *k).ok().map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.0.binary_search_by_key(key, |(k, _)| *k).ok().map(|i| &mut self.0[i].1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Box::default())
    }
}

/// What one platform's ids resolve to.
#[derive(Default)]
struct PlatformMaps {
    chats: SortedMap<i64, Chat>,
    /// Account → officer.
    identities: HashMap<i64, i64>,
    /// Officer → account.
    accounts: HashMap<i64, i64>,
    /// Station → its active staff groups, ascending.
    station_chats: HashMap<i64, Vec<i64>>,
}

/// The whole registry as one read transaction saw it.
#[derive(Default)]
pub(crate) struct Snapshot {
    villages: SortedMap<i64, Village>,
    /// Every assignment any village ever had, by village (the history is small: officers
    /// stay 3 years).
    assignments: Box<[Assignment]>,
    officers: SortedMap<i64, Officer>,
    platforms: Vec<(String, PlatformMaps)>,
}

/// `YYYY-MM-DD` as the number `YYYYMMDD`, which orders as the text does.
fn day_number(day: &str) -> Option<u32> {
    let b = day.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    Some(digits(0..4)? * 10_000 + digits(5..7)? * 100 + digits(8..10)?)
}

impl Snapshot {
    fn platform(&self, platform: &str) -> Option<&PlatformMaps> {
        self.platforms.iter().find(|(p, _)| p == platform).map(|(_, maps)| maps)
    }

    fn platform_mut(&mut self, platform: &str) -> &mut PlatformMaps {
        match self.platforms.iter().position(|(p, _)| p == platform) {
            Some(i) => &mut self.platforms[i].1,
            None => {
                self.platforms.push((platform.to_string(), PlatformMaps::default()));
                &mut self.platforms.last_mut().expect("just pushed").1
            }
        }
    }

    pub(crate) fn chat(&self, platform: &str, chat_id: i64) -> Option<ChatRow> {
        let c = self.platform(platform)?.chats.get(&chat_id)?;
        Some(ChatRow {
            id: c.id,
            platform: platform.to_string(),
            chat_id,
            title: c.title.to_string(),
            village_id: c.village_id,
            station_id: c.station_id,
            bound_by: c.bound_by,
            bound_at: c.bound_at,
            active: c.active,
            bot_admin: c.bot_admin,
        })
    }

    pub(crate) fn village(&self, id: i64) -> Option<VillageRow> {
        let v = self.villages.get(&id)?;
        let (o, s) = (&v.office, &v.office.station);
        Some(VillageRow {
            id,
            code: v.code.to_string(),
            name: v.name.to_string(),
            kind: v.kind,
            office_id: o.id,
            office_code: o.code.to_string(),
            office_name: o.name.to_string(),
            office_kind: o.kind,
            office_address: o.address.to_string(),
            office_hours: o.hours.to_string(),
            office_phone: o.phone.as_deref().map(str::to_string),
            station_id: s.id,
            station_code: s.code.to_string(),
            station_name: s.name.to_string(),
            station_duty_phone: s.duty_phone.to_string(),
        })
    }

    /// The officers serving a village on `day`, in duty-chain order, as
    /// `Store::assigned_officers` queries them; `None` if `day` is not an ISO date (the
    /// caller then asks the database).
    pub(crate) fn assigned(&self, village_id: i64, day: &str) -> Option<Vec<AssignedOfficer>> {
        let n = day_number(day)?;
        let from = self.assignments.partition_point(|a| a.village_id < village_id);
        let to = self.assignments.partition_point(|a| a.village_id <= village_id);
        let mut active: Vec<(&Assignment, i64, &Officer)> = self.assignments[from..to]
            .iter()
            .filter(|a| a.since <= n && (a.until == 0 || a.until > n))
            .filter_map(|a| Some((a, a.officer_id, self.officers.get(&a.officer_id)?)))
            .collect();
        active.sort_by(|(a, _, f), (b, _, g)| (a.role, a.since, &f.badge).cmp(&(b.role, b.since, &g.badge)));
        Some(
            active
                .into_iter()
                .map(|(a, id, f)| AssignedOfficer {
                    officer_id: id,
                    role: a.role,
                    badge: f.badge.to_string(),
                    name: f.name.to_string(),
                    kind: f.kind,
                    phone: f.phone.as_deref().map(str::to_string),
                    on_duty: f.on_duty && f.off_until.as_deref().is_none_or(|u| u <= day),
                    enrolled: f.enrolled,
                })
                .collect(),
        )
    }

    pub(crate) fn officer(&self, id: i64) -> Option<OfficerRow> {
        self.officers.get(&id).map(|f| f.row(id))
    }

    pub(crate) fn officer_by_identity(&self, platform: &str, user_id: i64) -> Option<OfficerRow> {
        let officer = self.platform(platform)?.identities.get(&user_id)?;
        self.officer(*officer)
    }

    pub(crate) fn account(&self, officer_id: i64, platform: &str) -> Option<i64> {
        self.platform(platform)?.accounts.get(&officer_id).copied()
    }

    pub(crate) fn station_chats(&self, station_id: i64, platform: &str) -> Vec<i64> {
        self.platform(platform).and_then(|p| p.station_chats.get(&station_id)).cloned().unwrap_or_default()
    }

    /// How many villages, officers and chats it holds (for the log line).
    fn counts(&self) -> (usize, usize, usize) {
        (self.villages.len(), self.officers.len(), self.platforms.iter().map(|(_, p)| p.chats.len()).sum())
    }
}

type StationRecord = (i64, String, String, String);
type OfficeRecord = (i64, i64, String, String, OfficeKind, String, String, Option<String>);
type VillageRecord = (i64, i64, String, String, VillageKind);
type OfficerRecord = (i64, String, String, OfficerKind, Option<String>, i64, Flag, Option<String>);
type AssignmentRecord = (i64, i64, AssignmentRole, String, Option<String>);
type ChatRecord = (i64, String, i64, String, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Flag, Flag);

/// How many rows `table` has, to allocate for them at once (growing by doubling held the
/// old and the new table at once: up to three times the rows).
async fn count(tx: &mut sqlx::Transaction<'static, sqlx::Any>, table: &str) -> anyhow::Result<usize> {
    let n: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(&mut **tx).await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Reads the whole registry, and the `registry_version` it is at, in one read transaction.
async fn load(pool: &sqlx::AnyPool, backend: Backend) -> anyhow::Result<(Snapshot, i64)> {
    use anyhow::Context;
    let mut tx = match backend {
        Backend::Sqlite => pool.begin().await,
        Backend::Postgres => pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await,
    }
    .context("Failed to start a read transaction")?;
    let version: i64 = sqlx::query_scalar("SELECT v FROM registry_version WHERE id = 1").fetch_one(&mut *tx).await?;
    let mut snap = Snapshot::default();

    let mut stations = HashMap::new();
    let mut rows =
        sqlx::query_as::<_, StationRecord>("SELECT id, code, name, duty_phone FROM stations").fetch(&mut *tx);
    while let Some((id, code, name, duty_phone)) = rows.try_next().await? {
        let (code, name, duty_phone) = (code.into(), name.into(), duty_phone.into());
        stations.insert(id, Arc::new(Station { id, code, name, duty_phone }));
    }
    drop(rows);

    let mut offices = HashMap::new();
    let mut rows = sqlx::query_as::<_, OfficeRecord>(
        "SELECT id, station_id, code, name, kind, address, hours, phone FROM offices",
    )
    .fetch(&mut *tx);
    while let Some((id, station_id, code, name, kind, address, hours, phone)) = rows.try_next().await? {
        let station = stations.get(&station_id).context("an office of an unknown station")?.clone();
        let office = Office {
            id,
            code: code.into(),
            name: name.into(),
            kind,
            address: address.into(),
            hours: hours.into(),
            phone: phone.map(Into::into),
            station,
        };
        offices.insert(id, Arc::new(office));
    }
    drop(rows);

    let mut villages = Vec::with_capacity(count(&mut tx, "villages").await?);
    let mut rows =
        sqlx::query_as::<_, VillageRecord>("SELECT id, office_id, code, name, kind FROM villages").fetch(&mut *tx);
    while let Some((id, office_id, code, name, kind)) = rows.try_next().await? {
        let office = offices.get(&office_id).context("a village of an unknown office")?.clone();
        villages.push((id, Village { code: code.into(), name: name.into(), kind, office }));
    }
    drop(rows);
    snap.villages = SortedMap::new(villages);

    let mut officers = Vec::with_capacity(count(&mut tx, "officers").await?);
    let mut rows = sqlx::query_as::<_, OfficerRecord>(
        "SELECT id, badge, name, kind, phone, station_id, on_duty, off_until FROM officers",
    )
    .fetch(&mut *tx);
    while let Some((id, badge, name, kind, phone, station_id, on_duty, off_until)) = rows.try_next().await? {
        officers.push((
            id,
            Officer {
                badge: badge.into(),
                name: name.into(),
                kind,
                phone: phone.map(Into::into),
                station_id,
                on_duty: on_duty.into(),
                off_until: off_until.map(Into::into),
                enrolled: false,
            },
        ));
    }
    drop(rows);
    snap.officers = SortedMap::new(officers);

    let mut assignments = Vec::with_capacity(count(&mut tx, "assignments").await?);
    let mut rows = sqlx::query_as::<_, AssignmentRecord>(
        "SELECT village_id, officer_id, role, since, until FROM assignments ORDER BY village_id, id",
    )
    .fetch(&mut *tx);
    while let Some((village_id, officer_id, role, since, until)) = rows.try_next().await? {
        let since = day_number(&since).with_context(|| format!("assignment since {since:?} is not YYYY-MM-DD"))?;
        let until = match until {
            Some(u) => day_number(&u).with_context(|| format!("assignment until {u:?} is not YYYY-MM-DD"))?,
            None => 0,
        };
        assignments.push(Assignment { village_id, officer_id, since, until, role });
    }
    drop(rows);
    // Already in village order from the query; sorted again (stably) so that a database
    // collating differently cannot break the binary search.
    assignments.sort_by_key(|a| a.village_id);
    snap.assignments = assignments.into_boxed_slice();

    let mut rows =
        sqlx::query_as::<_, (i64, String, i64)>("SELECT officer_id, platform, user_id FROM officer_identities")
            .fetch(&mut *tx);
    while let Some((officer_id, platform, user_id)) = rows.try_next().await? {
        if let Some(officer) = snap.officers.get_mut(&officer_id) {
            officer.enrolled = true;
        }
        let maps = snap.platform_mut(&platform);
        maps.identities.insert(user_id, officer_id);
        maps.accounts.insert(officer_id, user_id);
    }
    drop(rows);

    let per_platform: Vec<(String, i64)> =
        sqlx::query_as("SELECT platform, COUNT(*) FROM chats GROUP BY platform").fetch_all(&mut *tx).await?;
    let mut chats: Vec<(String, Vec<(i64, Chat)>)> = per_platform
        .into_iter()
        .map(|(platform, n)| (platform, Vec::with_capacity(usize::try_from(n).unwrap_or(0))))
        .collect();
    let sql = "SELECT id, platform, chat_id, title, village_id, station_id, bound_by, bound_at, active, bot_admin \
               FROM chats ORDER BY platform, chat_id";
    let mut rows = sqlx::query_as::<_, ChatRecord>(sql).fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
        let (id, platform, chat_id, title, village_id, station_id, bound_by, bound_at, active, bot_admin) = row;
        let i = match chats.iter().position(|(p, _)| *p == platform) {
            Some(i) => i,
            None => {
                chats.push((platform, Vec::new()));
                chats.len() - 1
            }
        };
        let chat = Chat {
            id,
            village_id,
            station_id,
            bound_by,
            bound_at,
            title: title.into(),
            active: active.into(),
            bot_admin: bot_admin.into(),
        };
        chats[i].1.push((chat_id, chat));
    }
    drop(rows);
    tx.commit().await?;

    for (platform, chats) in chats {
        let maps = snap.platform_mut(&platform);
        for (chat_id, chat) in &chats {
            if let (Some(station), true) = (chat.station_id, chat.active) {
                maps.station_chats.entry(station).or_default().push(*chat_id);
            }
        }
        maps.chats = SortedMap::new(chats);
    }
    for (_, maps) in &mut snap.platforms {
        maps.station_chats.values_mut().for_each(|chats| chats.sort_unstable());
    }
    Ok((snap, version))
}

/// The registry of one database in this process.
pub(crate) struct RegistryCache {
    generation: AtomicU64,
    /// Whether a watcher is following `registry_version` for this cache.
    watched: AtomicBool,
    /// Whether this process keeps the registry in memory (a loader runs).
    resident: AtomicBool,
    /// Whether the loader's first load is still under way (lookups wait for it).
    first_pending: AtomicBool,
    /// Wakes the lookups waiting for the first load when it ends, installed or not.
    first_done: Notify,
    /// The `registry_version` last read ([`UNSEEN`] before the first read).
    seen_version: AtomicI64,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Wakes the loader after a change.
    changed: Arc<Notify>,
}

impl Default for RegistryCache {
    fn default() -> Self {
        RegistryCache {
            generation: AtomicU64::new(0),
            watched: AtomicBool::new(false),
            resident: AtomicBool::new(false),
            first_pending: AtomicBool::new(false),
            first_done: Notify::new(),
            seen_version: AtomicI64::new(UNSEEN),
            snapshot: RwLock::new(None),
            changed: Arc::new(Notify::new()),
        }
    }
}

impl std::fmt::Debug for RegistryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCache").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl RegistryCache {
    /// The registry in memory, if it is loaded and nothing changed since.
    pub(crate) fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The registry in memory as [`current`](Self::current) gives it, but while the daemon's
    /// first load is under way, after waiting for it (at most [`FIRST_LOAD_WAIT`]).
    pub(crate) async fn ready(&self) -> Option<Arc<Snapshot>> {
        self.ready_within(FIRST_LOAD_WAIT).await
    }

    async fn ready_within(&self, bound: Duration) -> Option<Arc<Snapshot>> {
        if let Some(snapshot) = self.current() {
            return Some(snapshot);
        }
        if !self.first_pending.load(Ordering::Acquire) {
            return None;
        }
        let done = self.first_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if self.first_pending.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(bound, done).await;
        }
        self.current()
    }

    /// The first load ended (installed or not): lookups stop waiting for it.
    fn first_load_ended(&self) {
        if self.first_pending.swap(false, Ordering::AcqRel) {
            self.first_done.notify_waiters();
        }
    }

    /// Forgets the snapshot (after a registry change) and wakes the loader.
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = None;
        if self.resident.load(Ordering::Acquire) {
            self.changed.notify_one();
        }
    }

    /// Installs a snapshot read at `version` by a load that started at `generation`, unless
    /// the registry changed since. Returns whether it was installed.
    fn install(&self, generation: u64, snapshot: Snapshot, version: i64) -> bool {
        let mut slot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return false;
        }
        *slot = Some(Arc::new(snapshot));
        self.seen_version.store(version, Ordering::Release);
        true
    }

    /// Loads the registry now and installs it unless it changed meanwhile.
    pub(crate) async fn load_now(&self, pool: &sqlx::AnyPool, backend: Backend) -> anyhow::Result<bool> {
        let generation = self.generation.load(Ordering::Acquire);
        let started = Instant::now();
        let (snapshot, version) = load(pool, backend).await?;
        let (villages, officers, chats) = snapshot.counts();
        let installed = self.install(generation, snapshot, version);
        if installed {
            tracing::info!(villages, officers, chats, ms = started.elapsed().as_millis() as u64, "registry in memory");
        }
        Ok(installed)
    }
}

/// The caches of the databases open in this process, by URL, so that every handle to one
/// database (the daemon's, the console's, a test's) sees the others' changes at once.
static SHARED: LazyLock<Mutex<HashMap<String, Weak<RegistryCache>>>> = LazyLock::new(Mutex::default);

/// The cache for the database at `url` (a private one for an in-memory database, which no
/// other handle can open), and whether the caller should start watching it.
pub(crate) fn for_url(url: &str) -> (Arc<RegistryCache>, bool) {
    if url.contains(":memory:") {
        return (Arc::new(RegistryCache::default()), false);
    }
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    shared.retain(|_, weak| weak.strong_count() > 0);
    let cache = match shared.get(url).and_then(Weak::upgrade) {
        Some(cache) => cache,
        None => {
            let cache = Arc::new(RegistryCache::default());
            shared.insert(url.to_string(), Arc::downgrade(&cache));
            cache
        }
    };
    let start_watching = !cache.watched.swap(true, Ordering::AcqRel);
    (cache, start_watching)
}

/// Whether the caller should start the loader of `cache` (the first to ask). From then on
/// lookups wait for its first load (see [`RegistryCache::ready`]).
pub(crate) fn start_resident(cache: &RegistryCache) -> bool {
    let start = !cache.resident.swap(true, Ordering::AcqRel);
    if start && cache.current().is_none() {
        cache.first_pending.store(true, Ordering::Release);
    }
    start
}

/// Keeps the registry of `cache` in memory: loads it, then again after each change, resting
/// between loads as long as the last one took (at most [`MAX_PAUSE`]). Ends when the cache is
/// dropped or the pool closed.
pub(crate) async fn keep_loaded(cache: Weak<RegistryCache>, pool: sqlx::AnyPool, backend: Backend) {
    let Some(changed) = cache.upgrade().map(|c| c.changed.clone()) else { return };
    loop {
        let started = Instant::now();
        let Some(strong) = cache.upgrade() else { return };
        let loaded = strong.load_now(&pool, backend).await;
        strong.first_load_ended();
        match loaded {
            Ok(_) => {}
            Err(_) if pool.is_closed() => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not load the registry into memory; answering from the database")
            }
        }
        drop(strong);
        // Wait for a change; look now and then whether there is still something to serve,
        // and retry a load that failed or was overtaken by a change.
        loop {
            tokio::select! {
                _ = changed.notified() => break,
                _ = tokio::time::sleep(super::REGISTRY_POLL) => {}
            }
            let Some(strong) = cache.upgrade() else { return };
            if pool.is_closed() {
                strong.resident.store(false, Ordering::Release);
                return;
            }
            if strong.current().is_none() {
                break;
            }
        }
        tokio::time::sleep(started.elapsed().min(MAX_PAUSE)).await;
    }
}

/// Reads `registry_version` and drops the snapshot if it moved since the last look (or if it
/// cannot be read: then nothing in memory can be trusted).
pub(crate) async fn sync(cache: &RegistryCache, pool: &sqlx::AnyPool) -> Result<(), sqlx::Error> {
    match sqlx::query_scalar::<_, i64>("SELECT v FROM registry_version WHERE id = 1").fetch_one(pool).await {
        Ok(v) => {
            // The first look only notes the version: nothing is in memory that it could make
            // stale (an install notes its own version), and clearing would throw away the
            // load under way at startup (the registry was read twice: 2.7 s, not 1.1 s).
            let seen = cache.seen_version.swap(v, Ordering::AcqRel);
            if seen != v && seen != UNSEEN {
                tracing::debug!(version = v, "registry changed elsewhere; reloading");
                cache.clear();
            }
            Ok(())
        }
        Err(e) => {
            cache.seen_version.store(UNSEEN, Ordering::Release);
            cache.clear();
            Err(e)
        }
    }
}

/// Calls [`sync`] every `every` until the cache is dropped or the pool closed (a later handle
/// to the same database then starts a new watcher).
pub(crate) async fn watch(cache: Weak<RegistryCache>, pool: sqlx::AnyPool, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(strong) = cache.upgrade() else { return };
        match sync(&strong, &pool).await {
            Ok(()) => {}
            Err(_) if pool.is_closed() => {
                strong.watched.store(false, Ordering::Release);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not read the registry version; answering from the database"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_overtaken_by_a_change_is_not_installed() {
        let cache = RegistryCache::default();
        let generation = cache.generation.load(Ordering::Acquire);
        cache.clear(); // the registry changes while the load is reading it
        assert!(!cache.install(generation, Snapshot::default(), 1));
        assert!(cache.current().is_none(), "lookups go to the database");
        let generation = cache.generation.load(Ordering::Acquire);
        assert!(cache.install(generation, Snapshot::default(), 2));
        assert!(cache.current().is_some());
        cache.clear();
        assert!(cache.current().is_none(), "a change drops what was in memory");
    }

    #[tokio::test]
    async fn the_first_look_at_the_version_keeps_the_load_under_way_and_a_later_change_drops_it() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect("sqlite::memory:").await.unwrap();
        for sql in [
            "CREATE TABLE registry_version (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
            "INSERT INTO registry_version (id, v) VALUES (1, 7)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let cache = RegistryCache::default();
        let generation = cache.generation.load(Ordering::Acquire); // the startup load begins
        sync(&cache, &pool).await.unwrap(); // the watcher's first look, meanwhile
        assert!(cache.install(generation, Snapshot::default(), 7), "the startup load is not thrown away");
        sync(&cache, &pool).await.unwrap();
        assert!(cache.current().is_some(), "nothing changed");
        sqlx::query("UPDATE registry_version SET v = 8").execute(&pool).await.unwrap();
        sync(&cache, &pool).await.unwrap();
        assert!(cache.current().is_none(), "a change elsewhere drops what was in memory");
    }

    #[tokio::test]
    async fn lookups_wait_for_the_first_load_but_not_for_a_reload() {
        let cache = Arc::new(RegistryCache::default());
        assert!(cache.ready().await.is_none(), "no loader: the database answers at once");
        assert!(start_resident(&cache));
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.ready().await.is_some() }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await; // the province is being read
        }
        assert!(!waiting.is_finished(), "the lookup waits for the first load");
        let generation = cache.generation.load(Ordering::Acquire);
        assert!(cache.install(generation, Snapshot::default(), 1));
        cache.first_load_ended();
        assert!(waiting.await.unwrap(), "and is answered from memory");

        // After a later change nobody waits: the database answers until the reload.
        cache.clear();
        assert!(cache.ready_within(Duration::MAX).await.is_none());
        // A first load that does not end lets the lookup go when the bound is reached.
        let stuck = RegistryCache::default();
        assert!(start_resident(&stuck));
        assert!(stuck.ready_within(Duration::from_millis(1)).await.is_none(), "then the database answers");
    }

    #[test]
    fn iso_days_become_numbers_that_order_as_the_text_does() {
        assert_eq!(day_number("2024-03-01"), Some(20240301));
        assert!(day_number("2023-12-31") < day_number("2024-01-01"));
        for bad in ["2024-3-01", "2024/03/01", "20240301", "2024-03-0x", ""] {
            assert_eq!(day_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn handles_to_one_database_share_a_cache_and_in_memory_ones_do_not() {
        let (a, watch_a) = for_url("sqlite:///tmp/cunjing-cache-test-a.sqlite");
        let (b, watch_b) = for_url("sqlite:///tmp/cunjing-cache-test-a.sqlite");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(watch_a && !watch_b, "one watcher per database");
        let (m1, _) = for_url("sqlite::memory:");
        let (m2, _) = for_url("sqlite::memory:");
        assert!(!Arc::ptr_eq(&m1, &m2));
    }
}
