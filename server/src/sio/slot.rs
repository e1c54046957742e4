//! What a connection keeps per namespace socket ([`SocketSlot`]): its namespace, ids, chat state
//! and pending server acks. Plain data, below the Socket.IO and chat logic that fill it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use chatwire_chat::ChatSocket;
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::packet::Packet;
use tokio::sync::oneshot;

use crate::shared::Mode;

/// The namespaces chatwire serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nsp {
    /// `/`: exists and accepts connections (no token needed).
    Root,
    /// `/chat`: the chat application.
    Chat,
    /// `/custom`: conformance mode only.
    Custom,
}

impl Nsp {
    /// The namespace for a name in this mode, None if it is not served.
    pub fn parse(mode: Mode, name: &str) -> Option<Nsp> {
        match (mode, name) {
            (_, "/" | "") => Some(Nsp::Root),
            (Mode::Chat, "/chat") => Some(Nsp::Chat),
            (Mode::Conformance, "/custom") => Some(Nsp::Custom),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Nsp::Root => "/",
            Nsp::Chat => "/chat",
            Nsp::Custom => "/custom",
        }
    }
}

/// A namespace socket on a connection.
#[derive(Debug)]
pub struct SocketSlot {
    /// Its namespace.
    pub nsp: Nsp,
    /// Shard-local socket number (`SocketKey.local`).
    pub local: u64,
    /// The `socket.id` the client sees.
    pub id: Box<str>,
    /// Chat state (`/chat` sockets only).
    pub chat: Option<Box<SocketChat>>,
    /// Server acks waiting for the client (allocated only while one is pending).
    pub acks: Option<Box<PendingAcks>>,
}

/// A chat socket's state as its connection keeps it.
#[derive(Debug)]
pub struct SocketChat {
    /// The chat rules' state of the socket (shared with its typing timers).
    pub state: Rc<RefCell<ChatSocket>>,
    /// When the token it connected with expires (Unix seconds); None for tokens without one.
    pub expires_at: Option<u64>,
    /// Its recoverable session (None when `RECOVERY_WINDOW` is 0).
    pub recovery: Option<Box<SessionRecovery>>,
}

/// A socket's recoverable session: its private id and its place in its conversations.
#[derive(Debug)]
pub struct SessionRecovery {
    /// The private id the client sends back to recover (the session row's key).
    pub pid: Box<str>,
    /// Offsets given to the client, repeats filtered, live frames held during a replay.
    pub cursors: chatwire_chat::recovery::Cursors,
    /// The session row is being written (1), and was changed again meanwhile (2).
    pub saving: u8,
}

/// Pending server acks of one socket.
#[derive(Debug, Default)]
pub struct PendingAcks {
    /// Next ack id.
    pub(crate) next_id: u64,
    /// Ack id -> who waits for the client's answer.
    pub(crate) waiting: HashMap<u64, oneshot::Sender<Vec<Value>>>,
}

/// The event arguments after the name (`["name", a, b]` -> `[a, b]`).
pub fn event_args(packet: &Packet) -> &[Value] {
    match &packet.data {
        Some(Value::Array(items)) => items.get(1..).unwrap_or(&[]),
        _ => &[],
    }
}
