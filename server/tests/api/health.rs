use crate::helpers::{spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ok_when_everything_is_configured() {
    let app = spawn_app().await;
    let response = app.get("/marketplace/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["reachable"], true);
    assert!(body["database"]["latency_ms"].as_f64().is_some());
    assert_eq!(body["yclients"]["configured"], true);
    assert_eq!(body["whatsapp"]["backend"], "simulator");
    assert!(body["version"].is_string());
    let metrics = app.metrics().await;
    assert!(metrics.contains("ai_admin_up 1"));
    assert!(metrics.contains("ai_admin_activation_outbox{status=\"pending\"} 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_without_a_partner_token_and_never_prints_it() {
    let app = spawn_app_with(|vars| {
        vars.insert(
            "YCLIENTS_PARTNER_TOKEN".into(),
            "test_token_waiting_for_real".into(),
        );
    })
    .await;
    let response = app.get("/marketplace/health").await;
    assert_eq!(response.status(), StatusCode::OK, "usable, but degraded");
    let text = response.text().await.expect("body");
    assert!(!text.contains("test_token_waiting_for_real"));
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["yclients"]["configured"], false);
    assert!(body["yclients"]["problem"]
        .as_str()
        .expect("a reason")
        .contains("YCLIENTS_PARTNER_TOKEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_when_a_whatsapp_session_has_failed() {
    let app = spawn_app().await;
    app.simulator.set_unavailable(true);
    app.enter(crate::helpers::SALON).await;
    // The supervisor retries with backoff, then opens the circuit.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let body: Value = app.health().await;
        if body["status"] == "degraded" {
            assert_eq!(body["whatsapp"]["failed_sessions"], 1);
            let metrics = app.metrics().await;
            assert!(
                metrics.contains("ai_admin_whatsapp_sessions_failed{backend=\"simulator\"} 1"),
                "{metrics}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "circuit never opened: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_may_be_framed_by_yclients_only_and_send_no_referrer() {
    let app = spawn_app().await;
    let response = app.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert!(headers.get("x-frame-options").is_none());
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("CSP");
    assert!(csp.starts_with("frame-ancestors 'self'"));
    assert!(csp.contains("https://*.yclients.com"));
    assert!(
        csp.contains(&app.sandbox_url),
        "the sandbox plays YClients' iframe"
    );
    assert_eq!(
        headers.get("referrer-policy").and_then(|v| v.to_str().ok()),
        Some("no-referrer")
    );
    let html = response.text().await.expect("html");
    assert!(html.contains("AI Admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_a_russian_404_page() {
    let app = spawn_app().await;
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let html = response.text().await.expect("html");
    assert!(html.contains("Страница не найдена"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened_with_bounded_labels() {
    let app = spawn_app().await;
    let (_, webhook_url) = app.activate(crate::helpers::SALON).await;
    // A webhook accepted, one refused at a wrong secret.
    let event = serde_json::json!({"company_id": crate::helpers::SALON, "resource": "record",
        "resource_id": 1, "status": "create", "data": {"id": 1}});
    assert_eq!(
        app.post_json(&webhook_url, &event).await.status(),
        StatusCode::OK
    );
    let wrong = format!("{}x", webhook_url.trim_end_matches('/'));
    assert_eq!(
        app.post_json(&wrong, &event).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A forged token; a request with an invented method.
    let forged = app
        .server_fn("onboarding/status", &[("token", "forged")])
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let odd = app
        .client
        .request(
            reqwest::Method::from_bytes(b"BREW").expect("method"),
            app.url("/marketplace/health"),
        )
        .send()
        .await
        .expect("sent");
    assert!(odd.status().is_client_error());

    let text = app.metrics().await;
    for expected in [
        "ai_admin_redirects_total{outcome=\"onboarding\"} 1",
        "ai_admin_tokens_issued_total 1",
        "ai_admin_tokens_refused_total{reason=\"invalid\"} 1",
        "ai_admin_callbacks_total{result=\"confirmed\"} 1",
        "ai_admin_webhooks_total{kind=\"entity\",result=\"accepted\"} 1",
        "ai_admin_webhook_commit_seconds_count 1",
        "ai_admin_webhook_batch_events_bucket{le=\"1\"} 1",
        "ai_admin_webhooks_total{kind=\"entity\",result=\"refused\"} 1",
        "ai_admin_whatsapp_transitions_total{to=\"linked\"} 1",
        "ai_admin_whatsapp_active_salons{state=\"linked\"} 1",
        "ai_admin_activation_outbox{status=\"pending\"} 0",
        "# TYPE ai_admin_callback_round_trip_seconds histogram",
        "ai_admin_callback_round_trip_seconds_count 1",
        "ai_admin_http_request_duration_seconds_count{route=\"/auth/yclients/redirect\",method=\"GET\",status=\"3xx\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(
        text.contains("route=\"/webhook/yclients/events/{salon_id}/{secret}\""),
        "the route as declared, never the secret"
    );
    let secret = webhook_url.rsplit('/').next().expect("secret");
    assert!(!text.contains(secret), "no secret in the metrics");
    assert!(!text.contains("BREW"), "an invented method is `other`");
    assert!(text.contains("method=\"other\""));
}
