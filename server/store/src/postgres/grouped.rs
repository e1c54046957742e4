//! Calls that come in crowds, grouped into one statement per batch (one commit for the writes)
//! ([`GroupCall`]); each call still gets its own answer.
//!
//! - Read pointers: every recipient of a message marks it read, so a busy server sees many
//!   pointer moves per message; a call's answer is its target id, or `not_found` / `forbidden`
//!   for itself alone.
//! - Profiles from token claims: a connect storm brings each user's first connect to a node at
//!   once, and each upserts the user's row.
//! - The reads of a connect: a user's conversations (whom to tell it came online) and a
//!   conversation's participants (the chat layer caches them; a storm misses the cache for every
//!   room at once).
//! - The reads of a recovering socket: its session row, its conversations' last message ids and
//!   its rooms' read pointers (here), and its missed messages: history pages without a search
//!   (`conversations.rs`, REST's pages too).
//! - Session rows: every socket saves one at its connect and again at each room it joins.
//!
//! Each group has a connection of its own ([`own_pool`]): its one statement at a time never
//! queues behind the query pool's traffic, and a storm's thousands of calls hold one connection
//! between them instead of queueing for eight (each call used to wait up to the query pool's
//! acquire timeout, then fail). The statements run on the store's own thread ([`StoreThread`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::user_from;
use crate::group::{BatchResult, GroupCall, StoreThread, group};
use crate::recovery::{RecoverySession, pointer_from, session_from};
use crate::{Profile, StoreError, UserKey};

/// A profile upsert that deadlocked with another node's batch is retried this often.
const DEADLOCK_RETRIES: usize = 3;

/// The connection of one group, opened on first use. No statement of it waits more than
/// [`LOCK_TIMEOUT`] for a row another transaction holds: a whole batch waits behind that one row.
pub(super) fn own_pool(opts: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(opts.clone().options([("lock_timeout", LOCK_TIMEOUT)]))
}

/// How long a grouped statement waits for a locked row before its calls go alone.
const LOCK_TIMEOUT: &str = "2s";

/// What a grouped call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grouped<T> {
    /// Done: the call's answer.
    Done(T),
    /// Another transaction held a row the call needed: the caller makes it alone.
    Contended,
}

/// One `mark_read` call.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadMove {
    pub(super) conversation_id: i64,
    pub(super) reader: UserKey,
    pub(super) up_to: Option<i64>,
}

/// Each input row's target (the message named, or the newest; NULL when the named message is
/// not in the conversation), whether its reader is a participant and its conversation exists:
/// every lookup one index probe per row (LATERAL with LIMIT 1, which the planner cannot turn into
/// a hash join), never a scan of a whole table, whose cost would grow with the table rather than
/// the batch.
/// The pointers move to the highest target per participant, never backwards, locked in key
/// order. A row another transaction holds is skipped, never waited for (`SKIP LOCKED`): one
/// reader's row held in the database must not hold back every other reader of the process
/// behind it; `skipped` sends that move to [`mark_read_alone`], which waits for its row on its
/// own. `upd`, like every data-modifying CTE, runs whether or not the final SELECT reads it.
const MARK_READ_SQL: &str = "
WITH req AS (
    SELECT * FROM unnest($1::int8[], $2::int2[], $3::int8[], $4::int8[])
        WITH ORDINALITY AS r(conv, utype, uid, up_to, ord)
), target AS (
    SELECT r.ord, r.conv, r.utype, r.uid,
        pp.last_read,
        pp.last_read IS NOT NULL AS is_participant,
        cc.id IS NOT NULL AS conversation_exists,
        CASE WHEN r.up_to IS NULL
            THEN (SELECT COALESCE(max(m.id), 0) FROM messages m WHERE m.conversation_id = r.conv)
            ELSE (SELECT m.id FROM messages m WHERE m.conversation_id = r.conv AND m.id = r.up_to)
        END AS id
    FROM req r
    LEFT JOIN LATERAL (
        SELECT p.last_read_message_id AS last_read FROM participants p
        WHERE p.conversation_id = r.conv AND p.user_type = r.utype AND p.user_id = r.uid LIMIT 1
    ) pp ON true
    LEFT JOIN LATERAL (SELECT c.id FROM conversations c WHERE c.id = r.conv LIMIT 1) cc ON true
), wanted AS (
    SELECT conv, utype, uid, max(id) AS id FROM target
    WHERE id IS NOT NULL AND is_participant
    GROUP BY conv, utype, uid
), locked AS (
    SELECT p.conversation_id, p.user_type, p.user_id, w.id
    FROM wanted w JOIN LATERAL (
        SELECT * FROM participants p
        WHERE p.conversation_id = w.conv AND p.user_type = w.utype AND p.user_id = w.uid LIMIT 1
    ) p ON true
    WHERE p.last_read_message_id < w.id
    ORDER BY p.conversation_id, p.user_type, p.user_id
    FOR UPDATE OF p SKIP LOCKED
), upd AS (
    UPDATE participants p SET last_read_message_id = GREATEST(p.last_read_message_id, l.id)
    FROM locked l
    WHERE p.conversation_id = l.conversation_id AND p.user_type = l.user_type
      AND p.user_id = l.user_id
    RETURNING 1
)
SELECT t.ord, t.id AS target, t.is_participant, t.conversation_exists,
    t.is_participant AND t.id IS NOT NULL AND t.last_read < t.id AND NOT EXISTS (
        SELECT 1 FROM locked l
        WHERE l.conversation_id = t.conv AND l.user_type = t.utype AND l.user_id = t.uid
    ) AS skipped
FROM target t ORDER BY t.ord";

/// One move alone, waiting for its row however long another transaction holds it (the old
/// single-call statement; the fallback of a move its batch skipped).
const MARK_READ_ONE_SQL: &str = "
WITH target AS (
    SELECT CASE WHEN $4::int8 IS NULL
        THEN (SELECT COALESCE(max(id), 0) FROM messages WHERE conversation_id = $1)
        ELSE (SELECT id FROM messages WHERE conversation_id = $1 AND id = $4) END AS id
), upd AS (
    UPDATE participants p SET last_read_message_id = t.id FROM target t
    WHERE p.conversation_id = $1 AND p.user_type = $2 AND p.user_id = $3
      AND t.id IS NOT NULL AND p.last_read_message_id < t.id
    RETURNING 1
)
SELECT (SELECT id FROM target) AS target,
    EXISTS (SELECT 1 FROM participants WHERE conversation_id = $1 AND user_type = $2 AND user_id = $3)
        AS is_participant,
    EXISTS (SELECT 1 FROM conversations WHERE id = $1) AS conversation_exists";

/// The grouped `mark_read` of one store (its clones share it).
pub(super) fn reads(io: &StoreThread, pool: PgPool) -> GroupCall<ReadMove, Grouped<i64>> {
    group(io, pool, |pool, moves: Vec<ReadMove>| async move {
        mark_read_batch(&pool, &moves).await
    })
}

/// One statement for `moves` (it never waits for a row, so it cannot deadlock).
async fn mark_read_batch(pool: &PgPool, moves: &[ReadMove]) -> BatchResult<Grouped<i64>> {
    let convs: Vec<i64> = moves.iter().map(|m| m.conversation_id).collect();
    let types: Vec<i16> = moves.iter().map(|m| m.reader.user_type.code()).collect();
    let ids: Vec<i64> = moves.iter().map(|m| m.reader.id).collect();
    let up_to: Vec<Option<i64>> = moves.iter().map(|m| m.up_to).collect();
    let rows = sqlx::query(MARK_READ_SQL)
        .bind(&convs)
        .bind(&types)
        .bind(&ids)
        .bind(&up_to)
        .fetch_all(pool)
        .await?;
    super::one_row_each("read pointer moves", moves.len(), rows.len())?;
    Ok(rows
        .iter()
        .map(|row| match row.try_get::<bool, _>("skipped") {
            Ok(true) => Ok(Grouped::Contended),
            Ok(false) => one(row).map(Grouped::Done),
            Err(e) => Err(e.into()),
        })
        .collect())
}

/// One move on its own (see [`MARK_READ_ONE_SQL`]).
pub(super) async fn mark_read_alone(pool: &PgPool, m: ReadMove) -> Result<i64, StoreError> {
    let row = sqlx::query(MARK_READ_ONE_SQL)
        .bind(m.conversation_id)
        .bind(m.reader.user_type.code())
        .bind(m.reader.id)
        .bind(m.up_to)
        .fetch_one(pool)
        .await?;
    one(&row)
}

/// One call's answer from its row.
fn one(row: &PgRow) -> Result<i64, StoreError> {
    if !row.try_get::<bool, _>("conversation_exists")? {
        return Err(StoreError::NotFound);
    }
    if !row.try_get::<bool, _>("is_participant")? {
        return Err(StoreError::Forbidden);
    }
    row.try_get::<Option<i64>, _>("target")?
        .ok_or(StoreError::NotFound)
}

/// Creates or updates users from their token's profile claims, in key order (two nodes' batches
/// lock rows in the same order); a user named twice in one batch keeps the later claims. A row
/// that already holds those claims is not written.
const UPSERT_PROFILES_SQL: &str = "
INSERT INTO users (user_type, id, username, first_name, last_name, profile_image)
SELECT DISTINCT ON (utype, uid) utype, uid, username, first_name, last_name, profile_image
FROM unnest($1::int2[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[])
    WITH ORDINALITY AS r(utype, uid, username, first_name, last_name, profile_image, ord)
ORDER BY utype, uid, ord DESC
ON CONFLICT (user_type, id) DO UPDATE SET username = EXCLUDED.username,
    first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
    profile_image = EXCLUDED.profile_image
WHERE (users.username, users.first_name, users.last_name, users.profile_image)
    IS DISTINCT FROM (EXCLUDED.username, EXCLUDED.first_name, EXCLUDED.last_name,
                      EXCLUDED.profile_image)";

/// The grouped profile upsert of one store (its clones share it).
pub(super) fn profiles(
    io: &StoreThread,
    pool: PgPool,
) -> GroupCall<(UserKey, Profile), Grouped<()>> {
    group(
        io,
        pool,
        |pool, users: Vec<(UserKey, Profile)>| async move {
            match upsert_profiles(&pool, &users).await {
                Ok(()) => Ok(users.iter().map(|_| Ok(Grouped::Done(()))).collect()),
                // A user's row held past the group connection's `lock_timeout`: each call of the
                // batch upserts alone, waiting as long as it takes.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => {
                    Ok(users.iter().map(|_| Ok(Grouped::Contended)).collect())
                }
                Err(e) => Err(e.into()),
            }
        },
    )
}

/// Upserts `users`' profiles (see [`UPSERT_PROFILES_SQL`]).
pub(super) async fn upsert_profiles(
    pool: &PgPool,
    users: &[(UserKey, Profile)],
) -> Result<(), sqlx::Error> {
    let types: Vec<i16> = users.iter().map(|(u, _)| u.user_type.code()).collect();
    let ids: Vec<i64> = users.iter().map(|(u, _)| u.id).collect();
    let column = |f: fn(&Profile) -> &Option<String>| -> Vec<Option<String>> {
        users.iter().map(|(_, p)| f(p).clone()).collect()
    };
    let usernames: Vec<String> = users.iter().map(|(_, p)| p.username.clone()).collect();
    let first = column(|p| &p.first_name);
    let last = column(|p| &p.last_name);
    let image = column(|p| &p.profile_image);
    retry_deadlocks(|| {
        sqlx::query(UPSERT_PROFILES_SQL)
            .bind(&types)
            .bind(&ids)
            .bind(&usernames)
            .bind(&first)
            .bind(&last)
            .bind(&image)
            .execute(pool)
    })
    .await?;
    Ok(())
}

/// Runs `statement`, again when PostgreSQL broke a deadlock by failing it (another node's batch
/// held rows this one wanted), at most [`DEADLOCK_RETRIES`] times.
async fn retry_deadlocks<R, F>(statement: impl Fn() -> F) -> Result<R, sqlx::Error>
where
    F: std::future::Future<Output = Result<R, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match statement().await {
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("40P01") && attempt < DEADLOCK_RETRIES =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Participants of each conversation asked for, in key order (`OFFSET 0` keeps each lookup an
/// index probe: the planner cannot fold the subquery into a join over the whole table).
const PARTICIPANTS_SQL: &str = "
SELECT r.conv, p.user_type, p.user_id
FROM unnest($1::int8[]) AS r(conv), LATERAL (
    SELECT user_type, user_id FROM participants p WHERE p.conversation_id = r.conv
    ORDER BY user_type, user_id OFFSET 0
) p";

/// The grouped participants lookup (None: no such conversation).
pub(super) fn participants(
    io: &StoreThread,
    pool: PgPool,
) -> GroupCall<i64, Option<Arc<[UserKey]>>> {
    group(io, pool, |pool, convs: Vec<i64>| async move {
        let rows = sqlx::query(PARTICIPANTS_SQL)
            .bind(distinct(&convs))
            .fetch_all(&pool)
            .await?;
        let by_conv = by_key(&rows, |row| {
            Ok((
                row.try_get::<i64, _>("conv")?,
                user_from(row, "user_type", "user_id")?,
            ))
        })?;
        let by_conv: HashMap<i64, Arc<[UserKey]>> =
            by_conv.into_iter().map(|(c, u)| (c, u.into())).collect();
        Ok(convs.iter().map(|c| Ok(by_conv.get(c).cloned())).collect())
    })
}

/// Conversations of each user asked for, in id order (index probes, as above).
const CONVERSATIONS_OF_SQL: &str = "
SELECT r.utype AS user_type, r.uid AS user_id, p.conversation_id
FROM unnest($1::int2[], $2::int8[]) AS r(utype, uid), LATERAL (
    SELECT conversation_id FROM participants p WHERE p.user_type = r.utype AND p.user_id = r.uid
    ORDER BY conversation_id OFFSET 0
) p";

/// The grouped lookup of users' conversations.
pub(super) fn conversations_of(io: &StoreThread, pool: PgPool) -> GroupCall<UserKey, Vec<i64>> {
    group(io, pool, |pool, users: Vec<UserKey>| async move {
        per_user(&pool, CONVERSATIONS_OF_SQL, &users, |row| {
            row.try_get::<i64, _>("conversation_id")
        })
        .await
    })
}

/// Each conversation of each user asked for with its last message id (0 when it has none), in
/// conversation order (index probes, as above).
const LAST_IDS_SQL: &str = "
SELECT r.utype AS user_type, r.uid AS user_id, p.conversation_id,
    COALESCE((SELECT max(m.id) FROM messages m WHERE m.conversation_id = p.conversation_id), 0)
        AS last_id
FROM unnest($1::int2[], $2::int8[]) AS r(utype, uid), LATERAL (
    SELECT conversation_id FROM participants p WHERE p.user_type = r.utype AND p.user_id = r.uid
    ORDER BY conversation_id OFFSET 0
) p";

/// The grouped `last_message_ids` (where a recovering socket's missed messages start).
pub(super) fn last_ids(io: &StoreThread, pool: PgPool) -> GroupCall<UserKey, Vec<(i64, i64)>> {
    group(io, pool, |pool, users: Vec<UserKey>| async move {
        per_user(&pool, LAST_IDS_SQL, &users, |row| {
            Ok((row.try_get("conversation_id")?, row.try_get("last_id")?))
        })
        .await
    })
}

/// Runs `sql` (its parameters: the distinct users' types and ids; its rows: `user_type`,
/// `user_id` and what `value` reads) and answers each user's call with its values in the
/// statement's order.
async fn per_user<V: Clone>(
    pool: &PgPool,
    sql: &'static str,
    users: &[UserKey],
    value: impl Fn(&PgRow) -> Result<V, sqlx::Error>,
) -> BatchResult<Vec<V>> {
    let unique = distinct(users);
    let types: Vec<i16> = unique.iter().map(|u| u.user_type.code()).collect();
    let ids: Vec<i64> = unique.iter().map(|u| u.id).collect();
    let rows = sqlx::query(sql)
        .bind(&types)
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    let by_user = by_key(&rows, |row| {
        Ok((user_from(row, "user_type", "user_id")?, value(row)?))
    })?;
    Ok(users
        .iter()
        .map(|u| Ok(by_user.get(u).cloned().unwrap_or_default()))
        .collect())
}

/// Session rows as one upsert (see [`session_saves`]).
const SAVE_SESSIONS_SQL: &str = "
INSERT INTO recovery_sessions (pid, user_type, user_id, sid, state, expires_at_ms)
SELECT * FROM unnest($1::text[], $2::int2[], $3::int8[], $4::text[], $5::text[], $6::int8[])
ON CONFLICT (pid) DO UPDATE SET user_type = EXCLUDED.user_type,
  user_id = EXCLUDED.user_id, sid = EXCLUDED.sid, state = EXCLUDED.state,
  expires_at_ms = EXCLUDED.expires_at_ms";

/// The grouped `recovery_save`: a connect storm saves a session row per client at its connect
/// and again at each room it joins. One statement each, on the session pool's 4 connections,
/// queued past the pool's timeout on a slow machine (1,000 clients, 103 sessions never started,
/// so 103 clients could not recover).
pub(super) fn session_saves(io: &StoreThread, pool: PgPool) -> GroupCall<RecoverySession, ()> {
    group(io, pool, |pool, calls: Vec<RecoverySession>| async move {
        let rows = crate::recovery::last_per_pid(&calls);
        let pids: Vec<&str> = rows.iter().map(|s| s.pid.as_str()).collect();
        let types: Vec<i16> = rows.iter().map(|s| s.user.user_type.code()).collect();
        let ids: Vec<i64> = rows.iter().map(|s| s.user.id).collect();
        let sids: Vec<&str> = rows.iter().map(|s| s.sid.as_str()).collect();
        let states: Vec<&str> = rows.iter().map(|s| s.state.as_str()).collect();
        let expiries: Vec<i64> = rows.iter().map(|s| s.expires_at_ms).collect();
        sqlx::query(SAVE_SESSIONS_SQL)
            .bind(&pids)
            .bind(&types)
            .bind(&ids)
            .bind(&sids)
            .bind(&states)
            .bind(&expiries)
            .execute(&pool)
            .await?;
        Ok(calls.iter().map(|_| Ok(())).collect())
    })
}

/// The sessions asked for, expired or not (each call checks its own clock).
const RECOVERY_SESSIONS_SQL: &str = "
SELECT pid, user_type, user_id, sid, state, expires_at_ms FROM recovery_sessions
WHERE pid = ANY($1::text[])";

/// The grouped `recovery_load`: a reconnect storm reads one session row per client.
pub(super) fn recovery_sessions(
    io: &StoreThread,
    pool: PgPool,
) -> GroupCall<(String, i64), Option<RecoverySession>> {
    group(io, pool, |pool, calls: Vec<(String, i64)>| async move {
        let pids: Vec<String> = distinct(&calls).into_iter().map(|(pid, _)| pid).collect();
        let rows = sqlx::query(RECOVERY_SESSIONS_SQL)
            .bind(&pids)
            .fetch_all(&pool)
            .await?;
        let mut by_pid = HashMap::with_capacity(rows.len());
        for row in &rows {
            let session = session_from(row)?;
            by_pid.insert(session.pid.clone(), session);
        }
        Ok(calls
            .iter()
            .map(|(pid, now_ms)| {
                Ok(by_pid
                    .get(pid)
                    .filter(|s| s.expires_at_ms > *now_ms)
                    .cloned())
            })
            .collect())
    })
}

/// The read pointers above 0 of the participants of each conversation asked for (index probes).
const READ_POINTERS_SQL: &str = "
SELECT r.conv AS conversation_id, p.user_type, p.user_id, p.last_read_message_id
FROM unnest($1::int8[]) AS r(conv), LATERAL (
    SELECT user_type, user_id, last_read_message_id FROM participants p
    WHERE p.conversation_id = r.conv AND p.last_read_message_id > 0 OFFSET 0
) p";

/// The grouped `read_pointers`: each call names its conversations (a recovering socket's rooms).
pub(super) fn read_pointers(
    io: &StoreThread,
    pool: PgPool,
) -> GroupCall<Vec<i64>, Vec<(i64, UserKey, i64)>> {
    group(io, pool, |pool, calls: Vec<Vec<i64>>| async move {
        let all: Vec<i64> = calls.iter().flatten().copied().collect();
        let rows = sqlx::query(READ_POINTERS_SQL)
            .bind(distinct(&all))
            .fetch_all(&pool)
            .await?;
        let by_conv = by_key(&rows, |row| {
            let pointer = pointer_from(row)?;
            Ok((pointer.0, pointer))
        })?;
        Ok(calls
            .iter()
            .map(|convs| {
                Ok(distinct(convs)
                    .iter()
                    .filter_map(|c| by_conv.get(c))
                    .flatten()
                    .copied()
                    .collect())
            })
            .collect())
    })
}

/// The distinct keys a batch asks for, sorted: one lookup each, however many calls named it.
pub(super) fn distinct<K: Ord + Clone>(keys: &[K]) -> Vec<K> {
    let mut unique = keys.to_vec();
    unique.sort_unstable();
    unique.dedup();
    unique
}

/// Rows split by the key `split` reads from each, values in the statement's order.
fn by_key<K: Hash + Eq, V>(
    rows: &[PgRow],
    split: impl Fn(&PgRow) -> Result<(K, V), StoreError>,
) -> Result<HashMap<K, Vec<V>>, StoreError> {
    let mut out: HashMap<K, Vec<V>> = HashMap::new();
    for row in rows {
        let (k, v) = split(row)?;
        out.entry(k).or_default().push(v);
    }
    Ok(out)
}
