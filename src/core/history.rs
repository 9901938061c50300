//! A room's message history: the last N messages, at most so many bytes, none older than a
//! maximum age.

use std::collections::VecDeque;

use crate::wire::{HistoryAnchor, RoomMessage};

/// Messages in ascending, contiguous seq order.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    /// The sum of the entries' `frame_len`.
    bytes: usize,
}

/// How much history a room keeps.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Messages.
    pub max_len: usize,
    /// Bytes of their event frames.
    pub max_bytes: usize,
    /// Age, monotonic ms.
    pub max_age_ms: u64,
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
    /// Appends a message whose event frame is `frame_len` bytes and drops the oldest while over
    /// the count or byte bound, and what is over the age bound. The newest message is always
    /// kept (a frame is never over the byte bound by itself: see `Limits::history_max_bytes`).
    pub fn push(&mut self, now_ms: u64, msg: RoomMessage, frame_len: usize, bounds: Bounds) {
        self.entries.push_back(Entry { at_ms: now_ms, frame_len, msg });
        self.bytes += frame_len;
        while self.entries.len() > 1
            && (self.entries.len() > bounds.max_len || self.bytes > bounds.max_bytes)
        {
            self.pop_oldest();
        }
        self.expire(now_ms, bounds.max_age_ms);
    }

    fn pop_oldest(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.frame_len;
        }
    }

    /// Drops messages older than `max_age_ms`.
    pub fn expire(&mut self, now_ms: u64, max_age_ms: u64) {
        self.drop_stored_before(now_ms.saturating_sub(max_age_ms));
    }

    /// Drops the messages stored before `cutoff_ms` (monotonic), oldest first, until at most
    /// `keep_bytes` are held; returns whether it stopped because of the cutoff.
    pub fn drop_oldest_until(&mut self, keep_bytes: usize, cutoff_ms: u64) -> bool {
        while self.bytes > keep_bytes {
            match self.entries.front() {
                Some(e) if e.at_ms < cutoff_ms => self.pop_oldest(),
                _ => return true,
            }
        }
        false
    }

    fn drop_stored_before(&mut self, cutoff_ms: u64) {
        while self.entries.front().is_some_and(|e| e.at_ms < cutoff_ms) {
            self.pop_oldest();
        }
    }

    /// Bytes held (the sum of the messages' event frames).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest message held was stored (monotonic ms).
    pub fn oldest_at(&self) -> Option<u64> {
        self.entries.front().map(|e| e.at_ms)
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
    /// A page holds at most `count` messages, and stops before the message that would take
    /// its encoded messages past `max_bytes` (it holds at least one): the messages nearest
    /// the anchor are kept, and `has_more` says there are more.
    pub fn page(
        &self,
        anchor: HistoryAnchor,
        count: usize,
        max_bytes: usize,
    ) -> (Vec<RoomMessage>, bool) {
        let Some(first) = self.first_seq() else {
            return (Vec::new(), false);
        };
        let len = self.entries.len();
        // Seqs are contiguous, so a seq maps to an index by subtraction.
        let index_of = |seq: u64| -> usize { (seq.saturating_sub(first) as usize).min(len) };
        let (mut start, mut end) = match anchor {
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
        // Away from the anchor, the page stops before the message that takes it over the byte
        // budget; the message nearest the anchor is always in.
        let mut total = 0;
        match anchor {
            HistoryAnchor::Latest | HistoryAnchor::BeforeSeq(_) => {
                let mut i = end;
                while i > start {
                    total += self.entries[i - 1].frame_len;
                    if total > max_bytes && i < end {
                        break;
                    }
                    i -= 1;
                }
                start = i;
            }
            HistoryAnchor::AfterSeq(_) => {
                let mut i = start;
                while i < end {
                    total += self.entries[i].frame_len;
                    if total > max_bytes && i > start {
                        break;
                    }
                    i += 1;
                }
                end = i;
            }
        }
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
            h.push(
                s * 10,
                msg(s),
                40,
                Bounds { max_len: 5, max_bytes: 1 << 20, max_age_ms: 1_000 },
            );
        }
        assert_eq!(h.first_seq(), Some(6));
        assert_eq!(seqs(&h.page(HistoryAnchor::Latest, 2, usize::MAX)), (vec![9, 10], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::BeforeSeq(9), 2, usize::MAX)), (vec![7, 8], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::BeforeSeq(7), 5, usize::MAX)), (vec![6], false));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(7), 2, usize::MAX)), (vec![8, 9], true));
        assert_eq!(
            seqs(&h.page(HistoryAnchor::AfterSeq(1), 10, usize::MAX)),
            (vec![6, 7, 8, 9, 10], false)
        );
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(10), 10, usize::MAX)), (vec![], false));
        h.expire(1_095, 1_000);
        assert_eq!(h.first_seq(), Some(10));
    }

    #[test]
    fn bounded_by_bytes_keeping_the_newest() {
        let mut h = History::default();
        let bounds = Bounds { max_len: 1_000, max_bytes: 100, max_age_ms: 1_000 };
        for s in 1..=10 {
            h.push(s, msg(s), 30, bounds);
        }
        assert_eq!((h.len(), h.bytes(), h.first_seq()), (3, 90, Some(8)));
        h.push(11, msg(11), 500, bounds);
        assert_eq!((h.len(), h.bytes(), h.first_seq()), (1, 500, Some(11)), "the newest stays");
        h.push(12, msg(12), 30, bounds);
        assert_eq!((h.len(), h.bytes()), (1, 30));
        assert!(!h.drop_oldest_until(0, 13), "dropped all, not stopped by the cutoff");
        assert_eq!((h.len(), h.bytes()), (0, 0));
        h.push(20, msg(13), 30, bounds);
        h.push(30, msg(14), 30, bounds);
        assert!(h.drop_oldest_until(0, 30), "the message stored at the cutoff stays");
        assert_eq!((h.len(), h.oldest_at()), (1, Some(30)));
    }

    #[test]
    fn a_page_stops_at_its_byte_budget_keeping_the_messages_nearest_the_anchor() {
        let mut h = History::default();
        let bounds = Bounds { max_len: 100, max_bytes: 1 << 20, max_age_ms: 1_000 };
        for s in 1..=10 {
            h.push(0, msg(s), 100, bounds);
        }
        let budget = 350;
        assert_eq!(seqs(&h.page(HistoryAnchor::Latest, 5, budget)), (vec![8, 9, 10], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::BeforeSeq(4), 5, budget)), (vec![1, 2, 3], false));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(2), 5, budget)), (vec![3, 4, 5], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(6), 5, budget)), (vec![7, 8, 9], true));
        // A budget under one message still returns that one message.
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(9), 5, 1)), (vec![10], false));
        assert_eq!(seqs(&h.page(HistoryAnchor::Latest, 5, 1)), (vec![10], true));
    }
}
