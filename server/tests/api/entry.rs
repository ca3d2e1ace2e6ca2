use crate::helpers::{
    spawn_app, spawn_app_with, token_from_location, OTHER_SALON, PARTNER_TOKEN, SALON,
};
use base64::Engine;
use reqwest::StatusCode;
use yclients::signature::sign;
use yclients_sandbox::FaultKind;

fn signed(json: &str) -> (String, String) {
    (
        base64::engine::general_purpose::STANDARD.encode(json),
        sign(PARTNER_TOKEN, json.as_bytes()),
    )
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn query(salon_part: &str, user_json: &str) -> String {
    let (data, signature) = signed(user_json);
    format!(
        "{salon_part}&user_data={}&user_data_sign={signature}",
        encode(&data)
    )
}

const USER: &str = r#"{"id":100500,"name":"Андрей Иванов","phone":"79990009900","email":"a@example.com","is_approved":true}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_redirect_lands_on_the_onboarding_page_with_a_token() {
    let app = spawn_app().await;
    let response = app.redirect_from_yclients(SALON).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let token = token_from_location(&response);
    let page = app
        .get(&format!("/marketplace/onboarding?token={token}"))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        page.headers()
            .get("referrer-policy")
            .and_then(|v| v.to_str().ok()),
        Some("no-referrer")
    );
    assert!(page.text().await.expect("html").contains("data-testid"));
    // The title comes from YClients in the background (the installation check is the entry's
    // only YClients call); the page shows it once it is in.
    app.wait_for_page(&token, "the title from YClients", "Салон красоты «Орхидея»")
        .await;
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM salons WHERE id = {SALON}"))
            .await,
        1
    );
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} AND kind = 'registration_started'")).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_html_already_shows_a_scannable_qr() {
    let app = spawn_app().await;
    let token = app.enter(SALON).await;
    let (_, code) = app.current_qr(SALON).await;
    let html = app
        .get(&format!("/marketplace/onboarding?token={token}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("data-testid=\"qr-code\""),
        "the SSR render has the QR"
    );
    assert!(
        html.contains(&html_escape::encode_double_quoted_attribute(&code).into_owned()),
        "the QR encodes the current code"
    );
    assert!(html.contains("role=\"img\""));
    assert!(html.contains("Код действует ещё"), "with its countdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parameter_shape_seen_in_production_is_accepted() {
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    app.sandbox.create_pending_link(OTHER_SALON);
    let single = app
        .redirect_with_query(&query(&format!("salon_id={SALON}"), USER))
        .await;
    assert_eq!(single.status(), StatusCode::SEE_OTHER);
    // The same user (the one who connected the branch), its id as `user_id`.
    let user_id_form = app
        .redirect_with_query(&query(
            &format!("salon_id={SALON}"),
            r#"{"user_id":"100500"}"#,
        ))
        .await;
    assert_eq!(
        user_id_form.status(),
        StatusCode::SEE_OTHER,
        "user_id instead of id"
    );
    // A branch nobody has connected yet opens for a link that names no user.
    let empty_user = app
        .redirect_with_query(&query(&format!("salon_id={OTHER_SALON}"), "{}"))
        .await;
    assert_eq!(
        empty_user.status(),
        StatusCode::SEE_OTHER,
        "every user field is optional"
    );
    for shape in [
        format!("salon_ids%5B0%5D={SALON}&salon_ids%5B1%5D={OTHER_SALON}"),
        format!("salon_ids[]={SALON}&salon_ids[]={OTHER_SALON}"),
        format!("salon_ids={SALON},{OTHER_SALON}"),
    ] {
        let response = app.redirect_with_query(&query(&shape, USER)).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{shape}: a branch picker"
        );
        let html = response.text().await.expect("html");
        assert!(html.contains("Выберите филиал"), "{shape}");
        assert!(
            html.contains("Салон красоты «Орхидея»") && html.contains("Барбершоп «Север»"),
            "{shape}: titles from YClients"
        );
        assert!(
            html.contains(&format!("salon_id={SALON}")),
            "{shape}: each branch links its own onboarding"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_chosen_from_the_picker_enters_that_branch() {
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    app.sandbox.create_pending_link(OTHER_SALON);
    let picker = app
        .redirect_with_query(&query(&format!("salon_ids={SALON},{OTHER_SALON}"), USER))
        .await;
    let html = picker.text().await.expect("html");
    let marker = format!("data-testid=\"branch-{OTHER_SALON}\" href=\"");
    let start = html.find(&marker).expect("branch link") + marker.len();
    let href = html[start..]
        .split('"')
        .next()
        .expect("href")
        .replace("&amp;", "&");
    let response = app.get(&href).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let token = token_from_location(&response);
    assert_eq!(
        app.handles.tokens.decode(&token).map(|s| s.salon.get()),
        Ok(OTHER_SALON)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_salon_ids_get_a_400_page_in_russian() {
    let app = spawn_app().await;
    for salon_part in [
        "salon_id=abc",
        "salon_id=0",
        "salon_id=-7",
        "salon_ids=1,x",
        "foo=bar",
    ] {
        let response = app.redirect_with_query(&query(salon_part, USER)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{salon_part}");
        let html = response.text().await.expect("html");
        assert!(html.contains("Неверная ссылка подключения"), "{salon_part}");
        assert!(html.contains("lang=\"ru\""));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_and_base64_signatures_are_refused() {
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    let (data, good) = signed(USER);
    let over_base64 = sign(PARTNER_TOKEN, data.as_bytes());
    let other_key = sign("another-partner-token", USER.as_bytes());
    for (what, sign_part) in [
        (
            "over the base64 text",
            format!("&user_data_sign={over_base64}"),
        ),
        ("with another key", format!("&user_data_sign={other_key}")),
        ("missing", String::new()),
        ("garbage", "&user_data_sign=zz".to_owned()),
    ] {
        let url = format!("salon_id={SALON}&user_data={}{sign_part}", encode(&data));
        let response = app.redirect_with_query(&url).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "signature {what}");
        assert!(response
            .text()
            .await
            .expect("html")
            .contains("Подпись данных пользователя не прошла проверку"));
    }
    let ok = app
        .redirect_with_query(&format!(
            "salon_id={SALON}&user_data={}&user_data_sign={good}",
            encode(&data)
        ))
        .await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_entry_is_refused_unless_the_operator_allows_it() {
    let app = spawn_app().await;
    let response = app.redirect_with_query(&format!("salon_id={SALON}")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("не подписана"));

    let lenient = spawn_app_with(|vars| {
        vars.insert("YCLIENTS_REQUIRE_USER_DATA".into(), "false".into());
    })
    .await;
    lenient.sandbox.create_pending_link(SALON);
    let response = lenient
        .redirect_with_query(&format!("salon_id={SALON}"))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_placeholder_partner_token_gets_a_503_page() {
    let app = spawn_app_with(|vars| {
        vars.insert(
            "YCLIENTS_PARTNER_TOKEN".into(),
            "test_token_waiting_for_real".into(),
        );
    })
    .await;
    let response = app
        .redirect_with_query(&query(&format!("salon_id={SALON}"), USER))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = response.text().await.expect("html");
    assert!(html.contains("Конфигурация не завершена"));
    assert!(!html.contains("test_token_waiting_for_real"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yclients_failures_on_company_info_do_not_trap_the_admin() {
    let app = spawn_app().await;
    for (kind, count) in [
        (FaultKind::ServerError, 3),
        (FaultKind::HtmlRedirect, 3),
        (FaultKind::Timeout, 3),
    ] {
        app.sandbox.clear_faults();
        app.fault(kind, count, "/api/v1/company");
        let response = app.redirect_from_yclients(OTHER_SALON).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{kind:?}: the admin goes on"
        );
        let token = token_from_location(&response);
        assert_eq!(
            app.handles.tokens.decode(&token).map(|s| s.salon.get()),
            Ok(OTHER_SALON)
        );
    }
    // A transient failure is retried: one 5xx, then the real title.
    app.sandbox.clear_faults();
    let fresh = 962311;
    app.fault(FaultKind::ServerError, 1, "/api/v1/company");
    let token = app.enter(fresh).await;
    // Company info arrives in the background (the installation check is the entry's only
    // YClients call): the page shows the real title once it is in.
    app.wait_for_page(
        &token,
        "the title retried after one 5xx",
        "Сеть «Лотос» — Юг",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_opens_its_own_salon_and_nothing_else() {
    let app = spawn_app().await;
    let token_a = app.enter(SALON).await;
    let _token_b = app.enter(OTHER_SALON).await;
    let own = app.status_response(&token_a, SALON).await;
    assert_eq!(own.status(), StatusCode::OK);
    let other = app.status_response(&token_a, OTHER_SALON).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    // The token is the salon: server functions act on the token's salon only.
    let status = app
        .server_fn("onboarding/status", &[("token", &token_a)])
        .await;
    assert_eq!(status.status(), StatusCode::OK);
    let body: serde_json::Value = status.json().await.expect("JSON");
    assert_eq!(body["salon_id"], SALON);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_tampered_tokens_get_a_page_saying_what_to_do() {
    let app = spawn_app_with(|vars| {
        vars.insert("ONBOARDING_TOKEN_TTL_SECS".into(), "0".into());
    })
    .await;
    let token = app.enter(SALON).await;
    let mut tampered = token.clone();
    tampered.insert(tampered.len() / 2, 'x');
    let bad = app
        .get(&format!("/marketplace/onboarding?token={tampered}"))
        .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(bad
        .text()
        .await
        .expect("html")
        .contains("Ссылка недействительна"));
    let missing = app.get("/marketplace/onboarding").await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(std::time::Duration::from_secs(7)).await; // past the 5 s leeway
    let expired = app
        .get(&format!("/marketplace/onboarding?token={token}"))
        .await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert!(expired
        .text()
        .await
        .expect("html")
        .contains("Ссылка устарела"));
    let api = app
        .server_fn("onboarding/status", &[("token", &token)])
        .await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_yclients_client_keeps_to_yclients_limit_per_minute_as_well_as_per_second() {
    // YClients allows 200 requests a minute or 5 a second per IP (`yclients-api.md` §5). The
    // client kept only the per-second limit (4 a second is 240 a minute), so a busy minute of
    // entries, callbacks and checks ran into 429s. Here a minute's budget of 6, at 5 a second:
    // twelve calls at once must not all go within the first seconds.
    let app = spawn_app().await;
    app.sandbox.create_pending_link(SALON);
    let client = yclients::YClientsClient::new(
        &app.sandbox_url,
        secrecy::SecretString::from(crate::helpers::PARTNER_TOKEN),
        std::time::Duration::from_secs(5),
        5,
    )
    .expect("client")
    .with_requests_per_minute(6);
    let before = app.sandbox.requests("/api/v1/company/");
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let client = client.clone();
        calls.spawn(async move { client.company(SALON).await });
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        app.sandbox.requests("/api/v1/company/") - before,
        6,
        "a minute's budget, and not one more"
    );
    calls.abort_all();
}

/// The signed `user_data` names the admin (name, phone, e-mail). The audit trail is kept for as
/// long as the salon is, through uninstalls, and operators read it; it keeps who entered as the
/// YClients user id alone. The admin's phone is kept where it is used: the salon's row (the test
/// message's default recipient), which the uninstall clears with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_keeps_who_entered_by_id_not_their_name_phone_or_email() {
    let app = spawn_app().await;
    let response = app.redirect_from_yclients(SALON).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let entries = |cond: &str| {
        format!(
            "SELECT COUNT(*) FROM integration_events WHERE salon_id = {SALON} \
             AND kind = 'registration_started' AND {cond}"
        )
    };
    assert_eq!(app.count(&entries("1 = 1")).await, 1);
    assert_eq!(
        app.count(&entries("payload LIKE '%\"user_id\":\"100500\"%'"))
            .await,
        1,
        "who entered is kept, by id"
    );
    for personal in ["79990009900", "andrey@example.com", "Андрей", "Иванов"] {
        assert_eq!(
            app.count(&entries(&format!("payload LIKE '%{personal}%'")))
                .await,
            0,
            "{personal} is not in the audit trail"
        );
    }
}
