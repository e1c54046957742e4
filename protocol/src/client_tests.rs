//! Client session and client packet builders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::socket::packet::PacketType;

fn open(now: Instant) -> ClientSession {
    let mut c = ClientSession::new();
    let wire = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;
    c.handle_packet(Packet::decode_text(wire).unwrap(), now)
        .unwrap();
    c
}

#[test]
fn open_then_answer_pings() {
    let t0 = Instant::now();
    let mut c = open(t0);
    assert_eq!(c.sid(), Some("lv_VI97HAXpY6yYWAAAC"));
    assert!(matches!(c.poll_event(), Some(ClientEvent::Open(o)) if o.ping_interval == 300));
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    c.handle_packet(Packet::Ping(Bytes::new()), t0 + Duration::from_millis(300))
        .unwrap();
    assert_eq!(c.poll_transmit(), Some(Packet::Pong(Bytes::new())));
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(800)));
    c.handle_timeout(t0 + Duration::from_millis(799));
    assert!(!c.is_closed());
    c.handle_timeout(t0 + Duration::from_millis(800));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Closed(ClientCloseReason::PingTimeout))
    );
}

#[test]
fn packets_before_open_are_refused() {
    let mut c = ClientSession::new();
    assert_eq!(
        c.handle_packet(Packet::Ping(Bytes::new()), Instant::now()),
        Err(EngineError::UnexpectedPacket)
    );
    assert_eq!(c.begin_upgrade(), Err(EngineError::UnexpectedPacket));
}

#[test]
fn upgrade_probe_sequence() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.begin_upgrade().unwrap();
    assert_eq!(
        c.poll_transmit().map(|p| p.to_text()),
        Some(b"2probe".to_vec())
    );
    c.handle_packet(Packet::decode_text(b"3probe").unwrap(), t0)
        .unwrap();
    assert_eq!(c.poll_transmit(), Some(Packet::Upgrade));
    let _ = c.poll_event();
    assert_eq!(c.poll_event(), Some(ClientEvent::Upgraded));
    assert_eq!(
        c.handle_packet(Packet::Pong(Bytes::from_static(b"probe")), t0),
        Err(EngineError::UnexpectedPacket)
    );
}

#[test]
fn messages_and_server_close() {
    let t0 = Instant::now();
    let mut c = open(t0);
    let _ = c.poll_event();
    c.handle_packet(Packet::decode_text(b"42[\"hey\",\"Jude\"]").unwrap(), t0)
        .unwrap();
    let Some(ClientEvent::Message(data)) = c.poll_event() else {
        panic!("no message")
    };
    let (p, n) = decode_server_packet(&data, 128).unwrap();
    assert_eq!((p.event_name(), n), (Some("hey"), 0));
    c.handle_packet(Packet::Close, t0).unwrap();
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Closed(ClientCloseReason::ServerClose))
    );
    assert_eq!(c.handle_packet(Packet::Noop, t0), Err(EngineError::Closed));
}

#[test]
fn client_packets_match_the_documented_session() {
    assert_eq!(connect("/", None), b"40");
    let mut auth = simd_json::owned::Object::default();
    auth.insert("token".to_owned(), Value::from("123"));
    assert_eq!(
        connect("/admin", Some(Value::Object(Box::new(auth)))),
        br#"40/admin,{"token":"123"}"#
    );
    assert_eq!(
        event("/admin", "tellme", vec![], Some(1)),
        br#"42/admin,1["tellme"]"#
    );
    assert_eq!(ack("/", 5, vec![Value::from(true)]), b"435[true]");
    let (p, _) = decode_server_packet(br#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#, 128).unwrap();
    assert_eq!(p.kind, PacketType::Connect);
    let (p, n) =
        decode_server_packet(br#"61-/admin,1[{"_placeholder":true,"num":0}]"#, 128).unwrap();
    assert_eq!((p.kind, p.id, n), (PacketType::BinaryAck, Some(1), 1));
}
