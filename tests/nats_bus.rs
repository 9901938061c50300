//! `huddle::cluster::NatsBus` against a real nats-server (JetStream, one server, R1).
//!
//! Each test starts its own `nats-server -js` on a free loopback port with a temporary store
//! directory, and kills it by its PID when done. Without `nats-server` on PATH the tests say so
//! and pass, unless `HUDDLE_REQUIRE_NATS=1`, which makes them fail (CI sets it).
#![cfg(feature = "cluster")]

#[path = "common/nats.rs"]
mod nats;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use huddle::cluster::{
    AppendError, Appended, CasError, ConnectError, CreateError, CtlError, HeartbeatError, LogRef,
    NatsBus, NatsOptions, Record,
};
use nats::NatsServer;

/// Reads `n` records from `feed`, failing after 10 s.
async fn take(feed: &mut huddle::cluster::Feed, n: usize) -> Vec<Record> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), feed.next()).await;
        let record = next.expect("feed stalled").expect("feed ended").expect("feed error");
        out.push(record);
    }
    out
}

/// Asserts that `records` chain (each one's `prev_stream_seq` is the one before) from `from`.
fn assert_chained(records: &[Record], from: u64) {
    let mut prev = from;
    for r in records {
        assert_eq!(r.prev_stream_seq, prev, "chain broken at {}", r.stream_seq);
        assert!(r.stream_seq > prev);
        prev = r.stream_seq;
    }
}

fn bytes(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

#[tokio::test]
async fn connect_checks_constants_and_version() {
    let Some(nats) = NatsServer::start() else { return };
    let bus = nats.bus().await;
    assert!(bus.server_version().starts_with('2'));
    // A second node with the same options is fine: everything is created idempotently.
    nats.bus().await;
    let other = NatsOptions { shards: 2, ..nats.options() };
    let err = NatsBus::connect(other).await.err().expect("a different shard count is refused");
    assert!(matches!(err, ConnectError::Mismatch { .. }), "{err}");
    // Another prefix is another cluster on the same NATS.
    let other = NatsOptions { shards: 2, prefix: "other".into(), ..nats.options() };
    NatsBus::connect(other).await.expect("another prefix");
    let replicated = NatsOptions { replicas: 3, prefix: "r3".into(), ..nats.options() };
    match NatsBus::connect(replicated).await {
        Err(ConnectError::Version { version }) => assert_eq!(version, bus.server_version()),
        // A nats-server of 2.9.21 or later passes the version check; alone, it cannot hold 3
        // replicas. Debian's 2.9.10 must not get that far.
        Err(ConnectError::Setup { .. }) => assert_ne!(bus.server_version(), "2.9.10"),
        Err(e) => panic!("replicas 3 on this server: {e}"),
        Ok(_) => panic!("replicas 3 accepted by a single nats-server"),
    }
}

#[tokio::test]
async fn registry_create_is_exact_under_a_race() {
    let Some(nats) = NatsServer::start() else { return };
    let (a, b) = (nats.bus().await, nats.bus().await);
    const N: usize = 200;
    let race = |bus: NatsBus, who: &'static str| {
        tokio::spawn(async move {
            let mut won = Vec::new();
            for i in 0..N {
                match bus.create(&format!("room {i}@x.y"), bytes(who)).await {
                    Ok(epoch) => won.push((i, epoch)),
                    Err(CreateError::Exists) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            won
        })
    };
    let (wa, wb) = (race(a.clone(), "a"), race(b.clone(), "b"));
    let (wa, wb) = (wa.await.unwrap(), wb.await.unwrap());
    let won: HashSet<usize> = wa.iter().chain(&wb).map(|(i, _)| *i).collect();
    assert_eq!(
        wa.len() + wb.len(),
        N,
        "every key created exactly once (a {}, b {})",
        wa.len(),
        wb.len()
    );
    assert_eq!(won.len(), N);

    // The record and its epoch; replace and delete are compare-and-set on the revision.
    let (i, epoch) = wa.first().or(wb.first()).copied().unwrap();
    let room = format!("room {i}@x.y");
    let got = a.get(&room).await.unwrap().unwrap();
    assert_eq!(got.revision, epoch);
    assert_eq!(a.replace(&room, bytes("x"), epoch + 1_000).await, Err(CasError::WrongRevision));
    assert_eq!(a.delete(&room, epoch + 1_000).await, Err(CasError::WrongRevision));
    a.delete(&room, epoch).await.unwrap();
    assert_eq!(a.get(&room).await.unwrap(), None);
    let reborn = b.create(&room, bytes("again")).await.expect("create over a deleted record");
    assert!(reborn > epoch, "a new incarnation gets a new epoch");
    assert_eq!(a.get("never made").await.unwrap(), None);
}

#[tokio::test]
async fn appends_from_three_connections_feed_every_follower_the_same_sequence() {
    let Some(nats) = NatsServer::start() else { return };
    let buses = [nats.bus().await, nats.bus().await, nats.bus().await];
    let log = buses[0].log("lobby", 1);
    let mut feeds = Vec::new();
    for bus in &buses {
        feeds.push(bus.follow(&log, 0).await.unwrap());
    }
    const PER: usize = 100;
    let mut appenders = Vec::new();
    for (n, bus) in buses.iter().enumerate() {
        let (bus, log) = (bus.clone(), log.clone());
        appenders.push(tokio::spawn(async move {
            // Another room in the same stream, in between: `Nats-Last-Sequence` is per subject,
            // so its entries must not look like gaps in this room's log.
            let other = bus.log("lobby2", 1);
            assert_eq!(other.shard, log.shard);
            for i in 0..PER {
                let id = format!("{n}:0:{i}");
                let a = bus.append(&log, bytes(id.clone()), &id, None).await.unwrap();
                assert!(!a.duplicate);
                bus.append(&other, bytes("noise"), &format!("{id}:other"), None).await.unwrap();
            }
        }));
    }
    for a in appenders {
        a.await.unwrap();
    }
    let mut seen = Vec::new();
    for feed in &mut feeds {
        let records = take(feed, 3 * PER).await;
        assert_chained(&records, 0);
        seen.push(records);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    let entries: HashSet<Bytes> = seen[0].iter().map(|r| r.entry.clone()).collect();
    assert_eq!(entries.len(), 3 * PER, "every append once");
    // Per proposer, the order of its appends is kept.
    for n in 0..3 {
        let mine: Vec<String> = seen[0]
            .iter()
            .map(|r| String::from_utf8(r.entry.to_vec()).unwrap())
            .filter(|e| e.starts_with(&format!("{n}:")))
            .collect();
        let want: Vec<String> = (0..PER).map(|i| format!("{n}:0:{i}")).collect();
        assert_eq!(mine, want);
    }
    // Were `Nats-Last-Sequence` stream-wide, every entry here would look like a gap (the other
    // room's entry precedes it) and be read from the stream. A bus may still read an entry or
    // two in the tail check its (asynchronously reported) first connection triggers.
    for bus in &buses {
        assert!(bus.gap_repairs() <= 3, "{} entries read as gaps", bus.gap_repairs());
    }
    assert_eq!(buses[1].read(&log, 0, 10_000).await.unwrap(), seen[0]);
    let (last, entry) = buses[2].last(&log).await.unwrap().unwrap();
    assert_eq!((last, &entry), (seen[0][3 * PER - 1].stream_seq, &seen[0][3 * PER - 1].entry));
}

#[tokio::test]
async fn append_with_expected_last_conflicts_and_retries_are_duplicates() {
    let Some(nats) = NatsServer::start() else { return };
    let (a, b) = (nats.bus().await, nats.bus().await);
    let log = a.log("cas", 3);
    let first = a.append(&log, bytes("one"), "a:1", Some(0)).await.unwrap();
    assert!(!first.duplicate);
    // Another room's entries in the same stream do not count for this room's log.
    let other = a.log("elsewhere", 3);
    a.append(&other, bytes("x"), "a:x", Some(0)).await.unwrap();
    // B proposes against the empty log it saw: a conflict naming A's entry.
    let stale = b.append(&log, bytes("two"), "b:1", Some(0)).await;
    assert_eq!(stale, Err(AppendError::Conflict { actual_last: first.stream_seq }));
    let second = b.append(&log, bytes("two"), "b:1", Some(first.stream_seq)).await.unwrap();
    // A retries its first append (same bytes, same message id, same expectation): JetStream's
    // duplicate window answers with the original sequence instead of storing it again.
    let retry = a.append(&log, bytes("one"), "a:1", Some(0)).await.unwrap();
    assert_eq!(retry, Appended { stream_seq: first.stream_seq, duplicate: true });
    let retry = a.append(&log, bytes("one"), "a:1", None).await.unwrap();
    assert_eq!(retry, Appended { stream_seq: first.stream_seq, duplicate: true });
    let entries = a.read(&log, 0, 100).await.unwrap();
    let seqs: Vec<u64> = entries.iter().map(|r| r.stream_seq).collect();
    assert_eq!(seqs, [first.stream_seq, second.stream_seq]);
    // An entry above the stream's 64 KiB limit is refused for good, at once.
    let big = Bytes::from(vec![0u8; 70 * 1024]);
    assert!(matches!(a.append(&log, big, "a:big", None).await, Err(AppendError::Rejected { .. })));
}

#[tokio::test]
async fn follow_after_entries_exist_delivers_the_tail_then_live_entries_once() {
    let Some(nats) = NatsServer::start() else { return };
    let bus = nats.bus().await;
    let log = bus.log("late", 9);
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(bus.append(&log, bytes(format!("{i}")), &format!("m{i}"), None).await.unwrap());
    }
    let mut whole = bus.follow(&log, 0).await.unwrap();
    let mut tail = bus.follow(&log, acked[4].stream_seq).await.unwrap();
    let writer = {
        let (bus, log) = (bus.clone(), log.clone());
        tokio::spawn(async move {
            for i in 10..20 {
                bus.append(&log, bytes(format!("{i}")), &format!("m{i}"), None).await.unwrap();
            }
        })
    };
    let all = take(&mut whole, 20).await;
    assert_chained(&all, 0);
    let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let got: Vec<String> =
        all.iter().map(|r| String::from_utf8(r.entry.to_vec()).unwrap()).collect();
    assert_eq!(got, want);
    let rest = take(&mut tail, 15).await;
    assert_chained(&rest, acked[4].stream_seq);
    assert_eq!(rest[..], all[5..]);
    writer.await.unwrap();
    // Nothing more: no entry twice.
    assert!(tokio::time::timeout(Duration::from_millis(200), whole.next()).await.is_err());
    assert!(tokio::time::timeout(Duration::from_millis(200), tail.next()).await.is_err());
    bus.unfollow(tail);
}

#[tokio::test]
async fn a_feed_repairs_a_gap_it_sees_in_nats_last_sequence() {
    let Some(nats) = NatsServer::start() else { return };
    let bus = nats.bus().await;
    let log = bus.log("holes", 2);
    let mut feed = bus.follow(&log, 0).await.unwrap();
    bus.append(&log, bytes("0"), "h0", None).await.unwrap();
    assert_eq!(take(&mut feed, 1).await[0].entry, bytes("0"));
    // The live copies of entries 1 to 3 are lost; entry 4's copy says its predecessor is 3.
    feed.drop_live_copies(3);
    for i in 1..5 {
        bus.append(&log, bytes(format!("{i}")), &format!("h{i}"), None).await.unwrap();
    }
    let records = take(&mut feed, 4).await;
    let got: Vec<Bytes> = records.iter().map(|r| r.entry.clone()).collect();
    assert_eq!(got, ["1", "2", "3", "4"].map(bytes));
    assert_eq!(bus.gap_repairs(), 3);
}

#[tokio::test]
async fn a_feed_repairs_the_copies_core_nats_dropped() {
    let Some(nats) = NatsServer::start() else { return };
    // A reader that does not read fills the feed's buffer (1,024 records), then async-nats's
    // 16-message subscription buffer, which then drops the republished copies: the feed must find
    // the holes by `Nats-Last-Sequence` (and the last ones after the slow-consumer event) and
    // read them from the stream.
    let opts = NatsOptions { subscription_capacity: 16, ..nats.options() };
    let reader = NatsBus::connect(opts).await.unwrap();
    let writer = nats.bus().await;
    let log = writer.log("firehose", 1);
    let mut feed = reader.follow(&log, 0).await.unwrap();
    const N: usize = 2_000;
    for i in 0..N {
        writer.append(&log, bytes(format!("{i}")), &format!("w{i}"), None).await.unwrap();
    }
    let records = take(&mut feed, N).await;
    assert_chained(&records, 0);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.entry, bytes(format!("{i}")));
    }
    let repaired = reader.gap_repairs();
    eprintln!("{repaired} of {N} entries repaired from the stream");
    assert!(repaired > 0, "the subscription dropped nothing: the test did not test repair");
    // Unfollow and follow again from the last record seen while appends go on: nothing lost.
    reader.unfollow(feed);
    let resumed_from = records[N - 1].stream_seq;
    for i in N..N + 20 {
        writer.append(&log, bytes(format!("{i}")), &format!("w{i}"), None).await.unwrap();
    }
    let mut feed = reader.follow(&log, resumed_from).await.unwrap();
    for i in N + 20..N + 40 {
        writer.append(&log, bytes(format!("{i}")), &format!("w{i}"), None).await.unwrap();
    }
    let more = take(&mut feed, 40).await;
    assert_chained(&more, resumed_from);
    for (i, r) in more.iter().enumerate() {
        assert_eq!(r.entry, bytes(format!("{}", N + i)));
    }
}

#[tokio::test]
async fn purge_drops_a_room_log() {
    let Some(nats) = NatsServer::start() else { return };
    let bus = nats.bus().await;
    let log = bus.log("doomed", 1);
    let keep = bus.log("kept", 1);
    for i in 0..3 {
        bus.append(&log, bytes("x"), &format!("d{i}"), None).await.unwrap();
    }
    bus.append(&keep, bytes("y"), "k", None).await.unwrap();
    assert_eq!(bus.purge(&log).await.unwrap(), 3);
    assert_eq!(bus.last(&log).await.unwrap(), None);
    assert!(bus.read(&log, 0, 10).await.unwrap().is_empty());
    assert_eq!(bus.read(&keep, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn snapshots_are_compare_and_set() {
    let Some(nats) = NatsServer::start() else { return };
    let bus = nats.bus().await;
    let log = bus.log("snapped", 4);
    assert_eq!(bus.snapshot(&log).await.unwrap(), None);
    let r1 = bus.put_snapshot(&log, bytes("s1"), None).await.unwrap();
    assert_eq!(bus.put_snapshot(&log, bytes("s1'"), None).await, Err(CasError::WrongRevision));
    let r2 = bus.put_snapshot(&log, bytes("s2"), Some(r1)).await.unwrap();
    assert_eq!(
        bus.put_snapshot(&log, bytes("stale"), Some(r1)).await,
        Err(CasError::WrongRevision)
    );
    let got = bus.snapshot(&log).await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (bytes("s2"), r2));
    let big = Bytes::from(vec![1u8; huddle::cluster::MAX_SNAPSHOT]);
    let r3 = bus.put_snapshot(&log, big.clone(), Some(r2)).await.expect("512 KiB fits");
    assert_eq!(bus.snapshot(&log).await.unwrap().unwrap().value, big);
    let too_big = Bytes::from(vec![1u8; huddle::cluster::MAX_SNAPSHOT + 1]);
    assert_eq!(bus.put_snapshot(&log, too_big, Some(r3)).await, Err(CasError::TooLarge));
    bus.delete_snapshot(&log).await.unwrap();
    assert_eq!(bus.snapshot(&log).await.unwrap(), None);
}

#[tokio::test]
async fn claim_user_returns_the_previous_holder() {
    let Some(nats) = NatsServer::start() else { return };
    let (a, b) = (nats.bus().await, nats.bus().await);
    assert_eq!(a.claim_user("ann@example.org", bytes("s1")).await.unwrap(), None);
    assert_eq!(b.claim_user("ann@example.org", bytes("s2")).await.unwrap(), Some(bytes("s1")));
    assert_eq!(a.claim_user("ann@example.org", bytes("s3")).await.unwrap(), Some(bytes("s2")));
    assert_eq!(a.claim_user("bob", bytes("t1")).await.unwrap(), None);
    // Racing claims: each value replaces exactly one other, so the chain has no fork.
    let mut tasks = Vec::new();
    for (n, bus) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut replaced = Vec::new();
            for i in 0..25 {
                let v = bytes(format!("{n}.{i}"));
                replaced.push(bus.claim_user("race", v).await.unwrap());
            }
            replaced
        }));
    }
    let mut replaced = Vec::new();
    for t in tasks {
        replaced.extend(t.await.unwrap());
    }
    assert_eq!(replaced.iter().filter(|r| r.is_none()).count(), 1, "one claim found it free");
    let distinct: HashSet<_> = replaced.iter().flatten().collect();
    assert_eq!(distinct.len(), 99, "every other claim replaced a different value");
}

#[tokio::test]
async fn node_ids_are_unique_and_a_replaced_node_is_fenced() {
    let Some(nats) = NatsServer::start() else { return };
    let buses = [nats.bus().await, nats.bus().await, nats.bus().await];
    let mut tasks = Vec::new();
    for bus in &buses {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..5 {
                ids.push(bus.claim_node(bytes("hb")).await.unwrap().id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let distinct: HashSet<u16> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 15, "{ids:?}");
    assert!(ids.iter().all(|id| (1..=15).contains(id)));

    // With a short dead_after, a node that stops heartbeating loses its id to the next claimer.
    let short = NatsOptions { dead_after_ms: 300, prefix: "fence".into(), ..nats.options() };
    let old = NatsBus::connect(short.clone()).await.unwrap();
    let new = NatsBus::connect(short).await.unwrap();
    let mut watch = new.watch_nodes().await.unwrap();
    let mut mine = old.claim_node(bytes("old")).await.unwrap();
    old.heartbeat(&mut mine, bytes("old")).await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if watch.live().contains(&mine.id) {
                return;
            }
            watch.changed().await.unwrap();
        }
    });
    live.await.expect("the claim shows as live");
    let other = new.claim_node(bytes("other")).await.unwrap();
    assert_ne!(other.id, mine.id, "a live claim is not taken over");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!watch.live().contains(&mine.id), "silent for dead_after: dead ({:?})", watch.live());
    let taken = new.claim_node(bytes("new")).await.unwrap();
    assert_eq!(taken.id, mine.id, "the dead node's id is free again");
    assert_eq!(old.heartbeat(&mut mine, bytes("old")).await, Err(HeartbeatError::Fenced));
}

#[tokio::test]
async fn a_configured_node_id_is_refused_while_a_live_node_holds_it() {
    let Some(nats) = NatsServer::start() else { return };
    let short = NatsOptions { dead_after_ms: 300, ..nats.options() };
    let (a, b) =
        (NatsBus::connect(short.clone()).await.unwrap(), NatsBus::connect(short).await.unwrap());
    let mut first = a.claim_node_id(7, bytes("a")).await.unwrap();
    assert_eq!(first.id, 7);
    assert_eq!(b.claim_node_id(7, bytes("b")).await, Err(CasError::WrongRevision));
    assert_ne!(b.claim_node(bytes("b")).await.unwrap().id, 7, "a drawn id skips it too");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = b.claim_node_id(7, bytes("b")).await.unwrap();
    assert_eq!(taken.id, 7, "silent for dead_after: its id can be claimed");
    assert_eq!(a.heartbeat(&mut first, bytes("a")).await, Err(HeartbeatError::Fenced));
}

#[tokio::test]
async fn control_requests_reach_the_node_that_listens() {
    let Some(nats) = NatsServer::start() else { return };
    let (a, b) = (nats.bus().await, nats.bus().await);
    let mut listener = b.listen_ctl(7).await.unwrap();
    tokio::spawn(async move {
        while let Some(request) = listener.next().await {
            let mut answer = b"re: ".to_vec();
            answer.extend_from_slice(&request.payload);
            request.respond(answer.into()).await.unwrap();
        }
    });
    let answer = a.ctl_request(7, bytes("kick 42"), Duration::from_secs(1)).await.unwrap();
    assert_eq!(answer, bytes("re: kick 42"));
    let nobody = a.ctl_request(8, bytes("?"), Duration::from_secs(1)).await;
    assert_eq!(nobody, Err(CtlError::NoResponders));
}

#[tokio::test]
async fn acknowledged_appends_survive_a_nats_server_kill() {
    let Some(mut nats) = NatsServer::start() else { return };
    let bus = nats.bus().await;
    let log: LogRef = bus.log("durable", 1);
    let mut feed = bus.follow(&log, 0).await.unwrap();
    let before = bus.append(&log, bytes("before"), "n:1", Some(0)).await.unwrap();
    assert_eq!(take(&mut feed, 1).await[0].entry, bytes("before"));
    nats.kill_and_restart();
    let started = Instant::now();
    let after = bus.append(&log, bytes("after"), "n:2", Some(before.stream_seq)).await;
    let after = after.expect("appends work again after the reconnect");
    eprintln!("first append after the restart took {:?}", started.elapsed());
    let entries = bus.read(&log, 0, 10).await.unwrap();
    let got: Vec<(u64, Bytes)> = entries.into_iter().map(|r| (r.stream_seq, r.entry)).collect();
    assert_eq!(got, [(before.stream_seq, bytes("before")), (after.stream_seq, bytes("after"))]);
    // The feed went on across the restart, without a gap or a repeat.
    let next = take(&mut feed, 1).await;
    assert_eq!(
        (next[0].stream_seq, next[0].prev_stream_seq),
        (after.stream_seq, before.stream_seq)
    );
    // With the server down, an append gives up after the append timeout.
    let impatient = NatsOptions { append_timeout_ms: 500, ..nats.options() };
    let impatient = NatsBus::connect(impatient).await.unwrap();
    nats.kill();
    let started = Instant::now();
    let down = impatient.append(&log, bytes("lost"), "n:3", None).await;
    assert_eq!(down, Err(AppendError::Unavailable));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn an_append_whose_answer_is_late_is_stored_once() {
    let Some(nats) = NatsServer::start() else { return };
    let bus = nats.bus().await;
    let log = bus.log("stalled", 1);
    let first = bus.append(&log, bytes("first"), "s:1", Some(0)).await.unwrap();
    // The server stalls for longer than one try's 1 s wait, with the append already sent: the
    // outcome is unknown until it resumes and stores the entry. The bus must then recognise its
    // entry (by reading the tail or by JetStream's duplicate answer), not store it twice.
    nats.signal("STOP");
    let appending = {
        let (bus, log) = (bus.clone(), log.clone());
        tokio::spawn(async move { bus.append(&log, bytes("second"), "s:2", None).await })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    nats.signal("CONT");
    let second = appending.await.unwrap().expect("stored after the stall");
    assert!(second.duplicate, "an earlier try had stored it");
    let entries = bus.read(&log, 0, 10).await.unwrap();
    let got: Vec<(u64, Bytes)> = entries.into_iter().map(|r| (r.stream_seq, r.entry)).collect();
    assert_eq!(got, [(first.stream_seq, bytes("first")), (second.stream_seq, bytes("second"))]);
}
