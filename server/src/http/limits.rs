//! The redirect's rate limit at the HTTP boundary: the client address (the peer, or a trusted
//! proxy's `X-Forwarded-For`), and over the limit a 429 page in Russian with `Retry-After`.

use super::error::ErrorPage;
use crate::limits::{Limits, RetryAfter};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The redirect's limit, as a route layer: over it, a 429 page in Russian with `Retry-After`.
pub async fn limit_redirect(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let forwarded_for = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok());
    let client = limits.client_address(peer, forwarded_for);
    match limits.redirect(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::warn!(%client, retry_after_secs = wait.0, "redirect rate limit reached");
            too_many_redirects(wait)
        }
    }
}

fn too_many_redirects(RetryAfter(secs): RetryAfter) -> Response {
    let mut response = ErrorPage::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Слишком много попыток",
        format!(
            "Ссылка подключения открывалась слишком часто. Подождите {} и нажмите «Подключить» в маркетплейсе YClients ещё раз.",
            seconds_ru(secs)
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// «1 секунду», «3 секунды», «30 секунд».
pub(super) fn seconds_ru(n: u64) -> String {
    let word = match (n % 10, n % 100) {
        (_, 11..=14) => "секунд",
        (1, _) => "секунду",
        (2..=4, _) => "секунды",
        _ => "секунд",
    };
    format!("{n} {word}")
}

#[cfg(test)]
mod tests {
    use super::seconds_ru;

    #[test]
    fn seconds_are_spelled_in_russian() {
        assert_eq!(seconds_ru(1), "1 секунду");
        assert_eq!(seconds_ru(3), "3 секунды");
        assert_eq!(seconds_ru(11), "11 секунд");
        assert_eq!(seconds_ru(21), "21 секунду");
        assert_eq!(seconds_ru(30), "30 секунд");
    }
}
