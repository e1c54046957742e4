//! Server -> client acknowledgements: the server emits an event with an ack id and gets the
//! client's ACK arguments back through a oneshot. At most [`MAX_PENDING`] per socket; the map is
//! allocated only while an ack is pending.

use chatwire_protocol::json::Value;
use chatwire_protocol::socket::packet::Packet;
use tokio::sync::oneshot;

use super::{Nsp, emit};
use std::rc::Rc;

use crate::engine::conn::Conn;
use crate::shard::Shard;

/// Most unanswered server acks per socket; more are refused.
pub const MAX_PENDING: usize = 64;

/// Emits `event` with a JSON `payload` to socket `local` of `conn`, asking for an ack. None when
/// the socket is gone or has too many acks pending. The receiver yields the ACK arguments (it
/// errors if the socket disconnects first).
pub fn emit_with_ack(
    conn: &Conn,
    local: u64,
    event: &str,
    payload: &[u8],
) -> Option<oneshot::Receiver<Vec<Value>>> {
    let (nsp, id, rx) = {
        let mut st = conn.state.borrow_mut();
        let slot = st.sockets.iter_mut().find(|s| s.local == local)?;
        let acks = slot.acks.get_or_insert_with(Box::default);
        if acks.waiting.len() >= MAX_PENDING {
            return None;
        }
        let id = acks.next_id;
        acks.next_id += 1;
        let (tx, rx) = oneshot::channel();
        acks.waiting.insert(id, tx);
        (slot.nsp, id, rx)
    };
    conn.push(emit::frame(
        chatwire_protocol::socket::emit::event_with_ack(nsp.as_str(), id, event, payload),
    ));
    Some(rx)
}

/// Another node's `timeout().emitWithAck()`: the event to each local socket with an ack id; each
/// client's first ack argument (JSON) goes back on `emit.reply`, until `emit.timeout`.
pub fn emit_for_node(shard: &Rc<Shard>, emit: chatwire_cluster::AckEmit) {
    for local in &emit.sockets {
        let Some(conn) = shard.sockets.borrow().get(local).cloned() else {
            continue;
        };
        let Some(rx) = emit_with_ack(&conn, *local, &emit.event, emit.args.as_bytes()) else {
            continue;
        };
        let reply = emit.reply.clone();
        let timeout = emit.timeout;
        tokio::task::spawn_local(async move {
            if let Ok(Ok(args)) = tokio::time::timeout(timeout, rx).await {
                let mut out = Vec::new();
                match args.first() {
                    Some(v) => chatwire_protocol::json::write(v, &mut out),
                    None => out.extend_from_slice(b"null"),
                }
                let _ = reply.try_send(String::from_utf8_lossy(&out).into_owned());
            }
        });
    }
}

/// A client ACK for namespace `nsp`: hands its arguments to the waiting emitter.
pub fn on_ack(conn: &Conn, nsp: Nsp, packet: Packet) {
    let Some(id) = packet.id else { return };
    let tx = {
        let mut st = conn.state.borrow_mut();
        let Some(slot) = st.sockets.iter_mut().find(|s| s.nsp == nsp) else {
            return;
        };
        let Some(acks) = slot.acks.as_mut() else {
            return;
        };
        let tx = acks.waiting.remove(&id);
        if acks.waiting.is_empty() {
            slot.acks = None;
        }
        tx
    };
    if let Some(tx) = tx {
        let args = match packet.data {
            Some(Value::Array(items)) => *items,
            _ => Vec::new(),
        };
        let _ = tx.send(args);
    }
}
