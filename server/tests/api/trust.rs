//! Trust boundaries, tested as an attacker would try them: a replayed signed link for a branch
//! that is not installing us, tokens that outlive an uninstall, a frozen branch driven anyway, a
//! rotated secret YClients never accepted, secrets left at rest, a lifecycle event that keeps
//! failing, and text PostgreSQL refuses.

use crate::helpers::{
    salon, spawn_app, spawn_app_with, TestApp, OTHER_SALON, PARTNER_TOKEN, SALON,
};
use app::status::LinkState;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use yclients_sandbox::FaultKind;

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// What YClients' «Подключить» would send for `salon_id`, without creating the installation.
fn replayed_link(app: &TestApp, salon_id: i64) -> String {
    app.sandbox.redirect_url(&[salon_id])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signed_link_for_a_branch_not_installing_us_is_refused_and_creates_nothing() {
    let app = spawn_app().await;
    // A genuine link, seen once (browser history, a proxy log) …
    app.enter(SALON).await;
    // … replayed with another branch's id: the signature still verifies, YClients says 404.
    let url = replayed_link(&app, OTHER_SALON);
    let response = app.client.get(&url).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.expect("html");
    assert!(
        html.contains("Приложение не устанавливается для этого филиала"),
        "{html}"
    );
    assert!(html.contains("«Подключить»"));
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {OTHER_SALON}"
        ))
        .await,
        0,
        "no salon row for a branch that failed the check"
    );
    assert_eq!(
        app.handles.linking.state(salon(OTHER_SALON)),
        LinkState::Idle
    );
    assert!(
        !app.simulator.is_open(salon(OTHER_SALON)),
        "no WhatsApp session either"
    );
    // The same refusal in English for an English browser.
    let english = app
        .client
        .get(&url)
        .header("Accept-Language", "en-US,en;q=0.9")
        .send()
        .await
        .expect("sent");
    assert_eq!(english.status(), StatusCode::FORBIDDEN);
    let html = english.text().await.expect("html");
    assert!(html.contains("not being installed for this branch") && html.contains("lang=\"en\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_installation_gets_a_paused_page_and_yclients_down_fails_closed() {
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    app.sandbox.set_link_status(SALON, "freezed");
    let response = app
        .client
        .get(replayed_link(&app, SALON))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("приостановлен в YClients"));

    app.sandbox.create_pending_link(OTHER_SALON);
    app.fault(FaultKind::ServerError, 3, "/marketplace/salon");
    let response = app
        .client
        .get(replayed_link(&app, OTHER_SALON))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "never open"
    );
    let html = response.text().await.expect("html");
    assert!(html.contains("YClients не отвечает") && html.contains("Повторить"));
    assert_eq!(app.count("SELECT COUNT(*) FROM salons").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_branch_picker_spends_no_installation_checks_and_the_branch_picked_is_checked() {
    // The branch ids of a picker link are not covered by the signature. The picker used to ask
    // YClients about each one's installation (and title): any YClients user's own link with 50
    // made-up ids spent 50–100 calls of the one YClients client every salon's entries,
    // activation callbacks and frozen checks share, per request, 30 requests a minute per
    // address — real admins' entries waited seconds (found by an audit read as an attacker,
    // 2026-12-06).
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_PICKER_TITLES_BURST".into(), "5".into());
        vars.insert("RATE_LIMIT_PICKER_TITLES_PER_MINUTE".into(), "1".into());
    })
    .await;
    app.sandbox.create_pending_link(SALON);
    let (data, sign) = app.sandbox.signed_user_data("");
    let query = |ids: &str| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("salon_ids", ids);
        q.append_pair("user_data", &data);
        q.append_pair("user_data_sign", &sign);
        q.finish()
    };
    let calls = || app.sandbox.requests("/marketplace/salon") + app.sandbox.requests("/company/");
    let before = calls();
    for round in 0..3 {
        let ids: Vec<String> = (1..=50)
            .map(|n| (7_000_000 + round * 100 + n).to_string())
            .collect();
        let picker = app.redirect_with_query(&query(&ids.join(","))).await;
        assert_eq!(picker.status(), StatusCode::OK, "a picker of 50 branches");
    }
    let spent = calls() - before;
    assert!(
        spent <= 6,
        "three pickers of 50 made-up branches made {spent} YClients calls (the titles' budget is 5)"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM salons").await,
        0,
        "the picker stores nothing"
    );

    // The branch picked is checked as its own entry: one not being installed is refused.
    let picker = app
        .redirect_with_query(&query(&format!("{SALON},{OTHER_SALON}")))
        .await;
    let html = picker.text().await.expect("html");
    assert!(
        html.contains(&format!("branch-{SALON}"))
            && html.contains(&format!("branch-{OTHER_SALON}"))
    );
    let pick = |salon_id: i64| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("salon_id", &salon_id.to_string());
        q.append_pair("user_data", &data);
        q.append_pair("user_data_sign", &sign);
        q.finish()
    };
    assert_eq!(
        app.redirect_with_query(&pick(OTHER_SALON)).await.status(),
        StatusCode::FORBIDDEN,
        "not being installed"
    );
    assert_eq!(
        app.redirect_with_query(&pick(SALON)).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_salon_refuses_every_action_and_starts_no_session() {
    let app = spawn_app().await;
    let (token, _) = app.activate(SALON).await;
    app.apply_lifecycle(SALON, "freeze").await;
    assert!(!app.simulator.is_open(salon(SALON)));
    for (endpoint, args) in [
        ("onboarding/restart", vec![("token", token.as_str())]),
        ("onboarding/activate", vec![("token", token.as_str())]),
        (
            "onboarding/retry-activation",
            vec![("token", token.as_str())],
        ),
        (
            "onboarding/pairing-code",
            vec![("token", token.as_str()), ("phone", "+79990009900")],
        ),
    ] {
        let response = app.server_fn(endpoint, &args).await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "{endpoint}");
        let body = response.text().await.expect("body");
        assert!(
            body.contains("приостановлено в YClients"),
            "{endpoint}: {body}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !app.simulator.is_open(salon(SALON)),
        "no session started for a frozen branch"
    );
    assert_eq!(app.handles.linking.state(salon(SALON)), LinkState::Idle);
    // The page still opens and says what happened.
    let status = app.status(&token, SALON).await;
    assert_eq!(status["activation"]["state"], "frozen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_kills_every_token_on_every_surface_and_ends_open_streams() {
    let app = spawn_app().await;
    let (token, _) = app.activate(SALON).await;
    let stream = app
        .get(&format!("/marketplace/api/events?token={token}"))
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut events = stream.bytes_stream().eventsource();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("snapshot")
        .expect("open")
        .expect("event");
    assert_eq!(first.event, "snapshot");

    app.apply_lifecycle(SALON, "uninstall").await;

    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if event.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the open live stream was closed by the uninstall"
    );
    assert_eq!(
        app.status_response(&token, SALON).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for endpoint in [
        "onboarding/status",
        "onboarding/activate",
        "onboarding/restart",
    ] {
        let response = app.server_fn(endpoint, &[("token", &token)]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{endpoint}");
    }
    let sse = app
        .get(&format!("/marketplace/api/events?token={token}"))
        .await;
    assert_eq!(sse.status(), StatusCode::UNAUTHORIZED);
    let page = app
        .get(&format!("/marketplace/onboarding?token={token}"))
        .await;
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("Ссылка больше не действует"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_install_after_an_uninstall_starts_clean_and_old_tokens_stay_dead() {
    let app = spawn_app().await;
    let old = app.enter(SALON).await;
    app.apply_lifecycle(SALON, "uninstall").await;
    let new = app.enter(SALON).await;
    assert_eq!(
        app.status_response(&new, SALON).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.status_response(&old, SALON).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let status = app.status(&new, SALON).await;
    assert_eq!(status["activation"]["state"], "not_started");
}

/// The webhook URL YClients holds for the salon (from the last callback it confirmed).
fn url_yclients_holds(app: &TestApp) -> String {
    app.sandbox
        .link(SALON)
        .and_then(|l| l.webhook_urls.first().cloned())
        .expect("YClients holds a webhook URL")
}

async fn entity_event(app: &TestApp, url: &str, id: i64) -> StatusCode {
    let body = json!({"company_id": SALON, "resource": "client", "resource_id": id, "status": "update",
        "data": {"id": id, "name": "Мария"}});
    app.post_json(url, &body).await.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_becomes_ours_only_when_yclients_confirms_it() {
    let app = spawn_app().await;
    let (token, _) = app.activate(SALON).await;
    let held = url_yclients_holds(&app);
    assert_eq!(entity_event(&app, &held, 1).await, StatusCode::OK);
    // Frozen, then «Подключить» again: the salon re-activates and offers a new pair, which
    // YClients refuses.
    app.apply_lifecycle(SALON, "freeze").await;
    app.fault(FaultKind::Validation, 1, "/marketplace/partner/callback");
    drop(token);
    let token = app.enter(SALON).await;
    app.wait_for_status(&token, SALON, "the refusal", |s| {
        s["activation"]["state"] == "failed"
    })
    .await;
    assert_eq!(
        entity_event(&app, &held, 2).await,
        StatusCode::OK,
        "the pair YClients holds still works after a refused rotation"
    );
    // YClients has it active again; the admin retries: 403 "already installed" keeps its pair.
    app.sandbox.set_link_status(SALON, "active");
    let retry = app
        .server_fn("onboarding/retry-activation", &[("token", &token)])
        .await;
    assert_eq!(retry.status(), StatusCode::OK);
    app.wait_for_status(&token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    assert!(
        app.sandbox.callbacks().iter().any(|c| c.answered == 403),
        "the retry met YClients' 403"
    );
    assert_eq!(
        entity_event(&app, &held, 3).await,
        StatusCode::OK,
        "entity events to the URL YClients holds are accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_secret_stays_at_rest_once_a_delivery_ends() {
    let app = spawn_app().await;
    app.activate(SALON).await;
    app.fault(FaultKind::Validation, 1, "/marketplace/partner/callback");
    let refused = app.link_whatsapp(OTHER_SALON, "79990003344").await;
    app.wait_for_status(&refused, OTHER_SALON, "refused", |s| {
        s["activation"]["state"] == "failed"
    })
    .await;
    for callback in app.sandbox.callbacks() {
        let key = callback.body["api_key"]
            .as_str()
            .expect("api_key")
            .to_owned();
        let url = callback.body["webhook_urls"][0]
            .as_str()
            .expect("url")
            .to_owned();
        let secret = url.rsplit('/').next().expect("secret").to_owned();
        let leaked = app
            .count(&format!(
                "SELECT COUNT(*) FROM callback_outbox WHERE payload LIKE '%{key}%' OR payload LIKE '%{secret}%'"
            ))
            .await;
        assert_eq!(leaked, 0, "neither the key nor the URL secret is at rest");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM callback_outbox WHERE status <> 'pending'")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lifecycle_event_is_retried_with_backoff_then_given_up_visibly() {
    let app = spawn_app_with(|vars| {
        vars.insert("LIFECYCLE_RETRY_BASE_MS".into(), "50".into());
        vars.insert("LIFECYCLE_GIVE_UP_AFTER_SECS".into(), "2".into());
    })
    .await;
    app.enter(SALON).await;
    let db = &app.handles.db;
    use sea_orm::ConnectionTrait;
    // The storage the uninstall needs is gone for a while.
    db.execute_unprepared("ALTER TABLE whatsapp_devices RENAME TO whatsapp_devices_away")
        .await
        .expect("renamed");
    let response = app
        .post_lifecycle(&app.lifecycle_body(SALON, "uninstall"))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "stored before the answer"
    );
    wait_until("the event given up", async || {
        app.count("SELECT COUNT(*) FROM lifecycle_events WHERE gave_up_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    let attempts = app
        .count("SELECT CAST(MAX(attempts) AS BIGINT) FROM lifecycle_events")
        .await;
    assert!(
        (2..40).contains(&attempts),
        "retried with backoff, not hammered: {attempts}"
    );
    let health: Value = app.health().await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["lifecycle_inbox"]["given_up"], 1);
    let metrics = app.metrics().await;
    assert!(metrics.contains("ai_admin_lifecycle_inbox{state=\"given_up\"} 1"));
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'lifecycle_gave_up'")).await,
        1
    );
    db.execute_unprepared("ALTER TABLE whatsapp_devices_away RENAME TO whatsapp_devices")
        .await
        .expect("restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_event_that_failed_is_applied_once_the_fault_clears() {
    let app = spawn_app_with(|vars| {
        vars.insert("LIFECYCLE_RETRY_BASE_MS".into(), "50".into());
    })
    .await;
    let token = app.enter(SALON).await;
    let fault = failing_uninstall(&app, 2).await;
    fault.clear().await;
    wait_until("the uninstall applied", async || {
        app.count("SELECT COUNT(*) FROM lifecycle_events WHERE processed_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert_eq!(
        app.status_response(&token, SALON).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_in_webhooks_and_redirects_are_stored_safely_not_500() {
    let app = spawn_app().await;
    let (_, url) = app.activate(SALON).await;
    let body = json!({"company_id": SALON, "resource": "rec\u{0}ord", "resource_id": "12\u{0}3", "status": "create",
        "data": {"client": {"name": "Ма\u{0}рия", "phone": "7999\u{0}"}, "comment": "\u{0}"}});
    let response = app.post_json(&url, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let record = json!({"company_id": SALON, "resource": "record", "resource_id": 77, "status": "create",
        "data": {"client": {"name": "Ма\u{0}рия", "phone": "7999\u{0}"}, "datetime": "\u{0}"}});
    assert_eq!(app.post_json(&url, &record).await.status(), StatusCode::OK);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM entity_events WHERE salon_id = {SALON}"
        ))
        .await,
        2
    );
    let lifecycle = json!({"salon_id": SALON, "application_id": crate::helpers::APPLICATION_ID,
        "event": "sta\u{0}tus", "partner_token": PARTNER_TOKEN});
    assert_eq!(
        app.post_lifecycle(&lifecycle).await.status(),
        StatusCode::OK
    );
    // A signed user_data with U+0000 in it.
    app.sandbox.create_pending_link(OTHER_SALON);
    let json = "{\"id\":1,\"name\":\"A\\u0000B\u{0}\"}";
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, json);
    let sign = yclients::signature::sign(PARTNER_TOKEN, json.as_bytes());
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("salon_id", &OTHER_SALON.to_string());
    q.append_pair("user_data", &data);
    q.append_pair("user_data_sign", &sign);
    let response = app.redirect_with_query(&q.finish()).await;
    assert!(
        response.status() == StatusCode::SEE_OTHER || response.status() == StatusCode::BAD_REQUEST,
        "{}",
        response.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_makes_one_yclients_call_and_company_info_is_read_at_most_daily() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    assert_eq!(
        app.sandbox.requests("/marketplace/salon/"),
        1,
        "the installation check"
    );
    // The title arrives from the background read.
    app.wait_for_page(&token, "the title", "Салон красоты «Орхидея»")
        .await;
    assert_eq!(app.sandbox.requests("/api/v1/company/"), 1);
    // The next entries within a day: the installation check only, nothing else in their path.
    for _ in 0..3 {
        app.enter(SALON).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.sandbox.requests("/marketplace/salon/"), 4);
    assert_eq!(
        app.sandbox.requests("/api/v1/company/"),
        1,
        "company info is cached, not read on every entry"
    );
}

/// Another YClients user: the owner of a salon of their own, where they installed the app.
const STRANGER: &str =
    r#"{"id":666,"name":"Чужой","phone":"79995550000","salon_name":"Другой салон"}"#;

async fn refused_as_connected_by_another(app: &TestApp, query: &str) {
    let response = app.redirect_with_query(query).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{query}");
    assert!(
        response.headers().get("location").is_none(),
        "no onboarding token"
    );
    let page = response.text().await.expect("page");
    assert!(
        page.contains("подключил другой пользователь YClients"),
        "a page that says why: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_link_of_another_yclients_user_does_not_open_a_connected_branch() {
    // The signature proves the user, not the branch; YClients' installation check proves only
    // that our app is installed there. Until 2026-12-05 any YClients user's signed link with an
    // active salon's id put in got a token for it: rewrite the messages its clients get, send
    // from its WhatsApp, replace its number with theirs.
    let app = spawn_app().await;
    let (_, _) = app.activate(SALON).await;
    let entries = || async {
        app.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'registration_started'"
        ))
        .await
    };
    let before = entries().await;
    refused_as_connected_by_another(
        &app,
        &crate::helpers::signed_redirect_query(SALON, STRANGER),
    )
    .await;
    // A link that names no user cannot be the one who connected it either.
    refused_as_connected_by_another(&app, &crate::helpers::signed_redirect_query(SALON, "{}"))
        .await;
    assert_eq!(
        entries().await,
        before,
        "nothing stored for a refused entry"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND admin_phone = '79995550000'"
        ))
        .await,
        0,
        "the admin's number is not overwritten"
    );
    // The admin who connected it still enters, as YClients sends them.
    let again = app.redirect_from_yclients(SALON).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);

    // A branch being installed is held for whoever entered it first: its admin.
    app.sandbox.create_pending_link(OTHER_SALON);
    let admin = app.redirect_from_yclients(OTHER_SALON).await;
    assert_eq!(admin.status(), StatusCode::SEE_OTHER);
    refused_as_connected_by_another(
        &app,
        &crate::helpers::signed_redirect_query(OTHER_SALON, STRANGER),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_installation_is_connected_by_whoever_enters_it() {
    // Someone new at the salon removes the app and connects it again: the branch is theirs, and
    // the user who connected the old installation no longer opens it.
    let app = spawn_app().await;
    app.activate(SALON).await;
    refused_as_connected_by_another(
        &app,
        &crate::helpers::signed_redirect_query(SALON, STRANGER),
    )
    .await;
    app.apply_lifecycle(SALON, "uninstall").await;
    app.sandbox.create_pending_link(SALON);
    let response = app
        .redirect_with_query(&crate::helpers::signed_redirect_query(SALON, STRANGER))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the new installation"
    );
    let token = crate::helpers::token_from_location(&response);
    assert_eq!(
        app.server_fn("onboarding/status", &[("token", &token)])
            .await
            .status(),
        StatusCode::OK
    );
    // The sandbox's own user (the one who connected the first installation) is now refused.
    let old_admin = app
        .client
        .get(app.sandbox.redirect_url(&[SALON]))
        .send()
        .await
        .expect("sent");
    assert_eq!(old_admin.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_still_retried_after_the_app_was_installed_again_leaves_the_new_installation()
{
    // YClients' uninstall arrives and fails to apply for minutes; meanwhile the salon installs
    // the app again and its admin enters. Lifecycle events carry no time of their own, so the
    // retry, when it finally succeeded, ended the new installation: tokens dead, WhatsApp gone.
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use server::db::entities::lifecycle_events;
    let app = spawn_app_with(|vars| {
        vars.insert("LIFECYCLE_RETRY_BASE_MS".into(), "50".into());
    })
    .await;
    app.enter(SALON).await;
    let db = &app.handles.db;
    let fault = failing_uninstall(&app, 1).await;
    // The event has been failing for five minutes when the app is installed again.
    let event = lifecycle_events::Entity::find()
        .filter(lifecycle_events::Column::SalonId.eq(SALON))
        .one(db)
        .await
        .expect("read")
        .expect("the uninstall");
    lifecycle_events::Entity::update_many()
        .col_expr(
            lifecycle_events::Column::CreatedAt,
            sea_orm::sea_query::Expr::value(event.created_at - chrono::Duration::minutes(5)),
        )
        .filter(lifecycle_events::Column::Id.eq(event.id))
        .exec(db)
        .await
        .expect("backdated");
    app.sandbox.create_pending_link(SALON);
    let token = app.enter(SALON).await;
    fault.clear().await;
    wait_until("the uninstall settled", async || {
        app.count("SELECT COUNT(*) FROM lifecycle_events WHERE processed_at IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert_eq!(
        app.status_response(&token, SALON).await.status(),
        StatusCode::OK,
        "the new installation's token still works"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND status = 'uninstalled'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'lifecycle_superseded'"
        ))
        .await,
        1,
        "the operator can see why it was not applied"
    );
}

/// YClients' own `uninstall` body, exactly as it came (`{salon_id, application_id, event,
/// partner_token}`: no time, no installation of its own), with the installation left as
/// YClients holds it.
fn the_same_body(event: &str) -> Value {
    json!({"salon_id": SALON, "application_id": crate::helpers::APPLICATION_ID,
           "event": event, "partner_token": PARTNER_TOKEN})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_uninstall_delivered_again_after_a_new_installation_leaves_it() {
    // The salon removed the app (applied), installed it again and linked its WhatsApp; then
    // YClients delivered the first uninstall's body once more. Before YClients was asked, it
    // ended the new installation: key, webhook secret, tokens and WhatsApp gone (found by an
    // audit read as an attacker, 2026-12-06).
    let app = spawn_app_with(|vars| {
        vars.insert("LIFECYCLE_RETRY_BASE_MS".into(), "50".into());
        vars.insert("LIFECYCLE_CONFIRM_WINDOW_SECS".into(), "1".into());
    })
    .await;
    app.activate(SALON).await;
    app.apply_lifecycle(SALON, "uninstall").await;
    app.sandbox.create_pending_link(SALON);
    let (token, webhook_url) = app.activate(SALON).await;

    let response = app.post_lifecycle(&the_same_body("uninstall")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "stored, as every genuine event"
    );
    app.wait_for_lifecycle_applied().await;

    assert_eq!(
        app.status(&token, SALON).await["activation"]["state"],
        "active",
        "the new installation is untouched"
    );
    assert!(app.simulator.is_open(salon(SALON)), "its WhatsApp runs");
    let booking = json!({"company_id": SALON, "resource": "client", "resource_id": 1,
                         "status": "create", "data": {"id": 1}});
    assert_eq!(
        app.post_json(&webhook_url, &booking).await.status(),
        StatusCode::OK,
        "YClients' webhooks still reach it"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} \
             AND kind = 'lifecycle_superseded' AND payload LIKE '%\"yclients_status\":\"active\"%'"
        ))
        .await,
        1,
        "the operator can see why it was not applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_freeze_delivered_again_after_the_renewal_leaves_the_salon_running() {
    let app = spawn_app_with(|vars| {
        vars.insert("LIFECYCLE_RETRY_BASE_MS".into(), "50".into());
        vars.insert("LIFECYCLE_CONFIRM_WINDOW_SECS".into(), "1".into());
    })
    .await;
    app.activate(SALON).await;
    app.apply_lifecycle(SALON, "freeze").await;
    // Paid again: YClients holds it active, and the admin's next entry resumes it.
    app.sandbox.set_link_status(SALON, "active");
    let token = app.reopen(SALON).await;
    assert_eq!(
        app.status(&token, SALON).await["activation"]["state"],
        "active"
    );
    app.wait_for_link_state(SALON, "the session restored", LinkState::is_linked)
        .await;

    app.post_lifecycle(&the_same_body("freeze")).await;
    app.wait_for_lifecycle_applied().await;
    assert_eq!(
        app.status(&token, SALON).await["activation"]["state"],
        "active",
        "not frozen again"
    );
    assert!(app.simulator.is_open(salon(SALON)), "its WhatsApp runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_yclients_has_not_caught_up_with_is_applied_once_it_has() {
    // YClients' API may lag its webhook: an uninstall it still contradicts is asked about again
    // within the window, and applied as soon as YClients agrees.
    let app = spawn_app_with(|vars| {
        vars.insert("LIFECYCLE_RETRY_BASE_MS".into(), "50".into());
        vars.insert("LIFECYCLE_CONFIRM_WINDOW_SECS".into(), "60".into());
    })
    .await;
    let (token, _) = app.activate(SALON).await;
    app.post_lifecycle(&the_same_body("uninstall")).await;
    wait_until("asked twice", async || {
        app.count("SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) FROM lifecycle_events")
            .await
            >= 2
    })
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND status = 'active'"
        ))
        .await,
        1,
        "not applied while YClients still holds the installation"
    );

    app.sandbox.lifecycle_event_happened(SALON, "uninstall");
    app.wait_for_lifecycle_applied().await;
    assert_eq!(
        app.status_response(&token, SALON).await.status(),
        StatusCode::UNAUTHORIZED,
        "applied: the installation's tokens are dead"
    );
    assert!(
        !app.simulator.is_open(salon(SALON)),
        "its WhatsApp is unlinked"
    );
}

/// An `uninstall` posted while applying it fails (the WhatsApp devices' table moved away), once
/// it has failed `attempts` times; [`DevicesAway::clear`] puts the table back.
async fn failing_uninstall<'a>(app: &'a TestApp, attempts: i64) -> DevicesAway<'a> {
    use sea_orm::ConnectionTrait;
    app.handles
        .db
        .execute_unprepared("ALTER TABLE whatsapp_devices RENAME TO whatsapp_devices_away")
        .await
        .expect("renamed");
    app.post_lifecycle(&app.lifecycle_body(SALON, "uninstall"))
        .await;
    wait_until("failed attempts", async || {
        app.count("SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) FROM lifecycle_events")
            .await
            >= attempts
    })
    .await;
    DevicesAway(app)
}

struct DevicesAway<'a>(&'a TestApp);

impl DevicesAway<'_> {
    async fn clear(self) {
        use sea_orm::ConnectionTrait;
        self.0
            .handles
            .db
            .execute_unprepared("ALTER TABLE whatsapp_devices_away RENAME TO whatsapp_devices")
            .await
            .expect("restored");
    }
}

/// The onboarding token lives an hour (here: 0 s and the 5 s leeway). A live stream opened with
/// it must not outlive it: past the expiry every other surface answers 401, and the stream opened
/// before went on delivering the salon's state — new QR codes included, which link whoever scans
/// them as the salon's WhatsApp (found by an audit read as an attacker, 2026-12-06). Both ways a
/// stream is served: on its own socket (the lean path) and through axum.
/// Opens the salon's live stream with `token` on a fresh connection: the lean path's to serve,
/// unless `lean` is false and it says `Connection: close`, which only hyper answers.
async fn open_live_stream(
    app: &TestApp,
    token: &str,
    lean: bool,
) -> impl futures::Stream<
    Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
> + Unpin {
    let client = reqwest::Client::new();
    let mut request = client.get(app.url(&format!("/marketplace/api/events?token={token}")));
    if !lean {
        request = request.header("connection", "close");
    }
    let stream = request.send().await.expect("sent");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        app.handles.lean_sse.streams(),
        usize::from(lean),
        "served by the path meant (lean: {lean})"
    );
    stream.bytes_stream().eventsource()
}

async fn a_stream_outliving_its_token(lean: bool) -> Option<Value> {
    let app = spawn_app_with(|vars| {
        vars.insert("ONBOARDING_TOKEN_TTL_SECS".into(), "0".into());
    })
    .await;
    let token = app.enter(SALON).await;
    let mut events = open_live_stream(&app, &token, lean).await;
    wait_until("the token to expire everywhere else", async || {
        app.server_fn("onboarding/status", &[("token", &token)])
            .await
            .status()
            == StatusCode::UNAUTHORIZED
    })
    .await;
    qr_reaching_a_dead_tokens_stream(&app, &mut events).await
}

/// With `events` opened by a token that has since died everywhere else: drains what the stream
/// sent before, has the salon show a new round of QR codes, and returns the code if the stream
/// delivered it (`None`: it ended, as it should, or stayed silent).
async fn qr_reaching_a_dead_tokens_stream(
    app: &TestApp,
    events: &mut (impl futures::Stream<
        Item = Result<
            eventsource_stream::Event,
            eventsource_stream::EventStreamError<reqwest::Error>,
        >,
    > + Unpin),
) -> Option<Value> {
    // Drain what the stream sent while the token was valid.
    while let Ok(Some(Some(_))) = tokio::time::timeout(Duration::from_millis(500), events.next())
        .await
        .map(|e| e.map(|e| e.ok()))
    {}
    // After the expiry, the salon shows a new round of QR codes (the phone unlinked us, or the
    // admin's new tab asked for them).
    app.handles
        .linking
        .restart(salon(SALON))
        .await
        .expect("restarted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), events.next()).await {
            Ok(Some(Ok(event))) if event.event != "ping" => {
                let status: Value = serde_json::from_str(&event.data).expect("JSON");
                if status["link"]["state"] == "qr" {
                    return Some(status["link"]["code"].clone());
                }
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            // The stream ended: what should happen.
            Ok(_) => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_on_its_own_socket_ends_when_its_token_expires() {
    let leaked = a_stream_outliving_its_token(true).await;
    assert!(
        leaked.is_none(),
        "a stream opened with a token that has since expired delivered the salon's new QR code: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_through_axum_ends_when_its_token_expires() {
    let leaked = a_stream_outliving_its_token(false).await;
    assert!(
        leaked.is_none(),
        "a stream opened with a token that has since expired delivered the salon's new QR code: {leaked:?}"
    );
}

/// Whoever holds a token (a link travels: a replayed URL, a forwarded one) can reword
/// every message the salon's clients get and make its WhatsApp text any number. Both must leave
/// an entry in the salon's audit trail, as WhatsApp links and operator actions do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewording_the_messages_and_sending_a_test_message_are_audited() {
    let app = spawn_app().await;
    let (token, _) = app.activate(SALON).await;
    let entries = || async {
        app.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON}"
        ))
        .await
    };
    let before = entries().await;
    let view: Value = app
        .server_fn("onboarding/messages", &[("token", &token)])
        .await
        .json()
        .await
        .expect("JSON");
    let mut settings = view["settings"].clone();
    settings["confirmation"]["text"] =
        json!("{client_name}, ваша запись отменена. Оплатите штраф: http://pay.example/{date}");
    let saved = app
        .server_fn(
            "onboarding/message-settings",
            &[("token", &token), ("settings", &settings.to_string())],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let after_settings = entries().await;
    let sent = app
        .server_fn(
            "onboarding/test-message",
            &[("token", &token), ("phone", "+79161234567")],
        )
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
    let after_test = entries().await;
    assert!(
        after_settings > before && after_test > after_settings,
        "no audit entry: {before} before, {after_settings} after the templates were reworded, \
         {after_test} after a test message to a stranger's number"
    );
    let app = &app;
    let of = |condition: &'static str| async move {
        app.count(&format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND {condition}"
        ))
        .await
    };
    assert_eq!(
        of("kind = 'message_settings_changed' AND payload LIKE '%pay.example%'").await,
        1,
        "the entry says what the messages now say"
    );
    assert_eq!(
        of("kind = 'test_message_sent' AND payload LIKE '%67%' AND payload NOT LIKE '%9161234567%'")
            .await,
        1,
        "the entry names the number as the page shows numbers: masked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_already_installed_answer_that_echoes_the_key_is_stored_and_shown_redacted() {
    // YClients (or whatever answers at its address) says "already installed" and echoes the
    // offered API key, while the installation is still `pending`. Every other answer is kept
    // through `redacted`; this one reaches the attempt log, `last_error` and the token
    // holder's status endpoint as it came.
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let sandbox = yclients_sandbox::Sandbox::new(yclients_sandbox::SandboxConfig {
        partner_token: PARTNER_TOKEN.to_owned(),
        application_id: crate::helpers::APPLICATION_ID,
        app_url: "http://127.0.0.1:9".to_owned(),
        pending_window: Duration::from_secs(3600),
    })
    .expect("sandbox");
    let offered: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = offered.clone();
    let echo = post(move |body: String| {
        let seen = seen.clone();
        async move {
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let key = body["api_key"].as_str().unwrap_or_default().to_owned();
            *seen.lock().expect("unpoisoned") = Some(key.clone());
            (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"success": false, "data": null, "meta": {"message":
                    format!("Пользователь уже установил это приложение (api_key {key})")}})),
            )
        }
    });
    let router = axum::Router::new()
        .route("/marketplace/partner/callback", echo)
        .fallback_service(sandbox.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let yclients_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let application = crate::helpers::build_app_with(|vars| {
        vars.insert("YCLIENTS_API_URL".into(), yclients_url.clone());
        vars.insert(
            "FRAME_ANCESTORS".into(),
            format!("{} {yclients_url}", server::config::DEFAULT_TRUSTED_ORIGINS),
        );
    })
    .await
    .expect("builds");
    let serving = crate::helpers::Serving::start(application).await;
    let base = serving.handles.base_url.clone();
    let client = serving.client.clone();
    sandbox.set_app_url(&base);
    sandbox.create_pending_link(SALON);
    let entered = client
        .get(sandbox.redirect_url(&[SALON]))
        .send()
        .await
        .expect("entry");
    let token = crate::helpers::token_from_location(&entered);
    // Scan the QR on the simulated phone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let LinkState::Qr { code, .. } = serving.handles.linking.state(salon(SALON)) {
            break code;
        }
        assert!(tokio::time::Instant::now() < deadline, "no QR");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reference = code.split("ref=").nth(1).expect("ref").to_owned();
    client.get(&code).send().await.expect("phone page");
    client
        .post(format!("{base}/dev/phone/scan"))
        .form(&[("reference", reference.as_str()), ("phone", "79990009900")])
        .send()
        .await
        .expect("scan");
    // Wait for the first answered attempt.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        let response = client
            .get(format!("{base}/marketplace/api/status/company_{SALON}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("status");
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.expect("body");
        if offered.lock().expect("unpoisoned").is_some() && text.contains("уже установил")
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt yet: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let key = offered
        .lock()
        .expect("unpoisoned")
        .clone()
        .expect("offered key");
    assert!(key.len() >= 8);
    let stored = {
        use sea_orm::ConnectionTrait;
        let backend = serving.handles.db.get_database_backend();
        let row = serving
            .handles
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                backend,
                format!("SELECT COUNT(*) FROM callback_attempts WHERE error LIKE '%{key}%'"),
            ))
            .await
            .expect("query")
            .expect("row");
        row.try_get_by_index::<i64>(0).expect("count")
    };
    assert!(
        !status.contains(&key) && stored == 0,
        "the API key reached the token holder's status ({}) and the attempt log ({stored} rows): {status}",
        status.contains(&key)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_link_naming_no_user_ends_when_a_named_user_connects_the_salon() {
    // Every field of `user_data` may be missing (the contract), so a branch nobody is kept for —
    // first entered by a link naming no user, or stored before `connected_by` existed — opens for
    // such a link. Once a named user connects it, only they may open it: a token the nameless
    // link got before kept working (found by an audit read as an attacker, 2026-12-06).
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    let nameless_token = enter_nameless(&app, SALON).await;
    assert_eq!(
        app.status_response(&nameless_token, SALON).await.status(),
        StatusCode::OK
    );
    let named = app.reopen(SALON).await;
    assert_eq!(
        app.status_response(&nameless_token, SALON).await.status(),
        StatusCode::UNAUTHORIZED,
        "the nameless link's token ended"
    );
    assert_eq!(
        app.status_response(&named, SALON).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.redirect_with_query(&crate::helpers::signed_redirect_query(SALON, "{}"))
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "and a nameless link no longer opens it"
    );
}

/// The nameless link's token died with the claim everywhere but in a live stream it had open:
/// the claim moved the token generation without a word to the streams, which check the
/// generation only on a change that can end an installation, so the stream kept delivering every
/// new QR code of the salon (for up to the token's hour) — a QR its holder could scan to link
/// their own WhatsApp as the salon's (found by an audit read as an attacker, 2026-12-07).
async fn a_nameless_streams_qr_after_a_named_user_connects(lean: bool) -> Option<Value> {
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    let nameless_token = enter_nameless(&app, SALON).await;
    let mut events = open_live_stream(&app, &nameless_token, lean).await;
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("snapshot")
        .expect("open")
        .expect("event");
    assert_eq!(first.event, "snapshot");
    let named = app.reopen(SALON).await;
    assert_eq!(
        app.status_response(&nameless_token, SALON).await.status(),
        StatusCode::UNAUTHORIZED,
        "the nameless link's token ended everywhere else"
    );
    let leaked = qr_reaching_a_dead_tokens_stream(&app, &mut events).await;
    // There was a QR code to leak: the named admin's page shows it.
    wait_until(
        "the new round's QR code on the named admin's page",
        async || app.status(&named, SALON).await["link"]["state"] == "qr",
    )
    .await;
    leaked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nameless_links_live_stream_on_its_own_socket_ends_when_a_named_user_connects() {
    let leaked = a_nameless_streams_qr_after_a_named_user_connects(true).await;
    assert!(
        leaked.is_none(),
        "the nameless link's open stream delivered the salon's new QR code after the claim: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nameless_links_live_stream_through_axum_ends_when_a_named_user_connects() {
    let leaked = a_nameless_streams_qr_after_a_named_user_connects(false).await;
    assert!(
        leaked.is_none(),
        "the nameless link's open stream delivered the salon's new QR code after the claim: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_user_connecting_a_salon_a_nameless_link_held_ends_the_texts_and_messages_it_chose()
{
    // A link naming no user (anyone's, for all we know) entered the salon first, reworded the
    // confirmation into a payment link, and a booking's confirmation was owed in those words.
    // The salon's named admin then connects it: the nameless link's tokens ended, but its texts
    // and the messages owed in them stayed, and the client got the payment link from the
    // salon's WhatsApp. An operator's hand-over ends them; a named user's claim now does too.
    use chrono::TimeZone;
    let clock = server::clock::ManualClock::new(
        chrono::Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap(),
    );
    let app = crate::helpers::spawn_app_with_clock(std::sync::Arc::new(clock.clone()), |env| {
        env.insert("MESSAGES_WORKER".into(), "false".into());
        env.insert("MESSAGES_INTERVAL_MS".into(), "0".into());
        env.insert("MESSAGES_JITTER_MS".into(), "0".into());
    })
    .await;
    app.sandbox.create_pending_link(SALON);
    let nameless_token = enter_nameless(&app, SALON).await;
    assert_eq!(
        app.scan_qr(SALON, "79990001111").await.status(),
        StatusCode::OK
    );
    app.wait_for_status(&nameless_token, SALON, "active", |s| {
        s["activation"]["state"] == "active"
    })
    .await;
    let webhook = app.confirmed_webhook_url(SALON);
    let saved = app
        .reword_confirmation(
            &nameless_token,
            "{client_name}, запись не подтверждена, оплатите: http://pay.example/{date}",
        )
        .await;
    assert_eq!(saved, StatusCode::OK);
    let booking = |id: i64, client: &str| {
        json!({"company_id": SALON, "resource": "record", "resource_id": id,
            "status": "create", "data": {"id": id, "company_id": SALON, "datetime": "2026-12-05T14:30:00+03:00",
            "services": [{"id": 1, "title": "Стрижка"}], "staff": {"id": 5, "name": "Анна"},
            "client": {"id": 9, "name": "Мария", "phone": client}, "deleted": false}})
    };
    let client = "79161234567";
    assert_eq!(
        app.post_json(&webhook, &booking(4243, client))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM message_outbox WHERE salon_id = {SALON} AND record_id = 4243 \
             AND kind = 'confirmation' AND status = 'pending'"
        ))
        .await,
        1,
        "the confirmation is owed"
    );
    let named = app.reopen(SALON).await;
    app.handles.messages.pass().await.expect("a pass");
    let texts = app.inbox(client);
    assert!(
        !texts.iter().any(|text| text.contains("pay.example")),
        "the client got the nameless link's words: {texts:#?}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM message_outbox WHERE salon_id = {SALON} AND record_id = 4243 \
             AND kind = 'confirmation' AND status = 'dropped' AND reason = 'salon_claimed'"
        ))
        .await,
        1
    );
    // The WhatsApp number the nameless link linked waits for the named user's word, as after a
    // hand-over: until then nothing goes out from it.
    assert_eq!(
        app.status(&named, SALON).await["number_change_from"],
        "+7 999 ***-**-11",
        "the named user is asked about the number the nameless link linked"
    );
    // The named user starts from the default texts, and their next booking is told in them.
    let view: Value = app
        .server_fn("onboarding/messages", &[("token", &named)])
        .await
        .json()
        .await
        .expect("messages JSON");
    assert!(
        !view["settings"]["confirmation"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("pay.example"),
        "{view}"
    );
    let next_client = "79161234568";
    assert_eq!(
        app.post_json(&webhook, &booking(4244, next_client))
            .await
            .status(),
        StatusCode::OK
    );
    app.handles.messages.pass().await.expect("a pass");
    assert!(
        app.inbox(next_client).is_empty(),
        "nothing goes out before the named user confirms the number"
    );
    let confirmed = app
        .server_fn("onboarding/confirm-number", &[("token", &named)])
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    clock.set(
        chrono::Utc
            .with_ymd_and_hms(2026, 12, 3, 10, 10, 0)
            .unwrap(),
    );
    app.handles.messages.pass().await.expect("a pass");
    let texts = app.inbox(next_client);
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(texts[0].contains("вы записаны"), "{}", texts[0]);
}

/// Any YClients user's signed link never expires and does not cover the branch id, and every
/// single-branch entry costs one call of the YClients client all salons share (4 a second, 190
/// a minute). Before, the only bound was per client address (an IPv6 /64), so one link replayed
/// from sixty networks with made-up branch ids cost sixty calls, and real admins' entries (and
/// every activation callback and lifecycle check) waited behind them — 13 to 26 s, or a 503,
/// in the auditors' runs. Now a signed user has a budget of their own (10 at once, then 10 a
/// minute by default; 6 here), and checks of branches the entering user does not hold share
/// one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signed_link_replayed_from_many_networks_spends_only_its_users_budget() {
    let app = spawn_app_with(|vars| {
        vars.insert("TRUSTED_PROXY".into(), "127.0.0.1".into());
        vars.insert(
            "RATE_LIMIT_ENTRY_CHECKS_PER_USER_PER_MINUTE".into(),
            "6".into(),
        );
        vars.insert("RATE_LIMIT_ENTRY_CHECKS_PER_USER_BURST".into(), "6".into());
    })
    .await;
    app.sandbox.create_pending_link(SALON);
    let attacker = r#"{"id":666,"name":"Чужой"}"#;
    let checks_before = app.sandbox.requests("/application/");
    let client = app.client.clone();
    let mut attack = tokio::task::JoinSet::new();
    for network in 0..60u16 {
        let url = app.url(&format!(
            "/auth/yclients/redirect?{}",
            crate::helpers::signed_redirect_query(7_000_000 + i64::from(network), attacker)
        ));
        let client = client.clone();
        // As nginx forwards it: the client's own address last.
        let forwarded = format!("2001:db8:77:{network:x}::1");
        attack.spawn(async move {
            let response = client
                .get(url)
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .expect("answered");
            let retry_after = response.headers().get("retry-after").cloned();
            (
                response.status(),
                retry_after,
                response.text().await.unwrap_or_default(),
            )
        });
    }
    let mut refused = 0;
    while let Some(answer) = attack.join_next().await {
        let (status, retry_after, page) = answer.expect("a request");
        match status {
            StatusCode::FORBIDDEN => {} // a made-up branch YClients was asked about
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert!(retry_after.is_some(), "a Retry-After");
                assert!(page.contains("Подождите"), "a page saying how long: {page}");
            }
            other => panic!("an attacker's entry answered {other}"),
        }
    }
    let spent = app.sandbox.requests("/application/") - checks_before;
    assert!(
        spent <= 6 && refused >= 54,
        "one user's link cost {spent} YClients calls ({refused} refused)"
    );
    // A real admin, from an address of their own, enters at once.
    let started = std::time::Instant::now();
    let entry = client
        .get(app.sandbox.redirect_url(&[SALON]))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .expect("answered");
    assert_eq!(entry.status(), StatusCode::SEE_OTHER);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

/// Many YClients users' links (an attacker with many accounts) share one budget for branches
/// they do not hold, so the calls they cost stay bounded; an admin re-entering their own branch
/// spends only their own budget and gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_for_branches_nobody_entering_holds_share_one_budget_and_holders_get_in() {
    let app = spawn_app_with(|vars| {
        vars.insert("TRUSTED_PROXY".into(), "127.0.0.1".into());
        vars.insert("RATE_LIMIT_ENTRY_CHECKS_UNHELD_BURST".into(), "10".into());
        vars.insert(
            "RATE_LIMIT_ENTRY_CHECKS_UNHELD_PER_MINUTE".into(),
            "1".into(),
        );
    })
    .await;
    // The admin enters their branch once (a first entry: one of the shared budget).
    let first = app.enter(SALON).await;
    assert!(!first.is_empty());
    let checks_before = app.sandbox.requests("/application/");
    let client = app.client.clone();
    let mut refused = 0;
    for n in 0..30i64 {
        let user = format!(r#"{{"id":{},"name":"Чужой"}}"#, 9_000 + n);
        let url = app.url(&format!(
            "/auth/yclients/redirect?{}",
            crate::helpers::signed_redirect_query(7_100_000 + n, &user)
        ));
        let response = client
            .get(url)
            .header("x-forwarded-for", format!("2001:db8:78:{n:x}::1"))
            .send()
            .await
            .expect("answered");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    let spent = app.sandbox.requests("/application/") - checks_before;
    assert!(
        spent <= 10 && refused >= 20,
        "thirty users' made-up branches cost {spent} calls ({refused} refused)"
    );
    // The admin comes back to their own branch: it is held by them, so it is let through.
    let again = client
        .get(app.sandbox.redirect_url(&[SALON]))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .expect("answered");
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
}

/// The claim above ends what a link naming no user chose, not what a salon's own admin chose
/// before `connected_by` existed: such a salon has nobody kept for it either, and its first
/// entry with a user id keeps its texts (every row stored before `entered_unnamed` counts as one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salon_stored_before_users_were_kept_keeps_its_texts_when_its_admin_enters() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let (token, _) = app.activate(SALON).await;
    let saved = app
        .reword_confirmation(&token, "{client_name}, ждём вас {date} в {time}. Салон")
        .await;
    assert_eq!(saved, StatusCode::OK);
    // As the salon's row was before `connected_by`: nobody kept for it, not entered unnamed.
    app.handles
        .db
        .execute_unprepared(&format!(
            "UPDATE salons SET connected_by = NULL, entered_unnamed = {} WHERE id = {SALON}",
            if app.handles.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
                "false"
            } else {
                "0"
            }
        ))
        .await
        .expect("the row as it was");
    let named = app.reopen(SALON).await;
    let view: Value = app
        .server_fn("onboarding/messages", &[("token", &named)])
        .await
        .json()
        .await
        .expect("messages JSON");
    assert_eq!(
        view["settings"]["confirmation"]["text"],
        json!("{client_name}, ждём вас {date} в {time}. Салон"),
        "{view}"
    );
}

/// The branch picker told a stranger which branches are AI Admin's customers: a title came from
/// our database for every branch we store, and from YClients for the others only within one
/// budget shared by everybody. Any YClients user's own signed link (it never expires; the ids
/// are not signed) with 50 made-up ids emptied that budget, and from then on a picker showed
/// the real title of every branch we store beside `Филиал {id}` for every other — our customer
/// list, 50 ids a request (found by an audit read as an attacker). A stored title is now shown
/// only to the user who holds the salon; the holder's own picker still shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_branch_picker_does_not_tell_a_stranger_which_branches_use_the_app() {
    let app = spawn_app().await;
    // A customer: SALON entered the app, and we keep its title from YClients.
    app.enter(SALON).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while app
        .count(&format!(
            "SELECT COUNT(*) FROM salons WHERE id = {SALON} AND company_refreshed_at IS NOT NULL"
        ))
        .await
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "the company info");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A picker link of YClients user 4242, who never touched SALON or OTHER_SALON.
    let picker = |ids: &[i64]| {
        let user = json!({"id": 4242, "name": "Посторонний"}).to_string();
        let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &user);
        let sign = yclients::signature::sign(PARTNER_TOKEN, user.as_bytes());
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        form_urlencoded::Serializer::new(String::new())
            .append_pair("salon_ids", &ids.join(","))
            .append_pair("user_data", &data)
            .append_pair("user_data_sign", &sign)
            .finish()
    };
    let title = |html: &str, salon_id: i64| {
        html.split(&format!("data-testid=\"branch-{salon_id}\""))
            .nth(1)
            .and_then(|rest| rest.split_once('>'))
            .and_then(|(_, rest)| rest.split("</a>").next())
            .unwrap_or_else(|| panic!("branch {salon_id} in the picker: {html}"))
            .to_owned()
    };
    // The stranger empties the shared titles budget with 50 made-up ids …
    let made_up: Vec<i64> = (1..=50).map(|n| 8_000_000 + n).collect();
    assert_eq!(
        app.redirect_with_query(&picker(&made_up)).await.status(),
        StatusCode::OK
    );
    // … then asks about SALON (a customer) and OTHER_SALON (a YClients branch with a title that
    // never installed the app), after more made-up ids that take what the budget regained.
    let mut ids: Vec<i64> = (51..=90).map(|n| 8_000_000 + n).collect();
    ids.extend([SALON, OTHER_SALON]);
    let probe = app.redirect_with_query(&picker(&ids)).await;
    assert_eq!(probe.status(), StatusCode::OK);
    let html = probe.text().await.expect("html");
    let (customer, stranger) = (title(&html, SALON), title(&html, OTHER_SALON));
    let looks_stored = |title: &str| !title.starts_with("Филиал ");
    assert_eq!(
        looks_stored(&customer),
        looks_stored(&stranger),
        "the picker told a stranger which branch uses AI Admin: {SALON} (a customer) shows \
         {customer:?}, {OTHER_SALON} (not a customer) shows {stranger:?}"
    );
    // The admin who holds SALON still sees its title in their own picker, budget or not.
    let own = app
        .client
        .get(app.sandbox.redirect_url(&[SALON, OTHER_SALON]))
        .send()
        .await
        .expect("the holder's picker");
    assert_eq!(own.status(), StatusCode::OK);
    let html = own.text().await.expect("html");
    assert!(looks_stored(&title(&html, SALON)), "{html}");
}

/// Enters `salon` by a signed link naming no user (every field of `user_data` may be missing):
/// the onboarding token it gets.
async fn enter_nameless(app: &TestApp, salon: i64) -> String {
    let entered = app
        .redirect_with_query(&crate::helpers::signed_redirect_query(salon, "{}"))
        .await;
    assert_eq!(entered.status(), StatusCode::SEE_OTHER);
    crate::helpers::token_from_location(&entered)
}
