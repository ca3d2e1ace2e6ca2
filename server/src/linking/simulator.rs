//! The WhatsApp simulator: the same port as the real backend, with WhatsApp's lifecycle and timing
//! (rotating QR codes that run out, pair codes, link, logout from the phone, drops, a session
//! taken over elsewhere, a temporary ban, a socket gone silent, texts with their receipts), for
//! dev, demo and tests. Each QR encodes a URL of ours (`/dev/phone?…`) that opens a simulated phone, so a
//! real phone camera or a test can "scan" it. Credentials live sealed in the database
//! (`store::credentials`, namespace `simulator`), written under the session's lease like the real
//! backend's, so a restart or another instance reconnects without a new scan.

use super::gateway::{GatewayError, GatewayEvent, GatewaySession, WhatsAppGateway};
use crate::config::SimulatorTiming;
use crate::store::{SessionLease, Store, StoreError, StoredCredentials};
use app::domain::{PhoneNumber, SalonId};
use app::status::DeliveryStatus;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

const BACKEND: &str = "simulator";
const PAIR_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTVWXYZ23456789";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PhoneError {
    #[error(
        "Этот QR-код устарел или уже использован. Отсканируйте код, который сейчас на экране."
    )]
    UnknownQr,
    #[error("Код привязки не найден или истёк. Запросите новый код на странице подключения.")]
    UnknownPairCode,
    #[error("К этому салону не привязано устройство.")]
    NotLinked,
    #[error("Не удалось сохранить привязку: {0}")]
    Store(String),
    #[error("У этого филиала нет открытого соединения с WhatsApp.")]
    NoConnection,
}

/// A text a simulated phone received from a salon's WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceivedText {
    pub message_id: String,
    pub salon: SalonId,
    /// The salon's linked number it came from.
    pub from: Option<PhoneNumber>,
    pub text: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub read: bool,
}

/// How many texts a simulated phone keeps (the newest).
const INBOX_LIMIT: usize = 100;

struct Device {
    generation: u64,
    /// The lease the session was opened under: the device's credential writes carry it.
    lease: SessionLease,
    events: mpsc::UnboundedSender<GatewayEvent>,
    qr_ref: Option<String>,
    pair: Option<(String, PhoneNumber)>,
    rotation: Option<AbortHandle>,
    linked: bool,
    phone: Option<PhoneNumber>,
    /// The socket went silent: no keep-alive answers, nothing delivered.
    silent: bool,
}

struct Inner {
    store: Store,
    base_url: String,
    timing: SimulatorTiming,
    devices: Mutex<HashMap<SalonId, Device>>,
    generations: AtomicU64,
    unavailable: AtomicBool,
    /// Texts received, by the receiving phone's number.
    inboxes: Mutex<HashMap<PhoneNumber, Vec<ReceivedText>>>,
    /// Where each sent text's receipts go: message id → (salon, session generation).
    sent: Mutex<HashMap<String, (SalonId, u64)>>,
}

#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl Simulator {
    pub fn new(store: Store, base_url: &str, timing: SimulatorTiming) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                base_url: base_url.trim_end_matches('/').to_owned(),
                timing,
                devices: Mutex::default(),
                generations: AtomicU64::new(1),
                unavailable: AtomicBool::new(false),
                inboxes: Mutex::default(),
                sent: Mutex::default(),
            }),
        }
    }

    /// Makes every `open` fail (WhatsApp unreachable), for the reconnect and circuit-breaker paths.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.inner.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The phone scanned the QR code with this reference and the person linked `phone`.
    pub async fn scan(&self, reference: &str, phone: PhoneNumber) -> Result<SalonId, PhoneError> {
        let salon = self
            .inner
            .devices()
            .iter()
            .find(|(_, d)| d.qr_ref.as_deref() == Some(reference))
            .map(|(salon, _)| *salon)
            .ok_or(PhoneError::UnknownQr)?;
        self.link(salon, phone).await?;
        Ok(salon)
    }

    /// The person typed a pair code on the phone it was requested for.
    pub async fn enter_pair_code(&self, code: &str) -> Result<SalonId, PhoneError> {
        let wanted = normalize_code(code);
        let (salon, phone) = self
            .inner
            .devices()
            .iter()
            .find_map(|(salon, d)| {
                d.pair
                    .as_ref()
                    .filter(|(c, _)| normalize_code(c) == wanted)
                    .map(|(_, phone)| (*salon, phone.clone()))
            })
            .ok_or(PhoneError::UnknownPairCode)?;
        self.link(salon, phone).await?;
        Ok(salon)
    }

    /// The phone removed this linked device (WhatsApp → Linked devices → Log out).
    pub async fn unlink_from_phone(&self, salon: SalonId) -> Result<(), PhoneError> {
        let (sender, lease) = {
            let mut devices = self.inner.devices();
            let device = devices
                .get_mut(&salon)
                .filter(|d| d.linked)
                .ok_or(PhoneError::NotLinked)?;
            device.linked = false;
            (device.events.clone(), device.lease.clone())
        };
        match self.inner.clear(&lease).await {
            Ok(()) => {}
            // The connection belongs to an owner whose lease another instance took: its store
            // write is refused, but WhatsApp still tells the client connected (the stale owner).
            Err(StoreError::Fenced(_)) => {}
            Err(e) => return Err(PhoneError::Store(e.to_string())),
        }
        let _ = sender.send(GatewayEvent::LoggedOut);
        Ok(())
    }

    /// The connection drops (network), for the reconnect path.
    pub fn drop_connection(&self, salon: SalonId) -> bool {
        self.inner
            .devices()
            .get(&salon)
            .map(|d| {
                d.events
                    .send(GatewayEvent::Disconnected {
                        reason: "simulated network drop".into(),
                    })
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// Another WhatsApp Web client connected with this device's credentials: WhatsApp closes our
    /// stream (`StreamReplaced`) and the connection ends.
    pub fn replace_elsewhere(&self, salon: SalonId) -> Result<(), PhoneError> {
        self.end_with(salon, GatewayEvent::Replaced)
    }

    /// WhatsApp bans the account for `expires_in` (or without saying for how long).
    pub fn ban(&self, salon: SalonId, expires_in: Option<Duration>) -> Result<(), PhoneError> {
        self.end_with(
            salon,
            GatewayEvent::Banned {
                reason: "simulated: you sent too many messages to people who don't have you in their address books".into(),
                expires_in,
            },
        )
    }

    /// The socket goes silent: it stays "open" but answers no keep-alive and delivers nothing,
    /// as a connection dead behind a NAT does. A new connection (`open`) is healthy again.
    pub fn silence(&self, salon: SalonId) -> Result<(), PhoneError> {
        let mut devices = self.inner.devices();
        let device = devices.get_mut(&salon).ok_or(PhoneError::NoConnection)?;
        device.silent = true;
        Ok(())
    }

    /// The texts the phone with this number received, newest last; reading them sends WhatsApp's
    /// read receipts back to the senders.
    pub fn read_inbox(&self, phone: &PhoneNumber) -> Vec<ReceivedText> {
        let (texts, newly_read) = {
            let mut inboxes = self.inner.inboxes();
            let Some(inbox) = inboxes.get_mut(phone) else {
                return Vec::new();
            };
            let newly_read: Vec<String> = inbox
                .iter_mut()
                .filter(|t| !t.read)
                .map(|t| {
                    t.read = true;
                    t.message_id.clone()
                })
                .collect();
            (inbox.clone(), newly_read)
        };
        for id in newly_read {
            self.inner.receipt(&id, DeliveryStatus::Read);
        }
        texts
    }

    /// The phone with number `from` writes `text` to the salon's linked WhatsApp (a client
    /// answering a booking message, «СТОП» for instance).
    pub fn reply(&self, salon: SalonId, from: PhoneNumber, text: &str) -> Result<(), PhoneError> {
        let devices = self.inner.devices();
        let device = devices
            .get(&salon)
            .filter(|d| d.linked && !d.silent)
            .ok_or(PhoneError::NoConnection)?;
        let _ = device.events.send(GatewayEvent::Incoming {
            from,
            text: text.to_owned(),
        });
        Ok(())
    }

    /// Ends the salon's open connection with `event` (WhatsApp closed the stream).
    fn end_with(&self, salon: SalonId, event: GatewayEvent) -> Result<(), PhoneError> {
        let device = self
            .inner
            .devices()
            .remove(&salon)
            .ok_or(PhoneError::NoConnection)?;
        if let Some(rotation) = device.rotation {
            rotation.abort();
        }
        let _ = device.events.send(event);
        Ok(())
    }

    /// How many salons have an open simulated connection.
    pub fn open_connections(&self) -> usize {
        self.inner.devices().len()
    }

    /// Whether the salon's open connection is one that went silent.
    pub fn is_silent(&self, salon: SalonId) -> bool {
        self.inner.devices().get(&salon).is_some_and(|d| d.silent)
    }

    pub fn is_open(&self, salon: SalonId) -> bool {
        self.inner.devices().contains_key(&salon)
    }

    async fn link(&self, salon: SalonId, phone: PhoneNumber) -> Result<(), PhoneError> {
        let credentials = format!("sim-{:032x}", rand::thread_rng().gen::<u128>());
        let lease = self
            .inner
            .devices()
            .get(&salon)
            .map(|d| d.lease.clone())
            .ok_or(PhoneError::UnknownQr)?;
        self.inner
            .store_credentials(&lease, &phone, &credentials)
            .await
            .map_err(|e| PhoneError::Store(e.to_string()))?;
        let mut devices = self.inner.devices();
        let device = devices.get_mut(&salon).ok_or(PhoneError::UnknownQr)?;
        if let Some(rotation) = device.rotation.take() {
            rotation.abort();
        }
        device.qr_ref = None;
        device.pair = None;
        device.linked = true;
        device.phone = Some(phone.clone());
        let _ = device.events.send(GatewayEvent::Linked { phone });
        Ok(())
    }
}

impl Inner {
    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<SalonId, Device>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn inboxes(&self) -> std::sync::MutexGuard<'_, HashMap<PhoneNumber, Vec<ReceivedText>>> {
        self.inboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a receipt for a text to the session that sent it, if it is still open.
    fn receipt(&self, message_id: &str, status: DeliveryStatus) {
        let Some((salon, generation)) = self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(message_id)
            .copied()
        else {
            return;
        };
        if let Some(device) = self
            .devices()
            .get(&salon)
            .filter(|d| d.generation == generation && !d.silent)
        {
            let _ = device.events.send(GatewayEvent::Receipt {
                message_id: message_id.to_owned(),
                status,
            });
        }
    }

    async fn stored(&self, salon: SalonId) -> Result<Option<StoredCredentials>, StoreError> {
        self.store.device_credentials(salon, BACKEND).await
    }

    /// Fenced by the session's lease: refused once another instance took the session over.
    async fn store_credentials(
        &self,
        lease: &SessionLease,
        phone: &PhoneNumber,
        credentials: &str,
    ) -> Result<(), StoreError> {
        self.store
            .save_device_credentials(lease, BACKEND, phone, credentials)
            .await
    }

    /// The device was logged out: its credentials go, fenced like [`Self::store_credentials`].
    async fn clear(&self, lease: &SessionLease) -> Result<(), StoreError> {
        self.store.clear_device_credentials(lease, BACKEND).await
    }

    /// Everything stored for the salon (an uninstall): not an owner's write, not fenced.
    async fn purge(&self, salon: SalonId) -> Result<(), StoreError> {
        self.store.purge_credentials(salon).await.map(|_| ())
    }

    fn close(&self, salon: SalonId, generation: u64) {
        let mut devices = self.devices();
        if devices
            .get(&salon)
            .is_some_and(|d| d.generation == generation)
        {
            if let Some(device) = devices.remove(&salon) {
                if let Some(rotation) = device.rotation {
                    rotation.abort();
                }
            }
        }
    }
}

fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn random_reference() -> String {
    format!("{:024x}", rand::thread_rng().gen::<u128>() >> 32)
}

fn random_pair_code() -> String {
    let mut rng = rand::thread_rng();
    let chars: String = (0..8)
        .map(|_| PAIR_CODE_ALPHABET[rng.gen_range(0..PAIR_CODE_ALPHABET.len())] as char)
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

async fn rotate_qr_codes(inner: Arc<Inner>, salon: SalonId, generation: u64) {
    let timing = inner.timing.clone();
    for index in 0..timing.qr_count {
        let reference = random_reference();
        let ttl = if index == 0 {
            timing.first_qr_ttl
        } else {
            timing.next_qr_ttl
        };
        {
            let mut devices = inner.devices();
            let Some(device) = devices
                .get_mut(&salon)
                .filter(|d| d.generation == generation)
            else {
                return;
            };
            device.qr_ref = Some(reference.clone());
            let code = format!(
                "{}/dev/phone?salon={}&ref={}",
                inner.base_url, salon, reference
            );
            if device.events.send(GatewayEvent::Qr { code, ttl }).is_err() {
                return;
            }
        }
        tokio::time::sleep(ttl).await;
    }
    let mut devices = inner.devices();
    if let Some(device) = devices
        .get_mut(&salon)
        .filter(|d| d.generation == generation)
    {
        device.qr_ref = None;
        let _ = device.events.send(GatewayEvent::QrExhausted);
    }
}

#[async_trait::async_trait]
impl WhatsAppGateway for Simulator {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn has_credentials(&self, salon: SalonId) -> Result<bool, GatewayError> {
        self.inner
            .stored(salon)
            .await
            .map(|d| d.is_some())
            .map_err(|e| GatewayError::Store(e.to_string()))
    }

    async fn open(
        &self,
        lease: &SessionLease,
        events: mpsc::UnboundedSender<GatewayEvent>,
    ) -> Result<Box<dyn GatewaySession>, GatewayError> {
        let salon = lease.salon;
        if self.inner.unavailable.load(Ordering::SeqCst) {
            return Err(GatewayError::Unavailable(
                "simulated: WhatsApp is unreachable".into(),
            ));
        }
        let stored = self
            .inner
            .stored(salon)
            .await
            .map_err(|e| GatewayError::Store(e.to_string()))?;
        let generation = self.inner.generations.fetch_add(1, Ordering::SeqCst);
        let linked = stored.is_some();
        {
            let mut devices = self.inner.devices();
            if let Some(old) = devices.remove(&salon) {
                if let Some(rotation) = old.rotation {
                    rotation.abort();
                }
            }
            devices.insert(
                salon,
                Device {
                    generation,
                    lease: lease.clone(),
                    events: events.clone(),
                    qr_ref: None,
                    pair: None,
                    rotation: None,
                    linked,
                    phone: None,
                    silent: false,
                },
            );
        }
        if let Some(device) = stored {
            let phone = device
                .phone
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok());
            if let Some(open) = self.inner.devices().get_mut(&salon) {
                open.phone = phone.clone();
            }
            let _ = events.send(GatewayEvent::Connected { phone });
        } else {
            let task = tokio::spawn(rotate_qr_codes(self.inner.clone(), salon, generation));
            if let Some(device) = self.inner.devices().get_mut(&salon) {
                device.rotation = Some(task.abort_handle());
            }
        }
        Ok(Box::new(SimSession {
            inner: self.inner.clone(),
            salon,
            lease: lease.clone(),
            generation,
        }))
    }

    async fn purge_credentials(&self, salon: SalonId) -> Result<(), GatewayError> {
        self.inner
            .purge(salon)
            .await
            .map_err(|e| GatewayError::Store(e.to_string()))
    }

    async fn forget_credentials(&self, lease: &SessionLease) -> Result<(), GatewayError> {
        self.inner
            .store
            .purge_credentials_fenced(lease)
            .await
            .map(|_| ())
            .map_err(GatewayError::from_store)
    }
}

struct SimSession {
    inner: Arc<Inner>,
    salon: SalonId,
    lease: SessionLease,
    generation: u64,
}

#[async_trait::async_trait]
impl GatewaySession for SimSession {
    async fn request_pair_code(&self, phone: &PhoneNumber) -> Result<String, GatewayError> {
        let mut devices = self.inner.devices();
        let device = devices
            .get_mut(&self.salon)
            .filter(|d| d.generation == self.generation)
            .ok_or(GatewayError::Closed)?;
        let code = random_pair_code();
        device.pair = Some((code.clone(), phone.clone()));
        Ok(code)
    }

    /// Delivers the text to the simulated phone of `to` at once (its page lists it) and reports
    /// WhatsApp's delivery receipt; the read receipt follows when that page is opened.
    async fn send_text(&self, to: &PhoneNumber, text: &str) -> Result<String, GatewayError> {
        let message_id = format!("SIM{:016X}", rand::thread_rng().gen::<u64>());
        let from = {
            let devices = self.inner.devices();
            let device = devices
                .get(&self.salon)
                .filter(|d| d.generation == self.generation)
                .ok_or(GatewayError::Closed)?;
            if !device.linked {
                return Err(GatewayError::Unavailable("the device is not linked".into()));
            }
            if device.silent {
                // A dead socket takes the frame and nothing comes of it.
                return Err(GatewayError::Unavailable(
                    "no answer from WhatsApp (simulated silent socket)".into(),
                ));
            }
            device.phone.clone()
        };
        self.inner
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(message_id.clone(), (self.salon, self.generation));
        {
            let mut inboxes = self.inner.inboxes();
            let inbox = inboxes.entry(to.clone()).or_default();
            inbox.push(ReceivedText {
                message_id: message_id.clone(),
                salon: self.salon,
                from,
                text: text.to_owned(),
                at: chrono::Utc::now(),
                read: false,
            });
            if inbox.len() > INBOX_LIMIT {
                let excess = inbox.len() - INBOX_LIMIT;
                inbox.drain(..excess);
            }
        }
        self.inner.receipt(&message_id, DeliveryStatus::Delivered);
        Ok(message_id)
    }

    /// Answers at once, unless the socket went silent: then never (the supervisor's timeout
    /// decides), or the session is gone: `Closed`.
    async fn probe(&self) -> Result<(), GatewayError> {
        let silent = self
            .inner
            .devices()
            .get(&self.salon)
            .filter(|d| d.generation == self.generation)
            .map(|d| d.silent)
            .ok_or(GatewayError::Closed)?;
        if silent {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn logout(&self) -> Result<(), GatewayError> {
        self.inner.close(self.salon, self.generation);
        self.inner
            .clear(&self.lease)
            .await
            .map_err(|e| GatewayError::Store(e.to_string()))
    }

    async fn close(&self) {
        self.inner.close(self.salon, self.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_codes_look_like_whatsapps() {
        let code = random_pair_code();
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        assert_eq!(normalize_code(&code.to_lowercase()).len(), 8);
        assert_eq!(normalize_code(" abcd-efgh "), "ABCDEFGH");
    }
}
