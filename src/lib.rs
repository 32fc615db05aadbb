//! cunjing (村警): a daemon that puts "one village (grid), one officer" into the residents'
//! chat groups.
//!
//! # Layout
//!
//! From the bottom up:
//!
//! - [`config`]: `bot-config/cunjing.toml` and the environment, as plain settings.
//! - [`domain`]: validated registry values (codes, badges, phones, roles) and the ordered
//!   enums of tips and broadcasts (status, kind, severity).
//! - [`csv_cells`]: CSV cells made inert for spreadsheets, for every CSV the project writes.
//! - [`texts`]: the user-facing templates of `bot-config/templates/`.
//! - [`triage`]: what a villager's message is about (rules, dialect table, model).
//! - [`store`]: the SQLite/PostgreSQL pool, migrations and the queries of each area.
//! - [`registry`]: import, check and export of the station → office → village → officer CSVs.
//! - [`authz`]: who may do what (roles, scopes) and the audit trail.
//! - [`cap`]: CAP 1.2 alerts in and out.
//! - [`boards`]: the printable contact boards (警民联系牌) with their QR codes.
//! - [`core`]: the platform-free bot: routing, contact cards, tips, broadcasts, the staff
//!   desk, timers and schedules, from [`core::Inbound`] to [`core::Outbound`].
//! - [`channels`]: one adapter per platform (Telegram, the local console, WeCom robots)
//!   behind the [`channels::Channel`] trait.
//! - [`web`]: the station console (tips desk, broadcasts, registry, figures).
//! - [`http`]: health, metrics and Telegram's webhook on `[http] listen`.
//! - [`metrics`], [`telemetry`]: Prometheus counters and logging.
//! - [`daemon`]: the composition root, which builds the core and the workers once and runs
//!   the chosen channels beside them.
//! - [`cli`], [`broadcast_cli`], [`tips_cli`]: the command line (`cunjing run`, `registry`,
//!   `tips`, `broadcast`, …).
pub mod authz;
pub mod boards;
pub mod broadcast_cli;
pub mod cap;
pub mod channels;
pub mod cli;
pub mod config;
pub mod core;
pub mod csv_cells;
pub mod daemon;
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
