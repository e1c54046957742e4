//! Connection state recovery with the official `socket.io-client` (tests/interop/recovery.js):
//! a client drops its transport while the conversation goes on, reconnects, and must get every
//! acknowledged message it missed exactly once, in id order, as live events, with
//! `socket.recovered === true`: on the same node (memory, SQLite), on another node sharing the
//! PostgreSQL database, and after the first node was killed with SIGKILL. Also the reported
//! failures of other implementations (socket.io #5538, #4880, #5282) and the window's expiry.
//! Read receipts (tests/interop/recovery_reads.js): one `message:read` per reader with its newest
//! pointer, never one the client already had, on the same three setups. `RECOVERY_MAX_EVENTS`
//! counts messages and receipts together (tests/interop/recovery_cap.js). A storm of 1,000
//! recoveries at once on each store (tests/interop/recovery_storm.js).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "interop/harness.rs"]
mod harness;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/redis.rs"]
mod redis_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use chatwire::config::Config;
use chatwire::server::{Mode, RunningServer, Server};
use harness::*;
use tokio::io::AsyncBufReadExt;

/// A (influencer 1) recovers; B (brand 2) sends.
const A_TOKEN: &str = "1:influencer";
const B_TOKEN: &str = "2:brand";

fn envs(a: &str, b: &str, reconnect: &str, conversation: i64) -> Vec<(&'static str, String)> {
    vec![
        ("A_URL", a.to_owned()),
        ("B_URL", b.to_owned()),
        ("RECONNECT_URL", reconnect.to_owned()),
        ("CONVERSATION_ID", conversation.to_string()),
        ("A_TOKEN", A_TOKEN.to_owned()),
        ("B_TOKEN", B_TOKEN.to_owned()),
    ]
}

/// Runs recovery.js against one server with `extra` settings; returns its report.
async fn one_node(change: impl FnOnce(&mut Config), extra: &[(&'static str, &str)]) -> Report {
    ensure_clients();
    let server = start_server_with(change).await;
    let report = run_on(&server, &server, extra).await;
    server.shutdown().await;
    report
}

async fn run_on(
    a: &RunningServer,
    reconnect: &RunningServer,
    extra: &[(&'static str, &str)],
) -> Report {
    run_script_on("recovery.js", a, reconnect, extra).await
}

async fn run_script_on(
    script: &str,
    a: &RunningServer,
    reconnect: &RunningServer,
    extra: &[(&'static str, &str)],
) -> Report {
    let conversation = create_direct(a.addr, (2, "brand"), (1, "influencer")).await;
    let mut e = envs(
        &base_url(a.addr),
        &base_url(a.addr),
        &base_url(reconnect.addr),
        conversation,
    );
    e.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    run_script(&node(), script, &[], &base_url(a.addr), &e).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_gets_every_missed_message_once_in_order_on_the_same_node() {
    let report = one_node(|_| {}, &[("LIVE", "3"), ("AWAY", "20")]).await;
    report.assert_passed(&[
        "the CONNECT reply carries a pid",
        "live message:new events carry the offset as their last argument",
        "socket.recovered is true after round 1",
        "every message sent while away arrived exactly once, in id order (round 1, 20 messages)",
        "replayed message:new payloads are the objects message:sent returned",
        "the message after the recovery arrived once",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_on_sqlite_replays_from_the_database() {
    let (config, path) = sqlite_config();
    let report = one_node(|c| *c = config, &[("LIVE", "2"), ("AWAY", "10")]).await;
    remove_sqlite(&path);
    report.assert_passed(&[
        "socket.recovered is true after round 1",
        "every message sent while away arrived exactly once, in id order (round 1, 10 messages)",
    ]);
}

/// socket.io #5538: a client that got no event before it dropped cannot recover there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_received_no_message_before_dropping_recovers() {
    let report = one_node(|_| {}, &[("LIVE", "0"), ("AWAY", "5")]).await;
    report.assert_passed(&[
        "connection:success carries an offset",
        "socket.recovered is true after round 1",
        "every message sent while away arrived exactly once, in id order (round 1, 5 messages)",
    ]);
}

/// socket.io #4880: recovery works once only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_three_times_in_a_row() {
    let report = one_node(|_| {}, &[("LIVE", "1"), ("AWAY", "4"), ("ROUNDS", "3")]).await;
    report.assert_passed(&[
        "socket.recovered is true after round 1",
        "socket.recovered is true after round 2",
        "socket.recovered is true after round 3",
        "every message sent while away arrived exactly once, in id order (round 3, 4 messages)",
        "the pid is kept (round 3)",
        "the message after the recovery arrived once",
    ]);
}

/// Participants not in the room get `message:notification`; recovery replays those too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_notifications_are_replayed_to_a_client_outside_the_room() {
    let report = one_node(|_| {}, &[("JOIN", "0"), ("LIVE", "2"), ("AWAY", "6")]).await;
    report.assert_passed(&[
        "live message:notification events carry the offset",
        "socket.recovered is true after round 1",
        "every message sent while away arrived exactly once, in id order (round 1, 6 messages)",
        "replayed message:notification payloads are the objects message:sent returned",
    ]);
}

/// socket.io #5282: idle for most of the window, nothing missed or a little: still recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_for_most_of_the_window_recovers() {
    let report = one_node(
        |c| c.recovery_window = 3,
        &[("LIVE", "1"), ("AWAY", "1"), ("IDLE_MS", "2300")],
    )
    .await;
    report.assert_passed(&["socket.recovered is true after round 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_window_the_client_connects_normally() {
    let report = one_node(
        |c| c.recovery_window = 1,
        &[
            ("LIVE", "1"),
            ("AWAY", "2"),
            ("IDLE_MS", "1600"),
            ("EXPECT", "fresh"),
        ],
    )
    .await;
    report.assert_passed(&[
        "past the window the client connects normally (recovered false)",
        "nothing is replayed to a session that was not recovered",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_missed_messages_than_the_limit_is_a_normal_connect() {
    let report = one_node(
        |c| c.recovery_max_events = 5,
        &[("LIVE", "1"), ("AWAY", "6"), ("EXPECT", "fresh")],
    )
    .await;
    report.assert_passed(&["past the window the client connects normally (recovered false)"]);
}

/// Runs recovery_cap.js: 3 missed messages and 2 missed receipts (B's and A's other device's)
/// against `RECOVERY_MAX_EVENTS` = `max`.
async fn cap_run(max: usize, expect: &str) -> Report {
    ensure_clients();
    let server = start_server_with(|c| c.recovery_max_events = max).await;
    let conversation = create_direct(server.addr, (2, "brand"), (1, "influencer")).await;
    let url = base_url(server.addr);
    let mut e = envs(&url, &url, &url, conversation);
    e.extend([("AWAY", "3".to_owned()), ("EXPECT", expect.to_owned())]);
    let report = run_script(&node(), "recovery_cap.js", &[], &url, &e).await;
    server.shutdown().await;
    report
}

/// The limit counts every replayed event: messages under it but messages and receipts over it
/// is a normal connect with nothing replayed, not a recovery that sends more than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_messages_and_receipts_over_the_limit_is_a_normal_connect() {
    cap_run(4, "fresh").await.assert_passed(&[
        "3 messages + 2 receipts over the limit: a normal connect (recovered false)",
        "nothing is replayed, neither a message nor a receipt",
    ]);
}

/// Exactly at the limit, messages and receipts together, the client recovers with all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_messages_and_receipts_at_the_limit_recover() {
    cap_run(5, "recovered").await.assert_passed(&[
        "3 messages + 2 receipts at the limit: socket.recovered is true",
        "the 3 missed messages and 2 receipts are replayed before connect",
    ]);
}

fn pg_config(url: &str) -> Config {
    let mut config = Config::for_tests();
    config.rate_limit_conn_per_ip = 0;
    config.database_url = url.to_owned();
    config
}

/// Two in-process nodes on one fresh PostgreSQL database (the database lives as long as the
/// first value).
async fn two_nodes() -> (pg::TestDb, RunningServer, RunningServer) {
    ensure_clients();
    let db = pg::TestDb::create().await;
    let first = Server::start(&pg_config(&db.url), Mode::Chat)
        .await
        .unwrap();
    let second = Server::start(&pg_config(&db.url), Mode::Chat)
        .await
        .unwrap();
    (db, first, second)
}

/// Two in-process nodes on one PostgreSQL database: the client drops from the first and
/// reconnects to the second, which knows the session only from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_node_sharing_the_database() {
    let (_db, first, second) = two_nodes().await;
    let report = run_on(
        &first,
        &second,
        &[("LIVE", "2"), ("AWAY", "15"), ("LIVE_AFTER", "0")],
    )
    .await;
    first.shutdown().await;
    second.shutdown().await;
    report.assert_passed(&[
        "socket.recovered is true after round 1",
        "every message sent while away arrived exactly once, in id order (round 1, 15 messages)",
        "replayed message:new payloads are the objects message:sent returned",
    ]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary on `url`; killed (SIGKILL) when dropped.
struct Binary {
    child: std::process::Child,
    port: u16,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_binary(url: &str) -> Binary {
    spawn_binary_at(
        std::path::Path::new(env!("CARGO_BIN_EXE_chatwire")),
        url,
        &[],
    )
    .await
}

/// The chatwire binary at `path` on `url` with `settings` on top of the test ones.
async fn spawn_binary_at(path: &std::path::Path, url: &str, settings: &[(&str, &str)]) -> Binary {
    let port = free_port();
    let child = std::process::Command::new(path)
        .env("DATABASE_URL", url)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("SHARDS", "2")
        .env("RATE_LIMIT_CONN_PER_IP", "0")
        .env_remove("JWT_SECRET")
        .env_remove("JWT_PUBLIC_KEY")
        .env_remove("RECOVERY_WINDOW")
        .envs(settings.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let binary = Binary { child, port };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return binary;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chatwire did not come up on {addr}");
}

/// Two nodes on one fresh PostgreSQL database: the real binary (to be killed) and an in-process
/// survivor, with a direct conversation between users 2 (brand) and 1 (influencer).
struct KillSetup {
    _db: pg::TestDb,
    killed: Binary,
    survivor: RunningServer,
    killed_url: String,
    conversation: i64,
}

async fn kill_setup() -> KillSetup {
    ensure_clients();
    let db = pg::TestDb::create().await;
    let killed = spawn_binary(&db.url).await;
    let survivor = Server::start(&pg_config(&db.url), Mode::Chat)
        .await
        .unwrap();
    let killed_url = format!("http://127.0.0.1:{}", killed.port);
    let conversation = create_direct(survivor.addr, (2, "brand"), (1, "influencer")).await;
    KillSetup {
        _db: db,
        killed,
        survivor,
        killed_url,
        conversation,
    }
}

/// The node holding the socket is killed with SIGKILL while the client is connected to it (the
/// kill is what drops the client): its session lives in PostgreSQL, and another node recovers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_on_another_node_after_its_node_was_killed() {
    let KillSetup {
        _db,
        mut killed,
        survivor,
        killed_url,
        conversation,
    } = kill_setup().await;
    // A lives on the node that dies; B sends through the survivor, so B's messages during the
    // drop reach A only through the database.
    let mut e = envs(
        &killed_url,
        &base_url(survivor.addr),
        &base_url(survivor.addr),
        conversation,
    );
    e.extend([
        ("LIVE", "0".to_owned()),
        ("AWAY", "12".to_owned()),
        ("LIVE_AFTER", "0".to_owned()),
    ]);
    let report = run_killing("recovery.js", e, &mut killed).await;
    survivor.shutdown().await;
    report.assert_passed(&[
        "connection:success carries an offset",
        "kill the node now",
        "socket.recovered is true after round 1",
        "every message sent while away arrived exactly once, in id order (round 1, 12 messages)",
        "replayed message:new payloads are the objects message:sent returned",
    ]);
}

/// Runs `script` with `KILL=1` against the node `killed` (its URL in `A_URL`), killing that node
/// with SIGKILL when the script says so (the kill is what drops the client).
async fn run_killing(
    script: &str,
    mut e: Vec<(&'static str, String)>,
    killed: &mut Binary,
) -> Report {
    let killed_url = format!("http://127.0.0.1:{}", killed.port);
    e.extend([
        ("KILL", "1".to_owned()),
        ("STEP_TIMEOUT_MS", "10000".to_owned()),
        ("BASE_URL", killed_url),
    ]);
    let mut child = tokio::process::Command::new(node())
        .arg(scripts().join(script))
        .current_dir(scripts())
        .envs(e.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let work = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line == "ok kill the node now" {
                killed.child.kill().unwrap(); // SIGKILL, with A connected to it
                killed.child.wait().unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), work)
        .await
        .expect("script ends");
    let out = child.wait_with_output().await.unwrap();
    Report {
        code: out.status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What every read receipt run must show.
const READ_CHECKS: &[&str] = &[
    "the live message:read carries the offset as its last argument",
    "socket.recovered is true after round 1",
    "exactly one message:read per reader, with its newest messageId, before connect (round 1)",
    "replayed message:read payloads have the live shape and carry offsets",
    "socket.recovered is true after round 2",
    "no message:read is replayed when nothing was read while away (round 2)",
    "a read after the recovery arrives live once",
];

/// A client that missed read receipts (over sockets and REST, its partner's and its own other
/// device's) gets one per reader, the newest, before `connect`, and none it already had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_read_receipts_are_replayed_once_per_reader() {
    ensure_clients();
    let server = start_server_with(|_| {}).await;
    let report = run_script_on("recovery_reads.js", &server, &server, &[]).await;
    server.shutdown().await;
    report.assert_passed(READ_CHECKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_read_receipts_are_replayed_on_sqlite() {
    ensure_clients();
    let (config, path) = sqlite_config();
    let server = start_server_with(|c| *c = config).await;
    let report = run_script_on("recovery_reads.js", &server, &server, &[]).await;
    server.shutdown().await;
    remove_sqlite(&path);
    report.assert_passed(READ_CHECKS);
}

/// The receipts are read from the database by a node that never saw the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_read_receipts_are_replayed_by_another_node() {
    let (_db, first, second) = two_nodes().await;
    // No Redis between the two: B goes on through the second node too.
    let second_url = base_url(second.addr);
    let report = run_script_on(
        "recovery_reads.js",
        &first,
        &second,
        &[("B_AWAY_URL", &second_url)],
    )
    .await;
    first.shutdown().await;
    second.shutdown().await;
    report.assert_passed(READ_CHECKS);
}

/// Two nodes joined by Redis: B's receipts reach A from the other node, live (their offsets
/// name them, so they are not sent again) and, once A recovers, replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_from_another_node_over_redis_are_recovered_exactly() {
    ensure_clients();
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let mut config = pg_config(&db.url);
    config.redis_url = Some(redis.url());
    let a_node = Server::start(&config, Mode::Chat).await.unwrap();
    let b_node = Server::start(&config, Mode::Chat).await.unwrap();
    let conversation = create_direct(a_node.addr, (2, "brand"), (1, "influencer")).await;
    let e = envs(
        &base_url(a_node.addr),
        &base_url(b_node.addr),
        &base_url(a_node.addr),
        conversation,
    );
    let report = run_script(
        &node(),
        "recovery_reads.js",
        &[],
        &base_url(a_node.addr),
        &e,
    )
    .await;
    a_node.shutdown().await;
    b_node.shutdown().await;
    report.assert_passed(READ_CHECKS);
}

/// The node holding A is killed with SIGKILL; the survivor replays the receipts A missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_read_receipts_are_replayed_after_the_node_was_killed() {
    let KillSetup {
        _db,
        mut killed,
        survivor,
        killed_url,
        conversation,
    } = kill_setup().await;
    // A and B start on the node that dies (the live receipt needs no cross-node delivery); B
    // goes on through the survivor.
    let mut e = envs(
        &killed_url,
        &killed_url,
        &base_url(survivor.addr),
        conversation,
    );
    e.push(("B_AWAY_URL", base_url(survivor.addr)));
    let report = run_killing("recovery_reads.js", e, &mut killed).await;
    survivor.shutdown().await;
    let mut checks = vec!["kill the node now"];
    checks.extend_from_slice(READ_CHECKS);
    report.assert_passed(&checks);
}

/// The server a storm runs against: in-process (this test binary's build), or the binary
/// `STORM_BINARY` names (e.g. `target/release/chatwire`, to measure a release build).
enum StormServer {
    InProcess(RunningServer),
    Binary(Binary),
}

impl StormServer {
    async fn start(database_url: Option<&str>, n: usize) -> StormServer {
        let Ok(path) = std::env::var("STORM_BINARY") else {
            let server = start_server_with(|c| {
                c.rate_limit_per_socket = 0;
                c.rate_limit_per_user = 0;
                c.rate_limit_rest_creates = 0;
                c.rate_limit_rest_ip_factor = 0;
                c.max_sessions_per_ip = 4 * n;
                if let Some(url) = database_url {
                    c.database_url = url.to_owned();
                }
            })
            .await;
            return StormServer::InProcess(server);
        };
        let sessions = (4 * n).to_string();
        let settings = [
            ("RATE_LIMIT_PER_SOCKET", "0"),
            ("RATE_LIMIT_PER_USER", "0"),
            ("RATE_LIMIT_REST_CREATES", "0"),
            ("RATE_LIMIT_REST_IP_FACTOR", "0"),
            ("MAX_SESSIONS_PER_IP", sessions.as_str()),
            ("DEV_TOKENS", "true"),
        ];
        let binary = spawn_binary_at(
            std::path::Path::new(&path),
            database_url.unwrap_or("memory"),
            &settings,
        )
        .await;
        StormServer::Binary(binary)
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            StormServer::InProcess(s) => s.addr,
            StormServer::Binary(b) => format!("127.0.0.1:{}", b.port).parse().unwrap(),
        }
    }

    async fn stop(self) {
        match self {
            StormServer::InProcess(s) => s.shutdown().await,
            StormServer::Binary(b) => drop(b),
        }
    }
}

/// A recovery storm: 1,000 clients, each in its own 1:1 room, recover at once after missing 50
/// messages each; every one gets exactly its 50, in order. The script reports the time and the
/// per-client latency (printed by the test). `STORM_N` changes the count of clients,
/// `STORM_BINARY` runs the storm against that chatwire binary instead of an in-process server.
async fn storm(database_url: Option<String>) {
    ensure_clients();
    let n: usize = std::env::var("STORM_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = StormServer::start(database_url.as_deref(), n).await;
    let addr = server.addr();
    let sender = "5000:brand";
    let created = Instant::now();
    let mut conversations = Vec::with_capacity(n);
    for i in 1..=n {
        conversations.push(create_direct_as(addr, sender, (i as i64, "influencer")).await);
    }
    println!(
        "{n} conversations created in {} ms",
        created.elapsed().as_millis()
    );
    let ids: Vec<String> = conversations.iter().map(i64::to_string).collect();
    let report = run_script(
        &node(),
        "recovery_storm.js",
        &[],
        &base_url(addr),
        &[
            ("CONVERSATION_IDS", ids.join(",")),
            ("MISSED", "50".into()),
            ("SENDER_TOKEN", sender.into()),
        ],
    )
    .await;
    server.stop().await;
    report.assert_passed(&[
        &format!("{n} clients joined the room"),
        &format!("all {n} clients recovered"),
        &format!("{} messages sent while the clients were away", 50 * n),
        "every client got the 50 missed messages exactly once, in id order",
        &format!("storm: {n} clients x 50 missed messages recovered in"),
    ]);
    for line in report.stdout.lines() {
        if line.starts_with("ok storm") || line.contains(" ms)") {
            println!("{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_recoveries_on_the_memory_store() {
    storm(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_recoveries_on_sqlite() {
    let (config, path) = sqlite_config();
    storm(Some(config.database_url)).await;
    remove_sqlite(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_recoveries_on_postgres() {
    let db = pg::TestDb::create().await;
    storm(Some(db.url.clone())).await;
}
