//! Output: response and event lines, and [`Failure`], an error as the CLI reports it, as
//! [`J`] values whose keys come out in the order written here (`"type"` first).

use serde_json::Value;

use super::value::J;
use crate::client::ClientError;
use crate::wire::{
    ErrorCode, Event, Member, MessageBody, Response, RoomMessage, RoomState, RoomSummary,
};

/// An error as the CLI reports it: the server's code and name, or a local name without code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The numeric error code, when the server (or the protocol table) has one.
    pub code: Option<u16>,
    /// The snake_case name (`room_full`, `connection`, `config`, ...).
    pub name: String,
    /// Human-readable detail.
    pub message: String,
}

impl Failure {
    /// A failure without a code (`name` says what failed: `connection`, `config`, ...).
    pub fn local(name: &str, message: impl Into<String>) -> Failure {
        Failure { code: None, name: name.into(), message: message.into() }
    }

    /// An invalid input line.
    pub fn invalid_request(message: impl Into<String>) -> Failure {
        let code = ErrorCode::InvalidRequest;
        Failure { code: Some(code.as_u16()), name: code.name().into(), message: message.into() }
    }

    /// The `"error"` object.
    pub fn to_json(&self) -> J {
        J::obj()
            .with("code", self.code)
            .with("name", self.name.as_str())
            .with("message", self.message.as_str())
    }
}

impl From<&ClientError> for Failure {
    fn from(e: &ClientError) -> Failure {
        match e {
            ClientError::Server { code, message } => Failure {
                code: Some(*code),
                name: ErrorCode::from_u16(*code).map_or("unknown", ErrorCode::name).into(),
                message: message.clone(),
            },
            ClientError::Connection(c) => Failure::local("connection", c.to_string()),
            ClientError::Protocol(m) => Failure::local("protocol", m.as_str()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} ({code}): {}", self.name, self.message),
            None => write!(f, "{}: {}", self.name, self.message),
        }
    }
}

/// The head of a response line: type, op, and the echoed id when there is one.
pub fn response_head(op: Option<&str>, id: &Option<Value>, ok: bool) -> J {
    let mut j = J::obj().with("type", "response").with("op", op);
    if let Some(id) = id {
        j.push("id", id.clone());
    }
    j.with("ok", ok)
}

/// A member as `{"user_id", "user_name"}`.
pub fn member(m: &Member) -> J {
    J::obj().with("user_id", m.user_id.as_str()).with("user_name", m.user_name.as_str())
}

fn members(ms: &[Member]) -> J {
    J::A(ms.iter().map(member).collect())
}

fn attributes(attrs: &[(String, String)]) -> J {
    J::O(attrs.iter().map(|(k, v)| (k.clone(), J::from(v.as_str()))).collect())
}

fn room_state(s: &RoomState) -> J {
    J::obj()
        .with("room_id", s.room_id.as_str())
        .with("room_name", s.room_name.as_str())
        .with("created", s.created)
        .with("already_member", s.already_member)
        .with("member_count", s.member_count)
        .with("last_seq", s.last_seq)
        .with("created_at_ms", s.created_at_ms)
        .with("attributes", attributes(&s.attributes))
}

fn room_summary(r: &RoomSummary) -> J {
    J::obj()
        .with("room_id", r.room_id.as_str())
        .with("room_name", r.room_name.as_str())
        .with("member_count", r.member_count)
}

/// A message's fields (as in a `room_message` event, without `type` and `event`). Custom data
/// is hex.
pub fn message(m: &RoomMessage) -> J {
    let mut j = J::obj()
        .with("room_id", m.room_id.as_str())
        .with("seq", m.seq)
        .with("message_id", m.message_id)
        .with("sender", m.sender.as_str())
        .with("timestamp_ms", m.timestamp_ms)
        .with("priority", m.priority.name());
    match &m.body {
        MessageBody::Text(t) => j.push("text", t.as_str()),
        MessageBody::Custom { sub_type, data } => {
            j.push("custom", J::obj().with("sub_type", *sub_type).with("data", hex::encode(data)))
        }
    }
    j
}

/// The result fields of a successful response.
pub fn response_fields(r: &Response) -> J {
    match r {
        Response::LoggedIn { session_id, server_time_ms, token_expires_at_s, .. } => J::obj()
            .with("session_id", *session_id)
            .with("server_time_ms", *server_time_ms)
            .with("token_expires_at_s", *token_expires_at_s),
        Response::LoggedOut => J::obj(),
        Response::RoomEntered(s) => room_state(s),
        Response::RoomLeft { room_id } => J::obj().with("room_id", room_id.as_str()),
        Response::RoomsLeft { room_ids } => J::obj().with("room_ids", room_ids.clone()),
        Response::RoomSwitched { left_room_id, room } => {
            let mut j = J::obj().with("left_room_id", left_room_id.as_str());
            j.extend(room_state(room));
            j
        }
        Response::MessageSent { room_id, message_id, seq, timestamp_ms, duplicate } => J::obj()
            .with("room_id", room_id.as_str())
            .with("seq", *seq)
            .with("message_id", *message_id)
            .with("timestamp_ms", *timestamp_ms)
            .with("duplicate", *duplicate),
        Response::RoomMembers { room_id, members: ms, next_flag } => J::obj()
            .with("room_id", room_id.as_str())
            .with("members", members(ms))
            .with("next_flag", next_flag.as_str()),
        Response::RoomOnlineCount { room_id, count } => {
            J::obj().with("room_id", room_id.as_str()).with("count", *count)
        }
        Response::RoomMembersById { room_id, members: ms, not_found } => J::obj()
            .with("room_id", room_id.as_str())
            .with("members", members(ms))
            .with("not_found", not_found.clone()),
        Response::JoinedRooms { rooms } => {
            J::obj().with("rooms", J::A(rooms.iter().map(room_summary).collect()))
        }
        Response::History { room_id, messages, has_more } => J::obj()
            .with("room_id", room_id.as_str())
            .with("messages", J::A(messages.iter().map(message).collect()))
            .with("has_more", *has_more),
        Response::Resumed { session_id, session_resumed, token_expires_at_s, rooms, .. } => {
            J::obj()
                .with("session_id", *session_id)
                .with("session_resumed", *session_resumed)
                .with("token_expires_at_s", *token_expires_at_s)
                .with("rooms", J::A(rooms.iter().map(room_recovery).collect()))
        }
        Response::TokenRenewed { token_expires_at_s } => {
            J::obj().with("token_expires_at_s", *token_expires_at_s)
        }
        Response::Pong => J::obj(),
        Response::RoomAttributesChanged { room_id, failed } => J::obj()
            .with("room_id", room_id.as_str())
            .with("failed_keys", J::A(failed.iter().map(attribute_failure).collect())),
        Response::RoomAttributes { room_id, attributes: a } => {
            J::obj().with("room_id", room_id.as_str()).with("attributes", attributes(a))
        }
        Response::RoomMembersAttributesSet { room_id, members, failed_user_ids } => J::obj()
            .with("room_id", room_id.as_str())
            .with("members", member_attributes(members))
            .with("failed_user_ids", failed_user_ids.clone()),
        Response::RoomMembersAttributes { room_id, members } => {
            J::obj().with("room_id", room_id.as_str()).with("members", member_attributes(members))
        }
        Response::RoomMemberAttributesList { room_id, members, next_flag } => J::obj()
            .with("room_id", room_id.as_str())
            .with("members", member_attributes(members))
            .with("next_flag", next_flag.as_str()),
    }
}

/// One room's outcome of a resumption.
pub fn room_recovery(r: &crate::wire::RoomRecovery) -> J {
    J::obj()
        .with("room_id", r.room_id.as_str())
        .with("rejoined", r.rejoined)
        .with("recovered", r.recovered)
        .with("replayed", r.replayed)
        .with("last_seq", r.last_seq)
        .with("error_code", r.error_code)
}

fn attribute_failure(f: &crate::wire::AttributeFailure) -> J {
    J::obj()
        .with("key", f.key.as_str())
        .with("code", f.code)
        .with("name", ErrorCode::from_u16(f.code).map(ErrorCode::name))
}

fn member_attributes(ms: &[crate::wire::MemberAttributes]) -> J {
    J::A(
        ms.iter()
            .map(|m| {
                J::obj()
                    .with("user_id", m.user_id.as_str())
                    .with("attributes", attributes(&m.attributes))
            })
            .collect(),
    )
}

/// An event line.
pub fn event(e: &Event) -> J {
    let mut j = J::obj().with("type", "event").with("event", e.name());
    match e {
        Event::MembersJoined { room_id, members: ms } => {
            j.push("room_id", room_id.as_str());
            j.push("members", members(ms));
        }
        Event::MembersLeft { room_id, members: ms, reason } => {
            j.push("room_id", room_id.as_str());
            j.push("members", members(ms));
            j.push("reason", reason.name());
        }
        Event::RoomMessage(m) => j.extend(message(m)),
        Event::KickedOut { code, message } => {
            j.push("code", *code);
            j.push("name", ErrorCode::from_u16(*code).map(ErrorCode::name));
            j.push("message", message.as_str());
        }
        Event::MemberCountUpdated { room_id, count } => {
            j.push("room_id", room_id.as_str());
            j.push("count", *count);
        }
        Event::RoomAttributesUpdated { room_id, set, deleted } => {
            j.push("room_id", room_id.as_str());
            j.push("set", attributes(set));
            j.push("deleted", deleted.clone());
        }
        Event::RoomMemberAttributesUpdated { room_id, members, operated_by } => {
            j.push("room_id", room_id.as_str());
            j.push("members", member_attributes(members));
            j.push("operated_by", operated_by.as_str());
        }
        Event::TokenWillExpire { expires_at_s } => j.push("expires_at_s", *expires_at_s),
        Event::RoomDestroyed { room_id } => j.push("room_id", room_id.as_str()),
        Event::RemovedFromRoom { room_id, reason } => {
            j.push("room_id", room_id.as_str());
            j.push("reason", reason.name());
        }
    }
    j
}

/// The `reconnecting` event line.
pub fn reconnecting(reason: &str) -> J {
    J::obj().with("type", "event").with("event", "reconnecting").with("reason", reason)
}

/// The `resumed` event line: per room, whether it was rejoined and fully recovered.
pub fn resumed(session_resumed: bool, rooms: &[crate::wire::RoomRecovery], early_data: bool) -> J {
    J::obj()
        .with("type", "event")
        .with("event", "resumed")
        .with("session_resumed", session_resumed)
        .with("early_data", early_data)
        .with("rooms", J::A(rooms.iter().map(room_recovery).collect()))
}

/// The `disconnected` event line.
pub fn disconnected(code: Option<u16>, reason: &str) -> J {
    J::obj()
        .with("type", "event")
        .with("event", "disconnected")
        .with("code", code)
        .with("name", code.and_then(ErrorCode::from_u16).map(ErrorCode::name))
        .with("reason", reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_events_print_with_their_room_and_reason() {
        let destroyed = event(&Event::RoomDestroyed { room_id: "r1".into() }).to_line();
        assert_eq!(destroyed, r#"{"type":"event","event":"room_destroyed","room_id":"r1"}"#);
        let removed = Event::RemovedFromRoom {
            room_id: "r1".into(),
            reason: crate::wire::LeaveReason::Kicked,
        };
        assert_eq!(
            event(&removed).to_line(),
            r#"{"type":"event","event":"removed_from_room","room_id":"r1","reason":"kicked"}"#
        );
    }

    #[test]
    fn output_keeps_key_order() {
        let line = response_head(Some("join_room"), &Some(Value::from(1)), false)
            .with("error", Failure::invalid_request("x").to_json())
            .to_line();
        assert_eq!(
            line,
            r#"{"type":"response","op":"join_room","id":1,"ok":false,"error":{"code":1000,"name":"invalid_request","message":"x"}}"#
        );
        assert_eq!(
            disconnected(Some(2004), "kicked").to_line(),
            r#"{"type":"event","event":"disconnected","code":2004,"name":"kicked_out","reason":"kicked"}"#
        );
    }
}
