//! Metric names the chat rules record (rendered by the server's `/metrics`).

use crate::error::Code;

/// Counter: events sent to clients, by `event`.
pub const EVENTS_OUT: &str = "chatwire_events_out_total";
/// Counter: error replies, by `code`.
pub const ERRORS: &str = "chatwire_errors_total";
/// Counter: events dropped by the rate limiter with no reply (typing), by `event`.
pub const RATE_LIMITED_DROPS: &str = "chatwire_rate_limited_drops_total";
/// Label: event name (known events only, else `other`).
pub const LABEL_EVENT: &str = "event";
/// Label: error code.
pub const LABEL_CODE: &str = "code";

/// The events of the contract; anything else is labelled `other` (bounded label values).
const KNOWN_EVENTS: &[&str] = &[
    "conversation:join",
    "conversation:leave",
    "conversation:joined",
    "conversation:left",
    "conversation:error",
    "message:send",
    "message:sent",
    "message:error",
    "message:new",
    "message:notification",
    "message:read",
    "message:read:success",
    "typing:start",
    "typing:stop",
    "user:check:online",
    "user:online:status",
    "user:online",
    "user:offline",
    "connection:success",
    "error",
];

/// The metric label of an event name.
pub fn event_label(name: &str) -> &'static str {
    KNOWN_EVENTS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("other")
}

/// A metric's name and its counter handle per known event (the last one for `other`).
type MetricHandles = (&'static str, Vec<Option<metrics::Counter>>);

/// Counts one `event` under `metric` (a counter labelled [`LABEL_EVENT`], such as
/// [`EVENTS_OUT`]): `metrics::counter!(metric, LABEL_EVENT => event_label(event))`, without
/// building the key and looking it up in the registry each time (every message counts two
/// events). Each thread keeps the handles it registered, one per known event and metric; the
/// recorder must be installed before a thread counts (the server installs it at start).
pub fn count_event(metric: &'static str, event: &str) {
    use std::cell::RefCell;
    thread_local! {
        static HANDLES: RefCell<Vec<MetricHandles>> = const { RefCell::new(Vec::new()) };
    }
    let index = KNOWN_EVENTS
        .iter()
        .position(|known| *known == event)
        .unwrap_or(KNOWN_EVENTS.len());
    let label = KNOWN_EVENTS.get(index).copied().unwrap_or("other");
    HANDLES.with_borrow_mut(|handles| {
        let at = match handles.iter().position(|(m, _)| *m == metric) {
            Some(at) => at,
            None => {
                handles.push((metric, vec![None; KNOWN_EVENTS.len() + 1]));
                handles.len() - 1
            }
        };
        let slot = &mut handles[at].1[index];
        slot.get_or_insert_with(|| metrics::counter!(metric, LABEL_EVENT => label))
            .increment(1);
    });
}

/// Counts one error reply.
pub fn count_error(code: Code) {
    metrics::counter!(ERRORS, LABEL_CODE => code.as_str()).increment(1);
}
