//! Sessions that heal: what happens to a salon's WhatsApp after «Интеграция активна», driven
//! through the simulator as WhatsApp would (drops, outages, a session taken over elsewhere, a
//! temporary ban, a silent socket, the phone unlinking us) and through the page's own server
//! functions (retry, take back, disconnect, confirm a new number, a test message).

use crate::helpers::{phone, salon, spawn_app_with, TestApp, SALON};
use app::status::LinkState;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// An app whose supervisor gives up fast and cools down in a fraction of a second.
async fn spawn_healing_app() -> TestApp {
    spawn_app_with(|vars| {
        vars.insert("WHATSAPP_COOLDOWN_BASE_MS".into(), "400".into());
        vars.insert("WHATSAPP_COOLDOWN_MAX_MS".into(), "800".into());
        vars.insert("WHATSAPP_PROBE_INTERVAL_MS".into(), "100".into());
        vars.insert("WHATSAPP_PROBE_TIMEOUT_MS".into(), "200".into());
    })
    .await
}

async fn audit_count(app: &TestApp, kind: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = '{kind}'"
    ))
    .await
}

fn callbacks_for(app: &TestApp) -> usize {
    app.sandbox
        .callbacks()
        .iter()
        .filter(|c| c.body["salon_id"] == SALON)
        .count()
}

async fn call(app: &TestApp, endpoint: &str, args: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = app.server_fn(endpoint, args).await;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_fail_then_the_cool_down_retries_until_whatsapp_is_back() {
    let app = spawn_healing_app().await;
    let (token, _) = app.activate(SALON).await;
    app.simulator.set_unavailable(true);
    app.simulator.drop_connection(salon(SALON));
    let failed = app
        .wait_for_link_state(SALON, "failed", |s| matches!(s, LinkState::Failed { .. }))
        .await;
    let LinkState::Failed { retry_at_ms, .. } = failed else {
        unreachable!()
    };
    assert!(retry_at_ms > chrono::Utc::now().timestamp_millis());
    let status = app.status(&token, SALON).await;
    assert_eq!(status["status"], "failed", "never a plain active: {status}");
    assert_eq!(status["activation"]["state"], "active");
    let health = app.health().await;
    assert_eq!(health["whatsapp"]["active_salons"]["failed"], 1);
    assert_eq!(health["whatsapp"]["active_needing_attention"], 1);
    assert!(app
        .metrics()
        .await
        .contains("ai_admin_whatsapp_active_salons{state=\"failed\"} 1"));
    assert_eq!(audit_count(&app, "whatsapp_failed").await, 1);

    // WhatsApp comes back: the next cool-down reconnects with the stored credentials by itself.
    app.simulator.set_unavailable(false);
    app.wait_for_link_state(SALON, "linked after the cool-down", LinkState::is_linked)
        .await;
    assert!(app.simulator.is_open(salon(SALON)));
    let health = app.health().await;
    assert_eq!(health["whatsapp"]["active_salons"]["linked"], 1);
    assert_eq!(health["whatsapp"]["active_needing_attention"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_reconnects_a_failed_linked_session_without_a_scan() {
    let app = spawn_app_with(|vars| {
        // A cool-down long enough that only the button can bring it back within the test.
        vars.insert("WHATSAPP_COOLDOWN_BASE_MS".into(), "60000".into());
    })
    .await;
    let (token, _) = app.activate(SALON).await;
    app.simulator.set_unavailable(true);
    app.simulator.drop_connection(salon(SALON));
    app.wait_for_link_state(SALON, "failed", |s| matches!(s, LinkState::Failed { .. }))
        .await;
    app.simulator.set_unavailable(false);
    let (code, body) = call(&app, "onboarding/restart", &[("token", &token)]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let linked = app
        .wait_for_link_state(SALON, "linked after retry", LinkState::is_linked)
        .await;
    assert_eq!(
        linked,
        LinkState::Linked {
            phone: phone("79990009900")
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_replaced_elsewhere_is_never_reconnected_until_the_admin_takes_it_back() {
    let app = spawn_healing_app().await;
    let (token, _) = app.activate(SALON).await;
    app.simulator
        .replace_elsewhere(salon(SALON))
        .expect("an open connection");
    app.wait_for_link_state(SALON, "replaced", |s| {
        matches!(s, LinkState::Replaced { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !app.simulator.is_open(salon(SALON)),
        "no reconnect: that would fight the other client"
    );
    let status = app.status(&token, SALON).await;
    assert_eq!(status["status"], "replaced");
    assert_eq!(audit_count(&app, "whatsapp_replaced").await, 1);
    assert_eq!(
        app.health().await["whatsapp"]["active_salons"]["replaced"],
        1
    );

    // A restart of the whole service does not take it back either.
    let app = app.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!app.simulator.is_open(salon(SALON)));
    let status = app.status(&token, SALON).await;
    assert_eq!(status["status"], "replaced", "{status}");

    // «Подключить снова здесь»: the stored credentials, no scan.
    let (code, body) = call(&app, "onboarding/restart", &[("token", &token)]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    app.wait_for_link_state(SALON, "linked again", LinkState::is_linked)
        .await;
    assert!(app.simulator.is_open(salon(SALON)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_ban_is_waited_out_and_the_session_resumes_at_its_expiry() {
    let app = spawn_healing_app().await;
    let (token, _) = app.activate(SALON).await;
    app.simulator
        .ban(salon(SALON), Some(Duration::from_millis(1500)))
        .expect("an open connection");
    let banned = app
        .wait_for_link_state(SALON, "banned", |s| matches!(s, LinkState::Banned { .. }))
        .await;
    let LinkState::Banned {
        until_ms: Some(until_ms),
        ..
    } = banned
    else {
        panic!("a ban with its expiry: {banned:?}")
    };
    assert!(until_ms > chrono::Utc::now().timestamp_millis() + 500);
    let status = app.status(&token, SALON).await;
    assert_eq!(status["link"]["until_ms"], until_ms);
    // The admin cannot hurry it.
    let (code, _) = call(&app, "onboarding/restart", &[("token", &token)]).await;
    assert_eq!(code, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !app.simulator.is_open(salon(SALON)),
        "no reconnect during the ban"
    );
    assert_eq!(audit_count(&app, "whatsapp_banned").await, 1);
    app.wait_for_link_state(SALON, "resumed at expiry", LinkState::is_linked)
        .await;
    assert!(chrono::Utc::now().timestamp_millis() >= until_ms - 50);
    assert!(app.simulator.is_open(salon(SALON)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_found_by_the_keep_alive_and_reconnected() {
    let app = spawn_healing_app().await;
    app.activate(SALON).await;
    app.simulator
        .silence(salon(SALON))
        .expect("an open connection");
    assert!(app.simulator.is_silent(salon(SALON)));
    // probe every 100 ms, 200 ms to answer: found well within a second.
    let mut zombies = 0;
    for _ in 0..100 {
        zombies = app.handles.linking.zombies_detected();
        if zombies > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(zombies, 1);
    // A new connection (the silent one is gone), the session linked throughout.
    let mut reopened = false;
    for _ in 0..250 {
        if app.simulator.is_open(salon(SALON)) && !app.simulator.is_silent(salon(SALON)) {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "reconnected");
    assert!(app.handles.linking.state(salon(SALON)).is_linked());
    assert_eq!(audit_count(&app, "whatsapp_zombie_reconnected").await, 1);
    assert_eq!(app.health().await["whatsapp"]["zombies_reconnected"], 1);
    assert!(app
        .metrics()
        .await
        .contains("ai_admin_whatsapp_zombies_reconnected_total 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_activation_the_phone_unlinks_and_the_same_number_relinks_without_a_second_callback()
{
    let app = spawn_healing_app().await;
    let (token, _) = app.activate(SALON).await;
    let callbacks = callbacks_for(&app);
    app.simulator
        .unlink_from_phone(salon(SALON))
        .await
        .expect("linked");
    // A fresh QR at once; the integration stays active.
    app.current_qr(SALON).await;
    let status = app
        .wait_for_status(&token, SALON, "a QR on the page", |s| s["status"] == "qr")
        .await;
    assert_eq!(status["activation"]["state"], "active");
    let page = app
        .wait_for_page(&token, "the disconnected notice", "WhatsApp отключён")
        .await;
    assert!(page.contains("data-testid=\"whatsapp-disconnected\""));
    assert_eq!(
        app.health().await["whatsapp"]["active_salons"]["logged_out"],
        1
    );

    let scanned = app.scan_qr(SALON, "79990009900").await;
    assert_eq!(scanned.status(), StatusCode::OK);
    app.wait_for_link_state(SALON, "linked again", LinkState::is_linked)
        .await;
    let status = app.status(&token, SALON).await;
    assert_eq!(status["activation"]["state"], "active");
    assert_eq!(status["number_change_from"], Value::Null, "the same number");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        callbacks_for(&app),
        callbacks,
        "no new activation, no new YClients callback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relink_with_another_number_waits_for_the_admins_confirmation() {
    let app = spawn_healing_app().await;
    let (token, _) = app.activate(SALON).await;
    let callbacks = callbacks_for(&app);
    app.simulator
        .unlink_from_phone(salon(SALON))
        .await
        .expect("linked");
    app.scan_qr(SALON, "79995550011").await;
    app.wait_for_link_state(SALON, "linked", LinkState::is_linked)
        .await;
    let status = app.status(&token, SALON).await;
    assert_eq!(status["number_change_from"], "+7 999 ***-**-00");
    let page = app
        .wait_for_page(&token, "the question", "data-testid=\"number-change\"")
        .await;
    assert!(page.contains("+7 999 ***-**-00"));

    let (code, body) = call(&app, "onboarding/confirm-number", &[("token", &token)]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["number_change_from"], Value::Null);
    assert_eq!(audit_count(&app, "whatsapp_number_confirmed").await, 1);
    // Nothing left to confirm: a clear 409, not a silent success.
    let (code, _) = call(&app, "onboarding/confirm-number", &[("token", &token)]).await;
    assert_eq!(code, StatusCode::CONFLICT);
    // What YClients holds (API key, webhook URLs) does not name the number: no callback.
    assert_eq!(callbacks_for(&app), callbacks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_disconnects_whatsapp_and_gets_a_new_qr() {
    let app = spawn_healing_app().await;
    let (token, _) = app.activate(SALON).await;
    let (code, body) = call(&app, "onboarding/disconnect", &[("token", &token)]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    app.current_qr(SALON).await;
    assert!(
        app.handles
            .store
            .device_credentials(salon(SALON), "simulator")
            .await
            .expect("read")
            .is_none(),
        "credentials purged"
    );
    assert_eq!(audit_count(&app, "whatsapp_disconnected_by_admin").await, 1);
    let status = app.status(&token, SALON).await;
    assert_eq!(status["activation"]["state"], "active");
    // The phone no longer lists the device: unlinking it from there finds nothing.
    assert!(app.simulator.unlink_from_phone(salon(SALON)).await.is_err());
    // Without a token nobody disconnects anything.
    let (code, _) = call(&app, "onboarding/disconnect", &[("token", "forged")]).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_message_reaches_the_phone_and_its_receipts_reach_the_page() {
    let app = spawn_healing_app().await;
    let token = app.enter(SALON).await;
    // Not linked yet: a clear refusal.
    app.current_qr(SALON).await;
    let (code, _) = call(
        &app,
        "onboarding/test-message",
        &[("token", &token), ("phone", "")],
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (token, _) = app.activate(SALON).await;

    // Empty: the admin's own number from YClients' user_data.
    let (code, body) = call(
        &app,
        "onboarding/test-message",
        &[("token", &token), ("phone", "")],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["test_message"]["to"], "+7 999 ***-**-00");
    let status = app
        .wait_for_status(&token, SALON, "delivered", |s| {
            s["test_message"]["status"] == "delivered"
        })
        .await;
    assert_eq!(status["test_message"]["to"], "+7 999 ***-**-00");
    let inbox = app.simulator.read_inbox(&phone("79990009900"));
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].text.contains("AI Admin"));
    assert_eq!(inbox[0].from, Some(phone("79990009900")));
    app.wait_for_status(&token, SALON, "read", |s| {
        s["test_message"]["status"] == "read"
    })
    .await;

    // Another number, written as people write it; the phone page lists it.
    let (code, body) = call(
        &app,
        "onboarding/test-message",
        &[("token", &token), ("phone", "+7 (999) 555-44-33")],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let page = app
        .get("/dev/phone/messages?phone=79995554433")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("data-testid=\"sim-message\""), "{page}");
    // Nonsense is a 400 with words, not a send.
    let (code, body) = call(
        &app,
        "onboarding/test-message",
        &[("token", &token), ("phone", "not a number")],
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_server_controls_refuse_nonsense_with_a_4xx() {
    let app = spawn_healing_app().await;
    for (path, form) in [
        ("/dev/phone/replace", vec![("salon", "nope")]),
        (
            "/dev/phone/ban",
            vec![("salon", "962302"), ("seconds", "-5")],
        ),
        ("/dev/phone/silence", vec![("salon", "962302")]),
        ("/dev/phone/replace", vec![("salon", "962302")]),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .form(&form)
            .send()
            .await
            .expect("sent");
        assert!(
            response.status().is_client_error(),
            "{path} {form:?}: {}",
            response.status()
        );
    }
    let inbox = app.get("/dev/phone/messages?phone=abc").await;
    assert_eq!(inbox.status(), StatusCode::BAD_REQUEST);
}
