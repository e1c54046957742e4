//! What the REST handler needs ([`RestContext`]): the store, where posted messages go, the live
//! side that sockets hear from, and the limits. Plain data, shared by every shard.

use std::sync::Arc;
use std::time::Duration;

use chatwire_chat::validate::MessageLimits;
use chatwire_store::{AnyStore, UserKey};

use crate::route::Committer;

/// The server's live side, told about REST actions that sockets must see.
pub trait LiveEvents: Send + Sync + 'static {
    /// `reader` moved its read pointer in `conversation_id` to `message_id`: broadcast
    /// `message:read` to the room (the REST caller has no socket to exclude).
    fn read(&self, conversation_id: i64, message_id: i64, reader: UserKey);
}

/// Limits of the REST API.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestLimits {
    /// Largest request body accepted (default 64 KiB); larger is 413 `too_large`.
    pub max_body_bytes: usize,
    /// Most participants in a conversation, the caller included (`MAX_PARTICIPANTS`, default 1000).
    pub max_participants: usize,
    /// Page size when `?limit` is absent (default 50).
    pub default_page: u32,
    /// Largest page (`?limit` is clamped to it, default 100).
    pub max_page: u32,
    /// Validation of posted messages (the same as `message:send`).
    pub message: MessageLimits,
    /// How long a send waits for room in the writer queue (default 100 ms) before 503.
    pub submit_wait: Duration,
    /// How long a send waits for its commit (default 6 s, above the writer's 5 s deadline) before 503.
    pub commit_wait: Duration,
}

impl Default for RestLimits {
    fn default() -> Self {
        RestLimits {
            max_body_bytes: 64 * 1024,
            max_participants: 1000,
            default_page: 50,
            max_page: 100,
            message: MessageLimits::default(),
            submit_wait: Duration::from_millis(100),
            commit_wait: Duration::from_secs(6),
        }
    }
}

impl RestLimits {
    /// Sets [`RestLimits::max_participants`].
    pub fn with_max_participants(mut self, n: usize) -> Self {
        self.max_participants = n;
        self
    }
    /// Sets [`RestLimits::message`].
    pub fn with_message(mut self, m: MessageLimits) -> Self {
        self.message = m;
        self
    }
    /// Sets [`RestLimits::max_body_bytes`].
    pub fn with_max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    /// Sets [`RestLimits::commit_wait`].
    pub fn with_commit_wait(mut self, d: Duration) -> Self {
        self.commit_wait = d;
        self
    }
}

/// What the REST handler needs.
#[derive(Clone)]
pub struct RestContext {
    /// The database.
    pub store: Arc<AnyStore>,
    /// Where posted messages are stored (like socket sends).
    pub writer: Committer,
    /// Live broadcasts for REST actions.
    pub live: Arc<dyn LiveEvents>,
    /// Limits.
    pub limits: RestLimits,
}
