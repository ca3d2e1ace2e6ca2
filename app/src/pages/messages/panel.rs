//! The «Сообщения» section of the onboarding page, once the integration is active: templates
//! with a preview on a sample booking, reminder offsets, quiet hours, on/off; the latest
//! messages with their status and reason; opted-out numbers. Browser-only: the page's first
//! render stays the status, and this view is created after hydration (`super::MessagesSection`);
//! its data comes through one server function and is saved through another.

use crate::api::{get_messages, save_message_settings, AppError};
use crate::messages::tr_messages;
use crate::messages::{
    offset_label, parse_offsets_hours, parse_time_of_day, render, time_of_day, BookingFacts,
    MessageSettings, MessageStrings, MessagesView, Template, PLACEHOLDERS,
};
use crate::use_locale;
use leptos::prelude::*;

const KINDS: [&str; 4] = ["confirmation", "moved", "cancelled", "reminder"];

fn template_mut<'a>(settings: &'a mut MessageSettings, kind: &str) -> &'a mut Template {
    match kind {
        "confirmation" => &mut settings.confirmation,
        "moved" => &mut settings.moved,
        "cancelled" => &mut settings.cancelled,
        _ => &mut settings.reminder,
    }
}

#[component]
pub fn MessagesPanel(token: StoredValue<String>) -> impl IntoView {
    let locale = use_locale();
    let m = move || MessageStrings::of(locale.get());
    let data = RwSignal::new(None::<MessagesView>);
    let draft = RwSignal::new(None::<MessageSettings>);
    let offsets_text = RwSignal::new(String::new());
    let notice = RwSignal::new(None::<Result<&'static str, String>>);
    let adopt = move |result: Result<MessagesView, AppError>, saved: bool| match result {
        Ok(view) => {
            offsets_text.set(
                view.settings
                    .reminder_offsets_min
                    .iter()
                    .map(|o| format!("{}", *o as f64 / 60.0))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            draft.set(Some(view.settings.clone()));
            data.set(Some(view));
            notice.set(saved.then(|| Ok(m().saved)));
        }
        Err(e) => notice.set(Some(Err(locale.get_untracked().strings().app_error(&e)))),
    };
    let load = Action::new(move |_: &()| async move { get_messages(token.get_value()).await });
    let save = Action::new(move |json: &String| {
        let json = json.clone();
        async move { save_message_settings(token.get_value(), json).await }
    });
    Effect::new(move |_| {
        if let Some(result) = load.value().get() {
            adopt(result, false);
        }
    });
    Effect::new(move |_| {
        if let Some(result) = save.value().get() {
            adopt(result, true);
        }
    });
    Effect::new(move |_| {
        load.dispatch(());
    });
    let on_save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(mut settings) = draft.get_untracked() else {
            return;
        };
        match parse_offsets_hours(&offsets_text.get_untracked()) {
            Some(offsets) => settings.reminder_offsets_min = offsets,
            None => {
                notice.set(Some(Err(m().bad_offsets_input.to_owned())));
                return;
            }
        }
        if let Ok(json) = crate::wire::to_json(&settings) {
            save.dispatch(json);
        }
    };
    let set_time = move |start: bool, raw: String| match parse_time_of_day(&raw) {
        Some(minute) => draft.update(|d| {
            if let Some(d) = d {
                if start {
                    d.quiet_start_min = minute;
                } else {
                    d.quiet_end_min = minute;
                }
            }
        }),
        None => notice.set(Some(Err(m().bad_time_input.to_owned()))),
    };
    view! {
        <section class="messages-panel" data-testid="messages-section">
            <h2>{tr_messages(locale, |m| m.heading)}</h2>
            <p class="muted">{tr_messages(locale, |m| m.intro)}</p>
            {move || draft.get().map(|settings| {
                let title = data.with(|d| d.as_ref().map(|d| d.salon_title.clone()).unwrap_or_default());
                let tz = data.with(|d| d.as_ref().map(|d| d.timezone.clone()).unwrap_or_default());
                let sample = BookingFacts::sample(&title);
                view! {
                    <form class="messages-form" on:submit=on_save>
                        <label class="check">
                            <input type="checkbox" data-testid="messages-enabled" prop:checked=settings.enabled
                                on:change=move |ev| { let on = event_target_checked(&ev); draft.update(|d| if let Some(d) = d { d.enabled = on; }); } />
                            {tr_messages(locale, |m| m.enabled)}
                        </label>
                        <p class="muted small">{tr_messages(locale, |m| m.placeholders)} " " {PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(" ")}</p>
                        {KINDS.iter().map(|kind| {
                            let kind = *kind;
                            let template = settings.template(kind).cloned().unwrap_or(Template { enabled: false, text: String::new() });
                            let preview = render(&template.text, &sample);
                            view! {
                                <fieldset class="template" data-testid=format!("template-{kind}")>
                                    <legend>{move || m().kind(kind, 0)}</legend>
                                    <label class="check">
                                        <input type="checkbox" prop:checked=template.enabled
                                            on:change=move |ev| { let on = event_target_checked(&ev); draft.update(|d| if let Some(d) = d { template_mut(d, kind).enabled = on; }); } />
                                        {tr_messages(locale, |m| m.template_on)}
                                    </label>
                                    <textarea rows="3" maxlength="1000" data-testid=format!("template-text-{kind}")
                                        on:change=move |ev| { let text = event_target_value(&ev); draft.update(|d| if let Some(d) = d { template_mut(d, kind).text = text; }); }
                                    >{template.text.clone()}</textarea>
                                    <p class="preview" data-testid=format!("preview-{kind}")><span class="muted">{tr_messages(locale, |m| m.preview)} ": "</span>{preview}</p>
                                </fieldset>
                            }
                        }).collect_view()}
                        <label for="offsets">{tr_messages(locale, |m| m.offsets)}</label>
                        <input id="offsets" data-testid="reminder-offsets" prop:value=move || offsets_text.get()
                            on:input=move |ev| offsets_text.set(event_target_value(&ev)) />
                        <small>{tr_messages(locale, |m| m.offsets_hint)} " (" {settings.reminder_offsets_min.iter().map(|o| offset_label(*o)).collect::<Vec<_>>().join(", ")} ")"</small>
                        <fieldset class="quiet">
                            <legend>{tr_messages(locale, |m| m.quiet)}</legend>
                            <label>{tr_messages(locale, |m| m.quiet_from)} " "
                                <input type="time" data-testid="quiet-start" value=time_of_day(settings.quiet_start_min)
                                    on:change=move |ev| set_time(true, event_target_value(&ev)) /></label>
                            " "
                            <label>{tr_messages(locale, |m| m.quiet_to)} " "
                                <input type="time" data-testid="quiet-end" value=time_of_day(settings.quiet_end_min)
                                    on:change=move |ev| set_time(false, event_target_value(&ev)) /></label>
                            <small>{tr_messages(locale, |m| m.timezone)} " " {tz.clone()}</small>
                        </fieldset>
                        <button type="submit" data-testid="save-message-settings">{tr_messages(locale, |m| m.save)}</button>
                    </form>
                }
            })}
            {move || notice.get().map(|n| match n {
                Ok(text) => view! { <p class="muted" role="status" data-testid="messages-notice">{text}</p> }.into_any(),
                Err(text) => view! { <p class="error" role="alert" data-testid="messages-error">{text}</p> }.into_any(),
            })}
            <h3>{tr_messages(locale, |m| m.recent)}</h3>
            <button type="button" class="secondary" data-testid="refresh-messages" on:click=move |_| { load.dispatch(()); }>{tr_messages(locale, |m| m.refresh)}</button>
            {move || data.get().map(|d| if d.recent.is_empty() {
                view! { <p class="muted" data-testid="no-messages">{tr_messages(locale, |m| m.no_messages)}</p> }.into_any()
            } else {
                view! {
                    <ul class="message-list">
                        {d.recent.into_iter().map(|row| {
                            let status = row.status.clone();
                            let reason = row.reason.clone();
                            let kind = row.kind.clone();
                            let offset = row.offset_min;
                            view! {
                                <li data-testid="message-row" data-status=row.status.clone() data-kind=row.kind.clone()>
                                    <strong>{move || m().kind(&kind, offset)}</strong>
                                    " · " {row.to.map(|p| p.display()).unwrap_or_default()}
                                    " · " <span class="status">{move || m().status(&status)}</span>
                                    {reason.map(|r| view! { " · " <span class="muted">{move || m().reason(&r)}</span> })}
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any()
            })}
            <h3>{tr_messages(locale, |m| m.opted_out)}</h3>
            {move || data.get().map(|d| if d.opted_out.is_empty() {
                view! { <p class="muted">{tr_messages(locale, |m| m.no_opt_outs)}</p> }.into_any()
            } else {
                view! { <ul data-testid="opted-out">{d.opted_out.into_iter().map(|p| view! { <li>{p.display()}</li> }).collect_view()}</ul> }.into_any()
            })}
        </section>
    }
}
