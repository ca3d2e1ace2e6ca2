//! The in-process event bus: "salon X changed (kind)". Stage services publish; the live channel
//! and the activation trigger subscribe. Events carry no state: a subscriber reads the current
//! state when told, so a missed or coalesced event can never show a stale page.

use app::domain::SalonId;
use app::status::LiveEventKind;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalonChanged {
    pub salon: SalonId,
    pub kind: LiveEventKind,
}

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<SalonChanged>,
    live_subscribers: Arc<AtomicUsize>,
    clock: Arc<AtomicI64>,
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        let (stopping, _) = tokio::sync::watch::channel(false);
        Self {
            sender,
            live_subscribers: Arc::default(),
            clock: Arc::default(),
            stopping: Arc::new(stopping),
        }
    }

    pub fn publish(&self, salon: SalonId, kind: LiveEventKind) {
        // No receivers is fine: nobody is watching this salon right now.
        let _ = self.sender.send(SalonChanged { salon, kind });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SalonChanged> {
        self.sender.subscribe()
    }

    /// Ends every live stream (graceful shutdown: SSE connections would otherwise never close).
    pub fn stop_live_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`stop_live_streams`](Self::stop_live_streams) was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.stopping.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }

    /// Counts a browser on the live channel for as long as the guard lives.
    pub fn live_subscriber(&self) -> LiveSubscriberGuard {
        self.live_subscribers.fetch_add(1, Ordering::SeqCst);
        LiveSubscriberGuard(self.live_subscribers.clone())
    }

    pub fn live_subscriber_count(&self) -> usize {
        self.live_subscribers.load(Ordering::SeqCst)
    }

    /// A version that only grows: the Unix-ms clock, or one more than the last one handed out.
    /// Time-based, so versions keep growing across restarts.
    pub fn next_version(&self) -> u64 {
        let now = chrono::Utc::now().timestamp_millis();
        let mut current = self.clock.load(Ordering::SeqCst);
        loop {
            let next = now.max(current + 1);
            match self
                .clock
                .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next as u64,
                Err(actual) => current = actual,
            }
        }
    }
}

pub struct LiveSubscriberGuard(Arc<AtomicUsize>);

impl Drop for LiveSubscriberGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_grow() {
        let bus = EventBus::new();
        let mut last = 0;
        for _ in 0..1000 {
            let v = bus.next_version();
            assert!(v > last);
            last = v;
        }
    }

    #[test]
    fn live_subscribers_are_counted_while_alive() {
        let bus = EventBus::new();
        let a = bus.live_subscriber();
        let b = bus.live_subscriber();
        assert_eq!(bus.live_subscriber_count(), 2);
        drop(a);
        drop(b);
        assert_eq!(bus.live_subscriber_count(), 0);
    }
}
