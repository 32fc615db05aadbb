//! A station admin's pages: the console accounts of the station (lock, unlock, a new
//! password with a new second factor) and the audit log of the station's people, with
//! filters, as `cunjing staff add` and `cunjing audit` have them on the command line. Every
//! action is authorised as granting station roles (`enrol`) and audited.

use std::collections::BTreeMap;

use anyhow::Context as _;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::error::WebError;
use super::pages::refused;
use super::{CsrfForm, Session, WebState, csrf_refused};
use crate::authz::{Action, Subject};
use crate::store::audit::AuditQuery;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/accounts", get(accounts))
        .route("/accounts/{username}/{action}", post(account_action))
        .route("/audit", get(audit))
}

type Page = Result<Response, WebError>;

/// What the account may manage: its own station's accounts (a system account: all).
fn scope(session: &Session) -> Subject {
    match session.user.station_id {
        Some(station_id) => Subject::Station { station_id },
        None => Subject::Everything,
    }
}

#[derive(Deserialize, Default)]
struct Done {
    #[serde(default)]
    ok: String,
}

/// GET /accounts: the station's console accounts.
async fn accounts(State(state): State<WebState>, session: Session, Query(done): Query<Done>) -> Page {
    let core = &state.core;
    if !core.authorize_desk(&session.actor, Action::Enrol, scope(&session), "accounts").await? {
        return Err(refused(&session));
    }
    let now = core.now_ms();
    let users: Vec<_> = core
        .store()
        .web_users_of(session.user.station_id)
        .await
        .context("Failed to list the station's console accounts")?
        .into_iter()
        .map(|u| {
            let locked = u.locked_until.is_some_and(|t| t > now);
            minijinja::context! {
                username => u.username, name => u.display_name, role => u.role, totp => u.totp_secret.is_some(),
                locked, locked_for_good => u.locked_until == Some(i64::MAX), locked_until => u.locked_until,
                failed => u.failed_logins, me => u.id == session.user.id,
            }
        })
        .collect();
    let ctx = minijinja::context! { page => session.page(), users, ok => done.ok };
    Ok(state.render(StatusCode::OK, "accounts.html", ctx))
}

/// POST /accounts/NAME/lock|unlock|reset. A reset gives the account a new password and, if
/// it has a second factor (every admin has), a new TOTP secret; both are shown once.
async fn account_action(
    State(state): State<WebState>,
    session: Session,
    Path((username, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Page {
    if !session.csrf_ok(&form.csrf) {
        return Err(csrf_refused());
    }
    let core = &state.core;
    let store = core.store();
    let Some(user) = store.web_user_by_name(&username).await.context("Failed to look up a console account")? else {
        return Err(WebError::NotFound("no_account"));
    };
    // A system account is managed from the command line only (no station admin reaches
    // it); nobody locks or resets their own account here.
    let subject = match user.station_id {
        Some(station_id) => Subject::Station { station_id },
        None => Subject::Everything,
    };
    let target = format!("account:{username} {action}");
    if user.id == session.user.id {
        core.refuse_desk(&session.actor, Action::Enrol, &target, "own account").await?;
        return Err(refused(&session));
    }
    if !core.authorize_desk(&session.actor, Action::Enrol, subject, &target).await? {
        return Err(refused(&session));
    }
    match action.as_str() {
        "lock" => store
            .set_web_user_lock(user.id, Some(i64::MAX))
            .await
            .context("Failed to lock or unlock the console account")?,
        "unlock" => {
            store.set_web_user_lock(user.id, None).await.context("Failed to lock or unlock the console account")?
        }
        "reset" => {
            let password = super::new_password();
            let hash = super::hash_password(&password)?;
            let totp = user.totp_secret.is_some().then(super::new_totp_secret);
            store
                .upsert_web_user(&user.username, user.station_id, user.role, &hash, totp.as_deref(), core.now_ms())
                .await?;
            tracing::info!(account = %user.username, "console account reset from the console");
            let uri =
                totp.as_ref().map(|s| format!("otpauth://totp/cunjing:{}?secret={s}&issuer=cunjing", user.username));
            let ctx = minijinja::context! { page => session.page(), username => user.username, password, totp, uri };
            return Ok(state.render(StatusCode::OK, "account_reset.html", ctx));
        }
        _ => return Err(WebError::NoSuchPath),
    }
    Ok(Redirect::to(&format!("/accounts?ok={action}")).into_response())
}

/// The audit view's filters, as the query string carries them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct AuditFilters {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    result: String,
    #[serde(default)]
    page: String,
}

/// Records per page of the audit view.
const AUDIT_PAGE: i64 = 100;

/// GET /audit: the audit log of the station's people, newest first, 100 a page.
async fn audit(State(state): State<WebState>, session: Session, Query(f): Query<AuditFilters>) -> Page {
    let core = &state.core;
    if !core.authorize_desk(&session.actor, Action::Enrol, scope(&session), "audit").await? {
        return Err(refused(&session));
    }
    let tz = core.timezone();
    let day = |s: &str| crate::calendar::parse_day_ms(tz, s);
    let mut errors = BTreeMap::new();
    let since = day(&f.from).unwrap_or_else(|_| {
        errors.insert("from", state.texts.get("date_format").to_string());
        None
    });
    let until = day(&f.to).unwrap_or_else(|_| {
        errors.insert("to", state.texts.get("date_format").to_string());
        None
    });
    let page_no: i64 = f.page.trim().parse().ok().filter(|n: &i64| *n >= 1).unwrap_or(1);
    let query = AuditQuery {
        station_id: session.user.station_id,
        since: since.unwrap_or(0),
        until: until.map_or(i64::MAX, |t| t + 86_400_000),
        actor: f.actor.trim().to_string(),
        action: f.action.trim().to_string(),
        result: f.result.trim().to_string(),
    };
    let (rows, total) = if errors.is_empty() {
        core.store()
            .audit_page(&query, AUDIT_PAGE, (page_no - 1) * AUDIT_PAGE)
            .await
            .context("Failed to read a page of the audit log")?
    } else {
        (vec![], 0)
    };
    let pages = ((total + AUDIT_PAGE - 1) / AUDIT_PAGE).max(1);
    let mut link = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("from", &f.from), ("to", &f.to), ("actor", &f.actor), ("action", &f.action), ("result", &f.result)]
    {
        if !v.is_empty() {
            link.append_pair(k, v);
        }
    }
    let actions: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).chain(["web_login"]).collect();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let ctx = minijinja::context! {
        page => session.page(), rows, total, filters => &f, errors, page_no, pages, query => link.finish(), actions,
    };
    Ok(state.render(status, "audit.html", ctx))
}
