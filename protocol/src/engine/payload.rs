//! Polling payloads: several packets in one HTTP body, separated by the record separator `\x1e`.
//!
//! `4hello\x1e2\x1ebAQIDBA==` is a message, a ping and a binary message. Decoding is a plain
//! function over `&[u8]`: it splits on `\x1e` (with `memchr`) and decodes each item with
//! [`Packet::decode_text`]; an item that fails yields an error and the caller closes the session.

use bytes::Bytes;

use crate::engine::packet::Packet;
use crate::error::EngineError;

/// The record separator between packets.
pub const SEPARATOR: u8 = 0x1e;

/// Decodes a polling body (copying each item's data). An empty body is one empty item, an error,
/// as in the reference server.
pub fn decode(body: &[u8]) -> impl Iterator<Item = Result<Packet, EngineError>> + '_ {
    body.split(|&b| b == SEPARATOR).map(Packet::decode_text)
}

/// Decodes a polling body, sharing `body`'s memory for each item's data.
pub fn decode_bytes(body: Bytes) -> impl Iterator<Item = Result<Packet, EngineError>> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let current = rest.take()?;
        let item = match memchr::memchr(SEPARATOR, &current) {
            Some(at) => {
                rest = Some(current.slice(at + 1..));
                current.slice(..at)
            }
            None => current,
        };
        Some(Packet::decode_text_bytes(item))
    })
}

/// Appends packets to `out` separated by `\x1e`, stopping before the body would exceed
/// `max_payload` bytes (the first packet is always written so a poll always makes progress).
/// Returns how many packets were written; the caller keeps the rest for the next poll.
pub fn encode<'a, I>(packets: I, max_payload: usize, out: &mut Vec<u8>) -> usize
where
    I: IntoIterator<Item = &'a Packet>,
{
    let start = out.len();
    let mut count = 0;
    for packet in packets {
        let mark = out.len();
        if count > 0 {
            out.push(SEPARATOR);
        }
        packet.encode_text(out);
        if count > 0 && out.len() - start > max_payload {
            out.truncate(mark);
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::engine::packet::tests::arb_packet;
    use proptest::prelude::*;

    #[test]
    fn documented_payload_round_trips() {
        let wire = b"4hello\x1e2\x1e4\xe2\x82\xac\x1ebAQIDBA==";
        let packets: Vec<_> = decode(wire).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message(Bytes::from_static(b"hello")),
                Packet::Ping(Bytes::new()),
                Packet::Message(Bytes::from_static("€".as_bytes())),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ]
        );
        let mut out = Vec::new();
        assert_eq!(encode(&packets, 1_000_000, &mut out), 4);
        assert_eq!(out, wire);
        let shared: Vec<_> = decode_bytes(Bytes::from_static(wire))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(shared, packets);
    }

    #[test]
    fn bad_items_are_errors_in_place() {
        let items: Vec<_> = decode(b"4a\x1e\x1e9\x1e6").collect();
        assert_eq!(items.len(), 4);
        assert!(items[0].is_ok());
        assert_eq!(items[1], Err(EngineError::EmptyPacket));
        assert_eq!(items[2], Err(EngineError::UnknownPacketType(b'9')));
        assert_eq!(items[3], Ok(Packet::Noop));
        assert_eq!(
            decode(b"").collect::<Vec<_>>(),
            vec![Err(EngineError::EmptyPacket)]
        );
        assert_eq!(
            decode(b"4a\x1e").nth(1),
            Some(Err(EngineError::EmptyPacket))
        );
    }

    #[test]
    fn encode_respects_max_payload_but_always_progresses() {
        let packets = vec![Packet::Message(Bytes::from_static(b"0123456789")); 5];
        let mut out = Vec::new();
        // each item is 11 bytes, +1 separator after the first
        assert_eq!(encode(&packets, 35, &mut out), 3);
        assert_eq!(out.len(), 35);
        let mut tiny = Vec::new();
        assert_eq!(encode(&packets, 1, &mut tiny), 1);
        assert_eq!(tiny, b"40123456789");
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(packets in proptest::collection::vec(arb_packet(), 1..8)) {
            // Text items cannot themselves contain the separator.
            let clean: Vec<Packet> = packets.into_iter().filter(|p| !p.to_text().contains(&SEPARATOR)).collect();
            prop_assume!(!clean.is_empty());
            let mut out = Vec::new();
            prop_assert_eq!(encode(&clean, usize::MAX, &mut out), clean.len());
            let back: Vec<_> = decode(&out).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(back, clean);
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(&body).count();
            let _ = decode_bytes(Bytes::from(body)).count();
        }
    }
}
