//! The version clock: every status the live channel, polling and the SSR render send carries a
//! version from here, so the page can drop a status older than the one it shows.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A version that only grows: the Unix-ms clock, or one more than the last one handed out.
/// Time-based, so versions keep growing across restarts.
#[derive(Clone, Default)]
pub struct VersionClock(Arc<AtomicI64>);

impl VersionClock {
    pub fn next_version(&self) -> u64 {
        let now = chrono::Utc::now().timestamp_millis();
        let mut current = self.0.load(Ordering::SeqCst);
        loop {
            let next = now.max(current + 1);
            match self
                .0
                .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next as u64,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_grow() {
        let clock = VersionClock::default();
        let mut last = 0;
        for _ in 0..1000 {
            let v = clock.next_version();
            assert!(v > last);
            last = v;
        }
    }
}
