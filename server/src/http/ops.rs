//! The operator's console at the HTTP boundary: the gate in front of every `/ops` page (no
//! session → a redirect to sign-in), sign-in and sign-out, and the actions (form posts with the
//! session's CSRF token). The pages themselves are Leptos routes (`app::pages::ops`).

use crate::ops::auth::{Auth, Session};
use crate::ops::{ActionError, OpsAction, OpsService};
use app::domain::SalonId;
use app::ops::{Flash, OperatorView};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use std::net::SocketAddr;
use tower_http::set_header::SetResponseHeaderLayer;

use super::route_table::Routes;
use super::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .post("/ops/login", sign_in)
        .post("/ops/logout", sign_out)
        .post("/ops/salons/{id}/actions/{action}", act)
        .get_with("/ops/salons/{id}/events", salon_events, |route| {
            // A reverse proxy (nginx) must pass every event on as it comes, not buffer it.
            route.layer(SetResponseHeaderLayer::overriding(
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ))
        })
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
///
/// The sign-in page is where a browser gets its pre-session CSRF cookie: a `GET /ops/login`
/// without one is given a fresh nonce — added to the request, so the page renders the form's
/// token for it, and set on the response.
///
/// Its state is the whole `AppState` (one `Arc`), not the console's service: the layer runs for
/// every request and clones its state each time.
///
/// Every console response (sign-in included) may not be framed by anyone: the onboarding page's
/// `frame-ancestors` (YClients' origins, which an iframe needs) would let a same-site page frame
/// the console's buttons (clickjacking). The router's own policy is added only where none is set.
pub async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !(path == "/ops" || path.starts_with("/ops/")) {
        return next.run(request).await;
    }
    let mut response = console_gate(&state, request, next).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn console_gate(state: &AppState, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if guarded(path) && session(&state.ops, request.headers()).is_none() {
        return see_other("/ops/login");
    }
    if path != "/ops/login" || request.method() != axum::http::Method::GET {
        return next.run(request).await;
    }
    let cookies = request
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if Auth::login_nonce(cookies.as_deref()).is_some() {
        return next.run(request).await;
    }
    let nonce = Auth::new_login_nonce();
    let with_nonce = match cookies {
        Some(cookies) if !cookies.trim().is_empty() => {
            format!("{cookies}; {}={nonce}", crate::ops::auth::LOGIN_COOKIE)
        }
        _ => format!("{}={nonce}", crate::ops::auth::LOGIN_COOKIE),
    };
    if let Ok(value) = HeaderValue::from_str(&with_nonce) {
        request.headers_mut().insert(header::COOKIE, value);
    }
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&state.ops.auth.login_cookie(&nonce)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// The sign-in form's token, bound to this browser's `ops_login` cookie.
    #[serde(default)]
    csrf: String,
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
        return too_many_requests(
            "Слишком много попыток входа. Too many sign-in attempts.",
            wait,
        );
    }
    let cookies = headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok());
    if !ops.auth.login_csrf_matches(cookies, &form.csrf) {
        // A form from another site, another browser, or one older than its cookie: no password
        // is checked; a fresh form is one reload away.
        tracing::warn!(%client, "operator sign-in without a valid form token");
        return see_other("/ops/login?error=form");
    }
    let signed_in = match ops.auth.sign_in(form.name.trim(), &form.password).await {
        Ok(signed_in) => signed_in,
        Err(crate::ops::auth::Busy) => {
            tracing::warn!(%client, "operator sign-in refused: too many password checks under way");
            return too_many_requests(
                "Слишком много попыток входа сейчас, повторите через несколько секунд. Too many sign-in attempts at once; try again in a few seconds.",
                2,
            );
        }
    };
    let Some(cookie) = signed_in else {
        tracing::warn!(%client, name = %crate::telemetry::client_text(&form.name), "operator sign-in refused");
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
    /// `release-connected-user`: the YClients user id the salon is handed over to.
    #[serde(default)]
    to_user: Option<String>,
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

/// `429` with `message` and `Retry-After: retry_after_secs`.
fn too_many_requests(message: &'static str, retry_after_secs: u64) -> Response {
    let mut response = plain(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// `k=v` for a redirect's query, percent-encoded.
fn encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The salon page's address with an action's outcome — `?done={name}&note={outcome}` or
/// `?error={reason}`, then `at={unix seconds}&sig={signature}`. The page shows the words only
/// when `ops/salon` finds the signature is the server's, for this session and this salon, and
/// a few minutes old at most (`Auth::verified_flash`): anyone can write a link with
/// `?error=…`, nobody else can sign one.
fn outcome_location(ops: &OpsService, session: &Session, salon: SalonId, flash: Flash) -> String {
    let at = chrono::Utc::now().timestamp();
    let operator = OperatorView {
        name: session.operator.clone(),
        csrf: session.csrf.clone(),
    };
    let sig = ops.auth.flash_signature(&operator, salon.get(), &flash, at);
    let mut location = format!("/ops/salons/{salon}?");
    for (key, value) in [
        ("done", &flash.done),
        ("note", &flash.note),
        ("error", &flash.error),
    ] {
        if let Some(value) = value {
            location.push_str(&format!("{key}={}&", encoded(value)));
        }
    }
    location.push_str(&format!("at={at}&sig={sig}"));
    location
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
    let action = match OpsAction::parse(&action, event_id, form.to_user.as_deref()) {
        Ok(action) => action,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let name = action.name();
    match ops.act(&session.operator, salon, action).await {
        Ok(outcome) => see_other(&outcome_location(
            &ops,
            &session,
            salon,
            Flash {
                done: Some(name.to_owned()),
                note: Some(outcome),
                error: None,
            },
        )),
        Err(ActionError::Refused(reason)) => see_other(&outcome_location(
            &ops,
            &session,
            salon,
            Flash {
                done: None,
                note: None,
                error: Some(reason),
            },
        )),
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

/// `GET /ops/salons/{id}/events`: the console's salon page follows the salon live — the same
/// per-salon room as the salon's own page, authorised by the operator's session (the gate sends
/// anything else, an onboarding token included, to sign-in). Each frame `changed` means: read
/// the salon again.
#[tracing::instrument(name = "ops_live_channel", skip_all, fields(salon_id = %id))]
async fn salon_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if session(&state.ops, &headers).is_none() {
        return see_other("/ops/login");
    }
    let Some(salon) = id
        .parse::<i64>()
        .ok()
        .and_then(|id| SalonId::try_from(id).ok())
    else {
        return plain(StatusCode::BAD_REQUEST, format!("«{id}» is not a salon id"));
    };
    match state.store.salon(salon).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return plain(
                StatusCode::NOT_FOUND,
                format!("salon {salon} is not stored"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "the console's live channel could not read the salon");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
    }
    let slot = match state.onboarding.limits.stream_slot(salon) {
        Ok(slot) => slot,
        Err(wait) => {
            return too_many_requests("too many live streams for this salon", wait.0);
        }
    };
    let stream = state.live.open_operator(salon, slot);
    let frames = futures::stream::unfold(stream, |mut stream| async move {
        let frame = stream.next_frame().await?;
        Some((Ok::<_, std::convert::Infallible>(frame), stream))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(frames),
    )
        .into_response()
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
            "/ops/salons/1/events",
        ] {
            assert!(super::guarded(path), "{path}");
        }
        for path in ["/ops/login", "/opsx", "/", "/marketplace/onboarding"] {
            assert!(!super::guarded(path), "{path}");
        }
    }
}
