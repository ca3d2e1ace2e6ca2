//! The live channel's feed: one salon's onboarding state as it changes, fanned out per salon.
//!
//! A [`LiveHub`] keeps one *room* per salon that has open streams (created with its first stream,
//! dropped with its last). The room's task alone listens to the bus for its salon; on a change it
//! reads the status **once**, encodes the server-sent event **once** (its id is the status
//! version, so `Last-Event-ID` means the same thing on every stream) and hands the same bytes to
//! every stream of the salon through a small broadcast channel. A stream is woken only by its own
//! salon's changes and by one shared tick (the pings, and the end at shutdown).
//!
//! A stream opens with a snapshot read after it joined the room (so no change falls between); a
//! change older than what the stream already sent is skipped. A stream that fell behind gets a
//! fresh snapshot, which contains everything missed. When the installation the token was issued
//! for ends (uninstall, or installed anew), the feed ends with it. At shutdown every stream ends
//! without another frame: what wakes it after the bus was told to stop (a change, a gap's fresh
//! snapshot) ends it instead. `http::live` carries the frames over HTTP.
//!
//! A stream served on its own socket (`http::lean_sse`) can leave the broadcast for the room's
//! *direct* list ([`LiveStream::into_direct`]): the room task then hands each frame to every such
//! stream's [`DirectSink`] in turn — a non-blocking write of the whole frame in the common case —
//! instead of waking a task per stream. A salon's 1,000 open pages cost a loop over 1,000 sockets
//! per change — split over the runtime's worker threads once a room holds at least two shards
//! (`SSE_FANOUT_SHARD`, [`deliver_all`]) — not 1,000 task wake-ups (issue 15: a change on A
//! reaching 1,000 streams on B).

use crate::bus::{EventBus, LiveSubscriberGuard, Received, Subscription};
use crate::domain::SalonStatus;
use crate::limits::StreamSlot;
use crate::onboarding::OnboardingService;
use crate::session::{token_expired, OnboardingSession};
use crate::store::StoreError;
use app::domain::SalonId;
use app::status::{LiveEventKind, OnboardingStatus};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// A named `ping` event this often: the browser cannot see SSE comments, and uses pings to tell a
/// silent channel from a dead one. One shared tick drives every stream's ping.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);

/// How many changes of one salon a stream may fall behind before it gets a fresh snapshot.
const ROOM_CAPACITY: usize = 16;

/// The ping frame, the same bytes for every stream.
pub const PING_FRAME: &[u8] = b"event: ping\ndata: {}\n\n";

/// The operator's frame: the salon changed, read its page's data again.
const CHANGED_FRAME: &[u8] = b"event: changed\ndata: {}\n\n";

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("the salon is not stored")]
    UnknownSalon,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which tokens still see a salon after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validity {
    /// The change cannot end an installation: no check.
    Unchecked,
    /// Tokens of this generation still see the salon.
    Generation(i32),
    /// The salon is gone or uninstalled: every stream ends.
    Ended,
}

/// One change of one salon, encoded once and shared by every stream of the salon.
#[derive(Debug)]
struct SharedEvent {
    version: u64,
    validity: Validity,
    /// The whole SSE frame (`event:`, `id:`, `data:`).
    frame: Bytes,
}

/// The SSE frame of a status: `event: {kind}`, `id: {version}`, `data: {status JSON}`.
pub fn encode(kind: LiveEventKind, status: &OnboardingStatus) -> Bytes {
    let data = serde_json::to_string(status).unwrap_or_else(|_| "{}".into());
    let mut frame = String::with_capacity(data.len() + 48);
    frame.push_str("event: ");
    frame.push_str(kind.as_str());
    frame.push_str("\nid: ");
    frame.push_str(&status.version.to_string());
    frame.push_str("\ndata: ");
    // JSON from serde_json has no raw newlines; keep the frame well-formed regardless.
    for (n, line) in data.split('\n').enumerate() {
        if n > 0 {
            frame.push_str("\ndata: ");
        }
        frame.push_str(line);
    }
    frame.push_str("\n\n");
    Bytes::from(frame)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tick {
    Beat(u64),
    Stopped,
}

struct HubInner {
    service: OnboardingService,
    rooms: Mutex<HashMap<SalonId, Weak<Room>>>,
    ticks: watch::Sender<Tick>,
    ticking: OnceLock<()>,
    /// Status builds for the live channel (a test hook and a benchmark figure).
    status_reads: AtomicU64,
    /// When a room last finished handing a change to its direct streams (a benchmark figure).
    last_fanout: Mutex<Option<std::time::Instant>>,
    /// Direct streams per shard of a room's writes ([`deliver_all`]); 0: one task writes all.
    shard_streams: usize,
}

/// The live channel's per-salon fan-out (see the module docs).
#[derive(Clone)]
pub struct LiveHub(Arc<HubInner>);

/// One salon's room: the task that turns bus changes into shared frames, and their channel.
struct Room {
    salon: SalonId,
    hub: Arc<HubInner>,
    sender: broadcast::Sender<Arc<SharedEvent>>,
    /// The streams whose frames the room task hands over itself ([`LiveStream::into_direct`]).
    direct: DirectList,
    task: tokio::task::AbortHandle,
}

/// A stream the room writes itself: the socket's side of it is the sink's business.
pub trait DirectSink: Send + Sync + 'static {
    /// The status frame of `version`. The room and a stream joining the list may both hand
    /// over the same change, and a joining stream's backlog may race the room's newer one: the
    /// sink drops a version not newer than the last it took. It must not wait: the sink writes
    /// now if it can, else keeps the newest frame for its own task.
    fn frame(&self, version: u64, frame: &Bytes);
    /// The feed ended for this stream (uninstall, installed anew, shutdown).
    fn end(&self);
}

/// A room's direct streams, shared by the room and its task.
type DirectList = Arc<Mutex<Vec<Direct>>>;

/// An entry of a room's direct list.
#[derive(Clone)]
struct Direct {
    generation: i32,
    /// When its token expires (Unix seconds, leeway included): the feed ends at the first change
    /// or ping after it, as every other surface refuses the token by then — an open stream would
    /// otherwise go on showing the salon's next QR codes to whoever holds a link long expired.
    expires_at: i64,
    sink: Arc<dyn DirectSink>,
}

impl Direct {
    /// Hands `event` to the sink, or ends it if the event ends its token's feed.
    fn deliver(&self, event: &SharedEvent, stopping: bool) {
        match event.validity {
            _ if stopping => self.sink.end(),
            Validity::Ended => self.sink.end(),
            Validity::Generation(g) if g != self.generation => self.sink.end(),
            _ if token_expired(self.expires_at) => self.sink.end(),
            _ => self.sink.frame(event.version, &event.frame),
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.task.abort();
        let mut rooms = self
            .hub
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if rooms
            .get(&self.salon)
            .is_some_and(|room| room.strong_count() == 0)
        {
            rooms.remove(&self.salon);
        }
    }
}

impl LiveHub {
    /// `shard_streams`: direct streams per shard of a room's writes (`SSE_FANOUT_SHARD`; see
    /// [`deliver_all`]).
    pub fn new(service: OnboardingService, shard_streams: usize) -> Self {
        Self(Arc::new(HubInner {
            service,
            rooms: Mutex::default(),
            ticks: watch::channel(Tick::Beat(0)).0,
            ticking: OnceLock::new(),
            status_reads: AtomicU64::new(0),
            last_fanout: Mutex::default(),
            shard_streams,
        }))
    }

    fn bus(&self) -> &EventBus {
        &self.0.service.bus
    }

    /// How many statuses the live channel built (snapshots and changes).
    pub fn status_reads(&self) -> u64 {
        self.0.status_reads.load(Ordering::SeqCst)
    }

    /// When a room last finished handing a change's frame to its direct streams: on a stream
    /// served on its own socket the frame is then in the socket's send path (over loopback, in
    /// the reader's receive buffer). `None` before the first.
    pub fn last_fanout(&self) -> Option<std::time::Instant> {
        *self
            .0
            .last_fanout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many salons have a room (open streams).
    pub fn rooms(&self) -> usize {
        let rooms = self.0.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .values()
            .filter(|room| room.strong_count() > 0)
            .count()
    }

    /// The one shared tick: pings every [`PING_INTERVAL`], and the end of every stream at
    /// shutdown. Started with the first stream.
    fn start_ticking(&self) {
        self.0.ticking.get_or_init(|| {
            let ticks = self.0.ticks.clone();
            let stopped = self.bus().stopped();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(PING_INTERVAL);
                interval.reset();
                tokio::pin!(stopped);
                let mut beat = 0;
                loop {
                    tokio::select! {
                        _ = &mut stopped => {
                            ticks.send_replace(Tick::Stopped);
                            return;
                        }
                        _ = interval.tick() => {
                            beat += 1;
                            ticks.send_replace(Tick::Beat(beat));
                        }
                    }
                }
            });
        });
    }

    fn room(&self, salon: SalonId) -> Arc<Room> {
        let mut rooms = self.0.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(room) = rooms.get(&salon).and_then(Weak::upgrade) {
            return room;
        }
        let sender = broadcast::channel(ROOM_CAPACITY).0;
        // Subscribed before the room is handed out: no change falls between.
        let changes = self.bus().subscribe_salon(salon);
        let direct = DirectList::default();
        let task = tokio::spawn(room_task(
            self.0.clone(),
            salon,
            sender.clone(),
            direct.clone(),
            changes,
        ));
        let room = Arc::new(Room {
            salon,
            hub: self.0.clone(),
            sender,
            direct,
            task: task.abort_handle(),
        });
        rooms.insert(salon, Arc::downgrade(&room));
        room
    }

    /// Opens one browser's stream: joins the salon's room, then reads the snapshot.
    pub async fn open(
        &self,
        session: OnboardingSession,
        slot: StreamSlot,
    ) -> Result<LiveStream, LiveError> {
        self.start_ticking();
        let subscriber = self.bus().live_subscriber();
        let room = self.room(session.salon);
        let events = room.sender.subscribe();
        let ticks = self.0.ticks.subscribe();
        let status = read_status(&self.0, session.salon)
            .await?
            .ok_or(LiveError::UnknownSalon)?;
        let stopped = *ticks.borrow() == Tick::Stopped;
        Ok(LiveStream {
            room,
            events,
            ticks,
            generation: session.generation,
            expires_at: session.expires_at,
            last_version: status.version,
            pending: (!stopped).then(|| encode(LiveEventKind::Snapshot, &status)),
            ended: stopped,
            _subscriber: subscriber,
            _slot: slot,
        })
    }
}

impl LiveHub {
    /// Opens an operator's stream of one salon (the console's salon page): the same room as the
    /// salon's own streams, so one read per change serves both; every change — whatever it is,
    /// an ended installation included — is one `changed` frame, and the first frame is one too
    /// (whatever changed between the page's read and the stream's start). Authorised by the
    /// caller (the operator's session), never by an onboarding token.
    pub fn open_operator(&self, salon: SalonId, slot: StreamSlot) -> OperatorStream {
        self.start_ticking();
        let subscriber = self.bus().live_subscriber();
        let room = self.room(salon);
        let events = room.sender.subscribe();
        let ticks = self.0.ticks.subscribe();
        let stopped = *ticks.borrow() == Tick::Stopped;
        OperatorStream {
            room,
            events,
            ticks,
            pending: !stopped,
            ended: stopped,
            _subscriber: subscriber,
            _slot: slot,
        }
    }
}

/// An operator's stream of one salon (see [`LiveHub::open_operator`]).
pub struct OperatorStream {
    room: Arc<Room>,
    events: broadcast::Receiver<Arc<SharedEvent>>,
    ticks: watch::Receiver<Tick>,
    pending: bool,
    ended: bool,
    _subscriber: LiveSubscriberGuard,
    _slot: StreamSlot,
}

impl OperatorStream {
    /// The next frame (`changed` or a ping); `None` at shutdown or when the bus is gone.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if std::mem::take(&mut self.pending) {
            return Some(Bytes::from_static(CHANGED_FRAME));
        }
        let frame = tokio::select! {
            received = self.events.recv() => match received {
                // Shutting down: nothing more.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_))
                    if self.room.hub.service.bus.is_stopping() =>
                {
                    None
                }
                // Fell behind: one `changed` covers everything missed.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some(Bytes::from_static(CHANGED_FRAME))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            changed = self.ticks.changed() => {
                if changed.is_err() || *self.ticks.borrow_and_update() == Tick::Stopped {
                    None
                } else {
                    Some(Bytes::from_static(PING_FRAME))
                }
            }
        };
        if frame.is_none() {
            self.ended = true;
        }
        frame
    }
}

async fn read_status(
    hub: &HubInner,
    salon: SalonId,
) -> Result<Option<OnboardingStatus>, StoreError> {
    hub.status_reads.fetch_add(1, Ordering::SeqCst);
    hub.service.status(salon).await
}

/// Which tokens still see the salon (only for changes that can end an installation).
async fn validity(hub: &HubInner, salon: SalonId, kind: LiveEventKind) -> Validity {
    if !matches!(
        kind,
        LiveEventKind::ActivationUpdate | LiveEventKind::Snapshot
    ) {
        return Validity::Unchecked;
    }
    match hub.service.store.token_generation(salon).await {
        Ok(Some((generation, status))) if status != SalonStatus::Uninstalled => {
            Validity::Generation(generation)
        }
        Ok(_) => Validity::Ended,
        Err(e) => {
            tracing::error!(error = %e, "checking the live channel's installation failed");
            Validity::Ended
        }
    }
}

/// One salon's room task: a change → one read → one frame for every stream of the salon.
async fn room_task(
    hub: Arc<HubInner>,
    salon: SalonId,
    sender: broadcast::Sender<Arc<SharedEvent>>,
    direct: DirectList,
    mut changes: Subscription,
) {
    while let Some(received) = changes.recv().await {
        let kind = match received {
            // Shutting down: the streams are ending, no snapshot for them.
            Received::Resync { .. } if hub.service.bus.is_stopping() => continue,
            Received::Changed(changed) => changed.kind,
            // Missed some: a snapshot covers them.
            Received::Resync { .. } => LiveEventKind::Snapshot,
        };
        let validity = validity(&hub, salon, kind).await;
        let event = if validity == Validity::Ended {
            SharedEvent {
                version: 0,
                validity,
                frame: Bytes::new(),
            }
        } else {
            match read_status(&hub, salon).await {
                Ok(Some(status)) => SharedEvent {
                    version: status.version,
                    validity,
                    frame: encode(kind, &status),
                },
                Ok(None) => SharedEvent {
                    version: 0,
                    validity: Validity::Ended,
                    frame: Bytes::new(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "status for the live channel failed; waiting for the next change");
                    continue;
                }
            }
        };
        // The broadcast first: a stream moving to the direct list drains its receiver after
        // joining the list, so it gets this event one way or the other (its sink drops a repeat).
        let event = Arc::new(event);
        // No receivers is fine: the last stream is leaving, or every stream is direct.
        let _ = sender.send(event.clone());
        // A copy of the list, so streams join and leave while the frames go out.
        let sinks: Vec<Direct> = direct
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let stopping = hub.service.bus.is_stopping();
        let handed = !sinks.is_empty();
        deliver_all(sinks, &event, stopping, hub.shard_streams).await;
        if handed {
            *hub.last_fanout
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(std::time::Instant::now());
        }
    }
}

/// Hands a change to a room's direct streams. A room of at least two shards' worth of streams
/// (`shard_streams` each; 0: never) is written by several tasks at once, as many as the runtime
/// has worker threads: each write is a send over TCP (over loopback, also the reader's receive
/// path), so on one thread a 1,000-stream room takes 1,000 sends end to end. Every shard is
/// spawned (none written in place): tokio keeps a task's first spawn in its own worker's LIFO
/// slot, which no other worker steals, so the second spawn is what puts the first within their
/// reach. Returns when every shard is written, so one change's frames never overtake another's.
async fn deliver_all(
    mut sinks: Vec<Direct>,
    event: &Arc<SharedEvent>,
    stopping: bool,
    shard_streams: usize,
) {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let shards = sinks
        .len()
        .checked_div(shard_streams)
        .unwrap_or(0)
        .min(workers);
    if shards < 2 {
        for sink in &sinks {
            sink.deliver(event, stopping);
        }
        return;
    }
    let per = sinks.len().div_ceil(shards);
    let mut tasks = Vec::with_capacity(shards);
    while !sinks.is_empty() {
        let shard = sinks.split_off(sinks.len().saturating_sub(per));
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            for sink in &shard {
                sink.deliver(&event, stopping);
            }
        }));
    }
    for task in tasks {
        match task.await {
            Ok(()) => {}
            // The runtime is shutting down: the streams are ending anyway.
            Err(e) if e.is_cancelled() => {
                tracing::debug!("a shard of a room's streams was cancelled at shutdown");
            }
            Err(e) => tracing::error!(error = %e, "a shard of a room's streams was not written"),
        }
    }
}

/// A stream in its room's direct list ([`LiveStream::into_direct`]): what it holds while open.
/// Dropping it leaves the list.
pub struct DirectStream {
    room: Arc<Room>,
    sink: Arc<dyn DirectSink>,
    ticks: watch::Receiver<Tick>,
    /// When its token expires: the next tick after it ends the stream.
    expires_at: i64,
    _subscriber: LiveSubscriberGuard,
    _slot: StreamSlot,
}

impl DirectStream {
    /// The salon whose changes this stream follows.
    pub fn salon(&self) -> SalonId {
        self.room.salon
    }

    /// The next shared tick: `true` for a ping, `false` when the stream ends (shutdown, or its
    /// token expired).
    pub async fn tick(&mut self) -> bool {
        match self.ticks.changed().await {
            Ok(()) => {
                *self.ticks.borrow_and_update() != Tick::Stopped && !token_expired(self.expires_at)
            }
            Err(_) => false,
        }
    }
}

impl Drop for DirectStream {
    fn drop(&mut self) {
        let mut direct = self
            .room
            .direct
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = direct
            .iter()
            .position(|entry| Arc::ptr_eq(&entry.sink, &self.sink))
        {
            direct.swap_remove(at);
        }
    }
}

/// One browser's stream of one salon: what it holds for as long as it is open.
pub struct LiveStream {
    room: Arc<Room>,
    events: broadcast::Receiver<Arc<SharedEvent>>,
    ticks: watch::Receiver<Tick>,
    generation: i32,
    /// When its token expires (Unix seconds, leeway included).
    expires_at: i64,
    last_version: u64,
    pending: Option<Bytes>,
    ended: bool,
    _subscriber: LiveSubscriberGuard,
    _slot: StreamSlot,
}

impl LiveStream {
    /// The salon whose changes this stream follows.
    pub fn salon(&self) -> SalonId {
        self.room.salon
    }

    /// The next frame to write (a status or a ping); `None` when the feed ended (uninstall,
    /// shutdown, the bus gone).
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if let Some(first) = self.pending.take() {
            return Some(first);
        }
        let frame = self.wait().await;
        if frame.is_none() {
            self.ended = true;
        }
        frame
    }

    /// Moves the stream to its room's direct list: from now on the room task hands each change's
    /// frame to `sink` itself, and this stream's task only follows the shared tick. What the
    /// stream had not taken yet (its snapshot, changes since) goes to the sink first. `None`
    /// when the feed already ended (the sink was told).
    pub async fn into_direct(mut self, sink: Arc<dyn DirectSink>) -> Option<DirectStream> {
        if self.ended || *self.ticks.borrow() == Tick::Stopped {
            sink.end();
            return None;
        }
        if let Some(first) = self.pending.take() {
            sink.frame(self.last_version, &first);
        }
        let entry = Direct {
            generation: self.generation,
            expires_at: self.expires_at,
            sink: sink.clone(),
        };
        // Joined first, then what the broadcast holds: the room sends an event to the broadcast
        // before it walks the list, so every event reaches the sink one way or the other.
        self.room
            .direct
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry.clone());
        let mut ended = false;
        while !ended {
            match self.events.try_recv() {
                Ok(event) => entry.deliver(&event, self.room.hub.service.bus.is_stopping()),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    match Box::pin(self.resync()).await {
                        Some(Some(frame)) => entry.sink.frame(self.last_version, &frame),
                        Some(None) => {}
                        None => {
                            entry.sink.end();
                            ended = true;
                        }
                    }
                }
                Err(_) => break,
            }
        }
        // Dropped at once (leaving the list) if the feed ended meanwhile.
        let direct = DirectStream {
            room: self.room,
            sink: entry.sink,
            ticks: self.ticks,
            expires_at: self.expires_at,
            _subscriber: self._subscriber,
            _slot: self._slot,
        };
        (!ended).then_some(direct)
    }

    async fn wait(&mut self) -> Option<Bytes> {
        loop {
            tokio::select! {
                received = self.events.recv() => match received {
                    // Shutting down: the stream ends rather than send another frame.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_))
                        if self.room.hub.service.bus.is_stopping() =>
                    {
                        return None
                    }
                    Ok(event) => {
                        match event.validity {
                            Validity::Ended => return None,
                            Validity::Generation(g) if g != self.generation => return None,
                            _ if token_expired(self.expires_at) => return None,
                            _ => {}
                        }
                        if event.version <= self.last_version {
                            continue;
                        }
                        self.last_version = event.version;
                        return Some(event.frame.clone());
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Boxed: its database reads are big futures, and rare; every stream
                        // would otherwise carry their size while it waits.
                        if let Some(frame) = Box::pin(self.resync()).await? {
                            return Some(frame);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.ticks.changed() => {
                    if changed.is_err()
                        || *self.ticks.borrow_and_update() == Tick::Stopped
                        || token_expired(self.expires_at)
                    {
                        return None;
                    }
                    return Some(Bytes::from_static(PING_FRAME));
                }
            }
        }
    }

    /// A fresh snapshot for a stream that fell behind: `Some(Some(frame))`; `Some(None)` when
    /// nothing this time (a transient read failure); `None` when the feed ends.
    async fn resync(&mut self) -> Option<Option<Bytes>> {
        let hub = &self.room.hub;
        let salon = self.room.salon;
        match validity(hub, salon, LiveEventKind::Snapshot).await {
            Validity::Generation(g) if g == self.generation => {}
            _ => return None,
        }
        match read_status(hub, salon).await {
            Ok(Some(status)) => {
                self.last_version = status.version;
                Some(Some(encode(LiveEventKind::Snapshot, &status)))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "snapshot for a lagging live stream failed");
                Some(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records what it was handed, and on which thread.
    #[derive(Default)]
    struct Recorder {
        got: Mutex<Vec<u64>>,
        ended: AtomicU64,
        threads: Mutex<std::collections::HashSet<std::thread::ThreadId>>,
    }

    impl DirectSink for Recorder {
        fn frame(&self, version: u64, _frame: &Bytes) {
            self.got.lock().expect("unpoisoned").push(version);
            self.threads
                .lock()
                .expect("unpoisoned")
                .insert(std::thread::current().id());
        }
        fn end(&self) {
            self.ended.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn room_of(streams: usize, generation: i32) -> (Vec<Arc<Recorder>>, Vec<Direct>) {
        let recorders: Vec<Arc<Recorder>> = (0..streams)
            .map(|_| Arc::new(Recorder::default()))
            .collect();
        let direct = recorders
            .iter()
            .map(|r| Direct {
                generation,
                expires_at: i64::MAX,
                sink: r.clone(),
            })
            .collect();
        (recorders, direct)
    }

    fn change(version: u64, validity: Validity) -> Arc<SharedEvent> {
        Arc::new(SharedEvent {
            version,
            validity,
            frame: Bytes::from_static(b"event: qr-update\n\n"),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sharded_room_hands_every_stream_every_change_once_and_in_order() {
        for shard in [0, 1, 256, 2_000] {
            let (recorders, direct) = room_of(1_001, 7);
            for version in 1..=5 {
                deliver_all(
                    direct.clone(),
                    &change(version, Validity::Unchecked),
                    false,
                    shard,
                )
                .await;
            }
            deliver_all(
                direct.clone(),
                &change(6, Validity::Generation(7)),
                false,
                shard,
            )
            .await;
            for (n, recorder) in recorders.iter().enumerate() {
                assert_eq!(
                    *recorder.got.lock().expect("unpoisoned"),
                    [1, 2, 3, 4, 5, 6],
                    "stream {n}, shards of {shard}"
                );
                assert_eq!(recorder.ended.load(Ordering::SeqCst), 0);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sharded_room_ends_every_stream_when_the_installation_ends_or_at_shutdown() {
        for (event, stopping) in [
            (change(0, Validity::Ended), false),
            (change(9, Validity::Generation(8)), false),
            (change(9, Validity::Unchecked), true),
        ] {
            let (recorders, direct) = room_of(600, 7);
            deliver_all(direct, &event, stopping, 256).await;
            for recorder in &recorders {
                assert!(recorder.got.lock().expect("unpoisoned").is_empty());
                assert_eq!(recorder.ended.load(Ordering::SeqCst), 1);
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_one_thread_the_room_writes_its_streams_itself() {
        let (recorders, direct) = room_of(600, 1);
        deliver_all(direct, &change(1, Validity::Unchecked), false, 256).await;
        let here = std::thread::current().id();
        for recorder in &recorders {
            assert_eq!(*recorder.got.lock().expect("unpoisoned"), [1]);
            assert_eq!(
                *recorder.threads.lock().expect("unpoisoned"),
                [here].into_iter().collect()
            );
        }
    }
}
