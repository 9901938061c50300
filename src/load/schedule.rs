//! The send schedule: one thread that hands each publisher its sends at their intended times.
//!
//! tokio's timer rounds deadlines up to whole milliseconds, which made every send about 1 ms
//! late and added that to every latency. A thread sleeping on the OS's high-resolution timer,
//! with its timer slack set to 1 ns (Linux's default of 50 µs made every send that much later),
//! that passes each due send to its publisher's task keeps the harness's own lateness well
//! below what it measures. The schedule is fixed in advance (open
//! loop): nothing a publisher or the server does moves it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

/// Longest single sleep, so that a stopped schedule notices soon.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// One due send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The publisher's message number, from 0.
    pub k: u64,
    /// Intended send time, nanoseconds since t0.
    pub intended_ns: u64,
}

/// A publisher's place in the schedule: message `k` is due at `phase_s + k / rate` seconds.
pub struct Slot {
    /// Offset of the first send, seconds after t0.
    pub phase_s: f64,
    /// Sends per second.
    pub rate: f64,
    /// Where its ticks go.
    pub ticks: UnboundedSender<Tick>,
}

impl Slot {
    fn due_ns(&self, k: u64) -> u64 {
        ((self.phase_s + k as f64 / self.rate) * 1e9) as u64
    }
}

/// The running schedule thread; dropping it stops the thread (publishers then see their tick
/// channel close).
pub struct Schedule {
    stop: Arc<AtomicBool>,
}

impl Schedule {
    /// Starts handing out ticks for every send intended before `end_s` seconds after `t0`.
    pub fn start(t0: Instant, end_s: f64, slots: Vec<Slot>) -> std::io::Result<Schedule> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let end_ns = (end_s * 1e9) as u64;
        std::thread::Builder::new().name("huddle-load-schedule".into()).spawn(move || {
            precise_sleeps();
            let mut heap = BinaryHeap::with_capacity(slots.len());
            for (i, s) in slots.iter().enumerate() {
                heap.push(Reverse((s.due_ns(0), i, 0u64)));
            }
            while let Some(Reverse((due_ns, i, k))) = heap.pop() {
                if due_ns >= end_ns {
                    continue;
                }
                let due = t0 + Duration::from_nanos(due_ns);
                loop {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    std::thread::sleep((due - now).min(MAX_SLEEP));
                }
                // A publisher that is gone no longer needs ticks.
                if slots[i].ticks.send(Tick { k, intended_ns: due_ns }).is_ok() {
                    heap.push(Reverse((slots[i].due_ns(k + 1), i, k + 1)));
                }
            }
        })?;
        Ok(Schedule { stop })
    }
}

/// Asks the OS to wake this thread's sleeps on time: Linux lets a sleep overrun by the thread's
/// timer slack (50 µs by default) to batch wake-ups, and every send would be that much late.
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    {
        // Best effort: without it the sends are only later.
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_arrive_in_order_at_their_times() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let t0 = Instant::now();
        let _s =
            Schedule::start(t0, 0.1, vec![Slot { phase_s: 0.01, rate: 100.0, ticks: tx }]).unwrap();
        let mut got = Vec::new();
        while let Some(t) = rx.blocking_recv() {
            assert!(t0.elapsed() >= Duration::from_nanos(t.intended_ns), "tick early");
            got.push(t.k);
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }
}
