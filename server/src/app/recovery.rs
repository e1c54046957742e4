//! Connection state recovery for `/chat` sockets (Socket.IO 4.6+'s handshake, kept in the
//! store so it survives the node): the session row, claiming it back on CONNECT, and the
//! replay of missed messages and read receipts from the store. What an offset is and why it
//! cannot skip a message or a receipt: [`chatwire_chat::recovery`].
//!
//! Life of a session row: written when the session starts (its base read after the socket was
//! subscribed) and whenever its rooms change, so nothing needs writing at a crash; its expiry
//! moves to `now + RECOVERY_WINDOW` when the transport drops, and live sessions' expiries are
//! refreshed every third of the window, so a SIGKILLed node's sessions stay recoverable for at
//! least two thirds of the window. An explicit disconnect deletes it.

use std::collections::HashMap;
use std::rc::Rc;

use chatwire_chat::recovery::{Cursors, Reader, parse_offset, resume_point};
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::TextFrame;
use chatwire_store::{HistoryQuery, RecoverySession, Store, StoreError, UserKey};

use crate::engine::conn::Conn;
use crate::shard::Shard;
use crate::sio::slot::SessionRecovery;

/// Longest `pid` accepted from a client.
const MAX_PID_LEN: usize = 64;

/// History page size while collecting missed messages.
const PAGE: u32 = 100;

/// Most read pointers a session row keeps (more: the others' receipts may be sent again).
const MAX_ROW_READS: usize = 1024;

/// What the session row keeps besides its key: the socket's rooms and where the session started.
#[derive(serde::Serialize, serde::Deserialize)]
struct RowState {
    /// Conversations whose room the socket had joined.
    rooms: Vec<i64>,
    /// Conversation -> last message id when the session started.
    base: Vec<(i64, i64)>,
    /// (conversation, reader, read pointer) the client had when the session started, for the
    /// socket's rooms (rows written before read receipts were recovered have none).
    #[serde(default)]
    reads: Vec<(i64, i64, i64)>,
}

/// A session a reconnecting client may take back.
#[derive(Debug)]
pub struct Claim {
    /// Its private id (kept).
    pub pid: Box<str>,
    /// Its socket id (taken again).
    pub sid: String,
    /// Its rooms (joined again).
    pub rooms: Vec<i64>,
    /// Per conversation, the last message the client received.
    pub resume: HashMap<i64, i64>,
    /// Per reader of the rooms, the highest read pointer the client was told.
    pub reads: HashMap<Reader, i64>,
}

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn window_ms(shard: &Shard) -> i64 {
    shard.shared.chat.as_ref().map_or(0, |c| {
        i64::try_from(c.recovery_window.as_millis()).unwrap_or(i64::MAX)
    })
}

/// A new private id: 24 unpredictable hex digits.
pub fn new_pid() -> Box<str> {
    let mut s = String::with_capacity(24);
    for b in crate::ids::random_12() {
        s.push_str(&format!("{b:02x}"));
    }
    s.into_boxed_str()
}

/// The session `auth` asks to recover (`pid` and `offset`, both strings, as socket.io-client
/// sends them), if it exists, has not expired and belongs to `user`. Anything else, bad values
/// included, is None: a normal connect.
pub async fn claim(shard: &Shard, user: UserKey, auth: Option<&Value>) -> Option<Claim> {
    let shared = shard.shared.chat.as_ref()?;
    let field = |name| match auth.and_then(|a| chatwire_chat::payload::field(a, name)) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let (pid, offset) = (field("pid")?, field("offset")?);
    if pid.is_empty() || pid.len() > MAX_PID_LEN {
        return None;
    }
    let offset = parse_offset(offset)?;
    let row = match shared.store.recovery_load(pid, now_ms()).await {
        Ok(row) => row?,
        Err(e) => {
            tracing::warn!(error = %e, "recovery: session unavailable, connecting normally");
            return None;
        }
    };
    if row.user != user {
        return None;
    }
    let state: RowState = serde_json::from_str(&row.state).ok()?;
    let base: HashMap<i64, i64> = state.base.into_iter().collect();
    let read_base: HashMap<Reader, i64> = state
        .reads
        .into_iter()
        .map(|(c, reader, m)| ((c, reader), m))
        .collect();
    let mut reads = resume_point(&read_base, &offset.reads);
    reads.retain(|(c, _), _| state.rooms.contains(c));
    Some(Claim {
        pid: row.pid.into_boxed_str(),
        sid: row.sid,
        resume: resume_point(&base, &offset.messages),
        rooms: state.rooms,
        reads,
    })
}

/// The missed events of a recovered socket of `user`: first its missed messages, in id order
/// (per conversation, every message after `resume`: `message:new` where the socket had joined
/// the room, else `message:notification` for others' messages), then [`missed_reads`]. None
/// when there are more than `RECOVERY_MAX_EVENTS` or the store failed: no recovery.
pub async fn missed(shard: &Shard, user: UserKey, claim: &Claim) -> Option<Vec<TextFrame>> {
    let mut frames = missed_messages(shard, user, &claim.rooms, &claim.resume).await?;
    frames.extend(missed_reads(shard, &claim.rooms, &claim.reads).await?);
    let max = shard.shared.chat.as_ref()?.recovery_max_events;
    (frames.len() <= max).then_some(frames)
}

/// One `message:read` per participant of the rooms whose read pointer is above what the client
/// was told (`reads`, 0 when it was told nothing): the reader's current pointer, which
/// supersedes every receipt of that reader it missed. The user's own pointer counts too (its
/// other devices, REST); its reads through this socket are in `reads` already (the reply
/// `message:read:success` moved the offset).
async fn missed_reads(
    shard: &Shard,
    rooms: &[i64],
    reads: &HashMap<Reader, i64>,
) -> Option<Vec<TextFrame>> {
    if rooms.is_empty() {
        return Some(Vec::new());
    }
    let shared = shard.shared.chat.as_ref()?;
    let pointers = match shared.store.read_pointers(rooms).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "recovery: read pointers unavailable");
            return None;
        }
    };
    let mut frames: Vec<(i64, TextFrame)> = pointers
        .into_iter()
        .filter(|(c, reader, m)| {
            chatwire_chat::read::reader_key(*reader)
                .is_none_or(|key| *m > reads.get(&(*c, key)).copied().unwrap_or(0))
        })
        .map(|(c, reader, m)| (m, chatwire_chat::read::receipt(c, m, reader)))
        .collect();
    frames.sort_unstable_by_key(|(m, _)| *m);
    Some(frames.into_iter().map(|(_, f)| f).collect())
}

/// The missed messages of a recovered socket, in id order.
async fn missed_messages(
    shard: &Shard,
    user: UserKey,
    rooms: &[i64],
    resume: &HashMap<i64, i64>,
) -> Option<Vec<TextFrame>> {
    let shared = shard.shared.chat.as_ref()?;
    let max = shared.recovery_max_events;
    let store = &shared.store;
    let last = match store.last_message_ids(user).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "recovery: store unavailable");
            return None;
        }
    };
    let mut messages = Vec::new();
    for (conversation, last_id) in last {
        // Conversations are never joined later: one unknown to the session was created after
        // it started, and every message in it is new.
        let from = resume.get(&conversation).copied().unwrap_or(0);
        if last_id <= from {
            continue;
        }
        let mut before = None;
        loop {
            let query = HistoryQuery {
                before,
                limit: PAGE,
                search: None,
            };
            let page = match store.history(conversation, user, query).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "recovery: history unavailable");
                    return None;
                }
            };
            let mut reached = false;
            for m in page.messages {
                if m.id <= from {
                    reached = true;
                    break;
                }
                before = Some(m.id);
                messages.push(m);
            }
            if messages.len() > max {
                return None;
            }
            if reached || page.next_cursor.is_none() {
                break;
            }
        }
    }
    messages.sort_unstable_by_key(|m| m.id);
    let frames = messages
        .iter()
        .filter_map(|m| {
            let (new, note) = chatwire_chat::message::replayed(m);
            if rooms.contains(&m.conversation_id) {
                Some(new)
            } else {
                (m.sender != user).then_some(note)
            }
        })
        .collect();
    Some(frames)
}

/// Writes the session row of socket `local` now (before a recovered socket gets frames with
/// offsets that name the new base). Nothing to write (the socket is gone) is Ok.
pub async fn write(shard: &Shard, conn: &Conn, local: u64) -> Result<(), StoreError> {
    let Some(shared) = shard.shared.chat.as_ref() else {
        return Ok(());
    };
    let Some(row) = row_of(conn, local, now_ms().saturating_add(window_ms(shard))) else {
        return Ok(());
    };
    shared.store.recovery_save(&row).await
}

/// The session row of socket `local` as it is now; None when it is gone or not recoverable.
fn row_of(conn: &Conn, local: u64, expires_at_ms: i64) -> Option<RecoverySession> {
    let st = conn.state.borrow();
    let slot = st.sockets.iter().find(|s| s.local == local)?;
    let chat = slot.chat.as_ref()?;
    let r = chat.recovery.as_ref()?;
    let chat_state = chat.state.borrow();
    let mut base: Vec<(i64, i64)> = r.cursors.base().iter().map(|(c, i)| (*c, *i)).collect();
    base.sort_unstable();
    let rooms = chat_state.rooms.to_vec();
    let mut reads: Vec<(i64, i64, i64)> = r
        .cursors
        .read_base()
        .iter()
        .filter(|((c, _), _)| rooms.contains(c))
        .map(|((c, reader), m)| (*c, *reader, *m))
        .collect();
    reads.sort_unstable();
    reads.truncate(MAX_ROW_READS);
    let state = RowState { rooms, base, reads };
    Some(RecoverySession {
        pid: r.pid.to_string(),
        user: chat_state.user,
        sid: slot.id.to_string(),
        state: serde_json::to_string(&state).ok()?,
        expires_at_ms,
    })
}

/// Runs `f` on the recoverable session of socket `local`, if it has one.
fn with_session<T>(
    conn: &Conn,
    local: u64,
    f: impl FnOnce(&mut SessionRecovery) -> T,
) -> Option<T> {
    let mut st = conn.state.borrow_mut();
    let slot = st.sockets.iter_mut().find(|s| s.local == local)?;
    slot.chat.as_mut()?.recovery.as_mut().map(|r| f(r))
}

/// The session of socket `local` changed (its rooms): writes its row, one write at a time, the
/// last state winning.
pub fn save(shard: &Rc<Shard>, conn: &Rc<Conn>, local: u64) {
    let start = with_session(conn, local, |r| {
        let idle = r.saving == 0;
        r.saving = if idle { 1 } else { 2 };
        idle
    });
    if start != Some(true) {
        return;
    }
    let (shard, conn) = (shard.clone(), conn.clone());
    tokio::task::spawn_local(async move {
        loop {
            if let Err(e) = write(&shard, &conn, local).await {
                tracing::warn!(error = %e, "recovery: session not saved");
            }
            let again = with_session(&conn, local, |r| {
                let again = r.saving == 2;
                r.saving = u8::from(again);
                again
            });
            if again != Some(true) {
                return;
            }
        }
    });
}

/// A fresh session of socket `local`: reads where `user`'s conversations stand (the socket is
/// already subscribed), makes that its base and writes its row (before `connection:success`
/// gives the client its first offset). The store failing leaves the socket without a
/// recoverable session (the pid it got is unknown to every node: a normal connect).
pub async fn start(shard: &Rc<Shard>, conn: &Conn, local: u64, user: UserKey) {
    let Some(shared) = shard.shared.chat.as_ref() else {
        return;
    };
    keep_alive(shard);
    let saved = match shared.store.last_message_ids(user).await {
        Ok(base) => {
            with_session(conn, local, |r| {
                r.cursors.set_base(base.into_iter().collect());
            });
            write(shard, conn, local).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = saved {
        tracing::warn!(error = %e, "recovery: session not started");
        let held = {
            let mut st = conn.state.borrow_mut();
            st.sockets
                .iter_mut()
                .find(|s| s.local == local)
                .and_then(|s| s.chat.as_mut())
                .and_then(|chat| chat.recovery.take())
                .and_then(|mut r| r.cursors.release())
        };
        for f in held.unwrap_or_default() {
            conn.push(crate::sio::emit::frame(f));
        }
    }
}

/// Delivers the live frames held while the session was set up (after the CONNECT reply), with
/// their offsets; too many held: the connection ends like a client that stopped reading.
pub fn release(conn: &Conn, local: u64) {
    let out = with_session(conn, local, |r| {
        let held = r.cursors.release()?;
        Some(
            held.iter()
                .filter_map(|f| r.cursors.admit(f))
                .collect::<Vec<_>>(),
        )
    });
    match out {
        Some(Some(frames)) => {
            for f in frames {
                conn.push(crate::sio::emit::frame(f));
            }
        }
        Some(None) => (conn.on_overflow)(conn),
        None => {}
    }
}

thread_local! {
    /// This shard thread runs its [`keep_alive`] task.
    static KEEPING_ALIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Most pids per expiry update.
const TOUCH_CHUNK: usize = 10_000;

/// Keeps the rows of this shard's connected sessions from expiring while their sockets live
/// (a node killed with SIGKILL never says its sockets dropped): every third of the window, one
/// update per 10,000 sessions moves their expiry to `now + RECOVERY_WINDOW`; shard 0 also
/// deletes expired rows. Started by the shard's first recoverable session.
fn keep_alive(shard: &Rc<Shard>) {
    if KEEPING_ALIVE.with(|k| k.replace(true)) {
        return;
    }
    let Some(shared) = shard.shared.chat.as_ref() else {
        return;
    };
    let store = shared.store.clone();
    let period = (shared.recovery_window / 3).max(std::time::Duration::from_secs(1));
    let shard = shard.clone();
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(period).await;
            let pids: Vec<String> = {
                let sockets = shard.sockets.borrow();
                sockets
                    .iter()
                    .filter_map(|(local, conn)| {
                        let st = conn.state.borrow();
                        let slot = st.sockets.iter().find(|s| s.local == *local)?;
                        Some(slot.chat.as_ref()?.recovery.as_ref()?.pid.to_string())
                    })
                    .collect()
            };
            let expires = now_ms().saturating_add(window_ms(&shard));
            for chunk in pids.chunks(TOUCH_CHUNK) {
                if let Err(e) = store.recovery_touch(chunk, expires).await {
                    tracing::warn!(error = %e, "recovery: sessions not kept alive");
                }
            }
            if shard.index == 0
                && let Err(e) = store.recovery_purge(now_ms()).await
            {
                tracing::warn!(error = %e, "recovery: expired sessions not purged");
            }
        }
    });
}

/// A new recoverable session for a socket (fresh: base read later by [`start`]; recovered:
/// starting where the client was, live frames held until the replay is out).
pub fn session(claim: Option<&Claim>) -> Box<SessionRecovery> {
    let (pid, cursors) = match claim {
        Some(c) => {
            let mut cursors = Cursors::new(c.resume.clone(), true).with_read_base(c.reads.clone());
            cursors.hold();
            (c.pid.clone(), cursors)
        }
        // Live messages wait until the row is written ([`release`]): the store is read first.
        None => {
            let mut cursors = Cursors::new(HashMap::new(), false);
            cursors.hold();
            (new_pid(), cursors)
        }
    };
    Box::new(SessionRecovery {
        pid,
        cursors,
        saving: 0,
    })
}

/// Sessions whose socket ended, waiting for their store write (one per shard thread).
#[derive(Default)]
struct Ended {
    /// Transport lost: the row stays, expiring `RECOVERY_WINDOW` from now.
    touch: Vec<String>,
    /// The client disconnected on purpose: the row goes.
    delete: Vec<String>,
    /// A task is writing them.
    flushing: bool,
}

thread_local! {
    static ENDED: std::cell::RefCell<Ended> = std::cell::RefCell::default();
}

/// The socket is gone: an explicit disconnect forgets the session; a lost transport leaves it
/// recoverable for `RECOVERY_WINDOW` from now. Written in batches (one statement for all the
/// sockets that ended meanwhile: a storm of drops is a few statements, not one per socket).
pub fn ended(shard: &Rc<Shard>, pid: Box<str>, explicit: bool) {
    let start = ENDED.with(|e| {
        let mut e = e.borrow_mut();
        if explicit {
            e.delete.push(pid.into());
        } else {
            e.touch.push(pid.into());
        }
        !std::mem::replace(&mut e.flushing, true)
    });
    if !start {
        return;
    }
    let Some(shared) = shard.shared.chat.as_ref() else {
        return;
    };
    let store = shared.store.clone();
    let window = window_ms(shard);
    tokio::task::spawn_local(async move {
        loop {
            let (touch, delete) = ENDED.with(|e| {
                let mut e = e.borrow_mut();
                let taken = (std::mem::take(&mut e.touch), std::mem::take(&mut e.delete));
                e.flushing = !(taken.0.is_empty() && taken.1.is_empty());
                taken
            });
            if touch.is_empty() && delete.is_empty() {
                return;
            }
            let expires = now_ms().saturating_add(window);
            for chunk in touch.chunks(TOUCH_CHUNK) {
                if let Err(e) = store.recovery_touch(chunk, expires).await {
                    tracing::warn!(error = %e, "recovery: dropped sessions not recorded");
                }
            }
            for chunk in delete.chunks(TOUCH_CHUNK) {
                if let Err(e) = store.recovery_delete(chunk).await {
                    tracing::warn!(error = %e, "recovery: ended sessions not deleted");
                }
            }
        }
    });
}

/// True while this shard thread still writes ended sessions (shutdown waits for it: a store
/// call must not be cut off when the shard's runtime stops).
pub fn writes_pending() -> bool {
    ENDED.with(|e| e.borrow().flushing)
}

/// Sends a recovered socket `user:online` for each of its partners online now (presence changes
/// are not replayed).
pub fn partners_online(shard: &Rc<Shard>, conn: &Rc<Conn>, user: UserKey) {
    let (shard, conn) = (shard.clone(), conn.clone());
    tokio::task::spawn_local(async move {
        let Some(chat) = shard.chat.as_ref() else {
            return;
        };
        let partners = match chat.partners(user).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "recovery: partners unavailable");
                return;
            }
        };
        for p in partners.iter().copied() {
            let online = match shard.adapter().check_online(&*shard, p) {
                chatwire_cluster::Online::Now(o) => o,
                later => later.get().await,
            };
            if online && !conn.closed.get() {
                conn.push(crate::sio::emit::frame(chatwire_chat::presence::changed(
                    p, true,
                )));
            }
        }
    });
}

/// Recovers socket `local` of `user` from `claim`: joins its rooms again (subscribed before the
/// store is read, so nothing committed later is missed), writes the session's new base (where
/// the client was), then sends every missed message and, after them, the live frames held back
/// meanwhile, repeats dropped. False: nothing was sent and the socket is a fresh session with no
/// room (too many missed messages, or the store failed).
pub async fn resume(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    local: u64,
    user: UserKey,
    claim: Claim,
) -> bool {
    let Some(state) = chat_state(conn, local) else {
        return false;
    };
    keep_alive(shard);
    let key = shard.socket_key(local);
    for room in &claim.rooms {
        if !state.borrow().rooms.contains(room) {
            state.borrow_mut().rooms.push(*room);
            let member = chatwire_cluster::Member {
                socket: key,
                user: Some(user),
            };
            shard
                .adapter()
                .join(&**shard, chatwire_chat::room_name(*room), member);
        }
    }
    let frames = match missed(shard, user, &claim).await {
        // Offsets naming the new base must not go out before the base is stored.
        Some(frames) => match write(shard, conn, local).await {
            Ok(()) => Some(frames),
            Err(e) => {
                tracing::warn!(error = %e, "recovery: session not saved");
                None
            }
        },
        None => None,
    };
    let Some(frames) = frames else {
        // Start over as a fresh session: no room, a new pid; held frames go out as live ones.
        for room in std::mem::take(&mut state.borrow_mut().rooms) {
            shard
                .adapter()
                .leave(&**shard, chatwire_chat::room_name(room), key);
        }
        let held = with_session(conn, local, |r| {
            let held = r.cursors.release().unwrap_or_default();
            *r = *session(None);
            held
        });
        for f in held.unwrap_or_default() {
            push_admitted(conn, local, &f);
        }
        return false;
    };
    metrics::counter!(crate::telemetry::RECOVERY_REPLAYED).increment(frames.len() as u64);
    let count = frames.len();
    let released = with_session(conn, local, |r| {
        // The replay goes through the cursors first (they advance), then what was held.
        let mut out: Vec<TextFrame> = Vec::with_capacity(count);
        let held = r.cursors.release();
        for f in &frames {
            out.extend(r.cursors.admit(f));
        }
        held.map(|held| {
            for f in &held {
                out.extend(r.cursors.admit_held(f));
            }
            out
        })
    });
    match released.flatten() {
        Some(out) => {
            for f in out {
                conn.push(crate::sio::emit::frame(f));
            }
            true
        }
        None => {
            // Live frames overflowed while the store answered: end the connection as a client
            // that stopped reading; it recovers again from the offset it holds.
            (conn.on_overflow)(conn);
            false
        }
    }
}

/// The chat rules' state of socket `local`.
fn chat_state(
    conn: &Conn,
    local: u64,
) -> Option<Rc<std::cell::RefCell<chatwire_chat::ChatSocket>>> {
    let st = conn.state.borrow();
    let slot = st.sockets.iter().find(|s| s.local == local)?;
    Some(slot.chat.as_ref()?.state.clone())
}

/// Pushes `frame` to socket `local` through its cursors (a repeat is dropped).
fn push_admitted(conn: &Conn, local: u64, frame: &TextFrame) {
    let out = with_session(conn, local, |r| r.cursors.admit(frame)).unwrap_or(Some(frame.clone()));
    if let Some(f) = out {
        conn.push(crate::sio::emit::frame(f));
    }
}

/// The offset socket `local`'s client holds after the frames sent so far (None: not recoverable).
pub fn offset(conn: &Conn, local: u64) -> Option<String> {
    with_session(conn, local, |r| r.cursors.offset())
}

/// The private id of socket `local`'s session.
pub fn pid(conn: &Conn, local: u64) -> Option<Box<str>> {
    with_session(conn, local, |r| r.pid.clone())
}
