//! cunjing (村警): a daemon that puts "one village (grid), one officer" into the residents'
//! chat groups.
//!
//! # Layout
//!
//! - [`domain`]: validated registry values (codes, badge numbers, phones, roles).
//! - [`store`]: the SQLite/PostgreSQL pool, migrations and the queries of each area.
pub mod app;
pub mod authz;
pub mod broadcast_cli;
pub mod cap;
pub mod channels;
pub mod cli;
pub mod config;
pub mod core;
pub mod csv_cells;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod registry;
pub mod store;
pub mod telemetry;
pub mod texts;
pub mod tips_cli;
pub mod triage;
pub mod web;
