//! What booking messages need to know about a booking, without I/O: the client's phone in E.164,
//! the visit's time in the salon's timezone, and the message kinds and states of the outbox.

use app::domain::PhoneNumber;
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Why a record's phone cannot be written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneProblem {
    Missing,
    Unusable,
}

impl PhoneProblem {
    /// The reason code the outbox records (the page words it).
    pub fn reason(&self) -> &'static str {
        match self {
            PhoneProblem::Missing => "no_phone",
            PhoneProblem::Unusable => "bad_phone",
        }
    }
}

/// A client's phone as YClients holds it, in E.164: `+7 (999) 000-99-00`, `8 999 000 99 00` and
/// `9990009900` (Russian forms) become `79990009900`; `00…` and `+…` keep their country code;
/// other 11 to 15 digit numbers are taken as already carrying one.
pub fn normalize_client_phone(raw: Option<&str>) -> Result<PhoneNumber, PhoneProblem> {
    let raw = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or(PhoneProblem::Missing)?;
    let allowed = |c: char| c.is_ascii_digit() || " +-().\u{a0}".contains(c);
    if !raw.chars().all(allowed) || raw.chars().skip(1).any(|c| c == '+') {
        return Err(PhoneProblem::Unusable);
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let international = raw.starts_with('+');
    let e164 = if international {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else if digits.len() == 11 && digits.starts_with('8') {
        format!("7{}", &digits[1..])
    } else if digits.len() == 10 && digits.starts_with('9') {
        format!("7{digits}")
    } else if (11..=15).contains(&digits.len()) && !digits.starts_with('8') {
        // Without `+` or `00`, a leading 8 is the Russian trunk prefix (8 + 10 digits, above):
        // any other length is a mistyped Russian number, not a foreign one.
        digits
    } else {
        return Err(PhoneProblem::Unusable);
    };
    // Russia and Kazakhstan (+7) numbers have exactly 11 digits.
    if e164.starts_with('7') && e164.len() != 11 {
        return Err(PhoneProblem::Unusable);
    }
    PhoneNumber::parse(&e164).map_err(|_| PhoneProblem::Unusable)
}

/// The salon's timezone from the company info; Moscow when unknown or not an IANA name.
pub fn salon_timezone(name: Option<&str>) -> Tz {
    name.and_then(|n| n.trim().parse::<Tz>().ok())
        .unwrap_or(chrono_tz::Europe::Moscow)
}

/// A record's `datetime`: RFC 3339 with an offset as YClients sends it, or a local
/// `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SS` read in the salon's timezone.
pub fn visit_time(raw: Option<&str>, tz: Tz) -> Option<DateTime<Utc>> {
    let raw = raw?.trim();
    let at = match DateTime::parse_from_rfc3339(raw) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
            .and_then(|local| tz.from_local_datetime(&local).earliest())
            .map(|at| at.with_timezone(&Utc)),
    };
    // A visit in a year no salon books is no visit time: chrono reads signed years of six
    // digits, and such a time overflowed the reminders' arithmetic (a panic in the webhook
    // writer) or PostgreSQL's `timestamptz` (the whole batch rolled back).
    at.filter(|at| VISIT_YEARS.contains(&at.year()))
}

/// The years a visit time is read in.
pub const VISIT_YEARS: std::ops::RangeInclusive<i32> = 2000..=2199;

/// The kinds of message, as stored.
pub mod kind {
    pub const CONFIRMATION: &str = "confirmation";
    pub const MOVED: &str = "moved";
    pub const CANCELLED: &str = "cancelled";
    pub const REMINDER: &str = "reminder";
    pub const OPT_OUT_ACK: &str = "opt_out_ack";
}

/// The states of an outbox row. `pending` waits (its reason says for what); the rest are final
/// except that receipts move `sent` → `delivered` → `read`.
pub mod state {
    pub const PENDING: &str = "pending";
    pub const SENT: &str = "sent";
    pub const DELIVERED: &str = "delivered";
    pub const READ: &str = "read";
    pub const DROPPED: &str = "dropped";
    pub const FAILED: &str = "failed";
    pub const SENT_STATES: [&str; 3] = [SENT, DELIVERED, READ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PhoneProblem> {
        normalize_client_phone(Some(raw)).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn russian_forms_become_e164() {
        for raw in [
            "+7 (999) 000-99-00",
            "8 999 000 99 00",
            "89990009900",
            "79990009900",
            "9990009900",
            "+7-999-000-99-00",
        ] {
            assert_eq!(norm(raw), Ok("79990009900".into()), "{raw}");
        }
    }

    #[test]
    fn other_countries_keep_their_code() {
        assert_eq!(norm("+375 29 123-45-67"), Ok("375291234567".into()));
        assert_eq!(norm("00 49 151 23456789"), Ok("4915123456789".into()));
        assert_eq!(norm("+44 7911 123456"), Ok("447911123456".into()));
    }

    #[test]
    fn unusable_numbers_say_why() {
        assert_eq!(normalize_client_phone(None), Err(PhoneProblem::Missing));
        assert_eq!(norm("  "), Err(PhoneProblem::Missing));
        for raw in [
            "12345",
            "+7 999 000",
            "call me",
            "8 800 555 35 35 1",
            "+7+9990009900",
        ] {
            assert_eq!(norm(raw), Err(PhoneProblem::Unusable), "{raw}");
        }
    }

    #[test]
    fn visit_times_read_offsets_and_local_times() {
        let novosibirsk = salon_timezone(Some("Asia/Novosibirsk"));
        let expected = Utc.with_ymd_and_hms(2026, 12, 5, 7, 30, 0).unwrap();
        assert_eq!(
            visit_time(Some("2026-12-05T14:30:00+07:00"), novosibirsk),
            Some(expected)
        );
        assert_eq!(
            visit_time(Some("2026-12-05 14:30:00"), novosibirsk),
            Some(expected)
        );
        assert_eq!(visit_time(Some("soon"), novosibirsk), None);
        for far in [
            "-262143-01-01 12:00:00",
            "-5000-01-01 12:00:00",
            "+262142-12-31T23:59:59",
            "1899-01-01T10:00:00+03:00",
            "9999-12-31T23:59:59+00:00",
        ] {
            assert_eq!(visit_time(Some(far), novosibirsk), None, "{far}");
        }
        assert_eq!(salon_timezone(Some("Mars/Base")), chrono_tz::Europe::Moscow);
    }
}
