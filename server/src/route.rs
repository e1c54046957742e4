//! Where a validated message goes to be stored, and who waits for its outcome: data that
//! travels from a shard through the writer (or inline) and back, known to every layer of the
//! server that hands messages over (the chat application's commit module carries them out).

use std::sync::Arc;

use chatwire_cluster::SocketKey;
use chatwire_store::batch::WriterHandle;
use chatwire_store::{AnyStore, StoreError, Stored, UserKey};

/// Who waits for the outcome of a send.
#[derive(Debug)]
pub enum ReplyTo {
    /// A Socket.IO sender: `message:sent` / `message:error` (and the ack) go to this socket.
    Socket {
        /// The sending socket.
        socket: SocketKey,
        /// The client's ack id, if it passed a callback.
        ack: Option<u64>,
    },
    /// A REST sender waiting for the stored message.
    Http(tokio::sync::oneshot::Sender<Result<Stored, StoreError>>),
    /// Nobody waits (imports, tests, benches).
    None,
}

/// What travels with a message through the store: who waits, and whom to notify after.
#[derive(Debug)]
pub struct Route {
    /// The conversation's participants, checked before the send.
    pub participants: Arc<[UserKey]>,
    /// Who waits for the outcome.
    pub reply: ReplyTo,
    /// Answers the sender if this route is dropped without an answer.
    pub unanswered: Unanswered,
}

/// The answer a send gets if its route is dropped before anyone answered it: the batch writer
/// thread died (a panic) with the send queued or in flight. Disarmed by whoever answers.
#[derive(Default)]
pub struct Unanswered(Option<Box<dyn FnOnce() + Send>>);

impl Unanswered {
    /// Runs `answer` if the route is dropped unanswered.
    pub fn new(answer: impl FnOnce() + Send + 'static) -> Self {
        Unanswered(Some(Box::new(answer)))
    }

    /// The send is being answered: nothing to do on drop.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(answer) = self.0.take() {
            answer();
        }
    }
}

impl std::fmt::Debug for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Unanswered(armed)"
        } else {
            "Unanswered"
        })
    }
}

/// How messages are stored.
#[derive(Debug, Clone)]
pub enum Committer {
    /// In the room owner's shard, at once (memory store).
    Inline(Arc<AnyStore>),
    /// Through the batch writer thread (databases).
    Writer(WriterHandle<Route>),
}

impl Committer {
    /// Graceful shutdown: commit what the writer holds (nothing to do inline).
    pub async fn flush_and_stop(self) {
        if let Committer::Writer(writer) = self {
            writer.flush_and_stop().await;
        }
    }
}
