//! The operator's console: nothing under `/ops` without a session (an onboarding token is not
//! one), sign-in refused and rate-limited, CSRF on every action, and each action's effect and its
//! audit entry with the operator's name.

use crate::helpers::{salon, spawn_app_with, TestApp, OTHER_SALON, SALON};
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

/// The `name=value` of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// A sign-in form as a browser gets it: its cookie (`ops_login=…`) and the token in the form.
async fn sign_in_form(app: &TestApp) -> (String, String) {
    let page = app.get("/ops/login").await;
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = set_cookie(&page, "ops_login").expect("the sign-in form's cookie");
    let html = page.text().await.expect("html");
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's token")
        .to_owned();
    (cookie, token)
}

async fn post_sign_in(
    app: &TestApp,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/ops/login")).form(form);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("sign-in sent")
}

async fn sign_in_as(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    let (cookie, token) = sign_in_form(app).await;
    post_sign_in(
        app,
        Some(&cookie),
        &[("name", name), ("password", password), ("csrf", &token)],
    )
    .await
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
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ops_session="))
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
    // YClients froze the installation; its freeze failed to apply here until it was given up.
    app.sandbox.set_link_status(SALON, "freezed");
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
        // Expiry is kept in whole seconds: a session lives between TTL - 1 and TTL seconds, so
        // 1 s left the sign-out below racing the next second boundary.
        vars.insert("OPS_SESSION_TTL_SECS".into(), "3".into());
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
    tokio::time::sleep(Duration::from_millis(3_100)).await;
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

/// The console's data for one salon, as its page reads it.
async fn salon_detail(app: &TestApp, cookie: &str, salon_id: i64) -> Value {
    let response = app
        .client
        .post(app.url("/api/ops/salon"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .form(&[("id", salon_id.to_string())])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_attempt_is_kept_with_yclients_answer_and_no_secret() {
    let app = console().await;
    let callback = "/marketplace/partner/callback";
    // No answer in time (the client gives up at 1.5 s), a 500, an HTML page with 200, then 201.
    app.fault(FaultKind::Timeout, 1, callback);
    app.fault(FaultKind::ServerError, 1, callback);
    app.fault(FaultKind::HtmlOk, 1, callback);
    let (_, webhook_url) = app.activate(SALON).await;
    let confirmed = app
        .sandbox
        .callbacks()
        .into_iter()
        .rev()
        .find(|c| c.answered == 201)
        .expect("the confirmed callback");
    let api_key = confirmed.body["api_key"].as_str().expect("key").to_owned();
    let secret = webhook_url.rsplit('/').next().expect("secret").to_owned();

    let (cookie, _) = sign_in(&app).await;
    let detail = salon_detail(&app, &cookie, SALON).await;
    let log = detail["callbacks"][0]["attempt_log"]
        .as_array()
        .expect("attempts")
        .clone();
    assert_eq!(log.len(), 4, "{log:#?}");
    for (n, attempt) in log.iter().enumerate() {
        assert_eq!(attempt["attempt"], n as i64 + 1);
        assert!(attempt["started_at"]
            .as_str()
            .is_some_and(|t| t.ends_with("UTC")));
    }
    assert_eq!(log[0]["http_status"], Value::Null, "no answer came");
    assert!(
        log[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("in time")),
        "{:?}",
        log[0]
    );
    assert!(log[0]["duration_ms"].as_i64().expect("ms") >= 1_000);
    assert_eq!(log[0]["outcome"], "retry");
    assert_eq!(log[1]["http_status"], 500);
    assert!(log[1]["answer"]
        .as_str()
        .is_some_and(|a| a.contains("Internal Server Error")));
    assert_eq!(log[1]["outcome"], "retry");
    assert_eq!(log[2]["http_status"], 200);
    assert!(log[2]["answer"]
        .as_str()
        .is_some_and(|a| a.contains("Bad Gateway")));
    assert!(log[2]["error"]
        .as_str()
        .is_some_and(|e| e.contains("text/html")));
    assert_eq!(log[3]["http_status"], 201);
    assert!(log[3]["answer"]
        .as_str()
        .is_some_and(|a| a.contains("\"success\":true")));
    assert_eq!(log[3]["outcome"], "confirmed");

    // Neither the key nor the webhook secret is kept with the attempts.
    let stored = serde_json::to_string(&log).expect("json");
    assert!(!stored.contains(&api_key) && !stored.contains(&secret));
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM callback_attempts WHERE salon_id = {SALON}"
        ))
        .await,
        4
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM callback_attempts WHERE COALESCE(answer, '') LIKE '%{api_key}%' \
             OR COALESCE(error, '') LIKE '%{api_key}%' OR COALESCE(answer, '') LIKE '%{secret}%' \
             OR COALESCE(error, '') LIKE '%{secret}%'"
        ))
        .await,
        0
    );
    // The salon's page lists them.
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
    assert_eq!(page.matches("data-testid=\"ops-attempt\"").count(), 4);
    assert!(page.contains("Bad Gateway"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_is_bound_to_its_browser() {
    // More posts than the default sign-in rate allows in a minute.
    let app = spawn_app_with(|vars| {
        with_operator(vars);
        vars.insert("OPS_SIGNIN_PER_MINUTE".into(), "30".into());
    })
    .await;
    let refused = |response: &reqwest::Response| {
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(response), "/ops/login?error=form");
        assert!(set_cookie(response, "ops_session").is_none(), "no session");
    };
    let right = [("name", OPERATOR), ("password", PASSWORD)];
    // A form posted from another site: no sign-in cookie, no token.
    refused(&post_sign_in(&app, None, &right).await);
    let (cookie_a, token_a) = sign_in_form(&app).await;
    let (cookie_b, token_b) = sign_in_form(&app).await;
    assert_ne!(token_a, token_b, "each browser its own token");
    fn with(token: &str) -> [(&str, &str); 3] {
        [("name", OPERATOR), ("password", PASSWORD), ("csrf", token)]
    }
    let (token_a, token_b) = (token_a.as_str(), token_b.as_str());
    // This browser's cookie without the token.
    refused(&post_sign_in(&app, Some(&cookie_a), &right).await);
    // The token of another browser (another cookie).
    refused(&post_sign_in(&app, Some(&cookie_a), &with(token_b)).await);
    // A token without its cookie, and with a cookie the attacker chose.
    refused(&post_sign_in(&app, None, &with(token_a)).await);
    refused(
        &post_sign_in(
            &app,
            Some("ops_login=0123456789abcdef0123456789abcdef"),
            &with(token_a),
        )
        .await,
    );
    // The token as its cookie's nonce: a nonce is not a token.
    let nonce = cookie_a.trim_start_matches("ops_login=");
    refused(&post_sign_in(&app, Some(&cookie_a), &with(nonce)).await);
    // The form's own pair signs in.
    let response = post_sign_in(&app, Some(&cookie_b), &with(token_b)).await;
    assert_eq!(location(&response), "/ops");
    assert!(set_cookie(&response, "ops_session").is_some());
    // A browser that comes to the form without a page load (client-side navigation) gets its
    // cookie with the token from the server function.
    let response = app
        .client
        .post(app.url("/api/ops/sign_in_form"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie_c = set_cookie(&response, "ops_login").expect("a sign-in cookie");
    let token_c: String = response.json().await.expect("the token");
    let response = post_sign_in(&app, Some(&cookie_c), &with(&token_c)).await;
    assert_eq!(location(&response), "/ops");
    // The form page keeps a browser's cookie (no new one), and renders the same token for it.
    let page = app
        .client
        .get(app.url("/ops/login"))
        .header("cookie", &cookie_c)
        .send()
        .await
        .expect("sent");
    assert!(set_cookie(&page, "ops_login").is_none());
    assert!(page.text().await.expect("html").contains(&token_c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_salon_page_follows_the_salon_live_for_operators_only() {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let app = console().await;
    let (token, _) = app.activate(SALON).await;
    let events_path = format!("/ops/salons/{SALON}/events");
    // Without a session: sign-in, whatever onboarding token comes with it.
    for path in [events_path.clone(), format!("{events_path}?token={token}")] {
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
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path} + bearer");
    }
    let (cookie, csrf) = sign_in(&app).await;
    let open = |path: String| {
        let request = app.client.get(app.url(&path)).header("cookie", &cookie);
        async move { request.send().await.expect("sent") }
    };
    assert_eq!(
        open("/ops/salons/962399/events".into()).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        open("/ops/salons/x/events".into()).await.status(),
        StatusCode::BAD_REQUEST
    );
    let response = open(events_path).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream")));
    let mut events = response.bytes_stream().eventsource();
    let mut next_change = async || loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open")
            .expect("well-formed event");
        if event.event != "ping" {
            return event.event;
        }
    };
    assert_eq!(next_change().await, "changed", "the first frame");
    // Another operator (or tab) stops the salon's session: the open page is told.
    let before = salon_detail(&app, &cookie, SALON).await["audit"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    act(&app, &cookie, SALON, "stop", &[("csrf", &csrf)]).await;
    assert_eq!(next_change().await, "changed");
    let detail = salon_detail(&app, &cookie, SALON).await;
    assert!(detail["audit"].as_array().map(Vec::len).unwrap_or_default() > before);
    assert!(detail["audit"][0]["payload"]
        .as_str()
        .is_some_and(|p| p.contains("\"action\":\"stop\"")));
    // The salon's own page changes too (WhatsApp, here): one more frame.
    app.handles
        .bus
        .publish(salon(SALON), app::status::LiveEventKind::WhatsappState);
    assert_eq!(next_change().await, "changed");
}

/// An entity webhook `n` (distinct, so none is a duplicate) to `url`.
async fn entity_webhook(app: &TestApp, url: &str, n: i64) -> StatusCode {
    app.post_json(
        url,
        &serde_json::json!({"company_id": SALON, "resource": "client", "resource_id": n,
            "status": "update", "data": {"id": n, "name": "Мария"}}),
    )
    .await
    .status()
}

async fn audit_entries(app: &TestApp, kind: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = '{kind}'"
    ))
    .await
}

/// The webhook URL of the latest callback YClients answered with `status`.
fn offered_url(app: &TestApp, status: u16) -> String {
    app.sandbox
        .callbacks()
        .iter()
        .rev()
        .find(|c| c.body["salon_id"] == SALON && c.answered == status)
        .and_then(|c| c.body["webhook_urls"][0].as_str().map(str::to_owned))
        .expect("an offered webhook URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_webhook_secret_replaces_the_old_one_only_once_yclients_confirms_it() {
    let app = console().await;
    let (_, old_url) = app.activate(SALON).await;
    assert_eq!(entity_webhook(&app, &old_url, 1).await, StatusCode::OK);
    let (cookie, csrf) = sign_in(&app).await;
    // YClients takes a callback for a link that is pending (here: access granted anew); the
    // first attempt gets no answer in time, so the rotation is owed for a while.
    app.sandbox.set_link_status(SALON, "pending");
    app.fault(FaultKind::Timeout, 1, "/marketplace/partner/callback");
    let response = act(
        &app,
        &cookie,
        SALON,
        "rotate-webhook-secret",
        &[("csrf", &csrf)],
    )
    .await;
    assert!(
        location(&response).contains("done=rotate-webhook-secret"),
        "{}",
        location(&response)
    );
    assert_eq!(operator_entries(&app, "rotate-webhook-secret").await, 1);
    // Before the confirmation: the old URL works, and a second rotation waits for the first.
    assert_eq!(entity_webhook(&app, &old_url, 2).await, StatusCode::OK);
    let response = act(
        &app,
        &cookie,
        SALON,
        "rotate-webhook-secret",
        &[("csrf", &csrf)],
    )
    .await;
    assert!(
        location(&response).contains("error="),
        "{}",
        location(&response)
    );
    wait_until("the rotation confirmed", async || {
        audit_entries(&app, "webhook_secret_rotated").await == 1
    })
    .await;
    let new_url = offered_url(&app, 201);
    assert_ne!(new_url, old_url);
    // After it: only the new URL (the cached check forgot the old secret).
    assert_eq!(entity_webhook(&app, &new_url, 3).await, StatusCode::OK);
    assert_eq!(
        entity_webhook(&app, &old_url, 4).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} \
             AND kind = 'webhook_secret_rotated' AND payload LIKE '%\"requested_by\":\"{OPERATOR}\"%'"
        ))
        .await,
        1
    );
    let detail = salon_detail(&app, &cookie, SALON).await;
    assert_eq!(detail["status"], "active", "the salon stays as it was");
    let rotation = &detail["callbacks"][0];
    assert_eq!(rotation["purpose"], "rotation");
    assert_eq!(rotation["requested_by"], OPERATOR);
    assert_eq!(rotation["status"], "confirmed");
    assert_eq!(rotation["attempt_log"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rotation_keeps_the_old_webhook_secret() {
    let app = console().await;
    let (_, old_url) = app.activate(SALON).await;
    let (cookie, csrf) = sign_in(&app).await;
    // The link is active: YClients answers a repeated callback "already installed" and keeps
    // the URL it holds.
    act(
        &app,
        &cookie,
        SALON,
        "rotate-webhook-secret",
        &[("csrf", &csrf)],
    )
    .await;
    wait_until("the rotation refused", async || {
        audit_entries(&app, "webhook_secret_rotation_refused").await == 1
    })
    .await;
    let offered = offered_url(&app, 403);
    assert_ne!(offered, old_url);
    assert_eq!(entity_webhook(&app, &old_url, 1).await, StatusCode::OK);
    assert_eq!(
        entity_webhook(&app, &offered, 2).await,
        StatusCode::UNAUTHORIZED
    );
    let detail = salon_detail(&app, &cookie, SALON).await;
    assert_eq!(detail["status"], "active");
    assert_eq!(detail["callbacks"][0]["status"], "failed");
    assert_eq!(detail["callbacks"][0]["attempt_log"][0]["http_status"], 403);
    assert_eq!(audit_entries(&app, "activation_failed").await, 0);
    // A salon that is not active has no confirmed secret to rotate: refused, and audited.
    app.enter(OTHER_SALON).await;
    let response = act(
        &app,
        &cookie,
        OTHER_SALON,
        "rotate-webhook-secret",
        &[("csrf", &csrf)],
    )
    .await;
    assert!(
        location(&response).contains("error="),
        "{}",
        location(&response)
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {OTHER_SALON} \
             AND kind = 'operator_action' AND payload LIKE '%\"refused\":true%'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_from_one_ipv6_network_share_one_limit() {
    // One IPv6 subscriber holds a whole /64: counted per address, its 2^64 addresses were as
    // many budgets of password guesses (the redirect's limit already counted the /64).
    let app = spawn_app_with(|vars| {
        with_operator(vars);
        vars.insert("OPS_SIGNIN_PER_MINUTE".into(), "3".into());
        vars.insert("TRUSTED_PROXY".into(), "127.0.0.1".into());
    })
    .await;
    let attempt = |from: String| {
        let app = &app;
        async move {
            let (cookie, token) = sign_in_form(app).await;
            app.client
                .post(app.url("/ops/login"))
                .header("cookie", cookie)
                .header("x-forwarded-for", from)
                .form(&[("name", OPERATOR), ("password", "guess"), ("csrf", &token)])
                .send()
                .await
                .expect("sign-in sent")
                .status()
        }
    };
    for n in 1..=3 {
        assert_eq!(
            attempt(format!("2001:db8::{n:x}")).await,
            StatusCode::SEE_OTHER
        );
    }
    assert_eq!(
        attempt("2001:db8::ffff:1".into()).await,
        StatusCode::TOO_MANY_REQUESTS,
        "another address of the same /64"
    );
    assert_eq!(
        attempt("2001:db8:0:1::1".into()).await,
        StatusCode::SEE_OTHER,
        "another network has its own budget"
    );
}

/// Someone new at the salon, as YClients signs them: user 777.
const NEWCOMER: &str = r#"{"id":777,"name":"Новый администратор","phone":"79995551111"}"#;

/// Signs in and hands `SALON` over to the newcomer (user 777); the operator's session cookie.
async fn hand_over_to_newcomer(app: &TestApp) -> String {
    let (cookie, csrf) = sign_in(app).await;
    let done = act(
        app,
        &cookie,
        SALON,
        "release-connected-user",
        &[("csrf", &csrf), ("to_user", "777")],
    )
    .await;
    assert!(
        location(&done).contains("done=release-connected-user"),
        "{}",
        location(&done)
    );
    cookie
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_hand_a_salon_over_to_another_yclients_user() {
    // Someone new at the salon cannot open its onboarding page (another YClients user connected
    // it) and cannot remove and install the app again: the refusal page shows them their id,
    // and support hands the salon over to it.
    let app = console().await;
    app.activate(SALON).await;
    let query = crate::helpers::signed_redirect_query(SALON, NEWCOMER);
    let enter = || app.redirect_with_query(&query);
    let refused = enter().await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let page = refused.text().await.expect("page");
    assert!(
        page.contains("777"),
        "the refusal page shows the newcomer their YClients id: {page}"
    );
    let (cookie, csrf) = sign_in(&app).await;
    let detail = salon_detail(&app, &cookie, SALON).await;
    assert_eq!(
        detail["connected_by"], "100500",
        "the console shows who holds it"
    );
    // Named nobody: refused with a reason, nothing changed.
    let unnamed = act(
        &app,
        &cookie,
        SALON,
        "release-connected-user",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(unnamed.status(), StatusCode::BAD_REQUEST);
    assert!(unnamed
        .text()
        .await
        .expect("text")
        .contains("YClients user id"));
    let response = act(
        &app,
        &cookie,
        SALON,
        "release-connected-user",
        &[("csrf", &csrf), ("to_user", " 777 ")],
    )
    .await;
    assert!(
        location(&response).contains("done=release-connected-user"),
        "{}",
        location(&response)
    );
    assert_eq!(operator_entries(&app, "release-connected-user").await, 1);
    assert_eq!(
        salon_detail(&app, &cookie, SALON).await["connected_by"],
        "777"
    );
    // Handing it to the one who holds it changes nothing: refused, said so.
    let again = act(
        &app,
        &cookie,
        SALON,
        "release-connected-user",
        &[("csrf", &csrf), ("to_user", "777")],
    )
    .await;
    assert!(location(&again).contains("error="), "{}", location(&again));
    // The newcomer enters; the user who held it before no longer can.
    assert_eq!(enter().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.redirect_from_yclients(SALON).await.status(),
        StatusCode::FORBIDDEN
    );
    // The salon itself is untouched: still active, its WhatsApp still linked.
    let detail = salon_detail(&app, &cookie, SALON).await;
    assert_eq!(detail["status"], "active");
}

/// Found by an audit read as an attacker (2026-12-06): an operator releases a salon from the
/// YClients user who connected it (they left the salon), and someone new enters and connects it.
/// The released user's onboarding token, issued before the release, must stop opening the salon: it
/// is the same bearer power the release was meant to take away (reword every client's messages,
/// send from the salon's WhatsApp, unlink it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_users_onboarding_token_stops_opening_the_salon() {
    let app = console().await;
    // The sandbox's own user (id 100500) connected the salon and holds a token for it.
    let (released_users_token, _) = app.activate(SALON).await;
    hand_over_to_newcomer(&app).await;
    let entered = app
        .redirect_with_query(&crate::helpers::signed_redirect_query(SALON, NEWCOMER))
        .await;
    assert_eq!(entered.status(), StatusCode::SEE_OTHER);
    // The released user, with the token they already had.
    let read = app
        .server_fn("onboarding/messages", &[("token", &released_users_token)])
        .await
        .status();
    let unlinked = app
        .server_fn("onboarding/disconnect", &[("token", &released_users_token)])
        .await
        .status();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let whatsapp_now = app.handles.linking.state(salon(SALON));
    assert!(
        read == StatusCode::UNAUTHORIZED && unlinked == StatusCode::UNAUTHORIZED,
        "the released user's token still opens the salon: messages {read}, disconnect {unlinked}; \
         the salon's WhatsApp is now {whatsapp_now:?}"
    );
}

/// Found by an audit read as an attacker (2026-12-06): after a release, the user who was released
/// enters again with their own signed link (the one YClients gave them, still valid: it has no
/// expiry) before the newcomer does, and holds the salon again — the release bought nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_released_user_cannot_take_the_salon_straight_back() {
    let app = console().await;
    app.activate(SALON).await;
    hand_over_to_newcomer(&app).await;
    // The released user's own link (sandbox user 100500), as YClients signed it for them.
    let back = app
        .client
        .get(app.sandbox.redirect_url(&[SALON]))
        .send()
        .await
        .expect("sent");
    assert_eq!(back.status(), StatusCode::FORBIDDEN);
    let page = back.text().await.expect("page");
    assert!(
        page.contains("передала подключение"),
        "its own page: {page}"
    );
    assert_eq!(
        app.redirect_with_query(&crate::helpers::signed_redirect_query(SALON, NEWCOMER))
            .await
            .status(),
        StatusCode::SEE_OTHER,
        "the newcomer the salon was handed to enters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_salon_is_not_taken_by_anyone_else() {
    // A release used to leave the salon to "the next other user to enter": a YClients user of
    // another salon who knew the branch id entered with their own signed link before the
    // newcomer, held the salon (unlink its WhatsApp, reword its messages, link their own number)
    // and the newcomer was refused; a link naming no user opened it too, and its token outlived
    // the newcomer's entry (found by an audit read as an attacker, 2026-12-06).
    let app = console().await;
    app.activate(SALON).await;
    let cookie = hand_over_to_newcomer(&app).await;
    let stranger = r#"{"id":666,"name":"Чужой","salon_name":"Другой салон"}"#;
    for (who, user) in [
        ("a user of another salon", stranger),
        ("a link naming no user", "{}"),
    ] {
        let response = app
            .redirect_with_query(&crate::helpers::signed_redirect_query(SALON, user))
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{who}");
    }
    assert_eq!(
        salon_detail(&app, &cookie, SALON).await["connected_by"],
        "777",
        "still the newcomer's"
    );
}

/// Found by an audit read as an attacker (2026-12-06): an operator's password leaked and was
/// changed (a new hash in OPS_OPERATORS, every instance restarted with the same OPS_SESSION_SECRET,
/// as several instances need). A session cookie taken before the change must stop working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_an_operators_password_ends_their_sessions() {
    let app = spawn_app_with(|vars| {
        with_operator(vars);
        vars.insert(
            "OPS_SESSION_SECRET".into(),
            "one-session-secret-shared-by-every-instance".into(),
        );
    })
    .await;
    let (stolen_cookie, stolen_csrf) = sign_in(&app).await;
    app.activate(SALON).await;
    let app = app
        .restart_with(|vars| {
            let hash = server::ops::auth::hash_password("a brand new password").expect("hash");
            vars.insert("OPS_OPERATORS".into(), format!("{OPERATOR}:{hash}"));
        })
        .await;
    assert!(
        location(&sign_in_as(&app, OPERATOR, PASSWORD).await).contains("error"),
        "the old password is refused"
    );
    let list = app
        .client
        .post(app.url("/api/ops/salons"))
        .header("cookie", &stolen_cookie)
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
        .status();
    let action = act(
        &app,
        &stolen_cookie,
        SALON,
        "logout",
        &[("csrf", &stolen_csrf)],
    )
    .await;
    assert!(
        list == StatusCode::UNAUTHORIZED && location(&action) == "/ops/login",
        "the session from before the password change still works: list {list}, \
         action answered {} {}",
        action.status(),
        location(&action)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_salon_titles_and_reflected_errors_are_escaped_in_the_console() {
    let app = console().await;
    let hostile = "<script>alert('t')</script><img src=x onerror=alert(1)>";
    app.sandbox.add_salon(SALON, hostile, Some("79990001122"));
    app.activate(SALON).await;
    let (cookie, _) = sign_in(&app).await;
    let detail = salon_detail(&app, &cookie, SALON).await;
    assert_eq!(detail["title"], hostile, "the hostile title is stored");
    for path in [
        "/ops".to_owned(),
        "/ops?q=%3Cscript%3E".to_owned(),
        format!("/ops/salons/{SALON}"),
        format!("/ops/salons/{SALON}?error=%3Cscript%3Ealert(2)%3C/script%3E"),
    ] {
        let html = app
            .client
            .get(app.url(&path))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html");
        assert!(
            !html.contains("<script>alert(") && !html.contains("<img src=x"),
            "raw markup on {path}"
        );
        println!(
            "{path}: escaped title shown: {}",
            html.contains("&lt;script&gt;alert(")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_cannot_be_framed_by_any_site() {
    // Every response carried the onboarding page's `frame-ancestors` (YClients' origins and
    // ai-admin.app, which the iframe in YClients needs), the console's too: a page on one of
    // those sites could frame the console's buttons under an operator's session (found by an
    // audit read as an attacker, 2026-12-06).
    let app = console().await;
    let (cookie, _) = sign_in(&app).await;
    let detail = format!("/ops/salons/{SALON}");
    for path in ["/ops/login", "/ops", detail.as_str()] {
        let response = app
            .client
            .get(app.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("sent");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            header("content-security-policy"),
            "frame-ancestors 'none'",
            "{path} ({})",
            response.status()
        );
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
    // The onboarding page keeps YClients' origins: it lives in their iframe.
    let token = app.enter(SALON).await;
    let page = app
        .get(&format!("/marketplace/onboarding?token={token}"))
        .await;
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("https://yclients.com"), "{csp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_from_many_addresses_wait_in_a_bounded_queue_off_the_workers() {
    // Each attempt ran Argon2id (tens of milliseconds, 19 MiB) inside the async handler, and the
    // limit is per address: 300 attempts from 300 addresses, each within its own limit, held
    // every worker of the runtime, and health (webhooks, entries, streams alike) waited 1.4–6.4 s
    // (found by an audit read as an attacker, 2026-12-06). Now one check runs at a time, off the
    // workers, a few wait, and the rest are told to come back (429 with Retry-After).
    let app = spawn_app_with(|vars| {
        with_operator(vars);
        vars.insert("TRUSTED_PROXY".into(), "127.0.0.1".into());
    })
    .await;
    let (cookie, token) = sign_in_form(&app).await;
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..300u32 {
        let (client, url) = (app.client.clone(), app.url("/ops/login"));
        let (cookie, token) = (cookie.clone(), token.clone());
        attempts.spawn(async move {
            client
                .post(url)
                .header("cookie", cookie)
                .header(
                    "x-forwarded-for",
                    format!("198.51.{}.{}", 100 + n / 200, n % 200 + 1),
                )
                .form(&[
                    ("name", "nobody"),
                    ("password", "guess"),
                    ("csrf", token.as_str()),
                ])
                .send()
                .await
                .map(|r| (r.status(), r.headers().contains_key("retry-after")))
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let health = app.get("/marketplace/health").await.status();
    let took = started.elapsed();
    let (mut busy, mut refused) = (0, 0);
    while let Some(done) = attempts.join_next().await {
        match done.expect("task").expect("answered") {
            (StatusCode::TOO_MANY_REQUESTS, true) => busy += 1,
            (StatusCode::SEE_OTHER, _) => refused += 1,
            other => panic!("an attempt answered {other:?}"),
        }
    }
    println!("health answered {health} in {took:?} during the attempts; {busy} told to come back, {refused} checked and refused");
    assert_eq!(health, StatusCode::OK);
    assert!(
        busy > 0,
        "every one of 300 simultaneous attempts was checked at once"
    );
    assert!(refused > 0, "some were checked");
    // A real operator, a moment later, signs in.
    sign_in(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_salon_does_not_send_the_previous_holders_words_or_from_their_number() {
    // The holder (perhaps someone who connected a salon not theirs) linked their own WhatsApp
    // and reworded the confirmation into a payment link; support hands the salon over to its
    // real admin. Their tokens died, but their texts and their number stayed in force: the next
    // booking's confirmation went out in their words, from their number (found by an audit read
    // as an attacker, 2026-12-06).
    use chrono::TimeZone;
    let clock = server::clock::ManualClock::new(
        chrono::Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap(),
    );
    let app = crate::helpers::spawn_app_with_clock(std::sync::Arc::new(clock.clone()), |env| {
        with_operator(env);
        env.insert("MESSAGES_WORKER".into(), "false".into());
        env.insert("MESSAGES_INTERVAL_MS".into(), "0".into());
        env.insert("MESSAGES_JITTER_MS".into(), "0".into());
    })
    .await;
    let (holder_token, webhook) = app.activate_with(SALON, "79990001111").await;
    let view: Value = app
        .server_fn("onboarding/messages", &[("token", &holder_token)])
        .await
        .json()
        .await
        .expect("messages JSON");
    let mut settings = view["settings"].clone();
    settings["confirmation"]["text"] = serde_json::json!(
        "{client_name}, запись не подтверждена, оплатите: http://pay.example/{date}"
    );
    let saved = app
        .server_fn(
            "onboarding/message-settings",
            &[
                ("token", &holder_token),
                ("settings", &settings.to_string()),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    hand_over_to_newcomer(&app).await;
    let entered = app
        .redirect_with_query(&crate::helpers::signed_redirect_query(SALON, NEWCOMER))
        .await;
    assert_eq!(entered.status(), StatusCode::SEE_OTHER);
    let newcomer_token = crate::helpers::token_from_location(&entered);
    assert_eq!(
        app.status(&newcomer_token, SALON).await["number_change_from"],
        "+7 999 ***-**-11",
        "the newcomer is asked about the number the previous holder linked"
    );
    let client = "79161234567";
    let booking = serde_json::json!({"company_id": SALON, "resource": "record", "resource_id": 4242,
        "status": "create", "data": {"id": 4242, "company_id": SALON, "datetime": "2026-12-05T14:30:00+03:00",
        "services": [{"id": 1, "title": "Стрижка"}], "staff": {"id": 5, "name": "Анна"},
        "client": {"id": 9, "name": "Мария", "phone": client}, "deleted": false}});
    assert_eq!(
        app.post_json(&webhook, &booking).await.status(),
        StatusCode::OK
    );
    app.handles.messages.pass().await.expect("a pass");
    assert!(
        app.inbox(client).is_empty(),
        "nothing goes out before the newcomer confirms the number"
    );
    // Confirmed: the confirmation goes out in the salon's default words, not the old holder's.
    let confirmed = app
        .server_fn("onboarding/confirm-number", &[("token", &newcomer_token)])
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    clock.set(
        chrono::Utc
            .with_ymd_and_hms(2026, 12, 3, 10, 10, 0)
            .unwrap(),
    );
    app.handles.messages.pass().await.expect("a pass");
    let texts = app.inbox(client);
    assert!(
        !texts.is_empty(),
        "the confirmation went out once confirmed"
    );
    assert!(
        !texts.iter().any(|text| text.contains("pay.example")),
        "the client got the previous holder's words: {texts:#?}"
    );
}

/// A console page as the operator's browser gets it (HTML).
async fn console_page(app: &TestApp, cookie: &str, path: &str) -> String {
    let page = app
        .client
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK, "{path}");
    page.text().await.expect("html")
}

/// The markup inside the first `<p>` with `data-testid="{testid}"` in `html`, if there is one.
fn paragraph(html: &str, testid: &str) -> Option<String> {
    let (_, rest) = html.split_once(&format!("data-testid=\"{testid}\""))?;
    let (inside, _) = rest.split_once("</p>")?;
    Some(inside.to_owned())
}

/// Found by an audit read as an attacker (2026-12-06). The console's salon page showed whatever
/// text a URL carried as its own verdicts and opened the confirmation of whatever action the URL
/// named: `?error=` as a red alert, `?done=`/`?note=` as «Выполнено: …», and `?confirm=` as the
/// form that acts (app/src/pages/ops.rs, `Salon`). Those parameters are only meant to come from
/// the console's own redirects (`http/ops.rs`, `act`), but nothing said they did. A link sent to
/// an operator («the salon asked to hand its connection over, see the console») opened the real
/// console at the hand-over form under an alert of the attacker's wording naming the attacker's
/// YClients user id; the operator typed it and confirmed — and the attacker's own signed link
/// then opened the salon: its WhatsApp, its clients' messages. (`SameSite=Strict` keeps the
/// cookie off a link clicked on another site, so the link works when it is pasted into the
/// address bar or opened from a bookmark or the console itself — how support links usually
/// travel.) And `confirm` was pasted into the form's action path, so `../..` reached any salon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_does_not_show_a_urls_words_as_its_own_or_open_its_confirmation() {
    let app = console().await;
    app.enter(SALON).await;
    let (session, _) = sign_in(&app).await;
    let alert = "YClients: владелец салона подтвердил передачу подключения пользователю 4242. \
                 Введите 4242 и нажмите «Подтвердить».";
    let note = "владелец подтвердил по телефону, осталось передать пользователю 4242";
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("confirm", "release-connected-user")
        .append_pair("error", alert)
        .append_pair("done", "Проверка владельца")
        .append_pair("note", note)
        .finish();
    let html = console_page(&app, &session, &format!("/ops/salons/{SALON}?{query}")).await;
    let shows_alert = html.contains("владелец салона подтвердил передачу подключения");
    let shows_note = html.contains("осталось передать пользователю 4242");
    let opens_hand_over = html.contains("name=\"to_user\"")
        && html.contains(&format!(
            "/ops/salons/{SALON}/actions/release-connected-user"
        ));
    eprintln!(
        "console page for a crafted URL: alert shown {shows_alert}, note shown {shows_note}, \
         hand-over form open {opens_hand_over}"
    );

    // And a confirmation shown on one salon's page may act on another: `confirm` is pasted
    // into the form's action path, so `../..` reaches any salon (the browser resolves it).
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("confirm", &format!("../../{OTHER_SALON}/actions/logout"))
        .finish();
    let html = console_page(&app, &session, &format!("/ops/salons/{SALON}?{query}")).await;
    let elsewhere = format!("/ops/salons/{SALON}/actions/../../{OTHER_SALON}/actions/logout");
    let offers_elsewhere = html.contains(&elsewhere);
    eprintln!(
        "salon {SALON}'s page offers a confirmation posting to {elsewhere}: {offers_elsewhere}"
    );
    assert!(
        !shows_alert && !shows_note,
        "the console showed the URL's words as its own verdict (alert {shows_alert}, done-note \
         {shows_note})"
    );
    assert!(
        !offers_elsewhere,
        "salon {SALON}'s page offered a confirmation that posts to {elsewhere} (salon \
         {OTHER_SALON})"
    );
}

/// The other side of the fix above: an action's own redirect still shows its outcome (or why it
/// was refused) to the operator who acted — and only to them, only on that salon's page, only
/// with the words the console wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actions_redirect_shows_its_outcome_as_the_console_wrote_it_and_nothing_else() {
    let app = console().await;
    app.activate(SALON).await;
    app.enter(OTHER_SALON).await;
    let (cookie, csrf) = sign_in(&app).await;

    let done = location(&act(&app, &cookie, SALON, "stop", &[("csrf", &csrf)]).await);
    assert!(
        done.starts_with(&format!("/ops/salons/{SALON}?done=stop&")),
        "{done}"
    );
    let html = console_page(&app, &cookie, &done).await;
    let shown = paragraph(&html, "ops-done").unwrap_or_default();
    assert!(
        shown.contains("Остановить сессию WhatsApp")
            && shown.contains("session stopped (credentials kept)"),
        "the action's own redirect shows its outcome: {done} shows {shown:?}"
    );
    assert_eq!(paragraph(&html, "ops-error"), None);

    // Refused (the holder is already user 100500): the reason, as a red alert.
    let refused = location(
        &act(
            &app,
            &cookie,
            SALON,
            "release-connected-user",
            &[("csrf", &csrf), ("to_user", "100500")],
        )
        .await,
    );
    assert!(refused.contains("error="), "{refused}");
    let html = console_page(&app, &cookie, &refused).await;
    let shown = paragraph(&html, "ops-error").unwrap_or_default();
    assert!(
        shown.contains("YClients user 100500 already holds the salon"),
        "the refusal's own redirect shows its reason: {refused} shows {shown:?}"
    );
    assert_eq!(paragraph(&html, "ops-done"), None);

    // The same words with one changed, on another salon's page, or in another session: nothing.
    let tampered = done.replace("credentials", "everything");
    assert_ne!(tampered, done);
    let other_salon = done.replace(
        &format!("/ops/salons/{SALON}?"),
        &format!("/ops/salons/{OTHER_SALON}?"),
    );
    let (another_session, _) = sign_in(&app).await;
    for (what, cookie, path) in [
        ("a changed note", &cookie, &tampered),
        ("another salon's page", &cookie, &other_salon),
        ("another session", &another_session, &done),
        ("another session", &another_session, &refused),
    ] {
        let html = console_page(&app, cookie, path).await;
        let (done, error) = (paragraph(&html, "ops-done"), paragraph(&html, "ops-error"));
        assert!(
            done.is_none() && error.is_none() && !html.contains("everything kept"),
            "{what} shows an outcome: {path} shows {done:?} {error:?}"
        );
    }
    // The server function the page hydrates from carries the verified outcome, so the browser
    // renders what the server did.
    let query = done.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let mut form: Vec<(String, String)> = vec![("id".into(), SALON.to_string())];
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        form.push((format!("flash[{k}]"), v.into_owned()));
    }
    let detail: Value = app
        .client
        .post(app.url("/api/ops/salon"))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(detail["flash"]["done"], "stop", "{detail}");
    assert_eq!(
        detail["flash"]["note"], "session stopped (credentials kept)",
        "{detail}"
    );
    // Without the outcome's words the function answers as before.
    assert!(salon_detail(&app, &cookie, SALON).await["flash"].is_null());
}
