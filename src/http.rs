//! The daemon's own HTTP server (`[http] listen`): `/healthz` for the orchestrator,
//! `/metrics` for Prometheus and, in webhook mode, the route Telegram posts updates to.
//!
//! The webhook route checks Telegram's secret token (constant-time) in a layer before the
//! body is read, bounds the body, and answers only after the update was handled — so an
//! update a daemon could not take (stopping, crashed mid-way) is sent again by Telegram,
//! possibly to another daemon; the `handled_updates` table keeps it from being handled twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::core::Core;
use crate::domain::DeliveryState;

/// Says whether the messaging platform answers (for `/healthz`).
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// What `/healthz` and `/metrics` read.
#[derive(Clone)]
pub struct HealthState {
    pub core: Core,
    /// Telegram's probe, when the daemon serves Telegram.
    pub telegram: Option<Probe>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    database: bool,
    /// `null` when the daemon does not serve Telegram.
    telegram: Option<bool>,
    /// Broadcast sends waiting or in flight.
    queue_pending: i64,
    queue_sending: i64,
    daemon: String,
}

/// How long `/healthz` waits for each check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

async fn healthz(State(state): State<HealthState>) -> Response {
    let states = tokio::time::timeout(CHECK_TIMEOUT, state.core.store().delivery_states()).await;
    let (database, states) = match states {
        Ok(Ok(states)) => (true, states),
        _ => (false, vec![]),
    };
    let telegram = match &state.telegram {
        Some(probe) => Some(tokio::time::timeout(CHECK_TIMEOUT, probe()).await.unwrap_or(false)),
        None => None,
    };
    let count = |s: DeliveryState| states.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
    let ok = database && telegram != Some(false);
    let body = Health {
        status: if ok { "ok" } else { "unavailable" },
        database,
        telegram,
        queue_pending: count(DeliveryState::Pending),
        queue_sending: count(DeliveryState::Sending),
        daemon: state.core.daemon_id().to_string(),
    };
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<HealthState>) -> Response {
    let metrics = state.core.metrics();
    if let Ok(Ok(states)) = tokio::time::timeout(CHECK_TIMEOUT, state.core.store().delivery_states()).await {
        metrics.set_deliveries(&states);
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
        .into_response()
}

/// The health and metrics routes.
pub fn health_router(state: HealthState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(state)
}

/// The header Telegram puts the webhook's secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Whether `headers` carry `secret`, compared in constant time.
pub fn secret_matches(headers: &HeaderMap, secret: &str) -> bool {
    match headers.get(SECRET_HEADER) {
        Some(given) => bool::from(given.as_bytes().ct_eq(secret.as_bytes())),
        None => false,
    }
}

async fn require_secret(State(secret): State<Arc<str>>, request: Request, next: Next) -> Response {
    if !secret_matches(request.headers(), &secret) {
        tracing::warn!("webhook request without the right secret token refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(request).await
}

/// Wraps a webhook route: the secret is checked first, then the body size is bounded.
pub fn guard_webhook(route: Router, secret: &str, max_body_bytes: usize) -> Router {
    route
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(Arc::<str>::from(secret), require_secret))
}

/// Binds `listen` (fails at start when it cannot).
pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen.parse().with_context(|| format!("http.listen {listen:?} is not HOST:PORT"))?;
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("Failed to listen on {addr}"))
}

/// Serves `router` on `listener` until `stop` resolves; requests in flight finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "HTTP server listening");
    axum::serve(listener, router).with_graceful_shutdown(stop).await.context("the HTTP server failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_must_be_present_and_equal() {
        let mut headers = HeaderMap::new();
        assert!(!secret_matches(&headers, "s3cret"));
        headers.insert(SECRET_HEADER, "s3cre".parse().unwrap());
        assert!(!secret_matches(&headers, "s3cret"));
        headers.insert(SECRET_HEADER, "s3cret".parse().unwrap());
        assert!(secret_matches(&headers, "s3cret"));
    }
}
