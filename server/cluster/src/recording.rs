//! [`RecordingAdapter`]: wraps another adapter and records every call, so a test can prove that
//! joins, leaves, broadcasts, messages, notifications and presence changes all go through the
//! [`Adapter`] seam (which a Redis adapter replaces) and none bypasses it.

use std::sync::{Arc, Mutex};

use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::adapter::{Adapter, Online};
use crate::mesh::Mesh;
use crate::msg::Published;
use crate::rooms::{Member, RoomName, SocketKey};

/// One recorded adapter call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Adapter::join`]: room, user of the joining socket.
    Join(String, Option<UserKey>),
    /// [`Adapter::leave`]: room.
    Leave(String),
    /// [`Adapter::broadcast`]: room, the frame's text.
    Broadcast(String, String),
    /// [`Adapter::publish`]: room, the `message:new` frame's text.
    Publish(String, String),
    /// [`Adapter::notify_users`]: users, the frame's text.
    NotifyUsers(Vec<UserKey>, String),
    /// [`Adapter::presence_up`].
    PresenceUp(UserKey),
    /// [`Adapter::presence_down`].
    PresenceDown(UserKey),
    /// [`Adapter::check_online`].
    CheckOnline(UserKey),
}

/// An adapter that records each call, then hands it to `inner`.
#[derive(Debug, Default)]
pub struct RecordingAdapter<A> {
    /// The adapter that does the work.
    inner: A,
    /// Calls so far, oldest first (a test tool: a lock is fine here).
    calls: Arc<Mutex<Vec<Call>>>,
}

impl<A: Adapter> RecordingAdapter<A> {
    /// Wraps `inner`; `calls` is where the calls are appended (keep a clone to read them).
    pub fn new(inner: A, calls: Arc<Mutex<Vec<Call>>>) -> Self {
        RecordingAdapter { inner, calls }
    }

    fn record(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

fn text(frame: &TextFrame) -> String {
    String::from_utf8_lossy(frame.as_bytes()).into_owned()
}

impl<A: Adapter> Adapter for RecordingAdapter<A> {
    fn join(&self, mesh: &dyn Mesh, room: RoomName, member: Member) {
        self.record(Call::Join(room.to_string(), member.user));
        self.inner.join(mesh, room, member);
    }

    fn leave(&self, mesh: &dyn Mesh, room: RoomName, socket: SocketKey) {
        self.record(Call::Leave(room.to_string()));
        self.inner.leave(mesh, room, socket);
    }

    fn broadcast(
        &self,
        mesh: &dyn Mesh,
        room: RoomName,
        frame: TextFrame,
        except: Option<SocketKey>,
    ) {
        self.record(Call::Broadcast(room.to_string(), text(&frame)));
        self.inner.broadcast(mesh, room, frame, except);
    }

    fn publish(&self, mesh: &dyn Mesh, message: Published) {
        self.record(Call::Publish(
            message.room.to_string(),
            text(&message.new_frame),
        ));
        self.inner.publish(mesh, message);
    }

    fn notify_users(&self, mesh: &dyn Mesh, users: Arc<[UserKey]>, frame: TextFrame) {
        self.record(Call::NotifyUsers(users.to_vec(), text(&frame)));
        self.inner.notify_users(mesh, users, frame);
    }

    fn presence_up(&self, mesh: &dyn Mesh, user: UserKey) {
        self.record(Call::PresenceUp(user));
        self.inner.presence_up(mesh, user);
    }

    fn presence_down(&self, mesh: &dyn Mesh, user: UserKey) {
        self.record(Call::PresenceDown(user));
        self.inner.presence_down(mesh, user);
    }

    fn check_online(&self, mesh: &dyn Mesh, user: UserKey) -> Online {
        self.record(Call::CheckOnline(user));
        self.inner.check_online(mesh, user)
    }
}
