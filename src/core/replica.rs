//! Membership in cluster mode ([`super::Bus::External`]): the requests that become log entries
//! (create through the registry, join, enter, switch), and the apply of the membership ops that
//! every replica runs in log order. Single-node mode keeps `membership.rs`'s synchronous path,
//! which the apply below shares (`add_member_as`, `remove_member`, `destroy`).

use std::sync::Arc;

use super::attrs::Attrs;
use super::bus::{Answer, Applied, BusOp, CreateError, LogRef, Waiter};
use super::limits::over_limit;
use super::log::Op;
use super::messages::Post;
use super::{err, Core, Now, OpResult, Output, RoomKey, SessionId, SYSTEM_SENDER};
use crate::wire::{ErrorBody, ErrorCode, LeaveReason, Request, Response, RoomConfig, RoomInfo};

/// A room creation waiting for the registry.
#[derive(Debug)]
pub(super) struct PendingCreate {
    waiter: Waiter,
    sid: SessionId,
    info: RoomInfo,
    config: RoomConfig,
    /// An enter: a room that exists is joined instead.
    enter: bool,
}

impl Core {
    /// Handles a membership request in cluster mode; the answer comes now or once its entry
    /// is applied. A request that changes no membership is handed back.
    pub(super) fn handle_replicated(
        &mut self,
        now: Now,
        sid: SessionId,
        w: Waiter,
        request: Request,
    ) -> Option<Request> {
        match request {
            Request::CreateRoom { info, config } => {
                self.propose_create(now, sid, w, info, config, false)
            }
            Request::JoinRoom { room_id } => self.propose_join(now, sid, w, &room_id),
            Request::EnterRoom { info, config } => {
                if self.room_ids.contains_key(info.room_id.as_str()) {
                    self.propose_join(now, sid, w, &info.room_id)
                } else {
                    self.propose_create(now, sid, w, info, config, true)
                }
            }
            Request::SwitchRoom { from_room_id, to, create_if_missing, config } => {
                let from = match self.member_room(sid, &from_room_id) {
                    Ok(room) => room.key,
                    Err(e) => {
                        self.settle(w, Err(e));
                        return None;
                    }
                };
                let w = Waiter { answer: Answer::Switched { left_room_id: from_room_id }, ..w };
                match self.room_ids.get(to.room_id.as_str()).copied() {
                    Some(to_key) if to_key == from => {
                        let room = self.room_state(to_key, false, true);
                        self.settle(w, Ok(Response::RoomEntered(room)));
                    }
                    Some(_) => {
                        self.leave(now, sid, from, LeaveReason::Left);
                        self.propose_join(now, sid, w, &to.room_id);
                    }
                    None if create_if_missing => {
                        let owner = self.session(sid).map(|s| s.user_id.clone());
                        let checked = owner.and_then(|o| self.check_new_room(&to, &config, &o));
                        if let Err(e) = checked {
                            self.settle(w, Err(e));
                            return None;
                        }
                        self.leave(now, sid, from, LeaveReason::Left);
                        self.propose_create(now, sid, w, to, config, false);
                    }
                    None => {
                        let e = self
                            .existing_room(&to.room_id)
                            .err()
                            .unwrap_or(err(ErrorCode::Internal));
                        self.settle(w, Err(e));
                    }
                }
            }
            r @ (Request::SetRoomAttributes { .. }
            | Request::DeleteRoomAttributes { .. }
            | Request::RoomAttributesBatch { .. }
            | Request::SetRoomMembersAttributes { .. }) => {
                let (conn, request_id) = (w.conn, w.request_id);
                if let Err(e) = self.propose_attributes(now, sid, w, r) {
                    self.respond(conn, request_id, Err(e));
                }
            }
            other => return Some(other),
        }
        None
    }

    /// The session's room limit, counting its joins in flight.
    fn check_session_rooms(&self, sid: SessionId) -> Result<(), ErrorBody> {
        let s = self.session(sid)?;
        if s.rooms.len() + s.pending_joins >= self.limits.rooms_per_user {
            let max = self.limits.rooms_per_user;
            return Err(over_limit(ErrorCode::RoomLimitReached, format!("at most {max}")));
        }
        Ok(())
    }

    /// Proposes the session's join of a room this replica holds.
    fn propose_join(&mut self, now: Now, sid: SessionId, mut w: Waiter, room_id: &str) {
        let (key, already) = match (self.existing_room(room_id), self.session(sid)) {
            (Ok(room), Ok(s)) => (room.key, room.has_session(&s.user_id, sid)),
            (Err(e), _) | (_, Err(e)) => return self.settle(w, Err(e)),
        };
        if already {
            let state = self.room_state(key, false, true);
            return self.settle(w, Ok(Response::RoomEntered(state)));
        }
        if let Err(e) = self.check_session_rooms(sid) {
            return self.settle(w, Err(e));
        }
        let (Some(room), Some(s)) = (self.log_ref(key), self.sessions.get_mut(&sid)) else {
            return self.settle(w, Err(err(ErrorCode::Internal)));
        };
        s.pending_joins += 1;
        w.joining = Some(sid);
        let op = Op::Join { user: s.user_id.clone(), user_name: s.user_name.clone(), sid };
        self.propose(now, room, vec![op], vec![w]);
    }

    /// Asks the registry for a new room; its first entry follows the registry's answer.
    fn propose_create(
        &mut self,
        now: Now,
        sid: SessionId,
        mut w: Waiter,
        info: RoomInfo,
        config: RoomConfig,
        enter: bool,
    ) {
        let _ = now;
        let checked = self
            .session(sid)
            .map(|s| s.user_id.clone())
            .and_then(|owner| self.check_new_room(&info, &config, &owner))
            .and_then(|_| self.check_session_rooms(sid));
        if let Err(e) = checked {
            return self.settle(w, Err(e));
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.pending_joins += 1;
            w.joining = Some(sid);
        }
        self.next_request += 1;
        let req = self.next_request;
        let room_id: Arc<str> = Arc::from(info.room_id.as_str());
        self.creates.insert(req, PendingCreate { waiter: w, sid, info, config, enter });
        self.outputs.push_back(Output::Bus(BusOp::Create { req, room_id }));
    }

    /// The registry answered a creation.
    pub(super) fn on_created(&mut self, now: Now, req: u64, result: Result<u64, CreateError>) {
        let Some(p) = self.creates.remove(&req) else { return };
        let epoch = match result {
            Ok(epoch) => epoch,
            Err(CreateError::Exists)
                if p.enter && self.room_ids.contains_key(p.info.room_id.as_str()) =>
            {
                // Made elsewhere meanwhile, and this replica has it by now: join it.
                let mut w = p.waiter;
                if let Some(sid) = w.joining.take() {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.pending_joins = s.pending_joins.saturating_sub(1);
                    }
                }
                return self.propose_join(now, p.sid, w, &p.info.room_id);
            }
            Err(CreateError::Exists) if !p.enter => {
                return self.settle(p.waiter, Err(err(ErrorCode::RoomAlreadyExists)))
            }
            Err(_) => return self.settle(p.waiter, Err(err(ErrorCode::ClusterUnavailable))),
        };
        let room = LogRef { room_id: Arc::from(p.info.room_id.as_str()), epoch };
        let session = self.sessions.get(&p.sid).map(|s| (s.user_id.clone(), s.user_name.clone()));
        let owner = session.as_ref().map(|(u, _)| u.clone());
        let create = Op::Create {
            room_name: p.info.room_name,
            destroy_delay_s: p.config.destroy_delay_s,
            attributes: p.config.attributes,
            owner,
        };
        // A session that ended meanwhile leaves a room nobody joined: it is destroyed at once.
        let then = match session {
            Some((user, user_name)) => Op::Join { user, user_name, sid: p.sid },
            None => Op::Destroy,
        };
        let w = Waiter { index: 1, ..p.waiter };
        self.propose(now, room, vec![create, then], vec![w]);
    }

    /// Applies a room's first entry: the replica is made.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_create(
        &mut self,
        now: Now,
        room: &LogRef,
        at: Applied,
        room_name: String,
        destroy_delay_s: u32,
        attributes: Vec<(String, String)>,
        owner: Option<Arc<str>>,
    ) -> RoomKey {
        // A replica of an older incarnation is gone: the registry made this one in its place.
        if let Some(old) = self.room_ids.get(&room.room_id).copied() {
            self.destroy(old);
        }
        let by: Arc<str> = owner.clone().unwrap_or_else(|| Arc::from(SYSTEM_SENDER));
        let attrs = Attrs::initial(&attributes, &by, self.room_attr_limits()).unwrap_or_default();
        let info = RoomInfo { room_id: room.room_id.to_string(), room_name };
        let config = RoomConfig { destroy_delay_s, attributes: Vec::new() };
        let when = Now { mono_ms: now.mono_ms, unix_ms: at.unix_ms };
        let key = self.insert_room(when, info, config, attrs, owner);
        if let Some(r) = self.rooms.get_mut(&key) {
            r.log.epoch = room.epoch;
        }
        key
    }

    /// Applies a join: `room_full` and the rest decided here, from the replica.
    pub(super) fn apply_join(
        &mut self,
        now: Now,
        key: RoomKey,
        at: Applied,
        user: Arc<str>,
        user_name: String,
        sid: SessionId,
    ) -> OpResult {
        let Some(room) = self.rooms.get(&key) else { return Err(err(ErrorCode::RoomDoesNotExist)) };
        if room.has_session(&user, sid) {
            return Ok(Response::RoomEntered(self.room_state(key, false, true)));
        }
        if room.entry(&user).is_none() && room.member_count() >= self.limits.members_per_room {
            return Err(self.room_full());
        }
        let created = at.created;
        let state = self.add_member_as(now, key, user.clone(), user_name, sid, created);
        if at.ours && !self.sessions.get(&sid).is_some_and(|s| s.user_id == user) {
            // The session ended while its join was in flight: it leaves again.
            if let Some(room) = self.log_ref(key) {
                let op = Op::Leave { user, sid, reason: LeaveReason::Left };
                self.propose(now, room, vec![op], Vec::new());
            }
        }
        Ok(Response::RoomEntered(state))
    }

    /// Applies a leave; a session of this node that still lists the room drops it.
    pub(super) fn apply_leave(
        &mut self,
        now: Now,
        key: RoomKey,
        at: Applied,
        user: &Arc<str>,
        sid: SessionId,
        reason: LeaveReason,
    ) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            if s.rooms.contains(&key) {
                s.rooms.retain(|k| *k != key);
                if let Some(conn) = s.conn {
                    self.outputs.push_back(Output::CloseRoomStream { conn, room: key });
                }
            }
        }
        if self.rooms.get(&key).is_some_and(|r| r.has_session(user, sid)) {
            self.remove_member(now, key, user, sid, reason, at.ours);
        }
    }

    /// Applies a delayed destroy: only while the room is still empty (a join in between
    /// cancelled it).
    pub(super) fn apply_destroy(&mut self, key: RoomKey, at: Applied) -> OpResult {
        if !self.rooms.get(&key).is_some_and(|r| r.is_empty()) {
            return Err(err(ErrorCode::InvalidRequest));
        }
        self.destroy_replicated(key, at.ours);
        Ok(Response::Pong)
    }

    /// Destroys a replica; the node whose entry destroyed it drops the registry record.
    pub(super) fn destroy_replicated(&mut self, key: RoomKey, ours: bool) {
        let room = self.log_ref(key).filter(|_| self.external().is_some());
        self.destroy(key);
        if let (true, Some(room)) = (ours, room) {
            self.outputs.push_back(Output::Bus(BusOp::Remove { room }));
        }
    }

    /// Applies one op of a room this replica holds.
    pub(super) fn apply_op(&mut self, now: Now, key: RoomKey, at: Applied, op: Op) -> OpResult {
        match op {
            Op::Message { sender, sid, client_msg_id, priority, body } => {
                let sid = (sid != 0).then_some(sid);
                let except = sid.and_then(|s| self.sessions.get(&s)).and_then(|s| s.conn);
                let post = Post { sender, except, rate_limited: false };
                self.apply_message(now, key, at, post, sid, body, priority, client_msg_id)
            }
            Op::Join { user, user_name, sid } => {
                self.apply_join(now, key, at, user, user_name, sid)
            }
            Op::Leave { user, sid, reason } => {
                let room_id = self.rooms.get(&key).map(|r| r.id.to_string()).unwrap_or_default();
                self.apply_leave(now, key, at, &user, sid, reason);
                Ok(Response::RoomLeft { room_id })
            }
            Op::Destroy => self.apply_destroy(key, at),
            op @ (Op::RoomAttrs { .. } | Op::MemberAttrs { .. }) => {
                self.apply_attribute_op(key, op)
            }
            // Resumption on another node is not carried yet; a room is made once per epoch.
            Op::Rebind { .. } | Op::Create { .. } => Err(ErrorBody::new(ErrorCode::Internal)),
        }
    }
}
