//! A congestion controller for chat on a lossy last mile: CUBIC that does not shrink its window
//! for a loss that came without queueing delay while the recent loss rate stays moderate.
//!
//! CUBIC takes every loss as congestion and cuts its window to 0.7x. A chat connection is
//! application-limited almost all the time, and CUBIC grows its window only while the window
//! is what limits sending, so on a path with random loss each loss ratchets the window down,
//! to two packets, where it stays: a burst of small messages (several rooms at once, or the
//! tail copies that recover losses early) then waits for acknowledgements, one round trip per
//! window. [`LossTolerant`] passes a loss on to CUBIC only when it looks like congestion: the
//! smoothed RTT stands above the path's minimum by more than [`QUEUE_DELAY_MIN`] or a quarter of
//! that minimum (a queue is building: the drop-tail case, where CUBIC's response is kept), or
//! the loss rate of recent packets is above [`RANDOM_LOSS_MAX`] (a shallow buffer overflowing
//! without delay), or the loss is persistent congestion.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics, CubicConfig};
use quinn_proto::RttEstimator;

/// Queueing delay (smoothed RTT above the minimum) that makes a loss count as congestion, at
/// least; a quarter of the minimum RTT when that is more.
pub const QUEUE_DELAY_MIN: Duration = Duration::from_millis(10);

/// Recent loss rate (loss events against acknowledged packets and loss events) above which every
/// loss counts as congestion, whatever the delay.
pub const RANDOM_LOSS_MAX: f64 = 0.15;

/// Weight of each acknowledged packet or loss event in the recent loss rate (an exponential
/// average over about the last 32).
const LOSS_RATE_GAIN: f64 = 1.0 / 32.0;

/// Builds [`LossTolerant`] controllers over CUBIC with quinn's defaults.
#[derive(Clone, Debug, Default)]
pub struct LossTolerantConfig {
    cubic: CubicConfig,
}

impl ControllerFactory for LossTolerantConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        let inner = Arc::new(self.cubic.clone()).build(now, current_mtu);
        Box::new(LossTolerant { inner, smoothed: None, min: None, loss_rate: 0.0 })
    }
}

/// CUBIC that ignores losses that look random (see the module's documentation).
pub struct LossTolerant {
    inner: Box<dyn Controller>,
    /// Smoothed RTT at the last acknowledgement.
    smoothed: Option<Duration>,
    /// Minimum RTT of the path.
    min: Option<Duration>,
    /// Recent fraction of loss events among acknowledged packets and loss events.
    loss_rate: f64,
}

impl LossTolerant {
    fn looks_random(&self) -> bool {
        let (Some(smoothed), Some(min)) = (self.smoothed, self.min) else {
            return false;
        };
        let queue = smoothed.saturating_sub(min);
        queue <= QUEUE_DELAY_MIN.max(min / 4) && self.loss_rate <= RANDOM_LOSS_MAX
    }

    fn record(&mut self, lost: bool) {
        let sample = if lost { 1.0 } else { 0.0 };
        self.loss_rate += (sample - self.loss_rate) * LOSS_RATE_GAIN;
    }
}

impl Controller for LossTolerant {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.smoothed = Some(rtt.get());
        self.min = Some(rtt.min());
        self.record(false);
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner.on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        let random = !is_persistent_congestion && lost_bytes > 0 && self.looks_random();
        self.record(true);
        if random {
            return;
        }
        self.inner.on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.inner.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(LossTolerant {
            inner: self.inner.clone_box(),
            smoothed: self.smoothed,
            min: self.min,
            loss_rate: self.loss_rate,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(smoothed_ms: u64, loss_rate: f64) -> LossTolerant {
        let inner = Arc::new(CubicConfig::default()).build(Instant::now(), 1200);
        LossTolerant {
            inner,
            smoothed: Some(Duration::from_millis(smoothed_ms)),
            min: Some(Duration::from_millis(50)),
            loss_rate,
        }
    }

    /// The window after one loss event (sent just now, so CUBIC is not already recovering).
    fn window_after_loss(mut c: LossTolerant, persistent: bool) -> (u64, u64) {
        let before = c.window();
        let now = Instant::now();
        c.on_congestion_event(now, now, persistent, 1200);
        (before, c.window())
    }

    #[test]
    fn a_loss_without_queueing_delay_keeps_the_window() {
        let (before, after) = window_after_loss(controller(55, 0.05), false);
        assert_eq!(before, after);
    }

    #[test]
    fn a_loss_with_a_queue_building_shrinks_the_window_as_cubic_does() {
        let (before, after) = window_after_loss(controller(80, 0.05), false);
        assert_eq!(after, (before as f64 * 0.7) as u64);
    }

    #[test]
    fn heavy_recent_loss_or_persistent_congestion_shrinks_the_window() {
        let (before, after) = window_after_loss(controller(55, 0.3), false);
        assert!(after < before, "{before} -> {after} at 30% loss");
        let (before, after) = window_after_loss(controller(55, 0.05), true);
        assert!(after < before, "{before} -> {after} in persistent congestion");
    }

    #[test]
    fn the_loss_rate_follows_acks_and_losses() {
        let mut c = controller(55, 0.0);
        for _ in 0..200 {
            c.record(true);
        }
        assert!(c.loss_rate > RANDOM_LOSS_MAX);
        for _ in 0..200 {
            c.record(false);
        }
        assert!(c.loss_rate < 0.01);
    }
}
