//! Identifiers and values that cross the wire between the browser and the server.
//!
//! Each is a newtype with a private field, built only by `parse`/`TryFrom`, and serde goes through
//! the same check, so a `SalonId` anywhere in the program is a positive integer and a
//! `PhoneNumber` is E.164 digits. What a token holder is shown of a number is a `MaskedPhone`,
//! made only from a `PhoneNumber`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A YClients branch (company) id: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct SalonId(i64);

/// Developer messages; what a person reads is `i18n::Strings::domain_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("a salon id must be a positive integer, got {0:?}")]
    BadSalonId(String),
    #[error("a phone number must be 10 to 15 digits in E.164, got {0:?}")]
    BadPhone(String),
    #[error("expected a masked phone like \"+7 999 ***-**-22\", got {0:?}")]
    BadMaskedPhone(String),
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

    /// What whoever holds a branch's token may see of this number: `+7 999 ***-**-22`.
    pub fn masked(&self) -> MaskedPhone {
        let digits = &self.0;
        let (shown, last_two) = (&digits[..digits.len() - 7], &digits[digits.len() - 2..]);
        let head = match shown.strip_prefix('7') {
            // Russia and Kazakhstan: the country code, then the 3-digit operator code.
            Some(operator) if digits.len() == 11 => format!("7 {operator}"),
            _ => shown.to_owned(),
        };
        MaskedPhone(format!("+{head} {MASK}{last_two}"))
    }
}

/// The five hidden digits of a `MaskedPhone`, before the last two.
const MASK: &str = "***-**-";

/// A phone number with all but its country/operator prefix and its last two digits hidden
/// (`+7 999 ***-**-22`): the only form of a number the onboarding page, the server functions and
/// the status endpoint carry. Built by `PhoneNumber::masked`; deserialising checks the shape, so a
/// full number cannot pass for a masked one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MaskedPhone(String);

impl MaskedPhone {
    /// As the page shows it: `+7 999 ***-**-22`.
    pub fn display(&self) -> String {
        self.0.clone()
    }
}

impl TryFrom<String> for MaskedPhone {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
            n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        let well_formed = value.strip_prefix('+').and_then(|rest| {
            let (head, tail) = rest.rsplit_once(' ')?;
            let last_two = tail.strip_prefix(MASK)?;
            let head_ok = match head.split_once(' ') {
                Some(("7", operator)) => digits(operator, 3..=3),
                Some(_) => false,
                None => digits(head, 3..=8),
            };
            (head_ok && digits(last_two, 2..=2)).then_some(())
        });
        match well_formed {
            Some(()) => Ok(Self(value)),
            None => Err(DomainError::BadMaskedPhone(
                value.chars().take(40).collect(),
            )),
        }
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// A newtype over its `String`: serialises as that string and displays it.
macro_rules! string_newtype {
    ($($name:ident),+) => {$(
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )+};
}

string_newtype!(PhoneNumber, MaskedPhone);

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

    fn masked(raw: &str) -> String {
        PhoneNumber::parse(raw)
            .expect("valid phone")
            .masked()
            .to_string()
    }

    #[test]
    fn russian_and_kazakh_numbers_show_the_operator_code_and_the_last_two_digits() {
        assert_eq!(masked("+7 (999) 111-22-22"), "+7 999 ***-**-22");
        assert_eq!(masked("77011234567"), "+7 701 ***-**-67");
    }

    #[test]
    fn other_numbers_hide_the_same_five_digits_before_the_last_two() {
        assert_eq!(masked("380501234567"), "+38050 ***-**-67");
        assert_eq!(
            masked("44207946095"),
            "+4420 ***-**-95",
            "11 digits, not +7"
        );
        assert_eq!(
            masked("1234567890"),
            "+123 ***-**-90",
            "the shortest: 10 digits"
        );
        assert_eq!(
            masked("123456789012345"),
            "+12345678 ***-**-45",
            "the longest: 15 digits"
        );
    }

    #[test]
    fn masked_phones_travel_as_strings_and_a_full_number_does_not_pass_for_one() {
        let phone = PhoneNumber::parse("79991112233")
            .expect("valid phone")
            .masked();
        let json = serde_json::to_string(&phone).expect("serialises");
        assert_eq!(json, r#""+7 999 ***-**-33""#);
        assert_eq!(serde_json::from_str::<MaskedPhone>(&json).ok(), Some(phone));
        assert!(
            serde_json::from_str::<MaskedPhone>(r#""79991112233""#).is_err(),
            "a full number is refused"
        );
        assert!(MaskedPhone::try_from("+12345678 ***-**-45".to_owned()).is_ok());
        for bad in [
            "79991112233",
            "+79991112233",
            "+7 999 111-22-33",
            "+7 999 ***-**-3",
            "+7 999 ***-**-33 ",
            "+ ***-**-33",
            "+1 234 ***-**-33",
            "+7 99 ***-**-33",
        ] {
            assert!(MaskedPhone::try_from(bad.to_owned()).is_err(), "{bad}");
        }
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
