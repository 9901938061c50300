//! What rooms nobody is using may keep: the server-wide history budget
//! (`history_max_total_bytes`) and the empty rooms a user's requests left awaiting a delayed
//! destroy (`delayed_rooms_per_user`).
//!
//! Over the history budget, the oldest history goes first: that of empty rooms, then that of
//! rooms with members, down to nine tenths of the budget. A message stored within twice the
//! offline grace in a room with members is never dropped (a member whose connection was lost may
//! need it to resume), so only those can keep the total over the budget. An eviction sorts the
//! rooms that hold history, so it runs only when the total has grown by a tenth of the budget
//! since the last one (it leaves nine tenths, or when it was stopped by protected messages,
//! waits for another tenth): its cost is amortised over that many bytes of messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Core, Now, RoomKey};

/// Forgets one empty room of `creator`'s awaiting its destroy at `at` (the room was joined
/// again or destroyed).
pub(super) fn forget_delayed(
    delayed: &mut HashMap<Arc<str>, BTreeSet<(u64, RoomKey)>>,
    creator: &Arc<str>,
    at: u64,
    key: RoomKey,
) {
    if let Some(rooms) = delayed.get_mut(creator) {
        rooms.remove(&(at, key));
        if rooms.is_empty() {
            delayed.remove(creator);
        }
    }
}

impl Core {
    /// A room `creator` made is now empty and awaits its destroy at `at`. Past
    /// `delayed_rooms_per_user` such rooms, the one of them due first is destroyed at once.
    pub(super) fn count_delayed(&mut self, creator: Arc<str>, at: u64, key: RoomKey) {
        let max = self.limits.delayed_rooms_per_user;
        let rooms = self.delayed_by_creator.entry(creator).or_default();
        rooms.insert((at, key));
        let mut over = Vec::new();
        while rooms.len() > max {
            match rooms.pop_first() {
                Some((_, first)) => over.push(first),
                None => break,
            }
        }
        for first in over {
            self.destroy(first);
        }
    }

    /// A room's history went from `held` to `now_held` bytes: the total follows, and an eviction
    /// runs when it is due.
    pub(super) fn history_changed(&mut self, now: Now, held: usize, now_held: usize) {
        self.history_bytes = self.history_bytes + now_held - held;
        if self.history_bytes > self.limits.history_max_total_bytes
            && self.history_bytes >= self.next_eviction_at
        {
            self.evict_history(now);
        }
    }

    /// Drops the oldest history until the total is nine tenths of the budget, or only messages
    /// a member may still need to resume are left.
    fn evict_history(&mut self, now: Now) {
        let budget = self.limits.history_max_total_bytes;
        let target = budget / 10 * 9;
        let protect_ms = self.limits.offline_grace_s.saturating_mul(2000);
        let protected_from = self.history_clock(now).saturating_sub(protect_ms);
        // Empty rooms first, then by their oldest message.
        let mut order: Vec<(bool, u64, RoomKey)> = self
            .rooms
            .values()
            .filter_map(|r| Some((!r.is_empty(), r.history().oldest_at()?, r.key)))
            .collect();
        order.sort_unstable();
        for (has_members, _, key) in order {
            if self.history_bytes <= target {
                break;
            }
            let Some(room) = self.rooms.get_mut(&key) else { continue };
            let held = room.history().bytes();
            let keep = held.saturating_sub(self.history_bytes - target);
            let cutoff = if has_members { protected_from } else { u64::MAX };
            room.drop_history_until(keep, cutoff);
            self.history_bytes -= held - room.history().bytes();
        }
        // Stopped by what members may need: try again only after another tenth of the budget.
        self.next_eviction_at =
            if self.history_bytes > target { self.history_bytes + budget / 10 } else { 0 };
    }

    /// Bytes held by every room's history.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// Checks the retention indexes: the history total is the rooms' sum and no room is over
    /// its byte bound but by its newest message; each creator's delayed rooms are exactly its
    /// empty rooms awaiting a destroy, at most `delayed_rooms_per_user`.
    pub(super) fn check_retention(&self) -> Result<(), String> {
        let sum: usize = self.rooms.values().map(|r| r.history().bytes()).sum();
        if sum != self.history_bytes {
            return Err(format!("history total {} but the rooms hold {sum}", self.history_bytes));
        }
        let bound = self.limits.history_max_bytes;
        for room in self.rooms.values() {
            let h = room.history();
            if h.bytes() > bound && h.len() > 1 {
                return Err(format!("room {}: {} history bytes", room.id, h.bytes()));
            }
        }
        let mut counted = 0;
        for (creator, rooms) in &self.delayed_by_creator {
            if rooms.is_empty() || rooms.len() > self.limits.delayed_rooms_per_user {
                return Err(format!("{creator} has {} delayed rooms", rooms.len()));
            }
            for (at, key) in rooms {
                let room = self.rooms.get(key).ok_or(format!("{creator}: a gone delayed room"))?;
                let listed = room.is_empty()
                    && room.destroy_deadline() == Some(*at)
                    && room.creator.as_ref() == Some(creator);
                if !listed {
                    return Err(format!("room {} listed as {creator}'s delayed room", room.id));
                }
            }
            counted += rooms.len();
        }
        let waiting = self
            .rooms
            .values()
            .filter(|r| r.creator.is_some() && r.is_empty() && r.destroy_deadline().is_some())
            .count();
        if waiting != counted && self.external().is_none() {
            return Err(format!("{waiting} delayed rooms with a creator, {counted} counted"));
        }
        Ok(())
    }
}
