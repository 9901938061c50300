//! The sans-IO room core driven directly, with explicit time: no sockets, no tasks.
//!
//! Every output is decoded the way the server would deliver it (a broadcast expands to each
//! listed connection but the excepted one), so each test checks what each connection gets. The
//! harness is `huddle::fuzzing::harness`, the one the `request_handler` fuzz target runs on; the
//! tests are in one module per concern.

mod admin;
mod destroy;
mod limits;
mod login;
mod messages;
mod multi_device;
mod presence;
mod queries;
mod ratelimits;
mod resumption;
mod retention;
mod room_ops;

use std::collections::BTreeMap;

use huddle::core::{
    AdminConnectionPage, AdminCreateRoom, AdminCustomBody, AdminMessage, ConnId, Limits,
    SYSTEM_SENDER,
};
use huddle::fuzzing::harness::{Got, Harness, START_UNIX_MS};
use huddle::wire::{
    ErrorBody, ErrorCode, Event, HistoryAnchor, LeaveReason, Login, Member, MessageBody, Priority,
    Reply, Request, Response, RoomConfig, RoomInfo, StreamHeader, PROTOCOL_VERSION,
};

fn info(id: &str) -> RoomInfo {
    RoomInfo { room_id: id.into(), room_name: format!("{id} name") }
}

fn delay(s: u32) -> RoomConfig {
    RoomConfig { destroy_delay_s: s, attributes: Vec::new() }
}

fn create(room: &str, delay_s: u32) -> Request {
    Request::CreateRoom { info: info(room), config: delay(delay_s) }
}

fn join(room: &str) -> Request {
    Request::JoinRoom { room_id: room.into() }
}

fn leave(room: &str) -> Request {
    Request::LeaveRoom { room_id: room.into() }
}

fn send_req(room: &str, body: MessageBody, client_msg_id: Option<&str>) -> Request {
    Request::SendRoomMessage {
        room_id: room.into(),
        body,
        priority: Priority::Medium,
        client_msg_id: client_msg_id.map(str::to_string),
    }
}

fn text(room: &str, t: &str) -> Request {
    send_req(room, MessageBody::Text(t.into()), None)
}

fn member(user: &str) -> Member {
    Member { user_id: user.into(), user_name: format!("{user} name") }
}

fn joined(room: &str, users: &[&str]) -> Event {
    Event::MembersJoined {
        room_id: room.into(),
        members: users.iter().map(|u| member(u)).collect(),
    }
}

fn left(room: &str, users: &[&str], reason: LeaveReason) -> Event {
    Event::MembersLeft {
        room_id: room.into(),
        members: users.iter().map(|u| member(u)).collect(),
        reason,
    }
}

fn message_seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| match e {
            Event::RoomMessage(m) => m.seq,
            e => panic!("expected a room message, got {e:?}"),
        })
        .collect()
}
