//! SQLite store (`DATABASE_URL=sqlite://path`, default `./data/chatwire.db`): the laptop default,
//! no database server needed. WAL journal with `synchronous=NORMAL`: a commit survives a process
//! kill (not a power cut). All writes go through one connection (so writers never contend for the
//! file lock), reads through a small pool. One process per database file.
//!
//! A batch is one transaction: message ids are assigned from `max(id)` inside it (safe with the
//! single writer), rows go in as multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING id`
//! statements, and the conversations they touch are bumped and un-hidden.

mod conversations;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

use super::profiles::ProfileCache;
use super::read_state::ReadFloor;
use super::{
    Message, MessageType, NewMessage, Outcome, Profile, Store, StoreError, Stored, UserKey,
    UserType,
};

/// Rows per multi-row INSERT (9 bound values each, far below SQLite's variable limit).
const CHUNK: usize = 256;

/// SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The only connection that writes.
    write: SqlitePool,
    /// Readers.
    read: SqlitePool,
    /// Profiles of message senders.
    profiles: Arc<ProfileCache>,
    /// Last timestamp handed out (keeps `created_at` non-decreasing in id order).
    clock: Arc<AtomicI64>,
    /// Session rows, saved in groups on the write connection: a connect storm saves one per
    /// client at its connect and at each room it joins, and one transaction each queued them
    /// past the connection's timeout (see [`crate::group`]).
    session_saves: crate::group::GroupCall<super::RecoverySession, ()>,
    /// The thread the grouped saves run on (ends with the last clone).
    _io: Arc<crate::group::StoreThread>,
}

impl SqliteStore {
    /// Opens (creating the file and its directory) the database at `path`.
    pub async fn open(path: &Path, run_migrations: bool) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // `?q=` search: SQLite's lower() folds ASCII only; REGEXP '(?i)<literal>' folds all.
            .with_regexp();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await?;
        if run_migrations {
            sqlx::migrate!("../../migrations/sqlite")
                .run(&write)
                .await
                .map_err(|e| StoreError::Internal(format!("migrations: {e}")))?;
        }
        // Reads wait up to 15 s for a connection: a reconnect storm of 1,000 recovering clients,
        // each reading its missed messages, kept the 4 connections busy past 5 s, and each read
        // that gave up was a client that could not recover (`recovery.rs`'s SQLite storm failed
        // `make test` twice, 871 and 889 of 1,000). A late page beats an `unavailable` one.
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(opts)
            .await?;
        let io = crate::group::StoreThread::start()?;
        let session_saves = crate::group::group(
            &io,
            write.clone(),
            |pool, calls: Vec<super::RecoverySession>| async move {
                super::recovery::sqlite_save_batch(&pool, &calls).await?;
                Ok(calls.iter().map(|_| Ok(())).collect())
            },
        );
        Ok(SqliteStore {
            write,
            read,
            profiles: Arc::new(ProfileCache::new(100_000)),
            clock: Arc::new(AtomicI64::new(0)),
            session_saves,
            _io: io,
        })
    }

    /// Opens `sqlite://path` / `sqlite:path`.
    pub async fn connect(url: &str, run_migrations: bool) -> Result<SqliteStore, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        let path = if path.is_empty() {
            "./data/chatwire.db"
        } else {
            path
        };
        SqliteStore::open(Path::new(path), run_migrations).await
    }

    /// Unix milliseconds, never below the last value handed out.
    fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let prev = self.clock.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }
}

/// Reads `username`, `first_name`, `last_name`, `profile_image`.
pub(super) fn profile_from(row: &SqliteRow) -> Result<Profile, StoreError> {
    Ok(Profile {
        username: row.try_get("username")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        profile_image: row.try_get("profile_image")?,
    })
}

/// Columns of a message row, in the order [`message_from`] reads them.
pub(super) const MESSAGE_COLUMNS: &str = "id, conversation_id, sender_type, sender_id, message_type, content, \
     attachment_url, attachment_name, created_at";

pub(super) fn message_from(
    row: &SqliteRow,
    profile: Arc<Profile>,
    is_read: bool,
) -> Result<Message, StoreError> {
    let message_type: String = row.try_get("message_type")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        sender: UserKey::new(
            UserType::from_code(row.try_get("sender_type")?)?,
            row.try_get("sender_id")?,
        ),
        sender_profile: profile,
        message_type: MessageType::parse(&message_type)
            .ok_or_else(|| StoreError::Internal(format!("unknown message type {message_type}")))?,
        content: row.try_get("content")?,
        attachment_url: row.try_get("attachment_url")?,
        attachment_name: row.try_get("attachment_name")?,
        created_at_ms: row.try_get("created_at")?,
        is_read,
        temp_id: None,
    })
}

/// Participants with read pointers and profiles of one conversation, sorted by user.
pub(super) async fn members(
    conn: &mut SqliteConnection,
    conversation_id: i64,
) -> Result<Vec<(UserKey, Arc<Profile>, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.user_type, p.user_id, p.last_read_message_id, u.username, u.first_name, u.last_name,
                u.profile_image
         FROM participants p JOIN users u ON u.user_type = p.user_type AND u.id = p.user_id
         WHERE p.conversation_id = ? ORDER BY p.user_type, p.user_id",
    )
    .bind(conversation_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let user = UserKey::new(
                UserType::from_code(r.try_get("user_type")?)?,
                r.try_get("user_id")?,
            );
            Ok((
                user,
                Arc::new(profile_from(r)?),
                r.try_get("last_read_message_id")?,
            ))
        })
        .collect()
}

pub(super) fn floor_of(members: &[(UserKey, Arc<Profile>, i64)]) -> ReadFloor {
    ReadFloor::new(members.iter().map(|(u, _, p)| (*u, *p)))
}

pub(super) fn profile_in(members: &[(UserKey, Arc<Profile>, i64)], user: UserKey) -> Arc<Profile> {
    members
        .iter()
        .find(|(u, _, _)| *u == user)
        .map(|(_, p, _)| p.clone())
        .unwrap_or_else(|| Arc::new(Profile::default_for(user)))
}

impl SqliteStore {
    /// Inserts the unique rows of a batch inside `tx`; returns one outcome per unique row.
    async fn insert_unique(
        &self,
        conn: &mut SqliteConnection,
        rows: &[&NewMessage],
        keys: &[Option<&str>],
    ) -> Result<Vec<Outcome>, StoreError> {
        let base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM messages")
            .fetch_one(&mut *conn)
            .await?;
        let now = self.now_ms();
        let mut inserted: HashSet<i64> = HashSet::with_capacity(rows.len());
        for (chunk_no, chunk) in rows.chunks(CHUNK).enumerate() {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO messages (id, conversation_id, sender_type, sender_id, message_type, content,
                                       attachment_url, attachment_name, temp_id_key, created_at)
                 SELECT v.* FROM (VALUES {values}) v
                 WHERE EXISTS (SELECT 1 FROM participants p WHERE p.conversation_id = v.column2
                               AND p.user_type = v.column3 AND p.user_id = v.column4)
                 ON CONFLICT (sender_type, sender_id, conversation_id, temp_id_key) DO NOTHING
                 RETURNING id"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (j, m) in chunk.iter().enumerate() {
                let i = chunk_no * CHUNK + j;
                query = query
                    .bind(base + 1 + i as i64)
                    .bind(m.conversation_id)
                    .bind(m.sender.user_type.code())
                    .bind(m.sender.id)
                    .bind(m.message_type.as_str())
                    .bind(m.content.as_str())
                    .bind(m.attachment_url.as_deref())
                    .bind(m.attachment_name.as_deref())
                    .bind(keys.get(i).copied().flatten())
                    .bind(now);
            }
            for row in query.fetch_all(&mut *conn).await? {
                inserted.insert(row.try_get("id")?);
            }
        }
        let touched: Vec<i64> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| inserted.contains(&(base + 1 + *i as i64)))
            .map(|(_, m)| m.conversation_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !touched.is_empty() {
            let ids =
                serde_json::to_string(&touched).map_err(|e| StoreError::Internal(e.to_string()))?;
            sqlx::query("UPDATE conversations SET updated_at = ? WHERE id IN (SELECT value FROM json_each(?))")
                .bind(now)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE participants SET hidden = 0 WHERE hidden AND conversation_id IN (SELECT value FROM json_each(?))",
            )
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
        }
        let senders: Vec<UserKey> = rows.iter().map(|m| m.sender).collect();
        let profiles = self.profiles_of(&mut *conn, &senders).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (i, (m, profile)) in rows.iter().zip(profiles).enumerate() {
            let id = base + 1 + i as i64;
            if inserted.contains(&id) {
                out.push(Ok(Stored {
                    message: Message {
                        id,
                        conversation_id: m.conversation_id,
                        sender: m.sender,
                        sender_profile: profile,
                        message_type: m.message_type,
                        content: m.content.clone(),
                        attachment_url: m.attachment_url.clone(),
                        attachment_name: m.attachment_name.clone(),
                        created_at_ms: now,
                        is_read: false,
                        temp_id: None,
                    },
                    duplicate: false,
                    prev: None,
                }));
            } else {
                out.push(
                    self.not_inserted(&mut *conn, m, keys.get(i).copied().flatten(), profile)
                        .await?,
                );
            }
        }
        Ok(out)
    }

    /// Why a row was not inserted: stored before (duplicate), not a participant, or no such conversation.
    async fn not_inserted(
        &self,
        conn: &mut SqliteConnection,
        m: &NewMessage,
        key: Option<&str>,
        profile: Arc<Profile>,
    ) -> Result<Outcome, StoreError> {
        if let Some(key) = key {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE sender_type = ? AND sender_id = ? AND conversation_id = ? AND temp_id_key = ?"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(m.sender.user_type.code())
                .bind(m.sender.id)
                .bind(m.conversation_id)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                let members = members(&mut *conn, m.conversation_id).await?;
                let id: i64 = row.try_get("id")?;
                let is_read = floor_of(&members).is_read(m.sender, id);
                return Ok(message_from(&row, profile, is_read).map(|message| Stored {
                    message,
                    duplicate: true,
                    prev: None,
                }));
            }
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM conversations WHERE id = ?)")
                .bind(m.conversation_id)
                .fetch_one(&mut *conn)
                .await?;
        Ok(Err(if exists {
            StoreError::Forbidden
        } else {
            StoreError::NotFound
        }))
    }

    async fn profiles_of(
        &self,
        conn: &mut SqliteConnection,
        users: &[UserKey],
    ) -> Result<Vec<Arc<Profile>>, StoreError> {
        for u in users {
            if self.profiles.get(u).is_none() {
                let row = sqlx::query(
                    "SELECT username, first_name, last_name, profile_image FROM users WHERE user_type = ? AND id = ?",
                )
                .bind(u.user_type.code())
                .bind(u.id)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = row {
                    self.profiles.insert(*u, Arc::new(profile_from(&row)?));
                }
            }
        }
        Ok(users
            .iter()
            .map(|u| {
                self.profiles
                    .get(u)
                    .unwrap_or_else(|| Arc::new(Profile::default_for(*u)))
            })
            .collect())
    }
}

impl Store for SqliteStore {
    async fn ensure_user(
        &self,
        user: UserKey,
        profile: Option<Profile>,
    ) -> Result<Arc<Profile>, StoreError> {
        if user.id <= 0 {
            return Err(StoreError::BadRequest(
                "user ids are positive integers".into(),
            ));
        }
        let cached = self.profiles.get(&user);
        let stored = match profile {
            Some(p) => {
                if let Some(c) = cached.filter(|c| **c == p) {
                    return Ok(c);
                }
                sqlx::query(
                    "INSERT INTO users (user_type, id, username, first_name, last_name, profile_image, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (user_type, id) DO UPDATE SET username = excluded.username,
                        first_name = excluded.first_name, last_name = excluded.last_name,
                        profile_image = excluded.profile_image",
                )
                .bind(user.user_type.code())
                .bind(user.id)
                .bind(&p.username)
                .bind(&p.first_name)
                .bind(&p.last_name)
                .bind(&p.profile_image)
                .bind(self.now_ms())
                .execute(&self.write)
                .await?;
                p
            }
            None => {
                if let Some(c) = cached {
                    return Ok(c);
                }
                let mut conn = self.write.acquire().await?;
                sqlx::query(
                    "INSERT INTO users (user_type, id, username, created_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (user_type, id) DO NOTHING",
                )
                .bind(user.user_type.code())
                .bind(user.id)
                .bind(Profile::default_for(user).username)
                .bind(self.now_ms())
                .execute(&mut *conn)
                .await?;
                let row = sqlx::query(
                    "SELECT username, first_name, last_name, profile_image FROM users WHERE user_type = ? AND id = ?",
                )
                .bind(user.user_type.code())
                .bind(user.id)
                .fetch_one(&mut *conn)
                .await?;
                profile_from(&row)?
            }
        };
        let stored = Arc::new(stored);
        self.profiles.insert(user, stored.clone());
        Ok(stored)
    }

    async fn participants(
        &self,
        conversation_id: i64,
    ) -> Result<Option<Arc<[UserKey]>>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_type, user_id FROM participants WHERE conversation_id = ? ORDER BY user_type, user_id",
        )
        .bind(conversation_id)
        .fetch_all(&self.read)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let users = rows
            .iter()
            .map(|r| {
                Ok(UserKey::new(
                    UserType::from_code(r.try_get("user_type")?)?,
                    r.try_get("user_id")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(users.into()))
    }

    async fn conversations_of(&self, user: UserKey) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT conversation_id FROM participants WHERE user_type = ? AND user_id = ? ORDER BY conversation_id",
        )
        .bind(user.user_type.code())
        .bind(user.id)
        .fetch_all(&self.read)
        .await?)
    }

    async fn insert_batch(&self, batch: &[NewMessage]) -> Result<Vec<Outcome>, StoreError> {
        let plan = super::dedup::BatchPlan::new(batch);
        let rows: Vec<&NewMessage> = plan.unique().iter().filter_map(|&i| batch.get(i)).collect();
        let keys: Vec<Option<&str>> = plan.unique().iter().map(|&i| plan.key(i)).collect();
        let mut tx = self.write.begin().await?;
        let outcomes = self.insert_unique(&mut tx, &rows, &keys).await?;
        tx.commit().await?;
        Ok(plan.expand(batch, outcomes))
    }

    async fn mark_read(
        &self,
        conversation_id: i64,
        reader: UserKey,
        up_to: Option<i64>,
    ) -> Result<i64, StoreError> {
        conversations::mark_read(self, conversation_id, reader, up_to).await
    }

    async fn create_direct(
        &self,
        caller: UserKey,
        other: UserKey,
    ) -> Result<(super::Conversation, bool), StoreError> {
        conversations::create_direct(self, caller, other).await
    }

    async fn create_group(
        &self,
        caller: UserKey,
        members: &[UserKey],
        title: Option<String>,
        max_participants: usize,
    ) -> Result<super::Conversation, StoreError> {
        conversations::create_group(self, caller, members, title, max_participants).await
    }

    async fn list_conversations(
        &self,
        user: UserKey,
        before: Option<super::ConversationCursor>,
        limit: u32,
    ) -> Result<super::ConversationPage, StoreError> {
        conversations::list(self, user, before, limit).await
    }

    async fn history(
        &self,
        conversation_id: i64,
        viewer: UserKey,
        query: super::HistoryQuery<'_>,
    ) -> Result<super::MessagePage, StoreError> {
        conversations::history(self, conversation_id, viewer, query).await
    }

    async fn unread_counts(&self, user: UserKey) -> Result<super::UnreadCounts, StoreError> {
        conversations::unread_counts(self, user).await
    }

    async fn hide(&self, conversation_id: i64, user: UserKey) -> Result<(), StoreError> {
        conversations::hide(self, conversation_id, user).await
    }

    async fn last_message_ids(&self, user: UserKey) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(super::recovery::SQLITE_LAST_IDS)
            .bind(user.user_type.code())
            .bind(user.id)
            .fetch_all(&self.read)
            .await?)
    }

    async fn read_pointers(
        &self,
        conversations: &[i64],
    ) -> Result<Vec<(i64, UserKey, i64)>, StoreError> {
        let list = serde_json::to_string(conversations)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let rows = sqlx::query(super::recovery::SQLITE_READ_POINTERS)
            .bind(list)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(super::recovery::pointer_from).collect()
    }

    async fn recovery_save(&self, session: &super::RecoverySession) -> Result<(), StoreError> {
        self.session_saves.call(session.clone()).await
    }

    async fn recovery_load(
        &self,
        pid: &str,
        now_ms: i64,
    ) -> Result<Option<super::RecoverySession>, StoreError> {
        super::recovery::sqlite_load(&self.read, pid, now_ms).await
    }

    async fn recovery_touch(&self, pids: &[String], expires_at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(super::recovery::SQLITE_TOUCH)
            .bind(super::recovery::json_list(pids)?)
            .bind(expires_at_ms)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn recovery_delete(&self, pids: &[String]) -> Result<(), StoreError> {
        sqlx::query(super::recovery::SQLITE_DELETE)
            .bind(super::recovery::json_list(pids)?)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn recovery_purge(&self, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(super::recovery::SQLITE_PURGE)
            .bind(now_ms)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }
}
