//! The event bus port: "salon X changed (kind)". Stage services publish; the live channel
//! subscribes to its salon and the activation trigger to every salon. Events carry no state: a
//! subscriber reads the current state when told, so a missed or coalesced event can never show a
//! stale page, and a subscriber that fell behind is told so ([`Received::Resync`]) rather than
//! left to guess.
//!
//! [`SalonEvents`] is the port, with two implementations: [`InProcessBus`] (`in_process.rs`, one
//! instance, SQLite) and [`PostgresBus`] (`postgres.rs`, `LISTEN/NOTIFY`, any number of instances
//! on one PostgreSQL database), chosen by the database. Both hand events to local subscribers
//! through the same per-salon fan-out (`fanout.rs`). [`EventBus`] is the handle the
//! stages hold: the port plus the process-local pieces that are not events — the version clock
//! (`clock.rs`), the shutdown latch and the live-subscriber gauge (`shutdown.rs`).

mod clock;
mod fanout;
mod in_process;
mod postgres;
mod shutdown;

pub use clock::VersionClock;
pub use fanout::Delivery;
pub use in_process::InProcessBus;
pub use postgres::{notify_channel, PostgresBus};
pub use shutdown::{LiveGauge, LiveSubscriberGuard, ShutdownLatch};

use app::domain::SalonId;
use app::status::LiveEventKind;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalonChanged {
    pub salon: SalonId,
    pub kind: LiveEventKind,
}

/// What a subscription yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Changed(SalonChanged),
    /// The subscriber fell behind and `missed` events are gone (0: unknown, after the
    /// cross-instance listener reconnected): read the current state again.
    Resync {
        missed: u64,
    },
}

/// Publish/subscribe of salon changes: the port a second bus implementation plugs into.
pub trait SalonEvents: Send + Sync + 'static {
    fn publish(&self, salon: SalonId, kind: LiveEventKind);
    /// The changes of one salon (and resync notices).
    fn subscribe_salon(&self, salon: SalonId) -> Subscription;
    /// The changes of every salon (and resync notices).
    fn subscribe_all(&self) -> Subscription;
    /// Graceful shutdown: this instance stops hearing the others. Nothing they publish reaches a
    /// local subscriber afterwards, and no gap is reported (no live stream gets a fresh snapshot
    /// after shutdown); what this instance still publishes reaches the others. Nothing to do
    /// for a bus of one process.
    fn stop_listening(&self) {}
    /// Wakes the instance named `instance`: a call for it, or the answer to one of its calls,
    /// waits in the database (`store::instances`). Best effort — the reader also looks by
    /// itself — and nothing to do for a bus of one process.
    fn wake(&self, _instance: &str) {}
    /// The names the other instances woke (see [`wake`](Self::wake)); `None` when no other
    /// instance can wake this one.
    fn wake_ups(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        None
    }
    /// What health shows of the bus.
    fn health(&self) -> BusHealth {
        BusHealth {
            kind: "in_process",
            listening: true,
            reconnects: 0,
            notify_failures: 0,
        }
    }
}

/// The bus as health shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BusHealth {
    /// `in_process` (SQLite, one instance) or `postgres` (`LISTEN/NOTIFY`, several).
    pub kind: &'static str,
    /// Whether this instance hears the others now (always for the in-process bus).
    pub listening: bool,
    /// How often the listener had to connect again (each time every live stream was resynced).
    pub reconnects: u64,
    /// Changes the other instances could not be told of.
    pub notify_failures: u64,
}

/// A subscriber's end of the bus: ours, whatever carries the events.
pub struct Subscription {
    receiver: broadcast::Receiver<Delivery>,
}

impl Subscription {
    /// A receiver of the local fan-out (`fanout.rs`).
    pub fn new(receiver: broadcast::Receiver<Delivery>) -> Self {
        Self { receiver }
    }

    /// The next item; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(delivery) => Some(received(delivery)),
            Err(RecvError::Lagged(missed)) => Some(Received::Resync { missed }),
            Err(RecvError::Closed) => None,
        }
    }

    /// The next item if one is waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        match self.receiver.try_recv() {
            Ok(delivery) => Some(received(delivery)),
            Err(TryRecvError::Lagged(missed)) => Some(Received::Resync { missed }),
            Err(TryRecvError::Empty | TryRecvError::Closed) => None,
        }
    }
}

fn received(delivery: Delivery) -> Received {
    match delivery {
        Delivery::Changed(changed) => Received::Changed(changed),
        // Lost events cannot be counted: read everything again.
        Delivery::Gap => Received::Resync { missed: 0 },
    }
}

/// The handle the stages hold: the events port, the version clock, the shutdown latch of the
/// live streams and the live-subscriber gauge.
#[derive(Clone)]
pub struct EventBus {
    events: Arc<dyn SalonEvents>,
    clock: VersionClock,
    shutdown: ShutdownLatch,
    live: LiveGauge,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// The in-process bus.
    pub fn new() -> Self {
        Self::with_events(Arc::new(InProcessBus::default()))
    }

    /// Any implementation of the port (the plug-in point for a second bus).
    pub fn with_events(events: Arc<dyn SalonEvents>) -> Self {
        Self {
            events,
            clock: VersionClock::default(),
            shutdown: ShutdownLatch::default(),
            live: LiveGauge::default(),
        }
    }

    pub fn publish(&self, salon: SalonId, kind: LiveEventKind) {
        self.events.publish(salon, kind);
    }

    pub fn subscribe_salon(&self, salon: SalonId) -> Subscription {
        self.events.subscribe_salon(salon)
    }

    pub fn health(&self) -> BusHealth {
        self.events.health()
    }

    /// See [`SalonEvents::wake`].
    pub fn wake(&self, instance: &str) {
        self.events.wake(instance);
    }

    /// See [`SalonEvents::wake_ups`].
    pub fn wake_ups(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        self.events.wake_ups()
    }

    pub fn subscribe_all(&self) -> Subscription {
        self.events.subscribe_all()
    }

    /// Same as [`subscribe_all`](Self::subscribe_all) (the start-up code's name for it).
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_all()
    }

    /// Ends every live stream (graceful shutdown: SSE connections would otherwise never close),
    /// and stops hearing the other instances ([`SalonEvents::stop_listening`]).
    pub fn stop_live_streams(&self) {
        self.shutdown.trip();
        self.events.stop_listening();
    }

    /// Whether [`stop_live_streams`](Self::stop_live_streams) was called.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_tripped()
    }

    /// Resolves once [`stop_live_streams`](Self::stop_live_streams) was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shutdown.tripped()
    }

    /// Counts a browser on the live channel for as long as the guard lives.
    pub fn live_subscriber(&self) -> LiveSubscriberGuard {
        self.live.enter()
    }

    pub fn live_subscriber_count(&self) -> usize {
        self.live.count()
    }

    pub fn next_version(&self) -> u64 {
        self.clock.next_version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn salon(id: i64) -> SalonId {
        SalonId::try_from(id).expect("positive")
    }

    #[tokio::test]
    async fn a_salon_subscription_sees_only_its_salon() {
        let bus = EventBus::new();
        let mut mine = bus.subscribe_salon(salon(1));
        let mut all = bus.subscribe_all();
        bus.publish(salon(2), LiveEventKind::WhatsappState);
        bus.publish(salon(1), LiveEventKind::QrUpdate);
        let expected = Received::Changed(SalonChanged {
            salon: salon(1),
            kind: LiveEventKind::QrUpdate,
        });
        assert_eq!(mine.recv().await, Some(expected));
        assert_eq!(mine.try_recv(), None);
        assert!(matches!(all.recv().await, Some(Received::Changed(c)) if c.salon == salon(2)));
        assert_eq!(all.recv().await, Some(expected));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_to_resync() {
        let bus = EventBus::new();
        let mut slow = bus.subscribe_salon(salon(1));
        for _ in 0..2000 {
            bus.publish(salon(1), LiveEventKind::QrUpdate);
        }
        assert!(matches!(slow.recv().await, Some(Received::Resync { missed }) if missed > 0));
        assert!(matches!(slow.recv().await, Some(Received::Changed(_))));
    }
}
