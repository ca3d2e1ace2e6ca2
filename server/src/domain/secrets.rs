//! The secrets we hand out: an API key (YClients presents it when it calls us) and the webhook
//! URL's secret (it authenticates entity webhooks, which YClients does not sign). We keep only
//! their SHA-256; the plaintext lives in the callback until its delivery ends.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Lowercase hex SHA-256 of a secret: what the database keeps.
pub fn sha256_hex(value: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(value.as_ref()))
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// An API key: 128 bits from the OS CSPRNG as YClients' documented UUID-like string.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn generate() -> Self {
        let hex = random_hex(16);
        Self(format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        sha256_hex(&self.0)
    }

    /// The first 8 characters, shown to operators to tell keys apart.
    pub fn prefix(&self) -> String {
        self.0.chars().take(8).collect()
    }
}

/// The secret path segment of a salon's entity-webhook URL: 192 bits, hex.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn generate() -> Self {
        Self(random_hex(24))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        sha256_hex(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_random_uuid_shaped_strings() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 36);
        assert_eq!(a.expose().matches('-').count(), 4);
        assert_eq!(a.hash().len(), 64);
        assert_eq!(a.prefix().len(), 8);
    }

    #[test]
    fn secrets_never_print() {
        let key = ApiKey::generate();
        let secret = WebhookSecret::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
        assert!(!format!("{secret:?}").contains(secret.expose()));
        assert_eq!(secret.expose().len(), 48);
    }
}
