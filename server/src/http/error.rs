//! Errors at the HTTP boundary: a Russian HTML page for the admin's browser, JSON for API callers.
//! 5xx bodies never carry internals; the cause goes to the log.

use app::i18n::Locale;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use html_escape::encode_text;

pub const MARKETPLACE_URL: &str = "https://yclients.com/appstore";

/// An HTML error page: what happened and what to do next, with a way back to the marketplace.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub action: Option<(String, String)>,
    /// The action leaves the app for YClients: it opens in the top window (`target="_top"`,
    /// `rel="noopener"`), so it works from inside the YClients iframe.
    pub action_leaves_app: bool,
    pub locale: Locale,
}

/// The admin's language for a page: `Accept-Language` (Russian unless English comes first).
pub fn page_locale(headers: &HeaderMap) -> Locale {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Locale::from_accept_language)
        .unwrap_or_default()
}

impl ErrorPage {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            message: message.into(),
            action: None,
            action_leaves_app: false,
            locale: Locale::Ru,
        }
    }

    /// The language the title and message are written in (the page's frame follows it).
    pub fn in_locale(mut self, locale: Locale) -> Self {
        self.locale = locale;
        self
    }

    /// A button besides the marketplace link (e.g. "Повторить").
    pub fn with_action(mut self, label: impl Into<String>, href: impl Into<String>) -> Self {
        self.action = Some((label.into(), href.into()));
        self
    }

    /// A button to a page outside the app (the app's card in the YClients marketplace): opened
    /// in the top window, out of the YClients iframe.
    pub fn with_top_level_action(
        mut self,
        label: impl Into<String>,
        href: impl Into<String>,
    ) -> Self {
        self.action = Some((label.into(), href.into()));
        self.action_leaves_app = true;
        self
    }

    pub fn render(&self) -> String {
        let action = self
            .action
            .as_ref()
            .map(|(label, href)| {
                format!(
                    r#"<a class="button" href="{}"{} data-testid="error-action">{}</a>"#,
                    html_escape::encode_double_quoted_attribute(href),
                    if self.action_leaves_app {
                        r#" target="_top" rel="noopener""#
                    } else {
                        ""
                    },
                    encode_text(label)
                )
            })
            .unwrap_or_default();
        format!(
            r#"<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{title} — AI Admin</title>
<link rel="stylesheet" href="/pkg/ai-admin-connect.css"></head>
<body><main class="page"><section class="card error-card" role="alert" data-testid="error-page">
<h1>{title}</h1><p>{message}</p><p class="actions">{action}
<a class="button secondary" href="{marketplace}" target="_top">{back}</a></p>
<p class="muted">{code_label}: {code}</p></section></main></body></html>"#,
            lang = self.locale.code(),
            back = match self.locale {
                Locale::Ru => "Вернуться в маркетплейс YClients",
                Locale::En => "Back to the YClients marketplace",
            },
            code_label = match self.locale {
                Locale::Ru => "Код ответа",
                Locale::En => "Response code",
            },
            title = encode_text(&self.title),
            message = encode_text(&self.message),
            marketplace = MARKETPLACE_URL,
            code = self.status.as_u16(),
        )
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Html(self.render()),
        )
            .into_response()
    }
}

/// A JSON error for API routes: `{"success":false,"error":"…"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds), with a 429.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// A 429 with `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// A 503 (the caller may retry: YClients does) whose cause goes to the log, not to the caller.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "storage unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable; it has been logged, please retry",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({"success": false, "error": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::unavailable(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_escape_what_they_show() {
        let page =
            ErrorPage::new(StatusCode::BAD_REQUEST, "<b>", "<script>alert(1)</script>").render();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("lang=\"ru\""));
    }
}
