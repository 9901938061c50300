//! [`NatsBroker`]: the room logs in NATS JetStream ([`NatsBus`], feature `cluster`).
//!
//! One dispatch task per attached server takes its ops in emitted order and hands each room's
//! ops to that room's task, so one room's appends are stored in emitted order while other rooms'
//! appends do not wait on them; a registry create runs in a task of its own. Phase 1: the node
//! follows every room from its first entry, through a watch of the registry that starts a feed
//! of each incarnation as it appears.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::{JoinHandle, JoinSet};

use crate::cluster::{self, NatsBus};
use crate::core::{AppendError, BusEvent, BusOp, CreateError, LogRef, NodeRef};

/// Records a room repair reads at most in one go; the core asks again for what is still missing.
const REPAIR_MAX: usize = 4096;
/// The wait before the registry watch, or a room's feed, is started again after it failed.
const RETRY: Duration = Duration::from_secs(1);

/// Room logs in NATS JetStream, shared by every node connected to the same NATS and prefix.
#[derive(Clone)]
pub struct NatsBroker {
    bus: NatsBus,
}

impl NatsBroker {
    /// A broker over a connected bus.
    pub fn new(bus: NatsBus) -> NatsBroker {
        NatsBroker { bus }
    }

    /// The bus it carries ops over.
    pub fn bus(&self) -> &NatsBus {
        &self.bus
    }

    pub(super) fn attach(&self, node: NodeRef, events: UnboundedSender<BusEvent>) -> NatsNode {
        let (ops, rx) = unbounded_channel();
        let dispatch = tokio::spawn(dispatch(self.bus.clone(), node, rx, events.clone()));
        let follow = tokio::spawn(follow_rooms(self.bus.clone(), events));
        NatsNode { ops, tasks: [dispatch, follow] }
    }
}

/// One server's handle on a [`NatsBroker`]; dropping it stops its tasks.
pub(super) struct NatsNode {
    ops: UnboundedSender<BusOp>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl NatsNode {
    /// Queues `op` for the dispatch task (the broker's `Carrier`).
    pub(super) fn carry(&self, op: BusOp) {
        let _ = self.ops.send(op);
    }
}

/// Hands each op to its room's task (created on first use, dropped after the room's `Remove`).
async fn dispatch(
    bus: NatsBus,
    node: NodeRef,
    mut ops: UnboundedReceiver<BusOp>,
    events: UnboundedSender<BusEvent>,
) {
    let mut rooms: HashMap<LogRef, UnboundedSender<BusOp>> = HashMap::new();
    let mut tasks = JoinSet::new();
    while let Some(op) = ops.recv().await {
        while tasks.try_join_next().is_some() {}
        let room = match &op {
            BusOp::Create { req, room_id } => {
                tasks.spawn(create(bus.clone(), node, *req, room_id.clone(), events.clone()));
                continue;
            }
            BusOp::Append { room, .. } | BusOp::Repair { room, .. } | BusOp::Remove { room } => {
                room.clone()
            }
        };
        let removing = matches!(op, BusOp::Remove { .. });
        let tx = rooms.entry(room.clone()).or_insert_with(|| {
            let (tx, rx) = unbounded_channel();
            tasks.spawn(room_ops(bus.clone(), node, room.clone(), rx, events.clone()));
            tx
        });
        let _ = tx.send(op);
        if removing {
            rooms.remove(&room);
        }
    }
}

async fn create(
    bus: NatsBus,
    node: NodeRef,
    req: u64,
    room_id: std::sync::Arc<str>,
    events: UnboundedSender<BusEvent>,
) {
    let record = Bytes::from(node.id.to_string());
    let result = bus.create(&room_id, record).await.map_err(|e| match e {
        cluster::CreateError::Exists => CreateError::Exists,
        cluster::CreateError::Unavailable => CreateError::Unavailable,
    });
    let _ = events.send(BusEvent::Created { req, result });
}

/// Carries out one room's ops, one at a time, in the order they were emitted.
async fn room_ops(
    bus: NatsBus,
    node: NodeRef,
    room: LogRef,
    mut ops: UnboundedReceiver<BusOp>,
    events: UnboundedSender<BusEvent>,
) {
    let log = bus.log(&room.room_id, room.epoch);
    while let Some(op) = ops.recv().await {
        match op {
            BusOp::Append { entry, proposal, .. } => {
                let msg_id = format!("{}:{}:{proposal}", node.id, node.incarnation);
                if let Err(e) = bus.append(&log, entry, &msg_id, None).await {
                    tracing::warn!(room = %room.room_id, epoch = room.epoch, error = %e, "append failed");
                    let error = AppendError::Unavailable;
                    let _ =
                        events.send(BusEvent::AppendFailed { room: room.clone(), proposal, error });
                }
            }
            BusOp::Repair { from_stream_seq, .. } => {
                let from = from_stream_seq.saturating_sub(1);
                match bus.read(&log, from, REPAIR_MAX).await {
                    Ok(records) => {
                        for r in records {
                            let _ = events.send(record(&room, r));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(room = %room.room_id, error = %e, "repair read failed")
                    }
                }
            }
            BusOp::Remove { .. } => {
                if let Err(e) = bus.delete(&room.room_id, room.epoch).await {
                    tracing::debug!(room = %room.room_id, error = %e, "registry record not deleted");
                }
                if let Err(e) = bus.purge(&log).await {
                    tracing::warn!(room = %room.room_id, error = %e, "room log not purged");
                }
            }
            BusOp::Create { .. } => {}
        }
    }
}

/// Follows every room incarnation the registry names, from its first entry.
async fn follow_rooms(bus: NatsBus, events: UnboundedSender<BusEvent>) {
    let mut followed = HashSet::new();
    let mut feeds = JoinSet::new();
    loop {
        match bus.watch_rooms().await {
            Ok(mut watch) => {
                while let Some((room_id, epoch)) = watch.next().await {
                    let room = LogRef { room_id: room_id.into(), epoch };
                    if followed.insert(room.clone()) {
                        feeds.spawn(follow_room(bus.clone(), room, events.clone()));
                    }
                }
                tracing::warn!("the registry watch ended; starting it again");
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the registry"),
        }
        if events.is_closed() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Feeds one room log's records, from its first entry, to the core.
async fn follow_room(bus: NatsBus, room: LogRef, events: UnboundedSender<BusEvent>) {
    let log = bus.log(&room.room_id, room.epoch);
    let mut feed = loop {
        match bus.follow(&log, 0).await {
            Ok(feed) => break feed,
            Err(e) => tracing::warn!(room = %room.room_id, error = %e, "cannot follow a room"),
        }
        tokio::time::sleep(RETRY).await;
    };
    while let Some(next) = feed.next().await {
        match next {
            Ok(r) => {
                if events.send(record(&room, r)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(room = %room.room_id, error = %e, "room feed"),
        }
    }
}

fn record(room: &LogRef, r: cluster::Record) -> BusEvent {
    BusEvent::Record {
        room: room.clone(),
        stream_seq: r.stream_seq,
        prev_stream_seq: r.prev_stream_seq,
        entry: r.entry,
    }
}
