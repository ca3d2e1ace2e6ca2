//! The state of one salon's onboarding as the page shows it. The server builds it, sends it as
//! the SSR snapshot, as every live event and as the polling answer, so all three paths render the
//! same truth. It is shown to whoever holds a token for the branch, so it carries phone numbers
//! masked (`MaskedPhone`); the server's linking supervisor keeps a `LinkState` of full numbers.

use crate::domain::{MaskedPhone, PhoneNumber, SalonId};
use serde::{Deserialize, Serialize};

/// The WhatsApp link of one salon, with its phone numbers as `P`: full `PhoneNumber`s inside the
/// server, `MaskedPhone`s on the wire (`LinkState::masked`).
///
/// Written as an internally tagged object (`{"state": "qr", "seq": …}`); read back through
/// [`LinkStateWire`], one flat struct, instead of serde's derived reader for internally tagged
/// enums, which buffers the object into its `Content` tree first and needs a reader per variant —
/// the largest single item of the browser's code (docs/design.md, "A lighter page"). The JSON is
/// the same either way (tests below).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "snake_case",
    try_from = "LinkStateWire<P>",
    bound(deserialize = "P: Deserialize<'de>")
)]
pub enum LinkState<P = PhoneNumber> {
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
        phone: P,
        expires_at_ms: i64,
    },
    /// Linked to this phone.
    Linked { phone: P },
    /// The phone unlinked us; credentials were purged; a new QR can be shown at once.
    LoggedOut,
    /// Reconnecting failed repeatedly; the supervisor tries again at `retry_at_ms` (Unix ms),
    /// after a cool-down that grows with every failed round, until it links or the salon is
    /// removed.
    Failed { reason: String, retry_at_ms: i64 },
    /// WhatsApp Web was opened elsewhere with this device's credentials and took the stream. The
    /// supervisor does not reconnect (that would fight the other client); the admin may take it
    /// back here.
    Replaced { phone: P },
    /// WhatsApp banned the account for a while; the session resumes by itself at `until_ms`
    /// (Unix ms) when WhatsApp said how long.
    Banned {
        reason: String,
        until_ms: Option<i64>,
    },
}

impl<P> LinkState<P> {
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
            LinkState::Replaced { .. } => "replaced",
            LinkState::Banned { .. } => "banned",
        }
    }

    /// Every state's name, as [`Self::name`] gives it.
    pub const NAMES: [&'static str; 10] = [
        "idle",
        "starting",
        "qr",
        "qr_expired",
        "pairing",
        "linked",
        "logged_out",
        "failed",
        "replaced",
        "banned",
    ];

    /// States where the bot cannot send: a person should look (the page, health, metrics).
    pub fn needs_attention(&self) -> bool {
        matches!(
            self,
            LinkState::LoggedOut
                | LinkState::Failed { .. }
                | LinkState::Replaced { .. }
                | LinkState::Banned { .. }
        )
    }
}

impl LinkState<PhoneNumber> {
    /// The same state as a token holder may see it: the phone numbers masked.
    pub fn masked(&self) -> LinkState<MaskedPhone> {
        match self {
            LinkState::Idle => LinkState::Idle,
            LinkState::Starting => LinkState::Starting,
            LinkState::Qr {
                seq,
                code,
                expires_at_ms,
            } => LinkState::Qr {
                seq: *seq,
                code: code.clone(),
                expires_at_ms: *expires_at_ms,
            },
            LinkState::QrExpired => LinkState::QrExpired,
            LinkState::Pairing {
                code,
                phone,
                expires_at_ms,
            } => LinkState::Pairing {
                code: code.clone(),
                phone: phone.masked(),
                expires_at_ms: *expires_at_ms,
            },
            LinkState::Linked { phone } => LinkState::Linked {
                phone: phone.masked(),
            },
            LinkState::LoggedOut => LinkState::LoggedOut,
            LinkState::Failed {
                reason,
                retry_at_ms,
            } => LinkState::Failed {
                reason: reason.clone(),
                retry_at_ms: *retry_at_ms,
            },
            LinkState::Replaced { phone } => LinkState::Replaced {
                phone: phone.masked(),
            },
            LinkState::Banned { reason, until_ms } => LinkState::Banned {
                reason: reason.clone(),
                until_ms: *until_ms,
            },
        }
    }
}

/// A [`LinkState`] as it is read: the tag and every variant's fields, each optional.
#[derive(Deserialize)]
#[serde(bound(deserialize = "P: Deserialize<'de>"))]
struct LinkStateWire<P> {
    state: String,
    seq: Option<u64>,
    code: Option<String>,
    expires_at_ms: Option<i64>,
    phone: Option<P>,
    reason: Option<String>,
    retry_at_ms: Option<i64>,
    until_ms: Option<i64>,
}

/// The field a variant needs, or the error serde's derived reader gave for its absence.
fn required<T>(value: Option<T>, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("missing field `{field}`"))
}

fn unknown_state(state: &str, expected: &[&str]) -> String {
    format!(
        "unknown variant `{state}`, expected one of `{}`",
        expected.join("`, `")
    )
}

impl<P> TryFrom<LinkStateWire<P>> for LinkState<P> {
    type Error = String;

    fn try_from(wire: LinkStateWire<P>) -> Result<Self, String> {
        Ok(match wire.state.as_str() {
            "idle" => LinkState::Idle,
            "starting" => LinkState::Starting,
            "qr" => LinkState::Qr {
                seq: required(wire.seq, "seq")?,
                code: required(wire.code, "code")?,
                expires_at_ms: required(wire.expires_at_ms, "expires_at_ms")?,
            },
            "qr_expired" => LinkState::QrExpired,
            "pairing" => LinkState::Pairing {
                code: required(wire.code, "code")?,
                phone: required(wire.phone, "phone")?,
                expires_at_ms: required(wire.expires_at_ms, "expires_at_ms")?,
            },
            "linked" => LinkState::Linked {
                phone: required(wire.phone, "phone")?,
            },
            "logged_out" => LinkState::LoggedOut,
            "failed" => LinkState::Failed {
                reason: required(wire.reason, "reason")?,
                retry_at_ms: required(wire.retry_at_ms, "retry_at_ms")?,
            },
            "replaced" => LinkState::Replaced {
                phone: required(wire.phone, "phone")?,
            },
            "banned" => LinkState::Banned {
                reason: required(wire.reason, "reason")?,
                until_ms: wire.until_ms,
            },
            other => return Err(unknown_state(other, &Self::NAMES)),
        })
    }
}

/// The integration with YClients. Read back through [`ActivationStateWire`], as [`LinkState`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "snake_case",
    try_from = "ActivationStateWire"
)]
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

    /// Every state's name, as [`Self::name`] gives it.
    pub const NAMES: [&'static str; 6] = [
        "not_started",
        "activating",
        "active",
        "failed",
        "frozen",
        "uninstalled",
    ];
}

/// An [`ActivationState`] as it is read: the tag and every variant's fields, each optional.
#[derive(Deserialize)]
struct ActivationStateWire {
    state: String,
    attempts: Option<u32>,
    last_error: Option<String>,
    reason: Option<String>,
}

impl TryFrom<ActivationStateWire> for ActivationState {
    type Error = String;

    fn try_from(wire: ActivationStateWire) -> Result<Self, String> {
        Ok(match wire.state.as_str() {
            "not_started" => ActivationState::NotStarted,
            "activating" => ActivationState::Activating {
                attempts: required(wire.attempts, "attempts")?,
                last_error: wire.last_error,
            },
            "active" => ActivationState::Active,
            "failed" => ActivationState::Failed {
                reason: required(wire.reason, "reason")?,
            },
            "frozen" => ActivationState::Frozen,
            "uninstalled" => ActivationState::Uninstalled,
            other => return Err(unknown_state(other, &Self::NAMES)),
        })
    }
}

/// Everything the onboarding page needs, in one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingStatus {
    pub salon_id: SalonId,
    pub salon_title: String,
    pub link: LinkState<MaskedPhone>,
    /// The modules of the QR code in `link` (`LinkState::Qr`), for the page to draw.
    #[serde(default)]
    pub qr: Option<crate::qr::QrMatrix>,
    pub activation: ActivationState,
    /// Set when the linked number differs from the salon's phone in YClients.
    pub linked_other_number: Option<MaskedPhone>,
    /// Set when WhatsApp was linked again with another number than the one the salon had: the
    /// old number, until the admin confirms the new one (or disconnects it).
    pub number_change_from: Option<MaskedPhone>,
    /// The last test message sent from the page.
    pub test_message: Option<TestMessage>,
    /// The app's card in the YClients marketplace, while the installation is frozen there.
    pub marketplace_url: Option<String>,
    /// Grows with every change of this salon's state; the SSE event id.
    pub version: u64,
    /// The server's clock when this was built (Unix ms), so countdowns survive a skewed client clock.
    pub server_time_ms: i64,
}

/// What became of a message sent through the salon's WhatsApp, as WhatsApp's receipts tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Handed to WhatsApp's server.
    Sent,
    /// Reached the recipient's phone.
    Delivered,
    /// The recipient opened it.
    Read,
}

impl DeliveryStatus {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
        }
    }
}

/// A test message the admin sent from the page through the linked WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestMessage {
    pub to: MaskedPhone,
    pub status: DeliveryStatus,
    pub sent_at_ms: i64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_link_state_keeps_everything_but_the_full_number() {
        let phone = PhoneNumber::parse("79991112233").expect("valid phone");
        let pairing = LinkState::Pairing {
            code: "ABCD-EFGH".into(),
            phone: phone.clone(),
            expires_at_ms: 42,
        };
        let wire = serde_json::to_value(pairing.masked()).expect("serialises");
        assert_eq!(
            wire,
            serde_json::json!({"state": "pairing", "code": "ABCD-EFGH", "phone": "+7 999 ***-**-33", "expires_at_ms": 42})
        );
        let linked = LinkState::Linked { phone }.masked();
        assert!(linked.is_linked());
        assert_eq!(linked.name(), "linked");
        assert_eq!(
            LinkState::<PhoneNumber>::QrExpired.masked(),
            LinkState::QrExpired
        );
    }

    fn phone() -> MaskedPhone {
        PhoneNumber::parse("79991112233")
            .expect("valid phone")
            .masked()
    }

    fn every_link_state() -> Vec<LinkState<MaskedPhone>> {
        vec![
            LinkState::Idle,
            LinkState::Starting,
            LinkState::Qr {
                seq: 3,
                code: "2@abc".into(),
                expires_at_ms: 1_764_900_000_000,
            },
            LinkState::QrExpired,
            LinkState::Pairing {
                code: "ABCD-EFGH".into(),
                phone: phone(),
                expires_at_ms: 42,
            },
            LinkState::Linked { phone: phone() },
            LinkState::LoggedOut,
            LinkState::Failed {
                reason: "нет связи".into(),
                retry_at_ms: 7,
            },
            LinkState::Replaced { phone: phone() },
            LinkState::Banned {
                reason: "spam".into(),
                until_ms: Some(9),
            },
            LinkState::Banned {
                reason: "spam".into(),
                until_ms: None,
            },
        ]
    }

    fn every_activation_state() -> Vec<ActivationState> {
        vec![
            ActivationState::NotStarted,
            ActivationState::Activating {
                attempts: 2,
                last_error: Some("HTTP 502".into()),
            },
            ActivationState::Activating {
                attempts: 0,
                last_error: None,
            },
            ActivationState::Active,
            ActivationState::Failed {
                reason: "refused".into(),
            },
            ActivationState::Frozen,
            ActivationState::Uninstalled,
        ]
    }

    /// The derived reader the flat one replaced, for comparison: the same enums, serde's
    /// internally tagged `Deserialize`.
    mod derived {
        use crate::domain::MaskedPhone;
        use serde::Deserialize;

        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(tag = "state", rename_all = "snake_case")]
        pub enum LinkState {
            Idle,
            Starting,
            Qr {
                seq: u64,
                code: String,
                expires_at_ms: i64,
            },
            QrExpired,
            Pairing {
                code: String,
                phone: MaskedPhone,
                expires_at_ms: i64,
            },
            Linked {
                phone: MaskedPhone,
            },
            LoggedOut,
            Failed {
                reason: String,
                retry_at_ms: i64,
            },
            Replaced {
                phone: MaskedPhone,
            },
            Banned {
                reason: String,
                until_ms: Option<i64>,
            },
        }

        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(tag = "state", rename_all = "snake_case")]
        pub enum ActivationState {
            NotStarted,
            Activating {
                attempts: u32,
                last_error: Option<String>,
            },
            Active,
            Failed {
                reason: String,
            },
            Frozen,
            Uninstalled,
        }
    }

    #[test]
    fn every_state_reads_back_as_it_was_written() {
        for state in every_link_state() {
            let json = serde_json::to_string(&state).expect("serialises");
            let read: LinkState<MaskedPhone> = serde_json::from_str(&json).expect(&json);
            assert_eq!(read, state, "{json}");
            assert!(
                json.contains(&format!(r#""state":"{}""#, state.name())),
                "{json}"
            );
            assert!(
                LinkState::<MaskedPhone>::NAMES.contains(&state.name()),
                "{json}"
            );
        }
        for state in every_activation_state() {
            let json = serde_json::to_string(&state).expect("serialises");
            let read: ActivationState = serde_json::from_str(&json).expect(&json);
            assert_eq!(read, state, "{json}");
            assert!(ActivationState::NAMES.contains(&state.name()), "{json}");
        }
    }

    /// What serde's derived reader accepted, the flat reader accepts as the same state; what it
    /// refused, the flat reader refuses.
    #[test]
    fn the_flat_readers_accept_and_refuse_what_the_derived_ones_did() {
        let link_inputs = [
            r#"{"state":"qr","seq":1,"code":"c","expires_at_ms":5}"#,
            r#"{"state":"qr","seq":1,"code":"c","expires_at_ms":5,"extra":true}"#,
            r#"{"expires_at_ms":5,"code":"c","seq":1,"state":"qr"}"#,
            r#"{"state":"qr","seq":1,"code":"c"}"#,
            r#"{"state":"qr","seq":-1,"code":"c","expires_at_ms":5}"#,
            r#"{"state":"pairing","code":"c","phone":"+7 999 ***-**-33","expires_at_ms":5}"#,
            r#"{"state":"pairing","code":"c","phone":"79991112233","expires_at_ms":5}"#,
            r#"{"state":"linked"}"#,
            r#"{"state":"banned","reason":"r"}"#,
            r#"{"state":"banned","reason":"r","until_ms":null}"#,
            r#"{"state":"failed","reason":"r","retry_at_ms":"soon"}"#,
            r#"{"state":"idle","seq":1}"#,
            r#"{"state":"gone"}"#,
            r#"{"seq":1}"#,
            r#"{"state":1}"#,
            r#""idle""#,
            r#"[]"#,
        ];
        for input in link_inputs {
            let flat = serde_json::from_str::<LinkState<MaskedPhone>>(input);
            let derived = serde_json::from_str::<derived::LinkState>(input);
            assert_eq!(
                flat.is_ok(),
                derived.is_ok(),
                "{input}: {flat:?} / {derived:?}"
            );
            if let (Ok(flat), Ok(_)) = (&flat, &derived) {
                let again: derived::LinkState =
                    serde_json::from_str(&serde_json::to_string(flat).expect("serialises"))
                        .expect("the derived reader reads the flat one's state");
                assert_eq!(Ok(again), derived.map_err(|e| e.to_string()), "{input}");
            }
        }
        let activation_inputs = [
            r#"{"state":"activating","attempts":2,"last_error":"x"}"#,
            r#"{"state":"activating","attempts":2}"#,
            r#"{"state":"activating"}"#,
            r#"{"state":"activating","attempts":-2}"#,
            r#"{"state":"failed"}"#,
            r#"{"state":"failed","reason":"r"}"#,
            r#"{"state":"active","reason":"r"}"#,
            r#"{"state":"paused"}"#,
            r#"{}"#,
        ];
        for input in activation_inputs {
            let flat = serde_json::from_str::<ActivationState>(input);
            let derived = serde_json::from_str::<derived::ActivationState>(input);
            assert_eq!(
                flat.is_ok(),
                derived.is_ok(),
                "{input}: {flat:?} / {derived:?}"
            );
        }
    }
}
