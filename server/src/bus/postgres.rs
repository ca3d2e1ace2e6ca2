//! The bus across instances: PostgreSQL `LISTEN/NOTIFY`, chosen when the database is PostgreSQL.
//!
//! A change is handed to this instance's subscribers at once (the local fan-out) and sent to the
//! others as a small notification on one channel per schema: `instance salon kind version`, never
//! state (a subscriber reads the current state when told). One task sends the notifications,
//! several per round trip, in order; one connection of each instance listens, and hands what
//! other instances published to the same local fan-out, so one listening connection serves every
//! live stream and every room of this instance.
//!
//! Notifications sent while a listener is disconnected are lost for it: the listener reconnects by
//! itself (with backoff) and, once it listens again, tells every local subscriber that events may
//! be missing ([`Delivery::Gap`](super::Delivery::Gap)); each live room then reads and sends a
//! fresh snapshot, so nothing stale survives a lost notification.
//!
//! The listener ends with graceful shutdown ([`SalonEvents::stop_listening`], called when the
//! live streams are told to end), when the bus is dropped, or when the pool is closed; after any
//! of these it delivers nothing more and reports no gap, so no stream gets a snapshot after
//! shutdown. Sending goes on until the bus is dropped (or the pool closed): the changes this
//! instance makes while it drains still reach the others.

use super::fanout::Fanout;
use super::{BusHealth, SalonChanged, SalonEvents, Subscription, VersionClock};
use app::domain::SalonId;
use app::status::LiveEventKind;
use sqlx::postgres::{PgListener, PgPool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Notifications sent in one round trip at most.
const NOTIFY_BATCH: usize = 256;
/// The longest pause between two attempts to listen again.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The notification channel of the schema the app runs in (PostgreSQL's channels are per
/// database, not per schema: two deployments, or two tests, in one database must not hear each
/// other). An identifier of at most 63 characters, lower case.
pub fn notify_channel(schema: Option<&str>) -> String {
    let mut channel = String::from("ai_admin_bus");
    if let Some(schema) = schema {
        channel.push('_');
        channel.extend(schema.chars().map(|c| c.to_ascii_lowercase()).map(|c| {
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '_'
            }
        }));
    }
    channel.truncate(63);
    channel
}

#[derive(Default)]
struct Stats {
    listening: AtomicBool,
    reconnects: AtomicU64,
    notify_failures: AtomicU64,
}

pub struct PostgresBus {
    fanout: Arc<Fanout>,
    outgoing: mpsc::UnboundedSender<String>,
    /// This process among the instances: its own notifications are not delivered twice.
    instance: String,
    clock: VersionClock,
    stats: Arc<Stats>,
    /// Set at shutdown, or dropped with the bus: the listener stops.
    stop: watch::Sender<bool>,
    /// Wake-ups heard (`! name`), for the instance mailbox.
    wakes: broadcast::Sender<Arc<str>>,
}

impl PostgresBus {
    /// Listens on `channel` before returning (no change published after this is missed), then
    /// runs the listener (until shutdown, see the module docs) and the sender (until the bus is
    /// dropped) in the background.
    pub async fn start(pool: PgPool, channel: String) -> Result<Self, sqlx::Error> {
        let listener = listen(&pool, &channel).await?;
        let fanout = Arc::new(Fanout::default());
        let stats = Arc::new(Stats::default());
        stats.listening.store(true, Ordering::SeqCst);
        let instance = {
            use rand::RngCore;
            let mut bytes = [0u8; 8];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            hex::encode(bytes)
        };
        let (outgoing, pending) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let wakes = broadcast::channel(256).0;
        tokio::spawn(send_notifications(
            pool.clone(),
            channel.clone(),
            pending,
            stats.clone(),
        ));
        tokio::spawn(
            Listening {
                pool,
                channel,
                fanout: fanout.clone(),
                instance: instance.clone(),
                stats: stats.clone(),
                wakes: wakes.clone(),
            }
            .run(listener, stopped),
        );
        Ok(Self {
            fanout,
            outgoing,
            instance,
            clock: VersionClock::default(),
            stats,
            stop,
            wakes,
        })
    }
}

impl SalonEvents for PostgresBus {
    fn publish(&self, salon: SalonId, kind: LiveEventKind) {
        self.fanout.deliver(SalonChanged { salon, kind });
        let payload = format!(
            "{} {} {} {}",
            self.instance,
            salon.get(),
            kind.as_str(),
            self.clock.next_version()
        );
        // The sender ends only with the bus.
        let _ = self.outgoing.send(payload);
    }

    fn subscribe_salon(&self, salon: SalonId) -> Subscription {
        Subscription::new(self.fanout.subscribe_salon(salon))
    }

    fn subscribe_all(&self) -> Subscription {
        Subscription::new(self.fanout.subscribe_all())
    }

    fn stop_listening(&self) {
        self.stop.send_replace(true);
    }

    fn wake(&self, instance: &str) {
        let _ = self.outgoing.send(format!("{WAKE} {instance}"));
    }

    fn wake_ups(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        Some(self.wakes.subscribe())
    }

    fn health(&self) -> BusHealth {
        BusHealth {
            kind: "postgres",
            listening: self.stats.listening.load(Ordering::SeqCst),
            reconnects: self.stats.reconnects.load(Ordering::SeqCst),
            notify_failures: self.stats.notify_failures.load(Ordering::SeqCst),
        }
    }
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// The first word of a wake-up's payload (`! name`): never an instance's (those are hex).
const WAKE: &str = "!";

/// The instance a wake-up payload names.
fn parse_wake(payload: &str) -> Option<&str> {
    payload
        .strip_prefix(WAKE)?
        .strip_prefix(' ')
        .filter(|name| !name.is_empty() && !name.contains(' '))
}

/// Parses `instance salon kind version`; `None` for anything else (another program on the
/// channel, a newer format): ignored.
fn parse(payload: &str) -> Option<(&str, SalonChanged)> {
    let mut parts = payload.split(' ');
    let instance = parts.next()?;
    let salon = SalonId::try_from(parts.next()?.parse::<i64>().ok()?).ok()?;
    let kind = parts.next()?;
    let kind = LiveEventKind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)?;
    Some((instance, SalonChanged { salon, kind }))
}

/// Sends queued notifications, several per round trip, in the order published. A failed round
/// trip is tried again a few times; what still fails is lost for the other instances (counted,
/// logged) — their pages then show the change with the next one, or their next snapshot.
async fn send_notifications(
    pool: PgPool,
    channel: String,
    mut pending: mpsc::UnboundedReceiver<String>,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(NOTIFY_BATCH);
    while pending.recv_many(&mut batch, NOTIFY_BATCH).await > 0 {
        let mut attempt = 0;
        loop {
            let sent =
                sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
                    .bind(&channel)
                    .bind(&batch)
                    .execute(&pool)
                    .await;
            match sent {
                Ok(_) => break,
                // The app is gone: nobody is left to tell.
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) if attempt < 3 => {
                    tracing::warn!(error = %e, attempt, "notifying the other instances failed; trying again");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    stats
                        .notify_failures
                        .fetch_add(batch.len() as u64, Ordering::SeqCst);
                    tracing::error!(error = %e, lost = batch.len(), "the other instances were not told of changes");
                    break;
                }
            }
        }
        batch.clear();
    }
}

struct Listening {
    pool: PgPool,
    channel: String,
    fanout: Arc<Fanout>,
    instance: String,
    stats: Arc<Stats>,
    wakes: broadcast::Sender<Arc<str>>,
}

impl Listening {
    /// Hands what the other instances publish to the local fan-out until shutdown (`stop` set or
    /// dropped) or a closed pool; reconnects by itself meanwhile.
    async fn run(self, first: PgListener, mut stop: watch::Receiver<bool>) {
        let mut listener = Some(first);
        let mut failures: u32 = 0;
        loop {
            let Some(current) = listener.as_mut() else {
                let attempt = tokio::select! {
                    // A stop wins over anything that is ready at the same time.
                    biased;
                    _ = stop_requested(&mut stop) => break,
                    attempt = listen(&self.pool, &self.channel) => attempt,
                };
                match attempt {
                    // Listening again just as the app stops: nothing to catch up on.
                    Ok(_) if stopping(&stop) => break,
                    Ok(again) => {
                        failures = 0;
                        listener = Some(again);
                        self.stats.listening.store(true, Ordering::SeqCst);
                        self.stats.reconnects.fetch_add(1, Ordering::SeqCst);
                        tracing::info!("listening to the other instances again; every live stream gets a fresh snapshot");
                        // Whatever was published while nobody listened is unknown.
                        self.fanout.gap();
                    }
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(e) => {
                        let wait = retry_delay::exponential(
                            Duration::from_millis(100),
                            failures,
                            RECONNECT_MAX,
                        );
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot listen to the other instances");
                        tokio::select! {
                            biased;
                            _ = stop_requested(&mut stop) => break,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
                continue;
            };
            let received = tokio::select! {
                biased;
                _ = stop_requested(&mut stop) => break,
                received = current.try_recv() => received,
            };
            if stopping(&stop) {
                // Stopped while this was on its way: it reaches no stream.
                break;
            }
            match received {
                Ok(Some(notification)) => {
                    let payload = notification.payload();
                    if let Some(name) = parse_wake(payload) {
                        // No mailbox waits yet: nobody to wake.
                        let _ = self.wakes.send(Arc::from(name));
                    } else {
                        match parse(payload) {
                            Some((instance, _)) if instance == self.instance => {}
                            Some((_, changed)) => self.fanout.deliver(changed),
                            None => tracing::debug!(
                                payload,
                                "ignoring a notification of another format"
                            ),
                        }
                    }
                }
                // The connection was lost and the listener has connected and listens again
                // (sqlx's eager reconnect): whatever was sent meanwhile is unknown.
                Ok(None) => {
                    self.stats.reconnects.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!("the listening connection was lost and is back; every live stream gets a fresh snapshot");
                    self.fanout.gap();
                }
                // The app closed its database: the end, not a gap.
                Err(sqlx::Error::PoolClosed) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the listening connection failed; connecting again");
                    self.stats.listening.store(false, Ordering::SeqCst);
                    listener = None;
                }
            }
        }
        self.stats.listening.store(false, Ordering::SeqCst);
        tracing::debug!("no longer listening to the other instances");
    }
}

/// Whether the bus was told to stop (or is gone).
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves once the bus is told to stop, or dropped.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // An error means the bus was dropped: a stop as well.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_per_schema_and_valid_identifiers() {
        assert_eq!(notify_channel(None), "ai_admin_bus");
        assert_eq!(notify_channel(Some("t_AB12")), "ai_admin_bus_t_ab12");
        assert_eq!(notify_channel(Some("a-b c")), "ai_admin_bus_a_b_c");
        assert_eq!(notify_channel(Some(&"x".repeat(100))).len(), 63);
    }

    #[test]
    fn payloads_are_small_and_parsed_back() {
        let (instance, changed) = parse("abc 962302 qr-update 1764000000000").expect("parsed");
        assert_eq!(instance, "abc");
        assert_eq!(changed.salon.get(), 962302);
        assert_eq!(changed.kind, LiveEventKind::QrUpdate);
        for kind in LiveEventKind::ALL {
            let payload = format!("i 1 {} 2", kind.as_str());
            assert_eq!(parse(&payload).map(|(_, c)| c.kind), Some(kind));
        }
        for junk in [
            "",
            "abc",
            "abc -4 qr-update 1",
            "abc 1 unknown 1",
            "abc x qr-update 1",
        ] {
            assert!(parse(junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn wake_ups_name_one_instance_and_are_not_salon_changes() {
        assert_eq!(parse_wake("! instance-1"), Some("instance-1"));
        assert!(parse("! instance-1").is_none());
        for junk in ["!", "! ", "!x", "! a b", "a ! b"] {
            assert_eq!(parse_wake(junk), None, "{junk}");
        }
    }
}
