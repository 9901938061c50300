//! The admin HTTP listener on a real server: every route, authentication, bad bodies, metrics
//! that follow traffic, and what destroy, kick and disconnect do to real clients.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{cfg, client_event, info, next_event, TestServer};
use huddle::client::ClientEvent;
use huddle::server::{admin_routes, Server};
use huddle::wire::{ErrorCode, Event, LeaveReason, Priority};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TOKEN: &str = "admin-test-token-0123456789";
const OPENAPI: &str = include_str!("../docs/openapi.json");

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin.token = Some(TOKEN.into());
    })
    .await
}

/// A small HTTP client for one server's admin listener.
struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    fn new(server: &TestServer) -> Admin {
        let addr = server.admin.expect("the admin listener is configured");
        Admin { http: reqwest::Client::new(), base: format!("http://{addr}") }
    }

    /// Sends a request with the right token; returns the status and the JSON body (Null when
    /// the body is not JSON).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, body, Some(TOKEN)).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.expect("the admin listener answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// Sends a request that must fail; checks its status and error name, returns the code.
    async fn fails(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        name: &str,
    ) -> u64 {
        let (got, value) = self.call(method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        assert_eq!(value["error"]["name"], name, "{method} {path}: {value}");
        value["error"]["code"].as_u64().expect("a numeric code")
    }

    async fn metrics(&self) -> String {
        let response = self.http.get(format!("{}/metrics", self.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }
}

/// The value of one sample of the metrics text (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

#[test]
fn every_route_is_in_the_openapi_document_and_every_documented_route_is_served() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
    let mut documented = BTreeSet::new();
    let mut public = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, operation) in item.as_object().unwrap() {
            let key = (m.to_uppercase(), path.clone());
            if operation.get("security") == Some(&json!([])) {
                public.insert(key.clone());
            }
            assert!(operation["responses"].is_object(), "{key:?} documents its responses");
            documented.insert(key);
        }
    }
    let routes = admin_routes();
    let served: BTreeSet<(String, String)> =
        routes.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    assert_eq!(served.len(), routes.len(), "no route is listed twice");
    assert_eq!(served, documented, "the router and docs/openapi.json differ");
    let open: BTreeSet<(String, String)> = routes
        .iter()
        .filter(|r| r.public)
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(open, public, "routes without a token are exactly those marked security: []");
    let readme = include_str!("../README.md");
    for r in &routes {
        let shown = format!("`{} {}", r.method, r.path);
        assert!(readme.contains(&shown), "README's Operating Huddle lacks {shown}`");
    }
}

#[tokio::test]
async fn the_listener_refuses_to_start_without_a_good_token() {
    for token in [None, Some("short")] {
        let mut config = huddle::server::config::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        config.admin.token = token.map(str::to_string);
        let tls = huddle::certs::generate_in_memory().unwrap();
        let bound = Server::bind_with(config, tls.chain, tls.key, common::keys());
        let error = bound.err().expect("no listener without a token").to_string();
        assert!(error.contains("HUDDLE_ADMIN_TOKEN"), "{error}");
    }
    // Without --admin-listen there is no listener at all.
    let plain = TestServer::start().await;
    assert!(plain.admin.is_none());
}

#[tokio::test]
async fn api_routes_need_the_token_and_health_does_not() {
    let server = server().await;
    let admin = Admin::new(&server);
    for route in admin_routes() {
        let path = route.path.replace("{id}", "r1");
        let m = method(route.method);
        if route.public {
            let (status, _) = admin.call_with(m, &path, None, None).await;
            assert_eq!(status, StatusCode::OK, "{} {path}", route.method);
            continue;
        }
        let response = admin.http.request(m.clone(), format!("{}{path}", admin.base)).send();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{} {path}", route.method);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], ErrorCode::NotLoggedIn.as_u16(), "{body}");
        let (status, body) = admin.call_with(m, &path, None, Some("wrong-token")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {path}", route.method);
        assert_eq!(body["error"]["name"], "token_invalid", "{body}");
    }
    assert_eq!(admin.call_with(Method::GET, "/healthz", None, None).await.1["status"], "ok");
    assert_eq!(admin.call_with(Method::GET, "/readyz", None, None).await.1["status"], "ready");
    let (_, doc) = admin.call_with(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let (status, body) = admin.call(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!(
        (status, body["error"]["name"].as_str()),
        (StatusCode::NOT_FOUND, Some("invalid_request"))
    );
    server.stop().await;
}

#[tokio::test]
async fn rooms_over_http() {
    let server = server().await;
    let admin = Admin::new(&server);
    let create = json!({"room_id": "lobby", "room_name": "Lobby", "destroy_delay_s": 30,
                        "attributes": {"topic": "news"}});
    let (status, room) = admin.call(Method::POST, "/v1/rooms", Some(create)).await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    assert_eq!(room["member_count"], 0);
    assert_eq!(room["attributes"], json!({"topic": "news"}));
    for id in ["b", "c"] {
        admin.ok(Method::POST, "/v1/rooms", Some(json!({"room_id": id}))).await;
    }

    // Paged listing in creation order.
    let page = admin.ok(Method::GET, "/v1/rooms?count=2", None).await;
    assert_eq!(page["rooms"].as_array().unwrap().len(), 2);
    let next = page["next_flag"].as_str().unwrap().to_string();
    let rest = admin.ok(Method::GET, &format!("/v1/rooms?count=2&next_flag={next}"), None).await;
    assert_eq!(rest["rooms"][0]["room_id"], "c");
    assert_eq!(rest["next_flag"], "");

    // Members join over QUIC; the operator sees them.
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.join_room("lobby").await.unwrap();
    bob.join_room("lobby").await.unwrap();
    let room = admin.ok(Method::GET, "/v1/rooms/lobby", None).await;
    assert_eq!(
        (room["member_count"].as_u64(), room["destroy_delay_s"].as_u64()),
        (Some(2), Some(30))
    );
    let members = admin.ok(Method::GET, "/v1/rooms/lobby/members?count=1", None).await;
    assert_eq!(members["members"][0]["user_id"], "alice");
    let flag = members["next_flag"].as_str().unwrap();
    let more =
        admin.ok(Method::GET, &format!("/v1/rooms/lobby/members?next_flag={flag}"), None).await;
    assert_eq!(more["members"][0]["user_id"], "bob");

    // A system message reaches every member (no member sent it).
    let body = json!({"text": "hello all", "priority": "medium"});
    let sent = admin.ok(Method::POST, "/v1/rooms/lobby/messages", Some(body)).await;
    assert_eq!((sent["seq"].as_u64(), sent["duplicate"].as_bool()), (Some(1), Some(false)));
    for c in [&alice, &bob] {
        loop {
            match next_event(c, 5).await {
                Event::RoomMessage(m) => {
                    let got = (m.sender.as_str(), m.seq, m.priority);
                    assert_eq!(got, (":system", 1, Priority::Medium));
                    break;
                }
                Event::MembersJoined { .. } => continue,
                other => panic!("{other:?}"),
            }
        }
    }

    // Attributes: set, then delete; members get the events.
    let body = json!({"attributes": {"motd": "hi"}});
    let set = admin.ok(Method::PUT, "/v1/rooms/lobby/attributes", Some(body)).await;
    assert_eq!(set["attributes"], json!({"topic": "news", "motd": "hi"}));
    match next_event(&bob, 5).await {
        Event::RoomAttributesUpdated { set, .. } => {
            assert_eq!(set, vec![("motd".into(), "hi".into())])
        }
        other => panic!("{other:?}"),
    }
    let body = json!({"keys": ["topic"]});
    let deleted = admin.ok(Method::DELETE, "/v1/rooms/lobby/attributes", Some(body)).await;
    assert_eq!(deleted["attributes"], json!({"motd": "hi"}));
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_answer_with_the_wire_codes() {
    let server = server().await;
    let admin = Admin::new(&server);
    admin.ok(Method::POST, "/v1/rooms", Some(json!({"room_id": "lobby"}))).await;
    let (bad, not_found, conflict) =
        (StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND, StatusCode::CONFLICT);
    let cases: Vec<(Method, &str, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/v1/rooms",
            Some(json!({"room_id": "lobby"})),
            conflict,
            "room_already_exists",
        ),
        (Method::POST, "/v1/rooms", Some(json!("not an object")), bad, "invalid_request"),
        (Method::POST, "/v1/rooms", Some(json!({"room_id": 7})), bad, "invalid_request"),
        (
            Method::POST,
            "/v1/rooms",
            Some(json!({"room_id": "x", "extra": 1})),
            bad,
            "invalid_request",
        ),
        (Method::POST, "/v1/rooms", Some(json!({})), bad, "invalid_request"),
        (Method::POST, "/v1/rooms", Some(json!({"room_id": "has space"})), bad, "invalid_room_id"),
        (
            Method::POST,
            "/v1/rooms",
            Some(json!({"room_id": "d", "destroy_delay_s": 99999})),
            bad,
            "invalid_destroy_delay",
        ),
        (Method::GET, "/v1/rooms?count=0", None, bad, "invalid_request"),
        (Method::GET, "/v1/rooms?count=x", None, bad, "invalid_request"),
        (Method::GET, "/v1/rooms?next_flag=zz", None, bad, "invalid_request"),
        (Method::GET, "/v1/rooms/nope", None, not_found, "room_does_not_exist"),
        (Method::GET, "/v1/rooms/nope/members", None, not_found, "room_does_not_exist"),
        (Method::DELETE, "/v1/rooms/nope", None, not_found, "room_does_not_exist"),
        (
            Method::POST,
            "/v1/rooms/lobby/messages",
            Some(json!({"text": "a", "custom": {"sub_type": 1}})),
            bad,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/rooms/lobby/messages",
            Some(json!({"text": "x".repeat(40_000)})),
            bad,
            "message_too_large",
        ),
        (
            Method::POST,
            "/v1/rooms/lobby/messages",
            Some(json!({"text": "a", "priority": "urgent"})),
            bad,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/rooms/nope/messages",
            Some(json!({"text": "a"})),
            not_found,
            "room_does_not_exist",
        ),
        (
            Method::PUT,
            "/v1/rooms/lobby/attributes",
            Some(json!({"attributes": {"a-key-longer-than-16": "v"}})),
            bad,
            "attribute_key_too_long",
        ),
        (
            Method::PUT,
            "/v1/rooms/nope/attributes",
            Some(json!({"attributes": {}})),
            not_found,
            "room_does_not_exist",
        ),
        (
            Method::DELETE,
            "/v1/rooms/lobby/attributes",
            Some(json!({"key": "x"})),
            bad,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/rooms/lobby/kick",
            Some(json!({"user_id": "carol"})),
            not_found,
            "not_in_room",
        ),
        (Method::POST, "/v1/rooms/lobby/kick", Some(json!({})), bad, "invalid_request"),
        (Method::POST, "/v1/users/bad%20id/disconnect", None, bad, "invalid_user_id"),
    ];
    for (m, path, body, status, name) in cases {
        let code = admin.fails(m, path, body, status, name).await;
        let known = ErrorCode::from_u16(code as u16).expect("a code of the wire table");
        assert_eq!(known.name(), name);
    }
    // A body that is not JSON at all.
    let url = format!("{}/v1/rooms", admin.base);
    let raw = admin.http.post(url).bearer_auth(TOKEN).body("{not json").send().await.unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], 1000);
    server.stop().await;
}

#[tokio::test]
async fn every_error_has_the_same_json_shape_405_and_404_included() {
    let server = server().await;
    let admin = Admin::new(&server);
    let not_allowed = StatusCode::METHOD_NOT_ALLOWED;
    let cases = [
        (Method::POST, "/healthz", not_allowed),
        (Method::DELETE, "/v1/rooms", not_allowed),
        (Method::PUT, "/v1/users/bob/disconnect", not_allowed),
        (Method::GET, "/v1/nothing-here", StatusCode::NOT_FOUND),
    ];
    for (m, path, status) in cases {
        let response = admin
            .http
            .request(m.clone(), format!("{}{path}", admin.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{m} {path}");
        if status == not_allowed {
            assert!(response.headers().contains_key("allow"), "{m} {path}: the Allow header");
        }
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], 1000, "{m} {path}: {body}");
        assert_eq!(body["error"]["name"], "invalid_request", "{m} {path}: {body}");
        assert!(body["error"]["message"].is_string(), "{m} {path}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn kick_and_destroy_reach_the_clients() {
    let server = server().await;
    let admin = Admin::new(&server);
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r1"), cfg()).await.unwrap();
    bob.join_room("r1").await.unwrap();
    assert!(matches!(next_event(&alice, 5).await, Event::MembersJoined { .. }));

    let kicked = admin.ok(Method::POST, "/v1/rooms/r1/kick", Some(json!({"user_id": "bob"}))).await;
    assert_eq!(kicked["sessions"], 1);
    assert_eq!(
        next_event(&bob, 5).await,
        Event::RemovedFromRoom { room_id: "r1".into(), reason: LeaveReason::Kicked }
    );
    match next_event(&alice, 5).await {
        Event::MembersLeft { members, reason, .. } => {
            assert_eq!((members[0].user_id.as_str(), reason), ("bob", LeaveReason::Kicked));
        }
        other => panic!("{other:?}"),
    }
    assert!(bob.query_joined_rooms().await.unwrap().is_empty());
    // Bob may come back; then the operator destroys the room under both.
    bob.join_room("r1").await.unwrap();
    let done = admin.ok(Method::DELETE, "/v1/rooms/r1", None).await;
    assert_eq!(done["members"], 2);
    for c in [&alice, &bob] {
        loop {
            match next_event(c, 5).await {
                Event::RoomDestroyed { room_id } => {
                    assert_eq!(room_id, "r1");
                    break;
                }
                Event::MembersJoined { .. } => continue,
                other => panic!("{other:?}"),
            }
        }
        assert!(c.query_joined_rooms().await.unwrap().is_empty());
    }
    let code = admin
        .fails(Method::GET, "/v1/rooms/r1", None, StatusCode::NOT_FOUND, "room_does_not_exist")
        .await;
    assert_eq!(code, 3002);
    server.stop().await;
}

#[tokio::test]
async fn disconnect_ends_the_session_without_a_reconnect() {
    let server = server().await;
    let admin = Admin::new(&server);
    let bob = server.client("bob").await;
    let done = admin.ok(Method::POST, "/v1/users/bob/disconnect", None).await;
    assert_eq!(done["sessions"], 1);
    let mut kicked = false;
    loop {
        match client_event(&bob, Duration::from_secs(5)).await {
            Ok(Some(ClientEvent::Event(Event::KickedOut { code, .. }))) => {
                assert_eq!(code, ErrorCode::DisconnectedByAdmin.as_u16());
                kicked = true;
            }
            Ok(Some(ClientEvent::Disconnected { code, .. })) => {
                assert_eq!(code, Some(2011));
                break;
            }
            other => panic!("expected KickedOut then Disconnected, got {other:?}"),
        }
    }
    assert!(kicked);
    // Idempotent: nobody left to disconnect.
    assert_eq!(admin.ok(Method::POST, "/v1/users/bob/disconnect", None).await["sessions"], 0);
    // The operator's disconnect is not the client misbehaving (nor logged as such): the
    // connection's task, which counts and logs its close right after the client saw it, must
    // not count it.
    for _ in 0..40 {
        assert_eq!(server.guard.misbehaving.load(std::sync::atomic::Ordering::Relaxed), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_fan_out_that_reaches_nobody_is_not_timed() {
    let server = server().await;
    let admin = Admin::new(&server);
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    // The first room message is sampled (1 in 16), but alice is alone: no copy to time.
    alice.send_text("r", "to nobody", Priority::Medium).await.unwrap();
    assert_eq!(sample(&admin.metrics().await, "huddle_fanout_seconds_count"), 0.0);
    // The 17th is sampled too, and reaches bob.
    let bob = server.client("bob").await;
    bob.join_room("r").await.unwrap();
    for i in 0..16 {
        alice.send_text("r", &format!("m{i}"), Priority::Medium).await.unwrap();
    }
    for _ in 0..16 {
        while !matches!(next_event(&bob, 5).await, Event::RoomMessage(_)) {}
    }
    assert_eq!(sample(&admin.metrics().await, "huddle_fanout_seconds_count"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn metrics_follow_the_traffic() {
    let server = server().await;
    let admin = Admin::new(&server);
    let users = ["m0", "m1", "m2", "m3"];
    let mut clients = Vec::new();
    for u in users {
        clients.push(server.client(u).await);
    }
    clients[0].create_room(info("r"), cfg()).await.unwrap();
    for c in &clients[1..] {
        c.join_room("r").await.unwrap();
    }
    let before = admin.metrics().await;
    assert_eq!(sample(&before, "huddle_connections_open"), 4.0);
    assert_eq!(sample(&before, "huddle_rooms"), 1.0);
    assert_eq!(sample(&before, "huddle_members"), 4.0);
    assert_eq!(sample(&before, "huddle_sessions"), 4.0);
    assert_eq!(sample(&before, "huddle_logins_total{result=\"ok\"}"), 4.0);
    assert!(sample(&before, "huddle_handshakes_total{result=\"ok\"}") >= 4.0);
    let medium = "huddle_deliveries_total{priority=\"medium\"}";

    // One message from a member reaches the other three: deliveries grow by members - 1.
    clients[0].send_text("r", "hello", Priority::Medium).await.unwrap();
    for c in &clients[1..] {
        while !matches!(next_event(c, 5).await, Event::RoomMessage(_)) {}
    }
    let after = admin.metrics().await;
    assert_eq!(sample(&after, medium) - sample(&before, medium), 3.0);
    let received = "huddle_messages_received_total{priority=\"medium\"}";
    assert_eq!(sample(&after, received) - sample(&before, received), 1.0);
    assert!(
        sample(&after, "huddle_request_duration_seconds_count{op=\"send_room_message\"}") >= 1.0
    );
    assert!(sample(&after, "huddle_sent_bytes_total") > sample(&before, "huddle_sent_bytes_total"));
    assert!(sample(&after, "huddle_received_bytes_total") > 0.0);
    assert!(sample(&after, "huddle_quic_sent_packets_total") > 0.0);
    assert!(sample(&after, "huddle_quic_rtt_seconds{stat=\"max\"}") > 0.0);
    // The first room message is one of the 1 in 16 whose fan-out is timed; it was handed to
    // QUIC for all three before they could read it.
    assert_eq!(sample(&after, "huddle_fanout_seconds_count"), 1.0);
    assert!(sample(&after, "huddle_fanout_seconds_sum") > 0.0);

    // The operator's message has no sender among the members: it reaches all four.
    let body = json!({"text": "from the operator", "priority": "medium"});
    admin.ok(Method::POST, "/v1/rooms/r/messages", Some(body)).await;
    for c in &clients {
        while !matches!(next_event(c, 5).await, Event::RoomMessage(_)) {}
    }
    let last = admin.metrics().await;
    assert_eq!(sample(&last, medium) - sample(&after, medium), 4.0);
    assert!(
        sample(&last, "huddle_request_duration_seconds_count{op=\"admin_send_message\"}") >= 1.0
    );
    for name in [
        "huddle_connections_accepted_total",
        "huddle_connections_refused_total",
        "huddle_resumptions_total",
        "huddle_dropped_frames_total{reason=\"low_priority_backlog\"}",
        "huddle_slow_consumer_disconnects_total",
        "huddle_outbound_queue_bytes{stat=\"sum\"}",
        "huddle_quic_lost_packets_total",
        "huddle_events_sent_total",
    ] {
        let base = name.split('{').next().unwrap().trim_end_matches("_total");
        assert!(last.contains(base), "{name} is exported");
    }
    // README's dashboard list names every exported metric.
    let readme = include_str!("../README.md");
    for line in last.lines() {
        if let Some(name) = line.strip_prefix("# TYPE huddle_") {
            let name = name.split_whitespace().next().unwrap();
            assert!(readme.contains(&format!("`{name}")), "README's metrics list lacks {name}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn readyz_turns_unready_when_shutdown_begins() {
    let server = server().await;
    let admin = Admin::new(&server);
    let _client = server.client("alice").await;
    assert_eq!(admin.call(Method::GET, "/readyz", None).await.0, StatusCode::OK);
    let stopping = tokio::spawn(server.stop());
    // The listener keeps answering while connections drain; readiness is gone at once.
    let mut saw_unready = false;
    for _ in 0..1500 {
        match admin.http.get(format!("{}/readyz", admin.base)).send().await {
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                saw_unready = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            Err(_) => break,
        }
    }
    assert!(saw_unready, "/readyz never answered 503 during shutdown");
    stopping.await.unwrap();
}

/// Kills a child process on drop, so that a failing test leaves none behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_command(certs: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--certs-dir")
        .arg(certs)
        .env_remove("HUDDLE_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

#[tokio::test]
async fn the_binary_takes_its_token_from_the_environment_and_logs_json() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    // No token: the server refuses to start.
    let mut refused = Child(serve_command(dir.path()).spawn().unwrap());
    let mut status = None;
    for _ in 0..200 {
        status = refused.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status.is_some_and(|s| !s.success()), "started without a token: {status:?}");

    let mut command = serve_command(dir.path());
    command.env("HUDDLE_ADMIN_TOKEN", TOKEN).args(["--log-format", "json"]);
    let mut child = Child(command.spawn().unwrap());
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut admin = None;
    for _ in 0..10 {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(url) = line.trim().strip_prefix("huddle admin API on ") {
            admin = Some(url.to_string());
            break;
        }
    }
    let base = admin.expect("the server prints its admin address");
    let http = reqwest::Client::new();
    // Ready once the QUIC endpoint runs, which may be just after the address is printed.
    let mut ready = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..250 {
        ready = http.get(format!("{base}/readyz")).send().await.unwrap().status();
        if ready == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, StatusCode::OK);
    let rooms = http.get(format!("{base}/v1/rooms")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(rooms.status(), StatusCode::OK);
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut stderr = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO" && l["fields"]["message"] == "admin listening"),
        "{stderr}"
    );
}

#[test]
fn the_config_file_sets_the_listener_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huddle.toml");
    let text = "[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"from-the-file-0123456789\"\n\n\
                [log]\nlevel = \"huddle=debug,info\"\nformat = \"json\"\n";
    std::fs::write(&path, text).unwrap();
    let config = huddle::server::config::ServerConfig::from_file(&path).unwrap();
    assert_eq!(config.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(config.admin.token.as_deref(), Some("from-the-file-0123456789"));
    assert_eq!(
        (config.log.level.as_str(), config.log.format.as_str()),
        ("huddle=debug,info", "json")
    );
    // The secret stays out of debug output.
    assert!(!format!("{config:?}").contains("from-the-file"));
    std::fs::write(&path, "[admin]\ntokn = \"typo\"\n").unwrap();
    assert!(
        huddle::server::config::ServerConfig::from_file(&path).is_err(),
        "unknown keys are errors"
    );
    let defaults = huddle::server::config::ServerConfig::default();
    assert_eq!((defaults.admin.listen, defaults.log.format.as_str()), (None, "text"));
}

#[tokio::test]
async fn build_info_names_the_version_and_commit() {
    let server = server().await;
    let admin = Admin::new(&server);
    let metrics = admin.metrics().await;
    let series = format!(
        "huddle_build_info{{version=\"{}\",commit=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        huddle::VERSION.rsplit("commit ").next().unwrap().trim_end_matches(')')
    );
    assert_eq!(sample(&metrics, &series), 1.0, "{series} in:\n{metrics}");
    server.stop().await;
}

/// A raw connection that reads nothing, kept open with its endpoint and control stream.
struct Stalled {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    _control: (quinn::SendStream, quinn::RecvStream),
}

/// Logs `user` in on a raw connection with small receive windows, joins `room`, and then reads
/// nothing: what the server sends it backs up in its outbox.
async fn stalled_member(server: &TestServer, user: &str, room: &str) -> Stalled {
    use huddle::client::{client_endpoint, quic_client_config};
    use huddle::wire::{encode_frame, Login, Request, RequestFrame, PROTOCOL_VERSION};

    let mut qc = quic_client_config(&server.config(user)).unwrap();
    let mut tc = quinn::TransportConfig::default();
    tc.stream_receive_window(16_384u32.into());
    tc.receive_window(32_768u32.into());
    tc.max_concurrent_uni_streams(8u32.into());
    qc.transport_config(std::sync::Arc::new(tc));
    let endpoint = client_endpoint(server.addr).unwrap();
    let conn = endpoint.connect_with(qc, server.addr, "localhost").unwrap().await.unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let login = Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: user.into(),
        user_name: String::new(),
        token: server.token(user),
    };
    for (id, request) in
        [(1, Request::Login(login)), (2, Request::JoinRoom { room_id: room.into() })]
    {
        send.write_all(&encode_frame(&RequestFrame { request_id: id, request })).await.unwrap();
    }
    Stalled { conn, _endpoint: endpoint, _control: (send, recv) }
}

/// The connection entry of `user` in a listing.
fn entry_of<'a>(list: &'a Value, user: &str) -> &'a Value {
    let all = list["connections"].as_array().expect("a connections array");
    all.iter().find(|c| c["user_id"] == user).unwrap_or_else(|| panic!("no {user} in {list}"))
}

#[tokio::test]
async fn connections_show_users_rooms_and_transport_figures() {
    let before_ms = common::now_s() * 1000;
    let server = server().await;
    let admin = Admin::new(&server);
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r1"), cfg()).await.unwrap();
    alice.create_room(info("r2"), cfg()).await.unwrap();
    bob.join_room("r1").await.unwrap();

    let list = admin.ok(Method::GET, "/v1/connections", None).await;
    assert_eq!((list["total"].as_u64(), list["next_flag"].as_str()), (Some(2), Some("")), "{list}");
    let ids: Vec<u64> = list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conn_id"].as_u64().expect("a numeric conn_id"))
        .collect();
    assert!(ids.len() == 2 && ids[0] < ids[1], "sorted by connection id: {list}");
    let now_ms = common::now_s() * 1000 + 1000;
    for (client, rooms) in [(&alice, json!(["r1", "r2"])), (&bob, json!(["r1"]))] {
        let c = entry_of(&list, client.user_id());
        assert_eq!(c["rooms"], rooms, "{c}");
        assert_eq!(c["session_id"], client.session().session_id, "{c}");
        let addr: std::net::SocketAddr = c["remote_addr"].as_str().unwrap().parse().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() != server.addr.port(), "{c}");
        let since = c["connected_at_ms"].as_u64().unwrap();
        assert!((before_ms..=now_ms).contains(&since), "{c}");
        assert!(c["rtt_ms"].as_f64().unwrap() > 0.0, "{c}");
        for figure in ["bytes_sent", "bytes_received", "packets_sent", "packets_received"] {
            assert!(c[figure].as_u64().unwrap() > 0, "{figure}: {c}");
        }
        assert!(c["bytes_sent"].as_u64() > c["packets_sent"].as_u64(), "{c}");
        for figure in ["packets_lost", "queued_bytes", "queued_frames"] {
            assert!(c[figure].is_u64(), "{figure}: {c}");
        }
        assert_eq!(c["zero_rtt"], false, "{c}");
        // The same entry on its own, with figures that only grow.
        let one = admin.ok(Method::GET, &format!("/v1/connections/{}", c["conn_id"]), None).await;
        assert_eq!(
            (&one["conn_id"], &one["user_id"], &one["rooms"]),
            (&c["conn_id"], &c["user_id"], &c["rooms"])
        );
        assert!(one["bytes_received"].as_u64() >= c["bytes_received"].as_u64(), "{one}");
    }

    // Paging and the filters.
    let first = admin.ok(Method::GET, "/v1/connections?count=1", None).await;
    assert_eq!(first["connections"][0]["conn_id"], ids[0]);
    assert_eq!(
        (first["total"].as_u64(), first["next_flag"].as_str()),
        (Some(2), Some(&*ids[1].to_string()))
    );
    let path =
        format!("/v1/connections?count=1&next_flag={}", first["next_flag"].as_str().unwrap());
    let second = admin.ok(Method::GET, &path, None).await;
    assert_eq!(second["connections"][0]["conn_id"], ids[1]);
    assert_eq!(second["next_flag"], "");
    let bobs = admin.ok(Method::GET, "/v1/connections?user=bob", None).await;
    assert_eq!(bobs["total"], 1);
    assert_eq!(bobs["connections"][0]["user_id"], "bob");
    let r2 = admin.ok(Method::GET, "/v1/connections?room=r2", None).await;
    assert_eq!(
        (r2["total"].as_u64(), &r2["connections"][0]["user_id"]),
        (Some(1), &json!("alice"))
    );
    let none = admin.ok(Method::GET, "/v1/connections?user=carol", None).await;
    assert_eq!(
        (none["total"].as_u64(), none["connections"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    let not_found = StatusCode::NOT_FOUND;
    let bad = StatusCode::BAD_REQUEST;
    admin.fails(Method::GET, "/v1/connections/999999", None, not_found, "invalid_request").await;
    admin.fails(Method::GET, "/v1/connections/abc", None, bad, "invalid_request").await;
    admin
        .fails(Method::GET, "/v1/connections?room=nope", None, not_found, "room_does_not_exist")
        .await;
    admin.fails(Method::GET, "/v1/connections?user=a%20b", None, bad, "invalid_user_id").await;
    admin.fails(Method::GET, "/v1/connections?count=0", None, bad, "invalid_request").await;
    admin.fails(Method::GET, "/v1/connections?colour=red", None, bad, "invalid_request").await;
    let (status, body) = admin.call_with(Method::GET, "/v1/connections", None, None).await;
    assert_eq!(
        (status, &body["error"]["name"]),
        (StatusCode::UNAUTHORIZED, &json!("not_logged_in"))
    );

    // A member that reads nothing: what the room sends it waits in its outbox.
    let mallory = stalled_member(&server, "mallory", "r1").await;
    let mut joined = false;
    for _ in 0..50 {
        let list = admin.ok(Method::GET, "/v1/connections?room=r1&user=mallory", None).await;
        if list["total"] == 1 {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined, "mallory is listed in r1");
    let text = "x".repeat(2_000);
    for _ in 0..100 {
        let body = json!({"text": text, "priority": "medium"});
        admin.ok(Method::POST, "/v1/rooms/r1/messages", Some(body)).await;
    }
    let mut stalled = Value::Null;
    for _ in 0..50 {
        let list = admin.ok(Method::GET, "/v1/connections?user=mallory", None).await;
        stalled = list["connections"][0].clone();
        if stalled["queued_frames"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stalled["rooms"], json!(["r1"]), "{stalled}");
    let (bytes, frames) =
        (stalled["queued_bytes"].as_u64().unwrap(), stalled["queued_frames"].as_u64().unwrap());
    assert!(frames > 0 && bytes > frames * 2_000, "a backlog of 2 KB messages: {stalled}");

    // A closed connection leaves the listing.
    let mallory_id = stalled["conn_id"].as_u64().unwrap();
    mallory.conn.close(0u32.into(), b"bye");
    let mut left = false;
    for _ in 0..50 {
        let (status, _) =
            admin.call(Method::GET, &format!("/v1/connections/{mallory_id}"), None).await;
        if status == StatusCode::NOT_FOUND {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left, "connection {mallory_id} is still listed after it closed");
    assert_eq!(admin.ok(Method::GET, "/v1/connections", None).await["total"], 2);
    server.stop().await;
}
