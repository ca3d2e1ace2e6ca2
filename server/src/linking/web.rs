//! The real WhatsApp Web backend, on the `whatsapp-rust` crate (0.7).
//!
//! One linked device (companion) per salon. Its credentials — the Noise and Signal identity
//! keys, the pairing secret, the phone's signed device identity and the Signal sessions — live
//! in our database, sealed (`super::sealed_backend`, over `store::credentials`): no file on the
//! instance's disk, so whichever instance holds the salon's session lease opens them, and every
//! write carries that lease (a paused old owner is refused).
//!
//! Lifecycle, as the crate drives it:
//! - `open` builds a `Bot` on that store and spawns it. Without credentials the server hands out
//!   QR references and the crate rotates them (60 s for the first, 20 s for each next one, six in
//!   all): each is a [`GatewayEvent::Qr`]. When they run out the crate reports
//!   `PairingQrCodesExhausted` ([`GatewayEvent::QrExhausted`]) and, unless a pair-code flow is
//!   still outstanding, closes the connection itself; a new `open` gets fresh codes.
//! - After the phone accepts, the crate reports `PairSuccess` ([`GatewayEvent::Linked`]), the
//!   server restarts the stream (515) and the crate reconnects by itself, then reports
//!   `Connected` ([`GatewayEvent::Connected`]).
//! - An unexpected drop is reported as [`GatewayEvent::Disconnected`] and the crate then
//!   reconnects on its own with WhatsApp Web's Fibonacci backoff (1 s … 15 min), reporting
//!   `Connected` again when it is back. A supervisor may instead `close` the session and `open`
//!   it again later; both are safe.
//! - The crate stops for good, and once its run loop has ended the event channel is closed (the
//!   receiver gets `None`), after:
//!   - `StreamReplaced` ([`GatewayEvent::Replaced`]): another client connected with this
//!     device's credentials and WhatsApp closed our stream (stream error `conflict type=replaced`
//!     or code 409);
//!   - `TemporaryBan` ([`GatewayEvent::Banned`]): the connect failed with a ban; the reason is the
//!     crate's wording of WhatsApp's code (`101: you sent too many messages …`) plus the server's
//!     message, `expires_in` the ban's length as WhatsApp gave it (`None` if zero);
//!   - `LoggedOut` ([`GatewayEvent::LoggedOut`]): the phone removed the device. The crate does
//!     not wipe the store, so the stored credentials stay until `purge_credentials`;
//!   - an outdated client or an unrecoverable connect failure: a [`GatewayEvent::Disconnected`]
//!     whose reason says "not reconnecting" (also sent when the run loop ends with no event).
//!
//! Messages: `send_text` sends a plain text (`conversation`) message to the number's
//! `{digits}@s.whatsapp.net` chat through the crate's Signal-encrypted send path, under a message
//! id it picks first, and returns that id. The session remembers the ids it sent (the last 4096)
//! and turns the recipient's receipts for them into [`GatewayEvent::Receipt`]s: a delivery
//! receipt into `Delivered`, a read receipt into `Read`, each once per message and only forward
//! (`Sent` → `Delivered` → `Read`). Receipts from this account's own devices, for other
//! messages, or of other kinds (retry, played, server error…) are dropped. Receipts for messages
//! sent by an earlier session are dropped too: the ids live in the session.
//!
//! Liveness: `probe` sends WhatsApp Web's keep-alive ping (`<iq type="get" xmlns="w:p">`) on the
//! current connection and returns when the server answers. On a socket that died without a
//! close it fails after 20 s (the crate's own keep-alive watches for dead sockets as well, on its
//! 15–30 s ticks, and then reconnects by itself). An error answer still counts as an answer.
//!
//! The gateway keeps at most one running client per salon: `open` and `purge_credentials` first
//! close a session still running for that salon, since two clients on one store would fight
//! over the same rows and over the same WhatsApp device (the server drops one with a
//! "replaced" conflict).

use super::gateway::{GatewayError, GatewayEvent, GatewaySession, WhatsAppGateway};
use super::sealed_backend::{stored_device, SealedBackend};
use crate::store::{SessionLease, Store};
use app::domain::{PhoneNumber, SalonId};
use app::status::DeliveryStatus;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::pair_code::{PairCodeError, PairCodeOptions, PairError};
use whatsapp_rust::proto_helpers::MessageExt;
use whatsapp_rust::request::IqError;
use whatsapp_rust::types::events::{
    Event, EventHandler, EventInterest, EventKind, MessageBatch, Receipt, TemporaryBan,
};
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore::iq::devices::RemoveCompanionDeviceSpec;
use whatsapp_rust::wacore::iq::keepalive::KeepaliveSpec;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, ClientError, Jid, SendError, SendOptions};

/// How long `request_pair_code` waits for the socket (the crate needs it up before asking).
const PAIR_SOCKET_WAIT: Duration = Duration::from_secs(30);
/// How long `logout` waits for a session that is still (re)connecting before giving up on
/// unlinking.
const LOGOUT_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long `send_text` waits for a linked session that is still (re)connecting.
const SEND_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long `probe` waits for WhatsApp's answer to its ping before calling it failed; WhatsApp
/// Web's own keep-alive deadline (the crate's `KEEP_ALIVE_RESPONSE_DEADLINE`).
const PROBE_DEADLINE: Duration = Duration::from_secs(20);
/// How many sent messages a session keeps following for receipts; past that the oldest is
/// forgotten (its later receipts are dropped).
const SENT_IDS_KEPT: usize = 4096;
/// How long `close` waits for the crate's run loop after asking it to stop; then once more after
/// a second disconnect (a connect that was in flight during the first one); then it aborts.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
const CLOSE_WAIT_AGAIN: Duration = Duration::from_secs(5);
/// How long `open`/`purge_credentials` wait for a dropped (never closed) session's client to stop.
const RETIRE_WAIT: Duration = Duration::from_secs(15);

/// The WhatsApp Web gateway: one `whatsapp-rust` client per salon, its storage sealed in our
/// database.
pub struct WebGateway {
    store: Store,
    /// Sessions opened by this gateway, by salon id. Weak: a session lives as long as the
    /// `Box<dyn GatewaySession>` handed out; the receiver tells when its client has stopped.
    sessions: Mutex<HashMap<i64, SessionEntry>>,
    /// Per salon: serializes `open` and `purge_credentials`, which retire a running session
    /// first, without making one salon wait for another.
    lifecycles: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    #[cfg(test)]
    test_transport: Option<Arc<dyn whatsapp_rust::transport::TransportFactory>>,
}

struct SessionEntry {
    session: Weak<SessionShared>,
    stopped: watch::Receiver<bool>,
}

impl WebGateway {
    /// `store` must carry the credential keys (`Store::with_credential_keys`).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            sessions: Mutex::new(HashMap::new()),
            lifecycles: Mutex::new(HashMap::new()),
            #[cfg(test)]
            test_transport: None,
        }
    }

    fn lifecycle(&self, salon: SalonId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .lifecycles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(salon.get()).or_default().clone()
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<i64, SessionEntry>> {
        // A panic while holding this lock leaves the map itself consistent.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The running session of this salon, if one is open and its client has not stopped.
    fn live_session(&self, salon: SalonId) -> Option<Arc<SessionShared>> {
        let sessions = self.sessions();
        let entry = sessions.get(&salon.get())?;
        if *entry.stopped.borrow() {
            return None;
        }
        entry.session.upgrade()
    }

    /// Under the salon's lifecycle lock: stops what still runs on its store, then runs `delete`
    /// (a purge of its stored credentials, fenced or not).
    async fn retire_and_delete(
        &self,
        salon: SalonId,
        delete: impl std::future::Future<Output = Result<u64, crate::store::StoreError>>,
    ) -> Result<(), GatewayError> {
        let lifecycle = self.lifecycle(salon);
        let _lifecycle = lifecycle.lock().await;
        self.retire(salon).await;
        delete.await.map(|_| ()).map_err(GatewayError::from_store)
    }

    /// Stops whatever still runs on this salon's store: closes an open session, or waits for
    /// the client of a session that was dropped without `close` (its drop asked it to stop).
    async fn retire(&self, salon: SalonId) {
        let entry = self.sessions().remove(&salon.get());
        let Some(entry) = entry else { return };
        if let Some(session) = entry.session.upgrade() {
            tracing::info!(
                salon = salon.get(),
                "closing the running WhatsApp session first"
            );
            session.close().await;
            return;
        }
        let mut stopped = entry.stopped;
        let waited = tokio::time::timeout(RETIRE_WAIT, stopped.wait_for(|done| *done)).await;
        if waited.is_err() {
            tracing::warn!(
                salon = salon.get(),
                "a dropped WhatsApp session did not stop in time; going on anyway"
            );
        }
    }
}

#[async_trait::async_trait]
impl WhatsAppGateway for WebGateway {
    fn backend_name(&self) -> &'static str {
        "web"
    }

    /// True when the salon's stored device is *registered*: it completed pairing, so it knows
    /// its own phone-number JID. (The crate stores a fresh, unregistered device — new keys, no
    /// JID — as soon as a QR session is opened, so a stored device alone means nothing.)
    ///
    /// After the phone unlinks the device (`LoggedOut`) the crate leaves the store as it was, so
    /// this stays true until `purge_credentials`.
    async fn has_credentials(&self, salon: SalonId) -> Result<bool, GatewayError> {
        if let Some(session) = self.live_session(salon) {
            return Ok(session.client.pn().is_some());
        }
        let device = stored_device(&self.store, salon).await.map_err(|e| {
            GatewayError::Store(format!("cannot read the device of salon {salon}: {e}"))
        })?;
        Ok(device.is_some_and(|device| device.pn.is_some()))
    }

    async fn open(
        &self,
        lease: &SessionLease,
        events: mpsc::UnboundedSender<GatewayEvent>,
    ) -> Result<Box<dyn GatewaySession>, GatewayError> {
        let salon = lease.salon;
        let lifecycle = self.lifecycle(salon);
        let _lifecycle = lifecycle.lock().await;
        self.retire(salon).await;

        let store = SealedBackend::new(self.store.clone(), lease.clone());

        let forwarder = Arc::new(Forwarder::new(salon, events));
        let builder = Bot::builder()
            .with_backend(store)
            .with_event_handler(ForwardEvents(forwarder.clone()));
        #[cfg(test)]
        let builder = match &self.test_transport {
            Some(factory) => builder
                .with_transport_factory(tests::SharedTransportFactory(factory.clone()))
                .with_version((2, 3000, 1)),
            None => builder,
        };
        let bot = builder
            .build()
            .await
            .map_err(|e| GatewayError::Store(format!("cannot start the WhatsApp client: {e}")))?;
        let client = bot.client();
        forwarder.attach(&client);

        let (stopped_tx, stopped_rx) = watch::channel(false);
        let handle = bot.spawn();
        let watcher = tokio::spawn(watch_run_loop(handle, forwarder.clone(), stopped_tx));
        tracing::info!(
            salon = salon.get(),
            lease_generation = lease.generation,
            "WhatsApp session started"
        );

        let shared = Arc::new(SessionShared {
            salon,
            client,
            forwarder,
            closed: AtomicBool::new(false),
            watcher: tokio::sync::Mutex::new(Some(watcher)),
            pair_code: tokio::sync::Mutex::new(None),
        });
        self.sessions().insert(
            salon.get(),
            SessionEntry {
                session: Arc::downgrade(&shared),
                stopped: stopped_rx,
            },
        );
        Ok(Box::new(WebSession { shared }))
    }

    /// Closes a session still running for the salon, then deletes its stored credentials
    /// (nothing stored is not an error). Not fenced (see the port). This does not unlink the
    /// device on the phone (that is `GatewaySession::logout`); a device purged while linked
    /// stays listed under "Linked devices" until the phone removes it or WhatsApp expires it.
    async fn purge_credentials(&self, salon: SalonId) -> Result<(), GatewayError> {
        self.retire_and_delete(salon, self.store.purge_credentials(salon))
            .await?;
        tracing::info!(salon = salon.get(), "WhatsApp credentials purged");
        Ok(())
    }

    /// As [`purge_credentials`](Self::purge_credentials), fenced by the session's lease.
    async fn forget_credentials(&self, lease: &SessionLease) -> Result<(), GatewayError> {
        let salon = lease.salon;
        self.retire_and_delete(salon, self.store.purge_credentials_fenced(lease))
            .await?;
        tracing::info!(
            salon = salon.get(),
            "WhatsApp credentials of a logged-out device purged"
        );
        Ok(())
    }
}

/// The supervisor's handle on one salon's running client.
struct WebSession {
    shared: Arc<SessionShared>,
}

#[async_trait::async_trait]
impl GatewaySession for WebSession {
    /// Asks for an 8-character code (as the crate returns it, without the dash the phone shows)
    /// for linking by phone number, next to the QR codes on the same connection; whichever the
    /// user completes first wins. WhatsApp keeps one code live at a time (about 3 minutes):
    /// asking again for the same number within that window returns the same code, asking for a
    /// different number cancels the first code and requests a new one.
    async fn request_pair_code(&self, phone: &PhoneNumber) -> Result<String, GatewayError> {
        self.shared.request_pair_code(phone).await
    }

    /// Sends `text` as a plain text message (`conversation`) to `{digits}@s.whatsapp.net`
    /// through the crate's Signal-encrypted send path, under a message id chosen here first, so
    /// that a receipt cannot overtake the id's bookkeeping. Returns once the stanza is written to
    /// the socket: WhatsApp's server ack and the recipient's receipts come later, the receipts as
    /// [`GatewayEvent::Receipt`]s. A session that is (re)connecting gets up to 10 s to be ready;
    /// then, or when the device is not linked, `Unavailable`. Whether the number has WhatsApp at
    /// all is not checked: a message to a number without it is sent and never delivered.
    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<String, GatewayError> {
        self.shared.send_text(to, text).await
    }

    /// Sends WhatsApp's keep-alive ping (an `iq` of type `get`, namespace `w:p`) and waits for
    /// the answer on this connection, for at most 20 s (then `Unavailable`). `Unavailable` at
    /// once when no socket is up (the crate is reconnecting) and `Closed` once the session is.
    async fn probe(&self) -> Result<(), GatewayError> {
        self.shared.probe().await
    }

    /// Sends WhatsApp's "remove companion device" request for this device (the phone drops it
    /// from "Linked devices"), then stops the client. No event is sent for it: the caller knows.
    /// The store is left as it is; call `purge_credentials` to forget it. If the device cannot
    /// be reached (not connected within 10 s) or the server refuses, the session is stopped all
    /// the same and the error says the device may still be listed on the phone.
    async fn logout(&self) -> Result<(), GatewayError> {
        self.shared.logout().await
    }

    /// Stops the client and its connection; the store (and so the link) stays. No events are
    /// sent after this starts, and the event channel closes.
    async fn close(&self) {
        self.shared.close().await;
    }
}

struct SessionShared {
    salon: SalonId,
    client: Arc<Client>,
    forwarder: Arc<Forwarder>,
    /// `close` or `logout` has started (or the session was dropped).
    closed: AtomicBool,
    /// The task awaiting the crate's run loop; taken by the first `close`.
    watcher: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The last pair code handed out, and for which number.
    pair_code: tokio::sync::Mutex<Option<(PhoneNumber, String)>>,
}

impl SessionShared {
    fn ensure_running(&self) -> Result<(), GatewayError> {
        if self.closed.load(Ordering::SeqCst) || self.forwarder.is_stopped() {
            Err(GatewayError::Closed)
        } else {
            Ok(())
        }
    }

    async fn request_pair_code(&self, phone: &PhoneNumber) -> Result<String, GatewayError> {
        self.ensure_running()?;
        if self.client.pn().is_some() {
            return Err(GatewayError::PairCodeRefused(
                "this salon's WhatsApp device is already linked".to_owned(),
            ));
        }
        self.client
            .wait_for_socket(PAIR_SOCKET_WAIT)
            .await
            .map_err(|e| GatewayError::Unavailable(format!("not connected to WhatsApp: {e}")))?;

        let mut last = self.pair_code.lock().await;
        let code = match self.ask_pair_code(phone).await {
            Ok(code) => code,
            Err(PairError::PairCode(PairCodeError::CodeAlreadyOutstanding { remaining })) => {
                if let Some((last_phone, last_code)) = last.as_ref() {
                    if last_phone == phone {
                        return Ok(last_code.clone());
                    }
                }
                tracing::info!(
                    salon = self.salon.get(),
                    ?remaining,
                    "replacing the outstanding pair code for another number"
                );
                self.client.cancel_pair_code().await;
                self.ask_pair_code(phone).await.map_err(pair_error)?
            }
            Err(e) => return Err(pair_error(e)),
        };
        *last = Some((phone.clone(), code.clone()));
        Ok(code)
    }

    async fn ask_pair_code(&self, phone: &PhoneNumber) -> Result<String, PairError> {
        self.client
            .pair_with_code(PairCodeOptions {
                phone_number: phone.as_str().to_owned(),
                ..Default::default()
            })
            .await
    }

    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<String, GatewayError> {
        self.ensure_running()?;
        if self.client.pn().is_none() {
            return Err(GatewayError::Unavailable(
                "this salon's WhatsApp device is not linked".to_owned(),
            ));
        }
        if !self.can_send() {
            let _ = self.client.wait_for_connected(SEND_CONNECT_WAIT).await;
            self.ensure_running()?;
            if !self.can_send() {
                return Err(GatewayError::Unavailable(
                    "not connected to WhatsApp".to_owned(),
                ));
            }
        }
        let id = self.client.generate_message_id();
        self.forwarder.track_sent(&id);
        let message = wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        let sent = self
            .client
            .send_message_with_options(
                recipient_jid(to),
                message,
                SendOptions::default().with_message_id(id.clone()),
            )
            .await;
        match sent {
            Ok(result) => {
                if result.message_id != id {
                    // Not expected: the crate sends under the id it is given. Follow both.
                    self.forwarder.track_sent(&result.message_id);
                }
                Ok(result.message_id)
            }
            Err(e) => {
                self.forwarder.forget_sent(&id);
                tracing::warn!(salon = self.salon.get(), error = %e, "WhatsApp send failed");
                if self.closed.load(Ordering::SeqCst) || self.forwarder.is_stopped() {
                    Err(GatewayError::Closed)
                } else {
                    Err(send_error(e))
                }
            }
        }
    }

    /// Connected and logged in: what the crate's send path needs.
    fn can_send(&self) -> bool {
        self.client.is_connected() && self.client.is_logged_in()
    }

    async fn probe(&self) -> Result<(), GatewayError> {
        self.ensure_running()?;
        if !self.client.is_connected() {
            return Err(GatewayError::Unavailable(
                "not connected to WhatsApp".to_owned(),
            ));
        }
        let answered = self
            .client
            .execute(KeepaliveSpec::with_timeout(PROBE_DEADLINE))
            .await;
        match answered {
            Ok(()) => Ok(()),
            // An error answer is still an answer: the connection carries traffic both ways.
            Err(
                e @ (IqError::ServerError { .. }
                | IqError::UnexpectedResponseType { .. }
                | IqError::ParseError(_)),
            ) => {
                tracing::debug!(
                    salon = self.salon.get(),
                    error = %e,
                    "WhatsApp answered a ping with an error"
                );
                Ok(())
            }
            Err(_) if self.closed.load(Ordering::SeqCst) || self.forwarder.is_stopped() => {
                Err(GatewayError::Closed)
            }
            Err(IqError::Timeout) => Err(GatewayError::Unavailable(format!(
                "WhatsApp did not answer a ping within {} s",
                PROBE_DEADLINE.as_secs()
            ))),
            Err(e) => Err(GatewayError::Unavailable(format!(
                "WhatsApp ping failed: {e}"
            ))),
        }
    }

    async fn logout(&self) -> Result<(), GatewayError> {
        self.ensure_running()?;
        // From here on the session is ending: no events, whatever the unlink's outcome.
        self.closed.store(true, Ordering::SeqCst);
        self.forwarder.mute();
        // As the crate's own `Client::logout` does: no reconnect while the server drops the
        // stream of the device it has just removed.
        self.client
            .enable_auto_reconnect
            .store(false, Ordering::SeqCst);
        let unlinked = self.unlink().await;
        self.stop_client().await;
        match &unlinked {
            Ok(()) => tracing::info!(salon = self.salon.get(), "WhatsApp device unlinked"),
            Err(e) => {
                tracing::warn!(salon = self.salon.get(), error = %e, "WhatsApp unlink failed");
            }
        }
        unlinked
    }

    /// `Client::logout` of whatsapp-rust 0.7 sends the same request but swallows its failure
    /// (logs it and goes on); this sends it itself so the caller learns whether it went through.
    async fn unlink(&self) -> Result<(), GatewayError> {
        if self.client.pn().is_none() {
            // Never linked: there is nothing on a phone to remove.
            return Ok(());
        }
        if !self.client.is_logged_in() {
            let _ = self.client.wait_for_connected(LOGOUT_CONNECT_WAIT).await;
        }
        let (true, Some(own)) = (self.client.is_logged_in(), self.client.pn()) else {
            return Err(GatewayError::Unavailable(
                "not connected to WhatsApp, so the device was not unlinked; it may still be \
                 listed under Linked devices on the phone"
                    .to_owned(),
            ));
        };
        match self
            .client
            .execute(RemoveCompanionDeviceSpec::new(&own))
            .await
        {
            // The server may drop the stream of the device it removes before it answers.
            Ok(()) | Err(IqError::Disconnected(_)) => Ok(()),
            Err(e) => Err(GatewayError::Unavailable(format!(
                "WhatsApp did not confirm the unlink ({e}); the device may still be listed \
                 under Linked devices on the phone"
            ))),
        }
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.forwarder.mute();
        self.stop_client().await;
    }

    /// Stops the crate's run loop and waits for it. A connect in flight when `disconnect` is
    /// called can finish after it and leave a fresh socket up, so a second `disconnect` follows
    /// if the loop has not ended in time, and an abort after that.
    async fn stop_client(&self) {
        self.client.disconnect().await;
        let mut slot = self.watcher.lock().await;
        let Some(mut watcher) = slot.take() else {
            return;
        };
        if tokio::time::timeout(CLOSE_WAIT, &mut watcher).await.is_ok() {
            return;
        }
        tracing::warn!(
            salon = self.salon.get(),
            "WhatsApp client still running; disconnecting again"
        );
        self.client.disconnect().await;
        if tokio::time::timeout(CLOSE_WAIT_AGAIN, &mut watcher)
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            salon = self.salon.get(),
            "WhatsApp client did not stop; aborting it"
        );
        // Dropping the `BotHandle` inside the watcher aborts the crate's run task.
        watcher.abort();
    }
}

impl Drop for SessionShared {
    /// A session dropped without `close` still stops its client, in the background.
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.forwarder.mute();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move { client.disconnect().await });
        }
    }
}

/// Awaits the crate's run loop. When it ends by itself (not through `close`/`logout`) and no
/// event has said so yet, reports it; then closes the event channel.
async fn watch_run_loop(
    handle: BotHandle,
    forwarder: Arc<Forwarder>,
    stopped: watch::Sender<bool>,
) {
    handle.await;
    forwarder.stopped.store(true, Ordering::SeqCst);
    if !forwarder.ended.load(Ordering::SeqCst) {
        forwarder.send(GatewayEvent::Disconnected {
            reason: "the WhatsApp client stopped and is not reconnecting".to_owned(),
        });
    }
    forwarder.mute();
    let _ = stopped.send(true);
    tracing::info!(salon = forwarder.salon.get(), "WhatsApp session stopped");
}

/// Turns the crate's events into [`GatewayEvent`]s for one session.
struct Forwarder {
    salon: SalonId,
    /// `None` once muted: the channel closes when the supervisor drops its own senders.
    events: Mutex<Option<mpsc::UnboundedSender<GatewayEvent>>>,
    client: OnceLock<Weak<Client>>,
    /// An event that ends the session (no reconnect follows) has been sent.
    ended: AtomicBool,
    /// The crate's run loop has returned.
    stopped: AtomicBool,
    /// The messages this session sent, for their receipts.
    sent: Mutex<SentMessages>,
}

impl Forwarder {
    fn new(salon: SalonId, events: mpsc::UnboundedSender<GatewayEvent>) -> Self {
        Self {
            salon,
            events: Mutex::new(Some(events)),
            client: OnceLock::new(),
            ended: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sent: Mutex::new(SentMessages::new(SENT_IDS_KEPT)),
        }
    }

    fn attach(&self, client: &Arc<Client>) {
        let _ = self.client.set(Arc::downgrade(client));
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn sender(&self) -> MutexGuard<'_, Option<mpsc::UnboundedSender<GatewayEvent>>> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send(&self, event: GatewayEvent) {
        if let Some(events) = self.sender().as_ref() {
            // A dropped receiver means nobody listens any more; nothing to do about it here.
            let _ = events.send(event);
        }
    }

    /// No more events from this session; drops the sender.
    fn mute(&self) {
        self.sender().take();
    }

    /// This device's own phone-number JID, once paired.
    fn own_jid(&self) -> Option<Jid> {
        self.client.get()?.upgrade()?.pn()
    }

    /// This account's own JIDs (phone number and LID), once paired.
    fn own_jids(&self) -> Vec<Jid> {
        let Some(client) = self.client.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        client.pn().into_iter().chain(client.lid()).collect()
    }

    fn sent(&self) -> MutexGuard<'_, SentMessages> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows the receipts of a message this session is sending under `id`.
    fn track_sent(&self, id: &str) {
        self.sent().track(id);
    }

    /// Stops following `id` (its send failed).
    fn forget_sent(&self, id: &str) {
        self.sent().forget(id);
    }

    fn forward(&self, event: &Event) {
        if self.sender().is_none() {
            return;
        }
        if let Event::Messages(batch) = event {
            for incoming in incoming_texts(batch) {
                self.send(incoming);
            }
            return;
        }
        if let Event::Receipt(receipt) = event {
            let own = self.own_jids();
            let updates = receipt_updates(receipt, &own, &mut self.sent());
            for update in updates {
                if let GatewayEvent::Receipt { message_id, status } = &update {
                    tracing::debug!(
                        salon = self.salon.get(),
                        %message_id,
                        status = status.name(),
                        "WhatsApp receipt"
                    );
                }
                self.send(update);
            }
            return;
        }
        let own = match event {
            Event::Connected(_) | Event::PairSuccess(_) => self.own_jid(),
            _ => None,
        };
        log_event(self.salon, event);
        if let Some(mapped) = map_event(event, own.as_ref()) {
            if ends_session(event) {
                self.ended.store(true, Ordering::SeqCst);
            }
            self.send(mapped);
        }
    }
}

/// The handler registered on the crate's event bus. It runs inline on the dispatching task,
/// which keeps the events in order; it only maps and queues.
struct ForwardEvents(Arc<Forwarder>);

impl EventHandler for ForwardEvents {
    fn handle_event(&self, event: Arc<Event>) {
        self.0.forward(&event);
    }

    fn interest(&self) -> EventInterest {
        EventInterest::of(&[
            EventKind::PairingQrCode,
            EventKind::PairingQrCodesExhausted,
            EventKind::PairSuccess,
            EventKind::PairError,
            EventKind::Connected,
            EventKind::Disconnected,
            EventKind::LoggedOut,
            EventKind::StreamReplaced,
            EventKind::TemporaryBan,
            EventKind::ClientOutdated,
            EventKind::ConnectFailure,
            EventKind::Receipt,
            EventKind::Messages,
            EventKind::PairingCode,
            EventKind::PairingCodeError,
            EventKind::PairingCodeRefresh,
            EventKind::QrScannedWithoutMultidevice,
        ])
    }
}

/// What a crate event means for the port, `None` for events the port has no word for.
///
/// `own_jid` is this device's phone-number JID as the crate stores it (`Client::pn`), which is
/// where `Connected` takes the phone from (the event itself carries nothing).
fn map_event(event: &Event, own_jid: Option<&Jid>) -> Option<GatewayEvent> {
    match event {
        Event::PairingQrCode(qr) => Some(GatewayEvent::Qr {
            code: qr.code.clone(),
            ttl: qr.timeout,
        }),
        Event::PairingQrCodesExhausted(_) => Some(GatewayEvent::QrExhausted),
        Event::PairSuccess(paired) => {
            let phone = phone_from_jid(&paired.id).or_else(|| own_jid.and_then(phone_from_jid));
            phone.map(|phone| GatewayEvent::Linked { phone })
        }
        Event::Connected(_) => Some(GatewayEvent::Connected {
            phone: own_jid.and_then(phone_from_jid),
        }),
        Event::LoggedOut(_) => Some(GatewayEvent::LoggedOut),
        Event::Disconnected(dropped) => Some(GatewayEvent::Disconnected {
            reason: format!("{}; reconnecting", dropped.reason),
        }),
        Event::StreamReplaced(_) => Some(GatewayEvent::Replaced),
        Event::TemporaryBan(ban) => Some(banned(ban)),
        Event::ClientOutdated(_) => Some(GatewayEvent::Disconnected {
            reason: "WhatsApp rejected this client version as outdated; not reconnecting"
                .to_owned(),
        }),
        Event::ConnectFailure(failure) => {
            let retry = if failure.reason.should_reconnect() {
                "reconnecting"
            } else {
                "not reconnecting"
            };
            let message = failure
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Some(GatewayEvent::Disconnected {
                reason: format!(
                    "WhatsApp refused the connection (code {}{message}); {retry}",
                    failure.reason.code()
                ),
            })
        }
        _ => None,
    }
}

/// A temporary ban: the reason as WhatsApp's code and the crate's wording of it
/// (`101: you sent too many messages …`), then the server's own message if it sent one; the
/// ban's length unless it is zero or negative.
fn banned(ban: &TemporaryBan) -> GatewayEvent {
    let mut reason = ban.code.to_string();
    if let Some(message) = ban.message.as_deref().map(str::trim) {
        if !message.is_empty() {
            reason.push_str(" (");
            reason.push_str(message);
            reason.push(')');
        }
    }
    GatewayEvent::Banned {
        reason,
        expires_in: ban.expire.to_std().ok().filter(|length| !length.is_zero()),
    }
}

/// The messages a session sent and the furthest status WhatsApp has reported for each, so a
/// receipt is forwarded once, only for our own messages and only when it moves the status
/// forward (a delivery from a second device of the recipient, or a delivery arriving after the
/// read, says nothing new). Bounded: past `capacity` the oldest message is forgotten.
struct SentMessages {
    capacity: usize,
    status: HashMap<String, DeliveryStatus>,
    /// Ids in the order they were sent, for forgetting the oldest.
    order: VecDeque<String>,
}

impl SentMessages {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            status: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn track(&mut self, id: &str) {
        if self.status.contains_key(id) {
            return;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.status.remove(&oldest);
                }
                None => break,
            }
        }
        self.status.insert(id.to_owned(), DeliveryStatus::Sent);
        self.order.push_back(id.to_owned());
    }

    fn forget(&mut self, id: &str) {
        if self.status.remove(id).is_some() {
            self.order.retain(|kept| kept != id);
        }
    }

    /// Records `status` for `id`; true when `id` is ours and that is further than before.
    fn advance(&mut self, id: &str, status: DeliveryStatus) -> bool {
        match self.status.get_mut(id) {
            Some(known) if *known < status => {
                *known = status;
                true
            }
            _ => false,
        }
    }
}

/// What a receipt tells about the messages this session sent: a [`GatewayEvent::Receipt`] per
/// message id that is ours and whose status moves forward. Only the recipient's delivery
/// (`delivery`, the type-less receipt) and read (`read`) receipts count; receipts from this
/// account's own devices (`sender`, `read-self`, `played-self`, or any receipt sent from one of
/// `own`'s users), retries, server errors and the rest are not about the recipient.
fn receipt_updates(receipt: &Receipt, own: &[Jid], sent: &mut SentMessages) -> Vec<GatewayEvent> {
    let status = match receipt.r#type {
        ReceiptType::Delivered => DeliveryStatus::Delivered,
        ReceiptType::Read => DeliveryStatus::Read,
        _ => return Vec::new(),
    };
    let sender = &receipt.source.sender;
    if own.iter().any(|own| same_account(own, sender)) {
        return Vec::new();
    }
    receipt
        .message_ids
        .iter()
        .filter(|id| sent.advance(id, status))
        .map(|id| GatewayEvent::Receipt {
            message_id: id.clone(),
            status,
        })
        .collect()
}

/// The texts clients wrote to the salon in one-to-one chats, as [`GatewayEvent::Incoming`]: not
/// our own messages (sent from the phone or echoed), not groups, broadcasts or newsletters, not
/// media or reactions. The sender's number comes from its phone-number JID, or from the
/// alternative JID when WhatsApp addresses the sender by LID.
fn incoming_texts(batch: &MessageBatch) -> Vec<GatewayEvent> {
    batch
        .iter()
        .filter_map(|inbound| {
            let source = &inbound.info.source;
            if source.is_from_me
                || source.is_group
                || !(source.chat.server.is_pn_family() || source.chat.server.is_lid_family())
            {
                return None;
            }
            let from = phone_from_jid(&source.sender)
                .or_else(|| source.sender_alt.as_ref().and_then(phone_from_jid))?;
            let text = inbound.message.text_content()?.trim();
            (!text.is_empty()).then(|| GatewayEvent::Incoming {
                from,
                text: text.chars().take(4096).collect(),
            })
        })
        .collect()
}

/// Whether two JIDs name the same account (same user in the same namespace, any device).
fn same_account(a: &Jid, b: &Jid) -> bool {
    a.user == b.user
        && a.server.is_pn_family() == b.server.is_pn_family()
        && a.server.is_lid_family() == b.server.is_lid_family()
}

/// The chat JID of a phone number: `{digits}@s.whatsapp.net`.
fn recipient_jid(phone: &PhoneNumber) -> Jid {
    Jid::pn(phone.as_str())
}

/// A failed send as the port words it: `Unavailable` when the connection is the trouble (not
/// logged in, not connected, the socket or an IQ on the way failed or timed out), so a later try
/// may go through; `SendRefused` when WhatsApp or the crate turned this message down.
fn send_error(error: SendError) -> GatewayError {
    let transport = match &error {
        SendError::NotLoggedIn => true,
        SendError::Client(client) => matches!(
            client,
            ClientError::NotConnected
                | ClientError::NotLoggedIn
                | ClientError::Socket(_)
                | ClientError::EncryptSend(_)
                | ClientError::Iq(_)
        ),
        SendError::Iq(iq) => !matches!(iq, IqError::ServerError { .. }),
        _ => false,
    };
    if transport {
        GatewayError::Unavailable(format!("the message was not sent: {error}"))
    } else {
        GatewayError::SendRefused(error.to_string())
    }
}

/// Whether after this event the crate stops for good (no reconnect), so the run loop's end
/// needs no further report.
fn ends_session(event: &Event) -> bool {
    match event {
        Event::LoggedOut(_)
        | Event::StreamReplaced(_)
        | Event::TemporaryBan(_)
        | Event::ClientOutdated(_) => true,
        Event::PairingQrCodesExhausted(exhausted) => exhausted.disconnected,
        Event::ConnectFailure(failure) => !failure.reason.should_reconnect(),
        _ => false,
    }
}

/// Logs what the port has no event for (and what it has, briefly), for the operator.
fn log_event(salon: SalonId, event: &Event) {
    let salon = salon.get();
    match event {
        Event::PairError(e) => {
            tracing::warn!(salon, error = %e.error, "WhatsApp pairing failed on the phone's answer");
        }
        Event::PairingCode(_) => tracing::info!(salon, "WhatsApp pair code issued"),
        Event::PairingCodeError(e) => {
            tracing::warn!(salon, error = %e.error, "WhatsApp pair code flow failed");
        }
        Event::PairingCodeRefresh(_) => tracing::info!(
            salon,
            "WhatsApp asked for a new pair code; the previous one is no longer valid"
        ),
        Event::QrScannedWithoutMultidevice(_) => tracing::warn!(
            salon,
            "the QR code was scanned by a WhatsApp without multi-device support"
        ),
        Event::PairSuccess(_) => tracing::info!(salon, "WhatsApp device linked"),
        Event::LoggedOut(out) => {
            tracing::warn!(salon, reason = ?out.reason, "WhatsApp device logged out");
        }
        Event::StreamReplaced(_) => tracing::warn!(
            salon,
            "another client connected with this WhatsApp device's credentials; not reconnecting"
        ),
        Event::TemporaryBan(ban) => tracing::warn!(
            salon,
            reason = %ban.code,
            message = ban.message.as_deref().unwrap_or_default(),
            seconds = ban.expire.num_seconds(),
            "WhatsApp temporarily banned the device; not reconnecting"
        ),
        _ => tracing::debug!(salon, kind = ?event.kind(), "WhatsApp event"),
    }
}

/// The phone number of a phone-number JID (`79990009900:35@s.whatsapp.net` → `79990009900`);
/// `None` for LIDs, groups and anything else whose user part is not a phone number.
fn phone_from_jid(jid: &Jid) -> Option<PhoneNumber> {
    if !jid.server.is_pn_family() {
        return None;
    }
    PhoneNumber::from_jid(&jid.to_string()).ok()
}

fn pair_error(error: PairError) -> GatewayError {
    match &error {
        PairError::RequestFailed(IqError::ServerError { .. }) => GatewayError::PairCodeRefused(
            format!("{error} (WhatsApp also answers this way when it rate-limits a number)"),
        ),
        PairError::RequestFailed(_) => {
            GatewayError::Unavailable(format!("pair code request failed: {error}"))
        }
        _ => GatewayError::PairCodeRefused(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
    use whatsapp_rust::types::events::{BatchOrigin, InboundMessage};
    use whatsapp_rust::types::events::{
        ClientOutdated, ConnectFailure, ConnectFailureReason, Connected, Disconnected, LoggedOut,
        OfflineSyncCompleted, PairSuccess, PairingCodeRefresh, PairingQrCode,
        PairingQrCodesExhausted, StreamReplaced, TempBanReason,
    };
    use whatsapp_rust::types::message::{MessageInfo, MessageSource};
    use whatsapp_rust::wacore::net::DisconnectReason;

    fn jid(s: &str) -> Jid {
        s.parse().expect("test JID parses")
    }

    fn phone(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).expect("test phone parses")
    }

    fn salon(id: i64) -> SalonId {
        SalonId::try_from(id).expect("test salon id is positive")
    }

    fn pair_success(id: &str) -> Event {
        Event::PairSuccess(
            PairSuccess::builder()
                .id(jid(id))
                .lid(jid("123456789012345:35@lid"))
                .business_name(String::new())
                .platform("android".to_owned())
                .build(),
        )
    }

    // ---- the phone from a JID ----

    #[test]
    fn phone_comes_from_the_user_part_without_the_device_suffix() {
        assert_eq!(
            phone_from_jid(&jid("79990009900:35@s.whatsapp.net")),
            Some(phone("79990009900"))
        );
        assert_eq!(
            phone_from_jid(&jid("79990009900@s.whatsapp.net")),
            Some(phone("79990009900"))
        );
        assert_eq!(
            phone_from_jid(&jid("4915112345678:2@s.whatsapp.net")),
            Some(phone("4915112345678"))
        );
    }

    #[test]
    fn jids_that_are_not_phone_numbers_give_no_phone() {
        // A LID is a pseudonymous id with digits that are not a phone number.
        assert_eq!(phone_from_jid(&jid("123456789012345:35@lid")), None);
        assert_eq!(phone_from_jid(&jid("120363012345678901@g.us")), None);
        // Digits, but too short to be an E.164 number.
        assert_eq!(phone_from_jid(&jid("12345:1@s.whatsapp.net")), None);
    }

    // ---- event mapping ----

    #[test]
    fn qr_code_keeps_code_and_validity() {
        let event = Event::PairingQrCode(
            PairingQrCode::builder()
                .code("2@abc,def,ghi".to_owned())
                .timeout(Duration::from_secs(60))
                .build(),
        );
        assert_eq!(
            map_event(&event, None),
            Some(GatewayEvent::Qr {
                code: "2@abc,def,ghi".to_owned(),
                ttl: Duration::from_secs(60)
            })
        );
        assert!(!ends_session(&event));
    }

    #[test]
    fn exhausted_qr_codes_end_the_session_only_when_the_crate_disconnected() {
        let closed = Event::PairingQrCodesExhausted(
            PairingQrCodesExhausted::builder()
                .disconnected(true)
                .build(),
        );
        let still_up = Event::PairingQrCodesExhausted(
            PairingQrCodesExhausted::builder()
                .disconnected(false)
                .build(),
        );
        assert_eq!(map_event(&closed, None), Some(GatewayEvent::QrExhausted));
        assert_eq!(map_event(&still_up, None), Some(GatewayEvent::QrExhausted));
        assert!(ends_session(&closed));
        assert!(!ends_session(&still_up));
    }

    #[test]
    fn pair_success_links_the_phone_of_the_device_jid() {
        assert_eq!(
            map_event(&pair_success("79990009900:35@s.whatsapp.net"), None),
            Some(GatewayEvent::Linked {
                phone: phone("79990009900")
            })
        );
    }

    #[test]
    fn pair_success_without_a_phone_jid_falls_back_to_the_stored_one() {
        let own = jid("79990009900:35@s.whatsapp.net");
        assert_eq!(
            map_event(&pair_success("123456789012345:35@lid"), Some(&own)),
            Some(GatewayEvent::Linked {
                phone: phone("79990009900")
            })
        );
        assert_eq!(
            map_event(&pair_success("123456789012345:35@lid"), None),
            None
        );
    }

    #[test]
    fn connected_carries_the_stored_phone_when_there_is_one() {
        let event = Event::Connected(Connected::builder().build());
        let own = jid("79990009900:12@s.whatsapp.net");
        assert_eq!(
            map_event(&event, Some(&own)),
            Some(GatewayEvent::Connected {
                phone: Some(phone("79990009900"))
            })
        );
        assert_eq!(
            map_event(&event, None),
            Some(GatewayEvent::Connected { phone: None })
        );
        assert_eq!(
            map_event(&event, Some(&jid("123456789012345:12@lid"))),
            Some(GatewayEvent::Connected { phone: None })
        );
        assert!(!ends_session(&event));
    }

    #[test]
    fn logged_out_maps_and_ends_the_session() {
        let event = Event::LoggedOut(
            LoggedOut::builder()
                .on_connect(false)
                .reason(ConnectFailureReason::LoggedOut)
                .build(),
        );
        assert_eq!(map_event(&event, None), Some(GatewayEvent::LoggedOut));
        assert!(ends_session(&event));
    }

    #[test]
    fn a_dropped_connection_is_reported_with_its_reason() {
        let event = Event::Disconnected(
            Disconnected::builder()
                .reason(DisconnectReason::ReadError("connection reset".to_owned()))
                .build(),
        );
        match map_event(&event, None) {
            Some(GatewayEvent::Disconnected { reason }) => {
                assert!(reason.contains("connection reset"), "{reason}");
                assert!(reason.ends_with("; reconnecting"), "{reason}");
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert!(!ends_session(&event));
    }

    #[test]
    fn terminal_failures_are_disconnects_that_end_the_session() {
        let outdated = Event::ClientOutdated(ClientOutdated::builder().build());
        let refused = Event::ConnectFailure(
            ConnectFailure::builder()
                .reason(ConnectFailureReason::BadUserAgent)
                .message("bad ua".to_owned())
                .build(),
        );
        for event in [&outdated, &refused] {
            match map_event(event, None) {
                Some(GatewayEvent::Disconnected { reason }) => {
                    assert!(reason.ends_with("not reconnecting"), "{reason}")
                }
                other => panic!("expected Disconnected, got {other:?}"),
            }
            assert!(ends_session(event));
        }
        match map_event(&refused, None) {
            Some(GatewayEvent::Disconnected { reason }) => {
                assert!(
                    reason.contains("409") && reason.contains("bad ua"),
                    "{reason}"
                )
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }

    #[test]
    fn a_replaced_stream_is_replaced_and_ends_the_session() {
        let event = Event::StreamReplaced(StreamReplaced::builder().build());
        assert_eq!(map_event(&event, None), Some(GatewayEvent::Replaced));
        assert!(ends_session(&event));
    }

    fn ban(code: TempBanReason, seconds: i64, message: Option<&str>) -> Event {
        Event::TemporaryBan(
            TemporaryBan::builder()
                .code(code)
                .expire(whatsapp_rust::chrono::Duration::seconds(seconds))
                .maybe_message(message.map(str::to_owned))
                .build(),
        )
    }

    #[test]
    fn a_temporary_ban_is_banned_with_its_reason_and_length_and_ends_the_session() {
        let event = ban(
            TempBanReason::SentToTooManyPeople,
            3600,
            Some("Your account is temporarily banned"),
        );
        match map_event(&event, None) {
            Some(GatewayEvent::Banned { reason, expires_in }) => {
                assert_eq!(expires_in, Some(Duration::from_secs(3600)));
                assert!(reason.starts_with("101: "), "{reason}");
                assert!(
                    reason.contains("people who don't have you in their address books"),
                    "{reason}"
                );
                assert!(
                    reason.ends_with("(Your account is temporarily banned)"),
                    "{reason}"
                );
            }
            other => panic!("expected Banned, got {other:?}"),
        }
        assert!(ends_session(&event));

        match map_event(&ban(TempBanReason::BlockedByUsers, 86_400, None), None) {
            Some(GatewayEvent::Banned { reason, expires_in }) => {
                assert_eq!(reason, "102: too many people blocked you");
                assert_eq!(expires_in, Some(Duration::from_secs(86_400)));
            }
            other => panic!("expected Banned, got {other:?}"),
        }
    }

    #[test]
    fn a_ban_without_a_length_has_no_expiry() {
        for seconds in [0, -5] {
            match map_event(&ban(TempBanReason::Unknown(999), seconds, Some("  ")), None) {
                Some(GatewayEvent::Banned { reason, expires_in }) => {
                    assert_eq!(expires_in, None, "{seconds} s");
                    assert_eq!(
                        reason, "999: you may have violated the terms of service (unknown error)",
                        "the code's wording, and a blank message left out"
                    );
                }
                other => panic!("expected Banned, got {other:?}"),
            }
        }
    }

    // ---- incoming messages ----

    fn inbound(source: MessageSource, message: wa::Message) -> InboundMessage {
        InboundMessage::builder()
            .message(std::sync::Arc::new(message))
            .info(std::sync::Arc::new(MessageInfo {
                source,
                ..Default::default()
            }))
            .build()
    }

    fn text(body: &str) -> wa::Message {
        wa::Message {
            conversation: Some(body.to_owned()),
            ..Default::default()
        }
    }

    fn batch(messages: Vec<InboundMessage>) -> MessageBatch {
        MessageBatch::builder()
            .messages(messages.into())
            .origin(BatchOrigin::Live)
            .build()
    }

    fn direct(from: &str) -> MessageSource {
        MessageSource {
            chat: jid(from),
            sender: jid(from),
            ..Default::default()
        }
    }

    #[test]
    fn a_clients_text_in_a_direct_chat_is_incoming_with_its_number() {
        let events = incoming_texts(&batch(vec![inbound(
            direct("79161234567@s.whatsapp.net"),
            text(" СТОП "),
        )]));
        assert_eq!(
            events,
            vec![GatewayEvent::Incoming {
                from: phone("79161234567"),
                text: "СТОП".into()
            }]
        );
    }

    #[test]
    fn a_sender_addressed_by_lid_is_known_by_its_alternative_number() {
        let source = MessageSource {
            chat: jid("123456789012345@lid"),
            sender: jid("123456789012345@lid"),
            sender_alt: Some(jid("79161234567@s.whatsapp.net")),
            ..Default::default()
        };
        let events = incoming_texts(&batch(vec![inbound(source, text("STOP"))]));
        assert_eq!(
            events,
            vec![GatewayEvent::Incoming {
                from: phone("79161234567"),
                text: "STOP".into()
            }]
        );
        // Without a number to answer, nothing.
        let anonymous = MessageSource {
            chat: jid("123456789012345@lid"),
            sender: jid("123456789012345@lid"),
            ..Default::default()
        };
        assert!(incoming_texts(&batch(vec![inbound(anonymous, text("STOP"))])).is_empty());
    }

    #[test]
    fn our_own_group_broadcast_and_non_text_messages_are_not_incoming() {
        let own = MessageSource {
            is_from_me: true,
            ..direct("79161234567@s.whatsapp.net")
        };
        let group = MessageSource {
            chat: jid("120363000000000000@g.us"),
            sender: jid("79161234567@s.whatsapp.net"),
            is_group: true,
            ..Default::default()
        };
        let status = MessageSource {
            chat: jid("status@broadcast"),
            sender: jid("79161234567@s.whatsapp.net"),
            ..Default::default()
        };
        let events = incoming_texts(&batch(vec![
            inbound(own, text("STOP")),
            inbound(group, text("STOP")),
            inbound(status, text("STOP")),
            inbound(direct("79161234567@s.whatsapp.net"), wa::Message::default()),
            inbound(direct("79161234567@s.whatsapp.net"), text("   ")),
        ]));
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn an_extended_text_counts_as_text() {
        let message = wa::Message {
            extended_text_message: Some(wa::message::ExtendedTextMessage {
                text: Some("stop".into()),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let events = incoming_texts(&batch(vec![inbound(
            direct("79161234567@s.whatsapp.net"),
            message,
        )]));
        assert_eq!(events.len(), 1);
    }

    // ---- receipts ----

    /// A receipt as the crate builds it for a one-to-one chat: `from` is both chat and sender.
    fn receipt_from(kind: ReceiptType, from: &str, ids: &[&str]) -> Receipt {
        Receipt::builder()
            .source(MessageSource {
                chat: jid(from),
                sender: jid(from),
                ..Default::default()
            })
            .message_ids(ids.iter().map(|id| (*id).to_owned()).collect())
            .timestamp(whatsapp_rust::chrono::Utc::now())
            .r#type(kind)
            .offline(false)
            .build()
    }

    fn receipt(kind: ReceiptType, from: &str, ids: &[&str]) -> Event {
        Event::Receipt(receipt_from(kind, from, ids))
    }

    fn receipt_event(id: &str, status: DeliveryStatus) -> GatewayEvent {
        GatewayEvent::Receipt {
            message_id: id.to_owned(),
            status,
        }
    }

    const RECIPIENT: &str = "79990001122@s.whatsapp.net";

    #[tokio::test]
    async fn receipts_for_our_messages_are_delivered_then_read_once_each() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forwarder = Forwarder::new(salon(7), tx);
        forwarder.track_sent("3EB0AAAA");
        forwarder.track_sent("3EB0BBBB");

        forwarder.forward(&receipt(ReceiptType::Delivered, RECIPIENT, &["3EB0AAAA"]));
        // The recipient's second device delivers too: nothing new.
        forwarder.forward(&receipt(
            ReceiptType::Delivered,
            "79990001122:3@s.whatsapp.net",
            &["3EB0AAAA"],
        ));
        forwarder.forward(&receipt(ReceiptType::Read, RECIPIENT, &["3EB0AAAA"]));
        // A delivery that comes after the read does not move the status back.
        forwarder.forward(&receipt(ReceiptType::Delivered, RECIPIENT, &["3EB0AAAA"]));
        forwarder.forward(&receipt(ReceiptType::Read, RECIPIENT, &["3EB0AAAA"]));
        // Read straight away, with no delivery receipt first (and from a LID chat).
        forwarder.forward(&receipt(
            ReceiptType::Read,
            "123456789012345@lid",
            &["3EB0BBBB"],
        ));
        forwarder.mute();

        assert_eq!(
            rx.recv().await,
            Some(receipt_event("3EB0AAAA", DeliveryStatus::Delivered))
        );
        assert_eq!(
            rx.recv().await,
            Some(receipt_event("3EB0AAAA", DeliveryStatus::Read))
        );
        assert_eq!(
            rx.recv().await,
            Some(receipt_event("3EB0BBBB", DeliveryStatus::Read))
        );
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_receipt_naming_several_messages_gives_one_event_per_message_of_ours() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forwarder = Forwarder::new(salon(7), tx);
        forwarder.track_sent("3EB0AAAA");
        forwarder.track_sent("3EB0BBBB");
        forwarder.forward(&receipt(
            ReceiptType::Read,
            RECIPIENT,
            &["3EB0AAAA", "3EB0NOTOURS", "3EB0BBBB"],
        ));
        forwarder.mute();
        assert_eq!(
            rx.recv().await,
            Some(receipt_event("3EB0AAAA", DeliveryStatus::Read))
        );
        assert_eq!(
            rx.recv().await,
            Some(receipt_event("3EB0BBBB", DeliveryStatus::Read))
        );
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn receipts_for_other_messages_or_of_other_kinds_give_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forwarder = Forwarder::new(salon(7), tx);
        forwarder.track_sent("3EB0AAAA");
        // Not a message this session sent.
        forwarder.forward(&receipt(ReceiptType::Delivered, RECIPIENT, &["3EB0CCCC"]));
        forwarder.forward(&receipt(ReceiptType::Read, RECIPIENT, &["3EB0CCCC"]));
        // Ours, but not the recipient's delivery or read.
        for kind in [
            ReceiptType::Sender,
            ReceiptType::ReadSelf,
            ReceiptType::PlayedSelf,
            ReceiptType::Played,
            ReceiptType::Retry,
            ReceiptType::ServerError,
            ReceiptType::Inactive,
            ReceiptType::Sent,
            ReceiptType::Other("view".to_owned()),
        ] {
            forwarder.forward(&receipt(kind, RECIPIENT, &["3EB0AAAA"]));
        }
        // Still followed: the recipient's delivery is the first event out.
        forwarder.forward(&receipt(ReceiptType::Delivered, RECIPIENT, &["3EB0AAAA"]));
        forwarder.mute();
        assert_eq!(
            rx.recv().await,
            Some(receipt_event("3EB0AAAA", DeliveryStatus::Delivered))
        );
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn receipts_from_our_own_account_are_not_the_recipients() {
        let own = [
            jid("79990009900:0@s.whatsapp.net"),
            jid("123456789012345:0@lid"),
        ];
        let mut sent = SentMessages::new(8);
        sent.track("3EB0AAAA");
        // Our phone, and another of our devices by its LID.
        let from_phone = receipt_from(
            ReceiptType::Delivered,
            "79990009900:0@s.whatsapp.net",
            &["3EB0AAAA"],
        );
        let from_lid = receipt_from(ReceiptType::Read, "123456789012345:2@lid", &["3EB0AAAA"]);
        assert_eq!(receipt_updates(&from_phone, &own, &mut sent), vec![]);
        assert_eq!(receipt_updates(&from_lid, &own, &mut sent), vec![]);

        let from_recipient = receipt_from(ReceiptType::Delivered, RECIPIENT, &["3EB0AAAA"]);
        assert_eq!(
            receipt_updates(&from_recipient, &own, &mut sent),
            vec![receipt_event("3EB0AAAA", DeliveryStatus::Delivered)]
        );
    }

    #[test]
    fn the_sent_messages_forget_the_oldest_past_their_capacity_and_failed_sends() {
        let mut sent = SentMessages::new(2);
        sent.track("a");
        sent.track("b");
        sent.track("b");
        sent.track("c");
        assert!(
            !sent.advance("a", DeliveryStatus::Delivered),
            "a was forgotten"
        );
        assert!(sent.advance("b", DeliveryStatus::Delivered));
        assert!(sent.advance("c", DeliveryStatus::Read));
        assert!(!sent.advance("c", DeliveryStatus::Delivered));
        sent.forget("b");
        assert!(!sent.advance("b", DeliveryStatus::Read), "b was forgotten");
        sent.track("d");
        sent.track("e");
        assert!(!sent.advance("c", DeliveryStatus::Read), "c was the oldest");
        assert!(sent.advance("d", DeliveryStatus::Delivered));
        assert!(sent.advance("e", DeliveryStatus::Delivered));
        assert_eq!(sent.status.len(), 2);
        assert_eq!(sent.order.len(), 2);
    }

    // ---- sending ----

    #[test]
    fn a_text_goes_to_the_phone_numbers_chat() {
        assert_eq!(
            recipient_jid(&phone("+7 999 000-11-22")).to_string(),
            "79990001122@s.whatsapp.net"
        );
    }

    #[test]
    fn send_failures_of_the_connection_are_unavailable_and_the_rest_refused() {
        let unavailable = [
            SendError::NotLoggedIn,
            SendError::Client(ClientError::NotConnected),
            SendError::Iq(IqError::Timeout),
            SendError::Iq(IqError::NotConnected),
        ];
        for error in unavailable {
            let shown = error.to_string();
            assert!(
                matches!(send_error(error), GatewayError::Unavailable(_)),
                "{shown}"
            );
        }
        let refused = [
            SendError::InvalidRequest("bad recipient".to_owned()),
            SendError::Iq(IqError::ServerError {
                code: 406,
                text: "not-acceptable".to_owned(),
                error_type: None,
                backoff: None,
            }),
            SendError::Internal(whatsapp_rust::anyhow::anyhow!("no session")),
        ];
        for error in refused {
            let shown = error.to_string();
            match send_error(error) {
                GatewayError::SendRefused(reason) => assert_eq!(reason, shown),
                other => panic!("expected SendRefused for {shown}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_retried_connect_failure_does_not_end_the_session() {
        let event = Event::ConnectFailure(
            ConnectFailure::builder()
                .reason(ConnectFailureReason::ServiceUnavailable)
                .build(),
        );
        match map_event(&event, None) {
            Some(GatewayEvent::Disconnected { reason }) => {
                assert!(reason.ends_with("; reconnecting"), "{reason}")
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert!(!ends_session(&event));
    }

    #[test]
    fn events_the_port_has_no_word_for_are_dropped() {
        let refresh =
            Event::PairingCodeRefresh(PairingCodeRefresh::builder().force_manual(false).build());
        let synced = Event::OfflineSyncCompleted(OfflineSyncCompleted::builder().count(3).build());
        assert_eq!(map_event(&refresh, None), None);
        assert_eq!(map_event(&synced, None), None);
    }

    #[tokio::test]
    async fn the_forwarder_sends_in_order_until_muted_then_closes_the_channel() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forwarder = Forwarder::new(salon(7), tx);
        forwarder.forward(&Event::PairingQrCodesExhausted(
            PairingQrCodesExhausted::builder()
                .disconnected(false)
                .build(),
        ));
        forwarder.forward(&Event::Connected(Connected::builder().build()));
        assert!(!forwarder.ended.load(Ordering::SeqCst));
        forwarder.forward(&Event::StreamReplaced(StreamReplaced::builder().build()));
        assert!(forwarder.ended.load(Ordering::SeqCst));
        forwarder.mute();
        forwarder.forward(&Event::Connected(Connected::builder().build()));

        assert_eq!(rx.recv().await, Some(GatewayEvent::QrExhausted));
        assert_eq!(
            rx.recv().await,
            Some(GatewayEvent::Connected { phone: None })
        );
        assert_eq!(rx.recv().await, Some(GatewayEvent::Replaced));
        assert_eq!(
            rx.recv().await,
            None,
            "muted forwarder must close the channel"
        );
    }

    // ---- the credential store ----

    use crate::linking::sealed_backend::testing::{lease_for, test_store};
    use whatsapp_rust::store::traits::DeviceStore;

    /// Writes the salon's device the way the crate does on a first open, and — when `pn` is
    /// given — with the JID that pairing stores.
    async fn write_device(store: &Store, salon: SalonId, pn: Option<&str>) {
        let backend = SealedBackend::new(store.clone(), lease_for(store, salon).await);
        backend.create().await.expect("device row");
        if let Some(pn) = pn {
            let mut device = backend
                .load()
                .await
                .expect("device loads")
                .expect("device exists");
            device.pn = Some(jid(pn));
            backend.save(&device).await.expect("device saves");
        }
    }

    async fn stored_rows(store: &Store, salon: SalonId) -> i64 {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        crate::db::entities::whatsapp_credentials::Entity::find()
            .filter(crate::db::entities::whatsapp_credentials::Column::SalonId.eq(salon.get()))
            .count(store.connection())
            .await
            .expect("count") as i64
    }

    #[tokio::test]
    async fn nothing_stored_is_no_credentials_and_checking_writes_nothing() {
        let store = test_store().await;
        let gateway = WebGateway::new(store.clone());
        assert!(!gateway.has_credentials(salon(1)).await.expect("check"));
        assert_eq!(
            stored_rows(&store, salon(1)).await,
            0,
            "checking must not write"
        );
    }

    #[tokio::test]
    async fn an_unpaired_device_is_no_credentials_and_a_paired_one_is() {
        let store = test_store().await;
        let gateway = WebGateway::new(store.clone());
        write_device(&store, salon(2), None).await;
        assert!(stored_rows(&store, salon(2)).await > 0);
        assert!(!gateway.has_credentials(salon(2)).await.expect("check"));

        write_device(&store, salon(3), Some("79990009900:35@s.whatsapp.net")).await;
        assert!(gateway.has_credentials(salon(3)).await.expect("check"));
        assert!(
            !gateway.has_credentials(salon(2)).await.expect("check"),
            "salons have separate stores"
        );
    }

    #[tokio::test]
    async fn purge_deletes_the_credentials_of_that_salon_only() {
        let store = test_store().await;
        let gateway = WebGateway::new(store.clone());
        write_device(&store, salon(4), Some("79990009900:35@s.whatsapp.net")).await;
        write_device(&store, salon(5), Some("79990009901:3@s.whatsapp.net")).await;

        gateway.purge_credentials(salon(4)).await.expect("purge");
        assert_eq!(stored_rows(&store, salon(4)).await, 0);
        assert!(!gateway.has_credentials(salon(4)).await.expect("check"));
        assert!(gateway.has_credentials(salon(5)).await.expect("check"));

        // Nothing left to delete is fine.
        gateway
            .purge_credentials(salon(4))
            .await
            .expect("purge again");
    }

    // ---- session lifecycle, offline ----

    /// Delegates to a shared factory, so the gateway can hold it as `Arc<dyn …>`.
    pub(super) struct SharedTransportFactory(pub(super) Arc<dyn TransportFactory>);

    #[async_trait::async_trait]
    impl TransportFactory for SharedTransportFactory {
        async fn create_transport(
            &self,
        ) -> Result<
            (
                Arc<dyn Transport>,
                whatsapp_rust::async_channel::Receiver<TransportEvent>,
            ),
            whatsapp_rust::anyhow::Error,
        > {
            self.0.create_transport().await
        }
    }

    /// A network that is not there: every connect fails at once, nothing leaves the machine.
    struct NoNetwork;

    #[async_trait::async_trait]
    impl TransportFactory for NoNetwork {
        async fn create_transport(
            &self,
        ) -> Result<
            (
                Arc<dyn Transport>,
                whatsapp_rust::async_channel::Receiver<TransportEvent>,
            ),
            whatsapp_rust::anyhow::Error,
        > {
            Err(whatsapp_rust::anyhow::anyhow!("no network in tests"))
        }
    }

    async fn offline_gateway() -> (WebGateway, Store) {
        let store = test_store().await;
        let mut gateway = WebGateway::new(store.clone());
        gateway.test_transport = Some(Arc::new(NoNetwork));
        (gateway, store)
    }

    /// The client writes its fresh device while it starts; wait for the rows.
    async fn wait_for_rows(store: &Store, salon: SalonId) {
        for _ in 0..200 {
            if stored_rows(store, salon).await > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the session stored no device");
    }

    #[tokio::test]
    async fn an_offline_session_opens_a_store_and_closes_quietly() {
        let (gateway, store) = offline_gateway().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let lease = lease_for(&store, salon(6)).await;
        let session = gateway.open(&lease, tx).await.expect("open");

        // The crate writes a fresh, unpaired device right away: rows, but no credentials.
        wait_for_rows(&store, salon(6)).await;
        assert!(!gateway.has_credentials(salon(6)).await.expect("check"));

        tokio::time::timeout(Duration::from_secs(20), session.close())
            .await
            .expect("close returns in time");
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("channel closes"),
            None,
            "no events after close, and the channel closes"
        );
        assert!(matches!(
            session.request_pair_code(&phone("79990009900")).await,
            Err(GatewayError::Closed)
        ));
        assert!(matches!(session.logout().await, Err(GatewayError::Closed)));
        assert!(matches!(
            session.send_text(&phone("79990001122"), "hello").await,
            Err(GatewayError::Closed)
        ));
        assert!(matches!(session.probe().await, Err(GatewayError::Closed)));
        assert!(!gateway.has_credentials(salon(6)).await.expect("check"));
    }

    #[tokio::test]
    async fn an_unlinked_or_unconnected_session_neither_sends_nor_answers_a_probe() {
        let (gateway, store) = offline_gateway().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let lease = lease_for(&store, salon(11)).await;
        let session = gateway.open(&lease, tx).await.expect("open");
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            session.send_text(&phone("79990001122"), "hello"),
        )
        .await
        .expect("an unlinked session refuses at once");
        match sent {
            Err(GatewayError::Unavailable(reason)) => {
                assert!(reason.contains("not linked"), "{reason}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let probed = tokio::time::timeout(Duration::from_secs(5), session.probe())
            .await
            .expect("no socket: the probe fails at once");
        assert!(
            matches!(probed, Err(GatewayError::Unavailable(_))),
            "{probed:?}"
        );
        session.close().await;
    }

    #[tokio::test]
    async fn a_linked_session_that_cannot_connect_gives_up_sending_after_the_wait() {
        let (gateway, store) = offline_gateway().await;
        write_device(&store, salon(12), Some("79990009900:35@s.whatsapp.net")).await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let lease = lease_for(&store, salon(12)).await;
        let session = gateway.open(&lease, tx).await.expect("open");
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(
            SEND_CONNECT_WAIT + Duration::from_secs(10),
            session.send_text(&phone("79990001122"), "hello"),
        )
        .await
        .expect("send_text gives up after its wait");
        match sent {
            Err(GatewayError::Unavailable(reason)) => {
                assert!(reason.contains("not connected"), "{reason}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(
            started.elapsed() >= SEND_CONNECT_WAIT,
            "it waited for the connection first"
        );
        session.close().await;
    }

    #[tokio::test]
    async fn opening_again_or_purging_closes_the_running_session_first() {
        let (gateway, store) = offline_gateway().await;
        let lease = lease_for(&store, salon(8)).await;
        let (first_tx, mut first_rx) = mpsc::unbounded_channel();
        let first = gateway.open(&lease, first_tx).await.expect("open");
        let (second_tx, mut second_rx) = mpsc::unbounded_channel();
        let second = tokio::time::timeout(Duration::from_secs(20), gateway.open(&lease, second_tx))
            .await
            .expect("reopen in time")
            .expect("reopen");

        assert_eq!(first_rx.recv().await, None, "the first session was closed");
        assert!(matches!(
            first.request_pair_code(&phone("79990009900")).await,
            Err(GatewayError::Closed)
        ));

        tokio::time::timeout(Duration::from_secs(20), gateway.purge_credentials(salon(8)))
            .await
            .expect("purge in time")
            .expect("purge");
        assert_eq!(
            second_rx.recv().await,
            None,
            "purge closed the second session"
        );
        assert_eq!(stored_rows(&store, salon(8)).await, 0);
        second.close().await;
    }

    #[tokio::test]
    async fn a_client_that_stops_by_itself_is_reported_once_and_the_channel_closes() {
        let (gateway, store) = offline_gateway().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let lease = lease_for(&store, salon(10)).await;
        let session = gateway.open(&lease, tx).await.expect("open");
        let client = gateway
            .live_session(salon(10))
            .expect("session is live")
            .client
            .clone();
        // What the crate does itself after e.g. a "replaced" conflict: its run loop ends.
        client.disconnect().await;

        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("reported in time");
        match event {
            Some(GatewayEvent::Disconnected { reason }) => {
                assert!(reason.contains("not reconnecting"), "{reason}")
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert_eq!(rx.recv().await, None, "then the channel closes");
        assert!(gateway.live_session(salon(10)).is_none());
        assert!(matches!(
            session.request_pair_code(&phone("79990009900")).await,
            Err(GatewayError::Closed)
        ));
        session.close().await;
    }

    #[tokio::test]
    async fn a_dropped_session_stops_its_client() {
        let (gateway, store) = offline_gateway().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let lease = lease_for(&store, salon(9)).await;
        let session = gateway.open(&lease, tx).await.expect("open");
        drop(session);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("channel closes"),
            None
        );
        // The next open waits for the old client instead of sharing the store with it.
        let (tx, _rx) = mpsc::unbounded_channel();
        let again = tokio::time::timeout(Duration::from_secs(20), gateway.open(&lease, tx))
            .await
            .expect("open in time")
            .expect("open");
        again.close().await;
    }
}
