//! [`Shared`]: the process-wide, read-only state every shard reads (settings, limits, the chat
//! dependencies, the cluster adapter, shutdown signals), and the [`Mode`] the server runs in.
//! Built once, when the server starts.

use std::sync::Arc;
use std::time::Duration;

use chatwire_cluster::Adapter;
use chatwire_protocol::config::ProtocolConfig;
use chatwire_store::Store;

use chatwire_chat::ChatConfig;
use chatwire_store::AnyStore;

use crate::auth::Authenticator;
use crate::origin::OriginPolicy;
use crate::ratelimit::ConnectionLimiter;
use crate::route::Committer;
use crate::shutdown::Shutdown;

/// tungstenite's read buffer per WebSocket: one block each connection keeps for its life (idle
/// or not), and the most one read takes. 512 bytes hold a client event (a chat message with its
/// envelope is a few hundred bytes); a longer frame is read in pieces of this size. It was 1 KiB:
/// 512 bytes more per idle connection.
pub const WS_READ_BUFFER: usize = 512;

/// What the server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The chat application (`/chat`, `/`, REST).
    Chat,
    /// The protocol test-suite setup (`/engine.io/` echo, `/socket.io/` with `/` and `/custom`).
    Conformance,
}

/// Process-wide, read-only state shared by every shard.
pub struct Shared {
    /// Chat or conformance.
    pub mode: Mode,
    /// Engine.IO and Socket.IO limits and timers.
    pub protocol: ProtocolConfig,
    /// Most frames queued to one client before it is dropped.
    pub outbound_frames: usize,
    /// Most bytes queued to one client before it is dropped.
    pub outbound_bytes: usize,
    /// tungstenite read buffer per WebSocket ([`WS_READ_BUFFER`]).
    pub ws_read_buffer: usize,
    /// HTTP header read timeout.
    pub header_read_timeout: Duration,
    /// CORS / Origin allowlist.
    pub origin: OriginPolicy,
    /// This node's id and the other nodes of the fleet (sessions they own are forwarded).
    pub fleet: crate::fleet::Fleet,
    /// Per-IP new-connection limiter (None = unlimited).
    pub conn_limiter: Option<ConnectionLimiter>,
    /// Open Engine.IO sessions per address and in total.
    pub session_caps: Arc<crate::http::sessions::SessionCaps>,
    /// Most new sessions one keep-alive HTTP connection may open.
    pub max_handshakes_per_connection: u32,
    /// Time a client has to send a whole request body.
    pub body_read_timeout: Duration,
    /// REST rate limits per user and per address.
    pub rest_limits: crate::rest::limits::RestRateLimits,
    /// Chat dependencies (None in conformance mode).
    pub chat: Option<ChatShared>,
    /// The cluster adapter every room operation goes through.
    pub adapter: Arc<dyn Adapter>,
    /// The newest message id when this node started (with other nodes only, else 0): the
    /// shards' cross-node order never waits for a predecessor at or below it.
    pub order_floor: i64,
    /// REST handler context (None in conformance mode).
    pub rest: Option<crate::rest::context::RestContext>,
    /// Demo chat page and socket.io-client bundle (None in conformance mode).
    pub demo: Option<crate::http::demo::Demo>,
    /// Which shard threads are running.
    pub liveness: Arc<crate::liveness::Liveness>,
    /// Fires when shards must stop accepting.
    pub stop_accepting: Shutdown,
    /// Fires when shards must close every client and exit.
    pub shutdown: Shutdown,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Threads that stopped while the server should be running: shards, and the batch writer.
    pub fn dead_threads(&self) -> Vec<String> {
        let mut dead = self.liveness.dead();
        if let Some(chat) = &self.chat
            && let crate::route::Committer::Writer(writer) = &chat.committer
            && !writer.is_alive()
        {
            dead.push("chatwire-writer".to_owned());
        }
        dead
    }

    /// `/readyz`: the store answers within 2 s (always ready in conformance mode).
    pub async fn ready(&self) -> bool {
        match &self.chat {
            Some(chat) => matches!(
                tokio::time::timeout(Duration::from_secs(2), chat.store.ping()).await,
                Ok(Ok(()))
            ),
            None => true,
        }
    }
}

/// Process-wide chat dependencies (read-only, shared by every shard).
pub struct ChatShared {
    /// Token verification.
    pub auth: Authenticator,
    /// The store.
    pub store: Arc<AnyStore>,
    /// Where messages go to be stored.
    pub committer: Committer,
    /// Settings of the chat rules.
    pub config: ChatConfig,
    /// Client events (and namespace CONNECTs) per connection: per second, burst; 0 = unlimited.
    pub rate: (u32, u32),
    /// Client events per user, over all the user's connections on a shard: per second (bursts
    /// of twice that); 0 = unlimited.
    pub user_rate: u32,
    /// Connection state recovery window (`RECOVERY_WINDOW`); zero = off.
    pub recovery_window: std::time::Duration,
    /// Most events one recovery replays (`RECOVERY_MAX_EVENTS`).
    pub recovery_max_events: usize,
}

impl std::fmt::Debug for ChatShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatShared").finish_non_exhaustive()
    }
}
