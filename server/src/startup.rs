//! Building and running the application: settings in, listeners bound, a served router
//! (`http/`) and its background workers (callback outbox, lifecycle webhooks, activation trigger,
//! the frozen-salon check, WhatsApp sessions) out, stopped together and gracefully.

use crate::activation::{Activation, ActivationSettings};
use crate::bus::{notify_channel, EventBus, PostgresBus};
use crate::config::{Bound, CredentialKeySource, LeptosSettings, Settings, WhatsAppBackend};
use crate::demo::Sandbox;
use crate::domain::CredentialKeys;
use crate::entry::EntryService;
use crate::http::connections::Connections;
use crate::http::health::Health;
use crate::http::layers::Origins;
use crate::http::lean_sse::{LeanListener, LeanSse};
use crate::http::{router, AppParts, AppState, SandboxUrl};
use crate::installations::FrozenWatch;
use crate::instruments::Instruments;
use crate::limits::Limits;
use crate::linking::simulator::Simulator;
use crate::linking::{Linking, SupervisorPolicy, WhatsAppGateway};
use crate::onboarding::OnboardingService;
use crate::session::{OnboardingTokens, SessionVerifier};
use crate::store::Store;
use crate::webhooks::{LifecycleRetry, Webhooks};
use crate::yclients::YClientsClient;
use anyhow::Context;
use leptos::config::LeptosOptions;
use sea_orm::{DatabaseConnection, DbBackend};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

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
    pub live: crate::live::LiveHub,
    pub messages: crate::messages::Messages,
    /// The live channel's streams served outside hyper (`http::lean_sse`).
    pub lean_sse: LeanSse,
}

pub struct Application {
    /// As loaded; never changed.
    settings: Arc<Settings>,
    /// The addresses actually listened on.
    bound: Bound,
    listener: TcpListener,
    sandbox: Option<(TcpListener, Sandbox)>,
    state: AppState,
    simulator: Option<Simulator>,
    linking: Linking,
    activation: Activation,
    /// `None` when YClients is not configured: nobody to ask.
    frozen_watch: Option<FrozenWatch>,
    messages: crate::messages::Messages,
    lean_sse: LeanSse,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, crate::clock::system()).await
    }

    /// As [`build`](Self::build), with booking messages reading the time from `clock`.
    pub async fn build_with_clock(
        settings: Settings,
        clock: crate::clock::SharedClock,
    ) -> anyhow::Result<Self> {
        let site_addr = settings.http.site_addr;
        let listener = TcpListener::bind(site_addr)
            .await
            .with_context(|| format!("cannot listen on {site_addr} (LEPTOS_SITE_ADDR)"))?;
        let sandbox_listener = crate::demo::bind(settings.sandbox).await?;
        let sandbox_addr = match &sandbox_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let bound = Bound::new(&settings, listener.local_addr()?, sandbox_addr);
        if settings.tokens.jwt_secret_generated {
            tracing::warn!(
                "JWT_SECRET is not set: onboarding links stop working when the server restarts"
            );
        }
        let db = crate::db::connect_and_migrate(
            &settings.database.url,
            settings.database.schema.as_deref(),
        )
        .await
        .context("cannot open the database (DATABASE_URL)")?;
        let bus = event_bus(&db, settings.database.schema.as_deref()).await?;
        let credential_keys = credential_keys(&settings.database.credential_keys).await?;
        let store = Store::new(db.clone())
            .with_clock(clock)
            .with_credential_keys(credential_keys);
        let instruments = Instruments::new();
        let yclients_settings = Arc::new(settings.yclients.clone());
        let yclients_api_url = bound.yclients_api_url(&settings.yclients);
        let yclients = match settings.yclients.partner_token.clone() {
            Some(token) => Some(
                YClientsClient::new(
                    &yclients_api_url,
                    token,
                    settings.yclients.timeout,
                    settings.yclients.requests_per_second,
                )
                .context("cannot build the YClients client")?,
            ),
            None => {
                tracing::warn!(
                    problem = settings.yclients.yclients_problem(),
                    "YClients is not configured: the marketplace entry answers 503"
                );
                None
            }
        };
        let whatsapp = &settings.whatsapp;
        let (gateway, simulator): (Arc<dyn WhatsAppGateway>, Option<Simulator>) =
            match whatsapp.backend {
                WhatsAppBackend::Simulator => {
                    let simulator =
                        Simulator::new(store.clone(), &bound.base_url, whatsapp.simulator.clone());
                    (Arc::new(simulator.clone()), Some(simulator))
                }
                WhatsAppBackend::Web => (web_gateway(&store)?, None),
            };
        let linking = Linking::new(
            gateway,
            store.clone(),
            bus.clone(),
            instruments.clone(),
            SupervisorPolicy {
                pair_code_ttl: whatsapp.pair_code_ttl,
                pair_code_cooldown: whatsapp.pair_code_cooldown,
                reconnect_base: whatsapp.reconnect_base,
                max_failures: whatsapp.max_failures,
                cooldown_base: whatsapp.cooldown_base,
                cooldown_max: whatsapp.cooldown_max,
                probe_interval: whatsapp.probe_interval,
                probe_timeout: whatsapp.probe_timeout,
                lease_ttl: whatsapp.lease_ttl,
                lease_renew: whatsapp.lease_renew,
                ..SupervisorPolicy::default()
            },
        );
        let activation = Activation::new(
            store.clone(),
            yclients.clone(),
            bus.clone(),
            ActivationSettings {
                application_id: settings.yclients.application_id,
                base_url: bound.base_url.clone(),
                pending_window: settings.activation.pending_window,
                retry_base: settings.activation.callback_retry_base,
            },
            instruments.clone(),
        );
        let frozen_watch = FrozenWatch::new(
            store.clone(),
            yclients.clone(),
            settings.yclients.application_id,
            linking.clone(),
            bus.clone(),
            settings.frozen_check,
        );
        let messages = crate::messages::Messages::new(
            store.clone(),
            linking.clone(),
            settings.messages,
            instruments.clone(),
        );
        let tokens = OnboardingTokens::new(&settings.tokens.jwt_secret, settings.tokens.ttl);
        let verifier = SessionVerifier::new(tokens.clone(), store.clone(), instruments.clone());
        let sandbox = match sandbox_listener {
            Some(listener) => Some((
                listener,
                crate::demo::sandbox(
                    &settings.yclients,
                    settings.activation.pending_window,
                    &bound.base_url,
                )?,
            )),
            None => None,
        };
        let limits = Limits::new(&settings.limits);
        crate::http::connections::warn_if_not_below_the_limit(settings.limits.max_connections);
        let connections = Connections::new(settings.limits.max_connections);
        let onboarding = OnboardingService {
            store: store.clone(),
            verifier: verifier.clone(),
            linking: linking.clone(),
            activation: activation.clone(),
            bus: bus.clone(),
            limits: limits.clone(),
            yclients: yclients_settings.clone(),
            messages: messages.clone(),
        };
        let ops = crate::ops::OpsService {
            store: store.clone(),
            linking: linking.clone(),
            activation: activation.clone(),
            bus: bus.clone(),
            yclients: yclients.clone(),
            application_id: settings.yclients.application_id,
            auth: Arc::new(crate::ops::auth::Auth::new(&settings.ops, &bound.base_url)),
        };
        if !ops.auth.has_operators() {
            tracing::info!(
                "OPS_OPERATORS is not set: nobody can sign in to the operator's console"
            );
        }
        let state = AppState::new(AppParts {
            ops,
            leptos_options: leptos_options(&settings.http.leptos, &bound),
            db: db.clone(),
            bus: bus.clone(),
            store: store.clone(),
            verifier,
            live: crate::live::LiveHub::new(
                onboarding.clone(),
                settings.limits.sse_fanout_shard as usize,
            ),
            onboarding,
            entry: EntryService {
                config: yclients_settings.clone(),
                store: store.clone(),
                yclients: yclients.clone(),
                tokens: tokens.clone(),
                linking: linking.clone(),
                bus: bus.clone(),
                limits,
            },
            webhooks: Webhooks {
                yclients: yclients_settings.clone(),
                yclients_client: yclients,
                store: store.clone(),
                linking: linking.clone(),
                bus: bus.clone(),
                retry: LifecycleRetry::from(settings.lifecycle),
                wake: Arc::default(),
                worker: format!("lifecycle-{}", uuid::Uuid::new_v4()).into(),
                instruments: instruments.clone(),
                writer: crate::webhooks::EntityWriter::new(
                    store.clone(),
                    settings.entity_webhooks,
                    instruments.clone(),
                    // On PostgreSQL the writers run on a thread and connections of their own.
                    (store.connection().get_database_backend() == DbBackend::Postgres).then(|| {
                        crate::webhooks::OwnPool {
                            url: settings.database.url.clone(),
                            schema: settings.database.schema.clone(),
                        }
                    }),
                ),
            },
            health: Health {
                yclients: yclients_settings,
                yclients_api_url,
                store: store.clone(),
                linking: linking.clone(),
                bus,
                instruments: instruments.clone(),
                connections: connections.clone(),
            },
            sandbox_url: bound.sandbox_url.clone().map(SandboxUrl),
            instruments: instruments.clone(),
        });
        let lean_sse = LeanSse::new(
            state.verifier.clone(),
            state.onboarding.limits.clone(),
            state.live.clone(),
            state.bus.clone(),
            state.instruments.clone(),
            &origins(&bound, &settings),
        );
        Ok(Self {
            settings: Arc::new(settings),
            bound,
            listener,
            sandbox,
            state,
            simulator,
            linking,
            activation,
            frozen_watch,
            messages,
            lean_sse,
        })
    }

    pub fn handles(&self) -> AppHandles {
        AppHandles {
            base_url: self.bound.base_url.clone(),
            sandbox_url: self.bound.sandbox_url.clone(),
            sandbox: self.sandbox.as_ref().map(|(_, s)| s.clone()),
            simulator: self.simulator.clone(),
            db: self.state.db.clone(),
            bus: self.state.bus.clone(),
            linking: self.linking.clone(),
            activation: self.activation.clone(),
            webhooks: self.state.webhooks.clone(),
            tokens: self.state.entry.tokens.clone(),
            store: self.state.store.clone(),
            live: self.state.live.clone(),
            messages: self.messages.clone(),
            lean_sse: self.lean_sse.clone(),
        }
    }

    /// Who may frame and call us, as bound.
    fn origins(&self) -> Origins {
        origins(&self.bound, &self.settings)
    }

    /// Every route the router [`Application::run`] serves will have, as declared: what the API
    /// document (`/marketplace/api/openapi.json`) must describe.
    pub fn routes(&self) -> Vec<crate::http::route_table::DeclaredRoute> {
        router::app(self.state.clone(), self.simulator.clone(), &self.origins()).1
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
        let bus = self.state.bus.clone();
        let origins = self.origins();
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut receiver = workers_stopped.clone();
            async move {
                let _ = receiver.wait_for(|s| *s).await;
            }
        };
        let mut workers = tokio::task::JoinSet::new();
        if let Some((sandbox_listener, sandbox)) = self.sandbox {
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
        // Follows the bus until it closes: aborted at the end, not drained.
        let link_trigger = tokio::spawn(self.activation.clone().run_link_trigger(bus.subscribe()));
        // Sessions here follow status changes made through any instance (uninstall, freeze).
        let status_guard = tokio::spawn(self.linking.clone().run_status_guard(bus.subscribe()));
        if self.settings.activation.outbox_worker {
            workers.spawn(self.activation.run_outbox_worker(stopped()));
        }
        workers.spawn(self.state.webhooks.clone().run_lifecycle_worker(stopped()));
        workers.spawn(self.state.webhooks.clone().run_retention(stopped()));
        // Receipts and incoming texts, followed until the sessions end (aborted at the end).
        let inbound = tokio::spawn(
            self.messages
                .clone()
                .run_inbound(self.linking.subscribe_inbound()),
        );
        if self.settings.messages.worker {
            workers.spawn(self.messages.clone().run_worker(stopped()));
        }
        match self.frozen_watch {
            Some(watch) => {
                workers.spawn(watch.run(stopped()));
            }
            None => tracing::warn!(
                "YClients is not configured: frozen salons are not checked and do not resume by themselves"
            ),
        }
        // Calls from the other instances for the sessions running here (and the simulated
        // phone's actions), and this instance's beat among the live ones.
        workers.spawn(
            self.linking
                .clone()
                .serve_calls(self.simulator.clone(), stopped()),
        );
        match self.linking.restore_linked_sessions().await {
            Ok(0) => {}
            Ok(restored) => tracing::info!(restored, "reconnecting linked WhatsApp sessions"),
            Err(e) => tracing::error!(error = %e, "could not restore WhatsApp sessions"),
        }
        // Sessions whose owner (another instance) died or stopped are taken over here.
        workers.spawn(self.linking.clone().run_lease_keeper(stopped()));
        let connections = self.state.health.connections.clone();
        let (router, _) = router::app(self.state, self.simulator, &origins);
        tracing::info!(url = %self.bound.base_url, backend = self.settings.whatsapp.backend.name(), "AI Admin Connect listening");
        let drain_bus = bus.clone();
        // New connections are sniffed first: a live stream is served outside hyper
        // (`http::lean_sse`), everything else reaches the router as it came, with the peer's
        // address (the redirect's per-client limit, `limits.rs`) and a bound on reading each
        // request head (`http::serve`).
        let lean_sse = self.lean_sse.clone();
        let listener = LeanListener::new(self.listener, self.lean_sse, connections);
        crate::http::serve::serve(
            listener,
            router,
            self.settings.limits.header_read_timeout,
            async move {
                shutdown.await;
                tracing::info!("shutting down: closing live streams, finishing requests");
                drain_bus.stop_live_streams();
            },
        )
        .await;
        // The live streams served outside hyper end as the hub ends them; bounded.
        lean_sse.drain(WORKER_DRAIN).await;
        // Workers finish their step (the outbox frees its leases), within a bound.
        let _ = stop_workers.send(true);
        let drained = tokio::time::timeout(WORKER_DRAIN, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                after_ms = WORKER_DRAIN.as_millis() as u64,
                "workers still busy at shutdown; stopping them"
            );
            workers.abort_all();
        }
        link_trigger.abort();
        status_guard.abort();
        self.linking.shutdown().await;
        inbound.abort();
        Ok(())
    }
}

/// Who may frame and call us, as bound.
fn origins(bound: &Bound, settings: &Settings) -> Origins {
    Origins {
        frame_ancestors: bound.frame_ancestors(&settings.http),
        cors: bound.cors_origins(&settings.http),
    }
}

/// The bus the database calls for: `LISTEN/NOTIFY` on PostgreSQL, where several instances may
/// share the database; in-process on SQLite, which one instance owns.
async fn event_bus(db: &DatabaseConnection, schema: Option<&str>) -> anyhow::Result<EventBus> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(EventBus::new());
    }
    let bus = PostgresBus::start(
        db.get_postgres_connection_pool().clone(),
        notify_channel(schema),
    )
    .await
    .context("cannot listen for the other instances' changes (PostgreSQL LISTEN)")?;
    Ok(EventBus::with_events(Arc::new(bus)))
}

/// The keys the WhatsApp credentials are sealed under: `CREDENTIALS_KEYS`, or — SQLite without
/// it, the embedded default — a key generated on the first start into `DATA_DIR` and read from
/// there afterwards (owner-only; its text is a valid `CREDENTIALS_KEYS` entry, to carry over to
/// PostgreSQL).
async fn credential_keys(source: &CredentialKeySource) -> anyhow::Result<CredentialKeys> {
    match source {
        CredentialKeySource::Configured(keys) => Ok(keys.clone()),
        CredentialKeySource::GeneratedFile(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || generated_key_file(&path))
                .await
                .context("the credentials key file task failed")?
        }
    }
}

fn generated_key_file(path: &std::path::Path) -> anyhow::Result<CredentialKeys> {
    let parse = |text: &str| {
        CredentialKeys::parse(text).with_context(|| {
            format!(
                "the generated credentials key in {} is damaged; restore it (or set \
                 CREDENTIALS_KEYS)",
                path.display()
            )
        })
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let entry = CredentialKeys::generate_entry("local");
    let mut options = std::fs::OpenOptions::new();
    // `create_new`: of two processes starting at once, one writes and the other reads its key.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(entry.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::warn!(
                file = %path.display(),
                "CREDENTIALS_KEYS is not set: the WhatsApp credentials are sealed under a key \
                 generated into this file (SQLite only); keep it with the database"
            );
            parse(&entry)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// How long shutdown waits for the workers to finish their step.
const WORKER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(feature = "whatsapp-web")]
fn web_gateway(store: &Store) -> anyhow::Result<Arc<dyn WhatsAppGateway>> {
    Ok(Arc::new(crate::linking::web::WebGateway::new(
        store.clone(),
    )))
}

#[cfg(not(feature = "whatsapp-web"))]
fn web_gateway(_store: &Store) -> anyhow::Result<Arc<dyn WhatsAppGateway>> {
    anyhow::bail!("WHATSAPP_BACKEND=web, but this build has no `whatsapp-web` feature")
}

fn leptos_options(leptos: &LeptosSettings, bound: &Bound) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(leptos.output_name.clone())
        .site_root(leptos.site_root.clone())
        .site_pkg_dir(leptos.site_pkg_dir.clone())
        .site_addr(bound.site_addr)
        .reload_port(leptos.reload_port)
        .build()
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
