//! The connection task: one per simulated user, owning its WebSocket.
//!
//! It answers Engine.IO pings, writes the frames the scenario asks for, matches replies
//! (`message:sent` by `tempId`, any awaited event by name) and records every `message:new` it
//! receives into the user's delivery histogram, from the send timestamp carried in the content.
//! When the scenario stops the user (or the server drops it) the task returns the user's
//! [`UserStats`] to be merged.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::net::Ws;
use crate::stats::{Live, UserStats};
use crate::wire::{self, Incoming, Wire};

/// Largest number of commands queued for one connection.
pub const COMMAND_QUEUE: usize = 16;
/// Largest number of replies one user may wait for at once.
const MAX_PENDING: usize = 64;

/// What a reply resolves to: the latency, or the error code the server (or the transport) gave.
pub type Reply = Result<Duration, String>;

/// Instructions from the scenario to the connection task.
#[derive(Debug)]
pub enum Command {
    /// Write this frame; no reply expected (typing).
    Emit(String),
    /// Write this `message:send` frame and resolve `reply` on `message:sent` / `message:error`
    /// carrying `temp_id`.
    Send {
        /// The encoded frame.
        frame: String,
        /// Our tempId (a number).
        temp_id: u64,
        /// Who waits for the answer.
        reply: oneshot::Sender<Reply>,
    },
    /// Write this frame and resolve `reply` on the next event named `event` (or on the
    /// `error_event`, whose `error` field becomes the error code).
    Request {
        /// The encoded frame.
        frame: String,
        /// Reply event name (`conversation:joined`, `message:read:success`).
        event: &'static str,
        /// Error event name (`conversation:error`).
        error_event: &'static str,
        /// Who waits for the answer.
        reply: oneshot::Sender<Reply>,
    },
    /// Close the connection and return the stats.
    Close,
}

/// Per-user values the scenario reads while the task runs.
#[derive(Debug, Default)]
pub struct Shared {
    /// Largest delivery latency (us) since the scenario last took it.
    pub round_max_us: AtomicU64,
    /// Newest message id received (for `message:read`).
    pub last_message_id: AtomicI64,
}

/// A reply someone waits for.
struct Pending {
    /// What resolves it.
    key: PendingKey,
    /// When the request was written.
    at: Instant,
    /// The waiter.
    reply: oneshot::Sender<Reply>,
}

/// How a pending reply is recognised.
enum PendingKey {
    /// `message:sent` / `message:error` with this tempId.
    TempId(u64),
    /// The next event with one of these names (reply, error).
    Event(&'static str, &'static str),
}

/// Everything the task needs besides the socket.
pub struct TaskCtx {
    /// Run-wide counters.
    pub live: Arc<Live>,
    /// Joined members of this user's conversation (for expected deliveries).
    pub room_members: Arc<AtomicU64>,
    /// Values the scenario reads.
    pub shared: Arc<Shared>,
}

/// Drives one connection until [`Command::Close`], the command channel closing, or the server
/// closing; returns the user's latencies.
pub async fn run(
    mut ws: Ws,
    mut wire: Wire,
    early: Vec<Incoming>,
    mut commands: mpsc::Receiver<Command>,
    ctx: TaskCtx,
) -> UserStats {
    let mut stats = UserStats::default();
    let mut pending: Vec<Pending> = Vec::new();
    for ev in early {
        on_incoming(ev, &mut stats, &mut pending, &ctx);
    }
    let mut closing = false;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if wire.feed(text.as_bytes()).is_err() {
                        ctx.live.error("undecodable_frame");
                        break;
                    }
                    if !drive(&mut ws, &mut wire, &mut stats, &mut pending, &ctx).await {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            command = commands.recv() => {
                // No frame for pingInterval + pingTimeout means the server is gone.
                wire.check_timeout();
                if !drive(&mut ws, &mut wire, &mut stats, &mut pending, &ctx).await {
                    break;
                }
                let (frame, wait) = match command {
                    None | Some(Command::Close) => { closing = true; break; }
                    Some(Command::Emit(frame)) => (frame, None),
                    Some(Command::Send { frame, temp_id, reply }) =>
                        (frame, Some((PendingKey::TempId(temp_id), reply))),
                    Some(Command::Request { frame, event, error_event, reply }) =>
                        (frame, Some((PendingKey::Event(event, error_event), reply))),
                };
                if let Some((key, reply)) = wait {
                    if pending.len() >= MAX_PENDING {
                        let _ = reply.send(Err("too_many_pending".into()));
                        continue;
                    }
                    pending.push(Pending { key, at: Instant::now(), reply });
                }
                if ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
        }
    }
    if closing {
        let _ = ws.close(None).await;
    } else {
        Live::add(&ctx.live.dropped, 1);
        ctx.live.error("connection_lost");
    }
    for p in pending.drain(..) {
        let _ = p.reply.send(Err("connection_lost".into()));
    }
    stats.flush(&ctx.live);
    stats
}

/// Writes what the protocol state queued (pongs) and handles every decoded packet; false when
/// the session or the socket ended.
async fn drive(
    ws: &mut Ws,
    wire: &mut Wire,
    stats: &mut UserStats,
    pending: &mut Vec<Pending>,
    ctx: &TaskCtx,
) -> bool {
    while let Some(frame) = wire.poll_transmit() {
        if ws.send(Message::text(frame)).await.is_err() {
            return false;
        }
    }
    while let Some(incoming) = wire.poll() {
        match incoming {
            Ok(Incoming::Close) => return false,
            Ok(ev) => on_incoming(ev, stats, pending, ctx),
            Err(_) => {
                ctx.live.error("undecodable_packet");
                return false;
            }
        }
    }
    true
}

/// Handles one decoded packet.
fn on_incoming(ev: Incoming, stats: &mut UserStats, pending: &mut Vec<Pending>, ctx: &TaskCtx) {
    let live = &ctx.live;
    let (name, args) = match ev {
        Incoming::Delivered { id, content } => {
            delivered(id, content.as_deref(), stats, ctx);
            return;
        }
        Incoming::Event { name, args } => (name, args),
        _ => return,
    };
    match name.as_str() {
        "message:new" => delivered(
            wire::i64_field(&args, "id"),
            wire::str_field(&args, "content").as_deref(),
            stats,
            ctx,
        ),
        "message:sent" | "message:error" => {
            let temp_id = wire::u64_field(&args, "tempId");
            let found = pending
                .iter()
                .position(|p| matches!(p.key, PendingKey::TempId(t) if Some(t) == temp_id));
            let Some(i) = found else {
                live.error("unmatched_reply");
                return;
            };
            let p = pending.swap_remove(i);
            if name == "message:sent" {
                let latency = p.at.elapsed();
                crate::stats::record(&mut stats.sent, micros(latency));
                Live::add(&live.sent_acks, 1);
                let others = ctx.room_members.load(Ordering::Relaxed).saturating_sub(1);
                Live::add(&live.expected_deliveries, others);
                if let Some(id) = wire::message_id(&args) {
                    ctx.shared.last_message_id.fetch_max(id, Ordering::Relaxed);
                }
                let _ = p.reply.send(Ok(latency));
            } else {
                let code = wire::str_field(&args, "error").unwrap_or_else(|| "unknown".into());
                live.error(&code);
                let _ = p.reply.send(Err(code));
            }
        }
        other => {
            let found = pending.iter().position(
                |p| matches!(p.key, PendingKey::Event(ok, err) if ok == other || err == other),
            );
            if let Some(i) = found {
                let p = pending.swap_remove(i);
                let result = match p.key {
                    PendingKey::Event(ok, _) if ok == other => Ok(p.at.elapsed()),
                    _ => {
                        let code =
                            wire::str_field(&args, "error").unwrap_or_else(|| other.to_owned());
                        live.error(&code);
                        Err(code)
                    }
                };
                let _ = p.reply.send(result);
            } else if other == "error" || other == "conversation:error" {
                let code = wire::str_field(&args, "error").unwrap_or_else(|| other.to_owned());
                live.error(&code);
            } else {
                Live::add(&live.other_events, 1);
            }
        }
    }
}

/// Records one `message:new`: its delivery latency, from the send time in its content.
fn delivered(id: Option<i64>, content: Option<&str>, stats: &mut UserStats, ctx: &TaskCtx) {
    let live = &ctx.live;
    if let Some(sent_us) = content.and_then(send_stamp) {
        let us = wire::unix_micros().saturating_sub(sent_us);
        stats.delivery(us, live);
        ctx.shared.round_max_us.fetch_max(us, Ordering::Relaxed);
        Live::add(&live.deliveries, 1);
    } else {
        live.error("foreign_message");
    }
    if let Some(id) = id {
        ctx.shared.last_message_id.fetch_max(id, Ordering::Relaxed);
    }
}

/// Microseconds in a duration, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Content the load generator sends: `lg:<unix micros>:<user id>:<seq>` plus padding.
pub fn content(user_id: u64, seq: u64, pad: usize) -> String {
    let mut s = format!("lg:{}:{user_id}:{seq}", wire::unix_micros());
    if pad > 0 {
        s.push(' ');
        s.extend(std::iter::repeat_n('x', pad));
    }
    s
}

/// The send timestamp in a load generator message's content.
fn send_stamp(content: &str) -> Option<u64> {
    content.strip_prefix("lg:")?.split(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_carries_a_parsable_send_time() {
        let c = content(7, 3, 10);
        let stamp = send_stamp(&c);
        assert!(stamp.is_some_and(|s| s <= wire::unix_micros() && s > 1_600_000_000_000_000));
        assert!(c.ends_with(" xxxxxxxxxx"));
        assert_eq!(send_stamp("hello"), None);
    }
}
