//! A fresh database per test: an SQLite file in a temporary directory, or a new database on
//! the PostgreSQL server named by `CUNJING_TEST_POSTGRES_URL` (skipped, with a notice, when
//! the variable is not set). Stale databases of earlier runs are dropped on first use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cunjing::store::{Store, StoreOptions};
use sqlx::Connection;
use tokio::sync::OnceCell;

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A migrated, empty database and the URL that reaches it.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    /// Keeps the SQLite file alive for the test's lifetime.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A second pool on the same database (as a restarted daemon would open).
    pub async fn reopen(&self) -> Store {
        Store::connect(&options(&self.url)).await.expect("reopen the test database")
    }
}

fn options(url: &str) -> StoreOptions {
    StoreOptions { url: url.to_string(), max_connections: 4, busy_timeout: Duration::from_secs(10) }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static CLEANED: OnceCell<()> = OnceCell::const_new();

const PREFIX: &str = "cunjing_t_";

/// A fresh database, or `None` when PostgreSQL is asked for but not configured.
pub async fn fresh(engine: Engine) -> Option<TestDb> {
    match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("test.sqlite").display());
            let store = Store::connect(&options(&url)).await.expect("open SQLite");
            Some(TestDb { store, url, _dir: Some(dir) })
        }
        Engine::Postgres => {
            let Ok(admin_url) = std::env::var("CUNJING_TEST_POSTGRES_URL") else {
                eprintln!("skipped on PostgreSQL: CUNJING_TEST_POSTGRES_URL is not set");
                return None;
            };
            sqlx::any::install_default_drivers();
            let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                panic!("cannot reach PostgreSQL at {admin_url}: {e}; start it or unset CUNJING_TEST_POSTGRES_URL")
            });
            CLEANED
                .get_or_init(|| async {
                    let names: Vec<String> =
                        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 'cunjing_t_%'")
                            .fetch_all(&mut admin)
                            .await
                            .expect("list test databases");
                    let mine = format!("{PREFIX}{}_", std::process::id());
                    for name in names.into_iter().filter(|n| !n.starts_with(&mine)) {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
                    }
                })
                .await;
            let name = format!("{PREFIX}{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut admin)
                .await
                .expect("create a test database");
            let mut url = url::Url::parse(&admin_url).expect("CUNJING_TEST_POSTGRES_URL is a URL");
            url.set_path(&name);
            let url = url.to_string();
            let store = Store::connect(&options(&url)).await.expect("open the PostgreSQL test database");
            Some(TestDb { store, url, _dir: None })
        }
    }
}

/// Runs a store test on SQLite and on PostgreSQL:
/// `on_both_engines!(name, |db| { … })` — `db` is a fresh [`TestDb`].
#[macro_export]
macro_rules! on_both_engines {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($db: $crate::db::TestDb) $body

            #[tokio::test]
            async fn on_sqlite() {
                scenario($crate::db::fresh($crate::db::Engine::Sqlite).await.expect("SQLite is always there")).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                if let Some(db) = $crate::db::fresh($crate::db::Engine::Postgres).await {
                    scenario(db).await;
                }
            }
        }
    };
}
