//! Creating the streams and buckets, idempotently, and the cluster constants.
//!
//! Every bucket is made as the stream `KV_<bucket>` that async-nats's `create_key_value` would
//! make (history 1, rollup allowed, delete denied, direct get, discard new) and then opened with
//! `get_key_value`: `create_key_value` itself fails against nats-server 2.9, whose account info
//! lacks fields async-nats requires. A stream that exists already is used as it is.

use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Store};
use async_nats::jetstream::stream::{Config, DiscardPolicy, Republish, StorageType, Stream};
use async_nats::jetstream::{self};
use bytes::Bytes;

use super::naming;
use super::options::{ConnectError, NatsOptions};

/// The largest snapshot value [`NatsBus::put_snapshot`](super::NatsBus::put_snapshot) accepts:
/// 512 KiB. Bigger rooms need the object store, which this layer does not use yet.
pub const MAX_SNAPSHOT: usize = 512 * 1024;

/// The format version of everything this module writes, stored with the shard count in the
/// cluster constants; a node with another version refuses to start.
pub const FORMAT_VERSION: u32 = 1;

const CONSTANTS_KEY: &str = "config";

/// Entries kept per room log (entries, not messages); the spec's 1,000 messages are served from
/// the replicas' rings, and the slack is for snapshots.
const MAX_ENTRIES_PER_ROOM: i64 = 2_000;
/// How long entries stay in a room log.
const MAX_AGE: Duration = Duration::from_secs(4 * 3600);
/// The largest entry a room log stores.
const MAX_ENTRY: i32 = 64 * 1024;
/// JetStream remembers message ids this long, so a retry within it is a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
pub(super) async fn ensure_stream(
    js: &jetstream::Context,
    opts: &NatsOptions,
    shard: u32,
) -> Result<Stream, ConnectError> {
    let p = &opts.prefix;
    let name = naming::stream_name(p, shard);
    let config = Config {
        name: name.clone(),
        subjects: vec![format!("{p}.h.{shard}.>")],
        storage: StorageType::File,
        num_replicas: opts.replicas,
        max_messages_per_subject: MAX_ENTRIES_PER_ROOM,
        max_age: MAX_AGE,
        max_message_size: MAX_ENTRY,
        discard: DiscardPolicy::Old,
        allow_direct: true,
        duplicate_window: DUPLICATE_WINDOW,
        republish: Some(Republish {
            source: format!("{p}.h.{shard}.>"),
            destination: format!("{p}.hl.{shard}.>"),
            headers_only: false,
        }),
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| ConnectError::Setup { what: name, reason: e.to_string() })
}

pub(super) async fn ensure_bucket(
    js: &jetstream::Context,
    opts: &NatsOptions,
    bucket: &str,
    max_age: Option<Duration>,
) -> Result<Store, ConnectError> {
    let setup = |e: &dyn std::fmt::Display| ConnectError::Setup {
        what: format!("bucket {bucket}"),
        reason: e.to_string(),
    };
    let config = Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        storage: StorageType::File,
        num_replicas: opts.replicas,
        max_messages_per_subject: 1,
        max_age: max_age.unwrap_or_default(),
        max_message_size: (MAX_SNAPSHOT + 4096) as i32,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: Duration::from_secs(120).min(max_age.unwrap_or(Duration::MAX)),
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map_err(|e| setup(&e))?;
    js.get_key_value(bucket).await.map_err(|e| setup(&e))
}

/// Stores the cluster constants if absent, else checks ours against them.
pub(super) async fn check_constants(store: &Store, shards: u32) -> Result<(), ConnectError> {
    let ours = format!("shards={shards} format={FORMAT_VERSION}");
    let unavailable = |e: &dyn std::fmt::Display| ConnectError::Setup {
        what: "cluster constants".into(),
        reason: e.to_string(),
    };
    match store.create(CONSTANTS_KEY, Bytes::from(ours.clone())).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            let stored = store.get(CONSTANTS_KEY).await.map_err(|e| unavailable(&e))?;
            let stored =
                String::from_utf8_lossy(stored.as_deref().unwrap_or_default()).into_owned();
            if stored == ours {
                Ok(())
            } else {
                Err(ConnectError::Mismatch { stored, ours })
            }
        }
        Err(e) => Err(unavailable(&e)),
    }
}
