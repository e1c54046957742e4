//! The conformance app (`chatwire conformance`): the server setup of Socket.IO's protocol test
//! suite. On connect it emits `auth` with the CONNECT payload (or `{}`); `message` is emitted back
//! as `message-back` with the same arguments; `message-with-ack` is acknowledged with them.

use chatwire_protocol::json::Value;
use chatwire_protocol::socket::packet::{Packet, PacketType};
use smallvec::SmallVec;

use super::Nsp;
use super::emit::frame;
use crate::engine::conn::Conn;
use crate::engine::outbox::Frame;

/// Encodes a packet (text part + attachments) into frames and queues them.
fn send_packet(conn: &Conn, packet: &Packet) {
    conn.push(frame(chatwire_protocol::socket::emit::packet(packet)));
    for a in &packet.attachments {
        conn.push(Frame::Binary(a.clone()));
    }
}

/// After a successful CONNECT: `auth` with the handshake payload.
pub fn on_connected(conn: &Conn, nsp: Nsp, auth: Option<Value>) {
    let auth = auth.unwrap_or_else(|| Value::Object(Box::default()));
    let packet = Packet {
        kind: PacketType::Event,
        nsp: nsp.as_str().to_owned(),
        id: None,
        data: Some(Value::Array(Box::new(vec![
            Value::String("auth".into()),
            auth,
        ]))),
        attachments: Vec::new(),
    };
    send_packet(conn, &packet);
}

/// An event on `/` or `/custom`.
pub fn on_event(conn: &std::rc::Rc<Conn>, nsp: Nsp, packet: Packet) {
    let Some(name) = packet.event_name() else {
        return;
    };
    let binary = !packet.attachments.is_empty();
    match name {
        "message" => {
            let mut items: Vec<Value> = match packet.data {
                Some(Value::Array(items)) => *items,
                _ => return,
            };
            if let Some(first) = items.first_mut() {
                *first = Value::String("message-back".into());
            }
            let reply = Packet {
                kind: if binary {
                    PacketType::BinaryEvent
                } else {
                    PacketType::Event
                },
                nsp: nsp.as_str().to_owned(),
                id: None,
                data: Some(Value::Array(Box::new(items))),
                attachments: packet.attachments,
            };
            send_packet(conn, &reply);
        }
        "message-with-ack" => {
            let Some(id) = packet.id else { return };
            let items: SmallVec<[Value; 4]> = match packet.data {
                Some(Value::Array(items)) => items.into_iter().skip(1).collect(),
                _ => return,
            };
            let reply = Packet {
                kind: if binary {
                    PacketType::BinaryAck
                } else {
                    PacketType::Ack
                },
                nsp: nsp.as_str().to_owned(),
                id: Some(id),
                data: Some(Value::Array(Box::new(items.into_vec()))),
                attachments: packet.attachments,
            };
            send_packet(conn, &reply);
        }
        "ask-ack" => ask_ack(conn, nsp),
        _ => {}
    }
}

/// Extension (not in the upstream suites): the server emits `question` with an ack id; the
/// client's ack arguments come back as `answer`. Exercises server -> client acks.
fn ask_ack(conn: &std::rc::Rc<Conn>, nsp: Nsp) {
    let Some(local) = super::find_socket(conn, nsp) else {
        return;
    };
    let Some(rx) = super::acks::emit_with_ack(conn, local, "question", b"\"ping?\"") else {
        return;
    };
    let conn = conn.clone();
    tokio::task::spawn_local(async move {
        if let Ok(Ok(args)) = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await {
            let mut items = vec![Value::String("answer".into())];
            items.extend(args);
            let packet = Packet {
                kind: PacketType::Event,
                nsp: nsp.as_str().to_owned(),
                id: None,
                data: Some(Value::Array(Box::new(items))),
                attachments: Vec::new(),
            };
            send_packet(&conn, &packet);
        }
    });
}
