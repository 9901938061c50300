//! Sans-IO fan-out: the core's cost per delivery for one message to a room of N members
//! (sequencing, history, one encode, and the recipient list), with no I/O.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use huddle::auth::KeySet;
use huddle::core::{Core, Limits, Now, Output};
use huddle::wire::{Login, MessageBody, Priority, Request, RoomConfig, RoomInfo, PROTOCOL_VERSION};

fn now(ms: u64) -> Now {
    Now { mono_ms: ms, unix_ms: 1_764_000_000_000 + ms }
}

fn room_of(n: u64) -> Core {
    let mut keys = KeySet::new();
    keys.insert("b", b"bench-secret-0123456789");
    let limits = Limits { rate_limit_per_s: 0, ..Limits::default() };
    let mut core = Core::new(limits, keys.clone(), 1);
    for i in 0..n {
        let user = format!("u{i}");
        let token = keys.mint("b", &user, 1_764_000_000, 1_764_100_000).unwrap();
        let login = Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: user,
            user_name: String::new(),
            token,
        };
        assert!(core.handle_login(now(0), i, 0, login, [0; 16]).logged_in());
        let info = RoomInfo { room_id: "r".into(), room_name: String::new() };
        core.handle_request(
            now(0),
            i,
            1,
            Request::EnterRoom { info, config: RoomConfig::default() },
        );
    }
    core.handle_timeout(now(1_000));
    while core.poll_output().is_some() {}
    core
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for n in [10u64, 100, 1000] {
        let mut core = room_of(n);
        let mut t = 2_000;
        g.throughput(Throughput::Elements(n - 1));
        g.bench_function(format!("send_to_room_of_{n}"), |b| {
            b.iter_batched(
                || Request::SendRoomMessage {
                    room_id: "r".into(),
                    body: MessageBody::Custom { sub_type: 0, data: vec![0; 200] },
                    priority: Priority::Medium,
                    client_msg_id: None,
                },
                |req| {
                    t += 1;
                    core.handle_request(now(t), 0, 7, req);
                    let mut deliveries = 0;
                    while let Some(out) = core.poll_output() {
                        if let Output::Broadcast { to, except, .. } = out {
                            // What the glue does per recipient: skip the sender, clone the bytes.
                            deliveries += to.iter().filter(|c| Some(**c) != except).count();
                        }
                    }
                    assert_eq!(deliveries as u64, n - 1);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
