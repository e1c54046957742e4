//! The real binary on PostgreSQL (and SQLite for kill -9), driven over `POST /api/chat/messages`:
//! - SIGTERM under load: the server drains and exits 0; every message it acknowledged is stored.
//! - kill -9 in the middle of batches, restart, clients retry every unacknowledged send with the
//!   same tempId: the table holds exactly one row per send, and acknowledged ids never change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on a fresh connection; `(status, body)`.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status line"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("timeout")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
}

async fn start(url: &str) -> Server {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatwire"))
        .env("DATABASE_URL", url)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("SHARDS", "2")
        // The load is one user sending as fast as it can: REST rate limits would turn most
        // sends away and leave little to crash in the middle of.
        .env("RATE_LIMIT_REST_SENDS", "0")
        .env("RATE_LIMIT_REST_IP_FACTOR", "0")
        .env_remove("JWT_SECRET")
        .env_remove("JWT_PUBLIC_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok((200, _)) = http(port, "GET", "/healthz", "1:brand", "").await {
            return Server { child, port };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not come up");
}

async fn conversation(port: u16) -> i64 {
    let (status, body) = http(
        port,
        "POST",
        "/api/chat/conversations",
        "1:brand",
        r#"{"participantId":2,"participantType":"influencer"}"#,
    )
    .await
    .unwrap();
    assert!(status == 201 || status == 200, "{status} {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["id"].as_i64().unwrap()
}

/// Sends `tempId` once; `Some(id)` when acknowledged.
async fn send(port: u16, cid: i64, temp: &str) -> Option<i64> {
    let body = format!(r#"{{"conversationId":{cid},"content":"load {temp}","tempId":"{temp}"}}"#);
    match http(port, "POST", "/api/chat/messages", "1:brand", &body).await {
        Ok((201 | 200, body)) => {
            serde_json::from_str::<serde_json::Value>(&body).ok()?["id"].as_i64()
        }
        _ => None,
    }
}

/// A tempId sent, with its message id when acknowledged.
type Tried = (String, Option<i64>);

/// 16 clients send as fast as they can until `stop`; returns every tempId tried with its id if acked.
async fn load(port: u16, cid: i64, stop: Instant) -> Vec<Tried> {
    let out: Arc<Mutex<Vec<Tried>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..16 {
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop {
                let temp = format!("c{c}-{n}");
                let id = send(port, cid, &temp).await;
                out.lock().unwrap().push((temp, id));
                n += 1;
                if id.is_none() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    std::mem::take(&mut *out.lock().unwrap())
}

async fn stored(url: &str) -> HashMap<String, i64> {
    let sql = "SELECT id, temp_id_key FROM messages";
    let rows: Vec<(i64, Option<String>)> = if url.starts_with("sqlite:") {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
    };
    let n = rows.len();
    let map: HashMap<String, i64> = rows.into_iter().map(|(id, k)| (k.unwrap(), id)).collect();
    assert_eq!(map.len(), n, "no two rows share a tempId");
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing() {
    let db = pg::TestDb::create().await;
    let mut server = start(&db.url).await;
    let cid = conversation(server.port).await;
    let port = server.port;
    let loader = tokio::spawn(load(port, cid, Instant::now() + Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let tried = loader.await.unwrap();
    let acked: Vec<(String, i64)> = tried
        .iter()
        .filter_map(|(t, id)| id.map(|id| (t.clone(), id)))
        .collect();
    assert!(
        acked.len() > 50,
        "load ran before the signal: {} acked",
        acked.len()
    );
    let rows = stored(&db.url).await;
    for (temp, id) in &acked {
        assert_eq!(
            rows.get(&format!("s:{temp}")),
            Some(id),
            "acknowledged {temp} is stored"
        );
    }
    eprintln!(
        "SIGTERM: {} sends, {} acked, {} rows",
        tried.len(),
        acked.len(),
        rows.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_retries_leave_exactly_one_row_per_send() {
    let db = pg::TestDb::create().await;
    kill_9_and_retry(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_sqlite_keeps_every_acknowledged_commit() {
    let dir = std::env::temp_dir().join(format!("chatwire-crash-{}", pg::random_suffix()));
    kill_9_and_retry(&format!("sqlite://{}", dir.join("chat.db").display())).await;
    let _ = std::fs::remove_dir_all(dir);
}

async fn kill_9_and_retry(url: &str) {
    let mut server = start(url).await;
    let cid = conversation(server.port).await;
    let loader = tokio::spawn(load(
        server.port,
        cid,
        Instant::now() + Duration::from_secs(3),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap(); // SIGKILL, in the middle of batches
    let _ = server.child.wait();
    let tried = loader.await.unwrap();
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut retry = Vec::new();
    for (temp, id) in &tried {
        match id {
            Some(id) => {
                acked.insert(temp.clone(), *id);
            }
            None => retry.push(temp.clone()),
        }
    }
    assert!(
        acked.len() > 50 && !retry.is_empty(),
        "acked {}, unacked {}",
        acked.len(),
        retry.len()
    );

    // Restart; clients retry what was not acknowledged, with the same tempId.
    let mut server = start(url).await;
    for temp in &retry {
        let id = loop {
            if let Some(id) = send(server.port, cid, temp).await {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        acked.insert(temp.clone(), id);
    }
    // Acknowledged before the kill: a retry answers with the same id (and stores nothing).
    for (temp, id) in acked.iter().take(20) {
        let again = loop {
            // (A refusal such as a rate limit is answered again later, like any client would.)
            if let Some(again) = send(server.port, cid, temp).await {
                break again;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(again, *id, "{temp} keeps its id");
    }
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let rows = stored(url).await;
    assert_eq!(
        rows.len(),
        acked.len(),
        "one row per send, no duplicates, nothing lost"
    );
    for (temp, id) in &acked {
        assert_eq!(rows.get(&format!("s:{temp}")), Some(id));
    }
    eprintln!(
        "kill -9: {} sends, {} retried, {} rows",
        tried.len(),
        retry.len(),
        rows.len()
    );
}
