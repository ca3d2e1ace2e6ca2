//! The server-rendered pages under concurrent load.

use crate::helpers::{spawn_app, token_from_location};

/// Defect (2026-12-04): the page's `<title>` was a closure over the language signal, and
/// leptos_meta reads it while injecting the head, in the part of leptos's response future that
/// runs outside the request's reactive arena (`Sandboxed` wraps the render and the body, not
/// that step). When the response future resumed on another worker thread than the render last
/// ran on, the thread had no arena (or another request's) and the render panicked: the client saw
/// the connection reset (the API suite caught it once on PostgreSQL). Many pages at once on a
/// two-thread runtime make that resumption common.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pages_at_once_all_render_with_their_title() {
    let app = spawn_app().await;
    let response = app.redirect_from_yclients(962302).await;
    let token = token_from_location(&response);
    let onboarding = format!("/marketplace/onboarding?token={token}");
    // The console's sign-in page shares the frame (and so the title) with the admin's pages.
    for round in 0..10 {
        let mut pages = tokio::task::JoinSet::new();
        for n in 0..40 {
            let path = if n % 4 == 3 {
                "/ops/login"
            } else {
                &onboarding
            };
            let (client, url) = (app.client.clone(), app.url(path));
            pages.spawn(async move {
                let response = client.get(url).send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            });
        }
        while let Some(page) = pages.join_next().await {
            let (status, html) = page
                .expect("the request task")
                .unwrap_or_else(|e| panic!("round {round}: the page was not answered: {e}"));
            assert_eq!(status, 200, "round {round}");
            assert!(
                html.contains("<title>AI Admin — подключение WhatsApp</title>"),
                "round {round}: no title in {html:.300}"
            );
        }
    }
}
