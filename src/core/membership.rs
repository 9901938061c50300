//! Membership: creating, joining, entering, leaving and switching rooms, the member queries,
//! and the destroy of a room its last member left.

use std::sync::Arc;

use super::attrs::Attrs;
use super::limits::{invalid_room_id, over_limit, page_start};
use super::log::Op;
use super::room::{PresenceChange, Room};
use super::{
    err, retention, valid_room_id, ConnId, Core, Now, OpResult, Output, RoomKey, SessionId, Timer,
    MAX_QUERY_USER_IDS,
};
use crate::wire::{
    ErrorBody, ErrorCode, LeaveReason, Response, RoomConfig, RoomInfo, RoomState, RoomSummary,
};

/// How long a proposed delayed destroy waits for its entry before it is proposed again.
const DESTROY_RETRY_MS: u64 = 1000;

impl Core {
    /// The room with this id, if it exists.
    pub(super) fn existing_room(&self, room_id: &str) -> Result<&Room, ErrorBody> {
        if !valid_room_id(room_id) {
            return Err(invalid_room_id());
        }
        self.room_ids
            .get(room_id)
            .and_then(|k| self.rooms.get(k))
            .ok_or_else(|| err(ErrorCode::RoomDoesNotExist))
    }

    /// The room, if the session is in it. A room that does not exist is `not_in_room` too, so
    /// that the operations of members tell a non-member nothing about which rooms exist.
    pub(super) fn member_room(&self, sid: SessionId, room_id: &str) -> Result<&Room, ErrorBody> {
        if !valid_room_id(room_id) {
            return Err(invalid_room_id());
        }
        let s = self.session(sid)?;
        self.room_ids
            .get(room_id)
            .and_then(|k| self.rooms.get(k))
            .filter(|room| room.has_session(&s.user_id, sid))
            .ok_or_else(|| err(ErrorCode::NotInRoom))
    }

    /// Checks a room about to be created, in the documented order (docs/PROTOCOL.md,
    /// CreateRoom): the request's own fields, the server's room limit and the initial
    /// attributes, and only then whether the id is taken, so that a malformed request does not
    /// learn whether a room exists. Returns the initial attributes, owned by `owner`.
    pub(super) fn check_new_room(
        &self,
        info: &RoomInfo,
        config: &RoomConfig,
        owner: &Arc<str>,
    ) -> Result<Attrs, ErrorBody> {
        let l = &self.limits;
        if !valid_room_id(&info.room_id) {
            return Err(invalid_room_id());
        }
        if info.room_name.len() > l.max_room_name_bytes {
            let max = l.max_room_name_bytes;
            return Err(over_limit(ErrorCode::RoomNameTooLong, format!("at most {max} bytes")));
        }
        if config.destroy_delay_s > l.max_destroy_delay_s {
            let max = l.max_destroy_delay_s;
            return Err(over_limit(ErrorCode::InvalidDestroyDelay, format!("at most {max} s")));
        }
        if self.rooms.len() >= l.rooms_per_server {
            let max = l.rooms_per_server;
            return Err(over_limit(ErrorCode::ServerRoomLimit, format!("{max} rooms")));
        }
        let attrs = Attrs::initial(&config.attributes, owner, self.room_attr_limits())?;
        if self.room_ids.contains_key(info.room_id.as_str()) {
            return Err(err(ErrorCode::RoomAlreadyExists));
        }
        Ok(attrs)
    }

    /// Whether the session may join `room` (or a room it creates, `None`): the room's member
    /// limit unless it is there already, and the session's room limit.
    pub(super) fn check_can_join(
        &self,
        sid: SessionId,
        room: Option<&Room>,
    ) -> Result<(), ErrorBody> {
        let s = self.session(sid)?;
        if let Some(room) = room {
            if room.has_session(&s.user_id, sid) {
                return Ok(());
            }
            if room.entry(&s.user_id).is_none()
                && room.member_count() >= self.limits.members_per_room
            {
                return Err(self.room_full());
            }
        }
        if s.rooms.len() >= self.limits.rooms_per_user {
            let max = self.limits.rooms_per_user;
            return Err(over_limit(ErrorCode::RoomLimitReached, format!("at most {max}")));
        }
        Ok(())
    }

    /// `room_full`, with the room's member limit.
    pub(super) fn room_full(&self) -> ErrorBody {
        over_limit(ErrorCode::RoomFull, format!("{} members", self.limits.members_per_room))
    }

    pub(super) fn create_room(
        &mut self,
        now: Now,
        sid: SessionId,
        info: RoomInfo,
        config: RoomConfig,
    ) -> Result<RoomState, ErrorBody> {
        let owner = self.session(sid)?.user_id.clone();
        let attrs = self.check_new_room(&info, &config, &owner)?;
        self.check_can_join(sid, None)?;
        let key = self.insert_room(now, info, config, attrs, Some(owner));
        Ok(self.add_member(now, sid, key, true))
    }

    /// Adds a room with no members.
    pub(super) fn insert_room(
        &mut self,
        now: Now,
        info: RoomInfo,
        config: RoomConfig,
        attrs: Attrs,
        creator: Option<Arc<str>>,
    ) -> RoomKey {
        let key = RoomKey(self.next_room);
        self.next_room += 1;
        let id: Arc<str> = Arc::from(info.room_id.as_str());
        let delay_ms = u64::from(config.destroy_delay_s) * 1000;
        let mut room = Room::new(key, id.clone(), info.room_name, now.unix_ms, delay_ms, attrs);
        room.creator = creator;
        self.rooms.insert(key, room);
        self.room_ids.insert(id, key);
        self.room_order.insert(key);
        key
    }

    pub(super) fn join_room(
        &mut self,
        now: Now,
        sid: SessionId,
        room_id: &str,
    ) -> Result<RoomState, ErrorBody> {
        let room = self.existing_room(room_id)?;
        self.check_can_join(sid, Some(room))?;
        let key = room.key;
        Ok(self.add_member(now, sid, key, false))
    }

    /// Joins the room, or creates it when it does not exist.
    pub(super) fn enter_room(
        &mut self,
        now: Now,
        sid: SessionId,
        info: RoomInfo,
        config: RoomConfig,
    ) -> Result<RoomState, ErrorBody> {
        if self.room_ids.contains_key(info.room_id.as_str()) {
            return self.join_room(now, sid, &info.room_id);
        }
        self.create_room(now, sid, info, config)
    }

    /// What a session that entered the room sees of it.
    pub(super) fn room_state(
        &self,
        key: RoomKey,
        created: bool,
        already_member: bool,
    ) -> RoomState {
        match self.rooms.get(&key) {
            Some(r) => RoomState {
                room_id: r.id.to_string(),
                room_name: r.name.clone(),
                created,
                already_member,
                member_count: r.member_count() as u32,
                last_seq: r.last_seq,
                created_at_ms: r.created_at_ms,
                attributes: r.attributes().snapshot(),
            },
            None => RoomState {
                room_id: String::new(),
                room_name: String::new(),
                created,
                already_member,
                member_count: 0,
                last_seq: 0,
                created_at_ms: 0,
                attributes: Vec::new(),
            },
        }
    }

    pub(super) fn leave_room(&mut self, now: Now, sid: SessionId, room_id: &str) -> OpResult {
        let key = self.member_room(sid, room_id)?.key;
        self.leave(now, sid, key, LeaveReason::Left);
        Ok(Response::RoomLeft { room_id: room_id.to_string() })
    }

    /// Removes the session from the room: its stream is finished, the others are told (batched),
    /// and an empty room is destroyed at once or scheduled for its delayed destroy. In cluster
    /// mode the session drops the room now and the member leaves when its entry is applied.
    pub(super) fn leave(&mut self, now: Now, sid: SessionId, key: RoomKey, reason: LeaveReason) {
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        s.rooms.retain(|k| *k != key);
        let (user, conn) = (s.user_id.clone(), s.conn);
        if !self.rooms.contains_key(&key) {
            return;
        }
        if let Some(conn) = conn {
            self.outputs.push_back(Output::CloseRoomStream { conn, room: key });
        }
        if self.external().is_some() {
            if let Some(room) = self.log_ref(key) {
                self.propose(now, room, vec![Op::Leave { user, sid, reason }], Vec::new());
            }
            return;
        }
        self.remove_member(now, key, &user, sid, reason, true);
    }

    /// Removes a member session from the room (the apply of a leave): the others are told
    /// (batched), and an empty room is destroyed at once or scheduled for its delayed destroy;
    /// in cluster mode the replica whose entry emptied it drops the registry record.
    pub(super) fn remove_member(
        &mut self,
        now: Now,
        key: RoomKey,
        user: &Arc<str>,
        sid: SessionId,
        reason: LeaveReason,
        ours: bool,
    ) {
        let user = user.clone();
        let Some(room) = self.rooms.get_mut(&key) else { return };
        let mut announce = false;
        let mut owned_deleted = Vec::new();
        let mut bucket = None;
        // A member's attributes go with it, and so do room keys it owned with
        // is_delete_after_owner_left; its message bucket rests until it has refilled.
        if let Some(gone) = room.remove_session(&user, sid) {
            owned_deleted = gone.owned;
            bucket = gone.bucket.map(|b| (room.id.clone(), b));
            if !room.is_empty() {
                room.queue_presence(PresenceChange::Left(gone.member, reason));
                announce = true;
            }
        }
        if let Some((room_id, b)) = bucket {
            self.rest_message_bucket(room_id, user, b);
        }
        if announce {
            self.arm_presence_flush(now, key);
            // Announced after the leave (flushing it first), like any other attribute change.
            self.announce_attributes(key, Vec::new(), owned_deleted);
            return;
        }
        // The per-creator count of delayed rooms is single-node only: in cluster mode a replica
        // may not destroy a room on its own.
        let counted = self.external().is_none();
        let Some(room) = self.rooms.get_mut(&key) else { return };
        if room.is_empty() {
            room.clear_presence();
            if room.destroy_delay_ms == 0 {
                self.destroy_replicated(key, ours);
            } else {
                let at = now.mono_ms + room.destroy_delay_ms;
                room.schedule_destroy(at);
                self.timers.insert((at, Timer::Destroy(key)));
                if let Some(creator) = room.creator.clone().filter(|_| counted) {
                    self.count_delayed(creator, at, key);
                }
            }
        }
    }

    /// A room's delayed destroy is due: in single-node mode it is destroyed; in cluster mode
    /// its destroy is proposed, and applied only if the room is still empty then (a join on
    /// another node may come first). The timer is armed again in case the entry is lost.
    pub(super) fn destroy_due(&mut self, now: Now, key: RoomKey) {
        let Some(room) = self.log_ref(key).filter(|_| self.external().is_some()) else {
            self.destroy(key);
            return;
        };
        self.propose(now, room, vec![Op::Destroy], Vec::new());
        let at = now.mono_ms + DESTROY_RETRY_MS;
        let Some(r) = self.rooms.get_mut(&key) else { return };
        r.schedule_destroy(at);
        self.timers.insert((at, Timer::Destroy(key)));
    }

    /// Forgets the room and its id; the message buckets of members still in it (an operator's
    /// destroy) rest until they have refilled, like those of members who leave.
    pub(super) fn destroy(&mut self, key: RoomKey) {
        if let Some(mut room) = self.rooms.remove(&key) {
            if let Some(at) = room.dedup_sweep_at() {
                self.timers.remove(&(at, Timer::DedupSweep(key)));
            }
            if let Some(at) = room.destroy_deadline() {
                self.timers.remove(&(at, Timer::Destroy(key)));
                if let Some(creator) = &room.creator {
                    retention::forget_delayed(&mut self.delayed_by_creator, creator, at, key);
                }
            }
            self.history_bytes -= room.history().bytes();
            self.room_ids.remove(&room.id);
            self.room_order.remove(&key);
            for (user, bucket) in room.take_message_buckets() {
                self.rest_message_bucket(room.id.clone(), user, bucket);
            }
        }
    }

    /// Leaves `from` for `to` (created when missing and asked), checking `to` before leaving.
    pub(super) fn switch_room(
        &mut self,
        now: Now,
        sid: SessionId,
        from: &str,
        to: RoomInfo,
        create_if_missing: bool,
        config: RoomConfig,
    ) -> OpResult {
        let from_key = self.member_room(sid, from)?.key;
        let existing = self.room_ids.get(to.room_id.as_str()).copied();
        let room = match existing {
            Some(to_key) => {
                if to_key == from_key {
                    let state = self.room_state(to_key, false, true);
                    return Ok(Response::RoomSwitched {
                        left_room_id: from.to_string(),
                        room: state,
                    });
                }
                let room = self.rooms.get(&to_key).ok_or_else(|| err(ErrorCode::Internal))?;
                let s = self.session(sid)?;
                if room.entry(&s.user_id).is_none()
                    && room.member_count() >= self.limits.members_per_room
                {
                    return Err(self.room_full());
                }
                self.leave(now, sid, from_key, LeaveReason::Left);
                self.add_member(now, sid, to_key, false)
            }
            None if create_if_missing => {
                let owner = self.session(sid)?.user_id.clone();
                let attrs = self.check_new_room(&to, &config, &owner)?;
                self.leave(now, sid, from_key, LeaveReason::Left);
                let key = self.insert_room(now, to, config, attrs, Some(owner));
                self.add_member(now, sid, key, true)
            }
            None if !valid_room_id(&to.room_id) => return Err(invalid_room_id()),
            None => return Err(err(ErrorCode::RoomDoesNotExist)),
        };
        Ok(Response::RoomSwitched { left_room_id: from.to_string(), room })
    }

    /// The current connections of the room's member sessions (cached until membership changes).
    pub(super) fn recipients(&mut self, key: RoomKey) -> Arc<[ConnId]> {
        let Some(room) = self.rooms.get(&key) else { return Arc::from(Vec::new()) };
        if let Some(r) = room.cached_recipients() {
            return r;
        }
        let list: Arc<[ConnId]> = room
            .sessions()
            .filter_map(|sid| self.sessions.get(&sid).and_then(|s| s.conn))
            .collect();
        if let Some(room) = self.rooms.get_mut(&key) {
            room.cache_recipients(list.clone());
        }
        list
    }

    pub(super) fn query_members(
        &self,
        sid: SessionId,
        room_id: &str,
        next_flag: &str,
        count: u32,
    ) -> OpResult {
        let room = self.member_room(sid, room_id)?;
        let (members, next_flag) = room.members_page(page_start(next_flag, count)?, count);
        Ok(Response::RoomMembers { room_id: room_id.to_string(), members, next_flag })
    }

    pub(super) fn query_members_by_id(
        &self,
        sid: SessionId,
        room_id: &str,
        user_ids: Vec<String>,
    ) -> OpResult {
        let room = self.member_room(sid, room_id)?;
        if user_ids.len() > MAX_QUERY_USER_IDS {
            return Err(over_limit(ErrorCode::TooManyUserIds, MAX_QUERY_USER_IDS));
        }
        let mut members = Vec::new();
        let mut not_found = Vec::new();
        for id in user_ids {
            match room.entry(&id) {
                Some(e) => members.push(e.member.clone()),
                None => not_found.push(id),
            }
        }
        Ok(Response::RoomMembersById { room_id: room_id.to_string(), members, not_found })
    }

    pub(super) fn joined_rooms(&self, sid: SessionId) -> Response {
        let rooms = self
            .sessions
            .get(&sid)
            .map(|s| {
                s.rooms
                    .iter()
                    .filter_map(|k| self.rooms.get(k))
                    .map(|r| RoomSummary {
                        room_id: r.id.to_string(),
                        room_name: r.name.clone(),
                        member_count: r.member_count() as u32,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Response::JoinedRooms { rooms }
    }
}
