use crate::helpers::{salon, spawn_app, spawn_app_with, APPLICATION_ID, PARTNER_TOKEN, SALON};
use reqwest::StatusCode;
use server::activation::Trigger;
use std::time::Duration;
use yclients_sandbox::FaultKind;

/// An app whose outbox worker is off, with a linked salon whose callback is written but not sent.
async fn linked_with_callback_owed() -> (crate::helpers::TestApp, String) {
    let app = spawn_app_with(|vars| {
        vars.insert("OUTBOX_WORKER".into(), "false".into());
    })
    .await;
    let token = app.link_whatsapp(SALON, "79990009900").await;
    app.wait_for_status(&token, SALON, "activating", |s| {
        s["activation"]["state"] == "activating"
    })
    .await;
    (app, token)
}

fn accepted(app: &crate::helpers::TestApp) -> usize {
    app.sandbox
        .callbacks()
        .iter()
        .filter(|c| c.answered == 201)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_activates_by_itself_and_the_callback_matches_the_contract() {
    let app = spawn_app().await;
    let (token, webhook_url) = app.activate(SALON).await;
    let callbacks = app.sandbox.callbacks();
    assert_eq!(callbacks.len(), 1);
    let callback = &callbacks[0];
    assert_eq!(
        callback.authorization.as_deref(),
        Some(format!("Bearer {PARTNER_TOKEN}").as_str())
    );
    assert_eq!(
        callback.accept.as_deref(),
        Some("application/vnd.yclients.v2+json")
    );
    assert!(callback
        .content_type
        .as_deref()
        .unwrap_or_default()
        .starts_with("application/json"));
    assert_eq!(callback.body["salon_id"], SALON);
    assert_eq!(callback.body["application_id"], APPLICATION_ID);
    assert!(callback.body["api_key"].is_string());
    assert_eq!(callback.body["channels"], serde_json::json!(["whatsapp"]));
    assert!(webhook_url.starts_with(&format!("{}/webhook/yclients/events/{SALON}/", app.address)));
    assert_eq!(app.sandbox.link(SALON).expect("link").status, "active");
    // The key is stored only as a hash; the plaintext is gone from the outbox once confirmed.
    let api_key = callback.body["api_key"].as_str().expect("key").to_owned();
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE api_key_hash = '{}'",
            server::domain::sha256_hex(&api_key)
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM callback_outbox WHERE payload LIKE '%{api_key}%'"
        ))
        .await,
        0
    );
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'integration_activated'")).await, 1);
    let status = app.status(&token, SALON).await;
    assert_eq!(status["activation"]["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_triggers_make_one_activation() {
    let app = spawn_app_with(|vars| {
        vars.insert("OUTBOX_WORKER".into(), "false".into());
    })
    .await;
    let token = app.link_whatsapp(SALON, "79990009900").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let activation = app.handles.activation.clone();
        let client = app.client.clone();
        let url = app.url("/api/onboarding/activate");
        let token = token.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                activation
                    .activate_integration(salon(SALON), Trigger::Linked)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                let response = client
                    .post(url)
                    .form(&[("token", token)])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status() == StatusCode::OK {
                    Ok(())
                } else {
                    Err(response.status().to_string())
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("trigger answered");
    }
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM callback_outbox WHERE salon_id = {SALON}"
        ))
        .await,
        1
    );
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'activation_started'")).await, 1);
    // Two workers racing over the same row deliver it once.
    let (a, b) = tokio::join!(
        app.handles.activation.deliver_due(),
        app.handles.activation.deliver_due()
    );
    a.expect("pass");
    b.expect("pass");
    assert_eq!(app.sandbox.callbacks().len(), 1);
    assert_eq!(accepted(&app), 1);
    app.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_yclients_confirms() {
    let app = spawn_app().await;
    app.fault(FaultKind::ServerError, 1, "/marketplace/partner/callback");
    app.fault(FaultKind::HtmlRedirect, 1, "/marketplace/partner/callback");
    app.fault(FaultKind::RateLimited, 1, "/marketplace/partner/callback");
    app.fault(FaultKind::Timeout, 1, "/marketplace/partner/callback");
    let token = app.link_whatsapp(SALON, "79990009900").await;
    let status = app
        .wait_for_status(&token, SALON, "active", |s| {
            s["activation"]["state"] == "active"
        })
        .await;
    assert_eq!(status["activation"]["state"], "active");
    let answers: Vec<u16> = app.sandbox.callbacks().iter().map(|c| c.answered).collect();
    // The timed-out call never got its answer (the client gave up first), so the sandbox did not
    // log it; the outbox counted it as an attempt all the same.
    assert_eq!(answers, vec![500, 301, 429, 201]);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM callback_outbox WHERE salon_id = {SALON} AND attempts = 5"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_installed_counts_as_confirmed_when_yclients_says_active() {
    let (app, token) = linked_with_callback_owed().await;
    // Our first 201 was lost on the way back: YClients already has the link active.
    app.sandbox.set_link_status(SALON, "active");
    app.handles
        .activation
        .deliver_due()
        .await
        .expect("outbox pass");
    let answers: Vec<u16> = app.sandbox.callbacks().iter().map(|c| c.answered).collect();
    assert_eq!(answers, vec![403]);
    let status = app.status(&token, SALON).await;
    assert_eq!(
        status["activation"]["state"], "active",
        "403 + installation status `active` = confirmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_installed_without_an_active_installation_is_retried() {
    let app = spawn_app().await;
    app.fault(
        FaultKind::AlreadyInstalled,
        1,
        "/marketplace/partner/callback",
    );
    let token = app.link_whatsapp(SALON, "79990009900").await;
    app.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    let answers: Vec<u16> = app.sandbox.callbacks().iter().map(|c| c.answered).collect();
    assert_eq!(answers, vec![403, 201]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitive_refusals_fail_at_once_with_yclients_message() {
    for (kind, message) in [
        (FaultKind::AggregatorNotFound, "Агрегатор не найден"),
        (FaultKind::Unauthorized, "Неверный партнерский токен"),
        (FaultKind::Validation, "Ошибка валидации"),
    ] {
        let app = spawn_app().await;
        app.fault(kind, 1, "/marketplace/partner/callback");
        let token = app.link_whatsapp(SALON, "79990009900").await;
        let status = app
            .wait_for_status(&token, SALON, "failed", |s| {
                s["activation"]["state"] == "failed"
            })
            .await;
        assert_eq!(status["activation"]["reason"], message, "{kind:?}");
        assert_eq!(app.sandbox.callbacks().len(), 1, "{kind:?}: not retried");
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'activation_failed'")).await, 1);
        // A late automatic activation request from the page (it saw "linked" before the refusal)
        // must not quietly activate again: only the admin's explicit retry may.
        let late = app
            .server_fn("onboarding/activate", &[("token", &token)])
            .await;
        assert_eq!(late.status(), StatusCode::OK);
        let late: serde_json::Value = late.json().await.expect("JSON");
        assert_eq!(late["activation"]["state"], "failed", "{kind:?}");
        assert_eq!(
            app.sandbox.callbacks().len(),
            1,
            "{kind:?}: no second callback"
        );
        // The admin's retry (server action) starts a new activation with a new key.
        let retry = app
            .server_fn("onboarding/retry-activation", &[("token", &token)])
            .await;
        assert_eq!(retry.status(), StatusCode::OK);
        app.wait_for_status(&token, SALON, "active after retry", |s| {
            s["activation"]["state"] == "active"
        })
        .await;
        let keys: Vec<String> = app
            .sandbox
            .callbacks()
            .iter()
            .map(|c| c.body["api_key"].to_string())
            .collect();
        assert_ne!(keys[0], keys[1], "re-activation issues a new key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_window_ends_retries_with_a_clear_failure() {
    let app = spawn_app_with(|vars| {
        vars.insert("YCLIENTS_PENDING_WINDOW_SECS".into(), "1".into());
        vars.insert("CALLBACK_RETRY_BASE_MS".into(), "300".into());
    })
    .await;
    app.fault(FaultKind::ServerError, 50, "/marketplace/partner/callback");
    let token = app.link_whatsapp(SALON, "79990009900").await;
    let status = app
        .wait_for_status(&token, SALON, "failed", |s| {
            s["activation"]["state"] == "failed"
        })
        .await;
    assert!(status["activation"]["reason"]
        .as_str()
        .expect("reason")
        .contains("за отведённый час"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_owed_when_the_server_stopped_is_delivered_after_restart() {
    let (app, token) = linked_with_callback_owed().await;
    assert_eq!(
        app.sandbox.callbacks().len(),
        0,
        "row written, not delivered"
    );
    let app = app
        .restart_with(|vars| {
            vars.remove("OUTBOX_WORKER");
        })
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.sandbox.callbacks().iter().all(|c| c.answered != 201) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    assert_eq!(app.sandbox.callbacks().len(), 1);
}

/// The answers the sandbox gave to the partner callback, in order.
fn answers(app: &crate::helpers::TestApp) -> Vec<u16> {
    app.sandbox.callbacks().iter().map(|c| c.answered).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_a_yclients_confirmation_leaves_the_salon_activating() {
    // A proxy's HTML page, and YClients' envelope saying `success: false`: both answer 200, and
    // neither confirms anything.
    for kind in [FaultKind::HtmlOk, FaultKind::SuccessFalse] {
        let (app, token) = linked_with_callback_owed().await;
        app.fault(kind, 1, "/marketplace/partner/callback");
        app.handles
            .activation
            .deliver_due()
            .await
            .expect("outbox pass");
        assert_eq!(answers(&app), vec![200], "{kind:?}");
        let status = app.status(&token, SALON).await;
        assert_eq!(
            status["activation"]["state"], "activating",
            "{kind:?}: a 200 without YClients' `success: true` is not a confirmation"
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM callback_outbox WHERE salon_id = {SALON} AND status = 'pending' AND attempts = 1"
            ))
            .await,
            1,
            "{kind:?}: the callback stays owed, to be retried"
        );
        assert_eq!(
            app.sandbox.link(SALON).expect("link").status,
            "pending",
            "{kind:?}"
        );
        // The retry (after its backoff) reaches YClients, which confirms with 201.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !answers(&app).contains(&201) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind:?}: not retried; answers {:?}",
                answers(&app)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            app.handles
                .activation
                .deliver_due()
                .await
                .expect("outbox pass");
        }
        app.wait_for_status(&token, SALON, "active", |s| {
            s["activation"]["state"] == "active"
        })
        .await;
        assert_eq!(answers(&app), vec![200, 201], "{kind:?}");
        assert_eq!(app.sandbox.link(SALON).expect("link").status, "active");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_worker_retries_unconfirmed_200s_until_yclients_confirms() {
    let app = spawn_app().await;
    app.fault(FaultKind::HtmlOk, 2, "/marketplace/partner/callback");
    app.fault(FaultKind::SuccessFalse, 1, "/marketplace/partner/callback");
    let token = app.link_whatsapp(SALON, "79990009900").await;
    app.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    assert_eq!(answers(&app), vec![200, 200, 200, 201]);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM callback_outbox WHERE salon_id = {SALON} AND attempts = 4"
        ))
        .await,
        1
    );
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'integration_activated'")).await, 1);
}

/// The URL YClients holds for the salon's entity webhooks (the one its last accepted callback
/// carried), and what a booking event posted there is answered.
async fn yclients_webhook_answer(app: &crate::helpers::TestApp) -> StatusCode {
    let link = app
        .sandbox
        .link(SALON)
        .expect("YClients holds the installation");
    let url = link.webhook_urls.first().expect("a webhook URL held");
    let event = serde_json::json!({"company_id": SALON, "resource": "client", "resource_id": 1,
                                   "status": "create", "data": {"id": 1}});
    app.post_json(url, &event).await.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_accepted_with_its_answer_lost_is_confirmed_with_its_own_pair() {
    // YClients accepted the activation callback, but every answer was lost on its way back
    // (a timeout, a proxy's 504), until the pending window closed. Before, the row failed
    // («YClients не подтвердил…») while YClients held its pair as active; the admin's retry
    // then offered a new pair, YClients answered "already installed" keeping the first, and the
    // new one was adopted because the salon "had none": every entity webhook to the URL YClients
    // holds was answered 401 (found by an audit read as an attacker, 2026-12-06).
    let app = spawn_app_with(|vars| {
        vars.insert("YCLIENTS_PENDING_WINDOW_SECS".into(), "1".into());
        vars.insert("CALLBACK_RETRY_BASE_MS".into(), "300".into());
    })
    .await;
    app.fault(FaultKind::AnswerLost, 50, "/marketplace/partner/callback");
    let token = app.link_whatsapp(SALON, "79990009900").await;
    let status = app
        .wait_for_status(&token, SALON, "active or failed", |s| {
            matches!(s["activation"]["state"].as_str(), Some("active" | "failed"))
        })
        .await;
    assert_eq!(
        status["activation"]["state"], "active",
        "YClients holds it active: {status}"
    );
    app.sandbox.clear_faults();
    assert_eq!(
        yclients_webhook_answer(&app).await,
        StatusCode::OK,
        "the pair YClients holds is ours"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salon_frozen_while_its_callback_is_owed_resumes_with_the_pair_yclients_took() {
    // The paid period ended while the activation callback was still being retried. The outbox
    // went on and YClients accepted it, but the confirmation found the salon no longer
    // activating and kept no pair: once YClients un-froze the installation, the salon could
    // only start over, and its entity webhooks were 401 (found by an audit, 2026-12-06).
    let app = spawn_app_with(|vars| {
        vars.insert("CALLBACK_RETRY_BASE_MS".into(), "100".into());
    })
    .await;
    app.fault(
        FaultKind::ServerError,
        10_000,
        "/marketplace/partner/callback",
    );
    let token = app.link_whatsapp(SALON, "79990009900").await;
    app.wait_for_status(&token, SALON, "activating", |s| {
        s["activation"]["state"] == "activating"
    })
    .await;
    app.apply_lifecycle(SALON, "freeze").await;
    app.sandbox.clear_faults();
    // The owed callback reaches YClients and is accepted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while app
        .count("SELECT COUNT(*) FROM callback_outbox WHERE status = 'confirmed'")
        .await
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "callback confirmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND status = 'frozen'"
        ))
        .await,
        1,
        "still frozen: the subscription is not paid"
    );

    // Paid again: the admin's next entry resumes it, with the pair YClients holds.
    app.sandbox.set_link_status(SALON, "active");
    let token = app.reopen(SALON).await;
    assert_eq!(
        app.status(&token, SALON).await["activation"]["state"],
        "active"
    );
    assert_eq!(yclients_webhook_answer(&app).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_callback_whose_answers_were_lost_adopts_the_pair_yclients_took() {
    // As above, but YClients' installation status could not be read when the window closed
    // either, so the first row failed. The admin's retry offers a new pair; YClients answers
    // "already installed", keeping the first row's. Before, the retry's own pair was adopted
    // (the salon "had none") and every entity webhook to the URL YClients holds was 401.
    let app = spawn_app_with(|vars| {
        vars.insert("YCLIENTS_PENDING_WINDOW_SECS".into(), "4".into());
        vars.insert("CALLBACK_RETRY_BASE_MS".into(), "2000".into());
    })
    .await;
    app.fault(FaultKind::AnswerLost, 50, "/marketplace/partner/callback");
    let token = app.link_whatsapp(SALON, "79990009900").await;
    // From the first retry on (two seconds away), the installation status cannot be read.
    app.fault(FaultKind::ServerError, 1_000, "/marketplace/salon");
    app.wait_for_status(&token, SALON, "failed", |s| {
        s["activation"]["state"] == "failed"
    })
    .await;
    app.sandbox.clear_faults();

    let response = app
        .server_fn("onboarding/retry-activation", &[("token", &token)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    assert_eq!(
        yclients_webhook_answer(&app).await,
        StatusCode::OK,
        "the pair YClients holds is ours"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM integration_events WHERE kind = 'integration_activated' \
             AND payload LIKE '%earlier_unanswered%'"
        )
        .await,
        1,
        "the trail says which pair was taken"
    );
}
