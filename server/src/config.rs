//! One typed configuration tree, read once at start from the environment (and an optional `.env`).
//! A malformed value stops start-up with the variable's name; secrets never print.

use crate::domain::{CredentialKeys, KeyListError};
use app::domain::SalonId;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The token shipped in the original's `.env` before YClients issued a real one.
pub const PLACEHOLDER_PARTNER_TOKEN: &str = "test_token_waiting_for_real";
/// Set to `true` to run the WhatsApp simulator or the YClients sandbox although the YClients API
/// is the real one and a partner token is set (a deliberate, rare choice: see README).
pub const ALLOW_DEV_SURFACES: &str = "ALLOW_DEV_SURFACES_WITH_REAL_YCLIENTS";
/// Origins the original allowed to embed and call us.
pub const DEFAULT_TRUSTED_ORIGINS: &str =
    "https://ai-admin.app https://yclients.com https://*.yclients.com";
/// The app's card in the YClients marketplace, for one branch. Our assumption of the URL shape
/// YClients uses (it documents none); `YCLIENTS_MARKETPLACE_URL` overrides it.
pub const DEFAULT_MARKETPLACE_CARD_URL: &str =
    "https://yclients.com/appstore/{salon_id}/applications/{application_id}/info";

/// Why start-up refuses PostgreSQL without `JWT_SECRET`.
pub const JWT_SECRET_REQUIRED_WITH_POSTGRES: &str = "is required when DATABASE_URL is PostgreSQL: \
     every instance on the database must accept the onboarding links the others sign, so set the \
     same secret (32 characters or more) on each of them";

/// Why start-up refuses PostgreSQL without `CREDENTIALS_KEYS`.
pub const CREDENTIALS_KEYS_REQUIRED_WITH_POSTGRES: &str = "is required when DATABASE_URL is \
     PostgreSQL: the WhatsApp credentials are sealed in the database under these keys and every \
     instance that takes a session over must open them, so set the same list on each instance \
     («id:<base64 of 32 random bytes>», e.g. «k1:$(head -c 32 /dev/urandom | base64)»)";

/// The file the embedded default (SQLite without `CREDENTIALS_KEYS`) keeps its generated
/// credentials key in, under `DATA_DIR`.
pub const GENERATED_CREDENTIALS_KEY_FILE: &str = "credentials-key";

/// Where the keys sealing the WhatsApp credentials come from.
#[derive(Debug, Clone)]
pub enum CredentialKeySource {
    /// `CREDENTIALS_KEYS`: the first seals, all open.
    Configured(CredentialKeys),
    /// SQLite without `CREDENTIALS_KEYS` (one process, the embedded default): a key generated
    /// on the first start and kept in this file (owner-only), so `scripts/run.sh` needs no
    /// setup and a restart still opens what the last run sealed.
    GeneratedFile(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhatsAppBackend {
    Simulator,
    Web,
}

impl WhatsAppBackend {
    pub fn name(self) -> &'static str {
        match self {
            WhatsAppBackend::Simulator => "simulator",
            WhatsAppBackend::Web => "web",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The operator's console: `OPS_OPERATORS=name:$argon2id$…;name2:…` (hashes printed by
/// `server hash-password`), `OPS_SESSION_TTL_SECS` (8 h), `OPS_SESSION_SECRET` (random per start
/// when unset: sessions end with a restart), `OPS_SIGNIN_PER_MINUTE` (5 per client address).
#[derive(Clone, Debug)]
pub struct OpsSettings {
    pub operators: Vec<(String, String)>,
    pub session_ttl: Duration,
    pub session_secret: Option<SecretString>,
    pub signin_per_minute: u32,
}

fn ops_operators(raw: Option<&str>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut operators = Vec::new();
    for entry in raw
        .unwrap_or("")
        .split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let Some((name, hash)) = entry.split_once(':') else {
            return Err(err("OPS_OPERATORS", "each entry must be name:argon2-hash"));
        };
        let (name, hash) = (name.trim(), hash.trim());
        if name.is_empty() || !hash.starts_with("$argon2") {
            return Err(err(
                "OPS_OPERATORS",
                format!("entry for «{name}» must be name:$argon2id$… (see `server hash-password`)"),
            ));
        }
        operators.push((name.to_owned(), hash.to_owned()));
    }
    Ok(operators)
}

/// Limits before work (see `limits.rs`): rate limits answered with `429` and `Retry-After`, and
/// a cap on live streams; the defaults are far above what a real admin does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// `RATE_LIMIT_REDIRECT_PER_MINUTE`: redirects per client address and minute, after a burst of
    /// `RATE_LIMIT_REDIRECT_BURST`.
    pub redirect_per_minute: u32,
    pub redirect_burst: u32,
    /// `RATE_LIMIT_PICKER_TITLES_PER_MINUTE` after a burst of `RATE_LIMIT_PICKER_TITLES_BURST`:
    /// the branch picker's YClients calls (a branch's title), for all clients together. The
    /// picker asks YClients nothing else; past the budget it shows `Филиал {id}`.
    pub picker_titles_per_minute: u32,
    pub picker_titles_burst: u32,
    /// `RATE_LIMIT_ACTIONS_PER_MINUTE`: restart, retry-activation and pairing-code, each per salon.
    pub actions_per_minute: u32,
    /// `SSE_MAX_STREAMS_PER_SALON`: live streams one salon may hold open at once.
    pub sse_max_streams_per_salon: u32,
    /// `SSE_FANOUT_SHARD`: a salon's change is written to its streams by several tasks at once
    /// (as many as the runtime has worker threads) when it has at least twice this many streams
    /// on the lean path; `0`: always one task.
    pub sse_fanout_shard: u32,
    /// `TRUSTED_PROXY`: peers whose `X-Forwarded-For` (its last hop) names the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// `RATE_LIMIT_ENTRY_CHECKS_PER_USER_PER_MINUTE` after a burst of `…_PER_USER_BURST`: the
    /// entry's installation checks (YClients calls) per signed YClients user.
    pub entry_checks_per_user_per_minute: u32,
    pub entry_checks_per_user_burst: u32,
    /// `RATE_LIMIT_ENTRY_CHECKS_UNHELD_PER_MINUTE` after a burst of `…_UNHELD_BURST`: the same,
    /// for branches the user entering does not hold (first entries), for everyone together.
    pub entry_checks_unheld_per_minute: u32,
    pub entry_checks_unheld_burst: u32,
    /// `HTTP_HEADER_TIMEOUT_MS`: how long a connection may take to send a request's head,
    /// counted from when the server starts waiting for it (a new connection, or an idle
    /// keep-alive one); past it the connection is closed.
    pub header_read_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: connections served at once; past it new ones wait to be accepted
    /// (`http::connections`). By default three quarters of the open-file limit.
    pub max_connections: u32,
}

/// The simulator's timing (the real WhatsApp: 6 codes, 60 s then 20 s each).
#[derive(Debug, Clone)]
pub struct SimulatorTiming {
    pub first_qr_ttl: Duration,
    pub next_qr_ttl: Duration,
    pub qr_count: u32,
}

/// Everything configurable, read once by [`Settings::load`] / [`Settings::from_map`] and never
/// changed afterwards. Each stage is given only its section. What is known only after binding
/// (the actual port when a port is 0, the sandbox's real origin) is a separate value, [`Bound`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub yclients: YClientsSettings,
    pub tokens: TokenSettings,
    pub whatsapp: WhatsAppSettings,
    pub activation: ActivationTiming,
    pub lifecycle: LifecycleSettings,
    pub frozen_check: FrozenCheckSettings,
    pub entity_webhooks: EntityWebhookSettings,
    pub messages: MessagingSettings,
    /// `Some`: run the YClients sandbox beside the app (demo, dev).
    pub sandbox: Option<SandboxSettings>,
    pub limits: LimitSettings,
    /// The operator's console (`/ops`): its accounts and sessions.
    pub ops: OpsSettings,
    pub log_format: LogFormat,
}

/// Where and how the site is served.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `LEPTOS_SITE_ADDR` (port 0: any free port, see [`Bound`]).
    pub site_addr: SocketAddr,
    /// `BASE_URL`, by default `http://{site_addr}`.
    pub base_url: String,
    pub frame_ancestors: Vec<String>,
    pub cors_origins: Vec<String>,
    pub leptos: LeptosSettings,
}

/// The `LEPTOS_*` build outputs the pages are served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeptosSettings {
    pub output_name: String,
    pub site_root: String,
    pub site_pkg_dir: String,
    pub reload_port: u32,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    /// PostgreSQL schema to use (`search_path`), e.g. one per test.
    pub schema: Option<String>,
    /// The keys the WhatsApp credentials are sealed under (`CREDENTIALS_KEYS`).
    pub credential_keys: CredentialKeySource,
}

/// The YClients partner API and what the entry requires of its redirect.
#[derive(Debug, Clone)]
pub struct YClientsSettings {
    /// `None` when missing or the placeholder: the entry answers 503 and health says why.
    pub partner_token: Option<SecretString>,
    pub application_id: Option<i64>,
    pub api_url: String,
    pub require_user_data: bool,
    pub timeout: Duration,
    pub requests_per_second: u32,
    /// `YCLIENTS_MARKETPLACE_URL`: the app's card in the marketplace, a template with
    /// `{salon_id}` and `{application_id}` (see [`YClientsSettings::marketplace_card_url`]).
    pub marketplace_card_url: String,
}

/// The onboarding link's token.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub jwt_secret: SecretString,
    /// `JWT_SECRET` was not set: a random one, lost at restart.
    pub jwt_secret_generated: bool,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct WhatsAppSettings {
    pub backend: WhatsAppBackend,
    /// `DATA_DIR`: the default SQLite file and, without `CREDENTIALS_KEYS`, its generated key.
    pub data_dir: PathBuf,
    pub simulator: SimulatorTiming,
    pub pair_code_ttl: Duration,
    pub pair_code_cooldown: Duration,
    /// First reconnect delay after a WhatsApp drop; doubles up to a minute.
    pub reconnect_base: Duration,
    /// Failed connects in a row before a session shows `failed` and cools down.
    pub max_failures: u32,
    /// The first cool-down of a `failed` session; doubles up to `cooldown_max`.
    pub cooldown_base: Duration,
    pub cooldown_max: Duration,
    /// How often a linked connection is asked for a keep-alive answer, and how long it has.
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// A salon's session lease lasts this long from its last renewal (`SESSION_LEASE_MS`)…
    pub lease_ttl: Duration,
    /// …and is renewed this often (`SESSION_LEASE_RENEW_MS`), well inside it.
    pub lease_renew: Duration,
}

/// Activation's callback to YClients.
#[derive(Debug, Clone)]
pub struct ActivationTiming {
    /// How long after registration YClients accepts the callback.
    pub pending_window: Duration,
    pub callback_retry_base: Duration,
    pub outbox_worker: bool,
}

/// The group commit of entity webhooks: bounded queues in front of `writers` writers, each batch
/// closing at `batch_max` events or after `batch_window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityWebhookSettings {
    /// `ENTITY_WEBHOOK_QUEUE`: events waiting for the writer; a full queue answers 503.
    pub queue: usize,
    /// `ENTITY_WEBHOOK_QUEUE_BYTES`: the request bodies of the events waiting for the writers
    /// or in their batches, in bytes at most; past it a webhook answers 503 too. At least one
    /// body of the largest size taken (1 MiB), so every event can go through on its own.
    pub queue_bytes: usize,
    /// `ENTITY_WEBHOOK_BATCH`: events per transaction at most.
    pub batch_max: usize,
    /// `ENTITY_WEBHOOK_BATCH_WINDOW_US`: how long a batch waits for more events, counted from its
    /// oldest event's arrival.
    pub batch_window: Duration,
    /// `ENTITY_WEBHOOK_WRITERS`: writers committing batches side by side on PostgreSQL, each
    /// owning a share of the bookings (one booking's events always go to the same writer, in
    /// order). SQLite has one writer whatever this says: it commits one transaction at a time.
    pub writers: usize,
    /// `ENTITY_EVENT_RETENTION_DAYS`: how long a stored entity event (the whole record or client
    /// as YClients sent it, with the client's name and phone) is kept; older ones are deleted
    /// hourly. At least 7 days: a repeat of a deleted event would be stored again, and YClients
    /// retries for far less than that.
    pub retention: Duration,
}

/// The smallest `ENTITY_WEBHOOK_QUEUE_BYTES`: the largest webhook body taken
/// (`http::webhooks::MAX_WEBHOOK_BODY`).
pub const MIN_QUEUE_BYTES: usize = 1024 * 1024;

/// Booking messages: the sender worker and its pacing per salon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagingSettings {
    /// `MESSAGES_WORKER`: whether this process sends (off in tests that drive passes by hand).
    pub worker: bool,
    /// `MESSAGES_POLL_MS`: the pause between two passes over the due messages.
    pub poll: Duration,
    /// `MESSAGES_INTERVAL_MS`: at least this long between two messages of one salon…
    pub interval: Duration,
    /// `MESSAGES_JITTER_MS`: …plus a random part up to this long.
    pub jitter: Duration,
    /// `MESSAGES_DAILY_CAP`: messages per salon per day (the salon's calendar day) at most.
    pub daily_cap: u32,
    /// `MESSAGES_TEST_DAILY_CAP`: test messages (the page's «Отправить тестовое сообщение», to a
    /// number of the token holder's choosing) per salon in any 24 hours, at most.
    pub test_daily_cap: u32,
    /// `MESSAGES_RETRY_SECS`: how long a message waits for WhatsApp before the next try.
    pub retry: Duration,
    /// `MESSAGES_MAX_ATTEMPTS`: refused sends before a message fails.
    pub max_attempts: u32,
}

/// The lifecycle inbox's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// The first retry delay (doubling, with jitter, up to five minutes).
    pub retry_base: Duration,
    /// How long the inbox keeps retrying an event before it gives up (visibly).
    pub give_up_after: Duration,
    /// `LIFECYCLE_CONFIRM_WINDOW_SECS`: how long an `uninstall` or `freeze` that YClients' own
    /// installation status contradicts is asked about again before it is set aside as stale.
    pub confirm_window: Duration,
}

/// The periodic check of frozen salons: YClients is asked whether their installation is active
/// again (the salon then resumes by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenCheckSettings {
    /// `FROZEN_CHECK_INTERVAL_MS`: the pause between two passes.
    pub interval: Duration,
    /// `FROZEN_CHECK_BATCH`: at most this many salons are asked about per pass (the next pass
    /// goes on from where this one stopped).
    pub batch: u32,
    /// `FROZEN_CHECK_PACE_MS`: the pause between two questions in a pass, so the check never takes
    /// more than its share of YClients' 5 requests/s from the entry and the activation.
    pub pace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSettings {
    /// `YCLIENTS_SANDBOX_ADDR` (port 0: any free port, see [`Bound`]).
    pub addr: SocketAddr,
}

impl SandboxSettings {
    /// The sandbox's origin as configured.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The addresses actually listened on, known once the listeners are bound. [`Settings`] keep the
/// configured ones; where a configured port was 0, the bound one is what the app says and links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub site_addr: SocketAddr,
    /// `BASE_URL` as configured, or `http://{site_addr}` when the configured port was 0.
    pub base_url: String,
    /// The sandbox's bound origin, when it runs.
    pub sandbox_url: Option<String>,
    /// The sandbox's configured origin, which the bound one stands for wherever it is named.
    configured_sandbox_url: Option<String>,
}

impl Bound {
    pub fn new(
        settings: &Settings,
        site_addr: SocketAddr,
        sandbox_addr: Option<SocketAddr>,
    ) -> Self {
        let base_url = if settings.http.site_addr.port() == 0 {
            format!("http://{site_addr}")
        } else {
            settings.http.base_url.clone()
        };
        Self {
            site_addr,
            base_url,
            sandbox_url: sandbox_addr.map(|addr| format!("http://{addr}")),
            configured_sandbox_url: settings.sandbox.map(|s| s.url()),
        }
    }

    /// `url` with the sandbox's configured origin replaced by the bound one.
    pub fn resolve(&self, url: &str) -> String {
        match (&self.configured_sandbox_url, &self.sandbox_url) {
            (Some(configured), Some(bound)) if url == configured => bound.clone(),
            _ => url.to_owned(),
        }
    }

    /// The YClients API actually called (the bound sandbox when it plays YClients).
    pub fn yclients_api_url(&self, yclients: &YClientsSettings) -> String {
        self.resolve(&yclients.api_url)
    }

    /// Origins allowed to frame us, the bound sandbox among them when it runs.
    pub fn frame_ancestors(&self, http: &HttpSettings) -> Vec<String> {
        http.frame_ancestors
            .iter()
            .map(|o| self.resolve(o))
            .collect()
    }

    /// Origins allowed to call us cross-origin, the bound sandbox among them when it runs.
    pub fn cors_origins(&self, http: &HttpSettings) -> Vec<String> {
        http.cors_origins.iter().map(|o| self.resolve(o)).collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| err(var, format!("is not valid ({e}): «{raw}»"))),
        }
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(err(var, format!("must be true or false, got «{other}»"))),
        }
    }

    fn millis(&self, var: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse::<u64>(var, default_ms)
            .map(Duration::from_millis)
    }

    fn url(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self
            .get(var)
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned();
        if value.starts_with("http://") || value.starts_with("https://") {
            Ok(value)
        } else {
            Err(err(var, format!("must be an http(s) URL, got «{value}»")))
        }
    }

    fn at_least_one(&self, var: &'static str, default: u32) -> Result<u32, ConfigError> {
        match self.parse(var, default)? {
            0 => Err(err(var, "must be at least 1")),
            value => Ok(value),
        }
    }

    fn ip_list(&self, var: &'static str) -> Result<Vec<IpAddr>, ConfigError> {
        self.origins(var, "")
            .iter()
            .map(|ip| {
                ip.parse()
                    .map_err(|_| err(var, format!("must list IP addresses, got «{ip}»")))
            })
            .collect()
    }

    fn origins(&self, var: &'static str, default: &str) -> Vec<String> {
        self.get(var)
            .unwrap_or(default)
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Settings {
    /// Reads `.env` (if present) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_map(&std::env::vars().collect())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let partner_token = env
            .get("YCLIENTS_PARTNER_TOKEN")
            .filter(|t| *t != PLACEHOLDER_PARTNER_TOKEN)
            .map(|t| SecretString::from(t.to_owned()));
        let application_id =
            match env.get("YCLIENTS_APPLICATION_ID") {
                None => None,
                Some(raw) => Some(raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(
                    || {
                        err(
                            "YCLIENTS_APPLICATION_ID",
                            format!("must be a positive integer, got «{raw}»"),
                        )
                    },
                )?),
            };
        let data_dir = PathBuf::from(env.get("DATA_DIR").unwrap_or("data"));
        let default_db = format!("sqlite://{}/ai-admin.db?mode=rwc", data_dir.display());
        let database_url = env.get("DATABASE_URL").unwrap_or(&default_db).to_owned();
        let postgres =
            database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        if !(database_url.starts_with("sqlite:") || postgres) {
            return Err(err(
                "DATABASE_URL",
                "must start with sqlite: or postgres://",
            ));
        }
        let (jwt_secret, jwt_secret_generated) = match env.get("JWT_SECRET") {
            Some(secret) if secret.len() < 32 => {
                return Err(err("JWT_SECRET", "must be at least 32 characters long"))
            }
            Some(secret) => (SecretString::from(secret.to_owned()), false),
            // Several instances share a PostgreSQL database; a secret of one process's own would
            // make every other instance refuse the onboarding links it signs.
            None if postgres => return Err(err("JWT_SECRET", JWT_SECRET_REQUIRED_WITH_POSTGRES)),
            None => (SecretString::from(random_secret()), true),
        };
        let credential_keys = match env.get("CREDENTIALS_KEYS") {
            Some(raw) => CredentialKeySource::Configured(
                CredentialKeys::parse(raw)
                    .map_err(|e: KeyListError| err("CREDENTIALS_KEYS", e.to_string()))?,
            ),
            // Instances meet on PostgreSQL: a key of one process's own would seal credentials
            // no other instance can open after a takeover.
            None if postgres => {
                return Err(err(
                    "CREDENTIALS_KEYS",
                    CREDENTIALS_KEYS_REQUIRED_WITH_POSTGRES,
                ))
            }
            None => {
                CredentialKeySource::GeneratedFile(data_dir.join(GENERATED_CREDENTIALS_KEY_FILE))
            }
        };
        let session_lease = (
            env.millis("SESSION_LEASE_MS", 30_000)?,
            env.millis("SESSION_LEASE_RENEW_MS", 10_000)?,
        );
        if session_lease.1.is_zero() || session_lease.1 >= session_lease.0 {
            return Err(err(
                "SESSION_LEASE_RENEW_MS",
                "must be above 0 and well below SESSION_LEASE_MS (a lease is renewed inside its expiry)",
            ));
        }
        let site_addr: SocketAddr =
            env.parse("LEPTOS_SITE_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?;
        let base_url = env.url("BASE_URL", &format!("http://{site_addr}"))?;
        let whatsapp_backend = match env.get("WHATSAPP_BACKEND").unwrap_or("simulator") {
            "simulator" => WhatsAppBackend::Simulator,
            "web" => WhatsAppBackend::Web,
            other => {
                return Err(err(
                    "WHATSAPP_BACKEND",
                    format!("must be simulator or web, got «{other}»"),
                ))
            }
        };
        let sandbox = if env.bool("YCLIENTS_SANDBOX", false)? {
            Some(SandboxSettings {
                addr: env.parse(
                    "YCLIENTS_SANDBOX_ADDR",
                    SocketAddr::from(([127, 0, 0, 1], 3100)),
                )?,
            })
        } else {
            None
        };
        let default_api = match sandbox {
            Some(sandbox) => sandbox.url(),
            None => "https://api.yclients.com".to_owned(),
        };
        let yclients_api_url = env.url("YCLIENTS_API_URL", &default_api)?;
        let mut frame_ancestors = env.origins("FRAME_ANCESTORS", DEFAULT_TRUSTED_ORIGINS);
        let mut cors_origins = env.origins("CORS_ORIGINS", DEFAULT_TRUSTED_ORIGINS);
        if let Some(sandbox) = sandbox {
            // The sandbox plays YClients, including its iframe, from its own origin.
            frame_ancestors.push(sandbox.url());
            cors_origins.push(sandbox.url());
        }
        refuse_dev_surfaces_with_real_yclients(
            &env,
            partner_token.as_ref().map(|t| t.expose_secret()),
            &yclients_api_url,
            whatsapp_backend,
            sandbox.is_some(),
        )?;
        let log_format = match env.get("LOG_FORMAT").unwrap_or("human") {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(err(
                    "LOG_FORMAT",
                    format!("must be human or json, got «{other}»"),
                ))
            }
        };
        let qr_count = env.parse("SIMULATOR_QR_COUNT", 6u32)?;
        if qr_count == 0 {
            return Err(err("SIMULATOR_QR_COUNT", "must be at least 1"));
        }
        let yclients_requests_per_second = env.parse("YCLIENTS_REQUESTS_PER_SECOND", 4u32)?;
        if !(1..=5).contains(&yclients_requests_per_second) {
            return Err(err(
                "YCLIENTS_REQUESTS_PER_SECOND",
                "must be between 1 and 5 (YClients allows 5/s)",
            ));
        }
        Ok(Self {
            http: HttpSettings {
                site_addr,
                base_url,
                frame_ancestors,
                cors_origins,
                leptos: LeptosSettings {
                    output_name: env
                        .get("LEPTOS_OUTPUT_NAME")
                        .unwrap_or("ai-admin-connect")
                        .to_owned(),
                    site_root: env
                        .get("LEPTOS_SITE_ROOT")
                        .unwrap_or("target/site")
                        .to_owned(),
                    site_pkg_dir: env.get("LEPTOS_SITE_PKG_DIR").unwrap_or("pkg").to_owned(),
                    reload_port: env.parse("LEPTOS_RELOAD_PORT", 3001u32)?,
                },
            },
            database: DatabaseSettings {
                url: database_url,
                schema: env.get("DATABASE_SCHEMA").map(str::to_owned),
                credential_keys,
            },
            yclients: YClientsSettings {
                partner_token,
                application_id,
                api_url: yclients_api_url,
                require_user_data: env.bool("YCLIENTS_REQUIRE_USER_DATA", true)?,
                timeout: env.millis("YCLIENTS_TIMEOUT_MS", 10_000)?,
                requests_per_second: yclients_requests_per_second,
                marketplace_card_url: env
                    .url("YCLIENTS_MARKETPLACE_URL", DEFAULT_MARKETPLACE_CARD_URL)?,
            },
            tokens: TokenSettings {
                jwt_secret,
                jwt_secret_generated,
                ttl: Duration::from_secs(env.parse("ONBOARDING_TOKEN_TTL_SECS", 3600u64)?),
            },
            whatsapp: WhatsAppSettings {
                backend: whatsapp_backend,
                data_dir,
                simulator: SimulatorTiming {
                    first_qr_ttl: env.millis("SIMULATOR_FIRST_QR_TTL_MS", 60_000)?,
                    next_qr_ttl: env.millis("SIMULATOR_NEXT_QR_TTL_MS", 20_000)?,
                    qr_count,
                },
                pair_code_ttl: Duration::from_secs(env.parse("PAIR_CODE_TTL_SECS", 180u64)?),
                pair_code_cooldown: Duration::from_secs(
                    env.parse("PAIR_CODE_COOLDOWN_SECS", 60u64)?,
                ),
                reconnect_base: env.millis("WHATSAPP_RECONNECT_BASE_MS", 1_000)?,
                max_failures: env.parse("WHATSAPP_MAX_FAILURES", 5u32)?.max(1),
                cooldown_base: env.millis("WHATSAPP_COOLDOWN_BASE_MS", 60_000)?,
                cooldown_max: env.millis("WHATSAPP_COOLDOWN_MAX_MS", 30 * 60_000)?,
                probe_interval: env.millis("WHATSAPP_PROBE_INTERVAL_MS", 30_000)?,
                probe_timeout: env.millis("WHATSAPP_PROBE_TIMEOUT_MS", 10_000)?,
                lease_ttl: session_lease.0,
                lease_renew: session_lease.1,
            },
            activation: ActivationTiming {
                pending_window: Duration::from_secs(
                    env.parse("YCLIENTS_PENDING_WINDOW_SECS", 3600u64)?,
                ),
                callback_retry_base: env.millis("CALLBACK_RETRY_BASE_MS", 2_000)?,
                outbox_worker: env.bool("OUTBOX_WORKER", true)?,
            },
            lifecycle: LifecycleSettings {
                retry_base: env.millis("LIFECYCLE_RETRY_BASE_MS", 5_000)?,
                give_up_after: Duration::from_secs(
                    env.parse("LIFECYCLE_GIVE_UP_AFTER_SECS", 86_400u64)?,
                ),
                confirm_window: Duration::from_secs(
                    env.parse("LIFECYCLE_CONFIRM_WINDOW_SECS", 120u64)?,
                ),
            },
            entity_webhooks: EntityWebhookSettings {
                queue: env.at_least_one("ENTITY_WEBHOOK_QUEUE", 8192)? as usize,
                queue_bytes: match env.parse("ENTITY_WEBHOOK_QUEUE_BYTES", 64u64 << 20)? {
                    bytes if bytes >= MIN_QUEUE_BYTES as u64 => bytes.min(usize::MAX as u64) as usize,
                    _ => {
                        return Err(err(
                            "ENTITY_WEBHOOK_QUEUE_BYTES",
                            format!("must be at least {MIN_QUEUE_BYTES} (one webhook body of the largest size taken)"),
                        ))
                    }
                },
                batch_max: env.at_least_one("ENTITY_WEBHOOK_BATCH", 256)? as usize,
                batch_window: Duration::from_micros(
                    env.parse("ENTITY_WEBHOOK_BATCH_WINDOW_US", 1_000u64)?,
                ),
                writers: match env.at_least_one("ENTITY_WEBHOOK_WRITERS", 3)? {
                    n @ 1..=16 => n as usize,
                    _ => return Err(err("ENTITY_WEBHOOK_WRITERS", "must be at most 16")),
                },
                retention: match env.parse("ENTITY_EVENT_RETENTION_DAYS", 90u64)? {
                    days @ 7..=36_500 => Duration::from_secs(days * 86_400),
                    _ => {
                        return Err(err(
                            "ENTITY_EVENT_RETENTION_DAYS",
                            "must be between 7 and 36500 days",
                        ))
                    }
                },
            },
            messages: MessagingSettings {
                worker: env.bool("MESSAGES_WORKER", true)?,
                poll: Duration::from_millis(u64::from(
                    env.at_least_one("MESSAGES_POLL_MS", 1_000)?,
                )),
                interval: env.millis("MESSAGES_INTERVAL_MS", 20_000)?,
                jitter: env.millis("MESSAGES_JITTER_MS", 10_000)?,
                daily_cap: env.at_least_one("MESSAGES_DAILY_CAP", 300)?,
                test_daily_cap: env.at_least_one("MESSAGES_TEST_DAILY_CAP", 20)?,
                retry: Duration::from_secs(u64::from(env.at_least_one("MESSAGES_RETRY_SECS", 30)?)),
                max_attempts: env.at_least_one("MESSAGES_MAX_ATTEMPTS", 5)?,
            },
            frozen_check: FrozenCheckSettings {
                interval: Duration::from_millis(u64::from(
                    env.at_least_one("FROZEN_CHECK_INTERVAL_MS", 600_000)?,
                )),
                batch: env.at_least_one("FROZEN_CHECK_BATCH", 50)?,
                pace: env.millis("FROZEN_CHECK_PACE_MS", 500)?,
            },
            sandbox,
            limits: LimitSettings {
                redirect_per_minute: env.at_least_one("RATE_LIMIT_REDIRECT_PER_MINUTE", 30)?,
                redirect_burst: env.at_least_one("RATE_LIMIT_REDIRECT_BURST", 10)?,
                picker_titles_per_minute: env
                    .at_least_one("RATE_LIMIT_PICKER_TITLES_PER_MINUTE", 30)?,
                picker_titles_burst: env.at_least_one("RATE_LIMIT_PICKER_TITLES_BURST", 50)?,
                actions_per_minute: env.at_least_one("RATE_LIMIT_ACTIONS_PER_MINUTE", 12)?,
                sse_max_streams_per_salon: env.at_least_one("SSE_MAX_STREAMS_PER_SALON", 20)?,
                sse_fanout_shard: env.parse("SSE_FANOUT_SHARD", 256)?,
                trusted_proxies: env.ip_list("TRUSTED_PROXY")?,
                entry_checks_per_user_per_minute: env
                    .at_least_one("RATE_LIMIT_ENTRY_CHECKS_PER_USER_PER_MINUTE", 10)?,
                entry_checks_per_user_burst: env
                    .at_least_one("RATE_LIMIT_ENTRY_CHECKS_PER_USER_BURST", 10)?,
                entry_checks_unheld_per_minute: env
                    .at_least_one("RATE_LIMIT_ENTRY_CHECKS_UNHELD_PER_MINUTE", 60)?,
                entry_checks_unheld_burst: env
                    .at_least_one("RATE_LIMIT_ENTRY_CHECKS_UNHELD_BURST", 30)?,
                header_read_timeout: Duration::from_millis(u64::from(
                    env.at_least_one("HTTP_HEADER_TIMEOUT_MS", 30_000)?,
                )),
                max_connections: env.at_least_one(
                    "HTTP_MAX_CONNECTIONS",
                    crate::http::connections::default_max(),
                )?,
            },
            ops: OpsSettings {
                operators: ops_operators(env.get("OPS_OPERATORS"))?,
                session_ttl: Duration::from_secs(env.parse("OPS_SESSION_TTL_SECS", 8 * 3600u64)?),
                session_secret: env
                    .get("OPS_SESSION_SECRET")
                    .map(|s| SecretString::from(s.to_owned())),
                signin_per_minute: env.at_least_one("OPS_SIGNIN_PER_MINUTE", 5)?,
            },
            log_format,
        })
    }
}

impl YClientsSettings {
    pub fn partner_token(&self) -> Option<&str> {
        self.partner_token.as_ref().map(|t| t.expose_secret())
    }

    /// The app's card in the YClients marketplace for `salon` (where an admin renews a paused
    /// app): the `YCLIENTS_MARKETPLACE_URL` template with `{salon_id}` and `{application_id}`
    /// filled in. `None` without an application id. Both are positive integers, so nothing an
    /// outsider sends can reach the URL but the branch id itself.
    pub fn marketplace_card_url(&self, salon: SalonId) -> Option<String> {
        let application_id = self.application_id?;
        Some(
            self.marketplace_card_url
                .replace("{salon_id}", &salon.get().to_string())
                .replace("{application_id}", &application_id.to_string()),
        )
    }

    /// Why the marketplace entry cannot work, if it cannot.
    pub fn yclients_problem(&self) -> Option<&'static str> {
        if self.partner_token.is_none() {
            Some("YCLIENTS_PARTNER_TOKEN is missing or still the placeholder")
        } else if self.application_id.is_none() {
            Some("YCLIENTS_APPLICATION_ID is missing")
        } else {
            None
        }
    }
}

/// The development surfaces — the WhatsApp simulator (its `/dev/phone` routes) and the YClients
/// sandbox — must not meet production by accident. With the real YClients API and a partner
/// token they are refused unless [`ALLOW_DEV_SURFACES`] says otherwise; and the sandbox only ever
/// plays with a `sandbox-` token, override or not, so it never signs with or accepts a real one.
fn refuse_dev_surfaces_with_real_yclients(
    env: &Env<'_>,
    partner_token: Option<&str>,
    yclients_api_url: &str,
    whatsapp_backend: WhatsAppBackend,
    sandbox: bool,
) -> Result<(), ConfigError> {
    if sandbox && partner_token.is_some_and(|t| !yclients::is_sandbox_token(t)) {
        return Err(err(
            "YCLIENTS_PARTNER_TOKEN",
            format!(
                "must start with «{}» when YCLIENTS_SANDBOX=true: the sandbox never signs with, \
                 or accepts, a real partner token",
                yclients::SANDBOX_TOKEN_PREFIX
            ),
        ));
    }
    // Real YClients is the real API's address, or any address with a partner token the sandbox
    // would refuse (it plays only with `sandbox-` tokens): a proxy, a mirror or a spelling of
    // YClients' API this check does not know is still production.
    let real_url = yclients::is_real_api_url(yclients_api_url);
    let real = partner_token.is_some_and(|t| real_url || !yclients::is_sandbox_token(t));
    if !real || env.bool(ALLOW_DEV_SURFACES, false)? {
        return Ok(());
    }
    let why = if real_url {
        format!(
            "while YCLIENTS_API_URL is the real YClients ({}) and YCLIENTS_PARTNER_TOKEN is set; \
             point YCLIENTS_API_URL at a sandbox, or set {ALLOW_DEV_SURFACES}=true if this is meant",
            yclients::REAL_API_URL
        )
    } else {
        format!(
            "while YCLIENTS_PARTNER_TOKEN is a real partner token (the sandbox plays only with \
             «{}…» tokens), whatever YCLIENTS_API_URL says; use a sandbox token for development, \
             or set {ALLOW_DEV_SURFACES}=true if this is meant",
            yclients::SANDBOX_TOKEN_PREFIX
        )
    };
    if whatsapp_backend == WhatsAppBackend::Simulator {
        return Err(err(
            "WHATSAPP_BACKEND",
            format!(
                "is simulator (its /dev/phone routes link any number) {why}; production uses \
                 WHATSAPP_BACKEND=web"
            ),
        ));
    }
    if sandbox {
        return Err(err(
            "YCLIENTS_SANDBOX",
            format!("is true (the YClients sandbox would run beside production) {why}"),
        ));
    }
    Ok(())
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let config = Settings::from_map(&vars(&[])).expect("defaults load");
        assert!(config.database.url.starts_with("sqlite://data/"));
        assert_eq!(config.whatsapp.backend, WhatsAppBackend::Simulator);
        assert_eq!(config.http.site_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.http.base_url, "http://127.0.0.1:3000");
        assert!(config.yclients.require_user_data);
        assert!(config.yclients.partner_token.is_none());
        assert!(config.tokens.jwt_secret_generated);
        assert_eq!(config.yclients.api_url, "https://api.yclients.com");
        assert_eq!(config.limits.redirect_per_minute, 30);
        assert_eq!(config.limits.redirect_burst, 10);
        assert_eq!(config.limits.actions_per_minute, 12);
        assert_eq!(config.limits.sse_max_streams_per_salon, 20);
        assert_eq!(config.limits.sse_fanout_shard, 256);
        assert!(config.limits.trusted_proxies.is_empty());
        assert_eq!(
            config.http.leptos,
            LeptosSettings {
                output_name: "ai-admin-connect".to_owned(),
                site_root: "target/site".to_owned(),
                site_pkg_dir: "pkg".to_owned(),
                reload_port: 3001,
            }
        );
    }

    #[test]
    fn the_frozen_check_and_the_marketplace_card_have_defaults_and_overrides() {
        let salon = SalonId::try_from(962302).expect("positive");
        let config =
            Settings::from_map(&vars(&[("YCLIENTS_APPLICATION_ID", "1001")])).expect("loads");
        assert_eq!(config.frozen_check.interval, Duration::from_secs(600));
        assert_eq!(config.frozen_check.batch, 50);
        assert_eq!(config.frozen_check.pace, Duration::from_millis(500));
        assert_eq!(
            config.yclients.marketplace_card_url(salon).as_deref(),
            Some("https://yclients.com/appstore/962302/applications/1001/info")
        );
        let config = Settings::from_map(&vars(&[
            ("YCLIENTS_APPLICATION_ID", "7"),
            (
                "YCLIENTS_MARKETPLACE_URL",
                "https://market.example/a/{application_id}/s/{salon_id}",
            ),
            ("FROZEN_CHECK_INTERVAL_MS", "40"),
            ("FROZEN_CHECK_BATCH", "3"),
            ("FROZEN_CHECK_PACE_MS", "0"),
        ]))
        .expect("loads");
        assert_eq!(
            config.yclients.marketplace_card_url(salon).as_deref(),
            Some("https://market.example/a/7/s/962302")
        );
        assert_eq!(config.frozen_check.interval, Duration::from_millis(40));
        assert_eq!(config.frozen_check.batch, 3);
        assert_eq!(config.frozen_check.pace, Duration::ZERO);
        let no_app = Settings::from_map(&vars(&[])).expect("loads");
        assert_eq!(no_app.yclients.marketplace_card_url(salon), None);
    }

    #[test]
    fn leptos_outputs_are_read_with_the_rest() {
        let config = Settings::from_map(&vars(&[
            ("LEPTOS_OUTPUT_NAME", "other"),
            ("LEPTOS_SITE_ROOT", "/srv/site"),
            ("LEPTOS_SITE_PKG_DIR", "assets"),
            ("LEPTOS_RELOAD_PORT", "4001"),
        ]))
        .expect("loads");
        assert_eq!(config.http.leptos.output_name, "other");
        assert_eq!(config.http.leptos.site_root, "/srv/site");
        assert_eq!(config.http.leptos.site_pkg_dir, "assets");
        assert_eq!(config.http.leptos.reload_port, 4001);
    }

    #[test]
    fn bound_addresses_stand_for_port_zero_and_leave_the_settings_as_loaded() {
        let settings = Settings::from_map(&vars(&[
            ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
            ("YCLIENTS_SANDBOX", "true"),
            ("YCLIENTS_SANDBOX_ADDR", "127.0.0.1:0"),
        ]))
        .expect("loads");
        let site: SocketAddr = "127.0.0.1:4321".parse().expect("addr");
        let sandbox: SocketAddr = "127.0.0.1:4322".parse().expect("addr");
        let bound = Bound::new(&settings, site, Some(sandbox));
        assert_eq!(bound.base_url, "http://127.0.0.1:4321");
        assert_eq!(bound.sandbox_url.as_deref(), Some("http://127.0.0.1:4322"));
        assert_eq!(
            bound.yclients_api_url(&settings.yclients),
            "http://127.0.0.1:4322"
        );
        assert!(bound
            .frame_ancestors(&settings.http)
            .contains(&"http://127.0.0.1:4322".to_owned()));
        assert!(bound
            .cors_origins(&settings.http)
            .contains(&"http://127.0.0.1:4322".to_owned()));
        assert_eq!(settings.http.base_url, "http://127.0.0.1:0");
        assert_eq!(settings.yclients.api_url, "http://127.0.0.1:0");

        let fixed = Settings::from_map(&vars(&[
            ("LEPTOS_SITE_ADDR", "0.0.0.0:3000"),
            ("BASE_URL", "https://connect.example.com"),
        ]))
        .expect("loads");
        let bound = Bound::new(&fixed, "0.0.0.0:3000".parse().expect("addr"), None);
        assert_eq!(bound.base_url, "https://connect.example.com");
        assert_eq!(bound.sandbox_url, None);
        assert_eq!(
            bound.yclients_api_url(&fixed.yclients),
            "https://api.yclients.com"
        );
    }

    #[test]
    fn trusted_proxies_are_a_list_of_addresses() {
        let config = Settings::from_map(&vars(&[("TRUSTED_PROXY", "10.0.0.1, ::1 192.168.1.2")]))
            .expect("loads");
        assert_eq!(
            config.limits.trusted_proxies,
            ["10.0.0.1", "::1", "192.168.1.2"]
                .map(|ip| ip.parse::<IpAddr>().expect("an IP"))
                .to_vec()
        );
    }

    #[test]
    fn the_placeholder_partner_token_counts_as_missing() {
        let config = Settings::from_map(&vars(&[(
            "YCLIENTS_PARTNER_TOKEN",
            PLACEHOLDER_PARTNER_TOKEN,
        )]))
        .expect("loads");
        assert!(config.yclients.partner_token.is_none());
        assert!(config.yclients.yclients_problem().is_some());
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let cases = [
            ("YCLIENTS_APPLICATION_ID", "abc"),
            ("YCLIENTS_APPLICATION_ID", "-4"),
            ("WHATSAPP_BACKEND", "telegram"),
            ("LEPTOS_SITE_ADDR", "localhost"),
            ("BASE_URL", "example.com"),
            ("JWT_SECRET", "short"),
            ("DATABASE_URL", "mysql://x"),
            ("YCLIENTS_REQUIRE_USER_DATA", "maybe"),
            ("YCLIENTS_REQUESTS_PER_SECOND", "10"),
            ("RATE_LIMIT_REDIRECT_PER_MINUTE", "0"),
            ("RATE_LIMIT_ACTIONS_PER_MINUTE", "many"),
            ("SSE_MAX_STREAMS_PER_SALON", "0"),
            ("TRUSTED_PROXY", "10.0.0.1, proxy.local"),
            ("LEPTOS_RELOAD_PORT", "reload"),
            (
                "YCLIENTS_MARKETPLACE_URL",
                "yclients.com/appstore/{salon_id}",
            ),
            ("FROZEN_CHECK_INTERVAL_MS", "0"),
            ("FROZEN_CHECK_BATCH", "0"),
            ("FROZEN_CHECK_PACE_MS", "soon"),
            ("SESSION_LEASE_RENEW_MS", "0"),
            ("SESSION_LEASE_RENEW_MS", "30000"),
            ("SESSION_LEASE_MS", "soon"),
            ("ENTITY_WEBHOOK_QUEUE_BYTES", "1048575"),
            ("ENTITY_WEBHOOK_QUEUE_BYTES", "lots"),
            ("ENTITY_EVENT_RETENTION_DAYS", "0"),
            ("ENTITY_EVENT_RETENTION_DAYS", "6"),
            ("ENTITY_EVENT_RETENTION_DAYS", "forever"),
        ];
        for (var, value) in cases {
            let error = Settings::from_map(&vars(&[(var, value)])).expect_err(var);
            assert_eq!(error.var, var);
            assert!(error.to_string().contains(var));
        }
    }

    #[test]
    fn postgres_refuses_to_start_without_a_shared_jwt_secret() {
        for url in ["postgres://db/app", "postgresql://db/app"] {
            let error = Settings::from_map(&vars(&[("DATABASE_URL", url)]))
                .expect_err("a random per-process secret breaks links across instances");
            assert_eq!(error.var, "JWT_SECRET");
            let printed = error.to_string();
            assert!(printed.contains("PostgreSQL"), "{printed}");
            assert!(printed.contains("same secret"), "{printed}");
            let config = Settings::from_map(&vars(&[
                ("DATABASE_URL", url),
                ("JWT_SECRET", "jwt-secret-value-that-is-long-enough-000"),
                ("CREDENTIALS_KEYS", TEST_KEYS),
            ]))
            .expect("a set secret is enough");
            assert!(!config.tokens.jwt_secret_generated);
        }
        let embedded = Settings::from_map(&vars(&[("DATABASE_URL", "sqlite://x.db")]))
            .expect("SQLite is one process: a generated secret is allowed");
        assert!(embedded.tokens.jwt_secret_generated);
    }

    const TEST_KEYS: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,\
                             k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn postgres_refuses_to_start_without_credential_keys_and_sqlite_generates_one() {
        let jwt = ("JWT_SECRET", "jwt-secret-value-that-is-long-enough-000");
        let error = Settings::from_map(&vars(&[("DATABASE_URL", "postgres://db/app"), jwt]))
            .expect_err("a per-process key would seal what no other instance opens");
        assert_eq!(error.var, "CREDENTIALS_KEYS");
        assert!(error.to_string().contains("PostgreSQL"), "{error}");
        let config = Settings::from_map(&vars(&[
            ("DATABASE_URL", "postgres://db/app"),
            jwt,
            ("CREDENTIALS_KEYS", TEST_KEYS),
        ]))
        .expect("a key list is enough");
        match config.database.credential_keys {
            CredentialKeySource::Configured(keys) => assert_eq!(keys.sealing_key_id(), "k2"),
            other => panic!("expected the configured keys, got {other:?}"),
        }
        let embedded =
            Settings::from_map(&vars(&[("DATA_DIR", "/srv/connect")])).expect("SQLite loads");
        match embedded.database.credential_keys {
            CredentialKeySource::GeneratedFile(path) => {
                assert_eq!(path, PathBuf::from("/srv/connect/credentials-key"))
            }
            other => panic!("expected a generated key file, got {other:?}"),
        }
    }

    #[test]
    fn a_malformed_key_list_names_the_variable_not_the_key() {
        let error = Settings::from_map(&vars(&[(
            "CREDENTIALS_KEYS",
            "k1:c2VjcmV0LWJ1dC10b28tc2hvcnQ",
        )]))
        .expect_err("not 32 bytes");
        assert_eq!(error.var, "CREDENTIALS_KEYS");
        assert!(!error.to_string().contains("c2VjcmV0"), "{error}");
    }

    #[test]
    fn secrets_do_not_print() {
        let config = Settings::from_map(&vars(&[
            ("YCLIENTS_PARTNER_TOKEN", "partner-secret-value"),
            ("JWT_SECRET", "jwt-secret-value-that-is-long-enough-000"),
            ("WHATSAPP_BACKEND", "web"),
            ("CREDENTIALS_KEYS", TEST_KEYS),
        ]))
        .expect("loads");
        let printed = format!("{config:?}");
        assert!(!printed.contains("ICEiIyQl") && !printed.contains("AAECAwQF"));
        assert!(!printed.contains("partner-secret-value"));
        assert!(!printed.contains("jwt-secret-value"));
    }

    #[test]
    fn the_sandbox_becomes_the_api_and_may_frame_us() {
        let config = Settings::from_map(&vars(&[("YCLIENTS_SANDBOX", "true")])).expect("loads");
        assert_eq!(config.yclients.api_url, "http://127.0.0.1:3100");
        assert!(config
            .http
            .frame_ancestors
            .contains(&"http://127.0.0.1:3100".to_owned()));
    }

    #[test]
    fn the_simulator_is_refused_with_the_real_yclients_and_a_token() {
        let error = Settings::from_map(&vars(&[("YCLIENTS_PARTNER_TOKEN", "real-token")]))
            .expect_err("simulator + api.yclients.com + token");
        assert_eq!(error.var, "WHATSAPP_BACKEND");
        let message = error.to_string();
        for named in [
            "WHATSAPP_BACKEND",
            "YCLIENTS_API_URL",
            "YCLIENTS_PARTNER_TOKEN",
            ALLOW_DEV_SURFACES,
        ] {
            assert!(message.contains(named), "{named} in «{message}»");
        }
        assert!(!message.contains("real-token"), "the token never prints");
        // Any spelling of the real host counts.
        let error = Settings::from_map(&vars(&[
            ("YCLIENTS_PARTNER_TOKEN", "real-token"),
            ("WHATSAPP_BACKEND", "simulator"),
            ("YCLIENTS_API_URL", "https://API.yclients.com/"),
        ]))
        .expect_err("explicit real URL");
        assert_eq!(error.var, "WHATSAPP_BACKEND");
        // A real token at an address the check does not know as YClients' (an egress proxy).
        let error = Settings::from_map(&vars(&[
            ("YCLIENTS_PARTNER_TOKEN", "real-token"),
            ("YCLIENTS_API_URL", "https://yclients-proxy.example"),
        ]))
        .expect_err("a real token through a proxy");
        assert_eq!(error.var, "WHATSAPP_BACKEND");
        assert!(error.to_string().contains("sandbox-"), "{error}");
        assert!(!error.to_string().contains("real-token"));
    }

    #[test]
    fn the_simulator_is_fine_without_a_token_with_a_sandbox_url_or_with_the_override() {
        for extra in [
            vec![],
            vec![("YCLIENTS_PARTNER_TOKEN", PLACEHOLDER_PARTNER_TOKEN)],
            vec![
                ("YCLIENTS_PARTNER_TOKEN", "sandbox-token"),
                ("YCLIENTS_API_URL", "http://127.0.0.1:3100"),
            ],
            vec![
                ("YCLIENTS_PARTNER_TOKEN", "real-token"),
                (ALLOW_DEV_SURFACES, "true"),
            ],
            vec![
                ("YCLIENTS_PARTNER_TOKEN", "real-token"),
                ("WHATSAPP_BACKEND", "web"),
            ],
        ] {
            let config = Settings::from_map(&vars(&extra));
            assert!(config.is_ok(), "{extra:?}: {config:?}");
        }
        let error = Settings::from_map(&vars(&[
            ("YCLIENTS_PARTNER_TOKEN", "real-token"),
            (ALLOW_DEV_SURFACES, "perhaps"),
        ]))
        .expect_err("a malformed override");
        assert_eq!(error.var, ALLOW_DEV_SURFACES);
    }

    #[test]
    fn the_sandbox_is_refused_with_the_real_yclients_and_a_token() {
        let sandbox_against_real = [
            ("YCLIENTS_SANDBOX", "true"),
            ("YCLIENTS_PARTNER_TOKEN", "sandbox-token"),
            ("YCLIENTS_API_URL", "https://api.yclients.com"),
            ("WHATSAPP_BACKEND", "web"),
        ];
        let error = Settings::from_map(&vars(&sandbox_against_real)).expect_err("refused");
        assert_eq!(error.var, "YCLIENTS_SANDBOX");
        for named in [
            "YCLIENTS_API_URL",
            "YCLIENTS_PARTNER_TOKEN",
            ALLOW_DEV_SURFACES,
        ] {
            assert!(error.to_string().contains(named), "{named}");
        }
        let mut allowed = sandbox_against_real.to_vec();
        allowed.push((ALLOW_DEV_SURFACES, "true"));
        assert!(Settings::from_map(&vars(&allowed)).is_ok());
    }

    #[test]
    fn the_sandbox_plays_only_with_a_sandbox_token() {
        let config = Settings::from_map(&vars(&[
            ("YCLIENTS_SANDBOX", "true"),
            ("YCLIENTS_PARTNER_TOKEN", "sandbox-partner-token"),
        ]))
        .expect("a sandbox token");
        assert_eq!(
            config.yclients.partner_token(),
            Some("sandbox-partner-token")
        );
        for extra in [vec![], vec![(ALLOW_DEV_SURFACES, "true")]] {
            let mut pairs = vec![
                ("YCLIENTS_SANDBOX", "true"),
                ("YCLIENTS_PARTNER_TOKEN", "real-partner-token"),
            ];
            pairs.extend(extra);
            let error = Settings::from_map(&vars(&pairs)).expect_err("not a sandbox token");
            assert_eq!(error.var, "YCLIENTS_PARTNER_TOKEN");
            assert!(error.to_string().contains("sandbox-"));
            assert!(!error.to_string().contains("real-partner-token"));
        }
    }
}
