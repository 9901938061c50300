//! Sans-IO worst cases: the largest request of each costly kind, handled by the core as the
//! server handles it under its lock (the input and the draining of its outputs), with no I/O.
//! Each case is the most work one request can ask for within the limits (ARCHITECTURE.md,
//! "Bounded work under the lock").

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use huddle::auth::KeySet;
use huddle::core::{ConnId, Core, Limits, Now};
use huddle::wire::{
    AttributeOp, HistoryAnchor, Login, MessageBody, Priority, Request, Resume, RoomConfig,
    RoomInfo, PROTOCOL_VERSION,
};

const ROOMS: usize = 5;
const HISTORY: usize = 1_000;
const BODY: usize = 32 * 1024 - 64;

fn now(ms: u64) -> Now {
    Now { mono_ms: ms, unix_ms: 1_764_000_000_000 + ms }
}

fn keys() -> KeySet {
    let mut keys = KeySet::new();
    keys.insert("b", b"bench-secret-0123456789");
    keys
}

fn token(user: &str) -> String {
    keys().mint("b", user, 1_764_000_000, 1_764_100_000).unwrap()
}

fn login(core: &mut Core, conn: ConnId, user: &str) {
    let login = Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: user.into(),
        user_name: String::new(),
        token: token(user),
    };
    assert!(core.handle_login(now(0), conn, 0, login, [7; 16]).logged_in());
}

fn drain(core: &mut Core) -> usize {
    let mut n = 0;
    while core.poll_output().is_some() {
        n += 1;
    }
    n
}

fn enter(core: &mut Core, conn: ConnId, room: &str) {
    let info = RoomInfo { room_id: room.into(), room_name: String::new() };
    core.handle_request(
        now(0),
        conn,
        1,
        Request::EnterRoom { info, config: RoomConfig::default() },
    );
}

/// Alice and Bob in five rooms, each with a full history of 32 KiB messages from Alice.
fn busy_rooms() -> Core {
    let limits = Limits {
        rate_limit_per_s: 0,
        ops_rate_per_s: 0,
        address_ops_rate_per_s: 0,
        history_max_messages: HISTORY,
        ..Limits::default()
    };
    let mut core = Core::new(limits, keys(), 1);
    login(&mut core, 0, "alice");
    login(&mut core, 1, "bob");
    for r in 0..ROOMS {
        enter(&mut core, 0, &format!("r{r}"));
        enter(&mut core, 1, &format!("r{r}"));
        for _ in 0..HISTORY {
            let send = Request::SendRoomMessage {
                room_id: format!("r{r}"),
                body: MessageBody::Text("x".repeat(BODY)),
                priority: Priority::Medium,
                client_msg_id: None,
            };
            core.handle_request(now(10), 0, 2, send);
            drain(&mut core);
        }
    }
    core.handle_timeout(now(1_000));
    drain(&mut core);
    core
}

fn resume(sid: u64, rooms: Vec<(String, u64)>) -> Resume {
    Resume {
        protocol_version: PROTOCOL_VERSION,
        user_id: "bob".into(),
        user_name: String::new(),
        token: token("bob"),
        session_id: sid,
        resume_secret: [7; 16],
        rooms,
    }
}

fn bench_resume(c: &mut Criterion) {
    let mut g = c.benchmark_group("requests");
    let mut core = busy_rooms();
    let sid = core.session_of(1).unwrap();
    let mut conn = 1;
    // Bob lost his connection before every message: each Resume replays as much as it may.
    let missed: Vec<(String, u64)> = (0..ROOMS).map(|r| (format!("r{r}"), 0)).collect();
    g.bench_function("resume_5_rooms_of_1000x32KiB_missed", |b| {
        b.iter_batched(
            || resume(sid, missed.clone()),
            |r| {
                // Losing the connection first costs a few map operations.
                core.handle_disconnect(now(2_000), conn);
                conn += 1;
                core.handle_resume(now(2_000), conn, 0, r, [0; 16]);
                drain(&mut core)
            },
            BatchSize::SmallInput,
        )
    });
    // A Resume that lists as many distinct room ids as a 64 KiB frame holds (4,000 of 10 bytes).
    let listed: Vec<(String, u64)> = (0..4_000).map(|i| (format!("x{i:07}"), 0)).collect();
    g.bench_function("resume_listing_4000_rooms", |b| {
        b.iter_batched(
            || resume(sid, listed.clone()),
            |r| {
                // Losing the connection first costs a few map operations.
                core.handle_disconnect(now(2_000), conn);
                conn += 1;
                core.handle_resume(now(2_000), conn, 0, r, [0; 16]);
                drain(&mut core)
            },
            BatchSize::SmallInput,
        )
    });
    // The longest history page: 100 messages of 32 KiB.
    core.handle_disconnect(now(2_000), conn);
    conn += 1;
    core.handle_resume(now(2_000), conn, 0, resume(sid, Vec::new()), [0; 16]);
    drain(&mut core);
    g.bench_function("query_history_100x32KiB", |b| {
        b.iter_batched(
            || Request::QueryHistory {
                room_id: "r0".into(),
                anchor: HistoryAnchor::Latest,
                count: 100,
            },
            |req| {
                core.handle_request(now(2_000), conn, 3, req);
                drain(&mut core)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_attributes(c: &mut Criterion) {
    let mut g = c.benchmark_group("requests");
    let limits = Limits { ops_rate_per_s: 0, address_ops_rate_per_s: 0, ..Limits::default() };
    let mut core = Core::new(limits, keys(), 1);
    login(&mut core, 0, "alice");
    enter(&mut core, 0, "r");
    drain(&mut core);
    // As many keys as a 64 KiB frame holds (2,700 of 16 bytes with 5-byte values): refused.
    let attributes: Vec<(String, String)> =
        (0..2_700).map(|i| (format!("key-{i:012}"), "value".to_string())).collect();
    g.bench_function("set_room_attributes_2700_keys", |b| {
        b.iter_batched(
            || Request::SetRoomAttributes {
                room_id: "r".into(),
                attributes: attributes.clone(),
                is_force: false,
                is_update_owner: false,
                is_delete_after_owner_left: false,
            },
            |req| {
                core.handle_request(now(10), 0, 2, req);
                drain(&mut core)
            },
            BatchSize::SmallInput,
        )
    });
    // A batch of 2,700 one-key steps: refused as well.
    let ops: Vec<AttributeOp> = (0..2_700)
        .map(|i| AttributeOp::Delete { keys: vec![format!("k{i:07}")], is_force: false })
        .collect();
    g.bench_function("room_attributes_batch_2700_steps", |b| {
        b.iter_batched(
            || Request::RoomAttributesBatch { room_id: "r".into(), ops: ops.clone() },
            |req| {
                core.handle_request(now(10), 0, 2, req);
                drain(&mut core)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_resume, bench_attributes);
criterion_main!(benches);
