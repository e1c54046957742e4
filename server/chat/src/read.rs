//! `message:read`: mark a conversation read up to a message (or the newest), answer
//! `message:read:success`, broadcast `message:read` to the room except the reader.

use serde::Serialize;

use crate::conversation::error_reply;
use crate::payload::ReadRequest;
use crate::{Effect, Effects, Event, UserJson, event_frame, json, push_reply};
use chatwire_protocol::json::Value;
use chatwire_store::Store;

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
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReadBy {
        conversation_id: i64,
        message_id: i64,
        read_by: UserJson,
    }
    let mut fx = Effects::new();
    push_reply(
        &mut fx,
        "message:read:success",
        &json(&Success {
            conversation_id: conv,
            message_id,
        }),
        ev.ack,
    );
    fx.push(Effect::Broadcast {
        conversation_id: conv,
        frame: event_frame(
            "message:read",
            &json(&ReadBy {
                conversation_id: conv,
                message_id,
                read_by: ev.user.into(),
            }),
        ),
    });
    fx
}
