#![recursion_limit = "256"]
//! AI Admin Connect, server side: configuration, database, the YClients client (crate
//! `yclients`) and, with the `demo` feature, the embedded sandbox (crate `yclients-sandbox`), the
//! WhatsApp gateway, and the stages of the flow, each in a module named after it:
//! `entry` → `linking` → `live` → `activation` → `webhooks` → `messages` (booking messages over
//! the salon's WhatsApp), and `installations` (frozen salons
//! resume by themselves).
//!
//! Layers (each imports only those below it): HTTP (`http`: state, routes, layers, pages, errors;
//! `session`'s extractor) → stages → ports (`store`, `bus`, `linking`'s gateway, `yclients`) →
//! `domain`. `startup` builds the whole and runs it; `config` is read once by it.

pub mod activation;
#[cfg(feature = "bench-ceiling")]
pub mod bench_ceiling;
pub mod bus;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod entry;

pub mod http;
pub mod installations;
pub mod instruments;
pub mod limits;
pub mod linking;
pub mod live;
pub mod messages;
pub mod onboarding;
pub mod ops;
pub mod session;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod yclients;
