//! Engine.IO v4 and Socket.IO v5, written sans-IO.
//!
//! Nothing in this crate touches a socket or reads a clock: bytes and `Instant`s go in, packets,
//! events and timer deadlines come out. The server (`chatwire`) and the load generator drive it.
//!
//! - [`engine`]: Engine.IO packets, polling payloads, handshake queries, session ids and the server
//!   session state machine (heartbeat, upgrade, close).
//! - [`socket`]: Socket.IO packets (namespaces, ack ids, binary attachments) and the per-connection
//!   decoder that validates them like the reference server.
//! - [`json`]: depth-limited simd-json parsing.
//! - [`client`]: the client side of both layers.
//! - [`config`]: limits, defaults equal to the reference server.
//! - [`error`]: one error enum per layer.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod engine;
pub mod error;
pub mod json;
pub mod socket;

pub use config::{EngineConfig, ProtocolConfig, SocketConfig};
pub use error::{EngineError, HandshakeError, JsonError, SocketError};
