//! What a run measures: the stamp each message carries, latency histograms, the per-second
//! timeline, the exactly-once in-order check, and the live counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The `MessageBody::Custom` sub type of load messages ("load").
pub const SUB_TYPE: u32 = 0x6c6f_6164;
/// Bytes of the stamp at the start of each body: intended time (u64), publisher (u32), k (u64).
pub const HEADER_LEN: usize = 20;
/// Largest latency a histogram records exactly (60 s, in microseconds); larger ones saturate.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What a load message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Intended send time, nanoseconds since the run's t0 (one monotonic clock, one process).
    pub intended_ns: u64,
    /// Global publisher index: room * publishers_per_room + index in the room.
    pub publisher: u32,
    /// The publisher's message number, from 0.
    pub k: u64,
}

/// A body of `size` bytes (at least [`HEADER_LEN`]) carrying `stamp`, zero-padded.
pub fn encode_body(stamp: Stamp, size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size.max(HEADER_LEN));
    data.extend_from_slice(&stamp.intended_ns.to_le_bytes());
    data.extend_from_slice(&stamp.publisher.to_le_bytes());
    data.extend_from_slice(&stamp.k.to_le_bytes());
    data.resize(size.max(HEADER_LEN), 0);
    data
}

/// The stamp of a body, if it is long enough to hold one.
pub fn decode_body(data: &[u8]) -> Option<Stamp> {
    let intended_ns = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let publisher = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let k = u64::from_le_bytes(data.get(12..20)?.try_into().ok()?);
    Some(Stamp { intended_ns, publisher, k })
}

/// A latency histogram in microseconds, 1 us to 60 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // Constant, valid bounds: low >= 1, high >= 2 * low, sigfig <= 5.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// A smaller histogram (2 significant digits) for one second of the timeline.
fn bucket_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("constant bounds are valid")
}

/// Records `us` (at least 1, at most 60 s).
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Percentiles of a histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl LatencySummary {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Counters shared by every task of a run, read live by the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    /// Send requests made.
    pub sent: AtomicU64,
    /// Sends the server acknowledged.
    pub acked: AtomicU64,
    /// Sends that failed.
    pub send_errors: AtomicU64,
    /// For each acknowledged send, the members of its room other than its publisher.
    pub expected: AtomicU64,
    /// First deliveries (duplicates not counted).
    pub deliveries: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn read(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One second of the run (by arrival time).
#[derive(Clone, Debug)]
struct Bucket {
    deliveries: u64,
    latency: Histogram<u64>,
}

/// Deliveries and latency per second of arrival, shared by the receivers, which record into it
/// directly (one short lock per delivery).
///
/// Not a histogram per receiver merged later: with 10,000 receivers those were 1.6 GB of
/// histograms (140 KB for the run's latency and 20 KB for the current second, each), whose
/// allocation and page faults stalled the harness for seconds at the start of a run and whose
/// per-second merges cost more than the deliveries they counted (see BENCHMARKS.md, W2).
#[derive(Debug)]
pub struct Timeline {
    buckets: Mutex<Vec<Bucket>>,
}

/// One second of the timeline, summarised.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SecondSummary {
    /// Start of the second, seconds since t0.
    pub t_s: u64,
    /// Deliveries that arrived in this second.
    pub deliveries: u64,
    /// Median latency of those deliveries, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Largest, microseconds.
    pub max_us: u64,
}

impl Timeline {
    /// A timeline of `seconds` seconds (later arrivals go into the last one).
    pub fn new(seconds: usize) -> Timeline {
        let empty = Bucket { deliveries: 0, latency: bucket_histogram() };
        Timeline { buckets: Mutex::new(vec![empty; seconds.max(1)]) }
    }

    /// Records one delivery that arrived `arrival_ns` after t0 with `latency_us`.
    pub fn record(&self, arrival_ns: u64, latency_us: u64) {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let last = b.len() - 1;
        let bucket = &mut b[((arrival_ns / 1_000_000_000) as usize).min(last)];
        bucket.deliveries += 1;
        record(&mut bucket.latency, latency_us);
    }

    /// Every second, summarised.
    pub fn summary(&self) -> Vec<SecondSummary> {
        let b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.iter()
            .enumerate()
            .map(|(i, b)| {
                let l = LatencySummary::of(&b.latency);
                SecondSummary {
                    t_s: i as u64,
                    deliveries: b.deliveries,
                    p50_us: l.p50,
                    p99_us: l.p99,
                    max_us: l.max,
                }
            })
            .collect()
    }
}

/// The latency of the measured window, shared by the receivers: a few histograms, each behind
/// its own lock, so that receivers on different worker threads rarely wait for each other.
#[derive(Debug)]
pub struct SharedLatency {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl SharedLatency {
    /// As many shards as the harness has threads to run receivers on.
    pub fn new() -> SharedLatency {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
        SharedLatency { shards: (0..n).map(|_| Mutex::new(latency_histogram())).collect() }
    }

    /// Records `us` for receiver number `receiver`.
    pub fn record(&self, receiver: usize, us: u64) {
        let shard = &self.shards[receiver % self.shards.len()];
        record(&mut shard.lock().unwrap_or_else(|e| e.into_inner()), us);
    }

    /// Every shard added together.
    pub fn total(&self) -> Histogram<u64> {
        let mut total = latency_histogram();
        for s in &self.shards {
            // Same bounds on both sides, so adding cannot fail.
            let _ = total.add(&*s.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }
}

impl Default for SharedLatency {
    fn default() -> Self {
        SharedLatency::new()
    }
}

/// The verdict on one delivery from one publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time, after everything seen before from this publisher.
    InOrder,
    /// First time, but after a later message from the same publisher.
    OutOfOrder,
    /// Seen before.
    Duplicate,
    /// A message number no publisher of this run can have sent.
    Invalid,
}

/// Recovery from the simulator's blackholes: per window (nanoseconds after t0), the first
/// arrival after it ended and the last arrival of a message meant to be sent before it ended.
pub struct Outages {
    windows: Vec<(u64, u64)>,
    first_after: Vec<AtomicU64>,
    last_before: Vec<AtomicU64>,
    during: Vec<AtomicU64>,
}

/// How the room came back after one blackhole.
#[derive(Clone, Debug, Serialize)]
pub struct OutageSummary {
    /// Start, seconds after the start of sending.
    pub start_s: f64,
    /// Length in seconds.
    pub duration_s: f64,
    /// Deliveries of messages meant to be sent during the blackhole.
    pub deliveries_of_messages_sent_during: u64,
    /// From the blackhole's end to the first delivery after it, milliseconds.
    pub first_delivery_after_end_ms: Option<f64>,
    /// From the blackhole's end to the last delivery of a message meant to be sent before the
    /// end (everything missed has arrived), milliseconds.
    pub caught_up_after_end_ms: Option<f64>,
}

impl Outages {
    /// Windows as (start, end) in nanoseconds after t0; windows over before t0 are dropped.
    pub fn new(windows: Vec<(u64, u64)>) -> Outages {
        let n = windows.len();
        let counters = |v: u64| (0..n).map(|_| AtomicU64::new(v)).collect::<Vec<_>>();
        Outages {
            windows,
            first_after: counters(u64::MAX),
            last_before: counters(0),
            during: counters(0),
        }
    }

    /// Notes one first delivery.
    pub fn record(&self, intended_ns: u64, arrival_ns: u64) {
        for (i, &(start, end)) in self.windows.iter().enumerate() {
            if arrival_ns >= end {
                self.first_after[i].fetch_min(arrival_ns, Ordering::Relaxed);
            }
            if intended_ns < end {
                self.last_before[i].fetch_max(arrival_ns, Ordering::Relaxed);
            }
            if intended_ns >= start && intended_ns < end {
                self.during[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One summary per window.
    pub fn summary(&self) -> Vec<OutageSummary> {
        let after = |at: u64, end: u64| (at as f64 - end as f64) / 1e6;
        self.windows
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| {
                let first = self.first_after[i].load(Ordering::Relaxed);
                let last = self.last_before[i].load(Ordering::Relaxed);
                OutageSummary {
                    start_s: start as f64 / 1e9,
                    duration_s: (end - start) as f64 / 1e9,
                    deliveries_of_messages_sent_during: self.during[i].load(Ordering::Relaxed),
                    first_delivery_after_end_ms: (first != u64::MAX).then(|| after(first, end)),
                    caught_up_after_end_ms: (last >= end).then(|| after(last, end)),
                }
            })
            .collect()
    }
}

/// For each address change of the client side, how long each receiver waited for its first
/// delivery of a message meant to be sent at or after it: the change to the first new message
/// it sees, whatever was still in flight from before.
#[derive(Debug)]
pub struct AddressChanges {
    /// Nanoseconds after t0.
    at_ns: Vec<u64>,
    /// Per change, the receivers' waits in microseconds.
    waits: Mutex<Vec<Histogram<u64>>>,
}

/// How the members came back after one address change.
#[derive(Clone, Debug, Serialize)]
pub struct AddressChangeSummary {
    /// When it happened, seconds after the start of sending.
    pub at_s: f64,
    /// Receivers that got a message meant to be sent at or after it.
    pub members_delivered: u64,
    /// Receivers that never did.
    pub members_without: u64,
    /// From the change to a receiver's first such delivery: the median, milliseconds.
    pub first_delivery_p50_ms: Option<f64>,
    /// The largest, milliseconds.
    pub first_delivery_max_ms: Option<f64>,
}

impl AddressChanges {
    /// Changes at these times (nanoseconds after t0).
    pub fn new(at_ns: Vec<u64>) -> AddressChanges {
        let waits = Mutex::new(at_ns.iter().map(|_| latency_histogram()).collect());
        AddressChanges { at_ns, waits }
    }

    /// How many changes there are.
    pub fn len(&self) -> usize {
        self.at_ns.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.at_ns.is_empty()
    }

    /// Notes one first delivery of a receiver, which marks in `seen` the changes it already
    /// had a delivery after (`seen` is as long as there are changes).
    pub fn record(&self, seen: &mut [bool], intended_ns: u64, arrival_ns: u64) {
        for (i, &at) in self.at_ns.iter().enumerate() {
            if !seen[i] && intended_ns >= at {
                seen[i] = true;
                let mut w = self.waits.lock().unwrap_or_else(|e| e.into_inner());
                record(&mut w[i], arrival_ns.saturating_sub(at) / 1000);
            }
        }
    }

    /// One summary per change, out of `receivers` receivers.
    pub fn summary(&self, receivers: u64) -> Vec<AddressChangeSummary> {
        let w = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        self.at_ns
            .iter()
            .zip(w.iter())
            .map(|(&at, h)| {
                let ms = |us: u64| (!h.is_empty()).then_some(us as f64 / 1000.0);
                AddressChangeSummary {
                    at_s: at as f64 / 1e9,
                    members_delivered: h.len(),
                    members_without: receivers.saturating_sub(h.len()),
                    first_delivery_p50_ms: ms(h.value_at_quantile(0.5)),
                    first_delivery_max_ms: ms(h.max()),
                }
            })
            .collect()
    }
}

/// Exactly-once, in-order bookkeeping of one receiver for the publishers of its rooms (one
/// track per room and publisher).
#[derive(Debug)]
pub struct OrderCheck {
    publishers: Vec<Track>,
    max_k: u64,
}

#[derive(Debug, Default)]
struct Track {
    seen: Vec<u64>,
    highest: Option<u64>,
}

impl OrderCheck {
    /// Bookkeeping for `publishers` publishers, each sending message numbers below `max_k`.
    pub fn new(publishers: usize, max_k: u64) -> OrderCheck {
        OrderCheck { publishers: (0..publishers).map(|_| Track::default()).collect(), max_k }
    }

    /// Checks message `k` of publisher `p` (index within the room).
    pub fn check(&mut self, p: usize, k: u64) -> Verdict {
        let Some(t) = self.publishers.get_mut(p) else { return Verdict::Invalid };
        if k >= self.max_k {
            return Verdict::Invalid;
        }
        let (word, bit) = ((k / 64) as usize, 1u64 << (k % 64));
        if t.seen.len() <= word {
            t.seen.resize(word + 1, 0);
        }
        if t.seen[word] & bit != 0 {
            return Verdict::Duplicate;
        }
        t.seen[word] |= bit;
        match t.highest {
            Some(h) if k < h => Verdict::OutOfOrder,
            _ => {
                t.highest = Some(k);
                Verdict::InOrder
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_pads() {
        let s = Stamp { intended_ns: 123_456_789, publisher: 7, k: 42 };
        let body = encode_body(s, 200);
        assert_eq!(body.len(), 200);
        assert_eq!(decode_body(&body), Some(s));
        assert_eq!(encode_body(s, 3).len(), HEADER_LEN);
        assert_eq!(decode_body(&body[..19]), None);
    }

    #[test]
    fn order_check_counts_duplicates_and_reordering() {
        let mut c = OrderCheck::new(2, 1000);
        assert_eq!(c.check(0, 0), Verdict::InOrder);
        assert_eq!(c.check(0, 2), Verdict::InOrder);
        assert_eq!(c.check(0, 1), Verdict::OutOfOrder);
        assert_eq!(c.check(0, 2), Verdict::Duplicate);
        assert_eq!(c.check(1, 0), Verdict::InOrder, "publishers are independent");
        assert_eq!(c.check(2, 0), Verdict::Invalid);
        assert_eq!(c.check(1, 1000), Verdict::Invalid);
    }

    #[test]
    fn timeline_counts_by_second_of_arrival() {
        let t = Timeline::new(3);
        t.record(100, 50);
        t.record(1_500_000_000, 70);
        t.record(1_600_000_000, 75);
        t.record(9_000_000_000, 90);
        let s = t.summary();
        assert_eq!(s.iter().map(|s| s.deliveries).collect::<Vec<_>>(), vec![1, 2, 1]);
        assert_eq!(s[2].max_us, 90);
    }

    #[test]
    fn shared_latency_adds_its_shards() {
        let l = SharedLatency::new();
        for r in 0..100 {
            l.record(r, 1000 + r as u64);
        }
        let h = l.total();
        assert_eq!(h.len(), 100);
        assert_eq!(h.min(), 1000);
        assert!(h.max() >= 1099 && h.max() < 1101);
    }
}
