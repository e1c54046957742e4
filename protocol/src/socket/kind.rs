//! [`PacketType`]: the seven Socket.IO packet types, a leaf every other module may name (the
//! errors included). Parsing a digit lives with the packet grammar in `packet.rs`.

/// The seven Socket.IO packet types (the first character on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// `0`: join a namespace (client: optional auth object; server: `{"sid":...}`).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event: `["name", ...args]`.
    Event = 2,
    /// `3`: the answer to an event that carried an ack id.
    Ack = 3,
    /// `4`: the server refused a CONNECT (`{"message":...}`).
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an ack with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The wire digit.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Whether packets of this type carry binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}
