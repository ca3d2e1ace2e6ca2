//! The YClients API client. Every response is checked for status *and* content type before it is
//! parsed: an HTML page (the `/callback/redirect` trap, a proxy error) is a typed error, never a
//! JSON panic. GETs are retried with backoff and jitter on network errors, 429 and 5xx; the
//! activation callback is not (its outbox owns retries). The callback counts as confirmed only on
//! 200/201 with YClients' JSON envelope and `success: true` ([`callback_answer`]). A client-side
//! limit keeps us under YClients' 5 requests/s.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::{header, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

pub const ACCEPT: &str = "application/vnd.yclients.v2+json";
/// YClients' answer to a callback for a link that is already active.
pub const ALREADY_INSTALLED: &str = "Пользователь уже установил это приложение";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum YClientsError {
    #[error("network error: {0}")]
    Network(String),
    #[error("YClients did not answer in time")]
    Timeout,
    #[error("YClients rate limit (429)")]
    RateLimited,
    #[error("YClients refused the partner token (401): {0}")]
    Unauthorized(String),
    #[error("YClients: the app is already installed (403): {0}")]
    AlreadyInstalled(String),
    #[error("YClients refused (403): {0}")]
    Forbidden(String),
    #[error("YClients: not found (404): {0}")]
    NotFound(String),
    #[error("YClients rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("YClients server error ({status}): {message}")]
    Server { status: u16, message: String },
    #[error("YClients answered {status} with {content_type} instead of JSON")]
    UnexpectedBody { status: u16, content_type: String },
    /// An answer longer than [`MAX_ANSWER_BYTES`]: not read past that (YClients' answers are a
    /// few kilobytes; a proxy or a wrong URL could send anything).
    #[error("YClients answered {status} with a body over {limit} bytes")]
    TooLarge { status: u16, limit: usize },
    /// A 2xx whose JSON envelope does not say `success: true`: nothing was confirmed.
    #[error("YClients answered {status} without confirming: {message}")]
    Unconfirmed { status: u16, message: String },
}

impl YClientsError {
    /// Worth trying again later: the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            YClientsError::Network(_)
                | YClientsError::Timeout
                | YClientsError::RateLimited
                | YClientsError::Server { .. }
                | YClientsError::UnexpectedBody { .. }
                | YClientsError::TooLarge { .. }
                | YClientsError::Unconfirmed { .. }
        )
    }
}

/// The most of an answer's body the client reads.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The answer's body as text, read chunk by chunk and refused past [`MAX_ANSWER_BYTES`] (on its
/// declared length at once, or as it arrives), instead of being held whole in memory whatever
/// its size.
async fn body_text(mut response: reqwest::Response) -> Result<String, YClientsError> {
    let status = response.status().as_u16();
    let too_large = YClientsError::TooLarge {
        status,
        limit: MAX_ANSWER_BYTES,
    };
    if response
        .content_length()
        .is_some_and(|declared| declared > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| YClientsError::Network(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[derive(Debug, Clone, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    data: Option<T>,
    /// An object with `message` on errors; YClients sends `[]` or a count object on success.
    #[serde(default)]
    meta: serde_json::Value,
}

impl<T> Envelope<T> {
    fn message(&self) -> Option<String> {
        self.meta
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    }
}

/// A branch, as `GET /api/v1/company/{id}/` describes it. `phone` is not always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    pub id: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub timezone_name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// The activation callback body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRequest {
    pub salon_id: i64,
    pub application_id: i64,
    pub api_key: String,
    pub webhook_urls: Vec<String>,
    pub channels: Vec<String>,
}

/// Our application's installation in a branch, as YClients reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallationStatus {
    Pending,
    Active,
    /// `freezed` on the wire (`frozen` accepted too).
    Frozen,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

impl InstallationStatus {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "freezed" | "frozen" => Self::Frozen,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Frozen => "freezed",
            Self::Unknown(raw) => raw,
        }
    }
}

impl std::fmt::Display for InstallationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Deserialize)]
struct ConnectionStatus {
    status: String,
}

#[derive(Debug, Deserialize)]
struct InstallationData {
    connection_status: ConnectionStatus,
}

/// Requests a minute the client keeps to: YClients allows 200 a minute per IP (§5); a few are
/// left for retries and the other processes that may share the address.
pub const REQUESTS_PER_MINUTE: u32 = 190;

#[derive(Clone)]
pub struct YClientsClient {
    http: reqwest::Client,
    base: String,
    partner_token: Arc<SecretString>,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// YClients' second limit: requests per minute (§5: 200 a minute or 5 a second, per IP).
    /// Four a second alone is 240 a minute, so a busy minute ran into 429s.
    minute_limiter: Arc<DefaultDirectRateLimiter>,
    retries: u32,
    retry_base: Duration,
}

impl YClientsClient {
    pub fn new(
        base_url: &str,
        partner_token: SecretString,
        timeout: Duration,
        requests_per_second: u32,
    ) -> Result<Self, YClientsError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ai-admin-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| YClientsError::Network(e.to_string()))?;
        let per_second =
            NonZeroU32::new(requests_per_second.clamp(1, 5)).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            partner_token: Arc::new(partner_token),
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
            minute_limiter: Arc::new(RateLimiter::direct(Quota::per_minute(
                NonZeroU32::new(REQUESTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
            ))),
            retries: 2,
            retry_base: Duration::from_millis(300),
        })
    }

    /// The same client keeping at most `per_minute` requests a minute (tests; the default is
    /// [`REQUESTS_PER_MINUTE`]).
    pub fn with_requests_per_minute(mut self, per_minute: u32) -> Self {
        let per_minute =
            NonZeroU32::new(per_minute.clamp(1, REQUESTS_PER_MINUTE)).unwrap_or(NonZeroU32::MIN);
        self.minute_limiter = Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)));
        self
    }

    /// `GET /api/v1/company/{id}/`.
    #[tracing::instrument(skip_all, fields(salon_id = id))]
    pub async fn company(&self, id: i64) -> Result<Company, YClientsError> {
        self.get(&format!("/api/v1/company/{id}/")).await
    }

    /// `POST /marketplace/partner/callback` — once; the caller (the outbox) retries.
    /// Never `/callback/redirect`: that one is for browsers and answers HTML.
    #[tracing::instrument(skip_all, fields(salon_id = body.salon_id))]
    pub async fn partner_callback(&self, body: &CallbackRequest) -> Result<(), YClientsError> {
        self.partner_callback_answered(body).await.result
    }

    /// [`partner_callback`](Self::partner_callback) with what came back: the HTTP status and the
    /// start of the body (at most [`ANSWER_EXCERPT_CHARS`] characters), for the outbox's record
    /// of every attempt.
    pub async fn partner_callback_answered(&self, body: &CallbackRequest) -> CallbackAnswer {
        let response = match self
            .send(Method::POST, "/marketplace/partner/callback", Some(body))
            .await
        {
            Ok(response) => response,
            Err(e) => {
                return CallbackAnswer {
                    status: None,
                    excerpt: None,
                    result: Err(e),
                }
            }
        };
        let status = response.status();
        let content_type = content_type(&response);
        let text = match body_text(response).await {
            Ok(text) => text,
            Err(e) => {
                return CallbackAnswer {
                    status: Some(status.as_u16()),
                    excerpt: None,
                    result: Err(e),
                }
            }
        };
        CallbackAnswer {
            status: Some(status.as_u16()),
            excerpt: Some(excerpt(&text)),
            result: callback_answer(status, &content_type, &text),
        }
    }

    /// `GET /marketplace/salon/{salon_id}/application/{application_id}`; `None` = not installed.
    #[tracing::instrument(skip_all, fields(salon_id))]
    pub async fn installation_status(
        &self,
        salon_id: i64,
        application_id: i64,
    ) -> Result<Option<InstallationStatus>, YClientsError> {
        let path = format!("/marketplace/salon/{salon_id}/application/{application_id}");
        match self.get::<InstallationData>(&path).await {
            Ok(data) => Ok(Some(InstallationStatus::parse(
                &data.connection_status.status,
            ))),
            Err(YClientsError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, YClientsError> {
        let mut attempt = 0;
        loop {
            let result = match self.send::<()>(Method::GET, path, None).await {
                Ok(response) => Self::parse(response).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    attempt += 1;
                    let backoff = backoff_with_jitter(self.retry_base, attempt);
                    tracing::warn!(error = %e, attempt, ?backoff, "YClients GET failed, retrying");
                    tokio::time::sleep(backoff).await;
                }
                other => return other,
            }
        }
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, YClientsError> {
        self.minute_limiter.until_ready().await;
        self.limiter.until_ready().await;
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header(header::ACCEPT, ACCEPT)
            .bearer_auth(self.partner_token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|e| {
            if e.is_timeout() {
                YClientsError::Timeout
            } else {
                YClientsError::Network(e.without_url().to_string())
            }
        })
    }

    async fn parse<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, YClientsError> {
        if !response.status().is_success() {
            return Err(Self::error_from(response).await);
        }
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        if !content_type.contains("json") {
            return Err(YClientsError::UnexpectedBody {
                status,
                content_type,
            });
        }
        let text = body_text(response).await?;
        let envelope: Envelope<T> =
            serde_json::from_str(&text).map_err(|_| YClientsError::UnexpectedBody {
                status,
                content_type: content_type.clone(),
            })?;
        let message = envelope.message();
        match (envelope.success, envelope.data) {
            (true, Some(data)) => Ok(data),
            _ => Err(YClientsError::Rejected {
                status,
                message: message.unwrap_or_else(|| "success=false".to_owned()),
            }),
        }
    }

    async fn error_from(response: reqwest::Response) -> YClientsError {
        let status = response.status();
        let content_type = content_type(&response);
        let text = if content_type.contains("json") {
            body_text(response).await.unwrap_or_default()
        } else {
            String::new()
        };
        error_from_parts(status, content_type, &text)
    }
}

/// How much of an answer's body [`CallbackAnswer::excerpt`] keeps.
pub const ANSWER_EXCERPT_CHARS: usize = 500;

/// One `POST /marketplace/partner/callback` and what came back.
#[derive(Debug)]
pub struct CallbackAnswer {
    /// The HTTP status; `None` when no answer came (network error, timeout).
    pub status: Option<u16>,
    /// The start of the answer's body, control characters replaced.
    pub excerpt: Option<String>,
    pub result: Result<(), YClientsError>,
}

/// At most [`ANSWER_EXCERPT_CHARS`] characters of `text`, trimmed, without control characters
/// (newlines become spaces).
pub fn excerpt(text: &str) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .take(ANSWER_EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > ANSWER_EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// What an answer to `POST /marketplace/partner/callback` means. Confirmed only on 200/201 with
/// YClients' JSON envelope saying `success: true`; an HTML page or any other non-JSON 2xx (a
/// proxy's error page) and a 2xx envelope without `success: true` are transient; everything else
/// is classified as any error answer.
pub fn callback_answer(
    status: StatusCode,
    content_type: &str,
    body: &str,
) -> Result<(), YClientsError> {
    if status != StatusCode::CREATED && status != StatusCode::OK {
        return Err(error_from_parts(status, content_type.to_owned(), body));
    }
    let code = status.as_u16();
    let envelope = content_type
        .contains("json")
        .then(|| serde_json::from_str::<Envelope<serde_json::Value>>(body).ok())
        .flatten();
    let Some(envelope) = envelope else {
        return Err(YClientsError::UnexpectedBody {
            status: code,
            content_type: content_type.to_owned(),
        });
    };
    if envelope.success {
        Ok(())
    } else {
        Err(YClientsError::Unconfirmed {
            status: code,
            message: envelope
                .message()
                .unwrap_or_else(|| "success is not true".to_owned()),
        })
    }
}

/// An error answer (`body` read only when the content type is JSON), as a typed error.
fn error_from_parts(status: StatusCode, content_type: String, body: &str) -> YClientsError {
    let message = if content_type.contains("json") {
        serde_json::from_str::<Envelope<serde_json::Value>>(body)
            .ok()
            .and_then(|e| e.message())
    } else {
        None
    };
    let code = status.as_u16();
    let Some(message) = message else {
        if status.is_server_error() {
            return YClientsError::Server {
                status: code,
                message: content_type,
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return YClientsError::RateLimited;
        }
        return YClientsError::UnexpectedBody {
            status: code,
            content_type,
        };
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS => YClientsError::RateLimited,
        StatusCode::UNAUTHORIZED => YClientsError::Unauthorized(message),
        StatusCode::FORBIDDEN if message.contains("уже установил") => {
            YClientsError::AlreadyInstalled(message)
        }
        StatusCode::FORBIDDEN => YClientsError::Forbidden(message),
        StatusCode::NOT_FOUND => YClientsError::NotFound(message),
        s if s.is_server_error() => YClientsError::Server {
            status: code,
            message,
        },
        _ => YClientsError::Rejected {
            status: code,
            message,
        },
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_owned()
}

/// `base · 2^(attempt-1)`, capped at 5 minutes, ±25 % jitter.
pub fn backoff_with_jitter(base: Duration, attempt: u32) -> Duration {
    let capped =
        retry_delay::exponential(base, attempt.saturating_sub(1), Duration::from_secs(300));
    let jitter = rand::thread_rng().gen_range(0.75..=1.25);
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_jittered() {
        let base = Duration::from_millis(100);
        let first = backoff_with_jitter(base, 1);
        let fourth = backoff_with_jitter(base, 4);
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
        assert!(fourth >= Duration::from_millis(600) && fourth <= Duration::from_millis(1000));
        assert!(backoff_with_jitter(base, 40) <= Duration::from_secs(375));
    }

    #[test]
    fn a_callback_is_confirmed_only_by_yclients_json_with_success_true() {
        let json = "application/json; charset=utf-8";
        let yes = r#"{"success":true,"data":null,"meta":[]}"#;
        assert_eq!(callback_answer(StatusCode::CREATED, json, yes), Ok(()));
        assert_eq!(callback_answer(StatusCode::OK, json, yes), Ok(()));
        assert_eq!(
            callback_answer(StatusCode::OK, ACCEPT, yes),
            Ok(()),
            "YClients' own media type is JSON too"
        );
        let not_confirmed = [
            // A proxy's error page answered 200.
            (
                StatusCode::OK,
                "text/html; charset=UTF-8",
                "<html><body>Bad gateway</body></html>",
            ),
            // JSON content type, not JSON inside.
            (StatusCode::OK, json, "<html></html>"),
            (StatusCode::CREATED, json, ""),
            // No content type at all.
            (StatusCode::OK, "no content type", yes),
            // The envelope says no, or says nothing.
            (
                StatusCode::OK,
                json,
                r#"{"success":false,"data":null,"meta":{"message":"Повторите позже"}}"#,
            ),
            (StatusCode::CREATED, json, r#"{"data":null,"meta":[]}"#),
            (StatusCode::OK, json, r#"{"success":"true"}"#),
            (StatusCode::OK, json, "[]"),
        ];
        for (status, content_type, body) in not_confirmed {
            let answer = callback_answer(status, content_type, body);
            let error = answer.expect_err(body);
            assert!(
                error.is_transient(),
                "{status} {content_type} {body}: {error:?}"
            );
            assert!(matches!(
                error,
                YClientsError::UnexpectedBody { .. } | YClientsError::Unconfirmed { .. }
            ));
        }
        assert_eq!(
            callback_answer(
                StatusCode::OK,
                json,
                r#"{"success":false,"data":null,"meta":{"message":"Повторите позже"}}"#
            ),
            Err(YClientsError::Unconfirmed {
                status: 200,
                message: "Повторите позже".into()
            })
        );
        // Other statuses keep their meaning.
        assert_eq!(
            callback_answer(
                StatusCode::ACCEPTED,
                json,
                r#"{"success":true,"data":null,"meta":[]}"#
            ),
            Err(YClientsError::UnexpectedBody {
                status: 202,
                content_type: json.into()
            })
        );
        assert_eq!(
            callback_answer(
                StatusCode::FORBIDDEN,
                json,
                &format!(
                    r#"{{"success":false,"data":null,"meta":{{"message":"{ALREADY_INSTALLED}"}}}}"#
                )
            ),
            Err(YClientsError::AlreadyInstalled(ALREADY_INSTALLED.into()))
        );
        assert_eq!(
            callback_answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json,
                r#"{"success":false,"data":null,"meta":{"message":"Ошибка валидации","errors":{}}}"#
            ),
            Err(YClientsError::Rejected {
                status: 422,
                message: "Ошибка валидации".into()
            })
        );
        assert!(
            callback_answer(StatusCode::MOVED_PERMANENTLY, "text/html", "<html/>")
                .expect_err("301")
                .is_transient()
        );
        assert_eq!(
            callback_answer(StatusCode::BAD_GATEWAY, "text/html", "<html/>"),
            Err(YClientsError::Server {
                status: 502,
                message: "text/html".into()
            })
        );
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        assert!(YClientsError::Timeout.is_transient());
        assert!(YClientsError::UnexpectedBody {
            status: 301,
            content_type: "text/html".into()
        }
        .is_transient());
        assert!(!YClientsError::Unauthorized("x".into()).is_transient());
        assert!(!YClientsError::Rejected {
            status: 422,
            message: "x".into()
        }
        .is_transient());
    }
}
