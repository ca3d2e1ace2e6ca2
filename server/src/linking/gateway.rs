//! The port to WhatsApp: what the session supervisor needs from a WhatsApp Web backend.
//!
//! Two implementations: `web` (whatsapp-rust, the real protocol) and `simulator` (in-process,
//! for dev, demo and tests). The supervisor owns the lifecycle; a backend only reports what
//! happened through [`GatewayEvent`]s and carries out commands.

use crate::store::SessionLease;
use app::domain::{PhoneNumber, SalonId};
use app::status::DeliveryStatus;
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
    /// Another client connected with this device's credentials and WhatsApp closed our stream
    /// (`StreamReplaced`). The backend has stopped; reconnecting would take the stream back and
    /// start a fight, so only a person may ask for it.
    Replaced,
    /// WhatsApp banned the device for a while (`TemporaryBan`); `expires_in` is the ban's length
    /// when WhatsApp gave one. The backend has stopped; the supervisor resumes at the expiry.
    Banned {
        reason: String,
        expires_in: Option<Duration>,
    },
    /// What became of a text this session sent (`message_id` as `send_text` returned it).
    Receipt {
        message_id: String,
        status: DeliveryStatus,
    },
    /// A client wrote to the salon's number (a text in a one-to-one chat).
    Incoming { from: PhoneNumber, text: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("WhatsApp backend is unavailable: {0}")]
    Unavailable(String),
    #[error("pair code request refused: {0}")]
    PairCodeRefused(String),
    #[error("credential store failed: {0}")]
    Store(String),
    /// The write was refused: another instance holds the salon's session lease now.
    #[error("another instance runs this session now")]
    Fenced,
    #[error("the session is closed")]
    Closed,
    #[error("WhatsApp did not take the message: {0}")]
    SendRefused(String),
}

impl GatewayError {
    /// A credential store's error: a fenced write stays recognisable as one.
    pub fn from_store(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Fenced(_) => GatewayError::Fenced,
            other => GatewayError::Store(other.to_string()),
        }
    }
}

/// A WhatsApp Web backend. One device (linked companion) per salon.
#[async_trait::async_trait]
pub trait WhatsAppGateway: Send + Sync + 'static {
    /// `simulator` or `web`, as in `WHATSAPP_BACKEND`.
    fn backend_name(&self) -> &'static str;

    /// Whether credentials are stored for this salon (a restart reconnects without a scan).
    async fn has_credentials(&self, salon: SalonId) -> Result<bool, GatewayError>;

    /// Starts connecting the device of the salon `lease` is for. With stored credentials the
    /// backend reports `Connected`; without, it reports `Qr` codes until `Linked` or
    /// `QrExhausted`. Events go to `events` until the session is closed.
    ///
    /// Every credential the session writes carries `lease` and is refused once another
    /// instance took the session over (`StoreError::Fenced`): a paused old owner cannot
    /// overwrite the new owner's Signal state.
    async fn open(
        &self,
        lease: &SessionLease,
        events: mpsc::UnboundedSender<GatewayEvent>,
    ) -> Result<Box<dyn GatewaySession>, GatewayError>;

    /// Forgets everything stored for this salon's device (an uninstall). Not fenced: whoever
    /// runs the salon's session, nothing of it may stay.
    async fn purge_credentials(&self, salon: SalonId) -> Result<(), GatewayError>;

    /// WhatsApp logged the device of `lease`'s session out: everything stored for it goes, fenced
    /// by `lease` — once another instance took the session over (and maybe linked a new device),
    /// a paused old owner's purge is refused with [`GatewayError::Fenced`].
    async fn forget_credentials(&self, lease: &SessionLease) -> Result<(), GatewayError>;
}

/// One open connection of one salon's device.
#[async_trait::async_trait]
pub trait GatewaySession: Send + Sync {
    /// Asks WhatsApp for an 8-character pairing code for `phone` (the phone shows a notification).
    async fn request_pair_code(&self, phone: &PhoneNumber) -> Result<String, GatewayError>;

    /// Sends `text` to `to` from the linked account; returns WhatsApp's id of the message, which
    /// later [`GatewayEvent::Receipt`]s name. Fails unless the session is linked and connected.
    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<String, GatewayError>;

    /// Asks WhatsApp for an answer on this connection (a keep-alive ping) and returns when it
    /// came. On a silently dead socket it fails or never returns: the supervisor bounds it with
    /// a timeout and treats no answer as a dead connection (a zombie).
    async fn probe(&self) -> Result<(), GatewayError>;

    /// Unlinks the device on the phone (WhatsApp's "log out") and ends the session.
    async fn logout(&self) -> Result<(), GatewayError>;

    /// Ends the connection, keeping the credentials.
    async fn close(&self);
}
