//! What one salon's hostile input, or one token holder, can reach beyond what they own: another
//! salon's webhooks, a client who opted out. Found by an audit read as an attacker (2026-12-06);
//! each test failed on the code before its fix. (The same audit's findings about the next
//! installation and an unconfirmed number are booking-message tests, in `messages.rs`.)

use crate::helpers::{phone, salon, spawn_app, spawn_app_with, OTHER_SALON, SALON};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

fn booking(salon_id: i64, id: i64, datetime: &str, client_phone: &str) -> Value {
    json!({"company_id": salon_id, "resource": "record", "resource_id": id, "status": "create",
        "data": {"id": id, "company_id": salon_id, "staff_id": 5, "datetime": datetime,
            "services": [{"id": 1, "title": "Стрижка"}], "staff": {"id": 5, "name": "Анна"},
            "client": {"id": 9, "name": "Мария", "phone": client_phone, "email": ""},
            "attendance": 0, "confirmed": 1, "deleted": false, "comment": "", "online": true}})
}

/// One salon's `record` webhook whose `datetime` is the earliest date chrono parses
/// (`%Y` takes a signed year) must be stored or refused — not stop the webhook writer, which
/// every salon's entity webhooks go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_record_datetime_does_not_stop_other_salons_webhooks() {
    let app = spawn_app().await;
    let (_, webhook_a) = app.activate_with(SALON, "79990009900").await;
    let (_, webhook_b) = app.activate_with(OTHER_SALON, "79990009911").await;
    let before = app
        .post_json(
            &webhook_b,
            &booking(OTHER_SALON, 1, "2026-12-20T12:00:00+03:00", "79161230001"),
        )
        .await;
    assert_eq!(before.status(), StatusCode::OK, "salon B's webhook works");

    // A few bookings, so that every writer lane (3 on PostgreSQL, 1 on SQLite) gets one.
    let mut hostile_status = StatusCode::OK;
    for id in 2..=21 {
        let hostile = app
            .post_json(
                &webhook_a,
                &booking(SALON, id, "-262143-01-01 12:00:00", "79161230002"),
            )
            .await;
        let status = hostile.status();
        eprintln!(
            "hostile record {id} of salon A: {status} {}",
            hostile.text().await.unwrap_or_default()
        );
        if !status.is_success() && !status.is_client_error() {
            hostile_status = status;
        }
    }

    // Salon B's next booking, a moment later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = app
        .post_json(
            &webhook_b,
            &booking(OTHER_SALON, 3, "2026-12-21T12:00:00+03:00", "79161230003"),
        )
        .await;
    let after_status = after.status();
    let body = after.text().await.unwrap_or_default();
    eprintln!("salon B's webhook after A's: {after_status} {body}");
    eprintln!("health meanwhile: {}", app.health().await["status"]);
    assert_eq!(
        after_status,
        StatusCode::OK,
        "salon B's webhooks still stored after salon A's hostile record: {body}"
    );
    assert!(
        hostile_status.is_success() || hostile_status.is_client_error(),
        "salon A's hostile record stored or refused with a 4xx, not {hostile_status}"
    );
}

/// A client who wrote «СТОП» gets no further messages from the salon — also not a "test
/// message" a token holder aims at their number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_message_does_not_reach_an_opted_out_client() {
    let app = spawn_app().await;
    let (token, _) = app.activate_with(SALON, "79990009900").await;
    let client = "79161234567";
    app.simulator
        .reply(salon(SALON), phone(client), "СТОП")
        .expect("the client writes to the salon");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .count(&format!(
            "SELECT COUNT(*) FROM message_opt_outs WHERE salon_id = {SALON} AND phone = '{client}'"
        ))
        .await
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "opt-out recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = app
        .server_fn(
            "onboarding/test-message",
            &[("token", token.as_str()), ("phone", client)],
        )
        .await;
    let status = response.status();
    let said = response.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "refused, and said why: {said}"
    );
    assert!(said.contains("СТОП"), "{said}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts: Vec<String> = app
        .inbox(client)
        .into_iter()
        .filter(|t| !t.contains("отписались"))
        .collect();
    assert!(
        texts.is_empty(),
        "the opted-out client received from the salon after «СТОП»: {texts:?}"
    );
}

/// PostgreSQL refuses timestamps before 4713 BC: a `record` whose `datetime` is in year -5000
/// fails its whole group-commit batch, so another salon's event committed in the same batch is
/// refused too (a wide batch window makes the two share a batch every time; under load the
/// default 2 ms window does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_postgresql_cannot_store_does_not_fail_other_salons_events() {
    let app = crate::helpers::spawn_app_with(|env| {
        env.insert("ENTITY_WEBHOOK_BATCH_WINDOW_US".into(), "300000".into());
        env.insert("ENTITY_WEBHOOK_WRITERS".into(), "1".into());
    })
    .await;
    if !app.on_postgres() {
        return;
    }
    let (_, webhook_a) = app.activate_with(SALON, "79990009900").await;
    let (_, webhook_b) = app.activate_with(OTHER_SALON, "79990009911").await;
    let hostile = booking(SALON, 2, "-5000-01-01 12:00:00", "79161230002");
    let fine = booking(OTHER_SALON, 3, "2026-12-21T12:00:00+03:00", "79161230003");
    let (a, b) = tokio::join!(
        app.post_json(&webhook_a, &hostile),
        app.post_json(&webhook_b, &fine)
    );
    let (a, b) = (a.status(), b.status());
    eprintln!("salon A's record of year -5000: {a}; salon B's ordinary record: {b}");
    // YClients retries twice, 1.5 s apart: the same answers each time.
    for _ in 0..2 {
        let again = app.post_json(&webhook_a, &hostile).await;
        eprintln!(
            "salon A's record again: {} {}",
            again.status(),
            again.text().await.unwrap_or_default()
        );
    }
    assert_eq!(b, StatusCode::OK, "salon B's event was stored");
    assert!(
        a.is_success() || a.is_client_error(),
        "salon A's record stored or refused with a 4xx, not {a}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_messages_are_bounded_per_day_not_only_per_minute() {
    // The test message's text is fixed, but its number is the token holder's choice, and only a
    // per-minute limit (12) bounded it: a forwarded or leaked link could have the salon's
    // WhatsApp write to ~17,000 strangers a day and get the salon's number banned.
    let app = spawn_app_with(|vars| {
        vars.insert("MESSAGES_TEST_DAILY_CAP".into(), "2".into());
        vars.insert("RATE_LIMIT_ACTIONS_PER_MINUTE".into(), "100".into());
    })
    .await;
    let (token, _) = app.activate_with(SALON, "79990009900").await;
    let send = |to: &'static str| {
        let token = token.clone();
        let app = &app;
        async move {
            app.server_fn(
                "onboarding/test-message",
                &[("token", token.as_str()), ("phone", to)],
            )
            .await
        }
    };
    for to in ["79161230001", "79161230002"] {
        assert_eq!(
            send(to).await.status(),
            StatusCode::OK,
            "within the day's bound"
        );
    }
    let refused = send("79161230003").await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let said = refused.text().await.unwrap_or_default();
    assert!(said.contains("завтра"), "said why: {said}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.inbox("79161230003").is_empty(),
        "the third stranger got nothing"
    );
}

/// A stand-in for YClients (a misconfigured `YCLIENTS_API_URL`, a proxy, anyone in the middle)
/// whose every answer is a valid envelope after `size` bytes of JSON whitespace, with its length
/// declared or chunked; returns how many bytes the client took over all its attempts, and its
/// answer.
async fn huge_answer(size: usize, declared: bool) -> (usize, String) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let taken = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    let server = tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.expect("a connection");
            let taken = counted.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let tail = br#"{"success":true,"data":{"connection_status":{"status":"active"}},"meta":[]}"#;
                let framing = if declared {
                    format!("Content-Length: {}", size + tail.len())
                } else {
                    "Transfer-Encoding: chunked".to_owned()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let frame = |bytes: &[u8]| {
                    if declared {
                        return bytes.to_vec();
                    }
                    let mut framed = format!("{:X}\r\n", bytes.len()).into_bytes();
                    framed.extend_from_slice(bytes);
                    framed.extend_from_slice(b"\r\n");
                    framed
                };
                let chunk = vec![b' '; 64 * 1024];
                let mut written = 0usize;
                while written < size {
                    let bytes = frame(&chunk);
                    if socket.write_all(&bytes).await.is_err() {
                        return;
                    }
                    written += bytes.len();
                    taken.fetch_add(bytes.len(), Ordering::Relaxed);
                }
                let mut end = frame(tail);
                if !declared {
                    end.extend_from_slice(b"0\r\n\r\n");
                }
                if socket.write_all(&end).await.is_ok() {
                    taken.fetch_add(end.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let client = yclients::YClientsClient::new(
        &url,
        secrecy::SecretString::from(crate::helpers::PARTNER_TOKEN),
        Duration::from_secs(10),
        5,
    )
    .expect("client");
    let answer = client.installation_status(SALON, 1001).await;
    server.abort();
    (taken.load(Ordering::Relaxed), format!("{answer:?}"))
}

/// The YClients client read whatever body an answer had, bounded only by the call's timeout: an
/// answer from a misconfigured URL, a proxy or anyone in the middle made the process hold it
/// whole (a 128 MiB answer was read and accepted) — and the entry, the lifecycle worker, the
/// outbox and the frozen check all call it. An answer over 1 MiB is now refused unread: on its
/// declared length at once, or as it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_from_yclients_is_refused_not_read_whole() {
    for declared in [true, false] {
        let (written, answer) = huge_answer(128 * 1024 * 1024, declared).await;
        assert!(
            written < 48 * 1024 * 1024 && answer.contains("TooLarge"),
            "declared {declared}: the client took {} MiB; its answer: {answer}",
            written / (1024 * 1024)
        );
    }
    // An answer of an ordinary size still reads.
    let (_, answer) = huge_answer(64 * 1024, false).await;
    assert!(answer.contains("Active"), "{answer}");
}
