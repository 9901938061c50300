//! The impairment model: what happens to each datagram on one direction of a link.
//!
//! Pure and seeded: the same seed and the same sequence of (time, size) inputs give the same
//! decisions. Loss is uniform or bursty (Gilbert-Elliott); delay has a base and uniform jitter;
//! a reordered datagram gets extra delay so that later ones overtake it; a duplicated datagram
//! is delivered twice; a rate limit serialises datagrams through a bounded queue; blackholes
//! drop everything during their windows.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Gilbert-Elliott burst loss: a two-state Markov chain evaluated per datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurstLoss {
    /// Probability of moving from the good state to the bad state, per datagram.
    pub p_good_to_bad: f64,
    /// Probability of moving from the bad state back to the good state, per datagram.
    pub p_bad_to_good: f64,
    /// Loss probability in the bad state.
    pub loss_in_bad: f64,
}

impl BurstLoss {
    /// A burst model with the given long-run loss rate and mean burst length (in datagrams),
    /// losing everything while bad.
    pub fn with_rate(rate: f64, mean_burst: f64) -> BurstLoss {
        let p_bad_to_good = 1.0 / mean_burst.max(1.0);
        // Stationary P(bad) = p_gb / (p_gb + p_bg) = rate.
        let rate = rate.clamp(0.0, 0.99);
        let p_good_to_bad = rate * p_bad_to_good / (1.0 - rate);
        BurstLoss { p_good_to_bad, p_bad_to_good, loss_in_bad: 1.0 }
    }
}

/// One direction's impairments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Uniform loss probability.
    pub loss: f64,
    /// Bursty loss (applied in addition to `loss`).
    pub burst: Option<BurstLoss>,
    /// Base one-way delay in ms.
    pub delay_ms: u64,
    /// Uniform jitter added to the delay, 0..=jitter_ms.
    pub jitter_ms: u64,
    /// Probability that a datagram is held back (by one to three times the base delay + 5 ms).
    pub reorder: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Link rate in kbit/s (0: unlimited).
    pub rate_kbps: u64,
    /// Bytes the rate limiter may queue; datagrams beyond it are dropped (tail drop).
    pub queue_bytes: u64,
    /// Windows (start ms, duration ms) from the start of the run during which all is dropped.
    pub blackholes: Vec<(u64, u64)>,
}

/// Counters of what the model did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered.
    pub offered: u64,
    /// Datagrams delivered (duplicates counted twice).
    pub delivered: u64,
    /// Dropped by loss (uniform or burst).
    pub lost: u64,
    /// Dropped in a blackhole.
    pub blackholed: u64,
    /// Dropped by the rate limiter's full queue.
    pub queue_dropped: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Held back to be reordered.
    pub reordered: u64,
    /// Delivered with a non-zero delay.
    pub delayed: u64,
}

/// One direction of a link: an [`Impairment`] with its random state and rate-limiter clock.
#[derive(Debug)]
pub struct Link {
    imp: Impairment,
    rng: StdRng,
    bad: bool,
    /// When the rate limiter's queue is next free (ms, fractional).
    busy_until_ms: f64,
    /// Counters.
    pub stats: LinkStats,
}

impl Link {
    /// A link with these impairments and seed.
    pub fn new(imp: Impairment, seed: u64) -> Link {
        Link {
            imp,
            rng: StdRng::seed_from_u64(seed),
            bad: false,
            busy_until_ms: 0.0,
            stats: LinkStats::default(),
        }
    }

    /// The impairments.
    pub fn impairment(&self) -> &Impairment {
        &self.imp
    }

    /// Decides the fate of a datagram of `len` bytes offered at `now_ms` (since the run
    /// started): the times (ms) at which copies are delivered; empty when dropped.
    pub fn offer(&mut self, now_ms: u64, len: usize) -> Vec<u64> {
        self.stats.offered += 1;
        if self.imp.blackholes.iter().any(|&(s, d)| now_ms >= s && now_ms < s + d) {
            self.stats.blackholed += 1;
            return Vec::new();
        }
        if let Some(b) = self.imp.burst {
            let flip: f64 = self.rng.gen();
            if self.bad {
                if flip < b.p_bad_to_good {
                    self.bad = false;
                }
            } else if flip < b.p_good_to_bad {
                self.bad = true;
            }
            if self.bad && self.rng.gen::<f64>() < b.loss_in_bad {
                self.stats.lost += 1;
                return Vec::new();
            }
        }
        if self.imp.loss > 0.0 && self.rng.gen::<f64>() < self.imp.loss {
            self.stats.lost += 1;
            return Vec::new();
        }
        let mut depart = now_ms as f64;
        if self.imp.rate_kbps > 0 {
            let start = depart.max(self.busy_until_ms);
            let queued_ms = start - depart;
            let queued_bytes = queued_ms * self.imp.rate_kbps as f64 / 8.0;
            if self.imp.queue_bytes > 0 && queued_bytes > self.imp.queue_bytes as f64 {
                self.stats.queue_dropped += 1;
                return Vec::new();
            }
            let tx_ms = len as f64 * 8.0 / self.imp.rate_kbps as f64;
            self.busy_until_ms = start + tx_ms;
            depart = self.busy_until_ms;
        }
        let mut at = depart as u64 + self.imp.delay_ms;
        if self.imp.jitter_ms > 0 {
            at += self.rng.gen_range(0..=self.imp.jitter_ms);
        }
        if self.imp.reorder > 0.0 && self.rng.gen::<f64>() < self.imp.reorder {
            self.stats.reordered += 1;
            at += (self.imp.delay_ms + 5) * self.rng.gen_range(1..=3);
        }
        if at > now_ms {
            self.stats.delayed += 1;
        }
        let mut out = vec![at];
        if self.imp.duplicate > 0.0 && self.rng.gen::<f64>() < self.imp.duplicate {
            self.stats.duplicated += 1;
            out.push(at + self.rng.gen_range(0..=self.imp.jitter_ms.max(1)));
        }
        self.stats.delivered += out.len() as u64;
        out
    }
}

/// Parses `key=value` pairs separated by commas, as `huddle load --netsim` takes them:
/// `loss`, `burst-loss` (rate, mean burst 4), `delay-ms`, `jitter-ms`, `reorder`, `duplicate`,
/// `rate-kbps`, `queue-bytes`, `blackhole=START:DURATION` (seconds, repeatable).
/// Unknown keys are returned as (key, value) for the caller to interpret.
pub fn parse_spec(spec: &str) -> Result<(Impairment, Vec<(String, String)>), String> {
    let mut imp = Impairment::default();
    let mut rest = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected key=value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{k}: {v:?} is not a number"));
        match k {
            "loss" => imp.loss = num(v)?,
            "burst-loss" => imp.burst = Some(BurstLoss::with_rate(num(v)?, 4.0)),
            "delay-ms" => imp.delay_ms = num(v)? as u64,
            "jitter-ms" => imp.jitter_ms = num(v)? as u64,
            "reorder" => imp.reorder = num(v)?,
            "duplicate" => imp.duplicate = num(v)?,
            "rate-kbps" => imp.rate_kbps = num(v)? as u64,
            "queue-bytes" => imp.queue_bytes = num(v)? as u64,
            "blackhole" => imp.blackholes.push(parse_window(v)?),
            _ => rest.push((k.to_string(), v.to_string())),
        }
    }
    Ok((imp, rest))
}

/// Parses `START:DURATION` in seconds (fractions allowed) into milliseconds.
pub fn parse_window(v: &str) -> Result<(u64, u64), String> {
    let (s, d) = v.split_once(':').ok_or_else(|| format!("{v:?}: expected START:DURATION"))?;
    let s: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    let d: f64 = d.parse().map_err(|_| format!("{d:?} is not a number"))?;
    Ok(((s * 1000.0) as u64, (d * 1000.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_loss_drops_about_the_fraction() {
        let mut l = Link::new(Impairment { loss: 0.1, ..Default::default() }, 7);
        let kept = (0..100_000).filter(|i| !l.offer(*i, 100).is_empty()).count();
        assert!((89_000..91_000).contains(&kept), "kept {kept}");
        assert_eq!(l.stats.lost + l.stats.delivered, 100_000);
    }

    #[test]
    fn burst_loss_has_the_long_run_rate_and_comes_in_runs() {
        let mut l = Link::new(
            Impairment { burst: Some(BurstLoss::with_rate(0.05, 4.0)), ..Default::default() },
            3,
        );
        let fates: Vec<bool> = (0..200_000).map(|i| l.offer(i, 100).is_empty()).collect();
        let lost = fates.iter().filter(|x| **x).count() as f64 / fates.len() as f64;
        assert!((0.04..0.06).contains(&lost), "loss {lost}");
        let runs = fates.windows(2).filter(|w| w[0] && !w[1]).count() as f64;
        let mean_run = fates.iter().filter(|x| **x).count() as f64 / runs;
        assert!(mean_run > 3.0, "mean burst {mean_run}");
    }

    #[test]
    fn same_seed_same_decisions() {
        let imp = Impairment {
            loss: 0.3,
            jitter_ms: 10,
            duplicate: 0.1,
            reorder: 0.1,
            ..Default::default()
        };
        let mut a = Link::new(imp.clone(), 42);
        let mut b = Link::new(imp, 42);
        for i in 0..1000 {
            assert_eq!(a.offer(i, 1200), b.offer(i, 1200));
        }
    }

    #[test]
    fn delay_blackhole_rate_and_duplicate() {
        let imp = Impairment { delay_ms: 20, blackholes: vec![(100, 50)], ..Default::default() };
        let mut l = Link::new(imp, 1);
        assert_eq!(l.offer(0, 10), vec![20]);
        assert!(l.offer(120, 10).is_empty());
        assert_eq!(l.offer(150, 10), vec![170]);
        // 80 kbit/s = 10 bytes per ms: 1000-byte datagrams take 100 ms each, queue of 1500 bytes.
        let mut r =
            Link::new(Impairment { rate_kbps: 80, queue_bytes: 1500, ..Default::default() }, 1);
        assert_eq!(r.offer(0, 1000), vec![100]);
        assert_eq!(r.offer(0, 1000), vec![200]);
        assert!(r.offer(0, 1000).is_empty(), "2000 bytes already queued is over 1500");
        assert_eq!(r.offer(150, 1000), vec![300], "1000 bytes queued fits again");
        let mut d = Link::new(Impairment { duplicate: 1.0, ..Default::default() }, 1);
        assert_eq!(d.offer(0, 10).len(), 2);
    }

    #[test]
    fn spec_parses() {
        let (imp, rest) =
            parse_spec("loss=0.05,delay-ms=20,jitter-ms=5,blackhole=3:1.5,rebind-at=2").unwrap();
        assert_eq!((imp.loss, imp.delay_ms, imp.jitter_ms), (0.05, 20, 5));
        assert_eq!(imp.blackholes, vec![(3000, 1500)]);
        assert_eq!(rest, vec![("rebind-at".to_string(), "2".to_string())]);
        assert!(parse_spec("loss").is_err());
    }
}
