//! The real `socket.io-client` (Node) against three chatwire nodes behind a round-robin front
//! (`scripts/cluster-front.js`, the front of `make cluster`: every request to the next node, as
//! nginx without `ip_hash`): sessions work over polling and through the upgrade although most
//! requests reach a node that does not own the session. Script: `tests/interop/fleet_client.js`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "interop/harness.rs"]
mod harness;
#[path = "support/ports.rs"]
mod ports;

use std::process::Stdio;
use std::time::Duration;

use ports::free_ports;

use harness::*;

/// One sample of a counter in Prometheus text (0 when absent).
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_through_a_round_robin_front() {
    ensure_clients();
    let ports = free_ports(4);
    let list: Vec<String> = ports[1..]
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect();
    let mut nodes = Vec::new();
    for (i, port) in ports[1..].iter().enumerate() {
        let list = list.clone();
        nodes.push(
            start_server_with(move |c| {
                c.port = *port;
                c.node_id = Some(u16::try_from(i + 1).unwrap());
                c.cluster_nodes = list;
                c.ping_interval_ms = 300;
                c.ping_timeout_ms = 1000;
            })
            .await,
        );
    }
    let mut front = tokio::process::Command::new(node())
        .arg(root().join("scripts/cluster-front.js"))
        .arg(ports[0].to_string())
        .args(list.iter().map(|e| e.split('=').nth(1).unwrap()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the front");
    let front_addr: std::net::SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(front_addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the front did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = render();
    let report = run_script(&node(), "fleet_client.js", &[], &base_url(front_addr), &[]).await;
    report.assert_passed(&[
        "polling client connected",
        "polling client: 6 events answered",
        "polling client after heartbeats: 2 events answered",
        "polling client stayed on polling",
        "upgrading client 1 upgraded to websocket",
        "upgrading client 3: 4 events answered",
        "upgrading client 3 after heartbeats: 1 events answered",
    ]);
    // Most polling requests reached a node that did not own their session and were passed on.
    let after = render();
    let series = r#"chatwire_forwarded_total{kind="poll",outcome="ok"}"#;
    let polls = counter(&after, series) - counter(&before, series);
    let ws_series = r#"chatwire_forwarded_total{kind="websocket",outcome="ok"}"#;
    let upgrades = counter(&after, ws_series) - counter(&before, ws_series);
    eprintln!("forwarded: {polls} polling requests, {upgrades} upgrades");
    assert!(
        polls >= 6,
        "polling requests passed on to their owner: {polls}"
    );
    let _ = front.kill().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// This process's metrics (every in-process node shares one recorder).
fn render() -> String {
    chatwire::telemetry::render_metrics()
}
