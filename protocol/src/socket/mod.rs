//! Socket.IO v5: packets carried inside Engine.IO messages.
//!
//! [`packet`] is the packet type and its encoder (including the fast event prefix for servers),
//! [`decoder`] the per-connection decoder that validates like the reference server and reassembles
//! binary packets across frames, [`raw`] the fast path for text EVENTs (validated the same way,
//! no JSON value tree; arguments deserialized straight into the application's types).

pub mod decoder;
pub mod emit;
pub mod kind;
pub mod packet;
pub mod raw;
mod scan;

pub use decoder::Decoder;
pub use emit::{Position, TextFrame};
pub use packet::{Packet, PacketType, encode, encode_event_prefix};
pub use raw::RawEvent;
