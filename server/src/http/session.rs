//! The onboarding token at the HTTP boundary: the [`OnboardingSession`] extractor (a bearer
//! header, or `?token=` where `EventSource` cannot send headers), verified by the one
//! [`SessionVerifier`].

use super::error::ApiError;
use crate::session::{OnboardingSession, SessionVerifier, TokenError};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let status = match e {
            TokenError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The salon a request's onboarding token is for: `Authorization: Bearer …`, or `?token=…` where
/// `EventSource` cannot send headers.
impl<S> FromRequestParts<S> for OnboardingSession
where
    SessionVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = SessionVerifier::from_ref(state);
        let token = token_from_parts(parts).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing onboarding token (Authorization: Bearer …)",
            )
        })?;
        Ok(verifier.verify(&token).await?)
    }
}

pub fn token_from_parts(parts: &Parts) -> Option<String> {
    let from_header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    from_header.or_else(|| query_token(&parts.uri))
}

/// `?token=…`: how the onboarding page's address and `EventSource` carry the token.
pub fn query_token(uri: &axum::http::Uri) -> Option<String> {
    uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })
}
