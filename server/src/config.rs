//! Runtime configuration: command-line flags, each also readable from an environment variable.
//!
//! Every default runs on a laptop with nothing else installed: an embedded SQLite file under
//! `./data/`, dev tokens on (no JWT key configured), one shard per core, port 3000. Dev tokens
//! that are on only by default refuse a non-loopback address ([`Config::check`]); `make run`
//! listens on 127.0.0.1.
//!
//! `chatwire` with no subcommand is `chatwire serve`. `chatwire conformance` starts the server in
//! the setup the Socket.IO protocol test suite expects (see [`ConformanceArgs`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where `scripts/interop-deps.sh` (`make interop-deps`) installs socket.io-client's browser
/// bundles in this checkout.
pub const DEFAULT_CLIENT_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tools/node/node_modules/socket.io-client/dist"
);

mod checks;
pub use checks::{ConfigError, MAX_DURATION_MS};

/// The command line: an optional subcommand, else the `serve` flags at the top level.
#[derive(Debug, Parser)]
#[command(
    name = "chatwire",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to run; absent means `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` flags given without the `serve` word (`chatwire --port 8080`).
    #[command(flatten)]
    pub serve: Config,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // built once at start; boxing would buy nothing
pub enum Command {
    /// Run the chat server (the default).
    Serve(Config),
    /// Run the Socket.IO protocol test-suite setup: namespaces `/` and `/custom`, short timers.
    Conformance(ConformanceArgs),
}

impl Cli {
    /// Parses `std::env::args()` and the environment; exits with usage on error, as clap does.
    pub fn parse_command() -> Command {
        Self::parse().into_command()
    }

    /// Resolves "no subcommand" to `serve` with the top-level flags.
    pub fn into_command(self) -> Command {
        match self.command {
            Some(command) => command,
            None => Command::Serve(self.serve),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// JWT signature algorithm; pinned by configuration, never taken from a token's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `JWT_SECRET`.
    HS256,
    /// RSASSA-PKCS1-v1_5 SHA-256 with the RSA public key in `JWT_PUBLIC_KEY`.
    RS256,
    /// ECDSA P-256 SHA-256 with the EC public key in `JWT_PUBLIC_KEY`.
    ES256,
}

/// Settings of `chatwire serve`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on. With dev tokens on by default (no JWT key), only a loopback address
    /// starts unless `DEV_TOKENS=true` is given.
    #[arg(long, env = "HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub host: IpAddr,
    /// Port to listen on (HTTP, REST and Socket.IO share it); 0 picks any free port.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Number of shards (threads with their own event loop); 0 = one per CPU core.
    #[arg(long, env = "SHARDS", default_value_t = 0)]
    pub shards: usize,
    /// This node's id in a fleet (1..=4095), written into every session id so that any node can
    /// pass a request for the session on to its owner. Default: the `CLUSTER_NODES` entry whose
    /// address is `HOST:PORT`.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<u16>,
    /// Every node of the fleet as `id=host:port` (this one included), comma-separated, the same
    /// list on every node: a polling request or WebSocket upgrade for a session of another node
    /// is passed on to it, so the load balancer needs no sticky sessions. Unset: one node.
    #[arg(long, env = "CLUSTER_NODES", value_delimiter = ',')]
    pub cluster_nodes: Vec<String>,
    /// Storage: `sqlite://<path>` (created if missing), `postgres://...`, or `memory` (lost at exit).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://./data/chatwire.db"
    )]
    pub database_url: String,
    /// Do not run database migrations at start.
    #[arg(long, env = "NO_MIGRATE")]
    pub no_migrate: bool,
    /// Allowed browser origins, comma-separated (`https://app.example.com,https://admin.example.com`);
    /// `*` allows any origin without credentials. Unset: same-origin and localhost origins only.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// HS256 secret for JWTs.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key for RS256/ES256 JWTs: a file path or the PEM text itself.
    #[arg(long, env = "JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,
    /// JWT algorithm. Default: HS256 with `JWT_SECRET`, else RS256 or ES256 after the key type.
    #[arg(long, env = "JWT_ALGORITHM", value_enum)]
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// Required JWT `aud` claim (the token's audience must include it); unset: not checked.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required JWT `iss` claim; unset: not checked.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// Accept `<userId>:<userType>` test tokens (`true`/`false`, `1`/`0`, `on`/`off`).
    /// Default: on only when no JWT key is configured.
    #[arg(long, env = "DEV_TOKENS", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_tokens: Option<bool>,
    /// Serve the demo chat page at `/` (`true`/`false`). Default: on only when dev tokens are on.
    #[arg(long, env = "DEMO_PAGE", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo_page: Option<bool>,
    /// Folder of socket.io-client's browser bundles, served at `/socket.io/socket.io.js` and
    /// `/socket.io/socket.io.min.js` (with source maps) like Node's `serveClient`; empty = off.
    #[arg(long, env = "SOCKETIO_CLIENT_DIR", default_value = DEFAULT_CLIENT_DIR)]
    pub socketio_client_dir: std::path::PathBuf,
    /// Longest text message, in Unicode code points.
    #[arg(long, env = "MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,
    /// Most participants in a group conversation (the creator included).
    #[arg(long, env = "MAX_PARTICIPANTS", default_value_t = 1000)]
    pub max_participants: usize,
    /// Connection state recovery: how long, in seconds, a client that lost its connection may
    /// come back (to any node) and get its socket id, rooms and every missed message; 0 = off
    /// (no `pid` in the CONNECT reply). Like Socket.IO's `maxDisconnectionDuration`.
    #[arg(long, env = "RECOVERY_WINDOW", default_value_t = 120)]
    pub recovery_window: u64,
    /// Most events one recovery replays; a client that missed more connects normally
    /// (`recovered` false) and reloads over REST.
    #[arg(long, env = "RECOVERY_MAX_EVENTS", default_value_t = 1000)]
    pub recovery_max_events: usize,
    /// Engine.IO heartbeat interval, in milliseconds.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// Engine.IO heartbeat timeout, in milliseconds.
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,
    /// Time a polling client has to finish the WebSocket upgrade, in milliseconds.
    #[arg(long, env = "UPGRADE_TIMEOUT_MS", default_value_t = 10_000)]
    pub upgrade_timeout_ms: u64,
    /// Largest Engine.IO payload (a polling body or a WebSocket message), in bytes.
    #[arg(long, env = "MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub max_payload: usize,
    /// Time a new connection has to join a namespace, in milliseconds.
    #[arg(long, env = "CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    pub connect_timeout_ms: u64,
    /// Time a client has to send its HTTP request headers, in milliseconds.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Sustained client events (and namespace CONNECTs) per second on one connection, whatever
    /// its namespaces; 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_PER_SOCKET", default_value_t = 20)]
    pub rate_limit_per_socket: u32,
    /// Sustained client events per second of one user over its connections on a shard (bursts
    /// of twice that); 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_PER_USER", default_value_t = 40)]
    pub rate_limit_per_user: u32,
    /// Burst of events one connection may send above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 40)]
    pub rate_limit_burst: u32,
    /// Sustained new connections per second from one IP address; 0 = no limit.
    /// Behind a reverse proxy every client shares the proxy's address: raise it or set 0.
    #[arg(long, env = "RATE_LIMIT_CONN_PER_IP", default_value_t = 100)]
    pub rate_limit_conn_per_ip: u32,
    /// Burst of new connections from one IP address above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_CONN_BURST", default_value_t = 200)]
    pub rate_limit_conn_burst: u32,
    /// REST `POST /api/chat/messages` per user per second (bursts of twice as many); 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_REST_SENDS", default_value_t = 20)]
    pub rate_limit_rest_sends: u32,
    /// REST conversation creations per user per second (bursts of twice as many); 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_REST_CREATES", default_value_t = 2)]
    pub rate_limit_rest_creates: u32,
    /// REST history searches (`?q=`) per user per second (bursts of twice as many); 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_REST_SEARCHES", default_value_t = 2)]
    pub rate_limit_rest_searches: u32,
    /// Other REST requests (reads, read receipts, hiding) per user per second (bursts of twice as
    /// many); 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_REST_READS", default_value_t = 20)]
    pub rate_limit_rest_reads: u32,
    /// Per-IP REST limits are this many times the per-user ones (0 = no per-IP limit; behind a
    /// reverse proxy every client shares its address).
    #[arg(long, env = "RATE_LIMIT_REST_IP_FACTOR", default_value_t = 10)]
    pub rate_limit_rest_ip_factor: u32,
    /// Most Engine.IO sessions open at once from one IP address (IPv6 per /64); 0 = no limit.
    #[arg(long, env = "MAX_SESSIONS_PER_IP", default_value_t = 1000)]
    pub max_sessions_per_ip: usize,
    /// Most Engine.IO sessions open at once in the process; 0 = no limit.
    #[arg(long, env = "MAX_SESSIONS", default_value_t = 100_000)]
    pub max_sessions: usize,
    /// Most new Engine.IO sessions one keep-alive HTTP connection may open (each one after the
    /// first also counts against `RATE_LIMIT_CONN_PER_IP`, like a new connection).
    #[arg(long, env = "MAX_HANDSHAKES_PER_CONNECTION", default_value_t = 32)]
    pub max_handshakes_per_connection: u32,
    /// Time a client has to send a whole request body (polling POST, REST), in milliseconds.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,
    /// Most messages committed in one database transaction.
    #[arg(long, env = "WRITE_BATCH_MAX", default_value_t = 2048)]
    pub write_batch_max: usize,
    /// How long the writer waits for more messages after the first of a batch, in milliseconds.
    /// 0 (the default) is plain group commit: a batch is what queued while the previous commit
    /// ran, so a lone message pays one commit and no wait, and a busy writer still commits large
    /// batches.
    #[arg(long, env = "WRITE_BATCH_WINDOW_MS", default_value_t = 0)]
    pub write_batch_window_ms: u64,
    /// Database connections committing batches side by side; a conversation always uses the
    /// same one, so its messages keep their order. More than the database's spare cores buys
    /// nothing.
    #[arg(long, env = "WRITE_LANES", default_value_t = 2)]
    pub write_lanes: usize,
    /// Time after which a message not yet committed is answered `unavailable`, in milliseconds.
    #[arg(long, env = "WRITE_DEADLINE_MS", default_value_t = 5000)]
    pub write_deadline_ms: u64,
    /// Messages waiting for the writer; a full queue answers `unavailable`.
    #[arg(long, env = "WRITE_QUEUE", default_value_t = 65_536)]
    pub write_queue: usize,
    /// Frames queued to one client; a client that stops reading is disconnected when it is full.
    #[arg(long, env = "OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,
    /// Several nodes through Redis (`redis://host:port/`): rooms, broadcasts and presence shared
    /// with every node on the same Redis and key prefix, chatwire or Node socket.io with
    /// `@socket.io/redis-adapter`. Unset: one node.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Channel prefix on Redis (`@socket.io/redis-adapter`'s `key`).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "socket.io")]
    pub redis_key_prefix: String,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log filter: a level (`info`) or `tracing` directives (`chatwire=debug,sqlx=warn`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Config {
    /// Settings for in-process tests: memory store, 127.0.0.1 on any port, 2 shards, dev tokens on.
    pub fn for_tests() -> Self {
        Self::defaults_with(&[
            "--host=127.0.0.1",
            "--port=0",
            "--shards=2",
            "--database-url=memory",
            "--dev-tokens=true",
        ])
    }

    /// The documented defaults with the given flags on top. The process environment is not
    /// read, so tests behave the same whatever `PORT`, `CORS_ORIGINS`, ... the shell has.
    fn defaults_with(flags: &[&str]) -> Self {
        use clap::FromArgMatches;
        let command = Self::augment_args(clap::Command::new("chatwire"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let argv = std::iter::once("chatwire").chain(flags.iter().copied());
        match command
            .try_get_matches_from(argv)
            .and_then(|m| Self::from_arg_matches(&m))
        {
            Ok(config) => config,
            // The flags are fixed and valid; reaching this is a bug in the list above.
            Err(error) => error.exit(),
        }
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The shard count, `shards` or the number of CPU cores when it is 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            return self.shards;
        }
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// Whether a JWT key (secret or public key) is configured.
    pub fn has_jwt_key(&self) -> bool {
        self.jwt_secret.as_deref().is_some_and(|s| !s.is_empty())
            || self
                .jwt_public_key
                .as_deref()
                .is_some_and(|s| !s.is_empty())
    }

    /// Whether `<userId>:<userType>` dev tokens are accepted: `DEV_TOKENS`, else on only when no
    /// JWT key is configured.
    pub fn dev_tokens_enabled(&self) -> bool {
        self.dev_tokens.unwrap_or(!self.has_jwt_key())
    }

    /// Whether the demo chat page is served: `DEMO_PAGE`, else only while dev tokens are on.
    pub fn demo_page_enabled(&self) -> bool {
        self.demo_page.unwrap_or_else(|| self.dev_tokens_enabled())
    }

    /// Engine.IO heartbeat interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// Engine.IO heartbeat timeout.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    /// WebSocket upgrade timeout.
    pub fn upgrade_timeout(&self) -> Duration {
        Duration::from_millis(self.upgrade_timeout_ms)
    }

    /// Namespace connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// HTTP request body read timeout.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// HTTP header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// Writer batch window.
    pub fn write_batch_window(&self) -> Duration {
        Duration::from_millis(self.write_batch_window_ms)
    }

    /// Writer commit deadline.
    pub fn write_deadline(&self) -> Duration {
        Duration::from_millis(self.write_deadline_ms)
    }
}

/// Settings of `chatwire conformance`: the server of the Socket.IO protocol test suite
/// (`pingInterval` 300 ms, `pingTimeout` 200 ms, `maxPayload` 1000000, `connectTimeout` 1000 ms,
/// any origin, memory store, dev tokens on, namespaces `/` and `/custom`).
#[derive(Debug, Clone, Args)]
pub struct ConformanceArgs {
    /// Address to listen on.
    #[arg(long, env = "CONFORMANCE_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Port to listen on (the test suite connects to 3000).
    #[arg(long, env = "CONFORMANCE_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Number of shards; 0 = one per CPU core.
    #[arg(long, env = "SHARDS", default_value_t = 0)]
    pub shards: usize,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log filter.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl ConformanceArgs {
    /// The full server configuration for the test-suite setup.
    pub fn to_config(&self) -> Config {
        let mut config = Config::for_tests();
        config.host = self.host;
        config.port = self.port;
        config.shards = self.shards;
        config.cors_origins = vec!["*".to_owned()];
        config.ping_interval_ms = 300;
        config.ping_timeout_ms = 200;
        config.max_payload = 1_000_000;
        config.connect_timeout_ms = 1000;
        // The test suite opens every session from one address, many over one connection.
        config.rate_limit_conn_per_ip = 0;
        config.max_sessions_per_ip = 0;
        config.max_handshakes_per_connection = u32::MAX;
        config.log_format = self.log_format;
        config.log_level.clone_from(&self.log_level);
        config
    }
}

#[cfg(test)]
mod config_tests;
