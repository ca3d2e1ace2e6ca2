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
use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos_meta::MetaTags;
#[cfg(feature = "ssr")]
use leptos_meta::{provide_meta_context, Stylesheet, Title};
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

/// What both apps put around their pages: the language, and the stylesheet and the title of the
/// document's head. `page` is made after the language is provided.
///
/// The head is leptos_meta's on the server, which writes it into the `<head>` it renders. The
/// browser needs no leptos_meta: the head is already there (the server's, or the trunk build's
/// `index.html`, which links its own stylesheet), and of it only the title changes, with the
/// language, which one effect does (docs/design.md, "A lighter page"). leptos_meta's components
/// write nothing into the body, so in the browser the page stands alone — not beside a `()`,
/// which would hydrate a placeholder (`<!>`) the server never wrote.
fn framed<V: IntoView>(page: impl FnOnce() -> V) -> impl IntoView {
    let locale = RwSignal::new(request_locale());
    provide_context(locale);
    #[cfg(feature = "ssr")]
    {
        provide_meta_context();
        // The request's language's title, a plain string: leptos_meta reads it while injecting
        // the head, in the part of leptos's response future that runs outside the request's
        // reactive arena, where reading a signal panicked whenever that future had moved to
        // another worker thread (server/tests/api/pages.rs).
        let title = locale.get_untracked().strings().app_title;
        let head = view! {
            <Stylesheet id="leptos" href="/pkg/ai-admin-connect.css" />
            <Title text=title />
        };
        view! { {head} {page()} }
    }
    #[cfg(not(feature = "ssr"))]
    {
        #[cfg(feature = "browser")]
        Effect::new(move |_| browser::set_document_title(locale.get().strings().app_title));
        page()
    }
}

/// The salon admin's two pages. [`AdminApp`] picks one by the path itself, without
/// leptos_router: a router for two fixed paths with no navigation between them (their links
/// lead to the server's routes) was 44 KB gzip of the admin's first page (docs/design.md, "A
/// lighter page"); the console keeps its router, in its own chunk. The server registers these
/// from [`AdminPage::ALL`] ([`admin_route_list`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPage {
    /// `/`
    Home,
    /// `/marketplace/onboarding`, rendered once its status is there (`SsrMode::Async`).
    Onboarding,
}

impl AdminPage {
    pub const ALL: [AdminPage; 2] = [AdminPage::Home, AdminPage::Onboarding];

    pub fn path(self) -> &'static str {
        match self {
            AdminPage::Home => "/",
            AdminPage::Onboarding => "/marketplace/onboarding",
        }
    }

    /// The page at `path` (a trailing `/` ignored, as leptos_router matched), if any.
    pub fn at(path: &str) -> Option<Self> {
        let path = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        Self::ALL.into_iter().find(|page| page.path() == path)
    }

    /// How the server renders it: the onboarding page waits for its status, so the first HTML
    /// already shows the salon's state (and the QR).
    #[cfg(feature = "ssr")]
    pub fn ssr_mode(self) -> SsrMode {
        match self {
            AdminPage::Home => SsrMode::default(),
            AdminPage::Onboarding => SsrMode::Async,
        }
    }
}

/// The routes the server registers for the admin's pages ([`AdminPage::ALL`], `GET` each), beside
/// `generate_route_list(ConsoleApp)` for the console's.
#[cfg(feature = "ssr")]
pub fn admin_route_list() -> Vec<leptos_axum::AxumRouteListing> {
    AdminPage::ALL
        .into_iter()
        .map(|page| {
            leptos_axum::AxumRouteListing::new(
                page.path().to_owned(),
                page.ssr_mode(),
                [leptos_router::Method::Get],
                Vec::new(),
            )
        })
        .collect()
}

/// The salon admin's pages: the home page and the onboarding page (with its «Сообщения» section).
#[component]
pub fn AdminApp() -> impl IntoView {
    framed(|| {
        let page = match current_path().as_deref().and_then(AdminPage::at) {
            Some(AdminPage::Home) => EitherOf3::A(pages::HomePage()),
            Some(AdminPage::Onboarding) => EitherOf3::B(pages::OnboardingPage()),
            None => EitherOf3::C(pages::NotFound()),
        };
        view! { <main class="page">{page}</main> }
    })
}

/// The operator's console, a bundle of its own in the browser (the `frontend` crate loads it
/// only on a console page). It keeps leptos_router (a path parameter, links between its pages),
/// which the split puts in the console's chunk.
#[component]
pub fn ConsoleApp() -> impl IntoView {
    framed(|| {
        view! {
            <Router>
                <main class="page">
                    <Routes fallback=|| pages::NotFound>
                        <Route path=path!("/ops/login") view=pages::ops::SignInPage />
                        <Route path=path!("/ops") view=pages::ops::SalonsPage ssr=SsrMode::Async />
                        <Route
                            path=path!("/ops/salons/:id")
                            view=pages::ops::SalonPage
                            ssr=SsrMode::Async
                        />
                    </Routes>
                </main>
            </Router>
        }
    })
}

/// The path of the page being rendered: the request's on the server, the address bar's in the
/// browser.
#[cfg(feature = "ssr")]
fn current_path() -> Option<String> {
    request_path()
}

#[cfg(all(not(feature = "ssr"), feature = "browser"))]
fn current_path() -> Option<String> {
    browser::location_path()
}

#[cfg(all(not(feature = "ssr"), not(feature = "browser")))]
fn current_path() -> Option<String> {
    None
}

/// A parameter of the page's query (`?name=…`, decoded): the request's on the server, the
/// address bar's in the browser.
pub fn query_param(name: &str) -> Option<String> {
    #[cfg(feature = "ssr")]
    {
        let parts = use_context::<http::request::Parts>()?;
        form_urlencoded::parse(parts.uri.query()?.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
    #[cfg(all(not(feature = "ssr"), feature = "browser"))]
    {
        browser::query_param(name)
    }
    #[cfg(all(not(feature = "ssr"), not(feature = "browser")))]
    {
        let _ = name;
        None
    }
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

#[cfg(test)]
mod tests {
    use super::AdminPage;

    #[test]
    fn the_admin_app_picks_its_page_by_the_path() {
        for page in AdminPage::ALL {
            assert_eq!(AdminPage::at(page.path()), Some(page));
        }
        assert_eq!(AdminPage::at(""), Some(AdminPage::Home));
        assert_eq!(
            AdminPage::at("/marketplace/onboarding/"),
            Some(AdminPage::Onboarding)
        );
        for other in ["/marketplace", "/marketplace/onboardingx", "/ops", "/demo"] {
            assert_eq!(AdminPage::at(other), None, "{other}");
        }
    }
}
