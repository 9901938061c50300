//! Fan-out timing: a probe that rides along with the queued copies of one room message.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

/// Times one fan-out: every recipient's queued copy holds a clone, and the writer drops it once
/// the copy is handed to QUIC (a copy that is dropped instead lets go of it then). When the
/// last clone goes, the time since the fan-out began is recorded.
pub(crate) struct FanoutProbe {
    start: Instant,
    /// `None` once discarded: nothing is recorded.
    histogram: Option<Histogram>,
}

impl FanoutProbe {
    /// A probe of a fan-out starting now, recorded into `histogram`.
    pub(crate) fn start(histogram: Histogram) -> FanoutProbe {
        FanoutProbe { start: Instant::now(), histogram: Some(histogram) }
    }

    /// Records nothing for a fan-out that queued no copy (a room with only its sender, say):
    /// a zero would pull the histogram towards fan-outs that never happened. Only the dispatcher
    /// may still hold the probe then, since every clone went into a queue or was dropped.
    pub(crate) fn discard(probe: Arc<FanoutProbe>) {
        if let Some(mut p) = Arc::into_inner(probe) {
            p.histogram = None;
        }
    }
}

impl Drop for FanoutProbe {
    fn drop(&mut self) {
        if let Some(h) = &self.histogram {
            h.observe(self.start.elapsed().as_secs_f64());
        }
    }
}
