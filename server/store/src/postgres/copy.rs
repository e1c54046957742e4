//! The fast batch insert: binary `COPY` straight into `messages`, in one transaction.
//!
//! Per batch: `BEGIN`; one statement checks every sender's participation, draws the ids from the
//! sequence in input order (only when the sender may write), un-hides the batch's conversations and
//! reads the transaction time (the rows' `created_at`); then `COPY messages FROM STDIN (FORMAT
//! binary)` with rows encoded here; `COMMIT`. Indexes are maintained by the COPY without the
//! speculative-insertion work of `ON CONFLICT` and without a CTE, a join or `RETURNING`: the
//! server spends about a third of the time per row that the single `INSERT ... ON CONFLICT`
//! statement does.
//!
//! The idempotency index still decides: a retried send (its key already stored) makes the COPY
//! fail with a unique violation, the transaction rolls back (nothing of it stays, a few sequence
//! values are skipped) and the caller runs the `ON CONFLICT` statement, which returns the stored
//! row. A sender that is not a participant does the same, so refusals keep their exact outcome.

use std::sync::LazyLock;

use sqlx::postgres::PgPool;

use crate::{NewMessage, StoreError};

/// Checks participation, draws ids (input order), un-hides, advances the conversations'
/// `last_message_id` and reads each id's predecessor, reads the commit time in ms. Takes the
/// conversations' row locks first, with [`super::insert::LOCK_CONVERSATIONS`] (held until the
/// COMMIT after the COPY).
static PREPARE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {lock},
    unhidden AS (
        UPDATE participants p SET hidden = false
        WHERE p.hidden AND p.conversation_id = ANY($1) RETURNING 1
    ),
    drawn AS (
        SELECT u.ord, u.conversation_id, CASE WHEN EXISTS (
                SELECT 1 FROM participants p WHERE p.conversation_id = u.conversation_id
                  AND p.user_type = u.sender_type AND p.user_id = u.sender_id)
            THEN nextval('messages_id_seq') END AS id
        FROM UNNEST($1::int8[], $2::int2[], $3::int8[])
             WITH ORDINALITY AS u(conversation_id, sender_type, sender_id, ord) CROSS JOIN locked
    ),
    {chained},
    {advanced}
    SELECT array_agg(d.id ORDER BY d.ord) AS ids, array_agg(ch.prev ORDER BY d.ord) AS prevs,
           (extract(epoch FROM now()::timestamptz(3)) * 1000)::int8 AS created_ms
    FROM drawn d LEFT JOIN chained ch ON ch.ord = d.ord",
        lock = super::insert::LOCK_CONVERSATIONS,
        chained = super::insert::chain("drawn", "r.ord,"),
        advanced = super::insert::advance_last("drawn"),
    )
});

/// The COPY statement; the column order is the one [`encode`] writes.
const COPY_SQL: &str = "COPY messages (id, conversation_id, sender_type, sender_id, message_type, \
     content, attachment_url, attachment_name, temp_id_key) FROM STDIN (FORMAT binary)";

/// Fields per row in [`COPY_SQL`].
const FIELDS: i16 = 9;

/// One row to copy: the input and its idempotency key.
pub(super) type CopyRow<'a> = (&'a NewMessage, Option<&'a str>);

/// Inserts `rows` with COPY in one transaction (see the module doc): the ids and their
/// predecessors (input order) and the creation time (Unix ms), or None when nothing was stored (a row is a retry, a sender may
/// not write, or the database refused a value): the `ON CONFLICT` statement decides then.
pub(super) async fn copy_batch(
    pool: &PgPool,
    rows: &[CopyRow<'_>],
) -> Result<Option<super::Drawn>, StoreError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut tx = pool.begin().await?;
    let conversations: Vec<i64> = rows.iter().map(|(m, _)| m.conversation_id).collect();
    let types: Vec<i16> = rows
        .iter()
        .map(|(m, _)| m.sender.user_type.code())
        .collect();
    let senders: Vec<i64> = rows.iter().map(|(m, _)| m.sender.id).collect();
    let (ids, prevs, created_ms): super::DrawnRow =
        sqlx::query_as(sqlx::AssertSqlSafe(PREPARE_SQL.as_str()))
            .bind(&conversations)
            .bind(&types)
            .bind(&senders)
            .fetch_one(&mut *tx)
            .await?;
    let ids: Option<Vec<i64>> = ids.into_iter().collect();
    let Some(ids) = ids.filter(|ids| ids.len() == rows.len()) else {
        // A sender is not a participant (or the conversation does not exist).
        tx.rollback().await?;
        return Ok(None);
    };
    let Some(data) = encode(rows, &ids) else {
        tx.rollback().await?;
        return Ok(None);
    };
    let copied = async {
        let mut copy = tx.copy_in_raw(COPY_SQL).await?;
        copy.send(data).await?;
        copy.finish().await
    }
    .await;
    match copied {
        Ok(n) if n == rows.len() as u64 => {}
        Ok(_) => {
            tx.rollback().await?;
            return Ok(None);
        }
        // A retried key (23505) or a value the database refuses: nothing of this transaction
        // stays; the statement path reports each row.
        Err(sqlx::Error::Database(_)) => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(Some(super::Drawn {
        ids: ids.into_iter().map(Some).collect(),
        prevs,
        created_ms,
    }))
}

/// Encodes `rows` in PostgreSQL's binary COPY format; `None` when a value does not fit its
/// length field (the statement path then reports it).
fn encode(rows: &[CopyRow<'_>], ids: &[i64]) -> Option<Vec<u8>> {
    let size: usize = rows
        .iter()
        .map(|(m, key)| {
            2 + 9 * 4
                + 8 * 3
                + 2
                + m.message_type.as_str().len()
                + m.content.len()
                + m.attachment_url.as_deref().map_or(0, str::len)
                + m.attachment_name.as_deref().map_or(0, str::len)
                + key.map_or(0, str::len)
        })
        .sum();
    let mut out = Vec::with_capacity(19 + size + 2);
    // Signature, flags, header extension length.
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for ((m, key), id) in rows.iter().zip(ids) {
        out.extend_from_slice(&FIELDS.to_be_bytes());
        int8(&mut out, *id);
        int8(&mut out, m.conversation_id);
        out.extend_from_slice(&2i32.to_be_bytes());
        out.extend_from_slice(&m.sender.user_type.code().to_be_bytes());
        int8(&mut out, m.sender.id);
        text(&mut out, Some(m.message_type.as_str()))?;
        text(&mut out, Some(&m.content))?;
        text(&mut out, m.attachment_url.as_deref())?;
        text(&mut out, m.attachment_name.as_deref())?;
        text(&mut out, *key)?;
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Some(out)
}

fn int8(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// A `text` field (UTF-8 bytes) or NULL.
fn text(out: &mut Vec<u8>, v: Option<&str>) -> Option<()> {
    match v {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(s) => {
            out.extend_from_slice(&i32::try_from(s.len()).ok()?.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{MessageType, UserKey, UserType};

    #[test]
    fn binary_copy_layout() {
        let m = NewMessage {
            conversation_id: 7,
            sender: UserKey::new(UserType::Influencer, 9),
            message_type: MessageType::Text,
            content: "hi".into(),
            attachment_url: None,
            attachment_name: None,
            temp_id: None,
        };
        let data = encode(&[(&m, Some("s:1"))], &[42]).unwrap();
        assert_eq!(&data[..11], b"PGCOPY\n\xff\r\n\0");
        let row = &data[19..];
        assert_eq!(&row[..2], &9i16.to_be_bytes());
        assert_eq!(&row[2..6], &8i32.to_be_bytes());
        assert_eq!(&row[6..14], &42i64.to_be_bytes());
        assert_eq!(&row[30..32], &2i16.to_be_bytes());
        assert_eq!(&data[data.len() - 2..], &(-1i16).to_be_bytes());
        // Two NULL attachments then the 3-byte key.
        let tail = &data[data.len() - 2 - 7 - 8..data.len() - 2];
        assert_eq!(&tail[..8], &[0xff; 8]);
        assert_eq!(&tail[8..12], &3i32.to_be_bytes());
        assert_eq!(&tail[12..], b"s:1");
    }
}
