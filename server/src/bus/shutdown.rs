//! The shutdown latch of the live streams, and the gauge of browsers on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Set once, at graceful shutdown: SSE connections would otherwise never close.
#[derive(Clone)]
pub struct ShutdownLatch(Arc<watch::Sender<bool>>);

impl Default for ShutdownLatch {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl ShutdownLatch {
    pub fn trip(&self) {
        self.0.send_replace(true);
    }

    pub fn is_tripped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`trip`](Self::trip) was called (at once if it already was).
    pub fn tripped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.subscribe();
        async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
    }
}

/// How many browsers are on the live channel (health and metrics).
#[derive(Clone, Default)]
pub struct LiveGauge(Arc<AtomicUsize>);

impl LiveGauge {
    /// Counts one for as long as the guard lives.
    pub fn enter(&self) -> LiveSubscriberGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveSubscriberGuard(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
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
    fn live_subscribers_are_counted_while_alive() {
        let gauge = LiveGauge::default();
        let a = gauge.enter();
        let b = gauge.enter();
        assert_eq!(gauge.count(), 2);
        drop(a);
        drop(b);
        assert_eq!(gauge.count(), 0);
    }

    #[tokio::test]
    async fn a_tripped_latch_stays_tripped() {
        let latch = ShutdownLatch::default();
        assert!(!latch.is_tripped());
        latch.trip();
        assert!(latch.is_tripped());
        latch.tripped().await;
        latch.tripped().await;
    }
}
