//! Graceful shutdown, bounded: live streams end, the callback in flight finishes its attempt and
//! releases its lease, WhatsApp sessions close keeping their credentials (a restart reconnects
//! without a scan).

use crate::helpers::{salon, spawn_app, SALON};
use app::status::LinkState;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use std::time::Duration;
use yclients_sandbox::FaultKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_releases_the_outbox_lease_and_closes_sessions_keeping_credentials() {
    let mut app = spawn_app().await;
    // YClients answers the callback slowly: the delivery is in flight when the stop comes.
    app.fault(FaultKind::Timeout, 1, "/marketplace/partner/callback");
    let token = app.link_whatsapp(SALON, "79990009900").await;
    let response = app
        .get(&format!("/marketplace/api/events?token={token}"))
        .await;
    let mut events = response.bytes_stream().eventsource();
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the snapshot")
        .expect("stream open")
        .expect("an event");
    for _ in 0..100 {
        if app
            .count("SELECT COUNT(*) FROM callback_outbox WHERE lease_until IS NOT NULL")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM callback_outbox WHERE lease_until IS NOT NULL")
            .await,
        1,
        "the callback is in flight when the stop comes"
    );
    assert!(app.simulator.is_open(salon(SALON)));

    let started = tokio::time::Instant::now();
    app.stop().await; // bounded by the harness (15 s) and asserted clean
    let stopped_in = started.elapsed();
    println!("graceful shutdown with a stream, a session and a callback in flight: {stopped_in:?}");

    // The stream ended instead of hanging. Events the server sent before the stop (the callback's
    // `activation-update`, the company refresh) may still wait unread in the client's buffer:
    // they are read first, then the stream must end.
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffered = 0;
        while let Some(Ok(_)) = events.next().await {
            buffered += 1;
            assert!(buffered < 20, "the stream goes on after the stop");
        }
    })
    .await
    .expect("the stream ends with the server");
    // The callback's attempt ended and its lease is free for the next instance.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM callback_outbox WHERE lease_until IS NOT NULL")
            .await,
        0
    );
    // The session closed, its credentials kept.
    assert!(!app.simulator.is_open(salon(SALON)));
    assert!(app
        .handles
        .store
        .device_credentials(salon(SALON), "simulator")
        .await
        .expect("read")
        .is_some());
    let app = app.restart().await;
    app.wait_for_link_state(SALON, "restored without a scan", LinkState::is_linked)
        .await;
}
