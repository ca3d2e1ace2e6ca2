//! The site's files under `/pkg`: the main WASM, its JS glue and the split chunks keep their names
//! from one release to the next and must come from one build (a chunk from another build does not
//! link), so a browser must ask again each time (a cheap 304 when nothing changed) instead of
//! keeping a copy a new release would mix with new files.

use crate::helpers::{scratch_dir, spawn_app_with};
use reqwest::{header, StatusCode};

/// A main module, a split chunk and the JS glue.
const FILES: [&str; 3] = [
    "ai-admin-connect.wasm",
    "split_messages_panel.wasm",
    "ai-admin-connect.js",
];

#[tokio::test]
async fn the_site_files_are_revalidated_on_every_load_never_kept_stale() {
    let site = scratch_dir();
    std::fs::create_dir_all(site.join("pkg")).expect("site folder");
    for file in FILES {
        std::fs::write(site.join("pkg").join(file), b"\0asm\x01\0\0\0").expect("site file");
    }
    let root = site.to_string_lossy().into_owned();
    let app = spawn_app_with(|vars| {
        vars.insert("LEPTOS_SITE_ROOT".into(), root);
    })
    .await;

    for file in FILES {
        let path = format!("/pkg/{file}");
        let first = app.client.get(app.url(&path)).send().await.expect("sent");
        assert_eq!(first.status(), StatusCode::OK, "{path}");
        assert_eq!(
            first
                .headers()
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            Some("no-cache"),
            "{path}: a browser may keep it only if it asks again"
        );
        let modified = first
            .headers()
            .get(header::LAST_MODIFIED)
            .cloned()
            .expect("a validator to ask again with");
        let again = app
            .client
            .get(app.url(&path))
            .header(header::IF_MODIFIED_SINCE, modified)
            .send()
            .await
            .expect("sent");
        assert_eq!(
            again.status(),
            StatusCode::NOT_MODIFIED,
            "{path}: unchanged is a 304"
        );
    }
    // A file that is not there is still the 404 page.
    let missing = app
        .client
        .get(app.url("/pkg/nothing-here.wasm"))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let _ = std::fs::remove_dir_all(site);
}
