//! The simulated phone (`/dev/phone`): where the simulator's QR codes lead. A person (or a test)
//! enters the phone number to link, types a pair code, unlinks the device, or reads the messages
//! a salon sent to a number, as on a real phone; and plays WhatsApp's server: a dropped
//! connection, the session taken over by WhatsApp Web elsewhere, a temporary ban, a silent
//! socket. These routes exist only when the simulator is the backend.

use super::error::ErrorPage;
use super::route_table::Routes;
use crate::linking::remote::{Answer, PhoneCall};
use crate::linking::simulator::{PhoneError, ReceivedText, Simulator};
use crate::linking::Linking;
use app::domain::{PhoneNumber, SalonId};
use app::i18n::RU;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use serde::Deserialize;

/// The phone's actions reach the simulator holding what they act on: this instance's, or the
/// one of the instance running the salon's session (`Linking::phone`).
#[derive(Clone)]
pub struct Phone {
    simulator: Simulator,
    linking: Linking,
}

impl Phone {
    async fn act(&self, action: PhoneCall) -> Result<Option<SalonId>, PhoneError> {
        match self.linking.phone(&self.simulator, action).await {
            Answer::Phone(result) => result,
            _ => Err(PhoneError::NoConnection),
        }
    }

    async fn done(&self, action: PhoneCall) -> Result<(), PhoneError> {
        self.act(action).await.map(|_| ())
    }

    async fn linked(&self, action: PhoneCall) -> Result<SalonId, PhoneError> {
        self.act(action).await?.ok_or(PhoneError::NoConnection)
    }

    async fn inbox(&self, phone: PhoneNumber) -> Vec<ReceivedText> {
        match self
            .linking
            .phone(&self.simulator, PhoneCall::Inbox { phone })
            .await
        {
            Answer::Inbox(texts) => texts,
            _ => Vec::new(),
        }
    }
}

pub fn routes<S: Clone + Send + Sync + 'static>(
    simulator: Simulator,
    linking: Linking,
) -> Routes<S> {
    Routes::new()
        .get("/dev/phone", phone_page)
        .post("/dev/phone/scan", scan)
        .post("/dev/phone/pair", enter_pair_code)
        .post("/dev/phone/unlink", unlink)
        .post("/dev/phone/drop", drop_connection)
        .post("/dev/phone/replace", replace_elsewhere)
        .post("/dev/phone/ban", ban)
        .post("/dev/phone/silence", silence)
        .get("/dev/phone/messages", messages)
        .post("/dev/phone/reply", reply)
        .with_state(Phone { simulator, linking })
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
<button type="submit" class="secondary" data-testid="sim-unlink">Выйти на этом устройстве</button></form>
<h2>Сообщения</h2>
<form method="get" action="/dev/phone/messages" class="phone-form">
<label for="inbox">Номер телефона-получателя</label>
<input id="inbox" name="phone" type="tel" value="79990009900" data-testid="sim-inbox-number" required>
<button type="submit" class="secondary" data-testid="sim-open-inbox">Открыть сообщения</button></form>
<h2>Сервер WhatsApp</h2>
<p>Что может случиться с соединением филиала {salon_text}:</p>
<form method="post" action="/dev/phone/drop" class="phone-form"><input type="hidden" name="salon" value="{salon}">
<button type="submit" class="secondary" data-testid="sim-drop">Оборвать соединение</button></form>
<form method="post" action="/dev/phone/replace" class="phone-form"><input type="hidden" name="salon" value="{salon}">
<button type="submit" class="secondary" data-testid="sim-replace">Открыть WhatsApp Web в другом месте</button></form>
<form method="post" action="/dev/phone/ban" class="phone-form"><input type="hidden" name="salon" value="{salon}">
<label for="ban-secs">Временная блокировка, секунд</label><input id="ban-secs" name="seconds" type="number" min="1" value="60">
<button type="submit" class="secondary" data-testid="sim-ban">Заблокировать</button></form>
<form method="post" action="/dev/phone/silence" class="phone-form"><input type="hidden" name="salon" value="{salon}">
<button type="submit" class="secondary" data-testid="sim-silence">Заглушить соединение (перестаёт отвечать)</button></form>"#,
            salon = attr(&salon),
            salon_text = text(&salon)
        ),
    )
}

#[derive(Deserialize)]
struct InboxQuery {
    phone: Option<String>,
}

/// The messages a number received from salons (opening them sends read receipts).
async fn messages(State(state): State<Phone>, Query(query): Query<InboxQuery>) -> Response {
    let raw = query.phone.unwrap_or_default();
    let phone = match phone_from(&raw) {
        Ok(phone) => phone,
        Err(page) => return page.into_response(),
    };
    let texts = state.inbox(phone.clone()).await;
    let list = if texts.is_empty() {
        r#"<p data-testid="sim-no-messages">Сообщений пока нет.</p>"#.to_owned()
    } else {
        let items: String = texts
            .iter()
            .rev()
            .map(|t| {
                format!(
                    r#"<li data-testid="sim-message" data-message-id="{id}"><p class="muted">{at} · от {from} (филиал {salon})</p><p>{body}</p></li>"#,
                    id = attr(&t.message_id),
                    at = t.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    from = t.from.as_ref().map(|p| p.display()).unwrap_or_else(|| "—".into()),
                    salon = t.salon,
                    body = text(&t.text),
                )
            })
            .collect();
        let mut salons: Vec<SalonId> = texts.iter().map(|t| t.salon).collect();
        salons.dedup();
        let replies: String = salons
            .iter()
            .map(|salon| {
                format!(
                    r#"<form method="post" action="/dev/phone/reply" class="phone-form"><input type="hidden" name="salon" value="{salon}"><input type="hidden" name="phone" value="{phone}">
<label for="reply-{salon}">Ответить филиалу {salon}</label><input id="reply-{salon}" name="text" data-testid="sim-reply-text" required>
<button type="submit" class="secondary" data-testid="sim-reply">Отправить</button></form>"#,
                    phone = attr(phone.as_str())
                )
            })
            .collect();
        format!(r#"<ul class="messages">{items}</ul>{replies}"#)
    };
    page(
        &format!("Сообщения на {}", phone.display()),
        &format!(
            r#"{list}<p><a href="/dev/phone/messages?phone={phone}" data-testid="sim-refresh-inbox">Обновить</a></p>"#,
            phone = attr(phone.as_str())
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct ReplyForm {
    salon: String,
    phone: String,
    text: String,
}

/// The phone writes to a salon's WhatsApp (a client's answer, «СТОП» for instance).
async fn reply(State(state): State<Phone>, Form(form): Form<ReplyForm>) -> Response {
    let salon = match salon_from(&SalonForm {
        salon: form.salon.clone(),
    }) {
        Ok(salon) => salon,
        Err(page) => return page.into_response(),
    };
    let phone = match phone_from(&form.phone) {
        Ok(phone) => phone,
        Err(page) => return page.into_response(),
    };
    if form.text.trim().is_empty() || form.text.chars().count() > 4096 {
        return ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "Пустое сообщение",
            "Напишите текст от 1 до 4096 символов.",
        )
        .into_response();
    }
    server_action(
        state
            .done(PhoneCall::Reply {
                salon,
                from: phone,
                text: form.text,
            })
            .await,
        "Сообщение отправлено филиалу.",
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

async fn scan(State(state): State<Phone>, Form(form): Form<ScanForm>) -> Response {
    let phone = match phone_from(&form.phone) {
        Ok(phone) => phone,
        Err(page) => return page.into_response(),
    };
    let scanned = state
        .linked(PhoneCall::Scan {
            reference: form.reference,
            phone: phone.clone(),
        })
        .await;
    match scanned {
        Ok(salon) => linked_page(salon, &phone.display()),
        Err(e) => phone_error(e),
    }
}

#[derive(Deserialize)]
struct PairForm {
    code: String,
}

async fn enter_pair_code(State(phone): State<Phone>, Form(form): Form<PairForm>) -> Response {
    match phone.linked(PhoneCall::PairCode { code: form.code }).await {
        Ok(salon) => linked_page(salon, "по коду"),
        Err(e) => phone_error(e),
    }
}

#[derive(Deserialize)]
struct SalonForm {
    salon: String,
}

async fn unlink(State(phone): State<Phone>, Form(form): Form<SalonForm>) -> Response {
    let salon = match salon_from(&form) {
        Ok(salon) => salon,
        Err(page) => return page.into_response(),
    };
    match phone.done(PhoneCall::Unlink { salon }).await {
        Ok(()) => page(
            "Устройство отвязано",
            "<p data-testid=\"sim-unlinked\">AI Admin больше не привязан к этому WhatsApp.</p>",
        )
        .into_response(),
        Err(e) => phone_error(e),
    }
}

fn phone_from(raw: &str) -> Result<PhoneNumber, Box<ErrorPage>> {
    PhoneNumber::parse(raw).map_err(|e| {
        Box::new(ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "Неверный номер",
            RU.domain_error(&e),
        ))
    })
}

fn salon_from(form: &SalonForm) -> Result<SalonId, Box<ErrorPage>> {
    SalonId::parse(&form.salon).map_err(|e| {
        Box::new(ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "Неверный филиал",
            RU.domain_error(&e),
        ))
    })
}

fn server_action(result: Result<(), PhoneError>, done: &str) -> Response {
    match result {
        Ok(()) => page(
            "Готово",
            &format!(r#"<p data-testid="sim-done">{}</p>"#, text(done)),
        )
        .into_response(),
        Err(PhoneError::NoConnection) => ErrorPage::new(
            StatusCode::NOT_FOUND,
            "Нет соединения",
            PhoneError::NoConnection.to_string(),
        )
        .into_response(),
        Err(e) => phone_error(e),
    }
}

async fn replace_elsewhere(State(phone): State<Phone>, Form(form): Form<SalonForm>) -> Response {
    match salon_from(&form) {
        Ok(salon) => server_action(
            phone.done(PhoneCall::Replace { salon }).await,
            "WhatsApp Web открыт в другом месте: соединение AI Admin закрыто сервером.",
        ),
        Err(page) => page.into_response(),
    }
}

#[derive(Deserialize)]
struct BanForm {
    salon: String,
    /// Empty: WhatsApp gives no expiry.
    #[serde(default)]
    seconds: String,
}

async fn ban(State(phone): State<Phone>, Form(form): Form<BanForm>) -> Response {
    let salon = match salon_from(&SalonForm {
        salon: form.salon.clone(),
    }) {
        Ok(salon) => salon,
        Err(page) => return page.into_response(),
    };
    let expires_in = match form.seconds.trim() {
        "" => None,
        raw => match raw.parse::<u64>() {
            Ok(secs) if (1..=30 * 86_400).contains(&secs) => {
                Some(std::time::Duration::from_secs(secs))
            }
            _ => {
                return ErrorPage::new(
                    StatusCode::BAD_REQUEST,
                    "Неверный срок",
                    format!("Срок блокировки — целое число секунд от 1 до 2592000, а не «{raw}»."),
                )
                .into_response()
            }
        },
    };
    server_action(
        phone
            .done(PhoneCall::Ban {
                salon,
                expires_in_ms: expires_in.map(|d| d.as_millis() as u64),
            })
            .await,
        "WhatsApp временно заблокировал номер: соединение закрыто.",
    )
}

async fn silence(State(phone): State<Phone>, Form(form): Form<SalonForm>) -> Response {
    match salon_from(&form) {
        Ok(salon) => server_action(
            phone.done(PhoneCall::Silence { salon }).await,
            "Соединение заглушено: оно открыто, но больше ничего не отвечает.",
        ),
        Err(page) => page.into_response(),
    }
}

async fn drop_connection(State(phone): State<Phone>, Form(form): Form<SalonForm>) -> Response {
    let salon = match SalonId::parse(&form.salon) {
        Ok(salon) => salon,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match phone.done(PhoneCall::Drop { salon }).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no open connection for this salon").into_response(),
    }
}
