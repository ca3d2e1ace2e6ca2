//! Operators, their passwords and their sessions.
//!
//! Accounts come from configuration (`OPS_OPERATORS`, Argon2 PHC hashes). A session is a signed,
//! expiring cookie — `name.expires.nonce.signature`, HMAC-SHA256 under a secret that is random
//! per start unless `OPS_SESSION_SECRET` is set — so no table holds sessions, and a restart (or a
//! new secret) ends them all. The signature also covers the operator's password hash (not in the
//! cookie), so a new password — a new hash, with its new salt, in `OPS_OPERATORS` — ends every
//! session of that operator even where `OPS_SESSION_SECRET` stays the same, which several
//! instances need: a copied cookie does not outlive the one remedy an operator has. The CSRF
//! token is derived from the session's nonce under the same secret: the page renders it into
//! every action form and the server recomputes it.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "ops_session";

/// The sign-in form's pre-session CSRF cookie: a random nonce the form's token is bound to.
pub const LOGIN_COOKIE: &str = "ops_login";

/// How long a sign-in form stays usable.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(60 * 60);

/// How long an action's signed outcome (`?done=…&note=…` / `?error=…` with `at` and `sig`) is
/// shown: the browser follows the redirect at once, and the page's live re-reads keep showing it
/// meanwhile; a link kept longer shows the salon without it.
pub const FLASH_TTL_SECS: i64 = 5 * 60;

/// How far ahead of this server's clock an outcome's time may be (another instance's clock).
const FLASH_CLOCK_SKEW_SECS: i64 = 30;

/// The value of cookie `name` in a `Cookie` header.
fn cookie<'a>(cookie_header: Option<&'a str>, name: &str) -> Option<&'a str> {
    cookie_header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The Argon2id hash (PHC string) of `password`, as `OPS_OPERATORS` wants it.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// What an unknown name's password is checked against, so a refusal takes as long either way
/// (the answer's timing does not tell which names exist): the hash of a random password nobody
/// kept, made once with `server hash-password` (`Argon2::default()`'s parameters, like every
/// operator's hash; a unit test holds them equal). Never a match: the sign-in refuses an unknown
/// name whatever the check says; the check only makes the refusal take as long as a known
/// name's. A constant, not a hash made at start-up: that took ~50 ms and a 19-MiB allocation at
/// every start (Argon2's memory), which the idle process then still held.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$cE/vuy5Sbx5pg8dWm8b7eQ$6oYxs94xcbQfDzaN/YxuLo8mVJyi7Pr6xRGsGfav7KM";

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub operator: String,
    pub csrf: String,
}

/// Too many password checks are under way: try again in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Password checks that may wait for the one that runs; more are refused as busy.
const CHECKS_WAITING: usize = 8;

pub struct Auth {
    checks_waiting: std::sync::Arc<tokio::sync::Semaphore>,
    checks_running: std::sync::Arc<tokio::sync::Semaphore>,
    operators: Vec<(String, String)>,
    secret: [u8; 32],
    ttl: Duration,
    secure: bool,
    signins: DefaultKeyedRateLimiter<IpAddr>,
    /// Forgets idle sign-in keys once a minute, not on every attempt.
    signins_sweep: crate::limits::Sweeper,
}

impl Auth {
    pub fn new(settings: &crate::config::OpsSettings, base_url: &str) -> Self {
        use secrecy::ExposeSecret;
        let secret = match &settings.session_secret {
            Some(configured) => {
                let digest =
                    <Sha256 as sha2::Digest>::digest(configured.expose_secret().as_bytes());
                digest.into()
            }
            None => rand::random::<[u8; 32]>(),
        };
        let per_minute = NonZeroU32::new(settings.signin_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            checks_waiting: std::sync::Arc::new(tokio::sync::Semaphore::new(CHECKS_WAITING + 1)),
            checks_running: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            operators: settings.operators.clone(),
            secret,
            ttl: settings.session_ttl,
            secure: base_url.starts_with("https://"),
            signins: RateLimiter::keyed(Quota::per_minute(per_minute)),
            signins_sweep: crate::limits::Sweeper::every_minute(),
        }
    }

    pub fn has_operators(&self) -> bool {
        !self.operators.is_empty()
    }

    /// One sign-in attempt from `client` (its /64 for IPv6, as the redirect's limit counts);
    /// `Err(seconds to wait)` over the limit.
    pub fn signin_attempt(&self, client: IpAddr) -> Result<(), u64> {
        if self.signins_sweep.due() {
            crate::limits::forget_idle(&self.signins);
        }
        let network = crate::limits::client_network(client);
        self.signins.check_key(&network).map_err(|not_until| {
            not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs()
                .max(1)
        })
    }

    /// Checks the password; `Ok(Some(cookie value))` when it is right, `Err(Busy)` when too many
    /// checks are under way. A check is Argon2id (tens of milliseconds of one core and 19 MiB):
    /// it runs on the blocking pool, one at a time, and at most `CHECKS_WAITING` more wait, so
    /// sign-in attempts from many addresses (each within its own limit) cannot occupy the
    /// runtime's workers and stall every other request — webhooks, entries, live streams.
    pub async fn sign_in(&self, name: &str, password: &str) -> Result<Option<String>, Busy> {
        // Owned permits, held by the check itself: a request dropped while its check runs (the
        // client went away) must not let another check start beside it.
        let Ok(queued) = self.checks_waiting.clone().try_acquire_owned() else {
            return Err(Busy);
        };
        let Ok(running) = self.checks_running.clone().acquire_owned().await else {
            return Err(Busy);
        };
        let account = self.operators.iter().find(|(n, _)| n == name);
        let hash = account
            .map(|(_, hash)| hash.clone())
            .unwrap_or_else(|| DECOY_HASH.to_owned());
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            let _permits = (queued, running);
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        Ok(self.session_for(account.filter(|_| verified)))
    }

    /// A new session's cookie value for a verified account.
    fn session_for(&self, account: Option<&(String, String)>) -> Option<String> {
        let (name, hash) = account?;
        let expires = chrono::Utc::now().timestamp() + self.ttl.as_secs() as i64;
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let name = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name.as_bytes());
        let body = format!("{name}.{expires}.{nonce}");
        Some(format!("{body}.{}", self.session_signature(&body, hash)))
    }

    /// A session's signature: its body and the operator's password hash as configured.
    fn session_signature(&self, body: &str, password_hash: &str) -> String {
        self.sign("session", &format!("{body}|{password_hash}"))
    }

    /// The `Set-Cookie` value for a new session.
    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.ttl.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The session in a `Cookie` header, if it is ours, unexpired, and of a configured operator.
    pub fn session(&self, cookie_header: Option<&str>) -> Option<Session> {
        let value = cookie(cookie_header, COOKIE)?;
        let (body, signature) = value.rsplit_once('.')?;
        let mut parts = body.split('.');
        let (name, expires, nonce) = (parts.next()?, parts.next()?, parts.next()?);
        let name = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(name)
                .ok()?,
        )
        .ok()?;
        // Signed with the operator's current password hash: an operator no longer configured,
        // or one whose password changed since, has no session.
        let (_, password_hash) = self.operators.iter().find(|(n, _)| *n == name)?;
        let expected = self.session_signature(body, password_hash);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return None;
        }
        if expires.parse::<i64>().ok()? <= chrono::Utc::now().timestamp() {
            return None;
        }
        Some(Session {
            operator: name,
            csrf: self.sign("csrf", nonce),
        })
    }

    /// Whether `presented` is the session's CSRF token.
    pub fn csrf_matches(session: &Session, presented: &str) -> bool {
        !presented.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The sign-in form's nonce in a `Cookie` header, if it is one of ours in shape (32 hex
    /// characters; anything else is as good as none).
    pub fn login_nonce(cookie_header: Option<&str>) -> Option<&str> {
        cookie(cookie_header, LOGIN_COOKIE)
            .filter(|nonce| nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// A fresh nonce for a sign-in form.
    pub fn new_login_nonce() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }

    /// The `Set-Cookie` value that binds sign-in forms to this browser (double-submit: the form
    /// carries [`login_token`](Self::login_token) of the nonce, which only this server can
    /// compute, so a cookie planted by someone else gives them no token).
    pub fn login_cookie(&self, nonce: &str) -> String {
        format!(
            "{LOGIN_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            LOGIN_FORM_TTL.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The sign-in form's CSRF token for `nonce`.
    pub fn login_token(&self, nonce: &str) -> String {
        self.sign("login", nonce)
    }

    /// Whether `presented` is the token of the sign-in nonce in this request's cookies.
    pub fn login_csrf_matches(&self, cookie_header: Option<&str>, presented: &str) -> bool {
        let Some(nonce) = Self::login_nonce(cookie_header) else {
            return false;
        };
        !presented.is_empty()
            && bool::from(
                self.login_token(nonce)
                    .as_bytes()
                    .ct_eq(presented.as_bytes()),
            )
    }

    /// The signature of an action's outcome as `act` redirects with it: the words (`done` and
    /// `note`, or `error`), the salon, the session it was done in (the operator and the
    /// session's CSRF token, which is derived from the session's own nonce) and `at`. The key is
    /// the session secret (`OPS_SESSION_SECRET`, or random per start): a start without a
    /// configured secret ends every session anyway, and an outcome is read right after the
    /// redirect, so nothing is lost with it. The fields are a JSON array: no two different
    /// outcomes share a body.
    pub fn flash_signature(
        &self,
        session: &app::ops::OperatorView,
        salon: i64,
        flash: &app::ops::Flash,
        at: i64,
    ) -> String {
        let body = serde_json::json!([
            session.name,
            session.csrf,
            salon,
            flash.done,
            flash.note,
            flash.error,
            at
        ]);
        self.sign("flash", &body.to_string())
    }

    /// The outcome `query` carries, if this server signed it for `session` and `salon` at most
    /// [`FLASH_TTL_SECS`] before `now`; else `None` (a stranger's words, another session's or
    /// salon's, or an old link).
    pub fn verified_flash(
        &self,
        session: &app::ops::OperatorView,
        salon: i64,
        query: &app::ops::FlashQuery,
        now: i64,
    ) -> Option<app::ops::Flash> {
        let (at, sig) = (query.at?, query.sig.as_deref()?);
        let age = now.checked_sub(at)?;
        if !(-FLASH_CLOCK_SKEW_SECS..=FLASH_TTL_SECS).contains(&age) {
            return None;
        }
        let flash = app::ops::Flash {
            done: query.done.clone(),
            note: query.note.clone(),
            error: query.error.clone(),
        };
        let expected = self.flash_signature(session, salon, &flash, at);
        bool::from(expected.as_bytes().ct_eq(sig.as_bytes())).then_some(flash)
    }

    fn sign(&self, purpose: &str, body: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return String::new();
        };
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OpsSettings;

    /// The decoy costs what an operator's hash costs: the same algorithm and parameters.
    #[test]
    fn the_decoy_has_the_parameters_every_operators_hash_has() {
        let operator = hash_password("s3cret-s3cret").expect("hash");
        let operator = PasswordHash::new(&operator).expect("parsed");
        let decoy = PasswordHash::new(DECOY_HASH).expect("the decoy parses");
        assert_eq!(decoy.algorithm, operator.algorithm);
        assert_eq!(decoy.version, operator.version);
        assert_eq!(decoy.params, operator.params);
        assert!(decoy.hash.is_some());
    }

    fn auth() -> Auth {
        let hash = hash_password("s3cret").expect("hash");
        Auth::new(
            &OpsSettings {
                operators: vec![("anna".into(), hash)],
                session_ttl: Duration::from_secs(60),
                session_secret: None,
                signin_per_minute: 5,
            },
            "https://example.com",
        )
    }

    #[tokio::test]
    async fn a_session_is_signed_and_carries_its_csrf_token() {
        let auth = auth();
        assert_eq!(auth.sign_in("anna", "wrong").await, Ok(None));
        assert_eq!(auth.sign_in("boris", "s3cret").await, Ok(None));
        let cookie = auth
            .sign_in("anna", "s3cret")
            .await
            .expect("not busy")
            .expect("signed in");
        let session = auth
            .session(Some(&format!("a=b; {COOKIE}={cookie}")))
            .expect("session");
        assert_eq!(session.operator, "anna");
        assert!(Auth::csrf_matches(&session, &session.csrf));
        assert!(!Auth::csrf_matches(&session, ""));
        let tampered = cookie.replacen("YW5uYQ", "Ym9yaXM", 1);
        assert!(auth
            .session(Some(&format!("{COOKIE}={tampered}")))
            .is_none());
        assert!(auth.set_cookie(&cookie).contains("; Secure"));
    }

    #[test]
    fn the_sign_in_token_is_bound_to_this_browsers_nonce() {
        let auth = auth();
        let nonce = Auth::new_login_nonce();
        let token = auth.login_token(&nonce);
        let header = format!("{LOGIN_COOKIE}={nonce}");
        assert!(auth.login_csrf_matches(Some(&header), &token));
        assert!(!auth.login_csrf_matches(Some(&header), ""));
        assert!(!auth.login_csrf_matches(None, &token));
        let other = format!("{LOGIN_COOKIE}={}", Auth::new_login_nonce());
        assert!(!auth.login_csrf_matches(Some(&other), &token));
        // Another server (another secret) cannot mint a token for this nonce.
        let another_server = self::auth();
        assert!(!auth.login_csrf_matches(Some(&header), &another_server.login_token(&nonce)));
        assert!(Auth::login_nonce(Some(&format!("{LOGIN_COOKIE}=../x"))).is_none());
    }

    #[test]
    fn an_actions_outcome_is_shown_only_as_signed_for_its_session_salon_and_minutes() {
        use app::ops::{Flash, FlashQuery, OperatorView};
        let auth = auth();
        let session = OperatorView {
            name: "anna".into(),
            csrf: auth.sign("csrf", "nonce-1"),
        };
        let flash = Flash {
            done: Some("stop".into()),
            note: Some("session stopped".into()),
            error: None,
        };
        let at = 1_800_000_000;
        let query = FlashQuery {
            done: flash.done.clone(),
            note: flash.note.clone(),
            error: None,
            at: Some(at),
            sig: Some(auth.flash_signature(&session, 7, &flash, at)),
        };
        assert_eq!(
            auth.verified_flash(&session, 7, &query, at + 10),
            Some(flash.clone())
        );
        assert_eq!(
            auth.verified_flash(&session, 7, &query, at + FLASH_TTL_SECS),
            Some(flash)
        );
        // Too old, or from the future beyond a clock's skew.
        assert_eq!(
            auth.verified_flash(&session, 7, &query, at + FLASH_TTL_SECS + 1),
            None
        );
        assert_eq!(auth.verified_flash(&session, 7, &query, at - 60), None);
        // Another salon, another session of the same operator, another server.
        assert_eq!(auth.verified_flash(&session, 8, &query, at + 10), None);
        let another = OperatorView {
            name: "anna".into(),
            csrf: auth.sign("csrf", "nonce-2"),
        };
        assert_eq!(auth.verified_flash(&another, 7, &query, at + 10), None);
        assert_eq!(
            self::auth().verified_flash(&session, 7, &query, at + 10),
            None
        );
        // Any word changed, moved from note to error, or dropped.
        for changed in [
            FlashQuery {
                note: Some("session started".into()),
                ..query.clone()
            },
            FlashQuery {
                done: Some("logout".into()),
                ..query.clone()
            },
            FlashQuery {
                note: None,
                error: query.note.clone(),
                ..query.clone()
            },
            FlashQuery {
                note: None,
                ..query.clone()
            },
            FlashQuery {
                at: Some(at + 1),
                ..query.clone()
            },
            FlashQuery {
                sig: None,
                ..query.clone()
            },
            FlashQuery {
                sig: Some(String::new()),
                ..query.clone()
            },
        ] {
            assert_eq!(
                auth.verified_flash(&session, 7, &changed, at + 10),
                None,
                "{changed:?}"
            );
        }
    }
}
