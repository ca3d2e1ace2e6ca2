//! The routes, one small router per stage, merged in [`app`] with the static files, the 404 page
//! and the layers (`layers.rs`). Every route is added through [`Routes`], so [`app`] also returns
//! the list of them that the API document is checked against.

use super::layers::{self, Origins};
use super::pages::{demo, not_found};
use super::route_table::{DeclaredRoute, RouteKind, Routes};
use super::AppState;

use super::{health, limits, live, openapi, ops, phone, webhooks};

use crate::linking::simulator::Simulator;
use app::api::SharedBackend;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// The whole application: every stage's routes, the files of the built site, the layers; and
/// the routes as declared.
pub fn app(
    state: AppState,
    simulator: Option<Simulator>,
    origins: &Origins,
) -> (Router, Vec<DeclaredRoute>) {
    let site_root = state.leptos_options.site_root.to_string();
    let (router, declared) = Routes::new()
        .merge(entry_routes(&state))
        .merge(onboarding_routes(&state))
        .merge(webhook_routes())
        .merge(ops_routes())
        .merge(ops::routes())
        .merge(dev_routes(simulator, &state))
        .into_parts();
    // The site's files keep their names from one release to the next (no content hash), and the
    // main WASM and its split chunks must come from one build: a browser asks again every time
    // (`no-cache`, answered 304 from `Last-Modified` when unchanged) rather than keeping a copy
    // that a new release would mix with new files.
    let site = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        ))
        .service(ServeDir::new(site_root).not_found_service(get(not_found).with_state(())));
    let router = router
        .fallback_service(site)
        .layer(middleware::from_fn_with_state(state.clone(), ops::gate));
    (
        layers::apply(router, &state, origins).with_state(state),
        declared,
    )
}

/// The marketplace entry: YClients' redirect, rate-limited per client.
fn entry_routes(state: &AppState) -> Routes<AppState> {
    let redirect_limit =
        middleware::from_fn_with_state(state.onboarding.limits.clone(), limits::limit_redirect);
    Routes::new().get_with(
        "/auth/yclients/redirect",
        super::entry::yclients_redirect,
        |route| route.layer(redirect_limit),
    )
}

/// The onboarding page and what keeps it live: the server functions (through the Leptos
/// routes), the SSE stream and the original's status endpoint.
fn onboarding_routes(state: &AppState) -> Routes<AppState> {
    let backend: SharedBackend = Arc::new(state.onboarding.clone());
    let console: app::ops::SharedOpsBackend = Arc::new(state.ops.clone());
    let context = move || {
        provide_context(backend.clone());
        provide_context(console.clone());
    };
    let options = state.leptos_options.clone();
    let pages = page_routes();
    // What `leptos_routes_with_context` adds, read from the same sources it reads.
    let declared = leptos_declared(&pages);
    let state = state.clone();
    Routes::new()
        .get_with("/marketplace/api/events", live::salon_events, |route| {
            // A reverse proxy (nginx) must pass every event on as it comes, not buffer it.
            route.layer(SetResponseHeaderLayer::overriding(
                http::HeaderName::from_static("x-accel-buffering"),
                http::HeaderValue::from_static("no"),
            ))
        })
        .get("/marketplace/api/status/{session_id}", live::session_status)
        .get(openapi::DOCUMENT_PATH, openapi::document)
        .extend(
            move |router| {
                router.leptos_routes_with_context(&state, pages, context, move || {
                    app::shell(options.clone())
                })
            },
            declared,
        )
}

/// The Leptos pages' routes, listed once per process. Two apps, one shell: `app::shell` renders
/// the console's for its paths, the admin's otherwise. The admin's app has no router (it picks
/// its page by the path, `app::AdminPage`), so its routes are listed by `app::admin_route_list`;
/// the console's come from its router.
///
/// Listing renders the console's app once under leptos_server's `SuppressResourceLoad`, a process-wide
/// flag: a resource first polled while it is set, in any render of the process, waits forever
/// (leptos-rs/leptos#4773). Listed again for every application built, a page being served by an
/// application already running could stop for good whenever another was built beside it (the
/// two-instance harness, `bench instances`, the test suite). Listed once, the flag is set only
/// before the process's first application can serve a page: every application waits for the list.
fn page_routes() -> Vec<leptos_axum::AxumRouteListing> {
    static PAGES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    PAGES
        .get_or_init(|| {
            let mut pages = app::admin_route_list();
            pages.extend(generate_route_list(app::ConsoleApp));
            pages
        })
        .clone()
}

/// The pages and server functions the Leptos integration registers: the route list it is given
/// (every method of every path), and the server functions' own registry, which it walks.
fn leptos_declared(pages: &[leptos_axum::AxumRouteListing]) -> Vec<DeclaredRoute> {
    let server_functions =
        leptos::server_fn::axum::server_fn_paths().map(|(path, method)| DeclaredRoute {
            method,
            path: path.to_owned(),
            kind: RouteKind::ServerFunction,
        });
    let pages = pages.iter().flat_map(|listing| {
        listing.methods().map(|method| DeclaredRoute {
            method: match method {
                leptos_router::Method::Get => http::Method::GET,
                leptos_router::Method::Post => http::Method::POST,
                leptos_router::Method::Put => http::Method::PUT,
                leptos_router::Method::Delete => http::Method::DELETE,
                leptos_router::Method::Patch => http::Method::PATCH,
            },
            path: listing.path().to_owned(),
            kind: RouteKind::Page,
        })
    });
    server_functions.chain(pages).collect()
}

/// YClients' webhooks: lifecycle and per-salon entity events.
fn webhook_routes() -> Routes<AppState> {
    Routes::new()
        .post("/webhook/yclients", webhooks::receive_lifecycle_event)
        .post(
            "/webhook/yclients/events/{salon_id}/{secret}",
            webhooks::receive_entity_event,
        )
}

/// For operators: health and metrics.
fn ops_routes() -> Routes<AppState> {
    Routes::new()
        .get("/marketplace/health", health::health)
        .get("/marketplace/metrics", health::metrics)
}

/// Development surfaces: `/demo` (answers "not running" without the sandbox) and, with the
/// simulator backend, its phone.
fn dev_routes(simulator: Option<Simulator>, state: &AppState) -> Routes<AppState> {
    let routes = Routes::new().get("/demo", demo);
    match simulator {
        Some(simulator) => routes.merge(phone::routes(simulator, state.onboarding.linking.clone())),
        None => routes,
    }
}
