//! State machine tests for `ServerSession` on virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn session(transport: Transport) -> (ServerSession, Instant) {
    let t0 = Instant::now();
    let config = EngineConfig::default()
        .with_ping_interval(ms(300))
        .with_ping_timeout(ms(200))
        .with_upgrade_timeout(ms(1000))
        .with_max_payload(100);
    (
        ServerSession::new(Sid::new([9; 12], 2), transport, &config, t0),
        t0,
    )
}

#[test]
fn stays_small_and_heap_free() {
    assert!(
        std::mem::size_of::<ServerSession>() <= 128,
        "{}",
        std::mem::size_of::<ServerSession>()
    );
}

#[test]
fn open_packet_carries_the_config() {
    let (s, _) = session(Transport::Polling);
    let text = String::from_utf8(s.open_packet().to_text()).unwrap();
    assert!(text.starts_with(r#"0{"sid":"C"#), "{text}");
    assert!(
        text.ends_with(
            r#","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":100}"#
        ),
        "{text}"
    );
}

#[test]
fn heartbeat_pings_every_interval_and_pong_restarts_it() {
    let (mut s, t0) = session(Transport::Websocket);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(300)));
    s.handle_timeout(t0 + ms(299));
    assert_eq!(s.poll_transmit(), None);
    s.handle_timeout(t0 + ms(300));
    assert_eq!(s.poll_transmit(), Some(Packet::Ping(Bytes::new())));
    assert_eq!(s.poll_transmit(), None);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(500)));
    s.handle_packet(Packet::Pong(Bytes::new()), t0 + ms(350))
        .unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + ms(650)));
    s.handle_timeout(t0 + ms(600));
    assert_eq!(s.poll_transmit(), None);
    assert!(!s.is_closed());
}

#[test]
fn missing_pong_closes_with_ping_timeout() {
    let (mut s, t0) = session(Transport::Websocket);
    s.handle_timeout(t0 + ms(300));
    assert_eq!(s.poll_transmit(), Some(Packet::Ping(Bytes::new())));
    s.handle_timeout(t0 + ms(499));
    assert!(!s.is_closed());
    s.handle_timeout(t0 + ms(500));
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::PingTimeout))
    );
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(
        s.handle_packet(Packet::Pong(Bytes::new()), t0 + ms(501)),
        Err(EngineError::Closed)
    );
}

#[test]
fn messages_come_out_one_per_packet() {
    let (mut s, t0) = session(Transport::Websocket);
    s.handle_packet(Packet::Message(Bytes::from_static(b"2[\"x\"]")), t0)
        .unwrap();
    assert_eq!(
        s.handle_packet(Packet::Message(Bytes::from_static(b"y")), t0),
        Err(EngineError::EventNotDrained)
    );
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Message(Bytes::from_static(b"2[\"x\"]")))
    );
    s.handle_packet(Packet::Binary(Bytes::from_static(&[1])), t0)
        .unwrap();
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Binary(Bytes::from_static(&[1])))
    );
    assert_eq!(s.poll_event(), None);
}

#[test]
fn oversize_message_closes_the_session() {
    let (mut s, t0) = session(Transport::Websocket);
    let big = Bytes::from(vec![b'a'; 101]);
    assert_eq!(
        s.handle_packet(Packet::Message(big), t0),
        Err(EngineError::PayloadTooLarge { len: 101, max: 100 })
    );
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::TransportError))
    );
}

#[test]
fn client_ping_and_stray_packets_close() {
    let (mut s, t0) = session(Transport::Websocket);
    assert_eq!(
        s.handle_packet(Packet::Ping(Bytes::new()), t0),
        Err(EngineError::InvalidHeartbeatDirection)
    );
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::TransportError))
    );
    let (mut s, t0) = session(Transport::Websocket);
    assert_eq!(
        s.handle_packet(Packet::Upgrade, t0),
        Err(EngineError::UnexpectedPacket)
    );
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::ParseError))
    );
}

#[test]
fn client_close_and_server_close() {
    let (mut s, t0) = session(Transport::Websocket);
    s.handle_packet(Packet::Noop, t0).unwrap();
    s.handle_packet(Packet::Close, t0).unwrap();
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::TransportClose))
    );
    assert_eq!(s.poll_transmit(), None);

    let (mut s, _) = session(Transport::Polling);
    s.close();
    s.close();
    assert_eq!(s.poll_transmit(), Some(Packet::Close));
    assert_eq!(s.poll_transmit(), None);
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::ForcedClose))
    );
    assert_eq!(s.poll_event(), None);

    let (mut s, _) = session(Transport::Websocket);
    s.transport_closed();
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::TransportClose))
    );
}

#[test]
fn duplicate_poll_closes_the_session() {
    let (mut s, _) = session(Transport::Polling);
    s.begin_poll().unwrap();
    assert!(s.is_polling());
    s.begin_post().unwrap();
    s.end_post();
    s.begin_post().unwrap();
    assert_eq!(s.begin_poll(), Err(EngineError::DuplicatePoll));
    assert_eq!(s.poll_transmit(), Some(Packet::Close));
    assert_eq!(
        s.poll_event(),
        Some(SessionEvent::Closed(CloseReason::TransportError))
    );
    let (mut s, _) = session(Transport::Polling);
    s.begin_poll().unwrap();
    s.end_poll();
    s.begin_poll().unwrap();
    s.begin_post().unwrap();
    assert_eq!(s.begin_post(), Err(EngineError::DuplicatePost));
    assert!(s.is_closed());
}

#[test]
fn upgrade_probe_noop_then_upgrade() {
    let (mut s, t0) = session(Transport::Polling);
    s.begin_poll().unwrap();
    s.begin_upgrade(t0 + ms(10)).unwrap();
    assert_eq!(
        s.begin_upgrade(t0 + ms(10)),
        Err(EngineError::UnexpectedPacket)
    );
    assert_eq!(s.poll_timeout(), Some(t0 + ms(300)));
    s.handle_upgrade_packet(Packet::Ping(Bytes::from_static(b"probe")), t0 + ms(20))
        .unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(Packet::Pong(Bytes::from_static(b"probe")))
    );
    assert_eq!(s.poll_transmit(), Some(Packet::Noop));
    assert_eq!(s.poll_transmit(), None);
    s.end_poll();
    s.handle_upgrade_packet(Packet::Upgrade, t0 + ms(30))
        .unwrap();
    assert_eq!(s.transport(), Transport::Websocket);
    assert_eq!(s.poll_event(), Some(SessionEvent::Upgraded));
    assert_eq!(s.begin_poll(), Err(EngineError::UnexpectedPacket));
    assert!(!s.is_closed());
    // heartbeat continues on the new transport
    s.handle_timeout(t0 + ms(300));
    assert_eq!(s.poll_transmit(), Some(Packet::Ping(Bytes::new())));
}

#[test]
fn upgrade_timeout_drops_only_the_probe() {
    let (mut s, t0) = session(Transport::Polling);
    s.handle_timeout(t0 + ms(300));
    assert_eq!(s.poll_transmit(), Some(Packet::Ping(Bytes::new())));
    s.handle_packet(Packet::Pong(Bytes::new()), t0 + ms(301))
        .unwrap();
    s.begin_upgrade(t0 + ms(400)).unwrap();
    s.handle_upgrade_packet(Packet::Ping(Bytes::from_static(b"probe")), t0 + ms(410))
        .unwrap();
    // next ping at 601 comes first, then the upgrade deadline at 1400
    assert_eq!(s.poll_timeout(), Some(t0 + ms(601)));
    s.handle_timeout(t0 + ms(601));
    s.handle_packet(Packet::Pong(Bytes::new()), t0 + ms(700))
        .unwrap();
    s.handle_timeout(t0 + ms(1000));
    s.handle_packet(Packet::Pong(Bytes::new()), t0 + ms(1100))
        .unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + ms(1400)));
    s.handle_timeout(t0 + ms(1400));
    assert_eq!(s.poll_event(), Some(SessionEvent::UpgradeFailed));
    assert!(!s.is_closed());
    assert_eq!(s.transport(), Transport::Polling);
    assert_eq!(
        s.handle_upgrade_packet(Packet::Upgrade, t0 + ms(1401)),
        Err(EngineError::UnexpectedPacket)
    );
    // a new upgrade may start
    s.begin_upgrade(t0 + ms(1500)).unwrap();
}

#[test]
fn bad_probe_abandons_the_upgrade() {
    let (mut s, t0) = session(Transport::Polling);
    s.begin_upgrade(t0).unwrap();
    assert_eq!(
        s.handle_upgrade_packet(Packet::Upgrade, t0),
        Err(EngineError::UnexpectedPacket)
    );
    assert_eq!(s.poll_event(), Some(SessionEvent::UpgradeFailed));
    s.begin_upgrade(t0).unwrap();
    s.upgrade_transport_closed();
    assert_eq!(s.poll_event(), Some(SessionEvent::UpgradeFailed));
    let (mut ws, t0) = session(Transport::Websocket);
    assert_eq!(ws.begin_upgrade(t0), Err(EngineError::UnexpectedPacket));
}
