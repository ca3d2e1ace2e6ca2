//! The operator's console: nothing under `/ops` without a session (an onboarding token is not
//! one), sign-in refused and rate-limited, CSRF on every action, and each action's effect and its
//! audit entry with the operator's name.

use crate::helpers::{salon, spawn_app_with, TestApp, SALON};
use app::status::LinkState;
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, Set};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use yclients_sandbox::FaultKind;

const OPERATOR: &str = "anna";
const PASSWORD: &str = "correct horse battery";

fn with_operator(vars: &mut HashMap<String, String>) {
    let hash = server::ops::auth::hash_password(PASSWORD).expect("hash");
    vars.insert("OPS_OPERATORS".into(), format!("{OPERATOR}:{hash}"));
}

async fn console() -> TestApp {
    spawn_app_with(with_operator).await
}

async fn sign_in_as(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/ops/login"))
        .form(&[("name", name), ("password", password)])
        .send()
        .await
        .expect("sign-in sent")
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Signs in; the session cookie (`name=value`) and the CSRF token the console renders.
async fn sign_in(app: &TestApp) -> (String, String) {
    let response = sign_in_as(app, OPERATOR, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/ops");
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http in tests");
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let list: Value = app
        .client
        .post(app.url("/api/ops/salons"))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .form(&[
            ("q", ""),
            ("status", ""),
            ("whatsapp", ""),
            ("attention", "false"),
            ("page", "1"),
        ])
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let csrf = list["operator"]["csrf"].as_str().expect("csrf").to_owned();
    (cookie, csrf)
}

async fn list(app: &TestApp, cookie: &str, args: &[(&str, &str)]) -> Value {
    let mut form: HashMap<&str, &str> = [
        ("q", ""),
        ("status", ""),
        ("whatsapp", ""),
        ("attention", "false"),
        ("page", "1"),
    ]
    .into_iter()
    .collect();
    form.extend(args.iter().copied());
    let response = app
        .client
        .post(app.url("/api/ops/salons"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .expect("list");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

async fn act(
    app: &TestApp,
    cookie: &str,
    salon_id: i64,
    action: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/ops/salons/{salon_id}/actions/{action}")))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .expect("action sent")
}

async fn operator_entries(app: &TestApp, action: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'operator_action' \
         AND payload LIKE '%\"operator\":\"{OPERATOR}\"%' AND payload LIKE '%\"action\":\"{action}\"%'"
    ))
    .await
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_every_console_path_redirects_to_sign_in() {
    let app = console().await;
    for path in [
        "/ops",
        "/ops/",
        "/ops/salons/962302",
        "/ops/salons/x?confirm=stop",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), "/ops/login", "{path}");
    }
    let response = act(
        &app,
        "ops_session=forged.1.2.3",
        SALON,
        "stop",
        &[("csrf", "x")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/ops/login");
    let page = app.get("/ops/login").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("action=\"/ops/login\""), "the sign-in form");
    // The data behind the pages answers 401 without a session.
    let response = app
        .client
        .post(app.url("/api/ops/salon"))
        .header("accept", "application/json")
        .form(&[("id", "962302")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarding_token_never_opens_the_console() {
    let app = console().await;
    let token = app.enter(SALON).await;
    for path in [
        format!("/ops?token={token}"),
        format!("/ops/salons/{SALON}?token={token}"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), "/ops/login");
        let response = app
            .client
            .get(app.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent");
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{path} with a bearer"
        );
    }
    let response = app
        .client
        .post(app.url("/api/ops/salons"))
        .bearer_auth(&token)
        .header("accept", "application/json")
        .form(&[
            ("q", ""),
            ("status", ""),
            ("whatsapp", ""),
            ("attention", "false"),
            ("page", "1"),
            ("token", token.as_str()),
        ])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_name_is_refused_without_a_session() {
    let app = console().await;
    for (name, password) in [(OPERATOR, "wrong password"), ("boris", PASSWORD), ("", "")] {
        let response = sign_in_as(&app, name, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/ops/login?error=1");
        assert!(response.headers().get("set-cookie").is_none());
    }
    let (cookie, _) = sign_in(&app).await;
    let page = app
        .client
        .get(app.url("/ops"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains(OPERATOR));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_rate_limited() {
    let app = spawn_app_with(|vars| {
        with_operator(vars);
        vars.insert("OPS_SIGNIN_PER_MINUTE".into(), "3".into());
    })
    .await;
    for _ in 0..3 {
        let response = sign_in_as(&app, OPERATOR, "guess").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    // Even the right password waits now.
    let response = sign_in_as(&app, OPERATOR, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_the_sessions_csrf_token_is_refused() {
    let app = console().await;
    app.link_whatsapp(SALON, "79990009900").await;
    let (cookie, csrf) = sign_in(&app).await;
    for form in [vec![], vec![("csrf", "0123")]] {
        let response = act(&app, &cookie, SALON, "stop", &form).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert!(
        app.handles.linking.state(salon(SALON)).is_linked(),
        "nothing was done"
    );
    assert_eq!(operator_entries(&app, "stop").await, 0);
    // Sign-out is an action too.
    let response = app
        .client
        .post(app.url("/ops/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", "")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Bad input is a 400 with a message.
    let response = act(&app, &cookie, SALON, "explode", &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = act(
        &app,
        &cookie,
        SALON,
        "retry-lifecycle",
        &[("csrf", &csrf), ("event_id", "x")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_searches_filters_and_pages_on_the_server() {
    let app = console().await;
    app.activate(SALON).await;
    let (cookie, _) = sign_in(&app).await;
    let all = list(&app, &cookie, &[]).await;
    assert_eq!(all["total"], 1);
    let title = all["rows"][0]["title"].as_str().expect("title").to_owned();
    let by_id = list(&app, &cookie, &[("q", "962302")]).await;
    assert_eq!(by_id["rows"][0]["id"], SALON);
    // A substring of the title (SQLite's LOWER folds ASCII only; PostgreSQL folds Cyrillic too).
    let word: String = title.chars().skip(1).take(4).collect();
    assert_eq!(
        list(&app, &cookie, &[("q", &word)]).await["total"],
        1,
        "{word}"
    );
    assert_eq!(
        list(&app, &cookie, &[("q", "no such salon")]).await["total"],
        0
    );
    assert_eq!(
        list(&app, &cookie, &[("status", "active")]).await["total"],
        1
    );
    assert_eq!(
        list(&app, &cookie, &[("status", "frozen")]).await["total"],
        0
    );
    assert_eq!(
        list(&app, &cookie, &[("whatsapp", "linked")]).await["total"],
        1
    );
    assert_eq!(
        list(&app, &cookie, &[("attention", "true")]).await["total"],
        0
    );
    // Bad filters are the caller's mistake.
    let response = app
        .client
        .post(app.url("/api/ops/salons"))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .form(&[
            ("q", ""),
            ("status", "bogus"),
            ("whatsapp", ""),
            ("attention", "false"),
            ("page", "1"),
        ])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // The phone unlinks us: the salon needs attention.
    app.simulator
        .unlink_from_phone(salon(SALON))
        .await
        .expect("unlinked");
    wait_until("logged_out recorded", async || {
        list(&app, &cookie, &[("whatsapp", "logged_out")]).await["total"] == 1
    })
    .await;
    assert_eq!(
        list(&app, &cookie, &[("attention", "true")]).await["total"],
        1
    );
    // The page renders on the server.
    let page = app
        .client
        .get(app.url("/ops?attention=1"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains(&format!("/ops/salons/{SALON}")),
        "the row links to the salon"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_gave_up_is_requeued_and_the_salon_becomes_active() {
    let app = console().await;
    app.fault(FaultKind::Validation, 1, "/marketplace/partner/callback");
    let token = app.link_whatsapp(SALON, "79990009900").await;
    app.wait_for_status(&token, SALON, "failed", |s| {
        s["activation"]["state"] == "failed"
    })
    .await;
    let (cookie, csrf) = sign_in(&app).await;
    assert_eq!(
        list(&app, &cookie, &[("attention", "true")]).await["total"],
        1,
        "callback not confirmed"
    );
    let page = app
        .client
        .get(app.url(&format!("/ops/salons/{SALON}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("Ошибка валидации"),
        "YClients' answer shown"
    );
    let response = act(&app, &cookie, SALON, "requeue-callback", &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(location(&response).starts_with(&format!("/ops/salons/{SALON}?done=requeue-callback")));
    app.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    assert_eq!(operator_entries(&app, "requeue-callback").await, 1);
    // Nothing left to requeue: refused, and the refusal is in the trail too.
    let response = act(&app, &cookie, SALON, "requeue-callback", &[("csrf", &csrf)]).await;
    assert!(
        location(&response).contains("error="),
        "{}",
        location(&response)
    );
    assert_eq!(operator_entries(&app, "requeue-callback").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whatsapp_session_is_stopped_restarted_and_logged_out_by_an_operator() {
    let app = console().await;
    app.activate(SALON).await;
    let (cookie, csrf) = sign_in(&app).await;
    let response = act(&app, &cookie, SALON, "stop", &[("csrf", &csrf)]).await;
    assert!(location(&response).contains("done=stop"));
    assert_eq!(app.handles.linking.state(salon(SALON)), LinkState::Idle);
    assert_eq!(operator_entries(&app, "stop").await, 1);

    let response = act(&app, &cookie, SALON, "restart", &[("csrf", &csrf)]).await;
    assert!(
        location(&response).contains("done=restart"),
        "{}",
        location(&response)
    );
    app.wait_for_link_state(SALON, "linked again from credentials", LinkState::is_linked)
        .await;
    assert_eq!(operator_entries(&app, "restart").await, 1);

    let response = act(&app, &cookie, SALON, "logout", &[("csrf", &csrf)]).await;
    assert!(
        location(&response).contains("done=logout"),
        "{}",
        location(&response)
    );
    app.wait_for_link_state(SALON, "a new QR", |s| matches!(s, LinkState::Qr { .. }))
        .await;
    assert_eq!(operator_entries(&app, "logout").await, 1);
    let page = app
        .client
        .get(app.url(&format!("/ops/salons/{SALON}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("operator_action"),
        "the trail shows the actions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_up_lifecycle_event_is_retried_by_an_operator() {
    let app = console().await;
    app.activate(SALON).await;
    let now = chrono::Utc::now();
    let event = server::db::entities::lifecycle_events::ActiveModel {
        salon_id: Set(SALON),
        application_id: Set(crate::helpers::APPLICATION_ID),
        event: Set("freeze".into()),
        attempts: Set(5),
        last_error: Set(Some("database: gone".into())),
        created_at: Set(now),
        gave_up_at: Set(Some(now)),
        ..Default::default()
    }
    .insert(&app.handles.db)
    .await
    .expect("event stored");
    let (cookie, csrf) = sign_in(&app).await;
    assert_eq!(
        list(&app, &cookie, &[("attention", "true")]).await["total"],
        1,
        "given up"
    );
    let id = event.id.to_string();
    let response = act(
        &app,
        &cookie,
        SALON,
        "retry-lifecycle",
        &[("csrf", &csrf), ("event_id", &id)],
    )
    .await;
    assert!(
        location(&response).contains("done=retry-lifecycle"),
        "{}",
        location(&response)
    );
    assert_eq!(operator_entries(&app, "retry-lifecycle").await, 1);
    wait_until("the freeze applied", async || {
        app.count(&format!(
            "SELECT COUNT(*) FROM lifecycle_events WHERE id = {id} AND processed_at IS NOT NULL"
        ))
        .await
            == 1
    })
    .await;
    assert_eq!(
        list(&app, &cookie, &[("status", "frozen")]).await["total"],
        1
    );
    // Done once: a second retry is refused.
    let response = act(
        &app,
        &cookie,
        SALON,
        "retry-lifecycle",
        &[("csrf", &csrf), ("event_id", &id)],
    )
    .await;
    assert!(location(&response).contains("error="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_asks_yclients_and_resumes_a_frozen_salon_it_holds_active() {
    let app = console().await;
    app.activate(SALON).await;
    app.sandbox.set_link_status(SALON, "freezed");
    app.post_lifecycle(&app.lifecycle_body(SALON, "freeze"))
        .await;
    let (cookie, csrf) = sign_in(&app).await;
    wait_until("frozen", async || {
        list(&app, &cookie, &[("status", "frozen")]).await["total"] == 1
    })
    .await;
    let response = act(&app, &cookie, SALON, "reconcile", &[("csrf", &csrf)]).await;
    assert!(
        location(&response).contains("done=reconcile"),
        "{}",
        location(&response)
    );
    assert_eq!(
        list(&app, &cookie, &[("status", "frozen")]).await["total"],
        1,
        "still frozen in YClients"
    );
    app.sandbox.set_link_status(SALON, "active");
    act(&app, &cookie, SALON, "reconcile", &[("csrf", &csrf)]).await;
    assert_eq!(
        list(&app, &cookie, &[("status", "active")]).await["total"],
        1
    );
    app.wait_for_link_state(SALON, "the session restored", LinkState::is_linked)
        .await;
    assert_eq!(operator_entries(&app, "reconcile").await, 2);
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'unfrozen' AND payload LIKE '%operator%'")).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expires_and_signing_out_ends_it_in_the_browser() {
    let app = spawn_app_with(|vars| {
        with_operator(vars);
        vars.insert("OPS_SESSION_TTL_SECS".into(), "1".into());
    })
    .await;
    let (cookie, csrf) = sign_in(&app).await;
    let response = app
        .client
        .post(app.url("/ops/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cleared = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let response = app
        .client
        .get(app.url("/ops"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "expired");
    assert_eq!(location(&response), "/ops/login");
}
