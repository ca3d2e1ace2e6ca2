//! The domain: what a salon's integration can be and how it may change, the callback outbox's
//! states, and the secrets we hand out. No I/O and no framework types: the store, the stages and
//! the HTTP layer all build on this, and nothing here knows about them.
//!
//! A status is a type here and a string only in the database column; the allowed transitions are
//! code ([`SalonStatus::can_become`]), and the store turns each into the guard of its `UPDATE`.

pub mod booking;
mod outbox;
mod salon_status;
mod sealing;
mod secrets;

pub use outbox::{AttemptOutcome, CallbackPurpose, OutboxStatus};
pub use salon_status::{SalonStatus, TransitionRefused, UnknownStatus};
pub use sealing::{CredentialKeys, KeyListError, OpenError, RowContext, Sealed};
pub use secrets::{sha256_hex, ApiKey, WebhookSecret};
