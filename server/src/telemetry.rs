//! Logs and metrics: `tracing` subscriber setup (human or JSON lines), the process-wide
//! Prometheus recorder behind `GET /metrics`, and the name of every metric chatwire records.
//!
//! Record with the `metrics` macros and the constants here, e.g.
//! `metrics::counter!(EVENTS_IN, LABEL_EVENT => event_label(name)).increment(1)`, or for events
//! on the message path [`count_event`]`(EVENTS_IN, name)`, which keeps the handles.
//! Labels only ever carry values from a fixed set ([`event_label`], static error codes): a label filled from client input would grow the registry without bound.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

// Names recorded by the layers below, re-exported so every metric is listed here.
pub use chatwire_chat::telemetry::{
    ERRORS, EVENTS_OUT, LABEL_CODE, LABEL_EVENT, RATE_LIMITED_DROPS, count_event, event_label,
};
pub use chatwire_cluster::shard::BROADCAST_FANOUT;
pub use chatwire_store::batch::{
    METRIC_BATCH_SIZE as WRITE_BATCH_SIZE, METRIC_COMMIT_SECONDS as WRITE_COMMIT_SECONDS,
    METRIC_FAILURES as WRITE_FAILURES, METRIC_QUEUE_DEPTH as WRITE_QUEUE_DEPTH,
};

/// Gauge: open Engine.IO connections (optional label [`LABEL_TRANSPORT`]).
pub const CONNECTIONS: &str = "chatwire_connections";
/// Counter: `/chat` CONNECTs that asked to recover a session (label [`LABEL_OUTCOME`]:
/// `recovered`, `refused`: unknown, expired, someone else's or too far behind).
pub const RECOVERIES: &str = "chatwire_recoveries_total";
/// Label: how something ended.
pub const LABEL_OUTCOME: &str = "outcome";
/// Counter: missed events sent by recoveries.
pub const RECOVERY_REPLAYED: &str = "chatwire_recovery_replayed_total";
/// Counter: Engine.IO handshakes accepted.
pub const HANDSHAKES: &str = "chatwire_handshakes_total";
/// Counter: REST requests answered 429 (labels [`LABEL_KIND`]: `send`, `create`, `search`,
/// `read`; [`LABEL_SCOPE`]: `user`, `ip`).
pub const REST_RATE_LIMITED: &str = "chatwire_rest_rate_limited_total";
/// Label: which limit refused a request (`user` or `ip`).
pub const LABEL_SCOPE: &str = "scope";
/// Counter: connections refused before a session existed (label [`LABEL_REASON`]:
/// `origin`, `rate_limited`, `bad_handshake`, ...).
pub const REFUSED: &str = "chatwire_connections_refused_total";
/// Gauge: Socket.IO sockets connected to a namespace (label [`LABEL_NAMESPACE`]).
pub const SOCKETS: &str = "chatwire_sockets";
/// Counter: client events received (label [`LABEL_EVENT`], via [`event_label`]).
pub const EVENTS_IN: &str = "chatwire_events_in_total";
/// Counter: messages that crossed from one thread to another on the way between sockets (label
/// [`LABEL_TO`]: `shard` or `writer`). Divided by messages sent, it is the thread hops per message
/// (server/ARCHITECTURE.md gives them per path).
pub const THREAD_HOPS: &str = "chatwire_thread_hops_total";
/// Label key: which kind of thread a hop went to.
pub const LABEL_TO: &str = "to";
/// Counter: WebSocket writes made straight from a shard at the end of a batch (one per
/// connection per batch, however many frames), instead of waking the connection's task.
pub const DIRECT_WRITES: &str = "chatwire_ws_direct_writes_total";
/// Counter: clients disconnected because their outbound queue was full.
pub const SLOW_CLIENTS: &str = "chatwire_slow_client_disconnects_total";
/// Counter: heap trims (free pages given back to the system after a large backlog was freed).
pub const HEAP_TRIMS: &str = "chatwire_heap_trims_total";
/// Counter: shard-to-shard messages dropped because the target channel and the sender's bounded
/// overflow FIFO were both full (label [`LABEL_KIND`]).
pub const SHARD_OVERFLOW_DROPS: &str = "chatwire_shard_overflow_drops_total";
/// Label key: transport.
pub const LABEL_TRANSPORT: &str = "transport";
/// Label key: namespace.
pub const LABEL_NAMESPACE: &str = "namespace";
/// Label key: refusal reason.
pub const LABEL_REASON: &str = "reason";
/// Label key: kind of shard message.
pub const LABEL_KIND: &str = "kind";

/// Counts one message crossing to another thread ([`THREAD_HOPS`]).
pub fn count_hop(to: &'static str) {
    metrics::counter!(THREAD_HOPS, LABEL_TO => to).increment(1);
}

/// Telemetry setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `LOG_LEVEL` is not a level or a valid `tracing` filter; fix the setting.
    #[error("invalid LOG_LEVEL {0:?}: {1}")]
    BadFilter(String, String),
}

/// Installs the global `tracing` subscriber: human lines by default, JSON lines with
/// `LOG_FORMAT=json`, filtered by `LOG_LEVEL`. A second call (tests) leaves the first in place.
pub fn init_tracing(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| TelemetryError::BadFilter(level.to_owned(), e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_thread_names(true);
    // try_init fails only when a subscriber is already set, which is fine.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// The process-wide Prometheus handle, set by the first [`install_metrics`].
static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Gauge: bytes of heap in use, in builds that count their allocations (the `heap-stats`
/// feature). Unlike RSS it goes back down when memory is freed, so a leak of a few bytes per
/// connection shows.
pub const HEAP_BYTES: &str = "chatwire_heap_bytes";

/// Reads the heap in use (set by a binary with a counting allocator).
static HEAP_PROBE: OnceLock<fn() -> usize> = OnceLock::new();

/// Makes `/metrics` report [`HEAP_BYTES`] as `probe` reads it.
pub fn set_heap_probe(probe: fn() -> usize) {
    let _ = HEAP_PROBE.set(probe);
}

/// How often the recorder's histograms are drained when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as the global `metrics` recorder (first call only; later
/// calls return the same handle, so tests may call it freely) and starts its upkeep thread.
pub fn install_metrics() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("chatwire-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "metrics upkeep thread not started; upkeep runs on scrape");
            }
            handle
        })
        .clone()
}

/// The `/metrics` response body (Prometheus text format, `text/plain; version=0.0.4`).
pub fn render_metrics() -> String {
    let handle = install_metrics();
    if let Some(probe) = HEAP_PROBE.get() {
        metrics::gauge!(HEAP_BYTES).set(probe() as f64);
    }
    handle.run_upkeep();
    handle.render()
}

/// Recorder settings: histogram buckets fitted to each metric (rendered as Prometheus histograms
/// rather than summaries, so they aggregate across nodes).
fn builder() -> PrometheusBuilder {
    const FANOUT: &[f64] = &[
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
    ];
    const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    const SECONDS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(BROADCAST_FANOUT.to_owned()), FANOUT)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(WRITE_BATCH_SIZE.to_owned()), BATCH))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(WRITE_COMMIT_SECONDS.to_owned()), SECONDS)
        })
        // Only an empty bucket list fails, and none of the lists above is empty.
        .unwrap_or_default()
}

/// Help texts shown in `/metrics`.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open Engine.IO connections");
    describe_counter!(HANDSHAKES, "Engine.IO handshakes accepted");
    describe_counter!(
        RECOVERIES,
        "CONNECTs that asked to recover a session, by outcome"
    );
    describe_counter!(RECOVERY_REPLAYED, "Missed events sent by recoveries");
    describe_counter!(REFUSED, "Connections refused before a session existed");
    describe_gauge!(SOCKETS, "Socket.IO sockets connected, by namespace");
    describe_counter!(EVENTS_IN, "Client events received, by event name");
    describe_counter!(EVENTS_OUT, "Events sent to sockets, by event name");
    describe_histogram!(BROADCAST_FANOUT, "Sockets reached by one room broadcast");
    describe_counter!(ERRORS, "Error replies and refusals, by code");
    describe_histogram!(
        WRITE_BATCH_SIZE,
        "Messages committed per database transaction"
    );
    describe_histogram!(
        WRITE_COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one batch commit"
    );
    describe_gauge!(WRITE_QUEUE_DEPTH, "Messages waiting for the batch writer");
    describe_counter!(WRITE_FAILURES, "Failed batch commits, by outcome");
    describe_counter!(SLOW_CLIENTS, "Clients dropped for not reading their queue");
    describe_counter!(
        HEAP_TRIMS,
        "Heap trims: free pages given back to the system after a large backlog was freed"
    );
    describe_counter!(
        SHARD_OVERFLOW_DROPS,
        "Shard messages dropped: target channel and overflow FIFO full"
    );
    describe_counter!(
        REST_RATE_LIMITED,
        "REST requests refused with 429, by kind and scope (user or ip)"
    );
    describe_counter!(
        RATE_LIMITED_DROPS,
        "Client events dropped by the per-socket rate limit, by event"
    );
    describe_counter!(
        chatwire_cluster::order::ORDER_GAP,
        "Messages of a conversation released after 100 ms without their predecessor (several nodes)"
    );
    describe_counter!(
        chatwire_cluster::order::ORDER_LATE,
        "Messages delivered after a higher id of their conversation (several nodes)"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The kept handles count into the same series as the macro, unknown events as `other`.
    #[test]
    fn count_event_counts_known_events_and_others() {
        install_metrics();
        const TEST_METRIC: &str = "chatwire_test_count_event_total";
        count_event(TEST_METRIC, "typing:start");
        count_event(TEST_METRIC, "typing:start");
        count_event(TEST_METRIC, "anything a client invents");
        metrics::counter!(TEST_METRIC, LABEL_EVENT => "typing:start").increment(1);
        let text = render_metrics();
        assert!(
            text.contains(r#"chatwire_test_count_event_total{event="typing:start"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chatwire_test_count_event_total{event="other"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn metrics_render_after_recording_and_install_is_idempotent() {
        let first = install_metrics();
        let _second = install_metrics();
        metrics::counter!(EVENTS_IN, LABEL_EVENT => event_label("message:send")).increment(3);
        metrics::histogram!(BROADCAST_FANOUT).record(50.0);
        metrics::histogram!(WRITE_COMMIT_SECONDS).record(0.003);
        metrics::gauge!(CONNECTIONS, LABEL_TRANSPORT => "websocket").set(7.0);
        let text = render_metrics();
        assert!(
            text.contains(r#"chatwire_events_in_total{event="message:send"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chatwire_broadcast_fanout_bucket{le="50"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chatwire_connections{transport="websocket"} 7"#),
            "{text}"
        );
        assert!(text.contains("# HELP chatwire_events_in_total"), "{text}");
        assert!(
            text.contains(r#"chatwire_write_commit_seconds_bucket{le="0.005"} 1"#),
            "{text}"
        );
        assert_eq!(first.render().is_empty(), text.is_empty());
    }

    #[test]
    fn unknown_event_names_share_one_label() {
        assert_eq!(event_label("message:send"), "message:send");
        assert_eq!(event_label("anything a client invents"), "other");
        assert_eq!(event_label(""), "other");
    }

    #[test]
    fn bad_log_filter_is_reported() {
        assert!(matches!(
            init_tracing(LogFormat::Human, "chatwire=notalevel"),
            Err(TelemetryError::BadFilter(..))
        ));
        init_tracing(LogFormat::Json, "info").unwrap();
        init_tracing(LogFormat::Human, "debug").unwrap();
    }
}
