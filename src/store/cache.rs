//! A read-through cache of the registry lookups every message makes: a chat's binding, a
//! village with its office and station, the officers assigned to a village on a day, an
//! officer by id or by account, an officer's account, a station's staff groups.
//!
//! The registry changes rarely (an import, a binding, an enrolment, a duty switch) and is
//! read on almost every message, so a contact question is answered from memory instead of
//! four queries (BENCHMARKS.md). Freshness:
//!
//! - every write the [`Store`](super::Store) makes to a registry table clears the cache once
//!   it is committed, and all handles to one database in a process share one cache, so this
//!   process never reads its own change stale;
//! - triggers count every change to those tables in `registry_version`
//!   (migration 000006), whoever makes it: the CLI, another daemon, a hand-written `UPDATE`.
//!   A watcher compares the count every second ([`super::REGISTRY_POLL`]) and clears the
//!   cache when it moved. Another process's change is seen within that time.
//!
//! A lookup that started before a clear does not put its (possibly old) answer back: each
//! insert checks the generation it read at the start.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::Duration;

use super::chats::ChatRow;
use super::officers::OfficerRow;
use super::registry::{AssignedOfficer, VillageRow};

/// Most entries one map keeps before it starts again empty (a province has ~46,000 groups
/// and villages; this bounds memory if something looks up far more keys than that).
const MAX_ENTRIES: usize = 200_000;

/// `seen_version` before the version was first read.
const UNSEEN: i64 = i64::MIN;

/// One map of answers.
pub(crate) struct Memo<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo { map: RwLock::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq, V> Memo<K, V> {
    fn clear(&self) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The cached lookups of one database.
pub(crate) struct RegistryCache {
    generation: AtomicU64,
    /// Whether a watcher is following `registry_version` for this cache.
    watched: AtomicBool,
    /// The `registry_version` last read ([`UNSEEN`] before the first read).
    seen_version: AtomicI64,
    pub(crate) chats: Memo<(String, i64), Option<ChatRow>>,
    pub(crate) villages: Memo<i64, Option<VillageRow>>,
    pub(crate) assigned: Memo<(i64, String), Vec<AssignedOfficer>>,
    pub(crate) officers: Memo<i64, Option<OfficerRow>>,
    pub(crate) identities: Memo<(String, i64), Option<OfficerRow>>,
    pub(crate) accounts: Memo<(i64, String), Option<i64>>,
    pub(crate) station_chats: Memo<(i64, String), Vec<i64>>,
}

impl Default for RegistryCache {
    fn default() -> Self {
        RegistryCache {
            generation: AtomicU64::new(0),
            watched: AtomicBool::new(false),
            seen_version: AtomicI64::new(UNSEEN),
            chats: Memo::default(),
            villages: Memo::default(),
            assigned: Memo::default(),
            officers: Memo::default(),
            identities: Memo::default(),
            accounts: Memo::default(),
            station_chats: Memo::default(),
        }
    }
}

impl std::fmt::Debug for RegistryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCache").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl RegistryCache {
    /// The cached answer for `key`, or `load`'s, remembered unless the registry changed while
    /// it was loading.
    pub(crate) async fn get<K, V, Fut>(&self, memo: &Memo<K, V>, key: K, load: Fut) -> anyhow::Result<V>
    where
        K: Hash + Eq,
        V: Clone,
        Fut: Future<Output = anyhow::Result<V>>,
    {
        if let Some(v) = memo.map.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(v.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let value = load.await?;
        let mut map = memo.map.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, value.clone());
        }
        Ok(value)
    }

    /// Forgets everything (after a registry change).
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.chats.clear();
        self.villages.clear();
        self.assigned.clear();
        self.officers.clear();
        self.identities.clear();
        self.accounts.clear();
        self.station_chats.clear();
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

/// Reads `registry_version` and clears the cache if it moved since the last look (or if it
/// cannot be read: then nothing cached can be trusted).
pub(crate) async fn sync(cache: &RegistryCache, pool: &sqlx::AnyPool) -> Result<(), sqlx::Error> {
    match sqlx::query_scalar::<_, i64>("SELECT v FROM registry_version WHERE id = 1").fetch_one(pool).await {
        Ok(v) => {
            let seen = cache.seen_version.swap(v, Ordering::AcqRel);
            if seen != v {
                if seen != UNSEEN {
                    tracing::debug!(version = v, "registry changed elsewhere; cache cleared");
                }
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
            Err(e) => tracing::warn!(error = %e, "could not read the registry version; cache cleared"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_is_remembered_until_the_cache_is_cleared() {
        let cache = RegistryCache::default();
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(7))
        };
        assert_eq!(cache.get(&cache.accounts, (1, "telegram".into()), load()).await.unwrap(), Some(7));
        assert_eq!(cache.get(&cache.accounts, (1, "telegram".into()), load()).await.unwrap(), Some(7));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "the second lookup came from memory");
        cache.clear();
        cache.get(&cache.accounts, (1, "telegram".into()), load()).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2, "after a clear the database is asked again");
    }

    #[tokio::test]
    async fn a_lookup_that_straddles_a_clear_does_not_put_its_old_answer_back() {
        let cache = RegistryCache::default();
        let stale = async {
            cache.clear(); // the registry changes while this lookup is reading it
            Ok(Some(1))
        };
        assert_eq!(cache.get(&cache.accounts, (1, "telegram".into()), stale).await.unwrap(), Some(1));
        let fresh = cache.get(&cache.accounts, (1, "telegram".into()), async { Ok(Some(2)) }).await.unwrap();
        assert_eq!(fresh, Some(2), "the old answer was not kept");
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
