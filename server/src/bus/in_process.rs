//! The in-process implementation of [`SalonEvents`]: one tokio broadcast channel. Enough for one
//! instance; several instances need a bus that crosses processes (PostgreSQL `LISTEN/NOTIFY`).

use super::{SalonChanged, SalonEvents, Subscription};
use app::domain::SalonId;
use app::status::LiveEventKind;
use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it is told to resync.
const CAPACITY: usize = 1024;

pub struct InProcessBus {
    sender: broadcast::Sender<SalonChanged>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl SalonEvents for InProcessBus {
    fn publish(&self, salon: SalonId, kind: LiveEventKind) {
        // No receivers is fine: nobody is watching this salon right now.
        let _ = self.sender.send(SalonChanged { salon, kind });
    }

    fn subscribe_salon(&self, salon: SalonId) -> Subscription {
        Subscription::from_broadcast(self.sender.subscribe(), Some(salon))
    }

    fn subscribe_all(&self) -> Subscription {
        Subscription::from_broadcast(self.sender.subscribe(), None)
    }
}
