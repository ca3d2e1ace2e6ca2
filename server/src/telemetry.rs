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
