use super::gateway::{GatewayEvent, GatewaySession, WhatsAppGateway};
use crate::bus::EventBus;
use crate::store::{Store, StoreError};
use app::domain::{PhoneNumber, SalonId};
use app::status::{LinkState, LiveEventKind};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Reconnect and rate-limit settings of the supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorPolicy {
    pub pair_code_ttl: Duration,
    pub pair_code_cooldown: Duration,
    pub reconnect_base: Duration,
    pub reconnect_max: Duration,
    /// Consecutive failed connects before the circuit opens (state `failed`).
    pub max_failures: u32,
}

impl Default for SupervisorPolicy {
    fn default() -> Self {
        Self {
            pair_code_ttl: Duration::from_secs(180),
            pair_code_cooldown: Duration::from_secs(60),
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            max_failures: 5,
        }
    }
}

/// Developer messages; the page's words are chosen where these meet the server functions
/// (`onboarding.rs`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LinkingError {
    #[error("WhatsApp is already linked")]
    AlreadyLinked,
    #[error("a pair code was sent; the next one in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the gateway issued no pair code: {0}")]
    Gateway(String),
    #[error("the WhatsApp session is stopped")]
    Stopped,
}

enum Command {
    RequestPairCode {
        phone: PhoneNumber,
        reply: oneshot::Sender<Result<LinkState, LinkingError>>,
    },
    Restart {
        reply: oneshot::Sender<LinkState>,
    },
    Logout {
        reply: oneshot::Sender<()>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

#[derive(Clone)]
struct SessionHandle {
    state: Arc<RwLock<LinkState>>,
    commands: mpsc::UnboundedSender<Command>,
}

struct Shared {
    gateway: Arc<dyn WhatsAppGateway>,
    store: Store,
    bus: EventBus,
    policy: SupervisorPolicy,
    sessions: Mutex<HashMap<SalonId, SessionHandle>>,
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
        policy: SupervisorPolicy,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                gateway,
                store,
                bus,
                policy,
                sessions: Mutex::default(),
            }),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.shared.gateway.backend_name()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SalonId, SessionHandle>> {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the salon's session unless one is running; either way returns its state.
    pub fn ensure_started(&self, salon: SalonId) -> LinkState {
        let mut sessions = self.sessions();
        if let Some(handle) = sessions.get(&salon) {
            if !handle.commands.is_closed() {
                return read(&handle.state);
            }
        }
        let state = Arc::new(RwLock::new(LinkState::Starting));
        let (commands, receiver) = mpsc::unbounded_channel();
        sessions.insert(
            salon,
            SessionHandle {
                state: state.clone(),
                commands,
            },
        );
        let task = SessionTask {
            shared: self.shared.clone(),
            salon,
            state,
            seq: 0,
            last_qr: None,
            pairing_until: None,
            last_pair_request: None,
            failures: 0,
            linked_phone: None,
        };
        tokio::spawn(task.run(receiver));
        LinkState::Starting
    }

    /// The salon's link state as the page should show it.
    pub fn state(&self, salon: SalonId) -> LinkState {
        self.sessions()
            .get(&salon)
            .filter(|h| !h.commands.is_closed())
            .map(|h| read(&h.state))
            .unwrap_or(LinkState::Idle)
    }

    pub fn session_count(&self) -> usize {
        self.sessions()
            .values()
            .filter(|h| !h.commands.is_closed())
            .count()
    }

    pub fn failed_count(&self) -> usize {
        self.sessions()
            .values()
            .filter(|h| matches!(read(&h.state), LinkState::Failed { .. }))
            .count()
    }

    fn handle(&self, salon: SalonId) -> SessionHandle {
        self.ensure_started(salon);
        let sessions = self.sessions();
        match sessions.get(&salon) {
            Some(handle) => handle.clone(),
            None => stopped_handle(),
        }
    }

    pub async fn request_pair_code(
        &self,
        salon: SalonId,
        phone: PhoneNumber,
    ) -> Result<LinkState, LinkingError> {
        let (reply, answer) = oneshot::channel();
        self.handle(salon)
            .commands
            .send(Command::RequestPairCode { phone, reply })
            .map_err(|_| LinkingError::Stopped)?;
        answer.await.map_err(|_| LinkingError::Stopped)?
    }

    /// A fresh round of QR codes (after they ran out, a logout or a failure).
    pub async fn restart(&self, salon: SalonId) -> Result<LinkState, LinkingError> {
        let (reply, answer) = oneshot::channel();
        self.handle(salon)
            .commands
            .send(Command::Restart { reply })
            .map_err(|_| LinkingError::Stopped)?;
        answer.await.map_err(|_| LinkingError::Stopped)
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

    /// `freeze`: end the session, keep the credentials.
    pub async fn stop(&self, salon: SalonId) {
        self.end_session(salon, |reply| Command::Stop { reply })
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

    /// At start-up: reconnect every salon that has credentials and is neither frozen nor
    /// uninstalled, without a new scan.
    pub async fn restore_linked_sessions(&self) -> Result<usize, StoreError> {
        let salons = self.shared.store.salons_to_restore().await?;
        let mut restored = 0;
        for id in salons {
            match self.shared.gateway.has_credentials(id).await {
                Ok(true) => {
                    self.ensure_started(id);
                    restored += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(salon_id = %id, error = %e, "cannot check stored WhatsApp credentials")
                }
            }
        }
        Ok(restored)
    }

    /// Stops every session (graceful shutdown), keeping credentials.
    pub async fn shutdown(&self) {
        let handles: Vec<SessionHandle> = self.sessions().drain().map(|(_, h)| h).collect();
        for handle in handles {
            let (reply, answer) = oneshot::channel();
            if handle.commands.send(Command::Stop { reply }).is_ok() {
                let _ = answer.await;
            }
        }
    }
}

fn stopped_handle() -> SessionHandle {
    // `ensure_started` inserted it under the same lock a moment ago; only a concurrent
    // `logout_and_purge` can remove it, and then commands go nowhere and answer `Stopped`.
    let (commands, _) = mpsc::unbounded_channel();
    SessionHandle {
        state: Arc::new(RwLock::new(LinkState::Idle)),
        commands,
    }
}

fn read(state: &RwLock<LinkState>) -> LinkState {
    state.read().unwrap_or_else(|p| p.into_inner()).clone()
}

async fn forget_device(shared: &Shared, salon: SalonId) -> Result<(), StoreError> {
    if let Err(e) = shared.gateway.purge_credentials(salon).await {
        tracing::error!(salon_id = %salon, error = %e, "purging WhatsApp credentials failed");
    }
    shared.store.forget_device(salon).await
}

type Connection = (
    Box<dyn GatewaySession>,
    mpsc::UnboundedReceiver<GatewayEvent>,
);

struct SessionTask {
    shared: Arc<Shared>,
    salon: SalonId,
    state: Arc<RwLock<LinkState>>,
    seq: u64,
    last_qr: Option<LinkState>,
    pairing_until: Option<Instant>,
    last_pair_request: Option<Instant>,
    failures: u32,
    linked_phone: Option<PhoneNumber>,
}

enum Next {
    Continue,
    End,
}

impl SessionTask {
    #[tracing::instrument(name = "whatsapp_session", skip_all, fields(salon_id = %self.salon))]
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut connection: Option<Connection> = self.open().await;
        let mut reconnect_at: Option<Instant> = self.retry_after_failed_open(&connection);
        loop {
            let pairing_until = self.pairing_until;
            tokio::select! {
                event = next_event(&mut connection) => {
                    let event = event.unwrap_or(GatewayEvent::Disconnected { reason: "the backend closed the session".into() });
                    if let Some(delay) = self.on_event(event, &mut connection).await {
                        reconnect_at = Some(Instant::now() + delay);
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else {
                        close(&mut connection).await;
                        return;
                    };
                    if let Next::End = self.on_command(command, &mut connection, &mut reconnect_at).await {
                        return;
                    }
                }
                _ = sleep_until(pairing_until), if pairing_until.is_some() => {
                    self.pairing_until = None;
                    self.end_pairing();
                }
                _ = sleep_until(reconnect_at), if reconnect_at.is_some() => {
                    connection = self.open().await;
                    reconnect_at = self.retry_after_failed_open(&connection);
                }
            }
        }
    }

    /// When to try again after `open` failed, unless the circuit is open (state `failed`).
    fn retry_after_failed_open(&self, connection: &Option<Connection>) -> Option<Instant> {
        let failed = matches!(self.current(), LinkState::Failed { .. });
        (connection.is_none() && !failed).then(|| Instant::now() + self.backoff())
    }

    fn current(&self) -> LinkState {
        read(&self.state)
    }

    fn set(&self, next: LinkState, kind: LiveEventKind) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.shared.bus.publish(self.salon, kind);
    }

    fn backoff(&self) -> Duration {
        let policy = &self.shared.policy;
        retry_delay::exponential(policy.reconnect_base, self.failures, policy.reconnect_max)
            .mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }

    async fn open(&mut self) -> Option<Connection> {
        let (sender, receiver) = mpsc::unbounded_channel();
        match self.shared.gateway.open(self.salon, sender).await {
            Ok(session) => Some((session, receiver)),
            Err(e) => {
                self.failures += 1;
                tracing::warn!(error = %e, failures = self.failures, "opening the WhatsApp session failed");
                if self.failures >= self.shared.policy.max_failures {
                    self.set(
                        LinkState::Failed {
                            reason: e.to_string(),
                        },
                        LiveEventKind::WhatsappState,
                    );
                }
                None
            }
        }
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
        let now_ms = chrono::Utc::now().timestamp_millis();
        match self.last_qr.clone() {
            Some(LinkState::Qr { expires_at_ms, .. }) if expires_at_ms > now_ms => {
                if let Some(qr) = self.last_qr.clone() {
                    self.set(qr, LiveEventKind::QrUpdate);
                }
            }
            _ => self.set(LinkState::QrExpired, LiveEventKind::QrUpdate),
        }
    }

    /// Handles a backend event; returns a delay when the connection should be reopened.
    async fn on_event(
        &mut self,
        event: GatewayEvent,
        connection: &mut Option<Connection>,
    ) -> Option<Duration> {
        match event {
            GatewayEvent::Qr { code, ttl } => {
                self.seq += 1;
                let expires_at_ms = chrono::Utc::now().timestamp_millis() + ttl.as_millis() as i64;
                let qr = LinkState::Qr {
                    seq: self.seq,
                    code,
                    expires_at_ms,
                };
                self.last_qr = Some(qr.clone());
                // A pairing in progress keeps the screen; the QR waits behind it.
                if !self.pairing_active() {
                    self.set(qr, LiveEventKind::QrUpdate);
                }
                None
            }
            GatewayEvent::QrExhausted => {
                self.last_qr = None;
                if !self.pairing_active() {
                    close(connection).await;
                    self.set(LinkState::QrExpired, LiveEventKind::QrUpdate);
                }
                None
            }
            GatewayEvent::Linked { phone } => {
                self.failures = 0;
                self.pairing_until = None;
                if self.linked_phone.is_none() {
                    self.linked_phone = Some(phone.clone());
                    if let Err(e) = self.persist_link(&phone).await {
                        tracing::error!(error = %e, "storing the WhatsApp link failed");
                    }
                    tracing::info!(phone = %phone, "WhatsApp linked");
                    self.set(
                        LinkState::Linked { phone },
                        LiveEventKind::WhatsappConnected,
                    );
                }
                None
            }
            GatewayEvent::Connected { phone } => {
                self.failures = 0;
                if self.linked_phone.is_none() {
                    let phone = match phone {
                        Some(phone) => Some(phone),
                        None => self.stored_phone().await,
                    };
                    if let Some(phone) = phone {
                        self.linked_phone = Some(phone.clone());
                        self.set(LinkState::Linked { phone }, LiveEventKind::WhatsappState);
                    }
                }
                None
            }
            GatewayEvent::LoggedOut => {
                close(connection).await;
                self.linked_phone = None;
                self.pairing_until = None;
                if let Err(e) = forget_device(&self.shared, self.salon).await {
                    tracing::error!(error = %e, "purging after logout failed");
                }
                if let Err(e) = self
                    .shared
                    .store
                    .audit(
                        Some(self.salon),
                        "whatsapp_logged_out",
                        serde_json::json!({}),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "auditing the logout failed");
                }
                self.set(LinkState::LoggedOut, LiveEventKind::WhatsappState);
                None
            }
            GatewayEvent::Replaced | GatewayEvent::Banned { .. } | GatewayEvent::Receipt { .. } => {
                // PLACEHOLDER on the helper branch only; the supervisor's real handling lands on main.
                None
            }
            GatewayEvent::Disconnected { reason } => {
                close(connection).await;
                self.failures += 1;
                tracing::warn!(%reason, failures = self.failures, "WhatsApp disconnected");
                if self.failures >= self.shared.policy.max_failures {
                    self.set(LinkState::Failed { reason }, LiveEventKind::WhatsappState);
                    None
                } else {
                    Some(self.backoff())
                }
            }
        }
    }

    async fn on_command(
        &mut self,
        command: Command,
        connection: &mut Option<Connection>,
        reconnect_at: &mut Option<Instant>,
    ) -> Next {
        match command {
            Command::RequestPairCode { phone, reply } => {
                let result = self.request_pair_code(phone, connection).await;
                let _ = reply.send(result);
                Next::Continue
            }
            Command::Restart { reply } => {
                if self.linked_phone.is_none() {
                    close(connection).await;
                    *reconnect_at = None;
                    self.failures = 0;
                    self.pairing_until = None;
                    self.last_qr = None;
                    self.set(LinkState::Starting, LiveEventKind::WhatsappState);
                    *connection = self.open().await;
                    *reconnect_at = self.retry_after_failed_open(connection);
                }
                let _ = reply.send(self.current());
                Next::Continue
            }
            Command::Logout { reply } => {
                if let Some((session, _)) = connection.take() {
                    if let Err(e) = session.logout().await {
                        tracing::warn!(error = %e, "logout on the phone failed; credentials are purged anyway");
                    }
                }
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = LinkState::Idle;
                let _ = reply.send(());
                Next::End
            }
            Command::Stop { reply } => {
                close(connection).await;
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = LinkState::Idle;
                let _ = reply.send(());
                Next::End
            }
        }
    }

    async fn request_pair_code(
        &mut self,
        phone: PhoneNumber,
        connection: &mut Option<Connection>,
    ) -> Result<LinkState, LinkingError> {
        if self.linked_phone.is_some() {
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
            *connection = self.open().await;
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
        let expires_at_ms = chrono::Utc::now().timestamp_millis() + ttl.as_millis() as i64;
        let state = LinkState::Pairing {
            code,
            phone,
            expires_at_ms,
        };
        self.set(state.clone(), LiveEventKind::PairingCode);
        Ok(state)
    }

    async fn stored_phone(&self) -> Option<PhoneNumber> {
        self.shared.store.device_phone(self.salon).await.ok()?
    }

    async fn persist_link(&self, phone: &PhoneNumber) -> Result<(), StoreError> {
        self.shared
            .store
            .link_phone(self.salon, phone, self.shared.gateway.backend_name())
            .await
            .map(|_| ())
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
            _salon: SalonId,
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
    }

    #[async_trait::async_trait]
    impl GatewaySession for ScriptedSession {
        async fn request_pair_code(&self, _phone: &PhoneNumber) -> Result<String, GatewayError> {
            let n = self.0.pair_codes.fetch_add(1, Ordering::SeqCst);
            Ok(format!("CODE-{n:04}"))
        }
        async fn send_text(&self, _to: &PhoneNumber, _text: &str) -> Result<String, GatewayError> {
            Err(GatewayError::Closed)
        }
        async fn probe(&self) -> Result<(), GatewayError> {
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
            };
            let linking = Linking::new(
                Arc::new(gateway),
                Store::new(db.clone()),
                bus.clone(),
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
            matches!(failed, LinkState::Failed { reason } if reason.contains("scripted outage"))
        );
        assert_eq!(w.linking.failed_count(), 1);
        let attempts_left = w.script.failing_opens.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            w.script.failing_opens.load(Ordering::SeqCst),
            attempts_left,
            "no reconnect storm once failed"
        );
    }

    #[tokio::test]
    async fn logged_out_purges_credentials() {
        let w = World::new().await;
        w.start_linked().await;
        w.push(GatewayEvent::LoggedOut);
        w.until("logged out", |s| *s == LinkState::LoggedOut).await;
        assert_eq!(w.script.purges.load(Ordering::SeqCst), 1);
        let row = salons::Entity::find_by_id(42)
            .one(&w.db)
            .await
            .expect("query")
            .expect("salon");
        assert_eq!(row.whatsapp_phone, None);
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
