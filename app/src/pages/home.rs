use super::{HydrationMarker, LanguageSwitch};
use crate::i18n::tr;
use crate::use_locale;
use leptos::prelude::*;

/// `/`: what this service is, and where to start the demo journey.
#[component]
pub fn HomePage() -> impl IntoView {
    let locale = use_locale();
    let clicks = RwSignal::new(0u32);
    view! {
        <HydrationMarker />
        <section class="card">
            <header class="card-header">
                <h1>{tr(locale, |s| s.home_heading)}</h1>
                <LanguageSwitch />
            </header>
            <p>{tr(locale, |s| s.home_intro)}</p>
            <ul class="links">
                <li><a href="/demo" data-testid="demo-link">{tr(locale, |s| s.home_demo_link)}</a></li>
                <li><a href="/marketplace/health">{tr(locale, |s| s.home_health_link)}</a></li>
            </ul>
            <button type="button" class="secondary" data-testid="hydration-probe" on:click=move |_| clicks.update(|c| *c += 1)>
                "✓ " {move || clicks.get()}
            </button>
        </section>
    }
}
