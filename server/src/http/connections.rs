//! A cap on the connections served at once (`HTTP_MAX_CONNECTIONS`).
//!
//! Every accepted connection is a file descriptor, and the process has a fixed number of them
//! (`RLIMIT_NOFILE`), shared with everything else it does: the database pools, SQLite's files,
//! every linked WhatsApp session's socket, the YClients client. Without a cap, enough clients —
//! a burst, or someone opening connections and sending nothing until `HTTP_HEADER_TIMEOUT_MS`
//! closes each — took every descriptor: `accept` then failed, and so did every new database
//! connection and every WhatsApp reconnect, for every salon.
//!
//! With the cap, a connection is accepted only with a permit ([`Admitted`]), which it holds
//! until it closes — through the live channel's lean path, hyper, and an upgrade alike. At the
//! cap nothing more is accepted: new connections wait in the kernel's backlog, and are served
//! in turn as others close, instead of failing the rest of the process. The default leaves a
//! quarter of the descriptors to the rest of the process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often the cap being reached is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The connections served at once, and their cap (shared by the listener and the metrics).
#[derive(Clone)]
pub struct Connections(Arc<Inner>);

struct Inner {
    permits: Arc<Semaphore>,
    max: usize,
    open: AtomicUsize,
    warned: Mutex<Option<Instant>>,
}

/// A place under the cap kept for the next connection the listener accepts.
pub struct Place(OwnedSemaphorePermit);

/// A connection's place under the cap, given back when it is dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    connections: Arc<Inner>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    pub fn new(max: u32) -> Self {
        let max = (max.max(1) as usize).min(Semaphore::MAX_PERMITS);
        Self(Arc::new(Inner {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: AtomicUsize::new(0),
            warned: Mutex::new(None),
        }))
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.0.max
    }

    /// Connections open now (not counting the place kept for the next one).
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Relaxed)
    }

    /// A place for one more connection: at once under the cap, else when a connection closes.
    pub async fn reserve(&self) -> Place {
        if let Ok(permit) = Arc::clone(&self.0.permits).try_acquire_owned() {
            return Place(permit);
        }
        self.warn_full();
        Place(
            Arc::clone(&self.0.permits)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
        )
    }

    /// The place, taken by a connection just accepted.
    pub fn admit(&self, place: Place) -> Admitted {
        self.0.open.fetch_add(1, Ordering::Relaxed);
        Admitted {
            _permit: place.0,
            connections: Arc::clone(&self.0),
        }
    }

    fn warn_full(&self) {
        let mut warned = self.0.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!(
                max = self.0.max,
                "HTTP_MAX_CONNECTIONS reached: new connections wait until others close"
            );
        }
    }
}

/// Logs a warning when `max` is not below the process's open-file limit: descriptors would
/// run out before the cap is reached, which is what the cap is for.
pub fn warn_if_not_below_the_limit(max: u32) {
    if let Some(files) = not_below_the_limit(max, &process_limits()) {
        tracing::warn!(
            max,
            open_files = files,
            "HTTP_MAX_CONNECTIONS is not below the open-file limit (ulimit -n): file \
             descriptors run out before the cap; lower it or raise the limit"
        );
    }
}

/// The default cap: three quarters of the process's open-file limit (its soft
/// `RLIMIT_NOFILE`, read from `/proc/self/limits`), the rest left to everything else; 1,024
/// where the limit cannot be read.
pub fn default_max() -> u32 {
    soft_open_files(&process_limits()).map_or(1024, max_for)
}

/// The text of `/proc/self/limits` (empty where it cannot be read).
fn process_limits() -> String {
    std::fs::read_to_string("/proc/self/limits").unwrap_or_default()
}

/// The open-file limit in `limits` when `max` is not below it.
fn not_below_the_limit(max: u32, limits: &str) -> Option<u64> {
    soft_open_files(limits).filter(|files| u64::from(max) >= *files)
}

/// The cap for an open-file limit of `files`.
fn max_for(files: u64) -> u32 {
    u32::try_from(files - files / 4).unwrap_or(u32::MAX).max(1)
}

/// The soft limit on open files in the text of `/proc/<pid>/limits` (`None` when unlimited or
/// absent).
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            20000                524288               files     
Max locked memory         8388608              8388608              bytes     
";

    #[test]
    fn the_default_leaves_a_quarter_of_the_soft_open_file_limit() {
        assert_eq!(soft_open_files(LIMITS), Some(20_000));
        assert_eq!(max_for(20_000), 15_000);
        assert_eq!(max_for(65_536), 49_152);
        assert_eq!(max_for(1), 1);
        assert_eq!(
            soft_open_files(&LIMITS.replace("20000  ", "unlimited")),
            None
        );
        assert_eq!(soft_open_files("Max cpu time unlimited"), None);
    }

    #[test]
    fn a_cap_not_below_the_open_file_limit_is_told() {
        assert_eq!(not_below_the_limit(15_000, LIMITS), None);
        assert_eq!(not_below_the_limit(19_999, LIMITS), None);
        assert_eq!(not_below_the_limit(20_000, LIMITS), Some(20_000));
        assert_eq!(not_below_the_limit(100_000, LIMITS), Some(20_000));
        assert_eq!(not_below_the_limit(100_000, ""), None);
    }

    #[tokio::test]
    async fn a_place_is_given_back_when_its_connection_is_dropped() {
        let connections = Connections::new(2);
        let first = connections.admit(connections.reserve().await);
        let kept = connections.reserve().await;
        assert_eq!(connections.open(), 1, "a kept place is not a connection");
        let second = connections.admit(kept);
        assert_eq!(connections.open(), 2);
        let mut third = Box::pin(connections.reserve());
        assert!(
            futures::poll!(third.as_mut()).is_pending(),
            "no place at the cap"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("a place once one closed");
        assert_eq!(connections.open(), 1);
        drop(second);
        drop(third);
        assert_eq!(connections.open(), 0);
        let _all = [connections.reserve().await, connections.reserve().await];
    }
}
