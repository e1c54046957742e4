//! The chat application on a shard: the glue between a Socket.IO socket on `/chat` and the chat
//! rules (`chatwire_chat`). It authenticates the CONNECT, hands each event to the rules with the
//! socket's rate-limit verdict and the time, and carries out the [`chatwire_chat::Effect`]s they
//! return ([`effects`]); messages go to storage through [`commit`].

pub mod commit;
pub mod effects;
pub mod recovery;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use chatwire_chat::{Chat, ChatSocket};
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::RawEvent;
use chatwire_protocol::socket::packet::Packet;
use chatwire_store::UserKey;

use crate::engine::conn::Conn;
use crate::shard::Shard;
pub use crate::shared::ChatShared;
pub use crate::sio::slot::SocketChat;

/// Authenticates a `/chat` CONNECT: `auth.token`, else the handshake `Authorization` header.
/// Creates the user on first sight. Err = the CONNECT_ERROR message.
pub async fn authenticate(
    shard: &Shard,
    conn: &Conn,
    auth: Option<&Value>,
) -> Result<SocketChat, String> {
    let (Some(shared), Some(chat)) = (shard.shared.chat.as_ref(), shard.chat.as_ref()) else {
        return Err("chat is not enabled".to_owned());
    };
    let token = match auth.and_then(|a| chatwire_chat::payload::field(a, "token")) {
        Some(Value::String(t)) => Some(t.as_str()),
        _ => conn.handshake.authorization.as_deref(),
    };
    let Some(token) = token else {
        return Err("unauthorized".to_owned());
    };
    let identity = shared
        .auth
        .authenticate(token, unix_now())
        .map_err(|e| e.message().to_owned())?;
    let socket = chat
        .connect(identity.user, identity.profile)
        .await
        .map_err(str::to_owned)?;
    Ok(SocketChat {
        state: Rc::new(RefCell::new(socket)),
        expires_at: identity.expires_at,
        recovery: None,
    })
}

/// Seconds since the Unix epoch (token expiry checks).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// After CONNECT: index the socket by user, count presence (the caller emits
/// `connection:success` after the CONNECT reply).
pub fn on_connected(shard: &Rc<Shard>, local: u64, user: UserKey) {
    shard
        .users
        .borrow_mut()
        .entry(user)
        .or_default()
        .push(local);
    shard.adapter().presence_up(&**shard, user);
}

/// After the socket is gone: `typing:stop` where it typed, leave its rooms, drop the user
/// index, count presence.
pub fn on_disconnected(shard: &Rc<Shard>, local: u64, chat: SocketChat) {
    let key = shard.socket_key(local);
    let user = chat.state.borrow().user;
    let fx = Chat::disconnected(&chat.state);
    effects::run(shard, None, key, &chat.state, fx);
    {
        let mut users = shard.users.borrow_mut();
        if let Some(list) = users.get_mut(&user) {
            list.retain(|s| *s != local);
            if list.is_empty() {
                users.remove(&user);
            }
        }
    }
    shard.adapter().presence_down(&**shard, user);
}

/// The chat state of socket `local` of `conn`, and whether the rate limits let one more event
/// by: the connection's (whatever its namespaces and reconnections) and then the user's (over
/// all the user's connections on this shard).
fn socket_and_rate(
    shard: &Shard,
    conn: &Conn,
    local: u64,
) -> Option<(Rc<RefCell<ChatSocket>>, bool)> {
    let st = conn.state.borrow();
    let slot = st.sockets.iter().find(|s| s.local == local)?;
    let state = slot.chat.as_ref()?.state.clone();
    let user = state.borrow().user;
    let allowed =
        st.limiter.as_ref().is_none_or(|l| l.check()) && shard.user_events.check(&user).is_ok();
    Some((state, allowed))
}

/// A `/chat` event decoded by the full decoder (binary events).
pub async fn on_event(shard: &Rc<Shard>, conn: &Rc<Conn>, local: u64, packet: Packet) {
    let (Some(chat), Some(name)) = (shard.chat.as_ref(), packet.event_name()) else {
        return;
    };
    let Some((state, allowed)) = socket_and_rate(shard, conn, local) else {
        return;
    };
    let null = Value::Static(simd_json::StaticNode::Null);
    let args = crate::sio::slot::event_args(&packet);
    let payload = args.first().unwrap_or(&null);
    let fx = chat
        .on_event(&state, name, packet.id, payload, allowed, Instant::now())
        .await;
    effects::run(shard, Some(conn), shard.socket_key(local), &state, fx);
}

/// A `/chat` event from the fast decode path.
pub async fn on_raw_event(shard: &Rc<Shard>, conn: &Rc<Conn>, local: u64, event: &RawEvent) {
    let Some(chat) = shard.chat.as_ref() else {
        return;
    };
    let Some((state, allowed)) = socket_and_rate(shard, conn, local) else {
        return;
    };
    let fx = chat
        .on_raw_event(&state, event, allowed, Instant::now())
        .await;
    effects::run(shard, Some(conn), shard.socket_key(local), &state, fx);
}

/// The cluster reports `user`'s first socket or last on this node: `user:online` /
/// `user:offline` to the user's partners when that changes the state over every node.
pub fn presence_changed(user: UserKey, online: bool) {
    let Some(shard) = crate::shard::current() else {
        return;
    };
    if shard.adapter().local_presence(user, online) {
        presence_announce(user, online);
    }
}

/// `user:online` / `user:offline` to the user's partners with sockets on this node, if that is
/// still the truth (over every node) once they are known.
pub fn presence_announce(user: UserKey, online: bool) {
    let Some(shard) = crate::shard::current() else {
        return;
    };
    tokio::task::spawn_local(async move {
        let Some(chat) = shard.chat.as_ref() else {
            return;
        };
        let partners = match chat.partners(user).await {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "presence: partners unavailable");
                return;
            }
        };
        // The state may have flipped while the store answered; announce only the current truth.
        if shard.adapter().check_online(&*shard, user).get().await != online {
            return;
        }
        let frame = chatwire_chat::presence::changed(user, online);
        shard.adapter().notify_users(&*shard, partners, frame);
    });
}
