use crate::run_id::run_id;
use app::domain::{PhoneNumber, SalonId};
use app::status::LinkState;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use server::config::Settings;
use server::linking::simulator::Simulator;
use server::startup::{AppHandles, Application};
use std::collections::HashMap;
use std::time::Duration;
use yclients_sandbox::{FaultKind, FaultRequest, Sandbox, SandboxConfig};

/// A sandbox token: the sandbox refuses any other.
pub const PARTNER_TOKEN: &str = "sandbox-test-partner-token-0123456789";
pub const APPLICATION_ID: i64 = 1001;
/// The keys the test apps seal WhatsApp credentials under (required on PostgreSQL; set on
/// SQLite too, so no test writes a generated key file).
pub const CREDENTIALS_KEYS: &str = "test1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const SALON: i64 = 962302;
pub const OTHER_SALON: i64 = 962303;

pub struct TestApp {
    pub address: String,
    pub sandbox: Sandbox,
    pub sandbox_url: String,
    pub simulator: Simulator,
    pub handles: AppHandles,
    pub client: reqwest::Client,
    vars: HashMap<String, String>,
    sandbox_task: std::sync::Arc<tokio::task::JoinHandle<()>>,
    serving: Serving,
    clock: server::clock::SharedClock,
}

/// A built app serving in the background until `stop` (or until dropped).
pub struct Serving {
    pub handles: AppHandles,
    /// Follows no redirects.
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Serving {
    /// Runs `application` and waits until it answers.
    pub async fn start(application: Application) -> Self {
        let handles = application.handles();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(application.run(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let serving = Self {
            handles,
            client,
            shutdown: Some(shutdown),
            task: Some(task),
        };
        serving.wait_until_serving().await;
        serving
    }

    async fn wait_until_serving(&self) {
        for _ in 0..100 {
            if self
                .client
                .get(format!("{}/marketplace/health", self.handles.base_url))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the app did not start serving");
    }

    /// Ends the app as a crash would: it stops serving at once, its WhatsApp sessions end
    /// without freeing their leases, nothing is drained or handed over.
    pub async fn kill(&mut self) {
        self.handles.linking.abandon_sessions().await;
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        // Dropped after the task is gone: nobody is left to shut down gracefully.
        self.shutdown.take();
    }

    /// Stops the app gracefully and checks it ran cleanly.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("graceful shutdown finishes")
                .expect("server task joins")
                .expect("server ran cleanly");
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A fresh folder for one test's files, under the run's scratch folder.
pub fn scratch_dir() -> std::path::PathBuf {
    std::env::temp_dir()
        .join("ai-admin-connect-tests")
        .join(run_id())
        .join(uuid::Uuid::new_v4().simple().to_string())
}

/// A fresh, isolated database URL (and schema on PostgreSQL), named after the run.
async fn fresh_database() -> (String, Option<String>) {
    match std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    {
        Some(url) => {
            let schema = format!("{}_{}", run_id(), uuid::Uuid::new_v4().simple());
            let db = Database::connect(&url)
                .await
                .expect("PostgreSQL at TEST_DATABASE_URL is reachable");
            db.execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
                .await
                .expect("schema created");
            db.close().await.ok();
            (url, Some(schema))
        }
        None => {
            let dir = std::env::temp_dir()
                .join("ai-admin-connect-tests")
                .join(run_id());
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
            (format!("sqlite://{}?mode=rwc", path.display()), None)
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The test configuration on a fresh database, before the YClients side is chosen.
async fn base_vars() -> HashMap<String, String> {
    let (database_url, schema) = fresh_database().await;
    let mut vars: HashMap<String, String> = [
        ("YCLIENTS_PARTNER_TOKEN", PARTNER_TOKEN),
        ("YCLIENTS_APPLICATION_ID", "1001"),
        (
            "JWT_SECRET",
            "test-jwt-secret-that-is-long-enough-for-hs256",
        ),
        ("CREDENTIALS_KEYS", CREDENTIALS_KEYS),
        ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
        ("SIMULATOR_FIRST_QR_TTL_MS", "1500"),
        ("SIMULATOR_NEXT_QR_TTL_MS", "700"),
        ("SIMULATOR_QR_COUNT", "3"),
        ("CALLBACK_RETRY_BASE_MS", "40"),
        ("YCLIENTS_TIMEOUT_MS", "1500"),
        ("YCLIENTS_REQUESTS_PER_SECOND", "5"),
        ("WHATSAPP_BACKEND", "simulator"),
        ("WHATSAPP_RECONNECT_BASE_MS", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("DATABASE_URL".into(), database_url);
    if let Some(schema) = schema {
        vars.insert("DATABASE_SCHEMA".into(), schema);
    }
    vars
}

/// Builds (does not start) an app on the test configuration changed by `customize`, without a
/// sandbox of the test's own: YClients is a closed local port unless `customize` says otherwise.
/// For apps a test only starts, or expects to be refused.
pub async fn build_app_with(
    customize: impl FnOnce(&mut HashMap<String, String>),
) -> anyhow::Result<Application> {
    let mut vars = base_vars().await;
    vars.insert("YCLIENTS_API_URL".into(), "http://127.0.0.1:9".into());
    customize(&mut vars);
    Application::build(Settings::from_map(&vars)?).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    spawn_app_with_clock(server::clock::system(), customize).await
}

/// An app whose booking messages read the time from `clock` (a test moves it).
pub async fn spawn_app_with_clock(
    clock: server::clock::SharedClock,
    customize: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let mut vars = base_vars().await;
    customize(&mut vars);
    // YClients outlives our restarts: the sandbox belongs to the test, not to the app.
    let pending_window = vars
        .get("YCLIENTS_PENDING_WINDOW_SECS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    let sandbox = Sandbox::new(SandboxConfig {
        partner_token: PARTNER_TOKEN.to_owned(),
        application_id: APPLICATION_ID,
        app_url: "http://127.0.0.1:9".to_owned(),
        pending_window: Duration::from_secs(pending_window),
    })
    .expect("the test token is a sandbox token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("sandbox port");
    let sandbox_url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = sandbox.router();
    let sandbox_task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    vars.insert("YCLIENTS_API_URL".into(), sandbox_url.clone());
    vars.insert(
        "FRAME_ANCESTORS".into(),
        format!("{} {sandbox_url}", server::config::DEFAULT_TRUSTED_ORIGINS),
    );
    launch(
        vars,
        sandbox,
        sandbox_url,
        std::sync::Arc::new(sandbox_task),
        clock,
    )
    .await
}

async fn launch(
    vars: HashMap<String, String>,
    sandbox: Sandbox,
    sandbox_url: String,
    sandbox_task: std::sync::Arc<tokio::task::JoinHandle<()>>,
    clock: server::clock::SharedClock,
) -> TestApp {
    let settings = Settings::from_map(&vars).expect("test configuration is valid");
    let application = Application::build_with_clock(settings, clock.clone())
        .await
        .expect("application builds");
    let handles = application.handles();
    // The sandbox learns where "Подключить" leads before the app serves, as it did before.
    sandbox.set_app_url(&handles.base_url);
    let serving = Serving::start(application).await;
    let client = serving.client.clone();
    TestApp {
        address: handles.base_url.clone(),
        sandbox,
        sandbox_url,
        sandbox_task,
        simulator: handles
            .simulator
            .clone()
            .expect("simulator is the test backend"),
        handles,
        client,
        vars,
        serving,
        clock,
    }
}

pub fn salon(id: i64) -> SalonId {
    SalonId::try_from(id).expect("positive")
}

pub fn phone(raw: &str) -> PhoneNumber {
    PhoneNumber::parse(raw).expect("valid phone")
}

impl TestApp {
    /// Stops the app gracefully and starts a new one on the same database.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Restarts with changed configuration (same database, same YClients sandbox).
    pub async fn restart_with(
        mut self,
        change: impl FnOnce(&mut HashMap<String, String>),
    ) -> TestApp {
        self.stop().await;
        let mut vars = self.vars.clone();
        change(&mut vars);
        launch(
            vars,
            self.sandbox.clone(),
            self.sandbox_url.clone(),
            self.sandbox_task.clone(),
            self.clock.clone(),
        )
        .await
    }

    pub async fn stop(&mut self) {
        self.serving.stop().await;
    }

    /// Kills the app as a crash would (see [`Serving::kill`]).
    pub async fn kill(&mut self) {
        self.serving.kill().await;
    }

    /// Another instance of the app on the same database (the same PostgreSQL schema, or the same
    /// SQLite file) and the same YClients sandbox, on its own port: what a load balancer spreads
    /// requests over.
    pub async fn second_instance(&self) -> TestApp {
        let app = launch(
            self.vars.clone(),
            self.sandbox.clone(),
            self.sandbox_url.clone(),
            self.sandbox_task.clone(),
            self.clock.clone(),
        )
        .await;
        self.sandbox.set_app_url(&self.address);
        app
    }

    /// The PostgreSQL schema the app runs in.
    pub fn schema(&self) -> Option<String> {
        self.vars.get("DATABASE_SCHEMA").cloned()
    }

    /// Whether the test database is PostgreSQL (where several instances share one bus).
    pub fn on_postgres(&self) -> bool {
        self.handles.db.get_database_backend() == sea_orm::DbBackend::Postgres
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// What YClients does on "Подключить": a pending link, then our redirect with signed user data.
    pub async fn redirect_from_yclients(&self, salon_id: i64) -> reqwest::Response {
        // With two instances, "Подключить" leads to the one the test redirects on.
        self.sandbox.set_app_url(&self.address);
        self.sandbox.create_pending_link(salon_id);
        let url = self.sandbox.redirect_url(&[salon_id]);
        self.client.get(url).send().await.expect("redirect sent")
    }

    /// `GET /marketplace/health` as JSON.
    pub async fn health(&self) -> Value {
        self.get("/marketplace/health")
            .await
            .json()
            .await
            .expect("health JSON")
    }

    /// `GET /marketplace/metrics` as text.
    pub async fn metrics(&self) -> String {
        self.get("/marketplace/metrics")
            .await
            .text()
            .await
            .expect("metrics text")
    }

    /// Reloads the onboarding page until its HTML contains `text` (10 s at most).
    pub async fn wait_for_page(&self, token: &str, what: &str, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let html = self
                .get(&format!("/marketplace/onboarding?token={token}"))
                .await
                .text()
                .await
                .expect("html");
            if html.contains(text) {
                return html;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn redirect_with_query(&self, query: &str) -> reqwest::Response {
        self.get(&format!("/auth/yclients/redirect?{query}")).await
    }

    /// Enters through the redirect and returns the onboarding token.
    pub async fn enter(&self, salon_id: i64) -> String {
        let response = self.redirect_from_yclients(salon_id).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "redirect answers 303"
        );
        token_from_location(&response)
    }

    /// Opens the app from the marketplace on an installation YClients already holds (as it holds
    /// it: no new pending link) and returns the onboarding token.
    pub async fn reopen(&self, salon_id: i64) -> String {
        let url = self.sandbox.redirect_url(&[salon_id]);
        let response = self.client.get(url).send().await.expect("redirect sent");
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "redirect answers 303"
        );
        token_from_location(&response)
    }

    pub async fn status(&self, token: &str, salon_id: i64) -> Value {
        let response = self.status_response(token, salon_id).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("status JSON")
    }

    /// Polls the status endpoint until `done` holds (10 s at most).
    pub async fn wait_for_status(
        &self,
        token: &str,
        salon_id: i64,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status(token, salon_id).await;
            if done(&status) {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last status: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for_link_state(
        &self,
        salon_id: i64,
        what: &str,
        done: impl Fn(&LinkState) -> bool,
    ) -> LinkState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = self.handles.linking.state(salon(salon_id));
            if done(&state) {
                return state;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last state: {state:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The QR currently shown for this salon (waits for one).
    pub async fn current_qr(&self, salon_id: i64) -> (u64, String) {
        match self
            .wait_for_link_state(salon_id, "a QR code", |s| matches!(s, LinkState::Qr { .. }))
            .await
        {
            LinkState::Qr { seq, code, .. } => (seq, code),
            _ => unreachable!(),
        }
    }

    /// Scans the current QR on the simulated phone, as a person would: open its URL, submit the form.
    pub async fn scan_qr(&self, salon_id: i64, phone_number: &str) -> reqwest::Response {
        let (_, code) = self.current_qr(salon_id).await;
        let page = self.client.get(&code).send().await.expect("phone page");
        assert_eq!(page.status(), StatusCode::OK);
        let reference = code
            .split("ref=")
            .nth(1)
            .expect("QR URL carries ref")
            .to_owned();
        self.client
            .post(self.url("/dev/phone/scan"))
            .form(&[("reference", reference.as_str()), ("phone", phone_number)])
            .send()
            .await
            .expect("scan sent")
    }

    /// Redirect, scan, linked: returns the token.
    pub async fn link_whatsapp(&self, salon_id: i64, phone_number: &str) -> String {
        let token = self.enter(salon_id).await;
        let scanned = self.scan_qr(salon_id, phone_number).await;
        assert_eq!(scanned.status(), StatusCode::OK, "scan accepted");
        self.wait_for_link_state(salon_id, "linked", LinkState::is_linked)
            .await;
        token
    }

    /// Calls a server function the way the page does (form-encoded arguments, JSON answer).
    pub async fn server_fn(&self, endpoint: &str, args: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/{endpoint}")))
            .header("Accept", "application/json")
            .form(args)
            .send()
            .await
            .expect("server function call")
    }

    /// Rewords the booking confirmation of the salon `token` opens, as its «Сообщения» section
    /// does (read the settings, change the text, save them); the save's status.
    pub async fn reword_confirmation(&self, token: &str, text: &str) -> StatusCode {
        let view: Value = self
            .server_fn("onboarding/messages", &[("token", token)])
            .await
            .json()
            .await
            .expect("messages JSON");
        let mut settings = view["settings"].clone();
        settings["confirmation"]["text"] = Value::String(text.to_owned());
        self.server_fn(
            "onboarding/message-settings",
            &[("token", token), ("settings", &settings.to_string())],
        )
        .await
        .status()
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(url)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// The original's status endpoint for `salon_id`, with `token` as the bearer.
    pub async fn status_response(&self, token: &str, salon_id: i64) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/marketplace/api/status/company_{salon_id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("status request")
    }

    pub async fn post_lifecycle(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/webhook/yclients"))
            .json(body)
            .send()
            .await
            .expect("webhook sent")
    }

    /// Waits until every lifecycle event posted so far is applied (10 s at most).
    pub async fn wait_for_lifecycle_applied(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self
            .count("SELECT COUNT(*) FROM lifecycle_events WHERE processed_at IS NULL")
            .await
            > 0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "lifecycle events not applied within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// YClients' lifecycle `event` for the salon, posted (answered 200) and applied.
    pub async fn apply_lifecycle(&self, salon_id: i64, event: &str) {
        let response = self
            .post_lifecycle(&self.lifecycle_body(salon_id, event))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "the {event} accepted");
        self.wait_for_lifecycle_applied().await;
    }

    /// YClients' lifecycle `event` for the salon, as YClients sends it: the installation removed
    /// (`uninstall`) or frozen (`freeze`) on its side first, as the real one does — the app asks.
    pub fn lifecycle_body(&self, salon_id: i64, event: &str) -> Value {
        self.sandbox.lifecycle_event_happened(salon_id, event);
        serde_json::json!({"salon_id": salon_id, "application_id": APPLICATION_ID, "event": event, "partner_token": PARTNER_TOKEN})
    }

    pub fn fault(&self, kind: FaultKind, count: u32, path: &str) {
        self.sandbox.inject_fault(FaultRequest {
            kind,
            count,
            path_contains: Some(path.to_owned()),
            delay_ms: Some(3_000),
        });
    }

    /// Linked and active: the webhook URL YClients was given.
    pub async fn activate(&self, salon_id: i64) -> (String, String) {
        self.activate_with(salon_id, "79990009900").await
    }

    /// Linked with `phone_number` and active: the token and the webhook URL YClients was given.
    pub async fn activate_with(&self, salon_id: i64, phone_number: &str) -> (String, String) {
        let token = self.link_whatsapp(salon_id, phone_number).await;
        self.wait_for_status(&token, salon_id, "active", |s| {
            s["activation"]["state"] == "active"
        })
        .await;
        (token, self.confirmed_webhook_url(salon_id))
    }

    /// The webhook URL of the latest activation callback for `salon_id` that YClients confirmed
    /// (answered 201): the URL YClients now holds.
    pub fn confirmed_webhook_url(&self, salon_id: i64) -> String {
        self.sandbox
            .callbacks()
            .iter()
            .rev()
            .find(|c| c.body["salon_id"] == salon_id && c.answered == 201)
            .and_then(|c| c.body["webhook_urls"][0].as_str().map(str::to_owned))
            .expect("the confirmed callback carried a webhook URL")
    }

    /// The texts `number`'s simulated phone received (reading sends read receipts).
    pub fn inbox(&self, number: &str) -> Vec<String> {
        self.simulator
            .read_inbox(&phone(number))
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    /// Asserts that nothing of the salon's clients is stored: no entity event, no client's name
    /// or phone in a booking, no number or text in a message — as an uninstall leaves it.
    pub async fn assert_clients_forgotten(&self, salon_id: i64) {
        for sql in [
            format!("SELECT COUNT(*) FROM entity_events WHERE salon_id = {salon_id}"),
            format!(
                "SELECT COUNT(*) FROM records WHERE salon_id = {salon_id} \
                 AND (client_phone IS NOT NULL OR client_name IS NOT NULL)"
            ),
            format!(
                "SELECT COUNT(*) FROM message_outbox WHERE salon_id = {salon_id} \
                 AND (phone IS NOT NULL OR text IS NOT NULL)"
            ),
        ] {
            assert_eq!(self.count(&sql).await, 0, "still stored: {sql}");
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let backend = self.handles.db.get_database_backend();
        let row = self
            .handles
            .db
            .query_one_raw(sea_orm::Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("query runs")
            .expect("one row");
        row.try_get_by_index::<i64>(0).expect("a count")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `serving` tells the app to stop when it drops.
        if std::sync::Arc::strong_count(&self.sandbox_task) == 1 {
            self.sandbox_task.abort();
        }
    }
}

pub fn token_from_location(response: &reqwest::Response) -> String {
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location header");
    assert!(
        location.starts_with("/marketplace/onboarding?token="),
        "redirects to onboarding: {location}"
    );
    location
        .trim_start_matches("/marketplace/onboarding?token=")
        .to_owned()
}

/// A redirect for `salon_id` with `user` (JSON) signed as YClients signs it: what any YClients
/// user holds for their own branch, with another branch's id put in.
pub fn signed_redirect_query(salon_id: i64, user: &str) -> String {
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, user);
    let sign = yclients::signature::sign(PARTNER_TOKEN, user.as_bytes());
    form_urlencoded::Serializer::new(String::new())
        .append_pair("salon_id", &salon_id.to_string())
        .append_pair("user_data", &data)
        .append_pair("user_data_sign", &sign)
        .finish()
}
