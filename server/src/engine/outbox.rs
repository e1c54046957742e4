//! The bounded outbound queue of one Engine.IO connection.
//!
//! Everything the server sends to a client (pings, Socket.IO packets, broadcast frames) is pushed
//! here by shard-local code and drained by the transport that currently serves the connection
//! (the WebSocket task, or the pending polling GET). It lives on one shard thread only, so it is a
//! `RefCell` plus a waker instead of a channel: an idle connection costs an empty `VecDeque` (no
//! heap) and a few words. When the queue is full the client is not reading: the connection is
//! marked overflowed and the transport closes it, never buffering without end.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One frame to write, already encoded. Text frames are complete Engine.IO packets
/// (`4` + Socket.IO packet, `2` ping, ...), shared by reference count between recipients.
#[derive(Debug, Clone)]
pub enum Frame {
    /// An Engine.IO text packet (the WebSocket text frame, or one item of a polling payload).
    Text(Utf8Bytes),
    /// A binary attachment (WebSocket binary frame, or a `b`+base64 polling item).
    Binary(Bytes),
    /// A text packet shared between recipients, written without its last byte (its closing
    /// `]`) and then this recipient's tail (`,"<offset>"]`, connection state recovery): the
    /// shared frame is never copied per recipient.
    Tailed(Utf8Bytes, Bytes),
}

impl Frame {
    /// Wire size, used for queue accounting.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
            Frame::Tailed(t, tail) => t.len().saturating_sub(1) + tail.len(),
        }
    }

    /// The parts of a text frame's bytes, in order (one for [`Frame::Text`], two for
    /// [`Frame::Tailed`]); None for binary.
    pub fn text_parts(&self) -> Option<(&[u8], &[u8])> {
        match self {
            Frame::Text(t) => Some((t.as_bytes(), &[])),
            Frame::Tailed(t, tail) => {
                let b = t.as_bytes();
                Some((b.get(..b.len().saturating_sub(1)).unwrap_or_default(), tail))
            }
            Frame::Binary(_) => None,
        }
    }

    /// True for an empty frame (never produced by the server; for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A text frame from a static string (`"2"`, `"6"`, ...).
    pub fn text_static(s: &'static str) -> Self {
        Frame::Text(Utf8Bytes::from_static(s))
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The queue is full: the client stopped reading; the transport closes the connection.
    #[error("outbound queue full")]
    Full,
    /// The connection is closing or closed; drop the frame.
    #[error("connection closed")]
    Closed,
}

/// Mutable part of the outbox.
#[derive(Debug, Default)]
struct Inner {
    /// Frames waiting to be written, oldest first.
    queue: VecDeque<Frame>,
    /// Bytes currently queued (sum of `Frame::len`).
    queued_bytes: usize,
    /// Task to wake when a frame arrives or the outbox closes.
    waker: Option<Waker>,
    /// Set once: by `close` (graceful) or by an overflow.
    closed: bool,
    /// Set when the queue overflowed (the client is too slow).
    overflowed: bool,
    /// Bytes wait in the WebSocket stream after a direct write: the transport must flush.
    flush: bool,
}

/// Bounded single-consumer outbound queue of one connection (shard-local).
#[derive(Debug)]
pub struct Outbox {
    /// Queue state.
    inner: RefCell<Inner>,
    /// Maximum number of queued frames before the connection is dropped.
    max_frames: usize,
    /// Maximum number of queued bytes before the connection is dropped.
    max_bytes: usize,
}

impl Outbox {
    /// A new, empty outbox with the given bounds.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            inner: RefCell::new(Inner::default()),
            max_frames,
            max_bytes,
        }
    }

    /// Queues a frame. On overflow the outbox closes itself and wakes the transport, which then
    /// disconnects the client.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        self.push_quiet(frame)?;
        self.wake();
        Ok(())
    }

    /// Wakes the transport.
    pub fn wake(&self) {
        if let Some(w) = self.inner.borrow_mut().waker.take() {
            w.wake();
        }
    }

    /// Wakes the transport to flush what a direct write left in the stream.
    pub fn wake_to_flush(&self) {
        self.inner.borrow_mut().flush = true;
        self.wake();
    }

    /// Marks the outbox overflowed (a direct write found the client not reading) and wakes the
    /// transport, which abandons its write and ends the connection.
    pub fn overflow(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.closed = true;
        inner.overflowed = true;
        // Free the queue now, not when the connection goes.
        let queue = std::mem::take(&mut inner.queue);
        crate::heap::backlog_freed(
            queue.capacity() * std::mem::size_of::<Frame>() + inner.queued_bytes,
        );
        inner.queued_bytes = 0;
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
    }

    /// Queues a frame without waking the transport (the shard writes it directly at the end of
    /// its batch, see `Conn::write_direct`). Overflow closes the outbox as [`Outbox::push`] does.
    pub fn push_quiet(&self, frame: Frame) -> Result<(), PushError> {
        let mut inner = self.inner.borrow_mut();
        if inner.closed {
            return Err(PushError::Closed);
        }
        if inner.queue.len() >= self.max_frames || inner.queued_bytes + frame.len() > self.max_bytes
        {
            drop(inner);
            self.overflow();
            return Err(PushError::Full);
        }
        inner.queued_bytes += frame.len();
        inner.queue.push_back(frame);
        Ok(())
    }

    /// Takes the oldest frame, if any.
    pub fn pop(&self) -> Option<Frame> {
        let mut inner = self.inner.borrow_mut();
        let frame = inner.queue.pop_front()?;
        inner.queued_bytes -= frame.len();
        if inner.queue.is_empty() {
            // Give the memory back: most connections are idle between bursts, and an idle one
            // must stay small (an empty VecDeque owns no heap).
            inner.queue = VecDeque::new();
        }
        Some(frame)
    }

    /// Puts a frame back at the front (a polling response that ran out of room).
    pub fn unpop(&self, frame: Frame) {
        let mut inner = self.inner.borrow_mut();
        inner.queued_bytes += frame.len();
        inner.queue.push_front(frame);
    }

    /// True when at least one frame is queued.
    pub fn has_frames(&self) -> bool {
        !self.inner.borrow().queue.is_empty()
    }

    /// Marks the outbox closed (no more pushes) and wakes the transport.
    pub fn close(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.closed = true;
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
    }

    /// True once closed (gracefully or by overflow).
    pub fn is_closed(&self) -> bool {
        self.inner.borrow().closed
    }

    /// True when the client was dropped for not reading.
    pub fn overflowed(&self) -> bool {
        self.inner.borrow().overflowed
    }

    /// Ready when a frame is queued, a flush is due or the outbox is closed (clears the flush
    /// request: the transport flushes now).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if !inner.queue.is_empty() || inner.closed || inner.flush {
            inner.flush = false;
            Poll::Ready(())
        } else {
            inner.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Ready once the queue overflowed (used while a write is in progress, to abandon it).
    pub fn poll_overflow(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.overflowed {
            Poll::Ready(())
        } else {
            inner.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Waits until a frame is queued or the outbox closes.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_and_drops_queue() {
        let outbox = Outbox::new(2, 1000);
        assert!(outbox.push(Frame::text_static("2")).is_ok());
        assert!(outbox.push(Frame::text_static("3")).is_ok());
        assert_eq!(outbox.push(Frame::text_static("4x")), Err(PushError::Full));
        assert!(outbox.overflowed());
        assert!(outbox.pop().is_none());
        assert_eq!(outbox.push(Frame::text_static("2")), Err(PushError::Closed));
    }

    #[test]
    fn byte_bound_applies() {
        let outbox = Outbox::new(100, 4);
        assert!(outbox.push(Frame::text_static("123")).is_ok());
        assert_eq!(outbox.push(Frame::text_static("45")), Err(PushError::Full));
    }
}
