//! The routes, one small router per stage, merged in [`app`] with the static files, the 404 page
//! and the layers (`layers.rs`).

use super::layers::{self, Origins};
use super::pages::{demo, not_found};
use super::AppState;

use super::{health, limits, live, ops, phone, webhooks};

use crate::linking::simulator::Simulator;
use app::api::SharedBackend;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// The whole application: every stage's routes, the files of the built site, the layers.
pub fn app(state: AppState, simulator: Option<Simulator>, origins: &Origins) -> Router {
    let site_root = state.leptos_options.site_root.to_string();
    let router = Router::new()
        .merge(entry_routes(&state))
        .merge(onboarding_routes(&state))
        .merge(webhook_routes())
        .merge(ops_routes())
        .merge(ops::routes())
        .merge(dev_routes(simulator))
        .fallback_service(ServeDir::new(site_root).not_found_service(get(not_found).with_state(())))
        .layer(middleware::from_fn_with_state(state.ops.clone(), ops::gate));
    layers::apply(router, &state, origins).with_state(state)
}

/// The marketplace entry: YClients' redirect, rate-limited per client.
fn entry_routes(state: &AppState) -> Router<AppState> {
    let redirect_limit =
        middleware::from_fn_with_state(state.onboarding.limits.clone(), limits::limit_redirect);
    Router::new().route(
        "/auth/yclients/redirect",
        get(super::entry::yclients_redirect).layer(redirect_limit),
    )
}

/// The onboarding page and what keeps it live: the server functions (through the Leptos
/// routes), the SSE stream and the original's status endpoint.
fn onboarding_routes(state: &AppState) -> Router<AppState> {
    let backend: SharedBackend = Arc::new(state.onboarding.clone());
    let console: app::ops::SharedOpsBackend = Arc::new(state.ops.clone());
    let context = move || {
        provide_context(backend.clone());
        provide_context(console.clone());
    };
    let options = state.leptos_options.clone();
    let routes = generate_route_list(app::App);
    Router::new()
        .route(
            "/marketplace/api/events",
            // A reverse proxy (nginx) must pass every event on as it comes, not buffer it.
            get(live::salon_events).layer(SetResponseHeaderLayer::overriding(
                http::HeaderName::from_static("x-accel-buffering"),
                http::HeaderValue::from_static("no"),
            )),
        )
        .route(
            "/marketplace/api/status/{session_id}",
            get(live::session_status),
        )
        .leptos_routes_with_context(state, routes, context, move || app::shell(options.clone()))
}

/// YClients' webhooks: lifecycle and per-salon entity events.
fn webhook_routes() -> Router<AppState> {
    Router::new()
        .route("/webhook/yclients", post(webhooks::receive_lifecycle_event))
        .route(
            "/webhook/yclients/events/{salon_id}/{secret}",
            post(webhooks::receive_entity_event),
        )
}

/// For operators: health and metrics.
fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/marketplace/health", get(health::health))
        .route("/marketplace/metrics", get(health::metrics))
}

/// Development surfaces: `/demo` (answers "not running" without the sandbox) and, with the
/// simulator backend, its phone.
fn dev_routes(simulator: Option<Simulator>) -> Router<AppState> {
    let router = Router::new().route("/demo", get(demo));
    match simulator {
        Some(simulator) => router.merge(phone::routes(simulator)),
        None => router,
    }
}
