//! The room log boundary: how the core proposes a room's state changes and applies them.
//!
//! Every state change of a room (create, join, leave, message, destroy) is an [`Op`] in an
//! ordered log of that room ([`LogEntry`], `log.rs`). A proposer appends entries **without** a
//! compare-and-set; every replica applies a room's entries in log order, and the apply runs the
//! validation and the mutation together, from the entry and the replica alone (the entry's time
//! and log position, never the replica's clock or a node-local counter). So outcomes such as
//! `room_full`, a duplicate `client_msg_id` (the first ack), `not_in_room` are the same on
//! every replica, and only the node holding the requesting session answers it. This departs
//! from the cluster design's compare-and-set on the proposer (its section 5.3): there is no
//! conflict, retry or re-validation path, and any ordered append (a JetStream subject, a Redis
//! stream) carries the log. Checks that belong to a session (its room count with joins still in
//! flight, rate and operation limits, sizes and validity of ids) run at the proposal; a check of
//! the replica at the proposal only rejects what can never succeed.
//!
//! Two modes ([`Bus`]):
//! - [`Bus::Local`], the default and the single-node server: the core is the only replica and
//!   the log is implicit. A proposal takes the room's next log position and is applied at once,
//!   inside the same call, with no entry encoded: outputs, their order and their cost are those
//!   of a core without a log.
//! - [`Bus::External`], cluster mode: a proposal is an [`Output::Bus`] with
//!   [`BusOp::Append`]; its requests wait, by (proposal, op index), for the entry to come back
//!   as a [`BusEvent::Record`], which the caller feeds for **every** entry of a followed room in
//!   log order (this core's own included). A record whose `prev_stream_seq` is not the last one
//!   applied is held and a [`BusOp::Repair`] asks the broker for what is missing. Room creation
//!   goes through the registry first ([`BusOp::Create`], [`BusEvent::Created`]), whose answer
//!   names the new incarnation's epoch; the first entry of that epoch's log is [`Op::Create`].
//!   The broker must append one core's entries to a room in the order it emitted them.
//!
//! In cluster mode the room's clock (history ages, deduplication windows) is the entry time,
//! made monotonic per room (`max(entry.time_ms, last)`), and message ids come from the log
//! position: `(stream_seq << 10) | (op index << 4) | shard` (shard 0 until the log is sharded),
//! below 2^53 while `stream_seq < 2^43`. Every replica must run with the same limits (the apply
//! checks members per room and the attribute limits). Phase 0 limits: a core follows every room
//! from its first entry (no snapshot or bootstrap yet); a rejoin on resumption, resumption on
//! another node (`Op::Rebind`) and the operator's room changes are not carried by the log yet
//! (`cluster_unavailable`); a leave is answered at its proposal (it cannot fail); the rate limits,
//! the room limit per server and the per-creator count of delayed rooms are per node.

use std::sync::Arc;

use bytes::Bytes;

use super::log::{LogEntry, NodeRef, Op, LOG_VERSION};
use super::room::RoomKey;
use super::{err, ConnId, Core, Now, OpResult, Output, SessionId};
use crate::wire::{ErrorBody, ErrorCode, Response};

/// Where a room's log is carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bus {
    /// The core is the only replica; every proposal applies at once (single node).
    #[default]
    Local,
    /// The log is outside the core (cluster mode): proposals go out as [`Output::Bus`] and come
    /// back as [`BusEvent::Record`]s.
    External {
        /// This node.
        node: NodeRef,
    },
}

/// One incarnation of a room: its id and the epoch the registry gave it. Its log is the room's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogRef {
    /// The room id.
    pub room_id: Arc<str>,
    /// The incarnation (the registry's revision at creation).
    pub epoch: u64,
}

/// What the core asks of the bus (cluster mode only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusOp {
    /// Append an encoded [`LogEntry`] to the room's log, after what is there (no condition).
    Append {
        /// The room's log.
        room: LogRef,
        /// The encoded entry.
        entry: Bytes,
        /// The entry's proposal number, for [`BusEvent::AppendFailed`].
        proposal: u64,
    },
    /// Deliver the room's records again from `from_stream_seq` on (one went missing).
    Repair {
        /// The room's log.
        room: LogRef,
        /// The first position missing.
        from_stream_seq: u64,
    },
    /// Register a new room if no room has this id; answered by [`BusEvent::Created`].
    Create {
        /// The core's number for the request.
        req: u64,
        /// The room id.
        room_id: Arc<str>,
    },
    /// The incarnation is destroyed: drop its registry record (so that the id can be created
    /// again) and its log.
    Remove {
        /// The room's log.
        room: LogRef,
    },
}

/// What the bus tells the core (cluster mode only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusEvent {
    /// An entry of a followed room's log, at `stream_seq`, whose predecessor in that log is at
    /// `prev_stream_seq` (0 for the first entry).
    Record {
        /// The room's log.
        room: LogRef,
        /// The entry's position.
        stream_seq: u64,
        /// The position of the entry before it in the room's log.
        prev_stream_seq: u64,
        /// The encoded entry.
        entry: Bytes,
    },
    /// An append failed for good: its requests are answered `cluster_unavailable`.
    AppendFailed {
        /// The room's log.
        room: LogRef,
        /// The proposal that was not appended.
        proposal: u64,
        /// Why.
        error: AppendError,
    },
    /// The registry's answer to [`BusOp::Create`].
    Created {
        /// The request's number.
        req: u64,
        /// The new incarnation's epoch, or why not.
        result: Result<u64, CreateError>,
    },
}

/// Why an append failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// The log could not be reached in time.
    Unavailable,
}

/// Why the registry did not create a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// A room with this id exists.
    Exists,
    /// The registry could not be reached in time.
    Unavailable,
}

/// How a waiting request is answered once its op is applied.
#[derive(Clone, Debug)]
pub(super) enum Answer {
    /// With the op's own result.
    Plain,
    /// A switch: the join's `RoomEntered` becomes `RoomSwitched`.
    Switched {
        /// The room left.
        left_room_id: String,
    },
}

/// A request waiting for its op to be applied.
#[derive(Debug)]
pub(super) struct Waiter {
    /// The op's index in its entry.
    pub index: usize,
    /// The requesting connection.
    pub conn: ConnId,
    /// The request.
    pub request_id: u32,
    /// How to answer.
    pub answer: Answer,
    /// The session whose join this is: its count of joins in flight drops when it is settled.
    pub joining: Option<SessionId>,
}

/// What an op is applied with: the entry's time and position, as every replica sees them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Applied {
    /// The room's clock for this entry (monotonic in single-node mode, entry time in cluster
    /// mode).
    pub clock_ms: u64,
    /// The entry's wall-clock time (message timestamps).
    pub unix_ms: u64,
    /// The message id a Message op at this position gets.
    pub message_id: u64,
    /// Whether this node proposed the entry.
    pub ours: bool,
    /// Whether the entry made the room (its join is the creator's).
    pub created: bool,
}

/// Records held ahead of a gap, per room: beyond this the oldest is dropped (the repair
/// re-delivers it).
const MAX_HELD: usize = 1024;

impl Core {
    /// Whether this core is a replica among others (cluster mode).
    pub(super) fn external(&self) -> Option<NodeRef> {
        match self.bus {
            Bus::Local => None,
            Bus::External { node } => Some(node),
        }
    }

    /// The clock that histories are aged by: monotonic in single-node mode; in cluster mode the
    /// wall clock, which the rooms' entry-time clocks follow.
    pub(super) fn history_clock(&self, now: Now) -> u64 {
        match self.bus {
            Bus::Local => now.mono_ms,
            Bus::External { .. } => now.unix_ms,
        }
    }

    /// The room's clock now: the monotonic clock in single-node mode, its last entry's time in
    /// cluster mode.
    pub(super) fn room_clock(&self, now: Now, key: RoomKey) -> u64 {
        match self.bus {
            Bus::Local => now.mono_ms,
            Bus::External { .. } => self.rooms.get(&key).map_or(0, |r| r.log.clock_ms),
        }
    }

    /// Appends ops to a room's log (cluster mode): one entry, its requests waiting for it.
    pub(super) fn propose(&mut self, now: Now, room: LogRef, ops: Vec<Op>, waiters: Vec<Waiter>) {
        let Some(node) = self.external() else { return };
        self.next_proposal += 1;
        let proposal = self.next_proposal;
        let entry = LogEntry {
            v: LOG_VERSION,
            proposer: node,
            proposal,
            time_ms: now.unix_ms,
            mono_ms: now.mono_ms,
            ops,
        };
        if !waiters.is_empty() {
            self.waiting.insert(proposal, waiters);
        }
        self.outputs.push_back(Output::Bus(BusOp::Append {
            room,
            entry: entry.encode(),
            proposal,
        }));
    }

    /// The log of a room this replica holds.
    pub(super) fn log_ref(&self, key: RoomKey) -> Option<LogRef> {
        self.rooms.get(&key).map(|r| LogRef { room_id: r.id.clone(), epoch: r.log.epoch })
    }

    /// Handles what the bus reports (cluster mode; a single-node core ignores it).
    pub fn handle_bus(&mut self, now: Now, event: BusEvent) {
        if self.external().is_none() {
            return;
        }
        match event {
            BusEvent::Record { room, stream_seq, prev_stream_seq, entry } => {
                self.on_record(now, room, stream_seq, prev_stream_seq, entry)
            }
            BusEvent::AppendFailed { proposal, error: AppendError::Unavailable, .. } => {
                let waiters = self.waiting.remove(&proposal).unwrap_or_default();
                for w in waiters {
                    self.settle(w, Err(err(ErrorCode::ClusterUnavailable)));
                }
            }
            BusEvent::Created { req, result } => self.on_created(now, req, result),
        }
    }

    /// Answers a waiting request with its op's result.
    pub(super) fn settle(&mut self, w: Waiter, result: OpResult) {
        if let Some(sid) = w.joining {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.pending_joins = s.pending_joins.saturating_sub(1);
            }
        }
        let result = match (w.answer, result) {
            (Answer::Switched { left_room_id }, Ok(Response::RoomEntered(room))) => {
                Ok(Response::RoomSwitched { left_room_id, room })
            }
            (_, r) => r,
        };
        self.respond(w.conn, w.request_id, result);
    }

    fn on_record(&mut self, now: Now, room: LogRef, seq: u64, prev: u64, bytes: Bytes) {
        let key = self
            .room_ids
            .get(&room.room_id)
            .copied()
            .filter(|k| self.rooms.get(k).is_some_and(|r| r.log.epoch == room.epoch));
        let Some(key) = key else {
            // The first entry of an incarnation makes its replica (unless a later incarnation
            // is held: epochs grow); anything else is of a room this replica does not hold
            // (destroyed, or never followed).
            let newer = self.room_ids.get(&room.room_id).and_then(|k| self.rooms.get(k));
            let stale = prev != 0 || newer.is_some_and(|r| r.log.epoch > room.epoch);
            self.apply_record(now, None, &room, seq, &bytes, stale);
            return;
        };
        let Some(r) = self.rooms.get_mut(&key) else { return };
        if prev != r.log.applied {
            if seq > r.log.applied {
                r.log.held.insert(prev, (seq, bytes));
                if r.log.held.len() > MAX_HELD {
                    r.log.held.pop_last();
                }
                if r.log.repairing.is_none() {
                    let from = r.log.applied + 1;
                    r.log.repairing = Some(from);
                    self.outputs
                        .push_back(Output::Bus(BusOp::Repair { room, from_stream_seq: from }));
                }
            }
            return;
        }
        let mut next = Some((seq, bytes));
        while let Some((seq, bytes)) = next.take() {
            self.apply_record(now, Some(key), &room, seq, &bytes, false);
            let Some(r) = self.rooms.get_mut(&key) else { return };
            r.log.repairing = None;
            next = r.log.held.remove(&seq);
            let stale: Vec<u64> = r.log.held.range(..seq).map(|(p, _)| *p).collect();
            for p in stale {
                r.log.held.remove(&p);
            }
        }
    }

    /// Applies one record in order: each op with the entry's time and position.
    fn apply_record(
        &mut self,
        now: Now,
        mut key: Option<RoomKey>,
        room: &LogRef,
        seq: u64,
        bytes: &[u8],
        stale: bool,
    ) {
        // A record that does not decode is skipped, position and all: every replica skips it.
        let Ok(entry) = LogEntry::decode(bytes) else {
            if let Some(r) = key.and_then(|k| self.rooms.get_mut(&k)) {
                r.log.applied = seq;
            }
            return;
        };
        let ours = self.external() == Some(entry.proposer);
        let mut waiters = if ours { self.waiting.remove(&entry.proposal) } else { None }
            .unwrap_or_default()
            .into_iter()
            .peekable();
        if key.is_none() && (stale || !matches!(entry.ops.first(), Some(Op::Create { .. }))) {
            for w in waiters {
                self.settle(w, Err(err(ErrorCode::RoomDoesNotExist)));
            }
            return;
        }
        let created = key.is_none();
        let mut clock_ms = entry.time_ms;
        if let Some(r) = key.and_then(|k| self.rooms.get_mut(&k)) {
            r.log.applied = seq;
            clock_ms = clock_ms.max(r.log.clock_ms);
            r.log.clock_ms = clock_ms;
        }
        for (index, op) in entry.ops.into_iter().enumerate() {
            let at = Applied {
                clock_ms,
                unix_ms: entry.time_ms,
                message_id: (seq << 10) | ((index as u64) << 4),
                ours,
                created,
            };
            let result = match (key, op) {
                (None, Op::Create { room_name, destroy_delay_s, attributes, owner }) => {
                    let made = self.apply_create(
                        now,
                        room,
                        at,
                        room_name,
                        destroy_delay_s,
                        attributes,
                        owner,
                    );
                    key = Some(made);
                    if let Some(r) = self.rooms.get_mut(&made) {
                        r.log.applied = seq;
                        r.log.clock_ms = clock_ms;
                    }
                    Ok(Response::Pong)
                }
                (Some(k), op) if self.rooms.contains_key(&k) => self.apply_op(now, k, at, op),
                _ => Err(err(ErrorCode::RoomDoesNotExist)),
            };
            while let Some(w) = waiters.next_if(|w| w.index <= index) {
                let result =
                    if w.index == index { result.clone() } else { Err(err(ErrorCode::Internal)) };
                self.settle(w, result);
            }
        }
        for w in waiters {
            self.settle(w, Err(err(ErrorCode::Internal)));
        }
    }
}

/// The answer to what the cluster log does not carry yet.
pub(super) fn not_carried_yet() -> ErrorBody {
    ErrorBody::with_message(ErrorCode::ClusterUnavailable, "not carried by the cluster log yet")
}
