//! chatwire: a Socket.IO chat server with per-core shards.
pub mod auth;
pub mod config;
pub mod origin;
pub mod ratelimit;
pub mod shutdown;
pub mod telemetry;
pub mod store;
