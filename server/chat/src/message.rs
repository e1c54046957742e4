//! `message:send` and what follows its commit: the sender's `message:sent` / `message:error`,
//! and the frames of a committed message (`message:new` for the room, `message:notification`
//! for participants with no socket in it), built once, on whichever thread committed it.

use serde::Serialize;
use smallvec::SmallVec;

use crate::error::{ChatError, Code};
use crate::payload::SendPayload;
use crate::validate::{InvalidMessage, MessageLimits, check_send, parse_send};
use crate::{Effect, Effects, Event, emit_ack, event_frame, json, reply, telemetry, typing};
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::{Position, RawEvent, TextFrame};
use chatwire_store::{Message, NewMessage, StoreError, TempId};

/// `message:send` with its payload as a value.
pub(crate) async fn send(ev: &Event<'_>, payload: &Value, within_rate: bool) -> Effects {
    let limits = MessageLimits::default().with_max_chars(ev.chat.config().max_message_chars);
    submit(ev, parse_send(payload, ev.user, &limits), within_rate).await
}

/// `message:send` from the fast decode path: the payload is deserialized from the frame's bytes
/// into [`SendPayload`]; anything that does not fit (wrong types, invalid ids, not an object)
/// is read as a generic value and goes through [`parse_send`], so every answer is the same.
pub(crate) async fn send_raw(ev: &Event<'_>, event: &RawEvent, within_rate: bool) -> Effects {
    let limits = MessageLimits::default().with_max_chars(ev.chat.config().max_message_chars);
    let fields = event
        .arg_bytes(0)
        .filter(|b| b.first() == Some(&b'{'))
        .and_then(|_| event.arg::<SendPayload>(0).ok())
        .and_then(|p| p.into_fields(&limits));
    let parsed = match fields {
        Some(fields) => check_send(fields, ev.user, &limits),
        None => {
            let payload = event
                .arg_value(0, ev.chat.config().max_json_depth)
                .unwrap_or(Value::Static(simd_json::StaticNode::Null));
            parse_send(&payload, ev.user, &limits)
        }
    };
    submit(ev, parsed, within_rate).await
}

/// The rest of a send once its payload is read: validity, rate limit, participant check, then
/// typing stops and the message goes to storage.
async fn submit(
    ev: &Event<'_>,
    parsed: Result<NewMessage, InvalidMessage>,
    within_rate: bool,
) -> Effects {
    let msg = match parsed {
        Ok(m) => m,
        Err(invalid) => return error(&invalid.error.into(), invalid.temp_id.as_ref(), ev.ack),
    };
    if !within_rate {
        let e = ChatError::new(Code::RateLimited, "too many messages, slow down");
        return error(&e, msg.temp_id.as_ref(), ev.ack);
    }
    let participants = match ev
        .chat
        .check_participant(msg.conversation_id, ev.user)
        .await
    {
        Ok(p) => p,
        Err(e) => return error(&e, msg.temp_id.as_ref(), ev.ack),
    };
    let mut fx = Effects::new();
    if let Some(stop) = typing::stop_if_typing(ev.socket, msg.conversation_id) {
        fx.push(stop);
    }
    fx.push(Effect::Store {
        message: Box::new(msg),
        participants,
        ack: ev.ack,
    });
    fx
}

/// `message:error {error, message, tempId}` (+ ack) to the sender.
pub fn error(err: &ChatError, temp_id: Option<&TempId>, ack: Option<u64>) -> Effects {
    telemetry::count_error(err.code);
    reply("message:error", &error_payload(err, temp_id), ack)
}

/// The `message:error` payload.
fn error_payload(err: &ChatError, temp_id: Option<&TempId>) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SendError<'a> {
        error: &'static str,
        message: &'a str,
        temp_id: Option<&'a TempId>,
    }
    json(&SendError {
        error: err.code.as_str(),
        message: &err.message,
        temp_id,
    })
}

/// The frames of a committed message, encoded once for every recipient.
#[derive(Debug, Clone)]
pub struct CommittedFrames {
    /// `message:new`, for the room except the sending socket.
    pub new_frame: TextFrame,
    /// `message:notification`, for participants not in the room, encoded only if there are any.
    pub notification: Notification,
    /// The sender's `message:sent {tempId, message}` and, with an ack id, its ack.
    pub sent: SmallVec<[TextFrame; 2]>,
}

/// What `message:notification {conversationId, message}` of a committed message is made of.
/// Most messages notify nobody (every 1:1 message between two users in its room), so the frame
/// is encoded by [`Notification::frame`] when someone is to get it, not with the others.
#[derive(Debug, Clone)]
pub struct Notification {
    conversation_id: i64,
    at: Position,
    /// The message object, as in `message:new`.
    body: Vec<u8>,
}

impl Notification {
    /// The `message:notification` frame.
    pub fn frame(&self) -> TextFrame {
        let mut note = Vec::with_capacity(self.body.len() + 40);
        note.extend_from_slice(b"{\"conversationId\":");
        note.extend_from_slice(itoa::Buffer::new().format(self.conversation_id).as_bytes());
        note.extend_from_slice(b",\"message\":");
        note.extend_from_slice(&self.body);
        note.push(b'}');
        event_frame("message:notification", &note).at(self.at)
    }
}

/// Frames for a committed message; `duplicate` (a retried send) gets only the sender's answer.
pub fn committed(message: &Message, ack: Option<u64>) -> CommittedFrames {
    let (new_frame, notification) = new_and_notification(message);
    let (at, body) = (notification.at, &notification.body);
    let mut sent = Vec::with_capacity(body.len() + 32);
    sent.extend_from_slice(b"{\"tempId\":");
    match &message.temp_id {
        Some(t) => t.write_json(&mut sent),
        None => sent.extend_from_slice(b"null"),
    }
    sent.extend_from_slice(b",\"message\":");
    sent.extend_from_slice(body);
    sent.push(b'}');
    let mut sent_frames = SmallVec::new();
    sent_frames.push(event_frame("message:sent", &sent).at(at));
    if let Some(id) = ack {
        sent_frames.push(emit_ack(id, &sent));
    }
    telemetry::count_event(telemetry::EVENTS_OUT, "message:sent");
    CommittedFrames {
        new_frame,
        notification,
        sent: sent_frames,
    }
}

/// `message:new` and `message:notification` of a stored message, as they went out live: what a
/// recovery replays.
pub fn replayed(message: &Message) -> (TextFrame, TextFrame) {
    let (new_frame, notification) = new_and_notification(message);
    (new_frame, notification.frame())
}

/// `message:new` of a stored message, and what its `message:notification` is made of. Each
/// frame is the event at the message's place in its conversation: a socket that gets it moves
/// its recovery offset there (the sender's reply too, so a recovery does not send the sender
/// its own message again).
fn new_and_notification(message: &Message) -> (TextFrame, Notification) {
    let mut body = Vec::with_capacity(384);
    message.write_json(&mut body);
    let at = Position::Event {
        stream: message.conversation_id,
        seq: message.id,
    };
    let new_frame = event_frame("message:new", &body).at(at);
    let notification = Notification {
        conversation_id: message.conversation_id,
        at,
        body,
    };
    (new_frame, notification)
}

/// The sender's `message:error` frames for a send the store could not commit: the store's
/// verdict when it refused the message, `unavailable` for anything transient.
pub fn failed(error: &StoreError, temp_id: Option<&TempId>, ack: Option<u64>) -> Vec<TextFrame> {
    let err = match error {
        StoreError::Forbidden
        | StoreError::NotFound
        | StoreError::BadRequest(_)
        | StoreError::TooLarge(_) => ChatError::from(error.clone()),
        _ => ChatError::new(Code::Unavailable, "storage unavailable, retry later"),
    };
    frames(self::error(&err, temp_id, ack))
}

/// `message:error` for a send the storage queue did not take.
pub fn busy(temp_id: Option<&TempId>, ack: Option<u64>) -> Vec<TextFrame> {
    let e = ChatError::new(Code::Unavailable, "storage busy, retry later");
    frames(error(&e, temp_id, ack))
}

/// The frames of a list of `Emit` effects.
fn frames(fx: Effects) -> Vec<TextFrame> {
    fx.into_iter()
        .filter_map(|e| match e {
            Effect::Emit(f) => Some(f),
            _ => None,
        })
        .collect()
}
