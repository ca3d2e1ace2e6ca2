#![recursion_limit = "256"]
//! The Leptos application: pages, components, server functions and the types that cross the wire.
//! Built with `ssr` inside the server and with `hydrate`/`csr` into the WASM bundle.

pub mod api;
pub mod channel;
pub mod domain;
pub mod i18n;
pub mod messages;
pub mod ops;
pub mod pages;
pub mod qr;
pub mod status;
pub mod wire;

#[cfg(feature = "browser")]
mod browser;

use i18n::Locale;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{path, SsrMode};

/// The HTML document the server renders around one of the two apps: the operator's console for
/// `/ops` and everything under it ([`ConsoleApp`]), the admin's pages otherwise ([`AdminApp`]).
/// The browser picks by the same rule ([`is_console_path`]) when it hydrates, so the admin's
/// bundle never carries the console (docs/design.md, "A lighter page").
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let locale = request_locale();
    let console = request_path().is_some_and(|path| is_console_path(&path));
    view! {
        <!DOCTYPE html>
        <html lang=locale.code()>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="referrer" content="no-referrer" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                {if console { ConsoleApp().into_any() } else { AdminApp().into_any() }}
            </body>
        </html>
    }
}

/// Whether a path belongs to the operator's console (`/ops`, `/ops/…`), not to `/opsfoo`.
pub fn is_console_path(path: &str) -> bool {
    path == "/ops" || path.starts_with("/ops/")
}

#[cfg(feature = "ssr")]
fn request_path() -> Option<String> {
    use_context::<http::request::Parts>().map(|parts| parts.uri.path().to_owned())
}

#[cfg(not(feature = "ssr"))]
fn request_path() -> Option<String> {
    None
}

/// What both apps put around their routes: the meta context, the language, the stylesheet, the
/// title and the router. `routes` runs inside the router, where `<Routes>` finds its context.
fn frame<R: IntoView + 'static>(routes: impl FnOnce() -> R + Send + 'static) -> impl IntoView {
    provide_meta_context();
    let locale = RwSignal::new(request_locale());
    provide_context(locale);
    // On the server the title is the request's language's, a plain string: leptos_meta reads
    // it while injecting the head, in the part of leptos's response future that runs outside the
    // request's reactive arena, where reading a signal panicked whenever that future had moved
    // to another worker thread (server/tests/api/pages.rs). In the browser it follows the
    // language switch.
    #[cfg(feature = "ssr")]
    let title = TextProp::from(locale.get_untracked().strings().app_title);
    #[cfg(not(feature = "ssr"))]
    let title = TextProp::from(move || locale.get().strings().app_title);
    view! {
        <Stylesheet id="leptos" href="/pkg/ai-admin-connect.css" />
        <Title text=title />
        <Router>
            <main class="page">{routes()}</main>
        </Router>
    }
}

/// The salon admin's pages: the home page and the onboarding page (with its «Сообщения» section).
#[component]
pub fn AdminApp() -> impl IntoView {
    frame(|| {
        view! {
            <Routes fallback=|| pages::NotFound>
                <Route path=path!("/") view=pages::HomePage />
                <Route
                    path=path!("/marketplace/onboarding")
                    view=pages::OnboardingPage
                    ssr=SsrMode::Async
                />
            </Routes>
        }
    })
}

/// The operator's console, a bundle of its own in the browser (the `frontend` crate loads it
/// only on a console page).
#[component]
pub fn ConsoleApp() -> impl IntoView {
    frame(|| {
        view! {
            <Routes fallback=|| pages::NotFound>
                <Route path=path!("/ops/login") view=pages::ops::SignInPage />
                <Route path=path!("/ops") view=pages::ops::SalonsPage ssr=SsrMode::Async />
                <Route
                    path=path!("/ops/salons/:id")
                    view=pages::ops::SalonPage
                    ssr=SsrMode::Async
                />
            </Routes>
        }
    })
}

/// The language of this render: `?lang=` first, then `Accept-Language`, on the server; the
/// browser reads what the server wrote into `<html lang>`, so hydration renders the same text.
pub fn request_locale() -> Locale {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .map(|parts| {
                let from_query = parts.uri.query().and_then(|q| {
                    q.split('&')
                        .filter_map(|kv| kv.strip_prefix("lang="))
                        .find_map(Locale::from_code)
                });
                from_query.unwrap_or_else(|| {
                    parts
                        .headers
                        .get(http::header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok())
                        .map(Locale::from_accept_language)
                        .unwrap_or_default()
                })
            })
            .unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        browser_locale()
    }
}

#[cfg(all(not(feature = "ssr"), feature = "browser"))]
fn browser_locale() -> Locale {
    browser::document_lang()
        .as_deref()
        .and_then(Locale::from_code)
        .unwrap_or_default()
}

#[cfg(all(not(feature = "ssr"), not(feature = "browser")))]
fn browser_locale() -> Locale {
    Locale::default()
}

/// The current language, switchable on the page.
pub fn use_locale() -> RwSignal<Locale> {
    use_context::<RwSignal<Locale>>().unwrap_or_else(|| RwSignal::new(Locale::default()))
}
