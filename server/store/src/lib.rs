//! Durable chat state: users, conversations, participants, messages and read pointers.
//!
//! The [`Store`] trait is what the rest of the server sees. Three implementations sit behind the
//! [`AnyStore`] enum, chosen by `DATABASE_URL`: [`MemoryStore`] (`memory`, tests and demos),
//! [`SqliteStore`] (`sqlite://path`, the laptop default) and [`PgStore`] (`postgres://...`).
//! All three have the same semantics, including `tempId` idempotency and read pointers.
//!
//! Messages are written through the [`batch::BatchWriter`], which groups sends into one database
//! round trip; everything else (REST queries, read pointers) calls the store directly.

pub mod any;
pub mod batch;
mod dedup;
mod group;
mod json;
pub mod memory;
pub mod postgres;
mod profiles;
mod read_state;
pub mod recovery;
pub mod sqlite;
pub mod views;

use std::future::Future;
use std::sync::Arc;

pub use any::AnyStore;
pub use json::{
    Civil, write_i64 as json_i64, write_opt_str as json_opt_str, write_str as json_str,
    write_timestamp as json_timestamp,
};
pub use memory::MemoryStore;
pub use postgres::PgStore;
pub use recovery::RecoverySession;
pub use sqlite::SqliteStore;
pub use views::{
    Conversation, ConversationCursor, ConversationKind, ConversationPage, HistoryQuery,
    MessagePage, Participant, UnreadCounts,
};

/// The two kinds of account the chat serves; `brand 5` and `influencer 5` are different users.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum UserType {
    /// A brand account.
    Brand,
    /// An influencer account.
    Influencer,
}

impl UserType {
    /// The wire name: `"brand"` / `"influencer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Brand => "brand",
            UserType::Influencer => "influencer",
        }
    }

    /// Parses the wire name (exact, lower case).
    pub fn parse(s: &str) -> Option<UserType> {
        match s {
            "brand" => Some(UserType::Brand),
            "influencer" => Some(UserType::Influencer),
            _ => None,
        }
    }

    /// The compact code stored in the database (`1` brand, `2` influencer).
    pub(crate) fn code(self) -> i16 {
        match self {
            UserType::Brand => 1,
            UserType::Influencer => 2,
        }
    }

    /// Inverse of [`UserType::code`].
    pub(crate) fn from_code(code: i16) -> Result<UserType, StoreError> {
        match code {
            1 => Ok(UserType::Brand),
            2 => Ok(UserType::Influencer),
            other => Err(StoreError::Internal(format!(
                "unknown user type code {other}"
            ))),
        }
    }
}

/// A user: the pair `(userType, userId)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct UserKey {
    /// Brand or influencer.
    pub user_type: UserType,
    /// The positive user id within its type.
    pub id: i64,
}

impl UserKey {
    /// Shorthand constructor.
    pub fn new(user_type: UserType, id: i64) -> UserKey {
        UserKey { user_type, id }
    }

    /// The user as one number, `id * 2` (+ 1 for an influencer): how recovery offsets name a
    /// reader. None when the id is too large for it.
    pub fn compact(self) -> Option<i64> {
        let kind = match self.user_type {
            UserType::Brand => 0,
            UserType::Influencer => 1,
        };
        self.id.checked_mul(2)?.checked_add(kind)
    }
}

/// What other users see of a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// Display handle; `<userType>_<userId>` when the token carried none.
    pub username: String,
    /// Given name, when known.
    pub first_name: Option<String>,
    /// Family name, when known.
    pub last_name: Option<String>,
    /// Avatar URL, when known.
    pub profile_image: Option<String>,
}

impl Profile {
    /// The profile of a user whose token carried no profile claims.
    pub fn default_for(user: UserKey) -> Profile {
        Profile {
            username: format!("{}_{}", user.user_type.as_str(), user.id),
            first_name: None,
            last_name: None,
            profile_image: None,
        }
    }
}

/// The kind of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// Plain text (the default).
    Text,
    /// An image at `attachmentUrl`.
    Image,
    /// A file at `attachmentUrl`.
    File,
}

impl MessageType {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::File => "file",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<MessageType> {
        match s {
            "text" => Some(MessageType::Text),
            "image" => Some(MessageType::Image),
            "file" => Some(MessageType::File),
            _ => None,
        }
    }
}

/// The client's idempotency key for a send; keeps its JSON type (`5` and `"5"` differ).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum TempId {
    /// A JSON integer.
    Int(i64),
    /// A JSON number that is not an `i64` (kept as given).
    Float(f64),
    /// A JSON string (at most 64 chars).
    Str(String),
}

impl TempId {
    /// The database key: `n:<number>` for numbers (an integral float equals the integer),
    /// `s:<string>` for strings.
    pub fn key(&self) -> String {
        // Once per stored message: spelled without a formatter where the parts allow it.
        let prefixed = |prefix: &str, rest: &str| {
            let mut key = String::with_capacity(prefix.len() + rest.len());
            key.push_str(prefix);
            key.push_str(rest);
            key
        };
        match self {
            TempId::Int(n) => prefixed("n:", itoa::Buffer::new().format(*n)),
            TempId::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    prefixed("n:", itoa::Buffer::new().format(*f as i64))
                } else {
                    format!("n:{f}")
                }
            }
            TempId::Str(s) => prefixed("s:", s),
        }
    }

    /// Appends the JSON form (number or string) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write_temp_id(self, out);
    }
}

/// A message to store, already validated (see the chat layer's validation).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Target conversation.
    pub conversation_id: i64,
    /// Who sends it (must be a participant).
    pub sender: UserKey,
    /// text / image / file.
    pub message_type: MessageType,
    /// The text (may be empty for image/file).
    pub content: String,
    /// http(s) URL for image/file.
    pub attachment_url: Option<String>,
    /// Original file name, shown by clients.
    pub attachment_name: Option<String>,
    /// Idempotency key chosen by the client.
    pub temp_id: Option<TempId>,
}

/// A stored message, as every client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Global, increasing id (usable as a replay offset).
    pub id: i64,
    /// The conversation it belongs to.
    pub conversation_id: i64,
    /// Who sent it.
    pub sender: UserKey,
    /// The sender's profile at read time (shared, not copied per message).
    pub sender_profile: Arc<Profile>,
    /// text / image / file.
    pub message_type: MessageType,
    /// The text.
    pub content: String,
    /// http(s) URL for image/file.
    pub attachment_url: Option<String>,
    /// Original file name.
    pub attachment_name: Option<String>,
    /// Commit time, Unix milliseconds.
    pub created_at_ms: i64,
    /// True once every other participant has read up to this message.
    pub is_read: bool,
    /// The tempId of the send this answers (only set on results of `insert_batch`).
    pub temp_id: Option<TempId>,
}

impl Message {
    /// Appends the contract's message object (section 4) as JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write_message(self, out);
    }
}

/// The outcome of storing one [`NewMessage`].
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The stored message (for a duplicate: the one stored the first time).
    pub message: Message,
    /// True when the `(sender, conversation, tempId)` was already stored; nothing new was written.
    pub duplicate: bool,
    /// The id of the conversation's message just before this one (0: it is the first), when the
    /// store knows it exactly (PostgreSQL and memory: read under the conversation's row lock or
    /// the store's lock); None when it does not (SQLite, duplicates). Nodes carry it with the
    /// message so that a conversation's room owner releases it as soon as its predecessor is out.
    pub prev: Option<i64>,
}

/// Storage errors; each variant says what the caller does with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The conversation or message does not exist: answer `not_found` (404).
    #[error("not found")]
    NotFound,
    /// The user is not a participant: answer `forbidden` (403).
    #[error("forbidden")]
    Forbidden,
    /// The request makes no sense (e.g. a 1:1 with yourself): answer `bad_request` (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request is over a limit (content length, participants): answer `too_large` (413).
    #[error("{0}")]
    TooLarge(String),
    /// The database is unreachable or too slow: answer `unavailable` (503); the client may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database answered something unexpected (a bug or a schema mismatch): log it and
    /// answer `unavailable` on sockets, 500 over HTTP.
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The contract's error code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound => "not_found",
            StoreError::Forbidden => "forbidden",
            StoreError::BadRequest(_) => "bad_request",
            StoreError::TooLarge(_) => "too_large",
            StoreError::Unavailable(_) | StoreError::Internal(_) => "unavailable",
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::NotFound => 404,
            StoreError::Forbidden => 403,
            StoreError::BadRequest(_) => 400,
            StoreError::TooLarge(_) => 413,
            StoreError::Unavailable(_) => 503,
            StoreError::Internal(_) => 500,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                // Connection-level failures (admin shutdown, too many connections, disk full,
                // sqlite busy/locked) are transient; everything else is a bug.
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let transient = code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || code == "40001"
                    || code == "40P01"
                    || code == "5"
                    || code == "6"
                    || code == "517"
                    || code == "261";
                if transient {
                    StoreError::Unavailable(db.to_string())
                } else {
                    StoreError::Internal(db.to_string())
                }
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// Result of storing one message of a batch: stored (new or duplicate), or refused
/// (`Forbidden` when the sender is not a participant, `NotFound` for an unknown conversation).
pub type Outcome = Result<Stored, StoreError>;

/// The storage interface of the chat server. Every method is cancel-safe for the caller
/// (a dropped future leaves the database consistent).
pub trait Store: Send + Sync + 'static {
    /// Creates the user on first sight. With `Some(profile)` (claims from a JWT) the stored profile
    /// is updated to it; with `None` an existing profile is kept and a new user gets
    /// [`Profile::default_for`]. Returns the stored profile.
    fn ensure_user(
        &self,
        user: UserKey,
        profile: Option<Profile>,
    ) -> impl Future<Output = Result<Arc<Profile>, StoreError>> + Send;

    /// The participants of a conversation (sorted); `None` when it does not exist.
    /// Participants never change after creation, so callers may cache this.
    fn participants(
        &self,
        conversation_id: i64,
    ) -> impl Future<Output = Result<Option<Arc<[UserKey]>>, StoreError>> + Send;

    /// The ids of every conversation the user is in (hidden ones included), for presence fan-out.
    fn conversations_of(
        &self,
        user: UserKey,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// Stores messages, idempotent by `(sender, conversation_id, temp_id)`: returns one outcome per
    /// input, in input order. Two inputs with the same key in one batch store one row and both get
    /// it (the second marked `duplicate`). A message whose sender is not a participant is refused
    /// (`Forbidden`/`NotFound`) without affecting the others. The outer error means nothing of the
    /// batch was stored (e.g. `Unavailable`): the caller may retry the whole batch.
    fn insert_batch(
        &self,
        batch: &[NewMessage],
    ) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send;

    /// Moves `reader`'s read pointer forward to `up_to` (a message of this conversation) or, with
    /// `None`, to the newest message; never backwards. Returns the message id the reply carries
    /// (0 when the conversation has no message yet).
    fn mark_read(
        &self,
        conversation_id: i64,
        reader: UserKey,
        up_to: Option<i64>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Returns the 1:1 conversation between `caller` and `other`, creating it (and `other`, when
    /// never seen) if needed; `true` when it was created. A 1:1 with yourself is `BadRequest`.
    /// An existing conversation the caller had hidden is shown again.
    fn create_direct(
        &self,
        caller: UserKey,
        other: UserKey,
    ) -> impl Future<Output = Result<(Conversation, bool), StoreError>> + Send;

    /// Creates a group of `caller` plus `members` (duplicates ignored, unknown users created).
    /// More than `max_participants` in total is `TooLarge`; no member besides the caller is `BadRequest`.
    fn create_group(
        &self,
        caller: UserKey,
        members: &[UserKey],
        title: Option<String>,
        max_participants: usize,
    ) -> impl Future<Output = Result<Conversation, StoreError>> + Send;

    /// The user's visible conversations, latest activity first, `limit` per page.
    fn list_conversations(
        &self,
        user: UserKey,
        before: Option<ConversationCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<ConversationPage, StoreError>> + Send;

    /// History of a conversation, newest first (`NotFound` / `Forbidden` for non-participants).
    fn history(
        &self,
        conversation_id: i64,
        viewer: UserKey,
        query: HistoryQuery<'_>,
    ) -> impl Future<Output = Result<MessagePage, StoreError>> + Send;

    /// Unread counts of the user (messages of others above the read pointer; hidden conversations excluded).
    fn unread_counts(
        &self,
        user: UserKey,
    ) -> impl Future<Output = Result<UnreadCounts, StoreError>> + Send;

    /// Hides the conversation from the user's list until a new message arrives.
    fn hide(
        &self,
        conversation_id: i64,
        user: UserKey,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks that the database answers (for `/readyz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Each conversation of `user` with its last message id (0 when it has none), by
    /// conversation: where a recoverable session starts.
    fn last_message_ids(
        &self,
        user: UserKey,
    ) -> impl Future<Output = Result<Vec<(i64, i64)>, StoreError>> + Send;

    /// Every read pointer above 0 of the participants of `conversations`, as
    /// `(conversation, reader, last read message id)` in any order: where the readers of a
    /// recovered socket's rooms stand.
    fn read_pointers(
        &self,
        conversations: &[i64],
    ) -> impl Future<Output = Result<Vec<(i64, UserKey, i64)>, StoreError>> + Send;

    /// Writes a recoverable session (replacing the row of the same `pid`).
    fn recovery_save(
        &self,
        session: &RecoverySession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session of `pid` unless it expired by `now_ms`.
    fn recovery_load(
        &self,
        pid: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<RecoverySession>, StoreError>> + Send;

    /// Moves the expiry of the sessions of `pids` (their sockets are still connected, or just
    /// dropped).
    fn recovery_touch(
        &self,
        pids: &[String],
        expires_at_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the sessions of `pids` (their clients disconnected on purpose).
    fn recovery_delete(
        &self,
        pids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets every session expired by `now_ms`.
    fn recovery_purge(&self, now_ms: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The members of a new group: `caller` plus `members`, deduplicated and sorted, checked against
/// the limits every store applies the same way.
pub fn group_members(
    caller: UserKey,
    members: &[UserKey],
    max_participants: usize,
) -> Result<Vec<UserKey>, StoreError> {
    let mut users: Vec<UserKey> = Vec::with_capacity(members.len() + 1);
    users.push(caller);
    users.extend_from_slice(members);
    users.sort_unstable();
    users.dedup();
    if users.iter().any(|u| u.id <= 0) {
        return Err(StoreError::BadRequest(
            "user ids are positive integers".into(),
        ));
    }
    if users.len() < 2 {
        return Err(StoreError::BadRequest(
            "a group needs at least one other participant".into(),
        ));
    }
    if users.len() > max_participants {
        return Err(StoreError::TooLarge(format!(
            "a conversation has at most {max_participants} participants"
        )));
    }
    Ok(users)
}

/// `"<type>:<id>|<type>:<id>"`, smaller user first: the unique key of a 1:1.
pub fn direct_key(a: UserKey, b: UserKey) -> String {
    let (x, y) = (a.min(b), a.max(b));
    format!(
        "{}:{}|{}:{}",
        x.user_type.code(),
        x.id,
        y.user_type.code(),
        y.id
    )
}

/// Refuses a 1:1 conversation with oneself or with a non-positive user id: the check every store
/// makes before creating a direct conversation.
pub fn check_direct_pair(caller: UserKey, other: UserKey) -> Result<(), StoreError> {
    if caller == other {
        return Err(StoreError::BadRequest(
            "cannot start a conversation with yourself".into(),
        ));
    }
    if other.id <= 0 || caller.id <= 0 {
        return Err(StoreError::BadRequest(
            "user ids are positive integers".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TempId;

    #[test]
    fn idempotency_keys_keep_the_spelling_stored_rows_carry() {
        let cases = [
            (TempId::Int(42), "n:42"),
            (TempId::Int(-7), "n:-7"),
            (TempId::Int(i64::MIN), "n:-9223372036854775808"),
            (TempId::Float(3.0), "n:3"),
            (TempId::Float(-0.0), "n:0"),
            (TempId::Float(2.5), "n:2.5"),
            (TempId::Float(1e16), "n:10000000000000000"),
            (TempId::Str("abc".into()), "s:abc"),
            (TempId::Str(String::new()), "s:"),
        ];
        for (temp, key) in cases {
            assert_eq!(temp.key(), key, "{temp:?}");
        }
    }
}
