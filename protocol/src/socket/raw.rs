//! The fast decode path for text EVENT packets: no JSON value tree.
//!
//! [`RawEvent::decode`] keeps the frame's bytes, parses the header by hand (type, namespace, ack
//! id) and validates the JSON exactly like [`Decoder`](super::Decoder) does (same depth check,
//! same simd-json tape: full syntax and UTF-8; then a non-empty array led by a string or number
//! that is not a reserved name), but never builds a value: the tape is walked and dropped. One
//! more byte pass over the (now known-valid) array records where each element starts and ends.
//!
//! The application then reads the event name as `&str` and deserializes the arguments it needs
//! straight into its own types ([`RawEvent::arg`]), or takes their raw bytes
//! ([`RawEvent::arg_bytes`]). Only EVENT (`2`) packets take this path; [`RawEvent::decode`]
//! answers `Ok(None)` for every other type so the caller can use the [`Decoder`](super::Decoder).

use std::ops::Range;

use bytes::Bytes;
use simd_json::{Node, StaticNode};
use smallvec::SmallVec;

use crate::error::SocketError;
use crate::json::{self, Value};
use crate::socket::decoder::{MAX_NSP_LEN, RESERVED_EVENTS};
use crate::socket::packet::{DEFAULT_NSP, PacketType};
use crate::socket::scan::Spans;

/// A validated text EVENT whose JSON stays as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The Socket.IO text (without the Engine.IO `4`).
    frame: Bytes,
    /// The namespace's bytes in `frame`; empty = `/`.
    nsp: Range<usize>,
    /// Ack id, when the sender wants an ACK.
    id: Option<u64>,
    /// The event name.
    name: Name,
    /// Byte ranges in `frame` of the arguments after the name (whitespace trimmed).
    args: SmallVec<[Range<usize>; 2]>,
}

/// Where the event name is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    /// Between these bytes of the frame (a string without escapes).
    Span(Range<usize>),
    /// A string with escapes, unescaped.
    Owned(Box<str>),
    /// A number (the reference accepts it; it has no name).
    Number,
}

impl RawEvent {
    /// Decodes `frame` (the Socket.IO text, e.g. `2/chat,7["message:send",{...}]`) when it is an
    /// EVENT. `Ok(None)`: another packet type; decode it with the [`Decoder`](super::Decoder).
    /// Errors are those the [`Decoder`](super::Decoder) returns for the same bytes.
    pub fn decode(frame: Bytes, max_depth: usize) -> Result<Option<RawEvent>, SocketError> {
        let (&digit, _) = frame.split_first().ok_or(SocketError::Empty)?;
        if PacketType::from_digit(digit)? != PacketType::Event {
            return Ok(None);
        }
        let input = frame.as_ref();
        let mut pos = 1usize;
        let mut nsp = 0..0;
        if input.get(pos) == Some(&b'/') {
            let rest = input.get(pos..).unwrap_or_default();
            let end = memchr::memchr(b',', rest).unwrap_or(rest.len());
            if end > MAX_NSP_LEN {
                return Err(SocketError::InvalidNamespace);
            }
            std::str::from_utf8(rest.get(..end).unwrap_or_default())
                .map_err(|_| SocketError::InvalidUtf8)?;
            nsp = pos..pos + end;
            pos = (pos + end + 1).min(input.len());
        }
        let rest = input.get(pos..).unwrap_or_default();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let id = if digits > 0 {
            let id = parse_u64(rest.get(..digits).unwrap_or_default())
                .ok_or(SocketError::InvalidAckId)?;
            pos += digits;
            Some(id)
        } else {
            None
        };
        let data = input.get(pos..).unwrap_or_default();
        if data.is_empty() {
            return Err(SocketError::MissingPayload(PacketType::Event));
        }
        let (name, spans) = match fast(input, data, pos, max_depth) {
            Some(found) => found,
            None => full_check(input, data, pos, max_depth)?,
        };
        let (_, args) = spans
            .split_first()
            .ok_or(SocketError::InvalidPayload(PacketType::Event))?;
        let args = args.iter().cloned().collect();
        Ok(Some(RawEvent {
            frame,
            nsp,
            id,
            name,
            args,
        }))
    }

    /// The namespace (`/` by default).
    pub fn nsp(&self) -> &str {
        self.frame
            .get(self.nsp.clone())
            .filter(|b| !b.is_empty())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or(DEFAULT_NSP)
    }

    /// The ack id, when the sender wants an ACK.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The event name; `None` when the first element is a number.
    pub fn name(&self) -> Option<&str> {
        match &self.name {
            Name::Span(span) => self
                .frame
                .get(span.clone())
                .and_then(|b| std::str::from_utf8(b).ok()),
            Name::Owned(name) => Some(name),
            Name::Number => None,
        }
    }

    /// How many arguments follow the name.
    pub fn arg_count(&self) -> usize {
        self.args.len()
    }

    /// The JSON text of argument `index` (0 = the first after the name), whitespace trimmed.
    pub fn arg_bytes(&self, index: usize) -> Option<&[u8]> {
        self.frame.get(self.args.get(index)?.clone())
    }

    /// Deserializes argument `index` into `T` (simd-json serde over a copy of its bytes, no value
    /// tree). [`SocketError::MissingArgument`] when there is no such argument,
    /// [`SocketError::ArgumentType`] when it does not fit `T`.
    pub fn arg<T: serde::de::DeserializeOwned>(&self, index: usize) -> Result<T, SocketError> {
        let bytes = self
            .arg_bytes(index)
            .ok_or(SocketError::MissingArgument(index))?;
        json::deserialize_copy(bytes)
            .map_err(|message| SocketError::ArgumentType { index, message })
    }

    /// Argument `index` as a generic JSON value, built exactly like the
    /// [`Decoder`](super::Decoder) builds it (repeated keys: last wins).
    pub fn arg_value(&self, index: usize, max_depth: usize) -> Result<Value, SocketError> {
        let bytes = self
            .arg_bytes(index)
            .ok_or(SocketError::MissingArgument(index))?;
        Ok(json::parse_copy(bytes, max_depth)?)
    }

    /// The frame this event was decoded from.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

/// The one-pass check ([`scan`](super::scan)): the name and element spans of a valid event
/// whose name is a plain string (no escapes, not reserved) or a number; `None` = not sure, run
/// [`full_check`].
fn fast(input: &[u8], data: &[u8], pos: usize, max_depth: usize) -> Option<(Name, Spans)> {
    if data.len() > FAST_MAX || std::str::from_utf8(data).is_err() {
        return None;
    }
    let spans = super::scan::event_array(data, pos, max_depth)?;
    let first = spans.first()?;
    let raw = input.get(first.clone())?;
    let name = match raw.first()? {
        b'"' => {
            let inner = first.start + 1..first.end.checked_sub(1)?;
            let text = input.get(inner.clone())?;
            if text.contains(&b'\\') || RESERVED_EVENTS.iter().any(|r| r.as_bytes() == text) {
                return None;
            }
            Name::Span(inner)
        }
        b'-' | b'0'..=b'9' => Name::Number,
        _ => return None,
    };
    Some((name, spans))
}

/// The decoder's own check (depth scan, simd-json tape, payload shape): decides every event the
/// fast pass was not sure about, with the decoder's errors.
fn full_check(
    input: &[u8],
    data: &[u8],
    pos: usize,
    max_depth: usize,
) -> Result<(Name, Spans), SocketError> {
    // Split first (cheap, no allocation); the spans are trusted only once the tape said the
    // JSON is valid, so errors come in the decoder's order.
    let spans = split_array(data, pos);
    let first = spans
        .as_ref()
        .and_then(|s| s.first())
        .and_then(|r| input.get(r.start + 1..r.end.saturating_sub(1)));
    let name = json::with_tape(data, max_depth, |nodes| Ok(check_event(nodes, first)))??;
    let spans = spans.ok_or(SocketError::InvalidPayload(PacketType::Event))?;
    let first = spans
        .first()
        .ok_or(SocketError::InvalidPayload(PacketType::Event))?;
    let name = match name {
        Name::Span(_) => Name::Span(first.start + 1..first.end.saturating_sub(1)),
        other => other,
    };
    Ok((name, spans))
}

/// Payloads longer than this skip the one-pass check (simd-json is faster on long inputs).
const FAST_MAX: usize = 4096;

/// Checks the tape like the reference `isPayloadValid` for EVENT: a non-empty array whose first
/// element is a string (not reserved) or a number. `raw_first` is the first element's text
/// between its quotes: when it equals the unescaped name, the name is kept as a span (no copy).
fn check_event(nodes: &[Node<'_>], raw_first: Option<&[u8]>) -> Result<Name, SocketError> {
    let invalid = SocketError::InvalidPayload(PacketType::Event);
    let mut it = nodes.iter();
    match it.next() {
        Some(Node::Array { len, .. }) if *len > 0 => {}
        _ => return Err(invalid),
    }
    match it.next() {
        Some(Node::String(name)) if RESERVED_EVENTS.contains(name) => {
            Err(SocketError::ReservedEventName)
        }
        Some(Node::String(name)) if raw_first == Some(name.as_bytes()) => Ok(Name::Span(0..0)),
        Some(Node::String(name)) => Ok(Name::Owned((*name).into())),
        Some(Node::Static(StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_))) => {
            Ok(Name::Number)
        }
        _ => Err(invalid),
    }
}

/// Byte ranges (offset by `base`) of the elements of the JSON array `data`, which simd-json has
/// already validated. `None` if it is not an array after all.
fn split_array(data: &[u8], base: usize) -> Option<Spans> {
    let mut out = SmallVec::new();
    let mut i = skip_ws(data, 0);
    if data.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(data, i + 1);
    if data.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let start = i;
        let mut depth = 0usize;
        loop {
            match *data.get(i)? {
                b'"' => i = skip_string(data, i + 1)?,
                b'[' | b'{' => {
                    depth += 1;
                    i += 1;
                }
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    i += 1;
                }
                b',' | b']' if depth == 0 => break,
                _ => i += 1,
            }
        }
        let mut end = i;
        while end > start && data.get(end - 1).is_some_and(u8::is_ascii_whitespace) {
            end -= 1;
        }
        out.push(base + start..base + end);
        if data.get(i) == Some(&b']') {
            return Some(out);
        }
        i = skip_ws(data, i + 1);
    }
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while data.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// From just after an opening quote, the index just after the closing quote.
fn skip_string(buf: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let rest = buf.get(i..)?;
        let at = memchr::memchr2(b'"', b'\\', rest)?;
        if rest.get(at) == Some(&b'"') {
            return Some(i + at + 1);
        }
        i += at + 2;
    }
}

/// Decimal digits to a number; `None` when empty or too big for a `u64`.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
#[path = "raw_tests.rs"]
mod tests;
