//! PostgreSQL store (`DATABASE_URL=postgres://...`): identity, membership, the batch insert and
//! read pointers. REST queries live in `conversations.rs`.
//!
//! A batch is written by ONE plain `INSERT` statement (one round trip, atomic on its own,
//! [`WritePath::Insert`], the default): the batch goes in as arrays through `UNNEST`, ids are
//! drawn from the sequence in input order, rows whose sender is not a participant are skipped,
//! the same statement un-hides the conversations, and only the ids and the time come back. When a
//! row is a retried send (its tempId key already stored) the unique index fails that statement,
//! nothing of it stays, and the batch goes through the `ON CONFLICT DO NOTHING` statement
//! ([`WritePath::Statement`]), which joins every input to its new row or to the row stored the
//! first time. The plain insert skips the speculative-insertion work, the CTE join and
//! `RETURNING` of the latter: 1.2x to 1.7x the messages/s in `cargo bench -p chatwire-bench
//! --bench batch_writer`. Binary COPY in a transaction ([`WritePath::Copy`], `copy.rs`) costs
//! PostgreSQL less per row but was not reliably faster end to end here: sqlx sends the end-of-data
//! message as a separate small write without `TCP_NODELAY`, which waits for the server's delayed
//! ACK. Besides the rows, each batch moves its conversations' `last_message_id` (one row update
//! per conversation, on the row it locked anyway): the next insert reads it as its first
//! message's predecessor ([`Stored::prev`], exact across nodes). A conversation's latest activity
//! is still read from its newest message (the primary key `(conversation_id, id)`) when lists
//! are built.

mod conversations;
mod copy;
mod grouped;
mod insert;

use insert::{FAST_INSERT_SQL, INSERT_SQL, find_by_key};

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::profiles::ProfileCache;
use super::{
    Message, MessageType, NewMessage, Outcome, Profile, Store, StoreError, Stored, UserKey,
    UserType,
};

/// `created_at` / `updated_at` as Unix milliseconds.
const MS: &str = "(extract(epoch FROM {}) * 1000)::int8";

fn ms(col: &str) -> String {
    MS.replace("{}", col)
}

/// A statement that answers one row per input row did: `asked` inputs, `answered` rows.
fn one_row_each(what: &str, asked: usize, answered: usize) -> Result<(), StoreError> {
    if asked == answered {
        return Ok(());
    }
    Err(StoreError::Internal(format!(
        "{what}: {asked} asked, {answered} rows answered"
    )))
}

/// PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Pool for queries from any runtime (REST, identity, membership).
    pool: PgPool,
    /// Small pool used only by the batch writer's thread, so its connections live on its runtime:
    /// where `write_conns` takes its connections from, and the COPY path's transactions.
    write_pool: PgPool,
    /// The batch statements' connections, taken from `write_pool` and kept between batches.
    write_conns: Arc<HeldConnections>,
    /// Recovery session rows: their commits do not wait for the write-ahead log's flush
    /// (`synchronous_commit = off`). A connect storm writes two per user, and one-row commits
    /// that each wait for an `fdatasync` (3.3 ms on a small disk) are what gave out first; a row
    /// lost to a crash of PostgreSQL itself (not of a node) only means that client reconnects
    /// without recovery and reloads over REST. Messages and read pointers keep full durability.
    session_pool: PgPool,
    /// Profiles of message senders.
    profiles: Arc<ProfileCache>,
    /// How batches are written ([`WritePath`] as u8; benches compare them).
    write_path: Arc<AtomicU8>,
    /// Read pointer moves, grouped into one statement per batch (`grouped.rs`).
    reads: crate::group::GroupCall<grouped::ReadMove, grouped::Grouped<i64>>,
    /// Users' profiles from token claims, upserted in groups likewise.
    upserts: crate::group::GroupCall<(UserKey, Profile), grouped::Grouped<()>>,
    /// Conversations' participants, read in groups likewise.
    members: crate::group::GroupCall<i64, Option<Arc<[UserKey]>>>,
    /// Users' conversations, read in groups likewise.
    memberships: crate::group::GroupCall<UserKey, Vec<i64>>,
    /// The reads of a recovering socket, in groups likewise (a reconnect storm brings thousands
    /// at once): its session row, its conversations' last ids, its rooms' read pointers.
    recoveries: RecoveryReads,
    /// Session rows written in groups likewise (a connect storm saves thousands at once).
    session_saves: crate::group::GroupCall<super::RecoverySession, ()>,
    /// Their connection (as the session pool's, commits do not wait for the log's flush).
    session_save_pool: PgPool,
    /// The history statement (`conversations::history_sql`, with the collation `?q=` search
    /// folds case with).
    history_sql: Arc<str>,
    /// History pages without a search, read in groups likewise.
    histories: crate::group::GroupCall<conversations::HistoryCall, super::MessagePage>,
    /// The thread the grouped statements run on (ends with the last clone).
    _io: Arc<crate::group::StoreThread>,
}

/// The grouped reads of a recovering socket ([`PgStore::recoveries`]).
#[derive(Debug, Clone)]
struct RecoveryReads {
    sessions: crate::group::GroupCall<(String, i64), Option<super::RecoverySession>>,
    last_ids: crate::group::GroupCall<UserKey, Vec<(i64, i64)>>,
    pointers: crate::group::GroupCall<Vec<i64>, Vec<(i64, UserKey, i64)>>,
}

impl PgStore {
    /// Connects (and with `run_migrations`, applies `migrations/postgres`).
    pub async fn connect(url: &str, run_migrations: bool) -> Result<PgStore, StoreError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadRequest(format!("DATABASE_URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(opts.clone())
            .await?;
        if run_migrations {
            sqlx::migrate!("../../migrations/postgres")
                .run(&pool)
                .await
                .map_err(|e| StoreError::Internal(format!("migrations: {e}")))?;
        }
        // The batch writer's connections. No ping before each use: that is a round trip per
        // commit, and a broken connection fails the commit, which the writer retries anyway.
        // Generic plans: the batch statements' shape never changes, only their arrays, and
        // planning them afresh for every batch (PostgreSQL's choice for them) cost more than
        // running them (a 5-row batch, idle: 0.34 ms planning + 0.25 ms running, against
        // 0.01 + 0.23 with the generic plan). Every statement of this pool finds its rows by
        // index under a generic plan (`insert.rs`, `copy.rs`).
        let write_pool = PgPoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(
                opts.clone()
                    .options([("plan_cache_mode", "force_generic_plan")]),
            );
        let session_pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(opts.clone().options([("synchronous_commit", "off")]));
        let search_collation = conversations::search_collation(&pool).await?;
        let io = crate::group::StoreThread::start()?;
        let reads = grouped::reads(&io, grouped::own_pool(&opts));
        let upserts = grouped::profiles(&io, grouped::own_pool(&opts));
        let members = grouped::participants(&io, grouped::own_pool(&opts));
        let memberships = grouped::conversations_of(&io, grouped::own_pool(&opts));
        // One connection between the three: a recovery makes one call of each in turn.
        let recovery_pool = grouped::own_pool(&opts);
        let profiles = Arc::new(ProfileCache::new(100_000));
        let history_sql: Arc<str> = conversations::history_sql(search_collation).into();
        let histories = conversations::histories(
            &io,
            grouped::own_pool(&opts),
            profiles.clone(),
            history_sql.clone(),
        );
        // Session rows may lose their last moments in a crash (as on the session pool): a
        // client then connects without recovery.
        let session_save_pool =
            grouped::own_pool(&opts.clone().options([("synchronous_commit", "off")]));
        let session_saves = grouped::session_saves(&io, session_save_pool.clone());
        let recoveries = RecoveryReads {
            sessions: grouped::recovery_sessions(&io, recovery_pool.clone()),
            last_ids: grouped::last_ids(&io, recovery_pool.clone()),
            pointers: grouped::read_pointers(&io, recovery_pool),
        };
        Ok(PgStore {
            pool,
            write_pool,
            write_conns: Arc::default(),
            session_pool,
            profiles,
            write_path: Arc::new(AtomicU8::new(WritePath::default() as u8)),
            reads,
            upserts,
            members,
            memberships,
            recoveries,
            session_saves,
            session_save_pool,
            history_sql,
            histories,
            _io: io,
        })
    }

    /// The highest id the message sequence handed out (0: none yet); ids drawn by transactions
    /// still running count too. One read of the sequence, no scan.
    pub async fn newest_message_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM messages_id_seq",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Chooses how batches are written (applies to every clone).
    pub fn set_write_path(&self, path: WritePath) {
        self.write_path.store(path as u8, Ordering::Relaxed);
    }

    /// The query pool (tests and benches use it to inspect the tables).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Statements that moved read pointers so far (each carries every `mark_read` call that
    /// arrived while the previous one ran).
    pub fn read_batches(&self) -> u64 {
        self.reads.batches()
    }

    /// The pool of recovery session rows' touches, deletes and purges (tests read its
    /// settings).
    pub fn session_pool(&self) -> &PgPool {
        &self.session_pool
    }

    /// The connection recovery session rows are saved on, in groups (tests read its settings).
    pub fn session_save_pool(&self) -> &PgPool {
        &self.session_save_pool
    }

    /// Profiles of `users`, from the cache or one query for the missing ones.
    async fn profiles_of(&self, users: &[UserKey]) -> Result<Vec<Arc<Profile>>, StoreError> {
        let mut missing: Vec<UserKey> = users
            .iter()
            .filter(|u| self.profiles.get(u).is_none())
            .copied()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let types: Vec<i16> = missing.iter().map(|u| u.user_type.code()).collect();
            let ids: Vec<i64> = missing.iter().map(|u| u.id).collect();
            let rows = sqlx::query(
                "SELECT u.user_type, u.id, u.username, u.first_name, u.last_name, u.profile_image
                 FROM users u JOIN UNNEST($1::int2[], $2::int8[]) AS k(t, i) ON u.user_type = k.t AND u.id = k.i",
            )
            .bind(&types)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                let user = user_from(&row, "user_type", "id")?;
                self.profiles
                    .insert(user, Arc::new(profile_from(&row, "")?));
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

/// How [`PgStore`] writes message batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum WritePath {
    /// One `INSERT ... ON CONFLICT DO NOTHING RETURNING` statement that also resolves retries.
    Statement = 0,
    /// Binary COPY in a transaction (`copy.rs`), the statement when a row is a retry.
    Copy = 1,
    /// A plain `INSERT` statement (one round trip), the `ON CONFLICT` statement when a row is a
    /// retry: the default.
    #[default]
    Insert = 2,
}

/// Connections the batch statements run on, kept out of the pool between batches. A connection
/// handed back to a sqlx pool is pinged first: one more round trip to the database per batch
/// (a `Sync` and its `ReadyForQuery`, 3 system calls on the writer's thread), which the lanes,
/// each running one statement at a time, have no use for. Held as plain connections (detached
/// from the pool), so dropping one closes its socket without needing a runtime.
#[derive(Debug, Default)]
struct HeldConnections {
    idle: std::sync::Mutex<Vec<sqlx::PgConnection>>,
}

impl HeldConnections {
    /// More stay open only while more lanes write at once (`WRITE_LANES`).
    const MAX_IDLE: usize = 16;

    /// An idle held connection, or a new one from `pool`.
    async fn take(&self, pool: &PgPool) -> Result<sqlx::PgConnection, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => Ok(pool.acquire().await?.detach()),
        }
    }

    /// Keeps `conn` for the next batch unless `outcome` says it may be broken: a statement the
    /// database refused leaves its connection ready for the next one; anything else (the
    /// connection lost, a protocol error) drops it.
    fn give_back<T>(&self, conn: sqlx::PgConnection, outcome: &Result<T, sqlx::Error>) {
        if matches!(outcome, Ok(_) | Err(sqlx::Error::Database(_))) {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < Self::MAX_IDLE {
                idle.push(conn);
            }
        }
    }
}

/// The row a fast insert's statement answers: ids, predecessors (input order), creation time.
type DrawnRow = (Vec<Option<i64>>, Vec<Option<i64>>, i64);

/// What a fast insert answers, per input row in order.
struct Drawn {
    /// The new ids (None: the sender may not write, nothing stored).
    ids: Vec<Option<i64>>,
    /// Each id's predecessor in its conversation (see [`Stored::prev`]).
    prevs: Vec<Option<i64>>,
    /// The rows' creation time, Unix ms.
    created_ms: i64,
}

impl PgStore {
    /// The plain `INSERT` of [`FAST_INSERT_SQL`]: ids per row (None = sender may not write, row
    /// not stored), their predecessors and the creation time, or None when a row is a retry or
    /// the database refused a value (nothing stored: the `ON CONFLICT` statement decides).
    async fn fast_insert(&self, rows: &[copy::CopyRow<'_>]) -> Result<Option<Drawn>, StoreError> {
        let mut conn = self.write_conns.take(&self.write_pool).await?;
        let answer: Result<DrawnRow, sqlx::Error> =
            sqlx::query_as(sqlx::AssertSqlSafe(FAST_INSERT_SQL.as_str()))
                .bind(
                    rows.iter()
                        .map(|(m, _)| m.conversation_id)
                        .collect::<Vec<i64>>(),
                )
                .bind(
                    rows.iter()
                        .map(|(m, _)| m.sender.user_type.code())
                        .collect::<Vec<i16>>(),
                )
                .bind(rows.iter().map(|(m, _)| m.sender.id).collect::<Vec<i64>>())
                .bind(
                    rows.iter()
                        .map(|(m, _)| m.message_type.as_str())
                        .collect::<Vec<&str>>(),
                )
                .bind(
                    rows.iter()
                        .map(|(m, _)| m.content.as_str())
                        .collect::<Vec<&str>>(),
                )
                .bind(
                    rows.iter()
                        .map(|(m, _)| m.attachment_url.as_deref())
                        .collect::<Vec<Option<&str>>>(),
                )
                .bind(
                    rows.iter()
                        .map(|(m, _)| m.attachment_name.as_deref())
                        .collect::<Vec<Option<&str>>>(),
                )
                .bind(rows.iter().map(|(_, k)| *k).collect::<Vec<Option<&str>>>())
                .fetch_one(&mut conn)
                .await;
        self.write_conns.give_back(conn, &answer);
        match answer {
            Ok((ids, prevs, created_ms))
                if ids.len() == rows.len() && prevs.len() == rows.len() =>
            {
                Ok(Some(Drawn {
                    ids,
                    prevs,
                    created_ms,
                }))
            }
            Ok(_) | Err(sqlx::Error::Database(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Why a row whose sender may not write was not stored.
    async fn refusal(&self, conversation_id: i64) -> Result<StoreError, StoreError> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1)")
                .bind(conversation_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(if exists {
            StoreError::Forbidden
        } else {
            StoreError::NotFound
        })
    }
}

/// A row this batch stored: everything but id and time is what was sent (not echoed back).
fn new_row(
    input: &NewMessage,
    id: i64,
    prev: Option<i64>,
    created_at_ms: i64,
    profile: Arc<Profile>,
) -> Stored {
    Stored {
        message: Message {
            id,
            conversation_id: input.conversation_id,
            sender: input.sender,
            sender_profile: profile,
            message_type: input.message_type,
            content: input.content.clone(),
            attachment_url: input.attachment_url.clone(),
            attachment_name: input.attachment_name.clone(),
            created_at_ms,
            is_read: false,
            temp_id: None,
        },
        duplicate: false,
        prev,
    }
}

/// Reads `<prefix>username`, `<prefix>first_name`, ... from a row.
pub(super) fn profile_from(row: &PgRow, prefix: &str) -> Result<Profile, StoreError> {
    Ok(Profile {
        username: row.try_get(format!("{prefix}username").as_str())?,
        first_name: row.try_get(format!("{prefix}first_name").as_str())?,
        last_name: row.try_get(format!("{prefix}last_name").as_str())?,
        profile_image: row.try_get(format!("{prefix}profile_image").as_str())?,
    })
}

/// The user a row names in `type_column` (its code) and `id_column`.
pub(super) fn user_from(
    row: &PgRow,
    type_column: &str,
    id_column: &str,
) -> Result<UserKey, StoreError> {
    Ok(UserKey::new(
        UserType::from_code(row.try_get(type_column)?)?,
        row.try_get(id_column)?,
    ))
}

/// Reads a message row with columns id, conversation_id, sender_type, sender_id, message_type,
/// content, attachment_url, attachment_name, created_ms.
pub(super) fn message_from(
    row: &PgRow,
    profile: Arc<Profile>,
    is_read: bool,
) -> Result<Message, StoreError> {
    let message_type: String = row.try_get("message_type")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        sender: user_from(row, "sender_type", "sender_id")?,
        sender_profile: profile,
        message_type: MessageType::parse(&message_type)
            .ok_or_else(|| StoreError::Internal(format!("unknown message type {message_type}")))?,
        content: row.try_get("content")?,
        attachment_url: row.try_get("attachment_url")?,
        attachment_name: row.try_get("attachment_name")?,
        created_at_ms: row.try_get("created_ms")?,
        is_read,
        temp_id: None,
    })
}

impl Store for PgStore {
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
        match profile {
            Some(p) => {
                if let Some(c) = cached.filter(|c| **c == p) {
                    return Ok(c);
                }
                let claims = (user, p);
                if self.upserts.call(claims.clone()).await? == grouped::Grouped::Contended {
                    grouped::upsert_profiles(&self.pool, std::slice::from_ref(&claims)).await?;
                }
                let (_, p) = claims;
                let p = Arc::new(p);
                self.profiles.insert(user, p.clone());
                Ok(p)
            }
            None => {
                if let Some(c) = cached {
                    return Ok(c);
                }
                let default = Profile::default_for(user);
                let row = sqlx::query(
                    "WITH ins AS (
                        INSERT INTO users (user_type, id, username) VALUES ($1, $2, $3)
                        ON CONFLICT (user_type, id) DO NOTHING
                        RETURNING username, first_name, last_name, profile_image)
                     SELECT * FROM ins
                     UNION ALL
                     SELECT username, first_name, last_name, profile_image FROM users WHERE user_type = $1 AND id = $2
                     LIMIT 1",
                )
                .bind(user.user_type.code())
                .bind(user.id)
                .bind(&default.username)
                .fetch_one(&self.pool)
                .await?;
                let p = Arc::new(profile_from(&row, "")?);
                self.profiles.insert(user, p.clone());
                Ok(p)
            }
        }
    }

    async fn participants(
        &self,
        conversation_id: i64,
    ) -> Result<Option<Arc<[UserKey]>>, StoreError> {
        self.members.call(conversation_id).await
    }

    async fn conversations_of(&self, user: UserKey) -> Result<Vec<i64>, StoreError> {
        self.memberships.call(user).await
    }

    async fn insert_batch(&self, batch: &[NewMessage]) -> Result<Vec<Outcome>, StoreError> {
        let plan = super::dedup::BatchPlan::new(batch);
        let unique = plan.unique();
        // The senders' profiles are read before anything is stored: once rows are stored, this
        // call must answer for each of them. A failure after the commit would fail the batch,
        // and its retry would find every row already stored and answer them as duplicates,
        // which are never delivered live. Past the commit, a lookup that fails answers for its
        // own row only (an unstored refusal, or a row another transaction stored).
        let senders: Vec<UserKey> = unique.iter().map(|&i| batch[i].sender).collect();
        let profiles = self.profiles_of(&senders).await?;
        let path = self.write_path.load(Ordering::Relaxed);
        if path != WritePath::Statement as u8 && !unique.is_empty() {
            let rows: Vec<copy::CopyRow<'_>> =
                unique.iter().map(|&i| (&batch[i], plan.key(i))).collect();
            let fast = if path == WritePath::Copy as u8 {
                copy::copy_batch(&self.write_pool, &rows).await?
            } else {
                self.fast_insert(&rows).await?
            };
            if let Some(Drawn {
                ids,
                prevs,
                created_ms,
            }) = fast
            {
                let mut outcomes = Vec::with_capacity(rows.len());
                for ((((input, _), id), prev), profile) in
                    rows.iter().zip(ids).zip(prevs).zip(profiles)
                {
                    outcomes.push(match id {
                        Some(id) => Ok(new_row(input, id, prev, created_ms, profile)),
                        None => Err(self
                            .refusal(input.conversation_id)
                            .await
                            .unwrap_or_else(|e| e)),
                    });
                }
                return Ok(plan.expand(batch, outcomes));
            }
        }
        let mut conn = self.write_conns.take(&self.write_pool).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(INSERT_SQL.as_str()))
            .bind(
                unique
                    .iter()
                    .map(|&i| batch[i].conversation_id)
                    .collect::<Vec<i64>>(),
            )
            .bind(
                unique
                    .iter()
                    .map(|&i| batch[i].sender.user_type.code())
                    .collect::<Vec<i16>>(),
            )
            .bind(
                unique
                    .iter()
                    .map(|&i| batch[i].sender.id)
                    .collect::<Vec<i64>>(),
            )
            .bind(
                unique
                    .iter()
                    .map(|&i| batch[i].message_type.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                unique
                    .iter()
                    .map(|&i| batch[i].content.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                unique
                    .iter()
                    .map(|&i| batch[i].attachment_url.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(
                unique
                    .iter()
                    .map(|&i| batch[i].attachment_name.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(
                unique
                    .iter()
                    .map(|&i| plan.key(i))
                    .collect::<Vec<Option<&str>>>(),
            )
            .fetch_all(&mut conn)
            .await;
        self.write_conns.give_back(conn, &rows);
        let rows = rows?;
        one_row_each("message inserts", unique.len(), rows.len())?;
        // Back to input order (ordinality is 1-based); the join above does not keep it.
        let mut rows: Vec<(i64, PgRow)> = rows
            .into_iter()
            .map(|r| Ok((r.try_get::<i64, _>("ord")?, r)))
            .collect::<Result<_, StoreError>>()?;
        rows.sort_unstable_by_key(|(ord, _)| *ord);
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(unique.len());
        for (((_, row), &i), profile) in rows.iter().zip(unique).zip(profiles) {
            let input = &batch[i];
            let id: Option<i64> = row.try_get("id")?;
            let outcome = if let Some(id) = id {
                if row.try_get::<bool, _>("duplicate")? {
                    // The stored row wins (a retry may carry other content).
                    let is_read: bool = row.try_get("is_read")?;
                    message_from(row, profile, is_read).map(|message| Stored {
                        message,
                        duplicate: true,
                        prev: None,
                    })
                } else {
                    let prev: Option<i64> = row.try_get("prev")?;
                    Ok(new_row(
                        input,
                        id,
                        prev,
                        row.try_get("created_ms")?,
                        profile,
                    ))
                }
            } else if !row.try_get::<bool, _>("conversation_exists")? {
                Err(StoreError::NotFound)
            } else if !row.try_get::<bool, _>("allowed")? {
                Err(StoreError::Forbidden)
            } else {
                // Conflict with a row committed after this statement's snapshot (another node).
                match plan.key(i) {
                    Some(key) => match find_by_key(&self.pool, input, key).await {
                        Ok(Some(r)) => message_from(&r, profile, false).map(|message| Stored {
                            message,
                            duplicate: true,
                            prev: None,
                        }),
                        Ok(None) => Err(StoreError::Internal("conflicting row not found".into())),
                        Err(e) => Err(e),
                    },
                    None => Err(StoreError::Internal("insert returned no row".into())),
                }
            };
            outcomes.push(outcome);
        }
        Ok(plan.expand(batch, outcomes))
    }

    async fn mark_read(
        &self,
        conversation_id: i64,
        reader: UserKey,
        up_to: Option<i64>,
    ) -> Result<i64, StoreError> {
        let m = grouped::ReadMove {
            conversation_id,
            reader,
            up_to,
        };
        match self.reads.call(m).await? {
            grouped::Grouped::Done(id) => Ok(id),
            // Its row is held by another transaction: wait for it alone, not in the group.
            grouped::Grouped::Contended => grouped::mark_read_alone(&self.pool, m).await,
        }
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
        self.recoveries.last_ids.call(user).await
    }

    async fn read_pointers(
        &self,
        conversations: &[i64],
    ) -> Result<Vec<(i64, UserKey, i64)>, StoreError> {
        self.recoveries.pointers.call(conversations.to_vec()).await
    }

    async fn recovery_save(&self, session: &super::RecoverySession) -> Result<(), StoreError> {
        self.session_saves.call(session.clone()).await
    }

    async fn recovery_load(
        &self,
        pid: &str,
        now_ms: i64,
    ) -> Result<Option<super::RecoverySession>, StoreError> {
        self.recoveries
            .sessions
            .call((pid.to_owned(), now_ms))
            .await
    }

    async fn recovery_touch(&self, pids: &[String], expires_at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(super::recovery::PG_TOUCH)
            .bind(pids)
            .bind(expires_at_ms)
            .execute(&self.session_pool)
            .await?;
        Ok(())
    }

    async fn recovery_delete(&self, pids: &[String]) -> Result<(), StoreError> {
        sqlx::query(super::recovery::PG_DELETE)
            .bind(pids)
            .execute(&self.session_pool)
            .await?;
        Ok(())
    }

    async fn recovery_purge(&self, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(super::recovery::PG_PURGE)
            .bind(now_ms)
            .execute(&self.session_pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
