//! A room's message history: the last N messages, none older than a maximum age.

use std::collections::VecDeque;

use crate::wire::{HistoryAnchor, RoomMessage};

/// Messages in ascending, contiguous seq order.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    /// Monotonic ms when stored.
    at_ms: u64,
    /// Bytes of the message's `RoomMessage` event frame, so that a replay is sized without
    /// encoding anything.
    frame_len: usize,
    msg: RoomMessage,
}

impl History {
    /// Appends a message whose event frame is `frame_len` bytes and drops what is over the
    /// count or age bound.
    pub fn push(
        &mut self,
        now_ms: u64,
        msg: RoomMessage,
        frame_len: usize,
        max_len: usize,
        max_age_ms: u64,
    ) {
        self.entries.push_back(Entry { at_ms: now_ms, frame_len, msg });
        while self.entries.len() > max_len {
            self.entries.pop_front();
        }
        self.expire(now_ms, max_age_ms);
    }

    /// Drops messages older than `max_age_ms`.
    pub fn expire(&mut self, now_ms: u64, max_age_ms: u64) {
        while let Some(e) = self.entries.front() {
            if now_ms.saturating_sub(e.at_ms) > max_age_ms {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// The oldest seq still held.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.msg.seq)
    }

    /// The messages with seq above `seq`, in order, each with the length of its event frame.
    pub fn after(&self, seq: u64) -> impl DoubleEndedIterator<Item = (&RoomMessage, usize)> {
        let skip = match self.first_seq() {
            Some(first) if seq >= first => (seq - first + 1).min(self.entries.len() as u64),
            _ => 0,
        };
        self.entries.range(skip as usize..).map(|e| (&e.msg, e.frame_len))
    }

    /// Number of messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One page of messages in ascending seq order, and whether more exist in that direction.
    pub fn page(&self, anchor: HistoryAnchor, count: usize) -> (Vec<RoomMessage>, bool) {
        let Some(first) = self.first_seq() else {
            return (Vec::new(), false);
        };
        let len = self.entries.len();
        // Seqs are contiguous, so a seq maps to an index by subtraction.
        let index_of = |seq: u64| -> usize { (seq.saturating_sub(first) as usize).min(len) };
        let (start, end) = match anchor {
            HistoryAnchor::Latest => (len.saturating_sub(count), len),
            HistoryAnchor::BeforeSeq(seq) => {
                let end = index_of(seq);
                (end.saturating_sub(count), end)
            }
            HistoryAnchor::AfterSeq(seq) => {
                let start = if seq < first { 0 } else { index_of(seq.saturating_add(1)) };
                (start, (start + count).min(len))
            }
        };
        let has_more = match anchor {
            HistoryAnchor::Latest | HistoryAnchor::BeforeSeq(_) => start > 0,
            HistoryAnchor::AfterSeq(_) => end < len,
        };
        let page = self.entries.range(start..end).map(|e| e.msg.clone()).collect();
        (page, has_more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MessageBody, Priority};

    fn msg(seq: u64) -> RoomMessage {
        RoomMessage {
            room_id: "r".into(),
            seq,
            message_id: seq,
            sender: "u".into(),
            timestamp_ms: 0,
            priority: Priority::Medium,
            body: MessageBody::Text(seq.to_string()),
        }
    }

    fn seqs(p: &(Vec<RoomMessage>, bool)) -> (Vec<u64>, bool) {
        (p.0.iter().map(|m| m.seq).collect(), p.1)
    }

    #[test]
    fn bounded_by_count_and_age_and_paged() {
        let mut h = History::default();
        for s in 1..=10 {
            h.push(s * 10, msg(s), 40, 5, 1_000);
        }
        assert_eq!(h.first_seq(), Some(6));
        assert_eq!(seqs(&h.page(HistoryAnchor::Latest, 2)), (vec![9, 10], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::BeforeSeq(9), 2)), (vec![7, 8], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::BeforeSeq(7), 5)), (vec![6], false));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(7), 2)), (vec![8, 9], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(1), 10)), (vec![6, 7, 8, 9, 10], false));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(10), 10)), (vec![], false));
        h.expire(1_095, 1_000);
        assert_eq!(h.first_seq(), Some(10));
    }
}
