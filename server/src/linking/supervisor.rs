use super::gateway::{GatewayError, GatewayEvent, GatewaySession, WhatsAppGateway};
use super::remote::{self, Answer, Call, Mailbox, PhoneCall, SharedView};
use super::simulator::Simulator;
use crate::bus::{EventBus, Received, Subscription};
use crate::domain::SalonStatus;
use crate::store::{SessionLease, Store, StoreError, WhatsappHealth};
use app::domain::{PhoneNumber, SalonId};
use app::status::{DeliveryStatus, LinkState, LiveEventKind};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Reconnect, cool-down, keep-alive and rate-limit settings of the supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorPolicy {
    pub pair_code_ttl: Duration,
    pub pair_code_cooldown: Duration,
    /// The first reconnect delay after a drop; doubles up to `reconnect_max`, with jitter.
    pub reconnect_base: Duration,
    pub reconnect_max: Duration,
    /// Consecutive failed connects before the session shows `failed` and slows down.
    pub max_failures: u32,
    /// Once `failed`: the wait before the next attempt, doubled after every failed one up to
    /// `cooldown_max`, with jitter, for as long as the salon is installed.
    pub cooldown_base: Duration,
    pub cooldown_max: Duration,
    /// A linked connection is asked for a keep-alive answer this often…
    pub probe_interval: Duration,
    /// …and one that gives none within this time is dead (a zombie) and is reconnected.
    pub probe_timeout: Duration,
    /// How long a ban is waited out when WhatsApp did not say.
    pub ban_without_expiry: Duration,
    /// How long a text may take to be handed to WhatsApp.
    pub send_timeout: Duration,
    /// A salon's session lease lasts this long from its last renewal (`SESSION_LEASE_SECS`):
    /// when its owner dies, another instance takes the session over after it.
    pub lease_ttl: Duration,
    /// The owner renews its leases this often, well inside `lease_ttl`, and looks for sessions
    /// whose owner died this often (`SESSION_LEASE_RENEW_SECS`).
    pub lease_renew: Duration,
}

impl Default for SupervisorPolicy {
    fn default() -> Self {
        Self {
            pair_code_ttl: Duration::from_secs(180),
            pair_code_cooldown: Duration::from_secs(60),
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            max_failures: 5,
            cooldown_base: Duration::from_secs(60),
            cooldown_max: Duration::from_secs(30 * 60),
            probe_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            ban_without_expiry: Duration::from_secs(3600),
            send_timeout: Duration::from_secs(20),
            lease_ttl: Duration::from_secs(30),
            lease_renew: Duration::from_secs(10),
        }
    }
}

/// Developer messages; the page's words are chosen where these meet the server functions
/// (`onboarding.rs`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LinkingError {
    #[error("WhatsApp is already linked")]
    AlreadyLinked,
    #[error("a pair code was sent; the next one in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the gateway issued no pair code: {0}")]
    Gateway(String),
    #[error("the WhatsApp session is stopped")]
    Stopped,
    #[error("WhatsApp is not linked and connected")]
    NotLinked,
    #[error("WhatsApp banned the account until {until_ms:?} (Unix ms)")]
    Banned { until_ms: Option<i64> },
    #[error("the message was not sent: {0}")]
    Send(String),
}

/// A test message sent from the page, and what WhatsApp's receipts said of it since.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SentText {
    pub message_id: String,
    pub to: PhoneNumber,
    pub status: DeliveryStatus,
    pub sent_at_ms: i64,
}

enum Command {
    RequestPairCode {
        phone: PhoneNumber,
        reply: oneshot::Sender<Result<LinkState, LinkingError>>,
    },
    Restart {
        reply: oneshot::Sender<Result<LinkState, LinkingError>>,
    },
    /// The admin's "disconnect": unlink on the phone, purge, and offer a new QR.
    Disconnect {
        reply: oneshot::Sender<()>,
    },
    SendText {
        to: PhoneNumber,
        text: String,
        /// The page's test message (shown with its receipts), not a booking message.
        test: bool,
        reply: oneshot::Sender<Result<SentText, LinkingError>>,
    },
    Logout {
        reply: oneshot::Sender<()>,
    },
    Stop {
        /// Graceful shutdown: the session should go on elsewhere (the lease is handed over, not
        /// freed).
        hand_over: bool,
        reply: oneshot::Sender<()>,
    },
}

/// What a linked session hears that booking messages care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Receipt {
        salon: SalonId,
        message_id: String,
        status: DeliveryStatus,
    },
    Text {
        salon: SalonId,
        from: PhoneNumber,
        text: String,
    },
}

/// What a session shows outside its task.
#[derive(Debug, Clone)]
struct View {
    state: LinkState,
    sent: Option<SentText>,
}

#[derive(Clone)]
struct SessionHandle {
    view: Arc<RwLock<View>>,
    commands: mpsc::UnboundedSender<Command>,
}

struct Shared {
    gateway: Arc<dyn WhatsAppGateway>,
    store: Store,
    bus: EventBus,
    policy: SupervisorPolicy,
    sessions: Mutex<HashMap<SalonId, SessionHandle>>,
    /// This instance, as the owner of session leases (a random id per process).
    owner: String,
    /// Leases lost to another instance (or to a write refused as stale) since start.
    leases_lost: AtomicU64,
    /// Linked connections found dead by the keep-alive probe since start.
    zombies: AtomicU64,
    instruments: crate::instruments::Instruments,
    /// Where receipts and incoming texts go (booking messages), once someone listens.
    inbound: Mutex<Option<mpsc::UnboundedSender<Inbound>>>,
    /// Calls to the instances running the sessions that do not run here.
    mailbox: Mailbox,
    /// Set by `abandon_sessions`: sessions end without a word to the database, as in a crash.
    abandoned: std::sync::atomic::AtomicBool,
    /// A session could not start here because another instance holds its lease: the lease
    /// keeper reads the next foreign expiry again (that owner may be dead).
    look_again: tokio::sync::Notify,
    /// What the sessions running here show, to write into their lease rows (for the other
    /// instances' pages) before the change is published.
    views: mpsc::UnboundedSender<ViewChange>,
}

/// A session's view changed: write it (fenced by the lease), then publish `kind`.
struct ViewChange {
    lease: SessionLease,
    view: SharedView,
    kind: LiveEventKind,
}

/// How long a phone action waits for another instance (it may have died within the last lease
/// expiry: then the next one is asked).
const PHONE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the session another instance holds shows here.
fn shown_elsewhere(holder: Option<(String, Option<SharedView>)>) -> (LinkState, Option<SentText>) {
    match holder {
        Some((_, Some(view))) => (view.state, view.sent),
        // Held, but its owner has not shown anything yet.
        Some((_, None)) => (LinkState::Starting, None),
        None => (LinkState::Idle, None),
    }
}

/// How long a `freeze` waits for the instance running the session to stop it. A live owner
/// answers in milliseconds; one that died within the last lease expiry never does, and nothing
/// is lost by not waiting: the freeze is stored, the owner's status guard stops the session on
/// the salon's change, and a takeover after the expiry does not start a frozen salon's session.
const STOP_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How many view changes are written in one go at most.
const VIEW_BATCH: usize = 256;

/// Writes the views of the sessions running here into their lease rows, then publishes the
/// changes: an instance told of a change finds the view that goes with it. Changes that arrive
/// together are written together (the last view of each salon), in order.
async fn write_views(
    store: Store,
    bus: EventBus,
    mut changes: mpsc::UnboundedReceiver<ViewChange>,
) {
    let mut batch = Vec::with_capacity(VIEW_BATCH);
    while changes.recv_many(&mut batch, VIEW_BATCH).await > 0 {
        let mut views: Vec<(SessionLease, String)> = Vec::new();
        let mut published: Vec<(SalonId, LiveEventKind)> = Vec::new();
        for change in batch.drain(..) {
            let salon = change.lease.salon;
            let encoded = change.view.encode();
            match views.iter_mut().find(|(lease, _)| lease.salon == salon) {
                Some(slot) => *slot = (change.lease, encoded),
                None => views.push((change.lease, encoded)),
            }
            let event = (salon, change.kind);
            if !published.contains(&event) {
                published.push(event);
            }
        }
        match store.write_session_views(&views).await {
            Ok(fenced) => {
                for salon in fenced {
                    tracing::debug!(salon_id = %salon, "a session's view was not written: its lease is no longer held");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the sessions' views; other instances show them with the next change")
            }
        }
        for (salon, kind) in published {
            bus.publish(salon, kind);
        }
    }
}

/// The per-salon session supervisor.
#[derive(Clone)]
pub struct Linking {
    shared: Arc<Shared>,
}

impl Linking {
    pub fn new(
        gateway: Arc<dyn WhatsAppGateway>,
        store: Store,
        bus: EventBus,
        instruments: crate::instruments::Instruments,
        policy: SupervisorPolicy,
    ) -> Self {
        let owner = format!("instance-{}", uuid::Uuid::new_v4());
        // A routed text waits for the owner's own send timeout, and a little more.
        let mailbox = Mailbox::new(
            store.clone(),
            bus.clone(),
            &owner,
            policy.send_timeout + Duration::from_secs(5),
        );
        let (views, changes) = mpsc::unbounded_channel();
        tokio::spawn(write_views(store.clone(), bus.clone(), changes));
        Self {
            shared: Arc::new(Shared {
                gateway,
                store,
                bus,
                policy,
                sessions: Mutex::default(),
                owner,
                leases_lost: AtomicU64::new(0),
                zombies: AtomicU64::new(0),
                instruments,
                inbound: Mutex::default(),
                mailbox,
                views,
                abandoned: std::sync::atomic::AtomicBool::new(false),
                look_again: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.shared.gateway.backend_name()
    }

    /// This instance's name as the owner of session leases.
    pub fn instance_id(&self) -> &str {
        &self.shared.owner
    }

    /// Session leases this instance lost (taken over, or a write refused as stale) since start.
    pub fn leases_lost(&self) -> u64 {
        self.shared.leases_lost.load(Ordering::Relaxed)
    }

    /// Receipts and incoming texts of every session from now on (one listener: a new call
    /// replaces the previous one).
    pub fn subscribe_inbound(&self) -> mpsc::UnboundedReceiver<Inbound> {
        let (sender, receiver) = mpsc::unbounded_channel();
        *self
            .shared
            .inbound
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(sender);
        receiver
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SalonId, SessionHandle>> {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the salon's session unless one is running; either way returns its state. The
    /// session runs only once it holds the salon's lease: while another instance holds it, the
    /// task ends at once (and the page shows the state the store recorded).
    pub fn ensure_started(&self, salon: SalonId) -> LinkState {
        self.start(salon, None)
    }

    /// Starts the salon's session (with `lease` already taken, or taking it first) unless one
    /// runs here.
    fn start(&self, salon: SalonId, lease: Option<SessionLease>) -> LinkState {
        let mut sessions = self.sessions();
        if let Some(handle) = sessions.get(&salon) {
            if !handle.commands.is_closed() {
                return read(&handle.view).state;
            }
        }
        let view = Arc::new(RwLock::new(View {
            state: LinkState::Starting,
            sent: None,
        }));
        let (commands, receiver) = mpsc::unbounded_channel();
        sessions.insert(
            salon,
            SessionHandle {
                view: view.clone(),
                commands,
            },
        );
        let task = SessionTask {
            shared: self.shared.clone(),
            salon,
            view,
            seq: 0,
            last_qr: None,
            pairing_until: None,
            last_pair_request: None,
            failures: 0,
            cooldowns: 0,
            phone: None,
            recorded: None,
            lease,
            fenced: false,
        };
        tokio::spawn(task.run(receiver));
        LinkState::Starting
    }

    fn running(&self, salon: SalonId) -> Option<SessionHandle> {
        self.sessions()
            .get(&salon)
            .filter(|h| !h.commands.is_closed())
            .cloned()
    }

    /// The salon's link state in the session running here (`Idle` when none runs here; see
    /// [`current`](Self::current) for the session wherever it runs).
    pub fn state(&self, salon: SalonId) -> LinkState {
        self.running(salon)
            .map(|h| read(&h.view).state)
            .unwrap_or(LinkState::Idle)
    }

    /// The last test message sent through the salon's session, with its receipts.
    pub fn sent_text(&self, salon: SalonId) -> Option<SentText> {
        self.running(salon).and_then(|h| read(&h.view).sent)
    }

    /// What the salon's session shows, wherever it runs: here, or on the instance holding its
    /// lease (the view that instance wrote). `Idle` and no text when it runs nowhere.
    pub async fn current(&self, salon: SalonId) -> (LinkState, Option<SentText>) {
        if let Some(here) = self.current_here(salon) {
            return here;
        }
        shown_elsewhere(self.lease_holder_elsewhere(salon).await)
    }

    /// The salon's link in the session running here; `None` when none runs here, and the
    /// caller reads the lease ([`Store::salon_with_session_elsewhere`] or
    /// [`current`](Self::current)) for [`current_elsewhere`](Self::current_elsewhere).
    pub fn current_here(&self, salon: SalonId) -> Option<(LinkState, Option<SentText>)> {
        let handle = self.running(salon)?;
        let view = read(&handle.view);
        // `Idle`: a start here that did not get the lease is just ending.
        (view.state != LinkState::Idle).then_some((view.state, view.sent))
    }

    /// The link as the instance holding the lease shows it, from the lease as the store reads
    /// it (its owner and the view it wrote; `None`: no other instance holds it, `Idle`).
    pub fn current_elsewhere(
        stored: Option<(String, Option<String>)>,
    ) -> (LinkState, Option<SentText>) {
        shown_elsewhere(
            stored.map(|(owner, view)| (owner, view.as_deref().and_then(SharedView::decode))),
        )
    }

    /// This instance, as session leases name their owner.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// Whether another instance runs the salon's session (holds its lease) and this one does
    /// not. The booking messages' sender leaves such a salon to that instance, so one process
    /// paces a salon's messages, counts its daily cap and sends them.
    pub async fn runs_elsewhere(&self, salon: SalonId) -> bool {
        self.owner_elsewhere(salon).await.is_some()
    }

    /// The instance running the salon's session when it is not this one, with the view it
    /// wrote. `None`: it runs here, or nowhere (or the database cannot say: then this instance
    /// acts as if nobody else ran it, and the lease decides).
    async fn owner_elsewhere(&self, salon: SalonId) -> Option<(String, Option<SharedView>)> {
        if self.running(salon).is_some() {
            return None;
        }
        self.lease_holder_elsewhere(salon).await
    }

    /// The instance other than this one holding the salon's lease now, with its view.
    async fn lease_holder_elsewhere(&self, salon: SalonId) -> Option<(String, Option<SharedView>)> {
        match self
            .shared
            .store
            .session_elsewhere(salon, &self.shared.owner)
            .await
        {
            Ok(found) => {
                found.map(|(owner, view)| (owner, view.as_deref().and_then(SharedView::decode)))
            }
            Err(e) => {
                tracing::warn!(salon_id = %salon, error = %e, "cannot read which instance runs the session");
                None
            }
        }
    }

    /// Carries `call` out on the instance running the salon's session.
    async fn call(&self, owner: &str, call: Call) -> Result<Answer, LinkingError> {
        Ok(self.shared.mailbox.call(owner, &call).await?)
    }

    pub fn session_count(&self) -> usize {
        self.sessions()
            .values()
            .filter(|h| !h.commands.is_closed())
            .count()
    }

    /// Running sessions by the name of their state (`qr`, `linked`, `failed`, `banned`, …).
    pub fn state_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for handle in self.sessions().values() {
            if !handle.commands.is_closed() {
                *counts.entry(read(&handle.view).state.name()).or_insert(0) += 1;
            }
        }
        counts
    }

    pub fn failed_count(&self) -> usize {
        self.state_counts().get("failed").copied().unwrap_or(0)
    }

    /// Linked connections the keep-alive probe found dead (and reconnected) since start.
    pub fn zombies_detected(&self) -> u64 {
        self.shared.zombies.load(Ordering::Relaxed)
    }

    fn handle(&self, salon: SalonId) -> SessionHandle {
        self.ensure_started(salon);
        let sessions = self.sessions();
        match sessions.get(&salon) {
            Some(handle) => handle.clone(),
            None => stopped_handle(),
        }
    }

    /// Sends `command` (built around its reply channel) to the salon's session, starting it when
    /// none runs, and waits for the answer.
    async fn ask<T>(
        &self,
        salon: SalonId,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, LinkingError> {
        let (reply, answer) = oneshot::channel();
        self.handle(salon)
            .commands
            .send(command(reply))
            .map_err(|_| LinkingError::Stopped)?;
        answer.await.map_err(|_| LinkingError::Stopped)
    }

    pub async fn request_pair_code(
        &self,
        salon: SalonId,
        phone: PhoneNumber,
    ) -> Result<LinkState, LinkingError> {
        if let Some((owner, _)) = self.owner_elsewhere(salon).await {
            return state_answer(self.call(&owner, Call::PairCode { salon, phone }).await?);
        }
        self.ask(salon, |reply| Command::RequestPairCode { phone, reply })
            .await?
    }

    /// Connects again now: a fresh round of QR codes (after they ran out or a logout), the stored
    /// credentials again (after `failed`, or to take the stream back after `replaced`). A no-op
    /// for a linked session; refused while a ban lasts.
    pub async fn restart(&self, salon: SalonId) -> Result<LinkState, LinkingError> {
        if let Some((owner, _)) = self.owner_elsewhere(salon).await {
            return state_answer(self.call(&owner, Call::Restart { salon }).await?);
        }
        self.ask(salon, |reply| Command::Restart { reply }).await?
    }

    /// The admin disconnects WhatsApp: the device is unlinked on the phone (when it can be
    /// reached), its credentials purged and the link forgotten; the session then shows a new QR.
    pub async fn disconnect(&self, salon: SalonId) -> Result<(), LinkingError> {
        if let Some((owner, _)) = self.owner_elsewhere(salon).await {
            return done_answer(self.call(&owner, Call::Disconnect { salon }).await?);
        }
        self.ask(salon, |reply| Command::Disconnect { reply }).await
    }

    /// Sends a text through the salon's linked WhatsApp.
    pub async fn send_text(
        &self,
        salon: SalonId,
        to: PhoneNumber,
        text: String,
    ) -> Result<SentText, LinkingError> {
        if let Some((owner, _)) = self.owner_elsewhere(salon).await {
            let call = Call::SendText {
                salon,
                to,
                text,
                test: true,
            };
            return sent_answer(self.call(&owner, call).await?);
        }
        if self.running(salon).is_none() {
            return Err(LinkingError::NotLinked);
        }
        self.ask(salon, |reply| Command::SendText {
            to,
            text,
            test: true,
            reply,
        })
        .await?
    }

    /// Sends a booking message through the salon's linked WhatsApp (never starts a session);
    /// returns WhatsApp's id of the message, which receipts name.
    pub async fn send_message(
        &self,
        salon: SalonId,
        to: PhoneNumber,
        text: String,
    ) -> Result<String, LinkingError> {
        if let Some((owner, _)) = self.owner_elsewhere(salon).await {
            let call = Call::SendText {
                salon,
                to,
                text,
                test: false,
            };
            return Ok(sent_answer(self.call(&owner, call).await?)?.message_id);
        }
        if self.running(salon).is_none() {
            return Err(LinkingError::NotLinked);
        }
        let sent = self
            .ask(salon, |reply| Command::SendText {
                to,
                text,
                test: false,
                reply,
            })
            .await??;
        Ok(sent.message_id)
    }

    /// `uninstall`: unlink on the phone for real, purge the backend's credentials, end the
    /// session. The rows (device, linked phone) go with the rest of the salon in the store's one
    /// `uninstall` transaction.
    pub async fn logout_and_purge(&self, salon: SalonId) {
        self.end_session(salon, |reply| Command::Logout { reply })
            .await;
        if let Err(e) = self.shared.gateway.purge_credentials(salon).await {
            tracing::error!(salon_id = %salon, error = %e, "purging WhatsApp credentials failed");
        }
        self.shared.bus.publish(salon, LiveEventKind::WhatsappState);
    }

    /// `freeze`: end the session, keep the credentials (on the instance running it, wherever
    /// that is).
    pub async fn stop(&self, salon: SalonId) {
        if let Some((owner, _)) = self.owner_elsewhere(salon).await {
            if let Err(e) = self
                .shared
                .mailbox
                .call_within(&owner, &Call::Stop { salon }, STOP_CALL_TIMEOUT)
                .await
                .map_err(LinkingError::from)
                .and_then(done_answer)
            {
                tracing::warn!(salon_id = %salon, error = %e, "the instance running the session did not stop it; the status guard there will");
            }
            return;
        }
        self.stop_here(salon).await;
    }

    /// Ends the session running here, keeping the credentials.
    async fn stop_here(&self, salon: SalonId) {
        self.end_session(salon, |reply| Command::Stop {
            hand_over: false,
            reply,
        })
        .await;
        self.shared.bus.publish(salon, LiveEventKind::WhatsappState);
    }

    /// Removes the salon's session and, if its task still runs, sends it `command` and waits
    /// for the task's answer.
    async fn end_session(&self, salon: SalonId, command: fn(oneshot::Sender<()>) -> Command) {
        let running = self
            .sessions()
            .remove(&salon)
            .filter(|h| !h.commands.is_closed());
        if let Some(handle) = running {
            let (reply, answer) = oneshot::channel();
            if handle.commands.send(command(reply)).is_ok() {
                let _ = answer.await;
            }
        }
    }

    /// At start-up: reconnect the salons that have credentials and are neither frozen nor
    /// uninstalled, without a new scan — those nobody runs yet, up to this instance's share of
    /// them (the other live instances take the rest; see [`fair_share`](Self::fair_share)).
    pub async fn restore_linked_sessions(&self) -> Result<usize, StoreError> {
        self.shared
            .store
            .instance_seen(&self.shared.owner, chrono::Utc::now())
            .await?;
        let restorable = self.shared.store.salons_to_restore().await?;
        let mut waiting = self.shared.store.unheld_sessions(&restorable).await?;
        waiting.retain(|salon| self.running(*salon).is_none());
        shuffle(&mut waiting);
        let share = self.fair_share(waiting.len()).await?;
        let mut held = self
            .shared
            .store
            .sessions_held(Some(&self.shared.owner))
            .await?;
        let mut restored = 0;
        for id in waiting {
            if held >= share {
                break;
            }
            match self.shared.gateway.has_credentials(id).await {
                Ok(true) => {
                    if self.take_lease_and_start(id).await? {
                        restored += 1;
                        held += 1;
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(salon_id = %id, error = %e, "cannot check stored WhatsApp credentials")
                }
            }
        }
        Ok(restored)
    }

    /// How many sessions this instance should run now: an equal part, rounded up, of those the
    /// live instances run and those `waiting` for an owner, so that the parts cover them all.
    /// An instance is live while it was seen within a lease's expiry.
    async fn fair_share(&self, waiting: usize) -> Result<u64, StoreError> {
        let since = chrono::Utc::now()
            - chrono::Duration::from_std(self.shared.policy.lease_ttl)
                .unwrap_or(chrono::Duration::seconds(30));
        let live = self.shared.store.live_instances(since).await?;
        let me = usize::from(!live.iter().any(|id| *id == self.shared.owner));
        let instances = (live.len() + me).max(1) as u64;
        let running = self.shared.store.sessions_held(None).await?;
        Ok((running + waiting as u64).div_ceil(instances))
    }

    /// Takes the salon's session lease and starts its session with it; `false` when another
    /// instance holds the lease.
    async fn take_lease_and_start(&self, salon: SalonId) -> Result<bool, StoreError> {
        let lease = self
            .shared
            .store
            .acquire_session_lease(salon, &self.shared.owner, self.lease_expiry())
            .await?;
        match lease {
            Some(lease) => {
                self.start(salon, Some(lease));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn lease_expiry(&self) -> chrono::DateTime<chrono::Utc> {
        lease_expiry(&self.shared.policy)
    }

    /// Sessions whose owner died (its lease expired) or handed them over, and linked salons
    /// nobody runs, are taken over here up to this instance's share and restored from the
    /// stored credentials (no new scan); a salon that may not run WhatsApp any more is left
    /// alone (its session frees the lease at once). An instance running more than its share and
    /// one hands linked sessions over to the others (after an instance joined). Returns how many
    /// were taken.
    pub async fn take_over_orphaned_sessions(&self) -> Result<usize, StoreError> {
        let store = &self.shared.store;
        let mut waiting = store.orphaned_session_leases().await?;
        let restorable = store.salons_to_restore().await?;
        for salon in store.unheld_sessions(&restorable).await? {
            if waiting.contains(&salon) || self.running(salon).is_some() {
                continue;
            }
            if let Ok(true) = self.shared.gateway.has_credentials(salon).await {
                waiting.push(salon);
            }
        }
        waiting.retain(|salon| self.running(*salon).is_none());
        shuffle(&mut waiting);
        let share = self.fair_share(waiting.len()).await?;
        let mut held = store.sessions_held(Some(&self.shared.owner)).await?;
        let mut taken = 0;
        for salon in waiting {
            if held >= share {
                break;
            }
            if self.take_lease_and_start(salon).await? {
                tracing::info!(salon_id = %salon, "took over a WhatsApp session nobody ran");
                taken += 1;
                held += 1;
            }
        }
        self.hand_over_excess(share, held).await;
        Ok(taken)
    }

    /// Hands linked sessions over to the other instances while this one runs more than its
    /// share and one (the slack keeps two instances from passing a session back and forth).
    /// Only linked ones: a page showing a QR code keeps its code.
    async fn hand_over_excess(&self, share: u64, held: u64) {
        if held <= share + 1 {
            return;
        }
        let excess = (held - share) as usize;
        let linked: Vec<SalonId> = self
            .sessions()
            .iter()
            .filter(|(_, h)| !h.commands.is_closed() && read(&h.view).state.is_linked())
            .map(|(salon, _)| *salon)
            .take(excess)
            .collect();
        for salon in linked {
            tracing::info!(salon_id = %salon, share, held, "handing a WhatsApp session over to a less busy instance");
            self.end_session(salon, |reply| Command::Stop {
                hand_over: true,
                reply,
            })
            .await;
        }
    }

    /// Looks for orphaned sessions until `stopped` resolves: every `lease_renew`, and also just
    /// after the earliest expiry of a lease another instance holds — when that owner has died,
    /// its session is taken over right after the expiry, not up to a renewal interval later.
    /// The expiry is read again after each look and whenever a session could not start here
    /// because its lease was held elsewhere.
    pub async fn run_lease_keeper(self, stopped: impl std::future::Future<Output = ()>) {
        let mut stopped = std::pin::pin!(stopped);
        // The regular look stays where it was when a notification makes the keeper read the
        // next expiry again: notifications cannot postpone it.
        let mut regular = tokio::time::Instant::now() + jittered(self.shared.policy.lease_renew);
        loop {
            let look_at = self.next_look(regular).await;
            tokio::select! {
                _ = &mut stopped => return,
                _ = self.shared.look_again.notified() => continue,
                _ = tokio::time::sleep_until(look_at) => {}
            }
            if let Err(e) = self.take_over_orphaned_sessions().await {
                tracing::warn!(error = %e, "cannot look for WhatsApp sessions to take over");
            }
            regular = tokio::time::Instant::now() + jittered(self.shared.policy.lease_renew);
        }
    }

    /// When the lease keeper looks next: at `regular`, or sooner when a lease another instance
    /// holds expires sooner (then a moment past that expiry, jittered so that the survivors do
    /// not all ask at once).
    async fn next_look(&self, regular: tokio::time::Instant) -> tokio::time::Instant {
        let next = self
            .shared
            .store
            .next_foreign_lease_expiry(&self.shared.owner)
            .await;
        let expiry = match next {
            Ok(Some(expiry)) => expiry,
            Ok(None) => return regular,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the next lease expiry; looking at the regular interval");
                return regular;
            }
        };
        let past_expiry = (expiry - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            + EXPIRY_MARGIN
            + jittered(EXPIRY_MARGIN);
        regular.min(tokio::time::Instant::now() + past_expiry)
    }

    /// Serves the calls other instances post for the sessions running here (and, with the
    /// simulator, for its phone) and keeps this instance seen among the live ones, until
    /// `stopped` resolves.
    pub async fn serve_calls(
        self,
        simulator: Option<Simulator>,
        stopped: impl std::future::Future<Output = ()>,
    ) {
        let mailbox = self.shared.mailbox.clone();
        let beat = self.shared.policy.lease_renew;
        let answer = move |call: Call| {
            let linking = self.clone();
            let simulator = simulator.clone();
            async move { linking.answer(call, simulator.as_ref()).await }
        };
        mailbox.serve(beat, answer, stopped).await;
    }

    /// Carries out an action of the simulated phone: on this instance's simulator when it holds
    /// what the action acts on, else on the instance that does — the salon's session owner, or,
    /// for a QR reference or a pair code (they name no salon), each other live instance in turn.
    /// An inbox is the texts the number received through any instance.
    pub async fn phone(&self, simulator: &Simulator, action: PhoneCall) -> Answer {
        use super::simulator::PhoneError;
        let here = remote::on_simulator(simulator, action.clone()).await;
        if let Answer::Inbox(mut texts) = here {
            for instance in self.other_instances().await {
                if let Ok(Answer::Inbox(more)) = self
                    .shared
                    .mailbox
                    .call_within(&instance, &Call::Phone(action.clone()), PHONE_CALL_TIMEOUT)
                    .await
                {
                    texts.extend(more);
                }
            }
            texts.sort_by_key(|text| text.at);
            return Answer::Inbox(texts);
        }
        let not_here = matches!(
            here,
            Answer::Phone(Err(PhoneError::UnknownQr
                | PhoneError::UnknownPairCode
                | PhoneError::NotLinked
                | PhoneError::NoConnection))
        );
        if !not_here {
            return here;
        }
        let targets = match action.salon() {
            Some(salon) => match self.owner_elsewhere(salon).await {
                Some((owner, _)) => vec![owner],
                None => return here,
            },
            None => self.other_instances().await,
        };
        let call = Call::Phone(action);
        for target in targets {
            match self
                .shared
                .mailbox
                .call_within(&target, &call, PHONE_CALL_TIMEOUT)
                .await
            {
                Ok(answer @ Answer::Phone(Ok(_))) => return answer,
                Ok(answer) if call.names_salon() => return answer,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(instance = %target, error = %e, "another instance did not answer a phone action")
                }
            }
        }
        here
    }

    /// The other instances seen within a lease's expiry.
    async fn other_instances(&self) -> Vec<String> {
        let since = chrono::Utc::now()
            - chrono::Duration::from_std(self.shared.policy.lease_ttl)
                .unwrap_or(chrono::Duration::seconds(30));
        match self.shared.store.live_instances(since).await {
            Ok(mut live) => {
                live.retain(|id| *id != self.shared.owner);
                live
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the other instances");
                Vec::new()
            }
        }
    }

    /// Carries out a call on the session running here. A call never travels on: when the
    /// session does not run here any more, the answer says so.
    async fn answer(&self, call: Call, simulator: Option<&Simulator>) -> Answer {
        let here = |salon: SalonId| self.running(salon).is_some();
        match call {
            Call::PairCode { salon, phone } if here(salon) => Answer::State(
                self.ask(salon, |reply| Command::RequestPairCode { phone, reply })
                    .await
                    .and_then(|r| r),
            ),
            Call::Restart { salon } if here(salon) => Answer::State(
                self.ask(salon, |reply| Command::Restart { reply })
                    .await
                    .and_then(|r| r),
            ),
            Call::Disconnect { salon } if here(salon) => {
                Answer::Done(self.ask(salon, |reply| Command::Disconnect { reply }).await)
            }
            Call::SendText {
                salon,
                to,
                text,
                test,
            } if here(salon) => Answer::Sent(
                self.ask(salon, |reply| Command::SendText {
                    to,
                    text,
                    test,
                    reply,
                })
                .await
                .and_then(|r| r),
            ),
            Call::Stop { salon } => {
                self.stop_here(salon).await;
                Answer::Done(Ok(()))
            }
            Call::Phone(action) => match simulator {
                Some(simulator) => remote::on_simulator(simulator, action).await,
                None => Answer::Phone(Err(super::simulator::PhoneError::NoConnection)),
            },
            Call::PairCode { .. } | Call::Restart { .. } => {
                Answer::State(Err(LinkingError::Stopped))
            }
            Call::Disconnect { .. } => Answer::Done(Err(LinkingError::Stopped)),
            Call::SendText { .. } => Answer::Sent(Err(LinkingError::NotLinked)),
        }
    }

    /// Keeps the sessions running here in step with their salons' stored status, whichever
    /// instance changed it: a salon uninstalled through another instance has its session here
    /// logged out on the phone and its credentials purged, a frozen one's session stops (the
    /// credentials kept). Every status change of a salon is published as `activation-update`;
    /// after a gap in the bus every running session is checked. Follows the bus until it closes.
    pub async fn run_status_guard(self, mut events: Subscription) {
        while let Some(received) = events.recv().await {
            let salons = match received {
                Received::Changed(changed) if changed.kind == LiveEventKind::ActivationUpdate => {
                    vec![changed.salon]
                }
                Received::Changed(_) => continue,
                Received::Resync { .. } => self.sessions().keys().copied().collect(),
            };
            for salon in salons {
                if self.running(salon).is_some() {
                    self.follow_stored_status(salon).await;
                }
            }
        }
    }

    async fn follow_stored_status(&self, salon: SalonId) {
        match self.shared.store.salon(salon).await {
            Ok(Some(row)) if row.status.may_run_whatsapp() => {}
            Ok(Some(row)) if row.status == SalonStatus::Uninstalled => {
                tracing::info!(salon_id = %salon, "the salon was uninstalled elsewhere; unlinking its WhatsApp here");
                self.logout_and_purge(salon).await;
            }
            Ok(_) => {
                tracing::info!(salon_id = %salon, "the salon may not run WhatsApp now; stopping its session here");
                self.stop(salon).await;
            }
            Err(e) => {
                tracing::warn!(salon_id = %salon, error = %e, "cannot read the salon's status for its session")
            }
        }
    }

    /// Ends every session here without freeing its lease, as a process that died leaves them:
    /// the leases expire by themselves and another instance takes the sessions over then. For
    /// failover drills (the two-instance tests, `bench failover`); nothing else calls it.
    pub async fn abandon_sessions(&self) {
        self.shared.abandoned.store(true, Ordering::SeqCst);
        self.shutdown().await;
    }

    /// Stops every session (graceful shutdown), keeping credentials; their leases are handed
    /// over (another instance takes the sessions over at once).
    pub async fn shutdown(&self) {
        let handles: Vec<SessionHandle> = self.sessions().drain().map(|(_, h)| h).collect();
        for handle in handles {
            let (reply, answer) = oneshot::channel();
            let stop = Command::Stop {
                hand_over: true,
                reply,
            };
            if handle.commands.send(stop).is_ok() {
                let _ = answer.await;
            }
        }
    }
}

/// Puts `salons` in a random order, so instances starting together contend less.
fn shuffle(salons: &mut [SalonId]) {
    use rand::seq::SliceRandom;
    salons.shuffle(&mut rand::thread_rng());
}

/// The answer to a call that returns a state.
fn state_answer(answer: Answer) -> Result<LinkState, LinkingError> {
    match answer {
        Answer::State(result) => result,
        other => Err(unexpected(other)),
    }
}

/// The answer to a call that returns nothing.
fn done_answer(answer: Answer) -> Result<(), LinkingError> {
    match answer {
        Answer::Done(result) => result,
        other => Err(unexpected(other)),
    }
}

/// The answer to a text sent through another instance.
fn sent_answer(answer: Answer) -> Result<SentText, LinkingError> {
    match answer {
        Answer::Sent(result) => result,
        other => Err(unexpected(other)),
    }
}

fn unexpected(answer: Answer) -> LinkingError {
    tracing::warn!(
        ?answer,
        "another instance answered a call with something else"
    );
    LinkingError::Stopped
}

fn stopped_handle() -> SessionHandle {
    // `ensure_started` inserted it under the same lock a moment ago; only a concurrent
    // `logout_and_purge` can remove it, and then commands go nowhere and answer `Stopped`.
    let (commands, _) = mpsc::unbounded_channel();
    SessionHandle {
        view: Arc::new(RwLock::new(View {
            state: LinkState::Idle,
            sent: None,
        })),
        commands,
    }
}

fn read(view: &RwLock<View>) -> View {
    view.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// How long after a foreign lease's expiry the lease keeper looks (plus as much again,
/// jittered): clocks of instances differ a little, and the expiry is the owner's.
const EXPIRY_MARGIN: Duration = Duration::from_millis(200);

/// When a lease taken or renewed now expires.
fn lease_expiry(policy: &SupervisorPolicy) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
        + chrono::Duration::from_std(policy.lease_ttl).unwrap_or(chrono::Duration::days(1))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `delay` stretched or shrunk by up to a fifth, so sessions that failed together do not
/// retry together.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

type Connection = (
    Arc<dyn GatewaySession>,
    mpsc::UnboundedReceiver<GatewayEvent>,
);

struct SessionTask {
    shared: Arc<Shared>,
    salon: SalonId,
    view: Arc<RwLock<View>>,
    seq: u64,
    last_qr: Option<LinkState>,
    pairing_until: Option<Instant>,
    last_pair_request: Option<Instant>,
    /// Failed connects in a row (quick retries with backoff).
    failures: u32,
    /// Cool-downs since the session went `failed` (each doubles the next).
    cooldowns: u32,
    /// The linked account, while credentials exist.
    phone: Option<PhoneNumber>,
    /// The state last written to the store.
    recorded: Option<WhatsappHealth>,
    /// The salon's session lease (taken before the task starts, or first thing in `run`).
    lease: Option<SessionLease>,
    /// A write was refused as stale: another instance holds the lease now.
    fenced: bool,
}

enum Next {
    Continue,
    End,
}

/// How a session task begins.
enum Resume {
    Connect,
    /// Connect at this time; `None`: only when a person asks.
    Wait(Option<Instant>),
    /// The salon may not run WhatsApp (frozen, uninstalled, unknown).
    NotRunnable,
}

/// The timers of one session's loop.
#[derive(Default)]
struct Timers {
    /// The next renewal of the lease.
    renew_at: Option<Instant>,
    /// Until when the lease is surely ours (its expiry as of the last renewal): past it, with no
    /// renewal through, the session stops.
    lease_until: Option<Instant>,
    reconnect_at: Option<Instant>,
    probe_at: Option<Instant>,
    probe: Option<JoinHandle<bool>>,
}

impl Timers {
    fn cancel_probe(&mut self) {
        self.probe_at = None;
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
    }
}

impl SessionTask {
    #[tracing::instrument(name = "whatsapp_session", skip_all, fields(salon_id = %self.salon))]
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut connection: Option<Connection> = None;
        let mut timers = Timers::default();
        if !self.hold_lease(&mut timers).await {
            self.view.write().unwrap_or_else(|p| p.into_inner()).state = LinkState::Idle;
            // A page here that showed `starting` reads again: the view of the instance that
            // holds the lease.
            self.shared
                .bus
                .publish(self.salon, LiveEventKind::WhatsappState);
            return;
        }
        match self.resume().await {
            Resume::Connect => self.connect(&mut connection, &mut timers).await,
            Resume::Wait(until) => timers.reconnect_at = until,
            Resume::NotRunnable => {
                tracing::info!("the salon is frozen or removed; no WhatsApp session for it");
                self.view.write().unwrap_or_else(|p| p.into_inner()).state = LinkState::Idle;
                self.release_lease(false).await;
                return;
            }
        }
        loop {
            if self.fenced {
                tracing::warn!("a write was refused: another instance holds the session lease now");
                self.lose_lease(&mut connection, &mut timers).await;
                return;
            }
            self.schedule_probe(&connection, &mut timers);
            let pairing_until = self.pairing_until;
            tokio::select! {
                event = next_event(&mut connection) => {
                    let event = event.unwrap_or(GatewayEvent::Disconnected { reason: "the backend closed the session".into() });
                    self.on_event(event, &mut connection, &mut timers).await;
                }
                command = commands.recv() => {
                    let Some(command) = command else {
                        close(&mut connection).await;
                        self.release_lease(false).await;
                        return;
                    };
                    if let Next::End = self.on_command(command, &mut connection, &mut timers).await {
                        timers.cancel_probe();
                        return;
                    }
                }
                _ = sleep_until(timers.renew_at), if timers.renew_at.is_some() => {
                    timers.renew_at = None;
                    if !self.renew_lease(&mut timers).await {
                        self.lose_lease(&mut connection, &mut timers).await;
                        return;
                    }
                }
                _ = sleep_until(pairing_until), if pairing_until.is_some() => {
                    self.pairing_until = None;
                    self.end_pairing();
                }
                _ = sleep_until(timers.reconnect_at), if timers.reconnect_at.is_some() => {
                    timers.reconnect_at = None;
                    self.connect(&mut connection, &mut timers).await;
                }
                _ = sleep_until(timers.probe_at), if timers.probe_at.is_some() => {
                    timers.probe_at = None;
                    if let Some((session, _)) = connection.as_ref() {
                        let session = session.clone();
                        let limit = self.shared.policy.probe_timeout;
                        timers.probe = Some(tokio::spawn(async move {
                            matches!(tokio::time::timeout(limit, session.probe()).await, Ok(Ok(())))
                        }));
                    }
                }
                answered = join_probe(&mut timers.probe), if timers.probe.is_some() => {
                    timers.probe = None;
                    if !answered {
                        self.on_zombie(&mut connection, &mut timers).await;
                    }
                }
            }
        }
    }

    /// Takes the salon's session lease unless the task was started with it; `false` when
    /// another instance holds it (or the store cannot say): no session runs here then.
    async fn hold_lease(&mut self, timers: &mut Timers) -> bool {
        let started = Instant::now();
        if self.lease.is_none() {
            let acquired = self
                .shared
                .store
                .acquire_session_lease(
                    self.salon,
                    &self.shared.owner,
                    lease_expiry(&self.shared.policy),
                )
                .await;
            match acquired {
                Ok(Some(lease)) => self.lease = Some(lease),
                Ok(None) => {
                    tracing::debug!("another instance runs this salon's WhatsApp session");
                    self.shared.look_again.notify_one();
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the WhatsApp session lease");
                    return false;
                }
            }
        }
        let policy = &self.shared.policy;
        timers.lease_until = Some(started + policy.lease_ttl);
        timers.renew_at = Some(Instant::now() + policy.lease_renew);
        true
    }

    /// Renews the lease; `false` when it is lost (taken by another instance, or not renewed
    /// before its expiry because the store did not answer).
    async fn renew_lease(&mut self, timers: &mut Timers) -> bool {
        let Some(lease) = self.lease.clone() else {
            return false;
        };
        let started = Instant::now();
        let policy = &self.shared.policy;
        match self
            .shared
            .store
            .renew_session_lease(&lease, lease_expiry(policy))
            .await
        {
            Ok(true) => {
                timers.lease_until = Some(started + policy.lease_ttl);
                timers.renew_at = Some(Instant::now() + policy.lease_renew);
                true
            }
            Ok(false) => false,
            Err(e) => {
                let until = timers.lease_until.unwrap_or(started);
                let now = Instant::now();
                if now >= until {
                    tracing::warn!(error = %e, "the WhatsApp session lease expired unrenewed");
                    return false;
                }
                tracing::warn!(error = %e, "renewing the WhatsApp session lease failed; retrying");
                timers.renew_at = Some(now + (policy.lease_renew / 4).min(until - now));
                true
            }
        }
    }

    /// The lease is lost: the session stops here at once (another instance runs it now, or will
    /// take it over), keeping the credentials.
    async fn lose_lease(&mut self, connection: &mut Option<Connection>, timers: &mut Timers) {
        close(connection).await;
        timers.cancel_probe();
        self.shared.leases_lost.fetch_add(1, Ordering::Relaxed);
        self.shared
            .instruments
            .count("ai_admin_whatsapp_leases_lost_total", &[]);
        tracing::warn!("the WhatsApp session lease is lost; stopping the session here");
        // Lost to an expiry nobody used yet: expire it now, so another instance takes over.
        self.release_lease(true).await;
        self.set(LinkState::Idle, LiveEventKind::WhatsappState);
    }

    /// Frees the lease (`hand_over`: expires it now, so another instance takes the session over
    /// at once; else nobody takes it over by itself). A lease another instance took meanwhile is
    /// left alone.
    async fn release_lease(&mut self, hand_over: bool) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if self.shared.abandoned.load(Ordering::SeqCst) {
            // A crash frees nothing: the lease expires by itself.
            return;
        }
        let store = &self.shared.store;
        let released = if hand_over {
            store.hand_over_session_lease(&lease).await
        } else {
            store.release_session_lease(&lease).await
        };
        if let Err(e) = released {
            tracing::warn!(error = %e, "freeing the WhatsApp session lease failed; it expires by itself");
        }
    }

    /// A store error from a fenced write: a stale lease ends the session (at the loop's top).
    fn fenced(&mut self, error: &StoreError) {
        if matches!(error, StoreError::Fenced(_)) {
            self.fenced = true;
        }
    }

    /// Where a session starts from what the store recorded: none for a salon frozen or removed
    /// meanwhile (a `freeze` applied just before the start), a ban still running is waited out,
    /// a session another client took over waits for a person; anything else connects.
    async fn resume(&mut self) -> Resume {
        match self.shared.store.salon(self.salon).await {
            Ok(Some(salon)) if !salon.status.may_run_whatsapp() => return Resume::NotRunnable,
            Ok(None) => return Resume::NotRunnable,
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the salon's status"),
        }
        let recorded = match self.shared.store.whatsapp_state(self.salon).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the recorded WhatsApp state");
                None
            }
        };
        self.recorded = recorded.map(|(state, _)| state);
        match recorded {
            Some((WhatsappHealth::Replaced, _)) => {
                let Some(phone) = self.stored_phone().await else {
                    return Resume::Connect;
                };
                self.phone = Some(phone.clone());
                self.set(LinkState::Replaced { phone }, LiveEventKind::WhatsappState);
                Resume::Wait(None)
            }
            Some((WhatsappHealth::Banned, Some(until))) if until > chrono::Utc::now() => {
                self.phone = self.stored_phone().await;
                let left = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                self.set(
                    LinkState::Banned {
                        reason: String::new(),
                        until_ms: Some(until.timestamp_millis()),
                    },
                    LiveEventKind::WhatsappState,
                );
                Resume::Wait(Some(Instant::now() + left))
            }
            _ => Resume::Connect,
        }
    }

    fn current(&self) -> LinkState {
        read(&self.view).state
    }

    fn set(&self, next: LinkState, kind: LiveEventKind) {
        let entered = next.name();
        let previous = std::mem::replace(
            &mut self.view.write().unwrap_or_else(|p| p.into_inner()).state,
            next,
        );
        if previous.name() != entered {
            self.shared
                .instruments
                .count("ai_admin_whatsapp_transitions_total", &[("to", entered)]);
        }
        self.changed(kind);
    }

    /// Tells everyone the session's view changed: once its lease row holds the new view (the
    /// other instances' pages read it there), or at once while no lease is held.
    fn changed(&self, kind: LiveEventKind) {
        let Some(lease) = self.lease.clone() else {
            self.shared.bus.publish(self.salon, kind);
            return;
        };
        let view = read(&self.view);
        let change = ViewChange {
            lease,
            view: SharedView {
                state: view.state,
                sent: view.sent,
            },
            kind,
        };
        if let Err(unsent) = self.shared.views.send(change) {
            // The writer is gone only with the supervisor; tell this instance at least.
            self.shared.bus.publish(self.salon, unsent.0.kind);
        }
    }

    /// Writes the state to the store when it differs from what was written last, with an audit
    /// entry named `event`.
    async fn record(
        &mut self,
        state: WhatsappHealth,
        until: Option<chrono::DateTime<chrono::Utc>>,
        event: Option<(&str, serde_json::Value)>,
    ) {
        if self.recorded == Some(state) && state != WhatsappHealth::Banned {
            return;
        }
        let Some(lease) = self.lease.clone() else {
            return;
        };
        match self
            .shared
            .store
            .record_whatsapp_state(&lease, state, until, event)
            .await
        {
            Ok(()) => self.recorded = Some(state),
            Err(e) => {
                tracing::error!(error = %e, state = state.as_str(), "recording the WhatsApp state failed");
                self.fenced(&e);
            }
        }
    }

    fn backoff(&self) -> Duration {
        let policy = &self.shared.policy;
        retry_delay::exponential(policy.reconnect_base, self.failures, policy.reconnect_max)
            .mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }

    /// Opens the connection; when that fails, schedules the next attempt.
    async fn connect(&mut self, connection: &mut Option<Connection>, timers: &mut Timers) {
        close(connection).await;
        let (sender, receiver) = mpsc::unbounded_channel();
        match self.open_gateway(sender).await {
            Ok(session) => *connection = Some((Arc::from(session), receiver)),
            Err(e) => {
                tracing::warn!(error = %e, failures = self.failures + 1, "opening the WhatsApp session failed");
                timers.reconnect_at = Some(self.after_failure(e.to_string()).await);
            }
        }
    }

    /// A connect failed or a connection dropped: a quick retry with backoff, or once that has
    /// failed `max_failures` times in a row, `failed` and a cool-down that doubles every time
    /// (1 min … 30 min by default), forever. Returns when to try again.
    async fn after_failure(&mut self, reason: String) -> Instant {
        self.failures += 1;
        let policy = &self.shared.policy;
        if self.failures < policy.max_failures && self.cooldowns == 0 {
            return Instant::now() + self.backoff();
        }
        let delay = jittered(retry_delay::exponential(
            policy.cooldown_base,
            self.cooldowns,
            policy.cooldown_max,
        ));
        self.cooldowns += 1;
        let retry_at_ms = now_ms() + delay.as_millis() as i64;
        if !matches!(self.current(), LinkState::Failed { .. }) {
            self.record(
                WhatsappHealth::Failed,
                None,
                Some((
                    "whatsapp_failed",
                    serde_json::json!({"reason": reason, "failures": self.failures}),
                )),
            )
            .await;
        }
        tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "WhatsApp session failed; cooling down");
        self.set(
            LinkState::Failed {
                reason,
                retry_at_ms,
            },
            LiveEventKind::WhatsappState,
        );
        Instant::now() + delay
    }

    /// The connection is back (or linked for the first time): the failure counters start over.
    fn healthy(&mut self) {
        self.failures = 0;
        self.cooldowns = 0;
    }

    fn schedule_probe(&self, connection: &Option<Connection>, timers: &mut Timers) {
        if connection.is_none() || !self.current().is_linked() {
            timers.cancel_probe();
        } else if timers.probe.is_none() && timers.probe_at.is_none() {
            timers.probe_at = Some(Instant::now() + self.shared.policy.probe_interval);
        }
    }

    /// No keep-alive answer: the socket is dead although nothing said so. Reconnect now.
    async fn on_zombie(&mut self, connection: &mut Option<Connection>, timers: &mut Timers) {
        self.shared.zombies.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("no keep-alive answer from WhatsApp; reconnecting the silent session");
        if let Err(e) = self
            .shared
            .store
            .audit(
                Some(self.salon),
                "whatsapp_zombie_reconnected",
                serde_json::json!({"probe_timeout_ms": self.shared.policy.probe_timeout.as_millis() as u64}),
            )
            .await
        {
            tracing::warn!(error = %e, "auditing the zombie failed");
        }
        close(connection).await;
        timers.cancel_probe();
        self.connect(connection, timers).await;
    }

    fn pairing_active(&self) -> bool {
        self.pairing_until
            .is_some_and(|until| until > Instant::now())
    }

    /// After a pairing code expires: back to the QR if it is still valid.
    fn end_pairing(&mut self) {
        if !matches!(self.current(), LinkState::Pairing { .. }) {
            return;
        }
        match self.last_qr.clone() {
            Some(LinkState::Qr { expires_at_ms, .. }) if expires_at_ms > now_ms() => {
                if let Some(qr) = self.last_qr.clone() {
                    self.set(qr, LiveEventKind::QrUpdate);
                }
            }
            _ => self.set(LinkState::QrExpired, LiveEventKind::QrUpdate),
        }
    }

    async fn on_event(
        &mut self,
        event: GatewayEvent,
        connection: &mut Option<Connection>,
        timers: &mut Timers,
    ) {
        match event {
            GatewayEvent::Qr { code, ttl } => {
                self.healthy();
                self.seq += 1;
                let qr = LinkState::Qr {
                    seq: self.seq,
                    code,
                    expires_at_ms: now_ms() + ttl.as_millis() as i64,
                };
                self.last_qr = Some(qr.clone());
                // A pairing in progress keeps the screen; the QR waits behind it.
                if !self.pairing_active() {
                    self.set(qr, LiveEventKind::QrUpdate);
                }
            }
            GatewayEvent::QrExhausted => {
                self.last_qr = None;
                if !self.pairing_active() {
                    close(connection).await;
                    self.set(LinkState::QrExpired, LiveEventKind::QrUpdate);
                }
            }
            GatewayEvent::Linked { phone } => {
                self.healthy();
                self.pairing_until = None;
                if self.phone.is_none() || !self.current().is_linked() {
                    self.phone = Some(phone.clone());
                    match self.persist_link(&phone).await {
                        Ok(()) => self.recorded = Some(WhatsappHealth::Linked),
                        Err(e) => {
                            tracing::error!(error = %e, "storing the WhatsApp link failed");
                            self.fenced(&e);
                        }
                    }
                    tracing::info!(phone = %phone, "WhatsApp linked");
                    self.set(
                        LinkState::Linked { phone },
                        LiveEventKind::WhatsappConnected,
                    );
                }
            }
            GatewayEvent::Connected { phone } => {
                self.healthy();
                if !self.current().is_linked() {
                    let phone = match phone.or_else(|| self.phone.clone()) {
                        Some(phone) => Some(phone),
                        None => self.stored_phone().await,
                    };
                    if let Some(phone) = phone {
                        self.phone = Some(phone.clone());
                        self.record(WhatsappHealth::Linked, None, None).await;
                        self.set(LinkState::Linked { phone }, LiveEventKind::WhatsappState);
                    }
                }
            }
            GatewayEvent::LoggedOut => {
                self.forget(connection, "whatsapp_logged_out").await;
                // The page offers a new QR at once (no new activation for an active salon).
                self.connect(connection, timers).await;
            }
            GatewayEvent::Disconnected { reason } => {
                close(connection).await;
                tracing::warn!(%reason, failures = self.failures + 1, "WhatsApp disconnected");
                timers.reconnect_at = Some(self.after_failure(reason).await);
            }
            GatewayEvent::Replaced => {
                close(connection).await;
                timers.reconnect_at = None;
                tracing::warn!(
                    "another WhatsApp Web client took this device's session; not reconnecting"
                );
                self.record(
                    WhatsappHealth::Replaced,
                    None,
                    Some(("whatsapp_replaced", serde_json::json!({}))),
                )
                .await;
                match self.phone.clone() {
                    Some(phone) => {
                        self.set(LinkState::Replaced { phone }, LiveEventKind::WhatsappState)
                    }
                    None => self.set(LinkState::QrExpired, LiveEventKind::WhatsappState),
                }
            }
            GatewayEvent::Banned { reason, expires_in } => {
                close(connection).await;
                let wait = expires_in
                    .filter(|d| !d.is_zero())
                    .unwrap_or(self.shared.policy.ban_without_expiry);
                let until = chrono::Utc::now()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                let until_ms = expires_in.is_some().then(|| until.timestamp_millis());
                tracing::warn!(%reason, wait_secs = wait.as_secs(), "WhatsApp banned the account for a while");
                self.record(
                    WhatsappHealth::Banned,
                    Some(until),
                    Some((
                        "whatsapp_banned",
                        serde_json::json!({"reason": reason, "until": until.to_rfc3339(), "expiry_given": expires_in.is_some()}),
                    )),
                )
                .await;
                self.set(
                    LinkState::Banned { reason, until_ms },
                    LiveEventKind::WhatsappState,
                );
                timers.reconnect_at = Some(Instant::now() + wait);
            }
            GatewayEvent::Incoming { from, text } => {
                self.inbound(Inbound::Text {
                    salon: self.salon,
                    from,
                    text,
                });
            }
            GatewayEvent::Receipt { message_id, status } => {
                self.inbound(Inbound::Receipt {
                    salon: self.salon,
                    message_id: message_id.clone(),
                    status,
                });
                let changed = {
                    let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
                    match view.sent.as_mut() {
                        Some(sent) if sent.message_id == message_id && status > sent.status => {
                            sent.status = status;
                            true
                        }
                        _ => false,
                    }
                };
                if changed {
                    self.changed(LiveEventKind::WhatsappState);
                }
            }
        }
    }

    fn inbound(&self, event: Inbound) {
        if let Some(sender) = self
            .shared
            .inbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = sender.send(event);
        }
    }

    /// The link is gone: credentials purged, the device forgotten (the number remembered as the
    /// previous one), an audit entry `event`.
    async fn forget(&mut self, connection: &mut Option<Connection>, event: &str) {
        close(connection).await;
        self.phone = None;
        self.pairing_until = None;
        self.last_qr = None;
        let purged = match &self.lease {
            Some(lease) => self.shared.gateway.forget_credentials(lease).await,
            None => self.shared.gateway.purge_credentials(self.salon).await,
        };
        match purged {
            Ok(()) => {}
            Err(GatewayError::Fenced) => {
                tracing::warn!("another instance runs this session now; its credentials stay");
                self.fenced = true;
            }
            Err(e) => tracing::error!(error = %e, "purging WhatsApp credentials failed"),
        }
        if let Some(lease) = self.lease.clone() {
            if let Err(e) = self.shared.store.forget_device(&lease).await {
                tracing::error!(error = %e, "forgetting the WhatsApp device failed");
                self.fenced(&e);
            }
        }
        self.recorded = Some(WhatsappHealth::LoggedOut);
        if let Err(e) = self
            .shared
            .store
            .audit(Some(self.salon), event, serde_json::json!({}))
            .await
        {
            tracing::warn!(error = %e, "auditing the logout failed");
        }
        self.set(LinkState::LoggedOut, LiveEventKind::WhatsappState);
    }

    async fn on_command(
        &mut self,
        command: Command,
        connection: &mut Option<Connection>,
        timers: &mut Timers,
    ) -> Next {
        match command {
            Command::RequestPairCode { phone, reply } => {
                let result = match self.current() {
                    // A pair code opens a connection: not while WhatsApp's ban lasts (restart
                    // waits it out too), or a reconnect during it risks a longer one.
                    LinkState::Banned { until_ms, .. } if timers.reconnect_at.is_some() => {
                        Err(LinkingError::Banned { until_ms })
                    }
                    _ => self.request_pair_code(phone, connection).await,
                };
                let _ = reply.send(result);
            }
            Command::Restart { reply } => {
                let result = match self.current() {
                    LinkState::Banned { until_ms, .. } if timers.reconnect_at.is_some() => {
                        Err(LinkingError::Banned { until_ms })
                    }
                    state if state.is_linked() => Ok(state),
                    _ => {
                        timers.reconnect_at = None;
                        timers.cancel_probe();
                        self.healthy();
                        self.pairing_until = None;
                        self.last_qr = None;
                        self.set(LinkState::Starting, LiveEventKind::WhatsappState);
                        self.connect(connection, timers).await;
                        Ok(self.current())
                    }
                };
                let _ = reply.send(result);
            }
            Command::Disconnect { reply } => {
                timers.reconnect_at = None;
                timers.cancel_probe();
                if let Some((session, _)) = connection.take() {
                    if let Err(e) = session.logout().await {
                        tracing::warn!(error = %e, "unlinking on the phone failed; credentials are purged anyway");
                    }
                }
                self.forget(connection, "whatsapp_disconnected_by_admin")
                    .await;
                self.healthy();
                self.connect(connection, timers).await;
                let _ = reply.send(());
            }
            Command::SendText {
                to,
                text,
                test,
                reply,
            } => {
                let result = self.send_text(to, &text, test, connection).await;
                let _ = reply.send(result);
            }
            Command::Logout { reply } => {
                if let Some((session, _)) = connection.take() {
                    if let Err(e) = session.logout().await {
                        tracing::warn!(error = %e, "logout on the phone failed; credentials are purged anyway");
                    }
                }
                self.view.write().unwrap_or_else(|p| p.into_inner()).state = LinkState::Idle;
                self.release_lease(false).await;
                let _ = reply.send(());
                return Next::End;
            }
            Command::Stop { hand_over, reply } => {
                close(connection).await;
                self.view.write().unwrap_or_else(|p| p.into_inner()).state = LinkState::Idle;
                self.release_lease(hand_over).await;
                let _ = reply.send(());
                return Next::End;
            }
        }
        Next::Continue
    }

    async fn send_text(
        &mut self,
        to: PhoneNumber,
        text: &str,
        test: bool,
        connection: &Option<Connection>,
    ) -> Result<SentText, LinkingError> {
        let (Some((session, _)), true) = (connection.as_ref(), self.current().is_linked()) else {
            return Err(LinkingError::NotLinked);
        };
        let message_id = tokio::time::timeout(
            self.shared.policy.send_timeout,
            session.send_text(&to, text),
        )
        .await
        .map_err(|_| LinkingError::Send("WhatsApp did not take the message in time".into()))?
        .map_err(|e| LinkingError::Send(e.to_string()))?;
        let sent = SentText {
            message_id,
            to,
            status: DeliveryStatus::Sent,
            sent_at_ms: now_ms(),
        };
        if test {
            self.view.write().unwrap_or_else(|p| p.into_inner()).sent = Some(sent.clone());
            self.changed(LiveEventKind::WhatsappState);
        }
        Ok(sent)
    }

    async fn request_pair_code(
        &mut self,
        phone: PhoneNumber,
        connection: &mut Option<Connection>,
    ) -> Result<LinkState, LinkingError> {
        // Linked, or holding the credentials of a linked account (a session replaced elsewhere,
        // failed, banned): a pair code would put another account behind the salon's stored
        // number unseen. Such a session is taken back with a restart; another number is linked
        // after a disconnect.
        if self.current().is_linked() || self.phone.is_some() {
            return Err(LinkingError::AlreadyLinked);
        }
        let now = Instant::now();
        let policy = &self.shared.policy;
        let wait_until = [
            self.pairing_until.filter(|_| self.pairing_active()),
            self.last_pair_request
                .map(|at| at + policy.pair_code_cooldown),
        ]
        .into_iter()
        .flatten()
        .max()
        .filter(|until| *until > now);
        if let Some(until) = wait_until {
            return Err(LinkingError::RateLimited {
                retry_after_secs: (until - now).as_secs().max(1),
            });
        }
        if connection.is_none() {
            let (sender, receiver) = mpsc::unbounded_channel();
            match self.open_gateway(sender).await {
                Ok(session) => *connection = Some((Arc::from(session), receiver)),
                Err(e) => return Err(LinkingError::Gateway(e.to_string())),
            }
        }
        let Some((session, _)) = connection.as_ref() else {
            return Err(LinkingError::Gateway("WhatsApp недоступен".into()));
        };
        self.last_pair_request = Some(now);
        let code = session
            .request_pair_code(&phone)
            .await
            .map_err(|e| LinkingError::Gateway(e.to_string()))?;
        let ttl = self.shared.policy.pair_code_ttl;
        self.pairing_until = Some(now + ttl);
        let state = LinkState::Pairing {
            code,
            phone,
            expires_at_ms: now_ms() + ttl.as_millis() as i64,
        };
        self.set(state.clone(), LiveEventKind::PairingCode);
        Ok(state)
    }

    async fn stored_phone(&self) -> Option<PhoneNumber> {
        self.shared.store.device_phone(self.salon).await.ok()?
    }

    async fn persist_link(&self, phone: &PhoneNumber) -> Result<(), StoreError> {
        let Some(lease) = self.lease.as_ref() else {
            return Err(StoreError::Fenced(self.salon));
        };
        self.shared
            .store
            .link_phone(lease, phone, self.shared.gateway.backend_name())
            .await
            .map(|_| ())
    }

    /// Opens the backend's connection under the salon's lease, which its credential writes
    /// carry (a task holds the lease from the start of `run`).
    async fn open_gateway(
        &self,
        events: mpsc::UnboundedSender<GatewayEvent>,
    ) -> Result<Box<dyn GatewaySession>, GatewayError> {
        let Some(lease) = self.lease.as_ref() else {
            return Err(GatewayError::Closed);
        };
        self.shared.gateway.open(lease, events).await
    }
}

async fn next_event(connection: &mut Option<Connection>) -> Option<GatewayEvent> {
    match connection.as_mut() {
        Some((_, events)) => events.recv().await,
        None => std::future::pending().await,
    }
}

async fn close(connection: &mut Option<Connection>) {
    if let Some((session, _)) = connection.take() {
        session.close().await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The probe's answer: `true` when WhatsApp answered in time.
async fn join_probe(probe: &mut Option<JoinHandle<bool>>) -> bool {
    match probe.as_mut() {
        Some(handle) => handle.await.unwrap_or(false),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The supervisor driven through every transition by a scripted gateway: the test plays
    //! WhatsApp by pushing events into the channel the supervisor handed to `open`.

    use super::*;
    use crate::bus::{Received, SalonChanged};
    use crate::db::entities::{salons, whatsapp_devices};
    use crate::linking::gateway::GatewayError;
    use sea_orm::{DatabaseConnection, EntityTrait, Set};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Default)]
    struct Script {
        opened: Mutex<Vec<mpsc::UnboundedSender<GatewayEvent>>>,
        failing_opens: AtomicU32,
        purges: AtomicU32,
        logouts: AtomicU32,
        closes: AtomicU32,
        pair_codes: AtomicU32,
        probes: AtomicU32,
        /// Probes never answer (a silent socket).
        silent: std::sync::atomic::AtomicBool,
        sent: Mutex<Vec<(PhoneNumber, String)>>,
    }

    #[derive(Clone, Default)]
    struct ScriptedGateway(Arc<Script>);

    struct ScriptedSession(Arc<Script>);

    #[async_trait::async_trait]
    impl WhatsAppGateway for ScriptedGateway {
        fn backend_name(&self) -> &'static str {
            "scripted"
        }
        async fn has_credentials(&self, _salon: SalonId) -> Result<bool, GatewayError> {
            Ok(true)
        }
        async fn open(
            &self,
            _lease: &SessionLease,
            events: mpsc::UnboundedSender<GatewayEvent>,
        ) -> Result<Box<dyn GatewaySession>, GatewayError> {
            let failing = self.0.failing_opens.load(Ordering::SeqCst);
            if failing > 0 {
                self.0.failing_opens.store(failing - 1, Ordering::SeqCst);
                return Err(GatewayError::Unavailable("scripted outage".into()));
            }
            self.0
                .opened
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(events);
            Ok(Box::new(ScriptedSession(self.0.clone())))
        }
        async fn purge_credentials(&self, _salon: SalonId) -> Result<(), GatewayError> {
            self.0.purges.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn forget_credentials(&self, _lease: &SessionLease) -> Result<(), GatewayError> {
            self.0.purges.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl GatewaySession for ScriptedSession {
        async fn request_pair_code(&self, _phone: &PhoneNumber) -> Result<String, GatewayError> {
            let n = self.0.pair_codes.fetch_add(1, Ordering::SeqCst);
            Ok(format!("CODE-{n:04}"))
        }
        async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<String, GatewayError> {
            let mut sent = self.0.sent.lock().unwrap_or_else(|p| p.into_inner());
            sent.push((to.clone(), text.to_owned()));
            Ok(format!("MSG-{}", sent.len()))
        }
        async fn probe(&self) -> Result<(), GatewayError> {
            self.0.probes.fetch_add(1, Ordering::SeqCst);
            if self.0.silent.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
        async fn logout(&self) -> Result<(), GatewayError> {
            self.0.logouts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn close(&self) {
            self.0.closes.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct World {
        linking: Linking,
        script: Arc<Script>,
        bus: EventBus,
        db: DatabaseConnection,
        salon: SalonId,
    }

    impl World {
        async fn new() -> World {
            let path = std::env::temp_dir()
                .join(format!("supervisor-{}.db", uuid::Uuid::new_v4().simple()));
            let db = crate::db::connect_and_migrate(
                &format!("sqlite://{}?mode=rwc", path.display()),
                None,
            )
            .await
            .expect("database");
            let now = chrono::Utc::now();
            salons::Entity::insert(salons::ActiveModel {
                id: Set(42),
                title: Set("Salon".into()),
                phone: Set(Some("79990001122".into())),
                status: Set("new".into()),
                registered_at: Set(now),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            })
            .exec_without_returning(&db)
            .await
            .expect("salon");
            let gateway = ScriptedGateway::default();
            let script = gateway.0.clone();
            let bus = EventBus::new();
            let policy = SupervisorPolicy {
                pair_code_ttl: Duration::from_millis(300),
                pair_code_cooldown: Duration::from_millis(100),
                reconnect_base: Duration::from_millis(5),
                reconnect_max: Duration::from_millis(20),
                max_failures: 3,
                cooldown_base: Duration::from_millis(300),
                cooldown_max: Duration::from_millis(600),
                probe_interval: Duration::from_millis(30),
                probe_timeout: Duration::from_millis(50),
                ban_without_expiry: Duration::from_secs(3600),
                send_timeout: Duration::from_secs(1),
                lease_ttl: Duration::from_secs(30),
                lease_renew: Duration::from_secs(10),
            };
            let linking = Linking::new(
                Arc::new(gateway),
                Store::new(db.clone()),
                bus.clone(),
                crate::instruments::Instruments::new(),
                policy,
            );
            World {
                linking,
                script,
                bus,
                db,
                salon: SalonId::try_from(42).expect("id"),
            }
        }

        fn opens(&self) -> usize {
            self.script
                .opened
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
        }

        fn push(&self, event: GatewayEvent) {
            let opened = self.script.opened.lock().unwrap_or_else(|p| p.into_inner());
            opened
                .last()
                .expect("a session was opened")
                .send(event)
                .expect("supervisor listens");
        }

        async fn until(&self, what: &str, done: impl Fn(&LinkState) -> bool) -> LinkState {
            for _ in 0..500 {
                let state = self.linking.state(self.salon);
                if done(&state) {
                    return state;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("never reached {what}: {:?}", self.linking.state(self.salon));
        }

        /// Starts the session and has the phone accept the link.
        async fn start_linked(&self) {
            self.linking.ensure_started(self.salon);
            self.until_opens(1).await;
            self.push(GatewayEvent::Linked {
                phone: phone("79995554433"),
            });
            self.until("linked", LinkState::is_linked).await;
        }

        async fn until_probes(&self, n: u32) {
            for _ in 0..500 {
                if self.script.probes.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("expected {n} probes");
        }

        async fn until_opens(&self, n: usize) {
            for _ in 0..500 {
                if self.opens() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("expected {n} opens, saw {}", self.opens());
        }
    }

    fn qr(code: &str) -> GatewayEvent {
        GatewayEvent::Qr {
            code: code.into(),
            ttl: Duration::from_secs(60),
        }
    }

    fn phone(raw: &str) -> PhoneNumber {
        PhoneNumber::parse(raw).expect("phone")
    }

    #[tokio::test]
    async fn qr_codes_rotate_with_growing_seq_expire_and_restart() {
        let w = World::new().await;
        assert_eq!(w.linking.ensure_started(w.salon), LinkState::Starting);
        w.until_opens(1).await;
        w.push(qr("one"));
        assert!(matches!(
            w.until("qr 1", |s| matches!(s, LinkState::Qr { seq: 1, .. }))
                .await,
            LinkState::Qr { .. }
        ));
        w.push(qr("two"));
        let second = w
            .until("qr 2", |s| matches!(s, LinkState::Qr { seq: 2, .. }))
            .await;
        assert!(
            matches!(second, LinkState::Qr { ref code, expires_at_ms, .. } if code == "two" && expires_at_ms > chrono::Utc::now().timestamp_millis())
        );
        w.push(GatewayEvent::QrExhausted);
        w.until("expired", |s| *s == LinkState::QrExpired).await;
        assert_eq!(
            w.script.closes.load(Ordering::SeqCst),
            1,
            "the exhausted session is closed"
        );
        w.linking.restart(w.salon).await.expect("restarted");
        w.until_opens(2).await;
        w.push(qr("three"));
        w.until("qr after restart", |s| {
            matches!(s, LinkState::Qr { seq: 3, .. })
        })
        .await;
    }

    #[tokio::test]
    async fn linked_is_reported_once_and_stored() {
        let w = World::new().await;
        let mut events = w.bus.subscribe_all();
        w.linking.ensure_started(w.salon);
        w.until_opens(1).await;
        w.push(GatewayEvent::Linked {
            phone: phone("79995554433"),
        });
        w.push(GatewayEvent::Linked {
            phone: phone("79995554433"),
        });
        w.push(GatewayEvent::Connected { phone: None });
        w.until("linked", LinkState::is_linked).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut connected = 0;
        while let Some(Received::Changed(SalonChanged { kind, .. })) = events.try_recv() {
            if kind == LiveEventKind::WhatsappConnected {
                connected += 1;
            }
        }
        assert_eq!(connected, 1, "whatsapp-connected exactly once per link");
        let row = salons::Entity::find_by_id(42)
            .one(&w.db)
            .await
            .expect("query")
            .expect("salon");
        assert_eq!(row.whatsapp_phone.as_deref(), Some("79995554433"));
        assert_eq!(
            row.linked_other_number.as_deref(),
            Some("79990001122"),
            "differs from the salon's phone"
        );
    }

    #[tokio::test]
    async fn a_drop_reconnects_and_repeated_failures_open_the_circuit() {
        let w = World::new().await;
        w.start_linked().await;
        w.push(GatewayEvent::Disconnected {
            reason: "network".into(),
        });
        w.until_opens(2).await;
        w.push(GatewayEvent::Connected { phone: None });
        assert!(
            w.linking.state(w.salon).is_linked(),
            "still linked across a reconnect"
        );
        w.script.failing_opens.store(100, Ordering::SeqCst);
        w.push(GatewayEvent::Disconnected {
            reason: "network".into(),
        });
        let failed = w
            .until("failed", |s| matches!(s, LinkState::Failed { .. }))
            .await;
        assert!(
            matches!(failed, LinkState::Failed { ref reason, retry_at_ms } if reason.contains("scripted outage") && retry_at_ms > chrono::Utc::now().timestamp_millis())
        );
        assert_eq!(w.linking.failed_count(), 1);
        let attempts_left = w.script.failing_opens.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            w.script.failing_opens.load(Ordering::SeqCst),
            attempts_left,
            "no reconnect storm once failed"
        );
        // The breaker closes again: after the cool-down WhatsApp is back and the session links.
        w.script.failing_opens.store(0, Ordering::SeqCst);
        let opens = w.opens();
        w.until_opens(opens + 1).await;
        w.push(GatewayEvent::Connected { phone: None });
        w.until("linked after the cool-down", LinkState::is_linked)
            .await;
        assert_eq!(w.linking.failed_count(), 0);
    }

    #[tokio::test]
    async fn cool_downs_grow_and_restart_works_for_a_failed_linked_session() {
        let w = World::new().await;
        w.start_linked().await;
        w.script.failing_opens.store(1000, Ordering::SeqCst);
        w.push(GatewayEvent::Disconnected {
            reason: "network".into(),
        });
        let first = w
            .until("failed", |s| matches!(s, LinkState::Failed { .. }))
            .await;
        let LinkState::Failed {
            retry_at_ms: first_retry,
            ..
        } = first
        else {
            unreachable!()
        };
        let before = w.script.failing_opens.load(Ordering::SeqCst);
        // The cool-down ends (240–360 ms), one attempt fails, the next cool-down is longer.
        w.until(
            "a second cool-down",
            |s| matches!(s, LinkState::Failed { retry_at_ms, .. } if *retry_at_ms > first_retry),
        )
        .await;
        assert_eq!(
            before - w.script.failing_opens.load(Ordering::SeqCst),
            1,
            "one attempt per cool-down"
        );
        w.script.failing_opens.store(0, Ordering::SeqCst);
        let opens = w.opens();
        let restarted = w.linking.restart(w.salon).await.expect("restart");
        assert_eq!(restarted, LinkState::Starting);
        w.until_opens(opens + 1).await;
        w.push(GatewayEvent::Connected { phone: None });
        let linked = w.until("linked after restart", LinkState::is_linked).await;
        assert_eq!(
            linked,
            LinkState::Linked {
                phone: phone("79995554433")
            },
            "the stored credentials, no new scan"
        );
    }

    #[tokio::test]
    async fn a_replaced_session_is_not_reconnected_until_the_admin_takes_it_back() {
        let w = World::new().await;
        w.start_linked().await;
        w.push(GatewayEvent::Replaced);
        w.until("replaced", |s| matches!(s, LinkState::Replaced { .. }))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(w.opens(), 1, "never fights the other client");
        let row = salons::Entity::find_by_id(42)
            .one(&w.db)
            .await
            .expect("query")
            .expect("salon");
        assert_eq!(row.whatsapp_state.as_deref(), Some("replaced"));
        w.linking.restart(w.salon).await.expect("take back");
        w.until_opens(2).await;
        w.push(GatewayEvent::Connected { phone: None });
        w.until("linked again", LinkState::is_linked).await;
    }

    #[tokio::test]
    async fn a_ban_waits_for_its_expiry_and_refuses_a_restart_meanwhile() {
        let w = World::new().await;
        w.start_linked().await;
        w.push(GatewayEvent::Banned {
            reason: "spam".into(),
            expires_in: Some(Duration::from_millis(300)),
        });
        let banned = w
            .until("banned", |s| matches!(s, LinkState::Banned { .. }))
            .await;
        assert!(matches!(
            banned,
            LinkState::Banned {
                until_ms: Some(_),
                ..
            }
        ));
        assert!(matches!(
            w.linking.restart(w.salon).await,
            Err(LinkingError::Banned { .. })
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(w.opens(), 1, "no reconnect during the ban");
        w.until_opens(2).await;
        w.push(GatewayEvent::Connected { phone: None });
        w.until("resumed", LinkState::is_linked).await;
    }

    #[tokio::test]
    async fn a_silent_connection_is_found_by_the_probe_and_reconnected() {
        let w = World::new().await;
        w.start_linked().await;
        w.until_probes(1).await;
        w.script.silent.store(true, Ordering::SeqCst);
        w.until_opens(2).await;
        assert_eq!(w.linking.zombies_detected(), 1);
        assert!(
            w.linking.state(w.salon).is_linked(),
            "still linked while it reconnects"
        );
        w.script.silent.store(false, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn texts_go_out_only_when_linked_and_receipts_move_their_status_forward() {
        let w = World::new().await;
        w.linking.ensure_started(w.salon);
        w.until_opens(1).await;
        assert_eq!(
            w.linking
                .send_text(w.salon, phone("79990000001"), "hi".into())
                .await,
            Err(LinkingError::NotLinked)
        );
        w.push(GatewayEvent::Linked {
            phone: phone("79995554433"),
        });
        w.until("linked", LinkState::is_linked).await;
        let sent = w
            .linking
            .send_text(w.salon, phone("79990000001"), "hi".into())
            .await
            .expect("sent");
        assert_eq!(sent.status, DeliveryStatus::Sent);
        w.push(GatewayEvent::Receipt {
            message_id: sent.message_id.clone(),
            status: DeliveryStatus::Read,
        });
        w.push(GatewayEvent::Receipt {
            message_id: sent.message_id.clone(),
            status: DeliveryStatus::Delivered,
        });
        w.push(GatewayEvent::Receipt {
            message_id: "someone-else".into(),
            status: DeliveryStatus::Delivered,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            w.linking.sent_text(w.salon).map(|s| s.status),
            Some(DeliveryStatus::Read),
            "a late delivery receipt does not undo the read"
        );
    }

    #[tokio::test]
    async fn logged_out_purges_credentials() {
        let w = World::new().await;
        w.start_linked().await;
        w.push(GatewayEvent::LoggedOut);
        w.until("logged out", |s| *s == LinkState::LoggedOut).await;
        assert_eq!(w.script.purges.load(Ordering::SeqCst), 1);
        w.until_opens(2).await;
        w.push(qr("fresh"));
        w.until("a fresh QR at once", |s| matches!(s, LinkState::Qr { .. }))
            .await;
        let row = salons::Entity::find_by_id(42)
            .one(&w.db)
            .await
            .expect("query")
            .expect("salon");
        assert_eq!(row.whatsapp_phone, None);
        assert_eq!(row.whatsapp_state.as_deref(), Some("logged_out"));
        assert_eq!(
            row.whatsapp_previous_phone.as_deref(),
            Some("79995554433"),
            "remembered, so a relink with another number asks first"
        );
        assert!(whatsapp_devices::Entity::find_by_id(42)
            .one(&w.db)
            .await
            .expect("query")
            .is_none());
    }

    #[tokio::test]
    async fn pair_codes_are_limited_and_fall_back_to_the_qr_when_they_expire() {
        let w = World::new().await;
        w.linking.ensure_started(w.salon);
        w.until_opens(1).await;
        w.push(qr("one"));
        w.until("qr", |s| matches!(s, LinkState::Qr { .. })).await;
        let pairing = w
            .linking
            .request_pair_code(w.salon, phone("79995554433"))
            .await
            .expect("code");
        assert!(matches!(pairing, LinkState::Pairing { ref code, .. } if code == "CODE-0000"));
        let again = w
            .linking
            .request_pair_code(w.salon, phone("79995554433"))
            .await;
        assert!(matches!(again, Err(LinkingError::RateLimited { .. })));
        w.push(qr("two"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            matches!(w.linking.state(w.salon), LinkState::Pairing { .. }),
            "a new QR does not replace the pairing"
        );
        let back = w
            .until("qr again", |s| matches!(s, LinkState::Qr { .. }))
            .await;
        assert!(
            matches!(back, LinkState::Qr { ref code, .. } if code == "two"),
            "the newest QR comes back"
        );
    }

    #[tokio::test]
    async fn a_linked_salon_gets_no_pair_code_and_logout_unlinks_for_real() {
        let w = World::new().await;
        w.start_linked().await;
        let refused = w
            .linking
            .request_pair_code(w.salon, phone("79995554433"))
            .await;
        assert_eq!(refused, Err(LinkingError::AlreadyLinked));
        w.linking.logout_and_purge(w.salon).await;
        assert_eq!(
            w.script.logouts.load(Ordering::SeqCst),
            1,
            "logout on the phone, not just a disconnect"
        );
        assert_eq!(w.script.purges.load(Ordering::SeqCst), 1);
        assert_eq!(w.linking.state(w.salon), LinkState::Idle);
        assert_eq!(w.linking.session_count(), 0);
    }

    #[tokio::test]
    async fn starting_twice_keeps_one_session() {
        let w = World::new().await;
        w.linking.ensure_started(w.salon);
        w.linking.ensure_started(w.salon);
        w.until_opens(1).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(w.opens(), 1);
        assert_eq!(w.linking.session_count(), 1);
    }
}
