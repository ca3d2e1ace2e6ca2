//! The HTTP layer, on top of the stages: the shared state handlers extract their part from
//! (`AppState`), the routes of each stage (`router`), the layers every response passes through
//! (`layers`), the onboarding page's gate and the small pages (`pages`), and the errors at the
//! boundary (`error`).

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

/// What handlers extract their part from (`State<EntryService>`, `State<Webhooks>`, …).
#[derive(Clone, FromRef)]
pub struct AppState {
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

/// The embedded sandbox's bound origin, where `/demo` leads.
#[derive(Clone)]
pub struct SandboxUrl(pub String);
