//! The operator's console: sign-in, the salons list and one salon with its history and actions.
//! Server-rendered and hydrated like the onboarding page; the data comes through the server
//! functions in `crate::ops`, the actions are form posts carrying the session's CSRF token, each
//! behind a confirmation step on the page (`?confirm=…`).

use super::{HydrationMarker, LanguageSwitch};
use crate::channel::Channel;
use crate::i18n::Locale;
use crate::ops::{
    ops_salon, ops_salons, ops_sign_in_form, FlashQuery, OperatorView, SalonDetail, SalonList,
};
use crate::use_locale;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

/// The console's copy, Russian first.
fn tr(locale: Locale, ru: &'static str, en: &'static str) -> &'static str {
    match locale {
        Locale::Ru => ru,
        Locale::En => en,
    }
}

/// A text of the console in the current language, following the switch: one closure type for
/// every text, as `i18n::tr` is for the admin's pages.
fn text(
    locale: RwSignal<Locale>,
    ru: &'static str,
    en: &'static str,
) -> impl Fn() -> &'static str + Copy + Send + Sync + 'static {
    move || tr(locale.get(), ru, en)
}

/// The actions a salon page offers, with their confirmation questions.
const ACTIONS: &[(&str, &str, &str)] = &[
    (
        "requeue-callback",
        "Повторить активацию (новый обратный вызов в YClients)",
        "Requeue the activation callback to YClients",
    ),
    (
        "restart",
        "Перезапустить сессию WhatsApp",
        "Restart the WhatsApp session",
    ),
    (
        "stop",
        "Остановить сессию WhatsApp",
        "Stop the WhatsApp session",
    ),
    (
        "logout",
        "Выйти из WhatsApp (отвязать устройство, новый QR)",
        "Log out of WhatsApp (unlink the device, new QR)",
    ),
    (
        "reconcile",
        "Спросить YClients о статусе установки и сверить",
        "Ask YClients for the installation status and reconcile",
    ),
    (
        "rotate-webhook-secret",
        "Сменить секрет вебхуков (через подтверждённый обратный вызов)",
        "Rotate the webhook secret (through a confirmed callback)",
    ),
    (
        "release-connected-user",
        "Передать подключение другому пользователю YClients",
        "Hand the connection over to another YClients user",
    ),
];

/// The action the console knows by `name` (its list, and the lifecycle retry, which each given-up
/// event offers): the name as the console spells it, never the caller's text. `None` for
/// anything else, which the page neither confirms nor names.
fn known_action(name: &str) -> Option<&'static str> {
    if name == "retry-lifecycle" {
        return Some("retry-lifecycle");
    }
    ACTIONS
        .iter()
        .find(|(a, _, _)| *a == name)
        .map(|(a, _, _)| *a)
}

/// A known action's label; `None` for a name the console does not know.
fn action_label(locale: Locale, action: &str) -> Option<&'static str> {
    if action == "retry-lifecycle" {
        return Some(tr(
            locale,
            "Повторить событие жизненного цикла",
            "Retry the lifecycle event",
        ));
    }
    ACTIONS
        .iter()
        .find(|(a, _, _)| *a == action)
        .map(|(_, ru, en)| tr(locale, ru, en))
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let locale = use_locale();
    let query = use_query_map();
    let error = move || query.with(|q| q.get("error"));
    let form_token = Resource::new_serde_wb(|| (), |_| ops_sign_in_form());
    view! {
        <HydrationMarker />
        <section class="card ops" data-testid="ops-sign-in">
            <LanguageSwitch />
            <h1>{text(locale, "Консоль оператора", "Operator console")}</h1>
            {move || error().map(|e| {
                let text = if e == "rate" {
                    tr(locale.get(), "Слишком много попыток входа, подождите минуту.", "Too many sign-in attempts; wait a minute.")
                } else if e == "form" {
                    tr(locale.get(), "Форма входа устарела или открыта не здесь — попробуйте ещё раз.", "The sign-in form expired or was not opened here; try again.")
                } else {
                    tr(locale.get(), "Неверное имя или пароль.", "Wrong name or password.")
                };
                view! { <p class="error" role="alert" data-testid="ops-sign-in-error">{text}</p> }
            })}
            <form method="post" action="/ops/login">
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        form_token.await.ok().map(|token| view! { <input type="hidden" name="csrf" value=token /> })
                    })}
                </Suspense>
                <label>
                    {text(locale, "Имя", "Name")}
                    <input type="text" name="name" autocomplete="username" required />
                </label>
                <label>
                    {text(locale, "Пароль", "Password")}
                    <input type="password" name="password" autocomplete="current-password" required />
                </label>
                <button type="submit" data-testid="ops-sign-in-submit">{text(locale, "Войти", "Sign in")}</button>
            </form>
        </section>
    }
}

#[component]
fn OpsHeader(operator: OperatorView) -> impl IntoView {
    let locale = use_locale();
    view! {
        <header class="ops-header">
            <a href="/ops">{text(locale, "Салоны", "Salons")}</a>
            " · "
            <span data-testid="ops-operator">{operator.name}</span>
            <form method="post" action="/ops/logout" class="inline">
                <input type="hidden" name="csrf" value=operator.csrf />
                <button type="submit" class="link-button">{text(locale, "Выйти", "Sign out")}</button>
            </form>
            <LanguageSwitch />
        </header>
    }
}

fn error_view(locale: RwSignal<Locale>, e: crate::api::AppError) -> AnyView {
    let message = match e {
        crate::api::AppError::Unauthorized => tr(
            locale.get_untracked(),
            "Сессия закончилась — войдите снова.",
            "Your session ended; sign in again.",
        )
        .to_owned(),
        other => other.to_string(),
    };
    view! {
        <section class="card ops">
            <p class="error" role="alert">{message}</p>
            <p><a href="/ops/login">{text(locale, "Вход", "Sign in")}</a></p>
        </section>
    }
    .into_any()
}

#[component]
pub fn SalonsPage() -> impl IntoView {
    let locale = use_locale();
    let query = use_query_map();
    let args = move || {
        query.with(|q| {
            (
                q.get("q").unwrap_or_default(),
                q.get("status").unwrap_or_default(),
                q.get("whatsapp").unwrap_or_default(),
                q.get("attention")
                    .is_some_and(|v| v == "1" || v == "on" || v == "true"),
                q.get("page")
                    .and_then(|p| p.parse::<u64>().ok())
                    .unwrap_or(1),
            )
        })
    };
    let list = Resource::new_serde_wb(args, |(q, status, whatsapp, attention, page)| {
        ops_salons(q, status, whatsapp, attention, page)
    });
    view! {
        <HydrationMarker />
        <Suspense fallback=move || view! { <p class="card">"…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(list) => view! { <Salons list args=args() /> }.into_any(),
                    Err(e) => error_view(locale, e),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Salons(list: SalonList, args: (String, String, String, bool, u64)) -> impl IntoView {
    let locale = use_locale();
    let (q, status, whatsapp, attention, page) = args;
    let page_link = {
        let (q, status, whatsapp) = (q.clone(), status.clone(), whatsapp.clone());
        move |page: u64| {
            let mut query = form_urlencoded_pairs(&[
                ("q", q.as_str()),
                ("status", status.as_str()),
                ("whatsapp", whatsapp.as_str()),
                ("attention", if attention { "1" } else { "" }),
            ]);
            query.push_str(&format!("page={page}"));
            format!("/ops?{query}")
        }
    };
    let status_options = [
        "",
        "new",
        "activating",
        "active",
        "activation_failed",
        "frozen",
        "uninstalled",
    ];
    let whatsapp_options = [
        "",
        "linked",
        "logged_out",
        "failed",
        "replaced",
        "banned",
        "none",
    ];
    let rows = list.rows.clone();
    let (prev, next) = (
        (page > 1).then(|| page_link(page - 1)),
        (page < list.pages).then(|| page_link(page + 1)),
    );
    view! {
        <section class="card ops" data-testid="ops-salons">
            <OpsHeader operator=list.operator.clone() />
            <h1>{text(locale, "Салоны", "Salons")}</h1>
            <form method="get" action="/ops" class="ops-filters">
                <input type="search" name="q" value=q.clone() data-testid="ops-search"
                    placeholder=move || tr(locale.get(), "id, название или телефон", "id, title or phone") />
                <select name="status" data-testid="ops-filter-status">
                    {status_options.iter().map(|o| view! { <option value=*o selected=status == *o>{if o.is_empty() { "—" } else { o }}</option> }).collect_view()}
                </select>
                <select name="whatsapp" data-testid="ops-filter-whatsapp">
                    {whatsapp_options.iter().map(|o| view! { <option value=*o selected=whatsapp == *o>{if o.is_empty() { "—" } else { o }}</option> }).collect_view()}
                </select>
                <label>
                    <input type="checkbox" name="attention" value="1" checked=attention data-testid="ops-filter-attention" />
                    {text(locale, "Требуют внимания", "Needs attention")}
                </label>
                <button type="submit" data-testid="ops-search-submit">{text(locale, "Найти", "Search")}</button>
            </form>
            <p data-testid="ops-total">{text(locale, "Найдено: ", "Found: ")}{list.total}</p>
            <table class="ops-table">
                <thead><tr>
                    <th>"ID"</th>
                    <th>{text(locale, "Название", "Title")}</th>
                    <th>{text(locale, "Телефон", "Phone")}</th>
                    <th>{text(locale, "Установка", "Installation")}</th>
                    <th>"WhatsApp"</th>
                </tr></thead>
                <tbody>
                    {rows.into_iter().map(|row| view! {
                        <tr data-testid="ops-salon-row">
                            <td><a href=format!("/ops/salons/{}", row.id)>{row.id}</a></td>
                            <td>{row.title}</td>
                            <td>{row.phone.unwrap_or_default()}</td>
                            <td>{row.status}</td>
                            <td>{row.whatsapp_state.unwrap_or_else(|| "—".to_owned())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <nav class="ops-pages">
                {prev.map(|href| view! { <a href=href rel="prev">"←"</a> })}
                " " {page} " / " {list.pages} " "
                {next.map(|href| view! { <a href=href rel="next">"→"</a> })}
            </nav>
        </section>
    }
}

/// `k=v&` pairs, percent-encoded, empty values left out.
fn form_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out.push('&');
    }
    out
}

/// The salon id in the route's parameters, read once.
#[cfg(feature = "browser")]
fn id_now(params: Memo<leptos_router::params::ParamsMap>) -> i64 {
    params.with_untracked(|p| {
        p.get("id")
            .and_then(|id| id.parse::<i64>().ok())
            .unwrap_or(0)
    })
}

#[component]
pub fn SalonPage() -> impl IntoView {
    let locale = use_locale();
    let params = use_params_map();
    let id = move || {
        params.with(|p| {
            p.get("id")
                .and_then(|id| id.parse::<i64>().ok())
                .unwrap_or(0)
        })
    };
    // The outcome of the action just done, as the console's redirect wrote it: handed to the
    // server function, which returns it only when the server signed it for this session and
    // salon (`SalonDetail::flash`). The page renders that, never the address's own words, so
    // the server and the browser render the same.
    let query = use_query_map();
    let flash = move || {
        query.with(|q| match q.get("sig") {
            Some(sig) => FlashQuery {
                done: q.get("done"),
                note: q.get("note"),
                error: q.get("error"),
                at: q.get("at").and_then(|at| at.parse::<i64>().ok()),
                sig: Some(sig),
            },
            None => FlashQuery::default(),
        })
    };
    let salon = Resource::new_serde_wb(move || (id(), flash()), |(id, flash)| ops_salon(id, flash));
    // Live: every change of the salon the server reports reads the salon again; the page keeps
    // showing what it has meanwhile (a transition, not a fallback).
    let channel = RwSignal::new(Channel::Connecting);
    #[cfg(feature = "browser")]
    crate::browser::follow_ops_salon(id_now(params), move || salon.refetch(), channel);
    view! {
        <HydrationMarker />
        <p class="ops-live" data-testid="ops-live" data-channel=move || channel.get().name()>
            {move || match channel.get() {
                Channel::Live => tr(locale.get(), "Обновляется на лету", "Updating live"),
                Channel::Connecting => tr(locale.get(), "Подключение…", "Connecting…"),
                _ => tr(locale.get(), "Нет связи, переподключение…", "Not live; reconnecting…"),
            }}
        </p>
        <Transition fallback=move || view! { <p class="card">"…"</p> }>
            {move || Suspend::new(async move {
                match salon.await {
                    Ok(salon) => view! { <Salon salon /> }.into_any(),
                    Err(e) => error_view(locale, e),
                }
            })}
        </Transition>
    }
}

/// The confirmation of a known action (`known_action`): its path is the console's own spelling
/// of the name, never the address's text.
#[component]
fn ActionForm(
    salon: i64,
    csrf: String,
    action: &'static str,
    event_id: Option<i32>,
) -> impl IntoView {
    let locale = use_locale();
    let label = move || action_label(locale.get(), action);
    view! {
        <div class="ops-confirm" role="alertdialog" data-testid="ops-confirm">
            <p>{text(locale, "Подтвердите действие: ", "Confirm: ")}<strong>{label}</strong></p>
            <form method="post" action=format!("/ops/salons/{salon}/actions/{action}")>
                <input type="hidden" name="csrf" value=csrf />
                {event_id.map(|id| view! { <input type="hidden" name="event_id" value=id.to_string() /> })}
                {(action == "release-connected-user").then(|| view! {
                    <label>
                        {text(locale, "ID пользователя YClients (его показывает страница отказа у нового сотрудника): ", "YClients user id (the newcomer's refusal page shows it): ")}
                        <input type="text" name="to_user" required maxlength="64" data-testid="ops-to-user" />
                    </label>
                    " "
                })}
                <button type="submit" data-testid="ops-confirm-submit">{text(locale, "Подтвердить", "Confirm")}</button>
                " "
                <a href=format!("/ops/salons/{salon}")>{text(locale, "Отмена", "Cancel")}</a>
            </form>
        </div>
    }
}

#[component]
fn Salon(salon: SalonDetail) -> impl IntoView {
    let locale = use_locale();
    let query = use_query_map();
    let id = salon.id;
    let csrf = salon.operator.csrf.clone();
    // Only an action the console knows is confirmed; anything else in the address is ignored.
    let confirm = move || query.with(|q| q.get("confirm").as_deref().and_then(known_action));
    // Only what the server verified as its own redirect's words for this session (see
    // `SalonPage`); the address's `done`, `note` and `error` alone show nothing.
    let flash = salon.flash.clone().unwrap_or_default();
    let done = flash.done.as_deref().and_then(known_action);
    let note = flash.note.clone().unwrap_or_default();
    let failed = flash.error.clone();
    let event_id = move || query.with(|q| q.get("event").and_then(|e| e.parse::<i32>().ok()));
    let csrf_confirm = csrf.clone();
    view! {
        <section class="card ops" data-testid="ops-salon">
            <OpsHeader operator=salon.operator.clone() />
            <h1>{salon.title.clone()} " (" {id} ")"</h1>
            {done.map(|a| view! {
                <p class="notice" role="status" data-testid="ops-done">{text(locale, "Выполнено: ", "Done: ")}{move || action_label(locale.get(), a)}" — "{note}</p>
            })}
            {failed.map(|e| view! { <p class="error" role="alert" data-testid="ops-error">{e}</p> })}
            <dl class="ops-facts">
                <dt>{text(locale, "Установка", "Installation")}</dt>
                <dd data-testid="ops-status">{salon.status.clone()}</dd>
                {salon.activation_error.clone().map(|e| view! { <dt>{text(locale, "Ошибка активации", "Activation error")}</dt><dd>{e}</dd> })}
                <dt>{text(locale, "Телефон салона", "Salon phone")}</dt>
                <dd>{salon.phone.clone().unwrap_or_default()}</dd>
                <dt>"WhatsApp"</dt>
                <dd data-testid="ops-whatsapp-state">{salon.whatsapp_state.clone().unwrap_or_else(|| "—".to_owned())}</dd>
                <dt>{text(locale, "Сессия здесь", "Session here")}</dt>
                <dd data-testid="ops-live-state">{salon.live_state.clone().unwrap_or_else(|| "—".to_owned())}</dd>
                <dt>{text(locale, "Номер WhatsApp", "WhatsApp number")}</dt>
                <dd>{salon.whatsapp_phone.clone().unwrap_or_default()}</dd>
                <dt>{text(locale, "Подключил (пользователь YClients)", "Connected by (YClients user)")}</dt>
                <dd data-testid="ops-connected-by">{salon.connected_by.clone().unwrap_or_else(|| "—".to_owned())}</dd>
            </dl>
            {move || confirm().map(|action| view! {
                <ActionForm salon=id csrf=csrf_confirm.clone() action event_id=event_id() />
            })}
            <h2>{text(locale, "Действия", "Actions")}</h2>
            <ul class="ops-actions">
                {ACTIONS.iter().map(|(action, _, _)| view! {
                    <li><a href=format!("/ops/salons/{id}?confirm={action}") data-testid=format!("ops-action-{action}")>{move || action_label(locale.get(), action)}</a></li>
                }).collect_view()}
            </ul>
            <h2>{text(locale, "Обратные вызовы в YClients", "Callbacks to YClients")}</h2>
            <table class="ops-table" data-testid="ops-callbacks">
                <thead><tr><th>"#"</th><th>{text(locale, "Зачем", "Purpose")}</th><th>{text(locale, "Статус", "Status")}</th><th>{text(locale, "Попытки", "Attempts")}</th><th>{text(locale, "Ответ YClients", "YClients' answer")}</th><th>{text(locale, "Создан", "Created")}</th><th>{text(locale, "Изменён", "Updated")}</th></tr></thead>
                <tbody>
                    {salon.callbacks.iter().cloned().map(|c| {
                        let purpose = match (c.purpose.as_str(), c.requested_by) {
                            ("rotation", Some(by)) => format!("rotation ({by})"),
                            (purpose, _) => purpose.to_owned(),
                        };
                        let log = c.attempt_log;
                        view! {
                            <tr data-testid="ops-callback">
                                <td>{c.id}</td><td>{purpose}</td><td>{c.status}</td><td>{c.attempts}</td><td>{c.last_error.unwrap_or_default()}</td><td>{c.created_at}</td><td>{c.updated_at}</td>
                            </tr>
                            <tr class="ops-attempts">
                                <td></td>
                                <td colspan="6">
                                    <table class="ops-table" data-testid="ops-attempts">
                                        <thead><tr><th>{text(locale, "Попытка", "Attempt")}</th><th>{text(locale, "Когда", "When")}</th><th>"HTTP"</th><th>{text(locale, "Длительность", "Duration")}</th><th>{text(locale, "Итог", "Outcome")}</th><th>{text(locale, "Ошибка", "Error")}</th><th>{text(locale, "Ответ YClients", "YClients' answer")}</th></tr></thead>
                                        <tbody>
                                            {log.into_iter().map(|a| view! {
                                                <tr data-testid="ops-attempt">
                                                    <td>{a.attempt}</td>
                                                    <td>{a.started_at}</td>
                                                    <td data-testid="ops-attempt-status">{a.http_status.map(|s| s.to_string()).unwrap_or_else(|| "—".to_owned())}</td>
                                                    <td>{format!("{} ms", a.duration_ms)}</td>
                                                    <td>{a.outcome}</td>
                                                    <td>{a.error.unwrap_or_default()}</td>
                                                    <td><code>{a.answer.unwrap_or_default()}</code></td>
                                                </tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <h2>{text(locale, "События жизненного цикла", "Lifecycle events")}</h2>
            <table class="ops-table" data-testid="ops-lifecycle">
                <thead><tr><th>"#"</th><th>{text(locale, "Событие", "Event")}</th><th>{text(locale, "Попытки", "Attempts")}</th><th>{text(locale, "Ошибка", "Error")}</th><th>{text(locale, "Состояние", "State")}</th><th></th></tr></thead>
                <tbody>
                    {salon.lifecycle.iter().cloned().map(|e| {
                        let state = if e.processed { "processed" } else if e.gave_up { "gave_up" } else { "pending" };
                        view! {
                            <tr>
                                <td>{e.id}</td><td>{e.event}</td><td>{e.attempts}</td><td>{e.last_error.unwrap_or_default()}</td><td>{state}</td>
                                <td>{e.gave_up.then(|| view! {
                                    <a href=format!("/ops/salons/{id}?confirm=retry-lifecycle&event={}", e.id) data-testid="ops-action-retry-lifecycle">{move || action_label(locale.get(), "retry-lifecycle")}</a>
                                })}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <h2>{text(locale, "Вебхуки по ресурсам (за срок хранения)", "Webhooks by resource (within the retention period)")}</h2>
            <ul data-testid="ops-webhook-counts">
                {salon.webhook_counts.iter().cloned().map(|(resource, count)| view! { <li>{resource} ": " {count}</li> }).collect_view()}
            </ul>
            <h2>{text(locale, "Журнал", "Audit trail")}</h2>
            <table class="ops-table" data-testid="ops-audit">
                <thead><tr><th>{text(locale, "Когда", "When")}</th><th>{text(locale, "Что", "What")}</th><th></th></tr></thead>
                <tbody>
                    {salon.audit.iter().cloned().map(|a| view! {
                        <tr><td>{a.created_at}</td><td>{a.kind}</td><td><code>{a.payload}</code></td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
