//! Connection state recovery, the part with no I/O: what an offset is, how a socket's offsets
//! advance as positioned frames reach it, and where a recovery resumes.
//!
//! **An offset** is the string a recoverable event carries as its last argument. It names, for
//! every conversation whose events reached this socket since its session started, the last
//! message id delivered: `o` then `.<conversation>-<id>` per conversation, both base 36, sorted
//! by conversation (`o.2s-9ix`). Conversations with nothing new since the session's start are
//! not in it: the session row in the store keeps that start (`base`: each conversation of the
//! user and its last message id when the session started, read after the socket was subscribed).
//! So the client's last offset and the session row together give, per conversation, the last
//! message it received: `max(base[c], offset[c])`, and a recovery replays, per conversation, the
//! ids above that, merged in id order.
//!
//! **Why it cannot skip a message:** within a conversation, ids are committed in id order (one
//! writer lane per conversation on a node; on PostgreSQL the insert locks the conversation's row
//! first, so across nodes too) and its events reach a socket in id order (one room owner). So
//! "the last id of conversation c delivered" is a cursor with nothing below it missing, unlike
//! one largest id over all conversations, which a later commit of a smaller id in another
//! conversation (another lane, another node) would slip under. An id above `base[c]` was
//! committed after the socket was subscribed, so it was delivered live or is replayed.
//!
//! **Bounded:** at most [`MAX_OFFSET_ENTRIES`] conversations per offset. A session whose socket
//! got events from more conversations carries [`OVERFLOW`] instead, and cannot be recovered (the
//! client connects normally and reloads over REST). A recovery starts a new base where the
//! client was, so the count starts again from zero.
//!
//! **Read receipts** are not a sequence but a latest value: `message:read` says "reader r has
//! read conversation c up to m", and r's pointer only grows. So the offset also names, per
//! conversation and reader whose receipts reached the socket, the highest `m` it got:
//! `.<conversation>-<reader>-<m>` ([`crate::read::reader_key`]). What the client knows of r in c
//! is the highest of that and the session's read base; a recovery sends the current pointer of
//! every participant of the socket's rooms that is above it, one receipt per reader. Order does
//! not matter (a maximum), so receipts that cross shards or nodes out of order cannot make it
//! skip one. At most [`MAX_READ_ENTRIES`] readers are named; receipts of further readers still
//! go out live but are not named, so a recovery sends their pointer again (a repeat, never a
//! miss).

use std::collections::HashMap;
use std::hash::Hash;

use chatwire_protocol::socket::emit::{offset_tail_with, takes_offset, with_tail};
use chatwire_protocol::socket::{Position, TextFrame};

/// Most conversations an offset names (about 15 bytes each).
pub const MAX_OFFSET_ENTRIES: usize = 32;

/// The offset of a session whose socket got events of more than [`MAX_OFFSET_ENTRIES`]
/// conversations: not recoverable.
pub const OVERFLOW: &str = "x";

/// Most readers an offset names (about 20 bytes each).
pub const MAX_READ_ENTRIES: usize = 32;

/// Longest offset string accepted from a client (13 base-36 digits per number at most).
const MAX_OFFSET_LEN: usize = MAX_OFFSET_ENTRIES * 28 + MAX_READ_ENTRIES * 42 + 1;

/// A reader in a conversation: (conversation, [`crate::read::reader_key`]).
pub type Reader = (i64, i64);

/// Live frames held back at most while a recovery replays (more: the recovery is abandoned).
const MAX_HELD: usize = 4096;

/// What [`Cursors::admit_shared`] makes of a frame for one socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Not written: the client has it, or it is held back during a replay.
    Drop,
    /// Written as it is (no position, or no place for an offset).
    AsIs,
    /// Written without its closing `]` and then this tail (`,"<offset>"]`).
    WithTail(Vec<u8>),
}

/// A socket's place in its conversations, and the offsets it has been given.
#[derive(Debug, Default)]
pub struct Cursors {
    /// Where the session started: conversation -> last id then (from the session row), sorted
    /// by conversation. A sorted slice, not a map: every recoverable socket keeps it for its
    /// life, and it changes only when the session starts (`tests::cursors_stay_small`).
    base: Box<[(i64, i64)]>,
    /// Conversations advanced past `base`: the last id delivered, sorted by conversation.
    seen: Vec<(i64, i64)>,
    /// A recovered session: frames at or below `base` were received before the drop, or
    /// replayed, and are not delivered again.
    resumed: bool,
    /// More than [`MAX_OFFSET_ENTRIES`] conversations: offsets say [`OVERFLOW`].
    overflow: bool,
    /// While a recovery replays: live positioned frames, delivered (or dropped as repeats)
    /// after the replay.
    held: Option<Vec<TextFrame>>,
    /// The held frames overflowed [`MAX_HELD`]: the recovery must be abandoned.
    lost: bool,
    /// Read pointers the client had when the session started (a recovered session: where it
    /// was; from the session row), sorted by reader.
    read_base: Box<[(Reader, i64)]>,
    /// Readers whose receipts told the socket more than `read_base`: the highest pointer
    /// delivered, sorted, at most [`MAX_READ_ENTRIES`].
    reads: Vec<(Reader, i64)>,
}

impl Cursors {
    /// A new session starting at `base` (empty until the snapshot is read: every event is then
    /// named in the offset, which is safe). `resumed` for a recovered session.
    pub fn new(base: HashMap<i64, i64>, resumed: bool) -> Cursors {
        Cursors {
            base: sorted(base),
            resumed,
            ..Cursors::default()
        }
    }

    /// This session with the read pointers its client had when it started.
    pub fn with_read_base(mut self, read_base: HashMap<Reader, i64>) -> Cursors {
        self.read_base = sorted(read_base);
        self
    }

    /// The read pointers the client had when the session started.
    pub fn read_base(&self) -> &[(Reader, i64)] {
        &self.read_base
    }

    /// The highest pointer of `reader` the client has been told (0: nothing).
    pub fn read_known(&self, reader: Reader) -> i64 {
        let seen = self
            .reads
            .binary_search_by_key(&reader, |(r, _)| *r)
            .ok()
            .and_then(|i| self.reads.get(i))
            .map_or(0, |(_, m)| *m);
        seen.max(lookup(&self.read_base, reader).unwrap_or(0))
    }

    /// Sets the session's start, read after the socket was subscribed (fresh sessions).
    pub fn set_base(&mut self, base: HashMap<i64, i64>) {
        let seen = std::mem::take(&mut self.seen);
        self.seen = seen
            .into_iter()
            .filter(|(c, id)| base.get(c).is_none_or(|b| id > b))
            .collect();
        self.base = sorted(base);
    }

    /// The session's start.
    pub fn base(&self) -> &[(i64, i64)] {
        &self.base
    }

    /// Holds live frames back until [`Cursors::release`] (a recovery is replaying).
    pub fn hold(&mut self) {
        self.held = Some(Vec::new());
    }

    /// The live frames held back (during a replay, or until the CONNECT reply), to deliver
    /// through [`Cursors::admit`];
    /// None when they overflowed (abandon the recovery).
    pub fn release(&mut self) -> Option<Vec<TextFrame>> {
        let held = self.held.take().unwrap_or_default();
        (!std::mem::take(&mut self.lost)).then_some(held)
    }

    /// The frame to deliver for a positioned `frame` (its offset appended), or None: a repeat
    /// of what the client has, or held back during a replay. Unpositioned frames pass as they are.
    /// A read receipt ([`Position::Latest`]) is never dropped here: its pointer is noted.
    pub fn admit(&mut self, frame: &TextFrame) -> Option<TextFrame> {
        match self.admit_shared(frame) {
            Admitted::Drop => None,
            Admitted::AsIs => Some(frame.clone()),
            Admitted::WithTail(tail) => Some(with_tail(frame, &tail)),
        }
    }

    /// [`Cursors::admit`] for a frame shared by many recipients: what to write to this socket,
    /// without copying the frame (a fan-out writes the shared frame and the tail).
    pub fn admit_shared(&mut self, frame: &TextFrame) -> Admitted {
        let Some(position) = frame.position() else {
            return Admitted::AsIs;
        };
        if let Some(held) = self.held.as_mut() {
            if held.len() < MAX_HELD {
                held.push(frame.clone());
            } else {
                self.lost = true;
            }
            return Admitted::Drop;
        }
        let (stream, seq) = match position {
            Position::Event { stream, seq } => (stream, seq),
            Position::Latest { stream, key, seq } => {
                self.note_read((stream, key), seq);
                return self.tail_for(frame);
            }
        };
        let base = lookup(&self.base, stream);
        let slot = self.seen.binary_search_by_key(&stream, |(c, _)| *c);
        let last = match slot {
            Ok(i) => self.seen.get(i).map(|(_, id)| *id),
            Err(_) => None,
        };
        if last.is_some_and(|l| seq <= l) || (self.resumed && base.is_some_and(|b| seq <= b)) {
            return Admitted::Drop;
        }
        if base.is_none_or(|b| seq > b) {
            match slot {
                Ok(i) => {
                    if let Some(e) = self.seen.get_mut(i) {
                        e.1 = seq;
                    }
                }
                Err(i) => self.seen.insert(i, (stream, seq)),
            }
        }
        if self.seen.len() > MAX_OFFSET_ENTRIES {
            self.overflow = true;
        }
        self.tail_for(frame)
    }

    /// The frame with this socket's offset as a tail (or as it is, when it takes none).
    fn tail_for(&self, frame: &TextFrame) -> Admitted {
        if !takes_offset(frame) {
            return Admitted::AsIs;
        }
        Admitted::WithTail(offset_tail_with(self.offset_len(), |out| {
            self.write_offset(out)
        }))
    }

    /// The offset the client holds after the last admitted frame.
    pub fn offset(&self) -> String {
        let mut out = Vec::with_capacity(self.offset_len());
        self.write_offset(&mut out);
        // Only ASCII is written.
        String::from_utf8(out).unwrap_or_default()
    }

    /// An upper bound on the offset's length (13 base-36 digits per number).
    fn offset_len(&self) -> usize {
        1 + self.seen.len() * 28 + self.reads.len() * 42
    }

    /// Appends [`Cursors::offset`] to `out`.
    fn write_offset(&self, out: &mut Vec<u8>) {
        if self.overflow {
            out.extend_from_slice(OVERFLOW.as_bytes());
            return;
        }
        out.push(b'o');
        for (c, id) in &self.seen {
            out.push(b'.');
            push_base36(*c, out);
            out.push(b'-');
            push_base36(*id, out);
        }
        for ((c, reader), m) in &self.reads {
            out.push(b'.');
            push_base36(*c, out);
            out.push(b'-');
            push_base36(*reader, out);
            out.push(b'-');
            push_base36(*m, out);
        }
    }

    /// A live frame that was held while a recovery replayed: as [`Cursors::admit`], and a read
    /// receipt no newer than what the client now has (the replay sent the same pointer) is
    /// dropped.
    pub fn admit_held(&mut self, frame: &TextFrame) -> Option<TextFrame> {
        if let Some(Position::Latest { stream, key, seq }) = frame.position()
            && self.held.is_none()
            && seq <= self.read_known((stream, key))
        {
            return None;
        }
        self.admit(frame)
    }

    /// The client was told `reader`'s pointer `m`.
    fn note_read(&mut self, reader: Reader, m: i64) {
        if m <= lookup(&self.read_base, reader).unwrap_or(0) {
            return;
        }
        match self.reads.binary_search_by_key(&reader, |(r, _)| *r) {
            Ok(i) => {
                if let Some(e) = self.reads.get_mut(i) {
                    e.1 = e.1.max(m);
                }
            }
            // Past the limit the reader is not named: a recovery sends its pointer again.
            Err(i) if self.reads.len() < MAX_READ_ENTRIES => self.reads.insert(i, (reader, m)),
            Err(_) => {}
        }
    }
}

/// A map's entries as a slice sorted by key.
fn sorted<K: Ord>(map: HashMap<K, i64>) -> Box<[(K, i64)]> {
    let mut entries: Vec<(K, i64)> = map.into_iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries.into_boxed_slice()
}

/// The value of `key` in a slice sorted by key.
fn lookup<K: Ord>(entries: &[(K, i64)], key: K) -> Option<i64> {
    entries
        .binary_search_by(|(k, _)| k.cmp(&key))
        .ok()
        .and_then(|i| entries.get(i))
        .map(|(_, v)| *v)
}

/// What a client's offset names: per conversation the last message delivered, and per reader
/// the highest read pointer delivered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Offset {
    /// (conversation, last message id), by conversation.
    pub messages: Vec<(i64, i64)>,
    /// ((conversation, reader), highest pointer).
    pub reads: Vec<(Reader, i64)>,
}

/// The entries of an offset a client sent back; None when it is not one of ours (or says
/// [`OVERFLOW`]): a normal connect.
pub fn parse_offset(s: &str) -> Option<Offset> {
    if s.len() > MAX_OFFSET_LEN {
        return None;
    }
    let mut parts = s.split('.');
    if parts.next() != Some("o") {
        return None;
    }
    let number = |n: &str| i64::from_str_radix(n, 36).ok().filter(|n| *n > 0);
    let mut out = Offset::default();
    for part in parts {
        let mut fields = part.split('-');
        let c = number(fields.next()?)?;
        let a = number(fields.next()?)?;
        match fields.next() {
            None => out.messages.push((c, a)),
            Some(m) => out.reads.push(((c, a), number(m)?)),
        }
        if fields.next().is_some() {
            return None;
        }
    }
    (out.messages.len() <= MAX_OFFSET_ENTRIES && out.reads.len() <= MAX_READ_ENTRIES).then_some(out)
}

/// Where a recovery resumes: per conversation (or reader), the later of the session's start and
/// the client's offset (the last message, or the highest read pointer, the client received).
pub fn resume_point<K: Copy + Eq + Hash>(
    base: &HashMap<K, i64>,
    offset: &[(K, i64)],
) -> HashMap<K, i64> {
    let mut at = base.clone();
    for (c, id) in offset {
        let e = at.entry(*c).or_insert(0);
        *e = (*e).max(*id);
    }
    at
}

fn push_base36(n: i64, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = DIGITS.get((v % 36) as usize).copied().unwrap_or(b'0');
        }
        v /= 36;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or(b"0"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatwire_protocol::socket::emit;

    /// Every recoverable socket keeps its cursors (176 bytes, and a hash table per start map
    /// when they were maps).
    #[test]
    fn cursors_stay_small() {
        let size = std::mem::size_of::<Cursors>();
        assert!(size <= 112, "Cursors is {size} bytes");
        let c = Cursors::new(HashMap::from([(7, 3), (2, 9), (5, 1)]), false)
            .with_read_base(HashMap::from([((5, 2), 4), ((2, 8), 6)]));
        assert_eq!(c.base(), &[(2, 9), (5, 1), (7, 3)]);
        assert_eq!(c.read_base(), &[((2, 8), 6), ((5, 2), 4)]);
        assert_eq!(c.read_known((5, 2)), 4);
        assert_eq!(c.read_known((5, 3)), 0);
    }

    fn ev(c: i64, id: i64) -> TextFrame {
        emit::event(
            "/chat",
            "message:new",
            format!("{{\"id\":{id}}}").as_bytes(),
        )
        .at(Position::Event { stream: c, seq: id })
    }

    fn text(f: &TextFrame) -> String {
        String::from_utf8_lossy(f.as_bytes()).into_owned()
    }

    #[test]
    fn offsets_name_only_conversations_past_the_base_and_round_trip() {
        let mut c = Cursors::new(HashMap::from([(1, 10), (2, 20)]), false);
        assert_eq!(c.offset(), "o");
        let f = c.admit(&ev(2, 21)).map(|f| text(&f));
        assert_eq!(
            f.as_deref(),
            Some(r#"42/chat,["message:new",{"id":21},"o.2-l"]"#)
        );
        // At or below the base of a fresh session: delivered, not named.
        assert!(c.admit(&ev(1, 9)).is_some());
        assert!(c.admit(&ev(40, 1_000_000)).is_some());
        assert_eq!(c.offset(), "o.2-l.14-lfls");
        assert_eq!(
            parse_offset(&c.offset()).map(|o| o.messages),
            Some(vec![(2, 21), (40, 1_000_000)])
        );
        // A repeat of what was delivered is dropped.
        assert!(c.admit(&ev(2, 21)).is_none());
    }

    #[test]
    fn a_resumed_session_drops_what_the_client_had_and_holds_live_frames_during_replay() {
        let at = resume_point(&HashMap::from([(1, 10), (2, 20)]), &[(2, 25), (3, 4)]);
        assert_eq!(at, HashMap::from([(1, 10), (2, 25), (3, 4)]));
        let mut c = Cursors::new(at, true);
        c.hold();
        assert!(c.admit(&ev(2, 27)).is_none());
        let held = c.release().unwrap_or_default();
        assert_eq!(held.len(), 1);
        assert!(c.admit(&ev(2, 25)).is_none());
        assert!(c.admit(&ev(2, 26)).is_some());
        assert!(held.iter().all(|f| c.admit(f).is_some()));
        assert!(c.admit(&ev(2, 27)).is_none());
        assert_eq!(c.offset(), "o.2-r");
    }

    fn read(c: i64, reader: i64, m: i64) -> TextFrame {
        emit::event(
            "/chat",
            "message:read",
            format!("{{\"messageId\":{m}}}").as_bytes(),
        )
        .at(Position::Latest {
            stream: c,
            key: reader,
            seq: m,
        })
    }

    #[test]
    fn receipts_name_each_readers_highest_pointer_in_any_order() {
        let mut c = Cursors::new(HashMap::from([(1, 10)]), false)
            .with_read_base(HashMap::from([((1, 4), 8)]));
        // Live receipts are never dropped, even out of order or at the base.
        assert!(c.admit(&read(1, 4, 6)).is_some());
        assert_eq!(c.offset(), "o");
        let f = c.admit(&read(1, 4, 12)).map(|f| text(&f));
        assert_eq!(
            f.as_deref(),
            Some(r#"42/chat,["message:read",{"messageId":12},"o.1-4-c"]"#)
        );
        assert!(c.admit(&read(1, 4, 11)).is_some());
        assert!(c.admit(&ev(1, 11)).is_some());
        assert!(c.admit(&read(1, 5, 3)).is_some());
        assert_eq!(c.offset(), "o.1-b.1-4-c.1-5-3");
        assert_eq!(c.read_known((1, 4)), 12);
        assert_eq!(c.read_known((2, 4)), 0);
        let o = parse_offset(&c.offset()).unwrap_or_default();
        assert_eq!(o.messages, vec![(1, 11)]);
        assert_eq!(o.reads, vec![((1, 4), 12), ((1, 5), 3)]);
        // Where a recovery resumes: the base or the offset, whichever is higher.
        let at = resume_point(&HashMap::from([((1, 4), 20), ((2, 4), 1)]), &o.reads);
        assert_eq!(at, HashMap::from([((1, 4), 20), ((2, 4), 1), ((1, 5), 3)]));
    }

    #[test]
    fn receipts_held_during_a_replay_are_dropped_when_the_replay_carried_them() {
        let mut c = Cursors::new(HashMap::new(), true);
        c.hold();
        assert!(c.admit(&read(1, 4, 9)).is_none());
        assert!(c.admit(&read(1, 4, 10)).is_none());
        let held = c.release().unwrap_or_default();
        // The replay sends the current pointer, 9; the held 9 is then a repeat, 10 is not.
        assert!(c.admit(&read(1, 4, 9)).is_some());
        let out: Vec<_> = held.iter().filter_map(|f| c.admit_held(f)).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(c.offset(), "o.1-4-a");
    }

    #[test]
    fn readers_past_the_limit_are_delivered_but_not_named() {
        let mut c = Cursors::new(HashMap::new(), false);
        for reader in 1..=(MAX_READ_ENTRIES as i64 + 5) {
            assert!(c.admit(&read(1, reader, 2)).is_some());
        }
        let o = parse_offset(&c.offset()).unwrap_or_default();
        assert_eq!(o.reads.len(), MAX_READ_ENTRIES);
        assert_eq!(c.read_known((1, MAX_READ_ENTRIES as i64 + 1)), 0);
    }

    #[test]
    fn too_many_conversations_overflow_and_bad_offsets_are_refused() {
        let mut c = Cursors::new(HashMap::new(), false);
        for conv in 1..=(MAX_OFFSET_ENTRIES as i64 + 1) {
            assert!(c.admit(&ev(conv, 1)).is_some());
        }
        assert_eq!(c.offset(), OVERFLOW);
        for bad in [
            "",
            "x",
            "o.",
            "o.1",
            "o.1-0",
            "o.-1-2",
            "p.1-1",
            "o.zzzzzzzzzzzzzzz-1",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
        assert_eq!(parse_offset(&"o.1-1".repeat(200)), None);
        assert_eq!(parse_offset("o"), Some(Offset::default()));
        assert_eq!(parse_offset("o.1-2-3-4"), None);
        assert_eq!(parse_offset("o.1-2-0"), None);
    }
}
