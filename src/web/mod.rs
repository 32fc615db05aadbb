//! The station console: a web page served by the daemon where station staff review, assign
//! and answer tips, send warnings, look after the registry and see each officer's figures.
//!
//! Server-rendered HTML from the minijinja templates in `bot-config/web/` (Simplified
//! Chinese), plain forms, no front-end build. Every action goes through the same core as the
//! bot ([`crate::core::desk`], broadcasts, enrolment) and the same authorisation module, and
//! is written to the audit log; what must reach people goes out through the tip's channel.
//!
//! Accounts: `cunjing staff add` (argon2 passwords, TOTP required for admins), lockout after
//! repeated failures, idle and absolute session timeouts, a CSRF token per session checked on
//! every POST, cookies `HttpOnly; SameSite=Strict` (and `Secure` unless turned off for a
//! plain-HTTP test). A station's accounts see only their station.
//!
//! Handlers return `Result<Response, error::WebError>`: a store or core failure is `?`-ed
//! into [`error::WebError::Unexpected`] (logged, the 500 page), the refusals and missing
//! things are the other variants, and one layer renders their pages.

mod admin;
pub mod error;
mod figures;
mod map;
mod pages;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::UnboundedSender;

use crate::authz::{Actor, Role};
use crate::core::{Core, Outbound, Platform};
use crate::store::web::WebUser;
use error::WebError;

/// How the console behaves, from `[web]`.
#[derive(Debug, Clone)]
pub struct WebOptions {
    pub secure_cookies: bool,
    pub session_idle_ms: i64,
    pub session_max_ms: i64,
    pub max_failed_logins: i64,
    pub lockout_ms: i64,
    /// The station's times a tip is overdue by (the tips list's overdue queue).
    pub sla: crate::store::tip_list::Sla,
}

impl Default for WebOptions {
    fn default() -> WebOptions {
        WebOptions {
            secure_cookies: true,
            session_idle_ms: 30 * 60_000,
            session_max_ms: 12 * 3_600_000,
            max_failed_logins: 5,
            lockout_ms: 15 * 60_000,
            sla: crate::store::tip_list::Sla { ack_ms: 2 * 3_600_000, resolve_ms: 7 * 86_400_000 },
        }
    }
}

impl WebOptions {
    /// The console's behaviour of `[web]`.
    pub fn from_settings(settings: &crate::config::Settings) -> WebOptions {
        let w = &settings.file.web;
        WebOptions {
            secure_cookies: w.secure_cookies,
            session_idle_ms: i64::from(w.session_idle_minutes.max(1)) * 60_000,
            session_max_ms: i64::from(w.session_max_hours.max(1)) * 3_600_000,
            max_failed_logins: i64::from(w.max_failed_logins.max(1)),
            lockout_ms: i64::from(w.lockout_minutes.max(1)) * 60_000,
            sla: crate::store::tip_list::Sla {
                ack_ms: i64::from(w.acknowledge_within_hours.max(1)) * 3_600_000,
                resolve_ms: i64::from(w.resolve_within_days.max(1)) * 86_400_000,
            },
        }
    }
}

/// The texts the program puts into pages (`bot-config/web/texts.toml`), every key checked at
/// load.
#[derive(Debug, serde::Deserialize)]
pub struct WebTexts {
    #[serde(flatten)]
    texts: HashMap<String, String>,
    /// Export column names by column code ([`crate::reports::EXPORT_COLUMNS`]).
    columns: HashMap<String, String>,
}

/// Every key of `texts.toml` the code asks for.
const TEXT_KEYS: &[&str] = &[
    "internal_error",
    "login_form_expired",
    "login_wrong",
    "login_locked",
    "csrf_refused",
    "not_found",
    "filter_invalid",
    "date_format",
    "month_format",
    "no_tip",
    "no_broadcast",
    "no_badge",
    "no_media_source",
    "media_unavailable",
    "tip_not_open",
    "tip_not_closed",
    "reason_required",
    "refused",
    "bulk_none",
    "phone_search_refused",
    "no_account",
    "officer_not_serving",
    "note_required",
    "into_required",
    "tipster_gone",
    "text_required",
    "text_too_long",
    "kind_required",
    "severity_required",
    "target_required",
    "near_invalid",
    "place_no_areas",
    "place_no_such_village",
    "place_no_area",
    "place_nothing_near",
    "time_invalid",
    "chart_trend",
    "figures_columns",
    "whole_station",
    "all_targets",
    "chart_warnings",
    "chart_tips",
    "sheet_name",
    "yes",
    "no",
    "map_tip",
    "map_point",
    "map_coverage",
    "map_gap",
    "map_tips",
];

impl WebTexts {
    pub fn load(path: &Path) -> anyhow::Result<WebTexts> {
        let raw = std::fs::read_to_string(path).with_context(|| format!("Failed to read {}", path.display()))?;
        let texts: WebTexts = toml::from_str(&raw).with_context(|| format!("In {}", path.display()))?;
        for key in TEXT_KEYS {
            anyhow::ensure!(texts.texts.contains_key(*key), "{}: the text {key:?} is missing", path.display());
        }
        for column in crate::reports::EXPORT_COLUMNS {
            anyhow::ensure!(texts.columns.contains_key(column), "{}: [columns] lacks {column:?}", path.display());
        }
        Ok(texts)
    }

    /// The text of `key` (checked at load; a key the code forgot to list shows as itself).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.texts.get(key).map_or(key, String::as_str)
    }

    pub fn column<'a>(&'a self, code: &'a str) -> &'a str {
        self.columns.get(code).map_or(code, String::as_str)
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct WebState {
    pub core: Core,
    pub texts: Arc<WebTexts>,
    env: Arc<minijinja::Environment<'static>>,
    /// The maps of `_labels.html` (status, category, source, rating …: code → name), for what
    /// the program writes outside a page (the exports).
    labels: Arc<HashMap<String, minijinja::Value>>,
    /// The console's stylesheet and script ([`ASSETS`]), read from the templates' folder: the
    /// pages carry no inline style or script, so the Content-Security-Policy can forbid both.
    assets: Arc<HashMap<&'static str, String>>,
    opts: Arc<WebOptions>,
    /// Where messages for each platform go (the channel performs them).
    outbound: Arc<HashMap<Platform, UnboundedSender<Outbound>>>,
}

const SESSION_COOKIE: &str = "cunjing_session";
const LOGIN_COOKIE: &str = "cunjing_login";

/// 32 random bytes as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the page templates (`*.html`) of `dir`. The bot's shared labels (tip categories,
/// officer roles) come in as the template `_bot_labels`, so the console names things as the
/// bot does.
pub fn load_templates(dir: &Path, core: &Core) -> anyhow::Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    let labels = core.texts().source("_labels").context("the locale's templates have no _labels")?;
    env.add_template_owned("_bot_labels", labels)?;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("Failed to read the web templates {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "html") {
            let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
            let source =
                std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
            env.add_template_owned(name.clone(), source).with_context(|| format!("In the web template {name}"))?;
        }
    }
    let tz = core.timezone();
    env.add_filter("datetime", move |ms: Option<i64>| crate::reports::local_time(tz, ms));
    env.add_filter("excerpt", |s: String, n: usize| -> String {
        if s.chars().count() <= n { s } else { s.chars().take(n).collect::<String>() + "…" }
    });
    Ok(env)
}

/// The maps `_labels.html` sets (code → name), by name; none (codes shown) when it fails.
fn label_maps(env: &minijinja::Environment<'static>) -> HashMap<String, minijinja::Value> {
    let captured = match env.get_template("_labels.html").and_then(|t| t.render_captured(())) {
        Ok(captured) => captured,
        Err(e) => {
            tracing::error!(error = %e, "the web template _labels.html failed; exports show codes");
            return HashMap::new();
        }
    };
    let state = captured.state();
    state.exports().into_iter().filter_map(|name| Some((name.to_string(), state.lookup(name)?))).collect()
}

impl WebState {
    pub fn new(
        core: Core,
        templates: minijinja::Environment<'static>,
        assets: HashMap<&'static str, String>,
        texts: WebTexts,
        opts: WebOptions,
        outbound: HashMap<Platform, UnboundedSender<Outbound>>,
    ) -> WebState {
        let labels = label_maps(&templates);
        WebState {
            core,
            texts: Arc::new(texts),
            env: Arc::new(templates),
            labels: Arc::new(labels),
            assets: Arc::new(assets),
            opts: Arc::new(opts),
            outbound: Arc::new(outbound),
        }
    }

    /// The name `_labels.html` gives `code` in its map `map` (the code itself when it has none).
    pub fn label(&self, map: &str, code: &str) -> String {
        self.labels
            .get(map)
            .and_then(|m| m.get_item(&minijinja::Value::from(code)).ok())
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map_or_else(|| code.to_string(), |v| v.to_string())
    }

    /// The text of `key` from `texts.toml`, owned (for error maps).
    fn t(&self, key: &str) -> String {
        self.texts.get(key).to_string()
    }

    /// Renders `template` with `ctx`; a template error is a 500 with a plain message.
    fn render(&self, status: StatusCode, template: &str, ctx: minijinja::Value) -> Response {
        match self.env.get_template(template).and_then(|t| t.render(ctx)) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "web template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
            }
        }
    }

    /// Hands messages to the channel of `platform` (dropped with an error log when the daemon
    /// does not serve it).
    fn send(&self, platform: &str, actions: Vec<Outbound>) {
        if actions.is_empty() {
            return;
        }
        let sender = Platform::parse(platform).and_then(|p| self.outbound.get(&p));
        match sender {
            Some(tx) => {
                for action in actions {
                    let _ = tx.send(action);
                }
            }
            None => tracing::error!(platform, "the console cannot reach this platform; messages not sent"),
        }
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let secure = if self.opts.secure_cookies { "; Secure" } else { "" };
        let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
        HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"))
            .expect("cookie values are hex")
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The logged-in account of a request, its CSRF token and its authorisation actor.
pub struct Session {
    pub user: WebUser,
    /// The name of the account's station, for the page header (`None`: a system account).
    pub station_name: Option<String>,
    pub csrf: String,
    pub actor: Actor,
    token: String,
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes()))
    }

    /// Whether the account works for `station_id` (its own station; every one for system).
    pub fn covers(&self, station_id: i64) -> bool {
        self.user.station_id.is_none_or(|s| s == station_id)
    }

    /// The station code the account is limited to (`None`: every station).
    pub async fn station_code(&self, core: &Core) -> anyhow::Result<Option<String>> {
        match self.user.station_id {
            Some(id) => {
                Ok(Some(core.store().station_code(id).await.context("Failed to load the account's station code")?))
            }
            None => Ok(None),
        }
    }

    /// What every page shows about who is logged in.
    pub fn page(&self) -> minijinja::Value {
        minijinja::context! {
            username => &self.user.username,
            name => self.user.display_name.as_deref().unwrap_or(&self.user.username),
            station => &self.station_name,
            role => &self.user.role,
            csrf => &self.csrf,
            admin => self.actor.role >= Role::StationAdmin,
        }
    }
}

/// The console account as an authorisation actor: its role, its station, no villages.
pub fn actor_of(user: &WebUser) -> Actor {
    let role = Role::of_grant(user.role);
    Actor {
        officer_id: None,
        badge: None,
        account: Some(format!("web:{}", user.username)),
        role,
        station_id: user.station_id,
        villages: vec![],
    }
}

impl FromRequestParts<WebState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Session, WebError> {
        let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE).map(str::to_string) else {
            return Err(WebError::Unauthenticated);
        };
        let now = state.core.now_ms();
        let store = state.core.store();
        let session = store
            .web_session(&token, state.opts.session_idle_ms, state.opts.session_max_ms, now)
            .await
            .context("Failed to look up the console session")?;
        let Some(session) = session else { return Err(WebError::Unauthenticated) };
        let user = store.web_user(session.user_id).await.context("Failed to load the session's console account")?;
        let Some(user) = user else { return Err(WebError::Unauthenticated) };
        let actor = actor_of(&user);
        let station_name = match user.station_id {
            Some(id) => Some(store.station_of(id).await.context("Failed to load the account's station")?.1),
            None => None,
        };
        Ok(Session { user, station_name, csrf: session.csrf, actor, token })
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
    #[serde(default)]
    csrf: String,
}

/// Why a login was refused: one text for any wrong name, password or code, so the answer
/// never says which was right.
#[derive(Serialize, Default)]
struct LoginErrors {
    form: Option<String>,
}

async fn login_page(State(state): State<WebState>) -> Response {
    login_form(&state, LoginErrors::default(), "", StatusCode::OK)
}

/// The login form with a fresh pre-session CSRF token (double-submitted: cookie and field).
fn login_form(state: &WebState, errors: LoginErrors, username: &str, status: StatusCode) -> Response {
    let token = random_token();
    let mut response = state.render(status, "login.html", minijinja::context! { errors, username, csrf => &token });
    response.headers_mut().append(header::SET_COOKIE, state.cookie(LOGIN_COOKIE, &token, Some(600)));
    response
}

async fn login(State(state): State<WebState>, headers: HeaderMap, axum::Form(form): axum::Form<LoginForm>) -> Response {
    let cookie = cookie_value(&headers, LOGIN_COOKIE).unwrap_or("");
    if cookie.is_empty() || !bool::from(cookie.as_bytes().ct_eq(form.csrf.as_bytes())) {
        // A form sent again (a refresh after a refusal) or left open too long: nothing is
        // tried, and a fresh form takes its place.
        let errors = LoginErrors { form: Some(state.t("login_form_expired")) };
        return login_form(&state, errors, &form.username, StatusCode::FORBIDDEN);
    }
    match try_login(&state, &form).await {
        Ok(Ok(token)) => {
            let mut response = Redirect::to("/tips").into_response();
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, state.cookie(SESSION_COOKIE, &token, None));
            headers.append(header::SET_COOKIE, state.cookie(LOGIN_COOKIE, "", Some(0)));
            response
        }
        Ok(Err(errors)) => login_form(&state, errors, &form.username, StatusCode::UNAUTHORIZED),
        Err(e) => WebError::from(e.context("Failed to log in")).into_response(),
    }
}

/// Checks the account, password, lock and second factor; a session token on success.
async fn try_login(state: &WebState, form: &LoginForm) -> anyhow::Result<Result<String, LoginErrors>> {
    let store = state.core.store();
    let now = state.core.now_ms();
    let username = form.username.trim();
    let actor = format!("web:{username}");
    let refused = |key: &str| LoginErrors { form: Some(state.t(key)) };
    let Some(user) = store.web_user_by_name(username).await.context("Failed to look up a console account")? else {
        // The same work as for a real account, so timing does not tell which names exist.
        let _ = verify_password(
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5y0z5lNqvO1H/2M0ds2R8U/xaxmJrPzJ2SmgSyMNvKQ",
            &form.password,
        );
        store.audit(now, &actor, "web_login", "console", "denied", "unknown account").await?;
        return Ok(Err(refused("login_wrong")));
    };
    if user.locked_until.is_some_and(|t| t > now) {
        store.audit(now, &actor, "web_login", "console", "denied", "locked").await?;
        return Ok(Err(refused("login_locked")));
    }
    let password_ok = verify_password(&user.password_hash, &form.password);
    let totp_ok = match &user.totp_secret {
        Some(secret) => figures::totp_matches(secret, form.totp.trim(), now),
        None => true,
    };
    if !password_ok || !totp_ok {
        let locked = store
            .web_login_failed(user.id, state.opts.max_failed_logins, state.opts.lockout_ms, now)
            .await
            .context("Failed to record a failed login")?;
        let detail = if locked { "wrong credentials; locked" } else { "wrong credentials" };
        store.audit(now, &actor, "web_login", "console", "denied", detail).await?;
        return Ok(Err(refused("login_wrong")));
    }
    let token = random_token();
    store.web_login(user.id, &token, &random_token(), now).await.context("Failed to open a console session")?;
    store.audit(now, &actor, "web_login", "console", "allowed", "").await?;
    Ok(Ok(token))
}

/// Verifies an argon2 password hash (PHC string).
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(hash)
        .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Hashes a password with argon2id and a random salt.
/// A new TOTP secret (160 random bits, base32), for an authenticator app.
pub fn new_totp_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    totp_rs::Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

/// A new password for a reset account: 16 characters of an alphabet without look-alikes
/// (no 0/O, 1/l/I), about 88 bits, to be changed by whoever receives it.
pub fn new_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?;
    Ok(hash.to_string())
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<WebState>,
    session: Session,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, WebError> {
    if !session.csrf_ok(&form.csrf) {
        return Err(csrf_refused());
    }
    state.core.store().web_logout(&session.token).await.context("Failed to end the console session")?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, state.cookie(SESSION_COOKIE, "", Some(0)));
    Ok(response)
}

/// The answer to a POST without the session's CSRF token.
pub fn csrf_refused() -> WebError {
    WebError::Forbidden("csrf_refused")
}

/// What a page may load: only the console's own stylesheet, script, images and media (no
/// inline style or script, no event attributes); forms post only back here; no other site may
/// frame a page.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
     media-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The files of the templates' folder served under `/static/`, and their types.
const ASSETS: [(&str, &str); 2] =
    [("console.css", "text/css; charset=utf-8"), ("console.js", "text/javascript; charset=utf-8")];

/// Reads the [`ASSETS`] of the templates' folder `dir`.
pub fn load_assets(dir: &Path) -> anyhow::Result<HashMap<&'static str, String>> {
    let mut assets = HashMap::new();
    for (name, _) in ASSETS {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        assets.insert(name, text);
    }
    Ok(assets)
}

/// GET /static/NAME: the pages' stylesheet and script (no login needed: the login page uses
/// them).
async fn asset(
    State(state): State<WebState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, WebError> {
    match ASSETS.iter().find(|(n, _)| *n == name).and_then(|(n, kind)| Some((kind, state.assets.get(n)?))) {
        Some((kind, text)) => {
            Ok(([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "max-age=300")], text.clone()).into_response())
        }
        None => Err(WebError::NotFound("not_found")),
    }
}

/// The console's routes. Every answer, error pages included, carries the security headers;
/// every answer that does not say otherwise (the stylesheet) is `Cache-Control: no-store`,
/// since nearly every page and export shows personal data and a station PC is shared.
pub fn router(state: WebState) -> Router {
    use tower_http::set_header::SetResponseHeaderLayer;
    let always = |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    Router::new()
        .route("/", get(|| async { Redirect::to("/tips") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/{name}", get(asset))
        .merge(pages::routes())
        .merge(admin::routes())
        .fallback(|| async { WebError::NotFound("not_found") })
        .layer(axum::middleware::map_response_with_state(state.clone(), error::render_errors))
        .layer(always(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .layer(always(header::X_FRAME_OPTIONS, "DENY"))
        .layer(always(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(always(header::REFERRER_POLICY, "no-referrer"))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .with_state(state)
}

/// A running console server and the switch that stops it.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops taking requests, lets those in flight finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the station console panicked")?
    }
}

/// Starts the console when `[web] enabled`: binds `[web] listen` (an error at start when it
/// cannot) and serves until stopped. `outbound` carries messages to each platform's channel.
pub async fn start(
    settings: &crate::config::Settings,
    core: &Core,
    outbound: HashMap<Platform, UnboundedSender<Outbound>>,
) -> anyhow::Result<Option<Running>> {
    if !settings.file.web.enabled {
        return Ok(None);
    }
    let dir = settings.resolve(&settings.file.paths.web_templates_dir);
    let templates = load_templates(&dir, core)?;
    let assets = load_assets(&dir)?;
    let texts = WebTexts::load(&dir.join("texts.toml"))?;
    let state = WebState::new(core.clone(), templates, assets, texts, WebOptions::from_settings(settings), outbound);
    let listener = crate::http::bind(&settings.file.web.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "station console listening");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::http::serve(listener, router(state), async move {
        let _ = stopped.await;
    }));
    Ok(Some(Running { stop, task }))
}
