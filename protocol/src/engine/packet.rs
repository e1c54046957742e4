//! One Engine.IO v4 packet: a WebSocket frame, or one item of a polling payload.
//!
//! Text form: one type digit then the data.
//!
//! | type | name    | data                                  |
//! |------|---------|---------------------------------------|
//! | `0`  | open    | JSON [`OpenPacket`] (server -> client)  |
//! | `1`  | close   | none                                  |
//! | `2`  | ping    | optional (`probe` during an upgrade)  |
//! | `3`  | pong    | echoes the ping's data                |
//! | `4`  | message | UTF-8 text (a Socket.IO packet)       |
//! | `5`  | upgrade | none                                  |
//! | `6`  | noop    | none                                  |
//!
//! Binary messages travel as WebSocket binary frames with no prefix, and in polling payloads
//! as `b` followed by standard base64.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The handshake packet the server sends first (`0{"sid":...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket {
    /// Session id the client must send back as `sid` on every later request.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` on polling, `[]` on websocket).
    pub upgrades: Vec<String>,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// Largest payload in bytes the server accepts.
    pub max_payload: u64,
}

/// An Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: handshake data (server -> client).
    Open(OpenPacket),
    /// `1`: the transport is closing.
    Close,
    /// `2`: heartbeat from the server, or `2probe` during an upgrade.
    Ping(Bytes),
    /// `3`: heartbeat answer, or `3probe` during an upgrade.
    Pong(Bytes),
    /// `4`: a text message (UTF-8, checked on decode).
    Message(Bytes),
    /// A binary message (binary frame, or `b`+base64 in polling).
    Binary(Bytes),
    /// `5`: the client completes a polling -> websocket upgrade.
    Upgrade,
    /// `6`: no-op, used to end a pending poll during an upgrade.
    Noop,
}

/// The `probe` data of the upgrade ping/pong.
pub const PROBE: &[u8] = b"probe";

impl Packet {
    /// Decodes a text packet (WebSocket text frame or polling item), copying its data.
    pub fn decode_text(input: &[u8]) -> Result<Packet, EngineError> {
        Self::decode_text_bytes(Bytes::copy_from_slice(input))
    }

    /// Decodes a text packet, sharing `input`'s memory for the data (no copy).
    pub fn decode_text_bytes(input: Bytes) -> Result<Packet, EngineError> {
        let Some(&kind) = input.first() else {
            return Err(EngineError::EmptyPacket);
        };
        // Dropping the type byte moves the view; no reference-count traffic.
        let mut data = input;
        bytes::Buf::advance(&mut data, 1);
        match kind {
            b'0' => {
                let mut json = data.to_vec();
                simd_json::serde::from_slice::<OpenPacket>(&mut json)
                    .map(Packet::Open)
                    .map_err(|_| EngineError::InvalidOpenPacket)
            }
            b'1' => Ok(Packet::Close),
            b'2' => Ok(Packet::Ping(utf8(data)?)),
            b'3' => Ok(Packet::Pong(utf8(data)?)),
            b'4' => Ok(Packet::Message(utf8(data)?)),
            b'5' => Ok(Packet::Upgrade),
            b'6' => Ok(Packet::Noop),
            b'b' => {
                let mut out = Vec::with_capacity(data.len() / 4 * 3 + 3);
                base64::engine::general_purpose::STANDARD
                    .decode_vec(&data, &mut out)
                    .map_err(|_| EngineError::InvalidBase64)?;
                Ok(Packet::Binary(Bytes::from(out)))
            }
            other => Err(EngineError::UnknownPacketType(other)),
        }
    }

    /// A WebSocket binary frame is a binary message as is.
    pub fn decode_binary(input: Bytes) -> Packet {
        Packet::Binary(input)
    }

    /// Appends the text form (WebSocket text frame or one polling item). `Binary` is written as
    /// `b`+base64 (the polling form); on WebSocket send its bytes as a binary frame instead.
    pub fn encode_text(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Open(open) => {
                out.push(b'0');
                // Serializing a struct of strings and integers into a Vec cannot fail.
                let _ = simd_json::serde::to_writer(&mut *out, open);
            }
            Packet::Close => out.push(b'1'),
            Packet::Ping(data) => {
                out.push(b'2');
                out.extend_from_slice(data);
            }
            Packet::Pong(data) => {
                out.push(b'3');
                out.extend_from_slice(data);
            }
            Packet::Message(data) => {
                out.push(b'4');
                out.extend_from_slice(data);
            }
            Packet::Binary(data) => {
                out.push(b'b');
                let start = out.len();
                out.resize(
                    start + base64::encoded_len(data.len(), true).unwrap_or(0),
                    0,
                );
                if let Some(dst) = out.get_mut(start..) {
                    let written = base64::engine::general_purpose::STANDARD
                        .encode_slice(data, dst)
                        .unwrap_or(0);
                    out.truncate(start + written);
                }
            }
            Packet::Upgrade => out.push(b'5'),
            Packet::Noop => out.push(b'6'),
        }
    }

    /// The text form as a new buffer.
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_text(&mut out);
        out
    }
}

fn utf8(data: Bytes) -> Result<Bytes, EngineError> {
    match std::str::from_utf8(&data) {
        Ok(_) => Ok(data),
        Err(_) => Err(EngineError::InvalidUtf8),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn documented_wire_strings_round_trip() {
        let cases = [
            ("1", Packet::Close),
            ("2", Packet::Ping(Bytes::new())),
            ("3", Packet::Pong(Bytes::new())),
            ("2probe", Packet::Ping(b("probe"))),
            ("3probe", Packet::Pong(b("probe"))),
            ("4hello", Packet::Message(b("hello"))),
            ("4€", Packet::Message(b("€"))),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
            (
                "bAQIDBA==",
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ),
        ];
        for (wire, packet) in cases {
            assert_eq!(
                Packet::decode_text(wire.as_bytes()).unwrap(),
                packet,
                "{wire}"
            );
            assert_eq!(packet.to_text(), wire.as_bytes(), "{wire}");
        }
    }

    #[test]
    fn open_packet_from_the_protocol_readme() {
        let wire = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let p = Packet::decode_text(wire.as_bytes()).unwrap();
        let Packet::Open(open) = &p else {
            panic!("not open: {p:?}")
        };
        assert_eq!(open.sid, "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(open.upgrades, vec!["websocket".to_string()]);
        assert_eq!(open.ping_interval, 25000);
        assert_eq!(open.ping_timeout, 20000);
        assert_eq!(open.max_payload, 1_000_000);
        assert_eq!(p.to_text(), wire.as_bytes());
    }

    #[test]
    fn malformed_packets_are_typed_errors() {
        assert_eq!(Packet::decode_text(b""), Err(EngineError::EmptyPacket));
        assert_eq!(
            Packet::decode_text(b"7"),
            Err(EngineError::UnknownPacketType(b'7'))
        );
        assert_eq!(
            Packet::decode_text(b"x"),
            Err(EngineError::UnknownPacketType(b'x'))
        );
        assert_eq!(
            Packet::decode_text(b"4\xff\xfe"),
            Err(EngineError::InvalidUtf8)
        );
        assert_eq!(
            Packet::decode_text(b"b!!!"),
            Err(EngineError::InvalidBase64)
        );
        assert_eq!(
            Packet::decode_text(b"0{\"sid\":1}"),
            Err(EngineError::InvalidOpenPacket)
        );
        assert_eq!(
            Packet::decode_text(b"0"),
            Err(EngineError::InvalidOpenPacket)
        );
    }

    #[test]
    fn binary_frames_are_taken_as_is() {
        let data = Bytes::from_static(&[0, 1, 2, 255]);
        assert_eq!(Packet::decode_binary(data.clone()), Packet::Binary(data));
    }

    pub(crate) fn arb_packet() -> impl Strategy<Value = Packet> {
        prop_oneof![
            Just(Packet::Close),
            Just(Packet::Upgrade),
            Just(Packet::Noop),
            ".*".prop_map(|s| Packet::Ping(Bytes::from(s))),
            ".*".prop_map(|s| Packet::Pong(Bytes::from(s))),
            ".*".prop_map(|s| Packet::Message(Bytes::from(s))),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|v| Packet::Binary(Bytes::from(v))),
            (
                "[a-zA-Z0-9_-]{0,20}",
                any::<u32>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(sid, i, t, m)| Packet::Open(OpenPacket {
                    sid,
                    upgrades: vec!["websocket".into()],
                    ping_interval: i.into(),
                    ping_timeout: t.into(),
                    max_payload: m.into(),
                })),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(p in arb_packet()) {
            prop_assert_eq!(Packet::decode_text(&p.to_text()).unwrap(), p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Packet::decode_text(&input);
        }
    }
}
