//! YClients: the typed API client and the `user_data` signature live in the `yclients` crate
//! (see `shared/yclients-api.md`); re-exported here so `crate::yclients::…` paths keep working.
//! The sandbox is the `yclients-sandbox` crate, reachable only with the `demo` feature
//! (`crate::demo`).

pub use ::yclients::*;
