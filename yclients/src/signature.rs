//! The `user_data` signature: `hex(HMAC_SHA256(key = partner token, message = decoded JSON
//! bytes))`, lowercase hex — over the *decoded* bytes, not the base64 text
//! (`shared/yclients-api.md` §1).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is missing or not hex")]
    Malformed,
    #[error("the signature does not match the data")]
    Mismatch,
}

/// HMAC takes keys of any length, so this is always `Some`; it stays an `Option` rather than a
/// panic path.
fn mac(partner_token: &str, message: &[u8]) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(partner_token.as_bytes()).ok()?;
    mac.update(message);
    Some(mac)
}

/// What YClients puts in `user_data_sign`: lowercase hex. (Empty only if HMAC refused the key,
/// which it does not; an empty signature never verifies.)
pub fn sign(partner_token: &str, decoded_user_data: &[u8]) -> String {
    mac(partner_token, decoded_user_data)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Checks `signature_hex` (either case, surrounding blanks ignored) in constant time.
pub fn verify(
    partner_token: &str,
    decoded_user_data: &[u8],
    signature_hex: &str,
) -> Result<(), SignatureError> {
    let signature = signature_hex.trim();
    if signature.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(signature).map_err(|_| SignatureError::Malformed)?;
    mac(partner_token, decoded_user_data)
        .ok_or(SignatureError::Mismatch)?
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_over_the_decoded_json_bytes() {
        // The documented example: HMAC-SHA256 over the JSON, hex, lowercase.
        let signature = sign("partner", br#"{"id":1}"#);
        assert_eq!(signature.len(), 64);
        assert!(signature
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(signature, sign("partner", b"eyJpZCI6MX0="));
    }

    #[test]
    fn a_known_vector_matches() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_either_case_and_refuses_everything_else() {
        let data = br#"{"id":1}"#;
        let good = sign("partner", data);
        assert_eq!(verify("partner", data, &good), Ok(()));
        assert_eq!(verify("partner", data, &good.to_uppercase()), Ok(()));
        assert_eq!(verify("partner", data, &format!(" {good}\n")), Ok(()));
        assert_eq!(verify("other", data, &good), Err(SignatureError::Mismatch));
        assert_eq!(
            verify("partner", b"{\"id\":2}", &good),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("partner", data, &good[..62]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify("partner", data, ""), Err(SignatureError::Malformed));
        assert_eq!(
            verify("partner", data, "not hex"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("partner", data, "abc"),
            Err(SignatureError::Malformed)
        );
    }
}
