//! Engine.IO sessions on a shard: the per-connection state ([`conn`]) and its bounded outbound
//! queue ([`outbox`]). The transports (`http::polling`, `http::websocket`) feed packets in and
//! drain frames out; the protocol crate's `ServerSession` decides heartbeats and upgrades.

pub mod conn;
pub mod outbox;
pub mod wire;
