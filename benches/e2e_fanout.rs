//! End-to-end loopback fan-out: one message through a real server (QUIC, TLS, the client
//! library) to every other member of a room; the time until the last member has it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use huddle::auth::KeySet;
use huddle::client::{Client, ClientConfig, ClientEvent};
use huddle::server::config::ServerConfig;
use huddle::server::Server;
use huddle::wire::{Event, MessageBody, Priority, RoomConfig, RoomInfo};
use tokio::sync::Notify;

const MEMBERS: usize = 100;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sender, received, notify) = rt.block_on(async {
        let tls = huddle::certs::generate_in_memory().unwrap();
        let mut keys = KeySet::new();
        keys.insert("b", b"bench-secret-0123456789");
        let mut config =
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
        config.limits.rate_limit_per_s = 0;
        let server = Server::bind_with(config, tls.chain, tls.key, keys.clone()).unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run(std::future::pending()));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let received = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(Notify::new());
        let endpoint = huddle::client::client_endpoint(addr).unwrap();
        let mut clients = Vec::new();
        for i in 0..MEMBERS {
            let user = format!("u{i}");
            let token = keys.mint("b", &user, now, now + 3600).unwrap();
            let mut cfg = ClientConfig::new(addr, &user, &token);
            cfg.roots = vec![tls.ca.clone()];
            let client = Client::connect_on(endpoint.clone(), cfg).await.unwrap();
            let info = RoomInfo { room_id: "r".into(), room_name: String::new() };
            client.enter_room(info, RoomConfig::default()).await.unwrap();
            clients.push(Arc::new(client));
        }
        for client in clients.iter().skip(1) {
            let (client, received, notify) = (client.clone(), received.clone(), notify.clone());
            tokio::spawn(async move {
                while let Some(ev) = client.next_event().await {
                    if let ClientEvent::Event(Event::RoomMessage(_)) = ev {
                        if received.fetch_add(1, Ordering::AcqRel) + 1 == MEMBERS - 1 {
                            notify.notify_one();
                        }
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        (clients[0].clone(), received, notify)
    });
    let mut g = c.benchmark_group("e2e");
    g.throughput(Throughput::Elements((MEMBERS - 1) as u64));
    g.bench_function(format!("fanout_room_of_{MEMBERS}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    received.store(0, Ordering::Release);
                    let body = MessageBody::Custom { sub_type: 0, data: vec![0; 200] };
                    sender.send_message("r", body, Priority::Medium, None).await.unwrap();
                    notify.notified().await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
