//! The operator's console at the HTTP boundary: the gate in front of every `/ops` page (no
//! session → a redirect to sign-in), sign-in and sign-out, and the actions (form posts with the
//! session's CSRF token). The pages themselves are Leptos routes (`app::pages::ops`).

use crate::ops::auth::{Auth, Session};
use crate::ops::{ActionError, OpsAction, OpsService};
use app::domain::SalonId;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use std::net::SocketAddr;

use super::route_table::Routes;
use super::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .post("/ops/login", sign_in)
        .post("/ops/logout", sign_out)
        .post("/ops/salons/{id}/actions/{action}", act)
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

fn session(ops: &OpsService, headers: &HeaderMap) -> Option<Session> {
    ops.auth.session(
        headers
            .get(header::COOKIE)
            .and_then(|value| value.to_str().ok()),
    )
}

/// Why a console form was not accepted.
enum Refused {
    NoSession,
    NoCsrf,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NoSession => see_other("/ops/login"),
            Refused::NoCsrf => plain(StatusCode::FORBIDDEN, "CSRF token missing or wrong"),
        }
    }
}

/// The operator's session, if the request carries one and the form carries its CSRF token:
/// without a session the answer is sign-in, without the token a 403.
fn signed_in_with_csrf(
    ops: &OpsService,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Refused> {
    let session = session(ops, headers).ok_or(Refused::NoSession)?;
    if !Auth::csrf_matches(&session, csrf) {
        tracing::warn!(operator = %session.operator, "operator form without a valid CSRF token");
        return Err(Refused::NoCsrf);
    }
    Ok(session)
}

/// Whether `path` is one of the console's pages or actions (sign-in excepted).
fn guarded(path: &str) -> bool {
    (path == "/ops" || path.starts_with("/ops/")) && path != "/ops/login"
}

/// In front of the whole router: a console path without a valid session is answered with a
/// redirect to sign-in and nothing else (an onboarding token, in the query or as a bearer, is
/// not a session).
pub async fn gate(State(ops): State<OpsService>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if guarded(path) && session(&ops, request.headers()).is_none() {
        return see_other("/ops/login");
    }
    next.run(request).await
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

async fn sign_in(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let ops = &state.ops;
    let forwarded_for = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok());
    let client = state.onboarding.limits.client_address(
        connect.map(|Extension(ConnectInfo(addr))| addr.ip()),
        forwarded_for,
    );
    if let Err(wait) = ops.auth.signin_attempt(client) {
        tracing::warn!(%client, "operator sign-in rate limit reached");
        let mut response = plain(
            StatusCode::TOO_MANY_REQUESTS,
            "Слишком много попыток входа. Too many sign-in attempts.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let Some(cookie) = ops.auth.sign_in(form.name.trim(), &form.password) else {
        tracing::warn!(%client, name = %form.name.chars().take(64).collect::<String>(), "operator sign-in refused");
        return see_other("/ops/login?error=1");
    };
    tracing::info!(operator = %form.name.trim(), "operator signed in");
    let mut response = see_other("/ops");
    if let Ok(value) = HeaderValue::from_str(&ops.auth.set_cookie(&cookie)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct Csrf {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    event_id: Option<String>,
}

async fn sign_out(
    State(ops): State<OpsService>,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(refused) = signed_in_with_csrf(&ops, &headers, &form.csrf) {
        return refused.into_response();
    }
    let mut response = see_other("/ops/login");
    if let Ok(value) = HeaderValue::from_str(&ops.auth.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `k=v` for a redirect's query, percent-encoded.
fn encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn act(
    State(ops): State<OpsService>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> Response {
    let session = match signed_in_with_csrf(&ops, &headers, &form.csrf) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let Some(salon) = id
        .parse::<i64>()
        .ok()
        .and_then(|id| SalonId::try_from(id).ok())
    else {
        return plain(StatusCode::BAD_REQUEST, format!("«{id}» is not a salon id"));
    };
    let event_id = match form
        .event_id
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        None => None,
        Some(raw) => match raw.parse::<i32>() {
            Ok(id) => Some(id),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("«{raw}» is not an event id"),
                )
            }
        },
    };
    let action = match OpsAction::parse(&action, event_id) {
        Ok(action) => action,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    match ops.act(&session.operator, salon, action).await {
        Ok(outcome) => see_other(&format!(
            "/ops/salons/{salon}?done={}&note={}",
            action.name(),
            encoded(&outcome)
        )),
        Err(ActionError::Refused(reason)) => {
            see_other(&format!("/ops/salons/{salon}?error={}", encoded(&reason)))
        }
        Err(ActionError::UnknownSalon(_)) => plain(
            StatusCode::NOT_FOUND,
            format!("salon {salon} is not stored"),
        ),
        Err(ActionError::Store(e)) => {
            tracing::error!(error = %e, "operator action failed");
            plain(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_console_path_but_sign_in_is_guarded() {
        for path in [
            "/ops",
            "/ops/",
            "/ops/salons/1",
            "/ops/logout",
            "/ops/salons/1/actions/stop",
        ] {
            assert!(super::guarded(path), "{path}");
        }
        for path in ["/ops/login", "/opsx", "/", "/marketplace/onboarding"] {
            assert!(!super::guarded(path), "{path}");
        }
    }
}
