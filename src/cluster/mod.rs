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

mod ctl;
mod feed;
mod kv;
mod log;
pub mod naming;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv::Store, stream::Stream};
use async_nats::{Client, ConnectOptions, Event};
use serde::Deserialize;
use tokio::sync::watch;

pub use ctl::{CtlError, CtlListener, CtlRequest};
pub use feed::{Feed, FeedError, Record};
pub use kv::{CasError, CreateError, HeartbeatError, NodeClaim, NodeWatch, Versioned};
pub use log::{AppendError, Appended};
pub use naming::LogRef;

/// The largest snapshot value [`NatsBus::put_snapshot`] accepts: 512 KiB. Bigger rooms need the
/// object store, which this layer does not use yet.
pub const MAX_SNAPSHOT: usize = 512 * 1024;

/// The format version of everything this module writes, stored with the shard count in the
/// cluster constants; a node with another version refuses to start.
pub const FORMAT_VERSION: u32 = 1;

/// The largest node id ([`NatsBus::claim_node`]): ids have 10 bits and 0 is never used.
pub const MAX_NODE_ID: u16 = 1023;

/// How to reach the NATS servers and lay the cluster out on them (the `[cluster]` table of the
/// server configuration). Every field but `nats` has a default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsOptions {
    /// Seed URLs, for example `nats://127.0.0.1:4222`.
    pub nats: Vec<String>,
    /// Prefix of every stream, bucket and subject, so that several clusters can share one NATS:
    /// `[A-Za-z0-9_-]+`.
    pub prefix: String,
    /// Room-log streams (K); stored in the cluster constants at the first start and checked
    /// afterwards.
    pub shards: u32,
    /// JetStream replicas of every stream (R): 1 for one nats-server, 3 in production. Refused
    /// above 1 on nats-server older than 2.9.21.
    pub replicas: usize,
    /// A NATS credentials file (JWT and nkey seed).
    pub credentials: Option<PathBuf>,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// A PEM file of CA certificates to verify the NATS servers with; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// How long [`NatsBus::append`] retries before it gives up, in milliseconds.
    pub append_timeout_ms: u64,
    /// A node whose heartbeat is older than this is dead, in milliseconds.
    pub dead_after_ms: u64,
    /// Timeout of one JetStream API request or KV operation, in milliseconds.
    pub request_timeout_ms: u64,
    /// Messages async-nats buffers per subscription (a feed or the control listener) before it
    /// drops and reports a slow consumer; feeds repair what it drops.
    pub subscription_capacity: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            nats: vec!["nats://127.0.0.1:4222".into()],
            prefix: "huddle".into(),
            shards: 1,
            replicas: 1,
            credentials: None,
            user: None,
            password: None,
            tls_ca: None,
            append_timeout_ms: 10_000,
            dead_after_ms: 5_000,
            request_timeout_ms: 2_000,
            subscription_capacity: 65_536,
        }
    }
}

impl NatsOptions {
    /// [`NatsOptions::append_timeout_ms`] as a duration.
    pub fn append_timeout(&self) -> Duration {
        Duration::from_millis(self.append_timeout_ms)
    }

    /// [`NatsOptions::dead_after_ms`] as a duration.
    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

/// Why [`NatsBus::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The options are unusable.
    #[error("invalid cluster options: {0}")]
    Options(String),
    /// No NATS server could be reached, or it refused us.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// The server is too old for the requested replication.
    #[error(
        "nats-server {version} cannot keep per-subject compare-and-set exact with replicas > 1; \
         use 2.9.21 or later (2.11 or later recommended), or replicas = 1"
    )]
    Version {
        /// The version the server reported.
        version: String,
    },
    /// JetStream refused to create or open a stream or bucket.
    #[error("cannot set up JetStream {what}: {reason}")]
    Setup {
        /// The stream or bucket.
        what: String,
        /// JetStream's answer.
        reason: String,
    },
    /// The cluster constants stored by the first node differ from ours.
    #[error("this node has {ours} but the cluster was created with {stored}")]
    Mismatch {
        /// What the cluster stored.
        stored: String,
        /// What this node was configured with.
        ours: String,
    },
}

/// A node's connection to the cluster's NATS: room logs and feeds, the registry, snapshots,
/// users, node liveness and control requests. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    opts: NatsOptions,
    /// The room-log streams, indexed by shard.
    streams: Vec<Stream>,
    rooms: Store,
    snaps: Store,
    users: Store,
    nodes: Store,
    /// Entries feeds read from the stream, after their first catch-up, because their live
    /// copies were lost.
    repaired: AtomicU64,
    /// Counts connections (re)established and slow-consumer events: each one makes every feed
    /// check its room's tail, because core NATS may have dropped entries meanwhile.
    resync: watch::Receiver<u64>,
}

impl NatsBus {
    /// Connects, checks the server version against `replicas`, creates (idempotently) the
    /// room-log streams and the KV buckets, and stores or checks the cluster constants.
    pub async fn connect(opts: NatsOptions) -> Result<NatsBus, ConnectError> {
        validate(&opts)?;
        let (resync_tx, resync) = watch::channel(0u64);
        let resync_tx = Arc::new(resync_tx);
        let mut connect = ConnectOptions::new()
            .request_timeout(Some(opts.request_timeout()))
            .subscription_capacity(opts.subscription_capacity.max(1))
            .event_callback(move |event| {
                let resync_tx = resync_tx.clone();
                async move {
                    match event {
                        Event::Connected | Event::SlowConsumer(_) => {
                            resync_tx.send_modify(|n| *n += 1)
                        }
                        Event::Disconnected => tracing::warn!("NATS connection lost"),
                        _ => {}
                    }
                }
            });
        if let Some(path) = &opts.credentials {
            connect = connect
                .credentials_file(path)
                .await
                .map_err(|e| ConnectError::Options(format!("{}: {e}", path.display())))?;
        }
        if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &opts.tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = connect
            .connect(opts.nats.join(","))
            .await
            .map_err(|e| ConnectError::Connect(e.to_string()))?;
        let version = client.server_info().version;
        check_version(&version, opts.replicas)?;
        let js =
            jetstream::ContextBuilder::new().timeout(opts.request_timeout()).build(client.clone());
        let mut streams = Vec::with_capacity(opts.shards as usize);
        for shard in 0..opts.shards {
            streams.push(log::ensure_stream(&js, &opts, shard).await?);
        }
        let p = &opts.prefix;
        let dead_after = opts.dead_after().max(Duration::from_secs(30));
        let rooms = kv::ensure_bucket(&js, &opts, &format!("{p}_rooms"), None).await?;
        let snaps = kv::ensure_bucket(&js, &opts, &format!("{p}_snap"), None).await?;
        let day = Duration::from_secs(24 * 3600);
        let users = kv::ensure_bucket(&js, &opts, &format!("{p}_users"), Some(day)).await?;
        let nodes = kv::ensure_bucket(&js, &opts, &format!("{p}_nodes"), Some(dead_after)).await?;
        let cluster = kv::ensure_bucket(&js, &opts, &format!("{p}_cluster"), None).await?;
        kv::check_constants(&cluster, opts.shards).await?;
        Ok(NatsBus {
            inner: Arc::new(Inner {
                client,
                opts,
                streams,
                rooms,
                snaps,
                users,
                nodes,
                repaired: AtomicU64::new(0),
                resync,
            }),
        })
    }

    /// The options this bus was connected with.
    pub fn options(&self) -> &NatsOptions {
        &self.inner.opts
    }

    /// The version string of the NATS server this bus is connected to.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// How many entries this bus's feeds have read from the streams because core NATS lost their
    /// live copies, found by `Nats-Last-Sequence` or by the tail check after a reconnect or
    /// slow-consumer event (a metric: `huddle_bus_gap_repairs_total`).
    pub fn gap_repairs(&self) -> u64 {
        self.inner.repaired.load(Ordering::Relaxed)
    }

    /// The log of incarnation `epoch` of room `room_id`.
    pub fn log(&self, room_id: &str, epoch: u64) -> LogRef {
        LogRef::new(room_id, epoch, self.inner.opts.shards)
    }
}

fn validate(opts: &NatsOptions) -> Result<(), ConnectError> {
    let bad = |what: &str| Err(ConnectError::Options(what.into()));
    if opts.nats.is_empty() {
        return bad("`nats` lists no server");
    }
    if opts.prefix.is_empty()
        || !opts.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("`prefix` must match [A-Za-z0-9_-]+");
    }
    if opts.shards == 0 || opts.shards > naming::MAX_SHARDS {
        return bad("`shards` must be 1 to 16");
    }
    if opts.replicas == 0 || opts.replicas > 5 {
        return bad("`replicas` must be 1 to 5");
    }
    if opts.user.is_some() != opts.password.is_some() {
        return bad("`user` and `password` go together");
    }
    Ok(())
}

/// Refuses `replicas > 1` below 2.9.21, whose clustered streams check
/// `Nats-Expected-Last-Subject-Sequence` outside Raft (nats-server#4320), and warns below 2.11.
fn check_version(version: &str, replicas: usize) -> Result<(), ConnectError> {
    let parsed = parse_version(version);
    if replicas > 1 {
        if parsed.map_or(true, |v| v < (2, 9, 21)) {
            return Err(ConnectError::Version { version: version.into() });
        }
        if parsed.is_some_and(|v| v < (2, 11, 0)) {
            tracing::warn!(
                version,
                "nats-server before 2.11 can desynchronise per-subject sequences after a leader \
                 change; 2.11 or later is recommended for replicas > 1"
            );
        }
    }
    Ok(())
}

fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let core = version.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_2_9_21_refuse_replicas() {
        assert!(check_version("2.9.10", 1).is_ok());
        assert!(matches!(check_version("2.9.10", 3), Err(ConnectError::Version { .. })));
        assert!(check_version("2.9.21", 3).is_ok());
        assert!(check_version("2.15.1", 3).is_ok());
        assert!(check_version("v2.11.0-beta.1", 3).is_ok());
        assert!(check_version("garbage", 3).is_err());
        assert_eq!(parse_version("2.10"), Some((2, 10, 0)));
    }
}
