//! Room messages: sending (size and client_msg_id checks, idempotent retries, the per-user
//! rate limit, the seq, history and one broadcast) and the history query.

use std::sync::Arc;

use super::bus::{not_carried_yet, Answer, Applied, Waiter};
use super::limits::over_limit;
use super::log::Op;
use super::room::{Ack, RoomKey};
use super::{err, ConnId, Core, Now, OpResult, Output, SessionId, Timer, MAX_QUERY_COUNT};
use crate::wire::{
    encode_frame, ErrorBody, ErrorCode, Event, HistoryAnchor, MessageBody, Priority, Response,
    RoomMessage,
};

/// Who posts a message and how it is treated.
pub(super) struct Post {
    /// The sender's user id (a member's, or [`SYSTEM_SENDER`]).
    pub sender: Arc<str>,
    /// The sending connection, which gets no copy.
    pub except: Option<ConnId>,
    /// Whether the per-user rate limit applies (not to the operator).
    pub rate_limited: bool,
}

impl Core {
    /// A member's message: answered now (an error, a duplicate, or in single-node mode the
    /// ack), or `None` when it waits for its log entry (cluster mode).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_message(
        &mut self,
        now: Now,
        sid: SessionId,
        (conn, request_id): (ConnId, u32),
        room_id: &str,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Result<Option<Response>, ErrorBody> {
        let key = self.member_room(sid, room_id)?.key;
        let user = self.session(sid)?.user_id.clone();
        let post = Post { sender: user, except: Some(conn), rate_limited: true };
        let waiter = Some((sid, conn, request_id));
        self.post_message(now, key, post, waiter, body, priority, client_msg_id)
    }

    /// Proposes a message to a room whose sender the caller has checked (a member, with its
    /// session and request, or the admin API): the size and client_msg_id checks, the
    /// idempotent-retry lookup in the replica, the rate limit when asked; then, in single-node
    /// mode, the apply at once (the seq, history and one broadcast to every member connection
    /// but `except`), or in cluster mode the log entry, answered when it is applied.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn post_message(
        &mut self,
        now: Now,
        key: RoomKey,
        post: Post,
        waiter: Option<(SessionId, ConnId, u32)>,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Result<Option<Response>, ErrorBody> {
        if body.len() > self.limits.max_message_bytes {
            return Err(ErrorBody::with_message(
                ErrorCode::MessageTooLarge,
                format!("body of {} bytes is over {}", body.len(), self.limits.max_message_bytes),
            ));
        }
        if let Some(id) = &client_msg_id {
            if id.is_empty() || id.len() > self.limits.max_client_msg_id_bytes {
                let max = self.limits.max_client_msg_id_bytes;
                return Err(over_limit(ErrorCode::InvalidClientMsgId, format!("1-{max} bytes")));
            }
        }
        let clock = self.room_clock(now, key);
        let local = self.external().is_none();
        let limits = &self.limits;
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let window_ms = limits.dedup_window_s * 1000;
        if let Some(id) = &client_msg_id {
            if let Some(ack) = room.duplicate(&post.sender, id, clock, window_ms) {
                return Ok(Some(ack.answer(room.id.to_string(), true)));
            }
        }
        if post.rate_limited && limits.rate_limit_per_s > 0 {
            let (rate, burst) = (limits.rate_limit_per_s, limits.rate_limit_burst);
            if !room.take_message_token(&post.sender, rate, burst, now.mono_ms) {
                return Err(err(ErrorCode::RateLimited));
            }
        }
        if local {
            // The proposal takes the room's next log position and is applied at once.
            room.log.applied += 1;
            let at = Applied {
                clock_ms: now.mono_ms,
                unix_ms: now.unix_ms,
                message_id: self.next_message_id,
                ours: true,
                created: false,
            };
            self.next_message_id += 1;
            return self
                .apply_message(now, key, at, post, None, body, priority, client_msg_id)
                .map(Some);
        }
        let (Some((sid, conn, request_id)), Some(room)) = (waiter, self.log_ref(key)) else {
            return Err(not_carried_yet());
        };
        let op = Op::Message { sender: post.sender, sid, client_msg_id, priority, body };
        let w = Waiter { index: 0, conn, request_id, answer: Answer::Plain, joining: None };
        self.propose(now, room, vec![op], vec![w]);
        Ok(None)
    }

    /// Applies a message at its log position: in cluster mode the sender must still be a
    /// member (`member`: its session) and a repeated client_msg_id gets the first ack, decided
    /// in entry time; then the seq, history, one broadcast and the ack.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_message(
        &mut self,
        now: Now,
        key: RoomKey,
        at: Applied,
        post: Post,
        member: Option<SessionId>,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> OpResult {
        let Post { sender: user, except, .. } = post;
        let limits = &self.limits;
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        if member.is_some_and(|sid| !room.has_session(&user, sid)) {
            return Err(err(ErrorCode::NotInRoom));
        }
        let room_id = room.id.to_string();
        let window_ms = limits.dedup_window_s * 1000;
        if let Some(id) = &client_msg_id {
            if let Some(ack) = room.duplicate(&user, id, at.clock_ms, window_ms) {
                return Ok(ack.answer(room_id, true));
            }
        }
        // Members must hear about joins and leaves before messages that follow them.
        self.flush_presence(key);
        let message_id = at.message_id;
        let to = self.recipients(key);
        let limits = &self.limits;
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let msg = RoomMessage {
            room_id: room_id.clone(),
            seq: room.next_seq(),
            message_id,
            sender: user.to_string(),
            timestamp_ms: at.unix_ms,
            priority,
            body,
        };
        let ack = Ack { message_id, seq: msg.seq, timestamp_ms: at.unix_ms };
        let frame = encode_frame(&Event::RoomMessage(msg.clone()));
        let held = room.history().bytes();
        room.record(at.clock_ms, msg, frame.len(), limits.history_bounds());
        let now_held = room.history().bytes();
        if let Some(id) = client_msg_id {
            let max = limits.dedup_max_per_member;
            if let Some(due) = room.remember_ack(at.clock_ms, window_ms, max, user, id, ack) {
                // The room's clock and the timers' differ in cluster mode.
                let timer_at = now.mono_ms + due.saturating_sub(at.clock_ms);
                room.set_dedup_sweep_at(Some(timer_at));
                self.timers.insert((timer_at, Timer::DedupSweep(key)));
            }
        }
        self.outputs.push_back(Output::Broadcast {
            to,
            except,
            room: key,
            frame,
            priority,
            message: true,
        });
        self.history_changed(now, held, now_held);
        Ok(ack.answer(room_id, false))
    }

    /// A room's dedup sweep is due: ids out of the window are forgotten, and the next sweep is
    /// armed while some are left.
    pub(super) fn sweep_dedup(&mut self, now: Now, key: RoomKey) {
        let window_ms = self.limits.dedup_window_s * 1000;
        let clock = self.room_clock(now, key);
        let Some(room) = self.rooms.get_mut(&key) else { return };
        if let Some(due) = room.sweep_dedup(clock, window_ms) {
            let at = now.mono_ms + due.saturating_sub(clock);
            room.set_dedup_sweep_at(Some(at));
            self.timers.insert((at, Timer::DedupSweep(key)));
        }
    }

    pub(super) fn query_history(
        &mut self,
        now: Now,
        sid: SessionId,
        room_id: &str,
        anchor: HistoryAnchor,
        count: u32,
    ) -> OpResult {
        let key = self.member_room(sid, room_id)?.key;
        if count == 0 || count > MAX_QUERY_COUNT {
            return Err(ErrorBody::with_message(ErrorCode::InvalidRequest, "count must be 1-100"));
        }
        let max_age = self.limits.history_max_age_s * 1000;
        let clock = self.room_clock(now, key);
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let max_bytes = self.limits.history_page_max_bytes;
        let held = room.history().bytes();
        let (messages, has_more) =
            room.history_page(clock, max_age, anchor, count as usize, max_bytes);
        let now_held = room.history().bytes();
        self.history_changed(now, held, now_held);
        Ok(Response::History { room_id: room_id.to_string(), messages, has_more })
    }
}
