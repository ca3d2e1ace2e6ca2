//! The onboarding token: a short-lived HS256 JWT that lets one browser see and drive the
//! onboarding of one salon, and nothing else (no admin power, no other salon).

use crate::error::ApiError;
use app::domain::SalonId;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

const AUDIENCE: &str = "ai-admin-onboarding";
const ISSUER: &str = "ai-admin-connect";
const SCOPE: &str = "onboarding";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iss: String,
    scope: String,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Clone)]
pub struct OnboardingTokens {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the onboarding link has expired")]
    Expired,
    #[error("the onboarding link is not valid")]
    Invalid,
}

impl OnboardingTokens {
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Self {
            encoding: Arc::new(EncodingKey::from_secret(bytes)),
            decoding: Arc::new(DecodingKey::from_secret(bytes)),
            ttl,
        }
    }

    pub fn issue(&self, salon: SalonId) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: salon.to_string(),
            aud: AUDIENCE.to_owned(),
            iss: ISSUER.to_owned(),
            scope: SCOPE.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<SalonId, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 5;
        let data =
            decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.scope != SCOPE {
            return Err(TokenError::Invalid);
        }
        SalonId::parse(&data.claims.sub).map_err(|_| TokenError::Invalid)
    }
}

/// The salon a request's onboarding token is for: `Authorization: Bearer …`, or `?token=…` where
/// `EventSource` cannot send headers.
#[derive(Debug, Clone, Copy)]
pub struct OnboardingSession(pub SalonId);

impl<S> FromRequestParts<S> for OnboardingSession
where
    OnboardingTokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let tokens = OnboardingTokens::from_ref(state);
        let token = token_from_parts(parts).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing onboarding token (Authorization: Bearer …)",
            )
        })?;
        tokens
            .verify(&token)
            .map(OnboardingSession)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
    }
}

pub fn token_from_parts(parts: &Parts) -> Option<String> {
    let from_header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    from_header.or_else(|| {
        parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ttl: u64) -> OnboardingTokens {
        OnboardingTokens::new(
            &SecretString::from("x".repeat(32)),
            Duration::from_secs(ttl),
        )
    }

    #[test]
    fn a_token_opens_its_own_salon_only() {
        let t = tokens(60);
        let salon = SalonId::parse("42").expect("id");
        let token = t.issue(salon).expect("issued");
        assert_eq!(t.verify(&token), Ok(salon));
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_invalid() {
        let t = tokens(60);
        let token = t.issue(SalonId::parse("42").expect("id")).expect("issued");
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(t.verify(&tampered), Err(TokenError::Invalid));
        let other =
            OnboardingTokens::new(&SecretString::from("y".repeat(32)), Duration::from_secs(60));
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        // alg=none with the same claims
        let parts: Vec<&str> = token.split('.').collect();
        let none_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"none","typ":"JWT"}"#,
        );
        assert_eq!(
            t.verify(&format!("{none_header}.{}.", parts[1])),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_tokens_say_so() {
        let t = OnboardingTokens::new(&SecretString::from("x".repeat(32)), Duration::from_secs(0));
        let token = t.issue(SalonId::parse("1").expect("id")).expect("issued");
        std::thread::sleep(Duration::from_millis(10));
        // leeway is 5 s: craft one that expired long ago instead
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: "1".into(),
            aud: AUDIENCE.into(),
            iss: ISSUER.into(),
            scope: SCOPE.into(),
            iat: now - 7200,
            exp: now - 3600,
            jti: "j".into(),
        };
        let old = encode(&Header::new(Algorithm::HS256), &claims, &t.encoding).expect("encoded");
        assert_eq!(t.verify(&old), Err(TokenError::Expired));
        assert!(t.verify(&token).is_ok(), "within leeway");
    }
}
