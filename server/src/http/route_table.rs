//! A router that remembers its routes. axum cannot list what a `Router` holds, so every route is
//! added through [`Routes`], which records the method and path it gave axum; the router and the
//! list come out together (`router::app`), and the API document's test compares the list with
//! the document (`server/tests/api/openapi.rs`). No hand-copied list exists to drift.

use axum::handler::Handler;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use http::Method;

/// What serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// An axum handler of ours (`http/`).
    Handler,
    /// A Leptos page (`app::AdminApp`'s from `app::admin_route_list`, `app::ConsoleApp`'s from
    /// `generate_route_list`).
    Page,
    /// A Leptos server function (`app/src/api.rs`, `app/src/ops.rs`), registered by
    /// `leptos_routes_with_context`.
    ServerFunction,
}

/// One route as the router was given it: `path` in axum's syntax (`/x/{id}`, which is also
/// OpenAPI's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredRoute {
    pub method: Method,
    pub path: String,
    pub kind: RouteKind,
}

/// A [`Router`] and the list of the routes added to it.
pub struct Routes<S> {
    router: Router<S>,
    declared: Vec<DeclaredRoute>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            declared: Vec::new(),
        }
    }

    /// `GET path` (and `HEAD`, as axum answers it for a `GET` route).
    pub fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.get_with(path, handler, |route| route)
    }

    /// `POST path`.
    pub fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.add(Method::POST, MethodFilter::POST, path, handler, |route| {
            route
        })
    }

    /// `GET path` with `wrap` around its method router (a layer: a rate limit, a header).
    pub fn get_with<H, T>(
        self,
        path: &'static str,
        handler: H,
        wrap: impl FnOnce(MethodRouter<S>) -> MethodRouter<S>,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.add(Method::GET, MethodFilter::GET, path, handler, wrap)
    }

    fn add<H, T>(
        mut self,
        method: Method,
        filter: MethodFilter,
        path: &'static str,
        handler: H,
        wrap: impl FnOnce(MethodRouter<S>) -> MethodRouter<S>,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.router = self.router.route(path, wrap(on(filter, handler)));
        self.declared.push(DeclaredRoute {
            method,
            path: path.to_owned(),
            kind: RouteKind::Handler,
        });
        self
    }

    /// Both routers' routes.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.declared.extend(other.declared);
        self
    }

    /// Routes added to the router by other means (the Leptos integration), recorded from the
    /// same source that added them.
    pub fn extend(
        mut self,
        router: impl FnOnce(Router<S>) -> Router<S>,
        declared: impl IntoIterator<Item = DeclaredRoute>,
    ) -> Self {
        self.router = router(self.router);
        self.declared.extend(declared);
        self
    }

    /// The same routes with their state supplied (any outer state).
    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            declared: self.declared,
        }
    }

    pub fn into_parts(self) -> (Router<S>, Vec<DeclaredRoute>) {
        (self.router, self.declared)
    }
}
