//! How the onboarding page learns about changes: shared by the page (which shows it) and the
//! browser code (which drives it), so neither imports the other's internals.

/// How the page currently learns about changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Before the browser has connected anything (and always on the server).
    Connecting,
    /// Server-sent events arrive.
    Live,
    /// The live channel is down or silent; a status request every second.
    Polling,
    /// Polling failed 30 times in a row.
    Lost,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Connecting => "connecting",
            Channel::Live => "live",
            Channel::Polling => "polling",
            Channel::Lost => "lost",
        }
    }
}

/// Polls failed in a row before the page says the connection is lost.
pub const MAX_FAILED_POLLS: u32 = 30;
