//! Limits before work: rate limits answered with `429` and `Retry-After`, and a cap on the live
//! streams one salon may hold open.
//!
//! - **The redirect**, per client address: `RATE_LIMIT_REDIRECT_PER_MINUTE` after a burst of
//!   `RATE_LIMIT_REDIRECT_BURST`; over it, a Russian page saying how long to wait. The client
//!   address is the TCP peer; only when the peer is listed in `TRUSTED_PROXY` is it the last hop
//!   of `X-Forwarded-For` (the one our proxy appended; the hops before it are the client's word).
//!   IPv6 clients are counted per /64, the block one subscriber gets.
//! - **The admin's actions** (restart, retry-activation, pairing-code), per salon and action:
//!   `RATE_LIMIT_ACTIONS_PER_MINUTE`; over it `AppError::TooManyRequests`. `status` and `activate`
//!   are not limited: the page calls them by itself.
//! - **Live streams**: at most `SSE_MAX_STREAMS_PER_SALON` open at once per salon. The stream holds
//!   its [`StreamSlot`]; the slot is free again when the stream ends.
//!
//! The keyed limiters forget idle keys (`retain_recent`) at most once a minute, on access: keys are
//! only added on access too, so the maps stay as small as the set of recently active clients.

use crate::config::LimitSettings;
use app::api::AppError;
use app::domain::SalonId;
use futures::{Stream, StreamExt};
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the keyed limiters drop keys that are back to a fresh state.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// When a keyed limiter's idle keys are next forgotten: at most once per interval, whoever asks
/// first after it (a sweep scans every key, so one on every access would make each request cost
/// as much as the number of clients seen lately).
pub struct Sweeper {
    every: Duration,
    last: Mutex<Instant>,
}

impl Sweeper {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(Instant::now()),
        }
    }

    /// Once a minute (by default) across all callers.
    pub fn every_minute() -> Self {
        Self::new(SWEEP_EVERY)
    }

    /// `true` for the one caller that should sweep now; others go on at once.
    pub fn due(&self) -> bool {
        let Ok(mut last) = self.last.try_lock() else {
            return false;
        };
        if last.elapsed() < self.every {
            return false;
        }
        *last = Instant::now();
        true
    }
}

/// What a refused live stream is told: a slot frees whenever one of the salon's streams ends.
pub const STREAM_RETRY_AFTER_SECS: u64 = 5;

/// The admin actions limited per salon, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Restart,
    RetryActivation,
    PairingCode,
    Disconnect,
    ConfirmNumber,
    TestMessage,
    SaveMessageSettings,
}

/// Over a limit: the whole seconds (at least 1) until the next attempt can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl RetryAfter {
    fn from_wait(wait: Duration) -> Self {
        Self((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }
}

impl From<RetryAfter> for AppError {
    fn from(RetryAfter(retry_after_secs): RetryAfter) -> Self {
        AppError::TooManyRequests { retry_after_secs }
    }
}

#[derive(Clone)]
pub struct Limits(Arc<Inner>);

struct Inner {
    redirect: DefaultKeyedRateLimiter<IpAddr>,
    /// The branch picker's YClients calls, for everyone together.
    picker_titles: DefaultDirectRateLimiter,
    actions: DefaultKeyedRateLimiter<(SalonId, Action)>,
    /// The entry's installation checks (one YClients call each), per signed YClients user.
    entry_checks_per_user: DefaultKeyedRateLimiter<String>,
    /// The entry's installation checks of branches not held by the user entering (a first entry,
    /// or another user's branch), for everyone together.
    entry_checks_unheld: DefaultDirectRateLimiter,
    trusted_proxies: Vec<IpAddr>,
    max_streams: u32,
    streams: Mutex<HashMap<SalonId, u32>>,
    sweeper: Sweeper,
}

fn per_minute(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Self::with_quotas(
            Quota::per_minute(per_minute(settings.redirect_per_minute))
                .allow_burst(per_minute(settings.redirect_burst)),
            Quota::per_minute(per_minute(settings.actions_per_minute)),
            settings,
            SWEEP_EVERY,
        )
    }

    fn with_quotas(
        redirect: Quota,
        actions: Quota,
        settings: &LimitSettings,
        sweep_every: Duration,
    ) -> Self {
        Self(Arc::new(Inner {
            redirect: RateLimiter::keyed(redirect),
            picker_titles: RateLimiter::direct(
                Quota::per_minute(per_minute(settings.picker_titles_per_minute))
                    .allow_burst(per_minute(settings.picker_titles_burst)),
            ),
            actions: RateLimiter::keyed(actions),
            entry_checks_per_user: RateLimiter::keyed(
                Quota::per_minute(per_minute(settings.entry_checks_per_user_per_minute))
                    .allow_burst(per_minute(settings.entry_checks_per_user_burst)),
            ),
            entry_checks_unheld: RateLimiter::direct(
                Quota::per_minute(per_minute(settings.entry_checks_unheld_per_minute))
                    .allow_burst(per_minute(settings.entry_checks_unheld_burst)),
            ),
            trusted_proxies: settings.trusted_proxies.clone(),
            max_streams: settings.sse_max_streams_per_salon.max(1),
            streams: Mutex::default(),
            sweeper: Sweeper::new(sweep_every),
        }))
    }

    /// The address a request is counted against: the peer, or the last hop of its last
    /// `X-Forwarded-For` header (`forwarded_for`) when the peer is a trusted proxy. Without a known
    /// peer, everyone shares one budget.
    pub fn client_address(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> IpAddr {
        let Some(peer) = peer.map(|ip| ip.to_canonical()) else {
            return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        };
        if !self.0.trusted_proxies.contains(&peer) {
            return peer;
        }
        forwarded_for
            .and_then(|value| value.rsplit(',').next())
            .map(str::trim)
            .and_then(|hop| {
                hop.parse::<IpAddr>()
                    .ok()
                    .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
            })
            .map(|ip| ip.to_canonical())
            .unwrap_or(peer)
    }

    /// Whether the branch picker may ask YClients for one more branch's title now. One budget
    /// for every client: a picker link names up to 50 branch ids the signature does not cover,
    /// so per-client limits would let a few addresses spend the YClients client's whole budget,
    /// which every salon's entries, callbacks and checks share.
    pub fn picker_title(&self) -> bool {
        self.0.picker_titles.check().is_ok()
    }

    /// One redirect from `client`.
    pub fn redirect(&self, client: IpAddr) -> Result<(), RetryAfter> {
        self.check(&self.0.redirect, &client_network(client))
    }

    /// One installation check at the entry for the signed user `user` (`None`: a link naming
    /// no user), of a branch that user holds (`held`) or not. The check is a call of the one
    /// YClients client every salon shares, and a user's signed link never expires and does not
    /// cover the branch id: without these budgets one link, replayed from many addresses with
    /// made-up branch ids, kept every salon's entries, callbacks and lifecycle checks waiting.
    ///
    /// A link naming no user (allowed by the contract; unsigned ones only with
    /// `YCLIENTS_REQUIRE_USER_DATA=false`) has no budget of its own to spend — one key for all
    /// of them would let anyone lock every such admin out — and is never held: it spends the
    /// shared budget only.
    pub fn entry_check(&self, user: Option<&str>, held: bool) -> Result<(), RetryAfter> {
        if let Some(user) = user {
            self.check(&self.0.entry_checks_per_user, &user.to_owned())?;
        }
        if held {
            return Ok(());
        }
        self.0.entry_checks_unheld.check().map_err(|not_until| {
            RetryAfter::from_wait(
                not_until.wait_time_from(self.0.entry_checks_unheld.clock().now()),
            )
        })
    }

    /// One admin action for `salon`.
    pub fn action(&self, salon: SalonId, action: Action) -> Result<(), RetryAfter> {
        self.check(&self.0.actions, &(salon, action))
            .inspect_err(|wait| {
                tracing::warn!(salon_id = %salon, ?action, retry_after_secs = wait.0, "action rate limit reached");
            })
    }

    fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), RetryAfter> {
        self.sweep();
        limiter.check_key(key).map_err(|not_until| {
            RetryAfter::from_wait(not_until.wait_time_from(limiter.clock().now()))
        })
    }

    /// Drops the keys whose budget is full again, at most once per `sweep_every`.
    fn sweep(&self) {
        if !self.0.sweeper.due() {
            return;
        }
        forget_idle(&self.0.redirect);
        forget_idle(&self.0.actions);
        forget_idle(&self.0.entry_checks_per_user);
    }

    /// Keys the limiters currently remember (redirect, actions).
    pub fn tracked_keys(&self) -> (usize, usize) {
        (self.0.redirect.len(), self.0.actions.len())
    }

    /// A live stream for `salon`, if it has fewer than the maximum open; the slot is held until
    /// the returned guard (or the stream it [holds](StreamSlot::hold)) is dropped.
    pub fn stream_slot(&self, salon: SalonId) -> Result<StreamSlot, RetryAfter> {
        self.try_stream_slot(salon).ok_or_else(|| {
            tracing::warn!(salon_id = %salon, open = self.open_streams(salon), "live stream limit reached");
            RetryAfter(STREAM_RETRY_AFTER_SECS)
        })
    }

    /// As [`stream_slot`](Self::stream_slot), saying nothing when there is none (the live
    /// channel's lean path then leaves the request to the route, which answers and logs it).
    pub fn try_stream_slot(&self, salon: SalonId) -> Option<StreamSlot> {
        let mut streams = self
            .0
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = streams.entry(salon).or_default();
        if *open >= self.0.max_streams {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            limits: self.0.clone(),
            salon,
        })
    }

    /// Live streams open for `salon`.
    pub fn open_streams(&self, salon: SalonId) -> u32 {
        self.0
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&salon)
            .copied()
            .unwrap_or(0)
    }
}

pub(crate) fn forget_idle<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>) {
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

/// One of a salon's live-stream slots, released on drop.
pub struct StreamSlot {
    limits: Arc<Inner>,
    salon: SalonId,
}

impl std::fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSlot")
            .field("salon", &self.salon)
            .finish()
    }
}

impl StreamSlot {
    /// `stream`, holding this slot until it is dropped (the connection closed or the server
    /// stopping).
    pub fn hold<S: Stream>(self, stream: S) -> impl Stream<Item = S::Item> {
        stream.map(move |item| {
            let _held = &self;
            item
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self
            .limits
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = streams.get_mut(&self.salon) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.salon);
            }
        }
    }
}

/// What a per-client limit counts under: an IPv4 address, or an IPv6 address's /64 — one
/// subscriber's network, whose 2^64 addresses would otherwise be as many clients.
pub fn client_network(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trusted: &[&str], max_streams: u32) -> LimitSettings {
        LimitSettings {
            picker_titles_per_minute: 30,
            picker_titles_burst: 50,
            sse_fanout_shard: 256,
            redirect_per_minute: 1,
            redirect_burst: 2,
            actions_per_minute: 2,
            sse_max_streams_per_salon: max_streams,
            trusted_proxies: trusted
                .iter()
                .map(|ip| ip.parse().expect("an IP"))
                .collect(),
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            entry_checks_per_user_per_minute: 10,
            entry_checks_per_user_burst: 10,
            entry_checks_unheld_per_minute: 60,
            entry_checks_unheld_burst: 30,
        }
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("an IP")
    }

    fn salon(id: i64) -> SalonId {
        SalonId::try_from(id).expect("positive")
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy_and_only_its_last_hop() {
        let limits = Limits::new(&settings(&["10.0.0.1"], 1));
        let headers = Some("1.1.1.1, 203.0.113.9");
        assert_eq!(
            limits.client_address(Some(ip("10.0.0.1")), headers),
            ip("203.0.113.9")
        );
        assert_eq!(
            limits.client_address(Some(ip("198.51.100.2")), headers),
            ip("198.51.100.2"),
            "an untrusted peer's X-Forwarded-For is ignored"
        );
        assert_eq!(
            limits.client_address(Some(ip("10.0.0.1")), Some("garbage")),
            ip("10.0.0.1")
        );
        assert_eq!(
            limits.client_address(Some(ip("::ffff:10.0.0.1")), Some("203.0.113.9:443")),
            ip("203.0.113.9")
        );
        assert_eq!(
            limits.client_address(None, headers),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn redirects_get_a_burst_then_wait_and_ipv6_counts_per_64() {
        let limits = Limits::new(&settings(&[], 1));
        assert!(limits.redirect(ip("192.0.2.1")).is_ok());
        assert!(limits.redirect(ip("192.0.2.1")).is_ok());
        let RetryAfter(secs) = limits
            .redirect(ip("192.0.2.1"))
            .expect_err("over the burst");
        assert!((1..=60).contains(&secs), "{secs}");
        assert!(limits.redirect(ip("192.0.2.2")).is_ok(), "another client");
        assert!(limits.redirect(ip("2001:db8::1")).is_ok());
        assert!(limits.redirect(ip("2001:db8::2")).is_ok());
        assert!(limits.redirect(ip("2001:db8::ffff:3")).is_err(), "same /64");
        assert!(
            limits.redirect(ip("2001:db8:0:1::1")).is_ok(),
            "another /64"
        );
    }

    #[test]
    fn actions_are_counted_per_salon_and_action() {
        let limits = Limits::new(&settings(&[], 1));
        for _ in 0..2 {
            assert!(limits.action(salon(1), Action::Restart).is_ok());
        }
        let error: AppError = limits
            .action(salon(1), Action::Restart)
            .expect_err("over")
            .into();
        assert!(
            matches!(error, AppError::TooManyRequests { retry_after_secs } if retry_after_secs >= 1)
        );
        assert!(limits.action(salon(1), Action::PairingCode).is_ok());
        assert!(limits.action(salon(2), Action::Restart).is_ok());
    }

    #[test]
    fn stream_slots_are_capped_per_salon_and_freed_on_drop() {
        let limits = Limits::new(&settings(&[], 2));
        let a = limits.stream_slot(salon(1)).expect("first");
        let b = limits.stream_slot(salon(1)).expect("second");
        let refused = limits.stream_slot(salon(1)).expect_err("third");
        assert_eq!(refused, RetryAfter(STREAM_RETRY_AFTER_SECS));
        let other = limits.stream_slot(salon(2)).expect("another salon");
        drop(a);
        assert_eq!(limits.open_streams(salon(1)), 1);
        let held = b.hold(futures::stream::iter([1, 2]));
        let _c = limits.stream_slot(salon(1)).expect("a freed slot");
        assert!(limits.stream_slot(salon(1)).is_err());
        drop(held);
        drop(other);
        assert_eq!(limits.open_streams(salon(1)), 1);
        assert_eq!(limits.open_streams(salon(2)), 0);
        assert!(
            limits.0.streams.lock().expect("lock").len() == 1,
            "salons without streams are forgotten"
        );
    }

    fn fill(limits: &Limits, count: u32) {
        for n in 0..count {
            let _ = limits.redirect(IpAddr::V4(Ipv4Addr::from(n)));
            let _ = limits.action(salon(i64::from(n) + 1), Action::Restart);
        }
    }

    #[test]
    fn a_sweep_is_due_once_per_interval_whoever_asks() {
        let sweeper = Sweeper::new(Duration::from_millis(200));
        assert!(!sweeper.due(), "not right after the start");
        std::thread::sleep(Duration::from_millis(250));
        assert!(sweeper.due(), "due after the interval");
        for _ in 0..1000 {
            assert!(!sweeper.due(), "once, not on every access");
        }
    }

    #[test]
    fn idle_keys_are_forgotten_at_most_once_per_sweep_interval() {
        // A key is idle once its quota's period has passed unused. The period is long enough
        // that the key used just before a sweep cannot go idle in between on a loaded machine
        // (with 1 ms, a CI run on two busy cores swept it too), and short against the sleep.
        let fast = Quota::with_period(Duration::from_millis(100)).expect("a period");
        let hourly = Limits::with_quotas(fast, fast, &settings(&[], 1), SWEEP_EVERY);
        fill(&hourly, 1000);
        std::thread::sleep(Duration::from_millis(300));
        let _ = hourly.redirect(ip("192.0.2.1"));
        assert_eq!(hourly.tracked_keys(), (1001, 1000), "not swept yet");
        forget_idle(&hourly.0.redirect);
        forget_idle(&hourly.0.actions);
        assert_eq!(
            hourly.tracked_keys(),
            (1, 0),
            "only the key used just now is kept"
        );

        let always = Limits::with_quotas(fast, fast, &settings(&[], 1), Duration::ZERO);
        fill(&always, 100);
        std::thread::sleep(Duration::from_millis(300));
        let _ = always.redirect(ip("192.0.2.1"));
        assert_eq!(always.tracked_keys(), (1, 0), "swept on access");
    }
}
