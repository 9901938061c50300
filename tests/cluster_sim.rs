//! Three cores in cluster mode (`Bus::External`) over one in-memory room log, driven by a
//! seeded scheduler that interleaves requests from sessions on different cores with the bus's
//! work (appends, registry answers, record deliveries). No faults yet: every append succeeds and
//! every record reaches every core in its room's order, at a time the scheduler picks.
//!
//! Checked: every core holds every room with the same members, seqs and history; seqs are
//! contiguous; each acked message is in history once and reaches every member that stayed, once
//! and in order, on every core; a retried client_msg_id gets the first ack; `room_full` and
//! `room_already_exists` are exact under concurrent requests from the three cores. A failing run
//! prints its seed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use huddle::auth::KeySet;
use huddle::core::{
    Bus, BusEvent, BusOp, ConnId, Core, CreateError, Limits, LogRef, NodeRef, Now, ReplicaState,
};
use huddle::fuzzing::harness::Decoded;
use huddle::wire::{
    AttributeOp, ErrorCode, Event, Login, MessageBody, Priority, Reply, Request, Response,
    RoomConfig, RoomInfo, RoomMessage, PROTOCOL_VERSION,
};

const NODES: usize = 3;
const KID: &str = "k1";
const SECRET: &[u8] = b"cluster-sim-secret-0123456789";
const START_UNIX_MS: u64 = 1_700_000_000_000;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The in-memory bus: each room incarnation's log, the registry, and what each core asked for
/// and has not been carried out yet (in the order it asked, as the real broker keeps it).
#[derive(Default)]
struct Broker {
    logs: BTreeMap<LogRef, Vec<(u64, Bytes)>>,
    registry: HashMap<Arc<str>, u64>,
    next_seq: u64,
    next_epoch: u64,
    asked: [VecDeque<BusOp>; NODES],
    /// Per core and log: how many records were delivered.
    delivered: [HashMap<LogRef, usize>; NODES],
}

/// What a request got.
#[derive(Clone, Debug)]
struct Answer {
    request: Request,
    reply: Option<Reply>,
}

struct Sim {
    seed: u64,
    rng: Rng,
    keys: KeySet,
    nodes: Vec<Core>,
    broker: Broker,
    now: Now,
    conn_node: HashMap<ConnId, usize>,
    conn_user: HashMap<ConnId, String>,
    next_request: u32,
    requests: BTreeMap<(ConnId, u32), Answer>,
    /// Room messages each connection got, per room id, in arrival order.
    got: HashMap<(ConnId, String), Vec<RoomMessage>>,
}

impl Sim {
    fn new(seed: u64, limits: Limits) -> Sim {
        let mut keys = KeySet::new();
        assert!(keys.insert(KID, SECRET));
        let nodes = (0..NODES)
            .map(|i| {
                let id = i as u16 + 1;
                let node = NodeRef { id, incarnation: 1000 + i as u64 };
                let id_base = (u64::from(id) << 43) | 1;
                Core::with_bus(limits.clone(), keys.clone(), id_base, Bus::External { node })
            })
            .collect();
        Sim {
            seed,
            rng: Rng::new(seed),
            keys,
            nodes,
            broker: Broker::default(),
            now: Now { mono_ms: 1_000, unix_ms: START_UNIX_MS },
            conn_node: HashMap::new(),
            conn_user: HashMap::new(),
            next_request: 1,
            requests: BTreeMap::new(),
            got: HashMap::new(),
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!("cluster_sim seed {}: {what}", self.seed)
    }

    fn tick(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_ms += ms;
    }

    /// Logs `user` in on `node` with connection `conn`.
    fn login(&mut self, node: usize, conn: ConnId, user: &str) {
        let iat = START_UNIX_MS / 1000;
        let token = self.keys.mint(KID, user, iat, iat + 3600).expect("a token");
        let login = Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.into(),
            user_name: format!("{user} name"),
            token,
        };
        self.conn_node.insert(conn, node);
        self.conn_user.insert(conn, user.into());
        let now = self.now;
        let outcome = self.nodes[node].handle_login(now, conn, 0, login, [7; 16]);
        if !outcome.logged_in() {
            self.fail(format!("{user} not logged in: {outcome:?}"));
        }
        self.collect(node);
    }

    /// Sends a request on a connection; its answer is recorded when it comes.
    fn request(&mut self, conn: ConnId, request: Request) -> (ConnId, u32) {
        let node = self.conn_node[&conn];
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert((conn, id), Answer { request: request.clone(), reply: None });
        let now = self.now;
        self.nodes[node].handle_request(now, conn, id, request);
        self.collect(node);
        (conn, id)
    }

    fn reply(&self, req: (ConnId, u32)) -> Option<&Reply> {
        self.requests.get(&req).and_then(|a| a.reply.as_ref())
    }

    /// Takes a core's outputs: replies and room messages to the connections, bus requests to
    /// the broker.
    fn collect(&mut self, node: usize) {
        while let Some(out) = self.nodes[node].poll_output() {
            match Decoded::new(out) {
                Decoded::Bus(op) => self.broker.asked[node].push_back(op),
                Decoded::Reply { conn, frame } => {
                    if frame.request_id == 0 {
                        continue;
                    }
                    let Some(a) = self.requests.get_mut(&(conn, frame.request_id)) else {
                        self.fail(format!("a reply nobody asked for: {frame:?}"));
                    };
                    if a.reply.is_some() {
                        panic!("cluster_sim seed {}: a second reply to {:?}", self.seed, a.request);
                    }
                    a.reply = Some(frame.reply);
                }
                Decoded::Broadcast { to, except, event: Event::RoomMessage(m), .. } => {
                    for conn in to.iter().filter(|c| Some(**c) != except) {
                        if self.conn_node.get(conn) != Some(&node) {
                            self.fail(format!("node {node} sent to {conn}, not its connection"));
                        }
                        self.got.entry((*conn, m.room_id.clone())).or_default().push(m.clone());
                    }
                }
                Decoded::Push { conn, event: Event::RoomMessage(m), .. } => {
                    self.got.entry((conn, m.room_id.clone())).or_default().push(m);
                }
                _ => {}
            }
        }
        if let Err(e) = self.nodes[node].check_invariants() {
            self.fail(format!("node {node}: {e}"));
        }
    }

    /// Carries out the oldest request of a core to the bus, if it has one.
    fn carry(&mut self, node: usize) -> bool {
        let Some(op) = self.broker.asked[node].pop_front() else { return false };
        let b = &mut self.broker;
        match op {
            BusOp::Append { room, entry, .. } => {
                b.next_seq += 1;
                let log = b.logs.entry(room).or_default();
                log.push((b.next_seq, entry));
            }
            BusOp::Create { req, room_id } => {
                let result = if b.registry.contains_key(&room_id) {
                    Err(CreateError::Exists)
                } else {
                    b.next_epoch += 1;
                    b.registry.insert(room_id.clone(), b.next_epoch);
                    b.logs.insert(LogRef { room_id, epoch: b.next_epoch }, Vec::new());
                    Ok(b.next_epoch)
                };
                let now = self.now;
                self.nodes[node].handle_bus(now, BusEvent::Created { req, result });
                self.collect(node);
            }
            BusOp::Remove { room } => {
                if b.registry.get(&room.room_id) == Some(&room.epoch) {
                    b.registry.remove(&room.room_id);
                }
            }
            BusOp::Repair { room, from_stream_seq } => {
                let log = b.logs.get(&room).map(Vec::as_slice).unwrap_or_default();
                let at = log.iter().position(|(s, _)| *s >= from_stream_seq).unwrap_or(log.len());
                b.delivered[node].insert(room, at);
            }
        }
        true
    }

    /// The (core, log) pairs with records not yet delivered.
    fn deliverable(&self) -> Vec<(usize, LogRef)> {
        let mut out = Vec::new();
        for node in 0..NODES {
            for (room, log) in &self.broker.logs {
                if self.broker.delivered[node].get(room).copied().unwrap_or(0) < log.len() {
                    out.push((node, room.clone()));
                }
            }
        }
        out
    }

    /// Delivers a core the next record of a log.
    fn deliver(&mut self, node: usize, room: LogRef) {
        let at = self.broker.delivered[node].get(&room).copied().unwrap_or(0);
        let log = &self.broker.logs[&room];
        let (seq, entry) = log[at].clone();
        let prev = if at == 0 { 0 } else { log[at - 1].0 };
        self.broker.delivered[node].insert(room.clone(), at + 1);
        let now = self.now;
        let event = BusEvent::Record { room, stream_seq: seq, prev_stream_seq: prev, entry };
        self.nodes[node].handle_bus(now, event);
        self.collect(node);
    }

    /// One step of bus work picked at random; false when there was none.
    fn bus_step(&mut self) -> bool {
        let carriers: Vec<usize> =
            (0..NODES).filter(|n| !self.broker.asked[*n].is_empty()).collect();
        let deliveries = self.deliverable();
        let total = carriers.len() + deliveries.len();
        if total == 0 {
            return false;
        }
        let pick = self.rng.below(total);
        if pick < carriers.len() {
            self.carry(carriers[pick]);
        } else {
            let (node, room) = deliveries[pick - carriers.len()].clone();
            self.deliver(node, room);
        }
        self.tick(1);
        true
    }

    /// Runs the bus until nothing is left to do, then the timers (presence flushes, delayed
    /// destroys), until all is quiet.
    fn settle(&mut self) {
        for _ in 0..10 {
            while self.bus_step() {}
            self.tick(2_000);
            let now = self.now;
            for node in 0..NODES {
                self.nodes[node].handle_timeout(now);
                self.collect(node);
            }
            if self.broker.asked.iter().all(VecDeque::is_empty) && self.deliverable().is_empty() {
                return;
            }
        }
        self.fail("the bus did not settle".into());
    }

    /// Every core holds the same replicas, with contiguous seqs.
    fn replicas_agree(&self) -> BTreeMap<String, ReplicaState> {
        let ids = self.nodes[0].room_ids();
        let mut states = BTreeMap::new();
        for (node, core) in self.nodes.iter().enumerate() {
            if core.room_ids() != ids {
                self.fail(format!("node {node} holds {:?}, node 0 {ids:?}", core.room_ids()));
            }
        }
        for id in ids {
            let first = self.nodes[0].replica(&id).expect("a held room");
            for (node, core) in self.nodes.iter().enumerate().skip(1) {
                let other = core.replica(&id).expect("a held room");
                if other != first {
                    self.fail(format!("room {id}: node {node} {other:?}\nnode 0 {first:?}"));
                }
            }
            let seqs: Vec<u64> = first.history.iter().map(|m| m.seq).collect();
            let want: Vec<u64> = (1..=first.last_seq).collect();
            if seqs != want {
                self.fail(format!("room {id}: history seqs {seqs:?}"));
            }
            for m in &first.history {
                if m.message_id >= 1 << 53 {
                    self.fail(format!("message id {} not below 2^53", m.message_id));
                }
            }
            states.insert(id, first);
        }
        states
    }

    fn ok(&self, req: (ConnId, u32)) -> Option<&Response> {
        match self.reply(req) {
            Some(Reply::Ok(r)) => Some(r),
            _ => None,
        }
    }

    fn code(&self, req: (ConnId, u32)) -> Option<u16> {
        match self.reply(req) {
            Some(Reply::Err(e)) => Some(e.code),
            _ => None,
        }
    }
}

fn text(s: String) -> MessageBody {
    MessageBody::Text(s)
}

fn send(room: &str, body: String, client_msg_id: String) -> Request {
    Request::SendRoomMessage {
        room_id: room.into(),
        body: text(body),
        priority: Priority::Medium,
        client_msg_id: Some(client_msg_id),
    }
}

fn create(room: &str) -> Request {
    let info = RoomInfo { room_id: room.into(), room_name: format!("{room} name") };
    Request::CreateRoom { info, config: RoomConfig::default() }
}

fn enter(room: &str) -> Request {
    let info = RoomInfo { room_id: room.into(), room_name: String::new() };
    Request::EnterRoom { info, config: RoomConfig::default() }
}

/// An enter whose room, once made, outlives the run when left empty (its history is checked).
fn enter_kept(room: &str) -> Request {
    let info = RoomInfo { room_id: room.into(), room_name: String::new() };
    Request::EnterRoom {
        info,
        config: RoomConfig { destroy_delay_s: 3600, attributes: Vec::new() },
    }
}

/// Stayers (one per core) are in room `r0` from the start to the end; movers join, leave,
/// enter `r1` and send, while the bus interleaves. Every replica must agree and every acked
/// message must reach every stayer once and in order.
fn run_mixed(seed: u64) {
    let mut sim = Sim::new(seed, Limits { rate_limit_per_s: 0, ..Limits::default() });
    let stayers: Vec<ConnId> = (0..NODES as u64).map(|i| i + 1).collect();
    let movers: Vec<ConnId> = (0..6).map(|i| 10 + i).collect();
    for (i, conn) in stayers.iter().enumerate() {
        sim.login(i, *conn, &format!("s{i}"));
    }
    for (i, conn) in movers.iter().enumerate() {
        sim.login(i % NODES, *conn, &format!("m{i}"));
    }
    let made = sim.request(stayers[0], create("r0"));
    sim.settle();
    if !matches!(sim.ok(made), Some(Response::RoomEntered(r)) if r.created) {
        sim.fail(format!("r0 not created: {:?}", sim.reply(made)));
    }
    let joins: Vec<_> = stayers[1..].iter().map(|c| sim.request(*c, enter("r0"))).collect();
    sim.settle();
    for j in joins {
        if !matches!(sim.ok(j), Some(Response::RoomEntered(_))) {
            sim.fail(format!("stayer join: {:?}", sim.reply(j)));
        }
    }
    let mut sends: Vec<((ConnId, u32), String)> = Vec::new();
    let mut next_msg = 0;
    for _ in 0..400 {
        if sim.rng.below(3) == 0 {
            let who = if sim.rng.below(2) == 0 {
                stayers[sim.rng.below(stayers.len())]
            } else {
                movers[sim.rng.below(movers.len())]
            };
            let room = if sim.rng.below(3) == 0 { "r1" } else { "r0" };
            let key = format!("k{}", sim.rng.below(4));
            let request = match sim.rng.below(13) {
                0 => enter_kept(room),
                10 => Request::SetRoomAttributes {
                    room_id: room.into(),
                    attributes: vec![(key, format!("{who}"))],
                    is_force: sim.rng.below(2) == 0,
                    is_update_owner: true,
                    is_delete_after_owner_left: sim.rng.below(2) == 0,
                },
                11 => Request::RoomAttributesBatch {
                    room_id: room.into(),
                    ops: vec![
                        AttributeOp::Delete { keys: vec![key.clone()], is_force: false },
                        AttributeOp::Set {
                            attributes: vec![(key, format!("b{who}"))],
                            is_force: false,
                            is_update_owner: false,
                            is_delete_after_owner_left: true,
                        },
                    ],
                },
                12 => Request::SetRoomMembersAttributes {
                    room_id: room.into(),
                    user_ids: vec!["s0".into(), "m1".into(), "m2".into()],
                    attributes: vec![("st".into(), format!("{who}"))],
                },
                1 if !stayers.contains(&who) => Request::LeaveRoom { room_id: room.into() },
                2 if !sends.is_empty() => {
                    // A retry of an earlier send (of any sender: only its own is a duplicate).
                    let (req, cmid) = sends[sim.rng.below(sends.len())].clone();
                    let Request::SendRoomMessage { room_id, .. } = &sim.requests[&req].request
                    else {
                        unreachable!()
                    };
                    let room_id = room_id.clone();
                    send(&room_id, "again".into(), cmid)
                }
                _ => {
                    next_msg += 1;
                    send(room, format!("m{next_msg}"), format!("c{who}-{next_msg}"))
                }
            };
            let cmid = match &request {
                Request::SendRoomMessage { client_msg_id, .. } => client_msg_id.clone(),
                _ => None,
            };
            let req = sim.request(who, request);
            if let Some(cmid) = cmid {
                sends.push((req, cmid));
            }
        } else {
            sim.bus_step();
        }
    }
    sim.settle();
    let states = sim.replicas_agree();
    for (req, a) in &sim.requests {
        if a.reply.is_none() {
            sim.fail(format!("{req:?} {:?} never answered", a.request));
        }
    }

    // Every send was answered; acks of one (sender, client_msg_id) are the first ack.
    let mut first: HashMap<(String, String), (u64, u64)> = HashMap::new();
    let mut fresh = HashMap::<(String, String), usize>::new();
    for (req, cmid) in &sends {
        let user = sim.conn_user[&req.0].clone();
        let Request::SendRoomMessage { room_id, .. } = &sim.requests[req].request else {
            unreachable!()
        };
        match sim.reply(*req) {
            None => sim.fail(format!("send {req:?} never answered")),
            Some(Reply::Err(e)) if e.code == ErrorCode::NotInRoom.as_u16() => {}
            Some(Reply::Ok(Response::MessageSent { message_id, seq, duplicate, .. })) => {
                let key = (user.clone(), cmid.clone());
                let was = *first.entry(key.clone()).or_insert((*seq, *message_id));
                if was != (*seq, *message_id) {
                    sim.fail(format!("{key:?} acked as {was:?} and ({seq}, {message_id})"));
                }
                if !duplicate {
                    *fresh.entry(key).or_default() += 1;
                }
                let held = &states[room_id].history;
                let m = held.iter().find(|m| m.seq == *seq);
                if !m.is_some_and(|m| m.message_id == *message_id && m.sender == user) {
                    sim.fail(format!("ack ({seq}, {message_id}) of {user} not in history"));
                }
            }
            Some(other) => sim.fail(format!("send answered {other:?}")),
        }
    }
    if let Some((key, n)) = fresh.iter().find(|(_, n)| **n != 1) {
        sim.fail(format!("{key:?} stored {n} times"));
    }
    let stored = states.values().map(|s| s.history.len()).sum::<usize>();
    if stored != fresh.len() {
        sim.fail(format!("{stored} messages stored, {} acked", fresh.len()));
    }

    // Each stayer got every r0 message but its own, once and in order; everyone in order.
    let r0 = &states["r0"];
    for conn in &stayers {
        let user = &sim.conn_user[conn];
        let want: Vec<u64> =
            r0.history.iter().filter(|m| &m.sender != user).map(|m| m.seq).collect();
        let got: Vec<u64> = sim
            .got
            .get(&(*conn, "r0".to_string()))
            .map(|v| v.iter().map(|m| m.seq).collect())
            .unwrap_or_default();
        if got != want {
            sim.fail(format!("stayer {user} got {got:?}, want {want:?}"));
        }
    }
    for ((conn, room), msgs) in &sim.got {
        if msgs.windows(2).any(|w| w[0].seq >= w[1].seq) {
            sim.fail(format!("{conn} got {room} out of order"));
        }
        let held = &states.get(room).map(|s| s.history.clone()).unwrap_or_default();
        for m in msgs {
            if !held.contains(m) {
                sim.fail(format!("{conn} got {m:?}, which is not in history"));
            }
        }
    }
}

#[test]
fn replicas_agree_and_every_acked_message_reaches_every_member_once_in_order() {
    for seed in 1..=40 {
        run_mixed(seed);
    }
}

#[test]
fn room_full_is_exact_under_concurrent_joins_from_three_cores() {
    for seed in 1..=40 {
        let limits = Limits { members_per_room: 5, ..Limits::default() };
        let mut sim = Sim::new(seed, limits);
        sim.login(0, 1, "owner");
        sim.login(1, 2, "second");
        let made = sim.request(1, create("full"));
        sim.settle();
        assert!(sim.ok(made).is_some(), "seed {seed}: {:?}", sim.reply(made));
        let joined = sim.request(2, Request::JoinRoom { room_id: "full".into() });
        sim.settle();
        assert!(sim.ok(joined).is_some(), "seed {seed}: {:?}", sim.reply(joined));
        let mut joins = Vec::new();
        for i in 0..9u64 {
            let conn = 100 + i;
            sim.login(i as usize % NODES, conn, &format!("j{i}"));
            joins.push(sim.request(conn, Request::JoinRoom { room_id: "full".into() }));
        }
        sim.settle();
        let entered = joins.iter().filter(|j| sim.ok(**j).is_some()).count();
        let full =
            joins.iter().filter(|j| sim.code(**j) == Some(ErrorCode::RoomFull.as_u16())).count();
        assert_eq!((entered, full), (3, 6), "seed {seed}");
        let states = sim.replicas_agree();
        assert_eq!(states["full"].members.len(), 5, "seed {seed}");
    }
}

#[test]
fn room_already_exists_is_exact_under_concurrent_creates_from_three_cores() {
    for seed in 1..=40 {
        let mut sim = Sim::new(seed, Limits::default());
        let mut creates = Vec::new();
        for i in 0..NODES {
            let conn = i as u64 + 1;
            sim.login(i, conn, &format!("c{i}"));
            creates.push(sim.request(conn, create("dup")));
        }
        sim.settle();
        let made = creates
            .iter()
            .filter(|c| matches!(sim.ok(**c), Some(Response::RoomEntered(r)) if r.created))
            .count();
        let exists = creates
            .iter()
            .filter(|c| sim.code(**c) == Some(ErrorCode::RoomAlreadyExists.as_u16()))
            .count();
        assert_eq!((made, exists), (1, 2), "seed {seed}");
        let states = sim.replicas_agree();
        assert_eq!(states["dup"].members.len(), 1, "seed {seed}");
    }
}

#[test]
fn a_room_left_empty_is_destroyed_everywhere_and_can_be_made_again() {
    let mut sim = Sim::new(7, Limits::default());
    sim.login(0, 1, "a");
    sim.login(1, 2, "b");
    let made = sim.request(1, create("gone"));
    sim.settle();
    assert!(sim.ok(made).is_some());
    let joined = sim.request(2, enter("gone"));
    sim.settle();
    assert!(sim.ok(joined).is_some());
    sim.request(1, Request::LeaveRoom { room_id: "gone".into() });
    sim.request(2, Request::LeaveRoom { room_id: "gone".into() });
    sim.settle();
    sim.replicas_agree();
    assert!(sim.nodes.iter().all(|n| n.room_ids().is_empty()), "destroyed on every core");
    let again = sim.request(2, create("gone"));
    sim.settle();
    assert!(matches!(sim.ok(again), Some(Response::RoomEntered(r)) if r.created));
    let states = sim.replicas_agree();
    assert_eq!(states["gone"].epoch, 2, "a new incarnation");
}

#[test]
fn rooms_made_and_destroyed_again_and_again_end_the_same_on_every_core() {
    for seed in 1..=40 {
        let mut sim = Sim::new(seed, Limits { rate_limit_per_s: 0, ..Limits::default() });
        for i in 0..NODES {
            sim.login(i, i as u64 + 1, &format!("u{i}"));
        }
        for step in 0..200 {
            if sim.rng.below(2) == 0 {
                let conn = sim.rng.below(NODES) as u64 + 1;
                let request = match sim.rng.below(3) {
                    0 => enter("x"),
                    1 => Request::LeaveRoom { room_id: "x".into() },
                    _ => send("x", format!("{step}"), format!("{conn}-{step}")),
                };
                sim.request(conn, request);
            } else {
                sim.bus_step();
            }
        }
        sim.settle();
        let states = sim.replicas_agree();
        let registered = sim.broker.registry.get("x").copied();
        assert_eq!(states.get("x").map(|s| s.epoch), registered, "seed {seed}");
        for (req, a) in &sim.requests {
            assert!(a.reply.is_some(), "seed {seed}: {req:?} {:?} never answered", a.request);
        }
    }
}

#[test]
fn a_record_after_a_gap_is_held_and_a_repair_asked_until_the_gap_is_filled() {
    let mut sim = Sim::new(3, Limits::default());
    sim.login(0, 1, "a");
    sim.login(1, 2, "b");
    let made = sim.request(1, create("g"));
    sim.settle();
    assert!(sim.ok(made).is_some());
    let joined = sim.request(2, enter("g"));
    sim.settle();
    assert!(sim.ok(joined).is_some());
    let first = sim.request(1, send("g", "one".into(), "1".into()));
    let second = sim.request(1, send("g", "two".into(), "2".into()));
    while sim.carry(0) {}
    let room = sim.broker.logs.keys().next().cloned().expect("the room's log");
    let log = sim.broker.logs[&room].clone();
    let n = log.len();
    // Node 1 gets the last record first: held, and a repair asked from the one it misses.
    let (seq, entry) = log[n - 1].clone();
    let now = sim.now;
    let record = BusEvent::Record {
        room: room.clone(),
        stream_seq: seq,
        prev_stream_seq: log[n - 2].0,
        entry,
    };
    sim.nodes[1].handle_bus(now, record);
    sim.collect(1);
    let asked: Vec<BusOp> = sim.broker.asked[1].iter().cloned().collect();
    assert_eq!(asked, vec![BusOp::Repair { room: room.clone(), from_stream_seq: log[n - 2].0 }]);
    assert!(!sim.got.contains_key(&(2, "g".to_string())), "nothing applied past the gap");
    sim.settle();
    sim.replicas_agree();
    let got: Vec<u64> = sim.got[&(2, "g".to_string())].iter().map(|m| m.seq).collect();
    assert_eq!(got, vec![1, 2]);
    assert!(sim.ok(first).is_some() && sim.ok(second).is_some());
}
