//! The state of one salon's onboarding as the page shows it. The server builds it, sends it as
//! the SSR snapshot, as every live event and as the polling answer, so all three paths render the
//! same truth.

use crate::domain::{PhoneNumber, SalonId};
use serde::{Deserialize, Serialize};

/// The WhatsApp link of one salon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LinkState {
    /// No session is running yet.
    Idle,
    /// Waiting for the gateway's first QR code.
    Starting,
    /// A QR code to scan; `seq` grows with every rotation, `expires_at_ms` is absolute (Unix ms).
    Qr {
        seq: u64,
        code: String,
        expires_at_ms: i64,
    },
    /// The QR codes ran out; the admin asks for new ones.
    QrExpired,
    /// A pairing code to type on the phone.
    Pairing {
        code: String,
        phone: PhoneNumber,
        expires_at_ms: i64,
    },
    /// Linked to this phone.
    Linked { phone: PhoneNumber },
    /// The phone unlinked us; credentials were purged; a new QR can be shown at once.
    LoggedOut,
    /// Reconnecting failed repeatedly; the supervisor stopped trying.
    Failed { reason: String },
}

impl LinkState {
    pub fn is_linked(&self) -> bool {
        matches!(self, LinkState::Linked { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            LinkState::Idle => "idle",
            LinkState::Starting => "starting",
            LinkState::Qr { .. } => "qr",
            LinkState::QrExpired => "qr_expired",
            LinkState::Pairing { .. } => "pairing",
            LinkState::Linked { .. } => "linked",
            LinkState::LoggedOut => "logged_out",
            LinkState::Failed { .. } => "failed",
        }
    }
}

/// The integration with YClients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ActivationState {
    /// Waiting for WhatsApp to be linked.
    NotStarted,
    /// The callback to YClients is being delivered; `attempts` so far, the last failure if any.
    Activating {
        attempts: u32,
        last_error: Option<String>,
    },
    /// YClients confirmed the integration.
    Active,
    /// YClients refused, or the pending window ran out; `reason` is YClients' own message.
    Failed { reason: String },
    /// The paid period is over; data and WhatsApp credentials are kept.
    Frozen,
    /// The salon removed the app in YClients.
    Uninstalled,
}

impl ActivationState {
    pub fn name(&self) -> &'static str {
        match self {
            ActivationState::NotStarted => "not_started",
            ActivationState::Activating { .. } => "activating",
            ActivationState::Active => "active",
            ActivationState::Failed { .. } => "failed",
            ActivationState::Frozen => "frozen",
            ActivationState::Uninstalled => "uninstalled",
        }
    }
}

/// Everything the onboarding page needs, in one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingStatus {
    pub salon_id: SalonId,
    pub salon_title: String,
    pub link: LinkState,
    pub activation: ActivationState,
    /// Set when the linked number differs from the salon's phone in YClients.
    pub linked_other_number: Option<PhoneNumber>,
    /// Grows with every change of this salon's state; the SSE event id.
    pub version: u64,
    /// The server's clock when this was built (Unix ms), so countdowns survive a skewed client clock.
    pub server_time_ms: i64,
}

/// What changed, named as the original's socket events were, so logs and the SSE stream read alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveEventKind {
    Snapshot,
    QrUpdate,
    PairingCode,
    WhatsappConnected,
    WhatsappState,
    ActivationUpdate,
}

impl LiveEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveEventKind::Snapshot => "snapshot",
            LiveEventKind::QrUpdate => "qr-update",
            LiveEventKind::PairingCode => "pairing-code",
            LiveEventKind::WhatsappConnected => "whatsapp-connected",
            LiveEventKind::WhatsappState => "whatsapp-state",
            LiveEventKind::ActivationUpdate => "activation-update",
        }
    }

    pub const ALL: [LiveEventKind; 6] = [
        LiveEventKind::Snapshot,
        LiveEventKind::QrUpdate,
        LiveEventKind::PairingCode,
        LiveEventKind::WhatsappConnected,
        LiveEventKind::WhatsappState,
        LiveEventKind::ActivationUpdate,
    ];
}
