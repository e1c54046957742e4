//! Protocol limits. Every default equals the reference Node.js server (engine.io 6 / socket.io 4),
//! except `max_json_depth`, which the reference server does not have.
//!
//! The structs are `#[non_exhaustive]`: build them with `Default` and the `with_*` setters.

use std::time::Duration;

/// Engine.IO limits and timers.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Time between two server pings (reference: 25 000 ms). Sent to clients in the open packet.
    pub ping_interval: Duration,
    /// How long the server waits for a pong after a ping before closing (reference: 20 000 ms).
    pub ping_timeout: Duration,
    /// How long a polling -> websocket upgrade may take before the probe transport is dropped
    /// (reference: 10 000 ms).
    pub upgrade_timeout: Duration,
    /// Largest accepted message / polling body in bytes (reference: 1e6). Sent in the open packet.
    pub max_payload: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
        }
    }
}

impl EngineConfig {
    /// Sets [`EngineConfig::ping_interval`].
    #[must_use]
    pub fn with_ping_interval(mut self, value: Duration) -> Self {
        self.ping_interval = value;
        self
    }
    /// Sets [`EngineConfig::ping_timeout`].
    #[must_use]
    pub fn with_ping_timeout(mut self, value: Duration) -> Self {
        self.ping_timeout = value;
        self
    }
    /// Sets [`EngineConfig::upgrade_timeout`].
    #[must_use]
    pub fn with_upgrade_timeout(mut self, value: Duration) -> Self {
        self.upgrade_timeout = value;
        self
    }
    /// Sets [`EngineConfig::max_payload`].
    #[must_use]
    pub fn with_max_payload(mut self, value: usize) -> Self {
        self.max_payload = value;
        self
    }
}

/// Socket.IO limits.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// Most binary attachments one packet may announce (reference parser: 10).
    pub max_attachments: usize,
    /// Deepest JSON nesting accepted in a packet payload (ours: 128). Checked before parsing.
    pub max_json_depth: usize,
    /// How long a client has to send CONNECT after the Engine.IO handshake (reference: 45 000 ms).
    pub connect_timeout: Duration,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            max_attachments: 10,
            max_json_depth: 128,
            connect_timeout: Duration::from_millis(45_000),
        }
    }
}

impl SocketConfig {
    /// Sets [`SocketConfig::max_attachments`].
    #[must_use]
    pub fn with_max_attachments(mut self, value: usize) -> Self {
        self.max_attachments = value;
        self
    }
    /// Sets [`SocketConfig::max_json_depth`].
    #[must_use]
    pub fn with_max_json_depth(mut self, value: usize) -> Self {
        self.max_json_depth = value;
        self
    }
    /// Sets [`SocketConfig::connect_timeout`].
    #[must_use]
    pub fn with_connect_timeout(mut self, value: Duration) -> Self {
        self.connect_timeout = value;
        self
    }
}

/// Both layers' limits together.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProtocolConfig {
    /// Engine.IO limits and timers.
    pub engine: EngineConfig,
    /// Socket.IO limits.
    pub socket: SocketConfig,
}

impl ProtocolConfig {
    /// Replaces the Engine.IO part.
    #[must_use]
    pub fn with_engine(mut self, engine: EngineConfig) -> Self {
        self.engine = engine;
        self
    }
    /// Replaces the Socket.IO part.
    #[must_use]
    pub fn with_socket(mut self, socket: SocketConfig) -> Self {
        self.socket = socket;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_equal_the_reference_server() {
        let c = ProtocolConfig::default();
        assert_eq!(c.engine.ping_interval, Duration::from_millis(25_000));
        assert_eq!(c.engine.ping_timeout, Duration::from_millis(20_000));
        assert_eq!(c.engine.upgrade_timeout, Duration::from_millis(10_000));
        assert_eq!(c.engine.max_payload, 1_000_000);
        assert_eq!(c.socket.max_attachments, 10);
        assert_eq!(c.socket.connect_timeout, Duration::from_millis(45_000));
    }

    #[test]
    fn setters_change_one_field() {
        let c = EngineConfig::default().with_ping_interval(Duration::from_millis(300));
        assert_eq!(c.ping_interval, Duration::from_millis(300));
        assert_eq!(c.ping_timeout, Duration::from_millis(20_000));
    }
}
