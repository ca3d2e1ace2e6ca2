//! The «Сообщения» section of the onboarding page, once the integration is active. Its view
//! (`panel`) is browser-only: it is loaded after hydration, from a WASM chunk of its own in the
//! hydrate build.

#[cfg(feature = "browser")]
mod panel;

use leptos::prelude::*;

/// Where the «Сообщения» section goes: empty in the first HTML and at hydration, filled once the
/// section's code is here. In the hydrate build that code is a WASM chunk of its own
/// (`cargo leptos build --split`), fetched only when a salon's integration is active, so the
/// first visit's bundle does not carry it (docs/design.md, "A lighter page"). Its data came after
/// hydration before the split too.
#[component]
pub fn MessagesSection(token: StoredValue<String>) -> impl IntoView {
    // A local signal (the view is not `Sync`), so browser-only: on the server its owner is
    // dropped on another thread, which a thread-bound value must not be. The server renders the
    // same empty slot.
    #[cfg(feature = "browser")]
    {
        let slot = RwSignal::new_local(None::<AnyView>);
        // Scoped: the panel's signals and effects belong to this section, and go with it.
        leptos::task::spawn_local_scoped(async move {
            let view = messages_panel(token).await;
            // The section may have gone meanwhile (the integration stopped being active).
            let _ = slot.try_set(Some(view));
        });
        move || {
            slot.track();
            slot.try_update_untracked(Option::take).flatten()
        }
    }
    #[cfg(not(feature = "browser"))]
    {
        let _ = token;
        || None::<AnyView>
    }
}

/// The section's view: a split point in the hydrate build (`#[lazy]` makes it an `async fn` that
/// fetches its chunk first) ...
#[cfg(feature = "hydrate")]
#[leptos::lazy]
fn messages_panel(token: StoredValue<String>) -> AnyView {
    view! { <panel::MessagesPanel token /> }.into_any()
}

/// ... and the same function in the client-side-rendered build, which has no chunks.
#[cfg(all(feature = "browser", not(feature = "hydrate")))]
async fn messages_panel(token: StoredValue<String>) -> AnyView {
    view! { <panel::MessagesPanel token /> }.into_any()
}
