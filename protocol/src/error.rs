//! One error enum per layer. Each variant's doc says what the caller should do about it.
//!
//! Mapping to outcomes (HTTP status, close the connection or not) happens in the server, in one place;
//! here every error only says what was wrong with the input.

use crate::socket::kind::PacketType;

/// JSON payload could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Nesting deeper than the configured limit; detected before parsing, nothing was built.
    /// Reject the packet (the reference server would disconnect the socket as a parse error).
    #[error("JSON nesting deeper than {max}")]
    TooDeep {
        /// The configured limit that was exceeded.
        max: usize,
    },
    /// Not valid JSON (or not UTF-8). Reject the packet as a parse error.
    #[error("invalid JSON near byte {offset}")]
    Syntax {
        /// Byte offset the parser reported.
        offset: usize,
    },
}

/// Engine.IO packets, payloads and sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A frame or polling item with no bytes at all. Close the session ("parse error").
    #[error("empty Engine.IO packet")]
    EmptyPacket,
    /// The first byte is not a packet type `0`..=`6` (or `b` in a polling payload). Close the session.
    #[error("unknown Engine.IO packet type {0:#04x}")]
    UnknownPacketType(u8),
    /// A text packet that is not UTF-8. Close the session.
    #[error("Engine.IO text packet is not UTF-8")]
    InvalidUtf8,
    /// The open packet's JSON is malformed (client side). Treat the handshake as failed.
    #[error("malformed Engine.IO open packet")]
    InvalidOpenPacket,
    /// A `b` polling item whose base64 does not decode. Close the session.
    #[error("invalid base64 in binary polling item")]
    InvalidBase64,
    /// A message or payload larger than `max_payload`. Close the session (HTTP 413 for polling).
    #[error("payload of {len} bytes exceeds max_payload {max}")]
    PayloadTooLarge {
        /// Size that was received.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The client sent a ping: in v4 only the server pings. Close the session.
    #[error("invalid heartbeat direction")]
    InvalidHeartbeatDirection,
    /// A second GET poll arrived while one was pending ("overlap from client"). Answer it with
    /// HTTP 400; the session is closed and the pending poll must be ended.
    #[error("duplicate poll request")]
    DuplicatePoll,
    /// A second POST arrived while one was being read ("data request overlap from client").
    /// Answer it with HTTP 400; the session is closed.
    #[error("duplicate data request")]
    DuplicatePost,
    /// A packet that makes no sense in the current state (open from a client, upgrade while not
    /// probing, probe on the main transport...). Close the session or the probing transport.
    #[error("unexpected Engine.IO packet in this state")]
    UnexpectedPacket,
    /// The session is already closed. Drop the transport.
    #[error("Engine.IO session closed")]
    Closed,
    /// `handle_packet` was called while an event from the previous call was still undelivered.
    /// This is a bug in the caller: drain `poll_event` after every `handle_packet`.
    #[error("previous session event not drained")]
    EventNotDrained,
}

/// Engine.IO handshake query rejected; the reference server answers HTTP 400 with
/// `{"code":N,"message":"..."}` (403 for `Forbidden`). Use [`HandshakeError::to_json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Code 0: `transport` missing or not `polling`/`websocket`. Answer 400.
    #[error("Transport unknown")]
    TransportUnknown,
    /// Code 1: `sid` names no live session. Answer 400.
    #[error("Session ID unknown")]
    SessionIdUnknown,
    /// Code 2: a handshake (no `sid`) with a method other than GET. Answer 400.
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    /// Code 3: malformed request (transport mismatch for the sid, bad query). Answer 400.
    #[error("Bad request")]
    BadRequest,
    /// Code 4: refused by policy (origin, rate limit). Answer 403.
    #[error("Forbidden")]
    Forbidden,
    /// Code 5: `EIO` is not `4`. Answer 400.
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
}

impl HandshakeError {
    /// The reference server's numeric error code.
    pub fn code(self) -> u8 {
        match self {
            Self::TransportUnknown => 0,
            Self::SessionIdUnknown => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    /// The reference server's message for [`HandshakeError::code`].
    pub fn message(self) -> &'static str {
        match self {
            Self::TransportUnknown => "Transport unknown",
            Self::SessionIdUnknown => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// HTTP status the reference server uses: 403 for `Forbidden`, 400 otherwise.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            _ => 400,
        }
    }

    /// The response body: `{"code":N,"message":"..."}`.
    pub fn to_json(self) -> String {
        format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self.code(),
            self.message()
        )
    }
}

/// Socket.IO packets. The reference server closes the connection on any of these
/// ("parse error"); do the same unless noted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// An empty text frame. Disconnect.
    #[error("empty Socket.IO packet")]
    Empty,
    /// The first character is not `0`..=`6`. Disconnect.
    #[error("unknown Socket.IO packet type {0:#04x}")]
    UnknownPacketType(u8),
    /// A text packet that is not UTF-8. Disconnect.
    #[error("Socket.IO packet is not UTF-8")]
    InvalidUtf8,
    /// The attachment count of a binary packet is missing, not a number or not followed by `-`.
    /// Disconnect.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// More attachments announced than `max_attachments`. Disconnect.
    #[error("too many attachments: {count} > {max}")]
    TooManyAttachments {
        /// Announced count.
        count: usize,
        /// Configured limit.
        max: usize,
    },
    /// A `{"_placeholder":true,"num":N}` whose `num` is not an integer below the attachment count.
    /// Disconnect.
    #[error("illegal attachment placeholder")]
    InvalidPlaceholder,
    /// Binary frame while no binary packet is being reassembled. Disconnect.
    #[error("got binary data when not reconstructing a packet")]
    UnexpectedBinary,
    /// Text frame while a binary packet still waits for attachments. Disconnect.
    #[error("got plaintext data when reconstructing a packet")]
    UnexpectedText,
    /// The ack id is not a number that fits in `u64`. Disconnect.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The namespace is empty or too long. Disconnect.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// The JSON payload is too deep or malformed. Disconnect.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The payload has the wrong shape for the packet type (CONNECT not an object, DISCONNECT with
    /// data, EVENT not a non-empty array led by a string or number, ACK not an array,
    /// CONNECT_ERROR neither string nor object). Disconnect.
    #[error("invalid payload for {0:?}")]
    InvalidPayload(PacketType),
    /// EVENT/ACK without any payload. Disconnect.
    #[error("missing payload for {0:?}")]
    MissingPayload(PacketType),
    /// EVENT named like a reserved event (`connect`, `connect_error`, `disconnect`,
    /// `disconnecting`, `newListener`, `removeListener`). Disconnect.
    #[error("reserved event name")]
    ReservedEventName,
    /// [`RawEvent::arg`](crate::socket::raw::RawEvent::arg): the event has no argument at this
    /// index. Not a protocol error: answer the event as a bad request, keep the connection.
    #[error("event has no argument {0}")]
    MissingArgument(usize),
    /// [`RawEvent::arg`](crate::socket::raw::RawEvent::arg): the argument is valid JSON but does
    /// not fit the requested type. Not a protocol error: answer the event as a bad request (or
    /// read it as a generic value), keep the connection.
    #[error("event argument {index} has the wrong shape: {message}")]
    ArgumentType {
        /// Argument index (0 = first after the event name).
        index: usize,
        /// What the deserializer reported.
        message: String,
    },
}
