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
