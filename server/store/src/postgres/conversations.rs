//! PostgreSQL REST queries: create 1:1 and group conversations, conversation lists with last
//! message and unread count, history with search, unread counts, hiding.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;

use super::{PgStore, message_from, ms, profile_from};
use crate::direct_key;
use crate::group::{BatchResult, GroupCall};
use crate::profiles::ProfileCache;
use crate::read_state::ReadFloor;
use crate::{
    Conversation, ConversationCursor, ConversationKind, ConversationPage, HistoryQuery,
    MessagePage, Participant, Profile, StoreError, UnreadCounts, UserKey,
};

/// Creates the users that do not exist yet, with default profiles.
async fn ensure_users(store: &PgStore, users: &[UserKey]) -> Result<(), StoreError> {
    let types: Vec<i16> = users.iter().map(|u| u.user_type.code()).collect();
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let names: Vec<String> = users
        .iter()
        .map(|u| Profile::default_for(*u).username)
        .collect();
    sqlx::query(
        "INSERT INTO users (user_type, id, username)
         SELECT * FROM UNNEST($1::int2[], $2::int8[], $3::text[])
         ON CONFLICT (user_type, id) DO NOTHING",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&names)
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Inserts a conversation and its participants in one statement; None when the direct key exists.
async fn insert_conversation(
    store: &PgStore,
    kind: ConversationKind,
    title: Option<&str>,
    direct: Option<&str>,
    users: &[UserKey],
) -> Result<Option<i64>, StoreError> {
    let types: Vec<i16> = users.iter().map(|u| u.user_type.code()).collect();
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let id: Option<i64> = sqlx::query_scalar(
        "WITH c AS (
            INSERT INTO conversations (type, title, direct_key) VALUES ($1, $2, $3)
            ON CONFLICT (direct_key) DO NOTHING RETURNING id),
         p AS (
            INSERT INTO participants (conversation_id, user_type, user_id)
            SELECT c.id, t.ut, t.uid FROM c, UNNEST($4::int2[], $5::int8[]) AS t(ut, uid) RETURNING 1)
         SELECT id FROM c",
    )
    .bind(kind.as_str())
    .bind(title)
    .bind(direct)
    .bind(&types)
    .bind(&ids)
    .fetch_optional(&store.pool)
    .await?;
    Ok(id)
}

pub(super) async fn create_direct(
    store: &PgStore,
    caller: UserKey,
    other: UserKey,
) -> Result<(Conversation, bool), StoreError> {
    crate::check_direct_pair(caller, other)?;
    ensure_users(store, &[caller, other]).await?;
    let key = direct_key(caller, other);
    let users = [caller.min(other), caller.max(other)];
    if let Some(id) =
        insert_conversation(store, ConversationKind::Direct, None, Some(&key), &users).await?
    {
        return Ok((view(store, id, caller).await?, true));
    }
    let id: i64 = sqlx::query_scalar(
        "WITH c AS (SELECT id FROM conversations WHERE direct_key = $1),
         u AS (UPDATE participants p SET hidden = false FROM c
               WHERE p.conversation_id = c.id AND p.user_type = $2 AND p.user_id = $3 AND p.hidden RETURNING 1)
         SELECT id FROM c",
    )
    .bind(&key)
    .bind(caller.user_type.code())
    .bind(caller.id)
    .fetch_one(&store.pool)
    .await?;
    Ok((view(store, id, caller).await?, false))
}

pub(super) async fn create_group(
    store: &PgStore,
    caller: UserKey,
    members: &[UserKey],
    title: Option<String>,
    max_participants: usize,
) -> Result<Conversation, StoreError> {
    let users = crate::group_members(caller, members, max_participants)?;
    ensure_users(store, &users).await?;
    let id = insert_conversation(
        store,
        ConversationKind::Group,
        title.as_deref(),
        None,
        &users,
    )
    .await?
    .ok_or_else(|| StoreError::Internal("group insert returned no id".into()))?;
    view(store, id, caller).await
}

async fn view(store: &PgStore, id: i64, viewer: UserKey) -> Result<Conversation, StoreError> {
    views(store, &[id], viewer)
        .await?
        .pop()
        .ok_or(StoreError::NotFound)
}

/// Loaded participants of some conversations: profiles and read pointers.
type Members = HashMap<i64, Vec<(Participant, i64)>>;

async fn members(store: &PgStore, ids: &[i64]) -> Result<Members, StoreError> {
    members_on(&store.pool, &store.profiles, ids).await
}

/// [`members`] on `pool`, caching the profiles it reads in `profiles`.
async fn members_on(
    pool: &sqlx::PgPool,
    profiles: &ProfileCache,
    ids: &[i64],
) -> Result<Members, StoreError> {
    let rows = sqlx::query(
        "SELECT p.conversation_id, p.user_type, p.user_id, p.last_read_message_id,
                u.username, u.first_name, u.last_name, u.profile_image
         FROM participants p JOIN users u ON u.user_type = p.user_type AND u.id = p.user_id
         WHERE p.conversation_id = ANY($1)
         ORDER BY p.conversation_id, p.user_type, p.user_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut out: Members = HashMap::new();
    for row in rows {
        let user = super::user_from(&row, "user_type", "user_id")?;
        let profile = Arc::new(profile_from(&row, "")?);
        profiles.insert(user, profile.clone());
        out.entry(row.try_get("conversation_id")?)
            .or_default()
            .push((
                Participant { user, profile },
                row.try_get("last_read_message_id")?,
            ));
    }
    Ok(out)
}

fn profile_in(members: &[(Participant, i64)], user: UserKey) -> Arc<Profile> {
    members
        .iter()
        .find(|(p, _)| p.user == user)
        .map(|(p, _)| p.profile.clone())
        .unwrap_or_else(|| Arc::new(Profile::default_for(user)))
}

/// The viewer's view of conversations `ids` (in the order given; ones the viewer is not in are skipped).
async fn views(
    store: &PgStore,
    ids: &[i64],
    viewer: UserKey,
) -> Result<Vec<Conversation>, StoreError> {
    let sql = format!(
        "SELECT c.id AS cid, c.type, c.title, {updated} AS updated_ms,
            (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id AND m.id > vp.last_read_message_id
                AND NOT (m.sender_type = $2 AND m.sender_id = $3)) AS unread,
            lm.id, lm.conversation_id, lm.sender_type, lm.sender_id, lm.message_type, lm.content,
            lm.attachment_url, lm.attachment_name, {created} AS created_ms
         FROM conversations c
         JOIN participants vp ON vp.conversation_id = c.id AND vp.user_type = $2 AND vp.user_id = $3
         LEFT JOIN LATERAL (SELECT * FROM messages WHERE conversation_id = c.id ORDER BY id DESC LIMIT 1) lm ON true
         WHERE c.id = ANY($1)",
        updated = ms("GREATEST(c.updated_at, lm.created_at)"),
        created = ms("lm.created_at")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .bind(viewer.user_type.code())
        .bind(viewer.id)
        .fetch_all(&store.pool)
        .await?;
    let mut members = members(store, ids).await?;
    let mut by_id: HashMap<i64, Conversation> = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("cid")?;
        let list = members.remove(&id).unwrap_or_default();
        let floor = ReadFloor::new(list.iter().map(|(p, ptr)| (p.user, *ptr)));
        let last_message = match row.try_get::<Option<i64>, _>("id")? {
            Some(mid) => {
                let sender = super::user_from(&row, "sender_type", "sender_id")?;
                Some(message_from(
                    &row,
                    profile_in(&list, sender),
                    floor.is_read(sender, mid),
                )?)
            }
            None => None,
        };
        let kind: String = row.try_get("type")?;
        by_id.insert(
            id,
            Conversation {
                id,
                kind: ConversationKind::parse(&kind)?,
                title: row.try_get("title")?,
                participants: list.into_iter().map(|(p, _)| p).collect(),
                last_message,
                unread_count: row.try_get("unread")?,
                updated_at_ms: row.try_get("updated_ms")?,
            },
        );
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

pub(super) async fn list(
    store: &PgStore,
    user: UserKey,
    before: Option<ConversationCursor>,
    limit: u32,
) -> Result<ConversationPage, StoreError> {
    let limit = i64::from(limit.max(1));
    // Latest activity: the newest message's time, or the creation time (`updated_at` is not
    // bumped per message; see the module doc of `postgres`).
    let sql = format!(
        "SELECT id, updated_ms FROM (
            SELECT c.id, {activity} AS updated_ms
            FROM participants p JOIN conversations c ON c.id = p.conversation_id
            LEFT JOIN LATERAL (SELECT created_at FROM messages WHERE conversation_id = c.id
                               ORDER BY id DESC LIMIT 1) lm ON true
            WHERE p.user_type = $1 AND p.user_id = $2 AND NOT p.hidden) t
         WHERE (updated_ms, id) < ($3, $4)
         ORDER BY updated_ms DESC, id DESC LIMIT $5",
        activity = ms("GREATEST(c.updated_at, lm.created_at)")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.user_type.code())
        .bind(user.id)
        .bind(before.map_or(i64::MAX, |b| b.updated_at_ms))
        .bind(before.map_or(i64::MAX, |b| b.id))
        .bind(limit + 1)
        .fetch_all(&store.pool)
        .await?;
    let mut page: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("updated_ms")?)))
        .collect::<Result<_, StoreError>>()?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let ids: Vec<i64> = page.iter().map(|(id, _)| *id).collect();
    let conversations = views(store, &ids, user).await?;
    let next_cursor = if more {
        page.last().map(|(id, ms)| ConversationCursor {
            updated_at_ms: *ms,
            id: *id,
        })
    } else {
        None
    };
    Ok(ConversationPage {
        conversations,
        next_cursor,
    })
}

pub(super) async fn history(
    store: &PgStore,
    conversation_id: i64,
    viewer: UserKey,
    query: HistoryQuery<'_>,
) -> Result<MessagePage, StoreError> {
    let call = HistoryCall {
        conversation_id,
        viewer,
        before: query.before,
        limit: query.limit.max(1),
        search: query.search.map(str::to_owned),
    };
    if call.search.is_none() {
        return store.histories.call(call).await;
    }
    // A search reads every message of the conversation: alone on the query pool, never in a
    // group whose other pages would wait for it.
    let mut pages = history_batch(
        &store.pool,
        &store.profiles,
        &store.history_sql,
        std::slice::from_ref(&call),
    )
    .await?;
    pages
        .pop()
        .unwrap_or_else(|| Err(StoreError::Internal("history: no page".into())))
}

/// One `history` call. Pages without a search are grouped with the others that arrive while a
/// batch runs: a reconnect storm reads every recovering socket's missed messages at once
/// (`grouped.rs`).
#[derive(Debug, Clone)]
pub(super) struct HistoryCall {
    conversation_id: i64,
    viewer: UserKey,
    before: Option<i64>,
    limit: u32,
    search: Option<String>,
}

/// Each call's page (one more row than its limit, to tell whether there is a next one), newest
/// first; every page one index range scan (LATERAL).
pub(super) fn history_sql(collation: &str) -> String {
    format!(
        "SELECT r.ord, m.* FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[])
            WITH ORDINALITY AS r(conv, before, search, lim, ord),
         LATERAL (
            SELECT id, conversation_id, sender_type, sender_id, message_type, content,
                attachment_url, attachment_name, {} AS created_ms
            FROM messages
            WHERE conversation_id = r.conv AND id < r.before
              AND (r.search IS NULL OR strpos(lower(content{fold}), lower(r.search{fold})) > 0)
            ORDER BY id DESC LIMIT r.lim
         ) m
         ORDER BY r.ord, m.id DESC",
        ms("created_at"),
        fold = collation,
    )
}

/// The pages of `calls`: the participants of their conversations in one statement (a call
/// whose viewer is not one of them is `forbidden`, of a conversation with none `not_found`),
/// then the messages of the others in one more.
async fn history_batch(
    pool: &sqlx::PgPool,
    profiles: &ProfileCache,
    sql: &str,
    calls: &[HistoryCall],
) -> BatchResult<MessagePage> {
    let convs: Vec<i64> = calls.iter().map(|c| c.conversation_id).collect();
    let members = members_on(pool, profiles, &super::grouped::distinct(&convs)).await?;
    let mut answers: Vec<Result<MessagePage, StoreError>> = Vec::with_capacity(calls.len());
    // The calls allowed to read, as indexes into `calls`.
    let mut allowed = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        let list = members
            .get(&call.conversation_id)
            .map_or(&[][..], Vec::as_slice);
        answers.push(if list.is_empty() {
            Err(StoreError::NotFound)
        } else if !list.iter().any(|(p, _)| p.user == call.viewer) {
            Err(StoreError::Forbidden)
        } else {
            allowed.push(i);
            Ok(MessagePage {
                messages: Vec::new(),
                next_cursor: None,
            })
        });
    }
    if allowed.is_empty() {
        return Ok(answers);
    }
    let column = |f: fn(&HistoryCall) -> i64| -> Vec<i64> {
        allowed.iter().map(|&i| f(&calls[i])).collect()
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(column(|c| c.conversation_id))
        .bind(column(|c| c.before.unwrap_or(i64::MAX)))
        .bind(
            allowed
                .iter()
                .map(|&i| calls[i].search.clone())
                .collect::<Vec<Option<String>>>(),
        )
        .bind(column(|c| i64::from(c.limit) + 1))
        .fetch_all(pool)
        .await?;
    let mut rows_of: Vec<Vec<&sqlx::postgres::PgRow>> = vec![Vec::new(); allowed.len()];
    for row in &rows {
        let ord: i64 = row.try_get("ord")?;
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|k| rows_of.get_mut(k))
            .ok_or_else(|| StoreError::Internal(format!("history: row of call {ord}")))?;
        slot.push(row);
    }
    for (k, &i) in allowed.iter().enumerate() {
        answers[i] = page(&calls[i], &members, &rows_of[k]);
    }
    Ok(answers)
}

/// One call's page from its rows.
fn page(
    call: &HistoryCall,
    members: &Members,
    rows: &[&sqlx::postgres::PgRow],
) -> Result<MessagePage, StoreError> {
    let list = members
        .get(&call.conversation_id)
        .map_or(&[][..], Vec::as_slice);
    let floor = ReadFloor::new(list.iter().map(|(p, ptr)| (p.user, *ptr)));
    let limit = call.limit as usize;
    let more = rows.len() > limit;
    let mut messages = Vec::with_capacity(rows.len().min(limit));
    for row in rows.iter().take(limit) {
        let sender = super::user_from(row, "sender_type", "sender_id")?;
        let id: i64 = row.try_get("id")?;
        messages.push(message_from(
            row,
            profile_in(list, sender),
            floor.is_read(sender, id),
        )?);
    }
    let next_cursor = if more {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    Ok(MessagePage {
        messages,
        next_cursor,
    })
}

/// The grouped `history` of one store (`sql`: [`history_sql`] with its collation).
pub(super) fn histories(
    io: &crate::group::StoreThread,
    pool: sqlx::PgPool,
    profiles: Arc<ProfileCache>,
    sql: Arc<str>,
) -> GroupCall<HistoryCall, MessagePage> {
    crate::group::group(io, pool, move |pool, calls: Vec<HistoryCall>| {
        let (profiles, sql) = (profiles.clone(), sql.clone());
        async move { history_batch(&pool, &profiles, &sql, &calls).await }
    })
}

pub(super) async fn unread_counts(
    store: &PgStore,
    user: UserKey,
) -> Result<UnreadCounts, StoreError> {
    let rows = sqlx::query(
        "SELECT p.conversation_id, count(*) AS unread
         FROM participants p
         JOIN messages m ON m.conversation_id = p.conversation_id AND m.id > p.last_read_message_id
              AND NOT (m.sender_type = p.user_type AND m.sender_id = p.user_id)
         WHERE p.user_type = $1 AND p.user_id = $2 AND NOT p.hidden
         GROUP BY p.conversation_id ORDER BY p.conversation_id",
    )
    .bind(user.user_type.code())
    .bind(user.id)
    .fetch_all(&store.pool)
    .await?;
    let mut out = UnreadCounts {
        total: 0,
        conversations: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let n: i64 = row.try_get("unread")?;
        out.total += n;
        out.conversations.push((row.try_get("conversation_id")?, n));
    }
    Ok(out)
}

pub(super) async fn hide(
    store: &PgStore,
    conversation_id: i64,
    user: UserKey,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "WITH u AS (UPDATE participants SET hidden = true
                    WHERE conversation_id = $1 AND user_type = $2 AND user_id = $3 RETURNING 1)
         SELECT (SELECT count(*) FROM u) AS updated, EXISTS (SELECT 1 FROM conversations WHERE id = $1) AS found",
    )
    .bind(conversation_id)
    .bind(user.user_type.code())
    .bind(user.id)
    .fetch_one(&store.pool)
    .await?;
    if row.try_get::<i64, _>("updated")? > 0 {
        Ok(())
    } else if row.try_get::<bool, _>("found")? {
        Err(StoreError::Forbidden)
    } else {
        Err(StoreError::NotFound)
    }
}

/// The collation clause for case-insensitive search. `lower()` follows the database's
/// `LC_CTYPE`, which folds ASCII only under `C` / `POSIX`; there, the ICU root collation folds
/// every script (`Ärger` finds `ärger`). Empty when the database folds by itself, or when it
/// cannot and has no ICU (a warning is logged).
pub(super) async fn search_collation(pool: &sqlx::PgPool) -> Result<&'static str, StoreError> {
    let (folds, icu): (bool, bool) = sqlx::query_as(
        "SELECT lower('ÄÖÜ') = 'äöü', EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')",
    )
    .fetch_one(pool)
    .await?;
    Ok(match (folds, icu) {
        (true, _) => "",
        (false, true) => r#" COLLATE "und-x-icu""#,
        (false, false) => {
            tracing::warn!(
                "the database's LC_CTYPE folds ASCII only and PostgreSQL has no ICU: \
                 message search is case-insensitive for ASCII letters only"
            );
            ""
        }
    })
}
