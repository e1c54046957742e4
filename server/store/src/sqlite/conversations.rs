//! SQLite REST queries and read pointers: create 1:1 and group conversations, lists, history,
//! unread counts, hiding. Writes run on the single write connection, in a transaction.

use sqlx::{Row, SqliteConnection};

use super::{MESSAGE_COLUMNS, SqliteStore, floor_of, members, message_from, profile_in};
use crate::direct_key;
use crate::{
    Conversation, ConversationCursor, ConversationKind, ConversationPage, HistoryQuery,
    MessagePage, Participant, Profile, StoreError, UnreadCounts, UserKey,
};

async fn ensure_users(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    users: &[UserKey],
) -> Result<(), StoreError> {
    let now = store.now_ms();
    let rows: Vec<(i16, i64, String)> = users
        .iter()
        .map(|u| (u.user_type.code(), u.id, Profile::default_for(*u).username))
        .collect();
    // One statement for every user (a 1000-member group is one round trip, not 1000).
    // `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint.
    sqlx::query(
        "INSERT INTO users (user_type, id, username, created_at)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), ?
         FROM json_each(?) WHERE true
         ON CONFLICT (user_type, id) DO NOTHING",
    )
    .bind(now)
    .bind(json_rows(&rows)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows as a JSON array of arrays, for `json_each` (SQLite has no array parameters).
fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Internal(format!("rows to JSON: {e}")))
}

async fn insert_conversation(
    store: &SqliteStore,
    conn: &mut SqliteConnection,
    kind: ConversationKind,
    title: Option<&str>,
    direct: Option<&str>,
    users: &[UserKey],
) -> Result<Option<i64>, StoreError> {
    let now = store.now_ms();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO conversations (type, title, direct_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (direct_key) DO NOTHING RETURNING id",
    )
    .bind(kind.as_str())
    .bind(title)
    .bind(direct)
    .bind(now)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = id {
        let rows: Vec<(i16, i64)> = users.iter().map(|u| (u.user_type.code(), u.id)).collect();
        sqlx::query(
            "INSERT INTO participants (conversation_id, user_type, user_id)
             SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)",
        )
        .bind(id)
        .bind(json_rows(&rows)?)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

pub(super) async fn create_direct(
    store: &SqliteStore,
    caller: UserKey,
    other: UserKey,
) -> Result<(Conversation, bool), StoreError> {
    crate::check_direct_pair(caller, other)?;
    let key = direct_key(caller, other);
    let users = [caller.min(other), caller.max(other)];
    let mut tx = store.write.begin().await?;
    ensure_users(store, &mut tx, &users).await?;
    let (id, created) = match insert_conversation(
        store,
        &mut tx,
        ConversationKind::Direct,
        None,
        Some(&key),
        &users,
    )
    .await?
    {
        Some(id) => (id, true),
        None => {
            let id: i64 = sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = ?")
                .bind(&key)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("UPDATE participants SET hidden = 0 WHERE conversation_id = ? AND user_type = ? AND user_id = ?")
                .bind(id)
                .bind(caller.user_type.code())
                .bind(caller.id)
                .execute(&mut *tx)
                .await?;
            (id, false)
        }
    };
    tx.commit().await?;
    let mut conn = store.read.acquire().await?;
    Ok((view(&mut conn, id, caller).await?, created))
}

pub(super) async fn create_group(
    store: &SqliteStore,
    caller: UserKey,
    members: &[UserKey],
    title: Option<String>,
    max_participants: usize,
) -> Result<Conversation, StoreError> {
    let users = crate::group_members(caller, members, max_participants)?;
    let mut tx = store.write.begin().await?;
    ensure_users(store, &mut tx, &users).await?;
    let id = insert_conversation(
        store,
        &mut tx,
        ConversationKind::Group,
        title.as_deref(),
        None,
        &users,
    )
    .await?
    .ok_or_else(|| StoreError::Internal("group insert returned no id".into()))?;
    tx.commit().await?;
    let mut conn = store.read.acquire().await?;
    view(&mut conn, id, caller).await
}

/// The viewer's view of one conversation (`NotFound` / `Forbidden` when it cannot see it).
async fn view(
    conn: &mut SqliteConnection,
    id: i64,
    viewer: UserKey,
) -> Result<Conversation, StoreError> {
    let row = sqlx::query("SELECT type, title, updated_at FROM conversations WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let list = members(&mut *conn, id).await?;
    let pointer = list
        .iter()
        .find(|(u, _, _)| *u == viewer)
        .map(|(_, _, p)| *p)
        .ok_or(StoreError::Forbidden)?;
    let floor = floor_of(&list);
    let unread: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE conversation_id = ? AND id > ? AND NOT (sender_type = ? AND sender_id = ?)",
    )
    .bind(id)
    .bind(pointer)
    .bind(viewer.user_type.code())
    .bind(viewer.id)
    .fetch_one(&mut *conn)
    .await?;
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT 1"
    );
    let last = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let last_message = match last {
        Some(r) => {
            let m = message_from(&r, std::sync::Arc::new(Profile::default_for(viewer)), false)?;
            let is_read = floor.is_read(m.sender, m.id);
            Some(crate::Message {
                sender_profile: profile_in(&list, m.sender),
                is_read,
                ..m
            })
        }
        None => None,
    };
    let kind: String = row.try_get("type")?;
    Ok(Conversation {
        id,
        kind: ConversationKind::parse(&kind)?,
        title: row.try_get("title")?,
        participants: list
            .into_iter()
            .map(|(user, profile, _)| Participant { user, profile })
            .collect(),
        last_message,
        unread_count: unread,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

pub(super) async fn list(
    store: &SqliteStore,
    user: UserKey,
    before: Option<ConversationCursor>,
    limit: u32,
) -> Result<ConversationPage, StoreError> {
    let limit = i64::from(limit.max(1));
    let mut conn = store.read.acquire().await?;
    let rows = sqlx::query(
        "SELECT c.id, c.updated_at FROM participants p JOIN conversations c ON c.id = p.conversation_id
         WHERE p.user_type = ? AND p.user_id = ? AND NOT p.hidden AND (c.updated_at, c.id) < (?, ?)
         ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
    )
    .bind(user.user_type.code())
    .bind(user.id)
    .bind(before.map_or(i64::MAX, |b| b.updated_at_ms))
    .bind(before.map_or(i64::MAX, |b| b.id))
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let mut page: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("updated_at")?)))
        .collect::<Result<_, StoreError>>()?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let mut conversations = Vec::with_capacity(page.len());
    for (id, _) in &page {
        conversations.push(view(&mut conn, *id, user).await?);
    }
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
    store: &SqliteStore,
    conversation_id: i64,
    viewer: UserKey,
    query: HistoryQuery<'_>,
) -> Result<MessagePage, StoreError> {
    let mut conn = store.read.acquire().await?;
    let list = members(&mut conn, conversation_id).await?;
    if list.is_empty() {
        return Err(StoreError::NotFound);
    }
    if !list.iter().any(|(u, _, _)| *u == viewer) {
        return Err(StoreError::Forbidden);
    }
    let floor = floor_of(&list);
    let limit = i64::from(query.limit.max(1));
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE conversation_id = ? AND id < ? AND (? IS NULL OR content REGEXP ?)
         ORDER BY id DESC LIMIT ?"
    );
    // Case-insensitive for every script (`Ärger` finds `ärger`): the search text as a literal
    // in a Unicode case-folding regular expression.
    let pattern = query.search.map(search_pattern);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(conversation_id)
        .bind(query.before.unwrap_or(i64::MAX))
        .bind(pattern.as_deref())
        .bind(pattern.as_deref())
        .bind(limit + 1)
        .fetch_all(&mut *conn)
        .await?;
    let more = rows.len() as i64 > limit;
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows.iter().take(limit as usize) {
        let m = message_from(
            row,
            std::sync::Arc::new(Profile::default_for(viewer)),
            false,
        )?;
        let is_read = floor.is_read(m.sender, m.id);
        messages.push(crate::Message {
            sender_profile: profile_in(&list, m.sender),
            is_read,
            ..m
        });
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

pub(super) async fn unread_counts(
    store: &SqliteStore,
    user: UserKey,
) -> Result<UnreadCounts, StoreError> {
    let rows = sqlx::query(
        "SELECT p.conversation_id, count(*) AS unread
         FROM participants p
         JOIN messages m ON m.conversation_id = p.conversation_id AND m.id > p.last_read_message_id
              AND NOT (m.sender_type = p.user_type AND m.sender_id = p.user_id)
         WHERE p.user_type = ? AND p.user_id = ? AND NOT p.hidden
         GROUP BY p.conversation_id ORDER BY p.conversation_id",
    )
    .bind(user.user_type.code())
    .bind(user.id)
    .fetch_all(&store.read)
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

/// Conversation exists and `user` is in it, else `NotFound` / `Forbidden`.
async fn check_member(
    conn: &mut SqliteConnection,
    conversation_id: i64,
    user: UserKey,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM conversations WHERE id = ?1) AS found,
                EXISTS (SELECT 1 FROM participants WHERE conversation_id = ?1 AND user_type = ?2 AND user_id = ?3)
                    AS member",
    )
    .bind(conversation_id)
    .bind(user.user_type.code())
    .bind(user.id)
    .fetch_one(&mut *conn)
    .await?;
    if !row.try_get::<bool, _>("found")? {
        Err(StoreError::NotFound)
    } else if !row.try_get::<bool, _>("member")? {
        Err(StoreError::Forbidden)
    } else {
        Ok(())
    }
}

pub(super) async fn hide(
    store: &SqliteStore,
    conversation_id: i64,
    user: UserKey,
) -> Result<(), StoreError> {
    let mut conn = store.write.acquire().await?;
    check_member(&mut conn, conversation_id, user).await?;
    sqlx::query("UPDATE participants SET hidden = 1 WHERE conversation_id = ? AND user_type = ? AND user_id = ?")
        .bind(conversation_id)
        .bind(user.user_type.code())
        .bind(user.id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn mark_read(
    store: &SqliteStore,
    conversation_id: i64,
    reader: UserKey,
    up_to: Option<i64>,
) -> Result<i64, StoreError> {
    let mut tx = store.write.begin().await?;
    check_member(&mut tx, conversation_id, reader).await?;
    let target: Option<i64> = match up_to {
        Some(id) => {
            sqlx::query_scalar("SELECT id FROM messages WHERE conversation_id = ? AND id = ?")
                .bind(conversation_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        }
        None => Some(
            sqlx::query_scalar(
                "SELECT COALESCE(MAX(id), 0) FROM messages WHERE conversation_id = ?",
            )
            .bind(conversation_id)
            .fetch_one(&mut *tx)
            .await?,
        ),
    };
    let target = target.ok_or(StoreError::NotFound)?;
    sqlx::query(
        "UPDATE participants SET last_read_message_id = ?
         WHERE conversation_id = ? AND user_type = ? AND user_id = ? AND last_read_message_id < ?",
    )
    .bind(target)
    .bind(conversation_id)
    .bind(reader.user_type.code())
    .bind(reader.id)
    .bind(target)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(target)
}

/// The `REGEXP` pattern for a `?q=` search: the text taken literally, Unicode case folded.
pub(crate) fn search_pattern(text: &str) -> String {
    format!("(?i){}", regex::escape(text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::UserType;

    #[tokio::test]
    async fn a_group_inserts_its_participants_in_one_statement() {
        let dir = std::env::temp_dir().join(format!("chatwire-group-{}", std::process::id()));
        let store = SqliteStore::open(&dir.join("chat.db"), true).await.unwrap();
        let caller = UserKey::new(UserType::Brand, 1);
        let members: Vec<UserKey> = (1..1000)
            .map(|i| UserKey::new(UserType::Influencer, i))
            .collect();
        let g = create_group(&store, caller, &members, Some("all".into()), 1000)
            .await
            .unwrap();
        assert_eq!(g.participants.len(), 1000);
        // changes(): rows changed by the write connection's last INSERT (the participants).
        let changed: i64 = sqlx::query_scalar("SELECT changes()")
            .fetch_one(&store.write)
            .await
            .unwrap();
        assert_eq!(changed, 1000, "every participant in one INSERT");
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&store.write)
            .await
            .unwrap();
        assert_eq!(users, 1000);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
