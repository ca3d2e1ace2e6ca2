//! Frozen salons: the page at entry while YClients says `freezed` (the app's own marketplace card,
//! nobody else's), and the resume — by the periodic check or by an entry — once YClients holds the
//! installation as active again: the session comes back from its credentials, no new scan, no
//! second activation callback, one `unfrozen` audit entry.

use crate::helpers::{
    salon, spawn_app, spawn_app_with, TestApp, APPLICATION_ID, OTHER_SALON, PARTNER_TOKEN, SALON,
};
use app::status::{LinkState, LiveEventKind};
use reqwest::StatusCode;
use server::bus::Received;
use server::domain::SalonStatus;
use std::collections::HashMap;
use std::time::Duration;
use yclients_sandbox::FaultKind;

/// The periodic check every 40 ms, without pacing.
fn fast_check(vars: &mut HashMap<String, String>) {
    vars.insert("FROZEN_CHECK_INTERVAL_MS".into(), "40".into());
    vars.insert("FROZEN_CHECK_PACE_MS".into(), "0".into());
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stored_status(app: &TestApp, salon_id: i64) -> SalonStatus {
    app.handles
        .store
        .salon(salon(salon_id))
        .await
        .expect("store answers")
        .expect("the salon is stored")
        .status
}

/// How many installation checks YClients received for the salon.
fn checks(app: &TestApp, salon_id: i64) -> usize {
    app.sandbox.requests(&format!(
        "/marketplace/salon/{salon_id}/application/{APPLICATION_ID}"
    ))
}

async fn unfrozen_entries(app: &TestApp, salon_id: i64, noticed_by: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM integration_events WHERE salon_id = {salon_id} \
         AND kind = 'unfrozen' AND payload LIKE '%\"{noticed_by}\"%'"
    ))
    .await
}

async fn all_unfrozen_entries(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM integration_events WHERE kind = 'unfrozen'")
        .await
}

/// The card link the frozen page shows for `salon_id`, with the default template.
fn card_link(salon_id: i64) -> String {
    format!(
        r#"href="https://yclients.com/appstore/{salon_id}/applications/{APPLICATION_ID}/info" target="_top" rel="noopener""#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_subscription_resumes_a_frozen_salon_without_a_scan_or_a_second_callback() {
    let app = spawn_app_with(fast_check).await;
    let (token, _) = app.activate(SALON).await;
    let callbacks = app.sandbox.requests("/marketplace/partner/callback");
    assert_eq!(callbacks, 1, "one activation callback");

    // The paid period ends: YClients freezes the installation and tells us.
    app.sandbox.set_link_status(SALON, "freezed");
    app.apply_lifecycle(SALON, "freeze").await;
    assert!(!app.simulator.is_open(salon(SALON)), "the session stopped");
    assert_eq!(app.handles.linking.state(salon(SALON)), LinkState::Idle);
    assert_eq!(
        app.status(&token, SALON).await["activation"]["state"],
        "frozen"
    );

    // Renewed in YClients, with no webhook for it: the periodic check notices.
    let mut events = app.handles.bus.subscribe_salon(salon(SALON));
    app.sandbox.set_link_status(SALON, "active");
    app.wait_for_status(&token, SALON, "the salon resumed", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    let state = app
        .wait_for_link_state(SALON, "the session restored", LinkState::is_linked)
        .await;
    assert!(matches!(state, LinkState::Linked { .. }));
    assert!(
        app.simulator.is_open(salon(SALON)),
        "the simulated session is open again"
    );
    let status = app.status(&token, SALON).await;
    assert_eq!(status["status"], "linked");
    assert_eq!(status["connected"], true);
    assert_eq!(status["activation"]["state"], "active");
    assert_eq!(stored_status(&app, SALON).await, SalonStatus::Active);

    // A few more intervals: nothing else happens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut kinds = Vec::new();
    while let Some(received) = events.try_recv() {
        if let Received::Changed(changed) = received {
            kinds.push(changed.kind);
        }
    }
    assert!(
        kinds.contains(&LiveEventKind::ActivationUpdate),
        "the resume was published for an open page: {kinds:?}"
    );
    assert!(
        !kinds.contains(&LiveEventKind::QrUpdate),
        "restored from the stored credentials, no QR to scan: {kinds:?}"
    );
    assert_eq!(
        app.handles.linking.state(salon(SALON)),
        state,
        "still linked"
    );
    assert_eq!(
        app.sandbox.requests("/marketplace/partner/callback"),
        callbacks,
        "no second activation callback"
    );
    assert_eq!(unfrozen_entries(&app, SALON, "periodic_check").await, 1);
    assert_eq!(
        all_unfrozen_entries(&app).await,
        1,
        "one resume, audited once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_check_leaves_a_salon_frozen_while_yclients_says_freezed_or_cannot_be_asked() {
    let app = spawn_app_with(|vars| {
        fast_check(vars);
        // One salon per pass: the second salon is reached by the next pass.
        vars.insert("FROZEN_CHECK_BATCH".into(), "1".into());
    })
    .await;
    app.activate(SALON).await;
    app.link_whatsapp(OTHER_SALON, "79990003344").await;
    // OTHER_SALON activates by itself once linked.
    wait_until("the second salon active", async || {
        stored_status(&app, OTHER_SALON).await == SalonStatus::Active
    })
    .await;

    // SALON: still frozen in YClients. OTHER_SALON: YClients no longer knows the installation
    // (404; the uninstall webhook is what removes a salon, not the check).
    app.sandbox.set_link_status(SALON, "freezed");
    app.sandbox.set_link_status(OTHER_SALON, "freezed");
    app.apply_lifecycle(SALON, "freeze").await;
    app.apply_lifecycle(OTHER_SALON, "freeze").await;
    let removed = app
        .client
        .post(format!(
            "{}/marketplace/salon/{OTHER_SALON}/application/{APPLICATION_ID}/uninstall",
            app.sandbox_url
        ))
        .bearer_auth(PARTNER_TOKEN)
        .send()
        .await
        .expect("sandbox answers");
    assert_eq!(removed.status(), StatusCode::OK);

    let (asked, asked_other) = (checks(&app, SALON), checks(&app, OTHER_SALON));
    wait_until("several checks of both salons", async || {
        checks(&app, SALON) >= asked + 3 && checks(&app, OTHER_SALON) >= asked_other + 3
    })
    .await;
    for id in [SALON, OTHER_SALON] {
        assert_eq!(stored_status(&app, id).await, SalonStatus::Frozen, "{id}");
        assert!(!app.simulator.is_open(salon(id)), "{id}: no session");
    }

    // YClients renews SALON but cannot be asked (5xx after the client's retries).
    app.fault(FaultKind::ServerError, 1_000, "/marketplace/salon");
    app.sandbox.set_link_status(SALON, "active");
    // A pass stops at its first failure and the next starts with that salon: count every check.
    let asked = app.sandbox.requests("/marketplace/salon/");
    wait_until("several failed checks", async || {
        app.sandbox.requests("/marketplace/salon/") >= asked + 6
    })
    .await;
    assert_eq!(stored_status(&app, SALON).await, SalonStatus::Frozen);
    assert!(!app.simulator.is_open(salon(SALON)));
    assert_eq!(all_unfrozen_entries(&app).await, 0);

    // YClients answers again: the next pass resumes SALON, and only SALON.
    app.sandbox.clear_faults();
    wait_until("SALON resumed", async || {
        stored_status(&app, SALON).await == SalonStatus::Active
    })
    .await;
    app.wait_for_link_state(SALON, "the session restored", LinkState::is_linked)
        .await;
    assert_eq!(
        stored_status(&app, OTHER_SALON).await,
        SalonStatus::Frozen,
        "not installed: left for the uninstall webhook"
    );
    assert!(!app.simulator.is_open(salon(OTHER_SALON)));
    assert_eq!(unfrozen_entries(&app, SALON, "periodic_check").await, 1);
    assert_eq!(all_unfrozen_entries(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_resumes_a_frozen_salon_with_the_same_audit_entry() {
    // The periodic check at its default (10 minutes) does not run during this test.
    let app = spawn_app().await;
    let (_, _) = app.activate(SALON).await;
    let callbacks = app.sandbox.requests("/marketplace/partner/callback");
    app.sandbox.set_link_status(SALON, "freezed");
    app.apply_lifecycle(SALON, "freeze").await;
    assert!(!app.simulator.is_open(salon(SALON)));

    // Renewed; the admin opens the app from the marketplace (the link stays active: no new
    // pending link, YClients answers `active`).
    app.sandbox.set_link_status(SALON, "active");
    app.reopen(SALON).await;
    assert_eq!(stored_status(&app, SALON).await, SalonStatus::Active);
    app.wait_for_link_state(SALON, "the session restored", LinkState::is_linked)
        .await;
    assert!(app.simulator.is_open(salon(SALON)));
    assert_eq!(unfrozen_entries(&app, SALON, "entry").await, 1);
    assert_eq!(all_unfrozen_entries(&app).await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.sandbox.requests("/marketplace/partner/callback"),
        callbacks,
        "no second activation callback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_installation_at_entry_links_to_its_own_marketplace_card_and_no_other() {
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    app.sandbox.set_link_status(SALON, "freezed");
    let frozen_link = app.sandbox.redirect_url(&[SALON]);
    let response = app.client.get(&frozen_link).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let html = response.text().await.expect("html");
    assert!(html.contains("lang=\"ru\""), "{html}");
    for words in [
        "AI Admin приостановлен в YClients",
        "Оплаченный период",
        "WhatsApp и все данные сохранены",
        "всё возобновится само",
        "Продлить AI Admin в маркетплейсе YClients",
    ] {
        assert!(html.contains(words), "«{words}» in {html}");
    }
    assert!(html.contains(&card_link(SALON)), "{html}");
    assert!(
        !html.contains(&OTHER_SALON.to_string()),
        "no other branch on the page"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM salons").await,
        0,
        "nothing stored for a frozen installation"
    );

    // The same page in English.
    let english = app
        .client
        .get(&frozen_link)
        .header("Accept-Language", "en-US,en;q=0.9")
        .send()
        .await
        .expect("sent");
    assert_eq!(english.status(), StatusCode::CONFLICT);
    let html = english.text().await.expect("html");
    assert!(html.contains("lang=\"en\"") && html.contains("resumes by itself"));
    assert!(html.contains(&card_link(SALON)));

    // The signed link replayed for a branch that is not installing us: refused, and no card
    // link for it (nor for anyone).
    let not_ours = app.sandbox.redirect_url(&[OTHER_SALON]);
    let response = app.client.get(&not_ours).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.expect("html");
    assert!(!html.contains("/applications/"), "{html}");
    assert!(
        !html.contains(&format!("/appstore/{OTHER_SALON}")),
        "{html}"
    );

    // The frozen branch with a forged signature: refused before YClients is asked, no card link.
    let forged = frozen_link.replace("user_data_sign=", "user_data_sign=00");
    let response = app.client.get(&forged).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.expect("html");
    assert!(!html.contains("/applications/"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marketplace_card_url_is_configurable() {
    let app = spawn_app_with(|vars| {
        vars.insert(
            "YCLIENTS_MARKETPLACE_URL".into(),
            "https://market.example/apps/{application_id}/branches/{salon_id}".into(),
        );
    })
    .await;
    app.sandbox.create_pending_link(SALON);
    app.sandbox.set_link_status(SALON, "freezed");
    let response = app
        .client
        .get(app.sandbox.redirect_url(&[SALON]))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let html = response.text().await.expect("html");
    assert!(
        html.contains(&format!(
            r#"href="https://market.example/apps/{APPLICATION_ID}/branches/{SALON}" target="_top""#
        )),
        "{html}"
    );
}
