#![recursion_limit = "256"]
//! The client-side-rendered variant of the UI (built by `trunk build`), for static hosting in
//! front of the same server functions. `AI_ADMIN_API_URL` at build time names the server they live
//! on (empty: the same origin); that server must list the static host in `CORS_ORIGINS`.

fn main() {
    console_error_panic_hook::set_once();
    if let Some(url) = option_env!("AI_ADMIN_API_URL").filter(|url| !url.is_empty()) {
        server_fn::client::set_server_url(url);
    }
    let path = web_sys::window()
        .and_then(|window| window.location().pathname().ok())
        .unwrap_or_default();
    if app::is_console_path(&path) {
        leptos::mount::mount_to_body(app::ConsoleApp);
    } else {
        leptos::mount::mount_to_body(app::AdminApp);
    }
}
