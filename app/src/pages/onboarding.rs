//! `/marketplace/onboarding`: the page a salon admin uses to link WhatsApp and see the
//! integration become active. The server renders the current state (with the QR) before any WASM
//! arrives; the browser then follows the live channel (SSE) and falls back to polling.

use super::{HydrationMarker, LanguageSwitch};
#[cfg(feature = "browser")]
use crate::api::GetOnboardingStatus;
use crate::api::{
    ActivateIntegration, AppError, ConfirmNumberChange, DisconnectWhatsapp, RequestPairingCode,
    RestartLinking, RetryActivation, SendTestMessage,
};
use crate::channel::Channel;
use crate::i18n::{tr, Locale, Strings};
use crate::qr::QrImage;
use crate::status::{ActivationState, LinkState, OnboardingStatus};
use crate::use_locale;
use leptos::prelude::*;
use server_fn::ServerFn;

#[component]
pub fn OnboardingPage() -> impl IntoView {
    let token = StoredValue::new(crate::query_param("token").unwrap_or_default());
    let initial = Resource::new_serde_wb(|| (), move |_| load_status(token.get_value()));
    let locale = use_locale();
    view! {
        <HydrationMarker />
        <Suspense fallback=move || view! { <p class="card">{tr(locale, |s| s.loading)}</p> }>
            {move || Suspend::new(async move {
                match initial.await {
                    Ok(status) => view! { <Onboarding token=token.get_value() initial=status /> }.into_any(),
                    Err(error) => view! { <ErrorCard error /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn ErrorCard(error: AppError) -> impl IntoView {
    let locale = use_locale();
    view! {
        <section class="card error-card" role="alert">
            <h1>{tr(locale, |s| s.error_prefix)}</h1>
            <p>{move || locale.get().strings().app_error(&error)}</p>
        </section>
    }
}

#[component]
fn Onboarding(token: String, initial: OnboardingStatus) -> impl IntoView {
    let locale = use_locale();
    let s = move || locale.get().strings();
    let clock_ms = RwSignal::new(initial.server_time_ms);
    let status = RwSignal::new(initial);
    let channel = RwSignal::new(Channel::Connecting);
    let token = StoredValue::new(token);
    let phone_mode = RwSignal::new(false);

    // A newer state wins; an older one (a slow poll after a live event) is dropped.
    let apply = move |next: OnboardingStatus| {
        if next.version >= status.with_untracked(|s| s.version) {
            #[cfg(feature = "browser")]
            crate::browser::sync_clock(next.server_time_ms);
            status.set(next);
        }
    };

    // The page's seven actions (activate, retry, pairing code, new QR, disconnect, keep the new
    // number, test message) are one `Action`: the server function's path and its form's fields.
    let call: PageAction = Action::new(|call: &FormCall| call.clone().run());
    // The «Сообщения» section stays (with the admin's edits) while the status ticks.
    let messages_on =
        Memo::new(move |_| status.with(|st| st.activation == ActivationState::Active));
    let action_error = RwSignal::new(None::<String>);
    let answer = call.value();
    Effect::new(move |_| match answer.get() {
        Some(Ok(next)) => {
            action_error.set(None);
            apply(next);
        }
        Some(Err(error)) => {
            action_error.set(Some(locale.get_untracked().strings().app_error(&error)))
        }
        None => {}
    });

    // The server activates by itself once linked; the page asks too, once, in case it was
    // opened before the server saw the link. Both end in the same single activation.
    let asked_activation = StoredValue::new(false);
    Effect::new(move |_| {
        let st = status.get();
        if st.link.is_linked()
            && st.activation == ActivationState::NotStarted
            && !asked_activation.get_value()
        {
            asked_activation.set_value(true);
            call.dispatch(FormCall::with_token(
                ActivateIntegration::PATH,
                &token.get_value(),
            ));
        }
    });

    #[cfg(feature = "browser")]
    crate::browser::follow_onboarding(token.get_value(), apply, channel, clock_ms);

    // The current step; 4 once active, so all three show as done.
    let step = move || {
        let st = status.get();
        match (&st.link, &st.activation) {
            (_, ActivationState::Active) => 4,
            (LinkState::Linked { .. }, _) => 2,
            _ => 1,
        }
    };
    // Each returns one closure type whatever the step, so the three items are one view type.
    let step_class = move |n: u8| {
        move || {
            let current = step();
            if n < current {
                "step done"
            } else if n == current {
                "step current"
            } else {
                "step"
            }
        }
    };
    let step_current = move |n: u8| move || (step() == n).then_some("step");
    let announcement = move || describe(s(), &status.get());

    view! {
        <section class="card onboarding" data-testid="onboarding"
            data-link-state=move || status.get().link.name()
            data-activation-state=move || status.get().activation.name()
            data-channel=move || channel.get().name()>
            <header class="card-header">
                <div>
                    <p class="eyebrow">{tr(locale, |s| s.salon)}</p>
                    <h1 data-testid="salon-title">{move || status.get().salon_title}</h1>
                </div>
                <LanguageSwitch />
            </header>
            <ol class="steps" aria-label=move || format!("{} → {} → {}", s().step_whatsapp, s().step_activation, s().step_done)>
                <li class=step_class(1) aria-current=step_current(1)>{tr(locale, |s| s.step_whatsapp)}</li>
                <li class=step_class(2) aria-current=step_current(2)>{tr(locale, |s| s.step_activation)}</li>
                <li class=step_class(3) aria-current=step_current(3)>{tr(locale, |s| s.step_done)}</li>
            </ol>
            <p class="visually-hidden" role="status" aria-live="polite" data-testid="announcement">{announcement}</p>

            {move || {
                let st = status.get();
                let paused = matches!(st.activation, ActivationState::Frozen | ActivationState::Uninstalled);
                let unlinked_after_activation = st.activation == ActivationState::Active
                    && !st.link.is_linked()
                    && !matches!(st.link, LinkState::Replaced { .. } | LinkState::Banned { .. } | LinkState::Failed { .. });
                (!st.link.is_linked() && !paused).then(|| view! {
                    {unlinked_after_activation.then(|| view! {
                        <div class="warning" role="alert" data-testid="whatsapp-disconnected">
                            <h2>{tr(locale, |s| s.whatsapp_disconnected_heading)}</h2>
                            <p>{tr(locale, |s| s.whatsapp_disconnected_text)}</p>
                        </div>
                    })}
                    <LinkPanel status token phone_mode clock_ms call />
                })
            }}
            {move || match status.get().link {
                LinkState::Linked { phone } => Some(view! {
                    <p class="linked" data-testid="linked-phone">{tr(locale, |s| s.linked_as)} " " <strong>{phone.display()}</strong></p>
                }),
                _ => None,
            }}
            {move || status.get().linked_other_number.map(|known| view! {
                <p class="warning" data-testid="other-number-warning">{tr(locale, |s| s.linked_other_number)} " " {known.display()}</p>
            })}
            {move || {
                let st = status.get();
                match (st.number_change_from, st.link.is_linked()) {
                    (Some(before), true) => Some(view! {
                        <div class="warning" role="alert" data-testid="number-change">
                            <p>{tr(locale, |s| s.number_change)} " " <strong>{before.display()}</strong>"."</p>
                            <p>{tr(locale, |s| s.number_change_question)}</p>
                            <div class="actions">
                                <ServerForm call path=ConfirmNumberChange::PATH>
                                    <input type="hidden" name="token" value=token.get_value() />
                                    <button type="submit" data-testid="confirm-number">{tr(locale, |s| s.number_change_confirm)}</button>
                                </ServerForm>
                                <ServerForm call path=DisconnectWhatsapp::PATH>
                                    <input type="hidden" name="token" value=token.get_value() />
                                    <button type="submit" class="secondary" data-testid="reject-number">{tr(locale, |s| s.number_change_reject)}</button>
                                </ServerForm>
                            </div>
                        </div>
                    }),
                    _ => None,
                }
            }}
            <ActivationPanel status token call />
            {move || {
                let st = status.get();
                (st.link.is_linked() && !matches!(st.activation, ActivationState::Frozen | ActivationState::Uninstalled))
                    .then(|| view! { <ManagePanel status token call /> })
            }}
            {move || action_error.get().map(|e| view! { <p class="error" role="alert" data-testid="action-error">{e}</p> })}
            {move || messages_on.get().then(|| view! { <super::messages::MessagesSection token /> })}
            <ChannelBadge channel />
        </section>
    }
}

/// What a screen reader hears when the state changes.
fn describe(s: &Strings, st: &OnboardingStatus) -> String {
    match (&st.link, &st.activation) {
        (_, ActivationState::Active) => s.active_heading.to_owned(),
        (_, ActivationState::Failed { reason }) => format!("{} {reason}", s.activation_failed),
        (LinkState::Linked { phone }, _) => format!("{} {}", s.linked_as, phone.display()),
        (LinkState::Qr { .. }, _) => s.qr_heading.to_owned(),
        (LinkState::Pairing { code, .. }, _) => format!("{} {code}", s.pairing_heading),
        (LinkState::QrExpired, _) => s.qr_expired.to_owned(),
        (LinkState::LoggedOut, _) => s.logged_out.to_owned(),
        (LinkState::Failed { .. }, _) => s.failed_heading.to_owned(),
        (LinkState::Replaced { .. }, _) => s.replaced_heading.to_owned(),
        (LinkState::Banned { .. }, _) => s.banned_heading.to_owned(),
        (LinkState::Idle | LinkState::Starting, _) => s.qr_waiting.to_owned(),
    }
}

fn seconds_left(expires_at_ms: i64, now_ms: i64) -> i64 {
    ((expires_at_ms - now_ms) as f64 / 1000.0).ceil().max(0.0) as i64
}

/// The time left until `until_ms` as `m:ss`, ticking with the page's clock: one closure type for
/// every countdown (see `i18n::tr`).
fn countdown(clock_ms: RwSignal<i64>, until_ms: i64) -> impl Fn() -> String + Copy + Send + Sync {
    move || clock_text(seconds_left(until_ms, clock_ms.get()))
}

/// A list of the page's texts as `<li>`s in the current language: one closure type for every
/// such list (see `i18n::tr`).
fn text_items(
    locale: RwSignal<Locale>,
    pick: fn(&'static Strings) -> &'static [&'static str; 4],
) -> impl Fn() -> Vec<TextItem> + Copy + Send + Sync {
    move || {
        pick(locale.get().strings())
            .iter()
            .map(|line| leptos::html::li().child(*line))
            .collect()
    }
}

/// `<li>` with one of the page's texts.
type TextItem = leptos::html::HtmlElement<leptos::html::Li, (), (&'static str,)>;

/// One text or another by `flag`, in the current language (see `i18n::tr`).
fn tr_either(
    locale: RwSignal<Locale>,
    flag: RwSignal<bool>,
    yes: fn(&'static Strings) -> &'static str,
    no: fn(&'static Strings) -> &'static str,
) -> impl Fn() -> &'static str + Copy + Send + Sync {
    move || {
        let s = locale.get().strings();
        if flag.get() {
            yes(s)
        } else {
            no(s)
        }
    }
}

/// A wait as `m:ss` (or `h:mm:ss`), the same in both languages.
fn clock_text(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[component]
fn LinkPanel(
    status: RwSignal<OnboardingStatus>,
    token: StoredValue<String>,
    phone_mode: RwSignal<bool>,
    clock_ms: RwSignal<i64>,
    call: PageAction,
) -> impl IntoView {
    let locale = use_locale();
    let s = move || locale.get().strings();
    let new_qr_button = move || {
        view! {
            <ServerForm call path=RestartLinking::PATH>
                <input type="hidden" name="token" value=token.get_value() />
                <button type="submit" data-testid="new-qr">{tr(locale, |s| s.new_qr)}</button>
            </ServerForm>
        }
    };
    let qr_view = move || {
        let st = status.get();
        match st.link {
        LinkState::Qr { seq, code, expires_at_ms } => view! {
            <div class="qr-box" data-qr-seq=seq>
                <QrImage code matrix=st.qr label=s().qr_alt />
                <p class="countdown" data-testid="qr-countdown">
                    {tr(locale, |s| s.qr_valid_for)} " "
                    <span>{move || seconds_left(expires_at_ms, clock_ms.get())}</span> " " {tr(locale, |s| s.seconds_short)}
                </p>
            </div>
            <ol class="instructions">
                {text_items(locale, |s| &s.qr_instructions)}
            </ol>
        }
        .into_any(),
        LinkState::QrExpired => view! {
            <div class="expired" data-testid="qr-expired">
                <p>{tr(locale, |s| s.qr_expired)}</p>
                {new_qr_button()}
            </div>
        }
        .into_any(),
        LinkState::LoggedOut => view! {
            <div class="expired" data-testid="logged-out">
                <p>{tr(locale, |s| s.logged_out)}</p>
                {new_qr_button()}
            </div>
        }
        .into_any(),
        LinkState::Failed { reason, retry_at_ms } => view! {
            <div class="expired" data-testid="link-failed">
                <h3>{tr(locale, |s| s.failed_heading)}</h3>
                <p>{tr(locale, |s| s.failed_text)} " "
                    <span data-testid="retry-countdown">{countdown(clock_ms, retry_at_ms)}</span>"."</p>
                <p class="muted">{reason.clone()}</p>
                <ServerForm call path=RestartLinking::PATH>
                    <input type="hidden" name="token" value=token.get_value() />
                    <button type="submit" data-testid="retry-now">{tr(locale, |s| s.retry_now)}</button>
                </ServerForm>
            </div>
        }
        .into_any(),
        LinkState::Replaced { .. } => view! {
            <div class="expired" data-testid="link-replaced">
                <h3>{tr(locale, |s| s.replaced_heading)}</h3>
                <p>{tr(locale, |s| s.replaced_text)}</p>
                <ServerForm call path=RestartLinking::PATH>
                    <input type="hidden" name="token" value=token.get_value() />
                    <button type="submit" data-testid="take-back">{tr(locale, |s| s.take_back)}</button>
                </ServerForm>
            </div>
        }
        .into_any(),
        LinkState::Banned { until_ms, .. } => view! {
            <div class="expired" data-testid="link-banned">
                <h3>{tr(locale, |s| s.banned_heading)}</h3>
                {match until_ms {
                    Some(until_ms) => view! {
                        <p>{tr(locale, |s| s.banned_until)} " "
                            <span data-testid="ban-countdown">{countdown(clock_ms, until_ms)}</span>"."</p>
                    }.into_any(),
                    None => view! { <p>{tr(locale, |s| s.banned_no_expiry)}</p> }.into_any(),
                }}
            </div>
        }
        .into_any(),
        LinkState::Pairing { .. } => view! { <PairingCode status clock_ms /> }.into_any(),
        LinkState::Idle | LinkState::Starting | LinkState::Linked { .. } => {
            view! { <p class="waiting" data-testid="qr-waiting">{tr(locale, |s| s.qr_waiting)}</p> }.into_any()
        }
    }
    };
    let phone_view = move || {
        let pairing = matches!(status.get().link, LinkState::Pairing { .. });
        view! {
            {pairing.then(|| view! { <PairingCode status clock_ms /> })}
            <ServerForm call path=RequestPairingCode::PATH attr:class="phone-form">
                <input type="hidden" name="token" value=token.get_value() />
                <label for="phone">{tr(locale, |s| s.phone_label)}</label>
                <input id="phone" name="phone" type="tel" inputmode="tel" autocomplete="tel"
                    required placeholder="+7 999 000-99-00" data-testid="phone-input" />
                <small>{tr(locale, |s| s.phone_hint)}</small>
                <button type="submit" data-testid="get-pairing-code">{tr(locale, |s| s.get_code)}</button>
            </ServerForm>
        }
    };
    view! {
        <div class="link-panel">
            <h2>{tr_either(locale, phone_mode, |s| s.pairing_heading, |s| s.qr_heading)}</h2>
            {move || if phone_mode.get() { phone_view().into_any() } else { qr_view().into_any() }}
            {move || (!matches!(status.get().link, LinkState::Replaced { .. } | LinkState::Banned { .. })).then(|| view! {
                <button type="button" class="link-button" data-testid="switch-link-mode"
                    on:click=move |_| phone_mode.update(|m| *m = !*m)>
                    {tr_either(locale, phone_mode, |s| s.use_qr, |s| s.use_phone_number)}
                </button>
            })}
        </div>
    }
}

#[component]
fn PairingCode(status: RwSignal<OnboardingStatus>, clock_ms: RwSignal<i64>) -> impl IntoView {
    let locale = use_locale();
    let s = move || locale.get().strings();
    move || match status.get().link {
        LinkState::Pairing {
            code,
            expires_at_ms,
            ..
        } => {
            let left = move || seconds_left(expires_at_ms, clock_ms.get());
            Some(view! {
                <div class="pairing" data-testid="pairing">
                    <p class="pairing-code" data-testid="pairing-code" aria-label=code.clone()>{code.clone()}</p>
                    <p class="countdown">
                        {move || if left() > 0 { s().pairing_valid_for } else { s().pairing_expired }} " "
                        {move || (left() > 0).then(|| format!("{} {}", left(), s().seconds_short))}
                    </p>
                    <div class="pairing-steps">
                        <div>
                            <h3>{tr(locale, |s| s.iphone)}</h3>
                            <ol>{text_items(locale, |s| &s.pairing_steps_iphone)}</ol>
                        </div>
                        <div>
                            <h3>{tr(locale, |s| s.android)}</h3>
                            <ol>{text_items(locale, |s| &s.pairing_steps_android)}</ol>
                        </div>
                    </div>
                </div>
            })
        }
        _ => None,
    }
}

#[component]
fn ActivationPanel(
    status: RwSignal<OnboardingStatus>,
    token: StoredValue<String>,
    call: PageAction,
) -> impl IntoView {
    let locale = use_locale();
    let activate_form = move || {
        view! {
            <ServerForm call path=ActivateIntegration::PATH>
                <input type="hidden" name="token" value=token.get_value() />
                <button type="submit" data-testid="activate">{tr(locale, |s| s.activate)}</button>
            </ServerForm>
        }
    };
    let retry_form = move || {
        view! {
            <ServerForm call path=RetryActivation::PATH>
                <input type="hidden" name="token" value=token.get_value() />
                <button type="submit" data-testid="retry-activation">{tr(locale, |s| s.retry_activation)}</button>
            </ServerForm>
        }
    };
    move || {
        let st = status.get();
        let linked = st.link.is_linked();
        match st.activation {
            ActivationState::NotStarted if linked => view! {
                <div class="activation" data-testid="activation">
                    <p>{tr(locale, |s| s.activating)}</p>
                    {activate_form()}
                </div>
            }
            .into_any(),
            ActivationState::NotStarted => view! {
                <p class="activation muted" data-testid="activation">{tr(locale, |s| s.activation_waiting)}</p>
            }
            .into_any(),
            ActivationState::Activating { attempts, last_error } => view! {
                <div class="activation" data-testid="activation">
                    <p><span class="spinner" aria-hidden="true"></span>{tr(locale, |s| s.activating)}</p>
                    {(attempts > 0).then(|| view! {
                        <p class="muted" data-testid="activation-attempts">{tr(locale, |s| s.activation_attempts)} " " {attempts}
                            {last_error.clone().map(|e| format!(" — {e}"))}</p>
                    })}
                </div>
            }
            .into_any(),
            ActivationState::Active => view! {
                <div class="activation success" data-testid="activation-active">
                    <h2>{tr(locale, |s| s.active_heading)}</h2>
                    <p>{tr(locale, |s| s.active_text)}</p>
                </div>
            }
            .into_any(),
            ActivationState::Failed { reason } => view! {
                <div class="activation failure" role="alert" data-testid="activation-failed">
                    <p><strong>{tr(locale, |s| s.activation_failed)}</strong> " " {reason.clone()}</p>
                    <p>{tr(locale, |s| s.activation_failed_next)}</p>
                    {linked.then(retry_form)}
                </div>
            }
            .into_any(),
            ActivationState::Frozen => view! {
                <div class="activation warning" data-testid="activation-frozen">
                    <p>{tr(locale, |s| s.frozen)}</p>
                    {st.marketplace_url.clone().map(|url| view! {
                        <p><a href=url target="_top" rel="noopener" data-testid="marketplace-card">{tr(locale, |s| s.marketplace_card)}</a></p>
                    })}
                </div>
            }
            .into_any(),
            ActivationState::Uninstalled => view! {
                <p class="activation warning" data-testid="activation-uninstalled">{tr(locale, |s| s.uninstalled)}</p>
            }
            .into_any(),
        }
    }
}

/// The linked WhatsApp's own controls: a test message, and disconnecting (confirmed first).
#[component]
fn ManagePanel(
    status: RwSignal<OnboardingStatus>,
    token: StoredValue<String>,
    call: PageAction,
) -> impl IntoView {
    let locale = use_locale();
    let s = move || locale.get().strings();
    let confirming = RwSignal::new(false);
    view! {
        <section class="manage" data-testid="manage-whatsapp">
            <h2>{tr(locale, |s| s.manage_heading)}</h2>
            <h3>{tr(locale, |s| s.test_heading)}</h3>
            <ServerForm call path=SendTestMessage::PATH attr:class="phone-form">
                <input type="hidden" name="token" value=token.get_value() />
                <label for="test-phone">{tr(locale, |s| s.test_phone_label)}</label>
                <input id="test-phone" name="phone" type="tel" inputmode="tel" autocomplete="tel"
                    placeholder="+7 999 000-99-00" data-testid="test-phone" />
                <small>{tr(locale, |s| s.test_phone_hint)}</small>
                <button type="submit" data-testid="send-test-message">{tr(locale, |s| s.send_test)}</button>
            </ServerForm>
            {move || status.get().test_message.map(|sent| view! {
                <p class="muted" data-testid="test-message-status" data-status=sent.status.name()>
                    {tr(locale, |s| s.test_sent_to)} " " {sent.to.display()} ": " <strong>{move || s().delivery(sent.status)}</strong>
                </p>
            })}
            {move || if confirming.get() {
                view! {
                    <div class="confirm" role="alertdialog" data-testid="disconnect-confirm">
                        <p>{tr(locale, |s| s.disconnect_question)}</p>
                        <div class="actions">
                            <ServerForm call path=DisconnectWhatsapp::PATH>
                                <input type="hidden" name="token" value=token.get_value() />
                                <button type="submit" class="danger" data-testid="disconnect-yes">{tr(locale, |s| s.disconnect_yes)}</button>
                            </ServerForm>
                            <button type="button" class="secondary" data-testid="disconnect-cancel"
                                on:click=move |_| confirming.set(false)>{tr(locale, |s| s.cancel)}</button>
                        </div>
                    </div>
                }.into_any()
            } else {
                view! {
                    <button type="button" class="secondary" data-testid="disconnect"
                        on:click=move |_| confirming.set(true)>{tr(locale, |s| s.disconnect)}</button>
                }.into_any()
            }}
        </section>
    }
}

#[component]
fn ChannelBadge(channel: RwSignal<Channel>) -> impl IntoView {
    let locale = use_locale();
    move || {
        match channel.get() {
        Channel::Connecting => view! { <p class="channel" data-testid="channel"></p> }.into_any(),
        Channel::Live => view! { <p class="channel live" data-testid="channel">{tr(locale, |s| s.live_channel)}</p> }.into_any(),
        Channel::Polling => view! { <p class="channel polling" data-testid="channel">{tr(locale, |s| s.live_polling)}</p> }.into_any(),
        Channel::Lost => view! {
            <div class="channel lost" role="alert" data-testid="connection-lost">
                <p>{tr(locale, |s| s.connection_lost)}</p>
                <button type="button" data-testid="retry-connection" on:click=move |_| channel.set(Channel::Polling)>
                    {tr(locale, |s| s.retry)}
                </button>
            </div>
        }
        .into_any(),
    }
    }
}

/// A call of one of the onboarding page's server functions: its path and its arguments as its
/// form posts them (url-encoded fields). Only the browser sends one.
#[derive(Clone)]
#[cfg_attr(not(feature = "browser"), allow(dead_code))]
struct FormCall {
    path: &'static str,
    body: String,
}

/// The page's actions: any of its server functions, called with a form's fields.
type PageAction = Action<FormCall, Result<OnboardingStatus, AppError>>;

impl FormCall {
    /// A call whose only argument is the salon's token.
    fn with_token(path: &'static str, token: &str) -> Self {
        #[cfg(feature = "browser")]
        let body = crate::browser::form_body(&[("token", token)]);
        #[cfg(not(feature = "browser"))]
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        FormCall { path, body }
    }

    /// Calls the server function, through server_fn's client (`browser::call_onboarding`). Only
    /// the browser dispatches the page's actions (a submit or an effect); the server's render
    /// never does.
    fn run(self) -> impl std::future::Future<Output = Result<OnboardingStatus, AppError>> + Send {
        #[cfg(feature = "browser")]
        return crate::browser::call_onboarding(self.path, self.body);
        #[cfg(not(feature = "browser"))]
        return async move {
            let _ = self;
            Err(AppError::Unavailable(
                "the page's actions are called from the browser".into(),
            ))
        };
    }
}

/// The salon's status for the page's first render: the server function runs in place on the
/// server; in the browser (the client-side-rendered build) it is the page's one call.
fn load_status(
    token: String,
) -> impl std::future::Future<Output = Result<OnboardingStatus, AppError>> + Send {
    #[cfg(feature = "browser")]
    return FormCall::with_token(GetOnboardingStatus::PATH, &token).run();
    #[cfg(not(feature = "browser"))]
    return crate::api::get_onboarding_status(token);
}

/// `<ActionForm>` for this page's actions, without leptos's form reader and without a typed
/// action per server function: the same `<form action=… method="post">` (which works before the
/// WASM is there), and on submit the form's own fields, url-encoded as the browser would post
/// them, sent to the function at `path` through the page's one [`PageAction`]. `ActionForm` reads
/// a form into any arguments through serde_qs's generic reader, compiled once per action (22 KB
/// gzip of the admin's first page), and a `ServerAction` per function compiled its reactive state
/// and its typed request once per function (docs/design.md, "A lighter page").
#[component]
fn ServerForm(call: PageAction, path: &'static str, children: Children) -> impl IntoView {
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        if ev.default_prevented() {
            return;
        }
        #[cfg(feature = "browser")]
        {
            use leptos::wasm_bindgen::JsCast;
            let body = ev
                .target()
                .and_then(|target| target.dyn_into::<leptos::web_sys::HtmlFormElement>().ok())
                .and_then(|form| crate::browser::form_element_body(&form));
            // A form whose fields cannot be read is left to the browser's own submission.
            if let Some(body) = body {
                ev.prevent_default();
                call.dispatch(FormCall { path, body });
            }
        }
        // The server renders the form; only the browser submits it.
        #[cfg(not(feature = "browser"))]
        let _ = call;
    };
    leptos::html::form()
        .action(path)
        .method("post")
        .on(leptos::ev::submit, on_submit)
        .child(children())
}
