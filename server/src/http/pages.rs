//! The onboarding page's token gate and the small pages the HTTP layer answers itself.

use super::error::ErrorPage;
use super::session::query_token;
use super::SandboxUrl;
use crate::session::{SessionVerifier, TokenError};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

/// The onboarding page renders nothing for an invalid or expired token: the admin gets a page
/// saying what to do instead.
pub async fn require_onboarding_token(
    State(verifier): State<SessionVerifier>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() != "/marketplace/onboarding" {
        return next.run(request).await;
    }
    let token = query_token(request.uri());
    let refused = |status: StatusCode, title: &str, message: &str| {
        ErrorPage::new(status, title, message).into_response()
    };
    let verdict = match token.as_deref() {
        Some(token) => verifier.verify(token).await,
        None => Err(TokenError::Invalid),
    };
    match verdict {
        Ok(_) => {
            let mut response = next.run(request).await;
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(TokenError::Expired) => refused(
            StatusCode::UNAUTHORIZED,
            "Ссылка устарела",
            "Ссылка на подключение действует один час. Откройте AI Admin в маркетплейсе YClients и нажмите «Подключить» ещё раз.",
        ),
        Err(TokenError::Revoked) => refused(
            StatusCode::UNAUTHORIZED,
            "Ссылка больше не действует",
            "AI Admin был удалён из этого филиала в YClients или установлен заново. Откройте AI Admin в маркетплейсе YClients и нажмите «Подключить».",
        ),
        Err(TokenError::Unavailable) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Сервис временно недоступен",
            "Не удалось проверить ссылку. Обновите страницу через минуту.",
        ),
        Err(TokenError::Invalid) => refused(
            StatusCode::UNAUTHORIZED,
            "Ссылка недействительна",
            "Эта страница открывается только из маркетплейса YClients. Откройте AI Admin в маркетплейсе и нажмите «Подключить».",
        ),
    }
}

/// `GET /demo`: to the embedded sandbox's marketplace, or a page saying it is not running.
pub async fn demo(State(sandbox): State<Option<SandboxUrl>>) -> Response {
    match sandbox {
        Some(SandboxUrl(url)) => Redirect::to(&format!("{url}/")).into_response(),
        None => ErrorPage::new(
            StatusCode::NOT_FOUND,
            "Демо не запущено",
            "Демо-маркетплейс работает только при YCLIENTS_SANDBOX=true. Подключение начинается в маркетплейсе YClients.",
        )
        .into_response(),
    }
}

/// What a path that is neither a route nor a file answers.
pub async fn not_found() -> Response {
    ErrorPage::new(
        StatusCode::NOT_FOUND,
        "Страница не найдена",
        "Такой страницы нет. Подключение начинается в маркетплейсе YClients.",
    )
    .into_response()
}
