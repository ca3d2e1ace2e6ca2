//! Booking messages: the per-salon settings (templates with placeholders, reminder offsets, quiet
//! hours, on/off), their validation and rendering, and what the admin's «Сообщения» section shows.
//! Shared by the server (validation on save, rendering at send time) and the page (preview).

use crate::domain::MaskedPhone;
use serde::{Deserialize, Serialize};

/// The placeholders a template may use, each as `{name}`.
pub const PLACEHOLDERS: &[&str] = &[
    "client_name",
    "date",
    "time",
    "services",
    "staff",
    "salon_title",
    "salon_address",
    "salon_phone",
];

/// At most this many reminders per booking.
pub const MAX_REMINDERS: usize = 3;
/// A reminder at most a week before the visit.
pub const MAX_OFFSET_MIN: u32 = 7 * 24 * 60;
/// A template's length in characters at most.
pub const MAX_TEMPLATE_CHARS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub enabled: bool,
    pub text: String,
}

impl Template {
    fn on(text: &str) -> Self {
        Self {
            enabled: true,
            text: text.to_owned(),
        }
    }
}

/// One salon's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSettings {
    /// The master switch: off, nothing is sent.
    pub enabled: bool,
    pub confirmation: Template,
    pub moved: Template,
    pub cancelled: Template,
    pub reminder: Template,
    /// Minutes before the visit, e.g. `[1440, 120]`.
    pub reminder_offsets_min: Vec<u32>,
    /// Quiet hours in the salon's timezone, minutes since midnight: from `quiet_start_min` to
    /// `quiet_end_min` (across midnight when start > end; none when equal).
    pub quiet_start_min: u32,
    pub quiet_end_min: u32,
}

impl Default for MessageSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            confirmation: Template::on(
                "{client_name}, вы записаны в {salon_title} на {date} в {time}. Услуги: {services}. Мастер: {staff}. Адрес: {salon_address}. Телефон: {salon_phone}.",
            ),
            moved: Template::on(
                "{client_name}, ваша запись в {salon_title} изменена: {date} в {time}. Услуги: {services}. Мастер: {staff}.",
            ),
            cancelled: Template::on(
                "{client_name}, ваша запись в {salon_title} на {date} в {time} отменена. Записаться снова: {salon_phone}.",
            ),
            reminder: Template::on(
                "{client_name}, напоминаем: {date} в {time} вас ждут в {salon_title} ({salon_address}). Мастер: {staff}.",
            ),
            reminder_offsets_min: vec![24 * 60, 2 * 60],
            quiet_start_min: 21 * 60,
            quiet_end_min: 9 * 60,
        }
    }
}

/// What is wrong with settings the admin tried to save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SettingsError {
    #[error("template {template}: unknown placeholder {{{name}}}")]
    UnknownPlaceholder { template: String, name: String },
    #[error("template {template}: an unclosed or stray brace")]
    Braces { template: String },
    #[error("template {template} is empty")]
    Empty { template: String },
    #[error("template {template} is longer than {MAX_TEMPLATE_CHARS} characters")]
    TooLong { template: String },
    #[error("reminder offsets: 1 to {MAX_REMINDERS} different values from 1 to {MAX_OFFSET_MIN} minutes")]
    Offsets,
    #[error("quiet hours must be times of day")]
    QuietHours,
}

/// The placeholders of `text`, or why it cannot be a template.
fn placeholders(text: &str) -> Result<Vec<&str>, ()> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(())?;
        let name = &after[..close];
        if name.contains('{') {
            return Err(());
        }
        found.push(name);
        rest = &after[close + 1..];
    }
    Ok(found)
}

/// Checks one template; `template` names it in the error.
pub fn validate_template(template: &str, text: &str) -> Result<(), SettingsError> {
    let named = || template.to_owned();
    if text.trim().is_empty() {
        return Err(SettingsError::Empty { template: named() });
    }
    if text.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(SettingsError::TooLong { template: named() });
    }
    let names = placeholders(text).map_err(|_| SettingsError::Braces { template: named() })?;
    match names.into_iter().find(|n| !PLACEHOLDERS.contains(n)) {
        Some(name) => Err(SettingsError::UnknownPlaceholder {
            template: named(),
            name: name.chars().take(40).collect(),
        }),
        None => Ok(()),
    }
}

impl MessageSettings {
    pub fn templates(&self) -> [(&'static str, &Template); 4] {
        [
            ("confirmation", &self.confirmation),
            ("moved", &self.moved),
            ("cancelled", &self.cancelled),
            ("reminder", &self.reminder),
        ]
    }

    pub fn template(&self, kind: &str) -> Option<&Template> {
        self.templates()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| t)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, template) in self.templates() {
            validate_template(name, &template.text)?;
        }
        let offsets = &self.reminder_offsets_min;
        let distinct = offsets
            .iter()
            .enumerate()
            .all(|(i, o)| !offsets[..i].contains(o));
        if offsets.is_empty()
            || offsets.len() > MAX_REMINDERS
            || !distinct
            || offsets.iter().any(|o| !(1..=MAX_OFFSET_MIN).contains(o))
        {
            return Err(SettingsError::Offsets);
        }
        if self.quiet_start_min >= 24 * 60 || self.quiet_end_min >= 24 * 60 {
            return Err(SettingsError::QuietHours);
        }
        Ok(())
    }

    /// Whether `minute` (since local midnight) falls in the quiet hours.
    pub fn is_quiet(&self, minute: u32) -> bool {
        let (start, end) = (self.quiet_start_min, self.quiet_end_min);
        match start.cmp(&end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => (start..end).contains(&minute),
            std::cmp::Ordering::Greater => minute >= start || minute < end,
        }
    }
}

/// The values a template's placeholders take for one booking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingFacts {
    pub client_name: String,
    pub date: String,
    pub time: String,
    pub services: String,
    pub staff: String,
    pub salon_title: String,
    pub salon_address: String,
    pub salon_phone: String,
}

impl BookingFacts {
    fn value(&self, name: &str) -> Option<&str> {
        Some(match name {
            "client_name" => &self.client_name,
            "date" => &self.date,
            "time" => &self.time,
            "services" => &self.services,
            "staff" => &self.staff,
            "salon_title" => &self.salon_title,
            "salon_address" => &self.salon_address,
            "salon_phone" => &self.salon_phone,
            _ => return None,
        })
    }

    /// The sample booking the page previews templates on.
    pub fn sample(salon_title: &str) -> Self {
        Self {
            client_name: "Мария".into(),
            date: "05.12.2026".into(),
            time: "14:30".into(),
            services: "Стрижка, укладка".into(),
            staff: "Анна".into(),
            salon_title: salon_title.into(),
            salon_address: "ул. Примерная, 1".into(),
            salon_phone: "+7 999 000-00-00".into(),
        }
    }
}

/// `text` with each known `{placeholder}` replaced (a validated template has no other braces).
pub fn render(text: &str, facts: &BookingFacts) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => match facts.value(&after[..close]) {
                Some(value) => {
                    out.push_str(value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            },
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// One message of the outbox as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    /// `confirmation`, `moved`, `cancelled`, `reminder`, `opt_out_ack`.
    pub kind: String,
    pub offset_min: u32,
    pub record_id: i64,
    pub to: Option<MaskedPhone>,
    /// `pending`, `sent`, `delivered`, `read`, `dropped`, `failed`.
    pub status: String,
    /// Why it waits or why it ended (a code the page words).
    pub reason: Option<String>,
    pub due_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The «Сообщения» section's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesView {
    pub settings: MessageSettings,
    pub recent: Vec<MessageRow>,
    pub opted_out: Vec<MaskedPhone>,
    pub salon_title: String,
    pub timezone: String,
}

/// The «Сообщения» section's words (kept apart from `i18n::Strings`: this section only).
pub struct MessageStrings {
    pub heading: &'static str,
    pub intro: &'static str,
    pub enabled: &'static str,
    pub template_on: &'static str,
    pub preview: &'static str,
    pub placeholders: &'static str,
    pub offsets: &'static str,
    pub offsets_hint: &'static str,
    pub quiet: &'static str,
    pub quiet_from: &'static str,
    pub quiet_to: &'static str,
    pub timezone: &'static str,
    pub save: &'static str,
    pub saved: &'static str,
    pub recent: &'static str,
    pub no_messages: &'static str,
    pub opted_out: &'static str,
    pub no_opt_outs: &'static str,
    pub refresh: &'static str,
    pub load_failed: &'static str,
    pub not_active: &'static str,
    pub bad_offsets_input: &'static str,
    pub bad_time_input: &'static str,
    kinds: [(&'static str, &'static str); 5],
    statuses: [(&'static str, &'static str); 6],
    reasons: [(&'static str, &'static str); 25],
    unknown_placeholder: &'static str,
    braces: &'static str,
    empty: &'static str,
    too_long: &'static str,
    bad_offsets: &'static str,
    bad_quiet: &'static str,
}

fn lookup(table: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// One of the «Сообщения» section's texts in the current language, following the switch: one
/// closure type for every text, as [`crate::i18n::tr`] is for the rest of the page.
pub fn tr_messages(
    locale: leptos::prelude::RwSignal<crate::i18n::Locale>,
    pick: fn(&'static MessageStrings) -> &'static str,
) -> impl Fn() -> &'static str + Copy + Send + Sync + 'static {
    use leptos::prelude::Get;
    move || pick(MessageStrings::of(locale.get()))
}

impl MessageStrings {
    pub fn of(locale: crate::i18n::Locale) -> &'static Self {
        match locale {
            crate::i18n::Locale::Ru => &MESSAGES_RU,
            crate::i18n::Locale::En => &MESSAGES_EN,
        }
    }

    /// A kind's name (`reminder` with its offset).
    pub fn kind(&self, kind: &str, offset_min: u32) -> String {
        let name = lookup(&self.kinds, kind).unwrap_or("—");
        if kind == "reminder" && offset_min > 0 {
            format!("{name} ({})", offset_label(offset_min))
        } else {
            name.to_owned()
        }
    }

    pub fn status(&self, status: &str) -> &'static str {
        lookup(&self.statuses, status).unwrap_or("—")
    }

    pub fn reason(&self, reason: &str) -> &'static str {
        lookup(&self.reasons, reason).unwrap_or("—")
    }

    pub fn settings_error(&self, error: &SettingsError) -> String {
        let template = |t: &str| self.kind(t, 0);
        match error {
            SettingsError::UnknownPlaceholder { template: t, name } => self
                .unknown_placeholder
                .replace("{template}", &template(t))
                .replace("{name}", name)
                .replace("{known}", &PLACEHOLDERS.join(", ")),
            SettingsError::Braces { template: t } => {
                self.braces.replace("{template}", &template(t))
            }
            SettingsError::Empty { template: t } => self.empty.replace("{template}", &template(t)),
            SettingsError::TooLong { template: t } => {
                self.too_long.replace("{template}", &template(t))
            }
            SettingsError::Offsets => self.bad_offsets.to_owned(),
            SettingsError::QuietHours => self.bad_quiet.to_owned(),
        }
    }
}

/// `1440` → `24 h`, `90` → `1 h 30 min` (units the same in both languages' digits).
pub fn offset_label(minutes: u32) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// `540` → `09:00`.
pub fn time_of_day(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `09:00` → `540`.
pub fn parse_time_of_day(raw: &str) -> Option<u32> {
    let (h, m) = raw.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `24, 2` (hours, fractions allowed as `1.5`) → minutes.
pub fn parse_offsets_hours(raw: &str) -> Option<Vec<u32>> {
    raw.split([',', ';', ' '])
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let hours: f64 = p.trim().replace(',', ".").parse().ok()?;
            (hours.is_finite() && hours > 0.0).then(|| (hours * 60.0).round() as u32)
        })
        .collect()
}

const KINDS_RU: [(&str, &str); 5] = [
    ("confirmation", "Подтверждение записи"),
    ("moved", "Перенос записи"),
    ("cancelled", "Отмена записи"),
    ("reminder", "Напоминание"),
    ("opt_out_ack", "Подтверждение отписки"),
];
const KINDS_EN: [(&str, &str); 5] = [
    ("confirmation", "Booking confirmation"),
    ("moved", "Booking moved"),
    ("cancelled", "Booking cancelled"),
    ("reminder", "Reminder"),
    ("opt_out_ack", "Opt-out acknowledgement"),
];

pub static MESSAGES_RU: MessageStrings = MessageStrings {
    heading: "Сообщения",
    intro: "Клиенты получают сообщения с WhatsApp салона: при записи, переносе, отмене и перед визитом.",
    enabled: "Отправлять сообщения клиентам",
    template_on: "Включено",
    preview: "Пример",
    placeholders: "Подстановки:",
    offsets: "Напоминания, за сколько часов до визита",
    offsets_hint: "Через запятую, например: 24, 2",
    quiet: "Тихие часы (сообщения ждут утра)",
    quiet_from: "с",
    quiet_to: "до",
    timezone: "Часовой пояс салона:",
    save: "Сохранить",
    saved: "Сохранено.",
    recent: "Последние сообщения",
    no_messages: "Сообщений пока нет.",
    opted_out: "Отписавшиеся номера",
    no_opt_outs: "Никто не отписался.",
    refresh: "Обновить",
    load_failed: "Раздел «Сообщения» не загрузился — проверьте связь и нажмите «Повторить».",
    not_active: "Сообщения доступны после активации интеграции.",
    bad_offsets_input: "Укажите часы через запятую, например: 24, 2.",
    bad_time_input: "Укажите время как ЧЧ:ММ, например 21:00.",
    kinds: KINDS_RU,
    statuses: [
        ("pending", "ждёт"),
        ("sent", "отправлено"),
        ("delivered", "доставлено"),
        ("read", "прочитано"),
        ("dropped", "не отправлено"),
        ("failed", "ошибка"),
    ],
    reasons: [
        ("quiet_hours", "тихие часы"),
        ("daily_cap", "дневной лимит"),
        ("pacing", "очередь отправки"),
        ("whatsapp_down", "WhatsApp не подключён"),
        ("salon_paused", "интеграция приостановлена"),
        ("number_unconfirmed", "ждёт подтверждения нового номера"),
        ("send_failed", "повторная попытка"),
        ("send_refused", "WhatsApp не принял сообщение"),
        ("no_phone", "у клиента нет телефона"),
        ("bad_phone", "телефон клиента не распознан"),
        ("visit_passed", "визит уже прошёл"),
        ("quiet_until_visit", "тихие часы до самого визита"),
        ("too_old", "устарело (больше суток)"),
        ("superseded", "запись изменилась"),
        ("booking_cancelled", "запись отменена"),
        ("opted_out", "клиент отписался"),
        ("template_off", "шаблон выключен"),
        ("messages_off", "сообщения выключены"),
        ("booking_restored", "отмену записи вернули"),
        ("offset_removed", "это напоминание выключено"),
        ("no_booking", "записи нет"),
        ("salon_uninstalled", "приложение удалено"),
        ("salon_handed_over", "интеграция передана другому администратору"),
        ("previous_in_flight", "ждёт, пока уйдёт предыдущее сообщение"),
        ("never_told", "клиенту о записи не сообщали"),
    ],
    unknown_placeholder: "Шаблон «{template}»: неизвестная подстановка {{name}}. Доступны: {known}.",
    braces: "Шаблон «{template}»: незакрытая или лишняя фигурная скобка.",
    empty: "Шаблон «{template}» пуст.",
    too_long: "Шаблон «{template}» длиннее 1000 символов.",
    bad_offsets: "Напоминаний от 1 до 3, разные, каждое — от 1 минуты до 7 суток до визита.",
    bad_quiet: "Тихие часы — время суток от 00:00 до 23:59.",
};

pub static MESSAGES_EN: MessageStrings = MessageStrings {
    heading: "Messages",
    intro: "Clients get messages from the salon's WhatsApp: when they book, when a booking moves or is cancelled, and before the visit.",
    enabled: "Send messages to clients",
    template_on: "On",
    preview: "Preview",
    placeholders: "Placeholders:",
    offsets: "Reminders, hours before the visit",
    offsets_hint: "Comma-separated, e.g. 24, 2",
    quiet: "Quiet hours (messages wait for the morning)",
    quiet_from: "from",
    quiet_to: "to",
    timezone: "Salon's timezone:",
    save: "Save",
    saved: "Saved.",
    recent: "Latest messages",
    no_messages: "No messages yet.",
    opted_out: "Opted-out numbers",
    no_opt_outs: "Nobody opted out.",
    refresh: "Refresh",
    load_failed: "The Messages section did not load; check the connection and press Retry.",
    not_active: "Messages are available once the integration is active.",
    bad_offsets_input: "Enter hours separated by commas, e.g. 24, 2.",
    bad_time_input: "Enter a time as HH:MM, e.g. 21:00.",
    kinds: KINDS_EN,
    statuses: [
        ("pending", "waiting"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("dropped", "not sent"),
        ("failed", "failed"),
    ],
    reasons: [
        ("quiet_hours", "quiet hours"),
        ("daily_cap", "daily cap"),
        ("pacing", "sending queue"),
        ("whatsapp_down", "WhatsApp not connected"),
        ("salon_paused", "integration paused"),
        ("number_unconfirmed", "waiting for the new number to be confirmed"),
        ("send_failed", "will retry"),
        ("send_refused", "WhatsApp refused the message"),
        ("no_phone", "the client has no phone"),
        ("bad_phone", "the client's phone is not usable"),
        ("visit_passed", "the visit has passed"),
        ("quiet_until_visit", "quiet hours last until the visit"),
        ("too_old", "expired (over a day old)"),
        ("superseded", "the booking changed"),
        ("booking_cancelled", "the booking was cancelled"),
        ("opted_out", "the client opted out"),
        ("template_off", "template switched off"),
        ("messages_off", "messages switched off"),
        ("booking_restored", "the cancellation was undone"),
        ("offset_removed", "this reminder was switched off"),
        ("no_booking", "no such booking"),
        ("salon_uninstalled", "the app was removed"),
        ("salon_handed_over", "the integration was handed over to another admin"),
        ("previous_in_flight", "waits for the previous message to go"),
        ("never_told", "the client was never told of the booking"),
    ],
    unknown_placeholder: "Template «{template}»: unknown placeholder {{name}}. Available: {known}.",
    braces: "Template «{template}»: an unclosed or stray brace.",
    empty: "Template «{template}» is empty.",
    too_long: "Template «{template}» is longer than 1000 characters.",
    bad_offsets: "1 to 3 different reminders, each from 1 minute to 7 days before the visit.",
    bad_quiet: "Quiet hours are times of day from 00:00 to 23:59.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_render_every_placeholder() {
        let settings = MessageSettings::default();
        settings.validate().expect("defaults are valid");
        let text = render(&settings.confirmation.text, &BookingFacts::sample("Салон"));
        assert!(!text.contains('{'), "{text}");
        assert!(text.contains("Мария") && text.contains("14:30") && text.contains("Салон"));
    }

    #[test]
    fn unknown_placeholders_and_stray_braces_are_refused() {
        assert_eq!(
            validate_template("reminder", "Привет, {clientname}!"),
            Err(SettingsError::UnknownPlaceholder {
                template: "reminder".into(),
                name: "clientname".into()
            })
        );
        for bad in ["{date", "date}", "{{date}}", "{da{te}"] {
            assert!(
                matches!(
                    validate_template("moved", bad),
                    Err(SettingsError::Braces { .. })
                ),
                "{bad}"
            );
        }
        assert!(validate_template("moved", "  ").is_err());
        assert!(validate_template("moved", "{date} {time}").is_ok());
    }

    #[test]
    fn offsets_and_quiet_hours_are_checked() {
        let mut settings = MessageSettings {
            reminder_offsets_min: vec![60, 60],
            ..MessageSettings::default()
        };
        assert_eq!(settings.validate(), Err(SettingsError::Offsets));
        settings.reminder_offsets_min = vec![0];
        assert_eq!(settings.validate(), Err(SettingsError::Offsets));
        settings.reminder_offsets_min = vec![MAX_OFFSET_MIN + 1];
        assert_eq!(settings.validate(), Err(SettingsError::Offsets));
        settings.reminder_offsets_min = vec![30];
        settings.quiet_end_min = 24 * 60;
        assert_eq!(settings.validate(), Err(SettingsError::QuietHours));
    }

    #[test]
    fn every_reason_and_status_has_words_in_both_languages() {
        for strings in [&MESSAGES_RU, &MESSAGES_EN] {
            for reason in [
                "quiet_hours",
                "daily_cap",
                "pacing",
                "whatsapp_down",
                "salon_paused",
                "number_unconfirmed",
                "send_failed",
                "send_refused",
                "no_phone",
                "bad_phone",
                "visit_passed",
                "quiet_until_visit",
                "too_old",
                "superseded",
                "booking_cancelled",
                "opted_out",
                "template_off",
                "messages_off",
                "booking_restored",
                "offset_removed",
                "no_booking",
                "salon_uninstalled",
                "salon_handed_over",
                "previous_in_flight",
                "never_told",
            ] {
                assert_ne!(strings.reason(reason), "—", "{reason}");
            }
            let error = SettingsError::UnknownPlaceholder {
                template: "reminder".into(),
                name: "foo".into(),
            };
            assert!(strings.settings_error(&error).contains("{foo}"));
        }
        assert_eq!(parse_offsets_hours("24, 2"), Some(vec![1440, 120]));
        assert_eq!(parse_offsets_hours("1.5"), Some(vec![90]));
        assert_eq!(parse_offsets_hours("soon"), None);
        assert_eq!(parse_time_of_day("21:00"), Some(1260));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(offset_label(90), "1 h 30 min");
    }

    #[test]
    fn quiet_hours_wrap_around_midnight() {
        let settings = MessageSettings::default();
        assert!(settings.is_quiet(21 * 60));
        assert!(settings.is_quiet(2 * 60));
        assert!(settings.is_quiet(9 * 60 - 1));
        assert!(!settings.is_quiet(9 * 60));
        assert!(!settings.is_quiet(20 * 60 + 59));
        let day = MessageSettings {
            quiet_start_min: 13 * 60,
            quiet_end_min: 14 * 60,
            ..MessageSettings::default()
        };
        assert!(day.is_quiet(13 * 60 + 30) && !day.is_quiet(14 * 60));
    }
}
