//! Every string the pages show, one table per language. Russian is the default; English comes
//! from `Accept-Language`, `?lang=en`, or the switch on the page.

use leptos::prelude::{Get, RwSignal};
use serde::{Deserialize, Serialize};

/// One of the page's texts in its current language, following the language switch:
/// `{tr(locale, |s| s.retry)}` in a view. Every text made this way is the **same** closure type
/// (the one below), so the view code that renders, hydrates and updates a reactive text is
/// compiled once for all of them; a `move || s().retry` at each place was a type of its own, with
/// its own copy of that code in the WASM (docs/design.md, "A lighter page").
pub fn tr(
    locale: RwSignal<Locale>,
    pick: fn(&'static Strings) -> &'static str,
) -> impl Fn() -> &'static str + Copy + Send + Sync + 'static {
    move || pick(locale.get().strings())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Locale {
    #[default]
    Ru,
    En,
}

impl Locale {
    pub fn code(self) -> &'static str {
        match self {
            Locale::Ru => "ru",
            Locale::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code.trim().to_ascii_lowercase().get(..2) {
            Some("ru") => Some(Locale::Ru),
            Some("en") => Some(Locale::En),
            _ => None,
        }
    }

    /// The first supported language in an `Accept-Language` header, by the order given
    /// (q-values in real headers are written in descending order).
    pub fn from_accept_language(header: &str) -> Self {
        header
            .split(',')
            .filter_map(|part| Locale::from_code(part.split(';').next().unwrap_or_default()))
            .next()
            .unwrap_or_default()
    }

    pub fn other(self) -> Self {
        match self {
            Locale::Ru => Locale::En,
            Locale::En => Locale::Ru,
        }
    }

    pub fn strings(self) -> &'static Strings {
        match self {
            Locale::Ru => &RU,
            Locale::En => &EN,
        }
    }
}

pub struct Strings {
    pub app_title: &'static str,
    pub switch_language: &'static str,
    pub home_heading: &'static str,
    pub home_intro: &'static str,
    pub home_demo_link: &'static str,
    pub home_health_link: &'static str,
    pub step_whatsapp: &'static str,
    pub step_activation: &'static str,
    pub step_done: &'static str,
    pub salon: &'static str,
    pub loading: &'static str,
    pub qr_heading: &'static str,
    pub qr_alt: &'static str,
    pub qr_instructions: [&'static str; 4],
    pub qr_valid_for: &'static str,
    pub seconds_short: &'static str,
    pub qr_waiting: &'static str,
    pub qr_expired: &'static str,
    pub new_qr: &'static str,
    pub use_phone_number: &'static str,
    pub use_qr: &'static str,
    pub phone_label: &'static str,
    pub phone_hint: &'static str,
    pub get_code: &'static str,
    pub pairing_heading: &'static str,
    pub pairing_valid_for: &'static str,
    pub pairing_steps_iphone: [&'static str; 4],
    pub pairing_steps_android: [&'static str; 4],
    pub iphone: &'static str,
    pub android: &'static str,
    pub pairing_expired: &'static str,
    pub linked_as: &'static str,
    pub linked_other_number: &'static str,
    pub logged_out: &'static str,
    pub activation_waiting: &'static str,
    pub activating: &'static str,
    pub activation_attempts: &'static str,
    pub activate: &'static str,
    pub retry_activation: &'static str,
    pub active_heading: &'static str,
    pub active_text: &'static str,
    pub activation_failed: &'static str,
    pub activation_failed_next: &'static str,
    pub frozen: &'static str,
    pub uninstalled: &'static str,
    pub connection_lost: &'static str,
    pub retry: &'static str,
    pub live_channel: &'static str,
    pub live_polling: &'static str,
    pub error_prefix: &'static str,
    /// `{input}` is replaced by what was typed.
    bad_salon_id: &'static str,
    bad_phone: &'static str,
    bad_masked_phone: &'static str,
    pub already_linked: &'static str,
    /// Followed by WhatsApp's own reason.
    pub pair_code_not_issued: &'static str,
    pub whatsapp_session_stopped: &'static str,
    link_invalid: &'static str,
    /// `{secs}` is replaced by the seconds to wait.
    too_many_requests: &'static str,
    /// Followed by the server's reason.
    unavailable: &'static str,
    /// Followed by the transport's reason.
    no_connection: &'static str,
    /// The server's details behind a 409 or a 503 (server functions).
    pub paused_in_yclients: &'static str,
    pub database_unavailable: &'static str,
    pub activation_not_configured: &'static str,
    pub activation_not_started: &'static str,
    pub link_check_unavailable: &'static str,
    pub whatsapp_disconnected_heading: &'static str,
    pub whatsapp_disconnected_text: &'static str,
    pub replaced_heading: &'static str,
    pub replaced_text: &'static str,
    pub take_back: &'static str,
    pub banned_heading: &'static str,
    pub banned_until: &'static str,
    pub banned_no_expiry: &'static str,
    pub ban_active: &'static str,
    pub failed_heading: &'static str,
    pub failed_text: &'static str,
    pub retry_now: &'static str,
    pub number_change: &'static str,
    pub number_change_question: &'static str,
    pub number_change_confirm: &'static str,
    pub number_change_reject: &'static str,
    pub no_number_change: &'static str,
    pub manage_heading: &'static str,
    pub disconnect: &'static str,
    pub disconnect_question: &'static str,
    pub disconnect_yes: &'static str,
    pub cancel: &'static str,
    pub test_heading: &'static str,
    pub test_phone_label: &'static str,
    pub test_phone_hint: &'static str,
    pub send_test: &'static str,
    pub test_sent_to: &'static str,
    pub status_sent: &'static str,
    pub status_delivered: &'static str,
    pub status_read: &'static str,
    pub test_message_text: &'static str,
    pub no_admin_phone: &'static str,
    pub test_to_opted_out: &'static str,
    /// `{n}`: the test messages a salon may send in 24 hours.
    pub test_daily_cap: &'static str,
    pub not_linked_for_test: &'static str,
    pub test_not_sent: &'static str,
    pub marketplace_card: &'static str,
}

pub static RU: Strings = Strings {
    app_title: "AI Admin — подключение WhatsApp",
    switch_language: "English",
    home_heading: "AI Admin для YClients",
    home_intro: "WhatsApp-администратор для салонов красоты. Подключение начинается в маркетплейсе YClients: кнопка «Подключить» на карточке приложения.",
    home_demo_link: "Открыть демо-маркетплейс и подключить салон",
    home_health_link: "Состояние сервиса",
    step_whatsapp: "WhatsApp",
    step_activation: "Активация",
    step_done: "Готово",
    salon: "Салон",
    loading: "Загрузка…",
    qr_heading: "Отсканируйте QR-код в WhatsApp",
    qr_alt: "QR-код для привязки WhatsApp",
    qr_instructions: [
        "Откройте WhatsApp на телефоне салона.",
        "iPhone: Настройки → Связанные устройства. Android: ⋮ → Связанные устройства.",
        "Нажмите «Привязка устройства».",
        "Наведите камеру на этот код.",
    ],
    qr_valid_for: "Код действует ещё",
    seconds_short: "с",
    qr_waiting: "Готовим QR-код…",
    qr_expired: "Срок действия QR-кодов истёк.",
    new_qr: "Показать новый QR-код",
    use_phone_number: "Привязать по номеру телефона",
    use_qr: "Привязать по QR-коду",
    phone_label: "Номер WhatsApp салона",
    phone_hint: "В международном формате, например +7 999 000-99-00",
    get_code: "Получить код",
    pairing_heading: "Введите этот код на телефоне",
    pairing_valid_for: "Код действует ещё",
    pairing_steps_iphone: [
        "Откройте WhatsApp → Настройки → Связанные устройства.",
        "Нажмите «Привязка устройства».",
        "Выберите «Привязать по номеру телефона».",
        "Введите код с этой страницы.",
    ],
    pairing_steps_android: [
        "Откройте WhatsApp → ⋮ (Другие опции) → Связанные устройства.",
        "Нажмите «Привязка устройства».",
        "Выберите «Привязать по номеру телефона».",
        "Введите код с этой страницы.",
    ],
    iphone: "iPhone",
    android: "Android",
    pairing_expired: "Код истёк — запросите новый.",
    linked_as: "WhatsApp подключён:",
    linked_other_number: "Подключён номер, отличный от номера салона в YClients:",
    logged_out: "WhatsApp отвязан на телефоне. Покажите новый QR-код, чтобы подключить снова.",
    activation_waiting: "Активация начнётся сразу после подключения WhatsApp.",
    activating: "Активируем интеграцию в YClients…",
    activation_attempts: "Попыток связи с YClients:",
    activate: "Активировать",
    retry_activation: "Повторить активацию",
    active_heading: "Интеграция активна",
    active_text: "AI Admin подключён к YClients. Эту вкладку можно закрыть.",
    activation_failed: "YClients не подтвердил активацию:",
    activation_failed_next: "Откройте приложение в маркетплейсе YClients и нажмите «Подключить» ещё раз. Если ошибка повторяется, напишите нам в поддержку.",
    frozen: "Приложение AI Admin приостановлено в YClients: оплаченный период закончился. WhatsApp и данные сохранены — бот заработает сам, как только подписка будет продлена в маркетплейсе.",
    uninstalled: "Приложение удалено из YClients. Чтобы подключить снова, откройте его в маркетплейсе.",
    connection_lost: "Связь с сервером потеряна.",
    retry: "Повторить",
    live_channel: "Обновления в реальном времени",
    live_polling: "Обновления каждую секунду",
    error_prefix: "Ошибка:",
    bad_salon_id: "идентификатор филиала должен быть положительным целым числом, получено «{input}»",
    bad_phone: "номер телефона должен содержать от 10 до 15 цифр в международном формате, получено «{input}»",
    bad_masked_phone: "ожидался скрытый номер вида «+7 999 ***-**-22», получено «{input}»",
    already_linked: "WhatsApp уже подключён",
    pair_code_not_issued: "WhatsApp не выдал код:",
    whatsapp_session_stopped: "сессия WhatsApp остановлена",
    link_invalid: "Ссылка устарела или недействительна. Откройте приложение в маркетплейсе YClients ещё раз.",
    too_many_requests: "Слишком много запросов. Попробуйте через {secs} с.",
    unavailable: "Сервис временно недоступен:",
    no_connection: "Нет связи с сервером:",
    paused_in_yclients: "Приложение AI Admin приостановлено в YClients (закончился оплаченный период). Продлите его в маркетплейсе YClients и нажмите «Подключить» ещё раз.",
    database_unavailable: "база данных недоступна",
    activation_not_configured: "активация не настроена на сервере",
    activation_not_started: "не удалось начать активацию, попробуйте ещё раз",
    link_check_unavailable: "проверка ссылки временно недоступна",
    whatsapp_disconnected_heading: "WhatsApp отключён",
    whatsapp_disconnected_text: "Телефон салона отвязал AI Admin, и бот не может отвечать клиентам. Отсканируйте новый QR-код или получите код привязки — интеграция в YClients остаётся активной, подключать приложение заново не нужно.",
    replaced_heading: "WhatsApp открыт в другом месте",
    replaced_text: "WhatsApp Web был открыт в другом месте с этой учётной записью, и бот остановился, чтобы не спорить с ним за соединение. Подключите его снова здесь — другое окно WhatsApp Web закроется.",
    take_back: "Подключить снова здесь",
    banned_heading: "WhatsApp временно заблокировал номер",
    banned_until: "Бот возобновит работу сам, когда блокировка закончится, через",
    banned_no_expiry: "WhatsApp не сообщил срок блокировки; бот попробует подключиться снова через час.",
    ban_active: "WhatsApp ещё блокирует номер; бот возобновит работу сам, когда блокировка закончится.",
    failed_heading: "Не удаётся подключиться к WhatsApp",
    failed_text: "Мы продолжаем попытки сами. Следующая попытка через",
    retry_now: "Повторить сейчас",
    number_change: "WhatsApp подключён с другим номером. Раньше был",
    number_change_question: "Бот будет писать клиентам с нового номера. Использовать его?",
    number_change_confirm: "Использовать новый номер",
    number_change_reject: "Отключить этот номер",
    no_number_change: "Нет нового номера, который нужно подтвердить.",
    manage_heading: "WhatsApp салона",
    disconnect: "Отключить WhatsApp",
    disconnect_question: "Отключить WhatsApp? Устройство AI Admin пропадёт из «Связанных устройств» на телефоне, и бот перестанет отвечать клиентам, пока вы не подключите его снова.",
    disconnect_yes: "Да, отключить",
    cancel: "Отмена",
    test_heading: "Тестовое сообщение",
    test_phone_label: "Номер получателя",
    test_phone_hint: "Оставьте пустым, чтобы отправить на ваш номер из YClients.",
    send_test: "Отправить тестовое сообщение",
    test_sent_to: "Сообщение на",
    status_sent: "отправлено",
    status_delivered: "доставлено",
    status_read: "прочитано",
    test_message_text: "Тестовое сообщение AI Admin: WhatsApp салона «{salon}» подключён и отправляет сообщения клиентам.",
    no_admin_phone: "Укажите номер получателя: в данных YClients нет вашего телефона.",
    test_to_opted_out: "Этот номер отписался от сообщений салона (написал «СТОП»): салон ему больше не пишет.",
    test_daily_cap: "За последние сутки отправлено {n} тестовых сообщений — больше нельзя, чтобы WhatsApp не счёл номер салона рассыльщиком. Попробуйте завтра.",
    not_linked_for_test: "WhatsApp не подключён — сообщение отправить нельзя.",
    test_not_sent: "Сообщение не отправлено:",
    marketplace_card: "Открыть AI Admin в маркетплейсе YClients",
};

pub static EN: Strings = Strings {
    app_title: "AI Admin — connect WhatsApp",
    switch_language: "Русский",
    home_heading: "AI Admin for YClients",
    home_intro: "A WhatsApp administrator for beauty salons. Connecting starts in the YClients marketplace: the \"Connect\" button on the app card.",
    home_demo_link: "Open the demo marketplace and connect a salon",
    home_health_link: "Service health",
    step_whatsapp: "WhatsApp",
    step_activation: "Activation",
    step_done: "Done",
    salon: "Salon",
    loading: "Loading…",
    qr_heading: "Scan the QR code with WhatsApp",
    qr_alt: "QR code to link WhatsApp",
    qr_instructions: [
        "Open WhatsApp on the salon's phone.",
        "iPhone: Settings → Linked devices. Android: ⋮ → Linked devices.",
        "Tap \"Link a device\".",
        "Point the camera at this code.",
    ],
    qr_valid_for: "Code valid for",
    seconds_short: "s",
    qr_waiting: "Preparing the QR code…",
    qr_expired: "The QR codes have expired.",
    new_qr: "Show a new QR code",
    use_phone_number: "Link with a phone number",
    use_qr: "Link with a QR code",
    phone_label: "The salon's WhatsApp number",
    phone_hint: "International format, e.g. +7 999 000-99-00",
    get_code: "Get code",
    pairing_heading: "Enter this code on the phone",
    pairing_valid_for: "Code valid for",
    pairing_steps_iphone: [
        "Open WhatsApp → Settings → Linked devices.",
        "Tap \"Link a device\".",
        "Choose \"Link with phone number instead\".",
        "Enter the code from this page.",
    ],
    pairing_steps_android: [
        "Open WhatsApp → ⋮ (More options) → Linked devices.",
        "Tap \"Link a device\".",
        "Choose \"Link with phone number instead\".",
        "Enter the code from this page.",
    ],
    iphone: "iPhone",
    android: "Android",
    pairing_expired: "The code has expired: request a new one.",
    linked_as: "WhatsApp linked:",
    linked_other_number: "The linked number differs from the salon's number in YClients:",
    logged_out: "WhatsApp was unlinked on the phone. Show a new QR code to link again.",
    activation_waiting: "Activation starts as soon as WhatsApp is linked.",
    activating: "Activating the integration in YClients…",
    activation_attempts: "Attempts to reach YClients:",
    activate: "Activate",
    retry_activation: "Retry activation",
    active_heading: "The integration is active",
    active_text: "AI Admin is connected to YClients. You can close this tab.",
    activation_failed: "YClients did not confirm the activation:",
    activation_failed_next: "Open the app in the YClients marketplace and press \"Connect\" again. If it fails again, contact our support.",
    frozen: "AI Admin is paused in YClients: the paid period is over. WhatsApp and your data are kept — the bot resumes by itself as soon as the subscription is renewed in the marketplace.",
    uninstalled: "The app was removed in YClients. To connect again, open it in the marketplace.",
    connection_lost: "Lost the connection to the server.",
    retry: "Retry",
    live_channel: "Live updates",
    live_polling: "Updating every second",
    error_prefix: "Error:",
    bad_salon_id: "a branch id must be a positive whole number, got «{input}»",
    bad_phone: "a phone number must have 10 to 15 digits in international format, got «{input}»",
    bad_masked_phone: "expected a masked number like «+7 999 ***-**-22», got «{input}»",
    already_linked: "WhatsApp is already linked",
    pair_code_not_issued: "WhatsApp did not issue a code:",
    whatsapp_session_stopped: "the WhatsApp session is stopped",
    link_invalid: "The link has expired or is not valid. Open the app in the YClients marketplace again.",
    too_many_requests: "Too many requests. Try again in {secs} s.",
    unavailable: "The service is temporarily unavailable:",
    no_connection: "No connection to the server:",
    paused_in_yclients: "AI Admin is paused in YClients (the paid period is over). Renew it in the YClients marketplace and press «Подключить» again.",
    database_unavailable: "the database is not answering",
    activation_not_configured: "activation is not configured on the server",
    activation_not_started: "the activation could not start, please try again",
    link_check_unavailable: "the link cannot be checked right now",
    whatsapp_disconnected_heading: "WhatsApp is disconnected",
    whatsapp_disconnected_text: "The salon's phone unlinked AI Admin, so the bot cannot answer clients. Scan the new QR code or get a pairing code — the YClients integration stays active, there is no need to connect the app again.",
    replaced_heading: "WhatsApp was opened elsewhere",
    replaced_text: "WhatsApp Web was opened elsewhere with this account, and the bot stopped so as not to fight it for the connection. Link it again here — the other WhatsApp Web window will close.",
    take_back: "Link again here",
    banned_heading: "WhatsApp has temporarily banned the number",
    banned_until: "The bot resumes by itself when the ban ends, in",
    banned_no_expiry: "WhatsApp did not say how long the ban lasts; the bot will try again in an hour.",
    ban_active: "WhatsApp is still banning the number; the bot resumes by itself when the ban ends.",
    failed_heading: "Cannot connect to WhatsApp",
    failed_text: "We keep retrying by ourselves. Next attempt in",
    retry_now: "Retry now",
    number_change: "WhatsApp was linked with a different number. Before it was",
    number_change_question: "The bot will write to clients from the new number. Use it?",
    number_change_confirm: "Use the new number",
    number_change_reject: "Disconnect this number",
    no_number_change: "There is no new number to confirm.",
    manage_heading: "The salon's WhatsApp",
    disconnect: "Disconnect WhatsApp",
    disconnect_question: "Disconnect WhatsApp? The AI Admin device disappears from the phone's “Linked devices”, and the bot stops answering clients until you link it again.",
    disconnect_yes: "Yes, disconnect",
    cancel: "Cancel",
    test_heading: "Test message",
    test_phone_label: "Recipient's number",
    test_phone_hint: "Leave empty to send it to your own number from YClients.",
    send_test: "Send a test message",
    test_sent_to: "Message to",
    status_sent: "sent",
    status_delivered: "delivered",
    status_read: "read",
    test_message_text: "AI Admin test message: the WhatsApp of “{salon}” is linked and sends messages to clients.",
    no_admin_phone: "Enter the recipient's number: YClients did not pass your phone.",
    test_to_opted_out: "This number opted out of the salon's messages (it wrote «СТОП»): the salon no longer writes to it.",
    test_daily_cap: "{n} test messages were sent in the last 24 hours, the most allowed, so that WhatsApp does not take the salon's number for a spammer. Try again tomorrow.",
    not_linked_for_test: "WhatsApp is not linked — the message cannot be sent.",
    test_not_sent: "The message was not sent:",
    marketplace_card: "Open AI Admin in the YClients marketplace",
};

impl Strings {
    /// A rejected value, in words for the person who typed it.
    pub fn domain_error(&self, error: &crate::domain::DomainError) -> String {
        use crate::domain::DomainError;
        let (template, input) = match error {
            DomainError::BadSalonId(input) => (self.bad_salon_id, input),
            DomainError::BadPhone(input) => (self.bad_phone, input),
            DomainError::BadMaskedPhone(input) => (self.bad_masked_phone, input),
        };
        template.replace("{input}", input)
    }

    /// How far a message got, in words.
    pub fn delivery(&self, status: crate::status::DeliveryStatus) -> &'static str {
        use crate::status::DeliveryStatus;
        match status {
            DeliveryStatus::Sent => self.status_sent,
            DeliveryStatus::Delivered => self.status_delivered,
            DeliveryStatus::Read => self.status_read,
        }
    }

    /// A server function's error, in words for the admin (the detail is the server's own).
    pub fn app_error(&self, error: &crate::api::AppError) -> String {
        use crate::api::AppError;
        match error {
            AppError::Unauthorized => self.link_invalid.to_owned(),
            AppError::BadRequest(detail) | AppError::Conflict(detail) => detail.clone(),
            AppError::TooManyRequests { retry_after_secs } => self
                .too_many_requests
                .replace("{secs}", &retry_after_secs.to_string()),
            AppError::Unavailable(detail) => format!("{} {detail}", self.unavailable),
            AppError::Transport(detail) => format!("{} {detail}", self.no_connection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_function_errors_are_worded_in_the_pages_language() {
        use crate::api::AppError;
        let wait = AppError::TooManyRequests {
            retry_after_secs: 7,
        };
        assert_eq!(
            RU.app_error(&wait),
            "Слишком много запросов. Попробуйте через 7 с."
        );
        assert_eq!(EN.app_error(&wait), "Too many requests. Try again in 7 s.");
        assert!(EN
            .app_error(&AppError::Unauthorized)
            .starts_with("The link has expired"));
        assert_eq!(
            EN.app_error(&AppError::Conflict("paused".into())),
            "paused",
            "the server's own detail"
        );
    }

    #[test]
    fn accept_language_picks_the_first_supported_language() {
        assert_eq!(
            Locale::from_accept_language("en-US,en;q=0.9,ru;q=0.8"),
            Locale::En
        );
        assert_eq!(Locale::from_accept_language("de-DE,ru;q=0.5"), Locale::Ru);
        assert_eq!(Locale::from_accept_language("fr"), Locale::Ru);
        assert_eq!(Locale::from_accept_language(""), Locale::Ru);
    }

    #[test]
    fn domain_errors_read_in_the_page_language() {
        let error = crate::domain::PhoneNumber::parse("12ab").expect_err("not a phone");
        assert!(RU.domain_error(&error).contains("номер телефона"));
        assert!(RU.domain_error(&error).contains("«12ab»"));
        assert!(EN.domain_error(&error).contains("phone number"));
    }
}
