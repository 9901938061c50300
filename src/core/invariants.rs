//! A consistency check of the core's internal indexes, for the fuzz targets and tests: every
//! map that mirrors another agrees with it (the client addresses' are checked in `oplimit.rs`,
//! which owns them). Not called by the server.

use std::collections::HashSet;

use super::{ConnId, Core, Timer};
use crate::wire::RoomMessage;

/// A replica's room state as every replica must agree on it: for comparing replicas in tests.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    /// The incarnation.
    pub epoch: u64,
    /// The last log position applied.
    pub applied: u64,
    /// Members in join order: user id and sessions.
    pub members: Vec<(String, Vec<u64>)>,
    /// The last seq given out.
    pub last_seq: u64,
    /// The messages held.
    pub history: Vec<RoomMessage>,
    /// The room's attributes.
    pub attributes: Vec<(String, String)>,
    /// Each member's attributes, in join order (members that have some).
    pub member_attributes: Vec<(String, Vec<(String, String)>)>,
}

impl Core {
    /// Checks that the core's indexes agree with each other; the first disagreement found is
    /// returned as text. Cost is linear in sessions, rooms and members.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_sessions()?;
        self.check_session_timers()?;
        self.check_rooms()?;
        self.check_retention()?;
        self.check_origins()?;
        self.check_resting()
    }

    /// The replicated state of a room, if this core holds it.
    #[doc(hidden)]
    pub fn replica(&self, room_id: &str) -> Option<ReplicaState> {
        let room = self.room_ids.get(room_id).and_then(|k| self.rooms.get(k))?;
        Some(ReplicaState {
            epoch: room.log.epoch,
            applied: room.log.applied,
            members: room
                .entries()
                .map(|e| (e.member.user_id.clone(), e.sessions.clone()))
                .collect(),
            last_seq: room.last_seq,
            history: room.history().after(0).map(|(m, _)| m.clone()).collect(),
            attributes: room.attributes().snapshot(),
            member_attributes: room
                .entries()
                .filter_map(|e| {
                    let map = room.member_attributes(&e.member.user_id)?;
                    let pairs = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    Some((e.member.user_id.clone(), pairs))
                })
                .collect(),
        })
    }

    /// The ids of the rooms this core holds, sorted.
    #[doc(hidden)]
    pub fn room_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.room_ids.keys().map(|id| id.to_string()).collect();
        ids.sort();
        ids
    }

    /// How many client_msg_ids the rooms remember, for tests of their bounds.
    #[doc(hidden)]
    pub fn remembered_client_msg_ids(&self) -> usize {
        self.rooms.values().map(|r| r.remembered_ids()).sum()
    }

    /// How many timers are armed, for tests of their bounds.
    #[doc(hidden)]
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Every offline and token timer belongs to a live session, for the state it was armed for:
    /// a session holds at most three timers, whatever its renewals and resumptions.
    fn check_session_timers(&self) -> Result<(), String> {
        for (at, timer) in &self.timers {
            let live = match *timer {
                Timer::Offline(sid) => {
                    self.sessions.get(&sid).is_some_and(|s| s.offline_until == Some(*at))
                }
                Timer::TokenWarning(sid, exp) | Timer::TokenExpiry(sid, exp) => {
                    self.sessions.get(&sid).is_some_and(|s| {
                        s.token_exp_s == exp && s.token_timers.contains(&(*at, *timer))
                    })
                }
                _ => true,
            };
            if !live {
                return Err(format!("timer {timer:?} at {at} outlived its session state"));
            }
        }
        Ok(())
    }

    fn check_sessions(&self) -> Result<(), String> {
        for (conn, sid) in &self.by_conn {
            let s = self.sessions.get(sid).ok_or(format!("conn {conn} maps to gone session"))?;
            if s.conn != Some(*conn) {
                return Err(format!("conn {conn} maps to session {sid} on {:?}", s.conn));
            }
        }
        for (user, sids) in &self.by_user {
            if sids.is_empty() {
                return Err(format!("user {user} has an empty session list"));
            }
            for sid in sids {
                let s = self.sessions.get(sid).ok_or(format!("user {user}: gone session {sid}"))?;
                if s.user_id != *user {
                    return Err(format!("session {sid} of {} listed under {user}", s.user_id));
                }
            }
        }
        for (sid, s) in &self.sessions {
            if let Some(conn) = s.conn {
                if self.by_conn.get(&conn) != Some(sid) {
                    return Err(format!("session {sid} on conn {conn} not indexed by it"));
                }
                if s.offline_until.is_some() {
                    return Err(format!("session {sid} is connected and offline"));
                }
            } else if s.offline_until.is_none() {
                return Err(format!("session {sid} has no connection and no grace"));
            }
            if !self.by_user.get(&s.user_id).is_some_and(|l| l.contains(sid)) {
                return Err(format!("session {sid} missing from its user's list"));
            }
            let mut seen = HashSet::new();
            for key in &s.rooms {
                if !seen.insert(*key) {
                    return Err(format!("session {sid} lists room {key:?} twice"));
                }
                let room = self.rooms.get(key).ok_or(format!("session {sid}: gone room"))?;
                if !room.has_session(&s.user_id, *sid) {
                    return Err(format!("session {sid} lists {} but is not a member", room.id));
                }
            }
            if s.rooms.len() > self.limits.rooms_per_user {
                return Err(format!("session {sid} is in {} rooms", s.rooms.len()));
            }
        }
        Ok(())
    }

    fn check_rooms(&self) -> Result<(), String> {
        if self.room_ids.len() != self.rooms.len() {
            return Err(format!("{} room ids for {} rooms", self.room_ids.len(), self.rooms.len()));
        }
        for (id, key) in &self.room_ids {
            let room = self.rooms.get(key).ok_or(format!("room id {id} maps to gone room"))?;
            if room.id != *id || room.key != *key {
                return Err(format!("room id {id} maps to room {}", room.id));
            }
        }
        for (key, room) in &self.rooms {
            let id = &room.id;
            room.check_indexes()?;
            for e in room.entries() {
                if e.sessions.is_empty() {
                    return Err(format!("room {id}: {} has no session", e.member.user_id));
                }
                for sid in &e.sessions {
                    // In cluster mode a member session may be another node's, or this node's
                    // with its leave in flight (it dropped the room at the proposal).
                    let s = match self.sessions.get(sid) {
                        Some(s) => s,
                        None if self.external().is_some() => continue,
                        None => return Err(format!("room {id}: gone session")),
                    };
                    let listed = s.rooms.contains(key) || self.external().is_some();
                    if *s.user_id != *e.member.user_id || !listed {
                        return Err(format!("room {id}: session {sid} does not list it"));
                    }
                }
            }
            if room.member_count() > self.limits.members_per_room {
                return Err(format!("room {id} holds {} members", room.member_count()));
            }
            if room.is_empty() && room.destroy_deadline().is_none() {
                return Err(format!("empty room {id} is neither destroyed nor waiting"));
            }
            if let Some(at) = room.destroy_deadline() {
                if !self.timers.contains(&(at, Timer::Destroy(*key))) {
                    return Err(format!("room {id}: destroy at {at} has no timer"));
                }
            }
            if let Some(at) = room.dedup_sweep_at() {
                if !self.timers.contains(&(at, Timer::DedupSweep(*key))) {
                    return Err(format!("room {id}: dedup sweep at {at} has no timer"));
                }
            } else if room.remembered_ids() > 0 {
                return Err(format!("room {id}: client_msg_ids remembered, no sweep armed"));
            }
            match room.flush_at() {
                Some(at) if !self.timers.contains(&(at, Timer::PresenceFlush(*key))) => {
                    return Err(format!("room {id}: presence flush at {at} has no timer"));
                }
                None if room.has_pending_presence() => {
                    return Err(format!("room {id}: presence changes pending, no flush armed"));
                }
                _ => {}
            }
            if let Some(cached) = &room.cached_recipients() {
                let mut cached: Vec<ConnId> = cached.to_vec();
                let mut fresh: Vec<ConnId> = room
                    .sessions()
                    .filter_map(|sid| self.sessions.get(&sid).and_then(|s| s.conn))
                    .collect();
                cached.sort_unstable();
                fresh.sort_unstable();
                if cached != fresh {
                    return Err(format!("room {id}: recipients {cached:?}, members on {fresh:?}"));
                }
            }
            if room.history().len() > self.limits.history_max_messages {
                return Err(format!("room {id}: {} messages in history", room.history().len()));
            }
        }
        Ok(())
    }
}
