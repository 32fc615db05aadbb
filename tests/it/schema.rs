//! The two engines' migrations build the same schema: every table, column and index that
//! `migrations/sqlite/` creates, `migrations/postgres/` creates too, and the other way round.
//! Types differ by engine on purpose (`INTEGER` / `BIGINT`, `TEXT` / `BYTEA`) and are not
//! compared; names are, since the store's SQL is written once for both.

use std::collections::BTreeMap;

use sqlx::{AnyPool, Row};

use crate::db::{Engine, fresh};

/// Tables, each with its columns and its explicitly created indexes, sorted.
type Schema = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// Differences between the engines that are meant: (engine that has it, the line the test
/// prints, why). Keep the list short; every entry says why the other engine does without.
const EXPECTED_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "PostgreSQL",
    "SQLite lacks index broadcast_deliveries_next on broadcast_deliveries",
    "the delivery worker's claim reads a broadcast's pending targets in id order; SQLite's \
     broadcast_deliveries_broadcast (broadcast_id, state) entries already end with the rowid \
     (migrations/postgres/20261202000007_delivery_order.sql)",
)];

async fn strings(pool: &AnyPool, sql: &str, table: Option<&str>) -> Vec<String> {
    let query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    let query = match table {
        Some(t) => query.bind(t.to_string()),
        None => query,
    };
    let mut names: Vec<String> =
        query.fetch_all(pool).await.expect("read the schema").iter().map(|r| r.get::<String, _>(0)).collect();
    names.sort();
    names
}

async fn schema(engine: Engine) -> Option<Schema> {
    let db = fresh(engine).await?;
    let pool = db.store.pool();
    let (tables, columns, indexes) = match engine {
        Engine::Sqlite => (
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name NOT LIKE '_sqlx_%'",
            "SELECT name FROM pragma_table_info($1)",
            // `sql IS NULL`: the automatic indexes behind PRIMARY KEY and UNIQUE.
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
        ),
        Engine::Postgres => (
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
             AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_sqlx\\_%'",
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = $1",
            // Without the indexes behind PRIMARY KEY and UNIQUE constraints (named as the constraint).
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 \
             AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        ),
    };
    let mut schema = Schema::new();
    for table in strings(pool, tables, None).await {
        let cols = strings(pool, columns, Some(&table)).await;
        let idx = strings(pool, indexes, Some(&table)).await;
        schema.insert(table, (cols, idx));
    }
    Some(schema)
}

/// What `a` has that `b` lacks, one line each.
fn missing(a: &Schema, b: &Schema, b_name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (table, (cols, idx)) in a {
        let Some((b_cols, b_idx)) = b.get(table) else {
            lines.push(format!("{b_name} lacks table {table}"));
            continue;
        };
        lines.extend(cols.iter().filter(|c| !b_cols.contains(c)).map(|c| format!("{b_name} lacks column {table}.{c}")));
        lines.extend(idx.iter().filter(|i| !b_idx.contains(i)).map(|i| format!("{b_name} lacks index {i} on {table}")));
    }
    lines
}

#[tokio::test]
async fn the_sqlite_and_postgresql_migrations_build_the_same_tables_columns_and_indexes() {
    let sqlite = schema(Engine::Sqlite).await.expect("SQLite is always there");
    assert!(sqlite.contains_key("tips") && sqlite["tips"].0.contains(&"status".to_string()), "schema read: {sqlite:?}");
    assert!(sqlite.values().any(|(_, idx)| !idx.is_empty()), "SQLite's explicit indexes are read");
    let Some(postgres) = schema(Engine::Postgres).await else { return };
    assert!(postgres.values().any(|(_, idx)| !idx.is_empty()), "PostgreSQL's explicit indexes are read");
    let mut differences = missing(&sqlite, &postgres, "PostgreSQL");
    differences.extend(missing(&postgres, &sqlite, "SQLite"));
    let expected: Vec<String> = EXPECTED_DIFFERENCES.iter().map(|(_, what, _)| what.to_string()).collect();
    differences.retain(|d| !expected.contains(d));
    assert!(
        differences.is_empty(),
        "the engines' schemas differ (fix the migration, or list it with a reason):\n{}",
        differences.join("\n")
    );
}
