//! Cluster mode's I/O layer on NATS JetStream: [`NatsBus`] moves opaque `Bytes` between a node and
//! the shared state of the cluster, and knows nothing of the core's types.
//!
//! What lives where (the names use the configured `prefix`, `huddle` by default; `P` is the prefix
//! in upper case; room and user ids are base64url without padding, [`naming`]):
//!
//! | What | Where |
//! |---|---|
//! | room logs | stream `P_ROOMS_<k>`, subject `<prefix>.h.<k>.<room64>.<epoch>`, one per room incarnation |
//! | room feeds | core subject `<prefix>.hl.<k>.<room64>.<epoch>`: the stream RePublishes each stored entry there |
//! | registry | KV `<prefix>_rooms`, key `r.<room64>`; the creating revision is the room's epoch |
//! | snapshots | KV `<prefix>_snap`, key `s.<room64>.<epoch>`, values up to [`MAX_SNAPSHOT`] |
//! | users | KV `<prefix>_users`, key `u.<user64>` |
//! | node ids and heartbeats | KV `<prefix>_nodes`, key `id.<n>`, n in 1..=1023 |
//! | cluster constants | KV `<prefix>_cluster`, key `config` |
//! | control requests | core subject `<prefix>.ctl.<node>`, request-reply |
//!
//! The KV buckets are created as plain streams `KV_<bucket>` and then opened as buckets, because
//! async-nats's `create_key_value` cannot parse nats-server 2.9's account info. Everything is
//! created idempotently at [`NatsBus::connect`], so any node may start first.
//!
//! Appends ([`NatsBus::append`]) are retried with the same `Nats-Msg-Id` until
//! [`NatsOptions::append_timeout`], so an entry is stored at most once; a feed
//! ([`NatsBus::follow`]) is gap-free and ordered: it repairs what core NATS dropped by reading the
//! stream, and checks the tail again after every reconnect and slow-consumer event.

mod bus;
mod ctl;
mod feed;
mod kv;
mod log;
pub mod naming;
mod options;
mod rooms;
mod setup;

pub use bus::NatsBus;
pub use ctl::{CtlError, CtlListener, CtlRequest};
pub use feed::{Feed, FeedError, Record};
pub use kv::{CasError, CreateError, HeartbeatError, NodeClaim, NodeWatch, Versioned, MAX_NODE_ID};
pub use log::{AppendError, Appended};
pub use naming::LogRef;
pub use options::{ConnectError, NatsOptions};
pub use rooms::RoomWatch;
pub use setup::{FORMAT_VERSION, MAX_SNAPSHOT};
