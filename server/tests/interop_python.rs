//! End-to-end with python-socketio (sync client, with websocket-client for WebSocket):
//! connect to `/chat` with a dev token, join, send with an ack, receive on a second client,
//! connect_error for a bad token; over long-polling only, WebSocket only, and polling with
//! upgrade. Script: `tests/interop/python_client.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "interop/harness.rs"]
mod harness;

use harness::*;

/// Runs the python client over `mode` (`polling`, `websocket` or `default`).
async fn python_client(mode: &str) {
    ensure_clients();
    let server = start_server().await;
    let id = create_direct(server.addr, (31, "influencer"), (32, "brand")).await;
    let envs = [
        ("CONVERSATION_ID", id.to_string()),
        ("A_ID", "31".into()),
        ("A_TYPE", "influencer".into()),
        ("B_ID", "32".into()),
        ("B_TYPE", "brand".into()),
    ];
    let report = run_script(
        &python(),
        "python_client.py",
        &[mode],
        &base_url(server.addr),
        &envs,
    )
    .await;
    let transport = if mode == "polling" {
        "polling"
    } else {
        "websocket"
    };
    report.assert_passed(&[
        &format!("A transport is {transport}"),
        "A conversation:join ack",
        "B sees A typing",
        "message:send ack {tempId, message}",
        "B receives message:new equal to the stored message",
        "A receives B's reply in id order",
        "bad token: connect_error 'unauthorized'",
    ]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_over_polling() {
    python_client("polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_over_websocket() {
    python_client("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_polling_with_upgrade() {
    python_client("default").await;
}
