//! WhatsApp linking: one session per salon, owned by a supervisor task that turns a backend's
//! events into the one lifecycle the page shows (`idle → qr… → linked`, `qr_expired`, `pairing`,
//! `logged_out`, `failed`), persists what must survive restarts, and publishes every change.
//!
//! Ownership: the process holds a salon's session in `sessions`; a second start returns the
//! running one. Across instances a session runs only while its task holds the salon's lease in
//! the database (`store::SessionLease`): renewed inside its expiry, taken over by another
//! instance when its owner dies, and carried by the owner's writes as a fencing token.

pub mod gateway;
pub mod remote;

#[cfg(feature = "whatsapp-web")]
pub mod sealed_backend;
pub mod simulator;
mod supervisor;
#[cfg(feature = "whatsapp-web")]
pub mod web;

pub use gateway::{GatewayError, GatewayEvent, GatewaySession, WhatsAppGateway};
pub use supervisor::{Inbound, Linking, LinkingError, SupervisorPolicy};
