//! [`AnyStore`]: enum dispatch over the store implementations, chosen by `DATABASE_URL`
//! (`memory`, `sqlite://path`, `postgres://...`). No boxing, no dynamic dispatch.

use std::sync::Arc;

use super::{
    Conversation, ConversationCursor, ConversationPage, HistoryQuery, MemoryStore, MessagePage,
    NewMessage, Outcome, PgStore, Profile, RecoverySession, SqliteStore, Store, StoreError,
    UnreadCounts, UserKey,
};

/// The store the server runs on.
// One per process, behind an Arc: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyStore {
    /// In-process, nothing persisted.
    Memory(MemoryStore),
    /// Embedded SQLite file.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the store named by `url`: `memory`, `sqlite://path` (file created, with its directory)
    /// or `postgres://...`. With `run_migrations` the schema is brought up to date first.
    pub async fn connect(url: &str, run_migrations: bool) -> Result<AnyStore, StoreError> {
        if url == "memory" || url == "memory://" {
            return Ok(AnyStore::Memory(MemoryStore::new()));
        }
        if url.starts_with("sqlite:") {
            return Ok(AnyStore::Sqlite(
                SqliteStore::connect(url, run_migrations).await?,
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(AnyStore::Postgres(
                PgStore::connect(url, run_migrations).await?,
            ));
        }
        Err(StoreError::BadRequest(format!(
            "unsupported DATABASE_URL {url:?}: use memory, sqlite://path or postgres://..."
        )))
    }

    /// The highest message id drawn so far (0: none). A node that shares rooms with others reads
    /// it once at start: a message's predecessor at or below it was committed before the node
    /// started and is not waited for (see `chatwire_cluster::order`). SQLite answers 0: it
    /// gives no predecessors, so nothing waits on one.
    pub async fn newest_message_id(&self) -> Result<i64, StoreError> {
        match self {
            AnyStore::Memory(m) => Ok(m.newest_message_id()),
            AnyStore::Sqlite(_) => Ok(0),
            AnyStore::Postgres(p) => p.newest_message_id().await,
        }
    }

    /// Short name of the backend, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Memory(_) => "memory",
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Memory($s) => $e.await,
            AnyStore::Sqlite($s) => $e.await,
            AnyStore::Postgres($s) => $e.await,
        }
    };
}

impl Store for AnyStore {
    async fn ensure_user(
        &self,
        user: UserKey,
        profile: Option<Profile>,
    ) -> Result<Arc<Profile>, StoreError> {
        dispatch!(self, s => s.ensure_user(user, profile))
    }

    async fn participants(
        &self,
        conversation_id: i64,
    ) -> Result<Option<Arc<[UserKey]>>, StoreError> {
        dispatch!(self, s => s.participants(conversation_id))
    }

    async fn conversations_of(&self, user: UserKey) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, s => s.conversations_of(user))
    }

    async fn insert_batch(&self, batch: &[NewMessage]) -> Result<Vec<Outcome>, StoreError> {
        dispatch!(self, s => s.insert_batch(batch))
    }

    async fn mark_read(
        &self,
        conversation_id: i64,
        reader: UserKey,
        up_to: Option<i64>,
    ) -> Result<i64, StoreError> {
        dispatch!(self, s => s.mark_read(conversation_id, reader, up_to))
    }

    async fn create_direct(
        &self,
        caller: UserKey,
        other: UserKey,
    ) -> Result<(Conversation, bool), StoreError> {
        dispatch!(self, s => s.create_direct(caller, other))
    }

    async fn create_group(
        &self,
        caller: UserKey,
        members: &[UserKey],
        title: Option<String>,
        max_participants: usize,
    ) -> Result<Conversation, StoreError> {
        dispatch!(self, s => s.create_group(caller, members, title, max_participants))
    }

    async fn list_conversations(
        &self,
        user: UserKey,
        before: Option<ConversationCursor>,
        limit: u32,
    ) -> Result<ConversationPage, StoreError> {
        dispatch!(self, s => s.list_conversations(user, before, limit))
    }

    async fn history(
        &self,
        conversation_id: i64,
        viewer: UserKey,
        query: HistoryQuery<'_>,
    ) -> Result<MessagePage, StoreError> {
        dispatch!(self, s => s.history(conversation_id, viewer, query))
    }

    async fn unread_counts(&self, user: UserKey) -> Result<UnreadCounts, StoreError> {
        dispatch!(self, s => s.unread_counts(user))
    }

    async fn hide(&self, conversation_id: i64, user: UserKey) -> Result<(), StoreError> {
        dispatch!(self, s => s.hide(conversation_id, user))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping())
    }

    async fn last_message_ids(&self, user: UserKey) -> Result<Vec<(i64, i64)>, StoreError> {
        dispatch!(self, s => s.last_message_ids(user))
    }

    async fn read_pointers(
        &self,
        conversations: &[i64],
    ) -> Result<Vec<(i64, UserKey, i64)>, StoreError> {
        dispatch!(self, s => s.read_pointers(conversations))
    }

    async fn recovery_save(&self, session: &RecoverySession) -> Result<(), StoreError> {
        dispatch!(self, s => s.recovery_save(session))
    }

    async fn recovery_load(
        &self,
        pid: &str,
        now_ms: i64,
    ) -> Result<Option<RecoverySession>, StoreError> {
        dispatch!(self, s => s.recovery_load(pid, now_ms))
    }

    async fn recovery_touch(&self, pids: &[String], expires_at_ms: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.recovery_touch(pids, expires_at_ms))
    }

    async fn recovery_delete(&self, pids: &[String]) -> Result<(), StoreError> {
        dispatch!(self, s => s.recovery_delete(pids))
    }

    async fn recovery_purge(&self, now_ms: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.recovery_purge(now_ms))
    }
}
