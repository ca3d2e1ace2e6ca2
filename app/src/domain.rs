//! Identifiers and values that cross the wire between the browser and the server.
//!
//! Each is a newtype with a private field, built only by `parse`/`TryFrom`, and serde goes through
//! the same check, so a `SalonId` anywhere in the program is a positive integer and a
//! `PhoneNumber` is E.164 digits.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A YClients branch (company) id: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct SalonId(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("идентификатор филиала должен быть положительным целым числом, получено «{0}»")]
    BadSalonId(String),
    #[error(
        "номер телефона должен содержать от 10 до 15 цифр в международном формате, получено «{0}»"
    )]
    BadPhone(String),
}

impl SalonId {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::BadSalonId(raw.chars().take(40).collect()));
        }
        let value: i64 = trimmed
            .parse()
            .map_err(|_| DomainError::BadSalonId(raw.chars().take(40).collect()))?;
        Self::try_from(value)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// The session id the original API used: `company_{salon_id}`.
    pub fn session_id(self) -> String {
        format!("company_{}", self.0)
    }
}

impl TryFrom<i64> for SalonId {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(DomainError::BadSalonId(value.to_string()))
        }
    }
}

impl From<SalonId> for i64 {
    fn from(id: SalonId) -> i64 {
        id.0
    }
}

impl fmt::Display for SalonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A phone number as E.164 digits without the plus sign (`79990009900`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts what people type: `+7 (999) 000-99-00`, `79990009900`, `8 999 000 99 00` is not
    /// guessed into `7…` — a number must carry its country code.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let allowed = |c: char| c.is_ascii_digit() || " +-()".contains(c);
        if !raw.chars().all(allowed) {
            return Err(DomainError::BadPhone(raw.chars().take(40).collect()));
        }
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        if !(10..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(DomainError::BadPhone(raw.chars().take(40).collect()));
        }
        Ok(Self(digits))
    }

    /// A WhatsApp JID user part such as `79990009900:35@s.whatsapp.net` or `79990009900.0:35`:
    /// the device suffix and the server are dropped.
    pub fn from_jid(jid: &str) -> Result<Self, DomainError> {
        let user = jid.split('@').next().unwrap_or_default();
        let user = user.split(':').next().unwrap_or_default();
        let user = user.split('.').next().unwrap_or_default();
        Self::parse(user)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+7 999 000-99-00`-like display: plus sign and the digits.
    pub fn display(&self) -> String {
        format!("+{}", self.0)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salon_ids_are_positive_integers() {
        assert_eq!(SalonId::parse("962302").map(SalonId::get), Ok(962302));
        assert!(SalonId::parse("0").is_err());
        assert!(SalonId::parse("-5").is_err());
        assert!(SalonId::parse("12abc").is_err());
        assert!(SalonId::parse("").is_err());
        assert!(SalonId::parse("99999999999999999999").is_err());
        assert!(serde_json::from_str::<SalonId>("-1").is_err());
        assert_eq!(
            serde_json::from_str::<SalonId>("7").ok().map(SalonId::get),
            Some(7)
        );
    }

    #[test]
    fn phone_numbers_are_e164_digits() {
        assert_eq!(
            PhoneNumber::parse("+7 (999) 000-99-00").map(|p| p.to_string()),
            Ok("79990009900".to_owned())
        );
        assert!(PhoneNumber::parse("12345").is_err());
        assert!(PhoneNumber::parse("+7 999 abc").is_err());
        assert!(PhoneNumber::parse("0999000990").is_err());
    }

    #[test]
    fn jid_device_suffix_is_dropped() {
        assert_eq!(
            PhoneNumber::from_jid("79990009900:35@s.whatsapp.net").map(|p| p.to_string()),
            Ok("79990009900".to_owned())
        );
        assert_eq!(
            PhoneNumber::from_jid("79990009900.0:12@s.whatsapp.net").map(|p| p.to_string()),
            Ok("79990009900".to_owned())
        );
    }
}
