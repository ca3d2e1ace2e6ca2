#![recursion_limit = "256"]
//! The WASM entry point of the server-rendered site: hydrates what the server sent.

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
