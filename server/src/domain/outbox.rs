//! The callback outbox's delivery states.

/// A callback row's state, as stored in `callback_outbox.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Owed to YClients: delivered by the worker, retried until confirmed or refused.
    Pending,
    /// YClients confirmed (201, or "already installed" with the installation active).
    Confirmed,
    /// YClients refused, or its pending window closed.
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Confirmed => "confirmed",
            OutboxStatus::Failed => "failed",
        }
    }
}

/// What a callback is for, as stored in `callback_outbox.purpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackPurpose {
    /// The salon's activation: confirmed, the salon becomes `active`.
    Activation,
    /// An operator's rotation of an active salon's webhook secret (and API key): confirmed, the
    /// offered pair replaces the salon's; refused, the salon keeps its pair and stays as it is.
    Rotation,
}

impl CallbackPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackPurpose::Activation => "activation",
            CallbackPurpose::Rotation => "rotation",
        }
    }

    /// Unknown values are read as an activation (the column's default).
    pub fn parse(raw: &str) -> Self {
        match raw {
            "rotation" => CallbackPurpose::Rotation,
            _ => CallbackPurpose::Activation,
        }
    }
}

/// How one delivery attempt ended, as stored in `callback_attempts.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Confirmed,
    /// Not confirmed yet: tried again later.
    Retry,
    /// Refused, or the window closed: the delivery ended.
    Failed,
    /// The call was made, but the worker's claim on the row ended during it (its lease ran out
    /// and another worker claimed the row, or an uninstall withdrew the row): recorded so the
    /// trail shows every call YClients got, while the row and the salon are left as they are.
    LeaseLost,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Confirmed => "confirmed",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::LeaseLost => "lease_lost",
        }
    }
}
