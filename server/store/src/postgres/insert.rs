//! The batch insert statement and the lookup of a row stored by another transaction.

use std::sync::LazyLock;

use sqlx::postgres::{PgPool, PgRow};

use super::ms;
use crate::{NewMessage, StoreError};

/// The batch as rows `u` (one array per column, `ord` = input position), shared by both statements.
const INPUT: &str = "FROM UNNEST($1::int8[], $2::int2[], $3::int8[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[]) WITH ORDINALITY AS u(conversation_id, sender_type, \
     sender_id, message_type, content, attachment_url, attachment_name, temp_id_key, ord)";

/// Locks the rows of the batch's conversations (`$1`), in id order, before any id is drawn: the
/// statement's ids come from the sequence only once it holds them (`drawn` joins `locked`'s
/// single row, an aggregate that consumes every lock first), so two transactions writing to one
/// conversation, from any node, draw and commit its ids one after the other, in id order. Recovery
/// offsets rely on it (a conversation's "last id delivered" has nothing missing below it).
/// `NO KEY UPDATE` does not conflict with the key-share locks of participant inserts.
///
/// `locks` also reads each conversation's `last_message_id`. A row lock returns the row's latest
/// committed version (READ COMMITTED re-reads a row another transaction changed before it let
/// go of the lock), not the statement's snapshot, so this is exactly the conversation's newest
/// message when our ids are drawn: the predecessor of the batch's first message in it.
pub(super) const LOCK_CONVERSATIONS: &str = "locks AS MATERIALIZED (
            SELECT c.id, c.last_message_id FROM conversations c WHERE c.id = ANY($1::int8[])
            ORDER BY c.id FOR NO KEY UPDATE
        ),
        locked AS MATERIALIZED (SELECT count(*) AS n FROM locks)";

/// Moves each conversation's `last_message_id` to its newest message of the batch (rows `rows`
/// with columns `conversation_id`, `id`), on the row [`LOCK_CONVERSATIONS`] locked: the next
/// writer, on any node, reads it as its predecessor. One row update per conversation per batch.
///
/// `c.id = ANY($1)` repeats what the join already implies (every row's conversation is in `$1`)
/// so that the plan finds the rows by the primary key even when it cannot see the batch: the
/// writer's connections run generic plans ([`super::PgStore::connect`]), and without it the
/// generic plan joined `a` to a scan of the whole `conversations` table.
pub(super) fn advance_last(rows: &str) -> String {
    format!(
        "advanced AS (
            UPDATE conversations c SET last_message_id = GREATEST(c.last_message_id, a.last)
            FROM (SELECT conversation_id, max(id) AS last FROM {rows} WHERE id IS NOT NULL
                  GROUP BY conversation_id) a
            WHERE c.id = a.conversation_id AND c.id = ANY($1::int8[])
            RETURNING 1
        )"
    )
}

/// Each stored row's predecessor in its conversation (rows `rows` with `conversation_id`, `id`,
/// NULL ids skipped): the previous id of the batch in that conversation, else the conversation's
/// `last_message_id` read under the lock.
pub(super) fn chain(rows: &str, extra: &str) -> String {
    format!(
        "chained AS (
            SELECT {extra} r.id, COALESCE(
                lag(r.id) OVER (PARTITION BY r.conversation_id ORDER BY r.id),
                l.last_message_id) AS prev
            FROM {rows} r JOIN locks l ON l.id = r.conversation_id
            WHERE r.id IS NOT NULL
        )"
    )
}

/// True when input row `u`'s sender takes part in its conversation.
const SENDER_IS_MEMBER: &str = "SELECT 1 FROM participants p WHERE p.conversation_id = \
     u.conversation_id AND p.user_type = u.sender_type AND p.user_id = u.sender_id";

/// The columns both statements insert.
const COLUMNS: &str = "id, conversation_id, sender_type, sender_id, message_type, content, \
     attachment_url, attachment_name, temp_id_key";

/// The batch insert statement (built once: the same text hits sqlx's prepared-statement cache).
pub(super) static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {LOCK_CONVERSATIONS},
        checked AS (
            SELECT nextval('messages_id_seq') AS id, u.*, EXISTS (
                {SENDER_IS_MEMBER}) AS allowed
            {INPUT} CROSS JOIN locked
        ),
        ins AS (
            INSERT INTO messages ({COLUMNS}) SELECT {COLUMNS} FROM checked WHERE allowed
            ON CONFLICT (sender_type, sender_id, conversation_id, temp_id_key) WHERE temp_id_key IS NOT NULL DO NOTHING
            RETURNING id, conversation_id, created_at
        ),
        unhidden AS (
            UPDATE participants p SET hidden = false
            WHERE p.hidden AND p.conversation_id IN (SELECT DISTINCT conversation_id FROM ins) RETURNING 1
        ),
        {chained},
        {advanced}
        SELECT i.ord, i.conversation_id, i.sender_type, i.sender_id, i.allowed,
               COALESCE(n.id, m.id) AS id,
               n.id IS NULL AS duplicate,
               ch.prev,
               {created} AS created_ms,
               m.message_type, m.content, m.attachment_url, m.attachment_name,
               CASE WHEN m.id IS NULL THEN false ELSE NOT EXISTS (
                   SELECT 1 FROM participants p WHERE p.conversation_id = i.conversation_id
                     AND NOT (p.user_type = i.sender_type AND p.user_id = i.sender_id)
                     AND p.last_read_message_id < m.id) END AS is_read,
               CASE WHEN n.id IS NULL AND m.id IS NULL
                    THEN EXISTS (SELECT 1 FROM conversations c WHERE c.id = i.conversation_id)
                    ELSE true END AS conversation_exists
        FROM checked i
        LEFT JOIN ins n ON n.id = i.id
        LEFT JOIN chained ch ON ch.id = n.id
        LEFT JOIN LATERAL (
            SELECT * FROM messages m
            WHERE n.id IS NULL AND i.temp_id_key IS NOT NULL
              AND m.sender_type = i.sender_type AND m.sender_id = i.sender_id
              AND m.conversation_id = i.conversation_id AND m.temp_id_key = i.temp_id_key
            LIMIT 1) m ON true",
        created = ms("COALESCE(n.created_at, m.created_at)"),
        chained = chain("ins", ""),
        advanced = advance_last("ins"),
    )
});

/// Looks up one already-stored message by its idempotency key (a conflict with a row committed
/// by another transaction after our statement started).
pub(super) async fn find_by_key(
    pool: &PgPool,
    m: &NewMessage,
    key: &str,
) -> Result<Option<PgRow>, StoreError> {
    let sql = format!(
        "SELECT id, conversation_id, sender_type, sender_id, message_type, content, attachment_url,
                attachment_name, {} AS created_ms
         FROM messages WHERE sender_type = $1 AND sender_id = $2 AND conversation_id = $3 AND temp_id_key = $4",
        ms("created_at")
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(m.sender.user_type.code())
        .bind(m.sender.id)
        .bind(m.conversation_id)
        .bind(key)
        .fetch_optional(pool)
        .await?)
}

/// The fast batch insert: a plain `INSERT` (no `ON CONFLICT`, no `RETURNING`, no join back),
/// one statement and one round trip, atomic on its own. Ids are drawn in input order for rows
/// whose sender is a participant (NULL otherwise, and not inserted); the conversations of the
/// inserted rows are un-hidden and their `last_message_id` advanced; the answer is the ids and
/// their predecessors (input order) and the rows' `created_at`.
/// A retried key makes the whole statement fail with a unique violation (nothing stays) and the
/// caller runs [`INSERT_SQL`], which returns the stored rows: the idempotency index decides.
pub(super) static FAST_INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {LOCK_CONVERSATIONS},
        drawn AS (
            SELECT u.*, CASE WHEN EXISTS (
                {SENDER_IS_MEMBER})
                THEN nextval('messages_id_seq') END AS id
            {INPUT} CROSS JOIN locked
        ),
        ins AS (
            INSERT INTO messages ({COLUMNS}) SELECT {COLUMNS} FROM drawn WHERE id IS NOT NULL
        ),
        unhidden AS (
            UPDATE participants p SET hidden = false
            WHERE p.hidden AND p.conversation_id IN (SELECT conversation_id FROM drawn WHERE id IS NOT NULL)
            RETURNING 1
        ),
        {chained},
        {advanced}
        SELECT array_agg(d.id ORDER BY d.ord) AS ids, array_agg(ch.prev ORDER BY d.ord) AS prevs,
               {created} AS created_ms
        FROM drawn d LEFT JOIN chained ch ON ch.ord = d.ord",
        created = ms("now()::timestamptz(3)"),
        chained = chain("drawn", "r.ord,"),
        advanced = advance_last("drawn"),
    )
});
