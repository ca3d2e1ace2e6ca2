//! The layers every response passes through, innermost first: the onboarding page's token gate,
//! server-function error statuses, the body limit, the security
//! headers (CSP `frame-ancestors`, referrer policy, nosniff), compression, the timeout, CORS and
//! the request trace.

use super::pages::require_onboarding_token;
use super::webhooks::MAX_WEBHOOK_BODY;
use super::AppState;
use crate::instruments::Instruments;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::time::Duration;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

/// Who may frame and call us: the origins as bound (the sandbox's real port included).
#[derive(Debug, Clone)]
pub struct Origins {
    pub frame_ancestors: Vec<String>,
    pub cors: Vec<String>,
}

/// Wraps the routed app in every layer, in this order (the first listed is the innermost).
pub fn apply(router: Router<AppState>, state: &AppState, origins: &Origins) -> Router<AppState> {
    router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_onboarding_token,
        ))
        .layer(middleware::from_fn(server_fn_error_status))
        .layer(middleware::from_fn_with_state(
            state.instruments.clone(),
            record_request,
        ))
        // A body refused for its size with part of it still unread: its answer says
        // `Connection: close`, as every answer given before its body was read does (`http::serve`).
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        // Where no route set its own (the console's is `frame-ancestors 'none'`).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(origins),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(cors_layer(&origins.cors))
        // One span per request: method, the route as declared (`/webhook/yclients/events/
        // {salon_id}/{secret}`, never the secret in it, never a query with a token or signed user
        // data), and the request id, which every log line written while serving it carries (JSON
        // logs list the spans). scripts/check-logs.py looks for the secrets in a real log.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("(no route)", MatchedPath::as_str);
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        route = %route,
                        request_id = %request_id,
                    )
                })
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                ),
        )
        // The id: the proxy's (`X-Request-Id`, nginx's `$request_id`) or a new UUID; answered back.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // A client's own id is kept only when it looks like one: it goes into every log line of
        // the request, and a 60-KiB id wrote 60-KiB lines (found by an audit).
        .layer(middleware::map_request(drop_unfit_request_id))
}

/// Whether a request id a client sent may stand for the request in the logs and the answer: at
/// most 64 characters of letters, digits and `-_.:` (a UUID, nginx's `$request_id`).
pub fn fit_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// Removes an `X-Request-Id` that is not [`fit_request_id`], so the request gets a new one.
async fn drop_unfit_request_id(mut request: Request) -> Request {
    if request
        .headers()
        .get_all("x-request-id")
        .iter()
        .any(|value| !fit_request_id(value))
    {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Request latency by route (as declared), method and status class, and YClients' webhooks by
/// kind and result — every label bounded, whatever a client sends.
async fn record_request(
    axum::extract::State(instruments): axum::extract::State<Instruments>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str)
        .to_owned();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    instruments
        .histogram(
            "ai_admin_http_request_duration_seconds",
            &[("route", &route), ("method", method), ("status", class)],
        )
        .record(started.elapsed().as_secs_f64());
    if let Some(kind) = match route.as_str() {
        "/webhook/yclients" => Some("lifecycle"),
        r if r.starts_with("/webhook/yclients/events/") => Some("entity"),
        _ => None,
    } {
        let result = match status {
            200..=299 => "accepted",
            401 | 403 => "refused",
            413 => "too_large",
            503 => "unavailable",
            400..=499 => "rejected",
            _ => "error",
        };
        instruments.count(
            "ai_admin_webhooks_total",
            &[("kind", kind), ("result", result)],
        );
    }
    response
}

/// The `Content-Security-Policy` of every response but the console's: who may frame us.
pub fn content_security_policy(origins: &Origins) -> HeaderValue {
    let frame_ancestors = format!(
        "frame-ancestors 'self' {}",
        origins.frame_ancestors.join(" ")
    );
    HeaderValue::from_str(&frame_ancestors)
        .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'self'"))
}

/// Whether a request from `origin` is answered `Access-Control-Allow-Origin: {origin}`.
pub fn cors_allows(patterns: &[String], origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    patterns
        .iter()
        .any(|pattern| origin_matches(pattern, origin))
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let patterns: Vec<String> = origins.to_vec();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            cors_allows(&patterns, origin)
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
}

/// `https://*.yclients.com` matches `https://n962302.yclients.com`, not `https://yclients.com.evil`.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| host.ends_with(&format!(".{domain}"))),
        None => pattern == origin,
    }
}

/// A server function's error keeps the HTTP status it deserves. Errors raised in a function's
/// body set it themselves (`app::api`); an argument that cannot be decoded (a missing `token`, a
/// repeated field, a body that is not UTF-8) fails inside server_fn before the body runs, and
/// server_fn answers those with a 500. They are the caller's mistake: the `AppError` in the body
/// says which status, and this layer applies it.
pub async fn server_fn_error_status(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        parts.status = StatusCode::BAD_REQUEST;
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    if let Ok(error) = serde_json::from_slice::<app::api::AppError>(&bytes) {
        parts.status = error.status_code();
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::origin_matches;

    #[test]
    fn wildcard_origins_match_subdomains_only() {
        assert!(origin_matches(
            "https://*.yclients.com",
            "https://n962302.yclients.com"
        ));
        assert!(!origin_matches(
            "https://*.yclients.com",
            "https://yclients.com.evil.io"
        ));
        assert!(!origin_matches(
            "https://*.yclients.com",
            "http://n1.yclients.com"
        ));
        assert!(origin_matches(
            "https://yclients.com",
            "https://yclients.com"
        ));
    }
}
