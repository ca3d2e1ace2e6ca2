//! Sessions reachable from every instance. A salon's WhatsApp session runs on the one instance
//! holding its lease (`store::leases`); a browser, a webhook or the simulated phone may reach any
//! instance. Two things make the session look local everywhere:
//!
//! - **The shared view.** The owner writes what the session shows (the QR code of the moment, a
//!   pairing code, the test message's receipts) into its lease row before it tells the other
//!   instances of the change, fenced by the lease's generation; any instance's status builder
//!   reads it there when the session does not run locally ([`SharedView`]).
//! - **Calls.** A command for a session that runs elsewhere (restart, pairing code, disconnect,
//!   stop, a text, the simulated phone's actions) is posted to the owner as a row of
//!   `instance_calls` ([`Mailbox`]): the owner takes it once, carries it out on its session and
//!   writes the answer into the row; the caller reads it and deletes the row. The database is the
//!   mailbox, so nothing is lost with a notification; the bus (`LISTEN/NOTIFY` on PostgreSQL)
//!   only wakes the reader sooner, and each side also looks by itself.
//!
//! Every instance is seen in `instances` every lease renewal interval; the live ones share the
//! sessions to restore between them (see `Linking::restore_linked_sessions`).

use super::simulator::{PhoneError, ReceivedText, Simulator};
use super::supervisor::{LinkingError, SentText};
use crate::bus::EventBus;
use crate::store::{Store, StoreError};
use app::domain::{PhoneNumber, SalonId};
use app::status::LinkState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a session shows outside the instance running it (the lease row's `view`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedView {
    pub state: LinkState,
    pub sent: Option<SentText>,
}

impl SharedView {
    pub fn encode(&self) -> String {
        // A `LinkState` and a `SentText` always encode (strings, numbers, enums).
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }
}

/// A command for a session (or the simulated phone) that runs on another instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    PairCode {
        salon: SalonId,
        phone: PhoneNumber,
    },
    Restart {
        salon: SalonId,
    },
    Disconnect {
        salon: SalonId,
    },
    Stop {
        salon: SalonId,
    },
    SendText {
        salon: SalonId,
        to: PhoneNumber,
        text: String,
        /// The page's test message (shown with its receipts), not a booking message.
        test: bool,
    },
    /// An action on the simulated phone, carried out by the instance whose simulator holds the
    /// connection it acts on.
    Phone(PhoneCall),
}

/// The simulated phone's actions (`/dev/phone`), as calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PhoneCall {
    Scan {
        reference: String,
        phone: PhoneNumber,
    },
    PairCode {
        code: String,
    },
    Unlink {
        salon: SalonId,
    },
    Drop {
        salon: SalonId,
    },
    Replace {
        salon: SalonId,
    },
    Ban {
        salon: SalonId,
        expires_in_ms: Option<u64>,
    },
    Silence {
        salon: SalonId,
    },
    Reply {
        salon: SalonId,
        from: PhoneNumber,
        text: String,
    },
    Inbox {
        phone: PhoneNumber,
    },
}

impl Call {
    /// Whether the call names the salon it acts on (then only that salon's owner is asked).
    pub fn names_salon(&self) -> bool {
        match self {
            Call::Phone(action) => action.salon().is_some(),
            _ => true,
        }
    }
}

impl PhoneCall {
    /// The salon the action acts on, when it names one.
    pub fn salon(&self) -> Option<SalonId> {
        match self {
            PhoneCall::Unlink { salon }
            | PhoneCall::Drop { salon }
            | PhoneCall::Replace { salon }
            | PhoneCall::Ban { salon, .. }
            | PhoneCall::Silence { salon }
            | PhoneCall::Reply { salon, .. } => Some(*salon),
            PhoneCall::Scan { .. } | PhoneCall::PairCode { .. } | PhoneCall::Inbox { .. } => None,
        }
    }
}

/// What a call's target answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", content = "value", rename_all = "snake_case")]
pub enum Answer {
    State(Result<LinkState, LinkingError>),
    Done(Result<(), LinkingError>),
    Sent(Result<SentText, LinkingError>),
    /// A phone action: the salon it acted on, or why it could not.
    Phone(Result<Option<SalonId>, PhoneError>),
    Inbox(Vec<ReceivedText>),
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the instance running the session did not answer within {0:?}")]
    NoAnswer(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the answer could not be read: {0}")]
    Garbled(String),
}

impl From<CallError> for LinkingError {
    fn from(e: CallError) -> Self {
        tracing::warn!(error = %e, "a call to the instance running the session failed");
        LinkingError::Stopped
    }
}

/// How often a side looks at the mailbox by itself: the first look comes soon, later ones less
/// often (a wake-up cuts any wait short).
const FIRST_LOOK: Duration = Duration::from_millis(20);
const LOOK_AT_MOST_EVERY: Duration = Duration::from_millis(250);
/// How often a waiting caller wakes its target again (a wake-up may be lost).
const WAKE_AGAIN: Duration = Duration::from_secs(1);

/// This instance's end of the calls between instances.
#[derive(Clone)]
pub struct Mailbox {
    store: Store,
    bus: EventBus,
    me: Arc<str>,
    /// How long a caller waits for an answer; the target does not carry out a call older than
    /// this (its caller gave up).
    timeout: Duration,
}

impl Mailbox {
    pub fn new(store: Store, bus: EventBus, me: &str, timeout: Duration) -> Self {
        Self {
            store,
            bus,
            me: Arc::from(me),
            timeout,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Posts `call` to `target` and waits for its answer (at most the mailbox's timeout).
    pub async fn call(&self, target: &str, call: &Call) -> Result<Answer, CallError> {
        self.call_within(target, call, self.timeout).await
    }

    /// [`call`](Self::call), waiting at most `timeout` (at most the mailbox's own).
    pub async fn call_within(
        &self,
        target: &str,
        call: &Call,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        let timeout = timeout.min(self.timeout);
        let request = serde_json::to_string(call).map_err(|e| CallError::Garbled(e.to_string()))?;
        let id = self.store.post_call(&self.me, target, &request).await?;
        self.bus.wake(target);
        let answered = self.wait_for_answer(id, target, timeout).await;
        // Answered or given up on: the row has done its work either way. A target that takes
        // it after this finds nothing to answer.
        if let Err(e) = self.store.delete_call(id).await {
            tracing::debug!(error = %e, call = id, "a finished call's row stays until the sweep");
        }
        let answer = answered?;
        serde_json::from_str(&answer).map_err(|e| CallError::Garbled(e.to_string()))
    }

    async fn wait_for_answer(
        &self,
        id: i32,
        target: &str,
        timeout: Duration,
    ) -> Result<String, CallError> {
        let deadline = Instant::now() + timeout;
        let mut wake_ups = self.bus.wake_ups();
        let mut look_in = FIRST_LOOK;
        let mut wake_again = Instant::now() + WAKE_AGAIN;
        loop {
            if let Some(answer) = self.store.call_answer(id).await? {
                return Ok(answer);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CallError::NoAnswer(timeout));
            }
            if now >= wake_again {
                self.bus.wake(target);
                wake_again = now + WAKE_AGAIN;
            }
            let until = (now + look_in).min(deadline).min(wake_again);
            self.woken_or(&mut wake_ups, until).await;
            look_in = (look_in * 2).min(LOOK_AT_MOST_EVERY);
        }
    }

    /// Waits until this instance is woken or `until`, whichever comes first.
    async fn woken_or(
        &self,
        wake_ups: &mut Option<tokio::sync::broadcast::Receiver<Arc<str>>>,
        until: Instant,
    ) {
        let Some(receiver) = wake_ups.as_mut() else {
            tokio::time::sleep_until(until).await;
            return;
        };
        let me = self.me.clone();
        let woken = async {
            loop {
                match receiver.recv().await {
                    Ok(name) if name == me => return,
                    Ok(_) => {}
                    // Fell behind: one of the missed ones may have been ours.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }

    /// Serves the calls addressed to this instance with `answer` until `stopped` resolves, and
    /// keeps this instance seen among the live ones every `beat`.
    pub async fn serve<F, Fut>(
        self,
        beat: Duration,
        answer: F,
        stopped: impl std::future::Future<Output = ()>,
    ) where
        F: Fn(Call) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        let started = chrono::Utc::now();
        let mut stopped = std::pin::pin!(stopped);
        let mut wake_ups = self.bus.wake_ups();
        // With wake-ups, looking by itself is only the safety net.
        let look_every = if wake_ups.is_some() {
            Duration::from_secs(1)
        } else {
            LOOK_AT_MOST_EVERY
        };
        let mut next_beat = Instant::now();
        let mut next_sweep = Instant::now() + Duration::from_secs(60);
        loop {
            let now = Instant::now();
            if now >= next_beat {
                if let Err(e) = self.store.instance_seen(&self.me, started).await {
                    tracing::warn!(error = %e, "cannot record this instance as running");
                }
                next_beat = now + beat;
            }
            if now >= next_sweep {
                let before = chrono::Utc::now() - chrono::Duration::minutes(1);
                if let Err(e) = self.store.sweep_calls(before).await {
                    tracing::debug!(error = %e, "sweeping old calls failed");
                }
                next_sweep = now + Duration::from_secs(60);
            }
            self.take_and_answer(&answer).await;
            let until = (Instant::now() + look_every).min(next_beat);
            tokio::select! {
                _ = &mut stopped => break,
                _ = self.woken_or(&mut wake_ups, until) => {}
            }
        }
        if let Err(e) = self.store.instance_gone(&self.me).await {
            tracing::debug!(error = %e, "this instance's row stays until it is stale");
        }
    }

    async fn take_and_answer<F, Fut>(&self, answer: &F)
    where
        F: Fn(Call) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        let stale_before = chrono::Utc::now()
            - chrono::Duration::from_std(self.timeout).unwrap_or(chrono::Duration::seconds(30));
        let taken = match self.store.take_calls(&self.me, stale_before).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the calls for this instance");
                return;
            }
        };
        for call in taken {
            let mailbox = self.clone();
            let answer = answer.clone();
            // Each call on its own: a slow one (a text, a pairing code) holds up no other.
            tokio::spawn(async move {
                let reply = match serde_json::from_str::<Call>(&call.request) {
                    Ok(request) => answer(request).await,
                    Err(e) => {
                        tracing::warn!(error = %e, call = call.id, "a call of another format; answering that the session is stopped");
                        Answer::Done(Err(LinkingError::Stopped))
                    }
                };
                let encoded = serde_json::to_string(&reply).unwrap_or_default();
                if let Err(e) = mailbox.store.answer_call(call.id, &encoded).await {
                    tracing::warn!(error = %e, call = call.id, "cannot answer a call");
                }
                mailbox.bus.wake(&call.caller);
            });
        }
    }
}

/// Carries out a phone action on this instance's simulator.
pub async fn on_simulator(simulator: &Simulator, action: PhoneCall) -> Answer {
    let acted = |result: Result<(), PhoneError>, salon: SalonId| {
        Answer::Phone(result.map(|()| Some(salon)))
    };
    match action {
        PhoneCall::Scan { reference, phone } => {
            Answer::Phone(simulator.scan(&reference, phone).await.map(Some))
        }
        PhoneCall::PairCode { code } => {
            Answer::Phone(simulator.enter_pair_code(&code).await.map(Some))
        }
        PhoneCall::Unlink { salon } => acted(simulator.unlink_from_phone(salon).await, salon),
        PhoneCall::Drop { salon } => acted(
            if simulator.drop_connection(salon) {
                Ok(())
            } else {
                Err(PhoneError::NoConnection)
            },
            salon,
        ),
        PhoneCall::Replace { salon } => acted(simulator.replace_elsewhere(salon), salon),
        PhoneCall::Ban {
            salon,
            expires_in_ms,
        } => acted(
            simulator.ban(salon, expires_in_ms.map(Duration::from_millis)),
            salon,
        ),
        PhoneCall::Silence { salon } => acted(simulator.silence(salon), salon),
        PhoneCall::Reply { salon, from, text } => acted(simulator.reply(salon, from, &text), salon),
        PhoneCall::Inbox { phone } => Answer::Inbox(simulator.read_inbox(&phone)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_survive_the_round_trip_through_the_table() {
        let salon = SalonId::try_from(7).expect("positive");
        let phone = PhoneNumber::parse("79990009900").expect("phone");
        for call in [
            Call::PairCode {
                salon,
                phone: phone.clone(),
            },
            Call::Stop { salon },
            Call::Phone(PhoneCall::Ban {
                salon,
                expires_in_ms: Some(5),
            }),
        ] {
            let json = serde_json::to_string(&call).expect("encoded");
            assert_eq!(serde_json::from_str::<Call>(&json).expect("decoded"), call);
        }
        for answer in [
            Answer::State(Ok(LinkState::Qr {
                seq: 3,
                code: "c".into(),
                expires_at_ms: 9,
            })),
            Answer::State(Err(LinkingError::RateLimited {
                retry_after_secs: 30,
            })),
            Answer::Done(Ok(())),
            Answer::Phone(Err(PhoneError::UnknownQr)),
            Answer::Phone(Ok(Some(salon))),
        ] {
            let json = serde_json::to_string(&answer).expect("encoded");
            assert_eq!(
                serde_json::from_str::<Answer>(&json).expect("decoded"),
                answer
            );
        }
        let view = SharedView {
            state: LinkState::Linked { phone },
            sent: None,
        };
        assert_eq!(SharedView::decode(&view.encode()), Some(view));
        assert_eq!(SharedView::decode("{not json"), None);
    }
}
