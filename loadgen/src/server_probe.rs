//! Watching the server process from /proc while the run goes (`--server-pid`): its CPU time
//! (utime + stime) over the send phase, and its resident memory before any user connected and
//! once every user joined, so a run reports CPU per delivery and memory per connection.

use std::time::Duration;

use crate::ctx::Ctx;

/// What the probe saw.
#[derive(Clone, Debug, Default)]
pub struct ServerSample {
    /// Server CPU seconds (user + system) during the send phase.
    pub cpu_secs: f64,
    /// Server RSS (KiB) when the run started, before any user connected.
    pub rss_before_kb: u64,
    /// Server RSS (KiB) once every user was connected and joined, before sending.
    pub rss_connected_kb: u64,
    /// Load generator CPU seconds during the send phase.
    pub loadgen_cpu_secs: f64,
    /// Length of the window both CPU figures cover (send phase plus up to 1 s of drain).
    pub window_secs: f64,
    /// Server CPU seconds from before the first connection until every user joined.
    pub connect_cpu_secs: f64,
}

/// utime + stime of `pid` in seconds, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    100.0
}

/// VmRSS of `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the server around the send phase; returns when the send phase is over.
pub async fn watch(ctx: &Ctx, pid: u32) -> ServerSample {
    let mut sample = ServerSample {
        rss_before_kb: rss_kb(pid).unwrap_or(0),
        ..ServerSample::default()
    };
    let before_connects = cpu_secs(pid).unwrap_or(0.0);
    let start = ctx.wait_send_start().await;
    // Every user is connected and joined (or gave up) once sending starts.
    sample.rss_connected_kb = rss_kb(pid).unwrap_or(0);
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    sample.connect_cpu_secs = (cpu0 - before_connects).max(0.0);
    let own0 = crate::own_cpu_secs();
    let window = std::time::Instant::now();
    tokio::time::sleep_until((start + ctx.settings.duration).into()).await;
    // Deliveries of the last sends land within the drain; count their server work too.
    ctx.drain_for(ctx.settings.drain.min(Duration::from_secs(1)))
        .await;
    sample.cpu_secs = cpu_secs(pid).unwrap_or(cpu0) - cpu0;
    sample.loadgen_cpu_secs = crate::own_cpu_secs() - own0;
    sample.window_secs = window.elapsed().as_secs_f64();
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kb(pid).is_some_and(|kb| kb > 0));
        let spin: u64 = (0..2_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(cpu_secs(pid).is_some_and(|s| s >= 0.0));
    }
}
