//! Responses: what the server answers on the control stream.

use bincode::{Decode, Encode};

use super::codes::ErrorCode;
use super::types::{
    AttributeFailure, Member, MemberAttributes, RoomMessage, RoomRecovery, RoomState, RoomSummary,
};

/// One frame on the control stream from server to client.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ResponseFrame {
    /// The id of the request this answers.
    pub request_id: u32,
    /// Success or error.
    pub reply: Reply,
}

/// The outcome of a request.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Reply {
    /// The request succeeded.
    Ok(Response),
    /// The request failed; nothing changed.
    Err(ErrorBody),
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ErrorBody {
    /// A number from the error table ([`ErrorCode`]).
    pub code: u16,
    /// Human-readable detail.
    pub message: String,
}

impl ErrorBody {
    /// An error with the code's default text.
    pub fn new(code: ErrorCode) -> ErrorBody {
        ErrorBody { code: code.as_u16(), message: code.text().to_string() }
    }

    /// An error with a specific message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody { code: code.as_u16(), message: message.into() }
    }
}

/// A successful answer. Append-only: new variants go at the end.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Response {
    /// Answer to Login.
    LoggedIn {
        /// This session's id.
        session_id: u64,
        /// Secret needed to resume this session after a lost connection.
        resume_secret: [u8; 16],
        /// Server time, milliseconds since the Unix epoch.
        server_time_ms: u64,
        /// The token's expiry, seconds since the Unix epoch.
        token_expires_at_s: u64,
    },
    /// Answer to Logout.
    LoggedOut,
    /// Answer to CreateRoom, JoinRoom and EnterRoom.
    RoomEntered(RoomState),
    /// Answer to LeaveRoom.
    RoomLeft {
        /// The room left.
        room_id: String,
    },
    /// Answer to LeaveAllRooms.
    RoomsLeft {
        /// The rooms left.
        room_ids: Vec<String>,
    },
    /// Answer to SwitchRoom.
    RoomSwitched {
        /// The room left.
        left_room_id: String,
        /// The room entered.
        room: RoomState,
    },
    /// Answer to SendRoomMessage.
    MessageSent {
        /// The room.
        room_id: String,
        /// Server-wide message id.
        message_id: u64,
        /// The message's seq in the room.
        seq: u64,
        /// Server time of acceptance, ms since the Unix epoch.
        timestamp_ms: u64,
        /// True when this answers a retry of an already accepted client_msg_id.
        duplicate: bool,
    },
    /// Answer to QueryRoomMembers.
    RoomMembers {
        /// The room.
        room_id: String,
        /// One page of members, in join order.
        members: Vec<Member>,
        /// Pass back to get the next page; empty when this was the last page.
        next_flag: String,
    },
    /// Answer to QueryRoomOnlineCount.
    RoomOnlineCount {
        /// The room.
        room_id: String,
        /// Members in the room.
        count: u32,
    },
    /// Answer to QueryRoomMembersById.
    RoomMembersById {
        /// The room.
        room_id: String,
        /// Those of the asked ids that are members.
        members: Vec<Member>,
        /// Those of the asked ids that are not.
        not_found: Vec<String>,
    },
    /// Answer to QueryJoinedRooms.
    JoinedRooms {
        /// The rooms.
        rooms: Vec<RoomSummary>,
    },
    /// Answer to QueryHistory.
    History {
        /// The room.
        room_id: String,
        /// Messages in ascending seq order.
        messages: Vec<RoomMessage>,
        /// Whether more messages exist beyond this page in the direction asked.
        has_more: bool,
    },
    /// Answer to SetRoomAttributes, DeleteRoomAttributes and RoomAttributesBatch.
    RoomAttributesChanged {
        /// The room.
        room_id: String,
        /// Keys that were not changed and why (empty when everything was applied; always empty
        /// for a batch, which fails as a whole instead).
        failed: Vec<AttributeFailure>,
    },
    /// Answer to QueryRoomAttributes.
    RoomAttributes {
        /// The room.
        room_id: String,
        /// Attributes, sorted by key.
        attributes: Vec<(String, String)>,
    },
    /// Answer to SetRoomMembersAttributes.
    RoomMembersAttributesSet {
        /// The room.
        room_id: String,
        /// The changed members with all their attributes now.
        members: Vec<MemberAttributes>,
        /// Asked ids that are not members of the room.
        failed_user_ids: Vec<String>,
    },
    /// Answer to QueryRoomMembersAttributes.
    RoomMembersAttributes {
        /// The room.
        room_id: String,
        /// Those of the asked ids that are members, with their attributes (possibly none).
        members: Vec<MemberAttributes>,
    },
    /// Answer to QueryRoomMemberAttributesList.
    RoomMemberAttributesList {
        /// The room.
        room_id: String,
        /// One page of members with attributes, in join order.
        members: Vec<MemberAttributes>,
        /// Pass back for the next page; empty when this was the last.
        next_flag: String,
    },
    /// Answer to Resume.
    Resumed {
        /// The session id (a new one when `session_resumed` is false).
        session_id: u64,
        /// The resume secret to use next time.
        resume_secret: [u8; 16],
        /// True: the same session continues and nobody saw it leave. False: it had expired
        /// (offline grace over) and a new session rejoined the rooms.
        session_resumed: bool,
        /// The token's expiry, Unix seconds.
        token_expires_at_s: u64,
        /// One entry per room named in the request.
        rooms: Vec<RoomRecovery>,
    },
    /// Answer to RenewToken.
    TokenRenewed {
        /// The new token's expiry, Unix seconds.
        token_expires_at_s: u64,
    },
    /// Answer to Ping.
    Pong,
}
