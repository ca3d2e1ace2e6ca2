//! The live channel served straight on its socket, beside axum (issue 14: ≤ 4 KB per open
//! stream). A stream served by hyper lives inside an HTTP/1.1 connection whose buffers alone are
//! 8 KiB at least (read buffer, write buffer), plus the router's per-connection service, the
//! layers' per-request state and a boxed body; an SSE stream never reads another request, so
//! none of that is needed while it is open.
//!
//! [`LeanListener`] is the listener `axum::serve` accepts from. Each new connection is sniffed by
//! a short task: the request head is read into a small buffer (at most [`HEAD_MAX`] bytes, for at
//! most [`HEAD_WAIT`]; bytes that cannot begin `GET /marketplace/api/events` end the sniff at
//! once). Only a complete HTTP/1.1 `GET /marketplace/api/events` head, alone in what was read,
//! with nothing that changes the route's answer or the connection's fate (a body, `Expect`,
//! `Upgrade`, a `Connection` other than `keep-alive`), whose token passes the same checks as the
//! `OnboardingSession` extractor, whose salon has a stream slot free and whose stream opens, is
//! served here: the same head the axum route answers (the route's and every layer's headers,
//! chunked, byte for byte — `server/tests/api/lean_sse.rs` compares them), then the hub's shared
//! frames as chunks. **Every other connection**, and every case where the route would answer
//! something else (401, 429, 503, …), goes to hyper and axum with the bytes already read put back
//! in front of the socket ([`Rewound`]), so their answers stay exactly the route's.
//!
//! Once its head and snapshot are written, a stream joins its salon's room as a direct sink
//! ([`LiveStream::into_direct`]): the room task writes each change's frame into every such
//! socket in turn, without waking the streams' tasks, when the socket takes it whole at once; a
//! frame a slow client's socket cannot take is finished by the stream's own task, the newest
//! frame replacing any not begun. The task otherwise sleeps: it wakes for that, for the shared
//! ping tick, and for the client's side, watched with a one-byte `peek` (its close frees the
//! slot at once). When the
//! feed ends (an uninstall) the connection goes on to hyper for its next request, as a
//! keep-alive connection would; at shutdown it closes. A connection reused for a second request
//! (a browser's or a proxy's keep-alive) is hyper's: the axum route stays registered for it —
//! which is why nginx gives the live channel an upstream without keep-alive (deploy/nginx).

use super::connections::{Admitted, Connections, Place};
use super::layers::{content_security_policy, cors_allows, Origins};
use super::session::token_from_parts;
use crate::bus::EventBus;
use crate::instruments::Instruments;
use crate::limits::Limits;
use crate::live::{DirectSink, LiveHub, LiveStream, PING_FRAME};
use crate::session::SessionVerifier;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tracing::Instrument;

/// The live channel's route (the axum route of the same path stays registered).
pub const EVENTS_PATH: &str = "/marketplace/api/events";
/// The longest request head served here (a browser's `EventSource` request with its cookies and
/// `Sec-Fetch-*` headers is 1–2 KB); longer heads are hyper's.
pub const HEAD_MAX: usize = 4096;
/// How long a new connection may take to send a complete head before it is hyper's: a browser,
/// nginx or an HTTP client sends the head at once.
pub const HEAD_WAIT: Duration = Duration::from_secs(1);
/// The router's `TimeoutLayer`: opening a stream takes no longer than the route may.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stream's client may go without taking any of what is owed to it before it is
/// taken for gone: a client that stops reading would otherwise hold the stream's task and its
/// salon's slot for as long as it liked.
const WRITE_STALL: Duration = Duration::from_secs(20);
/// The same once the feed has ended (an uninstall, an expired token, a hand-over, shutdown):
/// the body's end is owed only to a client that is reading.
const ENDED_STALL: Duration = Duration::from_secs(1);
/// Headers a served head may have (hyper allows 100; more goes to hyper).
const MAX_HEADERS: usize = 64;
/// Connections on their way to hyper that `accept` has not taken yet.
const HANDED_QUEUE: usize = 256;
/// The start of every request line served here.
const REQUEST_LINE: &[u8] = b"GET /marketplace/api/events";

/// What the lean path needs of the application, shared by every connection.
#[derive(Clone)]
pub struct LeanSse(Arc<Inner>);

struct Inner {
    verifier: SessionVerifier,
    limits: Limits,
    hub: LiveHub,
    bus: EventBus,
    instruments: Instruments,
    content_security_policy: HeaderValue,
    cors: Vec<String>,
    sniffing: AtomicUsize,
    streams: AtomicUsize,
    /// A stream ended (for the drain at shutdown).
    ended: Notify,
    forced: AtomicBool,
    force: Notify,
}

/// Decrements its counter (and wakes the drain) when dropped.
struct Counted<'a> {
    count: &'a AtomicUsize,
    ended: Option<&'a Notify>,
}

impl<'a> Counted<'a> {
    fn new(count: &'a AtomicUsize, ended: Option<&'a Notify>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self { count, ended }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        if let Some(ended) = self.ended {
            ended.notify_waiters();
        }
    }
}

/// A connection on its way to hyper: the peer and the socket, with what was read of it already.
type Handed = (Rewound, SocketAddr);

/// How a served stream ended.
enum Ending {
    /// The feed ended (an uninstall, shutdown): the chunked body is finished.
    Feed,
    /// The client went away, or its socket failed.
    Gone,
}

impl LeanSse {
    pub fn new(
        verifier: SessionVerifier,
        limits: Limits,
        hub: LiveHub,
        bus: EventBus,
        instruments: Instruments,
        origins: &Origins,
    ) -> Self {
        Self(Arc::new(Inner {
            verifier,
            limits,
            hub,
            bus,
            instruments,
            content_security_policy: content_security_policy(origins),
            cors: origins.cors.clone(),
            sniffing: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            ended: Notify::new(),
            forced: AtomicBool::new(false),
            force: Notify::new(),
        }))
    }

    /// Live streams served here now.
    pub fn streams(&self) -> usize {
        self.0.streams.load(Ordering::SeqCst)
    }

    /// New connections whose head is being read now.
    pub fn sniffing(&self) -> usize {
        self.0.sniffing.load(Ordering::SeqCst)
    }

    /// Waits (at most `bound`) for the streams served here to end — the hub ends them at
    /// shutdown — then ends those still open (a client that stopped reading).
    pub async fn drain(&self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let ended = self.0.ended.notified();
            if self.streams() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                break;
            }
        }
        tracing::warn!(
            open = self.streams(),
            "live streams still open at shutdown; closing them"
        );
        self.0.forced.store(true, Ordering::SeqCst);
        self.0.force.notify_waiters();
    }

    /// One new connection: sniffed, then served here or handed to hyper.
    async fn connection(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        place: Admitted,
        hand: mpsc::Sender<Handed>,
    ) {
        // Boxed: the sniff and the opening (token, database reads) are big futures, needed
        // only for a moment; the task keeps only what the stream needs afterwards.
        let (live, head, span) = match Box::pin(self.open(&stream)).await {
            Ok(opened) => opened,
            Err(prefix) => {
                let _ = hand.send((Rewound::new(prefix, stream, place), peer)).await;
                return;
            }
        };
        let counted = Counted::new(&self.0.streams, Some(&self.0.ended));
        let force = self.0.force.notified();
        tokio::pin!(force);
        force.as_mut().enable();
        if self.0.forced.load(Ordering::SeqCst) {
            return;
        }
        let socket = Arc::new(Socket::new(stream));
        let ending = tokio::select! {
            ending = serve(&socket, live, head).instrument(span) => ending,
            () = force => Ending::Gone,
        };
        drop(counted);
        if let Ending::Feed = ending {
            let Some(mut stream) = socket.into_tcp().await else {
                return;
            };
            if self.0.bus.is_stopping() {
                let _ = stream.shutdown().await;
            } else {
                // As a keep-alive connection: the client's next request is hyper's.
                let _ = hand
                    .send((Rewound::new(Bytes::new(), stream, place), peer))
                    .await;
            }
        }
    }

    /// Reads the head; opens the stream if this connection is one to serve here: the stream,
    /// the head to answer and the stream's span; or, for hyper, the bytes read.
    async fn open(
        &self,
        stream: &TcpStream,
    ) -> Result<(LiveStream, Vec<u8>, tracing::Span), Bytes> {
        let sniffing = Counted::new(&self.0.sniffing, None);
        let head = read_head(stream).await;
        drop(sniffing);
        let Some(parts) = events_request(&head) else {
            return Err(Bytes::from(head));
        };
        let started = Instant::now();
        let request_id = parts
            .headers
            .get("x-request-id")
            .filter(|id| super::layers::fit_request_id(id))
            .cloned()
            .unwrap_or_else(new_request_id);
        let span = tracing::info_span!(
            "request",
            method = "GET",
            route = EVENTS_PATH,
            request_id = %request_id.to_str().unwrap_or("-"),
        );
        let live = match tokio::time::timeout(OPEN_TIMEOUT, self.open_stream(&parts))
            .instrument(span.clone())
            .await
        {
            Ok(Some(live)) => live,
            // The route answers it (401, 429, 503, …) exactly as it does.
            _ => return Err(Bytes::from(head)),
        };
        let head = self.response_head(&parts, &request_id);
        self.0
            .instruments
            .histogram(
                "ai_admin_http_request_duration_seconds",
                &[("route", EVENTS_PATH), ("method", "GET"), ("status", "2xx")],
            )
            .record(started.elapsed().as_secs_f64());
        span.in_scope(|| {
            tracing::info!(
                latency = %format_args!("{} ms", started.elapsed().as_millis()),
                status = 200,
                "finished processing request"
            );
        });
        let span = tracing::info_span!(parent: &span, "live_channel", salon_id = %live.salon());
        Ok((live, head, span))
    }

    /// What the route's `OnboardingSession` extractor, stream slot and `LiveHub::open` do, with
    /// no answer of its own: `None` leaves the request to the route. (The token's signature is
    /// checked first without counting a refusal: the route counts it when it answers.)
    async fn open_stream(&self, parts: &http::request::Parts) -> Option<LiveStream> {
        let token = token_from_parts(parts)?;
        let session = self.0.verifier.tokens().decode(&token).ok()?;
        if !matches!(self.0.verifier.still_valid(&session).await, Ok(true)) {
            return None;
        }
        let slot = self.0.limits.try_stream_slot(session.salon)?;
        self.0.hub.open(session, slot).await.ok()
    }

    /// The head the route answers with, every layer's headers in the order they add them
    /// (hyper writes a `HeaderMap` in insertion order, then `transfer-encoding` and `date`).
    fn response_head(&self, parts: &http::request::Parts, request_id: &HeaderValue) -> Vec<u8> {
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(
            b"HTTP/1.1 200 OK\r\n\
              content-type: text/event-stream\r\n\
              cache-control: no-cache\r\n\
              x-accel-buffering: no\r\n\
              content-security-policy: ",
        );
        head.extend_from_slice(self.0.content_security_policy.as_bytes());
        head.extend_from_slice(
            b"\r\nreferrer-policy: no-referrer\r\n\
              x-content-type-options: nosniff\r\n\
              vary: origin, access-control-request-method, access-control-request-headers\r\n",
        );
        if let Some(origin) = parts
            .headers
            .get(header::ORIGIN)
            .filter(|origin| cors_allows(&self.0.cors, origin))
        {
            head.extend_from_slice(b"access-control-allow-origin: ");
            head.extend_from_slice(origin.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"x-request-id: ");
        head.extend_from_slice(request_id.as_bytes());
        head.extend_from_slice(b"\r\ntransfer-encoding: chunked\r\ndate: ");
        head.extend_from_slice(
            chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string()
                .as_bytes(),
        );
        head.extend_from_slice(b"\r\n\r\n");
        head
    }
}

/// `SetRequestIdLayer`'s id for a request that brought none.
fn new_request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The bytes a new connection sends within [`HEAD_WAIT`]: up to the end of its first head, at
/// most [`HEAD_MAX`], and no more once they cannot begin a live-channel request.
async fn read_head(stream: &TcpStream) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + HEAD_WAIT;
    let mut buffer = Vec::new();
    let mut len = 0;
    loop {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            // Too slow, or a socket error hyper will meet as well.
            _ => break,
        }
        if buffer.is_empty() {
            buffer = vec![0; HEAD_MAX];
        }
        match stream.try_read(&mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == HEAD_MAX || !head_incomplete(&buffer[..len]) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    buffer.truncate(len);
    // Not the 4-KiB buffer: hyper reads these few bytes once, and they stay until then.
    buffer.shrink_to_fit();
    buffer
}

/// Whether `read` could still become a live-channel request head: it begins like one and its
/// head has not ended (or failed to parse).
fn head_incomplete(read: &[u8]) -> bool {
    let start = read.len().min(REQUEST_LINE.len());
    if read[..start] != REQUEST_LINE[..start] {
        return false;
    }
    if read.len() > REQUEST_LINE.len() && !matches!(read[REQUEST_LINE.len()], b' ' | b'?') {
        return false;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    matches!(
        httparse::Request::new(&mut headers).parse(read),
        Ok(httparse::Status::Partial)
    )
}

/// The request, if `head` is exactly one complete head of a request served here: HTTP/1.1
/// `GET /marketplace/api/events`, without a body, `Expect`, `Upgrade` or a `Connection` other
/// than `keep-alive` (each changes what hyper answers or does with the connection).
fn events_request(head: &[u8]) -> Option<http::request::Parts> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(end) = request.parse(head).ok()? else {
        return None;
    };
    // A pipelined request after it, or anything else: hyper's.
    if end != head.len() || request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let uri: Uri = request.path?.parse().ok()?;
    if uri.path() != EVENTS_PATH {
        return None;
    }
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        map.append(
            HeaderName::from_bytes(field.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(field.value).ok()?,
        );
    }
    let changes_the_answer = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::EXPECT,
        header::UPGRADE,
    ]
    .iter()
    .any(|name| map.contains_key(name))
        || map
            .get_all(header::CONNECTION)
            .iter()
            .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"keep-alive"));
    if changes_the_answer {
        return None;
    }
    let (mut parts, ()) = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .version(Version::HTTP_11)
        .body(())
        .ok()?
        .into_parts();
    parts.headers = map;
    Some(parts)
}

/// Writes the head, then moves the stream to its room's direct list and looks after what the
/// room could not write at once, the pings and the client's side, until the feed or the client
/// ends.
async fn serve(socket: &Arc<Socket>, live: LiveStream, head: Vec<u8>) -> Ending {
    if socket.write_all(&head).await.is_err() {
        return Ending::Gone;
    }
    drop(head);
    let sink: Arc<dyn DirectSink> = socket.clone();
    let mut direct = live.into_direct(sink).await;
    // The client sends nothing more on a live stream; if it does (a pipelined request), that
    // request waits, as in hyper, until the stream ends — and its end is noticed on a write.
    let mut watching = true;
    loop {
        match socket.flush().await {
            Flushed::Open => {}
            Flushed::Finished => return Ending::Feed,
            Flushed::Failed => return Ending::Gone,
        }
        let Some(stream) = direct.as_mut() else {
            // The feed ended (the sink was told, and `flush` writes the body's end); told again,
            // so this loop cannot go round without it.
            socket.end();
            continue;
        };
        let mut probe = [0u8; 1];
        tokio::select! {
            biased;
            () = socket.wake.notified() => {}
            peeked = socket.tcp.peek(&mut probe), if watching => match peeked {
                Ok(0) | Err(_) => return Ending::Gone,
                Ok(_) => watching = false,
            },
            ticked = stream.tick() => {
                if ticked {
                    socket.ping();
                } else {
                    socket.end();
                    direct = None;
                }
            }
        }
    }
}

/// A served stream's socket and what is owed to it, shared by its task and its salon's room
/// task (as the room's [`DirectSink`]). The room writes a frame itself when the socket takes it
/// whole at once (one non-blocking `writev`); otherwise it leaves the rest — and then the newest
/// frame, which replaces an older one not begun (each frame is the whole status) — to the task.
struct Socket {
    tcp: TcpStream,
    out: std::sync::Mutex<Outgoing>,
    /// Work for the task: a frame the room could not finish, the feed's end, a failed write.
    wake: Notify,
}

#[derive(Default)]
struct Outgoing {
    /// A chunk on its way: its bytes and how many are written. Only the task writes it.
    partial: Option<(Bytes, usize)>,
    /// The newest frame not begun.
    next: Option<Bytes>,
    /// The newest version handed over (older or repeated frames are dropped); `None` before
    /// the first (a salon's first status may be version 0).
    version: Option<u64>,
    /// The feed ended: after what is owed, the body's last chunk.
    ended: bool,
    /// The body's last chunk is on its way or written.
    finishing: bool,
    failed: bool,
}

/// What [`Socket::flush`] left.
enum Flushed {
    /// Everything owed is written; the stream goes on.
    Open,
    /// The body is finished (the feed ended).
    Finished,
    /// A write failed: the client is gone.
    Failed,
}

/// The body's last chunk.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl Socket {
    fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            out: std::sync::Mutex::default(),
            wake: Notify::new(),
        }
    }

    fn out(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        self.out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A ping, when nothing else is owed (anything owed tells the browser as much).
    fn ping(&self) {
        let mut out = self.out();
        if !(out.ended || out.failed || out.partial.is_some() || out.next.is_some()) {
            self.write_now(&mut out, PING_FRAME);
        }
    }

    /// Writes `frame` as a chunk now if the socket takes it whole (one `writev`, no copy); else
    /// leaves the rest to the task.
    fn write_now(&self, out: &mut Outgoing, frame: &[u8]) {
        let size = chunk_size_line(frame.len());
        let parts = [
            IoSlice::new(size.as_bytes()),
            IoSlice::new(frame),
            IoSlice::new(b"\r\n"),
        ];
        let total = size.len() + frame.len() + 2;
        let written = match self.tcp.try_write_vectored(&parts) {
            Ok(n) if n == total => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                out.failed = true;
                self.wake.notify_one();
                return;
            }
        };
        out.partial = Some((chunk_of(frame), written));
        self.wake.notify_one();
    }

    /// Writes what is owed, in order, waiting for the socket as needed (the task's side).
    async fn flush(&self) -> Flushed {
        loop {
            let (chunk, at) = {
                let mut out = self.out();
                if out.failed {
                    return Flushed::Failed;
                }
                if out.partial.is_none() {
                    if let Some(frame) = out.next.take() {
                        out.partial = Some((chunk_of(&frame), 0));
                    } else if out.ended && !out.finishing {
                        out.finishing = true;
                        out.partial = Some((Bytes::from_static(LAST_CHUNK), 0));
                    }
                }
                match &out.partial {
                    Some((chunk, at)) => (chunk.clone(), *at),
                    None if out.finishing => return Flushed::Finished,
                    None => return Flushed::Open,
                }
            };
            if self.write_all(&chunk[at..]).await.is_err() {
                self.out().failed = true;
                return Flushed::Failed;
            }
            self.out().partial = None;
        }
    }

    /// Writes the whole of `bytes`, waiting for the socket as needed: the head (before the room
    /// knows the socket), and what [`Socket::flush`] owes. Fails when the client takes nothing
    /// for [`WRITE_STALL`] — [`ENDED_STALL`] once the feed has ended, which may happen while
    /// this waits (the wake that says so is taken here; `flush` reads the state itself after
    /// this returns, so nothing the wake carried is lost).
    async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut progressed = tokio::time::Instant::now();
        let mut at = 0;
        while at < bytes.len() {
            let ended = self.out().ended;
            let deadline = progressed + if ended { ENDED_STALL } else { WRITE_STALL };
            tokio::select! {
                biased;
                ready = self.tcp.writable() => ready?,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                () = self.wake.notified(), if !ended => continue,
            }
            match self.tcp.try_write(&bytes[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    at += n;
                    progressed = tokio::time::Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The socket back, once the room has let go of it (its walk over the streams holds the
    /// sink for a moment): `None` if it still has not after a while.
    async fn into_tcp(self: Arc<Self>) -> Option<TcpStream> {
        let mut socket = self;
        for _ in 0..1_000 {
            match Arc::try_unwrap(socket) {
                Ok(socket) => return Some(socket.tcp),
                Err(shared) => socket = shared,
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

impl DirectSink for Socket {
    fn frame(&self, version: u64, frame: &Bytes) {
        let mut out = self.out();
        if out.ended || out.failed || out.version.is_some_and(|last| version <= last) {
            return;
        }
        out.version = Some(version);
        if out.partial.is_some() || out.next.is_some() {
            out.next = Some(frame.clone());
            self.wake.notify_one();
            return;
        }
        self.write_now(&mut out, frame);
    }

    fn end(&self) {
        self.out().ended = true;
        self.wake.notify_one();
    }
}

/// `frame` as one HTTP/1.1 chunk (hyper's framing: upper-case hex size, CRLF, the bytes, CRLF).
fn chunk_of(frame: &[u8]) -> Bytes {
    let size = chunk_size_line(frame.len());
    let mut chunk = Vec::with_capacity(size.len() + frame.len() + 2);
    chunk.extend_from_slice(size.as_bytes());
    chunk.extend_from_slice(frame);
    chunk.extend_from_slice(b"\r\n");
    Bytes::from(chunk)
}

/// A chunk's size line: upper-case hex, CRLF (at most 18 bytes, on the stack).
fn chunk_size_line(len: usize) -> SizeLine {
    use std::io::Write;
    let mut line = SizeLine([0; 18], 0);
    let mut cursor = io::Cursor::new(&mut line.0[..]);
    // 16 hex digits and CRLF always fit.
    let _ = write!(cursor, "{len:X}\r\n");
    line.1 = cursor.position() as usize;
    line
}

struct SizeLine([u8; 18], usize);

impl SizeLine {
    fn as_bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }

    fn len(&self) -> usize {
        self.1
    }
}

/// The listener `axum::serve` accepts from: every new connection is sniffed by a task of its
/// own; those not served here come back through a channel, with their bytes put back.
/// A connection is accepted only with a place under the cap ([`Connections`]), which it holds
/// until it closes.
pub struct LeanListener {
    tcp: TcpListener,
    sse: LeanSse,
    handed: mpsc::Receiver<Handed>,
    hand: mpsc::Sender<Handed>,
    connections: Connections,
    /// The place kept for the next connection accepted.
    place: Option<Place>,
}

impl LeanListener {
    pub fn new(tcp: TcpListener, sse: LeanSse, connections: Connections) -> Self {
        let (hand, handed) = mpsc::channel(HANDED_QUEUE);
        Self {
            tcp,
            sse,
            handed,
            hand,
            connections,
            place: None,
        }
    }
}

impl axum::serve::Listener for LeanListener {
    type Io = Rewound;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // At the cap nothing is accepted (new connections wait in the kernel's backlog);
            // connections already accepted still reach hyper.
            let Some(place) = self.place.take() else {
                tokio::select! {
                    biased;
                    Some(handed) = self.handed.recv() => return handed,
                    place = self.connections.reserve() => self.place = Some(place),
                }
                continue;
            };
            tokio::select! {
                biased;
                Some(handed) = self.handed.recv() => {
                    self.place = Some(place);
                    return handed;
                }
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // TCP_NODELAY: a live stream writes one small frame per change, which
                        // Nagle's algorithm would hold back while the previous frame waits for
                        // the browser's delayed ACK; a webhook's answer likewise.
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(error = %e, "TCP_NODELAY not set on a connection");
                        }
                        tokio::spawn(self.sse.clone().connection(
                            stream,
                            peer,
                            self.connections.admit(place),
                            self.hand.clone(),
                        ));
                    }
                    Err(e) => {
                        self.place = Some(place);
                        accept_error(e).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// What `axum::serve`'s own listener does on an accept error: a client's reset is nothing; else
/// (out of file descriptors) log it and wait a second.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A socket with the bytes already read from it in front: hyper reads the request untouched.
/// It holds the connection's place under the cap until hyper (or an upgrade) drops it.
pub struct Rewound {
    prefix: Bytes,
    stream: TcpStream,
    _place: Admitted,
}

impl Rewound {
    fn new(prefix: Bytes, stream: TcpStream, place: Admitted) -> Self {
        Self {
            prefix,
            stream,
            _place: place,
        }
    }
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        let taken = self.prefix.split_to(n);
        buf.put_slice(&taken);
        if self.prefix.is_empty() {
            // Frees the sniffed bytes.
            self.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(head: &str) -> Option<http::request::Parts> {
        events_request(head.as_bytes())
    }

    #[test]
    fn only_a_lone_complete_http11_get_of_the_events_route_is_served_here() {
        let ok = "GET /marketplace/api/events?token=t HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
        assert!(get(ok).is_some());
        for refused in [
            "GET /marketplace/api/events?token=t HTTP/1.0\r\nHost: x\r\n\r\n",
            "HEAD /marketplace/api/events?token=t HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /marketplace/api/events?token=t HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET /marketplace/api/events/?token=t HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /marketplace/api/eventsX HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /marketplace/api/events?token=t HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /marketplace/api/events?token=t HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /marketplace/api/events?token=t HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /marketplace/api/events?token=t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /marketplace/api/events?token=t HTTP/1.1\r\nHost: x\r\n",
            "GET /marketplace/api/events?token=t HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(get(refused).is_none(), "{refused:?}");
        }
    }

    #[test]
    fn the_sniff_stops_as_soon_as_the_bytes_cannot_be_a_live_stream() {
        assert!(head_incomplete(b"GE"));
        assert!(head_incomplete(b"GET /marketplace/api/events?tok"));
        assert!(head_incomplete(
            b"GET /marketplace/api/events HTTP/1.1\r\nHost"
        ));
        assert!(!head_incomplete(b"POST /webhook"));
        assert!(!head_incomplete(b"GET /marketplace/api/eventsX"));
        assert!(!head_incomplete(
            b"GET /marketplace/api/events HTTP/1.1\r\n\r\n"
        ));
        assert!(!head_incomplete(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    }

    /// A connected pair: the server's side wrapped as a served stream's socket.
    async fn pair() -> (Arc<Socket>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let address = listener.local_addr().expect("address");
        let client = TcpStream::connect(address).await.expect("connected");
        let (server, _) = listener.accept().await.expect("accepted");
        server.writable().await.expect("writable");
        (Arc::new(Socket::new(server)), client)
    }

    /// Reads chunks until the body's last one: their payloads.
    async fn chunks(client: &mut TcpStream) -> Vec<Vec<u8>> {
        let mut read = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(client, &mut read)
            .await
            .expect("read");
        let mut chunks = Vec::new();
        let mut rest = &read[..];
        loop {
            let line = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a size line");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).expect("hex"), 16)
                .expect("a size");
            let upper = std::str::from_utf8(&rest[..line]).expect("hex");
            assert_eq!(upper, upper.to_uppercase(), "hyper's upper-case hex");
            rest = &rest[line + 2..];
            if size == 0 {
                assert_eq!(rest, b"\r\n", "the last chunk ends the body");
                return chunks;
            }
            chunks.push(rest[..size].to_vec());
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
    }

    #[tokio::test]
    async fn a_frame_is_written_at_once_as_a_chunk_framed_as_hyper_frames_it() {
        let (socket, mut client) = pair().await;
        socket.frame(0, &Bytes::from_static(b"version 0 is a version"));
        socket.frame(3, &Bytes::from(vec![b'x'; 300]));
        socket.frame(3, &Bytes::from_static(b"a repeat of version 3"));
        socket.frame(2, &Bytes::from_static(b"an older version"));
        assert!(
            socket.out().partial.is_none() && socket.out().next.is_none(),
            "written by the caller, nothing left for the task"
        );
        socket.ping();
        socket.end();
        socket.frame(4, &Bytes::from_static(b"after the end"));
        assert!(matches!(socket.flush().await, Flushed::Finished));
        drop(socket);
        let mut expected = b"16\r\nversion 0 is a version\r\n12C\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 300]);
        expected.extend_from_slice(b"\r\n");
        let mut read = vec![0; expected.len()];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut read)
            .await
            .expect("read");
        assert_eq!(read, expected);
        assert_eq!(chunks(&mut client).await, vec![PING_FRAME.to_vec()]);
    }

    /// A client that stops reading leaves a frame half written. The feed's end (an uninstall,
    /// an expired token, a hand-over) must still end the stream, and free its salon's slot,
    /// instead of waiting on that write for as long as the client likes.
    #[tokio::test]
    async fn a_write_the_client_does_not_take_is_given_up_soon_after_the_feed_ends() {
        let (socket, _client) = pair().await;
        // Far more than the two sides' buffers hold; the client reads nothing.
        socket.frame(1, &Bytes::from(vec![b'x'; 32 * 1024 * 1024]));
        assert!(socket.out().partial.is_some(), "left to the task");
        let ending = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ending.end();
        });
        let started = Instant::now();
        let flushed = tokio::time::timeout(Duration::from_secs(10), socket.flush()).await;
        assert!(
            matches!(flushed, Ok(Flushed::Failed)),
            "the stalled write outlived the feed's end"
        );
        assert!(started.elapsed() < WRITE_STALL, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_client_that_reads_slowly_gets_whole_chunks_in_order_and_the_newest_frame() {
        let (socket, mut client) = pair().await;
        // Far more than the socket's buffers hold while the client reads nothing.
        let frame = |version: u64| {
            let mut frame = format!("id: {version}\n").into_bytes();
            frame.resize(64 * 1024, b'.');
            Bytes::from(frame)
        };
        for version in 1..=200 {
            socket.frame(version, &frame(version));
        }
        assert!(
            socket.out().partial.is_some(),
            "the socket took part of it, the rest is the task's"
        );
        socket.end();
        // The task's, as in `serve`: its socket closes when the body is finished.
        let task = tokio::spawn(async move { matches!(socket.flush().await, Flushed::Finished) });
        let read = chunks(&mut client).await;
        assert!(task.await.expect("flushed"), "the body finished");
        let versions: Vec<u64> = read
            .iter()
            .map(|chunk| {
                assert_eq!(chunk.len(), 64 * 1024, "whole frames only");
                let id = std::str::from_utf8(
                    &chunk[4..chunk.iter().position(|b| *b == b'\n').expect("id")],
                )
                .expect("utf-8");
                id.parse().expect("a version")
            })
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "in order: {versions:?}"
        );
        assert_eq!(versions.last(), Some(&200), "the newest frame arrives");
        assert!(
            versions.len() < 200,
            "frames not begun were replaced by newer ones"
        );
    }
}
