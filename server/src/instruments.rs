//! Metrics through the `metrics` facade, rendered by `metrics-exporter-prometheus`.
//!
//! Each application owns its recorder (no process-global one), so several apps in one process
//! (the integration tests) keep their own figures. Stages hold an [`Instruments`] and record
//! through the facade's `Counter`, `Gauge` and `Histogram` handles; `/marketplace/metrics`
//! renders the recorder, after setting the gauges that are read at scrape time.

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use std::sync::Arc;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Latency buckets in seconds: a webhook commit (ms) to a slow YClients round trip (10 s).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Sizes (events per group commit).
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every metric the service records: name, kind, help.
const DESCRIPTIONS: &[(&str, Kind, &str)] = &[
    (
        "ai_admin_redirects_total",
        Kind::Counter,
        "YClients redirects by outcome (onboarding, branch_picker, or the refusal).",
    ),
    (
        "ai_admin_tokens_issued_total",
        Kind::Counter,
        "Onboarding tokens issued.",
    ),
    (
        "ai_admin_tokens_refused_total",
        Kind::Counter,
        "Onboarding tokens refused, by reason.",
    ),
    (
        "ai_admin_callbacks_total",
        Kind::Counter,
        "Activation callback attempts by result (confirmed, retry, refused, gave_up; lease_lost: an attempt that outlived its lease, left unrecorded).",
    ),
    (
        "ai_admin_callback_round_trip_seconds",
        Kind::Histogram,
        "Time YClients took to answer an activation callback.",
    ),
    (
        "ai_admin_webhooks_total",
        Kind::Counter,
        "YClients webhooks by kind (lifecycle, entity) and result.",
    ),
    (
        "ai_admin_webhook_commit_seconds",
        Kind::Histogram,
        "Time to commit one group of entity webhooks (one transaction).",
    ),
    (
        "ai_admin_webhook_batch_events",
        Kind::Histogram,
        "Entity webhooks per group commit.",
    ),
    (
        "ai_admin_webhook_batch_wait_seconds",
        Kind::Histogram,
        "How long a group commit's oldest entity webhook waited before its transaction began.",
    ),
    (
        "ai_admin_lifecycle_events_total",
        Kind::Counter,
        "Lifecycle events (uninstall, freeze, …) applied by result.",
    ),
    (
        "ai_admin_whatsapp_transitions_total",
        Kind::Counter,
        "WhatsApp session transitions by the state entered.",
    ),
    (
        "ai_admin_whatsapp_leases_lost_total",
        Kind::Counter,
        "WhatsApp session leases this instance lost (taken over, or a write refused as stale).",
    ),
    (
        "ai_admin_http_request_duration_seconds",
        Kind::Histogram,
        "HTTP request latency by route, method and status class (to the response head).",
    ),
    ("ai_admin_up", Kind::Gauge, "Whether the database answers."),
    (
        "ai_admin_yclients_configured",
        Kind::Gauge,
        "Whether the partner token and application id are set.",
    ),
    (
        "ai_admin_whatsapp_sessions",
        Kind::Gauge,
        "WhatsApp sessions running in this process.",
    ),
    (
        "ai_admin_whatsapp_sessions_failed",
        Kind::Gauge,
        "Sessions failing to connect (cooling down between attempts).",
    ),
    (
        "ai_admin_whatsapp_sessions_by_state",
        Kind::Gauge,
        "WhatsApp sessions running in this process by state.",
    ),
    (
        "ai_admin_whatsapp_active_salons",
        Kind::Gauge,
        "Salons active in YClients by WhatsApp state (recorded by the supervisor).",
    ),
    (
        "ai_admin_whatsapp_zombies_reconnected_total",
        Kind::Counter,
        "Linked connections that stopped answering keep-alives and were reconnected.",
    ),
    (
        "ai_admin_live_subscribers",
        Kind::Gauge,
        "Browsers on the live channel.",
    ),
    (
        "ai_admin_http_connections",
        Kind::Gauge,
        "HTTP connections open (live streams included).",
    ),
    (
        "ai_admin_http_connections_max",
        Kind::Gauge,
        "HTTP_MAX_CONNECTIONS: past it, new connections wait to be accepted.",
    ),
    (
        "ai_admin_activation_outbox",
        Kind::Gauge,
        "Activation callbacks by outbox status.",
    ),
    (
        "ai_admin_activation_outbox_oldest_seconds",
        Kind::Gauge,
        "Age of the oldest callback still owed to YClients.",
    ),
    (
        "ai_admin_lifecycle_inbox",
        Kind::Gauge,
        "YClients lifecycle events (uninstall, freeze) by inbox state.",
    ),
];

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The application's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Instruments {
    recorder: Arc<PrometheusRecorder>,
}

impl Default for Instruments {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instruments")
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect::<Vec<_>>(),
    )
}

impl Instruments {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // The buckets are constants known to be valid; a builder refusing them keeps summaries.
        let builder = match builder.set_buckets(SECONDS_BUCKETS).and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("ai_admin_webhook_batch_events".to_owned()),
                COUNT_BUCKETS,
            )
        }) {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "histogram buckets refused; histograms render as summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        for (name, kind, help) in DESCRIPTIONS {
            let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
            match kind {
                Kind::Counter => recorder.describe_counter(name, None, help),
                Kind::Gauge => recorder.describe_gauge(name, None, help),
                Kind::Histogram => recorder.describe_histogram(name, Some(Unit::Seconds), help),
            }
        }
        Self {
            recorder: Arc::new(recorder),
        }
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// Counts one occurrence.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.counter(name, labels).increment(1);
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_keep_their_own_figures_and_render_prometheus_text() {
        let (a, b) = (Instruments::new(), Instruments::new());
        a.count("ai_admin_redirects_total", &[("outcome", "onboarding")]);
        a.count("ai_admin_redirects_total", &[("outcome", "onboarding")]);
        a.histogram("ai_admin_callback_round_trip_seconds", &[])
            .record(0.02);
        a.gauge("ai_admin_live_subscribers", &[]).set(3.0);
        let text = a.render();
        assert!(
            text.contains("# TYPE ai_admin_redirects_total counter"),
            "{text}"
        );
        assert!(
            text.contains("ai_admin_redirects_total{outcome=\"onboarding\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ai_admin_callback_round_trip_seconds_bucket{le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(text.contains("ai_admin_live_subscribers 3"), "{text}");
        assert!(
            !b.render().contains("ai_admin_redirects_total{"),
            "another app's recorder is empty"
        );
    }
}
