//! A token bucket on explicit millisecond time.

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
    }
}
