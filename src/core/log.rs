//! The room log's entries: what one node proposes to a room and every replica applies.
//!
//! A [`LogEntry`] is the internal, versioned unit of a room's ordered log (one JetStream
//! message in cluster mode). It is separate from the client wire format and never reaches a
//! client. Every replica applies a room's entries in log order, and the apply decides each op's
//! outcome from the entry and the replica alone (see `bus.rs`), so the replicas agree.
//!
//! Encoding: bincode 2.0.1 in the wire's standard layout (little-endian varints). Decoding takes
//! an exact slice of at most [`MAX_ENTRY_LEN`] bytes under a byte limit ([`ENTRY_CONFIG`]),
//! rejects trailing bytes, an unknown version and more than [`MAX_OPS`] ops. [`Op`] is
//! append-only like the wire enums: a variant is never removed or reordered.

use std::sync::Arc;

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};
use bytes::Bytes;

use crate::wire::{AttributeOp, LeaveReason, MessageBody, Priority};

/// The entry format this build writes and reads.
pub const LOG_VERSION: u8 = 1;

/// The largest encoded entry a replica accepts.
pub const MAX_ENTRY_LEN: usize = 1024 * 1024;

/// The most ops one entry holds (a message id keeps 6 bits for the op's index).
pub const MAX_OPS: usize = 64;

/// The byte budget of decoding one entry: twice its largest length, since bincode counts each
/// integer at its in-memory size.
pub const ENTRY_DECODE_LIMIT: usize = 2 * MAX_ENTRY_LEN;

/// The bincode configuration of log entries, with the [`ENTRY_DECODE_LIMIT`] byte limit.
pub const ENTRY_CONFIG: Configuration<LittleEndian, Varint, Limit<ENTRY_DECODE_LIMIT>> =
    bincode::config::standard().with_limit::<ENTRY_DECODE_LIMIT>();

/// A node as the log knows it: its id (the top bits of its session ids) and a random number
/// drawn at each start, so that a restarted node is told apart from its former run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub struct NodeRef {
    /// The node id (10 bits).
    pub id: u16,
    /// This run of the node.
    pub incarnation: u64,
}

/// One entry of a room's log.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LogEntry {
    /// The format version, [`LOG_VERSION`].
    pub v: u8,
    /// The node that proposed it.
    pub proposer: NodeRef,
    /// The proposer's number for it (unique per proposer run): the proposer finds the requests
    /// waiting on it by this number.
    pub proposal: u64,
    /// The proposer's wall clock (Unix ms) when it proposed: message timestamps, and in cluster
    /// mode the room's clock for history ages and deduplication.
    pub time_ms: u64,
    /// The proposer's monotonic clock (ms): the room's clock in single-node mode only, where the
    /// proposer is the only replica; a replica of another node never reads it.
    pub mono_ms: u64,
    /// What to do, in order.
    pub ops: Vec<Op>,
}

/// One state change of a room. Append-only: never remove or reorder a variant.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Op {
    /// Makes the room: the first entry of an incarnation (an epoch).
    Create {
        /// The room's name.
        room_name: String,
        /// Seconds an empty room waits before its destroy.
        destroy_delay_s: u32,
        /// Initial attributes, owned by `owner`.
        attributes: Vec<(String, String)>,
        /// The user whose request made the room (none for the operator's rooms).
        owner: Option<Arc<str>>,
    },
    /// A session joins.
    Join {
        /// The user.
        user: Arc<str>,
        /// Its display name.
        user_name: String,
        /// The session (its node is in its top bits).
        sid: u64,
    },
    /// A session leaves.
    Leave {
        /// The user.
        user: Arc<str>,
        /// The session.
        sid: u64,
        /// Why, as others are told.
        reason: LeaveReason,
    },
    /// A session moves to a new id without leaving (a resumption on another node).
    Rebind {
        /// The user.
        user: Arc<str>,
        /// The session's former id.
        old_sid: u64,
        /// Its new id.
        new_sid: u64,
    },
    /// A room message.
    Message {
        /// The sender's user id.
        sender: Arc<str>,
        /// The sending session; 0 for the operator, who is no member.
        sid: u64,
        /// The sender's idempotency key.
        client_msg_id: Option<String>,
        /// Its priority.
        priority: Priority,
        /// Its body.
        body: MessageBody,
    },
    /// The room's delayed destroy is due: applied only while the room is still empty.
    Destroy,
    /// Room attribute steps of a member (a set, a delete, or an atomic batch).
    RoomAttrs {
        /// The member.
        caller: Arc<str>,
        /// Its session.
        sid: u64,
        /// The steps.
        ops: Vec<AttributeOp>,
        /// All or nothing (a batch), or each key on its own (a set or a delete).
        atomic: bool,
    },
    /// Member attributes set by a member.
    MemberAttrs {
        /// The member.
        caller: Arc<str>,
        /// Its session.
        sid: u64,
        /// The members whose attributes are set.
        user_ids: Vec<String>,
        /// Keys and values.
        attributes: Vec<(String, String)>,
    },
}

/// Why bytes are not a log entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// Over [`MAX_ENTRY_LEN`].
    #[error("entry of {0} bytes is over the maximum")]
    TooLarge(usize),
    /// Not a bincode entry, or bytes left after it.
    #[error("malformed entry: {0}")]
    Malformed(String),
    /// A format this build does not read.
    #[error("entry version {0} is not {LOG_VERSION}")]
    Version(u8),
    /// More ops than [`MAX_OPS`].
    #[error("entry of {0} ops")]
    TooManyOps(usize),
}

impl LogEntry {
    /// Encodes the entry once, for the bus.
    pub fn encode(&self) -> Bytes {
        Bytes::from(bincode::encode_to_vec(self, ENTRY_CONFIG).unwrap_or_default())
    }

    /// Decodes an entry from exactly `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<LogEntry, LogError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(LogError::TooLarge(bytes.len()));
        }
        // A later format may change everything after the version byte (a u8 is one raw byte).
        match bytes.first() {
            Some(&LOG_VERSION) => {}
            Some(&v) => return Err(LogError::Version(v)),
            None => return Err(LogError::Malformed("empty".into())),
        }
        let (entry, used) = bincode::decode_from_slice::<LogEntry, _>(bytes, ENTRY_CONFIG)
            .map_err(|e| LogError::Malformed(e.to_string()))?;
        if used != bytes.len() {
            return Err(LogError::Malformed(format!("{} trailing bytes", bytes.len() - used)));
        }
        if entry.ops.len() > MAX_OPS {
            return Err(LogError::TooManyOps(entry.ops.len()));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LogEntry {
        let user: Arc<str> = Arc::from("alice");
        LogEntry {
            v: LOG_VERSION,
            proposer: NodeRef { id: 3, incarnation: 0xdead_beef },
            proposal: 42,
            time_ms: 1_765_000_000_000,
            mono_ms: 1234,
            ops: vec![
                Op::Create {
                    room_name: "R".into(),
                    destroy_delay_s: 5,
                    attributes: vec![("k".into(), "v".into())],
                    owner: Some(user.clone()),
                },
                Op::Join { user: user.clone(), user_name: "Alice".into(), sid: 7 << 43 },
                Op::Message {
                    sender: user.clone(),
                    sid: 7 << 43,
                    client_msg_id: Some("m1".into()),
                    priority: Priority::High,
                    body: MessageBody::Text("hi".into()),
                },
                Op::Rebind { user: user.clone(), old_sid: 1, new_sid: 2 },
                Op::Leave { user: user.clone(), sid: 2, reason: LeaveReason::Offline },
                Op::Destroy,
                Op::RoomAttrs {
                    caller: user.clone(),
                    sid: 2,
                    ops: vec![AttributeOp::Delete { keys: vec!["k".into()], is_force: true }],
                    atomic: true,
                },
                Op::MemberAttrs {
                    caller: user,
                    sid: 2,
                    user_ids: vec!["bob".into()],
                    attributes: vec![("a".into(), "b".into())],
                },
            ],
        }
    }

    #[test]
    fn every_op_round_trips() {
        let entry = sample();
        assert_eq!(LogEntry::decode(&entry.encode()).unwrap(), entry);
    }

    #[test]
    fn op_tags_are_pinned() {
        // Append-only: the tag of each variant is its position, and the first bytes say so.
        let bytes = LogEntry { ops: vec![Op::Destroy], ..sample() }.encode();
        assert_eq!(bytes[0], LOG_VERSION);
        assert_eq!(bytes[bytes.len() - 2..], [1, 5]);
    }

    #[test]
    fn hostile_bytes_are_refused() {
        let good = sample().encode();
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(matches!(LogEntry::decode(&trailing), Err(LogError::Malformed(_))));
        for cut in 0..good.len() {
            assert!(LogEntry::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut later = good.to_vec();
        later[0] = 2;
        assert_eq!(LogEntry::decode(&later), Err(LogError::Version(2)));
        assert_eq!(
            LogEntry::decode(&vec![1; MAX_ENTRY_LEN + 1]),
            Err(LogError::TooLarge(MAX_ENTRY_LEN + 1))
        );
        // An ops vector claiming 2^40 elements fails the byte limit instead of allocating.
        let mut huge = vec![1u8, 0, 0, 0, 0, 0, 253];
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(LogEntry::decode(&huge), Err(LogError::Malformed(_))));
        let many = LogEntry { ops: vec![Op::Destroy; MAX_OPS + 1], ..sample() }.encode();
        assert_eq!(LogEntry::decode(&many), Err(LogError::TooManyOps(MAX_OPS + 1)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = LogEntry::decode(&bytes);
        }
    }
}
