//! Logs: human-readable by default, JSON with `LOG_FORMAT=json`; level from `RUST_LOG`.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,sea_orm=warn,hyper=warn,tower_http=info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        // One object per line; the fields of every span around the event (the request's id and
        // path, the stage's salon id) in `spans`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    // Already initialised (tests start several apps in one process): keep the first.
    drop(result);
}

/// What an unauthenticated client sent, fit for a log line: at most 64 characters, with line
/// breaks and other control characters escaped (`\n`). The human format writes a field as it
/// is, so a newline in it would start a log line of the client's choosing; and a field as long
/// as the body limit would be a megabyte line per request.
pub fn client_text(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_text_is_one_short_line() {
        assert_eq!(super::client_text("freeze"), "freeze");
        assert_eq!(
            super::client_text("freeze\n2026-12-06 INFO forged"),
            "freeze\\n2026-12-06 INFO forged"
        );
        assert_eq!(super::client_text("a\r\u{1b}[31m"), "a\\r\\u{1b}[31m");
        let long = super::client_text(&"A".repeat(900 * 1024));
        assert_eq!(long.chars().count(), 65);
        assert!(long.ends_with('…'));
    }
}
