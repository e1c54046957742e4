//! Test databases on a real PostgreSQL: each test gets its own `chatwire_test_<random>` database,
//! dropped when the [`TestDb`] goes out of scope. Uses the server on 127.0.0.1:5432 (user postgres,
//! trust); when nothing listens there, starts one throwaway cluster per test binary (initdb + pg_ctl
//! from `/usr/lib/postgresql/*/bin`, as the `postgres` user when running as root) on a free port,
//! stopped and removed by a background watcher when the test process exits.
//! `CHATWIRE_TEST_PG_OWN_CLUSTER=1` forces the throwaway cluster.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::hash::{BuildHasher, Hasher};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// A per-test database.
pub struct TestDb {
    /// Connection URL of the test database.
    pub url: String,
    /// Its name.
    pub name: String,
    /// `host:port` of the server.
    pub addr: String,
}

/// A random lowercase hex string.
pub fn random_suffix() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// `host:port` of a PostgreSQL server for tests.
pub fn server_addr() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let default = "127.0.0.1:5432";
        if std::env::var_os("CHATWIRE_TEST_PG_OWN_CLUSTER").is_none()
            && TcpStream::connect_timeout(&default.parse().unwrap(), Duration::from_millis(500))
                .is_ok()
        {
            return default.to_string();
        }
        start_cluster()
    })
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("no PostgreSQL on 127.0.0.1:5432 and no /usr/lib/postgresql to start one")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `args` as the `postgres` user when we are root (initdb refuses root), else as ourselves.
fn run_as_postgres(args: &[&str]) {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let status = if is_root {
        Command::new("runuser")
            .arg("-u")
            .arg("postgres")
            .arg("--")
            .args(args)
            .status()
    } else {
        Command::new(args[0]).args(&args[1..]).status()
    }
    .expect("cannot run a PostgreSQL tool");
    assert!(status.success(), "{args:?} failed: {status}");
}

fn start_cluster() -> String {
    let bin = pg_bin();
    let dir = std::env::temp_dir().join(format!("chatwire-pg-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let _ = Command::new("chown")
        .arg("postgres:postgres")
        .arg(&dir)
        .status();
    let data = dir.join("data");
    let port = free_port();
    let initdb = bin.join("initdb");
    let pg_ctl = bin.join("pg_ctl");
    run_as_postgres(&[
        initdb.to_str().unwrap(),
        "-D",
        data.to_str().unwrap(),
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
    ]);
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        dir.display()
    );
    run_as_postgres(&[
        pg_ctl.to_str().unwrap(),
        "-D",
        data.to_str().unwrap(),
        "-o",
        &opts,
        "-l",
        dir.join("log").to_str().unwrap(),
        "-w",
        "start",
    ]);
    // Stop and remove the cluster once this test process is gone (a watcher in the background).
    let watcher = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; {ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", &watcher]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &watcher]);
        c
    };
    // Detached on purpose: it outlives this process to clean up after it.
    #[allow(clippy::zombie_processes)]
    let _ = cmd.stdin(std::process::Stdio::null()).spawn();
    format!("127.0.0.1:{port}")
}

impl TestDb {
    /// Creates a fresh, empty database (no schema: the store's migrations create it).
    pub async fn create() -> TestDb {
        Self::create_with("").await
    }

    /// Creates a fresh, empty database with `options` after `CREATE DATABASE <name>`
    /// (`TEMPLATE template0 LC_CTYPE 'C' LC_COLLATE 'C'`).
    pub async fn create_with(options: &str) -> TestDb {
        let addr = server_addr().to_string();
        let name = format!("chatwire_test_{}", random_suffix());
        let admin = format!("postgres://postgres@{addr}/postgres");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} {options}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        let url = format!("postgres://postgres@{addr}/{name}");
        TestDb { url, name, addr }
    }

    /// URL of the same database through another `host:port` (a proxy).
    pub fn url_via(&self, addr: &str) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = format!("postgres://postgres@{}/postgres", self.addr);
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}
