//! The YClients sandbox: a separate axum router that speaks the documented marketplace API over
//! HTTP (`shared/yclients-api.md`), with state and fault knobs, and plays the marketplace for
//! people (a "Подключить" button that signs `user_data` and sends the browser to our redirect, in
//! a new tab or inside an iframe from its own origin). The real client is tested against it.
//!
//! It signs with, and accepts, only partner tokens that start with [`SANDBOX_TOKEN_PREFIX`]
//! (`sandbox-`): a real YClients partner token is refused by [`Sandbox::new`].
//!
//! - `lib.rs`: configuration, state and the knobs tests turn ([`Sandbox`]), the router;
//! - `api.rs`: the marketplace API as a partner app calls it, and the fault injection;
//! - `marketplace.rs`: the pages a person uses (the app card's "Подключить", lifecycle buttons).

mod api;
mod marketplace;

use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use yclients::signature::sign;
pub use yclients::{is_sandbox_token, SANDBOX_TOKEN_PREFIX};

/// The partner token the standalone sandbox and README command 1 use when none is given.
pub const DEFAULT_PARTNER_TOKEN: &str = "sandbox-partner-token";

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Must start with [`SANDBOX_TOKEN_PREFIX`].
    pub partner_token: String,
    pub application_id: i64,
    /// Our app's public URL (where "Подключить" sends the browser, where lifecycle webhooks go).
    pub app_url: String,
    /// How long a `pending` link may wait for the activation callback.
    pub pending_window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    ServerError,
    HtmlRedirect,
    /// `200 text/html`: a proxy's error page, or a login page, where YClients' JSON should be.
    HtmlOk,
    /// `200` with YClients' envelope saying `success: false`.
    SuccessFalse,
    Timeout,
    RateLimited,
    AlreadyInstalled,
    Validation,
    Unauthorized,
    AggregatorNotFound,
    /// YClients does what was asked, but its answer never reaches the caller (a `504` from a
    /// proxy in between): the callback is accepted while the app hears a transient failure.
    AnswerLost,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRequest {
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub count: u32,
    /// Only calls whose path contains this are affected (all calls if absent).
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkLog {
    pub status_from: String,
    pub status_to: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub api_key: Option<String>,
    pub webhook_urls: Vec<String>,
    pub logs: Vec<LinkLog>,
}

/// One call to the partner callback, as received.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedCallback {
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    pub answered: u16,
}

#[derive(Debug, Default)]
struct Data {
    salons: BTreeMap<i64, Value>,
    links: BTreeMap<i64, Link>,
    callbacks: Vec<ReceivedCallback>,
    faults: VecDeque<FaultRequest>,
    app_url: String,
    /// Every request's method and path, in order (what a test counts YClients calls by).
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct Sandbox {
    config: Arc<SandboxConfig>,
    data: Arc<Mutex<Data>>,
}

pub const DEMO_SALONS: [(i64, &str, &str); 4] = [
    (962302, "Салон красоты «Орхидея»", "79990001122"),
    (962303, "Барбершоп «Север»", "79990003344"),
    (962310, "Сеть «Лотос» — Центр", "79990005566"),
    (962311, "Сеть «Лотос» — Юг", "79990007788"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the sandbox's partner token must start with «sandbox-»: the sandbox never signs with, or \
         accepts, a real YClients partner token"
    )]
    NotASandboxToken,
}

impl Sandbox {
    /// Refuses a partner token without the [`SANDBOX_TOKEN_PREFIX`].
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        if !is_sandbox_token(&config.partner_token) {
            return Err(SandboxError::NotASandboxToken);
        }
        let data = Data {
            app_url: config.app_url.clone(),
            ..Data::default()
        };
        let sandbox = Self {
            config: Arc::new(config),
            data: Arc::new(Mutex::new(data)),
        };
        for (id, title, phone) in DEMO_SALONS {
            sandbox.add_salon(id, title, Some(phone));
        }
        Ok(sandbox)
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        // A poisoned lock only means a handler panicked mid-update; the sandbox's data stays usable.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add_salon(&self, id: i64, title: &str, phone: Option<&str>) {
        let mut company = json!({
            "id": id, "title": title, "city": "Москва", "address": "ул. Примерная, 1",
            "timezone_name": "Europe/Moscow",
        });
        if let Some(phone) = phone {
            company["phone"] = json!(phone);
        }
        self.data().salons.insert(id, company);
    }

    /// Sets the company's `timezone_name`, as a salon elsewhere than Moscow has it.
    pub fn set_timezone(&self, id: i64, timezone: &str) {
        if let Some(company) = self.data().salons.get_mut(&id) {
            company["timezone_name"] = json!(timezone);
        }
    }

    /// What the admin's "Подключить" does first: grant access, the link is `pending`.
    pub fn create_pending_link(&self, salon_id: i64) {
        let mut data = self.data();
        let previous = data.links.get(&salon_id).map(|l| l.status.clone());
        let now = chrono::Utc::now();
        let mut logs = data
            .links
            .get(&salon_id)
            .map(|l| l.logs.clone())
            .unwrap_or_default();
        logs.push(LinkLog {
            status_from: previous.unwrap_or_else(|| "none".into()),
            status_to: "pending".into(),
            at: now,
        });
        data.links.insert(
            salon_id,
            Link {
                status: "pending".into(),
                created_at: now,
                api_key: None,
                webhook_urls: vec![],
                logs,
            },
        );
    }

    /// Where "Подключить" sends the browser and lifecycle webhooks go (known once the app listens).
    pub fn set_app_url(&self, url: &str) {
        self.data().app_url = url.trim_end_matches('/').to_owned();
    }

    fn app_url(&self) -> String {
        self.data().app_url.clone()
    }

    /// Sets a link's status as YClients would see it (`active` after a confirmation we never
    /// heard back about, `freezed`, …).
    pub fn set_link_status(&self, salon_id: i64, status: &str) {
        if let Some(link) = self.data().links.get_mut(&salon_id) {
            link.logs.push(LinkLog {
                status_from: link.status.clone(),
                status_to: status.into(),
                at: chrono::Utc::now(),
            });
            link.status = status.into();
        }
    }

    /// What YClients does to the installation before it posts a lifecycle `event` about it:
    /// `uninstall` removes it (the status then answers 404), `freeze` freezes it; anything else
    /// changes nothing.
    pub fn lifecycle_event_happened(&self, salon_id: i64, event: &str) {
        match event {
            "uninstall" => {
                self.data().links.remove(&salon_id);
            }
            "freeze" => self.set_link_status(salon_id, "freezed"),
            _ => {}
        }
    }

    pub fn link(&self, salon_id: i64) -> Option<Link> {
        self.data().links.get(&salon_id).cloned()
    }

    pub fn callbacks(&self) -> Vec<ReceivedCallback> {
        self.data().callbacks.clone()
    }

    pub fn inject_fault(&self, fault: FaultRequest) {
        let mut data = self.data();
        for _ in 0..fault.count {
            data.faults.push_back(FaultRequest {
                count: 1,
                ..fault.clone()
            });
        }
    }

    pub fn clear_faults(&self) {
        self.data().faults.clear();
    }

    /// The signed `user_data` a real YClients would add to the redirect.
    pub fn signed_user_data(&self, salon_title: &str) -> (String, String) {
        let user = json!({
            "id": 100500, "name": "Андрей Иванов", "phone": "79990009900",
            "email": "andrey@example.com", "is_approved": true, "avatar": null,
            "salon_name": salon_title,
        });
        let bytes = user.to_string().into_bytes();
        (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            sign(&self.config.partner_token, &bytes),
        )
    }

    /// Our redirect URL for these branches, as YClients builds it (indexed `salon_ids[n]` for
    /// several, `salon_id` for one).
    pub fn redirect_url(&self, salon_ids: &[i64]) -> String {
        let title = salon_ids
            .first()
            .and_then(|id| {
                self.data()
                    .salons
                    .get(id)
                    .and_then(|s| s["title"].as_str().map(str::to_owned))
            })
            .unwrap_or_default();
        let (user_data, signature) = self.signed_user_data(&title);
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let [only] = salon_ids {
            query.append_pair("salon_id", &only.to_string());
        } else {
            for (i, id) in salon_ids.iter().enumerate() {
                query.append_pair(&format!("salon_ids[{i}]"), &id.to_string());
            }
        }
        query.append_pair("user_data", &user_data);
        query.append_pair("user_data_sign", &signature);
        format!(
            "{}/auth/yclients/redirect?{}",
            self.app_url(),
            query.finish()
        )
    }

    fn take_fault(&self, path: &str) -> Option<FaultRequest> {
        let mut data = self.data();
        let position = data
            .faults
            .iter()
            .position(|f| f.path_contains.as_deref().is_none_or(|p| path.contains(p)))?;
        data.faults.remove(position)
    }

    /// How many requests so far had a path containing `path_contains`.
    pub fn requests(&self, path_contains: &str) -> usize {
        self.data()
            .requests
            .iter()
            .filter(|r| r.contains(path_contains))
            .count()
    }

    pub fn router(&self) -> Router {
        let recorder = self.clone();
        Router::new()
            .route("/", get(marketplace::marketplace_page))
            .route("/connect", get(marketplace::connect))
            .route(
                "/lifecycle/{salon_id}/{event}",
                post(marketplace::send_lifecycle_event),
            )
            .route("/api/v1/company/{id}/", get(api::company))
            .route("/api/v1/company/{id}", get(api::company))
            .route("/marketplace/partner/callback", post(api::partner_callback))
            .route(
                "/marketplace/partner/callback/redirect",
                post(api::callback_redirect),
            )
            .route(
                "/marketplace/salon/{salon_id}/application/{application_id}",
                get(api::installation_status),
            )
            .route(
                "/marketplace/salon/{salon_id}/application/{application_id}/uninstall",
                post(api::uninstall),
            )
            .route(
                "/marketplace/application/{application_id}/salons",
                get(api::salons_with_app),
            )
            .route(
                "/sandbox/faults",
                post(api::add_fault).delete(api::clear_faults),
            )
            .route("/sandbox/callbacks", get(api::list_callbacks))
            .route(
                "/sandbox/links/{salon_id}",
                get(api::get_link).post(api::post_pending_link),
            )
            .route("/sandbox/links/{salon_id}/renew", post(api::renew_link))
            .layer(axum::middleware::map_request(
                move |request: axum::extract::Request| {
                    let recorder = recorder.clone();
                    async move {
                        let line = format!("{} {}", request.method(), request.uri().path());
                        recorder.data().requests.push(line);
                        request
                    }
                },
            ))
            .with_state(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(partner_token: &str) -> SandboxConfig {
        SandboxConfig {
            partner_token: partner_token.to_owned(),
            application_id: 1001,
            app_url: "http://127.0.0.1:3000".to_owned(),
            pending_window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn only_sandbox_tokens_are_accepted() {
        assert!(Sandbox::new(config(DEFAULT_PARTNER_TOKEN)).is_ok());
        assert!(Sandbox::new(config("sandbox-e2e")).is_ok());
        for token in [
            "",
            "sandbox-",
            "sandbox-  ",
            "partner-token",
            "Sandbox-x",
            "x-sandbox-y",
        ] {
            assert_eq!(
                Sandbox::new(config(token)).err(),
                Some(SandboxError::NotASandboxToken),
                "{token:?}"
            );
        }
        assert!(SandboxError::NotASandboxToken
            .to_string()
            .contains(SANDBOX_TOKEN_PREFIX));
    }

    #[test]
    fn the_redirect_is_signed_with_the_sandbox_token() {
        let sandbox = Sandbox::new(config("sandbox-t")).expect("sandbox token");
        let (user_data, signature) = sandbox.signed_user_data("Салон");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(user_data)
            .expect("base64");
        assert_eq!(
            yclients::signature::verify("sandbox-t", &bytes, &signature),
            Ok(())
        );
    }
}
