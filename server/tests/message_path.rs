//! The message path end to end: every socket receives a conversation's events in id order, its
//! own `message:sent` included, while two participants on different shards send at once (memory
//! store, inline commits; SQLite, through the batch writer); and the thread hops a message takes
//! (`chatwire_thread_hops_total`): none on one shard with the memory store, two with a database
//! (to the writer and back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pg.rs"]
mod pg;

mod common;

use std::time::Duration;

use common::{Client, TestServer, brand, influencer};
use serde_json::{Value, json};

const EACH: usize = 60;

/// Reads until `want` `message:new` + `message:sent` frames arrived; their message ids, in
/// arrival order.
async fn ids_in_arrival_order(c: &mut Client, want: usize) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut frames: Vec<String> = std::mem::take(&mut c.backlog);
    while out.len() < want {
        let f = match frames.is_empty() {
            false => frames.remove(0),
            true => c.next_raw().await.expect("connection open"),
        };
        let Some(body) = f.strip_prefix("42/chat,") else {
            continue;
        };
        let v: Value = serde_json::from_str(body).unwrap();
        match v[0].as_str() {
            Some("message:new") => out.push(("new".into(), v[1]["id"].as_i64().unwrap())),
            Some("message:sent") => {
                out.push(("sent".into(), v[1]["message"]["id"].as_i64().unwrap()))
            }
            _ => {}
        }
    }
    out
}

async fn concurrent_senders_see_id_order(s: TestServer) {
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    // Two shards: the kernel places each connection (SO_REUSEPORT); connect b until it lands on
    // the other shard than a (a socket id starts with its shard's index).
    let (mut ca, hello) = Client::chat(s.addr, a).await;
    let shard_of = |v: &Value| v["socketId"].as_str().unwrap_or("").chars().next();
    let mut cb = None;
    for _ in 0..40 {
        let (c, hi) = Client::chat(s.addr, b).await;
        if shard_of(&hi) != shard_of(&hello) {
            cb = Some(c);
            break;
        }
    }
    let mut cb = cb.expect("a connection on the other shard");
    for c in [&mut ca, &mut cb] {
        c.join(conv).await;
    }
    for i in 0..EACH {
        ca.emit(
            "message:send",
            json!({"conversationId": conv, "content": format!("a{i}"), "tempId": format!("a{i}")}),
        )
        .await;
        cb.emit(
            "message:send",
            json!({"conversationId": conv, "content": format!("b{i}"), "tempId": format!("b{i}")}),
        )
        .await;
    }
    for (name, c) in [("a", &mut ca), ("b", &mut cb)] {
        let seen = ids_in_arrival_order(c, 2 * EACH).await;
        let ids: Vec<i64> = seen.iter().map(|(_, id)| *id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{name} saw the conversation out of id order: {seen:?}"
        );
        assert_eq!(
            seen.iter().filter(|(k, _)| k == "sent").count(),
            EACH,
            "{name}: every send answered once"
        );
        assert_eq!(
            seen.iter().filter(|(k, _)| k == "new").count(),
            EACH,
            "{name}: every message of the other once"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_order_with_concurrent_senders_memory() {
    let s = TestServer::with(|c| {
        c.rate_limit_per_socket = 0;
        c.rate_limit_per_user = 0;
    })
    .await;
    concurrent_senders_see_id_order(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_order_with_concurrent_senders_sqlite() {
    let dir = std::env::temp_dir().join(format!("chatwire-order-{}", pg::random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("chat.db").display());
    let s = TestServer::with(|c| {
        c.rate_limit_per_socket = 0;
        c.rate_limit_per_user = 0;
        c.database_url = url;
    })
    .await;
    concurrent_senders_see_id_order(s).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Total `chatwire_thread_hops_total` so far.
fn hops() -> f64 {
    chatwire::telemetry::render_metrics()
        .lines()
        .filter(|l| l.starts_with("chatwire_thread_hops_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Total `chatwire_ws_direct_writes_total` so far.
fn direct_writes() -> f64 {
    chatwire::telemetry::render_metrics()
        .lines()
        .filter(|l| l.starts_with("chatwire_ws_direct_writes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends `n` messages from a to b on a one-shard server and returns the hops they took and
/// the WebSocket writes made straight from the shard.
async fn hops_per_message(s: &TestServer, n: usize) -> (f64, f64) {
    let (a, b) = (brand(5), influencer(6));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    for c in [&mut ca, &mut cb] {
        c.join(conv).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = hops();
    let direct_before = direct_writes();
    for i in 0..n {
        ca.emit(
            "message:send",
            json!({"conversationId": conv, "content": "x", "tempId": i}),
        )
        .await;
        ca.event("message:sent").await;
        cb.event("message:new").await;
    }
    (
        (hops() - before) / n as f64,
        direct_writes() - direct_before,
    )
}

/// One test (one process-wide metrics registry): memory first, then SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_hops_per_message_on_one_shard() {
    chatwire::telemetry::install_metrics();
    let s = TestServer::with(|c| c.shards = 1).await;
    let (memory, direct) = hops_per_message(&s, 20).await;
    s.stop().await;
    assert_eq!(
        memory, 0.0,
        "memory store, one shard: a message crosses no thread"
    );
    assert!(
        direct >= 20.0,
        "each message:new is written to the recipient's WebSocket straight from the shard: {direct} direct writes for 20"
    );

    let dir = std::env::temp_dir().join(format!("chatwire-hops-{}", pg::random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("chat.db").display());
    let s = TestServer::with(|c| {
        c.shards = 1;
        c.database_url = url;
    })
    .await;
    let (sqlite, direct) = hops_per_message(&s, 20).await;
    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(sqlite, 2.0, "database: shard -> writer -> shard");
    assert!(
        direct >= 40.0,
        "the committed message reaches both WebSockets (message:new, message:sent) straight from the shard: {direct} direct writes for 20 messages"
    );
}

/// Holds `user`'s participant row of `conversation` in an open transaction: their
/// `message:read` of it waits inside PostgreSQL until the transaction ends.
async fn hold_participant(
    db: &pg::TestDb,
    conversation: i64,
    user: chatwire_store::UserKey,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT 1 FROM participants WHERE conversation_id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(conversation)
    .bind(user.id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx
}

/// A client request that waits on the database (here `message:read`, held by a row lock the
/// test keeps) never delays what the shard delivers meanwhile to other clients: a read receipt
/// broadcast by a REST call on the same shard reaches its room at once, not when the slow
/// request ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_on_the_database_does_not_hold_back_other_deliveries() {
    let db = pg::TestDb::create().await;
    let s = TestServer::with(|c| {
        c.shards = 1;
        c.database_url = db.url.clone();
    })
    .await;
    let (a, b, c) = (brand(7), influencer(8), influencer(9));
    let slow = s.direct(a, b).await;
    let watched = s.direct(c, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    cb.join(watched).await;
    // A message for a to read in `slow`, one for c to read in `watched`.
    for conv in [slow, watched] {
        cb.emit(
            "message:send",
            json!({"conversationId": conv, "content": "hi", "tempId": conv}),
        )
        .await;
        cb.event("message:sent").await;
    }
    // Hold a's participant row: a's `message:read` waits inside PostgreSQL until we let go.
    let tx = hold_participant(&db, slow, a).await;
    ca.emit("message:read", json!({"conversationId": slow}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // c reads `watched` over REST: b's socket in that room gets the receipt.
    let started = std::time::Instant::now();
    let auth = format!("Authorization: Bearer {}\r\n", common::token(c));
    let put = common::http(
        s.addr,
        "PUT",
        &format!("/api/chat/conversations/{watched}/read"),
        &auth,
        b"",
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let receipt = cb.event("message:read").await;
    let waited = started.elapsed();
    assert_eq!(receipt["conversationId"], json!(watched), "{receipt}");
    assert!(
        waited < Duration::from_millis(1500),
        "the receipt waited {waited:?} for another client's request held in the database"
    );
    tx.rollback().await.unwrap();
    let done = ca.event("message:read:success").await;
    assert_eq!(done["conversationId"], json!(slow), "{done}");
    s.stop().await;
}

/// A server stopped while a client request waits inside the database shuts down without a
/// panic: the waiting request (and the pooled connection it holds) is dropped inside the shard's
/// runtime, where the pool can take its connection back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_while_a_request_waits_on_the_database_panics_nowhere() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SHARD_PANICS: AtomicUsize = AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("chatwire-shard"))
        {
            SHARD_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    let db = pg::TestDb::create().await;
    let s = TestServer::with(|c| {
        c.shards = 1;
        c.database_url = db.url.clone();
    })
    .await;
    let (a, b) = (brand(11), influencer(12));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    cb.emit(
        "message:send",
        json!({"conversationId": conv, "content": "hi", "tempId": 1}),
    )
    .await;
    cb.event("message:sent").await;
    let tx = hold_participant(&db, conv, a).await;
    ca.emit("message:read", json!({"conversationId": conv}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop().await;
    tx.rollback().await.unwrap();
    assert_eq!(
        SHARD_PANICS.load(Ordering::SeqCst),
        0,
        "a shard thread panicked while shutting down"
    );
}
