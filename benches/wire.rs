//! Frame encode and decode cost.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use huddle::wire::{
    decode_body, encode_frame, Event, MessageBody, Priority, Request, RequestFrame, RoomMessage,
};

fn message(size: usize) -> RoomMessage {
    RoomMessage {
        room_id: "room-0001".into(),
        seq: 123_456,
        message_id: 987_654_321,
        sender: "user-0042".into(),
        timestamp_ms: 1_764_000_000_000,
        priority: Priority::Medium,
        body: MessageBody::Custom { sub_type: 1, data: vec![7u8; size] },
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    for size in [200usize, 4096] {
        let event = Event::RoomMessage(message(size));
        let frame = encode_frame(&event);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(format!("encode_room_message_{size}B"), |b| {
            b.iter(|| encode_frame(black_box(&event)))
        });
        g.bench_function(format!("decode_room_message_{size}B"), |b| {
            b.iter(|| decode_body::<Event>(black_box(&frame[4..])).unwrap())
        });
    }
    let req = RequestFrame {
        request_id: 42,
        request: Request::SendRoomMessage {
            room_id: "room-0001".into(),
            body: MessageBody::Text("x".repeat(200)),
            priority: Priority::Medium,
            client_msg_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        },
    };
    let frame = encode_frame(&req);
    g.bench_function("decode_send_request_200B", |b| {
        b.iter(|| decode_body::<RequestFrame>(black_box(&frame[4..])).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
