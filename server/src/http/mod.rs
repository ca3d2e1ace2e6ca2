//! The HTTP layer, on top of the stages: the shared state handlers extract their part from
//! (`AppState`), the routes of each stage (`router`), the layers every response passes through
//! (`layers`), the onboarding page's gate and the small pages (`pages`), and the errors at the
//! boundary (`error`).

pub mod connections;
pub mod entry;
pub mod error;
pub mod health;
pub mod layers;
pub mod lean_sse;
pub mod limits;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod phone;
pub mod route_table;
pub mod router;
pub mod serve;
pub mod session;
pub mod webhooks;

use crate::bus::EventBus;
use crate::entry::EntryService;
use crate::onboarding::OnboardingService;
use crate::session::SessionVerifier;
use crate::store::Store;
use crate::webhooks::Webhooks;
use axum::extract::FromRef;
use health::Health;
use leptos::config::LeptosOptions;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// What handlers extract their part from (`State<EntryService>`, `State<Health>`, …): one
/// `Arc`, because axum clones the router's state for every request (each route's handler and
/// each `from_fn_with_state` layer). Cloning the parts themselves — a dozen services, each a
/// handful of `Arc`s — was a fifth of the machine's CPU under a webhook burst (`perf`, see
/// docs/design.md); now a request's state is one reference count, and an extractor clones only
/// the part it asks for.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

/// The parts of [`AppState`].
pub struct AppParts {
    pub leptos_options: LeptosOptions,
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub store: Store,
    pub verifier: SessionVerifier,
    pub onboarding: OnboardingService,
    pub live: crate::live::LiveHub,
    pub entry: EntryService,
    pub webhooks: Webhooks,
    pub health: Health,
    pub ops: crate::ops::OpsService,
    pub sandbox_url: Option<SandboxUrl>,
    pub instruments: crate::instruments::Instruments,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// `State<Part>` for each part, as `#[derive(FromRef)]` gives a struct of parts.
macro_rules! parts_from_state {
    ($($field:ident: $part:ty),* $(,)?) => {
        $(
            impl FromRef<AppState> for $part {
                fn from_ref(state: &AppState) -> Self {
                    state.0.$field.clone()
                }
            }
        )*
    };
}

parts_from_state! {
    leptos_options: LeptosOptions,
    db: DatabaseConnection,
    bus: EventBus,
    store: Store,
    verifier: SessionVerifier,
    onboarding: OnboardingService,
    live: crate::live::LiveHub,
    entry: EntryService,
    webhooks: Webhooks,
    health: Health,
    ops: crate::ops::OpsService,
    sandbox_url: Option<SandboxUrl>,
    instruments: crate::instruments::Instruments,
}

/// The embedded sandbox's bound origin, where `/demo` leads.
#[derive(Clone)]
pub struct SandboxUrl(pub String);
