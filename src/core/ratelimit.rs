//! A token bucket on explicit millisecond time, and the table of buckets at rest: those whose
//! owner left (a room, its last session) before they had refilled.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens in thousandths, to stay in integers.
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn new(burst: u32, now_ms: u64) -> TokenBucket {
        TokenBucket { milli_tokens: u64::from(burst) * 1000, last_ms: now_ms }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, rate: u32, burst: u32, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let cap = u64::from(burst) * 1000;
        self.milli_tokens = (self.milli_tokens + elapsed * u64::from(rate)).min(cap);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Milliseconds until the bucket is full again at `rate` (0 when it is full now).
    pub fn ms_until_full(&self, rate: u32, burst: u32, now_ms: u64) -> u64 {
        let cap = u64::from(burst) * 1000;
        let elapsed = now_ms.saturating_sub(self.last_ms);
        let now_tokens = (self.milli_tokens + elapsed * u64::from(rate)).min(cap);
        if rate == 0 {
            return 0;
        }
        (cap - now_tokens).div_ceil(u64::from(rate))
    }

    /// When the bucket is full again at `rate`, counting from its last use.
    pub fn full_at(&self, rate: u32, burst: u32) -> u64 {
        self.last_ms + self.ms_until_full(rate, burst, self.last_ms)
    }
}

/// Buckets no longer in use that have not refilled yet, each kept until it would be full
/// again: a full bucket is the same as a new one, so forgetting it then cannot refill it
/// early, while forgetting it sooner would. Its size is therefore bounded by the buckets
/// emptied within one refill time (`burst / rate` seconds).
#[derive(Debug)]
pub(crate) struct Resting<K> {
    /// key -> the bucket and when it is full again (monotonic ms).
    buckets: HashMap<K, (TokenBucket, u64)>,
    /// (full again at, key), the sweep's order.
    due: BTreeSet<(u64, K)>,
}

impl<K: Clone + Eq + Hash + Ord> Resting<K> {
    /// An empty table.
    pub fn new() -> Resting<K> {
        Resting { buckets: HashMap::new(), due: BTreeSet::new() }
    }

    /// Puts a bucket to rest; returns when it is full again, or `None` when it was full at its
    /// last use and is dropped. A bucket already resting under `key` is merged: the emptier
    /// one is kept.
    pub fn park(&mut self, key: K, bucket: TokenBucket, rate: u32, burst: u32) -> Option<u64> {
        let full_at = bucket.full_at(rate, burst);
        if full_at <= bucket.last_ms {
            return None;
        }
        if let Some((_, old_at)) = self.buckets.get(&key) {
            if *old_at >= full_at {
                return None;
            }
            self.due.remove(&(*old_at, key.clone()));
        }
        self.due.insert((full_at, key.clone()));
        self.buckets.insert(key, (bucket, full_at));
        Some(full_at)
    }

    /// Takes the bucket resting under `key` back into use, if there is one.
    pub fn take(&mut self, key: &K) -> Option<TokenBucket> {
        let (bucket, full_at) = self.buckets.remove(key)?;
        self.due.remove(&(full_at, key.clone()));
        Some(bucket)
    }

    /// Forgets at most `max` buckets that are full by `now_ms`; returns whether more are due.
    pub fn sweep(&mut self, now_ms: u64, max: usize) -> bool {
        for _ in 0..max {
            match self.due.first() {
                Some((at, _)) if *at <= now_ms => {}
                _ => return false,
            }
            if let Some((_, key)) = self.due.pop_first() {
                self.buckets.remove(&key);
            }
        }
        self.due.first().is_some_and(|(at, _)| *at <= now_ms)
    }

    /// Number of buckets resting.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// The resting keys with when each is full again.
    pub fn iter(&self) -> impl Iterator<Item = (&K, u64)> {
        self.buckets.iter().map(|(k, (_, at))| (k, *at))
    }

    /// Whether the two indexes agree (for `Core::check_invariants`).
    pub fn check(&self) -> Result<(), String> {
        if self.due.len() != self.buckets.len() {
            return Err(format!(
                "{} resting buckets, {} due times",
                self.buckets.len(),
                self.due.len()
            ));
        }
        for (at, key) in &self.due {
            if self.buckets.get(key).map(|(_, a)| *a) != Some(*at) {
                return Err(format!("a resting bucket due at {at} is not indexed by its key"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = TokenBucket::new(4, 0);
        assert!((0..4).all(|_| b.try_take(2, 4, 0)));
        assert!(!b.try_take(2, 4, 0));
        assert!(!b.try_take(2, 4, 499));
        assert!(b.try_take(2, 4, 500));
        assert!(!b.try_take(2, 4, 500));
        // A long pause refills only up to the burst.
        assert!((0..4).all(|_| b.try_take(2, 4, 100_000)));
        assert!(!b.try_take(2, 4, 100_000));
        assert_eq!(b.ms_until_full(2, 4, 100_000), 2000);
        assert_eq!(b.ms_until_full(2, 4, 101_000), 1000);
        assert_eq!(b.ms_until_full(2, 4, 109_000), 0);
        assert_eq!(b.full_at(2, 4), 102_000);
    }

    #[test]
    fn a_resting_bucket_is_kept_until_it_is_full_again() {
        let mut r = Resting::new();
        let mut b = TokenBucket::new(4, 0);
        assert!((0..4).all(|_| b.try_take(2, 4, 1_000)));
        assert_eq!(r.park("a", b.clone(), 2, 4), Some(3_000));
        assert_eq!(r.park("full", TokenBucket::new(4, 1_000), 2, 4), None);
        assert_eq!(r.len(), 1);
        assert!(!r.sweep(2_999, 10));
        assert_eq!(r.len(), 1);
        let mut back = r.take(&"a").expect("still resting");
        assert!(!back.try_take(2, 4, 1_000), "taking it back did not refill it");
        assert_eq!(r.len(), 0);
        assert_eq!(r.park("a", b.clone(), 2, 4), Some(3_000));
        assert_eq!(r.park("b", b, 2, 4), Some(3_000));
        assert!(r.sweep(3_000, 1), "one more is due");
        assert!(!r.sweep(3_000, 1));
        assert_eq!(r.len(), 0);
        r.check().unwrap();
    }
}
