//! The integration tests: one binary (link time on 2 cores), one module per area.

mod app;
mod boards;
mod broadcasts;
mod browser;
mod cli;
mod daemon;
#[allow(dead_code)] // shared test infrastructure: not every area uses every helper
mod db;
mod desk;
mod emergency;
#[allow(dead_code)] // shared test infrastructure: not every area uses every helper
mod fake_telegram;
#[allow(dead_code)] // shared test infrastructure
mod fake_wecom;
mod foundation;
mod fuzz;
mod layout;
mod places;
#[path = "../../benches/common/places.rs"]
mod province;
mod registry;
mod routing;
mod rule_matrix;
mod schema;
#[path = "../../benches/common/seed.rs"]
mod seed;
mod tips;
mod triage;
mod trust;
mod web;
mod wechat;
mod wecom_bot;
