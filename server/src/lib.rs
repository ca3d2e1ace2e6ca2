//! AI Admin Connect, server side: configuration, database, the YClients client (crate
//! `yclients`) and, with the `demo` feature, the embedded sandbox (crate `yclients-sandbox`), the
//! WhatsApp gateway, and the stages of the flow, each in a module named after it:
//! `entry` → `linking` → `live` → `activation` → `webhooks`.

pub mod activation;
pub mod audit;
pub mod bus;
pub mod config;
pub mod db;
pub mod demo;
pub mod entry;
pub mod error;
pub mod health;
pub mod linking;
pub mod live;
pub mod onboarding;
pub mod session;
pub mod startup;
pub mod telemetry;
pub mod webhooks;
pub mod yclients;
