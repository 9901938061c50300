//! The records and enums the bindings hand across: mirrors of the wire types, shaped for
//! UniFFI (no tuples; one message record with the body's fields side by side, as in the CLI's
//! JSON events).

use huddle::client::{self, ClientEvent, SendAck as WireSendAck};
use huddle::wire::{self, ErrorCode, Event, MessageBody};

/// The stable snake_case name of a code of the error table, `unknown` for any other number.
pub(crate) fn code_name(code: u16) -> String {
    ErrorCode::from_u16(code).map_or("unknown", ErrorCode::name).to_string()
}

/// Message priority. Low is best effort; medium and high are delivered exactly once in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Priority {
    /// Best effort; may be dropped for a slow or lossy receiver.
    Low,
    /// Reliable, in order.
    Medium,
    /// Reliable, in order, sent before medium under congestion.
    High,
}

impl From<Priority> for wire::Priority {
    fn from(p: Priority) -> wire::Priority {
        match p {
            Priority::Low => wire::Priority::Low,
            Priority::Medium => wire::Priority::Medium,
            Priority::High => wire::Priority::High,
        }
    }
}

impl From<wire::Priority> for Priority {
    fn from(p: wire::Priority) -> Priority {
        match p {
            wire::Priority::Low => Priority::Low,
            wire::Priority::Medium => Priority::Medium,
            wire::Priority::High => Priority::High,
        }
    }
}

/// One key and its value (room or member attributes).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Attribute {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// Attributes as the wire carries them.
pub(crate) fn pairs(attributes: Vec<Attribute>) -> Vec<(String, String)> {
    attributes.into_iter().map(|a| (a.key, a.value)).collect()
}

/// Attributes as the bindings hand them out.
pub(crate) fn attributes(pairs: Vec<(String, String)>) -> Vec<Attribute> {
    pairs.into_iter().map(|(key, value)| Attribute { key, value }).collect()
}

/// A room member as others see it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Member {
    /// The member's user id.
    pub user_id: String,
    /// The member's display name (may be empty).
    pub user_name: String,
}

impl From<wire::Member> for Member {
    fn from(m: wire::Member) -> Member {
        Member { user_id: m.user_id, user_name: m.user_name }
    }
}

/// Members as the bindings hand them out.
pub(crate) fn members(members: Vec<wire::Member>) -> Vec<Member> {
    members.into_iter().map(Member::from).collect()
}

/// Configuration used when a request creates a room.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct RoomConfig {
    /// Seconds an empty room waits before it is destroyed (0 destroys at once).
    #[uniffi(default = 0)]
    pub destroy_delay_s: u32,
    /// Initial room attributes.
    #[uniffi(default = [])]
    pub attributes: Vec<Attribute>,
}

impl From<RoomConfig> for wire::RoomConfig {
    fn from(c: RoomConfig) -> wire::RoomConfig {
        wire::RoomConfig { destroy_delay_s: c.destroy_delay_s, attributes: pairs(c.attributes) }
    }
}

/// A room as the caller sees it after a create, join, enter or switch.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
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
    pub attributes: Vec<Attribute>,
}

impl From<wire::RoomState> for RoomState {
    fn from(r: wire::RoomState) -> RoomState {
        RoomState {
            room_id: r.room_id,
            room_name: r.room_name,
            created: r.created,
            already_member: r.already_member,
            member_count: r.member_count,
            last_seq: r.last_seq,
            created_at_ms: r.created_at_ms,
            attributes: attributes(r.attributes),
        }
    }
}

/// A room in a joined-rooms answer.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RoomSummary {
    /// Room id.
    pub room_id: String,
    /// Room name.
    pub room_name: String,
    /// Members in the room.
    pub member_count: u32,
}

impl From<wire::RoomSummary> for RoomSummary {
    fn from(r: wire::RoomSummary) -> RoomSummary {
        RoomSummary { room_id: r.room_id, room_name: r.room_name, member_count: r.member_count }
    }
}

/// The answer to a message send.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SendAck {
    /// Server-wide message id.
    pub message_id: u64,
    /// The message's seq in the room.
    pub seq: u64,
    /// Server time of acceptance, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// True when this is the first ack of an earlier send with the same client_msg_id.
    pub duplicate: bool,
}

impl From<WireSendAck> for SendAck {
    fn from(a: WireSendAck) -> SendAck {
        SendAck {
            message_id: a.message_id,
            seq: a.seq,
            timestamp_ms: a.timestamp_ms,
            duplicate: a.duplicate,
        }
    }
}

/// An application-defined message body.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct CustomBody {
    /// Application-defined type tag.
    pub sub_type: u32,
    /// Opaque payload.
    pub data: Vec<u8>,
}

/// A room message, as delivered and kept in history: `text` for a text message, `custom` for
/// an application-defined one.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RoomMessage {
    /// The room.
    pub room_id: String,
    /// Per-room sequence number, from 1, without gaps.
    pub seq: u64,
    /// Server-wide unique message id.
    pub message_id: u64,
    /// The sender's user id.
    pub sender: String,
    /// Server time of acceptance, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The priority the sender chose.
    pub priority: Priority,
    /// The text of a text message.
    pub text: Option<String>,
    /// The body of a custom message.
    pub custom: Option<CustomBody>,
}

impl From<wire::RoomMessage> for RoomMessage {
    fn from(m: wire::RoomMessage) -> RoomMessage {
        let (text, custom) = match m.body {
            MessageBody::Text(t) => (Some(t), None),
            MessageBody::Custom { sub_type, data } => (None, Some(CustomBody { sub_type, data })),
        };
        RoomMessage {
            room_id: m.room_id,
            seq: m.seq,
            message_id: m.message_id,
            sender: m.sender,
            timestamp_ms: m.timestamp_ms,
            priority: m.priority.into(),
            text,
            custom,
        }
    }
}

/// Where a history query starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum HistoryAnchor {
    /// The newest messages.
    Latest,
    /// Messages with seq strictly below `seq`.
    BeforeSeq {
        /// The bound.
        seq: u64,
    },
    /// Messages with seq strictly above `seq`.
    AfterSeq {
        /// The bound.
        seq: u64,
    },
}

impl From<HistoryAnchor> for wire::HistoryAnchor {
    fn from(a: HistoryAnchor) -> wire::HistoryAnchor {
        match a {
            HistoryAnchor::Latest => wire::HistoryAnchor::Latest,
            HistoryAnchor::BeforeSeq { seq } => wire::HistoryAnchor::BeforeSeq(seq),
            HistoryAnchor::AfterSeq { seq } => wire::HistoryAnchor::AfterSeq(seq),
        }
    }
}

/// A page of history.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HistoryPage {
    /// Messages in ascending seq order.
    pub messages: Vec<RoomMessage>,
    /// Whether there are more in the direction asked.
    pub has_more: bool,
}

impl From<client::HistoryPage> for HistoryPage {
    fn from(p: client::HistoryPage) -> HistoryPage {
        HistoryPage {
            messages: p.messages.into_iter().map(RoomMessage::from).collect(),
            has_more: p.has_more,
        }
    }
}

/// A page of members.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MemberPage {
    /// Members, in join order.
    pub members: Vec<Member>,
    /// Pass to the next call; empty when this was the last page.
    pub next_flag: String,
}

/// Those of the asked user ids that are members, and those that are not.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MembersById {
    /// The members among them.
    pub members: Vec<Member>,
    /// The ids that are not members.
    pub not_found: Vec<String>,
}

/// One member's attributes.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MemberAttributes {
    /// The member.
    pub user_id: String,
    /// Its attributes, sorted by key.
    pub attributes: Vec<Attribute>,
}

impl From<wire::MemberAttributes> for MemberAttributes {
    fn from(m: wire::MemberAttributes) -> MemberAttributes {
        MemberAttributes { user_id: m.user_id, attributes: attributes(m.attributes) }
    }
}

/// Members' attributes as the bindings hand them out.
pub(crate) fn member_attributes(m: Vec<wire::MemberAttributes>) -> Vec<MemberAttributes> {
    m.into_iter().map(MemberAttributes::from).collect()
}

/// The answer to a member-attributes change: the changed members, and the ids that are not
/// members.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MembersAttributesSet {
    /// The changed members with all their attributes now.
    pub members: Vec<MemberAttributes>,
    /// The ids that are not members.
    pub failed_user_ids: Vec<String>,
}

/// One page of the members that have attributes.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MemberAttributesPage {
    /// The members.
    pub members: Vec<MemberAttributes>,
    /// Pass to the next call; empty when this was the last page.
    pub next_flag: String,
}

/// A key that a room-attribute operation could not change, and why.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct AttributeFailure {
    /// The key.
    pub key: String,
    /// The error code number (for example 6004).
    pub code: u16,
    /// The code's name (for example `attribute_not_owned`).
    pub name: String,
}

/// Attribute failures as the bindings hand them out.
pub(crate) fn failures(f: Vec<wire::AttributeFailure>) -> Vec<AttributeFailure> {
    f.into_iter()
        .map(|f| AttributeFailure { name: code_name(f.code), key: f.key, code: f.code })
        .collect()
}

/// One step of a room-attributes batch (applied all or none).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum AttributeOp {
    /// Set keys, as `set_room_attributes`.
    Set {
        /// Keys and values.
        attributes: Vec<Attribute>,
        /// Overwrite keys owned by other members still in the room.
        is_force: bool,
        /// Make the caller the owner of existing keys it overwrites.
        is_update_owner: bool,
        /// Delete the keys when their owner leaves the room.
        is_delete_after_owner_left: bool,
    },
    /// Delete keys, as `delete_room_attributes`.
    Delete {
        /// Keys.
        keys: Vec<String>,
        /// Delete keys owned by other members still in the room.
        is_force: bool,
    },
}

/// Why members left a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LeaveReason {
    /// The member left.
    Left,
    /// The member's connection was lost and it did not come back in time.
    Offline,
    /// The member was kicked out.
    Kicked,
}

impl From<wire::LeaveReason> for LeaveReason {
    fn from(r: wire::LeaveReason) -> LeaveReason {
        match r {
            wire::LeaveReason::Left => LeaveReason::Left,
            wire::LeaveReason::Offline => LeaveReason::Offline,
            wire::LeaveReason::Kicked => LeaveReason::Kicked,
        }
    }
}

/// What resumption did for one room.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RoomRecovery {
    /// The room.
    pub room_id: String,
    /// Whether the session is a member again.
    pub rejoined: bool,
    /// Whether every message after the last one seen was replayed.
    pub recovered: bool,
    /// Messages replayed on the room's stream, before any new one.
    pub replayed: u32,
    /// The room's latest seq.
    pub last_seq: u64,
    /// Why the room was not rejoined (an error code number), 0 when it was.
    pub error_code: u16,
}

/// Where a client's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    /// Connecting and logging in for the first time.
    Connecting,
    /// Logged in on a live connection.
    Connected,
    /// The connection was lost; reconnecting to resume.
    Reconnecting,
    /// Ended for good.
    Disconnected,
    /// Suspended by the application until `resume`.
    Suspended,
}

impl From<client::ConnectionState> for ConnectionState {
    fn from(s: client::ConnectionState) -> ConnectionState {
        match s {
            client::ConnectionState::Connecting => ConnectionState::Connecting,
            client::ConnectionState::Connected => ConnectionState::Connected,
            client::ConnectionState::Reconnecting => ConnectionState::Reconnecting,
            client::ConnectionState::Disconnected => ConnectionState::Disconnected,
            client::ConnectionState::Suspended => ConnectionState::Suspended,
        }
    }
}

/// What the application hears: the server's events and the connection's state changes, with
/// the names and fields of the CLI's JSON events.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum HuddleEvent {
    /// The client started connecting (the first event).
    Connecting,
    /// Logged in (the second event).
    Connected {
        /// The session's id.
        session_id: u64,
    },
    /// The connection was lost; the client is reconnecting to resume.
    Reconnecting {
        /// Why the connection was lost.
        reason: String,
    },
    /// The client reconnected; missed messages come as ordinary room messages, exactly once
    /// and in order, before or after this event.
    Resumed {
        /// True when the same session continued.
        session_resumed: bool,
        /// Per room: rejoined or not, and whether every missed message was recovered.
        rooms: Vec<RoomRecovery>,
        /// True when the resumption travelled in 0-RTT.
        early_data: bool,
    },
    /// The connection ended for good.
    Disconnected {
        /// The server's close code, when it closed the connection with one.
        code: Option<u16>,
        /// The code's name, when there is a code.
        name: Option<String>,
        /// A description.
        reason: String,
    },
    /// Members joined a room (the receiver is never in the list).
    MembersJoined {
        /// The room.
        room_id: String,
        /// Who joined.
        members: Vec<Member>,
    },
    /// Members left a room.
    MembersLeft {
        /// The room.
        room_id: String,
        /// Who left.
        members: Vec<Member>,
        /// Why.
        reason: LeaveReason,
    },
    /// A room message (the fields of [`RoomMessage`]).
    RoomMessage {
        /// The room.
        room_id: String,
        /// Per-room sequence number.
        seq: u64,
        /// Server-wide unique message id.
        message_id: u64,
        /// The sender's user id.
        sender: String,
        /// Server time of acceptance, ms since the Unix epoch.
        timestamp_ms: u64,
        /// The priority the sender chose.
        priority: Priority,
        /// The text of a text message.
        text: Option<String>,
        /// The body of a custom message.
        custom: Option<CustomBody>,
    },
    /// The server ended the session.
    KickedOut {
        /// The error code number.
        code: u16,
        /// The code's name.
        name: String,
        /// Detail.
        message: String,
    },
    /// In large rooms, member changes come as a count.
    MemberCountUpdated {
        /// The room.
        room_id: String,
        /// Members now in the room.
        count: u32,
    },
    /// Room attributes changed.
    RoomAttributesUpdated {
        /// The room.
        room_id: String,
        /// Keys set, with their new values.
        set: Vec<Attribute>,
        /// Keys deleted.
        deleted: Vec<String>,
    },
    /// Attributes of members changed.
    RoomMemberAttributesUpdated {
        /// The room.
        room_id: String,
        /// The changed members with all their attributes now.
        members: Vec<MemberAttributes>,
        /// Who made the change.
        operated_by: String,
    },
    /// The session's token expires soon: call `renew_token`.
    TokenWillExpire {
        /// The expiry, Unix seconds.
        expires_at_s: u64,
    },
    /// The server's operator destroyed the room.
    RoomDestroyed {
        /// The room.
        room_id: String,
    },
    /// The receiver was removed from the room by the server.
    RemovedFromRoom {
        /// The room.
        room_id: String,
        /// Why.
        reason: LeaveReason,
    },
    /// After `network_changed`: the connection moved to the new network without a
    /// reconnection (when the new path does not answer, `Reconnecting` comes instead).
    Migrated {
        /// How long the probe on the new path took to be answered, in milliseconds.
        probe_ms: u64,
    },
    /// After `suspend`: the connection is closed until `resume`; the server keeps the session
    /// for its offline grace.
    Suspended,
}

impl From<ClientEvent> for HuddleEvent {
    fn from(e: ClientEvent) -> HuddleEvent {
        match e {
            ClientEvent::Connecting => HuddleEvent::Connecting,
            ClientEvent::Connected { session_id } => HuddleEvent::Connected { session_id },
            ClientEvent::Reconnecting { reason } => HuddleEvent::Reconnecting { reason },
            ClientEvent::Resumed { session_resumed, rooms, early_data } => HuddleEvent::Resumed {
                session_resumed,
                rooms: rooms
                    .into_iter()
                    .map(|r| RoomRecovery {
                        room_id: r.room_id,
                        rejoined: r.rejoined,
                        recovered: r.recovered,
                        replayed: r.replayed,
                        last_seq: r.last_seq,
                        error_code: r.error_code,
                    })
                    .collect(),
                early_data,
            },
            ClientEvent::Disconnected { code, reason } => {
                HuddleEvent::Disconnected { code, name: code.map(code_name), reason }
            }
            ClientEvent::Migrated { probe_ms } => HuddleEvent::Migrated { probe_ms },
            ClientEvent::Suspended => HuddleEvent::Suspended,
            ClientEvent::Event(e) => e.into(),
        }
    }
}

impl From<Event> for HuddleEvent {
    fn from(e: Event) -> HuddleEvent {
        match e {
            Event::MembersJoined { room_id, members: m } => {
                HuddleEvent::MembersJoined { room_id, members: members(m) }
            }
            Event::MembersLeft { room_id, members: m, reason } => {
                HuddleEvent::MembersLeft { room_id, members: members(m), reason: reason.into() }
            }
            Event::RoomMessage(m) => {
                let m = RoomMessage::from(m);
                HuddleEvent::RoomMessage {
                    room_id: m.room_id,
                    seq: m.seq,
                    message_id: m.message_id,
                    sender: m.sender,
                    timestamp_ms: m.timestamp_ms,
                    priority: m.priority,
                    text: m.text,
                    custom: m.custom,
                }
            }
            Event::KickedOut { code, message } => {
                HuddleEvent::KickedOut { code, name: code_name(code), message }
            }
            Event::MemberCountUpdated { room_id, count } => {
                HuddleEvent::MemberCountUpdated { room_id, count }
            }
            Event::RoomAttributesUpdated { room_id, set, deleted } => {
                HuddleEvent::RoomAttributesUpdated { room_id, set: attributes(set), deleted }
            }
            Event::RoomMemberAttributesUpdated { room_id, members, operated_by } => {
                HuddleEvent::RoomMemberAttributesUpdated {
                    room_id,
                    members: member_attributes(members),
                    operated_by,
                }
            }
            Event::TokenWillExpire { expires_at_s } => {
                HuddleEvent::TokenWillExpire { expires_at_s }
            }
            Event::RoomDestroyed { room_id } => HuddleEvent::RoomDestroyed { room_id },
            Event::RemovedFromRoom { room_id, reason } => {
                HuddleEvent::RemovedFromRoom { room_id, reason: reason.into() }
            }
        }
    }
}
