//! Room messages: sending (size and client_msg_id checks, idempotent retries, the per-user
//! rate limit, the seq, history and one broadcast) and the history query.

use std::sync::Arc;

use super::limits::over_limit;
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_message(
        &mut self,
        now: Now,
        sid: SessionId,
        conn: ConnId,
        room_id: &str,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> OpResult {
        let key = self.member_room(sid, room_id)?.key;
        let user = self.session(sid)?.user_id.clone();
        let post = Post { sender: user, except: Some(conn), rate_limited: true };
        self.post_message(now, key, post, body, priority, client_msg_id)
    }

    /// Sends a message to a room whose sender the caller has checked (a member, or the admin
    /// API): size and client_msg_id checks, the idempotent-retry lookup, the rate limit when
    /// asked, then the seq, history and one broadcast to every member connection but `except`.
    pub(super) fn post_message(
        &mut self,
        now: Now,
        key: RoomKey,
        post: Post,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> OpResult {
        let Post { sender: user, except, rate_limited } = post;
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
        let limits = &self.limits;
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let room_id = room.id.to_string();
        let window_ms = limits.dedup_window_s * 1000;
        if let Some(id) = &client_msg_id {
            if let Some(ack) = room.duplicate(&user, id, now.mono_ms, window_ms) {
                return Ok(Response::MessageSent {
                    room_id,
                    message_id: ack.message_id,
                    seq: ack.seq,
                    timestamp_ms: ack.timestamp_ms,
                    duplicate: true,
                });
            }
        }
        if rate_limited && limits.rate_limit_per_s > 0 {
            let (rate, burst) = (limits.rate_limit_per_s, limits.rate_limit_burst);
            if !room.take_message_token(&user, rate, burst, now.mono_ms) {
                return Err(err(ErrorCode::RateLimited));
            }
        }
        // Members must hear about joins and leaves before messages that follow them.
        self.flush_presence(key);
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        let to = self.recipients(key);
        let limits = &self.limits;
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let msg = RoomMessage {
            room_id: room_id.clone(),
            seq: room.next_seq(),
            message_id,
            sender: user.to_string(),
            timestamp_ms: now.unix_ms,
            priority,
            body,
        };
        let ack = Ack { message_id, seq: msg.seq, timestamp_ms: now.unix_ms };
        let frame = encode_frame(&Event::RoomMessage(msg.clone()));
        let held = room.history().bytes();
        room.record(now.mono_ms, msg, frame.len(), limits.history_bounds());
        let now_held = room.history().bytes();
        if let Some(id) = client_msg_id {
            let max = limits.dedup_max_per_member;
            if let Some(at) = room.remember_ack(now.mono_ms, window_ms, max, user, id, ack) {
                self.timers.insert((at, Timer::DedupSweep(key)));
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
        Ok(Response::MessageSent {
            room_id,
            message_id,
            seq: ack.seq,
            timestamp_ms: ack.timestamp_ms,
            duplicate: false,
        })
    }

    /// A room's dedup sweep is due: ids out of the window are forgotten, and the next sweep is
    /// armed while some are left.
    pub(super) fn sweep_dedup(&mut self, now: Now, key: RoomKey) {
        let window_ms = self.limits.dedup_window_s * 1000;
        let Some(room) = self.rooms.get_mut(&key) else { return };
        if let Some(at) = room.sweep_dedup(now.mono_ms, window_ms) {
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
        let Some(room) = self.rooms.get_mut(&key) else { return Err(err(ErrorCode::Internal)) };
        let max_bytes = self.limits.history_page_max_bytes;
        let held = room.history().bytes();
        let (messages, has_more) =
            room.history_page(now.mono_ms, max_age, anchor, count as usize, max_bytes);
        let now_held = room.history().bytes();
        self.history_changed(now, held, now_held);
        Ok(Response::History { room_id: room_id.to_string(), messages, has_more })
    }
}
