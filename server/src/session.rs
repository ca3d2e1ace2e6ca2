//! The onboarding token: a short-lived HS256 JWT that lets one browser see and drive the
//! onboarding of one salon, and nothing else (no admin power, no other salon). It carries the
//! salon's token generation: uninstall (and a new install) bumps it in the database, so every
//! token issued before is dead on every surface at once.
//!
//! [`SessionVerifier`] is the one verifier: the page, the server functions, the status endpoint
//! and the live channel all go through it (the [`OnboardingSession`] extractor for plain routes,
//! `OnboardingBackend::authorize` for server functions; the extractor is in `http::session`).

use crate::domain::SalonStatus;
use crate::store::Store;
use app::domain::SalonId;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

const AUDIENCE: &str = "ai-admin-onboarding";
const ISSUER: &str = "ai-admin-connect";
const SCOPE: &str = "onboarding";
/// Our tokens are ~300 bytes; anything much longer is refused before it is decoded.
const MAX_TOKEN_LEN: usize = 2048;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iss: String,
    scope: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// The salon's token generation when the token was issued.
    generation: i32,
}

/// Signs and checks the signature of onboarding tokens (no database: see [`SessionVerifier`]).
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
    /// The installation it was issued for ended (uninstalled, or installed again since).
    #[error("the onboarding link was revoked: the app was removed or installed again in YClients")]
    Revoked,
    #[error("the onboarding link cannot be checked right now")]
    Unavailable,
}

/// Whose onboarding a request may see: the salon, and the generation its token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnboardingSession {
    pub salon: SalonId,
    pub generation: i32,
    /// The last second (Unix time) the token is accepted: its `exp` and the leeway. A live
    /// stream opened with it ends then too (it would otherwise outlive the token).
    pub expires_at: i64,
}

/// Seconds past `exp` a token is still accepted (clocks of other instances).
const LEEWAY_SECS: u64 = 5;

/// Whether a token accepted until `expires_at` (an [`OnboardingSession::expires_at`]) has
/// expired by now.
pub fn token_expired(expires_at: i64) -> bool {
    chrono::Utc::now().timestamp() > expires_at
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

    pub fn issue(
        &self,
        salon: SalonId,
        generation: i32,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: salon.to_string(),
            aud: AUDIENCE.to_owned(),
            iss: ISSUER.to_owned(),
            scope: SCOPE.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            generation,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The signature, audience, issuer, scope and expiry; not whether the installation still
    /// stands (that is [`SessionVerifier::verify`]).
    pub fn decode(&self, token: &str) -> Result<OnboardingSession, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let data =
            decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.scope != SCOPE {
            return Err(TokenError::Invalid);
        }
        let salon = SalonId::parse(&data.claims.sub).map_err(|_| TokenError::Invalid)?;
        Ok(OnboardingSession {
            salon,
            generation: data.claims.generation,
            expires_at: data.claims.exp.saturating_add(LEEWAY_SECS as i64),
        })
    }
}

/// The one token verifier: the signature, then the salon's current generation and status.
#[derive(Clone)]
pub struct SessionVerifier {
    tokens: OnboardingTokens,
    store: Store,
    instruments: crate::instruments::Instruments,
}

impl SessionVerifier {
    pub fn new(
        tokens: OnboardingTokens,
        store: Store,
        instruments: crate::instruments::Instruments,
    ) -> Self {
        Self {
            tokens,
            store,
            instruments,
        }
    }

    pub fn tokens(&self) -> &OnboardingTokens {
        &self.tokens
    }

    pub async fn verify(&self, token: &str) -> Result<OnboardingSession, TokenError> {
        let verified = match self.tokens.decode(token) {
            Ok(session) => match self.still_valid(&session).await {
                Ok(true) => Ok(session),
                Ok(false) => Err(TokenError::Revoked),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &verified {
            let reason = match e {
                TokenError::Expired => "expired",
                TokenError::Invalid => "invalid",
                TokenError::Revoked => "revoked",
                TokenError::Unavailable => "unavailable",
            };
            self.instruments
                .count("ai_admin_tokens_refused_total", &[("reason", reason)]);
        }
        verified
    }

    /// Whether the installation the session's token was issued for still stands (the live
    /// channel asks again when its salon changes, and ends the stream when it does not).
    pub async fn still_valid(&self, session: &OnboardingSession) -> Result<bool, TokenError> {
        match self.store.token_generation(session.salon).await {
            Ok(Some((generation, status))) => {
                Ok(generation == session.generation && status != SalonStatus::Uninstalled)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                tracing::error!(error = %e, "checking an onboarding token failed");
                Err(TokenError::Unavailable)
            }
        }
    }
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
        let token = t.issue(salon, 3).expect("issued");
        let session = t.decode(&token).expect("valid");
        assert_eq!((session.salon, session.generation), (salon, 3));
        let expected = chrono::Utc::now().timestamp() + 60 + LEEWAY_SECS as i64;
        assert!((expected - 2..=expected).contains(&session.expires_at));
        assert!(!token_expired(session.expires_at));
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_invalid() {
        let t = tokens(60);
        let token = t
            .issue(SalonId::parse("42").expect("id"), 0)
            .expect("issued");
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(t.decode(&tampered), Err(TokenError::Invalid));
        let other =
            OnboardingTokens::new(&SecretString::from("y".repeat(32)), Duration::from_secs(60));
        assert_eq!(other.decode(&token), Err(TokenError::Invalid));
        // alg=none with the same claims
        let parts: Vec<&str> = token.split('.').collect();
        let none_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"none","typ":"JWT"}"#,
        );
        assert_eq!(
            t.decode(&format!("{none_header}.{}.", parts[1])),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_tokens_say_so() {
        let t = OnboardingTokens::new(&SecretString::from("x".repeat(32)), Duration::from_secs(0));
        let token = t
            .issue(SalonId::parse("1").expect("id"), 0)
            .expect("issued");
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
            generation: 0,
        };
        let old = encode(&Header::new(Algorithm::HS256), &claims, &t.encoding).expect("encoded");
        assert_eq!(t.decode(&old), Err(TokenError::Expired));
        assert!(t.decode(&token).is_ok(), "within leeway");
    }
}
