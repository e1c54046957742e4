//! The byte stream under one WebSocket, shared by its connection task and its shard.
//!
//! tungstenite reads and writes through a [`Wire`] (it implements `AsyncRead`/`AsyncWrite`), and
//! the shard writes delivery frames straight into it ([`Wire::write_frames`]) from its message
//! loop, without waking the connection's task: one `writev` per connection per batch of shard
//! messages. Both writers share one FIFO of bytes the socket did not take yet, so frames never
//! interleave: a write goes to the socket only when nothing is waiting, the rest waits whole,
//! and `poll_flush` drains it when the socket is writable again. A write from tungstenite is
//! always taken whole (never left half in its buffer), which is what lets the shard write between
//! two of its writes. The FIFO is bounded like the connection's outbound queue, in bytes and in
//! pieces (a frame is two or three: its header, its shared payload, a recovery tail): past either
//! bound the client is not reading and the write fails, which ends the connection. The piece
//! bound keeps a stalled client in a busy room small (each piece is a 32-byte handle on a shared
//! payload) and ends it as soon as the outbound queue would have.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use smallvec::SmallVec;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::outbox::Frame;

/// Most slices handed to one `writev` (a header and a payload per frame).
const MAX_SLICES: usize = 64;

struct Inner {
    stream: TcpStream,
    /// Bytes accepted but not yet written, oldest first.
    pending: RefCell<VecDeque<Bytes>>,
    /// Sum of `pending`'s lengths.
    pending_len: Cell<usize>,
    /// Bound of `pending_len`.
    max_pending: usize,
    /// Bound of `pending.len()`.
    max_pieces: usize,
}

/// A WebSocket's TCP stream, shared by its task (through tungstenite) and its shard.
#[derive(Clone)]
pub struct Wire(Rc<Inner>);

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("pending", &self.0.pending_len.get())
            .finish_non_exhaustive()
    }
}

/// The client is not reading: more bytes wait than the bound allows.
fn overflow() -> io::Error {
    io::Error::new(
        io::ErrorKind::WriteZero,
        "client not reading: write backlog full",
    )
}

impl Wire {
    /// Wraps a stream; at most `max_frames` frames (counted as two pieces each) and
    /// `max_pending` bytes may wait for it.
    pub fn new(stream: TcpStream, max_frames: usize, max_pending: usize) -> Self {
        Wire(Rc::new(Inner {
            stream,
            pending: RefCell::new(VecDeque::new()),
            pending_len: Cell::new(0),
            max_pending,
            max_pieces: max_frames.saturating_mul(2).max(16),
        }))
    }

    /// The socket (for shutting down its write side).
    pub fn stream(&self) -> &TcpStream {
        &self.0.stream
    }

    /// True while bytes wait for the socket.
    pub fn has_pending(&self) -> bool {
        self.0.pending_len.get() > 0
    }

    fn push_pending(&self, bytes: Bytes) -> io::Result<()> {
        let len = self.0.pending_len.get() + bytes.len();
        if len > self.0.max_pending || self.0.pending.borrow().len() >= self.0.max_pieces {
            return Err(overflow());
        }
        self.0.pending_len.set(len);
        self.0.pending.borrow_mut().push_back(bytes);
        Ok(())
    }

    /// Writes what waits, as far as the socket takes it without blocking. True once nothing
    /// waits.
    fn drain(&self) -> io::Result<bool> {
        loop {
            let mut pending = self.0.pending.borrow_mut();
            if pending.is_empty() {
                return Ok(true);
            }
            let slices: Vec<IoSlice<'_>> = pending
                .iter()
                .take(MAX_SLICES)
                .map(|b| IoSlice::new(b))
                .collect();
            let written = match self.0.stream.try_write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            drop(slices);
            self.0.pending_len.set(self.0.pending_len.get() - written);
            consume(&mut pending, written);
            if pending.is_empty() && pending.capacity() > KEPT_PIECES {
                // Drained: give the block back (a connection that was slow once stays small).
                let held = backlog_size(&pending, 0);
                *pending = VecDeque::new();
                crate::heap::backlog_freed(held);
            }
        }
    }

    /// Writes frames as WebSocket messages (server frames: unmasked, final), straight to the
    /// socket when nothing waits, in one `writev` per [`MAX_SLICES`]; what the socket does not
    /// take waits in order. `Ok(true)`: all written; `Ok(false)`: some bytes wait, the task must
    /// flush when the socket is writable; `Err`: the socket failed or the client is not
    /// reading (the connection must end).
    pub fn write_frames(&self, frames: &[Frame]) -> io::Result<bool> {
        if !self.has_pending()
            && let Some(done) = self.write_small(frames)?
        {
            return Ok(done);
        }
        let mut headers: Vec<u8> = Vec::with_capacity(frames.len() * 4);
        let mut spans = Vec::with_capacity(frames.len());
        for frame in frames {
            let start = headers.len();
            header_of(frame)
                .format(frame.len() as u64, &mut headers)
                .map_err(io::Error::other)?;
            spans.push(start..headers.len());
        }
        let headers = Bytes::from(headers);
        let mut parts: Vec<Bytes> = Vec::with_capacity(frames.len() * 2);
        for (frame, span) in frames.iter().zip(spans) {
            parts.push(headers.slice(span));
            match frame {
                Frame::Text(t) => parts.push(Bytes::from(t.clone())),
                Frame::Binary(b) => parts.push(b.clone()),
                Frame::Tailed(t, tail) => {
                    let shared = Bytes::from(t.clone());
                    parts.push(shared.slice(..shared.len().saturating_sub(1)));
                    parts.push(tail.clone());
                }
            }
        }
        let mut parts: VecDeque<Bytes> = parts.into();
        while !self.has_pending() && !parts.is_empty() {
            let slices: Vec<IoSlice<'_>> = parts
                .iter()
                .take(MAX_SLICES)
                .map(|b| IoSlice::new(b))
                .collect();
            let want: usize = slices.iter().map(|s| s.len()).sum();
            let written = match self.0.stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            drop(slices);
            consume(&mut parts, written);
            if written < want {
                break;
            }
        }
        for part in parts {
            self.push_pending(part)?;
        }
        Ok(!self.has_pending())
    }

    /// [`Wire::write_frames`] for frames that fit [`SMALL_WRITE`] bytes with their headers (a
    /// chat message and its reply): copied into one buffer on the stack and written with one
    /// `send`, instead of four allocations (headers, spans, pieces, slices) and a `writev` of
    /// two slices per frame. What the socket does not take waits, copied. None: too large.
    fn write_small(&self, frames: &[Frame]) -> io::Result<Option<bool>> {
        let bound: usize = frames.iter().map(|f| f.len() + MAX_HEADER).sum();
        if bound > SMALL_WRITE {
            return Ok(None);
        }
        // Inline storage (never spills: `bound` fits), not zeroed first.
        let mut buf: SmallVec<[u8; SMALL_WRITE]> = SmallVec::new();
        for frame in frames {
            let mut header = [0u8; MAX_HEADER];
            let mut free: &mut [u8] = &mut header;
            header_of(frame)
                .format(frame.len() as u64, &mut free)
                .map_err(io::Error::other)?;
            let header_len = MAX_HEADER - free.len();
            let (head, tail) = match frame {
                Frame::Binary(b) => (&b[..], &[][..]),
                _ => frame.text_parts().unwrap_or_default(),
            };
            buf.extend_from_slice(&header[..header_len]);
            buf.extend_from_slice(head);
            buf.extend_from_slice(tail);
        }
        let used = buf.len();
        let written = match self.0.stream.try_write(&buf[..used]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written < used {
            self.push_pending(Bytes::copy_from_slice(&buf[written..used]))?;
            return Ok(Some(false));
        }
        Ok(Some(true))
    }
}

/// The header of `frame` as a server sends it: final, unmasked, text or binary.
fn header_of(frame: &Frame) -> FrameHeader {
    let opcode = match frame {
        Frame::Text(_) | Frame::Tailed(..) => OpCode::Data(Data::Text),
        Frame::Binary(_) => OpCode::Data(Data::Binary),
    };
    FrameHeader {
        opcode,
        ..FrameHeader::default()
    }
}

/// Frames whose bytes (headers included) fit this many go out through one stack buffer
/// ([`Wire::write_small`]).
const SMALL_WRITE: usize = 2048;

/// The longest header of an unmasked server frame (a 64-bit length).
const MAX_HEADER: usize = 10;

/// Most pieces whose block a drained FIFO keeps (a burst that the socket did not take at once).
const KEPT_PIECES: usize = 64;

/// Bytes a backlog holds: its block of handles and the bytes waiting in it.
fn backlog_size(pending: &VecDeque<Bytes>, pending_len: usize) -> usize {
    pending.capacity() * std::mem::size_of::<Bytes>() + pending_len
}

impl Drop for Inner {
    /// A connection dropped with a large backlog (a client that stopped reading) leaves its
    /// pages free in this shard's arena: they go back to the system (`heap`).
    fn drop(&mut self) {
        crate::heap::backlog_freed(backlog_size(self.pending.get_mut(), self.pending_len.get()));
    }
}

/// Drops `n` bytes from the front of `parts`.
fn consume(parts: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = parts.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            parts.pop_front();
        } else {
            let _ = front.split_to(n);
            n = 0;
        }
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let want = unfilled.len();
            // A read that returns less than it asked for emptied the socket's receive buffer, so
            // the readiness it was given is spent: clear it now (as tokio's own `TcpStream` does)
            // rather than learn it from one more `recvfrom` answering EAGAIN, one per message a
            // client sends. `try_io` clears only the readiness seen before the read: bytes that
            // arrived since set a newer one, which stays.
            let mut short = 0;
            let read = self.0.stream.try_io(Interest::READABLE, || {
                let n = (&*SockRef::from(&self.0.stream)).read(&mut unfilled[..])?;
                if n > 0 && n < want {
                    short = n;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match read {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => {
                    buf.advance(short);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Wire {
    /// Takes `buf` whole: straight to the socket when nothing waits, the rest behind what waits.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut written = 0;
        if !self.has_pending() {
            written = match self.0.stream.try_write(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Poll::Ready(Err(e)),
            };
        }
        if let Some(rest) = buf.get(written..)
            && !rest.is_empty()
        {
            self.push_pending(Bytes::copy_from_slice(rest))?;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.drain()? {
                return Poll::Ready(Ok(()));
            }
            ready!(self.0.stream.poll_write_ready(cx))?;
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        let _ = socket2::SockRef::from(&self.0.stream).shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A connected pair: the server side (for a [`Wire`]) and the client side. `small`: both
    /// ends get 16 KB buffers, so the socket fills quickly.
    async fn pair(small: bool) -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        if small {
            socket2::SockRef::from(&server)
                .set_send_buffer_size(16 << 10)
                .unwrap();
            socket2::SockRef::from(&client)
                .set_recv_buffer_size(16 << 10)
                .unwrap();
        }
        (server, client)
    }

    /// More than the socket buffer holds: the socket takes part, the rest waits whole, a later
    /// write queues behind it, and the client reads every frame once, in order.
    #[tokio::test]
    async fn a_full_socket_keeps_frames_whole_and_in_order() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_tungstenite::tungstenite::Utf8Bytes;
        let (server, mut client) = pair(true).await;
        let wire = Wire::new(server, 1 << 20, 64 << 20);
        let text = |i: usize| Frame::Text(Utf8Bytes::from(format!("{i:05}").repeat(3000)));
        let first: Vec<Frame> = (0..200).map(text).collect();
        let all_taken = wire.write_frames(&first).unwrap();
        assert!(!all_taken, "3 MB does not fit small socket buffers at once");
        assert!(wire.has_pending());
        let second: Vec<Frame> = (200..210).map(text).collect();
        assert!(
            !wire.write_frames(&second).unwrap(),
            "queued behind what waits"
        );
        let total = 210 * (4 + 15_000);
        let mut got = vec![0u8; total];
        let mut w = wire.clone();
        let (flushed, read) = tokio::join!(w.flush(), client.read_exact(&mut got));
        flushed.unwrap();
        read.unwrap();
        for (i, frame) in got.chunks(4 + 15_000).enumerate() {
            assert_eq!(frame[0], 0x81, "frame {i}: final text frame");
            assert_eq!(
                (frame[1], frame[2], frame[3]),
                (126, (15_000 >> 8) as u8, 15_000u16 as u8)
            );
            assert_eq!(
                &frame[4..9],
                format!("{i:05}").as_bytes(),
                "frame {i} in order"
            );
        }
        assert!(!wire.has_pending());
    }

    /// A tailed frame goes out as one WebSocket message: the shared frame without its `]`,
    /// then the tail.
    #[tokio::test]
    async fn a_tailed_frame_is_written_as_one_message() {
        use tokio::io::AsyncReadExt;
        use tokio_tungstenite::tungstenite::Utf8Bytes;
        let (server, mut client) = pair(false).await;
        let wire = Wire::new(server, 1024, 1 << 20);
        let shared = Utf8Bytes::from_static(r#"42/chat,["message:new",{"id":5}]"#);
        let frames = [
            Frame::Tailed(shared.clone(), Bytes::from_static(br#","o.1-5"]"#)),
            Frame::Text(shared),
        ];
        assert!(wire.write_frames(&frames).unwrap());
        let first = r#"42/chat,["message:new",{"id":5},"o.1-5"]"#;
        let second = r#"42/chat,["message:new",{"id":5}]"#;
        let mut got = vec![0u8; 2 + first.len() + 2 + second.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[..2], [0x81, first.len() as u8]);
        assert_eq!(&got[2..2 + first.len()], first.as_bytes());
        let rest = &got[2 + first.len()..];
        assert_eq!(rest[..2], [0x81, second.len() as u8]);
        assert_eq!(&rest[2..], second.as_bytes());
    }

    /// A short read clears the socket's readiness (no `recvfrom` left to answer EAGAIN): bytes
    /// that arrive after it still wake the reader, whole and in order, and so does the close.
    #[tokio::test]
    async fn bytes_arriving_after_a_short_read_are_read() {
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server, mut client) = pair(false).await;
        let mut wire = Wire::new(server, 8, 1 << 20);
        let mut buf = [0u8; 64];
        client.write_all(b"first").await.unwrap();
        let n = wire.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"first", "a short read");
        for round in 0..50u8 {
            let write = async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                client.write_all(&[round; 3]).await.unwrap();
            };
            let read = tokio::time::timeout(Duration::from_secs(5), wire.read(&mut buf));
            let ((), got) = tokio::join!(write, read);
            let n = got
                .expect("bytes sent after a short read wake the reader")
                .unwrap();
            assert_eq!(&buf[..n], &[round; 3]);
        }
        drop(client);
        let eof = tokio::time::timeout(Duration::from_secs(5), wire.read(&mut buf)).await;
        assert_eq!(eof.expect("the close wakes the reader").unwrap(), 0);
    }

    /// A client that reads nothing: the write fails once about `max_frames` frames wait, long
    /// before the byte bound (a stalled client stays small, and ends when its queue would have).
    #[tokio::test]
    async fn waiting_frames_are_bounded_in_number_too() {
        use tokio_tungstenite::tungstenite::Utf8Bytes;
        let (server, client) = pair(true).await;
        let wire = Wire::new(server, 8, 64 << 20);
        let frame = Frame::Text(Utf8Bytes::from("x".repeat(4096)));
        let mut failed_at = None;
        for i in 0..10_000 {
            match wire.write_frames(std::slice::from_ref(&frame)) {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WriteZero, "{e}");
                    failed_at = Some(i);
                    break;
                }
            }
        }
        let at = failed_at.expect("a client that reads nothing overflows");
        assert!(
            at < 1000,
            "{at} frames of 4 KB accepted for a client that reads nothing (8 may wait)"
        );
        drop(client);
    }

    /// Small batches (one stack buffer, one `send` each) into a socket that fills up: the part
    /// the socket did not take waits, later batches queue behind it, and the client reads every
    /// frame once, whole and in order.
    #[tokio::test]
    async fn small_batches_into_a_filling_socket_stay_whole_and_in_order() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_tungstenite::tungstenite::Utf8Bytes;
        let (server, mut client) = pair(true).await;
        let wire = Wire::new(server, 1 << 20, 64 << 20);
        // 3 frames of 4 + 300 bytes per batch: under SMALL_WRITE, so each batch is one copy.
        let frame = |i: usize| Frame::Text(Utf8Bytes::from(format!("{i:06}").repeat(50)));
        let mut sent = 0;
        let mut queued_batches = 0;
        while queued_batches < 5 {
            let batch: Vec<Frame> = (sent..sent + 3).map(frame).collect();
            sent += 3;
            if !wire.write_frames(&batch).unwrap() {
                queued_batches += 1;
            }
            assert!(sent < 100_000, "16 KB buffers never filled");
        }
        let mut got = vec![0u8; sent * 304];
        let mut w = wire.clone();
        let (flushed, read) = tokio::join!(w.flush(), client.read_exact(&mut got));
        flushed.unwrap();
        read.unwrap();
        for (i, frame) in got.chunks(304).enumerate() {
            assert_eq!(
                (frame[0], frame[1]),
                (0x81, 126),
                "frame {i}: text, 16-bit length"
            );
            assert_eq!((frame[2], frame[3]), (1, 44), "frame {i}: 300 bytes");
            assert_eq!(
                &frame[4..10],
                format!("{i:06}").as_bytes(),
                "frame {i} in order"
            );
            assert_eq!(
                &frame[298..],
                format!("{i:06}").as_bytes(),
                "frame {i} whole"
            );
        }
        assert!(!wire.has_pending());
    }

    /// A client that was slow once and then read everything: its FIFO gives its block back
    /// (a long-lived connection does not keep the block of its worst moment).
    #[tokio::test]
    async fn a_drained_fifo_gives_its_block_back() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_tungstenite::tungstenite::Utf8Bytes;
        let (server, mut client) = pair(true).await;
        let wire = Wire::new(server, 1 << 20, 64 << 20);
        let frames: Vec<Frame> = (0..2000)
            .map(|_| Frame::Text(Utf8Bytes::from("x".repeat(100))))
            .collect();
        assert!(!wire.write_frames(&frames).unwrap());
        let held = wire.0.pending.borrow().capacity();
        assert!(held > KEPT_PIECES, "{held} pieces wait");
        let mut got = vec![0u8; 2000 * 102];
        let mut w = wire.clone();
        let (flushed, read) = tokio::join!(w.flush(), client.read_exact(&mut got));
        flushed.unwrap();
        read.unwrap();
        assert_eq!(
            wire.0.pending.borrow().capacity(),
            0,
            "block kept after draining"
        );
    }

    #[test]
    fn consume_splits_and_drops() {
        let mut parts: VecDeque<Bytes> =
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cde")].into();
        consume(&mut parts, 3);
        assert_eq!(parts.len(), 1);
        assert_eq!(&parts[0][..], b"de");
        consume(&mut parts, 5);
        assert!(parts.is_empty());
    }
}
