//! The group commit of entity webhooks. Requests hand their validated event to a writer task
//! through a bounded queue; the writer takes what is waiting (up to `batch_max` events, waiting for
//! more until `batch_window` after the oldest one arrived), stores the batch in **one**
//! transaction and only then answers every request of the batch through its oneshot. So a
//! request is never answered before its row is committed, one commit (one fsync) carries many
//! events, and duplicates — inside a batch or across batches — still make one row (the store's
//! dedup key). A full queue — in events (`ENTITY_WEBHOOK_QUEUE`) or in the bytes of their
//! request bodies (`ENTITY_WEBHOOK_QUEUE_BYTES`: a body may be up to 1 MiB, so a bound in events
//! alone let 8,192 of them hold gigabytes) — is refused at once ([`WebhookError::Busy`], a 503 with
//! `Retry-After`) rather than growing.
//!
//! On PostgreSQL several writers (`writers`) commit side by side, so one batch's round trips and
//! fsync overlap the next batch's. Each event goes to the writer its **lane key** names: the
//! salon and booking for a `record` (the key the bookings projection and its messages are written
//! under), the salon and resource id otherwise. Everything a batch writes — the event's row under
//! its dedup key, the booking, the booking's messages — is keyed by that, so two writers never
//! touch the same row: no lock waits between them, no deadlock, and one booking's events are
//! still applied one after another in arrival order. SQLite gets one writer: it commits one
//! transaction at a time anyway. On PostgreSQL the writers run on a thread, a runtime and
//! connections of their own ([`spawn_writer_thread`]), not as tasks among the HTTP work.

use super::WebhookError;
use crate::config::EntityWebhookSettings;
use crate::instruments::Instruments;
use crate::store::{EntityEvent, Store, Stored};
use app::domain::SalonId;
use sea_orm::DbBackend;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

struct Job {
    salon: SalonId,
    event: EntityEvent,
    reply: oneshot::Sender<Result<Stored, WebhookError>>,
    /// When the request queued it: a batch's window runs from its oldest event's arrival.
    queued: tokio::time::Instant,
    /// Its body's share of the byte budget, given back once it is answered.
    held: Held,
}

/// A request body's bytes counted against `ENTITY_WEBHOOK_QUEUE_BYTES` while its event waits or
/// is in a batch (the parsed event is in memory that long); given back when dropped.
struct Held {
    bytes: Arc<AtomicUsize>,
    size: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.bytes.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// The handle requests hold: the writer's queue (the task starts with the first event).
#[derive(Clone)]
pub struct EntityWriter(Arc<Inner>);

/// Where the writers' own connections come from (PostgreSQL only): the database the store was
/// opened on.
#[derive(Debug, Clone)]
pub struct OwnPool {
    pub url: String,
    pub schema: Option<String>,
}

struct Inner {
    store: Store,
    settings: EntityWebhookSettings,
    instruments: Instruments,
    /// `None`: the writers run as tasks of the app's runtime on the store's pool.
    own_pool: Option<OwnPool>,
    /// One queue per writer (the tasks start with the first event).
    lanes: OnceLock<Vec<mpsc::Sender<Job>>>,
    /// The bytes of the bodies queued or in a batch, on every writer.
    held_bytes: Arc<AtomicUsize>,
}

impl EntityWriter {
    pub fn new(
        store: Store,
        settings: EntityWebhookSettings,
        instruments: Instruments,
        own_pool: Option<OwnPool>,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            settings,
            instruments,
            own_pool,
            lanes: OnceLock::new(),
            held_bytes: Arc::default(),
        }))
    }

    /// As configured.
    pub fn settings(&self) -> EntityWebhookSettings {
        self.0.settings
    }

    /// The writers' queues; the queue limit is shared among them.
    fn lanes(&self) -> &[mpsc::Sender<Job>] {
        self.0.lanes.get_or_init(|| {
            let settings = self.0.settings;
            let writers = if self.0.store.connection().get_database_backend() == DbBackend::Postgres
            {
                settings.writers.max(1)
            } else {
                1
            };
            let (senders, receivers): (Vec<_>, Vec<_>) = (0..writers)
                .map(|_| mpsc::channel((settings.queue / writers).max(1)))
                .unzip();
            let store = self.0.store.clone();
            let instruments = self.0.instruments.clone();
            match &self.0.own_pool {
                Some(pool) => {
                    spawn_writer_thread(pool.clone(), store, settings, instruments, receivers);
                }
                None => {
                    for receiver in receivers {
                        tokio::spawn(run(store.clone(), settings, instruments.clone(), receiver));
                    }
                }
            }
            senders
        })
    }

    /// Counts `size` bytes against the byte budget, or refuses ([`WebhookError::Busy`]) when
    /// they would take it over its limit.
    fn hold(&self, size: usize) -> Result<Held, WebhookError> {
        let limit = self.0.settings.queue_bytes;
        let bytes = &self.0.held_bytes;
        bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(size).filter(|total| *total <= limit)
            })
            .map_err(|held| {
                tracing::warn!(
                    held,
                    size,
                    limit,
                    "the entity webhook queue holds its limit in bytes; answering 503"
                );
                WebhookError::Busy
            })?;
        Ok(Held {
            bytes: bytes.clone(),
            size,
        })
    }

    /// Stores the event with the next batch; resolves once its transaction committed. `size` is
    /// the request body's length, counted against `ENTITY_WEBHOOK_QUEUE_BYTES` until the event
    /// is answered.
    pub async fn store(
        &self,
        salon: SalonId,
        event: EntityEvent,
        size: usize,
    ) -> Result<Stored, WebhookError> {
        let held = self.hold(size)?;
        let (reply, answer) = oneshot::channel();
        let lanes = self.lanes();
        lanes[lane(salon, &event, lanes.len())]
            .try_send(Job {
                salon,
                event,
                reply,
                queued: tokio::time::Instant::now(),
                held,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    tracing::warn!("the entity webhook queue is full; answering 503");
                    WebhookError::Busy
                }
                mpsc::error::TrySendError::Closed(_) => {
                    WebhookError::Unavailable("the webhook writer stopped; retry")
                }
            })?;
        answer.await.unwrap_or(Err(WebhookError::Unavailable(
            "the webhook writer stopped; retry",
        )))
    }
}

/// The writer an event goes to: the same for every event of one booking (or, for other
/// resources, of one resource id), whatever form its id arrived in.
fn lane(salon: SalonId, event: &EntityEvent, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    salon.get().hash(&mut hasher);
    match event.booking_id() {
        Some(booking) => booking.hash(&mut hasher),
        None => {
            event.resource.hash(&mut hasher);
            event.resource_id.hash(&mut hasher);
        }
    }
    (hasher.finish() % lanes as u64) as usize
}

/// Runs the writers on a thread of their own, with a runtime and connections of their own.
///
/// A batch is a handful of statements, one after another on one connection, and the requests
/// it holds wait for all of them. As tasks of the app's runtime, each time PostgreSQL answered a
/// statement the writer waited for its turn behind the HTTP work queued on the same two worker
/// threads (64 connections' requests being read, parsed and answered) before it sent the next.
/// Under the webhook benchmark a batch of 12 events took 5.8 ms, of which PostgreSQL's own
/// statement log accounted for about 2 ms, and `pg_stat_activity` found the writers' backends
/// «idle in transaction» — waiting for us — more often than working. On their own thread the
/// writers are woken by the kernel when an answer arrives: 5.0 ms a batch, ~11 % more events/s
/// (docs/design.md, «The writers' own thread»). The connections are opened as needed (at most
/// one per writer). The thread ends when the queues close (the last handle dropped) and closes
/// its connections. Should the thread or its runtime fail to start (the system out of threads),
/// the queues close with it and every entity webhook is answered 503 (YClients retries), as when
/// a writer stops.
fn spawn_writer_thread(
    pool: OwnPool,
    store: Store,
    settings: EntityWebhookSettings,
    instruments: Instruments,
    receivers: Vec<mpsc::Receiver<Job>>,
) {
    let writers = receivers.len() as u32;
    let spawned = std::thread::Builder::new()
        .name("webhook-writers".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    // The receivers drop with this thread: every webhook is answered 503.
                    tracing::error!(error = %e, "cannot start the webhook writers' runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let store = match crate::db::connect_own_pool(
                    &pool.url,
                    pool.schema.as_deref(),
                    writers,
                )
                .await
                {
                    Ok(db) => store.with_connection(db),
                    Err(e) => {
                        tracing::warn!(error = %e, "the webhook writers share the app's connections");
                        store
                    }
                };
                let tasks: Vec<_> = receivers
                    .into_iter()
                    .map(|receiver| {
                        tokio::spawn(run(store.clone(), settings, instruments.clone(), receiver))
                    })
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
                let _ = store.connection().close_by_ref().await;
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the webhook writers' thread");
    }
}

async fn run(
    store: Store,
    settings: EntityWebhookSettings,
    instruments: Instruments,
    mut queue: mpsc::Receiver<Job>,
) {
    let commit_time = instruments.histogram("ai_admin_webhook_commit_seconds", &[]);
    let batch_size = instruments.histogram("ai_admin_webhook_batch_events", &[]);
    let batch_wait = instruments.histogram("ai_admin_webhook_batch_wait_seconds", &[]);
    let batch_max = settings.batch_max.max(1);
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    while let Some(first) = queue.recv().await {
        // What is already waiting, then a short window for more — counted from the oldest
        // event's arrival, not from this moment: events that queued while the last batch
        // committed have waited their window already, so under load a batch is what queued
        // meanwhile and goes at once; only a quiet writer's first event waits for company.
        let oldest = first.queued;
        let deadline = oldest + settings.batch_window;
        jobs.push(first);
        while jobs.len() < batch_max {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if settings.batch_window.is_zero() {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(job)) => jobs.push(job),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        // Each reply keeps its body's bytes counted until it is sent.
        let (batch, replies): (Vec<(SalonId, EntityEvent)>, Vec<_>) = jobs
            .drain(..)
            .map(|job| ((job.salon, job.event), (job.reply, job.held)))
            .unzip();
        let started = std::time::Instant::now();
        batch_wait.record(oldest.elapsed().as_secs_f64());
        let result = store_guarded(&store, &batch).await;
        commit_time.record(started.elapsed().as_secs_f64());
        batch_size.record(batch.len() as f64);
        match result {
            Ok(stored) => {
                for ((reply, _held), stored) in replies.into_iter().zip(stored) {
                    // The request may have gone away: its row is stored all the same.
                    let _ = reply.send(Ok(stored));
                }
            }
            Err(e) if batch.len() > 1 && !e.database_unreachable() => {
                // One event may be what fails the batch (a value the database refuses): each
                // goes again on its own, so it fails alone and the batch's other events — other
                // salons' among them — are stored. Nothing was committed, so nothing repeats.
                tracing::warn!(error = %e, events = batch.len(), "a batch of entity webhooks failed; storing its events one by one");
                for (event, (reply, _held)) in batch.chunks(1).zip(replies) {
                    let answer = match store_guarded(&store, event).await {
                        Ok(stored) => Ok(stored.first().copied().unwrap_or(Stored::Duplicate)),
                        Err(e) => {
                            not_stored(&e, 1);
                            Err(NOT_STORED)
                        }
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                not_stored(&e, replies.len());
                for (reply, _held) in replies {
                    let _ = reply.send(Err(NOT_STORED));
                }
            }
        }
    }
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("storing the batch panicked: {0}")]
    Panicked(String),
}

impl BatchError {
    /// The database could not be reached at all: storing the events one by one would only
    /// fail once per event, each after waiting for a connection.
    fn database_unreachable(&self) -> bool {
        matches!(
            self,
            BatchError::Store(crate::store::StoreError::Db(
                sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
            ))
        )
    }
}

/// Stores a batch, a panic included among the failures: the writer is one task per lane that
/// nothing restarts, so a panic inside it (a bug a hostile value reaches) would leave every
/// salon's webhooks of that lane answered 503 until a restart. The transaction the panic
/// abandoned rolls back when it is dropped.
async fn store_guarded(
    store: &Store,
    batch: &[(SalonId, EntityEvent)],
) -> Result<Vec<Stored>, BatchError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(store.store_entity_events(batch))
        .catch_unwind()
        .await
    {
        Ok(result) => Ok(result?),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Err(BatchError::Panicked(message))
        }
    }
}

/// The answer to each request of a batch that was not stored: YClients retries a 503.
const NOT_STORED: WebhookError = WebhookError::Unavailable("the event was not stored; retry");

/// Logs, once per batch, why it was not stored.
fn not_stored(error: &BatchError, events: usize) {
    tracing::error!(error = %error, events, "storing entity webhooks failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(resource: &str, id: &str) -> EntityEvent {
        EntityEvent {
            resource: resource.into(),
            resource_id: id.into(),
            status: "update".into(),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn one_bookings_events_go_to_one_writer_whatever_the_form_of_its_id() {
        let salon = SalonId::try_from(962302).expect("a salon id");
        for lanes in 2..=5 {
            for record in [1_i64, 77, 1_213_336_367] {
                let plain = lane(salon, &event("record", &record.to_string()), lanes);
                let padded = lane(salon, &event("record", &format!("0{record}")), lanes);
                assert_eq!(plain, padded, "{record} over {lanes} writers");
                assert!(plain < lanes);
            }
        }
        assert_eq!(lane(salon, &event("record", "5"), 1), 0);
    }

    #[test]
    fn events_spread_over_every_writer() {
        let salon = SalonId::try_from(962302).expect("a salon id");
        let mut seen = [0usize; 3];
        for record in 0..3_000 {
            seen[lane(salon, &event("record", &record.to_string()), 3)] += 1;
            seen[lane(salon, &event("client", &format!("c{record}")), 3)] += 1;
        }
        for count in seen {
            assert!((1_500..=2_500).contains(&count), "{seen:?}");
        }
    }
}
