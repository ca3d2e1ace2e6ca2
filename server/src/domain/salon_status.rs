//! A salon's integration status and its allowed transitions.

use std::fmt;

/// A salon's integration status, as stored in `salons.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SalonStatus {
    /// Registered through the redirect; WhatsApp not linked or activation not started.
    New,
    /// The callback to YClients is owed (a row in the outbox).
    Activating,
    /// YClients confirmed.
    Active,
    /// YClients refused or the pending window ran out.
    ActivationFailed,
    /// `freeze` webhook: paused, data and credentials kept.
    Frozen,
    /// `uninstall` webhook: WhatsApp unlinked, credentials, API key and tokens gone.
    Uninstalled,
}

/// A transition the state machine does not allow (the store's guard matched no row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a salon cannot go from {from} to {to}")]
pub struct TransitionRefused {
    pub from: SalonStatus,
    pub to: SalonStatus,
}

/// A `salons.status` value no version of this program wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown salon status «{0}»")]
pub struct UnknownStatus(pub String);

impl SalonStatus {
    pub const ALL: [SalonStatus; 6] = [
        SalonStatus::New,
        SalonStatus::Activating,
        SalonStatus::Active,
        SalonStatus::ActivationFailed,
        SalonStatus::Frozen,
        SalonStatus::Uninstalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SalonStatus::New => "new",
            SalonStatus::Activating => "activating",
            SalonStatus::Active => "active",
            SalonStatus::ActivationFailed => "activation_failed",
            SalonStatus::Frozen => "frozen",
            SalonStatus::Uninstalled => "uninstalled",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| UnknownStatus(raw.to_owned()))
    }

    /// The state machine. Registration (`→ New`) starts a clean onboarding after a refusal or an
    /// uninstall and re-opens a frozen salon YClients installs again; activation starts only
    /// from `New` or after a refusal; only YClients' answer ends it; freeze pauses anything but
    /// an uninstalled salon; uninstall ends everything. A frozen salon resumes (`→ Active`) only
    /// when YClients says its installation is active again.
    pub fn can_become(self, next: SalonStatus) -> bool {
        use SalonStatus::*;
        match (self, next) {
            (Uninstalled | ActivationFailed | Frozen, New) => true,
            (New | ActivationFailed, Activating) => true,
            (Activating, Active | ActivationFailed) => true,
            (Frozen, Active) => true,
            (from, Frozen) => from != Uninstalled,
            (_, Uninstalled) => true,
            _ => false,
        }
    }

    /// Every status `next` may be reached from: the guard of the store's `UPDATE … WHERE status IN`.
    pub fn sources_of(next: SalonStatus) -> Vec<SalonStatus> {
        Self::ALL
            .into_iter()
            .filter(|from| from.can_become(next))
            .collect()
    }

    pub fn transition(self, next: SalonStatus) -> Result<SalonStatus, TransitionRefused> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(TransitionRefused {
                from: self,
                to: next,
            })
        }
    }

    /// Whether the salon's admin may drive the onboarding (new QR, pairing code, activation).
    pub fn accepts_admin_actions(self) -> bool {
        !matches!(self, SalonStatus::Frozen | SalonStatus::Uninstalled)
    }

    /// Whether a WhatsApp session may run for the salon.
    pub fn may_run_whatsapp(self) -> bool {
        self.accepts_admin_actions()
    }
}

impl fmt::Display for SalonStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SalonStatus::{self, *};

    #[test]
    fn every_status_round_trips_through_its_column_value() {
        for status in SalonStatus::ALL {
            assert_eq!(SalonStatus::parse(status.as_str()), Ok(status));
        }
        assert!(SalonStatus::parse("Active").is_err());
    }

    #[test]
    fn activation_starts_only_from_new_or_after_a_refusal() {
        assert_eq!(
            SalonStatus::sources_of(Activating),
            vec![New, ActivationFailed]
        );
        assert!(Frozen.transition(Activating).is_err());
        assert!(Active.transition(Activating).is_err());
    }

    #[test]
    fn only_an_owed_callback_ends_as_active_or_refused() {
        assert_eq!(SalonStatus::sources_of(ActivationFailed), vec![Activating]);
        assert_eq!(SalonStatus::sources_of(Active), vec![Activating, Frozen]);
    }

    #[test]
    fn uninstalled_salons_cannot_be_frozen_and_anything_can_be_uninstalled() {
        assert!(Uninstalled.transition(Frozen).is_err());
        for status in SalonStatus::ALL {
            assert!(status.can_become(Uninstalled));
        }
        let refused = Uninstalled.transition(Active).expect_err("refused");
        assert_eq!(
            refused.to_string(),
            "a salon cannot go from uninstalled to active"
        );
    }

    #[test]
    fn frozen_and_uninstalled_salons_take_no_admin_actions() {
        assert!(!Frozen.accepts_admin_actions());
        assert!(!Uninstalled.accepts_admin_actions());
        assert!(New.accepts_admin_actions() && Active.accepts_admin_actions());
    }
}
