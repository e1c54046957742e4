//! The formats on the Redis channels, as `@socket.io/redis-adapter` 8.3 writes them (msgpack
//! through `rmp-serde`/`rmpv`, JSON through `serde_json`), plus chatwire's own node-to-node
//! messages (presence, notifications) on a channel no Socket.IO adapter listens to.
//!
//! Nothing here encodes a Socket.IO packet: incoming events become [`Packet`]s that the protocol
//! crate encodes, and outgoing frames are read back with its [`RawEvent`] decoder.

use bytes::Bytes;
use chatwire_protocol::socket::emit;
use chatwire_protocol::socket::packet::Packet;
use chatwire_protocol::socket::raw::RawEvent;
use chatwire_protocol::socket::{Position, TextFrame};
use chatwire_store::{UserKey, UserType};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Nesting accepted in anything decoded from Redis (msgpack or JSON).
pub const MAX_DEPTH: usize = 32;

/// Why an incoming message was dropped (the `reason` label of `chatwire_redis_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Larger than the configured limit.
    Oversize,
    /// Not msgpack/JSON, or not the expected shape.
    Malformed,
    /// A type or packet this node does not handle (binary payloads, unknown request types).
    Unsupported,
}

impl Drop {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Drop::Oversize => "oversize",
            Drop::Malformed => "malformed",
            Drop::Unsupported => "unsupported",
        }
    }
}

/// Broadcast options as the adapter publishes them.
#[derive(Debug, Default, Serialize)]
pub struct Opts<'a> {
    /// Target rooms (empty = every socket of the namespace).
    pub rooms: &'a [&'a str],
    /// Rooms whose sockets are left out.
    pub except: &'a [&'a str],
    /// Flags (`volatile`, `compress`, `timeout`, ...): chatwire sets none of Socket.IO's, only
    /// its own [`Flags::prev`].
    pub flags: Flags,
}

/// Broadcast flags (an empty map on the wire when none is set).
///
/// `@socket.io/redis-adapter` 8.3 hands a received `opts` to `socket.io-adapter`'s
/// `Adapter::broadcast`, which reads only `flags.volatile` and `flags.compress` (and its
/// session-aware variant `flags.volatile`); the cluster adapter reads `local` and `timeout`.
/// Any other key is ignored by Node nodes, so chatwire's own rides here.
#[derive(Debug, Default, Serialize)]
pub struct Flags {
    /// A committed message's conversation's previous id (see `chatwire_store::Stored::prev`),
    /// for the receiving room owners' id order (`crate::order`).
    #[serde(rename = "chatwirePrev", skip_serializing_if = "Option::is_none")]
    pub prev: Option<i64>,
}

/// The key of [`Flags::prev`] on the wire.
pub const PREV_FLAG: &str = "chatwirePrev";

/// The packet part of a published broadcast.
#[derive(Debug, Serialize)]
struct OutPacket<'a> {
    /// Always 2 (EVENT).
    #[serde(rename = "type")]
    kind: u8,
    /// `[event, ...args]`.
    data: Vec<Json>,
    /// The namespace.
    nsp: &'a str,
}

/// `[event, ...args]` of an encoded EVENT frame (`42/nsp,[...]`), and its namespace; None for
/// anything else (acks, frames with an ack id: those never leave the node).
pub fn frame_event(frame: &TextFrame) -> Option<(String, Vec<Json>)> {
    let bytes = Bytes::copy_from_slice(frame.as_bytes().get(1..)?);
    let event = RawEvent::decode(bytes, MAX_DEPTH).ok()??;
    if event.id().is_some() {
        return None;
    }
    let mut data = Vec::with_capacity(1 + event.arg_count());
    data.push(Json::String(event.name()?.to_owned()));
    for i in 0..event.arg_count() {
        data.push(serde_json::from_slice(event.arg_bytes(i)?).ok()?);
    }
    Some((event.nsp().to_owned(), data))
}

/// `[uid, {type: 2, data, nsp}, {rooms, except, flags}]` in msgpack (maps with named keys);
/// `prev` (a committed message's predecessor) goes in `flags` as [`PREV_FLAG`].
pub fn encode_broadcast(
    uid: &str,
    nsp: &str,
    data: Vec<Json>,
    rooms: &[&str],
    prev: Option<i64>,
) -> Option<Vec<u8>> {
    let packet = OutPacket { kind: 2, data, nsp };
    let opts = Opts {
        rooms,
        flags: Flags { prev },
        ..Opts::default()
    };
    rmp_serde::to_vec_named(&(uid, packet, opts)).ok()
}

/// An incoming broadcast, decoded.
#[derive(Debug)]
pub struct Broadcast {
    /// The publishing node (`emitter` for `@socket.io/redis-emitter`).
    pub uid: String,
    /// The packet's namespace (`/` when absent).
    pub nsp: String,
    /// Target rooms.
    pub rooms: Vec<String>,
    /// Excluded rooms.
    pub except: Vec<String>,
    /// The EVENT frame, encoded by the protocol crate.
    pub frame: TextFrame,
    /// For a `message:new`: the message's id (ordered on receipt).
    pub message_id: Option<i64>,
    /// For a `message:new` from a chatwire node: its conversation's previous id.
    pub prev: Option<i64>,
}

/// Decodes `[uid, packet, opts]` (msgpack, any notepack.io version).
pub fn decode_broadcast(bytes: &[u8]) -> Result<Broadcast, Drop> {
    let value = msgpack_to_json(bytes)?;
    let Json::Array(mut parts) = value else {
        return Err(Drop::Malformed);
    };
    if parts.len() < 2 {
        return Err(Drop::Malformed);
    }
    let opts = if parts.len() > 2 {
        parts.swap_remove(2)
    } else {
        Json::Null
    };
    let packet = parts.swap_remove(1);
    let uid = match parts.swap_remove(0) {
        Json::String(s) => s,
        _ => return Err(Drop::Malformed),
    };
    let nsp = packet
        .get("nsp")
        .and_then(Json::as_str)
        .unwrap_or("/")
        .to_owned();
    let mut frame = event_frame(&nsp, &packet)?;
    let message_id = match packet.get("data") {
        Some(Json::Array(d)) if d.first().and_then(Json::as_str) == Some("message:new") => {
            d.get(1).and_then(|m| m.get("id")).and_then(Json::as_i64)
        }
        Some(Json::Array(d)) if d.first().and_then(Json::as_str) == Some("message:read") => {
            if let Some(at) = d.get(1).and_then(read_position) {
                frame = frame.at(at);
            }
            None
        }
        _ => None,
    };
    let prev = message_id.and(
        opts.get("flags")
            .and_then(|f| f.get(PREV_FLAG))
            .and_then(Json::as_i64),
    );
    Ok(Broadcast {
        message_id,
        prev,
        uid,
        nsp,
        rooms: room_list(opts.get("rooms")),
        except: room_list(opts.get("except")),
        frame,
    })
}

/// The reader's place of a `message:read {conversationId, messageId, readBy: {userId,
/// userType}}` (its pointer, as the publishing node positioned it): a recovery offset then names
/// it, and a recovery does not send it again. Receipts are latest values, so positioning one
/// that crossed nodes out of order is safe (unlike a message). Anything else: unpositioned.
fn read_position(payload: &Json) -> Option<Position> {
    let by = payload.get("readBy")?;
    let reader = UserKey::new(
        UserType::parse(by.get("userType")?.as_str()?)?,
        by.get("userId")?.as_i64()?,
    );
    let stream = payload.get("conversationId")?.as_i64()?;
    let seq = payload.get("messageId")?.as_i64()?;
    (stream > 0 && seq > 0 && reader.id > 0).then_some(Position::Latest {
        stream,
        key: reader.compact()?,
        seq,
    })
}

/// A packet `{type: 2, data: [event, ...args]}` as an EVENT frame (`with_ack`: with that id).
pub fn event_frame_with_id(nsp: &str, packet: &Json, id: Option<u64>) -> Result<TextFrame, Drop> {
    match packet.get("type").and_then(Json::as_u64) {
        Some(2) => {}
        Some(_) => return Err(Drop::Unsupported),
        None => return Err(Drop::Malformed),
    }
    let Some(Json::Array(data)) = packet.get("data") else {
        return Err(Drop::Malformed);
    };
    let (name, args) = data.split_first().ok_or(Drop::Malformed)?;
    let name = name.as_str().ok_or(Drop::Malformed)?;
    let args = args
        .iter()
        .map(|a| simd_value(a).ok_or(Drop::Malformed))
        .collect::<Result<Vec<_>, _>>()?;
    let mut p = Packet::event(nsp, name, args);
    p.id = id;
    Ok(emit::packet(&p))
}

fn event_frame(nsp: &str, packet: &Json) -> Result<TextFrame, Drop> {
    event_frame_with_id(nsp, packet, None)
}

fn simd_value(v: &Json) -> Option<chatwire_protocol::json::Value> {
    let text = serde_json::to_vec(v).ok()?;
    chatwire_protocol::json::parse_copy(&text, MAX_DEPTH + 2).ok()
}

/// Room names from a msgpack/JSON list (numbers, as numeric room names, become strings).
pub fn room_list(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|r| match r {
                Json::String(s) => Some(s.clone()),
                Json::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// msgpack to JSON, accepting what every notepack.io version wrote: float64 for every number
/// (integral ones become integers, as JavaScript prints them), fixext1 type 0 = `undefined`
/// (null). Binary data (bin, ext type 0) has no JSON form here: [`Drop::Unsupported`].
pub fn msgpack_to_json(bytes: &[u8]) -> Result<Json, Drop> {
    let mut rd = bytes;
    let value =
        rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).map_err(|_| Drop::Malformed)?;
    to_json(value)
}

fn to_json(v: rmpv::Value) -> Result<Json, Drop> {
    use rmpv::Value as M;
    Ok(match v {
        M::Nil => Json::Null,
        M::Boolean(b) => Json::Bool(b),
        M::Integer(i) => {
            if let Some(n) = i.as_i64() {
                Json::from(n)
            } else if let Some(n) = i.as_u64() {
                Json::from(n)
            } else {
                return Err(Drop::Malformed);
            }
        }
        M::F32(f) => float(f64::from(f)),
        M::F64(f) => float(f),
        M::String(s) => Json::String(s.into_str().ok_or(Drop::Malformed)?),
        M::Binary(_) => return Err(Drop::Unsupported),
        M::Array(items) => Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        M::Map(entries) => {
            let mut map = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    M::String(s) => s.into_str().ok_or(Drop::Malformed)?,
                    M::Integer(i) => i.to_string(),
                    _ => return Err(Drop::Malformed),
                };
                map.insert(key, to_json(v)?);
            }
            Json::Object(map)
        }
        // notepack.io < 3: `undefined` as fixext1 type 0.
        M::Ext(0, data) if data.len() == 1 => Json::Null,
        M::Ext(..) => return Err(Drop::Unsupported),
    })
}

fn float(f: f64) -> Json {
    // notepack.io writes every non-integer and some integers as float64; JavaScript prints an
    // integral number without a fraction.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Json::from(f as i64);
    }
    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
}

/// A request or response: JSON when the first byte is `{`, msgpack otherwise.
pub fn decode_json_or_msgpack(bytes: &[u8]) -> Result<Json, Drop> {
    if bytes.first() == Some(&b'{') {
        let v: Json = serde_json::from_slice(bytes).map_err(|_| Drop::Malformed)?;
        if depth(&v) > MAX_DEPTH {
            return Err(Drop::Malformed);
        }
        Ok(v)
    } else {
        msgpack_to_json(bytes)
    }
}

fn depth(v: &Json) -> usize {
    match v {
        Json::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Json::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Request types of `@socket.io/redis-adapter` (`RequestType` in lib/index.ts).
pub mod request {
    /// Legacy: socket ids in rooms.
    pub const SOCKETS: u64 = 0;
    /// Every room name.
    pub const ALL_ROOMS: u64 = 1;
    /// Make matching sockets join rooms.
    pub const REMOTE_JOIN: u64 = 2;
    /// Make matching sockets leave rooms.
    pub const REMOTE_LEAVE: u64 = 3;
    /// Disconnect matching sockets.
    pub const REMOTE_DISCONNECT: u64 = 4;
    /// Describe matching sockets.
    pub const REMOTE_FETCH: u64 = 5;
    /// A server-side event (acknowledged when it has a requestId).
    pub const SERVER_SIDE_EMIT: u64 = 6;
    /// A broadcast whose clients acknowledge.
    pub const BROADCAST: u64 = 7;
    /// Response: how many clients a BROADCAST reached here.
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    /// Response: one client's acknowledgement.
    pub const BROADCAST_ACK: u64 = 9;
}

/// A BROADCAST_ACK response (msgpack, like the adapter's own).
#[derive(Debug, Serialize)]
pub struct BroadcastAck<'a> {
    /// [`request::BROADCAST_ACK`].
    #[serde(rename = "type")]
    pub kind: u64,
    /// The request's id.
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    /// The client's first ack argument.
    pub packet: Json,
}

/// msgpack with named map keys, the form notepack.io reads.
pub fn to_msgpack<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    rmp_serde::to_vec_named(value).ok()
}

/// A user on the node-to-node channel: `[type, id]` (0 brand, 1 influencer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUser(pub u8, pub i64);

impl From<UserKey> for WireUser {
    fn from(u: UserKey) -> Self {
        let t = match u.user_type {
            UserType::Brand => 0,
            UserType::Influencer => 1,
        };
        WireUser(t, u.id)
    }
}

impl WireUser {
    /// The user, None for an unknown type.
    pub fn key(self) -> Option<UserKey> {
        let user_type = match self.0 {
            0 => UserType::Brand,
            1 => UserType::Influencer,
            _ => return None,
        };
        Some(UserKey {
            user_type,
            id: self.1,
        })
    }
}

/// chatwire's node-to-node messages (msgpack), on `<prefix>-chatwire#<nsp>#`.
#[derive(Debug, Serialize, Deserialize)]
pub enum NodeMsg {
    /// "I am alive" (every heartbeat interval).
    Heartbeat {
        /// Sender.
        node: String,
    },
    /// A node (re)joined: every node answers with its [`NodeMsg::Snapshot`].
    Hello {
        /// Sender.
        node: String,
    },
    /// Every user with a socket on the sender.
    Snapshot {
        /// Sender.
        node: String,
        /// Its online users.
        users: Vec<WireUser>,
    },
    /// A user's first socket on the sender (`online`) or its last one gone.
    Presence {
        /// Sender.
        node: String,
        /// The user.
        user: WireUser,
        /// Online on the sender now.
        online: bool,
    },
    /// A user's first socket on the sender joined a conversation's room (`in_room`), or its
    /// last one there left.
    Room {
        /// Sender.
        node: String,
        /// The conversation.
        conversation: i64,
        /// The user.
        user: WireUser,
        /// In the room on the sender now.
        in_room: bool,
        /// On a leave: the newest message id the sender had handed the room (the user's
        /// sockets there saw it and those before; None: none lately, or an older node).
        #[serde(default)]
        seen: Option<i64>,
    },
    /// A part of the sender's conversation rooms (answering [`NodeMsg::Hello`] after the
    /// [`NodeMsg::Snapshot`]): (conversation, user) pairs; the first part replaces what was
    /// known of the sender.
    Rooms {
        /// Sender.
        node: String,
        /// The first part.
        first: bool,
        /// (conversation, user) pairs.
        pairs: Vec<(i64, WireUser)>,
    },
    /// `message:notification` for participants with no socket in the room.
    Notify {
        /// Sender.
        node: String,
        /// The conversation's room.
        room: String,
        /// Participants other than the sender.
        users: Vec<WireUser>,
        /// The notification's `[event, ...args]`, as JSON text.
        data: String,
        /// The message's id (None from an older node).
        #[serde(default)]
        id: Option<i64>,
    },
}

impl NodeMsg {
    /// Its msgpack bytes, fields by name: an older node skips a field it does not know, and a
    /// field added with `#[serde(default)]` is None in an older node's message (which came as
    /// an array, fields in order).
    pub fn to_bytes(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// The sending node.
    pub fn node(&self) -> &str {
        match self {
            NodeMsg::Heartbeat { node }
            | NodeMsg::Hello { node }
            | NodeMsg::Snapshot { node, .. }
            | NodeMsg::Presence { node, .. }
            | NodeMsg::Room { node, .. }
            | NodeMsg::Rooms { node, .. }
            | NodeMsg::Notify { node, .. } => node,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn text(f: &TextFrame) -> String {
        String::from_utf8_lossy(f.as_bytes()).into_owned()
    }

    #[test]
    fn broadcast_round_trip() {
        let frame = emit::event("/chat", "typing:start", br#"{"conversationId":4}"#);
        let (nsp, data) = frame_event(&frame).unwrap_or_default();
        assert_eq!(nsp, "/chat");
        let bytes =
            encode_broadcast("abc123", &nsp, data, &["conversation:4"], None).unwrap_or_default();
        let b = decode_broadcast(&bytes).map_err(|e| e.label());
        let b = b.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.uid, "abc123");
        assert_eq!(b.rooms, vec!["conversation:4".to_owned()]);
        assert_eq!(
            text(&b.frame),
            r#"42/chat,["typing:start",{"conversationId":4}]"#
        );
    }

    #[test]
    fn another_nodes_read_receipt_keeps_the_readers_place() {
        let body =
            br#"{"conversationId":4,"messageId":90,"readBy":{"userId":7,"userType":"influencer"}}"#;
        let frame = emit::event("/chat", "message:read", body);
        let (nsp, data) = frame_event(&frame).unwrap_or_default();
        let bytes =
            encode_broadcast("n2", &nsp, data, &["conversation:4"], None).unwrap_or_default();
        let b = decode_broadcast(&bytes).map_err(|e| e.label());
        let b = b.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            b.frame.position(),
            Some(Position::Latest {
                stream: 4,
                key: 15,
                seq: 90
            })
        );
        // Not a receipt of ours: delivered as it is.
        let odd = emit::event("/chat", "message:read", br#"{"conversationId":4}"#);
        let (nsp, data) = frame_event(&odd).unwrap_or_default();
        let bytes =
            encode_broadcast("n2", &nsp, data, &["conversation:4"], None).unwrap_or_default();
        let b = decode_broadcast(&bytes).map_err(|e| e.label());
        assert_eq!(b.ok().and_then(|b| b.frame.position()), None);
    }

    #[test]
    fn a_messages_prev_rides_in_flags_where_node_ignores_it() {
        let frame = emit::event("/chat", "message:new", br#"{"id":12,"conversationId":4}"#);
        let (nsp, data) = frame_event(&frame).unwrap_or_default();
        let bytes = encode_broadcast("n1", &nsp, data.clone(), &["conversation:4"], Some(9))
            .unwrap_or_default();
        // What a Node node decodes: its known flags absent, ours an extra key.
        let opts = msgpack_to_json(&bytes).unwrap()[2].clone();
        assert_eq!(
            opts,
            serde_json::json!({"rooms": ["conversation:4"], "except": [], "flags": {"chatwirePrev": 9}})
        );
        let b = decode_broadcast(&bytes).unwrap();
        assert_eq!((b.message_id, b.prev), (Some(12), Some(9)));
        // Without one (typing, Node nodes, emitters): flags stay an empty map.
        let bytes =
            encode_broadcast("n1", &nsp, data, &["conversation:4"], None).unwrap_or_default();
        assert_eq!(
            msgpack_to_json(&bytes).unwrap()[2]["flags"],
            serde_json::json!({})
        );
        assert_eq!(decode_broadcast(&bytes).unwrap().prev, None);
    }

    #[test]
    fn old_notepack_encodings() {
        // ["emitter", {type: 2.0, data: ["e", 1.0, 1.5, undefined], nsp: "/chat"}] with float64
        // numbers and the fixext1 `undefined`.
        let mut b = vec![0x92, 0xa7];
        b.extend_from_slice(b"emitter");
        b.extend_from_slice(&[0x83, 0xa4]);
        b.extend_from_slice(b"type");
        b.push(0xcb);
        b.extend_from_slice(&2.0f64.to_be_bytes());
        b.push(0xa4);
        b.extend_from_slice(b"data");
        b.extend_from_slice(&[0x94, 0xa1, b'e', 0xcb]);
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.push(0xcb);
        b.extend_from_slice(&1.5f64.to_be_bytes());
        b.extend_from_slice(&[0xd4, 0x00, 0x00, 0xa3]);
        b.extend_from_slice(b"nsp");
        b.push(0xa5);
        b.extend_from_slice(b"/chat");
        let got = decode_broadcast(&b).map_err(|e| e.label());
        let got = got.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.uid, "emitter");
        assert!(got.rooms.is_empty());
        assert_eq!(text(&got.frame), r#"42/chat,["e",1,1.5,null]"#);
    }

    #[test]
    fn garbage_is_dropped_not_panicked() {
        for bad in [
            &b""[..],
            b"\xc1",
            b"\x93\xa1a",
            b"\xdd\xff\xff\xff\xff",
            b"[1,2]",
        ] {
            assert!(decode_broadcast(bad).is_err());
        }
        assert_eq!(
            decode_broadcast(&[
                0x93, 0xa1, b'a', 0x81, 0xa4, b't', b'y', b'p', b'e', 0x05, 0x80
            ])
            .err(),
            Some(Drop::Unsupported)
        );
        // Deep nesting stops at the limit.
        let deep = vec![0x91u8; 10_000];
        assert_eq!(msgpack_to_json(&deep).err(), Some(Drop::Malformed));
        assert_eq!(
            decode_json_or_msgpack(&[0xc4, 0x01, 0x00]).err(),
            Some(Drop::Unsupported)
        );
    }

    /// The two node messages as the release before `seen` and `id` had them (msgpack names
    /// the variant, so the others need no copy here).
    #[derive(Debug, Serialize, Deserialize)]
    enum OlderNodeMsg {
        Room {
            node: String,
            conversation: i64,
            user: WireUser,
            in_room: bool,
        },
        Notify {
            node: String,
            room: String,
            users: Vec<WireUser>,
            data: String,
        },
    }

    #[test]
    fn node_messages_decode_across_one_release_both_ways() {
        let user = WireUser(1, 7);
        let older = rmp_serde::to_vec(&OlderNodeMsg::Room {
            node: "n1".into(),
            conversation: 4,
            user,
            in_room: false,
        })
        .unwrap();
        match rmp_serde::from_slice::<NodeMsg>(&older).unwrap() {
            NodeMsg::Room { seen, in_room, .. } => assert_eq!((seen, in_room), (None, false)),
            other => panic!("{other:?}"),
        }
        let older = rmp_serde::to_vec(&OlderNodeMsg::Notify {
            node: "n1".into(),
            room: "conversation:4".into(),
            users: vec![user],
            data: "[]".into(),
        })
        .unwrap();
        match rmp_serde::from_slice::<NodeMsg>(&older).unwrap() {
            NodeMsg::Notify { id, .. } => assert_eq!(id, None),
            other => panic!("{other:?}"),
        }
        // And an older node still reads this release's messages (it ignores the new field).
        let newer = NodeMsg::Room {
            node: "n2".into(),
            conversation: 4,
            user,
            in_room: false,
            seen: Some(11),
        }
        .to_bytes();
        match rmp_serde::from_slice::<OlderNodeMsg>(&newer).unwrap() {
            OlderNodeMsg::Room {
                conversation,
                in_room,
                ..
            } => {
                assert_eq!((conversation, in_room), (4, false));
            }
            other => panic!("{other:?}"),
        }
        let newer = NodeMsg::Notify {
            node: "n2".into(),
            room: "conversation:4".into(),
            users: vec![user],
            data: "[]".into(),
            id: Some(12),
        }
        .to_bytes();
        assert!(matches!(
            rmp_serde::from_slice::<OlderNodeMsg>(&newer).unwrap(),
            OlderNodeMsg::Notify { .. }
        ));
    }
}
