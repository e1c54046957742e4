//! `message:read`: mark a conversation read up to a message (or the newest), answer
//! `message:read:success`, broadcast `message:read` to the room except the reader.
//!
//! Both frames carry the reader's place in the conversation ([`Position::Latest`]: the reader's
//! read pointer): with connection state recovery a socket's offset names the highest pointer of
//! each reader it was told about (the reader's own reply included, so its own reads are never
//! sent back to it), and a recovery sends the current pointer of each reader above that
//! ([`receipt`], `app/recovery.rs`).

use serde::Serialize;

use crate::conversation::error_reply;
use crate::payload::ReadRequest;
use crate::{Effect, Effects, Event, UserJson, emit_ack, event_frame, json, telemetry};
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::{Position, TextFrame};
use chatwire_store::{Store, UserKey};

/// `message:read {conversationId, messageId?}`.
pub(crate) async fn read(ev: &Event<'_>, payload: &Value) -> Effects {
    let req = match ReadRequest::parse(payload) {
        Ok(r) => r,
        Err(e) => return error_reply(payload, &e, ev.ack),
    };
    let conv = req.conversation_id;
    if let Err(e) = ev.chat.check_participant(conv, ev.user).await {
        return error_reply(payload, &e, ev.ack);
    }
    let message_id = match ev
        .chat
        .store()
        .mark_read(conv, ev.user, req.message_id)
        .await
    {
        Ok(id) => id,
        Err(e) => return error_reply(payload, &e.into(), ev.ack),
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Success {
        conversation_id: i64,
        message_id: i64,
    }
    let body = json(&Success {
        conversation_id: conv,
        message_id,
    });
    let mut fx = Effects::new();
    let success = event_frame("message:read:success", &body);
    fx.push(Effect::Emit(match position(conv, message_id, ev.user) {
        Some(at) => success.at(at),
        None => success,
    }));
    if let Some(id) = ev.ack {
        fx.push(Effect::Emit(emit_ack(id, &body)));
    }
    telemetry::count_event(telemetry::EVENTS_OUT, "message:read:success");
    fx.push(Effect::Broadcast {
        conversation_id: conv,
        frame: receipt(conv, message_id, ev.user),
    });
    fx
}

/// `message:read {conversationId, messageId, readBy}`: `reader` has read `conversation_id` up to
/// `message_id` (the live broadcast, over sockets or REST, and what a recovery replays).
pub fn receipt(conversation_id: i64, message_id: i64, reader: UserKey) -> TextFrame {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReadBy {
        conversation_id: i64,
        message_id: i64,
        read_by: UserJson,
    }
    let frame = event_frame(
        "message:read",
        &json(&ReadBy {
            conversation_id,
            message_id,
            read_by: reader.into(),
        }),
    );
    match position(conversation_id, message_id, reader) {
        Some(at) => frame.at(at),
        None => frame,
    }
}

/// A reader's place in a conversation: its pointer, keyed by [`reader_key`]. None for an empty
/// conversation (nothing read) or an id too large to key (the frame then goes unpositioned: a
/// recovery may send it again, never miss it).
fn position(conversation_id: i64, message_id: i64, reader: UserKey) -> Option<Position> {
    if message_id <= 0 {
        return None;
    }
    Some(Position::Latest {
        stream: conversation_id,
        key: reader_key(reader)?,
        seq: message_id,
    })
}

/// A user as one positive number (id and type), how recovery offsets name a reader
/// ([`UserKey::compact`]; the Redis adapter positions other nodes' receipts with it too).
pub fn reader_key(user: UserKey) -> Option<i64> {
    user.compact()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatwire_store::UserType;

    #[test]
    fn receipts_carry_the_readers_pointer_as_their_position() {
        let b = UserKey::new(UserType::Brand, 2);
        let f = receipt(7, 40, b);
        assert_eq!(
            String::from_utf8_lossy(f.as_bytes()),
            r#"42/chat,["message:read",{"conversationId":7,"messageId":40,"readBy":{"userId":2,"userType":"brand"}}]"#
        );
        assert_eq!(
            f.position(),
            Some(Position::Latest {
                stream: 7,
                key: 4,
                seq: 40
            })
        );
        assert_eq!(reader_key(UserKey::new(UserType::Influencer, 2)), Some(5));
        assert_eq!(receipt(7, 0, b).position(), None);
        assert_eq!(reader_key(UserKey::new(UserType::Brand, i64::MAX)), None);
    }
}
