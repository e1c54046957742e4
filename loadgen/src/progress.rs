//! The progress line printed while ramping and running: users connected, messages/s,
//! deliveries/s and the p99 delivery latency of the last interval. Also keeps the timeline for
//! the plot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::results::TimelinePoint;
use crate::stats::Live;

/// Prints a progress line every `every` until the run is done; returns the timeline.
pub async fn report(ctx: Arc<Ctx>, every: Duration) -> Vec<TimelinePoint> {
    let started = Instant::now();
    let mut timeline = Vec::new();
    let mut last = Instant::now();
    let (mut last_acks, mut last_deliveries) = (0, 0);
    let live = &ctx.live;
    let users = ctx.settings.users;
    loop {
        // Wake early when the run ends, so a long interval never holds the run open.
        let tick = Instant::now();
        while tick.elapsed() < every && !ctx.done.load(Ordering::Acquire) {
            tokio::time::sleep(every.min(Duration::from_millis(50))).await;
        }
        let done = ctx.done.load(Ordering::Acquire);
        let dt = last.elapsed().as_secs_f64().max(1e-3);
        last = Instant::now();
        let acks = Live::get(&live.sent_acks);
        let deliveries = Live::get(&live.deliveries);
        let msg_rate = (acks - last_acks) as f64 / dt;
        let del_rate = (deliveries - last_deliveries) as f64 / dt;
        (last_acks, last_deliveries) = (acks, deliveries);
        let p99 = live
            .take_window()
            .map(|h| h.value_at_quantile(0.99))
            .unwrap_or(0);
        let errors: u64 = live.errors().values().sum();
        let phase = match (ctx.send_start(), ctx.send_end()) {
            (None, _) => "ramp",
            (Some(_), Some(end)) if Instant::now() < end => "send",
            _ => "drain",
        };
        let t = started.elapsed().as_secs_f64();
        eprintln!(
            "[{t:6.1}s {phase:>5}] users {}/{users} joined {} | msgs/s {msg_rate:8.0} | deliveries/s {del_rate:9.0} | p99 {:7.2} ms | errors {errors}",
            Live::get(&live.connected),
            Live::get(&live.joined),
            p99 as f64 / 1000.0,
        );
        if phase == "send" {
            timeline.push(TimelinePoint {
                t,
                deliveries_per_sec: del_rate,
                p99_us: p99,
            });
        }
        if done {
            return timeline;
        }
    }
}
