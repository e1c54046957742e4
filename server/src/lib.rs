//! chatwire: a Socket.IO chat server with per-core shards.
pub mod store;
