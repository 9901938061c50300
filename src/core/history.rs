//! A room's message history: the last N messages, none older than a maximum age.

use std::collections::VecDeque;

use bincode::enc::write::SizeWriter;
use bincode::enc::EncoderImpl;
use bincode::Encode;

use crate::wire::{HistoryAnchor, RoomMessage, CONFIG, MAX_FRAME_LEN};

/// Messages in ascending, contiguous seq order.
#[derive(Debug, Default)]
pub struct History {
    /// (monotonic ms when stored, message)
    entries: VecDeque<(u64, RoomMessage)>,
}

impl History {
    /// Appends a message and drops what is over the count or age bound.
    pub fn push(&mut self, now_ms: u64, msg: RoomMessage, max_len: usize, max_age_ms: u64) {
        self.entries.push_back((now_ms, msg));
        while self.entries.len() > max_len {
            self.entries.pop_front();
        }
        self.expire(now_ms, max_age_ms);
    }

    /// Drops messages older than `max_age_ms`.
    pub fn expire(&mut self, now_ms: u64, max_age_ms: u64) {
        while let Some((at, _)) = self.entries.front() {
            if now_ms.saturating_sub(*at) > max_age_ms {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// The oldest seq still held.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|(_, m)| m.seq)
    }

    /// The messages with seq above `seq`, in order.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &RoomMessage> {
        let skip = match self.first_seq() {
            Some(first) if seq >= first => (seq - first + 1) as usize,
            _ => 0,
        };
        self.entries.iter().skip(skip).map(|(_, m)| m)
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
                    total += encoded_len(&self.entries[i - 1].1);
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
                    total += encoded_len(&self.entries[i].1);
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
        let page = self.entries.range(start..end).map(|(_, m)| m.clone()).collect();
        (page, has_more)
    }
}

/// The bytes `message` takes in an encoded frame.
fn encoded_len(message: &RoomMessage) -> usize {
    let mut encoder = EncoderImpl::new(SizeWriter::default(), CONFIG);
    // Encoding into a size counter fails only past the frame limit, which no stored message
    // reaches; such a message would count as the whole limit.
    match message.encode(&mut encoder) {
        Ok(()) => encoder.into_writer().bytes_written,
        Err(_) => MAX_FRAME_LEN,
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
            h.push(s * 10, msg(s), 5, 1_000);
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
    fn a_page_stops_at_its_byte_budget_keeping_the_messages_nearest_the_anchor() {
        let mut h = History::default();
        for s in 1..=10 {
            h.push(0, msg(s), 100, 1_000);
        }
        let each = encoded_len(&msg(5));
        assert_eq!(encoded_len(&msg(9)), each);
        let budget = 3 * each + each / 2;
        assert_eq!(seqs(&h.page(HistoryAnchor::Latest, 5, budget)), (vec![8, 9, 10], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::BeforeSeq(4), 5, budget)), (vec![1, 2, 3], false));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(2), 5, budget)), (vec![3, 4, 5], true));
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(6), 5, budget)), (vec![7, 8, 9], true));
        // A budget under one message still returns that one message.
        assert_eq!(seqs(&h.page(HistoryAnchor::AfterSeq(9), 5, 1)), (vec![10], false));
        assert_eq!(seqs(&h.page(HistoryAnchor::Latest, 5, 1)), (vec![10], true));
    }
}
