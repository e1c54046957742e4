//! Decoding Socket.IO packets, one connection at a time.
//!
//! Steps for a text message (`51-/chat,7[...]`):
//! 1. the type digit (`0`..=`6`);
//! 2. for BINARY_EVENT/BINARY_ACK the attachment count, digits up to `-`, at most `max_attachments`;
//! 3. the namespace when the next byte is `/`, up to `,`;
//! 4. the ack id: leading digits, must fit a `u64`;
//! 5. the JSON data: depth checked by a byte scan, then parsed by simd-json;
//! 6. the payload shape checked like the reference parser's `isPayloadValid`, and for binary
//!    packets every placeholder's `num` checked against the announced count.
//!
//! A binary packet with attachments is held until that many binary messages arrived
//! ([`Decoder::decode_binary`]); a text message in between is an error, as in the reference.

use bytes::Bytes;

use crate::config::SocketConfig;
use crate::error::SocketError;
use crate::json::{self, Value};
use crate::socket::packet::{DEFAULT_NSP, Packet, PacketType, is_number};

/// Event names an EVENT may not use (the reference parser's `RESERVED_EVENTS`).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Longest namespace accepted, in bytes.
pub const MAX_NSP_LEN: usize = 256;

/// Per-connection decoder (holds a binary packet while its attachments arrive).
#[derive(Debug)]
pub struct Decoder {
    /// Most attachments one packet may announce.
    max_attachments: u16,
    /// Deepest JSON nesting accepted.
    max_json_depth: u16,
    /// A binary packet waiting for attachments, boxed so an idle decoder is one pointer.
    pending: Option<Box<Pending>>,
}

/// A binary packet being reassembled.
#[derive(Debug)]
struct Pending {
    /// The packet, its `attachments` filling up.
    packet: Packet,
    /// How many attachments were announced.
    expected: usize,
}

impl Decoder {
    /// A decoder with `config`'s limits.
    pub fn new(config: &SocketConfig) -> Decoder {
        Decoder {
            max_attachments: u16::try_from(config.max_attachments).unwrap_or(u16::MAX),
            max_json_depth: u16::try_from(config.max_json_depth).unwrap_or(u16::MAX),
            pending: None,
        }
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_reassembling(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes one text message. `Ok(None)` means a binary packet now waits for its attachments.
    pub fn decode_text(&mut self, input: &[u8]) -> Result<Option<Packet>, SocketError> {
        if self.pending.take().is_some() {
            return Err(SocketError::UnexpectedText);
        }
        let (packet, count) = decode_packet(
            input,
            self.max_attachments.into(),
            self.max_json_depth.into(),
        )?;
        if count == 0 {
            return Ok(Some(packet));
        }
        let mut packet = packet;
        packet.attachments = Vec::with_capacity(count);
        self.pending = Some(Box::new(Pending {
            packet,
            expected: count,
        }));
        Ok(None)
    }

    /// Decodes one binary message: the next attachment of the pending binary packet.
    /// Returns the packet once its last attachment arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, SocketError> {
        let Some(mut pending) = self.pending.take() else {
            return Err(SocketError::UnexpectedBinary);
        };
        pending.packet.attachments.push(data);
        if pending.packet.attachments.len() >= pending.expected {
            return Ok(Some(pending.packet));
        }
        self.pending = Some(pending);
        Ok(None)
    }
}

/// Decodes and validates one text packet without reassembly state. Returns the packet (with
/// empty `attachments`) and the number of attachments it announced.
pub fn decode_packet(
    input: &[u8],
    max_attachments: usize,
    max_depth: usize,
) -> Result<(Packet, usize), SocketError> {
    let (&digit, mut rest) = input.split_first().ok_or(SocketError::Empty)?;
    let kind = PacketType::from_digit(digit)?;

    let mut count = 0usize;
    if kind.is_binary() {
        let dash = memchr::memchr(b'-', rest).ok_or(SocketError::IllegalAttachments)?;
        let digits = rest.get(..dash).unwrap_or_default();
        count = parse_u64(digits)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(SocketError::IllegalAttachments)?;
        if count > max_attachments {
            return Err(SocketError::TooManyAttachments {
                count,
                max: max_attachments,
            });
        }
        rest = rest.get(dash + 1..).unwrap_or_default();
    }

    let nsp = if rest.first() == Some(&b'/') {
        let end = memchr::memchr(b',', rest).unwrap_or(rest.len());
        let raw = rest.get(..end).unwrap_or_default();
        if raw.len() > MAX_NSP_LEN {
            return Err(SocketError::InvalidNamespace);
        }
        let nsp = std::str::from_utf8(raw)
            .map_err(|_| SocketError::InvalidUtf8)?
            .to_owned();
        rest = rest.get(end + 1..).unwrap_or_default();
        nsp
    } else {
        DEFAULT_NSP.to_owned()
    };

    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if digits > 0 {
        let id =
            parse_u64(rest.get(..digits).unwrap_or_default()).ok_or(SocketError::InvalidAckId)?;
        rest = rest.get(digits..).unwrap_or_default();
        Some(id)
    } else {
        None
    };

    let data = if rest.is_empty() {
        None
    } else {
        Some(json::parse_copy(rest, max_depth)?)
    };

    validate(kind, data.as_ref())?;
    if kind.is_binary()
        && let Some(data) = &data
    {
        check_placeholders(data, count)?;
    }
    Ok((
        Packet {
            kind,
            nsp,
            id,
            data,
            attachments: Vec::new(),
        },
        count,
    ))
}

/// Decimal digits to a number; `None` when empty, not digits, or too big for a `u64`.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// The reference parser's `isPayloadValid`, plus: EVENT and ACK must carry data.
fn validate(kind: PacketType, data: Option<&Value>) -> Result<(), SocketError> {
    let ok = match (kind, data) {
        (PacketType::Connect, None) => true,
        (PacketType::Connect, Some(v)) => matches!(v, Value::Object(_)),
        (PacketType::Disconnect, d) => d.is_none(),
        (PacketType::ConnectError, Some(v)) => matches!(v, Value::Object(_) | Value::String(_)),
        (PacketType::ConnectError, None) => true,
        (
            PacketType::Event | PacketType::BinaryEvent | PacketType::Ack | PacketType::BinaryAck,
            None,
        ) => {
            return Err(SocketError::MissingPayload(kind));
        }
        (PacketType::Event | PacketType::BinaryEvent, Some(v)) => match v {
            Value::Array(items) => match items.first() {
                Some(Value::String(name)) if RESERVED_EVENTS.contains(&name.as_str()) => {
                    return Err(SocketError::ReservedEventName);
                }
                Some(first) => matches!(first, Value::String(_)) || is_number(first),
                None => false,
            },
            _ => false,
        },
        (PacketType::Ack | PacketType::BinaryAck, Some(v)) => matches!(v, Value::Array(_)),
    };
    if ok {
        Ok(())
    } else {
        Err(SocketError::InvalidPayload(kind))
    }
}

/// Every `{"_placeholder":true,...}` must have an integer `num` below `count`. Recursion depth is
/// bounded by the JSON depth limit already enforced.
fn check_placeholders(value: &Value, count: usize) -> Result<(), SocketError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_placeholders(v, count)),
        Value::Object(obj) => {
            if matches!(
                obj.get("_placeholder"),
                Some(Value::Static(simd_json::StaticNode::Bool(true)))
            ) {
                let num = match obj.get("num") {
                    Some(Value::Static(simd_json::StaticNode::U64(n))) => usize::try_from(*n).ok(),
                    Some(Value::Static(simd_json::StaticNode::I64(n))) => usize::try_from(*n).ok(),
                    _ => None,
                };
                return match num {
                    Some(n) if n < count => Ok(()),
                    _ => Err(SocketError::InvalidPlaceholder),
                };
            }
            obj.values().try_for_each(|v| check_placeholders(v, count))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "decoder_tests.rs"]
mod tests;
