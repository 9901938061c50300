//! Events: what the server pushes on unidirectional streams.

use bincode::{Decode, Encode};

use super::types::{LeaveReason, Member, MemberAttributes, RoomMessage};

/// The first frame on every server-opened unidirectional stream: what the stream carries.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum StreamHeader {
    /// Session-level pushes (kicked out, token about to expire).
    Session,
    /// One room's events, in order: member and attribute events and medium and high messages.
    Room {
        /// The room.
        room_id: String,
    },
    /// One room's low-priority messages, in order among themselves, on a stream of lower QUIC
    /// priority so that they never delay the room's other events. Opened on first use.
    RoomLow {
        /// The room.
        room_id: String,
    },
}

/// A pushed event. Append-only: new variants go at the end.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Event {
    /// Members joined a room the receiver is in (the receiver is never in the list).
    MembersJoined {
        /// The room.
        room_id: String,
        /// Who joined, at most 100 per event.
        members: Vec<Member>,
    },
    /// Members left a room the receiver is in.
    MembersLeft {
        /// The room.
        room_id: String,
        /// Who left, at most 100 per event.
        members: Vec<Member>,
        /// Why.
        reason: LeaveReason,
    },
    /// A room message.
    RoomMessage(RoomMessage),
    /// The session was ended by the server; the connection closes with the same code.
    KickedOut {
        /// Error code number (for example 2004, kicked_out, for a duplicate login).
        code: u16,
        /// Human-readable detail.
        message: String,
    },
    /// In large rooms, member changes are summarised as a count instead of member lists.
    MemberCountUpdated {
        /// The room.
        room_id: String,
        /// Members now in the room.
        count: u32,
    },
    /// Room attributes changed (sent to every member, the one who changed them included, in
    /// the order the server applied the changes).
    RoomAttributesUpdated {
        /// The room.
        room_id: String,
        /// Keys set, with their new values.
        set: Vec<(String, String)>,
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
    /// The session's token expires soon (30 s by default): send RenewToken with a fresh one,
    /// or the session ends with `token_expired` (2002) at `expires_at_s`.
    TokenWillExpire {
        /// The expiry, Unix seconds.
        expires_at_s: u64,
    },
    /// The server's operator destroyed the room (admin API): every member left it, and this is
    /// the last frame of the receiver's room stream.
    RoomDestroyed {
        /// The room.
        room_id: String,
    },
    /// The receiver was removed from the room by the server (today: an operator's kick through
    /// the admin API, reason `kicked`); the last frame of its room stream.
    RemovedFromRoom {
        /// The room.
        room_id: String,
        /// Why.
        reason: LeaveReason,
    },
}

impl Event {
    /// The event's snake_case name, as used by the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            Event::MembersJoined { .. } => "members_joined",
            Event::MembersLeft { .. } => "members_left",
            Event::RoomMessage(_) => "room_message",
            Event::KickedOut { .. } => "kicked_out",
            Event::MemberCountUpdated { .. } => "member_count_updated",
            Event::RoomAttributesUpdated { .. } => "room_attributes_updated",
            Event::RoomMemberAttributesUpdated { .. } => "room_member_attributes_updated",
            Event::TokenWillExpire { .. } => "token_will_expire",
            Event::RoomDestroyed { .. } => "room_destroyed",
            Event::RemovedFromRoom { .. } => "removed_from_room",
        }
    }
}
