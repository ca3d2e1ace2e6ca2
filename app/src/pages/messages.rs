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
/// hydration before the split too. A chunk that fails to arrive is said so, with a retry; the rest
/// of the page goes on.
#[component]
pub fn MessagesSection(token: StoredValue<String>) -> impl IntoView {
    // Local signals (a view is not `Sync`), so browser-only: on the server the render's owner is
    // dropped on another thread, which a thread-bound value must not be. The server renders the
    // same empty slot.
    #[cfg(feature = "browser")]
    {
        let locale = crate::use_locale();
        let slot = RwSignal::new_local(None::<AnyView>);
        let failed = RwSignal::new(false);
        // The panel's signals and effects belong to this section, and go with it: the load runs
        // under the section's owner, also when the retry button (whose own owner is gone by the
        // time the chunk arrives) starts it.
        let owner = Owner::current();
        let load = move || {
            failed.set(false);
            let run = || {
                leptos::task::spawn_local_scoped(async move {
                    // The section may have gone meanwhile (the integration stopped being active).
                    match messages_panel(token).await {
                        Ok(view) => _ = slot.try_set(Some(view)),
                        Err(_) => _ = failed.try_set(true),
                    }
                })
            };
            match &owner {
                Some(owner) => owner.with(run),
                None => run(),
            }
        };
        load.clone()();
        move || {
            slot.track();
            if let Some(view) = slot.try_update_untracked(Option::take).flatten() {
                return Some(view);
            }
            failed.get().then(|| {
                let load = load.clone();
                let m = move || crate::messages::MessageStrings::of(locale.get());
                view! {
                    <section class="messages-panel" data-testid="messages-section-failed">
                        <p class="error" role="alert">{move || m().load_failed}</p>
                        <button type="button" class="secondary" data-testid="messages-section-retry" on:click=move |_| load()>
                            {move || locale.get().strings().retry}
                        </button>
                    </section>
                }
                .into_any()
            })
        }
    }
    #[cfg(not(feature = "browser"))]
    {
        let _ = token;
        || None::<AnyView>
    }
}

/// The section's view: a split point in the hydrate build, its own chunk
/// (`split_messages_panel.wasm`). `fallible`: a chunk that cannot be fetched is an `Err` here, and
/// a later call tries again, where `#[lazy]` would panic and stop the whole page.
#[cfg(feature = "hydrate")]
#[leptos::wasm_split::wasm_split(messages_panel, wasm_split_path = ::leptos::wasm_split, fallible)]
fn messages_panel(
    token: StoredValue<String>,
) -> Result<AnyView, leptos::wasm_split::SplitLoaderError> {
    Ok(view! { <panel::MessagesPanel token /> }.into_any())
}

/// ... and the same function in the client-side-rendered build, which has no chunks.
#[cfg(all(feature = "browser", not(feature = "hydrate")))]
async fn messages_panel(token: StoredValue<String>) -> Result<AnyView, std::convert::Infallible> {
    Ok(view! { <panel::MessagesPanel token /> }.into_any())
}
