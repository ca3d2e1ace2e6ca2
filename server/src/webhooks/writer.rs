//! The group commit of entity webhooks. Requests hand their validated event to one writer task
//! through a bounded queue; the writer takes what is waiting (up to `batch_max` events, waiting at
//! most `batch_window` for more), stores the batch in **one** transaction and only then answers
//! every request of the batch through its oneshot. So a request is never answered before its row
//! is committed, one commit (one fsync) carries many events, and duplicates — inside a batch or
//! across batches — still make one row (the store's dedup key). A full queue is refused at once
//! ([`WebhookError::Busy`], a 503 with `Retry-After`) rather than growing.

use super::WebhookError;
use crate::config::EntityWebhookSettings;
use crate::instruments::Instruments;
use crate::store::{EntityEvent, Store, Stored};
use app::domain::SalonId;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

struct Job {
    salon: SalonId,
    event: EntityEvent,
    reply: oneshot::Sender<Result<Stored, WebhookError>>,
}

/// The handle requests hold: the writer's queue (the task starts with the first event).
#[derive(Clone)]
pub struct EntityWriter(Arc<Inner>);

struct Inner {
    store: Store,
    settings: EntityWebhookSettings,
    instruments: Instruments,
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl EntityWriter {
    pub fn new(store: Store, settings: EntityWebhookSettings, instruments: Instruments) -> Self {
        Self(Arc::new(Inner {
            store,
            settings,
            instruments,
            queue: OnceLock::new(),
        }))
    }

    fn queue(&self) -> &mpsc::Sender<Job> {
        self.0.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(self.0.settings.queue.max(1));
            tokio::spawn(run(
                self.0.store.clone(),
                self.0.settings,
                self.0.instruments.clone(),
                receiver,
            ));
            sender
        })
    }

    /// Stores the event with the next batch; resolves once its transaction committed.
    pub async fn store(&self, salon: SalonId, event: EntityEvent) -> Result<Stored, WebhookError> {
        let (reply, answer) = oneshot::channel();
        self.queue()
            .try_send(Job {
                salon,
                event,
                reply,
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

async fn run(
    store: Store,
    settings: EntityWebhookSettings,
    instruments: Instruments,
    mut queue: mpsc::Receiver<Job>,
) {
    let commit_time = instruments.histogram("ai_admin_webhook_commit_seconds", &[]);
    let batch_size = instruments.histogram("ai_admin_webhook_batch_events", &[]);
    let batch_max = settings.batch_max.max(1);
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    while let Some(first) = queue.recv().await {
        jobs.push(first);
        // What is already waiting, then a short window for more.
        let deadline = tokio::time::Instant::now() + settings.batch_window;
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
        let (batch, replies): (Vec<(SalonId, EntityEvent)>, Vec<_>) = jobs
            .drain(..)
            .map(|job| ((job.salon, job.event), job.reply))
            .unzip();
        let started = std::time::Instant::now();
        let result = store.store_entity_events(&batch).await;
        commit_time.record(started.elapsed().as_secs_f64());
        batch_size.record(batch.len() as f64);
        match result {
            Ok(stored) => {
                for (reply, stored) in replies.into_iter().zip(stored) {
                    // The request may have gone away: its row is stored all the same.
                    let _ = reply.send(Ok(stored));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = replies.len(), "storing a batch of entity webhooks failed");
                for reply in replies {
                    let _ = reply.send(Err(WebhookError::Unavailable(
                        "the event was not stored; retry",
                    )));
                }
            }
        }
    }
}
