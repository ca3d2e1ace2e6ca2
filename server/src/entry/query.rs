//! What a redirect carries: the parameter shapes YClients has been seen to send, bounded before
//! any work, and the signed `user_data`.

use super::{EntryError, UserDataDefect};
use app::domain::SalonId;
use base64::Engine;
use serde_json::Value;
use std::collections::HashSet;

/// The longest redirect query we read (a real one is well under 1 KiB, user data included).
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The most branches one redirect may name.
pub const MAX_BRANCHES: usize = 50;

/// What the redirect carried, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectQuery {
    pub salon_ids: Vec<SalonId>,
    pub user_data: Option<String>,
    pub user_data_sign: Option<String>,
}

/// Parses `salon_id`, `salon_ids[0]…`, `salon_ids[]`, `salon_ids=1,2`, `user_data`, `user_data_sign`.
/// Bounded before any work: more than [`MAX_QUERY_BYTES`] is refused unread, and parsing stops at
/// the first id beyond [`MAX_BRANCHES`] distinct ones; the work is linear in the query's length.
pub fn parse_redirect_query(raw: &str) -> Result<RedirectQuery, EntryError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(EntryError::QueryTooLong);
    }
    let mut indexed: Vec<(u32, SalonId)> = Vec::new();
    let mut plain: Vec<SalonId> = Vec::new();
    let mut user_data = None;
    let mut user_data_sign = None;
    let mut distinct: HashSet<SalonId> = HashSet::new();
    let mut parse_id = |value: &str| -> Result<SalonId, EntryError> {
        let id = SalonId::parse(value)
            .map_err(|_| EntryError::BadSalonId(value.chars().take(40).collect()))?;
        if distinct.insert(id) && distinct.len() > MAX_BRANCHES {
            return Err(EntryError::TooManyBranches);
        }
        Ok(id)
    };
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        match key.as_ref() {
            "salon_id" => plain.push(parse_id(&value)?),
            "salon_ids" => {
                for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                    plain.push(parse_id(part)?);
                }
            }
            "salon_ids[]" => plain.push(parse_id(&value)?),
            "user_data" => user_data = Some(value.into_owned()),
            "user_data_sign" => user_data_sign = Some(value.into_owned()),
            other => {
                if let Some(index) = other
                    .strip_prefix("salon_ids[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    let index = index
                        .parse()
                        .map_err(|_| EntryError::BadSalonId(other.chars().take(40).collect()))?;
                    indexed.push((index, parse_id(&value)?));
                }
            }
        }
    }
    indexed.sort_by_key(|(index, _)| *index);
    // Each id once, in the order of first appearance.
    let mut kept: HashSet<SalonId> = HashSet::new();
    let salon_ids: Vec<SalonId> = plain
        .into_iter()
        .chain(indexed.into_iter().map(|(_, id)| id))
        .filter(|id| kept.insert(*id))
        .collect();
    if salon_ids.is_empty() {
        return Err(EntryError::NoSalon);
    }
    Ok(RedirectQuery {
        salon_ids,
        user_data: user_data.filter(|u| !u.is_empty()),
        user_data_sign,
    })
}

/// Decodes `user_data` (either base64 alphabet, padded or not; a `+` turned into a space by
/// form decoding is put back) and checks `hex(HMAC-SHA256(partner_token, decoded bytes))` in
/// constant time. Returns the decoded JSON object.
pub fn verify_user_data(
    partner_token: &str,
    user_data: &str,
    signature: Option<&str>,
) -> Result<Value, EntryError> {
    let cleaned: String = user_data.trim().replace(' ', "+");
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines
        .iter()
        .find_map(|engine| engine.decode(&cleaned).ok())
        .ok_or(EntryError::BadUserData(UserDataDefect::NotBase64))?;
    let signature = signature.ok_or(EntryError::BadSignature)?;
    yclients::signature::verify(partner_token, &bytes, signature)
        .map_err(|_| EntryError::BadSignature)?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| EntryError::BadUserData(UserDataDefect::NotJson))?;
    if !value.is_object() {
        return Err(EntryError::BadUserData(UserDataDefect::NotObject));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yclients::signature::sign;

    fn ids(q: &RedirectQuery) -> Vec<i64> {
        q.salon_ids.iter().map(|s| s.get()).collect()
    }

    #[test]
    fn every_seen_parameter_shape_is_accepted() {
        assert_eq!(
            ids(&parse_redirect_query("salon_id=5").expect("single")),
            vec![5]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids%5B1%5D=2&salon_ids%5B0%5D=1").expect("indexed")),
            vec![1, 2]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids[0]=1&salon_ids[1]=2").expect("indexed raw")),
            vec![1, 2]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids[]=3&salon_ids[]=4").expect("brackets")),
            vec![3, 4]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids=1,2").expect("comma")),
            vec![1, 2]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids=1%2C2").expect("comma encoded")),
            vec![1, 2]
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(parse_redirect_query(""), Err(EntryError::NoSalon));
        assert!(matches!(
            parse_redirect_query("salon_id=0"),
            Err(EntryError::BadSalonId(_))
        ));
        assert!(matches!(
            parse_redirect_query("salon_id=abc"),
            Err(EntryError::BadSalonId(_))
        ));
        assert!(matches!(
            parse_redirect_query("salon_ids=1,-2"),
            Err(EntryError::BadSalonId(_))
        ));
        assert!(matches!(
            parse_redirect_query("salon_ids[x]=1"),
            Err(EntryError::BadSalonId(_))
        ));
    }

    #[test]
    fn the_query_is_bounded_before_it_is_parsed() {
        let list = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let fifty = parse_redirect_query(&format!("salon_ids={}", list(MAX_BRANCHES)))
            .expect("fifty branches");
        assert_eq!(fifty.salon_ids.len(), MAX_BRANCHES);
        assert_eq!(
            parse_redirect_query(&format!("salon_ids={}", list(MAX_BRANCHES + 1))),
            Err(EntryError::TooManyBranches)
        );
        let indexed: String = (0..=MAX_BRANCHES)
            .map(|i| format!("salon_ids[{i}]={}&", i + 1))
            .collect();
        assert_eq!(
            parse_redirect_query(&indexed),
            Err(EntryError::TooManyBranches)
        );
        let repeated = format!("salon_id=7&{}", "salon_ids[]=7&".repeat(200));
        assert_eq!(
            ids(&parse_redirect_query(&repeated).expect("one branch, repeated")),
            vec![7]
        );
        let long = format!("salon_id=1&pad={}", "x".repeat(MAX_QUERY_BYTES));
        assert_eq!(parse_redirect_query(&long), Err(EntryError::QueryTooLong));
    }

    #[test]
    fn duplicates_keep_the_order_of_first_appearance() {
        assert_eq!(
            ids(&parse_redirect_query(
                "salon_ids=3,1,3,2&salon_id=1&salon_ids[1]=4&salon_ids[0]=2"
            )
            .expect("ids")),
            vec![3, 1, 2, 4]
        );
    }

    #[test]
    fn the_signature_covers_the_decoded_json_not_the_base64() {
        let json = r#"{"id":7,"name":"Андрей"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let good = sign("token", json.as_bytes());
        let over_base64 = sign("token", b64.as_bytes());
        assert!(verify_user_data("token", &b64, Some(&good)).is_ok());
        assert!(verify_user_data("token", &b64, Some(&good.to_uppercase())).is_ok());
        assert_eq!(
            verify_user_data("token", &b64, Some(&over_base64)),
            Err(EntryError::BadSignature)
        );
        assert_eq!(
            verify_user_data("token", &b64, None),
            Err(EntryError::BadSignature)
        );
        assert_eq!(
            verify_user_data("other", &b64, Some(&good)),
            Err(EntryError::BadSignature)
        );
    }

    #[test]
    fn both_base64_alphabets_and_lost_plus_signs_are_tolerated() {
        let json = "{\"user_id\":1,\"name\":\"ÿÿÿ>>>???\"}";
        let good = sign("t", json.as_bytes());
        let standard = base64::engine::general_purpose::STANDARD.encode(json);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert!(standard.contains('+') || standard.contains('/'));
        assert!(verify_user_data("t", &standard, Some(&good)).is_ok());
        assert!(verify_user_data("t", &url_safe, Some(&good)).is_ok());
        assert!(verify_user_data("t", &standard.replace('+', " "), Some(&good)).is_ok());
    }
}
