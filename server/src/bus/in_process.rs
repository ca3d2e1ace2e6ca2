//! The in-process implementation of [`SalonEvents`]: the local fan-out alone. Enough for one
//! instance (SQLite); several instances on PostgreSQL use `postgres.rs`.

use super::fanout::Fanout;
use super::{SalonChanged, SalonEvents, Subscription};
use app::domain::SalonId;
use app::status::LiveEventKind;

#[derive(Default)]
pub struct InProcessBus {
    fanout: Fanout,
}

impl SalonEvents for InProcessBus {
    fn publish(&self, salon: SalonId, kind: LiveEventKind) {
        self.fanout.deliver(SalonChanged { salon, kind });
    }

    fn subscribe_salon(&self, salon: SalonId) -> Subscription {
        Subscription::new(self.fanout.subscribe_salon(salon))
    }

    fn subscribe_all(&self) -> Subscription {
        Subscription::new(self.fanout.subscribe_all())
    }
}
