//! Operations of the server's operator (the admin API): ordinary core inputs, taking explicit
//! time like every other, and answering with plain values (serialisable as JSON) or the same
//! error bodies and codes as the wire protocol.
//!
//! The operator is not a session: it needs no membership, is not rate limited, and owns what it
//! creates as [`SYSTEM_SENDER`], a name no client can log in as. Room attributes it sets are
//! therefore unprotected (their owner is never present), and it changes any key (always
//! forced) without taking ownership of keys that members own.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::bus::not_carried_yet;
use super::limits::{invalid_user_id, page_start};
use super::messages::Post;
use super::{err, valid_user_id, ConnId, Core, Now, Output, RoomKey, SessionId};
use crate::wire::{
    encode_frame, AttributeOp, ErrorBody, ErrorCode, Event, LeaveReason, Member, MessageBody,
    Priority, Response, RoomConfig, RoomInfo, RoomSummary,
};

/// The sender of the operator's messages and the owner of the attributes it sets. It is not a
/// valid user id (`:` is not allowed in one), so no client can log in as it.
pub const SYSTEM_SENDER: &str = ":system";

/// A room to create (the body of `POST /v1/rooms`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminCreateRoom {
    /// Room id: 1-128 bytes of `[A-Za-z0-9_.@:-]`.
    pub room_id: String,
    /// Room name, at most 256 bytes.
    #[serde(default)]
    pub room_name: String,
    /// Seconds the room waits, once its last member has left, before it is destroyed.
    #[serde(default)]
    pub destroy_delay_s: u32,
    /// Initial attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// An application-defined message body: a sub type and hex-encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminCustomBody {
    /// Application-defined type tag.
    pub sub_type: u32,
    /// The payload, hex.
    #[serde(default)]
    pub data: String,
}

/// A message the operator sends (the body of `POST /v1/rooms/{id}/messages`): exactly one of
/// `text` and `custom`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminMessage {
    /// A text body.
    pub text: Option<String>,
    /// A custom body.
    pub custom: Option<AdminCustomBody>,
    /// Priority; low by default, as for clients.
    #[serde(default)]
    pub priority: Priority,
    /// Makes a retried send idempotent for the dedup window, as for clients.
    pub client_msg_id: Option<String>,
}

impl AdminMessage {
    fn body(self) -> Result<(MessageBody, Priority, Option<String>), ErrorBody> {
        let body = match (self.text, self.custom) {
            (Some(text), None) => MessageBody::Text(text),
            (None, Some(c)) => {
                let data = hex::decode(&c.data).map_err(|_| {
                    ErrorBody::with_message(ErrorCode::InvalidRequest, "custom.data is not hex")
                })?;
                MessageBody::Custom { sub_type: c.sub_type, data }
            }
            _ => {
                return Err(ErrorBody::with_message(
                    ErrorCode::InvalidRequest,
                    "give exactly one of text and custom",
                ))
            }
        };
        Ok((body, self.priority, self.client_msg_id))
    }
}

/// A room as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRoom {
    /// Room id.
    pub room_id: String,
    /// Room name.
    pub room_name: String,
    /// Members (users) in the room.
    pub member_count: u32,
    /// The latest message's seq (0 when none).
    pub last_seq: u64,
    /// When the room was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Seconds an emptied room waits before it is destroyed.
    pub destroy_delay_s: u32,
    /// True while the room is empty and waiting for its delayed destroy.
    pub destroy_pending: bool,
    /// The room's attributes.
    pub attributes: BTreeMap<String, String>,
}

/// A page of rooms, in creation order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRoomPage {
    /// The rooms of this page.
    pub rooms: Vec<RoomSummary>,
    /// The flag of the next page; empty after the last one.
    pub next_flag: String,
}

/// A page of a room's members, in join order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminMemberPage {
    /// The room.
    pub room_id: String,
    /// The members of this page.
    pub members: Vec<Member>,
    /// The flag of the next page; empty after the last one.
    pub next_flag: String,
}

/// The answer to an operator's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminMessageSent {
    /// The room.
    pub room_id: String,
    /// Server-wide unique message id.
    pub message_id: u64,
    /// The message's seq in the room.
    pub seq: u64,
    /// Server timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// True when this was a retry of an earlier send with the same client_msg_id.
    pub duplicate: bool,
}

/// A room's attributes after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAttributes {
    /// The room.
    pub room_id: String,
    /// Every attribute of the room now.
    pub attributes: BTreeMap<String, String>,
}

/// What destroying a room did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDestroyed {
    /// The room.
    pub room_id: String,
    /// Members it had.
    pub members: u32,
}

/// What a kick did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRemoved {
    /// The room.
    pub room_id: String,
    /// The member removed.
    pub user_id: String,
    /// Its sessions that were in the room (several with multi-device).
    pub sessions: u32,
}

/// What disconnecting a user did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDisconnected {
    /// The user.
    pub user_id: String,
    /// Sessions ended (0 when the user had none: disconnecting is idempotent).
    pub sessions: u32,
}

/// An open connection as the core knows it (one entry of `GET /v1/connections`; the server
/// adds the transport's figures).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminConnection {
    /// The connection, as numbered by the server.
    pub conn_id: ConnId,
    /// The user it is logged in as; `None` before its login (or once its session has ended).
    pub user_id: Option<String>,
    /// Its session; `None` when `user_id` is.
    pub session_id: Option<SessionId>,
    /// The rooms its session is in, in the order it joined them.
    pub rooms: Vec<String>,
}

/// A page of open connections, in connection id order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminConnectionPage {
    /// The connections of this page.
    pub connections: Vec<AdminConnection>,
    /// Connections that match the filter, on every page together.
    pub total: u64,
    /// The flag of the next page; empty after the last one.
    pub next_flag: String,
}

fn attribute_map(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

impl Core {
    /// Creates a room with no members. It lives until the operator destroys it, or until its
    /// last member leaves once someone has joined (then at once or after its destroy delay, as
    /// any room).
    pub fn admin_create_room(
        &mut self,
        now: Now,
        request: AdminCreateRoom,
    ) -> Result<AdminRoom, ErrorBody> {
        if self.external().is_some() {
            return Err(not_carried_yet());
        }
        let info = RoomInfo { room_id: request.room_id, room_name: request.room_name };
        let config = RoomConfig {
            destroy_delay_s: request.destroy_delay_s,
            attributes: request.attributes.into_iter().collect(),
        };
        let owner: Arc<str> = Arc::from(SYSTEM_SENDER);
        let attrs = self.check_new_room(&info, &config, &owner)?;
        let room_id = info.room_id.clone();
        self.insert_room(now, info, config, attrs, None);
        self.admin_room(&room_id)
    }

    /// The room's info, member count and attributes.
    pub fn admin_room(&self, room_id: &str) -> Result<AdminRoom, ErrorBody> {
        let r = self.existing_room(room_id)?;
        Ok(AdminRoom {
            room_id: r.id.to_string(),
            room_name: r.name.clone(),
            member_count: r.member_count() as u32,
            last_seq: r.last_seq,
            created_at_ms: r.created_at_ms,
            destroy_delay_s: (r.destroy_delay_ms / 1000) as u32,
            destroy_pending: r.destroy_deadline().is_some(),
            attributes: attribute_map(r.attributes().snapshot()),
        })
    }

    /// A page of at most `count` (1-100) rooms in creation order, from `next_flag` (empty for
    /// the first page).
    pub fn admin_rooms(&self, next_flag: &str, count: u32) -> Result<AdminRoomPage, ErrorBody> {
        let start = page_start(next_flag, count)?;
        let mut keys = self.room_order.range(RoomKey(start)..);
        let rooms = keys
            .by_ref()
            .take(count as usize)
            .filter_map(|k| self.rooms.get(k))
            .map(|r| RoomSummary {
                room_id: r.id.to_string(),
                room_name: r.name.clone(),
                member_count: r.member_count() as u32,
            })
            .collect();
        let next_flag = keys.next().map(|k| k.0.to_string()).unwrap_or_default();
        Ok(AdminRoomPage { rooms, next_flag })
    }

    /// A page of at most `count` (1-100) members of a room in join order.
    pub fn admin_members(
        &self,
        room_id: &str,
        next_flag: &str,
        count: u32,
    ) -> Result<AdminMemberPage, ErrorBody> {
        let room = self.existing_room(room_id)?;
        let (members, next_flag) = room.members_page(page_start(next_flag, count)?, count);
        Ok(AdminMemberPage { room_id: room.id.to_string(), members, next_flag })
    }

    /// Sends a message from [`SYSTEM_SENDER`] to every member connection of the room, with the
    /// same size, client_msg_id and ordering rules as a member's message (no rate limit).
    pub fn admin_send_message(
        &mut self,
        now: Now,
        room_id: &str,
        message: AdminMessage,
    ) -> Result<AdminMessageSent, ErrorBody> {
        let key = self.existing_room(room_id)?.key;
        let (body, priority, client_msg_id) = message.body()?;
        let post = Post { sender: Arc::from(SYSTEM_SENDER), except: None, rate_limited: false };
        match self.post_message(now, key, post, None, body, priority, client_msg_id)? {
            Some(Response::MessageSent { room_id, message_id, seq, timestamp_ms, duplicate }) => {
                Ok(AdminMessageSent { room_id, message_id, seq, timestamp_ms, duplicate })
            }
            _ => Err(err(ErrorCode::Internal)),
        }
    }

    /// Sets room attributes (forced; keys members own keep their owner), announced to every
    /// member like a member's change. Answers with all the room's attributes.
    pub fn admin_set_attributes(
        &mut self,
        room_id: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<AdminAttributes, ErrorBody> {
        let op = AttributeOp::Set {
            attributes: attributes.into_iter().collect(),
            is_force: true,
            is_update_owner: false,
            is_delete_after_owner_left: false,
        };
        self.admin_attribute_step(room_id, op)
    }

    /// Deletes room attributes (forced); absent keys are ignored.
    pub fn admin_delete_attributes(
        &mut self,
        room_id: &str,
        keys: Vec<String>,
    ) -> Result<AdminAttributes, ErrorBody> {
        self.admin_attribute_step(room_id, AttributeOp::Delete { keys, is_force: true })
    }

    fn admin_attribute_step(
        &mut self,
        room_id: &str,
        op: AttributeOp,
    ) -> Result<AdminAttributes, ErrorBody> {
        if self.external().is_some() {
            return Err(not_carried_yet());
        }
        let key = self.existing_room(room_id)?.key;
        let system: Arc<str> = Arc::from(SYSTEM_SENDER);
        self.apply_room_attributes(key, &system, &[op], true)?;
        let room = self.rooms.get(&key).ok_or_else(|| err(ErrorCode::Internal))?;
        Ok(AdminAttributes {
            room_id: room.id.to_string(),
            attributes: attribute_map(room.attributes().snapshot()),
        })
    }

    /// Destroys a room at once: each member connection gets `RoomDestroyed` as the last frame
    /// of its room stream, every member session leaves it (nobody is told of the others'
    /// leaving), and its history and attributes are dropped.
    pub fn admin_destroy_room(&mut self, room_id: &str) -> Result<AdminDestroyed, ErrorBody> {
        if self.external().is_some() {
            return Err(not_carried_yet());
        }
        let key = self.existing_room(room_id)?.key;
        let to = self.recipients(key);
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let room_id = room.id.to_string();
        let members = room.member_count() as u32;
        let sessions: Vec<SessionId> = room.sessions().collect();
        room.clear_presence();
        let event = Event::RoomDestroyed { room_id: room_id.clone() };
        self.broadcast_event(key, to, &event);
        for sid in sessions {
            let Some(s) = self.sessions.get_mut(&sid) else { continue };
            s.rooms.retain(|k| *k != key);
            if let Some(conn) = s.conn {
                self.outputs.push_back(Output::CloseRoomStream { conn, room: key });
            }
        }
        self.destroy(key);
        Ok(AdminDestroyed { room_id, members })
    }

    /// Removes a member from a room: each of its sessions there gets `RemovedFromRoom` (reason
    /// `kicked`) as the last frame of its room stream and leaves; the other members see
    /// `members_left` with reason `kicked`.
    pub fn admin_kick(
        &mut self,
        now: Now,
        room_id: &str,
        user_id: &str,
    ) -> Result<AdminRemoved, ErrorBody> {
        let room = self.existing_room(room_id)?;
        let (key, room_id) = (room.key, room.id.to_string());
        let sessions =
            room.entry(user_id).ok_or_else(|| err(ErrorCode::NotInRoom))?.sessions.clone();
        let reason = LeaveReason::Kicked;
        let frame = encode_frame(&Event::RemovedFromRoom { room_id: room_id.clone(), reason });
        for &sid in &sessions {
            if let Some(conn) = self.sessions.get(&sid).and_then(|s| s.conn) {
                let frame = frame.clone();
                self.outputs.push_back(Output::Push { conn, room: Some(key), frame });
            }
            self.leave(now, sid, key, reason);
        }
        Ok(AdminRemoved { room_id, user_id: user_id.to_string(), sessions: sessions.len() as u32 })
    }

    /// Ends every session of a user, held ones included: a `KickedOut` event with
    /// `disconnected_by_admin` (2011), its rooms left with reason `kicked`, its connection
    /// closed with that code.
    pub fn admin_disconnect_user(
        &mut self,
        now: Now,
        user_id: &str,
    ) -> Result<AdminDisconnected, ErrorBody> {
        if !valid_user_id(user_id) {
            return Err(invalid_user_id());
        }
        let sessions = self.by_user.get(user_id).cloned().unwrap_or_default();
        for &sid in &sessions {
            self.kick(now, sid, ErrorCode::DisconnectedByAdmin, "disconnected by the operator");
        }
        Ok(AdminDisconnected { user_id: user_id.to_string(), sessions: sessions.len() as u32 })
    }

    /// A page of at most `count` (1-100) open connections (from [`Core::handle_connect`] to
    /// their close) in id order, from `next_flag` (empty for the first page): those of `user`
    /// when given, and of sessions in `room` when given.
    pub fn admin_connections(
        &self,
        user: Option<&str>,
        room: Option<&str>,
        next_flag: &str,
        count: u32,
    ) -> Result<AdminConnectionPage, ErrorBody> {
        let start = page_start(next_flag, count)?;
        let take = count as usize;
        let (ids, total): (Vec<ConnId>, usize) = match (user, room) {
            (None, None) => {
                let ids = self.conn_origin.range(start..).map(|(c, _)| *c).take(take + 1);
                (ids.collect(), self.conn_origin.len())
            }
            _ => {
                let mut all = self.filtered_connections(user, room)?;
                all.sort_unstable();
                let total = all.len();
                (all.into_iter().filter(|c| *c >= start).take(take + 1).collect(), total)
            }
        };
        let next_flag = ids.get(take).map(|c| c.to_string()).unwrap_or_default();
        Ok(AdminConnectionPage {
            connections: ids.into_iter().take(take).map(|c| self.connection_view(c)).collect(),
            total: total as u64,
            next_flag,
        })
    }

    /// One open connection; `None` when there is none with this id.
    pub fn admin_connection(&self, conn: ConnId) -> Option<AdminConnection> {
        self.conn_origin.contains_key(&conn).then(|| self.connection_view(conn))
    }

    /// The connections of `user`'s sessions and of the sessions in `room` (both when both are
    /// given), unordered.
    fn filtered_connections(
        &self,
        user: Option<&str>,
        room: Option<&str>,
    ) -> Result<Vec<ConnId>, ErrorBody> {
        if user.is_some_and(|u| !valid_user_id(u)) {
            return Err(invalid_user_id());
        }
        let key = room.map(|r| self.existing_room(r).map(|r| r.key)).transpose()?;
        let sessions: Vec<SessionId> = match (user, key) {
            (Some(u), _) => self.by_user.get(u).cloned().unwrap_or_default(),
            (None, Some(k)) => {
                self.rooms.get(&k).map(|r| r.sessions().collect()).unwrap_or_default()
            }
            (None, None) => Vec::new(),
        };
        Ok(sessions
            .iter()
            .filter_map(|sid| self.sessions.get(sid))
            .filter(|s| key.map_or(true, |k| s.rooms.contains(&k)))
            .filter_map(|s| s.conn)
            .collect())
    }

    fn connection_view(&self, conn: ConnId) -> AdminConnection {
        let session = self.by_conn.get(&conn).and_then(|sid| Some((*sid, self.sessions.get(sid)?)));
        let Some((sid, s)) = session else {
            return AdminConnection {
                conn_id: conn,
                user_id: None,
                session_id: None,
                rooms: vec![],
            };
        };
        AdminConnection {
            conn_id: conn,
            user_id: Some(s.user_id.to_string()),
            session_id: Some(sid),
            rooms: s
                .rooms
                .iter()
                .filter_map(|k| self.rooms.get(k))
                .map(|r| r.id.to_string())
                .collect(),
        }
    }
}
