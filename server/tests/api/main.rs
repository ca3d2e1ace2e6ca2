//! Black-box tests: each spawns the whole application (port 0, its own database — SQLite by
//! default, PostgreSQL when `TEST_DATABASE_URL` is set — the YClients sandbox and the WhatsApp
//! simulator) and talks to it over HTTP.

mod activation;
mod containment;
mod credentials;
mod dev_surfaces;
mod entry;
mod frozen;
mod healing;
mod health;
mod helpers;
mod hostile;
mod instances;
mod lean_sse;
mod limits;
mod linking;
mod live;
mod logs;
mod messages;
mod openapi;
mod ops;
mod pages;
mod routing;
#[path = "../common/run_id.rs"]
mod run_id;
mod shutdown;
mod site_files;
mod trust;
mod webhooks;
