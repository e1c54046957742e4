//! Several nodes through Redis: a throwaway `redis-server` on a free port (pub/sub is global, so
//! never the shared 6379), three chatwire nodes on one PostgreSQL database, clients on different
//! nodes. Checks the chat contract across nodes (messages, notifications, typing and its 6 s
//! auto-stop, presence, `user:check:online`) and that a node counts one PUBLISH per broadcast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/redis.rs"]
mod redis_support;

use std::time::Duration;

use chatwire::config::Config;
use chatwire::{Mode, Server};
use common::{Client, TestServer, brand, influencer};
use serde_json::json;

async fn node(db: &str, redis_url: &str) -> TestServer {
    let mut config = Config::for_tests();
    config.database_url = db.to_owned();
    config.redis_url = Some(redis_url.to_owned());
    let server = Server::start(&config, Mode::Chat)
        .await
        .expect("node starts");
    let addr = server.addr;
    TestServer { server, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_chat_contract() {
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let n0 = node(&db.url, &redis.url()).await;
    let n1 = node(&db.url, &redis.url()).await;
    let n2 = node(&db.url, &redis.url()).await;
    let (a, b, c) = (brand(1), influencer(2), influencer(3));
    let cid = n0.group(a, &[b, c]).await;
    // Let the nodes' subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Presence: b's first socket anywhere is announced to a on another node.
    let (mut ca, _) = Client::chat(n0.addr, a).await;
    let (mut cb, _) = Client::chat(n1.addr, b).await;
    let on = ca.event("user:online").await;
    assert_eq!(on, json!({"userId": 2, "userType": "influencer"}));
    let (mut cc, _) = Client::chat(n2.addr, c).await;
    assert_eq!(
        ca.event("user:online").await,
        json!({"userId": 3, "userType": "influencer"})
    );
    // A second socket of b on yet another node announces nothing.
    let (cb2, _) = Client::chat(n2.addr, b).await;
    ca.no_event("user:online", Duration::from_millis(500)).await;

    // user:check:online answers for users on other nodes.
    ca.emit(
        "user:check:online",
        json!({"userId": 3, "userType": "influencer"}),
    )
    .await;
    assert_eq!(
        ca.event("user:online:status").await["isOnline"],
        json!(true)
    );

    ca.join(cid).await;
    cb.join(cid).await;
    cc.join(cid).await;

    // A message committed on n0 reaches the room on n1 and n2; b's socket outside the room (on
    // n2) gets no notification (b has a socket in the room), and nobody else does either.
    ca.emit(
        "message:send",
        json!({"conversationId": cid, "content": "hello", "tempId": "t1"}),
    )
    .await;
    let sent = ca.event("message:sent").await;
    let new_b = cb.event("message:new").await;
    let new_c = cc.event("message:new").await;
    assert_eq!(new_b["id"], sent["message"]["id"]);
    assert_eq!(new_c["content"], json!("hello"));

    // Notification to a participant online elsewhere but not in the room.
    cc.emit("conversation:leave", json!({"conversationId": cid}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cb.emit(
        "message:send",
        json!({"conversationId": cid, "content": "you there?", "tempId": "t2"}),
    )
    .await;
    let note = cc.event("message:notification").await;
    assert_eq!(note["conversationId"], json!(cid));
    assert_eq!(note["message"]["content"], json!("you there?"));
    assert_eq!(
        ca.event("message:new").await["content"],
        json!("you there?")
    );

    // Typing crosses nodes, and stops by itself 6 s after the last typing:start.
    cb.emit("typing:start", json!({"conversationId": cid}))
        .await;
    let t = ca.event("typing:start").await;
    assert_eq!(t["user"], json!({"userId": 2, "userType": "influencer"}));
    let started = std::time::Instant::now();
    // (A client waits at most 5 s for one frame.)
    ca.no_event("typing:stop", Duration::from_secs(4)).await;
    let stop = ca.event("typing:stop").await;
    assert_eq!(stop["conversationId"], json!(cid));
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "auto-stop after ~6 s"
    );

    // Read receipts cross nodes.
    let last = new_b["id"].as_i64().unwrap();
    cb.emit(
        "message:read",
        json!({"conversationId": cid, "messageId": last}),
    )
    .await;
    let read = ca.event("message:read").await;
    assert_eq!(
        read["readBy"],
        json!({"userId": 2, "userType": "influencer"})
    );

    // Offline only after b's last socket anywhere.
    drop(cb);
    ca.no_event("user:offline", Duration::from_millis(800))
        .await;
    drop(cb2);
    assert_eq!(
        ca.event("user:offline").await,
        json!({"userId": 2, "userType": "influencer"})
    );
    ca.emit(
        "user:check:online",
        json!({"userId": 2, "userType": "influencer"}),
    )
    .await;
    assert_eq!(
        ca.event("user:online:status").await["isOnline"],
        json!(false)
    );

    // One PUBLISH per broadcast: 5 room messages from a produce 5 PUBLISHes on the broadcast
    // channels (plus one notification message for c on chatwire's own channel each).
    let before = redis.publish_calls();
    for i in 0..5 {
        ca.emit(
            "message:send",
            json!({"conversationId": cid, "content": format!("m{i}"), "tempId": format!("p{i}")}),
        )
        .await;
        ca.event("message:sent").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = redis.publish_calls() - before;
    eprintln!("PUBLISH calls for 5 messages (3 nodes): {published}");
    // 5 message:new + 5 notifications (c left the room) + heartbeats of 3 nodes (one per 2 s).
    assert!(
        (10..=10 + 6).contains(&published),
        "PUBLISH calls for 5 messages: {published}"
    );
    drop(cc);
    n0.stop().await;
    n1.stop().await;
    n2.stop().await;
}

/// Redis killed and restarted on its port: local delivery never stops, cross-node delivery comes
/// back by itself (reconnect, resubscribe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_local_goes_on_and_cross_node_resumes() {
    chatwire::telemetry::install_metrics();
    let mut redis = redis_support::TestRedis::start();
    let port = redis.port;
    let db = pg::TestDb::create().await;
    let n0 = node(&db.url, &redis.url()).await;
    let n1 = node(&db.url, &redis.url()).await;
    let (a, b, c) = (brand(11), influencer(12), influencer(13));
    let cid = n0.group(a, &[b, c]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut ca, _) = Client::chat(n0.addr, a).await;
    let (mut cb, _) = Client::chat(n1.addr, b).await;
    let (mut cc, _) = Client::chat(n0.addr, c).await;
    for cl in [&mut ca, &mut cb, &mut cc] {
        cl.join(cid).await;
    }
    ca.emit("typing:start", json!({"conversationId": cid}))
        .await;
    cb.event("typing:start").await;
    cc.event("typing:start").await;

    // Anything may arrive on the channels: malformed, unknown or oversize messages are dropped
    // and counted; the nodes go on.
    let before = metrics(n0.addr).await;
    redis.publish_raw("socket.io-request#/chat#", b"not json");
    redis.publish_raw(
        "socket.io-request#/chat#",
        br#"{"type":99,"requestId":"x"}"#,
    );
    redis.publish_raw("socket.io#/chat#", b"{garbage");
    redis.publish_raw("socket.io#/chat#conversation:1#", &[0x93, 0xa1, b'a', 0xc1]);
    redis.publish_raw("socket.io-chatwire#/chat#", b"\x00\x01");
    redis.publish_raw("socket.io#/chat#", &vec![b'x'; 2 << 20]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = metrics(n0.addr).await;
    let grew = |reason: &str, by: f64| {
        let key = format!("chatwire_redis_dropped_total{{reason=\"{reason}\"}}");
        let d = counter(&after, &key) - counter(&before, &key);
        assert!(d >= by, "{key} grew by {d}, expected {by} (2 nodes)");
    };
    grew("malformed", 2.0 * 4.0);
    grew("unsupported", 2.0);
    grew("oversize", 2.0);
    ca.emit("typing:stop", json!({"conversationId": cid})).await;
    cb.event("typing:stop").await;

    let ready = common::http(n0.addr, "GET", "/readyz", "", b"").await;
    assert!(
        ready.text().contains("ready; redis connected"),
        "{}",
        ready.text()
    );

    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ca.emit("typing:start", json!({"conversationId": cid}))
        .await;
    cc.event("typing:start").await;
    ca.emit("typing:stop", json!({"conversationId": cid})).await;
    cc.event("typing:stop").await;
    // Reported, not fatal: the node still serves its own clients.
    let ready = common::http(n0.addr, "GET", "/readyz", "", b"").await;
    assert!(
        ready.status == 200
            && ready
                .text()
                .contains("redis disconnected: cross-node delivery paused"),
        "{}",
        ready.text()
    );
    // The gauge is process-wide and this test binary runs other nodes beside these, so only
    // its presence is checked here; /readyz is per node.
    assert!(
        metrics(n0.addr).await.contains("chatwire_redis_connected"),
        "/metrics reports the Redis connection"
    );

    let _redis = redis_support::TestRedis::start_on(port);
    // Reconnect backoff is at most 2 s; cross-node delivery resumes without any client action.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        ca.emit("typing:start", json!({"conversationId": cid}))
            .await;
        if tokio::time::timeout(Duration::from_millis(500), cb.event("typing:start"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cross-node delivery did not resume within 10 s of Redis coming back"
        );
    }
    let ready = common::http(n0.addr, "GET", "/readyz", "", b"").await;
    assert!(
        ready.text().contains("ready; redis connected"),
        "{}",
        ready.text()
    );
    drop((ca, cb, cc));
    n0.stop().await;
    n1.stop().await;
}

/// A node binary with `REDIS_URL`, on a free port; killed (SIGKILL) on drop.
struct NodeProcess {
    child: std::process::Child,
    port: u16,
}

impl NodeProcess {
    async fn start(db: &str, redis_url: &str) -> NodeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_chatwire"))
            .env("DATABASE_URL", db)
            .env("REDIS_URL", redis_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SHARDS", "2")
            .env("DEV_TOKENS", "true")
            .env_remove("JWT_SECRET")
            .env_remove("JWT_PUBLIC_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < until, "node did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        NodeProcess { child, port }
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A node killed with SIGKILL while one of its clients sends: every message it acknowledged is
/// in PostgreSQL and reached the other node's client, that client hears `user:offline` within
/// 15 s (the dead node's heartbeats stop), and the sender reconnects to the surviving node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_a_message_flow() {
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let n0 = node(&db.url, &redis.url()).await;
    let mut n1 = NodeProcess::start(&db.url, &redis.url()).await;
    let (a, b) = (brand(21), influencer(22));
    let cid = n0.group(a, &[b]).await;
    let (mut ca, _) = Client::chat(n0.addr, a).await;
    ca.join(cid).await;
    let (mut cb, _) = Client::chat(n1.addr(), b).await;
    cb.join(cid).await;
    ca.event("user:online").await;

    // b sends without waiting; acknowledged ids are collected until the connection dies.
    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..10_000u32 {
            cb.emit(
                "message:send",
                json!({"conversationId": cid, "content": format!("k{i}"), "tempId": i}),
            )
            .await;
            loop {
                let Some(f) = cb.next_raw().await else {
                    return acked;
                };
                if f.starts_with("42/chat,[\"message:sent\",") {
                    acked.push(common::args(&f)[1]["message"]["id"].as_i64().unwrap());
                    break;
                }
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    n1.kill9();
    let killed = std::time::Instant::now();
    let acked = sender.await.unwrap();
    assert!(
        acked.len() > 5,
        "messages flowed before the kill: {}",
        acked.len()
    );

    // Every acknowledged message is stored ...
    let stored: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM messages WHERE conversation_id = $1 ORDER BY id")
            .bind(cid)
            .fetch_all(
                &mut <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                    .await
                    .unwrap(),
            )
            .await
            .unwrap();
    let stored: std::collections::HashSet<i64> = stored.into_iter().map(|r| r.0).collect();
    for id in &acked {
        assert!(stored.contains(id), "acknowledged message {id} is stored");
    }
    // ... and a, on the other node, got them live in id order (all but possibly the last few
    // the dead node had not yet handed to Redis: those are in the history a client reloads).
    let mut seen = Vec::new();
    while let Ok(m) =
        tokio::time::timeout(Duration::from_millis(300), ca.event("message:new")).await
    {
        seen.push(m["id"].as_i64().unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "id order: {seen:?}");
    let live = acked.iter().filter(|id| seen.contains(id)).count();
    assert!(
        live + 50 >= acked.len(),
        "live {live} of {} acked",
        acked.len()
    );

    // The dead node's user goes offline within 15 s.
    loop {
        match tokio::time::timeout(Duration::from_secs(4), ca.event("user:offline")).await {
            Ok(v) => {
                assert_eq!(v, json!({"userId": 22, "userType": "influencer"}));
                break;
            }
            Err(_) => assert!(
                killed.elapsed() < Duration::from_secs(15),
                "user:offline within 15 s of the kill"
            ),
        }
    }
    assert!(killed.elapsed() < Duration::from_secs(15));
    eprintln!(
        "kill -9: {} acked, {live} of them live on the other node, user:offline after {:?}",
        acked.len(),
        killed.elapsed()
    );

    // b reconnects to the surviving node.
    let (_cb, _) = Client::chat(n0.addr, b).await;
    assert_eq!(
        ca.event("user:online").await,
        json!({"userId": 22, "userType": "influencer"})
    );
    n0.stop().await;
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    common::http(addr, "GET", "/metrics", "", b"").await.text()
}

/// The value of a metric line `name value` (0 when absent).
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The ids of `message:new` and `message:sent` frames, in arrival order, until `count` are in
/// (or the client stays silent for 5 s).
async fn message_ids(client: &mut Client, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let Some(f) = client.next_raw().await else {
            break;
        };
        if f.starts_with("42/chat,[\"message:new\",") {
            ids.push(common::args(&f)[1]["id"].as_i64().unwrap());
        } else if f.starts_with("42/chat,[\"message:sent\",") {
            ids.push(common::args(&f)[1]["message"]["id"].as_i64().unwrap());
        }
    }
    ids
}

/// Two senders on two nodes write to one conversation at once: every client, on either
/// sending node or a third, sees the conversation in id order (PostgreSQL commits it in id
/// order and gives each message its predecessor; each room owner releases a message once its
/// predecessor is out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_two_nodes_are_seen_in_id_order() {
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let tweak = |c: &mut Config| {
        c.rate_limit_per_socket = 0;
        c.rate_limit_per_user = 0;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let mut config = Config::for_tests();
        config.database_url = db.url.clone();
        config.redis_url = Some(redis.url());
        tweak(&mut config);
        let server = Server::start(&config, Mode::Chat).await.unwrap();
        nodes.push(TestServer {
            addr: server.addr,
            server,
        });
    }
    let (a, b, c) = (brand(31), influencer(32), influencer(33));
    let cid = nodes[0].group(a, &[b, c]).await;
    let (mut ca, _) = Client::chat(nodes[0].addr, a).await;
    let (mut cb, _) = Client::chat(nodes[1].addr, b).await;
    let (mut cc, _) = Client::chat(nodes[2].addr, c).await;
    for cl in [&mut ca, &mut cb, &mut cc] {
        cl.join(cid).await;
    }
    let n = 40;
    for i in 0..n {
        for (cl, tag) in [(&mut ca, "a"), (&mut cb, "b")] {
            cl.emit(
                "message:send",
                json!({"conversationId": cid, "content": "x", "tempId": format!("{tag}{i}")}),
            )
            .await;
        }
    }
    let (sa, sb, sc) = tokio::join!(
        message_ids(&mut ca, 2 * n),
        message_ids(&mut cb, 2 * n),
        message_ids(&mut cc, 2 * n)
    );
    for (who, ids) in [
        ("a (node 0)", &sa),
        ("b (node 1)", &sb),
        ("c (node 2)", &sc),
    ] {
        assert_eq!(ids.len(), 2 * n, "{who} got every message");
        let inversions = ids.windows(2).filter(|w| w[0] >= w[1]).count();
        assert_eq!(inversions, 0, "{who} sees id order: {ids:?}");
    }
    for node in nodes {
        node.stop().await;
    }
}

/// Connects `user` to `/chat` on two nodes at the same moment: both Engine.IO sessions are
/// opened first, then both CONNECT packets go out together.
async fn connect_twice_at_once(
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    user: chatwire::store::UserKey,
) -> (Client, Client) {
    let (mut ca, mut cb) = tokio::join!(Client::connect(a), Client::connect(b));
    let connect = format!(r#"40/chat,{{"token":"{}"}}"#, common::token(user));
    tokio::join!(ca.send(&connect), cb.send(&connect));
    tokio::join!(
        ca.event("connection:success"),
        cb.event("connection:success")
    );
    (ca, cb)
}

/// What a watcher heard about `user` since the last call: exactly one `event`, then nothing
/// more of it for 300 ms; then `user:check:online` answers `online`.
async fn hears_once(w: &mut Client, event: &str, online: bool, round: usize) {
    let got = tokio::time::timeout(Duration::from_secs(5), w.event(event))
        .await
        .unwrap_or_else(|_| panic!("round {round}: no {event}"));
    assert_eq!(got, json!({"userId": 61, "userType": "influencer"}));
    for name in ["user:online", "user:offline"] {
        w.no_event(name, Duration::from_millis(300)).await;
    }
    w.emit(
        "user:check:online",
        json!({"userId": 61, "userType": "influencer"}),
    )
    .await;
    assert_eq!(
        w.event("user:online:status").await["isOnline"],
        json!(online),
        "round {round}: state after {event}"
    );
}

/// Two sockets of one user connect at the same moment on two different nodes, then both
/// disconnect at once, 20 times: a watcher on each of three nodes hears exactly one
/// `user:online` and, once both are gone, exactly one `user:offline` each round, and ends with
/// the right state (each node announces cluster-wide changes to its own sockets only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_first_sockets_on_two_nodes_announce_once() {
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&db.url, &redis.url()).await);
    }
    let u = influencer(61);
    let mut watchers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let w = brand(62 + i64::try_from(i).unwrap());
        n.direct(u, w).await;
        watchers.push(Client::chat(n.addr, w).await.0);
    }
    // Let the nodes' subscriptions and snapshots settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 0..20 {
        let (c0, c1) = connect_twice_at_once(nodes[0].addr, nodes[1].addr, u).await;
        let [w0, w1, w2] = &mut watchers[..] else {
            unreachable!()
        };
        tokio::join!(
            hears_once(w0, "user:online", true, round),
            hears_once(w1, "user:online", true, round),
            hears_once(w2, "user:online", true, round),
        );
        drop((c0, c1));
        tokio::join!(
            hears_once(w0, "user:offline", false, round),
            hears_once(w1, "user:offline", false, round),
            hears_once(w2, "user:offline", false, round),
        );
    }
    drop(watchers);
    for n in nodes {
        n.stop().await;
    }
}

/// `message:notification` goes to participants with no socket in the room on any node: user U
/// with socket 1 in the room on node 0 and socket 2 outside it on node 1 gets no notification on
/// socket 2, whichever node the message comes from; once socket 1 leaves the room, the next
/// message notifies socket 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_judges_the_room_across_nodes() {
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&db.url, &redis.url()).await);
    }
    let (a, u) = (brand(71), influencer(72));
    let cid = nodes[0].direct(a, u).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut u1, _) = Client::chat(nodes[0].addr, u).await;
    let (mut u2, _) = Client::chat(nodes[1].addr, u).await;
    u1.join(cid).await;
    // The sender on a third node, and a second device of the sender on socket 2's node.
    let (mut a2, _) = Client::chat(nodes[2].addr, a).await;
    let (mut a1, _) = Client::chat(nodes[1].addr, a).await;
    // Let the join reach the other nodes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (sender, content) in [(&mut a2, "from node 2"), (&mut a1, "from node 1")] {
        sender
            .emit(
                "message:send",
                json!({"conversationId": cid, "content": content}),
            )
            .await;
        sender.event("message:sent").await;
        assert_eq!(u1.event("message:new").await["content"], json!(content));
        u2.no_event("message:notification", Duration::from_millis(500))
            .await;
    }
    u1.emit("conversation:leave", json!({"conversationId": cid}))
        .await;
    u1.event("conversation:left").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a2.emit(
        "message:send",
        json!({"conversationId": cid, "content": "now?"}),
    )
    .await;
    let note = u2.event("message:notification").await;
    assert_eq!(note["conversationId"], json!(cid));
    assert_eq!(note["message"]["content"], json!("now?"));
    // Socket 1 is out of the room too now: it is notified as well.
    assert_eq!(
        u1.event("message:notification").await["message"]["content"],
        json!("now?")
    );
    drop((u1, u2, a1, a2));
    for n in nodes {
        n.stop().await;
    }
}

/// Node B's word that a user left a room reaches node A about a Redis round trip late, and a
/// message committed meanwhile is judged on A with the user still in the room on B: A sends
/// the user's other socket no notification, while B's socket left before the message reached
/// it. B's leave names the newest message it had handed the room; A then sends what it held
/// back for later messages. Node B is played here by the test, on the node channel, so the
/// late leave comes exactly when the test says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_leave_elsewhere_brings_back_the_notifications_held_for_it() {
    use chatwire_cluster::redis::wire::{NodeMsg, WireUser};
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let node_a = node(&db.url, &redis.url()).await;
    let (a, u) = (brand(81), influencer(82));
    let cid = node_a.direct(a, u).await;
    let (mut sender, _) = Client::chat(node_a.addr, a).await;
    let (mut other_device, _) = Client::chat(node_a.addr, u).await;
    const RECHECK_SENT: &str = "chatwire_notify_recheck_sent_total";
    let sent_before = counter(&metrics(node_a.addr).await, RECHECK_SENT);
    let channel = "socket.io-chatwire#/chat#";
    let node_b = |in_room: bool, seen: Option<i64>| {
        redis.publish_raw(
            channel,
            &NodeMsg::Room {
                node: "node-b".into(),
                conversation: cid,
                user: WireUser::from(u),
                in_room,
                seen,
            }
            .to_bytes(),
        );
    };
    let mut send = async |content: &str| -> i64 {
        sender
            .emit(
                "message:send",
                json!({"conversationId": cid, "content": content}),
            )
            .await;
        sender.event("message:sent").await["message"]["id"]
            .as_i64()
            .unwrap()
    };

    // In the room on B: nothing here. B had handed the room the first message when the user
    // left: only the second one is due, once.
    node_b(true, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = send("seen on b").await;
    let _second = send("not seen on b").await;
    other_device
        .no_event("message:notification", Duration::from_millis(500))
        .await;
    node_b(false, Some(first));
    let note = other_device.event("message:notification").await;
    assert_eq!(note["message"]["content"], json!("not seen on b"));
    other_device
        .no_event("message:notification", Duration::from_millis(500))
        .await;

    // B had handed it everything: nothing is due.
    node_b(true, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = send("all seen on b").await;
    other_device
        .no_event("message:notification", Duration::from_millis(500))
        .await;
    node_b(false, Some(third));
    other_device
        .no_event("message:notification", Duration::from_millis(700))
        .await;

    // A node that cannot say what it handed out (an older release): all of it is due.
    node_b(true, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    send("unknown on b").await;
    other_device
        .no_event("message:notification", Duration::from_millis(500))
        .await;
    node_b(false, None);
    let note = other_device.event("message:notification").await;
    assert_eq!(note["message"]["content"], json!("unknown on b"));
    // Counted (the registry is the test process's: other tests may add to it meanwhile).
    let sent = counter(&metrics(node_a.addr).await, RECHECK_SENT) - sent_before;
    assert!(sent >= 2.0, "{RECHECK_SENT} rose by {sent}");
    drop((sender, other_device));
    node_a.stop().await;
}
