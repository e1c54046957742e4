//! Command line: `run` (one load generator process) and `merge` (combine several processes'
//! result files). goose's own options (`-H` host, `-u` users, `-r` increase rate, `-t` run time,
//! `--report-file`, ...) are accepted by `run` as well. `-H` may list several nodes of a fleet,
//! comma-separated (`-H http://127.0.0.1:3400,http://127.0.0.1:3401`): user k connects to node
//! k mod n, so every room has members on several nodes; seeding goes to the first.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use goose::config::GooseConfiguration;

use crate::ctx::SeedMode;

/// chatwire's load generator.
#[derive(Debug, Parser)]
#[command(
    name = "chatwire-loadgen",
    about = "Load generator for chatwire (Socket.IO chat) on goose"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test (goose options such as -H, -u, -r, -t are accepted too; -H may be a
    /// comma-separated list of nodes, users spread round robin over them).
    Run(Box<RunArgs>),
    /// Merge result files written by several loadgen processes of one run.
    Merge(MergeArgs),
}

/// `merge` options.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Result files (`results.json` of each process).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Directory for the merged result and its plot.
    #[arg(long, default_value = "target/loadtest")]
    pub out_dir: PathBuf,
    /// File name prefix: writes `<name>.results.json` and `<name>.svg`.
    #[arg(long, default_value = "merged")]
    pub name: String,
    /// Compare with this saved result.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Limits that fail the merged run.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Thresholds that fail the run (exit status 1).
#[derive(Clone, Debug, Default, Args)]
pub struct LimitArgs {
    /// Fail when the p99 end-to-end delivery latency is above this (ms).
    #[arg(long)]
    pub max_p99_ms: Option<f64>,
    /// Fail when errors / (connects + sends) is above this (0.01 = 1%).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Fail when fewer deliveries per second were made.
    #[arg(long)]
    pub min_deliveries_per_sec: Option<f64>,
}

/// `run` options.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Socket.IO namespace of the chat.
    #[arg(long, default_value = "/chat")]
    pub namespace: String,
    /// Id of the first simulated user (ids are first-user .. first-user + users - 1).
    #[arg(long, default_value_t = 1)]
    pub first_user: u64,
    /// Members per conversation (2 = 1:1 brand-influencer chats).
    #[arg(long, default_value_t = 10)]
    pub room_size: u64,
    /// Messages per second per user.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Pause between typing:start and message:send (ms).
    #[arg(long, default_value_t = 200)]
    pub typing_ms: u64,
    /// Don't send typing:start / typing:stop.
    #[arg(long)]
    pub no_typing: bool,
    /// Don't send message:read.
    #[arg(long)]
    pub no_read: bool,
    /// Connect and join, then hold the connections for the duration without sending.
    #[arg(long)]
    pub idle: bool,
    /// Pid of the server process on this machine: report its CPU over the send phase and its
    /// memory before and after the users connected.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Extra content bytes per message.
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// Length of the send phase (seconds), starting once every user joined.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Longest wait (seconds) after the send phase for in-flight replies and deliveries; the
    /// drain ends as soon as all arrived.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Longest wait (seconds) for every user to be ready before sending starts anyway.
    #[arg(long, default_value_t = 120.0)]
    pub barrier_timeout: f64,
    /// Longest wait (seconds) for connection:success.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// Longest wait (seconds) for message:sent / conversation:joined.
    #[arg(long, default_value_t = 10.0)]
    pub reply_timeout: f64,
    /// Share of users that start on HTTP long-polling and upgrade to WebSocket (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub polling_share: f64,
    /// Source addresses to spread connections over, e.g. 127.0.0.2,127.0.0.3.
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Sign HS256 JWTs with this secret instead of dev tokens.
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// How conversations exist: created over REST, or by convention (peers).
    #[arg(long, value_enum, default_value = "rest")]
    pub seed: SeedMode,
    /// With `--seed rest`: the seeded conversations' ids, kept in this file. A run whose
    /// server, users and room size match the file's reuses them instead of seeding again (a
    /// series of runs against one server then seeds once); otherwise it seeds and writes them.
    /// Delete it when the server starts over with an empty store.
    #[arg(long)]
    pub conversations_file: Option<PathBuf>,
    /// Directory for reports, results and the plot.
    #[arg(long, default_value = "target/loadtest")]
    pub out_dir: PathBuf,
    /// File name prefix inside out-dir.
    #[arg(long, default_value = "run")]
    pub name: String,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2)]
    pub progress_secs: u64,
    /// Compare with a saved result (e.g. bench/baseline/<name>.json) and print ratios.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Also save this run's result here (to make it a baseline).
    #[arg(long)]
    pub save_baseline: Option<PathBuf>,
    /// Don't write goose's Markdown / JSON / HTML reports. goose then keeps no metrics of its
    /// own unless a log, threshold or the dashboard asks for them (the run's figures are ours):
    /// a fifth less CPU per message.
    #[arg(long)]
    pub no_goose_reports: bool,
    /// Thresholds.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// goose's options.
    #[command(flatten)]
    pub goose: GooseConfiguration,
}
