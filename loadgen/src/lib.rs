//! chatwire-loadgen: simulated chat users on goose, speaking Socket.IO through the protocol
//! crate's client side.
//!
//! A run: raise the open-file limit, seed conversations (REST, or by convention for peers),
//! let goose start the users (each connects, joins, then sends at `--rate` with typing and read
//! receipts), print progress, merge the per-user latency histograms, and write
//! `<out-dir>/<name>.results.json`, `<name>.svg` and goose's `<name>.{md,json,html}` reports.
//! Several processes (disjoint `--first-user` ranges) can run side by side; `merge` combines
//! their result files.
//!
//! Modules: [`cli`] options, [`ctx`] shared run state, [`scenario`] goose transactions,
//! [`conn`] the per-connection task, [`net`] transports, [`wire`] protocol, [`token`]
//! credentials, [`seed`] REST seeding, [`stats`] histograms, [`progress`], [`results`] JSON,
//! summary, thresholds and baseline, [`plot`] SVG.

pub mod cli;
pub mod conn;
pub mod ctx;
pub mod net;
pub mod plot;
pub mod progress;
pub mod results;
pub mod scenario;
pub mod seed;
pub mod server_probe;
pub mod stats;
pub mod token;
pub mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use goose::client::GooseClientBuilder;
use goose::config::GooseDefaultType;
use goose::prelude::*;

use crate::cli::{LimitArgs, MergeArgs, RunArgs};
use crate::ctx::{Ctx, Settings};
use crate::net::Target;
use crate::results::{RunResult, Thresholds};
use crate::stats::Live;
use crate::token::Credentials;

/// Outcome of a run or merge: the result and the thresholds it broke.
#[derive(Debug)]
pub struct Outcome {
    /// What was measured.
    pub result: RunResult,
    /// Broken thresholds (empty = pass).
    pub failures: Vec<String>,
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// CPU seconds (user + system) this process used so far.
pub fn own_cpu_secs() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// The nodes named by `-H`: one `http://host:port`, or several separated by commas (a fleet:
/// user k connects to node k mod n). Returns the first node's base URL and every node's target.
fn nodes(hosts: &str, namespace: &str, timeout: Duration) -> anyhow::Result<(String, Vec<Target>)> {
    let mut base_url = None;
    let mut targets = Vec::new();
    for base in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let base = base.trim_end_matches('/');
        let host = base
            .strip_prefix("http://")
            .with_context(|| {
                format!("--host must be http://host:port[,http://host:port...], not {base}")
            })?
            .to_owned();
        let addr: SocketAddr = host
            .to_socket_addrs()
            .with_context(|| format!("resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        base_url.get_or_insert_with(|| base.to_owned());
        targets.push(Target {
            addr,
            host,
            namespace: namespace.to_owned(),
            timeout,
        });
    }
    let base_url = base_url.context("--host names no server")?;
    Ok((base_url, targets))
}

/// Builds the scenario settings from the command line.
fn settings(args: &RunArgs) -> anyhow::Result<Settings> {
    let hosts = args
        .goose
        .host
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let timeout = Duration::from_secs_f64(args.connect_timeout);
    let (base, mut targets) = nodes(&hosts, &args.namespace, timeout)?;
    let more_targets = targets.split_off(1);
    let target = targets.pop().context("--host names no server")?;
    let users = args.goose.users.unwrap_or(100) as u64;
    if users == 0 || args.room_size == 0 || args.rate <= 0.0 {
        bail!("users, room size and rate must be positive");
    }
    let credentials = match &args.jwt_secret {
        Some(secret) => Credentials::jwt(secret, 24 * 3600),
        None => Credentials::Dev,
    };
    Ok(Settings {
        target,
        more_targets,
        base_url: base,
        first_user_id: args.first_user.max(1),
        users,
        room_size: args.room_size,
        rate: args.rate,
        typing_pause: Duration::from_millis(args.typing_ms),
        typing: !args.no_typing,
        read: !args.no_read,
        idle: args.idle,
        pad: args.pad,
        duration: Duration::from_secs_f64(args.duration),
        drain: Duration::from_secs_f64(args.drain),
        barrier_timeout: Duration::from_secs_f64(args.barrier_timeout),
        reply_timeout: Duration::from_secs_f64(args.reply_timeout),
        polling_share: args.polling_share,
        source_ips: args.source_ips.clone(),
        credentials,
        seed: args.seed,
    })
}

/// goose's configuration for this run: our reports unless the command line named its own;
/// goose's host is the first node (goose takes one URL, `-H` may list a fleet). Without a
/// report, goose's own metrics are turned off unless something else of goose reads them.
fn goose_config(args: &RunArgs, base_url: &str) -> goose::config::GooseConfiguration {
    let mut config = args.goose.clone();
    config.host = Some(base_url.to_owned());
    if config.report_file.is_empty() && !args.no_goose_reports {
        for ext in ["md", "json", "html"] {
            config
                .report_file
                .push(out_path(args, ext).display().to_string());
        }
    }
    if !goose_reads_its_metrics(&config) {
        // The run's figures come from the users' own histograms (`results.json`); goose's
        // metrics only feed goose's reports. Kept on, they cost a fifth of this process's CPU per
        // message (two records per round, aggregated on goose's metrics channel), which is what
        // caps a pinned 1:1 run.
        config.no_metrics = true;
    }
    config
}

/// Whether any of goose's outputs reads goose's metrics: a report, a log, a threshold, the
/// dashboard (goose refuses each of them together with `--no-metrics`).
fn goose_reads_its_metrics(config: &goose::config::GooseConfiguration) -> bool {
    !config.report_file.is_empty()
        || config.request_log.is_some()
        || config.transaction_log.is_some()
        || config.scenario_log.is_some()
        || config.error_log.is_some()
        || config.pdf_print_html.is_some()
        || config.co_mitigation.is_some()
        || !config.threshold.is_empty()
        || config.dashboard
}

/// `<out-dir>/<name>.<ext>`.
fn out_path(args: &RunArgs, ext: &str) -> PathBuf {
    args.out_dir.join(format!("{}.{ext}", args.name))
}

/// Runs one load generator process.
pub async fn run(args: &RunArgs) -> anyhow::Result<Outcome> {
    let nofile = raise_nofile_limit();
    let settings = settings(args)?;
    let users = settings.users;
    if nofile > 0 && users + 64 > nofile {
        eprintln!("warning: {users} users but only {nofile} open files allowed per process");
    }
    let nodes = settings.more_targets.len() + 1;
    let label = format!(
        "{} users, rooms of {}, {}/s per user{}, {:.0}s, {}{}",
        users,
        settings.room_size,
        settings.rate,
        if settings.typing { " with typing" } else { "" },
        settings.duration.as_secs_f64(),
        settings.base_url,
        if nodes > 1 {
            format!(" and {} more nodes (users round robin)", nodes - 1)
        } else {
            String::new()
        }
    );
    let ctx = Ctx::new(settings)?;
    let probe = args.server_pid.map(|pid| {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move { server_probe::watch(&ctx, pid).await })
    });
    std::fs::create_dir_all(&args.out_dir)?;
    if ctx.settings.seed == ctx::SeedMode::Rest {
        let n = ctx.settings.conversations();
        match seed::seed_once(&ctx, args.conversations_file.as_deref()).await? {
            Some(took) => eprintln!(
                "seeded {n} conversations over REST in {:.1}s",
                took.as_secs_f64()
            ),
            None => eprintln!("{n} conversations seeded before, from --conversations-file"),
        }
    }
    let cpu_before = own_cpu_secs();
    let progress = tokio::spawn(progress::report(
        Arc::clone(&ctx),
        Duration::from_secs(args.progress_secs.max(1)),
    ));

    // goose's run time is only a cap: every user tells goose when its send phase is over, and
    // the run ends as soon as all did (their on-stop transactions then drain and disconnect).
    let cap = ctx.settings.duration + ctx.settings.barrier_timeout + Duration::from_secs(30);
    let run_time = cap.as_secs() as usize;
    let config = goose_config(args, &ctx.settings.base_url);
    let reports = !config.report_file.is_empty();
    let goose_ends_the_run = !config.no_metrics;
    let attack = GooseAttack::initialize_with_config(config)?
        .set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())?
        .register_scenario(scenario::scenario(&ctx))
        .set_default(GooseDefault::Host, ctx.settings.base_url.as_str())?
        .set_default(GooseDefault::Users, users as usize)?
        .set_default(GooseDefault::IncreaseRate, "1000")?
        .set_default(GooseDefault::RunTime, run_time)?
        .set_default(GooseDefault::NoResetMetrics, true)?
        .set_default(GooseDefault::Quiet, 1)?
        .set_default(GooseDefault::NoPrintMetrics, true)?;
    // goose accepts notes only when it writes a report.
    let attack = if reports {
        attack.set_default(GooseDefault::Notes, label.as_str())?
    } else {
        attack
    };
    let wall = Instant::now();
    // When nothing reads goose's metrics (no report, log or threshold: they are turned off),
    // goose's own end of the run is not needed: the run ends as soon as every user finished and
    // the drain is over (`Ctx::end_all`), not at goose's next look.
    let goose_result = if goose_ends_the_run {
        attack.execute().await.map(drop)
    } else {
        tokio::select! {
            r = attack.execute() => r.map(drop),
            () = ctx.end_all() => Ok(()),
        }
    };
    ctx.done.store(true, Ordering::Release);
    let timeline = progress.await.unwrap_or_default();
    if let Err(e) = goose_result {
        bail!("goose: {e:?}");
    }
    let cpu = own_cpu_secs() - cpu_before;
    let mut result = collect(&ctx, label, timeline, cpu, wall.elapsed());
    if let Some(probe) = probe
        && let Ok(Ok(sample)) = tokio::time::timeout(Duration::from_secs(3), probe).await
    {
        result.server = Some(results::ServerUse {
            cpu_secs: sample.cpu_secs,
            rss_before_kb: sample.rss_before_kb,
            rss_connected_kb: sample.rss_connected_kb,
            loadgen_send_cpu_secs: sample.loadgen_cpu_secs,
            window_secs: sample.window_secs,
            connect_cpu_secs: sample.connect_cpu_secs,
            loadgen_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        });
    }
    finish(
        result,
        &args.out_dir,
        &args.name,
        args.baseline.as_deref(),
        args.save_baseline.as_deref(),
        &args.limits,
    )
}

/// Builds the result from the run's counters and merged histograms.
fn collect(
    ctx: &Ctx,
    label: String,
    timeline: Vec<results::TimelinePoint>,
    cpu: f64,
    wall: Duration,
) -> RunResult {
    let live = &ctx.live;
    let send_secs = ctx.send_start().map_or(0.0, |start| {
        let end = start + ctx.settings.duration;
        (end.min(start + wall))
            .saturating_duration_since(start)
            .as_secs_f64()
    });
    let mut histograms = std::collections::BTreeMap::new();
    if let Ok(run) = ctx.run.lock() {
        for (name, h) in [
            ("connect", &run.connect),
            ("join", &run.join),
            ("sent", &run.sent),
            ("delivery", &run.delivery),
        ] {
            histograms.insert(name.to_owned(), results::Buckets::from_histogram(h));
        }
    }
    RunResult {
        label,
        processes: 1,
        users: ctx.settings.users,
        connected: Live::get(&live.connected),
        joined: Live::get(&live.joined),
        connect_failures: Live::get(&live.connect_failures),
        dropped: Live::get(&live.dropped),
        sends: Live::get(&live.sends),
        sent_acks: Live::get(&live.sent_acks),
        deliveries: Live::get(&live.deliveries),
        expected_deliveries: Live::get(&live.expected_deliveries),
        other_events: Live::get(&live.other_events),
        errors: live.errors(),
        send_secs,
        loadgen_cpu_secs: cpu,
        histograms,
        timeline,
        server: None,
    }
}

/// Writes the result, SVG, summary, baseline comparison; checks thresholds.
fn finish(
    result: RunResult,
    out_dir: &Path,
    name: &str,
    baseline: Option<&Path>,
    save_baseline: Option<&Path>,
    limits: &LimitArgs,
) -> anyhow::Result<Outcome> {
    let json = out_dir.join(format!("{name}.results.json"));
    result.save(&json)?;
    let svg = out_dir.join(format!("{name}.svg"));
    std::fs::write(&svg, plot::svg(&result))?;
    if let Some(path) = save_baseline {
        result.save(path)?;
    }
    println!("{}", result.summary());
    if let Some(path) = baseline {
        match RunResult::load(path) {
            Ok(base) => println!("{}", results::compare(&result, &base)),
            Err(e) => eprintln!("baseline: {e:#}"),
        }
    }
    println!("results: {}  plot: {}", json.display(), svg.display());
    let thresholds = Thresholds {
        max_p99_ms: limits.max_p99_ms,
        max_error_rate: limits.max_error_rate,
        min_deliveries_per_sec: limits.min_deliveries_per_sec,
    };
    let failures = thresholds.check(&result);
    for f in &failures {
        println!("THRESHOLD FAILED: {f}");
    }
    Ok(Outcome { result, failures })
}

/// Merges several processes' result files.
pub fn merge(args: &MergeArgs) -> anyhow::Result<Outcome> {
    let mut merged = RunResult::default();
    for file in &args.files {
        merged.merge(&RunResult::load(file)?);
    }
    std::fs::create_dir_all(&args.out_dir)?;
    finish(
        merged,
        &args.out_dir,
        &args.name,
        args.baseline.as_deref(),
        None,
        &args.limits,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_is_one_node_or_a_comma_list_of_them() {
        let t = Duration::from_secs(1);
        let (base, one) = nodes("http://127.0.0.1:3400/", "/chat", t).unwrap();
        assert_eq!(base, "http://127.0.0.1:3400");
        assert_eq!(one.len(), 1);
        let (base, fleet) = nodes(
            "http://127.0.0.1:3400,http://127.0.0.1:3401, http://127.0.0.1:3402",
            "/chat",
            t,
        )
        .unwrap();
        assert_eq!(base, "http://127.0.0.1:3400");
        let hosts: Vec<_> = fleet.iter().map(|n| n.host.as_str()).collect();
        assert_eq!(
            hosts,
            ["127.0.0.1:3400", "127.0.0.1:3401", "127.0.0.1:3402"]
        );
        assert!(nodes("http://127.0.0.1:3400,ws://127.0.0.1:3401", "/chat", t).is_err());
        assert!(nodes(",", "/chat", t).is_err());
    }

    fn config_for(extra: &[&str]) -> goose::config::GooseConfiguration {
        use clap::Parser as _;
        let mut argv = vec!["chatwire-loadgen", "run", "-H", "http://127.0.0.1:3400"];
        argv.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Run(args) = cli.command else {
            panic!("run")
        };
        goose_config(&args, "http://127.0.0.1:3400")
    }

    #[test]
    fn goose_keeps_its_metrics_only_for_what_reads_them() {
        let reports = config_for(&[]);
        assert!(!reports.no_metrics, "goose's reports need its metrics");
        assert_eq!(reports.report_file.len(), 3);
        assert!(config_for(&["--no-goose-reports"]).no_metrics);
        assert!(!config_for(&["--no-goose-reports", "--request-log", "r.log"]).no_metrics);
        assert!(!config_for(&["--no-goose-reports", "--report-file", "r.html"]).no_metrics);
        assert!(!config_for(&["--no-goose-reports", "--error-log", "e.log"]).no_metrics);
        assert!(config_for(&["--no-goose-reports", "--no-metrics"]).no_metrics);
    }
}
