//! What only exists in the browser: the live channel (EventSource), the polling fallback, the
//! clock for countdowns, and the address bar.

use crate::api::{AppError, GetOnboardingStatus};
use crate::channel::{Channel, MAX_FAILED_POLLS};
use crate::status::{LiveEventKind, OnboardingStatus};
use futures::future::{select, Either, FutureExt};
use futures::StreamExt;
use gloo_net::eventsource::futures::EventSource;
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use server_fn::ServerFn;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The live channel counts as down when nothing (not even a `ping`) came for this long.
const LIVE_SILENCE_MS: f64 = 25_000.0;
/// Reconnecting the live channel: 1 s, doubling, at most 30 s.
const RECONNECT_BASE: std::time::Duration = std::time::Duration::from_secs(1);
const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

thread_local! {
    static CLOCK_OFFSET_MS: Cell<f64> = const { Cell::new(0.0) };
    static LAST_LIVE_MS: Cell<f64> = const { Cell::new(0.0) };
}

/// Where the API lives: the page's own origin, or `AI_ADMIN_API_URL` baked into the CSR build.
pub fn api_base() -> &'static str {
    option_env!("AI_ADMIN_API_URL").unwrap_or("")
}

pub fn document_lang() -> Option<String> {
    web_sys::window()?
        .document()?
        .document_element()?
        .get_attribute("lang")
}

pub fn set_document_lang(code: &str) {
    if let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ = root.set_attribute("lang", code);
    }
}

/// The address bar's path (`/marketplace/onboarding`).
pub fn location_path() -> Option<String> {
    web_sys::window()?.location().pathname().ok()
}

/// A parameter of the address bar's query, decoded as the browser decodes it (`URLSearchParams`).
pub fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

/// The document's `<title>`, which the server wrote in the page's first language.
pub fn set_document_title(title: &str) {
    if let Some(document) = web_sys::window().and_then(|w| w.document()) {
        document.set_title(title);
    }
}

pub fn mark_hydrated() {
    if let Some(body) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.body())
    {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}

/// Removes `?token=` from the address bar (it stays in memory), so it is not bookmarked,
/// shared in a screenshot or kept in history.
fn strip_token_from_address_bar() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Ok(search) = window.location().search() else {
        return;
    };
    if !search.contains("token=") {
        return;
    }
    let kept: Vec<&str> = search
        .trim_start_matches('?')
        .split('&')
        .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
        .collect();
    let path = window.location().pathname().unwrap_or_default();
    let url = if kept.is_empty() {
        path
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}

/// Calls the onboarding server function at `path` (a `#[server]` function of `crate::api`, which
/// answers with `BrowserJson`) with `body`, its arguments as its form posts them, and reads the
/// answer as server_fn's client does: the same request (`POST`, form-encoded, `Accept:
/// application/json`, through server_fn's fetch with its abort on drop), an `OnboardingStatus` on
/// success, the function's `AppError` for a 4xx or 5xx. Every call of the admin's page goes
/// through this one function: a typed client per server function (and a `ServerAction` per
/// function around it) compiled the same request code once per function (docs/design.md, "A
/// lighter page").
pub fn call_onboarding(
    path: &'static str,
    body: String,
) -> impl std::future::Future<Output = Result<OnboardingStatus, AppError>> + Send {
    use crate::wire::BrowserJsonEncoding;
    use server_fn::client::{browser::BrowserClient, Client};
    use server_fn::codec::PostUrl;
    use server_fn::error::{FromServerFnError, ServerFnErrorErr};
    use server_fn::request::{browser::BrowserRequest, ClientReq};
    use server_fn::response::ClientRes;
    use server_fn::{ContentType, Decodes};
    send_wrapper::SendWrapper::new(async move {
        let request = <BrowserRequest as ClientReq<AppError>>::try_new_post(
            path,
            PostUrl::CONTENT_TYPE,
            BrowserJsonEncoding::CONTENT_TYPE,
            body,
        )?;
        let response = <BrowserClient as Client<AppError>>::send(request).await?;
        let status = ClientRes::<AppError>::status(&response);
        let bytes = ClientRes::<AppError>::try_into_bytes(response).await?;
        if (400..=599).contains(&status) {
            Err(AppError::de(bytes))
        } else {
            BrowserJsonEncoding::decode(bytes).map_err(|error| {
                AppError::from_server_fn_error(ServerFnErrorErr::Deserialization(error.0))
            })
        }
    })
}

/// Fields url-encoded as a form posts them (`URLSearchParams`).
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let Ok(params) = web_sys::UrlSearchParams::new() else {
        return String::new();
    };
    for (name, value) in fields {
        params.append(name, value);
    }
    params.to_string().into()
}

/// A submitted form's fields, url-encoded as the browser posts them without the WASM.
pub fn form_element_body(form: &web_sys::HtmlFormElement) -> Option<String> {
    let data = web_sys::FormData::new_with_form(form).ok()?;
    let params = web_sys::UrlSearchParams::new_with_str_sequence_sequence(&data).ok()?;
    Some(params.to_string().into())
}

/// Corrects countdowns for a client clock that differs from the server's.
pub fn sync_clock(server_time_ms: i64) {
    CLOCK_OFFSET_MS.set(server_time_ms as f64 - js_sys::Date::now());
}

fn server_now_ms() -> i64 {
    (js_sys::Date::now() + CLOCK_OFFSET_MS.get()) as i64
}

/// Follows one salon's state: SSE first, polling whenever SSE is down or silent, a ticking clock
/// for countdowns. Everything stops when the component is cleaned up.
pub fn follow_onboarding(
    token: String,
    apply: impl Fn(OnboardingStatus) + Copy + 'static,
    channel: RwSignal<Channel>,
    clock_ms: RwSignal<i64>,
) {
    sync_clock(clock_ms.get_untracked());
    Effect::new(move |_| strip_token_from_address_bar());

    let (cancel_tx, cancel_rx) = futures::channel::oneshot::channel::<()>();
    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        on_cleanup(move || {
            cancelled.store(true, Ordering::Relaxed);
            drop(cancel_tx);
        });
    }
    let cancel = cancel_rx.map(|_| ()).shared();

    let url = format!(
        "{}/marketplace/api/events?token={}",
        api_base(),
        js_sys::encode_uri_component(&token)
    );
    spawn_local(follow_live_channel(url, apply, channel, cancel));

    // The polling fallback: a request every second while the live channel is not fresh. A new
    // request aborts the one before it (server_fn's fetch aborts when its future is dropped), so a
    // slow answer never lands after a newer one.
    let failures = StoredValue::new(0u32);
    let on_poll = move |result: Result<OnboardingStatus, AppError>| match result {
        Ok(status) => {
            failures.set_value(0);
            if channel.get_untracked() != Channel::Live {
                channel.set(Channel::Polling);
            }
            apply(status);
        }
        Err(_) => {
            let failed = failures.get_value() + 1;
            failures.set_value(failed);
            if failed >= MAX_FAILED_POLLS {
                failures.set_value(0);
                channel.set(Channel::Lost);
            }
        }
    };

    spawn_local(async move {
        let mut in_flight: Option<futures::future::AbortHandle> = None;
        loop {
            TimeoutFuture::new(1_000).await;
            if cancelled.load(Ordering::Relaxed) {
                if let Some(poll) = in_flight.take() {
                    poll.abort();
                }
                return;
            }
            clock_ms.set(server_now_ms());
            let live_fresh = channel.get_untracked() == Channel::Live
                && js_sys::Date::now() - LAST_LIVE_MS.get() < LIVE_SILENCE_MS;
            if !live_fresh && channel.get_untracked() != Channel::Lost {
                if let Some(poll) = in_flight.take() {
                    poll.abort();
                }
                let (request, handle) = futures::future::abortable(call_onboarding(
                    GetOnboardingStatus::PATH,
                    form_body(&[("token", &token)]),
                ));
                in_flight = Some(handle);
                let cancelled = cancelled.clone();
                spawn_local(async move {
                    if let Ok(result) = request.await {
                        if !cancelled.load(Ordering::Relaxed) {
                            on_poll(result);
                        }
                    }
                });
            }
        }
    });
}

async fn follow_live_channel(
    url: String,
    apply: impl Fn(OnboardingStatus) + Copy + 'static,
    channel: RwSignal<Channel>,
    cancel: futures::future::Shared<impl std::future::Future<Output = ()> + Unpin>,
) {
    let names: Vec<&'static str> = LiveEventKind::ALL.iter().map(|k| k.as_str()).collect();
    follow_events(
        url,
        names,
        move |_, data| {
            if let Ok(status) = crate::wire::from_json(&data) {
                apply(status);
            }
        },
        channel,
        cancel,
    )
    .await
}

/// One live channel (EventSource at `url`): `on_event(name, data)` for each event named in
/// `names` (pings are handled here), `channel` kept up to date, reconnects with backoff, until
/// `cancel` resolves. The onboarding page and the operator's console share it.
async fn follow_events(
    url: String,
    names: Vec<&'static str>,
    on_event: impl Fn(&str, String) + 'static,
    channel: RwSignal<Channel>,
    cancel: futures::future::Shared<impl std::future::Future<Output = ()> + Unpin>,
) {
    let mut failures: u32 = 0;
    loop {
        if let Ok(mut source) = EventSource::new(&url) {
            let mut streams = Vec::new();
            for name in names.iter().copied().chain(["ping"]) {
                if let Ok(stream) = source.subscribe(name) {
                    streams.push(stream);
                }
            }
            let mut events = futures::stream::select_all(streams);
            loop {
                match select(events.next(), cancel.clone()).await {
                    Either::Right(_) => {
                        source.close();
                        return;
                    }
                    Either::Left((Some(Ok((name, message))), _)) => {
                        failures = 0;
                        LAST_LIVE_MS.set(js_sys::Date::now());
                        if channel.get_untracked() != Channel::Live {
                            channel.set(Channel::Live);
                        }
                        if name != "ping" {
                            if let Some(data) = message.data().as_string() {
                                on_event(&name, data);
                            }
                        }
                    }
                    Either::Left(_) => break,
                }
            }
            source.close();
        }
        if channel.get_untracked() == Channel::Live {
            channel.set(Channel::Polling);
        }
        let delay = retry_delay::exponential(RECONNECT_BASE, failures, RECONNECT_MAX);
        match select(TimeoutFuture::new(delay.as_millis() as u32), cancel.clone()).await {
            Either::Left(_) => failures += 1,
            Either::Right(_) => return,
        }
    }
}

/// The operator's console follows one salon: `changed()` on every change the server reports
/// over `/ops/salons/{id}/events` (authorised by the session cookie the browser sends with it),
/// until the component is cleaned up. `channel` says whether the page is live.
pub fn follow_ops_salon(salon_id: i64, changed: impl Fn() + 'static, channel: RwSignal<Channel>) {
    let (cancel_tx, cancel_rx) = futures::channel::oneshot::channel::<()>();
    on_cleanup(move || drop(cancel_tx));
    let cancel = cancel_rx.map(|_| ()).shared();
    let url = format!("{}/ops/salons/{salon_id}/events", api_base());
    spawn_local(follow_events(
        url,
        vec!["changed"],
        move |_, _| changed(),
        channel,
        cancel,
    ));
}
