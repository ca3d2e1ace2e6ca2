use crate::helpers::{spawn_app, OTHER_SALON, SALON};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

async fn next_event(
    stream: &mut (impl futures::Stream<Item = Result<eventsource_stream::Event, impl std::fmt::Debug>>
              + Unpin),
) -> eventsource_stream::Event {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("well-formed event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_channel_sends_the_snapshot_then_this_salons_changes_only() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let _other = app.enter(OTHER_SALON).await;
    let response = app
        .get(&format!("/marketplace/api/events?token={token}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let mut events = response.bytes_stream().eventsource();
    let snapshot = next_event(&mut events).await;
    assert_eq!(snapshot.event, "snapshot");
    let first: Value = serde_json::from_str(&snapshot.data).expect("status JSON");
    assert_eq!(first["salon_id"], SALON);
    assert_eq!(
        snapshot.id,
        first["version"].to_string(),
        "event ids are versions, for Last-Event-ID"
    );

    app.scan_qr(SALON, "79990009900").await;
    let mut saw_connected = false;
    let mut last_version = first["version"].as_u64().expect("version");
    for _ in 0..20 {
        let event = next_event(&mut events).await;
        if event.event == "ping" {
            continue;
        }
        let status: Value = serde_json::from_str(&event.data).expect("status JSON");
        assert_eq!(status["salon_id"], SALON, "never another salon's events");
        let version = status["version"].as_u64().expect("version");
        assert!(version > last_version, "versions grow");
        last_version = version;
        if event.event == "whatsapp-connected" {
            assert_eq!(status["link"]["phone"], "+7 999 ***-**-00");
            saw_connected = true;
        }
        if status["activation"]["state"] == "active" {
            break;
        }
    }
    assert!(saw_connected, "whatsapp-connected was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_channel_accepts_the_token_in_a_header_and_refuses_without_one() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let with_header = app
        .client
        .get(app.url("/marketplace/api/events"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(with_header.status(), StatusCode::OK);
    let without = app.get("/marketplace/api/events").await;
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let forged = app.get("/marketplace/api/events?token=abc.def.ghi").await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_released_when_the_browser_goes_away() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let response = app
            .get(&format!("/marketplace/api/events?token={token}"))
            .await;
        let mut events = response.bytes_stream().eventsource();
        next_event(&mut events).await;
        streams.push(events);
    }
    assert_eq!(app.handles.bus.live_subscriber_count(), 3);
    drop(streams);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.handles.bus.live_subscriber_count() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscribers leaked: {}",
            app.handles.bus.live_subscriber_count()
        );
        // A change makes the server write, which is when it notices the closed connections.
        app.handles.bus.publish(
            crate::helpers::salon(SALON),
            app::status::LiveEventKind::WhatsappState,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_live_streams_instead_of_hanging() {
    let mut app = spawn_app().await;
    let token = app.enter(SALON).await;
    let response = app
        .get(&format!("/marketplace/api/events?token={token}"))
        .await;
    let mut events = response.bytes_stream().eventsource();
    next_event(&mut events).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_after_the_shutdown_signal_ends_the_stream_instead_of_reaching_it() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let mut events = open_stream(&app, &token).await;
    // What graceful shutdown does first (the server itself goes on serving here): whatever
    // wakes the stream after it — these changes, the QR codes the session goes on showing —
    // ends it. Every status built from now on has a later version (one clock per bus).
    app.handles.bus.stop_live_streams();
    let signalled = app.handles.bus.next_version();
    for _ in 0..5 {
        app.handles.bus.publish(
            crate::helpers::salon(SALON),
            app::status::LiveEventKind::QrUpdate,
        );
    }
    // Frames written before the signal may still wait in the client's buffer: read, not judged.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            let event = event.expect("well-formed event");
            let version: u64 = event.id.parse().unwrap_or(0);
            assert!(
                version < signalled,
                "a frame built after the shutdown signal: {event:?}"
            );
        }
    })
    .await
    .expect("the stream ends within 10 s");
}

async fn open_stream(
    app: &crate::helpers::TestApp,
    token: &str,
) -> impl futures::Stream<
    Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
> + Unpin {
    let response = app
        .get(&format!("/marketplace/api/events?token={token}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = response.bytes_stream().eventsource();
    assert_eq!(next_event(&mut events).await.event, "snapshot");
    events
}

/// The next event that is not a ping.
async fn next_change(
    stream: &mut (impl futures::Stream<Item = Result<eventsource_stream::Event, impl std::fmt::Debug>>
              + Unpin),
) -> eventsource_stream::Event {
    loop {
        let event = next_event(stream).await;
        if event.event != "ping" {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_reaches_every_stream_of_the_salon_with_one_id_and_one_read() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    // No WhatsApp session: few changes but ours.
    app.handles.linking.stop(crate::helpers::salon(SALON)).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(open_stream(&app, &token).await);
    }
    assert_eq!(app.handles.live.rooms(), 1, "one room for the salon");
    let reads_before = app.handles.live.status_reads();
    app.handles.bus.publish(
        crate::helpers::salon(SALON),
        app::status::LiveEventKind::PairingCode,
    );
    let mut ids = std::collections::HashSet::new();
    let mut changes = std::collections::HashSet::new();
    for events in &mut streams {
        loop {
            let event = next_change(events).await;
            changes.insert(event.id.clone());
            if event.event == "pairing-code" {
                let status: Value = serde_json::from_str(&event.data).expect("status JSON");
                assert_eq!(event.id, status["version"].to_string());
                ids.insert(event.id);
                break;
            }
        }
    }
    assert_eq!(
        ids.len(),
        1,
        "one change, the same event id on all 20 streams"
    );
    // Other changes may land in the same moment (the entry's background refresh of the company
    // info publishes one): each distinct change is read once for all 20 streams, never per
    // stream — at most one more read for a change every stream had already passed.
    let reads = app.handles.live.status_reads() - reads_before;
    assert!(
        reads >= 1 && reads <= changes.len() as u64 + 1,
        "{reads} reads for {} distinct changes on 20 streams: {changes:?}",
        changes.len()
    );
}

/// The rooms' status reads once none has happened for 300 ms: what earlier changes caused is over.
async fn settled_reads(app: &crate::helpers::TestApp) -> u64 {
    let mut last = app.handles.live.status_reads();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = app.handles.live.status_reads();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_one_salon_does_not_wake_another_salons_stream() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let other_token = app.enter(OTHER_SALON).await;
    // Each entry refreshes its salon's company info in the background and publishes it (a read
    // of that salon's room): done before the streams open, so not counted below.
    let refreshed = format!(
        "SELECT COUNT(*) FROM salons WHERE id IN ({SALON}, {OTHER_SALON}) \
         AND company_refreshed_at IS NOT NULL"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.count(&refreshed).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both salons' company info refreshed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.handles.linking.stop(crate::helpers::salon(SALON)).await;
    app.handles
        .linking
        .stop(crate::helpers::salon(OTHER_SALON))
        .await;
    let mut mine = open_stream(&app, &token).await;
    let mut other = open_stream(&app, &other_token).await;
    assert_eq!(app.handles.live.rooms(), 2);
    // The stops' own state changes reach the rooms asynchronously; count from after them.
    let reads_before = settled_reads(&app).await;
    app.handles.bus.publish(
        crate::helpers::salon(SALON),
        app::status::LiveEventKind::PairingCode,
    );
    loop {
        if next_change(&mut mine).await.event == "pairing-code" {
            break;
        }
    }
    assert_eq!(
        app.handles.live.status_reads() - reads_before,
        1,
        "only the changed salon's room read its status"
    );
    app.handles.bus.publish(
        crate::helpers::salon(OTHER_SALON),
        app::status::LiveEventKind::ActivationUpdate,
    );
    // Anything queued on the other stream from before the count is its own salon's, and none of
    // it is the first salon's pairing code.
    loop {
        let event = next_change(&mut other).await;
        let status: Value = serde_json::from_str(&event.data).expect("status JSON");
        assert_eq!(status["salon_id"], OTHER_SALON);
        assert_ne!(
            event.event, "pairing-code",
            "the other salon's stream saw nothing of the first salon's change"
        );
        if event.event == "activation-update" {
            break;
        }
    }
    assert_eq!(app.handles.live.status_reads() - reads_before, 2);
    drop(mine);
    drop(other);
}

/// A status read that began before a change never outranks one that began after it. A page
/// keeps the status with the highest version, whichever way it came (the live channel, a poll,
/// an action's answer), so the newest state must carry the highest version. Found as an
/// end-to-end journey stuck at «Активируем интеграцию…» on a loaded machine: the activation
/// action's read saw the salon still activating, waited on its next read while the activation
/// was confirmed and the live channel sent «active», and was stamped after it.
///
/// PostgreSQL only: the test holds one read between its read of the salon's row and its read of
/// the latest callback with a lock on the callback table; SQLite's readers never wait (WAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_read_begun_before_a_change_never_outranks_one_begun_after_it() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = spawn_app().await;
    if !app.on_postgres() {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL=postgres://…): SQLite's readers never wait");
        return;
    }
    let token = app.enter(SALON).await;
    let db = &app.handles.db;
    let set_status =
        |status: &'static str| format!("UPDATE salons SET status = '{status}' WHERE id = {SALON}");
    // Activating: a status read looks up the latest callback after the salon's row.
    db.execute_unprepared(&set_status("activating"))
        .await
        .expect("activating");
    let holder = db.begin().await.expect("a transaction");
    holder
        .execute_unprepared("LOCK TABLE callback_outbox IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("the callback table held");
    let before = tokio::spawn({
        let request = app
            .client
            .get(app.url(&format!("/marketplace/api/status/company_{SALON}")))
            .bearer_auth(&token);
        async move {
            request
                .send()
                .await
                .expect("answered")
                .json::<Value>()
                .await
                .expect("status JSON")
        }
    });
    // The read has the salon's row (activating) and waits for the callback table.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .count(
            "SELECT COUNT(*) FROM pg_locks WHERE NOT granted \
             AND relation = 'callback_outbox'::regclass",
        )
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the status read never reached the callback table"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The change, then a read that begins after it.
    db.execute_unprepared(&set_status("active"))
        .await
        .expect("active");
    let after = app.status(&token, SALON).await;
    assert_eq!(after["activation"]["state"], "active");
    holder.rollback().await.expect("released");
    let before = tokio::time::timeout(Duration::from_secs(10), before)
        .await
        .expect("the held read finished")
        .expect("joined");
    assert_eq!(before["activation"]["state"], "activating", "{before}");
    let (before_version, after_version) = (
        before["version"].as_u64().expect("a version"),
        after["version"].as_u64().expect("a version"),
    );
    assert!(
        before_version < after_version,
        "the read begun before the change ({before_version}, activating) outranks the one \
         begun after it ({after_version}, active): a page would keep «activating»"
    );
}
