//! The live channel's feed: one salon's onboarding state as it changes. On open: subscribe first,
//! then the snapshot, then every change of *this* salon, each a full status whose version is the
//! event id. A missed stretch (the subscriber lagged) yields a fresh snapshot, which contains
//! everything missed. When the installation the token was issued for ends (uninstall), the feed
//! ends with it. `http::live` carries it over server-sent events.

use crate::bus::{EventBus, LiveSubscriberGuard, Received, Subscription};
use crate::onboarding::OnboardingService;
use crate::session::{OnboardingSession, SessionVerifier};
use crate::store::StoreError;
use app::status::{LiveEventKind, OnboardingStatus};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("the salon is not stored")]
    UnknownSalon,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One browser's view of one salon, change by change.
pub struct LiveFeed {
    session: OnboardingSession,
    verifier: SessionVerifier,
    service: OnboardingService,
    events: Subscription,
    first: Option<OnboardingStatus>,
    _subscriber: LiveSubscriberGuard,
}

impl LiveFeed {
    /// Subscribes to the session's salon, then reads its snapshot (so no change falls between).
    pub async fn open(
        service: OnboardingService,
        bus: &EventBus,
        verifier: SessionVerifier,
        session: OnboardingSession,
    ) -> Result<Self, LiveError> {
        let subscriber = bus.live_subscriber();
        let events = bus.subscribe_salon(session.salon);
        let snapshot = service
            .status(session.salon)
            .await?
            .ok_or(LiveError::UnknownSalon)?;
        Ok(Self {
            session,
            verifier,
            service,
            events,
            first: Some(snapshot),
            _subscriber: subscriber,
        })
    }

    /// Waits for the next change of this salon (the snapshot first). Cancel-safe: a caller may
    /// race it against a timer without losing a change. `None` when the bus closed.
    pub async fn changed(&mut self) -> Option<LiveEventKind> {
        if self.first.is_some() {
            return Some(LiveEventKind::Snapshot);
        }
        Some(match self.events.recv().await? {
            Received::Changed(changed) => changed.kind,
            // Missed some: the snapshot covers them.
            Received::Resync { .. } => LiveEventKind::Snapshot,
        })
    }

    /// What to show for a change: the salon's status as it is now, or the end of the feed when
    /// the installation the token was issued for ended (uninstall, or installed anew).
    pub async fn show(&mut self, kind: LiveEventKind) -> Shown {
        if let Some(first) = self.first.take() {
            return Shown::Status(Box::new(first));
        }
        if matches!(
            kind,
            LiveEventKind::ActivationUpdate | LiveEventKind::Snapshot
        ) && !matches!(self.verifier.still_valid(&self.session).await, Ok(true))
        {
            return Shown::End;
        }
        match self.service.status(self.session.salon).await {
            Ok(Some(status)) => Shown::Status(Box::new(status)),
            Ok(None) => Shown::End,
            Err(e) => {
                tracing::warn!(error = %e, "status for the live channel failed; waiting for the next change");
                Shown::Nothing
            }
        }
    }
}

/// What a change shows.
pub enum Shown {
    Status(Box<OnboardingStatus>),
    /// Nothing this time (a transient read failure); the next change shows everything.
    Nothing,
    End,
}
