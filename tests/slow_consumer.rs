//! A member that stops reading is cut off at its queue bound; the room and the others carry on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use huddle::client::{client_endpoint, quic_client_config, Client, ClientEvent};
use huddle::wire::{
    encode_frame, ErrorCode, Event, HistoryAnchor, Login, MessageBody, Priority, Reply, Request,
    RequestFrame, Response, RoomMessage, PROTOCOL_VERSION,
};

/// A server whose outbound queue holds 200 frames (and `max_bytes`) per connection, without a
/// message rate limit, and alice in the room "r" she created.
async fn server_and_room(max_bytes: usize) -> (TestServer, Client) {
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.queue.max_frames = 200;
        c.queue.max_bytes = max_bytes;
    })
    .await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    (server, alice)
}

#[tokio::test]
async fn a_member_that_never_reads_is_cut_off_and_the_others_carry_on() {
    let (server, alice) = server_and_room(512 * 1024).await;
    let bob = server.client("bob").await;
    bob.join_room("r").await.unwrap();

    // Mallory logs in and joins on a raw connection with small windows, then reads nothing.
    let mut qc = quic_client_config(&server.config("mallory")).unwrap();
    let mut tc = quinn::TransportConfig::default();
    tc.stream_receive_window(32_768u32.into());
    tc.receive_window(65_536u32.into());
    tc.max_concurrent_uni_streams(8u32.into());
    qc.transport_config(Arc::new(tc));
    let endpoint = client_endpoint(server.addr).unwrap();
    let conn = endpoint.connect_with(qc, server.addr, "localhost").unwrap().await.unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let login = Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: "mallory".into(),
        user_name: String::new(),
        token: server.token("mallory"),
    };
    for (id, request) in
        [(1, Request::Login(login)), (2, Request::JoinRoom { room_id: "r".into() })]
    {
        send.write_all(&encode_frame(&RequestFrame { request_id: id, request })).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let n = 2_000u64;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            let body = MessageBody::Custom { sub_type: 1, data: vec![i as u8; 1024] };
            alice.send_message("r", body, Priority::Medium, None).await.unwrap();
        }
        alice
    });
    // Bob reads everything, in order, while mallory is cut off.
    let mut next = 1;
    while next <= n {
        match next_event(&bob, 20).await {
            Event::RoomMessage(m) => {
                assert_eq!(m.seq, next);
                next += 1;
            }
            Event::MembersJoined { .. } | Event::MembersLeft { .. } => {}
            e => panic!("{e:?}"),
        }
    }
    let _alice = sender.await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code.into_inner(), u64::from(ErrorCode::SlowConsumer.as_u16()));
        }
        other => panic!("mallory should be closed as a slow consumer, got {other:?}"),
    }
    assert_eq!(server.stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// A client-library member whose application stops reading is cut off at the bound; once the
/// application reads again, the library resumes the same session by itself, tells the
/// application the recovery was incomplete (the queue bound is twice the replay budget), and
/// the messages still go up in seq order, exactly once, up to the newest. Nobody saw it leave.
#[tokio::test]
async fn a_slow_reader_is_cut_off_then_resumes_and_is_told_what_it_missed() {
    let (server, alice) = server_and_room(1024 * 1024).await;
    let mut bc = server.config("bob");
    bc.event_queue = 16;
    bc.stream_receive_window = 16 * 1024;
    let bob = Client::connect(bc).await.unwrap();
    bob.join_room("r").await.unwrap();
    match next_event(&alice, 5).await {
        Event::MembersJoined { .. } => {}
        e => panic!("{e:?}"),
    }

    // Bob's application reads nothing while alice sends, until the server cuts bob off.
    let first = bob.connection();
    let mut last = 0;
    for i in 0..5_000u32 {
        let body = MessageBody::Custom { sub_type: 1, data: i.to_le_bytes().repeat(256) };
        last = alice.send_message("r", body, Priority::Medium, None).await.unwrap().seq;
        if first.close_reason().is_some() {
            break;
        }
    }
    match tokio::time::timeout(Duration::from_secs(5), first.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code.into_inner(), u64::from(ErrorCode::SlowConsumer.as_u16()));
        }
        other => panic!("bob should be closed as a slow consumer, got {other:?}"),
    }
    for i in 0..20u32 {
        let body = MessageBody::Custom { sub_type: 1, data: i.to_le_bytes().to_vec() };
        last = alice.send_message("r", body, Priority::Medium, None).await.unwrap().seq;
    }

    // Bob's application reads again: what was queued, Reconnecting, Resumed, the replay and the
    // rest, in seq order without duplicates, up to alice's last message.
    let (mut seqs, mut reconnecting, mut resumed) = (Vec::new(), None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seqs.last() != Some(&last) {
        match client_event_at(&bob, deadline).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) => {
                seqs.push(m.seq);
            }
            Ok(Some(ClientEvent::Reconnecting { reason })) => {
                reconnecting = Some((seqs.len(), reason));
            }
            Ok(Some(ClientEvent::Resumed { session_resumed, rooms, .. })) => {
                assert!(session_resumed, "the same session continues");
                resumed = Some((seqs.len(), rooms));
            }
            Ok(Some(ClientEvent::Event(_))) => {}
            other => panic!("bob: {other:?} after seqs up to {:?} of {last}", seqs.last()),
        }
    }
    let (at, reason) = reconnecting.expect("a Reconnecting event");
    assert!(reason.contains("slow_consumer") || reason.contains("7000"), "{reason}");
    let (resumed_at, rooms) = resumed.expect("a Resumed event");
    assert!(at <= resumed_at);
    assert_eq!(rooms.len(), 1);
    let r = &rooms[0];
    assert!(r.rejoined);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, exactly once: {seqs:?}");
    let gaps: Vec<_> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    // The server dropped the ~200 frames it held for bob when it cut him off, and replays at
    // most 100 (half the queue bound): the gap is reported, not hidden.
    assert!(!r.recovered, "{r:?}");
    assert_eq!(gaps.len(), 1, "one gap, before the replay: {gaps:?}");
    let after_gap = seqs.iter().filter(|&&s| s > gaps[0][0]).count();
    assert!(after_gap as u32 >= r.replayed, "{r:?}: {after_gap} after the gap");
    assert!(r.replayed > 0 && r.replayed <= 100, "{r:?}");
    assert_eq!(seqs[0], 1);

    // Alice never saw bob leave or join again.
    while let Ok(Some(e)) = client_event(&alice, Duration::from_millis(300)).await {
        if let ClientEvent::Event(Event::MembersLeft { .. } | Event::MembersJoined { .. }) = e {
            panic!("alice saw {e:?}");
        }
    }
    assert_eq!(server.stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// A client whose process stalls (its runtime is blocked, so it neither reads nor acknowledges)
/// while the server keeps sending fills the server's congestion window, then the server's queue
/// for it, and the server closes it as a slow consumer. The CONNECTION_CLOSE still goes out
/// behind the full window (vendor patch quinn-proto 0006): the client learns the close as soon
/// as it runs again, not at its idle timeout.
#[tokio::test]
async fn a_stalled_client_learns_the_slow_consumer_close_as_soon_as_it_runs_again() {
    let (server, alice) = server_and_room(256 * 1024).await;
    let mut bc = server.config("bob");
    bc.stream_receive_window = 64 * 1024;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    // Bob runs on a runtime of his own, on his own thread, which the test blocks.
    let bob = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let bob = Client::connect(bc).await.unwrap();
            bob.join_room("r").await.unwrap();
            let conn = bob.connection();
            ready_tx.send(()).unwrap();
            resume_rx.recv().unwrap();
            let resumed = std::time::Instant::now();
            let closed = tokio::time::timeout(Duration::from_secs(40), conn.closed()).await;
            (closed, resumed.elapsed())
        })
    });
    ready_rx.await.unwrap();
    match next_event(&alice, 5).await {
        Event::MembersJoined { .. } => {}
        e => panic!("{e:?}"),
    }

    let stats = server.stats.clone();
    let slow = move || stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..5_000u32 {
        let body = MessageBody::Custom { sub_type: 1, data: i.to_le_bytes().repeat(256) };
        alice.send_message("r", body, Priority::Medium, None).await.unwrap();
        if slow() > 0 {
            break;
        }
    }
    assert_eq!(slow(), 1, "the server cut bob off");
    // Bob runs again within the server's closing period (three PTOs): the server answers his
    // packets with the close again. Later, they would draw a stateless reset, which quinn lets
    // replace the close reason bob has not yet reported (left as it is; see vendor/README.md).
    resume_tx.send(()).unwrap();

    let (closed, took) = tokio::task::spawn_blocking(move || bob.join().unwrap()).await.unwrap();
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code.into_inner(), u64::from(ErrorCode::SlowConsumer.as_u16()));
        }
        other => panic!("bob should learn the slow_consumer close, got {other:?} after {took:?}"),
    }
    assert!(took < Duration::from_secs(2), "bob learned the close {took:?} after running again");
}

#[tokio::test]
async fn three_pipelined_history_pages_of_big_messages_do_not_make_a_slow_consumer() {
    // The default queue (8 MiB) and message limit (32 KiB): a page of 100 messages of 30,000
    // bytes would be about 3 MB, and three at once would pass the queue bound.
    const SENT: u64 = 300;
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        // All 300 (9 MB) kept: the default keeps 4 MiB of a room's history.
        c.limits.history_max_bytes = 16 << 20;
    })
    .await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    for i in 0..SENT {
        let body = MessageBody::Custom { sub_type: 1, data: vec![i as u8; 30_000] };
        alice.send_message("r", body, Priority::Medium, None).await.unwrap();
    }

    // Bob asks for three pages at once on a raw connection and reads nothing for a while.
    let endpoint = client_endpoint(server.addr).unwrap();
    let qc = quic_client_config(&server.config("bob")).unwrap();
    let conn = endpoint.connect_with(qc, server.addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let login = Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: "bob".into(),
        user_name: String::new(),
        token: server.token("bob"),
    };
    write_request(&mut send, 1, Request::Login(login)).await;
    write_request(&mut send, 2, Request::JoinRoom { room_id: "r".into() }).await;
    for (id, anchor) in [
        (3, HistoryAnchor::Latest),
        (4, HistoryAnchor::BeforeSeq(201)),
        (5, HistoryAnchor::BeforeSeq(101)),
    ] {
        let request = Request::QueryHistory { room_id: "r".into(), anchor, count: 100 };
        write_request(&mut send, id, request).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut pages = Vec::new();
    for id in 1..=5 {
        let r = tokio::select! {
            r = read_response(&mut recv) => r,
            e = conn.closed() => panic!("closed before answer {id}: {e}"),
        };
        assert_eq!(r.request_id, id, "{:?}", r.reply);
        if let Reply::Ok(Response::History { messages, has_more, .. }) = r.reply {
            pages.push((messages, has_more));
        }
    }
    assert_eq!(pages.len(), 3);
    let page_bytes = |p: &Vec<RoomMessage>| {
        p.iter().map(|m| encode_frame(&Event::RoomMessage(m.clone())).len()).sum::<usize>()
    };
    for (messages, has_more) in &pages {
        assert!(page_bytes(messages) <= 1024 * 1024, "{} bytes", page_bytes(messages));
        assert!(!messages.is_empty() && messages.len() < 100 && *has_more, "{}", messages.len());
    }
    // The pages hold the messages nearest their anchors.
    assert_eq!(pages[0].0.last().unwrap().seq, SENT);
    assert_eq!(pages[1].0.last().unwrap().seq, 200);
    assert_eq!(pages[2].0.last().unwrap().seq, 100);
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    assert_eq!(server.stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed), 0);
    drop(alice);
}
