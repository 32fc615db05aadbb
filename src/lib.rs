//! cunjing (村警): a daemon that puts "one village (grid), one officer" into the residents'
//! chat groups.
//!
//! # Layout
//!
//! From the bottom up:
//!
//! - [`config`]: `bot-config/cunjing.toml` and the environment, as plain settings.
//! - [`domain`]: validated registry values (codes, badges, phones) and every enum the
//!   program stores (tip status, source and rating; officer kind, assignment role, grant;
//!   broadcast kind, severity and status; delivery state; CAP status), in the order people
//!   meet them; the store binds and reads them as themselves.
//! - [`calendar`]: local midnights and months in the station's time zone.
//! - [`csv_cells`]: CSV cells made inert for spreadsheets, for every CSV the project writes.
//! - [`texts`]: the user-facing templates of `bot-config/templates/`.
//! - [`triage`]: what a villager's message is about (rules, dialect table, model).
//! - [`store`]: the SQLite/PostgreSQL pool, migrations and the queries of each area.
//! - [`reports`]: the rows of the exports (tips, monthly figures per officer).
//! - [`places`]: the ground of each village or grid (datums, the R-tree of areas): which
//!   area holds a point, which lie near it.
//! - [`registry`]: import, check and export of the station → office → village → officer CSVs
//!   and of the areas (`areas.geojson`).
//! - [`authz`]: who may do what (roles, scopes) and the audit trail.
//! - [`cap`]: CAP 1.2 alerts in and out, and broadcasts as alerts.
//! - [`boards`]: the printable contact boards (警民联系牌) with their QR codes.
//! - [`core`]: the platform-free bot, from [`core::Inbound`] to [`core::Outbound`]: the
//!   router ([`core::wire`] parses commands and buttons once), a room per feature (contact,
//!   officers, binding, tips, broadcasts, the staff group, the desk, schedules, timers) and
//!   one tip workflow ([`core::workflow`]) under every front end, refusing with
//!   [`core::CoreError`].
//! - [`channels`]: one adapter per platform (Telegram, the local console, WeCom robots)
//!   behind the [`channels::Channel`] trait.
//! - [`web`]: the station console (tips desk, broadcasts, registry, figures).
//! - [`http`]: health, metrics and Telegram's webhook on `[http] listen`.
//! - [`metrics`]: the Prometheus counters.
//! - [`telemetry`]: logging to stderr, never with message text or names.
//! - [`daemon`]: the composition root, which builds the core and the workers once and runs
//!   the chosen channels beside them.
//! - [`cli`]: the command line (`cunjing run`, `registry`, `tips`, `broadcast`, …), one file
//!   per noun; a leaf that nothing in the library imports.
pub mod authz;
pub mod boards;
pub mod calendar;
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
pub mod places;
pub mod registry;
pub mod reports;
pub mod store;
pub mod telemetry;
pub mod texts;
pub mod triage;
pub mod web;
