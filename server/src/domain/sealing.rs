//! Sealing the WhatsApp credentials at rest: XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`) under keys from configuration, each value bound to the row it belongs to.
//!
//! - **A random 192-bit nonce per value**, stored in front of the ciphertext. XChaCha's nonce is
//!   long enough that random nonces never collide in practice, so no counter has to be kept
//!   consistent across instances (which a 96-bit nonce would need).
//! - **Associated data = salon, namespace and key.** A value copied into another salon's row (or
//!   under another key of the same salon) fails to open instead of handing one salon's Signal
//!   state to another.
//! - **Key rotation.** `CREDENTIALS_KEYS="k2:<base64>,k1:<base64>"`: the first key seals, every
//!   listed key opens; a row says which key sealed it (`key_id`), and a value written again is
//!   sealed under the first key. A row under a key no longer listed is an error, never a panic.
//!
//! Key material never prints: `Debug` shows key ids only, errors name the entry, not its bytes.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::fmt;

/// Key length in bytes (256 bits).
const KEY_LEN: usize = 32;
/// XChaCha20-Poly1305's nonce, stored in front of each ciphertext.
const NONCE_LEN: usize = 24;
/// Poly1305's tag, after the ciphertext.
const TAG_LEN: usize = 16;
/// Versions the associated data's layout.
const AD_DOMAIN: &[u8] = b"ai-admin-connect/whatsapp-credentials/v1\0";

/// Why `CREDENTIALS_KEYS` (or a key file) cannot be used. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    #[error("lists no key (expected «id:<base64 of 32 bytes>», the sealing key first)")]
    Empty,
    #[error("entry {0} is not «id:<base64 of 32 bytes>»")]
    Malformed(usize),
    /// The id is not echoed: a key pasted in its place would reach the log.
    #[error("entry {0}: the key id must be 1–32 letters, digits, «-» or «_»")]
    BadId(usize),
    #[error("entry {position} («{id}:…»): the key is not base64 of exactly 32 bytes")]
    BadKey { position: usize, id: String },
    #[error("the key id «{0}» is listed twice")]
    Duplicate(String),
}

/// Why a stored value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The row was sealed under a key that is not configured (any more).
    #[error("sealed under key «{0}», which CREDENTIALS_KEYS does not list")]
    UnknownKey(String),
    /// Tampered, moved to another row, or sealed under other key bytes with the same id.
    #[error("the value does not authenticate for its row")]
    Inauthentic,
}

/// Where a value belongs: what its seal is bound to.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    pub salon: i64,
    pub namespace: &'a str,
    pub key: &'a str,
}

impl RowContext<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut ad =
            Vec::with_capacity(AD_DOMAIN.len() + 8 + 8 + self.namespace.len() + self.key.len());
        ad.extend_from_slice(AD_DOMAIN);
        ad.extend_from_slice(&self.salon.to_be_bytes());
        // Length-prefixed, so no two (namespace, key) pairs give the same bytes.
        for part in [self.namespace, self.key] {
            ad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            ad.extend_from_slice(part.as_bytes());
        }
        ad
    }
}

/// A value sealed for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    /// Nonce, then ciphertext and tag.
    pub bytes: Vec<u8>,
}

struct SealingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The configured keys: the first seals, all open.
#[derive(Clone)]
pub struct CredentialKeys {
    keys: std::sync::Arc<Vec<SealingKey>>,
}

impl fmt::Debug for CredentialKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialKeys")
            .field("ids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl CredentialKeys {
    /// Parses `id:<base64>[,id:<base64>…]` (standard or URL-safe base64, padded or not); the
    /// first entry is the sealing key.
    pub fn parse(raw: &str) -> Result<Self, KeyListError> {
        let mut keys: Vec<SealingKey> = Vec::new();
        for (index, entry) in raw
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let position = index + 1;
            let (id, encoded) = entry
                .split_once(':')
                .ok_or(KeyListError::Malformed(position))?;
            let id = id.trim();
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(KeyListError::BadId(position));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyListError::Duplicate(id.to_owned()));
            }
            let bytes = decode_key(encoded.trim()).ok_or_else(|| KeyListError::BadKey {
                position,
                id: id.to_owned(),
            })?;
            keys.push(SealingKey {
                id: id.to_owned(),
                cipher: XChaCha20Poly1305::new(&Key::from(bytes)),
            });
        }
        if keys.is_empty() {
            return Err(KeyListError::Empty);
        }
        Ok(Self {
            keys: std::sync::Arc::new(keys),
        })
    }

    /// A new random key under `id`, as the text [`Self::parse`] reads (for a key file).
    pub fn generate_entry(id: &str) -> String {
        use base64::Engine;
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let entry = format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        bytes.fill(0);
        entry
    }

    /// The id of the key new values are sealed under.
    pub fn sealing_key_id(&self) -> &str {
        self.keys.first().map(|k| k.id.as_str()).unwrap_or_default()
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Seals `plaintext` for the row `row` under the sealing key, with a fresh random nonce.
    pub fn seal(&self, row: RowContext<'_>, plaintext: &[u8]) -> Sealed {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ad = row.associated_data();
        // Encryption fails only for inputs beyond 256 GiB; a credential is a few KiB.
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: key.id.clone(),
            bytes,
        }
    }

    /// Opens a value sealed under `key_id` for the row `row`.
    pub fn open(
        &self,
        key_id: &str,
        row: RowContext<'_>,
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Inauthentic);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Inauthentic)?;
        let ad = row.associated_data();
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &ad,
                },
            )
            .map_err(|_| OpenError::Inauthentic)
    }
}

fn decode_key(encoded: &str) -> Option<[u8; KEY_LEN]> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let unpadded = encoded.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(unpadded)
        .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
        .ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    fn row(salon: i64, key: &str) -> RowContext<'_> {
        RowContext {
            salon,
            namespace: "session",
            key,
        }
    }

    #[test]
    fn a_value_opens_for_its_own_row_only() {
        let keys = CredentialKeys::parse(K1).expect("parses");
        let sealed = keys.seal(row(1, "a@s.whatsapp.net"), b"secret state");
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed
            .bytes
            .windows(b"secret state".len())
            .any(|w| w == b"secret state"));
        assert_eq!(
            keys.open("k1", row(1, "a@s.whatsapp.net"), &sealed.bytes),
            Ok(b"secret state".to_vec())
        );
        for other in [row(2, "a@s.whatsapp.net"), row(1, "b@s.whatsapp.net")] {
            assert_eq!(
                keys.open("k1", other, &sealed.bytes),
                Err(OpenError::Inauthentic)
            );
        }
        let moved = RowContext {
            namespace: "identity",
            ..row(1, "a@s.whatsapp.net")
        };
        assert_eq!(
            keys.open("k1", moved, &sealed.bytes),
            Err(OpenError::Inauthentic)
        );
    }

    #[test]
    fn the_same_value_seals_differently_every_time() {
        let keys = CredentialKeys::parse(K1).expect("parses");
        let a = keys.seal(row(1, "k"), b"v");
        let b = keys.seal(row(1, "k"), b"v");
        assert_ne!(a.bytes, b.bytes, "a fresh nonce per value");
    }

    #[test]
    fn the_first_key_seals_and_every_listed_key_opens() {
        let old = CredentialKeys::parse(K1).expect("parses");
        let sealed_old = old.seal(row(1, "k"), b"old");
        let rotated = CredentialKeys::parse(&format!("{K2}, {K1}")).expect("parses");
        assert_eq!(rotated.sealing_key_id(), "k2");
        assert_eq!(
            rotated.open("k1", row(1, "k"), &sealed_old.bytes),
            Ok(b"old".to_vec())
        );
        assert_eq!(rotated.seal(row(1, "k"), b"new").key_id, "k2");
        let retired = CredentialKeys::parse(K2).expect("parses");
        assert_eq!(
            retired.open("k1", row(1, "k"), &sealed_old.bytes),
            Err(OpenError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn a_damaged_or_short_value_is_an_error() {
        let keys = CredentialKeys::parse(K1).expect("parses");
        let mut sealed = keys.seal(row(1, "k"), b"value").bytes;
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(
            keys.open("k1", row(1, "k"), &sealed),
            Err(OpenError::Inauthentic)
        );
        assert_eq!(
            keys.open("k1", row(1, "k"), &[0u8; 5]),
            Err(OpenError::Inauthentic)
        );
    }

    #[test]
    fn key_lists_are_checked_without_printing_key_material() {
        let cases = [
            ("", KeyListError::Empty),
            (" , ", KeyListError::Empty),
            ("nokey", KeyListError::Malformed(1)),
            (
                "bad.id:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                KeyListError::BadId(1),
            ),
            (
                "k1:c2hvcnQ=",
                KeyListError::BadKey {
                    position: 1,
                    id: "k1".into(),
                },
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                CredentialKeys::parse(raw).expect_err(raw),
                expected,
                "{raw}"
            );
        }
        assert_eq!(
            CredentialKeys::parse(&format!("{K1},{K1}")).expect_err("twice"),
            KeyListError::Duplicate("k1".into())
        );
        let error = CredentialKeys::parse("k1:c2VjcmV0LWJ1dC10b28tc2hvcnQ").expect_err("short");
        assert!(!error.to_string().contains("c2VjcmV0"), "{error}");
        let keys = CredentialKeys::parse(&format!("{K2},{K1}")).expect("parses");
        let printed = format!("{keys:?}");
        assert!(
            printed.contains("k2") && printed.contains("k1"),
            "{printed}"
        );
        assert!(
            !printed.contains("ICEi") && !printed.contains("AAEC"),
            "{printed}"
        );
    }

    #[test]
    fn a_generated_entry_parses_back() {
        let entry = CredentialKeys::generate_entry("local");
        let keys = CredentialKeys::parse(&entry).expect("parses");
        assert_eq!(keys.sealing_key_id(), "local");
        let sealed = keys.seal(row(3, "k"), b"x");
        assert_eq!(
            keys.open("local", row(3, "k"), &sealed.bytes),
            Ok(b"x".to_vec())
        );
    }
}
