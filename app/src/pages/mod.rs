mod home;
mod messages;
pub mod onboarding;
pub mod ops;

pub use home::HomePage;
pub use onboarding::OnboardingPage;

use crate::use_locale;
use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    let locale = use_locale();
    view! {
        <section class="card">
            <h1>{move || if locale.get() == crate::i18n::Locale::Ru { "Страница не найдена" } else { "Page not found" }}</h1>
            // `external`: from the console's own router `/` is not a route of its app.
            <p><a href="/" rel="external">"AI Admin"</a></p>
        </section>
    }
}

/// The language switch: changes every string on the page without a reload.
#[component]
pub fn LanguageSwitch() -> impl IntoView {
    let locale = use_locale();
    let switch = move |_| {
        let next = locale.get_untracked().other();
        locale.set(next);
        #[cfg(feature = "browser")]
        crate::browser::set_document_lang(next.code());
    };
    view! {
        <button type="button" class="link-button lang-switch" data-testid="language-switch" on:click=switch>
            {crate::i18n::tr(locale, |s| s.switch_language)}
        </button>
    }
}

/// Marks the document once the WASM has hydrated, so tests (and people debugging) can tell.
#[component]
pub fn HydrationMarker() -> impl IntoView {
    Effect::new(move |_| {
        #[cfg(feature = "browser")]
        crate::browser::mark_hydrated();
    });
}
