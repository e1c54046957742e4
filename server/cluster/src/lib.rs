//! chatwire's cluster layer: rooms, presence and the [`Adapter`] every room operation goes
//! through.
//!
//! - [`rooms`]: room membership, partitioned by room name over the shards ([`room_owner`]).
//! - [`presence`]: socket counts per user, partitioned by user ([`presence_owner`]).
//! - [`adapter`]: the [`Adapter`] trait (join, leave, broadcast, publish a committed message,
//!   notify users, presence) and [`LocalAdapter`], which routes each operation to its owner shard.
//! - [`mesh`]: the [`Mesh`], what a shard offers the cluster layer.
//! - [`msg`]: the [`ClusterMsg`]s shards exchange; [`shard`]: how an owner applies them.
//! - [`redis`]: [`RedisAdapter`], several nodes through Redis (wire-compatible with
//!   `@socket.io/redis-adapter` 8.3); [`order`]: id order of conversations written from
//!   several nodes.
//! - [`recheck`]: notifications held back for a user in the room on another node, sent after
//!   all when that node says the user left.
//! - [`recording`]: an adapter that records every call, for tests that prove nothing bypasses
//!   the seam.
//!
//! It knows sockets only as [`SocketKey`]s and frames only as encoded [`TextFrame`]s: transports
//! live in the server above.
//!
//! [`TextFrame`]: chatwire_protocol::socket::TextFrame

pub mod adapter;
pub mod mesh;
pub mod msg;
pub mod order;
pub mod presence;
pub mod recheck;
pub mod recording;
pub mod redis;
pub mod rooms;
pub mod shard;

pub use adapter::{Adapter, LocalAdapter, Online};
pub use mesh::{Injector, Mesh};
pub use msg::{AckEmit, ClusterMsg, HandshakeFacts, LocalSocket, OnDemand, Published, ShardView};
pub use presence::{Presence, presence_owner};
pub use recording::{Call, RecordingAdapter};
pub use redis::{RedisAdapter, RedisConfig};
pub use rooms::{Member, Membership, RoomName, Rooms, SocketKey, room_owner};
pub use shard::ClusterShard;
