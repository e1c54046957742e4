//! Recoverable Socket.IO sessions (connection state recovery) and the per-conversation last
//! message ids a session starts from. A session row is written when the session starts and
//! whenever its rooms change, so it survives the node that held the socket (even a SIGKILL);
//! any node of the fleet reads it back by `pid`. Its `state` is the server's own JSON (rooms,
//! start point); the store keeps it opaque.

use sqlx::Row;

use super::{StoreError, UserKey, UserType};

/// One recoverable session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverySession {
    /// The private id the client sends back to recover (random, never shown to others).
    pub pid: String,
    /// Whose session it is: only this user's token recovers it.
    pub user: UserKey,
    /// The socket id the recovered socket takes again.
    pub sid: String,
    /// The server's state of the session (JSON, opaque here).
    pub state: String,
    /// Unix milliseconds after which it is gone.
    pub expires_at_ms: i64,
}

/// The sessions of a batch of saves to write: the last call per pid (one statement cannot
/// change a row twice, and the last state is the one that counts), in pid order (rows locked
/// in one order by every writer).
pub(crate) fn last_per_pid(calls: &[RecoverySession]) -> Vec<&RecoverySession> {
    let mut last: std::collections::BTreeMap<&str, &RecoverySession> =
        std::collections::BTreeMap::new();
    for s in calls {
        last.insert(&s.pid, s);
    }
    last.into_values().collect()
}

/// Session rows in one transaction (one commit for a batch of saves, see
/// `SqliteStore::session_saves`).
pub(crate) async fn sqlite_save_batch(
    pool: &sqlx::SqlitePool,
    calls: &[RecoverySession],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for s in last_per_pid(calls) {
        sqlx::query(
            "INSERT INTO recovery_sessions (pid, user_type, user_id, sid, state, expires_at_ms)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (pid) DO UPDATE SET user_type = excluded.user_type,
               user_id = excluded.user_id, sid = excluded.sid, state = excluded.state,
               expires_at_ms = excluded.expires_at_ms",
        )
        .bind(&s.pid)
        .bind(s.user.user_type.code())
        .bind(s.user.id)
        .bind(&s.sid)
        .bind(&s.state)
        .bind(s.expires_at_ms)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) fn session_from<R: Row>(row: &R) -> Result<RecoverySession, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i16: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RecoverySession {
        pid: row.try_get("pid")?,
        user: UserKey::new(
            UserType::from_code(row.try_get("user_type")?)?,
            row.try_get("user_id")?,
        ),
        sid: row.try_get("sid")?,
        state: row.try_get("state")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
    })
}

pub(crate) async fn sqlite_load(
    pool: &sqlx::SqlitePool,
    pid: &str,
    now_ms: i64,
) -> Result<Option<RecoverySession>, StoreError> {
    let row = sqlx::query(
        "SELECT pid, user_type, user_id, sid, state, expires_at_ms FROM recovery_sessions
         WHERE pid = ? AND expires_at_ms > ?",
    )
    .bind(pid)
    .bind(now_ms)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(session_from).transpose()
}

/// `UPDATE ... SET expires_at_ms` and `DELETE` of many pids (an array; SQLite: a JSON array),
/// `DELETE` expired.
pub(crate) const PG_TOUCH: &str =
    "UPDATE recovery_sessions SET expires_at_ms = $2 WHERE pid = ANY($1::text[])";
pub(crate) const SQLITE_TOUCH: &str = "UPDATE recovery_sessions SET expires_at_ms = ?2
     WHERE pid IN (SELECT value FROM json_each(?1))";
pub(crate) const PG_DELETE: &str = "DELETE FROM recovery_sessions WHERE pid = ANY($1::text[])";
pub(crate) const SQLITE_DELETE: &str =
    "DELETE FROM recovery_sessions WHERE pid IN (SELECT value FROM json_each(?))";
pub(crate) const PG_PURGE: &str = "DELETE FROM recovery_sessions WHERE expires_at_ms <= $1";
pub(crate) const SQLITE_PURGE: &str = "DELETE FROM recovery_sessions WHERE expires_at_ms <= ?";

/// Each conversation of a user with its last message id (0 when it has none), by conversation
/// (PostgreSQL reads them in groups: `postgres/grouped.rs`).
pub(crate) const SQLITE_LAST_IDS: &str = "SELECT p.conversation_id,
        COALESCE((SELECT max(m.id) FROM messages m WHERE m.conversation_id = p.conversation_id), 0)
     FROM participants p WHERE p.user_type = ? AND p.user_id = ? ORDER BY p.conversation_id";

/// The read pointers above 0 of the participants of some conversations (a JSON array), by the
/// primary key (PostgreSQL reads them in groups: `postgres/grouped.rs`).
pub(crate) const SQLITE_READ_POINTERS: &str =
    "SELECT conversation_id, user_type, user_id, last_read_message_id FROM participants
     WHERE conversation_id IN (SELECT value FROM json_each(?)) AND last_read_message_id > 0";

/// One row of [`SQLITE_READ_POINTERS`] or of PostgreSQL's grouped read.
pub(crate) fn pointer_from<R: Row>(row: &R) -> Result<(i64, UserKey, i64), StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i16: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        row.try_get("conversation_id")?,
        UserKey::new(
            UserType::from_code(row.try_get("user_type")?)?,
            row.try_get("user_id")?,
        ),
        row.try_get("last_read_message_id")?,
    ))
}

/// A list of pids as the JSON array SQLite's `json_each` reads.
pub(crate) fn json_list(pids: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(pids).map_err(|e| StoreError::Internal(e.to_string()))
}
