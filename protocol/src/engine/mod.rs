//! Engine.IO v4: the transport layer under Socket.IO.
//!
//! [`packet`] is one packet (a WebSocket frame or one polling item), [`payload`] a polling body,
//! [`handshake`] the query of every request, [`sid`] session ids, [`session`] the server state
//! machine (heartbeat, upgrade, close) driven by injected time.

pub mod handshake;
pub mod packet;
pub mod payload;
pub mod session;
pub mod sid;

pub use handshake::{HandshakeQuery, Transport};
pub use packet::{OpenPacket, Packet};
pub use session::{CloseReason, ServerSession, SessionEvent};
pub use sid::Sid;
