//! A run's results as JSON (one file per loadgen process), merging several processes' files,
//! the summary table, pass/fail thresholds and the comparison with a saved baseline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{self, new_histogram};

/// A histogram as `[value_us, count]` pairs (only non-empty buckets), so files merge exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Buckets(pub Vec<(u64, u64)>);

impl Buckets {
    /// The non-empty buckets of `h`.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Back into a histogram.
    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(value, count) in &self.0 {
            let _ = h.record_n(value.clamp(1, stats::MAX_LATENCY_US), count);
        }
        h
    }
}

/// Percentiles of one latency, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Everything one run (or several merged runs) measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// What was run (target, users, room size, rate...), for humans.
    pub label: String,
    /// Loadgen processes merged into this result.
    pub processes: u64,
    /// Users these processes drove.
    pub users: u64,
    /// Users connected (`connection:success`).
    pub connected: u64,
    /// Users that joined their conversation.
    pub joined: u64,
    /// Failed connects or joins.
    pub connect_failures: u64,
    /// Connections the server dropped during the run.
    pub dropped: u64,
    /// `message:send` emitted.
    pub sends: u64,
    /// `message:sent` received.
    pub sent_acks: u64,
    /// `message:new` received.
    pub deliveries: u64,
    /// Deliveries expected from the acknowledged sends.
    pub expected_deliveries: u64,
    /// Typing and read broadcasts received.
    pub other_events: u64,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
    /// Length of the send phase, seconds (the longest of merged runs).
    pub send_secs: f64,
    /// Load generator CPU (user + system), seconds, summed over processes.
    pub loadgen_cpu_secs: f64,
    /// Latency histograms: connect, join, sent, delivery.
    pub histograms: BTreeMap<String, Buckets>,
    /// Deliveries per second, one entry per progress tick (for the plot).
    pub timeline: Vec<TimelinePoint>,
    /// The server process's CPU and memory (`--server-pid`).
    #[serde(default)]
    pub server: Option<ServerUse>,
}

/// The server's resource use seen from /proc during a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerUse {
    /// Server CPU seconds over the send phase (plus up to 1 s of drain).
    pub cpu_secs: f64,
    /// Server RSS before any user connected (KiB).
    pub rss_before_kb: u64,
    /// Server RSS with every user connected and joined (KiB).
    pub rss_connected_kb: u64,
    /// Load generator CPU seconds over the same window.
    pub loadgen_send_cpu_secs: f64,
    /// Length of that window in seconds (0 in results from older versions).
    #[serde(default)]
    pub window_secs: f64,
    /// CPU cores the load generator process could run on.
    #[serde(default)]
    pub loadgen_cores: usize,
    /// Server CPU seconds from before the first connection until every user joined
    /// (handshakes, namespace connects, joins).
    #[serde(default)]
    pub connect_cpu_secs: f64,
}

impl ServerUse {
    /// Server CPU per user for connecting and joining, in microseconds.
    pub fn connect_us_per_user(&self, connected: u64) -> Option<f64> {
        (connected > 0 && self.connect_cpu_secs > 0.0)
            .then(|| self.connect_cpu_secs * 1e6 / connected as f64)
    }

    /// Cores' worth of CPU the server used over the window (1.0 = one core busy).
    pub fn server_cores_used(&self) -> Option<f64> {
        (self.window_secs > 0.0).then(|| self.cpu_secs / self.window_secs)
    }

    /// Share of the load generator's cores it kept busy over the window (1.0 = saturated).
    pub fn loadgen_utilisation(&self) -> Option<f64> {
        (self.window_secs > 0.0 && self.loadgen_cores > 0)
            .then(|| self.loadgen_send_cpu_secs / self.window_secs / self.loadgen_cores as f64)
    }
}

/// One progress tick.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the run started.
    pub t: f64,
    /// Deliveries per second over the tick.
    pub deliveries_per_sec: f64,
    /// p99 delivery latency over the tick, microseconds.
    pub p99_us: u64,
}

impl RunResult {
    /// Deliveries per second over the send phase.
    pub fn deliveries_per_sec(&self) -> f64 {
        if self.send_secs > 0.0 {
            self.deliveries as f64 / self.send_secs
        } else {
            0.0
        }
    }

    /// Server CPU microseconds per delivery (`--server-pid`).
    pub fn server_us_per_delivery(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        (self.deliveries > 0).then(|| s.cpu_secs * 1e6 / self.deliveries as f64)
    }

    /// Server RSS growth per connected user, KiB (`--server-pid`).
    pub fn rss_per_connection_kb(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        (self.connected > 0).then(|| {
            s.rss_connected_kb.saturating_sub(s.rss_before_kb) as f64 / self.connected as f64
        })
    }

    /// Errors (all codes) over requests made (connects + sends).
    pub fn error_rate(&self) -> f64 {
        let errors: u64 = self.errors.values().sum();
        let requests = self.users + self.sends;
        if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        }
    }

    /// Percentiles of the named histogram.
    pub fn percentiles(&self, name: &str) -> Percentiles {
        self.histograms
            .get(name)
            .map(|b| Percentiles::of(&b.to_histogram()))
            .unwrap_or_default()
    }

    /// Merges another process's result of the same run into this one.
    pub fn merge(&mut self, other: &RunResult) {
        if self.label.is_empty() {
            self.label.clone_from(&other.label);
        }
        self.processes += other.processes;
        self.users += other.users;
        self.connected += other.connected;
        self.joined += other.joined;
        self.connect_failures += other.connect_failures;
        self.dropped += other.dropped;
        self.sends += other.sends;
        self.sent_acks += other.sent_acks;
        self.deliveries += other.deliveries;
        self.expected_deliveries += other.expected_deliveries;
        self.other_events += other.other_events;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        self.send_secs = self.send_secs.max(other.send_secs);
        self.loadgen_cpu_secs += other.loadgen_cpu_secs;
        match (&mut self.server, &other.server) {
            (Some(mine), Some(theirs)) => {
                // Every process watched the same server: keep the widest view.
                mine.cpu_secs = mine.cpu_secs.max(theirs.cpu_secs);
                mine.rss_before_kb = mine.rss_before_kb.min(theirs.rss_before_kb);
                mine.rss_connected_kb = mine.rss_connected_kb.max(theirs.rss_connected_kb);
                mine.loadgen_send_cpu_secs += theirs.loadgen_send_cpu_secs;
                mine.window_secs = mine.window_secs.max(theirs.window_secs);
                mine.loadgen_cores = mine.loadgen_cores.max(theirs.loadgen_cores);
                mine.connect_cpu_secs = mine.connect_cpu_secs.max(theirs.connect_cpu_secs);
            }
            (None, Some(theirs)) => self.server = Some(theirs.clone()),
            _ => {}
        }
        for (name, buckets) in &other.histograms {
            let mut h = self
                .histograms
                .get(name)
                .map(Buckets::to_histogram)
                .unwrap_or_else(new_histogram);
            let _ = h.add(buckets.to_histogram());
            self.histograms
                .insert(name.clone(), Buckets::from_histogram(&h));
        }
        for (i, p) in other.timeline.iter().enumerate() {
            match self.timeline.get_mut(i) {
                Some(mine) => {
                    mine.deliveries_per_sec += p.deliveries_per_sec;
                    mine.p99_us = mine.p99_us.max(p.p99_us);
                }
                None => self.timeline.push(p.clone()),
            }
        }
    }

    /// Reads a result file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// Writes this result as JSON.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", path.display()))
    }

    /// The summary table printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== chatwire-loadgen summary: {}", self.label);
        let _ = writeln!(
            out,
            "users {} (connected {}, joined {}, failed {}, dropped {}), processes {}",
            self.users,
            self.connected,
            self.joined,
            self.connect_failures,
            self.dropped,
            self.processes
        );
        let _ = writeln!(
            out,
            "messages sent {} (acked {}), deliveries {} of {} expected, {:.0} deliveries/s over {:.1} s",
            self.sends,
            self.sent_acks,
            self.deliveries,
            self.expected_deliveries,
            self.deliveries_per_sec(),
            self.send_secs
        );
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, title) in [
            ("connect", "connect"),
            ("join", "conversation:join"),
            ("sent", "message:sent"),
            ("delivery", "delivery (end to end)"),
        ] {
            let p = self.percentiles(name);
            let ms = |us: u64| us as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{:<22} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                title,
                p.count,
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.p999),
                ms(p.max)
            );
        }
        let errors: u64 = self.errors.values().sum();
        let _ = writeln!(
            out,
            "errors {errors} (rate {:.4}%)",
            self.error_rate() * 100.0
        );
        for (code, n) in &self.errors {
            let _ = writeln!(out, "  {code:<28} {n}");
        }
        if self.deliveries > 0 {
            let _ = writeln!(
                out,
                "loadgen CPU {:.2} s ({:.2} us per delivery)",
                self.loadgen_cpu_secs,
                self.loadgen_cpu_secs * 1e6 / self.deliveries as f64
            );
        }
        if let Some(s) = &self.server {
            let _ = writeln!(
                out,
                "server: CPU {:.2} s over the send phase ({:.2} us per delivery; loadgen {:.2} s, {:.2} us); \
                 RSS {} -> {} KiB with {} connections ({:.1} KiB per connection)",
                s.cpu_secs,
                self.server_us_per_delivery().unwrap_or(0.0),
                s.loadgen_send_cpu_secs,
                if self.deliveries > 0 {
                    s.loadgen_send_cpu_secs * 1e6 / self.deliveries as f64
                } else {
                    0.0
                },
                s.rss_before_kb,
                s.rss_connected_kb,
                self.connected,
                self.rss_per_connection_kb().unwrap_or(0.0)
            );
            if let Some(us) = s.connect_us_per_user(self.connected) {
                let _ = writeln!(
                    out,
                    "server CPU to connect and join: {:.2} s for {} users ({us:.1} us each: \
                     {:.0} per second per core)",
                    s.connect_cpu_secs,
                    self.connected,
                    1e6 / us
                );
            }
            if let (Some(server), Some(loadgen)) = (s.server_cores_used(), s.loadgen_utilisation())
            {
                let _ = writeln!(
                    out,
                    "busy over {:.1} s: server {:.2} cores; loadgen {:.0}% of its {} core(s){}",
                    s.window_secs,
                    server,
                    loadgen * 100.0,
                    s.loadgen_cores,
                    if loadgen >= LOADGEN_SATURATED {
                        " -- the load generator is near saturation: these figures may be its \
                         limit, not the server's (run it on more cores or more machines)"
                    } else {
                        ""
                    }
                );
            }
        }
        out
    }
}

/// Load generator utilisation from which the summary warns that it may be the bottleneck.
pub const LOADGEN_SATURATED: f64 = 0.9;

/// Limits that fail a run.
#[derive(Clone, Debug, Default)]
pub struct Thresholds {
    /// Highest acceptable p99 delivery latency, milliseconds.
    pub max_p99_ms: Option<f64>,
    /// Highest acceptable error rate (0.01 = 1%).
    pub max_error_rate: Option<f64>,
    /// Lowest acceptable deliveries per second.
    pub min_deliveries_per_sec: Option<f64>,
}

impl Thresholds {
    /// The broken limits, one line each (empty = pass).
    pub fn check(&self, r: &RunResult) -> Vec<String> {
        let mut failures = Vec::new();
        let p99_ms = r.percentiles("delivery").p99 as f64 / 1000.0;
        if let Some(max) = self.max_p99_ms.filter(|max| p99_ms > *max) {
            failures.push(format!("p99 delivery {p99_ms:.2} ms > {max} ms"));
        }
        if let Some(max) = self.max_error_rate.filter(|max| r.error_rate() > *max) {
            failures.push(format!("error rate {:.4} > {max}", r.error_rate()));
        }
        let rate = r.deliveries_per_sec();
        if let Some(min) = self.min_deliveries_per_sec.filter(|min| rate < *min) {
            failures.push(format!("{rate:.0} deliveries/s < {min}"));
        }
        failures
    }
}

/// Ratios of this run to a baseline (>1 = higher now).
pub fn compare(now: &RunResult, base: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== compared with baseline: {}", base.label);
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.3}x", a / b)
        } else {
            "n/a".into()
        }
    };
    let _ = writeln!(
        out,
        "{:<28} {:>12} {:>12} {:>9}",
        "metric", "now", "baseline", "ratio"
    );
    let rows: Vec<(&str, f64, f64)> = vec![
        (
            "deliveries/s",
            now.deliveries_per_sec(),
            base.deliveries_per_sec(),
        ),
        (
            "delivery p50 (ms)",
            ms(now, "delivery", |p| p.p50),
            ms(base, "delivery", |p| p.p50),
        ),
        (
            "delivery p99 (ms)",
            ms(now, "delivery", |p| p.p99),
            ms(base, "delivery", |p| p.p99),
        ),
        (
            "delivery p99.9 (ms)",
            ms(now, "delivery", |p| p.p999),
            ms(base, "delivery", |p| p.p999),
        ),
        (
            "message:sent p99 (ms)",
            ms(now, "sent", |p| p.p99),
            ms(base, "sent", |p| p.p99),
        ),
        (
            "connect p99 (ms)",
            ms(now, "connect", |p| p.p99),
            ms(base, "connect", |p| p.p99),
        ),
        ("error rate", now.error_rate(), base.error_rate()),
    ];
    for (name, a, b) in rows {
        let _ = writeln!(out, "{name:<28} {a:>12.3} {b:>12.3} {:>9}", ratio(a, b));
    }
    out
}

/// A percentile of a histogram in milliseconds.
fn ms(r: &RunResult, name: &str, pick: impl Fn(&Percentiles) -> u64) -> f64 {
    pick(&r.percentiles(name)) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn result(deliveries: u64, latencies: &[u64]) -> RunResult {
        let mut h = new_histogram();
        for &l in latencies {
            stats::record(&mut h, l);
        }
        let mut r = RunResult {
            processes: 1,
            users: 10,
            sends: 10,
            deliveries,
            expected_deliveries: deliveries,
            send_secs: 10.0,
            ..RunResult::default()
        };
        r.histograms
            .insert("delivery".into(), Buckets::from_histogram(&h));
        r
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = result(100, &[1_000; 99]);
        let b = result(50, &[100_000]);
        a.merge(&b);
        assert_eq!(a.processes, 2);
        assert_eq!(a.deliveries, 150);
        let p = a.percentiles("delivery");
        assert_eq!(p.count, 100);
        assert!(p.max >= 99_000);
        assert!(p.p50 <= 1_010);
        assert_eq!(a.deliveries_per_sec(), 15.0);
    }

    #[test]
    fn saved_results_load_back_identically() {
        let r = result(7, &[5, 50, 500, 5_000]);
        let dir = std::env::temp_dir().join(format!("lg-results-{}", std::process::id()));
        let path = dir.join("r.json");
        r.save(&path).unwrap();
        let back = RunResult::load(&path).unwrap();
        assert_eq!(back.histograms, r.histograms);
        assert_eq!(back.deliveries, 7);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn thresholds_fail_on_slow_or_erroring_runs() {
        let mut r = result(10, &[80_000; 10]);
        r.errors.insert("timeout".into(), 5);
        let t = Thresholds {
            max_p99_ms: Some(50.0),
            max_error_rate: Some(0.01),
            min_deliveries_per_sec: Some(100.0),
        };
        assert_eq!(t.check(&r).len(), 3);
        let ok = Thresholds {
            max_p99_ms: Some(100.0),
            ..Thresholds::default()
        };
        assert!(ok.check(&r).is_empty());
    }

    #[test]
    fn summary_says_when_the_load_generator_may_be_the_limit() {
        let mut r = result(100, &[1_000; 99]);
        let server = |loadgen_cpu: f64| ServerUse {
            cpu_secs: 9.0,
            loadgen_send_cpu_secs: loadgen_cpu,
            window_secs: 10.0,
            loadgen_cores: 2,
            ..ServerUse::default()
        };
        r.server = Some(server(10.0));
        let calm = r.summary();
        assert!(
            calm.contains("server 0.90 cores; loadgen 50% of its 2 core(s)"),
            "{calm}"
        );
        assert!(!calm.contains("near saturation"));
        r.server = Some(server(19.0));
        assert!(
            r.summary()
                .contains("loadgen 95% of its 2 core(s) -- the load generator is near saturation")
        );
        // Results written before the window was recorded print no utilisation.
        r.server = Some(ServerUse {
            window_secs: 0.0,
            ..server(19.0)
        });
        assert!(!r.summary().contains("busy over"));
        r.connected = 4000;
        r.server = Some(ServerUse {
            connect_cpu_secs: 0.4,
            ..server(10.0)
        });
        assert!(r.summary().contains("server CPU to connect and join: 0.40 s for 4000 users (100.0 us each: 10000 per second per core)"), "{}", r.summary());
    }
}
