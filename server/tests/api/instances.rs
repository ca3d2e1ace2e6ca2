//! Several instances on one database: the two-instance harness (`TestApp::second_instance`, two
//! apps on one PostgreSQL schema — or one SQLite file — each on its own port, one YClients
//! sandbox). What crosses instances through the bus (`LISTEN/NOTIFY`) needs PostgreSQL; what
//! the database itself arbitrates (the outbox's and the inbox's claims) runs on both.

use crate::helpers::{salon, spawn_app, spawn_app_with, TestApp, OTHER_SALON, SALON};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use server::db::entities::callback_outbox;
use std::time::Duration;

type Events = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// Opens the live channel on `app` and reads its snapshot.
async fn open_stream(app: &TestApp, token: &str) -> (Events, Value) {
    let response = app
        .client
        .get(app.url(&format!("/marketplace/api/events?token={token}")))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("stream opened");
    assert_eq!(response.status(), StatusCode::OK);
    let mut events: Events = Box::pin(response.bytes_stream().eventsource());
    let snapshot = next_change(&mut events, "the snapshot")
        .await
        .expect("a snapshot");
    assert_eq!(snapshot.event, "snapshot");
    let status = serde_json::from_str(&snapshot.data).expect("status JSON");
    (events, status)
}

/// The next event that is not a ping; `None` when the stream ended.
async fn next_change(events: &mut Events, what: &str) -> Option<eventsource_stream::Event> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(15), events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))?
            .ok()?;
        if event.event != "ping" {
            return Some(event);
        }
    }
}

/// Reads the stream until a status satisfies `done`.
async fn wait_on_stream(events: &mut Events, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let event = next_change(events, what)
            .await
            .unwrap_or_else(|| panic!("the stream ended before {what}"));
        let status: Value = serde_json::from_str(&event.data).expect("status JSON");
        if done(&status) {
            return status;
        }
    }
}

/// Two instances on one database, or `None` (with a note) when the database cannot carry the
/// bus across instances.
async fn two_instances_on_postgres() -> Option<(TestApp, TestApp)> {
    let a = spawn_app().await;
    if !a.on_postgres() {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL=postgres://…): the bus across instances");
        return None;
    }
    let b = a.second_instance().await;
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_is_chosen_by_the_database() {
    let app = spawn_app().await;
    let bus = &app.health().await["bus"];
    let expected = if app.on_postgres() {
        "postgres"
    } else {
        "in_process"
    };
    assert_eq!(bus["kind"], expected);
    assert_eq!(bus["listening"], true);
    assert_eq!(bus["reconnects"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_on_b_and_a_scan_on_b_show_on_the_stream_held_by_a() {
    let Some((a, b)) = two_instances_on_postgres().await else {
        return;
    };
    let token = b.enter(SALON).await;
    let (mut on_a, first) = open_stream(&a, &token).await;
    assert_eq!(first["salon_id"], SALON);
    assert_eq!(
        b.scan_qr(SALON, "79990009900").await.status(),
        StatusCode::OK
    );
    let linked = wait_on_stream(&mut on_a, "the link made on B", |s| {
        s["link"]["state"] == "linked"
    })
    .await;
    assert_eq!(linked["link"]["phone"], "+7 999 ***-**-00");
    // The activation B's worker (or A's) delivers reaches A's stream too.
    wait_on_stream(&mut on_a, "the activation", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_happens_once_with_two_instances_racing() {
    let a = spawn_app().await;
    let b = a.second_instance().await;
    let token = b.link_whatsapp(SALON, "79990009900").await;
    for app in [&a, &b] {
        app.wait_for_status(&token, SALON, "active on both instances", |s| {
            s["activation"]["state"] == "active"
        })
        .await;
    }
    // Both instances' triggers and outbox workers had their chance; give a late one time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let callbacks: Vec<_> = a
        .sandbox
        .callbacks()
        .into_iter()
        .filter(|c| c.body["salon_id"] == SALON)
        .collect();
    assert_eq!(callbacks.len(), 1, "one callback: {callbacks:?}");
    assert_eq!(
        a.count("SELECT COUNT(*) FROM callback_outbox").await,
        1,
        "one callback owed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_worker_whose_lease_ran_out_leaves_the_row_another_worker_confirmed_alone() {
    // A's call to YClients outlives its lease; B claims the row and YClients confirms B's call;
    // then A's call ends (a timeout). A's writes were filtered by the row's id alone, so A put
    // its retry over B's confirmed row: its error, its count, its attempt, and the lease taken
    // off (had B's call still been in flight, a third worker could have sent it again). Now
    // they are conditional on A's claim, which B's took over: A's write changes nothing, and A
    // notices (`lease_lost`). Black-box but for the lease's expiry: 60 s in production, moved
    // into the past here by an `UPDATE`, as time would.
    let a = spawn_app_with(|vars| {
        vars.insert("OUTBOX_WORKER".into(), "false".into());
    })
    .await;
    let b = a.second_instance().await;
    let token = a.link_whatsapp(SALON, "79990009900").await;
    a.wait_for_status(&token, SALON, "activating", |s| {
        s["activation"]["state"] == "activating"
    })
    .await;
    // YClients answers A's call after 3 s; A gives up at 1.5 s (YCLIENTS_TIMEOUT_MS).
    a.fault(
        yclients_sandbox::FaultKind::Timeout,
        1,
        "/marketplace/partner/callback",
    );
    let activation = a.handles.activation.clone();
    let first = tokio::spawn(async move { activation.deliver_due().await });
    wait_until("A's call reaches YClients", async || {
        a.sandbox.requests("/marketplace/partner/callback") == 1
    })
    .await;
    callback_outbox::Entity::update_many()
        .col_expr(
            callback_outbox::Column::LeaseUntil,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(callback_outbox::Column::SalonId.eq(SALON))
        .exec(&a.handles.db)
        .await
        .expect("A's lease runs out");
    b.handles.activation.deliver_due().await.expect("B's pass");
    b.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    first.await.expect("A's pass joins").expect("A's pass");
    assert_eq!(
        a.sandbox.requests("/marketplace/partner/callback"),
        2,
        "A's call and B's"
    );
    assert_eq!(
        a.count(&format!(
            "SELECT COUNT(*) FROM callback_outbox WHERE salon_id = {SALON} AND status = 'confirmed' \
             AND attempts = 1 AND last_error IS NULL AND lease_until IS NULL"
        ))
        .await,
        1,
        "the confirmed row is as B left it"
    );
    // Both calls are on the record: B's, which confirmed the row, and A's, which YClients got
    // too but which changed nothing once its lease was gone.
    for (outcome, what) in [("confirmed", "B's attempt"), ("lease_lost", "A's call")] {
        assert_eq!(
            a.count(&format!(
                "SELECT COUNT(*) FROM callback_attempts WHERE salon_id = {SALON} AND outcome = '{outcome}'"
            ))
            .await,
            1,
            "{what} is recorded as {outcome}"
        );
    }
    assert_eq!(
        a.count(&format!(
            "SELECT COUNT(*) FROM callback_attempts WHERE salon_id = {SALON}"
        ))
        .await,
        2,
        "one attempt per call YClients got"
    );
    assert!(
        a.metrics()
            .await
            .contains("ai_admin_callbacks_total{result=\"lease_lost\"} 1"),
        "A noticed its claim was gone"
    );
    assert_eq!(
        a.status(&token, SALON).await["activation"]["state"],
        "active"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lifecycle_event_is_applied_once_by_two_racing_instances() {
    let a = spawn_app().await;
    let b = a.second_instance().await;
    // Stored without waking either worker, then a pass on each instance at the same moment. The
    // instances' own workers poll too (a first pass delayed on a busy machine may come now): they
    // may take some of the events, so what counts is that every event is applied once, by
    // whichever worker claimed it.
    let events = 40;
    for n in 0..events {
        a.handles
            .store
            .receive_lifecycle(
                salon(SALON + n),
                crate::helpers::APPLICATION_ID,
                "something-new",
            )
            .await
            .expect("stored");
    }
    let (on_a, on_b) = tokio::join!(
        a.handles.webhooks.process_pending(),
        b.handles.webhooks.process_pending()
    );
    let (on_a, on_b) = (on_a.expect("A's pass"), on_b.expect("B's pass"));
    assert!(
        on_a + on_b <= events as usize,
        "A applied {on_a}, B {on_b}: more than were stored"
    );
    // A worker's pass still applying what it claimed finishes within moments.
    let unfinished =
        "SELECT COUNT(*) FROM lifecycle_events WHERE processed_at IS NULL OR lease_owner IS NOT NULL";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.count(unfinished).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every event applied, no lease left (A's pass applied {on_a}, B's {on_b})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.count("SELECT COUNT(*) FROM integration_events WHERE kind = 'lifecycle_unknown'")
            .await,
        events,
        "each event applied once (A's pass applied {on_a}, B's {on_b})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_posted_to_b_ends_the_stream_on_a_and_the_session_a_runs() {
    let Some((a, b)) = two_instances_on_postgres().await else {
        return;
    };
    // The session runs on A (B runs none); the page's stream is held by A.
    let token = a.link_whatsapp(SALON, "79990009900").await;
    a.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    let (mut on_a, _) = open_stream(&a, &token).await;
    assert!(a.simulator.is_open(salon(SALON)), "the session runs on A");
    assert_eq!(b.handles.linking.session_count(), 0, "and none on B");

    let response = b
        .post_lifecycle(&b.lifecycle_body(SALON, "uninstall"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // The stream on A ends: the installation its token was issued for is gone. Frames sent while
    // the uninstall is being applied (the purge of the credentials, the session's logout) may
    // still show the salon as it was — the salon's row changes last — so they are read, not
    // judged; what matters is that the stream ends, and soon.
    let mut frames = 0;
    while let Some(event) = next_change(&mut on_a, "the end of the stream on A").await {
        frames += 1;
        assert!(
            frames < 20,
            "the stream on A goes on after the uninstall: {event:?}"
        );
    }
    // It ended because the salon is uninstalled (applied once, by one of the two workers).
    assert_eq!(
        a.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND status = 'uninstalled'"
        ))
        .await,
        1,
        "the salon is uninstalled"
    );
    // (The worker records the event as applied just after it published the change.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a
        .count("SELECT COUNT(*) FROM lifecycle_events WHERE processed_at IS NOT NULL")
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the uninstall is recorded as applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'uninstalled'"
        ))
        .await,
        1,
        "the uninstall applied once"
    );
    // And the session A ran is stopped: logged out on the phone, its credentials purged.
    a.wait_for_link_state(SALON, "the session on A stopped", |s| {
        *s == app::status::LinkState::Idle
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.simulator.is_open(salon(SALON)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's connection to WhatsApp stays open after the uninstall"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.handles.linking.session_count(), 0);
    assert!(
        a.handles
            .store
            .device_credentials(salon(SALON), "simulator")
            .await
            .expect("read")
            .is_none(),
        "the credentials are purged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_listener_loses_its_connection_every_stream_gets_a_fresh_snapshot() {
    let Some((a, b)) = two_instances_on_postgres().await else {
        return;
    };
    // The session runs on B; the page is served by A.
    let token = b.enter(SALON).await;
    // The entry refreshes the salon's company info in the background and publishes a snapshot
    // of its own: stored before the stream opens, so it is not taken for the gap's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a
        .count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND company_refreshed_at IS NOT NULL"
        ))
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the company info refreshed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut on_a, first) = open_stream(&a, &token).await;
    // Every listening connection of this schema is cut (A's and B's).
    let schema = a.schema().expect("a PostgreSQL schema");
    let cut = a
        .count(&format!(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN %ai_admin_bus_{schema}%' AND pid <> pg_backend_pid()) AS cut"
        ))
        .await;
    assert_eq!(cut, 2, "A and B each listen on one connection");
    // The snapshot that follows A's listener listening again (counted before the gap is told).
    let snapshot = loop {
        let event = next_change(&mut on_a, "the fresh snapshot")
            .await
            .expect("the stream stays open");
        if event.event == "snapshot" && a.handles.bus.health().reconnects >= 1 {
            break event;
        }
    };
    let status: Value = serde_json::from_str(&snapshot.data).expect("status JSON");
    assert!(status["version"].as_u64() > first["version"].as_u64());
    let bus = &a.health().await["bus"];
    assert_eq!(bus["listening"], true);
    assert!(bus["reconnects"].as_u64() >= Some(1), "{bus}");
    // And the instances hear each other again: a scan on B shows on A.
    assert_eq!(
        b.scan_qr(SALON, "79990009900").await.status(),
        StatusCode::OK
    );
    wait_on_stream(&mut on_a, "the link after the reconnect", |s| {
        s["link"]["state"] == "linked"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_stops_listening_and_the_other_goes_on() {
    let Some((mut a, b)) = two_instances_on_postgres().await else {
        return;
    };
    let token = b.enter(SALON).await;
    let (mut on_b, _) = open_stream(&b, &token).await;
    let schema = a.schema().expect("a PostgreSQL schema");
    let listening = format!(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN %ai_admin_bus_{schema}%' AND pid <> pg_backend_pid()"
    );
    assert_eq!(b.count(&listening).await, 2, "A and B each listen");
    a.stop().await;
    // A's listener ended with the shutdown (its connection went back to the pool, unlistened).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.handles.bus.health().listening || b.count(&listening).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A still listens after its shutdown: {:?}",
            a.handles.bus.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B goes on: its session links, its stream shows it.
    assert_eq!(
        b.scan_qr(SALON, "79990009900").await.status(),
        StatusCode::OK
    );
    wait_on_stream(&mut on_b, "the link on B", |s| {
        s["link"]["state"] == "linked"
    })
    .await;
    assert_eq!(b.health().await["bus"]["listening"], true);
}

/// Two instances on one database whose session leases last 1.5 s (renewed every 300 ms).
pub(crate) async fn two_instances_with_short_leases() -> (TestApp, TestApp) {
    let a = spawn_app_with(short_leases).await;
    let b = a.second_instance().await;
    (a, b)
}

pub(crate) fn short_leases(vars: &mut std::collections::HashMap<String, String>) {
    vars.insert("SESSION_LEASE_MS".into(), "1500".into());
    vars.insert("SESSION_LEASE_RENEW_MS".into(), "300".into());
}

/// The salon's lease as stored: owner and generation.
pub(crate) async fn lease_of(app: &TestApp, salon_id: i64) -> (Option<String>, i64) {
    let (owner, generation, _) = app
        .handles
        .store
        .session_lease(salon(salon_id))
        .await
        .expect("lease read")
        .expect("a lease row");
    (owner, generation)
}

pub(crate) async fn wait_until(what: &str, done: impl AsyncFnMut() -> bool) {
    wait_until_within(what, Duration::from_secs(10), done).await;
}

/// [`wait_until`] with a deadline of its own.
pub(crate) async fn wait_until_within(
    what: &str,
    within: Duration,
    mut done: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_runs_a_salons_session() {
    let (a, b) = two_instances_with_short_leases().await;
    let token = a.enter(SALON).await;
    a.current_qr(SALON).await;
    assert_eq!(
        lease_of(&a, SALON).await,
        (Some(a.handles.linking.instance_id().to_owned()), 1),
        "A holds the lease"
    );
    // B is asked to start the session (a redirect on B, an action): it may not while A holds it.
    b.enter(SALON).await;
    b.handles.linking.ensure_started(salon(SALON));
    wait_until("B gives up starting", async || {
        b.handles.linking.session_count() == 0
    })
    .await;
    // Leases renewed several times over: still A's, still one session, on A.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(b.handles.linking.session_count(), 0, "no session on B");
    assert!(!b.simulator.is_open(salon(SALON)));
    assert_eq!(
        a.handles.linking.session_count(),
        1,
        "the session runs on A"
    );
    assert_eq!(
        lease_of(&a, SALON).await,
        (Some(a.handles.linking.instance_id().to_owned()), 1),
        "A renewed its lease; nobody took it"
    );
    // The page served by B shows A's QR code, not one of its own.
    let on_b = b
        .wait_for_status(&token, SALON, "A's QR code on B", |s| s["status"] == "qr")
        .await;
    let code = on_b["link"]["code"].as_str().expect("a code");
    assert!(code.starts_with(&a.address), "A's code: {on_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_owner_stops_the_other_instance_takes_the_session_over_with_a_fresh_qr() {
    let (mut a, b) = two_instances_with_short_leases().await;
    let token = a.enter(SALON).await;
    let (_, on_a) = a.current_qr(SALON).await;
    assert_eq!(b.handles.linking.session_count(), 0);
    a.stop().await;
    // B takes the lease over (A handed it over at shutdown) and shows its own QR code.
    let status = b
        .wait_for_status(&token, SALON, "a fresh QR served by B", |s| {
            s["status"] == "qr"
        })
        .await;
    let (_, on_b) = b.current_qr(SALON).await;
    assert_ne!(on_a, on_b, "a fresh QR code: {status}");
    assert!(on_b.starts_with(&b.address), "B's own QR code: {on_b}");
    assert_eq!(
        lease_of(&b, SALON).await,
        (Some(b.handles.linking.instance_id().to_owned()), 2),
        "B holds the lease, one generation on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_session_fails_over_without_a_new_scan() {
    let (mut a, b) = two_instances_with_short_leases().await;
    let token = a.link_whatsapp(SALON, "79990009900").await;
    a.stop().await;
    b.wait_for_link_state(SALON, "the link restored on B", |s| s.is_linked())
        .await;
    let status = b.status(&token, SALON).await;
    assert_eq!(status["status"], "linked", "{status}");
    assert!(b.simulator.is_open(salon(SALON)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owners_lease_is_taken_over_after_its_expiry() {
    let app = spawn_app_with(short_leases).await;
    // An instance that died holding the salon's lease for another 1.5 s.
    let expiry = chrono::Utc::now() + chrono::Duration::milliseconds(1_500);
    app.handles
        .store
        .acquire_session_lease(salon(SALON), "instance-dead", expiry)
        .await
        .expect("store")
        .expect("the lease was free");
    let token = app.enter(SALON).await;
    let entered = tokio::time::Instant::now();
    // Not before the expiry…
    wait_until("the start given up: the lease is held", async || {
        app.handles.linking.session_count() == 0
    })
    .await;
    assert!(!app.simulator.is_open(salon(SALON)));
    // …and soon after it.
    app.wait_for_status(&token, SALON, "the session taken over", |s| {
        s["status"] == "qr"
    })
    .await;
    assert!(
        entered.elapsed() < Duration::from_secs(5),
        "taken over within the expiry and a few renewals: {:?}",
        entered.elapsed()
    );
    assert_eq!(
        lease_of(&app, SALON).await,
        (Some(app.handles.linking.instance_id().to_owned()), 2)
    );
}

/// The lease keeper wakes at the expiry of a lease another instance holds, not at its own
/// renewal interval: with renewals every 60 s, a dead owner's session is taken over as soon as
/// its lease runs out (before, up to 72 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owners_session_is_taken_over_at_the_expiry_not_at_the_next_renewal() {
    let app = spawn_app_with(|vars| {
        vars.insert("SESSION_LEASE_MS".into(), "120000".into());
        vars.insert("SESSION_LEASE_RENEW_MS".into(), "60000".into());
    })
    .await;
    // An instance that died holding the salon's lease for another 1.5 s.
    let expiry = chrono::Utc::now() + chrono::Duration::milliseconds(1_500);
    app.handles
        .store
        .acquire_session_lease(salon(SALON), "instance-dead", expiry)
        .await
        .expect("store")
        .expect("the lease was free");
    let token = app.enter(SALON).await;
    wait_until("the start given up: the lease is held", async || {
        app.handles.linking.session_count() == 0
    })
    .await;
    assert!(!app.simulator.is_open(salon(SALON)));
    // wait_for_status gives up after 10 s: far inside the 48–72 s of the next regular look.
    app.wait_for_status(&token, SALON, "the session taken over at the expiry", |s| {
        s["status"] == "qr"
    })
    .await;
    assert_eq!(
        lease_of(&app, SALON).await,
        (Some(app.handles.linking.instance_id().to_owned()), 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_lost_its_lease_stops_the_session() {
    let app = spawn_app_with(short_leases).await;
    app.link_whatsapp(SALON, "79990009900").await;
    // Another instance took the lease (as after this one paused past the expiry).
    use sea_orm::{ColumnTrait, EntityTrait, ExprTrait, QueryFilter};
    use server::db::entities::session_leases;
    session_leases::Entity::update_many()
        .col_expr(
            session_leases::Column::Owner,
            sea_orm::sea_query::Expr::value("instance-other"),
        )
        .col_expr(
            session_leases::Column::Generation,
            sea_orm::sea_query::Expr::col(session_leases::Column::Generation).add(1),
        )
        .col_expr(
            session_leases::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() + chrono::Duration::seconds(60)),
        )
        .filter(session_leases::Column::SalonId.eq(SALON))
        .exec(&app.handles.db)
        .await
        .expect("taken");
    // The next renewal fails: the session stops here, the credentials stay.
    app.wait_for_link_state(SALON, "the session stopped", |s| {
        *s == app::status::LinkState::Idle
    })
    .await;
    wait_until("the connection closed", async || {
        !app.simulator.is_open(salon(SALON))
    })
    .await;
    let health = app.health().await;
    assert_eq!(health["whatsapp"]["leases_lost"], 1, "{health}");
    assert_eq!(
        health["whatsapp"]["instance"],
        app.handles.linking.instance_id()
    );
    assert!(app
        .metrics()
        .await
        .contains("ai_admin_whatsapp_leases_lost_total 1"));
    assert!(
        app.handles
            .store
            .device_credentials(salon(SALON), "simulator")
            .await
            .expect("read")
            .is_some(),
        "the credentials are kept for the new owner"
    );
    assert_eq!(
        lease_of(&app, SALON).await,
        (Some("instance-other".to_owned()), 2),
        "the new owner's lease is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_generations_writes_are_refused() {
    let app = spawn_app().await;
    app.enter(SALON).await;
    // The session stops and frees its lease; the test plays two owners.
    app.handles.linking.stop(salon(SALON)).await;
    let store = &app.handles.store;
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let old = store
        .acquire_session_lease(salon(SALON), "instance-old", past)
        .await
        .expect("store")
        .expect("free");
    // The old owner's lease expired; the new one takes it.
    let later = chrono::Utc::now() + chrono::Duration::seconds(30);
    let new = store
        .acquire_session_lease(salon(SALON), "instance-new", later)
        .await
        .expect("store")
        .expect("expired, so free");
    assert_eq!(new.generation, old.generation + 1);
    assert!(
        store
            .acquire_session_lease(salon(SALON), "instance-old", later)
            .await
            .expect("store")
            .is_none(),
        "a held lease is not taken"
    );
    // The old owner wakes up: every write it makes is refused.
    let phone = crate::helpers::phone("79990001122");
    let refused = store
        .record_whatsapp_state(&old, server::store::WhatsappHealth::Failed, None, None)
        .await;
    assert!(
        matches!(refused, Err(server::store::StoreError::Fenced(_))),
        "{refused:?}"
    );
    let refused = store.link_phone(&old, &phone, "simulator").await;
    assert!(
        matches!(refused, Err(server::store::StoreError::Fenced(_))),
        "{refused:?}"
    );
    let refused = store.forget_device(&old).await;
    assert!(
        matches!(refused, Err(server::store::StoreError::Fenced(_))),
        "{refused:?}"
    );
    assert!(!store.renew_session_lease(&old, later).await.expect("store"));
    assert!(!store.release_session_lease(&old).await.expect("store"));
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND whatsapp_phone IS NULL"
        ))
        .await,
        1,
        "nothing the old owner wrote stayed"
    );
    // The new owner's go through.
    store
        .link_phone(&new, &phone, "simulator")
        .await
        .expect("the holder's link");
    store
        .record_whatsapp_state(&new, server::store::WhatsappHealth::Failed, None, None)
        .await
        .expect("the holder's state");
    assert!(store.renew_session_lease(&new, later).await.expect("store"));
    assert!(store.release_session_lease(&new).await.expect("store"));
    assert_eq!(
        lease_of(&app, SALON).await,
        (None, new.generation),
        "released, the generation kept"
    );
}

/// Where the salon's session runs: `Some(true)` on A, `Some(false)` on B, `None` nowhere yet.
fn runs_on_a(a: &TestApp, b: &TestApp, salon_id: i64) -> Option<bool> {
    let (on_a, on_b) = (
        a.handles.linking.state(salon(salon_id)).is_linked(),
        b.handles.linking.state(salon(salon_id)).is_linked(),
    );
    assert!(!(on_a && on_b), "salon {salon_id} runs on both instances");
    (on_a || on_b).then_some(on_a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_both_instances_restores_each_linked_salon_once() {
    let (a, b) = two_instances_with_short_leases().await;
    a.link_whatsapp(SALON, "79990009900").await;
    b.link_whatsapp(OTHER_SALON, "79990009911").await;
    // One after the other, as a rolling deploy does: each stop hands its sessions over.
    let a = a.restart().await;
    let b = b.restart().await;
    for salon_id in [SALON, OTHER_SALON] {
        wait_until("the salon restored on one instance", async || {
            runs_on_a(&a, &b, salon_id).is_some()
        })
        .await;
    }
    // Renewed several times over: each still on one instance, once.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for salon_id in [SALON, OTHER_SALON] {
        let on_a = runs_on_a(&a, &b, salon_id).expect("still restored");
        let (owner, _) = lease_of(&a, salon_id).await;
        let holder = if on_a { &a } else { &b };
        assert_eq!(
            owner.as_deref(),
            Some(holder.handles.linking.instance_id()),
            "the instance running salon {salon_id} holds its lease"
        );
        let connections = [&a, &b]
            .iter()
            .filter(|app| app.simulator.is_open(salon(salon_id)))
            .count();
        assert_eq!(connections, 1, "one connection for salon {salon_id}");
    }
    assert_eq!(
        a.handles.linking.session_count() + b.handles.linking.session_count(),
        2,
        "two sessions in all"
    );
}

/// Two instances on PostgreSQL sharing a manual clock, salon `SALON` linked and active with its
/// session on A, the booking messages' workers off (passes are run by hand).
struct Senders {
    a: crate::helpers::TestApp,
    b: crate::helpers::TestApp,
    clock: server::clock::ManualClock,
    start: chrono::DateTime<chrono::Utc>,
    webhook: String,
}

async fn two_senders(extra: &[(&str, &str)]) -> Option<Senders> {
    use chrono::TimeZone;
    let start = chrono::Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
    let clock = server::clock::ManualClock::new(start);
    let a = crate::helpers::spawn_app_with_clock(std::sync::Arc::new(clock.clone()), |env| {
        env.insert("MESSAGES_WORKER".into(), "false".into());
        env.insert("MESSAGES_INTERVAL_MS".into(), "0".into());
        env.insert("MESSAGES_JITTER_MS".into(), "0".into());
        for (name, value) in extra {
            env.insert((*name).into(), (*value).into());
        }
    })
    .await;
    if !a.on_postgres() {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL=postgres://…): two instances");
        return None;
    }
    let (_, webhook) = a.activate(SALON).await;
    let b = a.second_instance().await;
    Some(Senders {
        a,
        b,
        clock,
        start,
        webhook,
    })
}

/// A new booking `id` for the client at `phone`, two days ahead.
fn booking(id: i64, phone: &str) -> serde_json::Value {
    serde_json::json!({"company_id": SALON, "resource": "record", "resource_id": id,
        "status": "create", "data": {"id": id, "company_id": SALON, "datetime": "2026-12-05T14:30:00+03:00",
        "services": [{"id": 1, "title": "Стрижка"}], "staff": {"id": 5, "name": "Анна"},
        "client": {"id": id, "name": "Мария", "phone": phone}, "deleted": false}})
}

/// Found by an audit read as an attacker (2026-12-06): a booking message's claim ran out while
/// one instance's send was in flight, and another instance took the row and sent it too —
/// nothing but the claim fenced the send. The manual clock stands for a send that outlived its
/// claim: before, instance B's pass claimed the row and routed the send to A (which runs the
/// salon's session), and two minutes later A's pass took the row again. Now only the instance
/// running the salon's session sends the salon's messages, so B leaves the row to A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_message_is_not_sent_twice_by_two_instances() {
    let Some(Senders {
        a,
        b,
        clock,
        start,
        webhook,
    }) = two_senders(&[]).await
    else {
        return;
    };
    let client = "79161234567";
    assert_eq!(
        a.post_json(&webhook, &booking(5151, client)).await.status(),
        StatusCode::OK
    );
    // B's pass: A runs the salon's session, so the salon's messages are A's to send.
    let taken_by_b = b.handles.messages.pass().await.expect("B's pass");
    assert_eq!(taken_by_b, 0, "B leaves the salon A runs to A");
    a.handles.messages.pass().await.expect("A's pass");
    // Two minutes on: whatever claim there was has run out; B still leaves it alone.
    clock.set(start + chrono::Duration::seconds(121));
    b.handles.messages.pass().await.expect("B's pass");
    a.handles.messages.pass().await.expect("A's pass");
    let texts = a.inbox(client);
    assert_eq!(
        texts.len(),
        1,
        "one booking, one confirmation; the client got: {texts:#?}"
    );
}

/// Found by an audit read as an attacker (2026-12-06): the daily cap is a count, then a send,
/// with nothing held between: two instances' passes both counted the salon below its cap and
/// both sent. Now only the instance running the salon's session sends its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_cap_holds_across_two_instances() {
    let Some(Senders { a, b, webhook, .. }) = two_senders(&[("MESSAGES_DAILY_CAP", "1")]).await
    else {
        return;
    };
    for (id, client) in [(6160, "79161234560"), (6161, "79161234561")] {
        let event = booking(id, client);
        assert_eq!(a.post_json(&webhook, &event).await.status(), StatusCode::OK);
    }
    let (ra, rb) = tokio::join!(a.handles.messages.pass(), b.handles.messages.pass());
    ra.expect("A's pass");
    rb.expect("B's pass");
    let sent = a
        .count(&format!(
            "SELECT COUNT(*) FROM message_outbox WHERE salon_id = {SALON} AND sent_at IS NOT NULL"
        ))
        .await;
    assert!(
        sent <= 1,
        "a daily cap of 1, and the salon sent {sent} today"
    );
}
