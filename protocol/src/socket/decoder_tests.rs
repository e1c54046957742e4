//! A typed error for every malformed packet the reference server rejects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::error::JsonError;
use proptest::prelude::*;

fn decode(wire: &[u8]) -> Result<Option<Packet>, SocketError> {
    Decoder::new(&SocketConfig::default()).decode_text(wire)
}

#[test]
fn malformed_headers() {
    assert_eq!(decode(b""), Err(SocketError::Empty));
    assert_eq!(
        decode(b"7[\"a\"]"),
        Err(SocketError::UnknownPacketType(b'7'))
    );
    assert_eq!(decode(b"a"), Err(SocketError::UnknownPacketType(b'a')));
    assert_eq!(decode(b"5[\"a\"]"), Err(SocketError::IllegalAttachments));
    assert_eq!(decode(b"5-[\"a\"]"), Err(SocketError::IllegalAttachments));
    assert_eq!(decode(b"5x-[\"a\"]"), Err(SocketError::IllegalAttachments));
    assert_eq!(
        decode(b"599999999999999999999-[\"a\"]"),
        Err(SocketError::IllegalAttachments)
    );
    assert_eq!(
        decode(b"511-[\"a\"]"),
        Err(SocketError::TooManyAttachments { count: 11, max: 10 })
    );
    assert_eq!(
        decode(b"2123456789012345678901[\"a\"]"),
        Err(SocketError::InvalidAckId)
    );
    let long = format!("2/{},[\"a\"]", "n".repeat(300));
    assert_eq!(decode(long.as_bytes()), Err(SocketError::InvalidNamespace));
    assert_eq!(decode(b"2/\xff,[\"a\"]"), Err(SocketError::InvalidUtf8));
}

#[test]
fn payload_shapes_like_the_reference_parser() {
    assert_eq!(
        decode(b"0[]"),
        Err(SocketError::InvalidPayload(PacketType::Connect))
    );
    assert_eq!(
        decode(b"0\"tok\""),
        Err(SocketError::InvalidPayload(PacketType::Connect))
    );
    assert!(decode(b"0{\"token\":\"abc\"}").unwrap().is_some());
    assert!(decode(b"0/chat,").unwrap().is_some());
    assert_eq!(
        decode(b"1{}"),
        Err(SocketError::InvalidPayload(PacketType::Disconnect))
    );
    assert_eq!(
        decode(b"2{}"),
        Err(SocketError::InvalidPayload(PacketType::Event))
    );
    assert_eq!(
        decode(b"2[]"),
        Err(SocketError::InvalidPayload(PacketType::Event))
    );
    assert_eq!(
        decode(b"2[{}]"),
        Err(SocketError::InvalidPayload(PacketType::Event))
    );
    assert_eq!(
        decode(b"2[null]"),
        Err(SocketError::InvalidPayload(PacketType::Event))
    );
    assert_eq!(
        decode(b"2"),
        Err(SocketError::MissingPayload(PacketType::Event))
    );
    assert_eq!(
        decode(b"3/chat,4"),
        Err(SocketError::MissingPayload(PacketType::Ack))
    );
    assert_eq!(
        decode(b"31{}"),
        Err(SocketError::InvalidPayload(PacketType::Ack))
    );
    assert_eq!(
        decode(b"4[]"),
        Err(SocketError::InvalidPayload(PacketType::ConnectError))
    );
    assert!(decode(b"4\"legacy\"").unwrap().is_some());
    assert!(decode(b"2[1,\"x\"]").unwrap().is_some());
    assert!(decode(b"31[]").unwrap().is_some());
    for name in RESERVED_EVENTS {
        let wire = format!("2[\"{name}\"]");
        assert_eq!(
            decode(wire.as_bytes()),
            Err(SocketError::ReservedEventName),
            "{name}"
        );
    }
}

#[test]
fn json_errors_are_typed_and_deep_nesting_is_refused_before_parsing() {
    assert!(matches!(
        decode(b"2[\"a\""),
        Err(SocketError::Json(JsonError::Syntax { .. }))
    ));
    assert!(matches!(
        decode(b"2[\"a\"]]"),
        Err(SocketError::Json(JsonError::Syntax { .. }))
    ));
    let mut deep = b"2[\"a\",".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    assert_eq!(
        decode(&deep),
        Err(SocketError::Json(JsonError::TooDeep { max: 128 }))
    );
    let mut objects = b"2[\"a\",".to_vec();
    for _ in 0..100_000 {
        objects.extend_from_slice(b"{\"a\":");
    }
    assert_eq!(
        decode(&objects),
        Err(SocketError::Json(JsonError::TooDeep { max: 128 }))
    );
}

#[test]
fn placeholders_must_point_at_an_attachment() {
    let bad = [
        &br#"51-["a",{"_placeholder":true,"num":1}]"#[..],
        br#"51-["a",{"_placeholder":true,"num":-1}]"#,
        br#"51-["a",{"_placeholder":true,"num":0.5}]"#,
        br#"51-["a",{"_placeholder":true,"num":"0"}]"#,
        br#"51-["a",{"_placeholder":true}]"#,
        br#"50-["a",{"_placeholder":true,"num":0}]"#,
        br#"52-["a",{"x":[{"_placeholder":true,"num":2}]}]"#,
    ];
    for wire in bad {
        assert_eq!(
            decode(wire),
            Err(SocketError::InvalidPlaceholder),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
    // Not a placeholder unless `_placeholder` is exactly true.
    assert_eq!(
        decode(br#"51-["a",{"_placeholder":false,"num":9}]"#),
        Ok(None)
    );
    // A binary event with zero attachments is complete at once.
    assert!(decode(br#"50-["a"]"#).unwrap().is_some());
    assert_eq!(
        decode(br#"51-["connect"]"#),
        Err(SocketError::ReservedEventName)
    );
}

#[test]
fn reassembly_errors() {
    let mut d = Decoder::new(&SocketConfig::default());
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"x")),
        Err(SocketError::UnexpectedBinary)
    );
    assert_eq!(
        d.decode_text(br#"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
        Ok(None)
    );
    assert_eq!(d.decode_binary(Bytes::from_static(b"1")), Ok(None));
    assert_eq!(d.decode_text(b"2[\"b\"]"), Err(SocketError::UnexpectedText));
    // The broken packet is gone; the decoder is usable again.
    assert!(!d.is_reassembling());
    assert!(d.decode_text(b"2[\"b\"]").unwrap().is_some());
}

#[test]
fn limits_come_from_the_config() {
    let cfg = SocketConfig::default()
        .with_max_attachments(1)
        .with_max_json_depth(2);
    let mut d = Decoder::new(&cfg);
    assert_eq!(
        d.decode_text(b"52-[\"a\"]"),
        Err(SocketError::TooManyAttachments { count: 2, max: 1 })
    );
    assert_eq!(
        d.decode_text(b"2[\"a\",[[1]]]"),
        Err(SocketError::Json(JsonError::TooDeep { max: 2 }))
    );
    assert!(d.decode_text(b"2[\"a\",[1]]").unwrap().is_some());
}

#[test]
fn idle_decoder_is_small() {
    assert!(std::mem::size_of::<Decoder>() <= 16);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(input in proptest::collection::vec(any::<u8>(), 0..96)) {
        let mut d = Decoder::new(&SocketConfig::default());
        let _ = d.decode_text(&input);
        let _ = d.decode_binary(Bytes::from(input));
    }

    #[test]
    fn mutated_valid_packets_never_panic(idx in 0usize..40, byte in any::<u8>()) {
        let mut wire = br#"52-/chat,7["a",{"_placeholder":true,"num":1}]"#.to_vec();
        if let Some(b) = wire.get_mut(idx) { *b = byte; }
        let _ = decode(&wire);
    }
}
