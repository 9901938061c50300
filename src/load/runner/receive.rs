//! The receiving side of a fan-out: each member's receiver checks and counts what arrives
//! (directly from its connection's tasks where the backend can, from a task otherwise), and
//! members that stop reading (`--stalled-members`) are watched apart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Member, Run, Tally};
use crate::load::args::LoadConfig;
use crate::load::link::{Delivery, DirectFn, Inbox, Link, Session, StallOutcome};
use crate::load::report::{StalledSummary, Summary};
use crate::load::stats::{decode_body, Counters, OrderCheck, Verdict};
use crate::wire::ErrorCode;

/// A stalled member's task: how many deliveries it read, and what became of its connection.
pub(super) type StalledTask = JoinHandle<(u64, StallOutcome)>;

/// Starts every member's receiving side: a stalled reader for those that stop reading, a
/// receiver (direct where the inbox can, a task otherwise) for the others.
pub(super) fn start_receivers<L: Link>(
    cfg: &LoadConfig,
    members: &mut [Member<L>],
    run: &Run,
) -> (Vec<ReceiverTask>, Vec<StalledTask>) {
    let mut receivers = Vec::with_capacity(members.len());
    let mut stalled = Vec::new();
    let stall_at = run.tally.t0 + Duration::from_secs_f64(cfg.warmup_s);
    for m in members.iter_mut() {
        let Some(inbox) = m.inbox.take() else { continue };
        if cfg.is_stalled(m.room, m.index) {
            stalled.push(start_stalled(m.link.clone(), inbox, stall_at, run.stop.subscribe()));
            continue;
        }
        let p = run.tally.p;
        // Its own publisher index, if it publishes: a system that echoes (Redis) sends it back.
        let own = (m.index < p).then_some((m.room * p + m.index) as u32);
        let r = Receiving {
            // One track per (room, publisher): room slot `i` of `rooms` holds publishers
            // i * p .. i * p + p.
            order: OrderCheck::new(p * m.rooms.len(), run.max_k),
            got: Received {
                deliveries: 0,
                measured: 0,
                duplicates: 0,
                out_of_order: 0,
                foreign: 0,
                echoes: 0,
                sessions: SessionTally::default(),
                // Someone else publishes in one of its rooms.
                expects: p > 1 || own.is_none() || m.rooms.len() > 1,
            },
            receiver: receivers.len(),
            own,
            rooms: m.rooms.clone(),
            seen_changes: vec![false; run.tally.changes.len()],
            tally: run.tally.clone(),
            ended: false,
        };
        receivers.push(start_receiver(inbox, r, run));
    }
    (receivers, stalled)
}

/// A member that reads (and discards) until the end of the warm-up, then never again; then
/// watches its connection until `stop`.
fn start_stalled<L: Link>(
    link: Arc<L>,
    mut inbox: L::Inbox,
    stall_at: Instant,
    mut stop: watch::Receiver<bool>,
) -> StalledTask {
    tokio::spawn(async move {
        let mut read = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(stall_at) => break,
                _ = stop.changed() => break,
                e = inbox.next() => match e {
                    Some(Delivery::Message { .. }) => read += 1,
                    Some(_) => {}
                    None => break,
                },
            }
        }
        let outcome = link.watch_stalled(stop).await;
        drop(inbox);
        (read, outcome)
    })
}

/// Hands `r` the deliveries of `inbox`: straight from the connection's own tasks where the
/// backend can (Huddle), from a receiver task otherwise.
fn start_receiver<I: Inbox>(inbox: I, r: Receiving, run: &Run) -> ReceiverTask {
    // Direct: the runner takes what was counted at the end, and later deliveries find nothing
    // to count.
    let shared = Arc::new(Mutex::new(Some(r)));
    let sink = shared.clone();
    let direct: DirectFn = Box::new(move |d| {
        if let Some(r) = sink.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            r.on(d);
        }
    });
    let (mut inbox, mut r) = match inbox.direct(direct) {
        Ok(()) => return ReceiverTask::Direct(shared),
        // Refused: the function was dropped without being called, so the receiver is still
        // there to take back.
        Err(inbox) => {
            let r = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
            (inbox, r.expect("a refused direct function never runs"))
        }
    };
    let (deadline, mut stop) = (run.deadline, run.stop.subscribe());
    ReceiverTask::Task(tokio::spawn(async move {
        while !r.ended {
            let ev = tokio::select! {
                e = inbox.next() => e,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.changed() => break,
            };
            match ev {
                Some(d) => r.on(d),
                None => break,
            }
        }
        r.got
    }))
}

/// Tells the receivers to stop. Direct receivers stop counting here, as the receiver tasks do
/// on `stop`: returns what the direct ones counted, and the tasks to await.
pub(super) fn stop_receivers(
    run: &Run,
    receivers: Vec<ReceiverTask>,
) -> (Vec<Received>, Vec<JoinHandle<Received>>) {
    let _ = run.stop.send(true);
    let mut received = Vec::with_capacity(receivers.len());
    let mut tasks = Vec::new();
    for h in receivers {
        match h {
            ReceiverTask::Task(h) => tasks.push(h),
            ReceiverTask::Direct(shared) => {
                let r = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
                received.extend(r.map(|r| r.got));
            }
        }
    }
    (received, tasks)
}

/// What became of the members that stopped reading.
pub(super) async fn count_stalled(cfg: &LoadConfig, stalled: Vec<StalledTask>) -> StalledSummary {
    let mut st = StalledSummary { stopped_at_s: cfg.warmup_s, ..StalledSummary::default() };
    let mut first_closes = Vec::new();
    for h in stalled {
        let Ok((read, outcome)) = h.await else { continue };
        st.members += 1;
        st.deliveries_before_stop += read;
        st.reconnected += u64::from(outcome.reconnected > 0);
        match outcome.closes.first() {
            None => st.never_closed += 1,
            Some((after, ..)) => first_closes.push(*after),
        }
        let slow = u64::from(ErrorCode::SlowConsumer.as_u16());
        if outcome.closes.iter().any(|c| c.1 == Some(slow)) {
            st.closed_slow_consumer += 1;
        } else if !outcome.closes.is_empty() {
            st.closed_other += 1;
        }
        for (_, code, reason) in outcome.closes {
            let code = code.map_or("-".to_string(), |c| c.to_string());
            *st.close_reasons.entry(format!("{code}: {reason}")).or_default() += 1;
        }
    }
    first_closes.sort_by(f64::total_cmp);
    st.first_close_after_s = first_closes.first().copied();
    st.median_close_after_s = first_closes.get(first_closes.len() / 2).copied();
    st.last_close_after_s = first_closes.last().copied();
    st
}

/// A member's receiver: a task reading its inbox, or counts its connection's tasks update.
pub(super) enum ReceiverTask {
    Task(JoinHandle<Received>),
    Direct(Arc<Mutex<Option<Receiving>>>),
}

/// What one receiver counted.
pub(super) struct Received {
    deliveries: u64,
    measured: u64,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
    echoes: u64,
    sessions: SessionTally,
    /// Another member publishes in one of its rooms: it has deliveries to expect.
    pub(super) expects: bool,
}

impl Received {
    /// Adds what it counted to `s`.
    pub(super) fn add_to(self, s: &mut Summary) {
        s.deliveries += self.deliveries;
        s.measured_deliveries += self.measured;
        s.duplicates += self.duplicates;
        s.out_of_order += self.out_of_order;
        s.foreign_messages += self.foreign;
        s.own_echoes += self.echoes;
        self.sessions.add_to(s);
    }
}

/// One member's receiving side: checks and counts each delivery.
pub(super) struct Receiving {
    order: OrderCheck,
    got: Received,
    /// Which shard of the shared latency histogram it records into.
    receiver: usize,
    /// Its own publisher index, if it publishes.
    own: Option<u32>,
    /// The rooms it receives from.
    rooms: Vec<usize>,
    tally: Arc<Tally>,
    /// The connection is gone for good: nothing more will come.
    ended: bool,
    /// The address changes after which it has had a delivery.
    seen_changes: Vec<bool>,
}

impl Receiving {
    fn on(&mut self, d: Delivery) {
        let (r, t) = (&mut self.got, &*self.tally);
        let (room, body) = match d {
            Delivery::Message { room, body } => (room, body),
            Delivery::Session(e) => return r.sessions.on_session(e),
            Delivery::Lost(reason) => {
                self.ended = true;
                return r.sessions.on_lost(reason);
            }
        };
        let arrival_ns = t.t0.elapsed().as_nanos() as u64;
        let stamp = body.as_deref().and_then(decode_body);
        // The publisher's room must be one of this member's and the one the message came in.
        let p = t.p;
        let slot = stamp.and_then(|s| {
            let q = s.publisher as usize / p;
            let i = self.rooms.iter().position(|&x| x == q)?;
            (t.room_ids[q] == room).then_some((s, i))
        });
        let Some((s, i)) = slot else {
            r.foreign += 1;
            return;
        };
        if self.own == Some(s.publisher) {
            r.echoes += 1;
            return;
        }
        match self.order.check(i * p + s.publisher as usize % p, s.k) {
            Verdict::Invalid => {
                r.foreign += 1;
                return;
            }
            Verdict::Duplicate => {
                r.duplicates += 1;
                return;
            }
            Verdict::OutOfOrder => r.out_of_order += 1,
            Verdict::InOrder => {}
        }
        r.deliveries += 1;
        Counters::add(&t.counters.deliveries, 1);
        let latency_us = arrival_ns.saturating_sub(s.intended_ns) / 1000;
        t.timeline.record(arrival_ns, latency_us);
        t.outages.record(s.intended_ns, arrival_ns);
        if !t.changes.is_empty() {
            t.changes.record(&mut self.seen_changes, s.intended_ns, arrival_ns);
        }
        if s.intended_ns >= t.warmup_ns && s.intended_ns < t.window_end_ns {
            r.measured += 1;
            t.latency.record(self.receiver, latency_us);
        }
    }
}

/// What a member's session went through: lost connections, resumptions, replayed messages.
#[derive(Debug, Default)]
pub(super) struct SessionTally {
    reconnects: u64,
    resumed: u64,
    recovered: u64,
    ended: u64,
    reasons: BTreeMap<String, u64>,
    reconnecting: bool,
}

impl SessionTally {
    /// Notes what an idle member's inbox hands it: session events and lost connections.
    pub(super) fn on(&mut self, d: Delivery) {
        match d {
            Delivery::Message { .. } => {}
            Delivery::Session(e) => self.on_session(e),
            Delivery::Lost(reason) => self.on_lost(reason),
        }
    }

    /// Notes a session event.
    fn on_session(&mut self, e: Session) {
        match e {
            Session::Reconnecting { reason } => {
                self.reconnects += 1;
                self.reconnecting = true;
                self.count("lost: ", &reason);
            }
            Session::Resumed { replayed } => {
                self.resumed += 1;
                self.reconnecting = false;
                self.recovered += replayed;
            }
            Session::Disconnected { code, reason } => {
                // A loss the library did not try to recover from still needed a reconnect.
                if !self.reconnecting {
                    self.reconnects += 1;
                }
                self.ended += 1;
                self.count(&format!("ended ({code:?}): "), &reason);
            }
            Session::Other => {}
        }
    }

    /// Notes a connection lost for good (Redis, NATS: no resumption).
    fn on_lost(&mut self, reason: String) {
        self.reconnects += 1;
        self.ended += 1;
        self.count("lost: ", &reason);
    }

    /// Counts a reason with its numbers taken out ("stalled: no data for N ms"), so that a
    /// thousand stalls are one line of the report, not a thousand.
    fn count(&mut self, prefix: &str, reason: &str) {
        let mut key = prefix.to_string();
        let mut digits = false;
        for c in reason.chars() {
            if !c.is_ascii_digit() {
                key.push(c);
            } else if !digits {
                key.push('N');
            }
            digits = c.is_ascii_digit();
        }
        *self.reasons.entry(key).or_default() += 1;
    }

    pub(super) fn add_to(self, s: &mut Summary) {
        s.reconnects += self.reconnects;
        s.resumed += self.resumed;
        s.recovered_messages += self.recovered;
        s.disconnects += self.ended;
        for (k, v) in self.reasons {
            *s.disconnect_reasons.entry(k).or_default() += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_without_their_numbers() {
        let mut t = SessionTally::default();
        t.count("lost: ", "stalled: no data for 2630 ms");
        t.count("lost: ", "stalled: no data for 4110 ms");
        t.count("ended (Some(2008)): ", "closed by server with code 2008 (session_resumed)");
        let want = [
            ("ended (Some(2008)): closed by server with code N (session_resumed)", 1),
            ("lost: stalled: no data for N ms", 2),
        ];
        let got: Vec<_> = t.reasons.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, want);
    }
}
