//! chatwire: a Socket.IO chat server with per-core shards.
//!
//! Flow: a shard accepts a TCP connection (`http`), Engine.IO sessions live on the shard named by
//! their sid (`engine`), the Socket.IO layer (`sio`) hands `/chat` events to the chat layer
//! (`chat`), rooms and presence are partitioned over shards (`rooms`, `presence`, `adapter`), and
//! committed messages flow writer -> room owner shard -> member shards (`chat::sink`).
pub mod adapter;
pub mod auth;
pub mod chat;
pub mod config;
pub mod engine;
pub mod http;
pub mod origin;
pub mod presence;
pub mod ratelimit;
pub mod rest;
pub mod rooms;
pub mod server;
pub mod shard;
pub mod shutdown;
pub mod sio;
pub mod store;
pub mod telemetry;

pub use server::{Mode, RunningServer, Server};
