//! The chat rules on their own: events in, effects out, on the memory store, with no server,
//! socket or runtime (futures are driven by a plain executor).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatwire_protocol::json::Value;
use chatwire_store::{AnyStore, MemoryStore, Store, UserKey, UserType};
use futures_executor::block_on;

use super::*;

fn brand(id: i64) -> UserKey {
    UserKey::new(UserType::Brand, id)
}

fn influencer(id: i64) -> UserKey {
    UserKey::new(UserType::Influencer, id)
}

/// Rules over a memory store holding a 1:1 between brand 1 and influencer 2; its id.
fn setup() -> (Chat, i64) {
    let store = Arc::new(AnyStore::Memory(MemoryStore::new()));
    let (conv, _) = block_on(store.create_direct(brand(1), influencer(2))).unwrap();
    let chat = Chat::new(
        store,
        ChatConfig {
            max_message_chars: 100,
            max_json_depth: 32,
        },
    );
    (chat, conv.id)
}

fn value(json: &str) -> Value {
    let mut bytes = json.as_bytes().to_vec();
    chatwire_protocol::json::parse(&mut bytes, 32).unwrap()
}

fn event(
    chat: &Chat,
    socket: &RefCell<ChatSocket>,
    name: &str,
    ack: Option<u64>,
    payload: &str,
) -> Effects {
    block_on(chat.on_event(socket, name, ack, &value(payload), true, Instant::now()))
}

fn text(frame: &TextFrame) -> String {
    String::from_utf8(frame.as_bytes().to_vec()).unwrap()
}

/// The frames emitted to the caller, as text.
fn emitted(fx: &Effects) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Emit(f) => Some(text(f)),
            _ => None,
        })
        .collect()
}

#[test]
fn join_answers_and_joins_the_room_once() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(brand(1)));
    let payload = format!(r#"{{"conversationId":{conv}}}"#);
    let fx = event(&chat, &socket, "conversation:join", Some(4), &payload);
    assert!(matches!(fx[0], Effect::Join { conversation_id } if conversation_id == conv));
    assert_eq!(
        emitted(&fx),
        vec![
            format!(
                r#"42/chat,["conversation:joined",{{"conversationId":{conv},"room":"conversation:{conv}"}}]"#
            ),
            format!(r#"43/chat,4[{{"conversationId":{conv},"room":"conversation:{conv}"}}]"#),
        ]
    );
    // A second join answers again but joins nothing.
    let fx = event(&chat, &socket, "conversation:join", None, &payload);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Join { .. })));
    assert_eq!(socket.borrow().rooms.as_slice(), &[conv]);
}

#[test]
fn join_refuses_a_stranger_with_conversation_error() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(brand(9)));
    let fx = event(
        &chat,
        &socket,
        "conversation:join",
        None,
        &format!(r#"{{"conversationId":{conv}}}"#),
    );
    assert_eq!(fx.len(), 1, "no join, one reply: {fx:?}");
    assert!(emitted(&fx)[0].contains(r#""conversation:error""#));
    assert!(emitted(&fx)[0].contains(r#""error":"forbidden""#));
    assert!(socket.borrow().rooms.is_empty());
}

#[test]
fn send_stores_with_participants_and_stops_typing_first() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(brand(1)));
    event(
        &chat,
        &socket,
        "conversation:join",
        None,
        &format!(r#"{{"conversationId":{conv}}}"#),
    );
    let typing = event(
        &chat,
        &socket,
        "typing:start",
        None,
        &format!(r#"{{"conversationId":{conv}}}"#),
    );
    assert!(matches!(typing[0], Effect::Broadcast { .. }));
    assert!(matches!(typing[1], Effect::TypingTimer { .. }));
    let fx = event(
        &chat,
        &socket,
        "message:send",
        Some(7),
        &format!(r#"{{"conversationId":{conv},"content":"hi","tempId":"t1"}}"#),
    );
    assert_eq!(fx.len(), 2, "{fx:?}");
    match &fx[0] {
        Effect::Broadcast { frame, .. } => assert!(text(frame).contains("typing:stop")),
        other => panic!("typing:stop first, got {other:?}"),
    }
    match &fx[1] {
        Effect::Store {
            message,
            participants,
            ack,
        } => {
            assert_eq!(message.content, "hi");
            assert_eq!(message.sender, brand(1));
            assert_eq!(*ack, Some(7));
            let mut p = participants.to_vec();
            p.sort();
            assert_eq!(p, vec![brand(1), influencer(2)]);
        }
        other => panic!("a store effect, got {other:?}"),
    }
    assert!(socket.borrow().typing.is_empty());
}

#[test]
fn send_errors_carry_the_temp_id() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(brand(1)));
    let empty = event(
        &chat,
        &socket,
        "message:send",
        None,
        &format!(r#"{{"conversationId":{conv},"content":"","tempId":5}}"#),
    );
    let out = emitted(&empty);
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with(r#"42/chat,["message:error",{"error":"bad_request""#),
        "{out:?}"
    );
    assert!(out[0].ends_with(r#""tempId":5}]"#), "{out:?}");
    let limited = block_on(chat.on_event(
        &socket,
        "message:send",
        None,
        &value(&format!(
            r#"{{"conversationId":{conv},"content":"x","tempId":"a"}}"#
        )),
        false,
        Instant::now(),
    ));
    let out = emitted(&limited);
    assert!(out[0].contains(r#""error":"rate_limited""#) && out[0].contains(r#""tempId":"a""#));
}

#[test]
fn typing_only_from_the_room_and_stops_by_itself() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(brand(1)));
    let payload = format!(r#"{{"conversationId":{conv}}}"#);
    assert!(
        event(&chat, &socket, "typing:start", None, &payload).is_empty(),
        "not in the room"
    );
    event(&chat, &socket, "conversation:join", None, &payload);
    let t0 = Instant::now();
    let fx = block_on(chat.on_event(&socket, "typing:start", None, &value(&payload), true, t0));
    let Some(Effect::TypingTimer { at, .. }) = fx.get(1) else {
        panic!("a timer: {fx:?}");
    };
    assert_eq!(*at, t0 + typing::TYPING_TIMEOUT);
    // A later start moves the deadline: the first timer finds it moved.
    let t1 = t0 + Duration::from_secs(3);
    let again = block_on(chat.on_event(&socket, "typing:start", None, &value(&payload), true, t1));
    assert_eq!(again.len(), 1, "a repeated start arms no second timer");
    assert!(
        matches!(Chat::typing_due(&socket, conv, *at), TypingDue::Later(next) if next == t1 + typing::TYPING_TIMEOUT)
    );
    match Chat::typing_due(&socket, conv, t1 + typing::TYPING_TIMEOUT) {
        TypingDue::Stopped(Effect::Broadcast { frame, .. }) => {
            assert!(text(&frame).contains("typing:stop"))
        }
        other => panic!("stopped, got {other:?}"),
    }
    assert!(matches!(
        Chat::typing_due(&socket, conv, t1 + typing::TYPING_TIMEOUT),
        TypingDue::Done
    ));
}

#[test]
fn typing_stop_broadcasts_only_while_typing() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(brand(1)));
    let payload = format!(r#"{{"conversationId":{conv}}}"#);
    event(&chat, &socket, "conversation:join", None, &payload);
    let stops = |fx: &Effects| {
        fx.iter()
            .filter(|e| matches!(e, Effect::Broadcast { frame, .. } if text(frame).contains("typing:stop")))
            .count()
    };
    // Not typing yet: a stop says nothing.
    assert!(event(&chat, &socket, "typing:stop", None, &payload).is_empty());
    // The guide's send: start, send (the server stops typing), then the client's own stop.
    event(&chat, &socket, "typing:start", None, &payload);
    let send = event(
        &chat,
        &socket,
        "message:send",
        None,
        &format!(r#"{{"conversationId":{conv},"content":"hi"}}"#),
    );
    assert_eq!(stops(&send), 1, "{send:?}");
    let stop = event(&chat, &socket, "typing:stop", None, &payload);
    assert!(stop.is_empty(), "a second typing:stop: {stop:?}");
    // Repeated starts are still broadcast; one stop ends them, the next says nothing.
    for _ in 0..2 {
        let start = event(&chat, &socket, "typing:start", None, &payload);
        assert!(
            matches!(&start[0], Effect::Broadcast { frame, .. } if text(frame).contains("typing:start"))
        );
    }
    assert_eq!(
        stops(&event(&chat, &socket, "typing:stop", None, &payload)),
        1
    );
    assert!(event(&chat, &socket, "typing:stop", None, &payload).is_empty());
}

#[test]
fn disconnect_stops_typing_and_leaves_every_room() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(influencer(2)));
    let payload = format!(r#"{{"conversationId":{conv}}}"#);
    event(&chat, &socket, "conversation:join", None, &payload);
    event(&chat, &socket, "typing:start", None, &payload);
    let fx = Chat::disconnected(&socket);
    assert_eq!(fx.len(), 2);
    assert!(
        matches!(&fx[0], Effect::Broadcast { frame, .. } if text(frame).contains("typing:stop"))
    );
    assert!(matches!(fx[1], Effect::Leave { conversation_id } if conversation_id == conv));
    assert!(socket.borrow().rooms.is_empty() && socket.borrow().typing.is_empty());
}

#[test]
fn read_answers_and_broadcasts_the_receipt() {
    let (chat, conv) = setup();
    let socket = RefCell::new(ChatSocket::new(influencer(2)));
    let fx = event(
        &chat,
        &socket,
        "message:read",
        None,
        &format!(r#"{{"conversationId":{conv}}}"#),
    );
    assert!(emitted(&fx)[0].contains("message:read:success"), "{fx:?}");
    match fx.last() {
        Some(Effect::Broadcast {
            frame,
            conversation_id,
        }) => {
            assert_eq!(*conversation_id, conv);
            assert!(text(frame).contains(r#""readBy":{"userId":2,"userType":"influencer"}"#));
        }
        other => panic!("a receipt broadcast, got {other:?}"),
    }
}

#[test]
fn check_online_answers_strangers_offline_without_asking() {
    let (chat, _) = setup();
    let stranger = RefCell::new(ChatSocket::new(brand(7)));
    let fx = event(
        &chat,
        &stranger,
        "user:check:online",
        Some(2),
        r#"{"userId":2,"userType":"influencer"}"#,
    );
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::CheckOnline { .. })),
        "{fx:?}"
    );
    assert_eq!(
        emitted(&fx),
        vec![
            r#"42/chat,["user:online:status",{"userId":2,"userType":"influencer","isOnline":false}]"#.to_owned(),
            r#"43/chat,2[{"userId":2,"userType":"influencer","isOnline":false}]"#.to_owned(),
        ]
    );
    // Asking about yourself is fine.
    let fx = event(
        &chat,
        &stranger,
        "user:check:online",
        None,
        r#"{"userId":7,"userType":"brand"}"#,
    );
    assert!(matches!(fx[0], Effect::CheckOnline { .. }));
}

#[test]
fn check_online_asks_the_cluster_and_unknown_events_get_an_error() {
    let (chat, _) = setup();
    let socket = RefCell::new(ChatSocket::new(brand(1)));
    let fx = event(
        &chat,
        &socket,
        "user:check:online",
        Some(1),
        r#"{"userId":2,"userType":"influencer"}"#,
    );
    assert!(matches!(fx[0], Effect::CheckOnline { user, ack: Some(1) } if user == influencer(2)));
    let status = emitted(&presence::status(influencer(2), true, None));
    assert_eq!(
        status,
        vec![
            r#"42/chat,["user:online:status",{"userId":2,"userType":"influencer","isOnline":true}]"#
        ]
    );
    let fx = event(&chat, &socket, "nope", None, "{}");
    assert!(
        emitted(&fx)[0].starts_with(r#"42/chat,["error",{"event":"nope","error":"bad_request""#)
    );
}

#[test]
fn committed_frames_are_built_once_in_contract_shape() {
    let (chat, conv) = setup();
    let msg = chatwire_store::NewMessage {
        conversation_id: conv,
        sender: brand(1),
        message_type: chatwire_store::MessageType::Text,
        content: "hello".into(),
        attachment_url: None,
        attachment_name: None,
        temp_id: Some(chatwire_store::TempId::Int(3)),
    };
    let stored = block_on(chat.store().insert_batch(&[msg]))
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    let frames = message::committed(&stored.message, Some(9));
    let new = text(&frames.new_frame);
    assert!(new.starts_with(r#"42/chat,["message:new",{"id":"#), "{new}");
    let note = text(&frames.notification.frame());
    assert!(note.starts_with(&format!(
        r#"42/chat,["message:notification",{{"conversationId":{conv},"message":{{"#
    )));
    assert_eq!(frames.sent.len(), 2, "event and ack");
    assert!(
        text(&frames.sent[0]).starts_with(r#"42/chat,["message:sent",{"tempId":3,"message":{"#)
    );
    assert!(text(&frames.sent[1]).starts_with(r#"43/chat,9[{"tempId":3,"#));
}

#[test]
fn a_conversation_room_is_spelled_alike_on_the_stack_and_on_the_heap() {
    for id in [0, 7, 42, 1_000_000, i64::MAX, -1, i64::MIN] {
        let want = format!("conversation:{id}");
        assert_eq!(&*room_name(id), want);
        assert_eq!(with_room_name(id, |room| room.to_owned()), want);
    }
}
