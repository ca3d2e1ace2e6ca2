//! The live channel's lean path (`server/src/http/lean_sse.rs`): a live stream on a fresh
//! connection is served outside hyper with the same bytes the axum route answers, and every
//! other request — refused, malformed, slow, pipelined — gets the route's own answer.
//!
//! The route's answer is read over a connection that already carried a request: only the first
//! request of a connection is looked at by the lean path, so the second is always axum's.

use crate::helpers::{spawn_app, spawn_app_with, TestApp, SALON};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A response as read off the socket: the status line and headers in their order (the date
/// and a generated request id replaced, they differ between any two answers), and the body read
/// so far (a whole body, or a stream's first chunk).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head[0]
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    /// The first frame of a stream: `event:` and the status JSON.
    fn first_frame(&self) -> (String, Value) {
        let text = String::from_utf8_lossy(&self.body);
        let event = text
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .expect("an event line")
            .to_owned();
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line");
        (event, serde_json::from_str(data).expect("status JSON"))
    }
}

struct Connection {
    socket: TcpStream,
    read: Vec<u8>,
}

impl Connection {
    async fn open(app: &TestApp) -> Self {
        let socket = TcpStream::connect(app.address.trim_start_matches("http://"))
            .await
            .expect("connects");
        Self {
            socket,
            read: Vec::new(),
        }
    }

    /// A connection that already carried one request (answered): the next is hyper's.
    async fn reused(app: &TestApp) -> Self {
        let mut connection = Self::open(app).await;
        connection
            .send(b"GET /marketplace/health HTTP/1.1\r\nHost: test\r\n\r\n")
            .await;
        let health = connection.answer().await;
        assert_eq!(health.status(), 200, "{health:?}");
        connection
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.expect("sent");
    }

    /// Reads until `done` says the bytes read so far hold what is wanted (10 s at most).
    async fn read_until(&mut self, done: impl Fn(&[u8]) -> Option<usize>) -> Vec<u8> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = done(&self.read) {
                    return self.read.drain(..end).collect();
                }
                let mut buffer = [0u8; 4096];
                let n = self.socket.read(&mut buffer).await.expect("read");
                assert!(
                    n > 0,
                    "closed early; read {:?}",
                    String::from_utf8_lossy(&self.read)
                );
                self.read.extend_from_slice(&buffer[..n]);
            }
        })
        .await
        .expect("an answer within 10 s")
    }

    /// The status line and headers (the date replaced).
    async fn head(&mut self) -> Vec<String> {
        let head = self
            .read_until(|read| find(read, b"\r\n\r\n").map(|at| at + 4))
            .await;
        let head = String::from_utf8(head).expect("an ASCII head");
        head.trim_end()
            .split("\r\n")
            .map(|line| match line.split_once(": ") {
                Some(("date", _)) => "date: (a date)".to_owned(),
                _ => line.to_owned(),
            })
            .collect()
    }

    /// The head, then the body: a whole `Content-Length` body, or the first chunk of a chunked
    /// one (a live stream's first frame; an error's whole body).
    async fn answer(&mut self) -> Answer {
        let mut answer = Answer {
            head: self.head().await,
            body: Vec::new(),
        };
        if let Some(length) = answer.header("content-length") {
            let length: usize = length.parse().expect("a length");
            answer.body = self
                .read_until(|read| (read.len() >= length).then_some(length))
                .await;
        } else if answer.header("transfer-encoding") == Some("chunked") {
            answer.body = self.chunk().await;
        }
        answer
    }

    /// One chunk of a chunked body: its bytes.
    async fn chunk(&mut self) -> Vec<u8> {
        let size = self
            .read_until(|read| find(read, b"\r\n").map(|at| at + 2))
            .await;
        let size = usize::from_str_radix(String::from_utf8_lossy(&size).trim(), 16)
            .expect("a hex chunk size");
        let chunk = self
            .read_until(|read| (read.len() >= size + 2).then_some(size + 2))
            .await;
        assert!(chunk.ends_with(b"\r\n"), "a chunk ends with CRLF");
        chunk[..size].to_vec()
    }

    /// Everything until the server closes the connection (10 s at most).
    async fn rest(&mut self) -> Vec<u8> {
        tokio::time::timeout(WAIT, async {
            let mut rest = std::mem::take(&mut self.read);
            let _ = self.socket.read_to_end(&mut rest).await;
            rest
        })
        .await
        .expect("the connection closes within 10 s")
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn events(token: &str, extra: &str) -> Vec<u8> {
    format!("GET /marketplace/api/events?token={token} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{extra}\r\n").into_bytes()
}

/// The answer to `request` on a fresh connection and on a reused one (the axum route's), and
/// how many streams the lean path served meanwhile.
async fn both(app: &TestApp, request: &[u8]) -> (Answer, Answer, usize) {
    let mut fresh = Connection::open(app).await;
    fresh.send(request).await;
    let lean = fresh.answer().await;
    let served = app.handles.lean_sse.streams();
    let mut reused = Connection::reused(app).await;
    reused.send(request).await;
    let routed = reused.answer().await;
    (lean, routed, served)
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_fresh_connection_is_served_outside_hyper_with_the_routes_exact_head() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    for extra in [
        "X-Request-Id: req-42\r\n",
        "X-Request-Id: req-43\r\nOrigin: https://n962302.yclients.com\r\n",
        "X-Request-Id: req-44\r\nOrigin: https://evil.example\r\nConnection: keep-alive\r\n",
        "X-Request-Id: req-45\r\nAccept-Encoding: gzip, br\r\nLast-Event-ID: 1\r\n",
    ] {
        let mut lean_connection = Connection::open(&app).await;
        lean_connection.send(&events(&token, extra)).await;
        let lean = lean_connection.answer().await;
        assert_eq!(app.handles.lean_sse.streams(), 1, "served outside hyper");
        let mut routed_connection = Connection::reused(&app).await;
        routed_connection.send(&events(&token, extra)).await;
        let routed = routed_connection.answer().await;
        assert_eq!(
            app.handles.lean_sse.streams(),
            1,
            "the reused one is axum's"
        );
        assert_eq!(lean.status(), 200, "{lean:?}");
        assert_eq!(
            lean.head, routed.head,
            "byte for byte but the date ({extra:?})"
        );
        // The first frame: a snapshot of this salon, its id the status version — also when the
        // browser resumes with `Last-Event-ID` (the snapshot holds everything missed).
        let (event, status) = lean.first_frame();
        let (routed_event, routed_status) = routed.first_frame();
        assert_eq!(
            (event.as_str(), routed_event.as_str()),
            ("snapshot", "snapshot")
        );
        assert_eq!(status["salon_id"], SALON);
        assert_eq!(routed_status["salon_id"], SALON);
        let text = String::from_utf8_lossy(&lean.body).into_owned();
        assert!(
            text.starts_with(&format!(
                "event: snapshot\nid: {}\ndata: ",
                status["version"]
            )),
            "{text}"
        );
        assert!(text.ends_with("\n\n"));
        drop(lean_connection);
        wait_for("the closed stream is released", || {
            app.handles.lean_sse.streams() == 0
        })
        .await;
    }
    // Without an id of its own, the request gets a new one, as `SetRequestIdLayer` gives.
    let mut connection = Connection::open(&app).await;
    connection.send(&events(&token, "")).await;
    let lean = connection.answer().await;
    let id = lean.header("x-request-id").expect("an id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

/// An onboarding token signed with the test secret that expired an hour ago.
fn expired_token() -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({
            "sub": SALON.to_string(), "aud": "ai-admin-onboarding", "iss": "ai-admin-connect",
            "scope": "onboarding", "iat": now - 7200, "exp": now - 3600, "jti": "j", "generation": 0,
        }),
        &jsonwebtoken::EncodingKey::from_secret(b"test-jwt-secret-that-is-long-enough-for-hs256"),
    )
    .expect("signed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_lean_path_does_not_serve_gets_the_routes_own_answer() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let expired = expired_token();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("no token", events("", ""), 401),
        ("a forged token", events("abc.def.ghi", ""), 401),
        ("an expired token", events(&expired, ""), 401),
        (
            "a forged token in the header",
            b"GET /marketplace/api/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer x.y.z\r\n\r\n".to_vec(),
            401,
        ),
        (
            "a POST",
            format!("POST /marketplace/api/events?token={token} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            405,
        ),
        (
            "HTTP/1.0",
            format!("GET /marketplace/api/events?token={token} HTTP/1.0\r\nHost: t\r\n\r\n").into_bytes(),
            200,
        ),
        ("Connection: close", events(&token, "Connection: close\r\n"), 200),
        (
            "a path beside the route",
            format!("GET /marketplace/api/events/?token={token} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes(),
            404,
        ),
    ];
    for (what, request, status) in cases {
        let (lean, routed, served) = both(&app, &request).await;
        assert_eq!(served, 0, "{what}: not served outside hyper");
        assert_eq!(lean.status(), status, "{what}: {lean:?}");
        if status == 200 {
            // Two streams: the same head (ids are new per request), frames of the moment.
            let strip = |answer: &Answer| -> Vec<String> {
                answer
                    .head
                    .iter()
                    .filter(|l| !l.starts_with("x-request-id"))
                    .cloned()
                    .collect()
            };
            assert_eq!(strip(&lean), strip(&routed), "{what}");
        } else {
            let strip = |answer: &Answer| -> Answer {
                Answer {
                    head: answer
                        .head
                        .iter()
                        .filter(|l| !l.starts_with("x-request-id"))
                        .cloned()
                        .collect(),
                    body: answer.body.clone(),
                }
            };
            assert_eq!(strip(&lean), strip(&routed), "{what}");
        }
    }
    // A HEAD: the route's head (and no body).
    let head = format!("HEAD /marketplace/api/events?token={token} HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut fresh = Connection::open(&app).await;
    fresh.send(head.as_bytes()).await;
    let lean = fresh.head().await;
    let mut reused = Connection::reused(&app).await;
    reused.send(head.as_bytes()).await;
    let routed = reused.head().await;
    assert_eq!(
        app.handles.lean_sse.streams(),
        0,
        "a HEAD is not served outside hyper"
    );
    let strip = |head: Vec<String>| -> Vec<String> {
        head.into_iter()
            .filter(|l| !l.starts_with("x-request-id"))
            .collect()
    };
    assert_eq!(strip(lean), strip(routed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_salon_is_refused_as_the_route_refuses_and_a_closed_stream_frees_its_slot_at_once() {
    let app = spawn_app_with(|vars| {
        vars.insert("SSE_MAX_STREAMS_PER_SALON".into(), "1".into());
    })
    .await;
    let token = app.enter(SALON).await;
    let mut first = Connection::open(&app).await;
    first.send(&events(&token, "")).await;
    assert_eq!(first.answer().await.status(), 200);
    assert_eq!(app.handles.lean_sse.streams(), 1);
    let (lean, routed, _) = both(&app, &events(&token, "X-Request-Id: r\r\n")).await;
    assert_eq!(lean.status(), 429, "{lean:?}");
    assert_eq!(lean.header("retry-after"), Some("5"));
    assert_eq!(lean, routed, "the route's 429, byte for byte but the date");
    // The browser goes away: its slot is free without waiting for a frame to fail.
    drop(first);
    wait_for("the slot freed", || {
        app.handles.lean_sse.streams() == 0 && app.handles.bus.live_subscriber_count() == 0
    })
    .await;
    let mut again = Connection::open(&app).await;
    again.send(&events(&token, "")).await;
    assert_eq!(again.answer().await.status(), 200);
    assert_eq!(app.handles.lean_sse.streams(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_ends_the_stream_its_connection_goes_on_and_the_old_token_gets_the_routes_401()
{
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let mut open = Connection::open(&app).await;
    open.send(&events(&token, "")).await;
    assert_eq!(open.answer().await.status(), 200);
    assert_eq!(app.handles.lean_sse.streams(), 1);
    app.apply_lifecycle(SALON, "uninstall").await;
    // The feed ends: the chunked body is finished (frames sent before may come first) …
    loop {
        if open.chunk().await.is_empty() {
            break;
        }
    }
    // … and the connection is a keep-alive one: its next request is answered.
    open.send(b"GET /marketplace/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(open.answer().await.status(), 200);
    let (lean, routed, served) = both(&app, &events(&token, "X-Request-Id: r\r\n")).await;
    assert_eq!(served, 0);
    assert_eq!(lean.status(), 401, "{lean:?}");
    assert_eq!(lean, routed);
    assert!(
        String::from_utf8_lossy(&lean.body).contains("revoked"),
        "{lean:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_in_two_writes_is_served_outside_hyper_and_a_stalled_one_goes_to_hyper() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let request = events(&token, "X-Request-Id: split\r\n");
    let (first, rest) = request.split_at(request.len() / 2);
    let mut split = Connection::open(&app).await;
    split.send(first).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    split.send(rest).await;
    assert_eq!(split.answer().await.status(), 200);
    assert_eq!(app.handles.lean_sse.streams(), 1, "served outside hyper");

    // A slowloris head: the sniff gives up within a second and hands it to hyper, which serves
    // it when it is complete — no task waits for it on the lean side.
    let mut slow = Connection::open(&app).await;
    slow.send(first).await;
    wait_for("the sniff started", || app.handles.lean_sse.sniffing() == 1).await;
    let sniffing_since = tokio::time::Instant::now();
    wait_for("the sniff gave up", || app.handles.lean_sse.sniffing() == 0).await;
    assert!(sniffing_since.elapsed() < Duration::from_secs(3));
    slow.send(rest).await;
    assert_eq!(slow.answer().await.status(), 200);
    assert_eq!(app.handles.lean_sse.streams(), 1, "the slow one is axum's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_request_behind_the_stream_leaves_the_connection_to_hyper() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let mut request = events(&token, "");
    request.extend_from_slice(b"GET /marketplace/health HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut connection = Connection::open(&app).await;
    connection.send(&request).await;
    let answer = connection.answer().await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.first_frame().0, "snapshot");
    assert_eq!(app.handles.lean_sse.streams(), 0, "hyper's, as before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_streams_served_outside_hyper_which_are_counted_as_requests() {
    let mut app = spawn_app().await;
    let token = app.enter(SALON).await;
    let mut connection = Connection::open(&app).await;
    connection.send(&events(&token, "")).await;
    assert_eq!(connection.answer().await.status(), 200);
    assert_eq!(app.handles.lean_sse.streams(), 1);
    // Counted as the route counts its requests (no other stream was opened in this app).
    assert!(
        app.metrics().await.contains(
            "ai_admin_http_request_duration_seconds_count{route=\"/marketplace/api/events\",method=\"GET\",status=\"2xx\"} 1"
        ),
        "the request's duration is recorded"
    );
    app.stop().await;
    assert_eq!(app.handles.lean_sse.streams(), 0);
    let rest = connection.rest().await;
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "the body is finished, then the connection closed: {:?}",
        String::from_utf8_lossy(&rest)
    );
}
