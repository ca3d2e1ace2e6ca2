//! The port to WhatsApp: what the session supervisor needs from a WhatsApp Web backend.
//!
//! Two implementations: `web` (whatsapp-rust, the real protocol) and `simulator` (in-process,
//! for dev, demo and tests). The supervisor owns the lifecycle; a backend only reports what
//! happened through [`GatewayEvent`]s and carries out commands.

use app::domain::{PhoneNumber, SalonId};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a backend reports about one salon's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A QR code to show, valid for `ttl`.
    Qr { code: String, ttl: Duration },
    /// The backend gave up rotating QR codes; a new `open` is needed for more.
    QrExhausted,
    /// The phone accepted the link (QR scanned or pair code typed).
    Linked { phone: PhoneNumber },
    /// Connected with stored credentials (after a restart or a reconnect).
    Connected { phone: Option<PhoneNumber> },
    /// The phone removed this linked device; the credentials are no longer valid.
    LoggedOut,
    /// The connection dropped unexpectedly; the supervisor decides whether to reconnect.
    Disconnected { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("WhatsApp backend is unavailable: {0}")]
    Unavailable(String),
    #[error("pair code request refused: {0}")]
    PairCodeRefused(String),
    #[error("credential store failed: {0}")]
    Store(String),
    #[error("the session is closed")]
    Closed,
}

/// A WhatsApp Web backend. One device (linked companion) per salon.
#[async_trait::async_trait]
pub trait WhatsAppGateway: Send + Sync + 'static {
    /// `simulator` or `web`, as in `WHATSAPP_BACKEND`.
    fn backend_name(&self) -> &'static str;

    /// Whether credentials are stored for this salon (a restart reconnects without a scan).
    async fn has_credentials(&self, salon: SalonId) -> Result<bool, GatewayError>;

    /// Starts connecting this salon's device. With stored credentials the backend reports
    /// `Connected`; without, it reports `Qr` codes until `Linked` or `QrExhausted`.
    /// Events go to `events` until the session is closed.
    async fn open(
        &self,
        salon: SalonId,
        events: mpsc::UnboundedSender<GatewayEvent>,
    ) -> Result<Box<dyn GatewaySession>, GatewayError>;

    /// Forgets everything stored for this salon's device.
    async fn purge_credentials(&self, salon: SalonId) -> Result<(), GatewayError>;
}

/// One open connection of one salon's device.
#[async_trait::async_trait]
pub trait GatewaySession: Send + Sync {
    /// Asks WhatsApp for an 8-character pairing code for `phone` (the phone shows a notification).
    async fn request_pair_code(&self, phone: &PhoneNumber) -> Result<String, GatewayError>;

    /// Unlinks the device on the phone (WhatsApp's "log out") and ends the session.
    async fn logout(&self) -> Result<(), GatewayError>;

    /// Ends the connection, keeping the credentials.
    async fn close(&self);
}
