//! Shared by `interop_node.rs` and `interop_python.rs`: start the real server in-process on
//! 127.0.0.1:0 with the memory store, create conversations through the REST API with dev tokens,
//! run a client script from this folder, and check its report (`ok <check>` lines, then `PASS`).
//! The clients are installed by `scripts/interop-deps.sh` (run once per test binary here too, a
//! no-op when they are up to date).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use chatwire::config::Config;
use chatwire::server::{Mode, RunningServer, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a client script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// This folder (the client scripts).
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs the node and python clients if missing or outdated (once per test binary).
pub fn ensure_clients() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/interop-deps.sh"))
            .output()
            .map_err(|e| format!("cannot run scripts/interop-deps.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/interop-deps.sh failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("interop clients are not installed: {e}");
    }
}

/// The test configuration with a fresh SQLite file (removed by [`remove_sqlite`]).
pub fn sqlite_config() -> (Config, PathBuf) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = std::env::temp_dir().join(format!(
        "chatwire-interop-{}-{nanos}.db",
        std::process::id()
    ));
    let mut config = Config::for_tests();
    config.rate_limit_conn_per_ip = 0;
    config.database_url = format!("sqlite://{}", path.display());
    (config, path)
}

/// Removes a SQLite database and its WAL files.
pub fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Starts chatwire in-process: memory store, 127.0.0.1:0, 2 shards, dev tokens on, no per-IP
/// connection limit (every test client comes from 127.0.0.1).
pub async fn start_server() -> RunningServer {
    start_server_with(|_| {}).await
}

/// [`start_server`] with changes to the test configuration.
pub async fn start_server_with(change: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::for_tests();
    config.rate_limit_conn_per_ip = 0;
    change(&mut config);
    Server::start(&config, Mode::Chat)
        .await
        .expect("the server starts on 127.0.0.1:0")
}

/// `http://127.0.0.1:<port>`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// One HTTP/1.1 request (`Connection: close`); returns the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("REST answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// Joins the chunks of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Creates (or finds) the 1:1 conversation between `caller` and `other` through
/// `POST /api/chat/conversations` with the caller's dev token; returns its id.
pub async fn create_direct(addr: SocketAddr, caller: (i64, &str), other: (i64, &str)) -> i64 {
    let token = format!("{}:{}", caller.0, caller.1);
    create_direct_as(addr, &token, other).await
}

/// [`create_direct`] with the caller's token given (e.g. a JWT).
pub async fn create_direct_as(addr: SocketAddr, token: &str, other: (i64, &str)) -> i64 {
    let body = format!(
        r#"{{"participantId":{},"participantType":"{}"}}"#,
        other.0, other.1
    );
    let (status, answer) = http(addr, "POST", "/api/chat/conversations", token, &body).await;
    assert!(
        status == 201 || status == 200,
        "POST /api/chat/conversations answered {status} {answer}: the interop tests create their \
         conversations through the REST API, which must be wired for them to run"
    );
    let value: serde_json::Value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("conversation JSON expected ({e}): {answer}"));
    value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("conversation without a numeric id: {answer}"))
}

/// What a client script printed.
#[derive(Debug)]
pub struct Report {
    /// Exit status code (None if killed).
    pub code: Option<i32>,
    /// Standard output (the `ok` / `PASS` / `FAIL` lines).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Report {
    /// Asserts the script passed and printed an `ok` line containing each of `checks`.
    pub fn assert_passed(&self, checks: &[&str]) {
        let shown = format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        );
        assert!(
            self.code == Some(0) && self.stdout.lines().any(|l| l == "PASS"),
            "client script failed: {shown}"
        );
        assert!(
            !self.stdout.lines().any(|l| l.starts_with("FAIL")),
            "client script reported a failure: {shown}"
        );
        for check in checks {
            assert!(
                self.stdout
                    .lines()
                    .any(|l| l.starts_with("ok ") && l.contains(check)),
                "missing check {check:?}: {shown}"
            );
        }
    }
}

/// Runs `program script args...` from this folder with `envs` (and `BASE_URL`), killed after
/// [`SCRIPT_DEADLINE`].
pub async fn run_script(
    program: &Path,
    script: &str,
    args: &[&str],
    base: &str,
    envs: &[(&str, String)],
) -> Report {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(scripts().join(script))
        .args(args)
        .current_dir(scripts())
        .env("BASE_URL", base)
        // Generous per-step deadline: `cargo test --workspace` runs many tests at once on 2 cores.
        .env("STEP_TIMEOUT_MS", "10000")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let out = tokio::time::timeout(SCRIPT_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} {args:?} ran longer than {SCRIPT_DEADLINE:?}"))
        .unwrap();
    Report {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a script like [`run_script`]; once it prints `ok ready`, shuts `server` down gracefully
/// and, with `restart`, starts a new server with that configuration (same port and database);
/// returns the script's report after it exits.
pub async fn run_script_then_restart(
    program: &Path,
    script: &str,
    server: RunningServer,
    restart: Option<Config>,
    envs: &[(&str, String)],
) -> Report {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(program)
        .arg(scripts().join(script))
        .current_dir(scripts())
        .env("BASE_URL", base_url(server.addr))
        .env("STEP_TIMEOUT_MS", "10000")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let work = async {
        let mut stdout = String::new();
        let mut server = Some(server);
        let mut restart = restart;
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line == "ok ready" {
                if let Some(old) = server.take() {
                    old.shutdown().await;
                }
                if let Some(config) = restart.take() {
                    server = Some(
                        Server::start(&config, Mode::Chat)
                            .await
                            .expect("the server restarts on the same port"),
                    );
                }
            }
        }
        if let Some(server) = server.take() {
            server.shutdown().await;
        }
        let mut err = String::new();
        stderr.read_to_string(&mut err).await.unwrap();
        let status = child.wait().await.unwrap();
        Report {
            code: status.code(),
            stdout,
            stderr: err,
        }
    };
    tokio::time::timeout(SCRIPT_DEADLINE, work)
        .await
        .unwrap_or_else(|_| panic!("{script} ran longer than {SCRIPT_DEADLINE:?}"))
}

/// `node` from PATH.
pub fn node() -> PathBuf {
    PathBuf::from("node")
}

/// The python of `tools/python/.venv`.
pub fn python() -> PathBuf {
    root().join("tools/python/.venv/bin/python")
}
