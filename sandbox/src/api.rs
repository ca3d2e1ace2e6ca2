//! The marketplace API as a partner app calls it (Bearer partner token, YClients' JSON envelope),
//! the partner callback's log, and the fault knobs.

use crate::{FaultKind, FaultRequest, LinkLog, ReceivedCallback, Sandbox};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;
use yclients::ALREADY_INSTALLED;

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
        FaultKind::HtmlOk => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>",
        )
            .into_response(),
        FaultKind::SuccessFalse => (
            StatusCode::OK,
            Json(json!({"success": false, "data": null, "meta": {"message": "Не удалось обработать запрос"}})),
        )
            .into_response(),
        FaultKind::Timeout => {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms.unwrap_or(15_000))).await;
            envelope_error(StatusCode::GATEWAY_TIMEOUT, "timeout")
        }
        FaultKind::RateLimited => envelope_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        FaultKind::AlreadyInstalled => envelope_error(StatusCode::FORBIDDEN, ALREADY_INSTALLED),
        FaultKind::Validation => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"success": false, "data": null, "meta": {"message": "Ошибка валидации", "errors": {"api_key": ["Неверный формат"]}}})),
        )
            .into_response(),
        FaultKind::Unauthorized => envelope_error(StatusCode::UNAUTHORIZED, "Неверный партнерский токен"),
        FaultKind::AggregatorNotFound => envelope_error(StatusCode::BAD_REQUEST, "Агрегатор не найден"),
        FaultKind::AnswerLost => envelope_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
    }
}

fn authorized(sandbox: &Sandbox, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", sandbox.config.partner_token);
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected || v.starts_with(&format!("{expected}, User ")))
}

pub(crate) async fn company(
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

pub(crate) async fn partner_callback(
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
    let response = match sandbox.take_fault("/marketplace/partner/callback") {
        Some(fault) if fault.kind == FaultKind::AnswerLost => {
            // Done, and the answer lost on its way back.
            callback_outcome(&sandbox, &headers, &parsed);
            fault_response(fault).await
        }
        Some(fault) => fault_response(fault).await,
        None => callback_outcome(&sandbox, &headers, &parsed),
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
        "active" => envelope_error(StatusCode::FORBIDDEN, ALREADY_INSTALLED),
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

pub(crate) async fn callback_redirect() -> Response {
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

pub(crate) async fn installation_status(
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

pub(crate) async fn uninstall(
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

pub(crate) async fn salons_with_app(
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

pub(crate) async fn add_fault(
    State(sandbox): State<Sandbox>,
    Json(fault): Json<FaultRequest>,
) -> StatusCode {
    sandbox.inject_fault(fault);
    StatusCode::NO_CONTENT
}

pub(crate) async fn clear_faults(State(sandbox): State<Sandbox>) -> StatusCode {
    sandbox.clear_faults();
    StatusCode::NO_CONTENT
}

pub(crate) async fn list_callbacks(State(sandbox): State<Sandbox>) -> Json<Vec<ReceivedCallback>> {
    Json(sandbox.callbacks())
}

pub(crate) async fn get_link(
    State(sandbox): State<Sandbox>,
    Path(salon_id): Path<i64>,
) -> Response {
    match sandbox.link(salon_id) {
        Some(link) => Json(link).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The salon paid again: a frozen installation is `active` once more (YClients sends no
/// webhook for it; the app finds out by asking).
pub(crate) async fn renew_link(
    State(sandbox): State<Sandbox>,
    Path(salon_id): Path<i64>,
) -> StatusCode {
    match sandbox.link(salon_id) {
        Some(_) => {
            sandbox.set_link_status(salon_id, "active");
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

pub(crate) async fn post_pending_link(
    State(sandbox): State<Sandbox>,
    Path(salon_id): Path<i64>,
) -> StatusCode {
    sandbox.create_pending_link(salon_id);
    StatusCode::NO_CONTENT
}
