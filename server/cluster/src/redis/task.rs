//! The Redis task: one thread with its own current-thread runtime. It PUBLISHes what the shards
//! queue (pipelined: everything queued goes in one round trip), receives the other nodes'
//! broadcasts, requests and presence, and injects them into the shards. On any Redis error it
//! reconnects (backoff up to 2 s), subscribes again and asks every node for its presence
//! snapshot; while Redis is away, queued messages are dropped and counted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value as Json, json};

use super::wire::{self, Drop, NodeMsg, WireUser, request};
use super::{
    Out, REDIS_CONNECTED, REDIS_DROPPED, REDIS_PUBLISHED, REDIS_RECEIVED, State, presence::Change,
};
use crate::mesh::Injector;
use crate::msg::{ClusterMsg, ShardView};
use crate::presence::presence_owner;
use crate::rooms::{Member, RoomName, SocketKey, room_owner};

/// Most messages sent in one pipeline.
const PIPELINE_MAX: usize = 512;
/// How long a request waits for the shards' views.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the task until the process ends.
pub(super) fn run(state: Arc<State>, client: redis::Client, rx: flume::Receiver<Out>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing_free_log(&format!("redis task: no runtime: {e}"));
            return;
        }
    };
    rt.block_on(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match session(&state, &client, &rx).await {
                Ok(()) => return,
                Err(e) => {
                    state.connected.store(false, Ordering::Relaxed);
                    metrics::gauge!(REDIS_CONNECTED).set(0.0);
                    tracing_free_log(&format!("redis: {e}; reconnecting"));
                }
            }
            // Away: what the shards queue now would be stale when Redis is back.
            if rx.is_disconnected() {
                // The server is gone (every adapter handle dropped): so is this task.
                return;
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                while rx.try_recv().is_ok() {
                    metrics::counter!(REDIS_DROPPED, "reason" => "disconnected").increment(1);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
}

/// The crate logs through `metrics` only; connection trouble goes to stderr once per attempt.
fn tracing_free_log(msg: &str) {
    eprintln!("chatwire-redis: {msg}");
}

/// One connected period: returns Err when Redis fails, Ok when the queue closed (shutdown).
async fn session(
    state: &Arc<State>,
    client: &redis::Client,
    rx: &flume::Receiver<Out>,
) -> redis::RedisResult<()> {
    let cfg = &state.cfg;
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let mut sub = client.get_async_pubsub().await?;
    let pattern = format!("{}*", cfg.broadcast_channel());
    sub.psubscribe(&pattern).await?;
    sub.subscribe(cfg.request_channel()).await?;
    sub.subscribe(cfg.node_channel()).await?;
    let mut messages = sub.into_on_message();
    state.connected.store(true, Ordering::Relaxed);
    metrics::gauge!(REDIS_CONNECTED).set(1.0);
    tracing_free_log("connected");
    let hello = NodeMsg::Hello {
        node: state.uid.clone(),
    };
    publish_now(&mut publisher, &cfg.node_channel(), node_bytes(&hello)).await?;
    publish_now(&mut publisher, &cfg.node_channel(), snapshot_bytes(state)).await?;
    for part in rooms_snapshot_parts(state) {
        publish_now(&mut publisher, &cfg.node_channel(), part).await?;
    }
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    let mut batch = Vec::with_capacity(PIPELINE_MAX);
    loop {
        tokio::select! {
            first = rx.recv_async() => {
                let Ok(first) = first else { return Ok(()) };
                batch.push(first);
                while batch.len() < PIPELINE_MAX {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                let mut pipe = redis::pipe();
                let mut n = 0u64;
                for out in batch.drain(..) {
                    if let Some((channel, payload)) = encode_out(state, out) {
                        pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                        n += 1;
                    }
                }
                if n > 0 {
                    pipe.query_async::<()>(&mut publisher).await?;
                    metrics::counter!(REDIS_PUBLISHED).increment(n);
                }
            }
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")));
                };
                let channel = msg.get_channel_name().to_owned();
                on_message(state, &channel, msg.get_payload_bytes());
            }
            _ = heartbeat.tick() => {
                let beat = NodeMsg::Heartbeat { node: state.uid.clone() };
                publish_now(&mut publisher, &cfg.node_channel(), node_bytes(&beat)).await?;
                let changes = state.presence().expire(Instant::now(), cfg.node_timeout);
                announce(state, changes);
                forget_dead_rooms(state);
            }
        }
    }
}

async fn publish_now(
    conn: &mut redis::aio::MultiplexedConnection,
    channel: &str,
    payload: Vec<u8>,
) -> redis::RedisResult<()> {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async::<()>(conn)
        .await?;
    metrics::counter!(REDIS_PUBLISHED).increment(1);
    Ok(())
}

fn node_bytes(msg: &NodeMsg) -> Vec<u8> {
    msg.to_bytes()
}

fn snapshot_bytes(state: &State) -> Vec<u8> {
    let users = state
        .presence()
        .local_users()
        .into_iter()
        .map(WireUser::from)
        .collect();
    node_bytes(&NodeMsg::Snapshot {
        node: state.uid.clone(),
        users,
    })
}

/// Pairs per [`NodeMsg::Rooms`] part (~15 bytes each on the wire: far under `max_message`).
const ROOMS_PER_PART: usize = 4096;

/// This node's conversation rooms as [`NodeMsg::Rooms`] parts (one, empty, when it has none:
/// the first part clears what others knew).
fn rooms_snapshot_parts(state: &State) -> Vec<Vec<u8>> {
    let pairs = state.rooms_read().local_pairs();
    let mut parts = Vec::with_capacity(pairs.len() / ROOMS_PER_PART + 1);
    let mut chunks = pairs.chunks(ROOMS_PER_PART);
    let mut first = true;
    loop {
        let chunk = chunks.next();
        if chunk.is_none() && !first {
            break;
        }
        let pairs = chunk
            .unwrap_or_default()
            .iter()
            .map(|(c, u)| (*c, WireUser::from(*u)))
            .collect();
        parts.push(node_bytes(&NodeMsg::Rooms {
            node: state.uid.clone(),
            first,
            pairs,
        }));
        first = false;
    }
    parts
}

/// Forgets the conversation rooms of nodes the presence gave up on.
fn forget_dead_rooms(state: &State) {
    let alive: HashSet<String> = {
        let presence = state.presence();
        state
            .rooms_read()
            .node_names()
            .into_iter()
            .filter(|n| presence.knows(n))
            .collect()
    };
    state.rooms().retain_nodes(|n| alive.contains(n));
}

/// The channel and bytes of a queued message (None: nothing to publish, e.g. an ack frame).
fn encode_out(state: &State, out: Out) -> Option<(String, Vec<u8>)> {
    let cfg = &state.cfg;
    match out {
        Out::Broadcast { room, frame, prev } => {
            let (nsp, data) = wire::frame_event(&frame)?;
            if nsp != cfg.nsp {
                return None;
            }
            let bytes = wire::encode_broadcast(&state.uid, &nsp, data, &[&room], prev)?;
            Some((format!("{}{}#", cfg.broadcast_channel(), room), bytes))
        }
        Out::Node(msg) => Some((cfg.node_channel(), node_bytes(&msg))),
        Out::Notify {
            room,
            id,
            users,
            frame,
        } => {
            let (_, data) = wire::frame_event(&frame)?;
            let msg = NodeMsg::Notify {
                node: state.uid.clone(),
                room: room.to_string(),
                users,
                data: serde_json::to_string(&data).ok()?,
                id: Some(id),
            };
            Some((cfg.node_channel(), node_bytes(&msg)))
        }
        Out::Raw { channel, payload } => Some((channel, payload)),
    }
}

fn dropped(reason: Drop) {
    metrics::counter!(REDIS_DROPPED, "reason" => reason.label()).increment(1);
}

/// Dispatches one message from Redis. Never blocks on the network: work that must wait for the
/// shards runs in its own task.
fn on_message(state: &Arc<State>, channel: &str, payload: &[u8]) {
    if payload.len() > state.cfg.max_message {
        dropped(Drop::Oversize);
        return;
    }
    let Some(shards) = state.shards.get().cloned() else {
        return;
    };
    let cfg = &state.cfg;
    let result = if channel == cfg.request_channel() {
        on_request(state, shards, payload)
    } else if channel == cfg.node_channel() {
        on_node(state, &*shards, payload)
    } else if channel.starts_with(&cfg.broadcast_channel()) {
        on_broadcast(state, shards, payload)
    } else {
        Err(Drop::Unsupported)
    };
    match result {
        Ok(true) => metrics::counter!(REDIS_RECEIVED).increment(1),
        Ok(false) => {}
        Err(reason) => dropped(reason),
    }
}

fn inject(shards: &dyn Injector, to: usize, msg: ClusterMsg) {
    if !shards.inject(to, msg) {
        metrics::counter!(REDIS_DROPPED, "reason" => "shard_full").increment(1);
    }
}

/// A broadcast from another node (or an emitter): to the local sockets it targets.
fn on_broadcast(
    state: &Arc<State>,
    shards: Arc<dyn Injector>,
    payload: &[u8],
) -> Result<bool, Drop> {
    let b = wire::decode_broadcast(payload)?;
    if b.uid == state.uid {
        return Ok(false);
    }
    if b.nsp != state.cfg.nsp {
        return Err(Drop::Unsupported);
    }
    if let ([room], []) = (b.rooms.as_slice(), b.except.as_slice()) {
        let room: RoomName = room.as_str().into();
        let owner = room_owner(&room, shards.shard_count());
        let msg = match b.message_id {
            Some(id) if room.starts_with("conversation:") => ClusterMsg::RemoteMessage {
                room,
                id,
                prev: b.prev,
                node: b.uid.as_str().into(),
                frame: b.frame.clone(),
            },
            _ => ClusterMsg::Broadcast {
                room,
                frame: b.frame.clone(),
                except: None,
            },
        };
        inject(&*shards, owner, msg);
        // Socket ids are rooms too (`io.to(socketId)`).
        if b.rooms
            .first()
            .is_some_and(|r| !r.starts_with("conversation:"))
        {
            let rooms = b.rooms.clone();
            tokio::spawn(async move {
                let view = NodeView::gather(&*shards).await;
                for (shard, sockets) in view.by_shard(view.own_rooms_only(&rooms)) {
                    inject(
                        &*shards,
                        shard,
                        ClusterMsg::Deliver {
                            frame: b.frame.clone(),
                            sockets,
                        },
                    );
                }
            });
        }
        return Ok(true);
    }
    tokio::spawn(async move {
        let view = NodeView::gather(&*shards).await;
        let targets = view.select(&b.rooms, &b.except);
        for (shard, sockets) in view.by_shard(targets) {
            inject(
                &*shards,
                shard,
                ClusterMsg::Deliver {
                    frame: b.frame.clone(),
                    sockets,
                },
            );
        }
    });
    Ok(true)
}

/// chatwire's node-to-node channel.
fn on_node(state: &Arc<State>, shards: &dyn Injector, payload: &[u8]) -> Result<bool, Drop> {
    let msg: NodeMsg = rmp_serde::from_slice(payload).map_err(|_| Drop::Malformed)?;
    if msg.node() == state.uid {
        return Ok(false);
    }
    let now = Instant::now();
    match msg {
        NodeMsg::Heartbeat { node } => {
            if state.presence().seen(&node, now) {
                // A node we did not know (or had given up on): everyone resends snapshots.
                state.enqueue(Out::Node(NodeMsg::Hello {
                    node: state.uid.clone(),
                }));
            }
        }
        NodeMsg::Hello { node } => {
            state.presence().seen(&node, now);
            state.enqueue(Out::Raw {
                channel: state.cfg.node_channel(),
                payload: snapshot_bytes(state),
            });
            for payload in rooms_snapshot_parts(state) {
                state.enqueue(Out::Raw {
                    channel: state.cfg.node_channel(),
                    payload,
                });
            }
        }
        NodeMsg::Room {
            node,
            conversation,
            user,
            in_room,
            seen,
        } => {
            let user = user.key().ok_or(Drop::Malformed)?;
            state.presence().seen(&node, now);
            let applied = state
                .rooms()
                .remote_change(&node, (conversation, user), in_room);
            match applied {
                super::rooms::Applied::Capped => {
                    metrics::counter!(REDIS_DROPPED, "reason" => "room_cap").increment(1);
                }
                // The user left the room there: notifications held back meanwhile may be due.
                super::rooms::Applied::Changed if !in_room => {
                    let room: RoomName = format!("conversation:{conversation}").into();
                    let owner = room_owner(&room, shards.shard_count());
                    inject(
                        shards,
                        owner,
                        ClusterMsg::LeftElsewhere { room, user, seen },
                    );
                }
                _ => {}
            }
        }
        NodeMsg::Rooms { node, first, pairs } => {
            let pairs = pairs
                .into_iter()
                .map(|(c, u)| u.key().map(|u| (c, u)))
                .collect::<Option<Vec<_>>>()
                .ok_or(Drop::Malformed)?;
            state.presence().seen(&node, now);
            let capped = state.rooms().snapshot(&node, pairs, first);
            if capped > 0 {
                metrics::counter!(REDIS_DROPPED, "reason" => "room_cap").increment(capped as u64);
            }
        }
        NodeMsg::Snapshot { node, users } => {
            let users = users.into_iter().filter_map(WireUser::key).collect();
            let changes = state.presence().snapshot(&node, users, now);
            announce_to(shards, changes);
        }
        NodeMsg::Presence { node, user, online } => {
            let user = user.key().ok_or(Drop::Malformed)?;
            let change = state.presence().remote_change(&node, user, online, now);
            announce_to(shards, change.into_iter().collect());
        }
        NodeMsg::Notify {
            room,
            users,
            data,
            id,
            ..
        } => {
            let data: Json = serde_json::from_str(&data).map_err(|_| Drop::Malformed)?;
            let frame =
                wire::event_frame_with_id(&state.cfg.nsp, &json!({"type": 2, "data": data}), None)?;
            let room: RoomName = room.into();
            let users = users.into_iter().filter_map(WireUser::key).collect();
            let owner = room_owner(&room, shards.shard_count());
            inject(
                shards,
                owner,
                ClusterMsg::NotifyAbsent {
                    room,
                    id,
                    users,
                    frame,
                },
            );
        }
    }
    Ok(true)
}

fn announce(state: &State, changes: Vec<Change>) {
    if let Some(shards) = state.shards.get() {
        announce_to(&**shards, changes);
    }
}

fn announce_to(shards: &dyn Injector, changes: Vec<Change>) {
    for (user, online) in changes {
        let owner = presence_owner(user, shards.shard_count());
        inject(shards, owner, ClusterMsg::PresenceAnnounce { user, online });
    }
}

/// A local `/chat` socket: (id, user, handshake facts).
type SocketInfo = (
    String,
    Option<chatwire_store::UserKey>,
    Option<crate::msg::HandshakeFacts>,
);

/// Every local `/chat` socket and room, gathered from the shards.
#[derive(Debug, Default)]
struct NodeView {
    /// Socket -> (id, user, handshake).
    sockets: HashMap<SocketKey, SocketInfo>,
    /// Room -> members.
    rooms: HashMap<RoomName, Vec<Member>>,
}

impl NodeView {
    async fn gather(shards: &dyn Injector) -> NodeView {
        let n = shards.shard_count();
        let (tx, rx) = flume::bounded::<ShardView>(n);
        let mut asked = 0;
        for shard in 0..n {
            if shards.inject(shard, ClusterMsg::Inspect(tx.clone())) {
                asked += 1;
            }
        }
        drop(tx);
        let mut view = NodeView::default();
        let deadline = tokio::time::Instant::now() + INSPECT_TIMEOUT;
        for _ in 0..asked {
            let Ok(Ok(part)) = tokio::time::timeout_at(deadline, rx.recv_async()).await else {
                break;
            };
            for s in part.sockets {
                let key = SocketKey {
                    shard: part.shard,
                    local: s.local,
                };
                view.sockets.insert(key, (s.id, s.user, s.handshake));
            }
            for (room, members) in part.rooms {
                view.rooms.entry(room).or_default().extend(members);
            }
        }
        view
    }

    /// Sockets in `room` (a room name, or a socket id).
    fn members(&self, room: &str) -> Vec<SocketKey> {
        if let Some(m) = self.rooms.get(room) {
            return m.iter().map(|m| m.socket).collect();
        }
        self.sockets
            .iter()
            .filter(|(_, (id, ..))| id == room)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Sockets whose id is one of `rooms` (and which are in no room of that name).
    fn own_rooms_only(&self, rooms: &[String]) -> Vec<SocketKey> {
        rooms
            .iter()
            .filter(|r| !self.rooms.contains_key(r.as_str()))
            .flat_map(|r| self.members(r))
            .collect()
    }

    /// Socket.IO's selection: sockets in any of `rooms` (every socket when empty), minus the
    /// sockets in any of `except`.
    fn select(&self, rooms: &[String], except: &[String]) -> Vec<SocketKey> {
        let mut set: HashSet<SocketKey> = if rooms.is_empty() {
            self.sockets.keys().copied().collect()
        } else {
            rooms.iter().flat_map(|r| self.members(r)).collect()
        };
        for r in except {
            for s in self.members(r) {
                set.remove(&s);
            }
        }
        // Only live `/chat` sockets (a room member may have just gone).
        set.retain(|s| self.sockets.contains_key(s));
        let mut v: Vec<SocketKey> = set.into_iter().collect();
        v.sort();
        v
    }

    fn by_shard(&self, sockets: Vec<SocketKey>) -> Vec<(usize, Vec<u64>)> {
        let mut map: HashMap<u16, Vec<u64>> = HashMap::new();
        for s in sockets {
            map.entry(s.shard).or_default().push(s.local);
        }
        map.into_iter().map(|(k, v)| (usize::from(k), v)).collect()
    }

    /// The rooms of a socket, its own id first (Socket.IO's `socket.rooms`).
    fn rooms_of(&self, socket: SocketKey) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((id, ..)) = self.sockets.get(&socket) {
            out.push(id.clone());
        }
        for (room, members) in &self.rooms {
            if members.iter().any(|m| m.socket == socket) {
                out.push(room.to_string());
            }
        }
        out
    }

    fn all_rooms(&self) -> Vec<String> {
        let mut out: Vec<String> = self.rooms.keys().map(|r| r.to_string()).collect();
        out.extend(self.sockets.values().map(|(id, ..)| id.clone()));
        out
    }

    fn describe(&self, socket: SocketKey) -> Json {
        let (id, user, facts) = self.sockets.get(&socket).cloned().unwrap_or_default();
        let data = match user {
            Some(u) => json!({"userId": u.id, "userType": u.user_type.as_str()}),
            None => json!({}),
        };
        json!({
            "id": id,
            "handshake": super::handshake::handshake_json(facts.as_ref()),
            "rooms": self.rooms_of(socket),
            "data": data,
        })
    }

    fn find(&self, sid: &str) -> Option<SocketKey> {
        self.sockets
            .iter()
            .find(|(_, (id, ..))| id == sid)
            .map(|(k, _)| *k)
    }
}

fn str_field<'a>(v: &'a Json, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Json::as_str)
}

fn opts_rooms(req: &Json) -> (Vec<String>, Vec<String>) {
    let opts = req.get("opts");
    (
        wire::room_list(opts.and_then(|o| o.get("rooms"))),
        wire::room_list(opts.and_then(|o| o.get("except"))),
    )
}

/// A request on `<p>-request#<nsp>#` (from a Node node, an emitter, or a chatwire node's peer).
fn on_request(state: &Arc<State>, shards: Arc<dyn Injector>, payload: &[u8]) -> Result<bool, Drop> {
    let req = wire::decode_json_or_msgpack(payload)?;
    let kind = req
        .get("type")
        .and_then(Json::as_u64)
        .ok_or(Drop::Malformed)?;
    if kind > request::BROADCAST {
        return Err(Drop::Unsupported);
    }
    if kind == request::SERVER_SIDE_EMIT {
        if str_field(&req, "uid") == Some(state.uid.as_str()) {
            return Ok(false);
        }
        // chatwire has no server-side listeners; an acknowledged emit gets `null` at once so
        // the sender never waits out its timeout for this node.
        if let Some(id) = req.get("requestId") {
            respond(
                state,
                json!({"type": request::SERVER_SIDE_EMIT, "requestId": id, "data": null}),
            );
        }
        return Ok(true);
    }
    if kind == request::BROADCAST {
        // Validate before any work.
        let packet = req.get("packet").ok_or(Drop::Malformed)?;
        wire::event_frame_with_id(&state.cfg.nsp, packet, Some(0))?;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let view = NodeView::gather(&*shards).await;
        handle_request(&state, &*shards, &view, kind, &req);
    });
    Ok(true)
}

fn respond(state: &State, body: Json) {
    state.enqueue(Out::Raw {
        channel: state.cfg.response_channel(),
        payload: body.to_string().into_bytes(),
    });
}

fn handle_request(state: &State, shards: &dyn Injector, view: &NodeView, kind: u64, req: &Json) {
    let request_id = req.get("requestId").cloned().unwrap_or(Json::Null);
    let (rooms, except) = opts_rooms(req);
    match kind {
        request::SOCKETS => {
            let rooms = wire::room_list(req.get("rooms"));
            let ids: Vec<String> = view
                .select(&rooms, &[])
                .into_iter()
                .filter_map(|s| view.sockets.get(&s).map(|(id, ..)| id.clone()))
                .collect();
            respond(state, json!({"requestId": request_id, "sockets": ids}));
        }
        request::ALL_ROOMS => {
            respond(
                state,
                json!({"requestId": request_id, "rooms": view.all_rooms()}),
            );
        }
        request::REMOTE_JOIN | request::REMOTE_LEAVE => {
            let join = kind == request::REMOTE_JOIN;
            let (targets, names) = if req.get("opts").is_some() {
                (
                    view.select(&rooms, &except),
                    wire::room_list(req.get("rooms")),
                )
            } else {
                let Some(sid) = str_field(req, "sid") else {
                    return;
                };
                let Some(socket) = view.find(sid) else { return };
                let room = str_field(req, "room").unwrap_or_default().to_owned();
                respond(state, json!({"requestId": request_id}));
                (vec![socket], vec![room])
            };
            apply_membership(state, shards, view, join, &targets, &names);
        }
        request::REMOTE_DISCONNECT => {
            let close = req.get("close").and_then(Json::as_bool).unwrap_or(false);
            let targets = if req.get("opts").is_some() {
                view.select(&rooms, &except)
            } else {
                let Some(sid) = str_field(req, "sid") else {
                    return;
                };
                let Some(socket) = view.find(sid) else { return };
                respond(state, json!({"requestId": request_id}));
                vec![socket]
            };
            for (shard, sockets) in view.by_shard(targets) {
                inject(
                    shards,
                    shard,
                    ClusterMsg::DisconnectLocal { sockets, close },
                );
            }
        }
        request::REMOTE_FETCH => {
            let sockets: Vec<Json> = view
                .select(&rooms, &except)
                .into_iter()
                .map(|s| view.describe(s))
                .collect();
            respond(state, json!({"requestId": request_id, "sockets": sockets}));
        }
        request::BROADCAST => broadcast_with_ack(state, shards, view, req, &rooms, &except),
        _ => {}
    }
}

/// A Node node's `timeout(t).emitWithAck(...)`: the event goes to the matching sockets with an
/// ack id each; the count is answered first (BROADCAST_CLIENT_COUNT, JSON), then each client's
/// first ack argument (BROADCAST_ACK, msgpack), as `@socket.io/redis-adapter` does.
fn broadcast_with_ack(
    state: &State,
    shards: &dyn Injector,
    view: &NodeView,
    req: &Json,
    rooms: &[String],
    except: &[String],
) {
    let Some(request_id) = str_field(req, "requestId").map(str::to_owned) else {
        return;
    };
    let Some(Json::Array(data)) = req.get("packet").and_then(|p| p.get("data")) else {
        return;
    };
    let Some((Json::String(event), args)) = data.split_first() else {
        return;
    };
    let args: Vec<String> = args.iter().map(Json::to_string).collect();
    // An event without arguments still needs one for the encoder's `["name",args]` form.
    let args = if args.is_empty() {
        "null".to_owned()
    } else {
        args.join(",")
    };
    let timeout = req
        .get("opts")
        .and_then(|o| o.get("flags"))
        .and_then(|f| f.get("timeout"))
        .and_then(Json::as_u64)
        .map_or(Duration::from_secs(5), Duration::from_millis)
        .min(Duration::from_secs(60));
    let targets = view.select(rooms, except);
    let count = targets.len();
    respond(
        state,
        json!({"type": request::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count}),
    );
    if count == 0 {
        return;
    }
    let (tx, rx) = flume::bounded::<String>(count);
    for (shard, sockets) in view.by_shard(targets) {
        inject(
            shards,
            shard,
            ClusterMsg::EmitWithAck(Box::new(crate::msg::AckEmit {
                sockets,
                event: event.clone(),
                args: args.clone(),
                timeout,
                reply: tx.clone(),
            })),
        );
    }
    drop(tx);
    let out = state.out.clone();
    let channel = state.cfg.response_channel();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        for _ in 0..count {
            let Ok(Ok(arg)) = tokio::time::timeout_at(deadline, rx.recv_async()).await else {
                return;
            };
            let packet: Json = serde_json::from_str(&arg).unwrap_or(Json::Null);
            let ack = wire::BroadcastAck {
                kind: request::BROADCAST_ACK,
                request_id: &request_id,
                packet,
            };
            if let Some(payload) = wire::to_msgpack(&ack)
                && out
                    .try_send(Out::Raw {
                        channel: channel.clone(),
                        payload,
                    })
                    .is_err()
            {
                metrics::counter!(REDIS_DROPPED, "reason" => "queue_full").increment(1);
            }
        }
    });
}

/// Joins or leaves `names` for `targets` (only rooms the request names, only `/chat` sockets).
fn apply_membership(
    state: &State,
    shards: &dyn Injector,
    view: &NodeView,
    join: bool,
    targets: &[SocketKey],
    names: &[String],
) {
    let mut joined = state
        .joined
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for socket in targets {
        let user = view.sockets.get(socket).and_then(|(_, u, _)| *u);
        for name in names {
            let room: RoomName = name.as_str().into();
            let owner = room_owner(&room, shards.shard_count());
            if join {
                let entry = joined.entry(*socket).or_default();
                if !entry.contains(&room) {
                    entry.push(room.clone());
                }
                inject(
                    shards,
                    owner,
                    ClusterMsg::Join {
                        room,
                        member: Member {
                            socket: *socket,
                            user,
                        },
                    },
                );
            } else {
                if let Some(entry) = joined.get_mut(socket) {
                    entry.retain(|r| *r != room);
                }
                inject(
                    shards,
                    owner,
                    ClusterMsg::Leave {
                        room,
                        socket: *socket,
                    },
                );
            }
        }
    }
}
