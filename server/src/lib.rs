//! chatwire: a Socket.IO chat server with per-core shards, the top layer of the workspace.
//!
//! Flow: a shard accepts a TCP connection (`http`), Engine.IO sessions live on the shard named by
//! their sid (`engine`), the Socket.IO layer (`sio`) hands `/chat` events to the chat rules
//! (`chatwire_chat`) through [`app`], which carries out their effects: rooms, broadcasts and
//! presence through the cluster layer's `Adapter` (`chatwire_cluster`), messages to storage
//! (`chatwire_store`) through [`app::commit`].
pub mod app;
pub mod auth;
pub mod config;
pub mod engine;
pub mod fleet;
pub mod heap;
pub mod http;
pub mod ids;
pub mod liveness;
pub mod origin;
pub mod ratelimit;
pub mod rest;
pub mod route;
pub mod server;
pub mod session;
pub mod shard;
pub mod shared;
pub mod shutdown;
pub mod sio;
pub mod telemetry;
pub mod worker;

pub use chatwire_chat as chat;
pub use chatwire_cluster as cluster;
pub use chatwire_store as store;

pub use server::{Mode, RunningServer, Server};
