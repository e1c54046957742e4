//! The server's `CommitSink`: runs on the batch writer's thread after each commit and routes every
//! committed message to the shard that owns its room (fan-out in id order) and every reply to the
//! shard of the sending socket. JSON is encoded here, once per message, off the shards.

use bytes::Bytes;

use super::error::{ChatError, Code};
use super::message::{committed_frames, error_payload};
use crate::rooms::{SocketKey, room_owner};
use crate::shard::msg::{Committed, ShardMsg, ShardSet, SocketReply};
use crate::store::batch::{CommitSink, ReplyTo};
use crate::store::{NewMessage, StoreError, Stored};

/// Routes commits to shards.
#[derive(Debug, Clone)]
pub struct ShardSink {
    /// Channels to every shard.
    pub set: ShardSet,
}

impl CommitSink for ShardSink {
    fn committed(&self, batch: Vec<(Stored, ReplyTo)>) {
        let shards = self.set.len();
        for (stored, reply) in batch {
            let msg = &stored.message;
            let mut body = Vec::with_capacity(384);
            msg.write_json(&mut body);
            let sender_socket = match &reply {
                ReplyTo::Socket { shard, socket, .. } => Some(SocketKey {
                    shard: *shard,
                    local: *socket,
                }),
                _ => None,
            };
            if !stored.duplicate {
                let (new_frame, notification_frame) = committed_frames(msg.conversation_id, &body);
                let room = super::room_name(msg.conversation_id);
                let owner = room_owner(&room, shards);
                self.set.send_blocking(
                    owner,
                    ShardMsg::Committed(Box::new(Committed {
                        conversation_id: msg.conversation_id,
                        sender_socket,
                        sender: msg.sender,
                        new_frame,
                        notification_frame,
                    })),
                );
            }
            match reply {
                ReplyTo::Socket { shard, socket, ack } => {
                    let mut payload = Vec::with_capacity(body.len() + 32);
                    payload.extend_from_slice(b"{\"tempId\":");
                    match &msg.temp_id {
                        Some(t) => t.write_json(&mut payload),
                        None => payload.extend_from_slice(b"null"),
                    }
                    payload.extend_from_slice(b",\"message\":");
                    payload.extend_from_slice(&body);
                    payload.push(b'}');
                    self.set.send_blocking(
                        usize::from(shard),
                        ShardMsg::Reply(Box::new(SocketReply {
                            socket,
                            event: "message:sent",
                            payload: Bytes::from(payload),
                            ack,
                            stop_typing: Some(msg.conversation_id),
                        })),
                    );
                }
                ReplyTo::Http(tx) => {
                    let _ = tx.send(Ok(stored));
                }
                ReplyTo::None => {}
            }
        }
    }

    fn failed(&self, batch: Vec<(NewMessage, ReplyTo)>, error: StoreError) {
        for (msg, reply) in batch {
            match reply {
                ReplyTo::Socket { shard, socket, ack } => {
                    let err = match &error {
                        StoreError::Forbidden
                        | StoreError::NotFound
                        | StoreError::BadRequest(_)
                        | StoreError::TooLarge(_) => ChatError::from(error.clone()),
                        _ => ChatError::new(Code::Unavailable, "storage unavailable, retry later"),
                    };
                    self.set.send_blocking(
                        usize::from(shard),
                        ShardMsg::Reply(Box::new(SocketReply {
                            socket,
                            event: "message:error",
                            payload: Bytes::from(error_payload(&err, msg.temp_id.as_ref())),
                            ack,
                            stop_typing: None,
                        })),
                    );
                }
                ReplyTo::Http(tx) => {
                    let _ = tx.send(Err(error.clone()));
                }
                ReplyTo::None => {}
            }
        }
    }
}
