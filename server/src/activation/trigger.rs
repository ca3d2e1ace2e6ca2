//! The link trigger: activation starts when WhatsApp reports the link, even if the tab closed.

use super::{Activation, Trigger};
use app::status::LiveEventKind;

impl Activation {
    /// Starts activation when a salon's WhatsApp becomes linked (the server's own trigger, so a
    /// closed tab does not strand the salon).
    pub async fn run_link_trigger(
        self,
        mut events: tokio::sync::broadcast::Receiver<crate::bus::SalonChanged>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(event)
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
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "activation trigger lagged behind the bus")
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}
