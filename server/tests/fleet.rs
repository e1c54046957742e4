//! A fleet of nodes behind a load balancer without sticky sessions: every polling request and
//! the WebSocket upgrade of one client land on a different node than the one that owns its
//! session, and the session works (the node that receives a request passes it on to the owner
//! named in the sid). Three in-process servers on loopback, each with `CLUSTER_NODES`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "support/ports.rs"]
mod ports;

use std::net::SocketAddr;
use std::time::Duration;

use ports::free_ports;

use chatwire::config::Config;
use chatwire_protocol::engine::sid::Sid;
use common::{TestServer, http, poll_get, poll_post, polling_open, ws_open};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const ROOT: &str = "/socket.io/";

/// Starts one node per `(id, port)` with `list` as its `CLUSTER_NODES`.
async fn node(id: u16, port: u16, list: &[String], tweak: fn(&mut Config)) -> TestServer {
    let list = list.to_vec();
    TestServer::with(move |c| {
        c.port = port;
        c.node_id = Some(id);
        c.cluster_nodes = list;
        tweak(c);
    })
    .await
}

/// `n` nodes with ids 1..=n, each listing all of them.
async fn fleet(n: usize, tweak: fn(&mut Config)) -> Vec<TestServer> {
    let ports = free_ports(n);
    let list: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect();
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        nodes.push(node(u16::try_from(i + 1).unwrap(), *port, &list, tweak).await);
    }
    nodes
}

/// Packets of a polling GET answer.
fn packets(body: &str) -> Vec<String> {
    body.split('\u{1e}').map(str::to_owned).collect()
}

/// A polling client whose every request goes to the next node, like a round-robin load
/// balancer without sticky sessions.
struct RoundRobin {
    /// The nodes.
    addrs: Vec<SocketAddr>,
    /// How many requests were sent (the next goes to `addrs[turn % len]`).
    turn: usize,
    /// The session.
    sid: String,
    /// Packets received but not yet looked at.
    backlog: std::collections::VecDeque<String>,
}

impl RoundRobin {
    /// The node for the next request.
    fn next(&mut self) -> SocketAddr {
        let addr = self.addrs[self.turn % self.addrs.len()];
        self.turn += 1;
        addr
    }

    /// Sends packets in one POST to the next node.
    async fn post(&mut self, body: &str) {
        let addr = self.next();
        let r = poll_post(addr, ROOT, &self.sid, body).await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "post on {addr}");
    }

    /// Polls until a packet containing `needle` arrives; answers pings.
    async fn until(&mut self, needle: &str) -> String {
        for _ in 0..20 {
            while let Some(p) = self.backlog.pop_front() {
                if p == "2" {
                    self.post("3").await;
                }
                if p.contains(needle) {
                    return p;
                }
            }
            let addr = self.next();
            let r = poll_get(addr, ROOT, &self.sid).await;
            assert_eq!(r.status, 200, "poll on {addr}: {}", r.text());
            self.backlog.extend(packets(&r.text()));
        }
        panic!("no packet with {needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_requests_spread_over_nodes_reach_the_session() {
    let nodes = fleet(3, |_| {}).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (sid, _) = polling_open(addrs[0], ROOT).await;
    assert_eq!(Sid::parse(&sid).unwrap().node(), 1, "node 1 made {sid}");
    // Connect /chat on node 2, read the answers on node 3, and so on round-robin.
    let mut client = RoundRobin {
        addrs: addrs.clone(),
        turn: 1,
        sid: sid.clone(),
        backlog: Default::default(),
    };
    client.post(r#"40/chat,{"token":"5:brand"}"#).await;
    let connected = client.until("40/chat,").await;
    assert!(connected.starts_with("40/chat,{\"sid\":"), "{connected}");
    client.until("connection:success").await;
    // Events both ways, each request on another node.
    let ask = r#"42/chat,["user:check:online",{"userId":5,"userType":"brand"}]"#;
    for _ in 0..6 {
        client.post(ask).await;
        let answer = client.until("user:online:status").await;
        assert!(answer.contains("\"isOnline\":true"), "{answer}");
    }
    // A request that says it was forwarded already is answered by the node it reached, which
    // does not own the session: a client naming the header only loses that request.
    let r = http(
        addrs[1],
        "POST",
        &format!("{ROOT}?EIO=4&transport=polling&sid={sid}"),
        "X-Chatwire-Forwarded: 1\r\nContent-Type: text/plain\r\n",
        ask.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    client.post(ask).await;
    client.until("user:online:status").await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_on_another_node_is_proxied_to_the_owner() {
    let nodes = fleet(3, |c| {
        c.ping_interval_ms = 400;
        c.ping_timeout_ms = 300;
    })
    .await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (sid, _) = polling_open(addrs[0], ROOT).await;
    let mut client = RoundRobin {
        addrs: addrs.clone(),
        turn: 2,
        sid: sid.clone(),
        backlog: Default::default(),
    };
    client.post(r#"40/chat,{"token":"6:brand"}"#).await;
    client.until("connection:success").await;
    // The WebSocket lands on node 2; a long poll waits on node 3 meanwhile.
    let mut ws = ws_open(
        addrs[1],
        &format!("{ROOT}?EIO=4&transport=websocket&sid={sid}"),
        &[],
    )
    .await
    .expect("node 2 answers 101 for node 1's session");
    let (poll_addr, sid2) = (addrs[2], sid.clone());
    let pending = tokio::spawn(async move { poll_get(poll_addr, ROOT, &sid2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(Message::Text("2probe".into())).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong.to_text().unwrap(), "3probe");
    let ended = pending.await.unwrap().text();
    assert!(
        ended == "6" || ended.ends_with("\u{1e}6") || ended == "2",
        "{ended}"
    );
    ws.send(Message::Text("5".into())).await.unwrap();
    // Past several heartbeats (pings out, pongs in, through the proxy) the session still
    // answers events.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, ws.next()).await {
        if frame.to_text().unwrap_or("") == "2" {
            pings += 1;
            ws.send(Message::Text("3".into())).await.unwrap();
        }
    }
    assert!(pings >= 2, "pings through the proxy: {pings}");
    ws.send(Message::Text(
        r#"42/chat,["user:check:online",{"userId":6,"userType":"brand"}]"#.into(),
    ))
    .await
    .unwrap();
    let mut answered = false;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        let text = frame.to_text().unwrap_or("").to_owned();
        if text == "2" {
            ws.send(Message::Text("3".into())).await.unwrap();
        } else if text.contains("user:online:status") {
            assert!(text.contains("\"isOnline\":true"), "{text}");
            answered = true;
            break;
        }
    }
    assert!(answered, "the upgraded session answers through the proxy");
    // Polling for it is now refused by the owner, through any node.
    assert_eq!(poll_get(addrs[2], ROOT, &sid).await.status, 400);
    // A second WebSocket for it, through node 3: the owner accepts and closes it at once.
    let mut again = ws_open(
        addrs[2],
        &format!("{ROOT}?EIO=4&transport=websocket&sid={sid}"),
        &[],
    )
    .await
    .expect("accepted, then closed");
    let first = tokio::time::timeout(Duration::from_secs(2), again.next())
        .await
        .expect("closed at once");
    assert!(
        matches!(first, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{first:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_unreachable_owners_answer_session_id_unknown() {
    let mut nodes = fleet(3, |_| {}).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let unknown = r#"{"code":1,"message":"Session ID unknown"}"#;
    // A node no one lists.
    let stray = Sid::new_on_node([9; 12], 0, 77).to_string();
    let r = poll_get(addrs[0], ROOT, &stray).await;
    assert_eq!((r.status, r.text().as_str()), (400, unknown));
    assert_eq!(
        ws_open(
            addrs[0],
            &format!("{ROOT}?EIO=4&transport=websocket&sid={stray}"),
            &[]
        )
        .await
        .err(),
        Some(400)
    );
    // A session node 3 made, asked for on node 1 after node 3 stopped.
    let (sid, _) = polling_open(addrs[2], ROOT).await;
    nodes.pop().unwrap().stop().await;
    let started = std::time::Instant::now();
    let r = poll_get(addrs[0], ROOT, &sid).await;
    assert_eq!((r.status, r.text().as_str()), (400, unknown));
    let r = poll_post(addrs[1], ROOT, &sid, "40").await;
    assert_eq!((r.status, r.text().as_str()), (400, unknown));
    assert_eq!(
        ws_open(
            addrs[0],
            &format!("{ROOT}?EIO=4&transport=websocket&sid={sid}"),
            &[]
        )
        .await
        .err(),
        Some(400)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_never_forwarded_again() {
    // Two nodes that disagree: node 1 puts node 2 at B's address, B (node 3) puts node 2 at
    // A's. Without the loop guard a request for a node-2 session would bounce between them.
    let ports = free_ports(2);
    let a = format!("127.0.0.1:{}", ports[0]);
    let b = format!("127.0.0.1:{}", ports[1]);
    // No per-address connection limit: it would end a loop by itself after 200 connections.
    let unlimited = |c: &mut Config| c.rate_limit_conn_per_ip = 0;
    let node_a = node(
        1,
        ports[0],
        &[format!("1={a}"), format!("2={b}")],
        unlimited,
    )
    .await;
    let node_b = node(
        3,
        ports[1],
        &[format!("3={b}"), format!("2={a}")],
        unlimited,
    )
    .await;
    let sid = Sid::new_on_node([3; 12], 0, 2).to_string();
    let r = poll_get(node_a.addr, ROOT, &sid).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.text(), r#"{"code":1,"message":"Session ID unknown"}"#);
    assert_eq!(
        ws_open(
            node_a.addr,
            &format!("{ROOT}?EIO=4&transport=websocket&sid={sid}"),
            &[]
        )
        .await
        .err(),
        Some(400)
    );
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_missing_from_its_own_list_refuses_to_start() {
    let mut config = Config::for_tests();
    config.cluster_nodes = vec!["1=127.0.0.1:1".into(), "2=127.0.0.1:2".into()];
    let err = chatwire::Server::start(&config, chatwire::Mode::Chat)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("set NODE_ID"), "{err}");
}
