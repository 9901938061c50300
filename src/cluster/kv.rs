//! The KV buckets: registry, snapshots, users, node ids with heartbeats, cluster constants.
//!
//! Every write that must not be lost to a concurrent one is a
//! compare-and-set on the key's revision: `create` (revision 0), `update(revision)`,
//! `delete_expect_revision`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv::{CreateErrorKind, Entry, Operation, Store, UpdateErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bus::NatsBus;
use super::naming::{self, LogRef};
use super::setup::MAX_SNAPSHOT;

/// The largest node id ([`NatsBus::claim_node`]): ids have 10 bits and 0 is never used.
pub const MAX_NODE_ID: u16 = 1023;

/// A value with the revision that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// Its revision: what a compare-and-set on it expects.
    pub revision: u64,
}

/// Why a registry create failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The key exists.
    #[error("already exists")]
    Exists,
    /// NATS did not answer.
    #[error("the cluster store is unavailable")]
    Unavailable,
}

/// Why a compare-and-set write failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CasError {
    /// The key's revision is not the expected one.
    #[error("the value changed since it was read")]
    WrongRevision,
    /// The value is too large for the bucket.
    #[error("value too large")]
    TooLarge,
    /// NATS did not answer.
    #[error("the cluster store is unavailable")]
    Unavailable,
}

/// Why a heartbeat failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Another process claimed our node id after presuming us dead: this node must shed its
    /// connections and start again as a new incarnation.
    #[error("fenced: another process holds this node id")]
    Fenced,
    /// NATS did not answer.
    #[error("the cluster store is unavailable")]
    Unavailable,
}

/// A node id this process holds, and the revision of its last heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeClaim {
    /// The node id, 1 to 1023.
    pub id: u16,
    /// The revision of the claim or of the last heartbeat.
    pub revision: u64,
}

/// The live node ids, as seen through a watch of the nodes bucket ([`NatsBus::watch_nodes`]).
/// Dropping it stops the watch.
pub struct NodeWatch {
    live: watch::Receiver<Arc<[u16]>>,
    task: JoinHandle<()>,
}

impl NodeWatch {
    /// The node ids whose last heartbeat is younger than `dead_after`, ascending.
    pub fn live(&self) -> Arc<[u16]> {
        self.live.borrow().clone()
    }

    /// Waits until the live set changes, and returns it; `None` once the watch has ended.
    pub async fn changed(&mut self) -> Option<Arc<[u16]>> {
        self.live.changed().await.ok()?;
        Some(self.live())
    }
}

impl Drop for NodeWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The live value of `key`, or `None` if absent or deleted.
async fn read(store: &Store, key: &str) -> Result<Option<Entry>, CasError> {
    match store.entry(key).await {
        Ok(Some(entry)) if entry.operation == Operation::Put => Ok(Some(entry)),
        Ok(_) => Ok(None),
        Err(_) => Err(CasError::Unavailable),
    }
}

/// The live value of `key` with its revision.
async fn versioned(store: &Store, key: &str) -> Result<Option<Versioned>, CasError> {
    let entry = read(store, key).await?;
    Ok(entry.map(|e| Versioned { value: e.value, revision: e.revision }))
}

/// A failed conditional write: the revision moved, or the bucket could not be reached.
fn cas_error(kind: UpdateErrorKind) -> CasError {
    match kind {
        UpdateErrorKind::WrongLastRevision => CasError::WrongRevision,
        _ => CasError::Unavailable,
    }
}

async fn create(store: &Store, key: &str, value: Bytes) -> Result<u64, CreateError> {
    store.create(key, value).await.map_err(|e| match e.kind() {
        CreateErrorKind::AlreadyExists => CreateError::Exists,
        _ => CreateError::Unavailable,
    })
}

async fn update(store: &Store, key: &str, value: Bytes, revision: u64) -> Result<u64, CasError> {
    store.update(key, value, revision).await.map_err(|e| cas_error(e.kind()))
}

impl NatsBus {
    /// Registers room `room_id` with `record` if no live record exists; the revision returned is
    /// the new incarnation's epoch.
    pub async fn create(&self, room_id: &str, record: Bytes) -> Result<u64, CreateError> {
        create(&self.inner.rooms, &naming::room_key(room_id), record).await
    }

    /// The registry record of `room_id`, with its revision (the epoch if never replaced).
    pub async fn get(&self, room_id: &str) -> Result<Option<Versioned>, CasError> {
        versioned(&self.inner.rooms, &naming::room_key(room_id)).await
    }

    /// Replaces the registry record of `room_id` if its revision is `expected_rev` (a new
    /// incarnation over a destroyed one); returns the new revision.
    pub async fn replace(
        &self,
        room_id: &str,
        record: Bytes,
        expected_rev: u64,
    ) -> Result<u64, CasError> {
        update(&self.inner.rooms, &naming::room_key(room_id), record, expected_rev).await
    }

    /// Deletes the registry record of `room_id` if its revision is `expected_rev`.
    pub async fn delete(&self, room_id: &str, expected_rev: u64) -> Result<(), CasError> {
        let key = naming::room_key(room_id);
        let deleted = self.inner.rooms.delete_expect_revision(&key, Some(expected_rev)).await;
        deleted.map_err(|e| cas_error(e.kind()))
    }

    /// The snapshot of a room incarnation, with its revision.
    pub async fn snapshot(&self, log: &LogRef) -> Result<Option<Versioned>, CasError> {
        versioned(&self.inner.snaps, &naming::snapshot_key(log)).await
    }

    /// Writes the snapshot of a room incarnation if the stored one is at `expected_rev` (`None`:
    /// if there is none); returns the new revision. Values are limited to [`MAX_SNAPSHOT`].
    pub async fn put_snapshot(
        &self,
        log: &LogRef,
        snapshot: Bytes,
        expected_rev: Option<u64>,
    ) -> Result<u64, CasError> {
        if snapshot.len() > MAX_SNAPSHOT {
            return Err(CasError::TooLarge);
        }
        let key = naming::snapshot_key(log);
        match expected_rev {
            Some(revision) => update(&self.inner.snaps, &key, snapshot, revision).await,
            None => create(&self.inner.snaps, &key, snapshot).await.map_err(|e| match e {
                CreateError::Exists => CasError::WrongRevision,
                CreateError::Unavailable => CasError::Unavailable,
            }),
        }
    }

    /// Deletes the snapshot of a room incarnation.
    pub async fn delete_snapshot(&self, log: &LogRef) -> Result<(), CasError> {
        let key = naming::snapshot_key(log);
        self.inner.snaps.purge(&key).await.map_err(|_| CasError::Unavailable)
    }

    /// Makes `value` the session of `user` (last writer wins, by a compare-and-set loop) and
    /// returns the value it replaced, whose session the caller must end.
    pub async fn claim_user(&self, user: &str, value: Bytes) -> Result<Option<Bytes>, CasError> {
        let key = naming::user_key(user);
        let store = &self.inner.users;
        for _ in 0..64 {
            let current = read(store, &key).await?;
            let written = match &current {
                Some(entry) => update(store, &key, value.clone(), entry.revision).await,
                None => create(store, &key, value.clone()).await.map_err(|e| match e {
                    CreateError::Exists => CasError::WrongRevision,
                    CreateError::Unavailable => CasError::Unavailable,
                }),
            };
            match written {
                Ok(_) => return Ok(current.map(|e| e.value)),
                Err(CasError::WrongRevision) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CasError::Unavailable)
    }

    /// Claims the lowest free node id, writing `value` (the first heartbeat) under it. An id whose
    /// last heartbeat is older than [`NatsOptions::dead_after`](super::NatsOptions::dead_after)
    /// counts as free, and its old holder is fenced at its next heartbeat. All 1,023 ids held
    /// gives [`CasError::WrongRevision`].
    pub async fn claim_node(&self, value: Bytes) -> Result<NodeClaim, CasError> {
        let store = &self.inner.nodes;
        let dead_after = self.inner.opts.dead_after();
        for id in 1..=MAX_NODE_ID {
            let key = naming::node_key(id);
            match create(store, &key, value.clone()).await {
                Ok(revision) => return Ok(NodeClaim { id, revision }),
                Err(CreateError::Unavailable) => return Err(CasError::Unavailable),
                Err(CreateError::Exists) => {}
            }
            let Ok(Some(entry)) = read(store, &key).await else { continue };
            if age(&entry) < dead_after {
                continue;
            }
            if let Ok(revision) = update(store, &key, value.clone(), entry.revision).await {
                return Ok(NodeClaim { id, revision });
            }
        }
        Err(CasError::WrongRevision)
    }

    /// Claims node id `id` (configured rather than drawn), writing `value` (the first heartbeat)
    /// under it: free, or held by a node whose last heartbeat is older than
    /// [`NatsOptions::dead_after`](super::NatsOptions::dead_after) (fenced at its next
    /// heartbeat). [`CasError::WrongRevision`] if a live node holds it.
    pub async fn claim_node_id(&self, id: u16, value: Bytes) -> Result<NodeClaim, CasError> {
        let store = &self.inner.nodes;
        let key = naming::node_key(id);
        match create(store, &key, value.clone()).await {
            Ok(revision) => return Ok(NodeClaim { id, revision }),
            Err(CreateError::Unavailable) => return Err(CasError::Unavailable),
            Err(CreateError::Exists) => {}
        }
        let Some(entry) = read(store, &key).await? else { return Err(CasError::WrongRevision) };
        if age(&entry) < self.inner.opts.dead_after() {
            return Err(CasError::WrongRevision);
        }
        let revision = update(store, &key, value, entry.revision).await?;
        Ok(NodeClaim { id, revision })
    }

    /// Writes a heartbeat under `claim` if this process still holds it.
    pub async fn heartbeat(
        &self,
        claim: &mut NodeClaim,
        value: Bytes,
    ) -> Result<(), HeartbeatError> {
        let key = naming::node_key(claim.id);
        match update(&self.inner.nodes, &key, value, claim.revision).await {
            Ok(revision) => {
                claim.revision = revision;
                Ok(())
            }
            Err(CasError::WrongRevision) => Err(HeartbeatError::Fenced),
            Err(_) => Err(HeartbeatError::Unavailable),
        }
    }

    /// Watches the node ids: the set of those with a heartbeat younger than
    /// [`NatsOptions::dead_after`](super::NatsOptions::dead_after), judged from the server's
    /// timestamp of each heartbeat against this machine's clock.
    pub async fn watch_nodes(&self) -> Result<NodeWatch, CasError> {
        let mut watch =
            self.inner.nodes.watch_with_history("id.*").await.map_err(|_| CasError::Unavailable)?;
        let dead_after = self.inner.opts.dead_after();
        let (tx, live) = watch::channel(Arc::<[u16]>::from(Vec::new()));
        let task = tokio::spawn(async move {
            let mut beats: HashMap<u16, SystemTime> = HashMap::new();
            let mut tick = tokio::time::interval((dead_after / 4).max(Duration::from_millis(10)));
            loop {
                tokio::select! {
                    entry = watch.next() => {
                        let Some(Ok(entry)) = entry else { return };
                        let Some(id) = entry.key.strip_prefix("id.").and_then(|n| n.parse().ok())
                        else {
                            continue;
                        };
                        if entry.operation == Operation::Put {
                            beats.insert(id, SystemTime::from(entry.created));
                        } else {
                            beats.remove(&id);
                        }
                    }
                    _ = tick.tick() => {}
                    () = tx.closed() => return,
                }
                let now = SystemTime::now();
                let mut ids: Vec<u16> = beats
                    .iter()
                    .filter(|(_, at)| now.duration_since(**at).unwrap_or_default() < dead_after)
                    .map(|(id, _)| *id)
                    .collect();
                ids.sort_unstable();
                if **tx.borrow() != *ids {
                    tx.send_replace(ids.into());
                }
            }
        });
        Ok(NodeWatch { live, task })
    }
}

/// How long ago the server stored `entry`, by this machine's clock.
fn age(entry: &Entry) -> Duration {
    SystemTime::now().duration_since(SystemTime::from(entry.created)).unwrap_or_default()
}
