//! YClients as a partner app sees it (`shared/yclients-api.md`): the typed API client and the
//! `user_data` signature. The server talks to YClients through this crate; the sandbox
//! (`yclients-sandbox`) plays YClients with the same signature and constants.

pub mod client;
pub mod signature;

pub use client::{
    backoff_with_jitter, CallbackAnswer, CallbackRequest, Company, InstallationStatus,
    YClientsClient, YClientsError, ACCEPT, ALREADY_INSTALLED, REQUESTS_PER_MINUTE,
};

/// The real API's base URL.
pub const REAL_API_URL: &str = "https://api.yclients.com";

/// Every partner token the sandbox signs with or accepts starts with this. Real YClients tokens
/// do not, so a sandbox cannot be handed the production token by mistake.
pub const SANDBOX_TOKEN_PREFIX: &str = "sandbox-";

/// A token the sandbox may use: the prefix and something after it.
pub fn is_sandbox_token(token: &str) -> bool {
    token
        .strip_prefix(SANDBOX_TOKEN_PREFIX)
        .is_some_and(|rest| !rest.trim().is_empty())
}

/// Whether `url` (scheme, host, optional path) points at the real YClients API host.
pub fn is_real_api_url(url: &str) -> bool {
    let rest = url.trim();
    let Some((_, rest)) = rest.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default();
    host.trim_end_matches('.')
        .eq_ignore_ascii_case("api.yclients.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_api_is_recognised_in_any_spelling() {
        for url in [
            REAL_API_URL,
            "https://api.yclients.com/",
            "HTTPS://API.YCLIENTS.COM",
            "https://api.yclients.com:443/api/v1",
            "http://api.yclients.com",
            "https://api.yclients.com.",
        ] {
            assert!(is_real_api_url(url), "{url}");
        }
        for url in [
            "http://127.0.0.1:3100",
            "https://api.yclients.com.evil.io",
            "https://sandbox.example/api.yclients.com",
            "api.yclients.com",
        ] {
            assert!(!is_real_api_url(url), "{url}");
        }
    }
}
