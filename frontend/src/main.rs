#![recursion_limit = "256"]
//! The client-side-rendered variant of the UI (built by `trunk build`), for static hosting in
//! front of the same server functions.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
