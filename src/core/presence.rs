//! Presence: joins and leaves batched per room and announced on a timer, before any message or
//! attribute change that follows them; rooms over the threshold get member counts instead.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::room::{PresenceChange, RoomKey};
use super::{ConnId, Core, Now, Output, Timer};
use crate::wire::{encode_frame, Event, Priority};

impl Core {
    /// Arms the room's presence flush one batch window from now, unless one is armed.
    pub(super) fn arm_presence_flush(&mut self, now: Now, key: RoomKey) {
        let Some(room) = self.rooms.get_mut(&key) else { return };
        let at = now.mono_ms + self.limits.presence_batch_ms;
        if room.arm_flush(at) {
            self.timers.insert((at, Timer::PresenceFlush(key)));
        }
    }

    /// Announces the room's pending joins and leaves. Members present before the batch get the
    /// whole batch; a member who joined during the batch gets only what happened after it joined.
    pub(super) fn flush_presence(&mut self, key: RoomKey) {
        let to = self.recipients(key);
        let Some(room) = self.rooms.get_mut(&key) else { return };
        // Disarm the timer too: left armed after an early flush (a message), it would cut the
        // next batch's window short.
        if let Some(at) = room.disarm_flush() {
            self.timers.remove(&(at, Timer::PresenceFlush(key)));
        }
        if !room.has_pending_presence() {
            return;
        }
        let pending = room.take_presence();
        if room.member_count() > self.limits.presence_count_threshold {
            if let Some(count) = room.update_announced_count() {
                let event = Event::MemberCountUpdated { room_id: room.id.to_string(), count };
                self.broadcast_event(key, to, &event);
            }
            return;
        }
        room.update_announced_count();
        // For each joiner in the batch, the index of its latest join.
        let mut joined_at: HashMap<&str, usize> = HashMap::new();
        for (i, change) in pending.iter().enumerate() {
            if let PresenceChange::Joined(m) = change {
                joined_at.insert(m.user_id.as_str(), i);
            }
        }
        let room_id = room.id.to_string();
        let max = self.limits.presence_batch_max.max(1);
        // Members from before the batch: one shared encoding of the whole batch.
        let before: Vec<ConnId> = room
            .entries()
            .filter(|e| !joined_at.contains_key(e.member.user_id.as_str()))
            .flat_map(|e| e.sessions.iter())
            .filter_map(|sid| self.sessions.get(sid).and_then(|s| s.conn))
            .collect();
        let mut outputs = Vec::new();
        let frames = presence_frames(&room_id, &pending, max);
        if !before.is_empty() {
            let before: Arc<[ConnId]> = if before.len() == to.len() { to } else { before.into() };
            for frame in frames {
                outputs.push(Output::Broadcast {
                    to: before.clone(),
                    except: None,
                    room: key,
                    frame,
                    priority: Priority::High,
                    message: false,
                });
            }
        }
        // Joiners of this batch that are still members: what happened after each one joined.
        for entry in room.entries() {
            let Some(&i) = joined_at.get(entry.member.user_id.as_str()) else { continue };
            let after = &pending[i + 1..];
            if after.is_empty() {
                continue;
            }
            let frames = presence_frames(&room_id, after, max);
            for sid in &entry.sessions {
                if let Some(conn) = self.sessions.get(sid).and_then(|s| s.conn) {
                    for frame in &frames {
                        outputs.push(Output::Push { conn, room: Some(key), frame: frame.clone() });
                    }
                }
            }
        }
        self.outputs.extend(outputs);
    }
}

/// Encodes a run of presence changes as events: consecutive changes of one kind (and reason)
/// share an event, at most `max` members each.
fn presence_frames(room_id: &str, changes: &[PresenceChange], max: usize) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut i = 0;
    while i < changes.len() {
        let mut members = Vec::new();
        match &changes[i] {
            PresenceChange::Joined(_) => {
                while let Some(PresenceChange::Joined(m)) = changes.get(i) {
                    if members.len() == max {
                        break;
                    }
                    members.push(m.clone());
                    i += 1;
                }
                frames.push(encode_frame(&Event::MembersJoined {
                    room_id: room_id.to_string(),
                    members,
                }));
            }
            PresenceChange::Left(_, reason) => {
                let reason = *reason;
                while let Some(PresenceChange::Left(m, r)) = changes.get(i) {
                    if members.len() == max || *r != reason {
                        break;
                    }
                    members.push(m.clone());
                    i += 1;
                }
                frames.push(encode_frame(&Event::MembersLeft {
                    room_id: room_id.to_string(),
                    members,
                    reason,
                }));
            }
        }
    }
    frames
}
