#![recursion_limit = "256"]
//! The WASM entry point of the server-rendered site: hydrates what the server sent.
//!
//! The server renders the operator's console or the admin's pages by the path
//! (`app::is_console_path`); this does the same. The console is a split point: built with
//! `cargo leptos build --split`, its code is a WASM chunk of its own that only a console page
//! fetches, so the admin's page downloads none of it (docs/design.md, "A lighter page").

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    // The release build (scripts/build-site.sh) makes a panic stop the module at once
    // (`-Cpanic=immediate-abort`), before any panic hook could run: there the hook is dead code
    // that registering it would still keep in the bundle. The other builds print panics with it.
    #[cfg(not(panic = "immediate-abort"))]
    console_error_panic_hook::set_once();
    let path = web_sys::window()
        .and_then(|window| window.location().pathname().ok())
        .unwrap_or_default();
    if app::is_console_path(&path) {
        // Fetches the chunk, then hydrates (`hydrate_body` starts Leptos's executor there).
        wasm_bindgen_futures::spawn_local(async {
            if hydrate_console().await.is_err() {
                // The console's pages are forms and links: they go on working unhydrated.
                leptos::logging::error!(
                    "the console's code (split_hydrate_console.wasm) did not load: no live \
                     updates or language switch on this page; reload it to try again"
                );
            }
        });
    } else {
        leptos::mount::hydrate_body(app::AdminApp);
    }
}

/// The console's hydration, in its own chunk (`split_hydrate_console.wasm`): the macro makes this
/// an `async fn` that fetches the chunk first; `fallible`, so a chunk that cannot be fetched is an
/// `Err` rather than a panic.
#[cfg(feature = "hydrate")]
#[leptos::wasm_split::wasm_split(hydrate_console, wasm_split_path = ::leptos::wasm_split, fallible)]
fn hydrate_console() -> Result<(), leptos::wasm_split::SplitLoaderError> {
    leptos::mount::hydrate_body(app::ConsoleApp);
    Ok(())
}
