//! What the REST API reads: conversations as one viewer sees them, pages and their cursors,
//! history queries and unread counts.

use std::sync::Arc;

use super::{Message, Profile, StoreError, UserKey};

/// 1:1 or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    /// Between exactly two users, unique per pair.
    Direct,
    /// Any number of users (at most `MAX_PARTICIPANTS`).
    Group,
}

impl ConversationKind {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<ConversationKind, StoreError> {
        match s {
            "direct" => Ok(ConversationKind::Direct),
            "group" => Ok(ConversationKind::Group),
            other => Err(StoreError::Internal(format!(
                "unknown conversation type {other}"
            ))),
        }
    }
}

/// A participant with the profile clients display.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    /// Who.
    pub user: UserKey,
    /// Their profile.
    pub profile: Arc<Profile>,
}

/// A conversation as the REST API shows it to one viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Conversation id.
    pub id: i64,
    /// direct / group.
    pub kind: ConversationKind,
    /// Group title (None for 1:1 and untitled groups).
    pub title: Option<String>,
    /// Everyone in it, the viewer included, ordered by user.
    pub participants: Vec<Participant>,
    /// The newest message, if any.
    pub last_message: Option<Message>,
    /// Messages from others newer than the viewer's read pointer.
    pub unread_count: i64,
    /// Last activity (creation or newest message), Unix milliseconds.
    pub updated_at_ms: i64,
}

/// Position in a conversation list (latest activity first); opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    /// `updated_at` of the last conversation on the previous page.
    pub updated_at_ms: i64,
    /// Its id (tie breaker).
    pub id: i64,
}

impl ConversationCursor {
    /// Text form handed to clients as `nextCursor` and read back from `?before=`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.updated_at_ms, self.id)
    }

    /// Parses [`ConversationCursor::encode`]'s output.
    pub fn parse(s: &str) -> Option<ConversationCursor> {
        let (a, b) = s.split_once('_')?;
        Some(ConversationCursor {
            updated_at_ms: a.parse().ok()?,
            id: b.parse().ok()?,
        })
    }
}

/// One page of a user's conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationPage {
    /// Latest activity first.
    pub conversations: Vec<Conversation>,
    /// Where the next page starts; None on the last page.
    pub next_cursor: Option<ConversationCursor>,
}

/// Parameters of a history query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery<'a> {
    /// Only messages with a smaller id.
    pub before: Option<i64>,
    /// Page size (callers clamp it to 1..=100).
    pub limit: u32,
    /// Case-insensitive substring of the content.
    pub search: Option<&'a str>,
}

/// One page of history.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<Message>,
    /// The id to pass as `before` for the next page; None on the last page.
    pub next_cursor: Option<i64>,
}

/// Unread counts of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadCounts {
    /// Sum over all conversations.
    pub total: i64,
    /// `(conversation_id, unread)` for every conversation with unread messages, by id.
    pub conversations: Vec<(i64, i64)>,
}
