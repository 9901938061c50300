//! How the admin listener serves connections: the connection caps (in all and per client
//! address) and the header and body timeouts, with raw TCP connections from several loopback
//! addresses (127.0.0.0/8 is all loopback on Linux).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::TestServer;
use huddle::server::config::AdminConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TOKEN: &str = "admin-test-token-0123456789";

async fn server(tweak: impl FnOnce(&mut AdminConfig)) -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(|c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin.token = Some(TOKEN.into());
        tweak(&mut c.admin);
    })
    .await;
    let addr = server.admin.expect("the admin listener is configured");
    (server, addr)
}

/// A TCP connection to `to` from the loopback address 127.0.0.`last`.
async fn connect_from(last: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0)).unwrap();
    socket.connect(to).await.expect("the listener accepts")
}

/// Whether the server closes the connection (end of stream or reset) within `within`; any
/// bytes it sends first are read and ignored.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// `GET /healthz` from 127.0.0.`last`; the status line, or why there is none.
async fn healthz_from(last: u8, to: SocketAddr) -> String {
    let mut stream = connect_from(last, to).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: huddle\r\nConnection: close\r\n\r\n";
    if let Err(e) = stream.write_all(request).await {
        return format!("write failed: {e}");
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await {
        Err(_) => "no answer within 3 s".into(),
        Ok(Err(e)) => format!("read failed: {e}"),
        Ok(Ok(_)) => String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_string(),
    }
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_and_others_are_served() {
    let (server, addr) = server(|a| {
        a.max_connections = 64;
        a.max_per_address = 4;
        a.header_timeout_s = 30;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..14 {
        silent.push(connect_from(1, addr).await);
    }
    for (i, stream) in silent.iter_mut().enumerate() {
        let closed =
            closed_within(stream, Duration::from_millis(if i < 4 { 200 } else { 1000 })).await;
        assert_eq!(closed, i >= 4, "silent connection {} of 14 (per-address cap 4)", i + 1);
    }
    // The four silent connections are still open; another address is served.
    assert_eq!(healthz_from(2, addr).await, "HTTP/1.1 200 OK");
    // And 127.0.0.1 is again once its connections end.
    drop(silent);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(healthz_from(1, addr).await, "HTTP/1.1 200 OK");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_close_at_once_and_health_answers_after_the_timeout() {
    let (server, addr) = server(|a| {
        a.max_connections = 8;
        a.max_per_address = 0;
        a.header_timeout_s = 1;
    })
    .await;
    let started = Instant::now();
    let mut silent = Vec::new();
    for i in 0..18u8 {
        silent.push(connect_from(10 + i, addr).await);
    }
    for stream in &mut silent[8..] {
        assert!(
            closed_within(stream, Duration::from_millis(300)).await,
            "a connection over the cap of 8 is closed at once"
        );
    }
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    // The eight admitted ones send nothing and time out after the header timeout (1 s).
    for stream in &mut silent[..8] {
        assert!(closed_within(stream, Duration::from_secs(3)).await, "silent connection timed out");
    }
    assert_eq!(healthz_from(2, addr).await, "HTTP/1.1 200 OK");
    server.stop().await;
}

#[tokio::test]
async fn half_a_header_is_closed_after_the_header_timeout() {
    let (server, addr) = server(|a| a.header_timeout_s = 1).await;
    let mut stream = connect_from(1, addr).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: huddle\r\n").await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(4)).await, "the connection is closed");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "{took:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    let (server, addr) = server(|a| a.body_timeout_s = 1).await;
    let mut stream = connect_from(1, addr).await;
    let head = format!(
        "POST /v1/rooms HTTP/1.1\r\nHost: huddle\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"room_id\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(4), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is answered and closed");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "{took:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"name\":\"frame_timeout\""), "{answer}");
    server.stop().await;
}
