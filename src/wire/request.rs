//! Requests: what a client sends on its control stream.

use bincode::{Decode, Encode};

use super::types::{AttributeOp, HistoryAnchor, MessageBody, Priority, RoomConfig, RoomInfo};

/// One frame on the control stream from client to server.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RequestFrame {
    /// Chosen by the client; echoed in the response. Requests may be pipelined.
    pub request_id: u32,
    /// The operation.
    pub request: Request,
}

/// The first request on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Login {
    /// Must be [`super::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// 1-32 bytes of `[A-Za-z0-9_.@-]`.
    pub user_id: String,
    /// Display name, at most 256 bytes.
    pub user_name: String,
    /// A token minted for `user_id` (see docs/PROTOCOL.md, "Tokens").
    pub token: String,
}

/// The first request of a connection that continues a session after a lost connection.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Resume {
    /// Must be [`super::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The user id of the session.
    pub user_id: String,
    /// Display name (used when the session has to be created anew).
    pub user_name: String,
    /// A valid token for `user_id`.
    pub token: String,
    /// The session id from the LoggedIn (or Resumed) answer.
    pub session_id: u64,
    /// The session's resume secret.
    pub resume_secret: [u8; 16],
    /// Each room the client was in, with the last seq it has seen there.
    pub rooms: Vec<(String, u64)>,
}

/// A room operation. Append-only: new variants go at the end.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Request {
    /// Log in; must be the first request.
    Login(Login),
    /// Leave every room and end the session; the server then closes the connection.
    Logout,
    /// Create a room and join it.
    CreateRoom {
        /// Room id and name.
        info: RoomInfo,
        /// Destroy delay and initial attributes.
        config: RoomConfig,
    },
    /// Join an existing room.
    JoinRoom {
        /// Room id.
        room_id: String,
    },
    /// Create the room if missing (with this config), else join it.
    EnterRoom {
        /// Room id and name.
        info: RoomInfo,
        /// Used only when the call creates the room.
        config: RoomConfig,
    },
    /// Leave a room.
    LeaveRoom {
        /// Room id.
        room_id: String,
    },
    /// Leave every room the session is in.
    LeaveAllRooms,
    /// Leave one room and enter another in one step.
    SwitchRoom {
        /// The room to leave.
        from_room_id: String,
        /// The room to enter.
        to: RoomInfo,
        /// Create `to` when it does not exist (with `config`); otherwise it must exist.
        create_if_missing: bool,
        /// Used only when the call creates the room.
        config: RoomConfig,
    },
    /// Send a message to a room the caller is in.
    SendRoomMessage {
        /// Room id.
        room_id: String,
        /// Text or custom body, at most 32 KiB by default.
        body: MessageBody,
        /// Delivery priority.
        priority: Priority,
        /// Makes a retried send idempotent for 5 minutes (at most 64 bytes).
        client_msg_id: Option<String>,
    },
    /// Page through a room's members.
    QueryRoomMembers {
        /// Room id.
        room_id: String,
        /// Empty for the first page, else the `next_flag` of the previous answer.
        next_flag: String,
        /// Page size, 1-100.
        count: u32,
    },
    /// Count a room's members.
    QueryRoomOnlineCount {
        /// Room id.
        room_id: String,
    },
    /// Look up up to 10 members of a room by user id.
    QueryRoomMembersById {
        /// Room id.
        room_id: String,
        /// User ids, at most 10.
        user_ids: Vec<String>,
    },
    /// List the rooms the session is in.
    QueryJoinedRooms,
    /// Read a room's history (the caller must be a member).
    QueryHistory {
        /// Room id.
        room_id: String,
        /// Where to start.
        anchor: HistoryAnchor,
        /// Page size, 1-100.
        count: u32,
    },
    /// Set room attributes. Keys owned by other members still in the room fail (reported in
    /// the answer) unless `is_force`; the rest are applied.
    SetRoomAttributes {
        /// Room id.
        room_id: String,
        /// Keys and values.
        attributes: Vec<(String, String)>,
        /// Overwrite keys owned by other members still in the room.
        is_force: bool,
        /// Make the caller the owner of existing keys it overwrites.
        is_update_owner: bool,
        /// Delete the keys when their owner leaves the room.
        is_delete_after_owner_left: bool,
    },
    /// Delete room attributes (same ownership rule as setting).
    DeleteRoomAttributes {
        /// Room id.
        room_id: String,
        /// Keys.
        keys: Vec<String>,
        /// Delete keys owned by other members still in the room.
        is_force: bool,
    },
    /// Read a room's attributes.
    QueryRoomAttributes {
        /// Room id.
        room_id: String,
    },
    /// Several sets and deletes applied atomically (all or nothing) and announced as one event.
    RoomAttributesBatch {
        /// Room id.
        room_id: String,
        /// The steps, in order.
        ops: Vec<AttributeOp>,
    },
    /// Set attributes of room members (merged into what they have).
    SetRoomMembersAttributes {
        /// Room id.
        room_id: String,
        /// Members to change, at most 100.
        user_ids: Vec<String>,
        /// Keys and values.
        attributes: Vec<(String, String)>,
    },
    /// Read attributes of some members.
    QueryRoomMembersAttributes {
        /// Room id.
        room_id: String,
        /// Members, at most 100.
        user_ids: Vec<String>,
    },
    /// Page through the members that have attributes, in join order.
    QueryRoomMemberAttributesList {
        /// Room id.
        room_id: String,
        /// Empty for the first page, else the previous answer's `next_flag`.
        next_flag: String,
        /// Page size, 1-100.
        count: u32,
    },
    /// Continue a session after a lost connection (instead of Login, as a first request).
    Resume(Resume),
    /// Replace the session's token with a fresh one for the same user before it expires.
    RenewToken {
        /// The new token.
        token: String,
    },
    /// A liveness probe, answered with Pong at once. The client library sends one when the
    /// link goes quiet while traffic was flowing, to tell a stalled path from a quiet room.
    Ping,
}

impl Request {
    /// A set or delete of room attributes as a batch step: the room and the step. `None` for
    /// any other request.
    pub fn attribute_step(&self) -> Option<(&str, AttributeOp)> {
        match self {
            Request::SetRoomAttributes {
                room_id,
                attributes,
                is_force,
                is_update_owner,
                is_delete_after_owner_left,
            } => Some((
                room_id,
                AttributeOp::Set {
                    attributes: attributes.clone(),
                    is_force: *is_force,
                    is_update_owner: *is_update_owner,
                    is_delete_after_owner_left: *is_delete_after_owner_left,
                },
            )),
            Request::DeleteRoomAttributes { room_id, keys, is_force } => {
                Some((room_id, AttributeOp::Delete { keys: keys.clone(), is_force: *is_force }))
            }
            _ => None,
        }
    }

    /// The operation's snake_case name, as used by the CLI.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Login(_) => "login",
            Request::Logout => "logout",
            Request::CreateRoom { .. } => "create_room",
            Request::JoinRoom { .. } => "join_room",
            Request::EnterRoom { .. } => "enter_room",
            Request::LeaveRoom { .. } => "leave_room",
            Request::LeaveAllRooms => "leave_all_rooms",
            Request::SwitchRoom { .. } => "switch_room",
            Request::SendRoomMessage { .. } => "send_room_message",
            Request::QueryRoomMembers { .. } => "query_room_members",
            Request::QueryRoomOnlineCount { .. } => "query_room_online_count",
            Request::QueryRoomMembersById { .. } => "query_room_members_by_id",
            Request::QueryJoinedRooms => "query_joined_rooms",
            Request::QueryHistory { .. } => "query_history",
            Request::SetRoomAttributes { .. } => "set_room_attributes",
            Request::DeleteRoomAttributes { .. } => "delete_room_attributes",
            Request::QueryRoomAttributes { .. } => "query_room_attributes",
            Request::RoomAttributesBatch { .. } => "room_attributes_batch",
            Request::SetRoomMembersAttributes { .. } => "set_room_members_attributes",
            Request::QueryRoomMembersAttributes { .. } => "query_room_members_attributes",
            Request::QueryRoomMemberAttributesList { .. } => "query_room_member_attributes_list",
            Request::Resume(_) => "resume",
            Request::RenewToken { .. } => "renew_token",
            Request::Ping => "ping",
        }
    }
}
