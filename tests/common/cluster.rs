//! Several real servers in one process, nodes of one cluster, and the cases every broker must
//! pass (tests/cluster.rs over the in-memory broker, tests/cluster_nats.rs over NATS).
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use huddle::auth::KeySet;
use huddle::certs::generate_in_memory;
use huddle::client::{Client, ClientConfig, ClientError, ClientEvent};
use huddle::server::config::ServerConfig;
use huddle::server::{Broker, Server};
use huddle::wire::{ErrorCode, Event, HistoryAnchor, MessageBody, Priority, RoomConfig, RoomState};
use rustls::pki_types::CertificateDer;
use tokio::sync::oneshot;

use super::common::{cfg, info, keys, now_s, KEY_ID};

/// Members of a full room, `limits.members_per_room` in [`concurrent_joins`].
pub const FULL_AT: usize = 4;

/// Nodes 1, 2, 3... sharing one certificate and one token key, each over its broker.
pub struct Cluster {
    pub addrs: Vec<SocketAddr>,
    ca: CertificateDer<'static>,
    keys: KeySet,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// Starts one node per broker on 127.0.0.1:0.
    pub async fn start(brokers: Vec<Broker>, tweak: impl Fn(&mut ServerConfig)) -> Cluster {
        let tls = generate_in_memory().unwrap();
        let mut c = Cluster {
            addrs: Vec::new(),
            ca: tls.ca,
            keys: keys(),
            stops: Vec::new(),
            tasks: Vec::new(),
        };
        for (i, broker) in brokers.into_iter().enumerate() {
            let mut config = ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                node_id: Some(i as u16 + 1),
                ..Default::default()
            };
            tweak(&mut config);
            let server = Server::bind_clustered(
                config,
                tls.chain.clone(),
                tls.key.clone_key(),
                c.keys.clone(),
                broker,
            )
            .unwrap();
            c.addrs.push(server.local_addr().unwrap());
            let (stop, rx) = oneshot::channel::<()>();
            c.stops.push(stop);
            c.tasks.push(tokio::spawn(async move {
                server
                    .run(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            }));
        }
        c
    }

    /// A client of `user` logged in on node `node` (0-based).
    pub async fn client(&self, node: usize, user: &str) -> Client {
        let now = now_s();
        let token = self.keys.mint(KEY_ID, user, now, now + 3600).unwrap();
        let mut config = ClientConfig::new(self.addrs[node], user, &token);
        config.user_name = format!("{user} name");
        config.roots = vec![self.ca.clone()];
        Client::connect(config).await.unwrap_or_else(|e| panic!("{user} on node {node}: {e}"))
    }

    /// Stops every node and waits for them.
    pub async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Joins `room` on `c`'s node, once that node has learnt of the room: a node learns of a room
/// created on another node when the broker delivers its first log entry (at once in memory,
/// within milliseconds over NATS), and answers `room_does_not_exist` before that.
pub async fn join(c: &Client, room: &str) -> Result<RoomState, ClientError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match c.join_room(room).await {
            Err(e)
                if e.code() == Some(ErrorCode::RoomDoesNotExist)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// The error code of a failed call.
fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

/// The next server event within `secs`.
async fn event(c: &Client, secs: u64) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, c.next_event()).await {
            Ok(Some(ClientEvent::Connecting | ClientEvent::Connected { .. })) => {}
            Ok(Some(ClientEvent::Event(e))) => return e,
            Ok(other) => panic!("{}: expected an event, got {other:?}", c.user_id()),
            Err(_) => panic!("{}: no event within {secs} s", c.user_id()),
        }
    }
}

/// Reads `c`'s events until `user` joined (`joined`) or left room `room`.
async fn member_event(c: &Client, room: &str, user: &str, joined: bool) {
    loop {
        let (r, members) = match event(c, 5).await {
            Event::MembersJoined { room_id, members } if joined => (room_id, members),
            Event::MembersLeft { room_id, members, .. } if !joined => (room_id, members),
            Event::MembersJoined { .. } | Event::MembersLeft { .. } => continue,
            e => panic!("{}: unexpected {e:?}", c.user_id()),
        };
        if r == room && members.iter().any(|m| m.user_id == user) {
            return;
        }
    }
}

/// Members on three nodes, ten messages sent from each node at once: every member gets each
/// message of the others once and in seq order, with the seq and id its sender's ack has;
/// the seqs are 1..=30.
pub async fn fan_out(c: &Cluster) {
    const EACH: usize = 10;
    let members =
        [c.client(0, "alice").await, c.client(1, "bob").await, c.client(2, "carol").await];
    members[0].create_room(info("r"), cfg()).await.unwrap();
    join(&members[1], "r").await.unwrap();
    join(&members[2], "r").await.unwrap();
    async fn send(m: &Client, n: usize) -> Vec<(String, (u64, u64))> {
        let mut acks = Vec::new();
        for i in 0..n {
            let text = format!("{}-{i}", m.user_id());
            let ack = m.send_text("r", &text, Priority::Medium).await.unwrap();
            acks.push((text, (ack.seq, ack.message_id)));
        }
        acks
    }
    let (a, b, c) =
        tokio::join!(send(&members[0], EACH), send(&members[1], EACH), send(&members[2], EACH));
    let acks: HashMap<String, (u64, u64)> = a.into_iter().chain(b).chain(c).collect();
    let seqs: BTreeSet<u64> = acks.values().map(|a| a.0).collect();
    assert_eq!(seqs, (1..=3 * EACH as u64).collect(), "seqs of the acks");
    for m in &members {
        let mut last = 0;
        let mut got = 0;
        while got < 2 * EACH {
            match event(m, 5).await {
                Event::RoomMessage(msg) => {
                    let MessageBody::Text(text) = &msg.body else { panic!("{msg:?}") };
                    assert_ne!(msg.sender, m.user_id(), "{}: its own message", m.user_id());
                    assert!(msg.seq > last, "{}: seq {} after {last}", m.user_id(), msg.seq);
                    assert_eq!(Some(&(msg.seq, msg.message_id)), acks.get(text), "{text}");
                    last = msg.seq;
                    got += 1;
                }
                Event::MembersJoined { .. } => {}
                e => panic!("{}: unexpected {e:?}", m.user_id()),
            }
        }
    }
    for m in &members {
        let page = m.query_history("r", HistoryAnchor::AfterSeq(0), 100).await.unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|msg| msg.seq).collect();
        assert_eq!(seqs, (1..=3 * EACH as u64).collect::<Vec<_>>(), "{}'s history", m.user_id());
    }
}

/// Joins and leaves on one node are seen by members on the others.
pub async fn member_events(c: &Cluster) {
    let alice = c.client(0, "alice").await;
    let bob = c.client(1, "bob").await;
    let carol = c.client(2, "carol").await;
    alice.create_room(info("m"), cfg()).await.unwrap();
    assert_eq!(join(&bob, "m").await.unwrap().member_count, 2);
    member_event(&alice, "m", "bob", true).await;
    assert_eq!(join(&carol, "m").await.unwrap().member_count, 3);
    member_event(&alice, "m", "carol", true).await;
    member_event(&bob, "m", "carol", true).await;
    bob.leave_room("m").await.unwrap();
    member_event(&alice, "m", "bob", false).await;
    member_event(&carol, "m", "bob", false).await;
    let members = carol.query_room_members("m", "", 10).await.unwrap();
    let mut names: Vec<String> = members.members.into_iter().map(|m| m.user_id).collect();
    names.sort();
    assert_eq!(names, ["alice", "carol"]);
}

/// Two nodes create the same ids at once: exactly one create of each id succeeds.
pub async fn concurrent_creates(c: &Cluster) {
    let a = c.client(0, "alice").await;
    let b = c.client(1, "bob").await;
    for i in 0..10 {
        let id = format!("c{i}");
        let (ra, rb) =
            tokio::join!(a.create_room(info(&id), cfg()), b.create_room(info(&id), cfg()));
        let (won, lost) = match (&ra, &rb) {
            (Ok(_), Err(_)) => (ra, rb),
            (Err(_), Ok(_)) => (rb, ra),
            _ => panic!("{id}: {ra:?} and {rb:?}"),
        };
        let won = won.unwrap();
        assert!(won.created && won.member_count == 1, "{id}: {won:?}");
        assert_eq!(code(lost), ErrorCode::RoomAlreadyExists, "{id}");
    }
}

/// Nine users on three nodes join a room with room for three more at once: exactly three
/// get in, seeing counts 2, 3 and 4; the others get `room_full`.
pub async fn concurrent_joins(c: &Cluster) {
    let owner = c.client(0, "owner").await;
    owner.create_room(info("full"), cfg()).await.unwrap();
    let mut joiners = Vec::new();
    for i in 0..9 {
        joiners.push(Arc::new(c.client(i % 3, &format!("j{i}")).await));
    }
    let tasks: Vec<_> = joiners
        .iter()
        .map(|j| {
            let j = j.clone();
            tokio::spawn(async move { join(&j, "full").await })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(st) => counts.push(st.member_count),
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::RoomFull), "{e}"),
        }
    }
    counts.sort();
    assert_eq!(counts, [2, 3, 4], "member counts of the joins that got in");
}

/// A room whose last members leave is destroyed on every node: its id can be created again,
/// on another node, and the new room starts from seq 0 everywhere.
pub async fn destroy_and_create_again(c: &Cluster) {
    let alice = c.client(0, "alice").await;
    let bob = c.client(1, "bob").await;
    let carol = c.client(2, "carol").await;
    alice.create_room(info("d"), RoomConfig::default()).await.unwrap();
    join(&bob, "d").await.unwrap();
    bob.send_text("d", "first life", Priority::Medium).await.unwrap();
    alice.leave_room("d").await.unwrap();
    bob.leave_room("d").await.unwrap();
    // The leave is answered at its proposal: the registry may still hold the room briefly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let st = loop {
        match carol.create_room(info("d"), cfg()).await {
            Ok(st) => break st,
            Err(e) if e.code() == Some(ErrorCode::RoomAlreadyExists) => {
                assert!(tokio::time::Instant::now() < deadline, "the room was never destroyed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(st.created && st.member_count == 1 && st.last_seq == 0, "{st:?}");
    let a = join(&alice, "d").await.unwrap();
    let b = join(&bob, "d").await.unwrap();
    assert_eq!((a.last_seq, b.last_seq), (0, 0));
    assert_eq!((a.member_count, b.member_count), (2, 3));
    let ack = carol.send_text("d", "second life", Priority::Medium).await.unwrap();
    assert_eq!(ack.seq, 1);
    for m in [&alice, &bob] {
        let page = m.query_history("d", HistoryAnchor::AfterSeq(0), 10).await.unwrap();
        let texts: Vec<&MessageBody> = page.messages.iter().map(|m| &m.body).collect();
        assert_eq!(texts, [&MessageBody::Text("second life".into())], "{}", m.user_id());
    }
}
