//! The YClients sandbox: a separate axum router that speaks the documented marketplace API over
//! HTTP (`shared/yclients-api.md`), with state and fault knobs, and plays the marketplace for
//! people (a "Подключить" button that signs `user_data` and sends the browser to our redirect, in
//! a new tab or inside an iframe from its own origin). The real client is tested against it.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SandboxConfig {
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
    Timeout,
    RateLimited,
    AlreadyInstalled,
    Validation,
    Unauthorized,
    AggregatorNotFound,
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

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
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
        sandbox
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

    /// Makes a pending link look older (tests of YClients' one-hour window).
    pub fn age_link(&self, salon_id: i64, by: Duration) {
        if let Some(link) = self.data().links.get_mut(&salon_id) {
            link.created_at -= chrono::Duration::from_std(by).unwrap_or_default();
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

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(marketplace_page))
            .route("/connect", get(connect))
            .route("/lifecycle/{salon_id}/{event}", post(send_lifecycle_event))
            .route("/api/v1/company/{id}/", get(company))
            .route("/api/v1/company/{id}", get(company))
            .route("/marketplace/partner/callback", post(partner_callback))
            .route(
                "/marketplace/partner/callback/redirect",
                post(callback_redirect),
            )
            .route(
                "/marketplace/salon/{salon_id}/application/{application_id}",
                get(installation_status),
            )
            .route(
                "/marketplace/salon/{salon_id}/application/{application_id}/uninstall",
                post(uninstall),
            )
            .route(
                "/marketplace/application/{application_id}/salons",
                get(salons_with_app),
            )
            .route("/sandbox/faults", post(add_fault).delete(clear_faults))
            .route("/sandbox/callbacks", get(list_callbacks))
            .route(
                "/sandbox/links/{salon_id}",
                get(get_link).post(post_pending_link),
            )
            .with_state(self.clone())
    }
}

/// `hex(HMAC_SHA256(key = partner token, message = decoded user_data JSON bytes))`.
pub fn sign(partner_token: &str, message: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty signature would never verify.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(partner_token.as_bytes()) else {
        return String::new();
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn envelope_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "data": null, "meta": {"message": message}})),
    )
        .into_response()
}

async fn fault_response(fault: FaultRequest) -> Response {
    match fault.kind {
        FaultKind::ServerError => envelope_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        FaultKind::HtmlRedirect => (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, "https://yclients.com/"), (header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            "<!DOCTYPE html><html><head><meta http-equiv=\"refresh\" content=\"0;url=https://yclients.com/\"></head><body>Redirecting</body></html>",
        )
            .into_response(),
        FaultKind::Timeout => {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms.unwrap_or(15_000))).await;
            envelope_error(StatusCode::GATEWAY_TIMEOUT, "timeout")
        }
        FaultKind::RateLimited => envelope_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        FaultKind::AlreadyInstalled => envelope_error(StatusCode::FORBIDDEN, crate::yclients::client::ALREADY_INSTALLED),
        FaultKind::Validation => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"success": false, "data": null, "meta": {"message": "Ошибка валидации", "errors": {"api_key": ["Неверный формат"]}}})),
        )
            .into_response(),
        FaultKind::Unauthorized => envelope_error(StatusCode::UNAUTHORIZED, "Неверный партнерский токен"),
        FaultKind::AggregatorNotFound => envelope_error(StatusCode::BAD_REQUEST, "Агрегатор не найден"),
    }
}

fn authorized(sandbox: &Sandbox, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", sandbox.config.partner_token);
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected || v.starts_with(&format!("{expected}, User ")))
}

async fn company(
    State(sandbox): State<Sandbox>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Some(fault) = sandbox.take_fault("/api/v1/company") {
        return fault_response(fault).await;
    }
    if !authorized(&sandbox, &headers) {
        return envelope_error(StatusCode::UNAUTHORIZED, "Необходима авторизация");
    }
    match sandbox.data().salons.get(&id).cloned() {
        Some(company) => {
            Json(json!({"success": true, "data": company, "meta": []})).into_response()
        }
        None => envelope_error(StatusCode::NOT_FOUND, "Компания не найдена"),
    }
}

async fn partner_callback(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let response = if let Some(fault) = sandbox.take_fault("/marketplace/partner/callback") {
        fault_response(fault).await
    } else {
        callback_outcome(&sandbox, &headers, &parsed)
    };
    sandbox.data().callbacks.push(ReceivedCallback {
        authorization: header_text(header::AUTHORIZATION),
        accept: header_text(header::ACCEPT),
        content_type: header_text(header::CONTENT_TYPE),
        body: parsed,
        answered: response.status().as_u16(),
    });
    response
}

fn callback_outcome(sandbox: &Sandbox, headers: &HeaderMap, body: &Value) -> Response {
    if !authorized(sandbox, headers) {
        return envelope_error(StatusCode::UNAUTHORIZED, "Неверный партнерский токен");
    }
    let (Some(salon_id), Some(application_id), Some(api_key)) = (
        body["salon_id"].as_i64(),
        body["application_id"].as_i64(),
        body["api_key"].as_str(),
    ) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"success": false, "data": null, "meta": {"message": "Ошибка валидации",
                "errors": {"salon_id": ["required integer"], "application_id": ["required integer"], "api_key": ["required string"]}}})),
        )
            .into_response();
    };
    if application_id != sandbox.config.application_id {
        return envelope_error(StatusCode::BAD_REQUEST, "Агрегатор не найден");
    }
    let window = chrono::Duration::from_std(sandbox.config.pending_window).unwrap_or_default();
    let mut data = sandbox.data();
    let Some(link) = data.links.get_mut(&salon_id) else {
        return envelope_error(StatusCode::FORBIDDEN, "Приложение не подключено к филиалу");
    };
    match link.status.as_str() {
        "active" => envelope_error(
            StatusCode::FORBIDDEN,
            crate::yclients::client::ALREADY_INSTALLED,
        ),
        "pending" if chrono::Utc::now() - link.created_at > window => envelope_error(
            StatusCode::FORBIDDEN,
            "Время ожидания подключения истекло, подключите приложение заново",
        ),
        _ => {
            link.logs.push(LinkLog {
                status_from: link.status.clone(),
                status_to: "active".into(),
                at: chrono::Utc::now(),
            });
            link.status = "active".into();
            link.api_key = Some(api_key.to_owned());
            link.webhook_urls = body["webhook_urls"]
                .as_array()
                .map(|urls| {
                    urls.iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (
                StatusCode::CREATED,
                Json(json!({"success": true, "data": null, "meta": []})),
            )
                .into_response()
        }
    }
}

async fn callback_redirect() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [
            (header::LOCATION, "https://yclients.com/"),
            (header::CONTENT_TYPE, "text/html; charset=UTF-8"),
        ],
        "<html><body>Redirecting to YClients…</body></html>",
    )
        .into_response()
}

async fn installation_status(
    State(sandbox): State<Sandbox>,
    Path((salon_id, application_id)): Path<(i64, i64)>,
    headers: HeaderMap,
) -> Response {
    if let Some(fault) = sandbox.take_fault("/marketplace/salon") {
        return fault_response(fault).await;
    }
    if !authorized(&sandbox, &headers) {
        return envelope_error(StatusCode::UNAUTHORIZED, "Неверный партнерский токен");
    }
    if application_id != sandbox.config.application_id {
        return envelope_error(StatusCode::NOT_FOUND, "Приложение не найдено");
    }
    match sandbox.link(salon_id) {
        Some(link) => Json(json!({"success": true, "data": {
            "salon_id": salon_id, "application_id": application_id,
            "connection_status": {"status": link.status}, "logs": link.logs,
        }, "meta": []}))
        .into_response(),
        None => envelope_error(StatusCode::NOT_FOUND, "Приложение не установлено"),
    }
}

async fn uninstall(
    State(sandbox): State<Sandbox>,
    Path((salon_id, _application_id)): Path<(i64, i64)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&sandbox, &headers) {
        return envelope_error(StatusCode::UNAUTHORIZED, "Неверный партнерский токен");
    }
    match sandbox.data().links.remove(&salon_id) {
        Some(_) => Json(json!({"success": true, "data": null, "meta": []})).into_response(),
        None => envelope_error(StatusCode::NOT_FOUND, "Приложение не установлено"),
    }
}

async fn salons_with_app(
    State(sandbox): State<Sandbox>,
    Path(_application_id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&sandbox, &headers) {
        return envelope_error(StatusCode::UNAUTHORIZED, "Неверный партнерский токен");
    }
    let data = sandbox.data();
    let salons: Vec<Value> = data
        .links
        .iter()
        .filter(|(_, link)| link.status == "active")
        .filter_map(|(id, _)| data.salons.get(id).cloned())
        .collect();
    Json(json!({"success": true, "data": salons, "meta": {"count": salons.len()}})).into_response()
}

async fn add_fault(State(sandbox): State<Sandbox>, Json(fault): Json<FaultRequest>) -> StatusCode {
    sandbox.inject_fault(fault);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sandbox): State<Sandbox>) -> StatusCode {
    sandbox.clear_faults();
    StatusCode::NO_CONTENT
}

async fn list_callbacks(State(sandbox): State<Sandbox>) -> Json<Vec<ReceivedCallback>> {
    Json(sandbox.callbacks())
}

async fn get_link(State(sandbox): State<Sandbox>, Path(salon_id): Path<i64>) -> Response {
    match sandbox.link(salon_id) {
        Some(link) => Json(link).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn post_pending_link(
    State(sandbox): State<Sandbox>,
    Path(salon_id): Path<i64>,
) -> StatusCode {
    sandbox.create_pending_link(salon_id);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ConnectQuery {
    /// One id, or several separated by commas (an app allowed in several branches).
    ids: String,
    #[serde(default)]
    mode: Option<String>,
}

/// "Подключить": grant access (the link becomes `pending`), then open our redirect URL.
async fn connect(State(sandbox): State<Sandbox>, Query(query): Query<ConnectQuery>) -> Response {
    let ids: Vec<i64> = query
        .ids
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if ids.is_empty() {
        return (StatusCode::BAD_REQUEST, "ids: one or more salon ids").into_response();
    }
    for id in &ids {
        sandbox.create_pending_link(*id);
    }
    let url = sandbox.redirect_url(&ids);
    if query.mode.as_deref() == Some("iframe") {
        let src = html_escape::encode_double_quoted_attribute(&url);
        return Html(format!(
            r#"<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8"><title>YClients — Настройки приложения</title>
<style>body{{font-family:sans-serif;margin:0;background:#f3f4f6}}header{{background:#1f2937;color:#fff;padding:12px 20px}}
iframe{{border:0;width:100%;height:calc(100vh - 60px);background:#fff}}</style></head>
<body><header>YClients (песочница) · Маркетплейс · AI Admin · Настройки</header>
<iframe id="app-frame" title="AI Admin" src="{src}"></iframe></body></html>"#
        ))
        .into_response();
    }
    Redirect::to(&url).into_response()
}

/// Sends a lifecycle webhook (`uninstall`, `freeze`) to our app, as YClients would.
async fn send_lifecycle_event(
    State(sandbox): State<Sandbox>,
    Path((salon_id, event)): Path<(i64, String)>,
) -> Response {
    if event == "uninstall" {
        sandbox.data().links.remove(&salon_id);
    } else if let Some(link) = sandbox.data().links.get_mut(&salon_id) {
        link.status = "freezed".into();
    }
    let body = json!({"salon_id": salon_id, "application_id": sandbox.config.application_id,
        "event": event, "partner_token": sandbox.config.partner_token});
    let url = format!("{}/webhook/yclients", sandbox.app_url());
    match reqwest::Client::new()
        .post(&url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(response) => Redirect::to(&format!(
            "/?sent={event}&answer={}",
            response.status().as_u16()
        ))
        .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("could not reach {url}: {e}"),
        )
            .into_response(),
    }
}

async fn marketplace_page(State(sandbox): State<Sandbox>) -> Html<String> {
    let data = sandbox.data();
    let rows: String = data
        .salons
        .iter()
        .map(|(id, salon)| {
            let title = html_escape::encode_text(salon["title"].as_str().unwrap_or_default()).into_owned();
            let status = data.links.get(id).map(|l| l.status.as_str()).unwrap_or("не подключено");
            format!(
                r#"<tr data-salon="{id}"><td>{title}</td><td>{id}</td><td data-testid="link-status-{id}">{status}</td><td>
<a class="btn" data-testid="connect-{id}" href="/connect?ids={id}" target="_blank" rel="opener">Подключить</a>
<a class="btn" data-testid="connect-iframe-{id}" href="/connect?ids={id}&amp;mode=iframe">Подключить (вкладка «Настройки», iframe)</a>
<form method="post" action="/lifecycle/{id}/freeze"><button>Заморозить</button></form>
<form method="post" action="/lifecycle/{id}/uninstall"><button>Удалить приложение</button></form></td></tr>"#
            )
        })
        .collect();
    Html(format!(
        r#"<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8"><title>Маркетплейс YClients (песочница)</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem}}td,th{{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}}
.btn{{display:inline-block;margin:.2rem;padding:.35rem .7rem;background:#16a34a;color:#fff;border-radius:4px;text-decoration:none}}form{{display:inline}}</style></head>
<body><h1>Маркетплейс YClients — песочница</h1>
<p>Это не YClients: песочница играет его роль для демо и тестов. «Подключить» выдаёт доступ (связь <code>pending</code>),
подписывает данные пользователя партнёрским токеном и открывает страницу регистрации AI Admin.</p>
<table><tr><th>Филиал</th><th>ID</th><th>Статус связи</th><th></th></tr>{rows}</table>
<p><a class="btn" data-testid="connect-network" href="/connect?ids=962310,962311" target="_blank" rel="opener">Подключить сеть «Лотос» (2 филиала)</a></p>
</body></html>"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_over_the_decoded_json_bytes() {
        // The documented example: HMAC-SHA256 over the JSON, hex, lowercase.
        let signature = sign("partner", br#"{"id":1}"#);
        assert_eq!(signature.len(), 64);
        assert!(signature
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(signature, sign("partner", b"eyJpZCI6MX0="));
    }
}
