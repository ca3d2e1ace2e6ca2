//! Limits before work: the redirect's query is bounded before it is parsed, and the redirect, the
//! admin's actions and the live channel are rate limited with `429` and `Retry-After`.

use crate::helpers::{
    salon, spawn_app, spawn_app_with, TestApp, OTHER_SALON, PARTNER_TOKEN, SALON,
};
use app::status::LiveEventKind;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yclients::signature::sign;

const USER: &str = r#"{"id":100500,"name":"Андрей Иванов"}"#;

/// `salon_ids=1,2,3,…` up to `bytes` long, signed like a real redirect.
fn many_ids(bytes: usize) -> String {
    let mut query = String::from("salon_ids=");
    let mut id = 1u64;
    while query.len() < bytes {
        query.push_str(&format!("{id},"));
        id += 1;
    }
    let data = base64::engine::general_purpose::STANDARD.encode(USER);
    let signature = sign(PARTNER_TOKEN, USER.as_bytes());
    let data: String = form_urlencoded::byte_serialize(data.as_bytes()).collect();
    format!("{query}&user_data={data}&user_data_sign={signature}")
}

fn ids(count: usize) -> String {
    (1..=count)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The app with these settings on top of the test defaults.
async fn app_with(settings: &[(&str, &str)]) -> TestApp {
    spawn_app_with(|vars| {
        for (name, value) in settings {
            vars.insert((*name).to_owned(), (*value).to_owned());
        }
    })
    .await
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in whole seconds")
}

async fn health_is_fast(app: &TestApp) -> Duration {
    let started = Instant::now();
    let response = app.get("/marketplace/health").await;
    assert_eq!(response.status(), StatusCode::OK, "health answers");
    started.elapsed()
}

/// Sends a GET for `path_and_query` over a raw connection (reqwest, like `http::Uri`, refuses to
/// build a URI over 64 KiB): half of it, `meanwhile`, the rest. Returns the status the server
/// answered and what `meanwhile` gave.
async fn raw_get<F: std::future::Future>(
    address: &str,
    path_and_query: &str,
    meanwhile: F,
) -> (u16, F::Output) {
    let address = address.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let (first, rest) = request.as_bytes().split_at(request.len() / 2);
    socket.write_all(first).await.expect("first half sent");
    let output = meanwhile.await;
    socket.write_all(rest).await.expect("second half sent");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut buffer = [0u8; 4096];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("an answer within 20 s");
    let line = String::from_utf8_lossy(&answer);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line, got «{line}»"));
    (status, output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_query_is_refused_at_once_while_health_stays_fast() {
    let app = app_with(&[("RATE_LIMIT_REDIRECT_BURST", "100")]).await;
    // 350 KB: longer than any URI hyper accepts (64 KiB), so hyper refuses it before our code.
    let huge = format!("/auth/yclients/redirect?{}", many_ids(350_000));
    // 40 KB: reaches our handler, which refuses it unread. Before the bound, its 7,000 signed ids
    // went through a quadratic dedup and into a branch picker asking YClients about each.
    let long = format!("/auth/yclients/redirect?{}", many_ids(40_000));

    let started = Instant::now();
    let (status, health) = raw_get(&app.address, &huge, health_is_fast(&app)).await;
    println!(
        "350 KB query, sent in two halves: {status} after {:?}; health between the halves in {health:?}",
        started.elapsed()
    );
    assert!((400..500).contains(&status), "a 4xx, got {status}");

    let started = Instant::now();
    let (status, health) = raw_get(&app.address, &long, health_is_fast(&app)).await;
    println!(
        "40 KB query, sent in two halves: {status} after {:?}; health between the halves in {health:?}",
        started.elapsed()
    );
    assert_eq!(status, 414);

    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for path in [&huge, &huge, &huge, &long, &long, &long] {
        let (address, path) = (app.address.clone(), path.clone());
        in_flight.spawn(async move { raw_get(&address, &path, std::future::ready(())).await.0 });
    }
    for _ in 0..5 {
        let health = health_is_fast(&app).await;
        println!("health while oversized redirects are in flight: {health:?}");
    }
    while let Some(answer) = in_flight.join_next().await {
        let status = answer.expect("request task");
        assert!((400..500).contains(&status), "a 4xx, got {status}");
    }
    println!(
        "six oversized redirects answered in {:?}",
        started.elapsed()
    );

    let ours = app.get(&long).await;
    assert_eq!(ours.status(), StatusCode::URI_TOO_LONG);
    let html = ours.text().await.expect("html");
    assert!(html.contains("lang=\"ru\""));
    assert!(html.contains("Ссылка повреждена") && html.contains("слишком длинная"));
    assert!(html.contains("«Подключить»"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_branches_are_read_and_fifty_one_are_refused() {
    let app = spawn_app().await;
    let too_many = app
        .redirect_with_query(&format!("salon_ids={}", ids(51)))
        .await;
    assert_eq!(too_many.status(), StatusCode::BAD_REQUEST);
    let html = too_many.text().await.expect("html");
    assert!(html.contains("Слишком много филиалов в ссылке"), "{html}");
    // Fifty are parsed and go on to the next check (this link is unsigned: 403).
    let fifty = app
        .redirect_with_query(&format!("salon_ids={}", ids(50)))
        .await;
    assert_ne!(fifty.status(), StatusCode::BAD_REQUEST);
    assert_eq!(fifty.status(), StatusCode::FORBIDDEN);
}

async fn redirect_from(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url("/auth/yclients/redirect?salon_id=abc"));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("X-Forwarded-For", forwarded_for);
    }
    request.send().await.expect("redirect sent")
}

async fn assert_limited(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&response);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let html = response.text().await.expect("html");
    assert!(html.contains("lang=\"ru\""));
    assert!(html.contains("Слишком много попыток"), "{html}");
    assert!(html.contains(&format!("Подождите {wait} секунд")), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_is_limited_per_client_and_a_forged_forwarded_for_does_not_reset_it() {
    let app = app_with(&[
        ("RATE_LIMIT_REDIRECT_PER_MINUTE", "1"),
        ("RATE_LIMIT_REDIRECT_BURST", "3"),
    ])
    .await;
    for _ in 0..3 {
        let response = redirect_from(&app, None).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "within the burst"
        );
    }
    assert_limited(redirect_from(&app, None).await).await;
    // No TRUSTED_PROXY: X-Forwarded-For is the client's own word and changes nothing.
    assert_limited(redirect_from(&app, Some("198.51.100.7")).await).await;
    // Other routes are not touched by the redirect's budget.
    health_is_fast(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = app_with(&[
        ("RATE_LIMIT_REDIRECT_PER_MINUTE", "1"),
        ("RATE_LIMIT_REDIRECT_BURST", "2"),
        ("TRUSTED_PROXY", "127.0.0.1"),
    ])
    .await;
    for _ in 0..2 {
        let response = redirect_from(&app, Some("203.0.113.1")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    assert_limited(redirect_from(&app, Some("203.0.113.1")).await).await;
    // Only the last hop, the one our proxy appended, counts: a prepended address does not help.
    assert_limited(redirect_from(&app, Some("203.0.113.2, 203.0.113.1")).await).await;
    let other = redirect_from(&app, Some("203.0.113.2")).await;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST, "another client");
    let proxy_itself = redirect_from(&app, None).await;
    assert_eq!(proxy_itself.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_limited_per_salon_and_polling_is_not() {
    // PAIR_CODE_*: the supervisor's own pair-code pacing out of the way, to see this limit alone.
    let app = app_with(&[
        ("RATE_LIMIT_ACTIONS_PER_MINUTE", "2"),
        ("PAIR_CODE_COOLDOWN_SECS", "0"),
        ("PAIR_CODE_TTL_SECS", "0"),
        ("SIMULATOR_FIRST_QR_TTL_MS", "60000"),
    ])
    .await;
    let token = app.enter(SALON).await;
    let other = app.enter(OTHER_SALON).await;
    app.current_qr(SALON).await;
    app.current_qr(OTHER_SALON).await;
    let app = &app;
    for endpoint in [
        "onboarding/restart",
        "onboarding/retry-activation",
        "onboarding/pairing-code",
    ] {
        let call = |token: &str| {
            let token = token.to_owned();
            async move {
                app.server_fn(endpoint, &[("token", &token), ("phone", "+79990009900")])
                    .await
            }
        };
        for attempt in 1..=2 {
            let response = call(&token).await;
            assert_eq!(response.status(), StatusCode::OK, "{endpoint} #{attempt}");
        }
        let limited = call(&token).await;
        assert_eq!(
            limited.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{endpoint} #3"
        );
        let wait = retry_after(&limited);
        assert!((1..=60).contains(&wait), "{endpoint}: Retry-After {wait}");
        let error: Value = limited.json().await.expect("JSON error");
        assert_eq!(
            error["TooManyRequests"]["retry_after_secs"], wait,
            "{endpoint}: {error}"
        );
        let elsewhere = call(&other).await;
        assert_eq!(
            elsewhere.status(),
            StatusCode::OK,
            "{endpoint}: another salon is unaffected"
        );
    }
    for _ in 0..5 {
        for endpoint in ["onboarding/status", "onboarding/activate"] {
            let response = app.server_fn(endpoint, &[("token", &token)]).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{endpoint} is not limited"
            );
        }
    }
}

async fn open_stream(app: &TestApp, token: &str) -> reqwest::Response {
    app.get(&format!("/marketplace/api/events?token={token}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped_per_salon_and_a_closed_one_frees_its_slot() {
    let app = app_with(&[("SSE_MAX_STREAMS_PER_SALON", "3")]).await;
    let token = app.enter(SALON).await;
    let other = app.enter(OTHER_SALON).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let stream = open_stream(&app, &token).await;
        assert_eq!(stream.status(), StatusCode::OK);
        open.push(stream);
    }
    let refused = open_stream(&app, &token).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&refused) >= 1);
    let error: Value = refused.json().await.expect("JSON error");
    assert_eq!(error["success"], false);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("live streams")),
        "{error}"
    );
    let elsewhere = open_stream(&app, &other).await;
    assert_eq!(elsewhere.status(), StatusCode::OK, "another salon connects");

    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        // A change makes the server write, which is when it notices the closed connection.
        app.handles
            .bus
            .publish(salon(SALON), LiveEventKind::WhatsappState);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let attempt = open_stream(&app, &token).await;
        if attempt.status() == StatusCode::OK {
            break attempt;
        }
        assert_eq!(attempt.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            Instant::now() < deadline,
            "the closed stream's slot was not freed"
        );
    };
    open.push(reopened);
    let full_again = open_stream(&app, &token).await;
    assert_eq!(full_again.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// What a connection sent within `wait` (and whether it was closed by then).
async fn read_for(socket: &mut tokio::net::TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A connection that never finishes a request head (slowloris), never sends one, or sits idle
/// after its last answer is closed once `HTTP_HEADER_TIMEOUT_MS` has passed: before, hyper had no
/// timer and held each for as long as the client liked, so enough of them took every file
/// descriptor and with them every salon's webhooks. A live stream through hyper (the second
/// request of a connection) is not a head being read and stays open past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_a_request_head_are_closed_and_live_streams_are_not() {
    let app = app_with(&[("HTTP_HEADER_TIMEOUT_MS", "1500")]).await;
    let token = app.enter(SALON).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let connect = || tokio::net::TcpStream::connect(address.clone());
    let health = b"GET /marketplace/health HTTP/1.1\r\nHost: t\r\n\r\n";

    let mut silent = connect().await.expect("connects");
    let mut unfinished = connect().await.expect("connects");
    unfinished
        .write_all(b"GET /marketplace/health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("sent");
    let mut idle = connect().await.expect("connects");
    idle.write_all(health).await.expect("sent");
    let (answer, closed) = read_for(&mut idle, Duration::from_millis(700)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200") && !closed,
        "health answered and kept alive"
    );
    let mut streaming = connect().await.expect("connects");
    streaming.write_all(health).await.expect("sent");
    let _ = read_for(&mut streaming, Duration::from_millis(700)).await;
    streaming
        .write_all(
            format!("GET /marketplace/api/events?token={token} HTTP/1.1\r\nHost: t\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("sent");
    let (head, closed) = read_for(&mut streaming, Duration::from_millis(700)).await;
    assert!(
        head.starts_with(b"HTTP/1.1 200") && !closed,
        "a live stream through hyper: {}",
        String::from_utf8_lossy(&head)
    );

    // The lean path's sniff lets a silent connection go to hyper after a second; then hyper's
    // 1.5 s. Four seconds is past both, with room for a loaded machine.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (what, socket) in [
        ("a connection that sent nothing", &mut silent),
        ("an unfinished request head", &mut unfinished),
        ("an idle keep-alive connection", &mut idle),
    ] {
        let (_, closed) = read_for(socket, Duration::from_secs(2)).await;
        assert!(closed, "{what} was still held after the head's timeout");
    }
    app.handles
        .bus
        .publish(salon(SALON), LiveEventKind::WhatsappState);
    let (frames, closed) = read_for(&mut streaming, Duration::from_millis(700)).await;
    assert!(
        !closed && !frames.is_empty(),
        "the live stream through hyper stays open and delivers past the head's timeout"
    );
    // And the server still answers.
    assert_eq!(
        app.get("/marketplace/health").await.status(),
        StatusCode::OK
    );
}

/// The first bytes a connection is sent within `wait`, if any.
async fn first_answer(socket: &mut tokio::net::TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut buffer = [0u8; 4096];
    match tokio::time::timeout(wait, socket.read(&mut buffer)).await {
        Ok(Ok(n)) if n > 0 => Some(buffer[..n].to_vec()),
        _ => None,
    }
}

/// The connections served at once are capped (`HTTP_MAX_CONNECTIONS`): past the cap a new
/// connection waits to be accepted until another closes, instead of taking the file descriptors
/// the rest of the process needs (its database connections, every salon's WhatsApp socket).
/// Before, every connection was accepted, however many. A live stream on the lean path holds its
/// place for as long as it is open, and gives it back when it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = app_with(&[
        ("HTTP_MAX_CONNECTIONS", "3"),
        ("HTTP_HEADER_TIMEOUT_MS", "1000"),
    ])
    .await;
    let token = app.enter(SALON).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("ai_admin_http_connections_max 3"),
        "the cap is reported: {metrics}"
    );
    // The test client's idle keep-alive connections are closed by the app after a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let connect = || tokio::net::TcpStream::connect(address.clone());
    let events = format!("GET /marketplace/api/events?token={token} HTTP/1.1\r\nHost: t\r\n\r\n");
    let health = b"GET /marketplace/health HTTP/1.1\r\nHost: t\r\n\r\n";

    // The metrics count the connections open: only the one asking (not the place the listener
    // keeps for the next connection).
    let mut asking = connect().await.expect("connects");
    asking
        .write_all(b"GET /marketplace/metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("sent");
    let mut metrics = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), asking.read_to_end(&mut metrics))
        .await
        .expect("answered in time")
        .expect("read");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics
            .lines()
            .any(|line| line == "ai_admin_http_connections 1"),
        "one connection open: {metrics}"
    );
    drop(asking);

    let mut streams = Vec::new();
    for n in 1..=3 {
        let mut stream = connect().await.expect("connects");
        stream.write_all(events.as_bytes()).await.expect("sent");
        let head = first_answer(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("live stream {n} under the cap was not answered"));
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "live stream {n}: {}",
            String::from_utf8_lossy(&head)
        );
        streams.push(stream);
    }

    // The kernel completes the handshake (the listener's backlog); the app does not take it.
    let mut waiting = connect().await.expect("connects");
    waiting.write_all(health).await.expect("sent");
    assert!(
        first_answer(&mut waiting, Duration::from_millis(1500))
            .await
            .is_none(),
        "a connection past the cap was served"
    );

    // One stream closes: the waiting connection takes its place and is answered.
    drop(streams.remove(0));
    let answer = first_answer(&mut waiting, Duration::from_secs(5))
        .await
        .expect("the waiting connection is served once a place is free");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Every place given back: the app serves as before.
    drop(streams);
    drop(waiting);
    assert_eq!(
        app.get("/marketplace/health").await.status(),
        StatusCode::OK
    );
}
