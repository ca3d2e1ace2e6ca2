//! The simulated phone (`/dev/phone`): where the simulator's QR codes lead. A person (or a test)
//! enters the phone number to link, types a pair code, or unlinks the device, as on a real phone.
//! These routes exist only when the simulator is the backend.

use super::error::ErrorPage;
use crate::linking::simulator::{PhoneError, Simulator};
use app::domain::{PhoneNumber, SalonId};
use app::i18n::RU;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use serde::Deserialize;

pub fn routes<S: Clone + Send + Sync + 'static>(simulator: Simulator) -> Router<S> {
    Router::new()
        .route("/dev/phone", get(phone_page))
        .route("/dev/phone/scan", post(scan))
        .route("/dev/phone/pair", post(enter_pair_code))
        .route("/dev/phone/unlink", post(unlink))
        .route("/dev/phone/drop", post(drop_connection))
        .with_state(simulator)
}

#[derive(Deserialize)]
struct PhoneQuery {
    salon: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="/pkg/ai-admin-connect.css"></head>
<body><main class="page phone"><section class="card"><p class="eyebrow">Симулятор телефона WhatsApp</p><h1>{title}</h1>{body}</section></main></body></html>"#,
        title = text(title)
    ))
}

async fn phone_page(Query(query): Query<PhoneQuery>) -> Html<String> {
    let reference = query.reference.unwrap_or_default();
    let salon = query.salon.unwrap_or_default();
    let scan = if reference.is_empty() {
        String::new()
    } else {
        format!(
            r#"<form method="post" action="/dev/phone/scan" class="phone-form">
<input type="hidden" name="reference" value="{reference}">
<label for="phone">Номер WhatsApp этого телефона</label>
<input id="phone" name="phone" type="tel" value="79990009900" data-testid="sim-phone-number" required>
<button type="submit" data-testid="sim-link">Привязать устройство</button></form>"#,
            reference = attr(&reference)
        )
    };
    page(
        "Связанные устройства",
        &format!(
            r#"<p>Этот экран изображает телефон, который отсканировал QR-код AI Admin.</p>{scan}
<h2>Привязка по номеру телефона</h2>
<form method="post" action="/dev/phone/pair" class="phone-form">
<label for="code">Код привязки с экрана подключения</label>
<input id="code" name="code" data-testid="sim-pair-code" autocomplete="off" required>
<button type="submit" data-testid="sim-enter-code">Подтвердить</button></form>
<h2>Отвязать устройство</h2>
<form method="post" action="/dev/phone/unlink" class="phone-form">
<label for="salon">ID филиала</label><input id="salon" name="salon" value="{salon}" data-testid="sim-unlink-salon" required>
<button type="submit" class="secondary" data-testid="sim-unlink">Выйти на этом устройстве</button></form>"#,
            salon = attr(&salon)
        ),
    )
}

fn phone_error(error: PhoneError) -> Response {
    let status = match error {
        PhoneError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    ErrorPage::new(status, "Телефон не привязан", error.to_string()).into_response()
}

fn linked_page(salon: SalonId, phone: &str) -> Response {
    page(
        "Устройство привязано",
        &format!(
            r#"<p data-testid="sim-linked">AI Admin привязан к WhatsApp {phone} (филиал {salon}). Вернитесь на страницу подключения.</p>"#,
            phone = text(phone)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct ScanForm {
    reference: String,
    phone: String,
}

async fn scan(State(simulator): State<Simulator>, Form(form): Form<ScanForm>) -> Response {
    let phone = match PhoneNumber::parse(&form.phone) {
        Ok(phone) => phone,
        Err(e) => {
            return ErrorPage::new(
                StatusCode::BAD_REQUEST,
                "Неверный номер",
                RU.domain_error(&e),
            )
            .into_response()
        }
    };
    match simulator.scan(&form.reference, phone.clone()).await {
        Ok(salon) => linked_page(salon, &phone.display()),
        Err(e) => phone_error(e),
    }
}

#[derive(Deserialize)]
struct PairForm {
    code: String,
}

async fn enter_pair_code(
    State(simulator): State<Simulator>,
    Form(form): Form<PairForm>,
) -> Response {
    match simulator.enter_pair_code(&form.code).await {
        Ok(salon) => linked_page(salon, "по коду"),
        Err(e) => phone_error(e),
    }
}

#[derive(Deserialize)]
struct SalonForm {
    salon: String,
}

async fn unlink(State(simulator): State<Simulator>, Form(form): Form<SalonForm>) -> Response {
    let salon = match SalonId::parse(&form.salon) {
        Ok(salon) => salon,
        Err(e) => {
            return ErrorPage::new(
                StatusCode::BAD_REQUEST,
                "Неверный филиал",
                RU.domain_error(&e),
            )
            .into_response()
        }
    };
    match simulator.unlink_from_phone(salon).await {
        Ok(()) => page(
            "Устройство отвязано",
            "<p data-testid=\"sim-unlinked\">AI Admin больше не привязан к этому WhatsApp.</p>",
        )
        .into_response(),
        Err(e) => phone_error(e),
    }
}

async fn drop_connection(
    State(simulator): State<Simulator>,
    Form(form): Form<SalonForm>,
) -> Response {
    match SalonId::parse(&form.salon) {
        Ok(salon) if simulator.drop_connection(salon) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => (StatusCode::NOT_FOUND, "no open connection for this salon").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
