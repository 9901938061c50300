//! Value types shared by requests, responses and events.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// A room member as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Member {
    /// The member's user id.
    pub user_id: String,
    /// The member's display name (may be empty).
    pub user_name: String,
}

/// A room's identity as given to create_room / enter_room.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room id: 1-128 bytes of `[A-Za-z0-9_.@:-]`.
    pub room_id: String,
    /// Room name, at most 256 bytes (may be empty).
    pub room_name: String,
}

/// Configuration used when a request creates a room.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct RoomConfig {
    /// Seconds an empty room waits before it is destroyed (0 destroys at once).
    pub destroy_delay_s: u32,
    /// Initial room attributes as key/value pairs.
    pub attributes: Vec<(String, String)>,
}

/// Message priority. Low is best effort; medium and high are delivered exactly once in order.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Best effort; may be dropped for a slow or lossy receiver. The default.
    #[default]
    Low,
    /// Reliable, in order.
    Medium,
    /// Reliable, in order, sent before medium under congestion.
    High,
}

impl Priority {
    /// The lowercase name (`low`, `medium`, `high`).
    pub fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    /// Parses a lowercase name.
    pub fn from_name(s: &str) -> Option<Priority> {
        match s {
            "low" => Some(Priority::Low),
            "medium" => Some(Priority::Medium),
            "high" => Some(Priority::High),
            _ => None,
        }
    }
}

/// A room message body.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum MessageBody {
    /// UTF-8 text.
    Text(String),
    /// Application-defined bytes with an application-defined sub type.
    Custom {
        /// Application-defined type tag.
        sub_type: u32,
        /// Opaque payload.
        data: Vec<u8>,
    },
}

impl MessageBody {
    /// The size that counts against the message size limit.
    pub fn len(&self) -> usize {
        match self {
            MessageBody::Text(t) => t.len(),
            MessageBody::Custom { data, .. } => data.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A message as delivered to members and kept in history.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct RoomMessage {
    /// The room the message was sent in.
    pub room_id: String,
    /// Per-room sequence number, starting at 1, without gaps.
    pub seq: u64,
    /// Server-wide unique message id.
    pub message_id: u64,
    /// The sender's user id.
    pub sender: String,
    /// Server time of acceptance, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The priority the sender chose.
    pub priority: Priority,
    /// The body.
    pub body: MessageBody,
}

/// Why members left a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The member left (leave_room, leave_all_rooms, switch_room, logout).
    Left,
    /// The member's connection was lost and it did not come back in time.
    Offline,
    /// The member was kicked out.
    Kicked,
}

impl LeaveReason {
    /// The lowercase name used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Offline => "offline",
            LeaveReason::Kicked => "kicked",
        }
    }
}

/// What a create, join or enter answers with: the room as the caller now sees it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct RoomState {
    /// Room id.
    pub room_id: String,
    /// Room name.
    pub room_name: String,
    /// Whether this request created the room.
    pub created: bool,
    /// Whether the caller was already a member (the request changed nothing).
    pub already_member: bool,
    /// Members in the room, the caller included.
    pub member_count: u32,
    /// The seq of the room's latest message (0 when none).
    pub last_seq: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Current room attributes.
    pub attributes: Vec<(String, String)>,
}

/// Where a history query starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAnchor {
    /// The newest messages.
    Latest,
    /// Messages with seq strictly below this one, newest first page.
    BeforeSeq(u64),
    /// Messages with seq strictly above this one.
    AfterSeq(u64),
}

/// A room in a joined-rooms answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct RoomSummary {
    /// Room id.
    pub room_id: String,
    /// Room name.
    pub room_name: String,
    /// Members in the room.
    pub member_count: u32,
}

/// One member's attributes.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct MemberAttributes {
    /// The member.
    pub user_id: String,
    /// Its attributes, sorted by key.
    pub attributes: Vec<(String, String)>,
}

/// A key that a room-attribute operation could not change, and why.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AttributeFailure {
    /// The key.
    pub key: String,
    /// An error code number (for example 6004, attribute_not_owned).
    pub code: u16,
}

/// One step of a room-attributes batch.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum AttributeOp {
    /// Set keys, as set_room_attributes.
    Set {
        /// Keys and values.
        attributes: Vec<(String, String)>,
        /// Overwrite keys owned by other members still in the room.
        is_force: bool,
        /// Make the caller the owner of existing keys it overwrites.
        is_update_owner: bool,
        /// Delete the keys when their owner leaves the room.
        is_delete_after_owner_left: bool,
    },
    /// Delete keys, as delete_room_attributes.
    Delete {
        /// Keys.
        keys: Vec<String>,
        /// Delete keys owned by other members still in the room.
        is_force: bool,
    },
}

/// What resumption did for one room.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct RoomRecovery {
    /// The room.
    pub room_id: String,
    /// Whether the session is a member again (false: the room is gone or could not be joined).
    pub rejoined: bool,
    /// Whether every message after the client's last seen seq was replayed (false when the
    /// history no longer covers the gap, or the room is gone).
    pub recovered: bool,
    /// Messages replayed on the room's stream, before any new one.
    pub replayed: u32,
    /// The room's latest seq.
    pub last_seq: u64,
    /// Why the room was not rejoined (an error code number), 0 when it was.
    pub error_code: u16,
}
