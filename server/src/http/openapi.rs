//! The API document: every HTTP route of the router that a program (YClients, a monitor, nginx,
//! an operator's tools) calls, described with `utoipa` and served as OpenAPI 3 JSON at
//! [`DOCUMENT_PATH`]. The Leptos server functions are listed from their own registry (method,
//! path, form-encoded arguments): their typed signatures are the Rust functions in
//! `app/src/api.rs` and `app/src/ops.rs`.
//!
//! The functions below carry the descriptions only (`#[utoipa::path]`); the handlers are in the
//! stage modules beside this one. `server/tests/api/openapi.rs` checks that every route the
//! router declares (`route_table`) is here with its method, and that the document is valid
//! OpenAPI 3 whose references resolve.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi as Document, ResponseBuilder, Type};
use utoipa::{OpenApi, ToSchema};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/marketplace/api/openapi.json";

/// `GET /marketplace/api/openapi.json`.
pub async fn document() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        serde_json::to_string_pretty(&api_document()).unwrap_or_else(|_| "{}".to_owned())
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
}

/// The whole document: the described routes and the server functions.
pub fn api_document() -> Document {
    let mut document = ApiDoc::openapi();
    let mut functions: Vec<_> = leptos::server_fn::axum::server_fn_paths().collect();
    functions.sort();
    for (path, method) in functions {
        let Some(method) = http_method(&method) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let form = ContentBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Object).build()))
            .build();
        let operation = OperationBuilder::new()
            .tag("server functions")
            .operation_id(Some(format!("server_fn_{}", path.trim_start_matches('/').replace(['/', '-'], "_"))))
            .summary(Some(format!("Leptos server function `{name}`")))
            .description(Some(
                "A typed server function of the page (its Rust signature in app/src/api.rs or \
                 app/src/ops.rs): the arguments as form fields (application/x-www-form-urlencoded), \
                 the answer JSON. The onboarding functions take the page's token as the `token` \
                 argument (401 without a valid one); the console's need the operator's session \
                 cookie (401). A refusal is a 4xx (400 bad argument, 409 not in this state, 429 \
                 with Retry-After) whose body is the server function error's text, never a 500.",
            ))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/x-www-form-urlencoded", form)
                    .build(),
            ))
            .response("200", ResponseBuilder::new().description("The function's result (JSON)."))
            .response(
                "400",
                ResponseBuilder::new().description("An argument is missing or malformed."),
            )
            .response(
                "401",
                ResponseBuilder::new()
                    .description("No valid onboarding token (or, for `ops/…`, no operator session)."),
            )
            .build();
        document
            .paths
            .add_path_operation(path, vec![method], operation);
    }
    document
}

fn http_method(method: &http::Method) -> Option<HttpMethod> {
    Some(match *method {
        http::Method::GET => HttpMethod::Get,
        http::Method::POST => HttpMethod::Post,
        http::Method::PUT => HttpMethod::Put,
        http::Method::DELETE => HttpMethod::Delete,
        http::Method::PATCH => HttpMethod::Patch,
        _ => return None,
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AI Admin Connect",
        description = "The YClients-marketplace front door of AI Admin: the redirect YClients \
            opens, the onboarding page and its live channel, YClients' webhooks, health, metrics, \
            the operator's console. JSON errors are `{\"success\": false, \"error\": \"…\"}`; \
            pages a person reads (the redirect's refusals, the onboarding page's token gate) are \
            HTML in the admin's language (Russian by default, English with `Accept-Language: en`).",
        license(name = "UNLICENSED"),
    ),
    paths(
        yclients_redirect,
        home_page,
        onboarding_page,
        salon_events,
        session_status,
        openapi_document,
        lifecycle_webhook,
        entity_webhook,
        health,
        metrics,
        ops_sign_in_page,
        ops_sign_in,
        ops_sign_out,
        ops_salons_page,
        ops_salon_page,
        ops_action,
        ops_salon_events,
        demo,
        dev_phone,
        dev_phone_scan,
        dev_phone_pair,
        dev_phone_unlink,
        dev_phone_drop,
        dev_phone_replace,
        dev_phone_ban,
        dev_phone_silence,
        dev_phone_messages,
        dev_phone_reply,
    ),
    components(schemas(
        ApiErrorBody,
        WebhookAnswer,
        crate::webhooks::LifecycleWebhook,
        crate::webhooks::EntityWebhook,
        StatusReport,
        QrInfo,
        PairingInfo,
        ActivationInfo,
        TestMessageInfo,
        HealthReport,
        SignInForm,
        CsrfForm,
    )),
    tags(
        (name = "marketplace", description = "What YClients opens in the admin's browser."),
        (name = "onboarding", description = "The onboarding page and what keeps it live."),
        (name = "webhooks", description = "YClients' webhooks."),
        (name = "operations", description = "Health, metrics and this document."),
        (name = "console", description = "The operator's console (`/ops`): every path but sign-in answers `303 /ops/login` without a session cookie."),
        (name = "development", description = "Only with `WHATSAPP_BACKEND=simulator` (`/dev/phone`) or the `demo` build (`/demo`)."),
        (name = "server functions", description = "Leptos server functions, listed from their registry."),
    ),
)]
struct ApiDoc;

/// A JSON refusal: a 4xx whose `error` says what to change, or a 503 to retry.
#[derive(ToSchema)]
#[schema(example = json!({"success": false, "error": "missing onboarding token (Authorization: Bearer …)"}))]
#[allow(dead_code)]
struct ApiErrorBody {
    /// Always `false`.
    success: bool,
    /// What was wrong, in English, for a developer.
    error: String,
}

/// A webhook stored (a 2xx means "on disk").
#[derive(ToSchema)]
#[allow(dead_code)]
struct WebhookAnswer {
    success: bool,
    /// Entity webhooks only: `true` when this event was already stored (nothing changed).
    duplicate: Option<bool>,
}

/// The QR being shown (its image is on the page, not here).
#[derive(ToSchema)]
#[allow(dead_code)]
struct QrInfo {
    seq: u64,
    /// Unix time, milliseconds.
    expires_at: i64,
}

/// A pair code to type on the phone.
#[derive(ToSchema)]
#[allow(dead_code)]
struct PairingInfo {
    code: String,
    /// Masked: `+7 999 ***-**-22`.
    phone: String,
    expires_at: i64,
}

/// Where the activation (the callback to YClients) stands.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ActivationInfo {
    /// `not_started`, `activating`, `active`, `failed`, `frozen`, `uninstalled`.
    state: String,
    attempts: Option<u32>,
    last_error: Option<String>,
    reason: Option<String>,
}

/// The last test message and how far it got.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TestMessageInfo {
    to: String,
    /// `sending`, `sent`, `delivered`, `read`, `failed`.
    status: String,
    sent_at: i64,
}

/// The original's status answer. Every phone number is masked.
#[derive(ToSchema)]
#[allow(dead_code)]
struct StatusReport {
    /// The WhatsApp link's state: `starting`, `qr`, `pairing`, `linked`, `failed`, …
    status: String,
    connected: bool,
    phone: Option<String>,
    qr: Option<QrInfo>,
    pairing: Option<PairingInfo>,
    activation: ActivationInfo,
    linked_other_number: Option<String>,
    number_change_from: Option<String>,
    test_message: Option<TestMessageInfo>,
    /// The typed link state as the page gets it (a retry time, a ban's end).
    #[schema(value_type = Object)]
    link: serde_json::Value,
    /// Grows with every change; the live channel's event id.
    version: u64,
}

/// Whether the service is usable, and why not. Never a secret.
#[derive(ToSchema)]
#[allow(dead_code)]
struct HealthReport {
    /// `ok`, `degraded` (YClients not configured, failed WhatsApp sessions, a lifecycle event
    /// given up, the bus not hearing the other instances) or `down` (the database is
    /// unreachable: 503).
    status: String,
    version: String,
    /// `{reachable, latency_ms}` or `{reachable: false, error}`.
    #[schema(value_type = Object)]
    database: serde_json::Value,
    /// `{configured, problem, api_url}`.
    #[schema(value_type = Object)]
    yclients: serde_json::Value,
    /// Sessions by state, zombies reconnected, this instance's id as the owner of session leases
    /// and the leases it lost, salons active in YClients by WhatsApp state,
    /// `active_needing_attention`.
    #[schema(value_type = Object)]
    whatsapp: serde_json::Value,
    #[schema(value_type = Object)]
    activation_outbox: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    lifecycle_inbox: Option<serde_json::Value>,
    live_subscribers: u64,
    /// The event bus: `{kind, listening, reconnects, notify_failures}`; `kind` is `in_process`
    /// (SQLite, one instance) or `postgres` (`LISTEN/NOTIFY`, several instances).
    #[schema(value_type = Object)]
    bus: serde_json::Value,
}

/// The console's sign-in form.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SignInForm {
    name: String,
    password: String,
}

/// A console form: the session's CSRF token (rendered into the page's forms).
#[derive(ToSchema)]
#[allow(dead_code)]
struct CsrfForm {
    csrf: String,
    /// `retry-lifecycle` only: the lifecycle event to retry.
    event_id: Option<String>,
    /// `release-connected-user` only: the YClients user id to hand the salon over to.
    to_user: Option<String>,
}

/// YClients' Registration Redirect URL.
#[utoipa::path(
    get,
    path = "/auth/yclients/redirect",
    tag = "marketplace",
    description = "YClients opens this when the admin presses «Подключить». The signature covers \
        `user_data`, not the branch, so the installation in the branch is asked of YClients before \
        anything is stored. Refusals are HTML pages in the admin's language (`Accept-Language`). \
        Rate limited per client address.",
    params(
        ("salon_id" = Option<i64>, Query, description = "The branch; also `salon_ids[0]`, `salon_ids[]`, `salon_ids=1,2` (several → a branch picker; at most 50)."),
        ("user_data" = Option<String>, Query, description = "Base64 JSON of the YClients user."),
        ("user_data_sign" = Option<String>, Query, description = "HMAC-SHA256 (hex) of the decoded `user_data` with the partner token."),
    ),
    responses(
        (status = 303, description = "To `/marketplace/onboarding?token=…`.", headers(("Location" = String))),
        (status = 200, description = "Several installing branches: the branch picker (HTML).", content_type = "text/html"),
        (status = 400, description = "«Неверная ссылка подключения»: no `salon_id`, a bad branch id, damaged `user_data` (not base64 / not JSON / not an object), more than 50 branches.", content_type = "text/html"),
        (status = 403, description = "«Доступ не подтверждён»: the signature is wrong or missing; or the app is not installed in that branch (press «Подключить» again).", content_type = "text/html"),
        (status = 409, description = "The installation is paused (frozen) in YClients; the page links to the app's card.", content_type = "text/html"),
        (status = 414, description = "«Ссылка повреждена»: the query is over 8 KiB.", content_type = "text/html"),
        (status = 429, description = "Too many redirects from this address; `Retry-After`.", content_type = "text/html", headers(("Retry-After" = u64))),
        (status = 503, description = "YClients cannot be asked (a page with «Повторить»), the database is unavailable, or the partner token / application id are not configured.", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn yclients_redirect() {}

/// The home page.
#[utoipa::path(
    get,
    path = "/",
    tag = "marketplace",
    responses((status = 200, description = "What the service is, and where connecting starts (HTML).", content_type = "text/html")),
)]
#[allow(dead_code)]
fn home_page() {}

/// The onboarding page.
#[utoipa::path(
    get,
    path = "/marketplace/onboarding",
    tag = "onboarding",
    description = "Server-rendered with the QR in the first HTML, then hydrated. The token leaves \
        the address bar once the page runs.",
    params(
        ("token" = String, Query, description = "The onboarding token from the redirect (an HS256 JWT, one salon, one hour)."),
        ("lang" = Option<String>, Query, description = "`ru` or `en` (else `Accept-Language`)."),
    ),
    responses(
        (status = 200, description = "The page (HTML, `Cache-Control: no-store`).", content_type = "text/html"),
        (status = 401, description = "«Ссылка недействительна» (no or a bad token), «Ссылка устарела» (expired), «Ссылка больше не действует» (the app was removed or installed again).", content_type = "text/html"),
        (status = 503, description = "«Сервис временно недоступен»: the token cannot be checked now.", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn onboarding_page() {}

/// The live channel.
#[utoipa::path(
    get,
    path = "/marketplace/api/events",
    tag = "onboarding",
    description = "Server-sent events for one salon: `snapshot` first, then `qr-update`, \
        `pairing-code`, `whatsapp-connected`, `whatsapp-state`, `activation-update` (each with the \
        full status as JSON, its `id` the status version, so `Last-Event-ID` resumes) and \
        `ping`. The stream ends when the installation is removed or the server stops. \
        `X-Accel-Buffering: no`.",
    params(
        ("token" = Option<String>, Query, description = "The onboarding token (EventSource cannot send headers); or `Authorization: Bearer …`."),
        ("Authorization" = Option<String>, Header, description = "`Bearer <onboarding token>`."),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this version."),
    ),
    responses(
        (status = 200, description = "The event stream.", content_type = "text/event-stream", body = String),
        (status = 401, description = "`missing onboarding token (Authorization: Bearer …)`, `the onboarding link has expired`, `the onboarding link is not valid`, `the onboarding link was revoked: …`, `unknown salon`.", body = ApiErrorBody),
        (status = 429, description = "`too many live streams for this salon; close another tab or poll` (20 per salon); `Retry-After`.", body = ApiErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "`the onboarding link cannot be checked right now`, or storage unavailable.", body = ApiErrorBody),
    ),
)]
#[allow(dead_code)]
fn salon_events() {}

/// The original's status endpoint.
#[utoipa::path(
    get,
    path = "/marketplace/api/status/{session_id}",
    tag = "onboarding",
    params(
        ("session_id" = String, Path, description = "`company_{salon_id}`: the token's own salon.", example = "company_962302"),
        ("Authorization" = String, Header, description = "`Bearer <onboarding token>` (or `?token=`)."),
    ),
    responses(
        (status = 200, description = "The salon's status; phone numbers masked.", body = StatusReport),
        (status = 400, description = "`sessionId must look like company_{salon_id}`.", body = ApiErrorBody),
        (status = 401, description = "`missing onboarding token (Authorization: Bearer …)`, `the onboarding link has expired`, `the onboarding link is not valid`, `the onboarding link was revoked: …`.", body = ApiErrorBody),
        (status = 403, description = "`this token is for another salon`.", body = ApiErrorBody),
        (status = 404, description = "`unknown salon`.", body = ApiErrorBody),
        (status = 503, description = "Storage unavailable; retry.", body = ApiErrorBody),
    ),
)]
#[allow(dead_code)]
fn session_status() {}

/// This document.
#[utoipa::path(
    get,
    path = "/marketplace/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "OpenAPI 3 (JSON).", content_type = "application/json", body = Object)),
)]
#[allow(dead_code)]
fn openapi_document() {}

/// YClients' lifecycle webhook.
#[utoipa::path(
    post,
    path = "/webhook/yclients",
    tag = "webhooks",
    description = "`uninstall` and `freeze` are applied by the lifecycle inbox (retried, in order \
        per salon); anything else is stored. Authenticated by our partner token and application \
        id (constant time).",
    request_body(content = crate::webhooks::LifecycleWebhook, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored.", body = WebhookAnswer, example = json!({"success": true})),
        (status = 400, description = "`invalid JSON body: …`, or a bad `salon_id`.", body = ApiErrorBody),
        (status = 401, description = "`partner_token or application_id does not match`.", body = ApiErrorBody),
        (status = 413, description = "The body is over 1 MiB (`Connection: close`)."),
        (status = 415, description = "`Content-Type must be application/json`.", body = ApiErrorBody),
        (status = 503, description = "Storage unavailable; YClients retries.", body = ApiErrorBody),
    ),
)]
#[allow(dead_code)]
fn lifecycle_webhook() {}

/// YClients' entity webhooks for one salon.
#[utoipa::path(
    post,
    path = "/webhook/yclients/events/{salon_id}/{secret}",
    tag = "webhooks",
    description = "The URL sent to YClients in the activation callback. The secret is checked \
        (SHA-256, constant time) before the body is read. Stored in group commits: the answer \
        comes after the commit; a duplicate is a 200 that changes nothing.",
    params(
        ("salon_id" = i64, Path, description = "The salon the URL was made for."),
        ("secret" = String, Path, description = "The per-salon secret (192 bits, hex)."),
    ),
    request_body(content = crate::webhooks::EntityWebhook, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (or already stored).", body = WebhookAnswer, example = json!({"success": true, "duplicate": false})),
        (status = 400, description = "`invalid JSON body: …`, `status must be create, update or delete`, `resource_id must be a number or a string`.", body = ApiErrorBody),
        (status = 401, description = "`unknown webhook URL`.", body = ApiErrorBody),
        (status = 403, description = "`company_id does not belong to this webhook URL`.", body = ApiErrorBody),
        (status = 413, description = "The body is over 1 MiB (`Connection: close`)."),
        (status = 415, description = "`Content-Type must be application/json`.", body = ApiErrorBody),
        (status = 503, description = "`too many webhooks at once; retry shortly` (`Retry-After: 1`: the writers' queue is full, in events or in the bytes of their bodies), or the event could not be stored; YClients retries.", body = ApiErrorBody),
    ),
)]
#[allow(dead_code)]
fn entity_webhook() {}

/// Health.
#[utoipa::path(
    get,
    path = "/marketplace/health",
    tag = "operations",
    responses(
        (status = 200, description = "`ok` or `degraded`.", body = HealthReport),
        (status = 503, description = "`down`: the database is unreachable.", body = HealthReport),
    ),
)]
#[allow(dead_code)]
fn health() {}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/marketplace/metrics",
    tag = "operations",
    description = "Prometheus text: counters, histograms (request latency by declared route, the \
        callback round trip, the webhook commit), and gauges read at scrape time.",
    responses((status = 200, description = "Prometheus text format 0.0.4.", content_type = "text/plain", body = String)),
)]
#[allow(dead_code)]
fn metrics() {}

/// The console's sign-in page.
#[utoipa::path(
    get,
    path = "/ops/login",
    tag = "console",
    params(("error" = Option<String>, Query, description = "`1` after a refused sign-in.")),
    responses((status = 200, description = "The sign-in page (HTML).", content_type = "text/html")),
)]
#[allow(dead_code)]
fn ops_sign_in_page() {}

/// Signs an operator in.
#[utoipa::path(
    post,
    path = "/ops/login",
    tag = "console",
    request_body(content = SignInForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to `/ops`, with the session cookie (`HttpOnly`, `SameSite=Strict`). Refused: to `/ops/login?error=1`.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 429, description = "`Слишком много попыток входа. Too many sign-in attempts.` (per client address); `Retry-After`.", content_type = "text/plain", headers(("Retry-After" = u64))),
    ),
)]
#[allow(dead_code)]
fn ops_sign_in() {}

/// Signs the operator out.
#[utoipa::path(
    post,
    path = "/ops/logout",
    tag = "console",
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To `/ops/login`, the cookie cleared; without a session also to `/ops/login`.", headers(("Location" = String))),
        (status = 403, description = "`CSRF token missing or wrong`.", content_type = "text/plain"),
    ),
)]
#[allow(dead_code)]
fn ops_sign_out() {}

/// The salons.
#[utoipa::path(
    get,
    path = "/ops",
    tag = "console",
    params(
        ("q" = Option<String>, Query, description = "Search by id, title or phone."),
        ("status" = Option<String>, Query, description = "Installation status."),
        ("whatsapp" = Option<String>, Query, description = "Recorded WhatsApp state (`linked`, `logged_out`, `failed`, `replaced`, `banned`, `none`)."),
        ("attention" = Option<String>, Query, description = "`1`: only salons needing attention."),
        ("page" = Option<u32>, Query, description = "50 a page, from 1."),
    ),
    responses(
        (status = 200, description = "The list (HTML).", content_type = "text/html"),
        (status = 303, description = "No operator session: to `/ops/login`.", headers(("Location" = String))),
    ),
)]
#[allow(dead_code)]
fn ops_salons_page() {}

/// One salon.
#[utoipa::path(
    get,
    path = "/ops/salons/{id}",
    tag = "console",
    params(
        ("id" = i64, Path, description = "The salon (YClients branch id)."),
        ("confirm" = Option<String>, Query, description = "An action to confirm: shows its form. Only an action the console offers (see the action's path); any other name shows nothing."),
        ("event" = Option<i32>, Query, description = "With `confirm=retry-lifecycle`: the event."),
        ("done" = Option<String>, Query, description = "The action just done (an action's redirect). Shown only with a valid `sig`."),
        ("note" = Option<String>, Query, description = "What the action did. Shown only with a valid `sig`."),
        ("error" = Option<String>, Query, description = "Why the action was refused. Shown only with a valid `sig`."),
        ("at" = Option<i64>, Query, description = "When the action's redirect was issued (Unix seconds)."),
        ("sig" = Option<String>, Query, description = "The server's signature (hex HMAC-SHA256 under the session secret) of `done`, `note`, `error`, `at`, the salon and the operator's session. `done`, `note` and `error` are shown only when it verifies for the session asking, within 5 minutes of `at`; otherwise they are ignored."),
    ),
    responses(
        (status = 200, description = "The salon, its callbacks, lifecycle events, webhooks and audit trail (HTML).", content_type = "text/html"),
        (status = 303, description = "No operator session: to `/ops/login`.", headers(("Location" = String))),
    ),
)]
#[allow(dead_code)]
fn ops_salon_page() {}

/// An operator's action on a salon.
#[utoipa::path(
    post,
    path = "/ops/salons/{id}/actions/{action}",
    tag = "console",
    description = "Written to the salon's audit trail as `operator_action`.",
    params(
        ("id" = i64, Path, description = "The salon."),
        ("action" = String, Path, description = "`requeue-callback`, `retry-lifecycle` (needs `event_id`), `restart`, `stop`, `logout`, `reconcile`, `rotate-webhook-secret`, `release-connected-user` (needs `to_user`)."),
    ),
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Back to `/ops/salons/{id}?done=…&note=…&at=…&sig=…` or `?error=…&at=…&sig=…` (refused in this state), signed for this session and salon; without a session to `/ops/login`.", headers(("Location" = String))),
        (status = 400, description = "`«…» is not a salon id`, `«…» is not an event id`, `unknown action «…»`, `retry-lifecycle needs event_id`.", content_type = "text/plain"),
        (status = 403, description = "`CSRF token missing or wrong`.", content_type = "text/plain"),
        (status = 404, description = "`salon … is not stored`.", content_type = "text/plain"),
        (status = 503, description = "`database unavailable`.", content_type = "text/plain"),
    ),
)]
#[allow(dead_code)]
fn ops_action() {}

/// The console's salon page, live.
#[utoipa::path(
    get,
    path = "/ops/salons/{id}/events",
    tag = "console",
    description = "Server-sent events for the console's salon page: `changed` on connect and on \
        every change of the salon (WhatsApp state, activation, callback, audit), from the same \
        per-salon room as the salon's own page; the page reads the salon again. Only the \
        operator's session cookie opens it. `X-Accel-Buffering: no`.",
    params(("id" = i64, Path, description = "The salon.")),
    responses(
        (status = 200, description = "The event stream.", content_type = "text/event-stream", body = String),
        (status = 303, description = "No operator session (an onboarding token does not count): to `/ops/login`.", headers(("Location" = String))),
        (status = 400, description = "`«…» is not a salon id`.", content_type = "text/plain"),
        (status = 404, description = "`salon … is not stored`.", content_type = "text/plain"),
        (status = 429, description = "Too many live streams for this salon; `Retry-After`.", content_type = "text/plain", headers(("Retry-After" = u64))),
        (status = 503, description = "`database unavailable`.", content_type = "text/plain"),
    ),
)]
#[allow(dead_code)]
fn ops_salon_events() {}

/// The demo marketplace.
#[utoipa::path(
    get,
    path = "/demo",
    tag = "development",
    responses(
        (status = 303, description = "To the embedded sandbox's marketplace.", headers(("Location" = String))),
        (status = 404, description = "«Демо не запущено»: the sandbox is not running.", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn demo() {}

/// The simulated phone.
#[utoipa::path(
    get,
    path = "/dev/phone",
    tag = "development",
    params(
        ("ref" = Option<String>, Query, description = "The QR's reference (the QR encodes this link)."),
        ("salon" = Option<String>, Query, description = "The salon, for the server-side controls."),
    ),
    responses((status = 200, description = "The phone (HTML).", content_type = "text/html")),
)]
#[allow(dead_code)]
fn dev_phone() {}

/// Scans a QR with a number.
#[utoipa::path(
    post,
    path = "/dev/phone/scan",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`reference`, `phone`."),
    responses(
        (status = 200, description = "Linked (HTML).", content_type = "text/html"),
        (status = 400, description = "Not a phone number, or the QR expired / is unknown (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_scan() {}

/// Types a pair code.
#[utoipa::path(
    post,
    path = "/dev/phone/pair",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`code`."),
    responses(
        (status = 200, description = "Linked (HTML).", content_type = "text/html"),
        (status = 400, description = "The code is unknown or expired (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_pair() {}

/// Unlinks the device on the phone.
#[utoipa::path(
    post,
    path = "/dev/phone/unlink",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`salon`."),
    responses(
        (status = 200, description = "Unlinked (HTML).", content_type = "text/html"),
        (status = 400, description = "Not a salon id, or nothing linked (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_unlink() {}

/// WhatsApp's server drops the connection.
#[utoipa::path(
    post,
    path = "/dev/phone/drop",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`salon`."),
    responses(
        (status = 204, description = "Dropped."),
        (status = 400, description = "Not a salon id.", content_type = "text/html"),
        (status = 404, description = "`no open connection for this salon`.", content_type = "text/plain"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_drop() {}

/// WhatsApp Web opened elsewhere with the salon's credentials.
#[utoipa::path(
    post,
    path = "/dev/phone/replace",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`salon`."),
    responses(
        (status = 200, description = "Done (HTML).", content_type = "text/html"),
        (status = 400, description = "Not a salon id (HTML).", content_type = "text/html"),
        (status = 404, description = "«Нет соединения»: no open connection for this salon (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_replace() {}

/// A temporary ban.
#[utoipa::path(
    post,
    path = "/dev/phone/ban",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`salon`, `seconds`."),
    responses(
        (status = 200, description = "Banned (HTML).", content_type = "text/html"),
        (status = 400, description = "Not a salon id or a number of seconds (HTML).", content_type = "text/html"),
        (status = 404, description = "«Нет соединения»: no open connection for this salon (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_ban() {}

/// The socket goes silent.
#[utoipa::path(
    post,
    path = "/dev/phone/silence",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`salon`."),
    responses(
        (status = 200, description = "Silenced (HTML).", content_type = "text/html"),
        (status = 400, description = "Not a salon id (HTML).", content_type = "text/html"),
        (status = 404, description = "«Нет соединения»: no open connection for this salon (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_silence() {}

/// The messages a number received.
#[utoipa::path(
    get,
    path = "/dev/phone/messages",
    tag = "development",
    params(("phone" = String, Query, description = "The number.")),
    responses(
        (status = 200, description = "The messages; opening them sends read receipts (HTML).", content_type = "text/html"),
        (status = 400, description = "Not a phone number (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_messages() {}

/// A client writes to the salon's WhatsApp.
#[utoipa::path(
    post,
    path = "/dev/phone/reply",
    tag = "development",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`salon`, `phone` (the client's number), `text` (1–4096 characters; «СТОП» opts the number out)."),
    responses(
        (status = 200, description = "Sent to the salon (HTML).", content_type = "text/html"),
        (status = 400, description = "Not a salon id, not a phone number, or «Пустое сообщение» (HTML).", content_type = "text/html"),
        (status = 404, description = "No open connection for this salon (HTML).", content_type = "text/html"),
        (status = 503, description = "Storage unavailable (HTML).", content_type = "text/html"),
    ),
)]
#[allow(dead_code)]
fn dev_phone_reply() {}
