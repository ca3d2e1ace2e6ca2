//! Building and running the application: configuration in, a served router and its background
//! workers (callback outbox, lifecycle webhooks, activation trigger, WhatsApp sessions) out,
//! stopped together and gracefully.

use crate::activation::{Activation, ActivationSettings};
use crate::bus::EventBus;
use crate::config::{Config, WhatsAppBackend};
use crate::demo::Sandbox;
use crate::entry::EntryService;
use crate::error::ErrorPage;
use crate::health::Health;
use crate::limits::{self, Limits};
use crate::linking::simulator::Simulator;
use crate::linking::{phone, Linking, SupervisorPolicy, WhatsAppGateway};
use crate::onboarding::OnboardingService;
use crate::session::{OnboardingTokens, SessionVerifier, TokenError};
use crate::store::Store;
use crate::webhooks::{LifecycleRetry, Webhooks, MAX_WEBHOOK_BODY};
use crate::yclients::YClientsClient;
use crate::{entry, health, live, webhooks};
use anyhow::Context;
use app::api::SharedBackend;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use sea_orm::DatabaseConnection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub store: Store,
    pub verifier: SessionVerifier,
    pub onboarding: OnboardingService,
    pub entry: EntryService,
    pub webhooks: Webhooks,
    pub health: Health,
    pub sandbox_url: Option<SandboxUrl>,
}

#[derive(Clone)]
pub struct SandboxUrl(pub String);

/// Everything a test (or an operator tool) may want to reach in a built application.
#[derive(Clone)]
pub struct AppHandles {
    pub base_url: String,
    pub sandbox_url: Option<String>,
    pub sandbox: Option<Sandbox>,
    pub simulator: Option<Simulator>,
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub linking: Linking,
    pub activation: Activation,
    pub webhooks: Webhooks,
    pub tokens: OnboardingTokens,
    pub store: Store,
}

pub struct Application {
    listener: TcpListener,
    sandbox: Option<(TcpListener, Sandbox)>,
    state: AppState,
    simulator: Option<Simulator>,
    linking: Linking,
    activation: Activation,
}

impl Application {
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.site_addr)
            .await
            .with_context(|| format!("cannot listen on {} (LEPTOS_SITE_ADDR)", config.site_addr))?;
        let local = listener.local_addr()?;
        if config.site_addr.port() == 0 {
            config.base_url = format!("http://{local}");
        }
        config.site_addr = local;
        let sandbox_listener = crate::demo::bind(&mut config).await?;
        if config.jwt_secret_generated {
            tracing::warn!(
                "JWT_SECRET is not set: onboarding links stop working when the server restarts"
            );
        }
        let db =
            crate::db::connect_and_migrate(&config.database_url, config.database_schema.as_deref())
                .await
                .context("cannot open the database (DATABASE_URL)")?;
        let bus = EventBus::new();
        let store = Store::new(db.clone());
        let yclients = match config.partner_token.clone() {
            Some(token) => Some(
                YClientsClient::new(
                    &config.yclients_api_url,
                    token,
                    config.yclients_timeout,
                    config.yclients_requests_per_second,
                )
                .context("cannot build the YClients client")?,
            ),
            None => {
                tracing::warn!(
                    problem = config.yclients_problem(),
                    "YClients is not configured: the marketplace entry answers 503"
                );
                None
            }
        };
        let (gateway, simulator): (Arc<dyn WhatsAppGateway>, Option<Simulator>) =
            match config.whatsapp_backend {
                WhatsAppBackend::Simulator => {
                    let simulator =
                        Simulator::new(store.clone(), &config.base_url, config.simulator.clone());
                    (Arc::new(simulator.clone()), Some(simulator))
                }
                WhatsAppBackend::Web => (web_gateway(&config)?, None),
            };
        let linking = Linking::new(
            gateway,
            store.clone(),
            bus.clone(),
            SupervisorPolicy {
                pair_code_ttl: config.pair_code_ttl,
                pair_code_cooldown: config.pair_code_cooldown,
                reconnect_base: config.whatsapp_reconnect_base,
                ..SupervisorPolicy::default()
            },
        );
        let activation = Activation::new(
            store.clone(),
            yclients.clone(),
            bus.clone(),
            ActivationSettings {
                application_id: config.application_id,
                base_url: config.base_url.clone(),
                pending_window: config.pending_window,
                retry_base: config.callback_retry_base,
            },
        );
        let tokens = OnboardingTokens::new(&config.jwt_secret, config.onboarding_token_ttl);
        let verifier = SessionVerifier::new(tokens.clone(), store.clone());
        let config = Arc::new(config);
        let sandbox = match sandbox_listener {
            Some(listener) => Some((listener, crate::demo::sandbox(&config)?)),
            None => None,
        };
        let onboarding = OnboardingService {
            store: store.clone(),
            verifier: verifier.clone(),
            linking: linking.clone(),
            activation: activation.clone(),
            bus: bus.clone(),
            limits: Limits::new(&config.limits),
        };
        let state = AppState {
            leptos_options: leptos_options(&config),
            config: config.clone(),
            db: db.clone(),
            bus: bus.clone(),
            store: store.clone(),
            verifier,
            onboarding,
            entry: EntryService {
                config: config.clone(),
                store: store.clone(),
                yclients,
                tokens: tokens.clone(),
                linking: linking.clone(),
                bus: bus.clone(),
            },
            webhooks: Webhooks {
                config: config.clone(),
                store: store.clone(),
                linking: linking.clone(),
                bus: bus.clone(),
                retry: LifecycleRetry {
                    base: config.lifecycle_retry_base,
                    give_up_after: config.lifecycle_give_up_after,
                },
                wake: Arc::default(),
            },
            health: Health {
                config: config.clone(),
                store: store.clone(),
                linking: linking.clone(),
                bus,
            },
            sandbox_url: config
                .sandbox_addr
                .map(|addr| SandboxUrl(format!("http://{addr}"))),
        };
        Ok(Self {
            listener,
            sandbox,
            state,
            simulator,
            linking,
            activation,
        })
    }

    pub fn handles(&self) -> AppHandles {
        AppHandles {
            base_url: self.state.config.base_url.clone(),
            sandbox_url: self.state.sandbox_url.as_ref().map(|u| u.0.clone()),
            sandbox: self.sandbox.as_ref().map(|(_, s)| s.clone()),
            simulator: self.simulator.clone(),
            db: self.state.db.clone(),
            bus: self.state.bus.clone(),
            linking: self.linking.clone(),
            activation: self.activation.clone(),
            webhooks: self.state.webhooks.clone(),
            tokens: self.state.entry.tokens.clone(),
            store: self.state.store.clone(),
        }
    }

    /// Serves until SIGINT/SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves, then drains: live streams end, in-flight requests and
    /// webhooks finish, workers stop, WhatsApp sessions close (credentials kept).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            sandbox,
            state,
            simulator,
            linking,
            activation,
        } = self;
        let config = state.config.clone();
        let bus = state.bus.clone();
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut receiver = workers_stopped.clone();
            async move {
                let _ = receiver.wait_for(|s| *s).await;
            }
        };
        let mut workers = tokio::task::JoinSet::new();
        if let Some((sandbox_listener, sandbox)) = sandbox {
            tracing::info!(url = %format!("http://{}", sandbox_listener.local_addr()?), "YClients sandbox listening");
            let stop = stopped();
            workers.spawn(async move {
                if let Err(e) = axum::serve(sandbox_listener, crate::demo::router(&sandbox))
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "sandbox server failed");
                }
            });
        }
        workers.spawn(activation.clone().run_link_trigger(bus.subscribe()));
        if config.outbox_worker {
            workers.spawn(activation.run_outbox_worker(stopped()));
        }
        workers.spawn(state.webhooks.clone().run_lifecycle_worker(stopped()));
        match linking.restore_linked_sessions().await {
            Ok(0) => {}
            Ok(restored) => tracing::info!(restored, "reconnecting linked WhatsApp sessions"),
            Err(e) => tracing::error!(error = %e, "could not restore WhatsApp sessions"),
        }
        let router = build_router(state, simulator);
        tracing::info!(url = %config.base_url, backend = config.whatsapp_backend.name(), "AI Admin Connect listening");
        let drain_bus = bus.clone();
        // The peer address feeds the redirect's per-client limit (`limits.rs`).
        let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: closing live streams, finishing requests");
                drain_bus.stop_live_streams();
            })
            .await
            .context("server failed")?;
        let _ = stop_workers.send(true);
        workers.abort_all();
        linking.shutdown().await;
        Ok(())
    }
}

#[cfg(feature = "whatsapp-web")]
fn web_gateway(config: &Config) -> anyhow::Result<Arc<dyn WhatsAppGateway>> {
    Ok(Arc::new(crate::linking::web::WebGateway::new(
        config.data_dir.clone(),
    )))
}

#[cfg(not(feature = "whatsapp-web"))]
fn web_gateway(_config: &Config) -> anyhow::Result<Arc<dyn WhatsAppGateway>> {
    anyhow::bail!("WHATSAPP_BACKEND=web, but this build has no `whatsapp-web` feature")
}

fn leptos_options(config: &Config) -> LeptosOptions {
    let env_or = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    LeptosOptions::builder()
        .output_name(env_or("LEPTOS_OUTPUT_NAME", "ai-admin-connect"))
        .site_root(env_or("LEPTOS_SITE_ROOT", "target/site"))
        .site_pkg_dir(env_or("LEPTOS_SITE_PKG_DIR", "pkg"))
        .site_addr(config.site_addr)
        .reload_port(env_or("LEPTOS_RELOAD_PORT", "3001").parse().unwrap_or(3001))
        .build()
}

fn build_router(state: AppState, simulator: Option<Simulator>) -> Router {
    let backend: SharedBackend = Arc::new(state.onboarding.clone());
    let context = move || provide_context(backend.clone());
    let options = state.leptos_options.clone();
    let site_root = options.site_root.to_string();
    let routes = generate_route_list(app::App);
    let redirect_limit =
        middleware::from_fn_with_state(state.onboarding.limits.clone(), limits::limit_redirect);
    let mut router = Router::new()
        .route(
            "/auth/yclients/redirect",
            get(entry::yclients_redirect).layer(redirect_limit),
        )
        .route("/marketplace/health", get(health::health))
        .route("/marketplace/metrics", get(health::metrics))
        .route("/marketplace/api/events", get(live::salon_events))
        .route(
            "/marketplace/api/status/{session_id}",
            get(live::session_status),
        )
        .route("/webhook/yclients", post(webhooks::receive_lifecycle_event))
        .route(
            "/webhook/yclients/events/{salon_id}/{secret}",
            post(webhooks::receive_entity_event),
        )
        .route("/demo", get(demo))
        .leptos_routes_with_context(&state, routes, context, move || app::shell(options.clone()));
    if let Some(simulator) = simulator {
        router = router.merge(phone::routes(simulator));
    }
    let frame_ancestors = format!(
        "frame-ancestors 'self' {}",
        state.config.frame_ancestors.join(" ")
    );
    let cors = cors_layer(&state.config.cors_origins);
    router
        .fallback_service(ServeDir::new(site_root).not_found_service(get(not_found).with_state(())))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_onboarding_token,
        ))
        .layer(middleware::from_fn(server_fn_error_status))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        // A body refused for its size is left unread on the socket, so the connection cannot
        // carry another request: say so, or a keep-alive client (YClients' webhook sender, a
        // pooled reqwest) sends its next request into a connection hyper is closing.
        .layer(SetResponseHeaderLayer::overriding(
            header::CONNECTION,
            |response: &Response| {
                (response.status() == StatusCode::PAYLOAD_TOO_LARGE)
                    .then(|| HeaderValue::from_static("close"))
            },
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&frame_ancestors)
                .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'self'")),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(cors)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let patterns: Vec<String> = origins.to_vec();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            patterns
                .iter()
                .any(|pattern| origin_matches(pattern, origin))
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
}

/// `https://*.yclients.com` matches `https://n962302.yclients.com`, not `https://yclients.com.evil`.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| host.ends_with(&format!(".{domain}"))),
        None => pattern == origin,
    }
}

/// The onboarding page renders nothing for an invalid or expired token: the admin gets a page
/// saying what to do instead.
async fn require_onboarding_token(
    State(verifier): State<SessionVerifier>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() != "/marketplace/onboarding" {
        return next.run(request).await;
    }
    let token = request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let refused = |status: StatusCode, title: &str, message: &str| {
        ErrorPage::new(status, title, message).into_response()
    };
    let verdict = match token.as_deref() {
        Some(token) => verifier.verify(token).await,
        None => Err(TokenError::Invalid),
    };
    match verdict {
        Ok(_) => {
            let mut response = next.run(request).await;
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(TokenError::Expired) => refused(
            StatusCode::UNAUTHORIZED,
            "Ссылка устарела",
            "Ссылка на подключение действует один час. Откройте AI Admin в маркетплейсе YClients и нажмите «Подключить» ещё раз.",
        ),
        Err(TokenError::Revoked) => refused(
            StatusCode::UNAUTHORIZED,
            "Ссылка больше не действует",
            "AI Admin был удалён из этого филиала в YClients или установлен заново. Откройте AI Admin в маркетплейсе YClients и нажмите «Подключить».",
        ),
        Err(TokenError::Unavailable) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Сервис временно недоступен",
            "Не удалось проверить ссылку. Обновите страницу через минуту.",
        ),
        Err(TokenError::Invalid) => refused(
            StatusCode::UNAUTHORIZED,
            "Ссылка недействительна",
            "Эта страница открывается только из маркетплейса YClients. Откройте AI Admin в маркетплейсе и нажмите «Подключить».",
        ),
    }
}

/// A server function's error keeps the HTTP status it deserves. Errors raised in a function's
/// body set it themselves (`app::api`); an argument that cannot be decoded (a missing `token`, a
/// repeated field, a body that is not UTF-8) fails inside server_fn before the body runs, and
/// server_fn answers those with a 500. They are the caller's mistake: the `AppError` in the body
/// says which status, and this layer applies it.
async fn server_fn_error_status(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        parts.status = StatusCode::BAD_REQUEST;
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    if let Ok(error) = serde_json::from_slice::<app::api::AppError>(&bytes) {
        parts.status = error.status_code();
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

async fn demo(State(sandbox): State<Option<SandboxUrl>>) -> Response {
    match sandbox {
        Some(SandboxUrl(url)) => Redirect::to(&format!("{url}/")).into_response(),
        None => ErrorPage::new(
            StatusCode::NOT_FOUND,
            "Демо не запущено",
            "Демо-маркетплейс работает только при YCLIENTS_SANDBOX=true. Подключение начинается в маркетплейсе YClients.",
        )
        .into_response(),
    }
}

async fn not_found() -> Response {
    ErrorPage::new(
        StatusCode::NOT_FOUND,
        "Страница не найдена",
        "Такой страницы нет. Подключение начинается в маркетплейсе YClients.",
    )
    .into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::origin_matches;

    #[test]
    fn wildcard_origins_match_subdomains_only() {
        assert!(origin_matches(
            "https://*.yclients.com",
            "https://n962302.yclients.com"
        ));
        assert!(!origin_matches(
            "https://*.yclients.com",
            "https://yclients.com.evil.io"
        ));
        assert!(!origin_matches(
            "https://*.yclients.com",
            "http://n1.yclients.com"
        ));
        assert!(origin_matches(
            "https://yclients.com",
            "https://yclients.com"
        ));
    }
}
