//! End-to-end with the real `socket.io-client` v4 (Node): the guide's snippets and React
//! component event flow, over polling-then-upgrade and WebSocket only, acks and connect errors.
//! The server runs in-process on 127.0.0.1:0 with the memory store; conversations are created
//! through the REST API. Scripts: `tests/interop/*.js`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "interop/harness.rs"]
mod harness;
#[path = "support/redis.rs"]
mod redis_support;

use harness::*;

/// The guide's "Testing WebSocket Connection" snippet, verbatim but for the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_console_snippet() {
    ensure_clients();
    let server = start_server().await;
    // The snippet uses conversation 1 and token `1:influencer`; brand 2 is the other side.
    let id = create_direct(server.addr, (1, "influencer"), (2, "brand")).await;
    assert_eq!(
        id, 1,
        "the first conversation of a fresh store must be id 1 for the snippet"
    );
    let report = run_script(
        &node(),
        "guide_snippet.js",
        &[],
        &base_url(server.addr),
        &[],
    )
    .await;
    report.assert_passed(&[
        "connection:success carries",
        "the peer got message:new with the snippet's message",
        "the sending socket did not get its own message:new",
    ]);
    server.shutdown().await;
}

/// Runs the React component flow over `mode` (`default` or `websocket`).
async fn react_flow(mode: &str) {
    ensure_clients();
    let server = start_server().await;
    let id = create_direct(server.addr, (11, "influencer"), (12, "brand")).await;
    let envs = [
        ("CONVERSATION_ID", id.to_string()),
        ("A_ID", "11".into()),
        ("A_TYPE", "influencer".into()),
        ("B_ID", "12".into()),
        ("B_TYPE", "brand".into()),
    ];
    let report = run_script(
        &node(),
        "react_flow.js",
        &[mode],
        &base_url(server.addr),
        &envs,
    )
    .await;
    let transport = if mode == "websocket" {
        "A uses websocket only"
    } else {
        "A upgraded from polling to websocket"
    };
    report.assert_passed(&[
        transport,
        "both joined on connection:success",
        "B sees A typing",
        "message:sent carries the numeric tempId",
        "message:new at B is the same object as message:sent.message",
        "B's typing indicator is off after the send",
        "A gets message:read {conversationId, messageId, readBy}",
        "B gets message:read:success",
        "conversation:left {conversationId, room}",
    ]);
    server.shutdown().await;
}

/// The React component's flow with the client's default transports (polling, then upgrade).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_react_component_polling_then_upgrade() {
    react_flow("default").await;
}

/// The React component's flow with `transports: ['websocket']`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_react_component_websocket_only() {
    react_flow("websocket").await;
}

/// Ack callbacks, error replies through acks, `connect_error` for bad tokens, the `/` namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_connect_errors() {
    ensure_clients();
    let server = start_server().await;
    let id = create_direct(server.addr, (21, "brand"), (22, "influencer")).await;
    let envs = [
        ("CONVERSATION_ID", id.to_string()),
        ("A_ID", "21".into()),
        ("A_TYPE", "brand".into()),
    ];
    let report = run_script(
        &node(),
        "acks_errors.js",
        &[],
        &base_url(server.addr),
        &envs,
    )
    .await;
    report.assert_passed(&[
        "conversation:join ack {conversationId, room}",
        "message:send ack {tempId, message}",
        "tempId '41' (string) is a different key than 41",
        "repeated (sender, conversation, tempId) answers the first stored message",
        "blank content: ack {error: 'bad_request', tempId}",
        "unknown conversation: {error: 'not_found', tempId: null}",
        "message:read without messageId acks the newest id",
        "no token: connect_error \"unauthorized\"",
        "unknown user type: connect_error \"invalid user type\"",
        "main namespace '/' accepts a client without a token",
    ]);
    server.shutdown().await;
}

/// Multiplexing, presence, notifications, REST sends delivered live, exactly-once retry after a
/// reconnect, and Origin refusal, as the real client sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_features() {
    ensure_clients();
    let server = start_server().await;
    let id = create_direct(server.addr, (41, "brand"), (42, "influencer")).await;
    let envs = [
        ("CONVERSATION_ID", id.to_string()),
        ("A_ID", "41".into()),
        ("A_TYPE", "brand".into()),
        ("B_ID", "42".into()),
        ("B_TYPE", "influencer".into()),
    ];
    let report = run_script(
        &node(),
        "app_features.js",
        &[],
        &base_url(server.addr),
        &envs,
    )
    .await;
    report.assert_passed(&[
        "'/' and '/chat' multiplexed on one connection",
        "A gets user:online {userId, userType} for B",
        "B (online, not in the room) gets message:notification {conversationId, message}",
        "the sender's own user gets no notification",
        "the REST message arrives live as message:new with the same id",
        "the retried tempId answers the first stored message",
        "no second message:new after the retry",
        "A gets user:offline when B's last socket is gone",
        "the handshake Authorization header authenticates over polling",
        "the handshake Authorization header authenticates over websocket",
        "auth.token wins over the Authorization header",
        "refused Origin over polling: connect_error",
        "refused Origin over websocket: connect_error",
        "a localhost Origin may connect over polling",
    ]);
    server.shutdown().await;
}

/// The guide's production form: `Bearer <jwt>` (HS256) on a server with `JWT_SECRET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_tokens() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    const SECRET: &str = "interop-test-secret-0123456789-abcdefghij";
    ensure_clients();
    let server = start_server_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.dev_tokens = None; // default: off, since a key is configured
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |claims: serde_json::Value| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let token_a = sign(serde_json::json!({
        "sub": "51", "userType": "influencer", "exp": now + 600,
        "username": "ada_l", "firstName": "Ada",
    }));
    let token_b = sign(serde_json::json!({"sub": 52, "userType": "brand", "exp": now + 600}));
    let expired = sign(serde_json::json!({"sub": 52, "userType": "brand", "exp": now - 3600}));
    let id = create_direct_as(server.addr, &token_a, (52, "brand")).await;
    let envs = [
        ("CONVERSATION_ID", id.to_string()),
        ("TOKEN_A", token_a),
        ("TOKEN_B", token_b),
        ("TOKEN_EXPIRED", expired),
        ("A_ID", "51".into()),
        ("A_TYPE", "influencer".into()),
        ("A_USERNAME", "ada_l".into()),
    ];
    let report = run_script(&node(), "jwt.js", &[], &base_url(server.addr), &envs).await;
    report.assert_passed(&[
        "a Bearer JWT identifies the user from its claims",
        "the JWT's profile claims appear as the message sender",
        "expired JWT: connect_error \"token expired\"",
        "dev token while a JWT key is configured: connect_error \"unauthorized\"",
        "tampered JWT: connect_error \"invalid token\"",
    ]);
    server.shutdown().await;
}

/// A graceful restart with the guide's connection options: the client sees a transport-level
/// disconnect (not a Socket.IO server disconnect), reconnects by itself to the new server (same port, same SQLite file),
/// and re-sending every tempId leaves each message stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_retry_stores_each_message_once() {
    ensure_clients();
    let (mut config, db) = sqlite_config();
    let server = chatwire::server::Server::start(&config, chatwire::server::Mode::Chat)
        .await
        .unwrap();
    config.port = server.addr.port();
    let id = create_direct(server.addr, (71, "brand"), (72, "influencer")).await;
    let envs = [
        ("CONVERSATION_ID", id.to_string()),
        ("A_ID", "71".into()),
        ("A_TYPE", "brand".into()),
    ];
    let report = run_script_then_restart(&node(), "shutdown.js", server, Some(config), &envs).await;
    remove_sqlite(&db);
    report.assert_passed(&[
        "disconnect reason lets the client reconnect",
        "the client reconnected by itself",
        "all 20 tempIds acknowledged after the retry",
        "messages acknowledged before the restart keep their ids on retry",
        "history holds each of the 20 messages exactly once",
    ]);
}

/// A mixed fleet: a Node socket.io node with `@socket.io/redis-adapter` 8.3 and
/// `@socket.io/redis-emitter` beside a chatwire node on a throwaway redis-server: broadcasts both
/// ways and each request type from the Node side cover chatwire's socket, none waits out the
/// adapter's 5 s request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_fleet_with_a_node_socketio_node() {
    ensure_clients();
    let redis = redis_support::TestRedis::start();
    let url = redis.url();
    let server = start_server_with(|c| c.redis_url = Some(url)).await;
    let id = create_direct(server.addr, (1, "brand"), (2, "influencer")).await;
    let envs = [
        ("REDIS_PORT", redis.port.to_string()),
        ("CID", id.to_string()),
    ];
    let report = run_script(
        &node(),
        "cluster_node.js",
        &[],
        &base_url(server.addr),
        &envs,
    )
    .await;
    report.assert_passed(&[
        "serverCount counts chatwire nodes",
        "node broadcast payload intact",
        "chatwire broadcast reaches Node clients",
        "chatwire message:new reaches Node clients",
        "its flags carry chatwirePrev, which the Node adapter ignores",
        "emitter broadcast reaches chatwire clients",
        "fetchSockets includes the chatwire socket",
        "fetched chatwire socket is in its conversation room",
        "fetchSockets in the room: node + chatwire socket",
        "fetched handshake: the client's address",
        "fetched handshake: issued within the test's window",
        "fetched handshake: time is the handshake's date",
        "fetched handshake: query",
        "fetched handshake: url",
        "fetched handshake: secure and xdomain",
        "fetched handshake: no token",
        "allRooms includes chatwire's rooms",
        "socketsJoin joins a chatwire socket",
        "socketsLeave removes a chatwire socket",
        "serverSideEmitWithAck resolves",
        "timeout().emitWithAck answered in",
        "Node client's ack arrives",
        "chatwire client's ack arrives",
        "one ack per client",
        "disconnectSockets disconnects a chatwire socket",
    ]);
    server.shutdown().await;
}
