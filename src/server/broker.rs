//! The room log's carrier in cluster mode: what carries out the core's [`BusOp`]s and brings
//! back its [`BusEvent`]s. The decisions are the core's (src/core/bus.rs); a broker only
//! appends, numbers, registers and delivers.
//!
//! - [`MemoryBroker`]: several in-process servers share one (tests, examples).
//! - `NatsBroker` (feature `cluster`): the room logs in NATS JetStream.
//!
//! A server hands each `BusOp` to its broker under the core lock, in the order the core
//! emitted it, and never waits there: the memory broker only takes its own lock and pushes
//! into queues; the NATS broker queues the op for its task. Events come back through one
//! queue per server, drained into the core by the server's bus task.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::core::{BusEvent, BusOp, CreateError, LogRef, NodeRef};

/// Where a clustered server's room logs live.
#[derive(Clone)]
pub enum Broker {
    /// In this process, shared with other servers of the process.
    Memory(MemoryBroker),
    /// In NATS JetStream, shared with every node on the same NATS and prefix.
    #[cfg(feature = "cluster")]
    Nats(super::nats_broker::NatsBroker),
}

impl Broker {
    /// Attaches the server `node`: returns what it hands ops to and the queue its events arrive on.
    pub(super) fn attach(&self, node: NodeRef) -> (Arc<dyn Carrier>, UnboundedReceiver<BusEvent>) {
        #[cfg(not(feature = "cluster"))]
        let _ = node;
        let (tx, rx) = unbounded_channel();
        let carrier: Arc<dyn Carrier> = match self {
            Broker::Memory(m) => Arc::new(m.attach(tx)),
            #[cfg(feature = "cluster")]
            Broker::Nats(n) => Arc::new(n.attach(node, tx)),
        };
        (carrier, rx)
    }
}

/// Carries out one server's bus ops, in the order it is handed them, without blocking.
pub(super) trait Carrier: Send + Sync {
    /// Takes one op (called under the core lock).
    fn carry(&self, op: BusOp);
}

#[cfg(feature = "cluster")]
impl Carrier for super::nats_broker::NatsNode {
    fn carry(&self, op: BusOp) {
        super::nats_broker::NatsNode::carry(self, op);
    }
}

/// Room logs in memory, shared by the servers of one process: appends get a global sequence,
/// every record reaches every attached server in its room's order, the registry's create is
/// exact, and a removed room's registry record and log are dropped.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Default)]
struct Memory {
    logs: HashMap<LogRef, Vec<(u64, Bytes)>>,
    registry: HashMap<Arc<str>, u64>,
    /// The last sequence given (to an append or a registry create): one counter, so epochs
    /// grow as JetStream revisions do.
    last_seq: u64,
    nodes: BTreeMap<usize, UnboundedSender<BusEvent>>,
    next_node: usize,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// The number of room logs held.
    pub fn log_count(&self) -> usize {
        self.lock().logs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attach(&self, events: UnboundedSender<BusEvent>) -> MemoryNode {
        let mut m = self.lock();
        let node = m.next_node;
        m.next_node += 1;
        m.nodes.insert(node, events);
        MemoryNode { broker: self.clone(), node }
    }
}

/// One server's handle on a [`MemoryBroker`].
struct MemoryNode {
    broker: MemoryBroker,
    node: usize,
}

impl Drop for MemoryNode {
    fn drop(&mut self) {
        self.broker.lock().nodes.remove(&self.node);
    }
}

impl Carrier for MemoryNode {
    fn carry(&self, op: BusOp) {
        let mut guard = self.broker.lock();
        let m = &mut *guard;
        match op {
            BusOp::Append { room, entry, .. } => {
                m.last_seq += 1;
                let seq = m.last_seq;
                let Some(log) = m.logs.get_mut(&room) else {
                    // A log that is gone (its room was destroyed): the proposer alone sees the
                    // entry, as the first of a log it does not hold, and answers its requests.
                    let event =
                        BusEvent::Record { room, stream_seq: seq, prev_stream_seq: 0, entry };
                    m.send(self.node, event);
                    return;
                };
                let prev = log.last().map_or(0, |(s, _)| *s);
                log.push((seq, entry.clone()));
                let event =
                    BusEvent::Record { room, stream_seq: seq, prev_stream_seq: prev, entry };
                m.nodes.retain(|_, tx| tx.send(event.clone()).is_ok());
            }
            BusOp::Create { req, room_id } => {
                let result = if m.registry.contains_key(&room_id) {
                    Err(CreateError::Exists)
                } else {
                    m.last_seq += 1;
                    m.registry.insert(room_id.clone(), m.last_seq);
                    m.logs.insert(LogRef { room_id, epoch: m.last_seq }, Vec::new());
                    Ok(m.last_seq)
                };
                m.send(self.node, BusEvent::Created { req, result });
            }
            BusOp::Remove { room } => {
                if m.registry.get(&room.room_id) == Some(&room.epoch) {
                    m.registry.remove(&room.room_id);
                }
                m.logs.remove(&room);
            }
            BusOp::Repair { room, from_stream_seq } => {
                let Some(log) = m.logs.get(&room) else { return };
                let mut prev = 0;
                let mut records = Vec::new();
                for (seq, entry) in log {
                    if *seq >= from_stream_seq {
                        records.push(BusEvent::Record {
                            room: room.clone(),
                            stream_seq: *seq,
                            prev_stream_seq: prev,
                            entry: entry.clone(),
                        });
                    }
                    prev = *seq;
                }
                for r in records {
                    m.send(self.node, r);
                }
            }
        }
    }
}

impl Memory {
    fn send(&self, node: usize, event: BusEvent) {
        if let Some(tx) = self.nodes.get(&node) {
            let _ = tx.send(event);
        }
    }
}
