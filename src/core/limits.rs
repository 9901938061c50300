//! Limits the core enforces, each with its default (docs/PROTOCOL.md, section 9).

use serde::{Deserialize, Serialize};

use super::history::Bounds;
use crate::wire::{ErrorBody, ErrorCode};

/// Every limit of the room core. All are configurable (`[limits]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Rooms one session may be in at once.
    pub rooms_per_user: usize,
    /// Members one room may hold.
    pub members_per_room: usize,
    /// Rooms the server holds at once (empty rooms waiting for a delayed destroy count).
    pub rooms_per_server: usize,
    /// Longest room name in bytes.
    pub max_room_name_bytes: usize,
    /// Longest user name in bytes.
    pub max_user_name_bytes: usize,
    /// Largest destroy_delay_s accepted.
    pub max_destroy_delay_s: u32,
    /// Largest message body in bytes.
    pub max_message_bytes: usize,
    /// Longest client_msg_id in bytes.
    pub max_client_msg_id_bytes: usize,
    /// How long a client_msg_id is remembered for idempotent retries.
    pub dedup_window_s: u64,
    /// How many client_msg_ids of one member are remembered in one room at most (the oldest
    /// are forgotten first).
    pub dedup_max_per_member: usize,
    /// Messages a room's history keeps.
    pub history_max_messages: usize,
    /// Age after which history messages are dropped.
    pub history_max_age_s: u64,
    /// Bytes (of their event frames) a room's history keeps; the oldest go first. The newest
    /// message is always kept.
    pub history_max_bytes: usize,
    /// Bytes all rooms' histories together keep. Over it, the oldest history goes first: that
    /// of empty rooms (awaiting a delayed destroy), then that of rooms with members, but never
    /// a message stored within twice `offline_grace_s`, which a member that lost its
    /// connection may still need to resume; the budget is exceeded only by those.
    pub history_max_total_bytes: usize,
    /// Empty rooms a user's CreateRoom (or SwitchRoom) made that may await their delayed
    /// destroy at once; when one more empties, the one due first is destroyed at once.
    pub delayed_rooms_per_user: usize,
    /// Bytes of encoded messages one history page holds at most (it holds at least one
    /// message), well under the outbound queue bound so that a few pages asked at once do not
    /// make a slow consumer.
    pub history_page_max_bytes: usize,
    /// Sustained messages per second one user may send to one room (0 disables the limit).
    pub rate_limit_per_s: u32,
    /// Burst size of the per-user per-room message rate limit.
    pub rate_limit_burst: u32,
    /// Sustained requests per second one user may make, counting every request but messages
    /// (which have their own limit) and logout: joins, leaves, queries, attribute operations,
    /// token renewals (0 disables the limit). Over it: `operation_rate_limited`.
    pub ops_rate_per_s: u32,
    /// Burst size of the per-user operation rate limit.
    pub ops_burst: u32,
    /// Sustained requests per second from one client address (an IPv4 address or an IPv6 /64,
    /// as the server keys it), counting logins, resumes and every operation but messages and
    /// logout, over all its connections (0 disables the limit). Over it: `address_rate_limited`.
    pub address_ops_rate_per_s: u32,
    /// Burst size of the per-address operation rate limit.
    pub address_ops_burst: u32,
    /// Window over which member join/leave events are batched.
    pub presence_batch_ms: u64,
    /// Members listed in one join/leave event at most.
    pub presence_batch_max: usize,
    /// Above this many members, join/leave events give way to member-count updates.
    pub presence_count_threshold: usize,
    /// Whether one user may log in from several devices at once (else a new login kicks the old).
    pub allow_multi_device: bool,
    /// Seconds a session keeps its rooms after its connection is lost, waiting to be resumed
    /// (0: leave at once).
    pub offline_grace_s: u64,
    /// Seconds before its token expires that a session gets a `token_will_expire` event.
    pub token_expiry_warning_s: u64,
    /// Bytes of missed messages one resumption replays at most, over all the session's rooms
    /// (shared among them; the newest of each room are kept). Also at most half of
    /// `outbound_queue_bytes`: see [`Limits::replay_budget`].
    pub max_replay_bytes: usize,
    /// Missed messages one resumption replays at most, over all the session's rooms. Also at
    /// most half of `outbound_queue_frames`.
    pub max_replay_messages: usize,
    /// Room attribute keys per room.
    pub room_attributes_max_keys: usize,
    /// Longest room attribute key in bytes.
    pub room_attribute_key_max_bytes: usize,
    /// Longest room attribute value in bytes.
    pub room_attribute_value_max_bytes: usize,
    /// Keys and values of one room's attributes together, in bytes.
    pub room_attributes_max_total_bytes: usize,
    /// Members of one room that may have member attributes.
    pub member_attributes_max_members: usize,
    /// Member attribute keys per member.
    pub member_attributes_max_keys: usize,
    /// Longest member attribute key in bytes.
    pub member_attribute_key_max_bytes: usize,
    /// Longest member attribute value in bytes.
    pub member_attribute_value_max_bytes: usize,
    /// Bytes a connection's outbound queue holds at most: the server's `[queue] max_bytes`,
    /// which it copies here (not read from `[limits]`) so that a replay stays under it.
    #[serde(skip)]
    pub outbound_queue_bytes: usize,
    /// Frames a connection's outbound queue holds at most: the server's `[queue] max_frames`.
    #[serde(skip)]
    pub outbound_queue_frames: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rooms_per_user: 5,
            members_per_room: 10_000,
            rooms_per_server: 100_000,
            max_room_name_bytes: 256,
            max_user_name_bytes: 256,
            max_destroy_delay_s: 10_800,
            max_message_bytes: 32 * 1024,
            max_client_msg_id_bytes: 64,
            dedup_window_s: 300,
            dedup_max_per_member: 1024,
            history_max_messages: 1_000,
            history_max_age_s: 3 * 3600,
            history_max_bytes: 4 << 20,
            history_max_total_bytes: 1 << 30,
            delayed_rooms_per_user: 10,
            history_page_max_bytes: 1024 * 1024,
            rate_limit_per_s: 200,
            rate_limit_burst: 400,
            ops_rate_per_s: 50,
            ops_burst: 200,
            address_ops_rate_per_s: 1_000,
            address_ops_burst: 10_000,
            presence_batch_ms: 50,
            presence_batch_max: 100,
            presence_count_threshold: 500,
            allow_multi_device: false,
            offline_grace_s: 30,
            token_expiry_warning_s: 30,
            max_replay_bytes: 2 * 1024 * 1024,
            max_replay_messages: 4_096,
            room_attributes_max_keys: 20,
            room_attribute_key_max_bytes: 16,
            room_attribute_value_max_bytes: 1024,
            room_attributes_max_total_bytes: 5 * 1024,
            member_attributes_max_members: 500,
            member_attributes_max_keys: 30,
            member_attribute_key_max_bytes: 8,
            member_attribute_value_max_bytes: 64,
            outbound_queue_bytes: 8 * 1024 * 1024,
            outbound_queue_frames: 16_384,
        }
    }
}

impl Limits {
    /// How much history each room keeps.
    pub(crate) fn history_bounds(&self) -> Bounds {
        Bounds {
            max_len: self.history_max_messages,
            max_bytes: self.history_max_bytes,
            max_age_ms: self.history_max_age_s.saturating_mul(1000),
        }
    }

    /// What one resumption may replay, over all the session's rooms: (bytes of event frames,
    /// messages). At most half of the connection's outbound queue, so that the replay, the
    /// Resumed answer (one entry of at most about 150 bytes per room, at most
    /// [`MAX_RESUME_ROOMS`] listed plus `rooms_per_user` held: about 16 KiB by default,
    /// whatever the frame limit), the stream headers and the live traffic that arrives while
    /// the replay drains fit in the other half, and a resumption never ends as a slow consumer.
    pub fn replay_budget(&self) -> (usize, usize) {
        (
            self.max_replay_bytes.min(self.outbound_queue_bytes / 2),
            self.max_replay_messages.min(self.outbound_queue_frames / 2),
        )
    }
}

/// Longest user id in bytes (fixed by the protocol).
pub const MAX_USER_ID_BYTES: usize = 32;
/// Longest room id in bytes (fixed by the protocol).
pub const MAX_ROOM_ID_BYTES: usize = 128;
/// Largest page of a member or history query.
pub const MAX_QUERY_COUNT: u32 = 100;
/// Most user ids in one query_room_members_by_id.
pub const MAX_QUERY_USER_IDS: usize = 10;
/// Most rooms one Resume may list (more is refused with `invalid_request`), unless
/// `rooms_per_user` is higher: then that many.
pub const MAX_RESUME_ROOMS: usize = 100;

/// The rule a user id follows, as error messages state it.
pub const USER_ID_RULE: &str = "1-32 bytes of [A-Za-z0-9_.@-]";
/// The rule a room id follows, as error messages state it.
pub const ROOM_ID_RULE: &str = "1-128 bytes of [A-Za-z0-9_.@:-]";

/// `invalid_user_id`, with the rule the id broke.
pub(crate) fn invalid_user_id() -> ErrorBody {
    ErrorBody::with_message(ErrorCode::InvalidUserId, format!("invalid user id: {USER_ID_RULE}"))
}

/// `invalid_room_id`, with the rule the id broke.
pub(crate) fn invalid_room_id() -> ErrorBody {
    ErrorBody::with_message(ErrorCode::InvalidRoomId, format!("invalid room id: {ROOM_ID_RULE}"))
}

/// An error about a limit, its message stating the limit: `"<the code's text>: <limit>"`.
pub(crate) fn over_limit(code: ErrorCode, limit: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::with_message(code, format!("{}: {limit}", code.text()))
}

/// Whether `id` is a valid user id: 1-32 bytes of `[A-Za-z0-9_.@-]`.
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_USER_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// Whether `id` is a valid room id: 1-128 bytes of `[A-Za-z0-9_.@:-]`.
pub fn valid_room_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ROOM_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b':' | b'-'))
}

/// Checks a page size (1-100) and turns a `next_flag` (empty for the first page) into the join
/// position the page starts at.
pub(crate) fn page_start(next_flag: &str, count: u32) -> Result<u64, ErrorBody> {
    if count == 0 || count > MAX_QUERY_COUNT {
        return Err(ErrorBody::with_message(ErrorCode::InvalidRequest, "count must be 1-100"));
    }
    if next_flag.is_empty() {
        return Ok(0);
    }
    next_flag
        .parse()
        .map_err(|_| ErrorBody::with_message(ErrorCode::InvalidRequest, "bad next_flag"))
}
