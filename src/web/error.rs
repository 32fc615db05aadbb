//! The console's error type: every way a page can fail to answer, and the answer each gets.
//!
//! Handlers return `Result<Response, WebError>` and use `?` on anything that converts into
//! an `anyhow::Error` (a store call, best with a `.context("…")` saying what was being
//! done): such an error is [`WebError::Unexpected`], logged with its chain and answered with
//! the 500 page. The other variants are the answers a user may see: the error page with a
//! text of `texts.toml`, the 403 page with the console's layout, the way to the login page.
//! A form whose values are wrong is not an error: its page is shown again with the errors
//! beside the fields (status 422) as an `Ok` answer.
//!
//! The pages are rendered by the [`render_errors`] layer, which has the templates: an error
//! answer carries only its status and what its page says.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::WebState;

/// Why a request got no page of its own.
#[derive(Debug)]
pub enum WebError {
    /// No session, or it ended: to the login page.
    Unauthenticated,
    /// 404 with the error page saying the text `key` (a tip, broadcast, badge … that is not
    /// there).
    NotFound(&'static str),
    /// A bare 404: a path no page of the console links to (an unknown action or file).
    NoSuchPath,
    /// 403 with the error page saying the text `key` (a POST without the session's CSRF
    /// token).
    Forbidden(&'static str),
    /// 403 with the console's layout (`refused.html`): the account may not do this. Carries
    /// the layout's context ([`super::Session::page`]).
    Refused(minijinja::Value),
    /// 422 with the error page saying the text `key`: a request the console's own forms do
    /// not make (an export with a malformed filter, a month that is not one).
    BadRequest(&'static str),
    /// 502 with the error page saying the text `key`: the platform a tip's file is on did not
    /// give it.
    Upstream(&'static str),
    /// Anything else (the database, a template's data, an export's writer): logged with its
    /// chain, answered with the 500 page.
    Unexpected(anyhow::Error),
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> WebError {
        WebError::Unexpected(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Unauthenticated => Redirect::to("/login").into_response(),
            WebError::NotFound(key) => error_page(StatusCode::NOT_FOUND, key),
            WebError::NoSuchPath => StatusCode::NOT_FOUND.into_response(),
            WebError::Forbidden(key) => error_page(StatusCode::FORBIDDEN, key),
            WebError::Refused(page) => {
                let mut response = StatusCode::FORBIDDEN.into_response();
                response.extensions_mut().insert(RefusedPage(page));
                response
            }
            WebError::BadRequest(key) => error_page(StatusCode::UNPROCESSABLE_ENTITY, key),
            WebError::Upstream(key) => error_page(StatusCode::BAD_GATEWAY, key),
            WebError::Unexpected(e) => {
                tracing::error!(error = format!("{e:#}"), "web request failed");
                error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
            }
        }
    }
}

/// Marks an error response whose page is rendered from the text `key` (see [`error_page`]).
#[derive(Debug, Clone, Copy)]
struct ErrorKey(&'static str);

/// Marks a 403 whose page is `refused.html` in the layout of this context.
#[derive(Debug, Clone)]
struct RefusedPage(minijinja::Value);

/// An error answer: the status, and a page saying the text of `key`.
pub fn error_page(status: StatusCode, key: &'static str) -> Response {
    let mut response = status.into_response();
    response.extensions_mut().insert(ErrorKey(key));
    response
}

/// Renders the pages of error answers made by [`error_page`] and [`WebError::Refused`].
pub(super) async fn render_errors(State(state): State<WebState>, response: Response) -> Response {
    if let Some(RefusedPage(page)) = response.extensions().get::<RefusedPage>().cloned() {
        return state.render(response.status(), "refused.html", minijinja::context! { page });
    }
    match response.extensions().get::<ErrorKey>().copied() {
        Some(ErrorKey(key)) => {
            let message = state.texts.get(key);
            state.render(response.status(), "error.html", minijinja::context! { message })
        }
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_answers_with_the_status_and_page_the_console_always_gave() {
        let answer = |e: WebError| {
            let r = e.into_response();
            (r.status(), r.extensions().get::<ErrorKey>().map(|k| k.0), r.headers().get("location").cloned())
        };
        assert_eq!(answer(WebError::Unauthenticated).0, StatusCode::SEE_OTHER);
        assert_eq!(answer(WebError::Unauthenticated).2.unwrap(), "/login");
        assert_eq!(answer(WebError::NotFound("no_tip")), (StatusCode::NOT_FOUND, Some("no_tip"), None));
        assert_eq!(answer(WebError::NoSuchPath), (StatusCode::NOT_FOUND, None, None));
        assert_eq!(answer(WebError::Forbidden("csrf_refused")), (StatusCode::FORBIDDEN, Some("csrf_refused"), None));
        assert_eq!(answer(WebError::BadRequest("month_format")).0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer(WebError::Upstream("media_unavailable")).0, StatusCode::BAD_GATEWAY);
        let unexpected = WebError::from(anyhow::anyhow!("disk full").context("Failed to list the tips"));
        assert_eq!(answer(unexpected), (StatusCode::INTERNAL_SERVER_ERROR, Some("internal_error"), None));
        let refused = WebError::Refused(minijinja::context! { username => "a" }).into_response();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.extensions().get::<RefusedPage>().is_some());
    }
}
