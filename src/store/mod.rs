//! The database: one connection pool over SQLite (the embedded default) or PostgreSQL (for a
//! city or province run by several daemons), with the migrations of `migrations/` applied at
//! start.
//!
//! All SQL in the crate runs through sqlx's `Any` driver with `$N` placeholders, which both
//! engines accept, so each query is written once. The schema keeps to the types both share:
//! BIGINT ids and counters, UTC milliseconds for instants, ISO text for calendar dates, 0/1 for
//! flags. Each backend has its own migration folder because DDL differs (identity columns).
//!
//! Sub-modules hold the queries of one table group each, as `impl Store` blocks (or functions
//! taking a transaction) returning domain rows:
//!
//! - [`registry`]: stations, offices, villages and the assignments active on a day (reads;
//!   `crate::registry` imports), with the station and office lookups;
//! - [`officers`]: officers, their platform accounts and enrolment codes;
//! - [`chats`]: the groups the bot is in and what each is bound to, residents' chosen
//!   village, sends that failed for good;
//! - [`tips`]: tips, their items, reporters and history; [`tip_list`]: the staff's lists of
//!   them;
//! - [`conversations`]: the guided conversations of private chats;
//! - [`broadcasts`]: broadcasts, their delivery ledger and the "收到" acknowledgements;
//! - [`robots`]: the WeCom group robots' webhook addresses;
//! - [`schedule`]: the runs of scheduled jobs;
//! - [`audit`]: the chained, append-only audit log;
//! - [`trust`]: station grants, the updates already handled, the daemons' heartbeats and
//!   the retention purges;
//! - [`web`]: the console's accounts and sessions;
//! - [`reports`]: figures over a period (the monthly report, the console's figures);
//! - [`wechat`]: what the WeChat channel keeps;
//! - [`secrets`]: the database's keys; `batch`: group commit; `cache`: the registry in
//!   memory.

pub mod areas;
pub mod audit;
pub(crate) mod batch;
pub mod broadcasts;
mod cache;
pub mod chats;
pub mod conversations;
mod mapping;
pub mod officers;
mod outbox;
pub mod registry;
pub mod reports;
pub mod robots;
pub mod schedule;
pub mod secrets;
pub mod tip_list;
pub mod tips;
pub mod trust;
pub mod web;
pub mod wechat;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which engine the pool talks to; a few statements (transaction start, upserts of history)
/// differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The shared handle to the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where writes go. On an SQLite file this is a second pool of exactly one connection:
    /// SQLite has one writer at a time, and writers that meet on its lock wait in its busy
    /// handler, which sleeps 1, 2, 5, 10 … ms between tries (BENCHMARKS.md: tips at 0.09 of
    /// the ceiling). One connection makes them queue in the pool instead, in order and
    /// without sleeping. Readers keep `pool` (WAL: they never wait for the writer). On
    /// PostgreSQL and in-memory SQLite it is `pool` itself.
    writer: AnyPool,
    backend: Backend,
    /// Registry lookups, shared by every handle to this database in the process.
    cache: std::sync::Arc<cache::RegistryCache>,
    /// New tips go to the writer task, which commits those that arrive together in one
    /// transaction ([`tips::commit_tips`]).
    tip_jobs: tokio::sync::mpsc::UnboundedSender<batch::Job<tips::TipRequest, tips::TipOutcome>>,
    /// Records of updates being handled (several daemons, webhook) go to a writer task too,
    /// which records those that arrive together in one statement ([`trust::commit_claims`]).
    claim_jobs: tokio::sync::mpsc::UnboundedSender<batch::Job<trust::Claim, bool>>,
    /// The database's keys (tip passwords).
    secrets: std::sync::Arc<secrets::Secrets>,
    /// The areas' index, built on first use (`areas.rs`).
    areas: std::sync::Arc<areas::AreaCache>,
}

/// How often a daemon looks whether another process changed the registry (`registry_version`).
pub const REGISTRY_POLL: Duration = Duration::from_secs(1);

/// Settings of the pool, from the `[database]` section of the configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connection URL: `sqlite://path/to/file.sqlite`, `sqlite::memory:` or `postgres://…`.
    pub url: String,
    /// Upper bound of open connections.
    pub max_connections: u32,
    /// How long an SQLite writer waits for another writer's lock before giving up.
    pub busy_timeout: Duration,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the pool (creating an SQLite file on first use), sets the SQLite pragmas the
    /// daemon depends on (WAL, foreign keys, busy timeout) and applies pending migrations.
    pub async fn connect(opts: &StoreOptions) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if opts.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if opts.url.starts_with("postgres:") || opts.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "unsupported database URL {:?}: use sqlite://FILE or postgres://USER@HOST/DB",
                redact_url(&opts.url)
            );
        };
        let url = match backend {
            Backend::Sqlite if !opts.url.contains(":memory:") && !opts.url.contains("mode=") => {
                let sep = if opts.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}mode=rwc", opts.url)
            }
            _ => opts.url.clone(),
        };
        let connect_options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("Failed to parse database URL {}", redact_url(&opts.url)))?;
        let busy_ms = opts.busy_timeout.as_millis();
        let mut pool_options =
            AnyPoolOptions::new().max_connections(opts.max_connections.max(1)).acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            if url.contains(":memory:") {
                // Every connection to `:memory:` is a new database: keep exactly one.
                pool_options = pool_options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
            }
            pool_options = pool_options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                    )))
                    .await?;
                    Ok(())
                })
            });
        }
        let sqlite_file = backend == Backend::Sqlite && !url.contains(":memory:");
        let writer_options = sqlite_file.then(|| pool_options.clone().max_connections(1));
        let pool = pool_options
            .connect_with(connect_options.clone())
            .await
            .with_context(|| format!("Failed to connect to the database at {}", redact_url(&opts.url)))?;
        let writer = match writer_options {
            Some(options) => options
                .connect_with(connect_options)
                .await
                .with_context(|| format!("Failed to connect to the database at {}", redact_url(&opts.url)))?,
            None => pool.clone(),
        };
        let (cache, watch) = cache::for_url(&opts.url);
        migrate(&writer, backend).await?;
        optimize(&writer, backend).await?;
        let secrets =
            std::sync::Arc::new(secrets::Secrets::load(&writer).await.context("Failed to load the database's keys")?);
        let (tip_jobs, jobs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(tips::commit_tips(writer.clone(), backend, secrets.clone(), jobs));
        let (claim_jobs, jobs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(trust::commit_claims(writer.clone(), backend, jobs));
        let store = Store { pool, writer, backend, cache, tip_jobs, claim_jobs, secrets, areas: Default::default() };
        if watch {
            tokio::spawn(cache::watch(std::sync::Arc::downgrade(&store.cache), store.pool.clone(), REGISTRY_POLL));
        }
        Ok(store)
    }

    /// The database's keys.
    pub fn secrets(&self) -> &secrets::Secrets {
        &self.secrets
    }

    /// The pool for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for writes outside [`Store::begin_write`] (single statements).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Keeps the registry in memory from now on (the daemon does; the CLI does not need to):
    /// lookups of chats, villages, assignments and officers then make no query. It is loaded
    /// in the background, and again after every change (see `cache.rs`); until then lookups
    /// ask the database.
    pub fn keep_registry_in_memory(&self) {
        if cache::start_resident(&self.cache) {
            tokio::spawn(cache::keep_loaded(std::sync::Arc::downgrade(&self.cache), self.pool.clone(), self.backend));
        }
    }

    /// Loads the registry into memory now (benchmarks and tests; the daemon's loader does this
    /// by itself). Returns whether it was installed: not if the registry changed meanwhile.
    pub async fn load_registry_now(&self) -> anyhow::Result<bool> {
        self.cache.load_now(&self.pool, self.backend).await.context("Failed to load the registry into memory")
    }

    /// Whether registry lookups are answered from memory right now.
    pub fn registry_in_memory(&self) -> bool {
        self.cache.current().is_some()
    }

    /// Call after committing a change to a registry table (stations, offices, villages,
    /// officers, assignments, identities, chats): this process's lookups see it at once.
    /// (Other processes see it through `registry_version` within [`REGISTRY_POLL`].)
    pub fn registry_changed(&self) {
        self.cache.clear();
    }

    /// Looks at `registry_version` now, as the watcher does every [`REGISTRY_POLL`]: if another
    /// process changed the registry since the last look, this process's lookups are cleared.
    pub async fn sync_registry(&self) -> anyhow::Result<()> {
        cache::sync(&self.cache, &self.pool).await.context("Failed to read the registry version")
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of failing with
    /// `SQLITE_BUSY` when a read lock is upgraded.
    pub async fn begin_write(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        };
        tx.context("Failed to start a database transaction")
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Current time as UTC milliseconds since the epoch, the instant encoding of the schema.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Lets SQLite's query planner know the tables' sizes (`PRAGMA optimize`, bounded by
/// `analysis_limit`: cheap, and a no-op when little changed). Without it, a file that grew from
/// nothing plans the tips list by the village index and sorts a year of tips for every page.
/// Done at start and with each night's purge. PostgreSQL's autovacuum analyses by itself.
async fn optimize(writer: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    if backend == Backend::Sqlite {
        sqlx::query("PRAGMA analysis_limit = 1000").execute(writer).await?;
        sqlx::query("PRAGMA optimize = 0x10002").execute(writer).await?;
    }
    Ok(())
}

impl Store {
    /// See [`optimize`].
    pub async fn optimize(&self) -> anyhow::Result<()> {
        optimize(&self.writer, self.backend).await
    }
}

/// Applies the pending migrations of the engine.
async fn migrate(writer: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    migrator.run(writer).await.context("Failed to apply database migrations")?;
    Ok(())
}

/// The URL with any password replaced, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db/cunjing"), "postgres://app:***@db/cunjing");
        assert_eq!(redact_url("sqlite://cunjing.sqlite"), "sqlite://cunjing.sqlite");
    }
}
