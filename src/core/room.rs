//! One room's state: members in join order, sequence, history, pending presence, dedup.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::attrs::{AttrLimits, Attrs, Change};
use super::history::{Bounds, History};
use super::ratelimit::TokenBucket;
use super::{ConnId, SessionId};
use crate::wire::{AttributeOp, ErrorBody, HistoryAnchor, LeaveReason, Member, RoomMessage};

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

/// A member that left the room: itself, the room keys it owned with
/// is_delete_after_owner_left (now deleted), and its message bucket, if it had one.
#[derive(Debug)]
pub(crate) struct Departure {
    pub member: Member,
    pub owned: Vec<String>,
    pub bucket: Option<TokenBucket>,
}

/// A replica's position in its room's log.
#[derive(Debug, Default)]
pub(crate) struct RoomLog {
    /// The incarnation (0 in single-node mode).
    pub epoch: u64,
    /// The position of the last entry applied (in single-node mode, a count of proposals).
    pub applied: u64,
    /// The room's clock: the latest entry time applied (cluster mode).
    pub clock_ms: u64,
    /// Records that arrived ahead of a gap, by the position they follow.
    pub held: BTreeMap<u64, (u64, Bytes)>,
    /// The position a repair was asked from, while one is outstanding.
    pub repairing: Option<u64>,
}

/// The first answer to a client_msg_id, kept for idempotent retries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ack {
    pub message_id: u64,
    pub seq: u64,
    pub timestamp_ms: u64,
}

impl Ack {
    /// The sender's answer.
    pub fn answer(&self, room_id: String, duplicate: bool) -> crate::wire::Response {
        crate::wire::Response::MessageSent {
            room_id,
            message_id: self.message_id,
            seq: self.seq,
            timestamp_ms: self.timestamp_ms,
            duplicate,
        }
    }
}

/// One sender's remembered client_msg_ids in a room, oldest first: at most
/// `Limits::dedup_max_per_member`, each for at most the dedup window.
#[derive(Debug, Default)]
struct SentIds {
    acks: HashMap<String, (u64, Ack)>,
    order: VecDeque<(u64, String)>,
}

impl SentIds {
    /// Forgets the ids remembered at or before `cutoff_ms`; returns the oldest one left's time.
    fn expire(&mut self, cutoff_ms: u64) -> Option<u64> {
        while let Some((at, _)) = self.order.front() {
            if *at > cutoff_ms {
                return Some(*at);
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.acks.remove(&id);
            }
        }
        None
    }
}

/// One room. Its identity fields never change after creation; its state changes through the
/// methods below, except `pending` and `destroy_at` (written by `Core::add_member`) and
/// `recipients` (reset when a member session changes connection, in `resume.rs`).
#[derive(Debug)]
pub(crate) struct Room {
    pub key: RoomKey,
    pub id: Arc<str>,
    pub name: String,
    pub created_at_ms: u64,
    pub destroy_delay_ms: u64,
    /// The user whose CreateRoom or SwitchRoom made it (none for the admin API's rooms): its
    /// empty rooms awaiting a delayed destroy count against it (`delayed_rooms_per_user`).
    pub creator: Option<Arc<str>>,
    attributes: Attrs,
    /// user id -> that member's attributes (only members that have some).
    member_attrs: HashMap<Arc<str>, BTreeMap<String, String>>,
    /// join position -> member; the position is the paging cursor.
    members: BTreeMap<u64, MemberEntry>,
    /// user id -> join position.
    positions: HashMap<Arc<str>, u64>,
    next_position: u64,
    pub last_seq: u64,
    history: History,
    /// Changes since the last presence flush, in order.
    pending: Vec<PresenceChange>,
    /// Deadline of the armed presence flush timer, if one is armed.
    flush_at: Option<u64>,
    /// Last count announced in large-room mode.
    announced_count: u32,
    /// Monotonic deadline of a delayed destroy, when the room is empty and waiting.
    destroy_at: Option<u64>,
    /// Each member's recent client_msg_ids and their first answers (members only: a member's
    /// go when it leaves).
    dedup: HashMap<Arc<str>, SentIds>,
    /// Deadline of the armed dedup sweep timer, while some client_msg_id is remembered.
    dedup_sweep_at: Option<u64>,
    rate: HashMap<Arc<str>, TokenBucket>,
    /// Current connections of every member session; rebuilt lazily after membership changes.
    recipients: Option<Arc<[ConnId]>>,
    /// This replica's position in the room's log.
    pub log: RoomLog,
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
            creator: None,
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
            dedup_sweep_at: None,
            rate: HashMap::new(),
            recipients: None,
            log: RoomLog::default(),
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

    /// Removes a session. When it was the user's last session here the member leaves, with its
    /// member attributes and the room keys it owned with is_delete_after_owner_left; its
    /// message bucket is handed back for the caller to keep while it refills.
    pub fn remove_session(&mut self, user: &str, session: SessionId) -> Option<Departure> {
        self.recipients = None;
        let pos = *self.positions.get(user)?;
        let entry = self.members.get_mut(&pos)?;
        entry.sessions.retain(|s| *s != session);
        if !entry.sessions.is_empty() {
            return None;
        }
        self.positions.remove(user);
        let bucket = self.rate.remove(user);
        // A non-member cannot send, so cannot retry: its client_msg_ids are of no more use.
        self.dedup.remove(user);
        let member = self.members.remove(&pos)?.member;
        self.member_attrs.remove(user);
        Some(Departure { member, owned: self.attributes.remove_owned_by(user), bucket })
    }

    /// A page of members in join order from position `start`, and the next page's flag (empty
    /// after the last page).
    pub fn members_page(&self, start: u64, count: u32) -> (Vec<Member>, String) {
        let mut iter = self.members.range(start..);
        let members = iter.by_ref().take(count as usize).map(|(_, e)| e.member.clone()).collect();
        let next_flag = iter.next().map(|(pos, _)| pos.to_string()).unwrap_or_default();
        (members, next_flag)
    }

    /// The members in join order.
    pub fn entries(&self) -> impl Iterator<Item = &MemberEntry> {
        self.members.values()
    }

    /// The members from join position `start` on, with their positions.
    pub fn entries_from(&self, start: u64) -> impl Iterator<Item = (u64, &MemberEntry)> {
        self.members.range(start..).map(|(pos, e)| (*pos, e))
    }

    /// Every member session in the room.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.members.values().flat_map(|e| e.sessions.iter().copied())
    }

    /// Whether the room has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The room's attributes.
    pub fn attributes(&self) -> &Attrs {
        &self.attributes
    }

    /// Applies attribute steps for `caller` (see [`Attrs::apply`]); the owners still present
    /// are this room's members.
    pub fn apply_attributes(
        &mut self,
        ops: &[AttributeOp],
        caller: &Arc<str>,
        limits: AttrLimits,
        atomic: bool,
    ) -> Result<Change, ErrorBody> {
        let positions = &self.positions;
        self.attributes.apply(ops, caller, |u| positions.contains_key(u), limits, atomic)
    }

    /// A member's attributes, if it has some.
    pub fn member_attributes(&self, user: &str) -> Option<&BTreeMap<String, String>> {
        self.member_attrs.get(user)
    }

    /// Number of members that have attributes.
    pub fn members_with_attributes(&self) -> usize {
        self.member_attrs.len()
    }

    /// Replaces a member's attributes.
    pub fn set_member_attributes(&mut self, user: &str, attributes: BTreeMap<String, String>) {
        self.member_attrs.insert(Arc::from(user), attributes);
    }

    /// Queues a join or leave for the next presence flush.
    pub fn queue_presence(&mut self, change: PresenceChange) {
        self.pending.push(change);
    }

    /// Drops the presence changes not yet announced (nobody is left to hear them).
    pub fn clear_presence(&mut self) {
        self.pending.clear();
    }

    /// Takes the presence changes to announce now.
    pub fn take_presence(&mut self) -> Vec<PresenceChange> {
        std::mem::take(&mut self.pending)
    }

    /// Whether presence changes wait for a flush.
    pub fn has_pending_presence(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Deadline of the armed presence flush, if one is armed.
    pub fn flush_at(&self) -> Option<u64> {
        self.flush_at
    }

    /// Arms the presence flush for `at` unless one is armed; true when this armed it.
    pub fn arm_flush(&mut self, at: u64) -> bool {
        if self.flush_at.is_some() {
            return false;
        }
        self.flush_at = Some(at);
        true
    }

    /// Disarms the presence flush; returns the deadline it had.
    pub fn disarm_flush(&mut self) -> Option<u64> {
        self.flush_at.take()
    }

    /// Records the member count as announced; returns it when it differs from the last one.
    pub fn update_announced_count(&mut self) -> Option<u32> {
        let count = self.member_count() as u32;
        let changed = count != self.announced_count;
        self.announced_count = count;
        changed.then_some(count)
    }

    /// The room is empty and waits for its delayed destroy at `at` (monotonic ms).
    pub fn schedule_destroy(&mut self, at: u64) {
        self.destroy_at = Some(at);
    }

    /// Cancels a delayed destroy (a join during the delay); the stale timer is then ignored.
    pub fn cancel_destroy(&mut self) {
        self.destroy_at = None;
    }

    /// The monotonic deadline of the delayed destroy, while one is scheduled.
    pub fn destroy_deadline(&self) -> Option<u64> {
        self.destroy_at
    }

    /// Forgets the cached recipient list (a member's connection changed).
    pub fn forget_recipients(&mut self) {
        self.recipients = None;
    }

    /// Whether the room is empty and its delayed destroy is due at `now_ms`.
    pub fn destroy_due(&self, now_ms: u64) -> bool {
        self.members.is_empty() && self.destroy_at.is_some_and(|d| d <= now_ms)
    }

    /// The cached connections of every member session, if still valid.
    pub fn cached_recipients(&self) -> Option<Arc<[ConnId]>> {
        self.recipients.clone()
    }

    /// Caches the connections of every member session until membership changes.
    pub fn cache_recipients(&mut self, list: Arc<[ConnId]>) {
        self.recipients = Some(list);
    }

    /// The room's recent messages.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Drops messages older than `max_age_ms` and answers a history page.
    pub fn history_page(
        &mut self,
        now_ms: u64,
        max_age_ms: u64,
        anchor: HistoryAnchor,
        count: usize,
        max_bytes: usize,
    ) -> (Vec<RoomMessage>, bool) {
        self.history.expire(now_ms, max_age_ms);
        self.history.page(anchor, count, max_bytes)
    }

    /// The first answer to a client_msg_id of `user` still in the dedup window.
    pub fn duplicate(
        &self,
        user: &Arc<str>,
        client_msg_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Option<Ack> {
        let (at, ack) = self.dedup.get(user)?.acks.get(client_msg_id)?;
        (now_ms.saturating_sub(*at) < window_ms).then_some(*ack)
    }

    /// Takes a token from `user`'s message bucket; false when it is empty.
    pub fn take_message_token(
        &mut self,
        user: &Arc<str>,
        rate: u32,
        burst: u32,
        now_ms: u64,
    ) -> bool {
        let bucket =
            self.rate.entry(user.clone()).or_insert_with(|| TokenBucket::new(burst, now_ms));
        bucket.try_take(rate, burst, now_ms)
    }

    /// Gives a member that rejoined the message bucket it left with.
    pub fn restore_message_bucket(&mut self, user: &Arc<str>, bucket: TokenBucket) {
        self.rate.insert(user.clone(), bucket);
    }

    /// Takes every member's message bucket (the room is going away).
    pub fn take_message_buckets(&mut self) -> Vec<(Arc<str>, TokenBucket)> {
        self.rate.drain().collect()
    }

    /// The seq the next message gets, taken.
    pub fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Keeps a sent message, whose event frame is `frame_len` bytes, in history (bounded by
    /// count, bytes and age).
    pub fn record(&mut self, now_ms: u64, msg: RoomMessage, frame_len: usize, bounds: Bounds) {
        self.history.push(now_ms, msg, frame_len, bounds);
    }

    /// Drops the oldest history stored before `cutoff_ms` until at most `keep_bytes` are held;
    /// true when the cutoff stopped it.
    pub fn drop_history_until(&mut self, keep_bytes: usize, cutoff_ms: u64) -> bool {
        self.history.drop_oldest_until(keep_bytes, cutoff_ms)
    }

    /// Remembers the answer to a client_msg_id for idempotent retries, forgetting the sender's
    /// ids that left the window and, past `max_per_member`, its oldest. Returns when the room's
    /// dedup sweep is due if none is armed yet (the caller arms the timer).
    pub fn remember_ack(
        &mut self,
        now_ms: u64,
        window_ms: u64,
        max_per_member: usize,
        user: Arc<str>,
        client_msg_id: String,
        ack: Ack,
    ) -> Option<u64> {
        let sent = self.dedup.entry(user).or_default();
        sent.expire(now_ms.saturating_sub(window_ms));
        while sent.order.len() >= max_per_member.max(1) {
            if let Some((_, id)) = sent.order.pop_front() {
                sent.acks.remove(&id);
            }
        }
        if sent.acks.insert(client_msg_id.clone(), (now_ms, ack)).is_none() {
            sent.order.push_back((now_ms, client_msg_id));
        }
        if self.dedup_sweep_at.is_some() {
            return None;
        }
        let at = now_ms + window_ms;
        self.dedup_sweep_at = Some(at);
        Some(at)
    }

    /// The dedup sweep timer fired: forgets every id out of the window and returns when the next
    /// sweep is due (none when nothing is left). Sweeps come at most every tenth of the window,
    /// so an id is kept between one and 1.1 windows.
    pub fn sweep_dedup(&mut self, now_ms: u64, window_ms: u64) -> Option<u64> {
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut oldest = None::<u64>;
        self.dedup.retain(|_, sent| match sent.expire(cutoff) {
            Some(at) => {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
                true
            }
            None => false,
        });
        self.dedup_sweep_at = oldest.map(|at| (at + window_ms).max(now_ms + window_ms / 10 + 1));
        self.dedup_sweep_at
    }

    /// Moves the dedup sweep's deadline (to the timer's clock, in cluster mode).
    pub fn set_dedup_sweep_at(&mut self, at: Option<u64>) {
        self.dedup_sweep_at = at;
    }

    /// Deadline of the armed dedup sweep timer.
    pub fn dedup_sweep_at(&self) -> Option<u64> {
        self.dedup_sweep_at
    }

    /// How many client_msg_ids the room remembers.
    pub fn remembered_ids(&self) -> usize {
        self.dedup.values().map(|sent| sent.order.len()).sum()
    }

    /// Checks that the room's own indexes agree: positions and member entries, the positions
    /// given out, the history's seqs, and no presence pending in an empty room. The first
    /// disagreement found is returned as text.
    pub fn check_indexes(&self) -> Result<(), String> {
        let id = &self.id;
        if self.positions.len() != self.members.len() {
            return Err(format!("room {id}: positions and members differ in size"));
        }
        for (user, pos) in &self.positions {
            let e = self.members.get(pos).ok_or(format!("room {id}: {user} has no entry"))?;
            if e.member.user_id != **user {
                return Err(format!("room {id}: position of {user} holds {}", e.member.user_id));
            }
            if *pos >= self.next_position {
                return Err(format!("room {id}: position {pos} not yet given out"));
            }
        }
        if let Some(user) = self.rate.keys().find(|u| !self.positions.contains_key(*u)) {
            return Err(format!("room {id}: {user} has a message bucket but is not a member"));
        }
        if self.members.is_empty() && !self.pending.is_empty() {
            return Err(format!("empty room {id} has presence changes pending"));
        }
        let mut expect = self.history.first_seq();
        for (m, _) in self.history.after(0) {
            if Some(m.seq) != expect || m.seq > self.last_seq {
                return Err(format!("room {id}: history seq {} out of order", m.seq));
            }
            expect = Some(m.seq + 1);
        }
        Ok(())
    }
}
