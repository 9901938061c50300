//! One room's state: members in join order, sequence, history, pending presence, dedup.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::attributes::Attrs;
use super::history::History;
use super::ratelimit::TokenBucket;
use super::{ConnId, SessionId};
use crate::wire::{LeaveReason, Member};

/// A room's identity inside one server run (never reused, unlike room ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey(pub u64);

/// A member of a room: a user with one or more sessions in it.
#[derive(Debug)]
pub(crate) struct MemberEntry {
    pub member: Member,
    pub sessions: Vec<SessionId>,
}

/// A join or leave not yet announced.
#[derive(Debug, Clone)]
pub(crate) enum PresenceChange {
    Joined(Member),
    Left(Member, LeaveReason),
}

/// The first answer to a client_msg_id, kept for idempotent retries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ack {
    pub message_id: u64,
    pub seq: u64,
    pub timestamp_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Room {
    pub key: RoomKey,
    pub id: Arc<str>,
    pub name: String,
    pub created_at_ms: u64,
    pub destroy_delay_ms: u64,
    pub attributes: Attrs,
    /// user id -> that member's attributes (only members that have some).
    pub member_attrs: HashMap<Arc<str>, BTreeMap<String, String>>,
    /// join position -> member; the position is the paging cursor.
    pub members: BTreeMap<u64, MemberEntry>,
    /// user id -> join position.
    pub positions: HashMap<Arc<str>, u64>,
    pub next_position: u64,
    pub last_seq: u64,
    pub history: History,
    /// Changes since the last presence flush, in order.
    pub pending: Vec<PresenceChange>,
    /// Deadline of the armed presence flush timer, if one is armed.
    pub flush_at: Option<u64>,
    /// Last count announced in large-room mode.
    pub announced_count: u32,
    /// Monotonic deadline of a delayed destroy, when the room is empty and waiting.
    pub destroy_at: Option<u64>,
    /// (user id, client_msg_id) -> first ack; with an expiry queue in insertion order.
    pub dedup: HashMap<(Arc<str>, String), Ack>,
    pub dedup_order: VecDeque<(u64, (Arc<str>, String))>,
    pub rate: HashMap<Arc<str>, TokenBucket>,
    /// Current connections of every member session; rebuilt lazily after membership changes.
    pub recipients: Option<Arc<[ConnId]>>,
}

impl Room {
    pub fn new(
        key: RoomKey,
        id: Arc<str>,
        name: String,
        now_unix_ms: u64,
        destroy_delay_ms: u64,
        attributes: Attrs,
    ) -> Room {
        Room {
            key,
            id,
            name,
            created_at_ms: now_unix_ms,
            destroy_delay_ms,
            attributes,
            member_attrs: HashMap::new(),
            members: BTreeMap::new(),
            positions: HashMap::new(),
            next_position: 0,
            last_seq: 0,
            history: History::default(),
            pending: Vec::new(),
            flush_at: None,
            announced_count: 0,
            destroy_at: None,
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
            rate: HashMap::new(),
            recipients: None,
        }
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn entry(&self, user_id: &str) -> Option<&MemberEntry> {
        self.positions.get(user_id).and_then(|p| self.members.get(p))
    }

    pub fn has_session(&self, user_id: &str, session: SessionId) -> bool {
        self.entry(user_id).is_some_and(|e| e.sessions.contains(&session))
    }

    /// Adds a session; returns true when the user is new to the room.
    pub fn add_session(&mut self, user: &Arc<str>, user_name: &str, session: SessionId) -> bool {
        self.recipients = None;
        if let Some(pos) = self.positions.get(user) {
            if let Some(e) = self.members.get_mut(pos) {
                if !e.sessions.contains(&session) {
                    e.sessions.push(session);
                }
                return false;
            }
        }
        let pos = self.next_position;
        self.next_position += 1;
        self.positions.insert(user.clone(), pos);
        let member = Member { user_id: user.to_string(), user_name: user_name.to_string() };
        self.members.insert(pos, MemberEntry { member, sessions: vec![session] });
        true
    }

    /// Removes a session; returns the member when it was the user's last session here.
    pub fn remove_session(&mut self, user: &str, session: SessionId) -> Option<Member> {
        self.recipients = None;
        let pos = *self.positions.get(user)?;
        let entry = self.members.get_mut(&pos)?;
        entry.sessions.retain(|s| *s != session);
        if !entry.sessions.is_empty() {
            return None;
        }
        self.positions.remove(user);
        self.rate.remove(user);
        self.members.remove(&pos).map(|e| e.member)
    }

    /// A page of members in join order from position `start`, and the next page's flag (empty
    /// after the last page).
    pub fn members_page(&self, start: u64, count: u32) -> (Vec<Member>, String) {
        let mut iter = self.members.range(start..);
        let members = iter.by_ref().take(count as usize).map(|(_, e)| e.member.clone()).collect();
        let next_flag = iter.next().map(|(pos, _)| pos.to_string()).unwrap_or_default();
        (members, next_flag)
    }

    /// Forgets client_msg_ids older than the window.
    pub fn expire_dedup(&mut self, now_ms: u64, window_ms: u64) {
        while let Some((at, _)) = self.dedup_order.front() {
            if now_ms.saturating_sub(*at) < window_ms {
                break;
            }
            if let Some((_, key)) = self.dedup_order.pop_front() {
                self.dedup.remove(&key);
            }
        }
    }
}
