//! The YClients sandbox on its own: `cargo run -p yclients-sandbox`.
//! `YCLIENTS_SANDBOX_ADDR` (default 127.0.0.1:3100), `YCLIENTS_PARTNER_TOKEN` (default
//! `sandbox-partner-token`; it must start with `sandbox-`), `YCLIENTS_APPLICATION_ID`, `BASE_URL`
//! (the app it sends admins to).

use std::time::Duration;
use yclients_sandbox::{Sandbox, SandboxConfig, DEFAULT_PARTNER_TOKEN};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    let var = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let addr = var("YCLIENTS_SANDBOX_ADDR", "127.0.0.1:3100");
    let Ok(application_id) = var("YCLIENTS_APPLICATION_ID", "1001").parse::<i64>() else {
        eprintln!("configuration: YCLIENTS_APPLICATION_ID must be an integer");
        return std::process::ExitCode::from(2);
    };
    let sandbox = match Sandbox::new(SandboxConfig {
        partner_token: var("YCLIENTS_PARTNER_TOKEN", DEFAULT_PARTNER_TOKEN),
        application_id,
        app_url: var("BASE_URL", "http://127.0.0.1:3000"),
        pending_window: Duration::from_secs(3600),
    }) {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("configuration: YCLIENTS_PARTNER_TOKEN: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr} (YCLIENTS_SANDBOX_ADDR): {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("YClients sandbox on http://{addr}/");
    match axum::serve(listener, sandbox.router()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
