//! The YClients sandbox embedded beside the app (`YCLIENTS_SANDBOX=true`), on its own port so its
//! marketplace page frames us from a truly different origin, plus what `/demo` redirects to.
//!
//! It exists only in builds with the `demo` feature (README command 1 and the test command turn
//! it on); without it the sandbox crate is not even linked and `YCLIENTS_SANDBOX=true` stops
//! start-up, so a production build cannot reach the sandbox by accident.

use crate::config::{SandboxSettings, YClientsSettings};
use anyhow::Context;
use axum::Router;
use std::time::Duration;
use tokio::net::TcpListener;

#[cfg(feature = "demo")]
pub use yclients_sandbox::Sandbox;

/// No sandbox can exist in a build without the `demo` feature.
#[cfg(not(feature = "demo"))]
#[derive(Clone, Debug)]
pub enum Sandbox {}

/// Binds the sandbox's port when `YCLIENTS_SANDBOX=true`. The address actually bound (port 0 in
/// tests and the bench) goes into [`crate::config::Bound`]; the settings stay as loaded.
pub async fn bind(sandbox: Option<SandboxSettings>) -> anyhow::Result<Option<TcpListener>> {
    let Some(SandboxSettings { addr }) = sandbox else {
        return Ok(None);
    };
    refuse_without_feature()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (YCLIENTS_SANDBOX_ADDR)"))?;
    Ok(Some(listener))
}

/// Why a build without the `demo` feature stops at `YCLIENTS_SANDBOX=true`.
pub const WITHOUT_DEMO_FEATURE: &str = "YCLIENTS_SANDBOX=true, but this build has no `demo` \
     feature: the YClients sandbox is not compiled in (build with `--features demo`, as \
     scripts/run.sh does, or unset YCLIENTS_SANDBOX)";

fn refuse_without_feature() -> anyhow::Result<()> {
    if cfg!(feature = "demo") {
        Ok(())
    } else {
        anyhow::bail!(WITHOUT_DEMO_FEATURE)
    }
}

/// The sandbox, playing YClients with the app's partner token (which configuration has already
/// checked starts with `sandbox-`), or with the sandbox's default token when the app has none
/// (the app then answers 503 at the entry, as without a sandbox).
#[cfg(feature = "demo")]
pub fn sandbox(
    yclients: &YClientsSettings,
    pending_window: Duration,
    app_url: &str,
) -> anyhow::Result<Sandbox> {
    Sandbox::new(yclients_sandbox::SandboxConfig {
        partner_token: yclients
            .partner_token()
            .unwrap_or(yclients_sandbox::DEFAULT_PARTNER_TOKEN)
            .to_owned(),
        application_id: yclients.application_id.unwrap_or_default(),
        app_url: app_url.to_owned(),
        pending_window,
    })
    .context("YCLIENTS_PARTNER_TOKEN")
}

#[cfg(not(feature = "demo"))]
pub fn sandbox(
    _yclients: &YClientsSettings,
    _pending_window: Duration,
    _app_url: &str,
) -> anyhow::Result<Sandbox> {
    anyhow::bail!(WITHOUT_DEMO_FEATURE)
}

#[cfg(feature = "demo")]
pub fn router(sandbox: &Sandbox) -> Router {
    sandbox.router()
}

#[cfg(not(feature = "demo"))]
pub fn router(sandbox: &Sandbox) -> Router {
    match *sandbox {}
}
