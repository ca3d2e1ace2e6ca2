//! The link trigger: activation starts when WhatsApp reports the link, even if the tab closed.

use super::{Activation, Trigger};
use crate::bus::{Received, Subscription};
use app::status::LiveEventKind;

impl Activation {
    /// Starts activation when a salon's WhatsApp becomes linked (the server's own trigger, so a
    /// closed tab does not strand the salon).
    pub async fn run_link_trigger(self, mut events: Subscription) {
        while let Some(received) = events.recv().await {
            match received {
                Received::Changed(event)
                    if matches!(
                        event.kind,
                        LiveEventKind::WhatsappConnected | LiveEventKind::WhatsappState
                    ) =>
                {
                    if let Err(e) = self
                        .activate_integration(event.salon, Trigger::Linked)
                        .await
                    {
                        tracing::error!(salon_id = %event.salon, error = %e, "automatic activation failed to start");
                    }
                }
                Received::Changed(_) => {}
                Received::Resync { missed } => {
                    tracing::warn!(missed, "activation trigger lagged behind the bus")
                }
            }
        }
    }
}
