//! The development surfaces — the WhatsApp simulator's `/dev/phone` routes and the YClients
//! sandbox — exist only when explicitly chosen (and, for the sandbox, built in).

use crate::helpers::{build_app_with, spawn_app, Serving};
use reqwest::StatusCode;

async fn get(app: &Serving, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.handles.base_url))
        .send()
        .await
        .expect("answered")
}

#[cfg(feature = "whatsapp-web")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_phone_does_not_exist_with_the_web_backend() {
    // With the simulator the phone page is there…
    let simulated = spawn_app().await;
    assert_eq!(simulated.get("/dev/phone").await.status(), StatusCode::OK);
    // …with real WhatsApp Web (which connects per salon, lazily: no network here) it is not.
    let app = build_app_with(|vars| {
        vars.insert("WHATSAPP_BACKEND".into(), "web".into());
        let data_dir = crate::helpers::scratch_dir();
        vars.insert("DATA_DIR".into(), data_dir.display().to_string());
    })
    .await
    .expect("the web backend builds");
    let mut running = Serving::start(app).await;
    assert!(running.handles.simulator.is_none());
    let page = get(&running, "/dev/phone").await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    for path in ["/dev/phone/scan", "/dev/phone/pair", "/dev/phone/unlink"] {
        let scan = running
            .client
            .post(format!("{}{path}", running.handles.base_url))
            .form(&[("reference", "anything"), ("phone", "79990009900")])
            .send()
            .await
            .expect("answered");
        assert!(
            scan.status().is_client_error(),
            "{path}: {} instead of a refusal",
            scan.status()
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_is_a_404_page_without_the_sandbox() {
    let app = spawn_app().await;
    let response = app.get("/demo").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.handles.sandbox.is_none());
}

#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_sandbox_runs_on_its_own_port_and_demo_leads_to_it() {
    let app = build_app_with(|vars| {
        vars.insert("YCLIENTS_SANDBOX".into(), "true".into());
        vars.insert("YCLIENTS_SANDBOX_ADDR".into(), "127.0.0.1:0".into());
        vars.remove("YCLIENTS_API_URL");
    })
    .await
    .expect("the demo build embeds the sandbox");
    let mut running = Serving::start(app).await;
    let sandbox_url = running
        .handles
        .sandbox_url
        .clone()
        .expect("the sandbox's URL");
    assert_ne!(sandbox_url, running.handles.base_url, "its own origin");
    let demo = get(&running, "/demo").await;
    assert!(demo.status().is_redirection());
    assert_eq!(
        demo.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("{sandbox_url}/").as_str())
    );
    let marketplace = running
        .client
        .get(format!("{sandbox_url}/"))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(marketplace.status(), StatusCode::OK);
    assert!(marketplace
        .text()
        .await
        .expect("html")
        .contains("песочница"));
    assert!(running.handles.sandbox.is_some());
    running.stop().await;
}

#[cfg(not(feature = "demo"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_demo_feature_the_sandbox_stops_start_up() {
    let refused = build_app_with(|vars| {
        vars.insert("YCLIENTS_SANDBOX".into(), "true".into());
        vars.insert("YCLIENTS_SANDBOX_ADDR".into(), "127.0.0.1:0".into());
        vars.remove("YCLIENTS_API_URL");
    })
    .await;
    let error = format!("{:#}", refused.err().expect("refused"));
    assert!(error.contains("YCLIENTS_SANDBOX"), "{error}");
    assert!(error.contains("`demo` feature"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_surfaces_against_the_real_yclients_are_refused_at_start() {
    let refused = build_app_with(|vars| {
        vars.insert("YCLIENTS_API_URL".into(), "https://api.yclients.com".into());
    })
    .await;
    let error = format!(
        "{:#}",
        refused.err().expect("simulator + real YClients + token")
    );
    for named in [
        "WHATSAPP_BACKEND",
        "YCLIENTS_API_URL",
        "YCLIENTS_PARTNER_TOKEN",
        "ALLOW_DEV_SURFACES_WITH_REAL_YCLIENTS",
    ] {
        assert!(error.contains(named), "{named} in «{error}»");
    }
}

/// A deployment that reaches YClients through an egress proxy (or any address the guard does not
/// know as YClients') holds a real partner token: the simulator's `/dev/phone`, which links any
/// number to any salon, must not start beside it, with the variable unset or set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_does_not_start_with_a_real_partner_token_at_any_yclients_address() {
    for backend in [None, Some("simulator")] {
        let refused = build_app_with(|vars| {
            vars.insert(
                "YCLIENTS_PARTNER_TOKEN".into(),
                "a1b2c3d4e5f6a7b8c9d0real".into(),
            );
            vars.insert(
                "YCLIENTS_API_URL".into(),
                "https://yclients-egress.salon-proxy.example".into(),
            );
            match backend {
                Some(backend) => vars.insert("WHATSAPP_BACKEND".into(), backend.into()),
                None => vars.remove("WHATSAPP_BACKEND"),
            };
        })
        .await;
        let error = match refused {
            Ok(_) => panic!("{backend:?}: the simulator started beside a real partner token"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains("WHATSAPP_BACKEND"), "{error}");
        assert!(
            error.contains("sandbox-"),
            "says what a development token looks like: {error}"
        );
        assert!(
            !error.contains("a1b2c3d4e5f6a7b8c9d0real"),
            "the token never prints: {error}"
        );
    }
    // A sandbox token at a sandbox's address is development, as before.
    let dev = build_app_with(|vars| {
        vars.insert("YCLIENTS_API_URL".into(), "http://127.0.0.1:9".into());
    })
    .await;
    assert!(dev.is_ok(), "{:?}", dev.err());
}
