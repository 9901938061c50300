//! The attribute requests: room attributes (with owners, atomic batches, partial failures) and
//! member attributes (docs/PROTOCOL.md, section 7.1). Their storage is `attrs.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::attrs::{check_key_value, AttrLimits};
use super::bus::Waiter;
use super::limits::{over_limit, page_start};
use super::log::Op;
use super::room::RoomKey;
use super::{err, Core, Now, OpResult, SessionId};
use crate::wire::{
    AttributeFailure, AttributeOp, ErrorBody, ErrorCode, Event, MemberAttributes, Request, Response,
};

fn member_attrs(user: &str, map: &BTreeMap<String, String>) -> MemberAttributes {
    MemberAttributes {
        user_id: user.to_string(),
        attributes: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// Most user ids in one member-attributes request.
const MAX_MEMBER_IDS: usize = 100;

impl Core {
    pub(crate) fn room_attr_limits(&self) -> AttrLimits {
        let l = &self.limits;
        AttrLimits {
            max_keys: l.room_attributes_max_keys,
            max_key: l.room_attribute_key_max_bytes,
            max_value: l.room_attribute_value_max_bytes,
            max_total: l.room_attributes_max_total_bytes,
        }
    }

    /// Handles the attribute requests (docs/PROTOCOL.md, section 7.1).
    pub(crate) fn handle_attributes(
        &mut self,
        now: Now,
        sid: SessionId,
        request: Request,
    ) -> OpResult {
        // A single set or delete is a batch of one step that may fail partly.
        if let Some((room_id, op)) = request.attribute_step() {
            let room_id = room_id.to_string();
            return self.change_room_attributes(now, sid, &room_id, vec![op], false);
        }
        match request {
            Request::RoomAttributesBatch { room_id, ops } => {
                self.change_room_attributes(now, sid, &room_id, ops, true)
            }
            Request::QueryRoomAttributes { room_id } => {
                let room = self.member_room(sid, &room_id)?;
                Ok(Response::RoomAttributes { room_id, attributes: room.attributes().snapshot() })
            }
            Request::SetRoomMembersAttributes { room_id, user_ids, attributes } => {
                self.set_member_attributes(sid, &room_id, user_ids, attributes)
            }
            Request::QueryRoomMembersAttributes { room_id, user_ids } => {
                let room = self.member_room(sid, &room_id)?;
                if user_ids.len() > MAX_MEMBER_IDS {
                    return Err(over_limit(ErrorCode::TooManyUserIds, MAX_MEMBER_IDS));
                }
                let empty = BTreeMap::new();
                let members = user_ids
                    .iter()
                    .filter(|u| room.entry(u).is_some())
                    .map(|u| member_attrs(u, room.member_attributes(u).unwrap_or(&empty)))
                    .collect();
                Ok(Response::RoomMembersAttributes { room_id, members })
            }
            Request::QueryRoomMemberAttributesList { room_id, next_flag, count } => {
                let room = self.member_room(sid, &room_id)?;
                let start = page_start(&next_flag, count)?;
                let mut with_attrs = room.entries_from(start).filter_map(|(pos, e)| {
                    room.member_attributes(&e.member.user_id)
                        .map(|a| (pos, member_attrs(&e.member.user_id, a)))
                });
                let members: Vec<MemberAttributes> =
                    with_attrs.by_ref().take(count as usize).map(|(_, m)| m).collect();
                let next_flag =
                    with_attrs.next().map(|(pos, _)| pos.to_string()).unwrap_or_default();
                Ok(Response::RoomMemberAttributesList { room_id, members, next_flag })
            }
            _ => Err(err(ErrorCode::InvalidRequest)),
        }
    }

    fn change_room_attributes(
        &mut self,
        _now: Now,
        sid: SessionId,
        room_id: &str,
        ops: Vec<AttributeOp>,
        atomic: bool,
    ) -> OpResult {
        let key = self.member_room(sid, room_id)?.key;
        let caller = self.session(sid)?.user_id.clone();
        let failed = self.apply_room_attributes(key, &caller, &ops, atomic)?;
        Ok(Response::RoomAttributesChanged { room_id: room_id.to_string(), failed })
    }

    /// The attribute changes in cluster mode: checked for the session at the proposal, decided
    /// and applied at the entry's position (`apply_attribute_op`).
    pub(super) fn propose_attributes(
        &mut self,
        now: Now,
        sid: SessionId,
        w: Waiter,
        request: Request,
    ) -> Result<(), ErrorBody> {
        let (room_id, op) = match request.attribute_step() {
            Some((room_id, op)) => (room_id.to_string(), vec![op]),
            None => match &request {
                Request::RoomAttributesBatch { room_id, ops } => (room_id.clone(), ops.clone()),
                Request::SetRoomMembersAttributes { room_id, .. } => (room_id.clone(), Vec::new()),
                _ => return Err(err(ErrorCode::InvalidRequest)),
            },
        };
        let key = self.member_room(sid, &room_id)?.key;
        let caller = self.session(sid)?.user_id.clone();
        let room = self.log_ref(key).ok_or_else(|| err(ErrorCode::Internal))?;
        let op = match request {
            Request::SetRoomMembersAttributes { user_ids, attributes, .. } => {
                self.check_member_attributes(&user_ids, &attributes)?;
                Op::MemberAttrs { caller, sid, user_ids, attributes }
            }
            Request::RoomAttributesBatch { .. } => {
                Op::RoomAttrs { caller, sid, ops: op, atomic: true }
            }
            _ => Op::RoomAttrs { caller, sid, ops: op, atomic: false },
        };
        self.propose(now, room, vec![op], vec![w]);
        Ok(())
    }

    /// Applies an attribute op at its log position: the caller must still be a member.
    pub(super) fn apply_attribute_op(&mut self, key: RoomKey, op: Op) -> OpResult {
        let Some(room) = self.rooms.get(&key) else { return Err(err(ErrorCode::Internal)) };
        let room_id = room.id.to_string();
        match op {
            Op::RoomAttrs { caller, sid, ops, atomic } => {
                if !room.has_session(&caller, sid) {
                    return Err(err(ErrorCode::NotInRoom));
                }
                let failed = self.apply_room_attributes(key, &caller, &ops, atomic)?;
                Ok(Response::RoomAttributesChanged { room_id, failed })
            }
            Op::MemberAttrs { caller, sid, user_ids, attributes } => {
                if !room.has_session(&caller, sid) {
                    return Err(err(ErrorCode::NotInRoom));
                }
                self.apply_member_attributes(key, &caller, &room_id, user_ids, attributes)
            }
            _ => Err(err(ErrorCode::Internal)),
        }
    }

    /// Applies attribute steps for `caller` (see [`Attrs::apply`]) and announces the change;
    /// returns the keys refused for ownership.
    pub(crate) fn apply_room_attributes(
        &mut self,
        key: RoomKey,
        caller: &Arc<str>,
        ops: &[AttributeOp],
        atomic: bool,
    ) -> Result<Vec<AttributeFailure>, ErrorBody> {
        let limits = self.room_attr_limits();
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let change = room.apply_attributes(ops, caller, limits, atomic)?;
        self.announce_attributes(key, change.set, change.deleted);
        Ok(change.failed)
    }

    /// Sends a RoomAttributesUpdated event to every member (after any pending presence).
    pub(crate) fn announce_attributes(
        &mut self,
        key: RoomKey,
        set: Vec<(String, String)>,
        deleted: Vec<String>,
    ) {
        if set.is_empty() && deleted.is_empty() {
            return;
        }
        self.flush_presence(key);
        let to = self.recipients(key);
        let Some(room) = self.rooms.get(&key) else { return };
        let event = Event::RoomAttributesUpdated { room_id: room.id.to_string(), set, deleted };
        self.broadcast_event(key, to, &event);
    }

    fn set_member_attributes(
        &mut self,
        sid: SessionId,
        room_id: &str,
        user_ids: Vec<String>,
        attributes: Vec<(String, String)>,
    ) -> OpResult {
        let key = self.member_room(sid, room_id)?.key;
        self.check_member_attributes(&user_ids, &attributes)?;
        let caller = self.session(sid)?.user_id.clone();
        self.apply_member_attributes(key, &caller, room_id, user_ids, attributes)
    }

    fn member_attr_limits(&self) -> AttrLimits {
        let l = &self.limits;
        AttrLimits {
            max_keys: l.member_attributes_max_keys,
            max_key: l.member_attribute_key_max_bytes,
            max_value: l.member_attribute_value_max_bytes,
            max_total: usize::MAX,
        }
    }

    /// What a member-attributes request must be whatever the room holds.
    fn check_member_attributes(
        &self,
        user_ids: &[String],
        attributes: &[(String, String)],
    ) -> Result<(), ErrorBody> {
        if user_ids.len() > MAX_MEMBER_IDS {
            return Err(over_limit(ErrorCode::TooManyUserIds, MAX_MEMBER_IDS));
        }
        let lim = self.member_attr_limits();
        // A member holds at most max_keys keys, so a request naming more can never fit: refused
        // before any member is looked at.
        if attributes.len() > lim.max_keys {
            return Err(ErrorBody::with_message(
                ErrorCode::AttributeCountExceeded,
                format!("a request names {} keys, over {}", attributes.len(), lim.max_keys),
            ));
        }
        for (k, v) in attributes {
            check_key_value(k, Some(v), lim)?;
        }
        Ok(())
    }

    /// Sets member attributes in the room (a checked request): all or nothing.
    fn apply_member_attributes(
        &mut self,
        key: RoomKey,
        caller: &Arc<str>,
        room_id: &str,
        user_ids: Vec<String>,
        attributes: Vec<(String, String)>,
    ) -> OpResult {
        let lim = self.member_attr_limits();
        let max_members = self.limits.member_attributes_max_members;
        let caller = caller.to_string();
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        // Validate everything first so that an error changes nothing.
        let mut staged: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut failed_user_ids = Vec::new();
        let mut new_members = 0;
        for u in &user_ids {
            if room.entry(u).is_none() || staged.contains_key(u) {
                if room.entry(u).is_none() {
                    failed_user_ids.push(u.clone());
                }
                continue;
            }
            // No attributes to set changes nobody: a member without attributes must not get an
            // empty entry (it would count against the member limit and be listed).
            if attributes.is_empty() {
                continue;
            }
            let current = room.member_attributes(u);
            let mut map = current.cloned().unwrap_or_default();
            if current.is_none() {
                if room.members_with_attributes() + new_members >= max_members {
                    return Err(ErrorBody::with_message(
                        ErrorCode::MemberAttributesMembersExceeded,
                        format!(
                            "the room already has {} members with attributes",
                            room.members_with_attributes()
                        ),
                    ));
                }
                new_members += 1;
            }
            for (k, v) in &attributes {
                map.insert(k.clone(), v.clone());
            }
            if map.len() > lim.max_keys {
                return Err(ErrorBody::with_message(
                    ErrorCode::AttributeCountExceeded,
                    format!("{u} would have {} keys, over {}", map.len(), lim.max_keys),
                ));
            }
            staged.insert(u.clone(), map);
        }
        let mut members = Vec::new();
        for u in &user_ids {
            if let Some(map) = staged.remove(u) {
                members.push(member_attrs(u, &map));
                room.set_member_attributes(u, map);
            }
        }
        if !members.is_empty() {
            let room_id = room.id.to_string();
            self.flush_presence(key);
            let to = self.recipients(key);
            let event = Event::RoomMemberAttributesUpdated {
                room_id,
                members: members.clone(),
                operated_by: caller,
            };
            self.broadcast_event(key, to, &event);
        }
        Ok(Response::RoomMembersAttributesSet {
            room_id: room_id.to_string(),
            members,
            failed_user_ids,
        })
    }
}
