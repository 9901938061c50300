//! The command-line client end to end: the real `huddle` binary as server and as JSON-lines
//! clients, talking over QUIC on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_huddle");

/// How long any one expected line may take.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the child on drop, so that a failing test leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's stdout lines on a thread, into a channel.
fn line_reader(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `huddle serve` on 127.0.0.1:0 with its own certs folder.
struct Server {
    addr: String,
    dir: tempfile::TempDir,
    _child: Guard,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (addr, child) = Server::spawn(dir.path(), "127.0.0.1:0");
        Server { addr, dir, _child: child }
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and starts a new one, which knows
    /// no session and no room, on the same address with the same certificates and secret.
    fn kill_and_restart(&mut self) {
        let _ = self._child.0.kill();
        let _ = self._child.0.wait();
        let (addr, child) = Server::spawn(self.dir.path(), &self.addr);
        assert_eq!(addr, self.addr);
        self._child = child;
    }

    fn spawn(dir: &Path, listen: &str) -> (String, Guard) {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", listen, "--certs-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = line_reader(child.stdout.take().unwrap());
        let child = Guard(child);
        let deadline = Instant::now() + LINE_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).expect("server did not say where it listens");
            if let Some(rest) = line.split("huddle listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining the server's stdout so that it never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        (addr, child)
    }

    fn certs(&self) -> &Path {
        self.dir.path()
    }

    /// A JSON-lines client for `user` (plus extra flags).
    fn client(&self, user: &str, extra: &[&str]) -> Cli {
        let mut command = Command::new(BIN);
        command
            .args(["client", "--server", &self.addr, "--user", user, "--json", "--certs-dir"])
            .arg(self.certs())
            .args(extra);
        Cli::spawn(command, user)
    }

    /// An interactive client for `user`, its stdin a pipe (`--interactive`).
    fn chat(&self, user: &str) -> Cli {
        let mut command = Command::new(BIN);
        command
            .args(["client", "--server", &self.addr, "--user", user, "--interactive"])
            .env("HUDDLE_CERTS_DIR", self.certs());
        let mut c = Cli::spawn(command, user);
        c.expect_line(&format!("as {user}"), LINE_TIMEOUT);
        c
    }

    /// A client that has printed its ready line.
    fn ready(&self, user: &str) -> Cli {
        let mut c = self.client(user, &["--name", &format!("{user} name")]);
        let ready = c.recv();
        assert_eq!(ready["type"], "ready", "{ready}");
        assert_eq!(ready["user_id"], user);
        assert!(ready["session_id"].is_u64(), "{ready}");
        c
    }
}

struct Cli {
    user: String,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    child: Guard,
}

impl Cli {
    /// Starts `command` (a `huddle client` for `user`) with its stdin and stdout piped.
    fn spawn(mut command: Command, user: &str) -> Cli {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = line_reader(child.stdout.take().unwrap());
        Cli { user: user.into(), stdin, lines, child: Guard(child) }
    }

    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, request: Value) {
        self.send_raw(&request.to_string());
    }

    /// The next stdout line, as JSON.
    fn recv(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: no line within {LINE_TIMEOUT:?}: {e}", self.user));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.user))
    }

    /// The next line, which must be a response to `op`.
    fn response(&mut self, op: &str) -> Value {
        let v = self.recv();
        assert_eq!((v["type"].as_str(), v["op"].as_str()), (Some("response"), Some(op)), "{v}");
        v
    }

    /// Sends a request and returns its (successful) response.
    fn ok(&mut self, request: Value) -> Value {
        let op = request["op"].as_str().unwrap().to_string();
        self.send(request);
        let v = self.response(&op);
        assert_eq!(v["ok"], true, "{v}");
        v
    }

    /// Sends a request that must fail with the error `name`; returns the response.
    fn fails(&mut self, request: Value, name: &str) -> Value {
        let op = request["op"].as_str().unwrap().to_string();
        self.send(request);
        let v = self.response(&op);
        assert_eq!((&v["ok"], v["error"]["name"].as_str()), (&json!(false), Some(name)), "{v}");
        assert!(v["error"]["code"].is_u64() && v["error"]["message"].is_string(), "{v}");
        v
    }

    /// The next line, which must be the event `name`.
    fn event(&mut self, name: &str) -> Value {
        let v = self.recv();
        assert_eq!((v["type"].as_str(), v["event"].as_str()), (Some("event"), Some(name)), "{v}");
        v
    }

    /// Asserts that nothing is printed within `ms`.
    fn quiet(&mut self, ms: u64) {
        if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(ms)) {
            panic!("{}: expected no output, got {line}", self.user);
        }
    }

    /// Skips lines until one contains `text`, within `within`; returns it.
    fn expect_line(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("{}: no line with {text:?} ({e}); got {seen:#?}", self.user),
            }
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Every remaining line and the exit status (the process must exit within the timeout).
    fn wait_exit(&mut self) -> (Vec<Value>, ExitStatus) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let mut rest = Vec::new();
        // The reader thread ends (and the channel disconnects) when stdout closes.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(serde_json::from_str(&line).unwrap()),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("{}: did not exit", self.user),
            }
        }
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return (rest, status);
            }
            assert!(Instant::now() < deadline, "{}: did not exit", self.user);
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn two_clients_chat_through_the_server() {
    let server = Server::start();
    let mut alice = server.ready("alice");
    let mut bob = server.ready("bob");

    let r = alice.ok(json!({"op": "create_room", "room_id": "r1", "room_name": "Room one"}));
    assert_eq!(
        (&r["room_id"], &r["room_name"], &r["created"]),
        (&json!("r1"), &json!("Room one"), &json!(true))
    );
    assert_eq!((&r["member_count"], &r["last_seq"]), (&json!(1), &json!(0)));
    let r = bob.ok(json!({"op": "join_room", "room_id": "r1"}));
    assert_eq!(
        (&r["created"], &r["already_member"], &r["member_count"]),
        (&json!(false), &json!(false), &json!(2))
    );

    let e = alice.event("members_joined");
    assert_eq!(e["room_id"], "r1");
    assert_eq!(e["members"], json!([{"user_id": "bob", "user_name": "bob name"}]));

    let sent = bob.ok(
        json!({"op": "send_room_message", "room_id": "r1", "text": "hello", "priority": "medium"}),
    );
    assert_eq!(
        (&sent["room_id"], &sent["seq"], &sent["duplicate"]),
        (&json!("r1"), &json!(1), &json!(false))
    );
    assert!(sent["message_id"].is_u64() && sent["timestamp_ms"].is_u64(), "{sent}");
    let m = alice.event("room_message");
    assert_eq!(
        (&m["room_id"], &m["text"], &m["sender"]),
        (&json!("r1"), &json!("hello"), &json!("bob"))
    );
    assert_eq!(
        (&m["seq"], &m["priority"], &m["message_id"]),
        (&json!(1), &json!("medium"), &sent["message_id"])
    );
    assert!(m.get("custom").is_none(), "{m}");

    // Custom bodies travel as hex; the default priority is low.
    alice.ok(json!({"op": "send_room_message", "room_id": "r1", "custom": {"sub_type": 7, "data": "00ff10"}}));
    let m = bob.event("room_message");
    assert_eq!(
        (&m["custom"], &m["priority"], &m["seq"]),
        (&json!({"sub_type": 7, "data": "00ff10"}), &json!("low"), &json!(2))
    );
    assert!(m.get("text").is_none(), "{m}");

    let c = alice.ok(json!({"op": "query_room_online_count", "room_id": "r1", "id": "count-1"}));
    assert_eq!(
        (&c["id"], &c["room_id"], &c["count"]),
        (&json!("count-1"), &json!("r1"), &json!(2))
    );
    let q = alice.ok(json!({"op": "query_room_members", "room_id": "r1"}));
    assert_eq!(q["members"].as_array().unwrap().len(), 2, "{q}");
    assert_eq!(q["next_flag"], "");
    let h = bob.ok(json!({"op": "query_history", "room_id": "r1", "after_seq": 0}));
    assert_eq!(h["messages"][0]["text"], "hello", "{h}");
    assert_eq!(h["messages"][1]["custom"]["data"], "00ff10", "{h}");
    assert_eq!(h["has_more"], false);
    let j = bob.ok(json!({"op": "query_joined_rooms"}));
    assert_eq!(j["rooms"], json!([{"room_id": "r1", "room_name": "Room one", "member_count": 2}]));

    // End of input: bob logs out and exits 0; alice sees him leave.
    bob.close_stdin();
    let (rest, status) = bob.wait_exit();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(rest.iter().all(|v| v["event"] == "disconnected"), "{rest:?}");
    let e = alice.event("members_left");
    assert_eq!((&e["room_id"], &e["reason"]), (&json!("r1"), &json!("left")));
    assert_eq!(e["members"], json!([{"user_id": "bob", "user_name": "bob name"}]));
    alice.quiet(200);
}

#[test]
fn errors_have_codes_and_names_and_the_client_keeps_going() {
    let server = Server::start();
    let mut alice = server.ready("alice");
    let mut bob = server.ready("bob");
    alice.ok(json!({"op": "create_room", "room_id": "taken"}));
    bob.fails(json!({"op": "create_room", "room_id": "taken"}), "room_already_exists");
    let v = bob
        .fails(json!({"op": "join_room", "room_id": "missing", "id": 42}), "room_does_not_exist");
    assert_eq!(v["id"], 42);
    assert_eq!(v["error"]["code"], 3002);
    bob.fails(json!({"op": "send_room_message", "room_id": "taken", "text": "x"}), "not_in_room");
    bob.fails(json!({"op": "leave_room", "room_id": "taken"}), "not_in_room");

    // Lines that are not valid requests: the answer says why, and the client carries on.
    bob.send_raw("this is not json");
    let v = bob.recv();
    assert_eq!(
        (&v["type"], &v["op"], &v["ok"]),
        (&json!("response"), &Value::Null, &json!(false)),
        "{v}"
    );
    assert_eq!(
        (&v["error"]["code"], &v["error"]["name"]),
        (&json!(1000), &json!("invalid_request"))
    );
    for (line, op) in [
        (json!({"op": "fly_away", "id": "u"}), json!("fly_away")),
        (json!({"op": "join_room", "id": "m"}), json!("join_room")),
        (json!({"op": "join_room", "room_id": 5}), json!("join_room")),
        (
            json!({"op": "send_room_message", "room_id": "r", "text": "t", "priority": "urgent"}),
            json!("send_room_message"),
        ),
        (json!({"room_id": "r"}), Value::Null),
    ] {
        bob.send(line.clone());
        let v = bob.recv();
        assert_eq!(
            (&v["type"], &v["op"], &v["ok"]),
            (&json!("response"), &op, &json!(false)),
            "{v}"
        );
        assert_eq!(v["error"]["name"], "invalid_request", "{line} -> {v}");
        assert_eq!(v.get("id"), line.get("id"), "{v}");
    }
    alice.quiet(100);
    let c = bob.ok(json!({"op": "query_room_online_count", "room_id": "taken"}));
    assert_eq!(c["count"], 1);
}

#[test]
fn end_of_input_waits_for_every_answer_then_exits_zero() {
    let server = Server::start();
    let mut alice = server.ready("alice");
    // Pipelined: each request goes out before the previous answer; order is kept.
    alice.send(json!({"op": "create_room", "room_id": "p", "id": 0}));
    for i in 1..=50 {
        alice.send(json!({"op": "send_room_message", "room_id": "p", "text": format!("m{i}"),
            "priority": "high", "id": i}));
    }
    alice.send(json!({"op": "query_history", "room_id": "p", "count": 100, "id": 51}));
    alice.close_stdin();
    let (lines, status) = alice.wait_exit();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let (responses, others): (Vec<_>, Vec<_>) = lines.iter().partition(|v| v["type"] == "response");
    assert_eq!(responses.len(), 52, "{lines:?}");
    for (i, r) in responses.iter().enumerate() {
        assert_eq!((&r["id"], &r["ok"]), (&json!(i), &json!(true)), "{r}");
    }
    for (i, r) in responses[1..51].iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "{r}");
    }
    assert_eq!(responses[51]["messages"].as_array().unwrap().len(), 50);
    // After the answers: at most the disconnected event, nothing else.
    assert!(others.len() <= 1 && others.iter().all(|v| v["event"] == "disconnected"), "{others:?}");
}

#[test]
fn failed_login_prints_an_error_line_and_exits_non_zero() {
    let server = Server::start();
    let mut c = server.client("alice", &["--token", "garbage"]);
    let v = c.recv();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(
        (&v["error"]["name"], &v["error"]["code"]),
        (&json!("token_malformed"), &json!(2010))
    );
    assert!(v["error"]["message"].is_string());
    let (rest, status) = c.wait_exit();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(status.code(), Some(1));

    // No token and no secret to mint one from: a clear local error.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["client", "--server", &server.addr, "--user", "alice", "--json", "--certs-dir"])
        .arg(empty.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["type"], &v["error"]["name"]), (&json!("error"), &json!("config")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("token.secret"), "{v}");
}

#[test]
fn a_session_kicked_by_a_second_login_exits_two() {
    let server = Server::start();
    let mut first = server.ready("alice");
    let _second = server.ready("alice");
    let e = first.event("kicked_out");
    assert_eq!((&e["code"], &e["name"]), (&json!(2004), &json!("kicked_out")), "{e}");
    let d = first.event("disconnected");
    assert_eq!((&d["code"], &d["name"]), (&json!(2004), &json!("kicked_out")), "{d}");
    let (rest, status) = first.wait_exit();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(status.code(), Some(2));
}

impl Cli {
    /// Sends a request that succeeds and also announces an event to this client: returns the
    /// response and the event, which the client prints in that order although the answer
    /// travels on the control stream and the event on the room's stream.
    fn ok_with_event(&mut self, request: Value, event: &str) -> (Value, Value) {
        let op = request["op"].as_str().unwrap().to_string();
        self.send(request);
        let (response, ev) = (self.recv(), self.recv());
        assert_eq!(
            (response["type"].as_str(), response["op"].as_str(), &response["ok"]),
            (Some("response"), Some(op.as_str()), &json!(true)),
            "{response} {ev}"
        );
        assert_eq!((ev["type"].as_str(), ev["event"].as_str()), (Some("event"), Some(event)));
        (response, ev)
    }
}

#[test]
fn room_and_member_attributes_from_json_lines() {
    let server = Server::start();
    let mut alice = server.ready("alice");
    let mut bob = server.ready("bob");
    let r = alice.ok(json!({"op": "create_room", "room_id": "a1", "attributes": {"seed": "s"}}));
    assert_eq!(r["attributes"], json!({"seed": "s"}), "{r}");
    let r = bob.ok(json!({"op": "join_room", "room_id": "a1"}));
    assert_eq!(r["attributes"], json!({"seed": "s"}), "{r}");
    alice.event("members_joined");

    // A set reaches every member, the writer included: `set` is an object, `deleted` a list.
    let (r, e) = alice.ok_with_event(
        json!({"op": "set_room_attributes", "room_id": "a1", "id": 1,
            "attributes": {"topic": "hello", "mode": "quiet"}}),
        "room_attributes_updated",
    );
    assert_eq!((&r["id"], &r["room_id"], &r["failed_keys"]), (&json!(1), &json!("a1"), &json!([])));
    let expected = json!({"type": "event", "event": "room_attributes_updated", "room_id": "a1",
        "set": {"mode": "quiet", "topic": "hello"}, "deleted": []});
    assert_eq!(e, expected);
    assert_eq!(bob.event("room_attributes_updated"), expected);

    // Alice's key is hers while she is in the room: bob's write is reported, not applied.
    let r = bob.ok(json!({"op": "set_room_attributes", "room_id": "a1",
        "attributes": {"topic": "mine"}}));
    assert_eq!(
        r["failed_keys"],
        json!([{"key": "topic", "code": 6004, "name": "attribute_not_owned"}]),
        "{r}"
    );
    let (_, e) = bob.ok_with_event(
        json!({"op": "delete_room_attributes", "room_id": "a1", "keys": ["mode"], "is_force": true}),
        "room_attributes_updated",
    );
    assert_eq!((&e["set"], &e["deleted"]), (&json!({}), &json!(["mode"])), "{e}");
    alice.event("room_attributes_updated");

    // Validation errors fail the whole request with the code's name.
    let v = alice.fails(
        json!({"op": "set_room_attributes", "room_id": "a1",
            "attributes": {"ok": "1", "k234567890123456x": "v"}}),
        "attribute_key_too_long",
    );
    assert_eq!(v["error"]["code"], 6001);
    let q = bob.ok(json!({"op": "query_room_attributes", "room_id": "a1"}));
    assert_eq!(q["attributes"], json!({"seed": "s", "topic": "hello"}), "{q}");

    // A batch: steps answered at once, then one event with the net change.
    let b = alice.ok(json!({"op": "begin_room_attributes_batch", "room_id": "a1", "id": "b"}));
    assert_eq!((&b["id"], &b["room_id"]), (&json!("b"), &json!("a1")), "{b}");
    alice.fails(json!({"op": "begin_room_attributes_batch", "room_id": "a1"}), "invalid_request");
    let s = alice.ok(json!({"op": "set_room_attributes", "room_id": "a1", "id": 2,
        "attributes": {"x": "1", "y": "2"}}));
    assert_eq!(
        s,
        json!({"type": "response", "op": "set_room_attributes", "id": 2, "ok": true, "batched": true})
    );
    let d =
        alice.ok(json!({"op": "delete_room_attributes", "room_id": "a1", "keys": ["seed", "y"]}));
    assert_eq!(d["batched"], true, "{d}");
    bob.quiet(200);
    let (r, e) = alice.ok_with_event(
        json!({"op": "end_room_attributes_batch", "room_id": "a1"}),
        "room_attributes_updated",
    );
    assert_eq!((&r["room_id"], &r["failed_keys"]), (&json!("a1"), &json!([])), "{r}");
    assert_eq!((&e["set"], &e["deleted"]), (&json!({"x": "1"}), &json!(["seed"])), "{e}");
    assert_eq!(bob.event("room_attributes_updated"), e);
    let v =
        alice.fails(json!({"op": "end_room_attributes_batch", "room_id": "a1"}), "invalid_request");
    assert_eq!(v["op"], "end_room_attributes_batch");
    // A batch that touches a key alice owns fails as a whole at its end and changes nothing.
    bob.ok(json!({"op": "begin_room_attributes_batch", "room_id": "a1"}));
    bob.ok(json!({"op": "set_room_attributes", "room_id": "a1", "attributes": {"z": "1"}}));
    bob.ok(json!({"op": "delete_room_attributes", "room_id": "a1", "keys": ["x"]}));
    bob.fails(json!({"op": "end_room_attributes_batch", "room_id": "a1"}), "attribute_not_owned");
    let q = bob.ok(json!({"op": "query_room_attributes", "room_id": "a1"}));
    assert_eq!(q["attributes"], json!({"topic": "hello", "x": "1"}), "{q}");

    // Member attributes.
    let (r, e) = bob.ok_with_event(
        json!({"op": "set_room_members_attributes", "room_id": "a1",
            "user_ids": ["alice", "bob", "nobody"], "attributes": {"role": "host"}}),
        "room_member_attributes_updated",
    );
    let members = json!([{"user_id": "alice", "attributes": {"role": "host"}},
        {"user_id": "bob", "attributes": {"role": "host"}}]);
    assert_eq!((&r["members"], &r["failed_user_ids"]), (&members, &json!(["nobody"])), "{r}");
    assert_eq!((&e["members"], &e["operated_by"]), (&members, &json!("bob")), "{e}");
    assert_eq!(alice.event("room_member_attributes_updated"), e);
    let q = alice.ok(json!({"op": "query_room_members_attributes", "room_id": "a1",
        "user_ids": ["bob"]}));
    assert_eq!(q["members"], json!([{"user_id": "bob", "attributes": {"role": "host"}}]), "{q}");
    let p = alice.ok(json!({"op": "query_room_member_attributes_list", "room_id": "a1",
        "count": 1}));
    assert_eq!(p["members"][0]["user_id"], "alice", "{p}");
    let flag = p["next_flag"].as_str().unwrap().to_string();
    assert!(!flag.is_empty(), "{p}");
    let p = alice.ok(json!({"op": "query_room_member_attributes_list", "room_id": "a1",
        "next_flag": flag}));
    assert_eq!((&p["members"][0]["user_id"], &p["next_flag"]), (&json!("bob"), &json!("")), "{p}");
    alice.fails(
        json!({"op": "set_room_members_attributes", "room_id": "a1", "user_ids": ["bob"],
            "attributes": {"toolongky": "v"}}),
        "attribute_key_too_long",
    );
    alice.quiet(100);
    bob.quiet(100);
}

#[test]
fn responses_print_before_the_events_sent_after_them() {
    let server = Server::start();
    let mut alice = server.ready("alice");
    alice.ok(json!({"op": "create_room", "room_id": "o1"}));
    for i in 0..30 {
        let (r, e) = alice.ok_with_event(
            json!({"op": "set_room_attributes", "room_id": "o1", "id": i,
                "attributes": {"k": i.to_string()}}),
            "room_attributes_updated",
        );
        assert_eq!((&r["id"], &e["set"]["k"]), (&json!(i), &json!(i.to_string())));
    }
    // Pipelined: every answer still comes before what the server sent after it.
    for i in 0..10 {
        alice.send(json!({"op": "set_room_attributes", "room_id": "o1", "id": i,
            "attributes": {"p": i.to_string()}}));
    }
    let lines: Vec<Value> = (0..20).map(|_| alice.recv()).collect();
    for i in 0..10 {
        let answer = lines.iter().position(|l| l["type"] == "response" && l["id"] == i).unwrap();
        let p = i.to_string();
        let event = lines.iter().position(|l| l["set"]["p"] == p.as_str()).unwrap();
        assert!(answer < event, "{lines:#?}");
    }
}

#[test]
fn a_message_over_the_frame_limit_is_refused_locally_and_the_session_goes_on() {
    let server = Server::start();
    let mut alice = server.ready("alice");
    alice.ok(json!({"op": "create_room", "room_id": "big"}));
    let text = "x".repeat(70_000);
    let v = alice.fails(
        json!({"op": "send_room_message", "room_id": "big", "text": text, "priority": "medium"}),
        "message_too_large",
    );
    assert_eq!(v["error"]["code"], 5000, "{v}");
    // Between the server's limit (32 KiB) and the frame limit, the server says the same.
    let text = "x".repeat(40_000);
    alice.fails(
        json!({"op": "send_room_message", "room_id": "big", "text": text}),
        "message_too_large",
    );
    alice.ok(json!({"op": "send_room_message", "room_id": "big", "text": "small"}));
    alice.close_stdin();
    let (rest, status) = alice.wait_exit();
    assert_eq!(rest.last().unwrap()["event"], "disconnected", "{rest:?}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn end_of_input_after_the_server_ended_the_session_exits_non_zero() {
    let server = Server::start();
    let mut first = server.ready("alice");
    let _second = server.ready("alice");
    // The end of input races the kick: whichever the client sees first, it exits 2.
    first.close_stdin();
    let (rest, status) = first.wait_exit();
    assert!(rest.iter().any(|l| l["event"] == "disconnected"), "{rest:?}");
    assert_eq!(status.code(), Some(2), "{rest:?}");
}

/// `huddle token` with its arguments and environment; the exit status, stdout and stderr.
fn token(args: &[&str], certs_env: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("token").args(args).env_remove("HUDDLE_CERTS_DIR");
    if let Some(dir) = certs_env {
        cmd.env("HUDDLE_CERTS_DIR", dir);
    }
    let out = cmd.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn token_never_makes_a_secret_and_finds_the_certs_through_the_environment() {
    let empty = tempfile::tempdir().unwrap();
    let certs = empty.path().join("certs");
    let dir = certs.to_str().unwrap();
    let (ok, out, err) = token(&["--user", "alice", "--dir", dir], None);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("run huddle serve or huddle certs first, or pass --dir"), "{err}");
    // The user id is checked before anything else.
    let (ok, _, err) = token(&["--user", "bad id", "--dir", dir], None);
    assert!(!ok && err.contains("invalid user id"), "{err}");
    assert!(!certs.exists(), "token wrote into {}", certs.display());

    let server = Server::start();
    let (ok, minted, err) = token(&["--user", "alice"], Some(server.certs()));
    assert!(ok, "{err}");
    // A client with the minted token and the CA found through HUDDLE_CERTS_DIR.
    let mut child = Command::new(BIN)
        .args(["client", "--server", &server.addr, "--user", "alice", "--json", "--token"])
        .arg(minted.trim())
        .env("HUDDLE_CERTS_DIR", server.certs())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(child.stdout.take().unwrap());
    let mut alice = Cli { user: "alice".into(), stdin: None, lines, child: Guard(child) };
    assert_eq!(alice.recv()["type"], "ready");
    let (_, status) = alice.wait_exit();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_client_says_where_it_connects_and_what_to_check_when_nothing_answers() {
    // A UDP port that was just free: nothing listens there.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["client", "--json", "--user", "alice", "--token", "t", "--connect-timeout-s", "1"])
        .args(["--server", &addr.to_string(), "--certs-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = line_reader(child.stderr.take().unwrap());
    let first = err.recv_timeout(Duration::from_millis(500)).expect("nothing said at once");
    assert_eq!(first, format!("connecting to {addr} ..."));
    let lines = line_reader(child.stdout.take().unwrap());
    let mut c = Cli { user: "alice".into(), stdin: None, lines, child: Guard(child) };
    let (rest, status) = c.wait_exit();
    assert_eq!(status.code(), Some(1));
    let message = rest[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("is huddle serve running there?"), "{message}");
}

#[test]
fn the_interactive_client_refuses_an_unquoted_room_name_and_sends_at_medium() {
    let server = Server::start();
    let mut alice = server.chat("alice");
    alice.send_raw("/help");
    alice.expect_line("medium priority", LINE_TIMEOUT);
    alice.send_raw("/enter has space");
    alice.expect_line("usage: /enter ROOM [\"NAME\"]", LINE_TIMEOUT);
    alice.send_raw("/rooms");
    alice.expect_line("you are in no room", LINE_TIMEOUT);
    alice.send_raw("/enter r1 \"Team room\"");
    alice.expect_line("[r1] created; 1 member; now talking here", LINE_TIMEOUT);
    alice.send_raw("hello");
    alice.expect_line("[r1] alice: hello", LINE_TIMEOUT);
    // Medium: kept in history (as low would be too) with its priority.
    let mut bob = server.ready("bob");
    bob.ok(json!({"op": "join_room", "room_id": "r1"}));
    let h = bob.ok(json!({"op": "query_history", "room_id": "r1"}));
    assert_eq!(h["messages"][0]["priority"], "medium", "{h}");
    alice.send_raw("/quit");
    let deadline = Instant::now() + LINE_TIMEOUT;
    while alice.child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not exit");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(alice.child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn after_a_server_restart_a_typed_line_is_kept_and_the_room_entered_again() {
    let mut server = Server::start();
    let mut alice = server.chat("alice");
    alice.send_raw("/enter lobby");
    alice.expect_line("[lobby] created", LINE_TIMEOUT);
    server.kill_and_restart();
    let typed = Instant::now();
    alice.send_raw("are you there?");
    alice.send_raw("and again");
    alice.expect_line("*** connection lost", Duration::from_secs(8));
    assert!(typed.elapsed() < Duration::from_secs(8), "{:?}", typed.elapsed());
    let why = alice.expect_line("[lobby] could not rejoin", LINE_TIMEOUT);
    assert!(why.contains("the room no longer exists"), "{why}");
    alice.expect_line("[lobby] alice: are you there?", LINE_TIMEOUT);
    alice.expect_line("[lobby] alice: and again", LINE_TIMEOUT);
    let mut bob = server.ready("bob");
    let h = bob.ok(json!({"op": "enter_room", "room_id": "lobby"}));
    assert_eq!(h["created"], false, "{h}");
    let h = bob.ok(json!({"op": "query_history", "room_id": "lobby"}));
    let texts: Vec<&Value> = h["messages"].as_array().unwrap().iter().map(|m| &m["text"]).collect();
    assert_eq!(texts, [&json!("are you there?"), &json!("and again")], "{h}");
}

/// `huddle client --help` names every op the JSON-lines mode accepts and every event it can
/// print; an op it names is one the parser knows.
#[test]
fn the_help_names_every_op_and_event() {
    let out = Command::new(BIN).args(["client", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for op in huddle::cli::json::OPS {
        assert!(help.contains(&format!("  {op}")), "--help does not list the op {op}");
        let line = format!(r#"{{"op":"{op}"}}"#);
        let parsed = huddle::cli::json::parse_line(&line);
        if let Err(e) = &parsed.command {
            assert!(!e.contains("unknown op"), "{op} is listed but not parsed: {e}");
        }
    }
    for event in huddle::fuzzing::sample_events() {
        let name = event.name();
        assert!(help.contains(&format!("\"{name}\"")), "--help does not list the event {name}");
    }
}

/// `huddle sub ROOM` prints a room's messages one line each; `huddle pub ROOM TEXT` sends one
/// (medium by default) and says its seq; both exit 0.
#[test]
fn pub_and_sub_for_scripts() {
    let server = Server::start();
    let mut sub = Command::new(BIN)
        .args(["sub", "news", "--count", "2", "--server", &server.addr, "--user", "reader"])
        .arg("--certs-dir")
        .arg(server.certs())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = line_reader(sub.stdout.take().unwrap());
    let err = line_reader(sub.stderr.take().unwrap());
    let sub = Guard(sub);
    let line = err.recv_timeout(LINE_TIMEOUT).expect("sub says when it is subscribed");
    let line = if line.starts_with("connecting") {
        err.recv_timeout(LINE_TIMEOUT).expect("sub says when it is subscribed")
    } else {
        line
    };
    assert_eq!(line, "subscribed to news (Ctrl-C to stop)");
    for (i, text) in ["first", "second"].into_iter().enumerate() {
        let publish = Command::new(BIN)
            .args(["pub", "news", text, "--server", &server.addr, "--user", "writer"])
            .arg("--certs-dir")
            .arg(server.certs())
            .output()
            .unwrap();
        assert!(publish.status.success(), "{publish:?}");
        let said = String::from_utf8(publish.stdout).unwrap();
        assert_eq!(said.trim(), format!("published to news as seq {}", i + 1));
        let got = out.recv_timeout(LINE_TIMEOUT).expect("sub prints the message");
        assert_eq!(got, format!("[news] writer: {text}"));
    }
    let mut sub = sub;
    let status = sub.0.wait().unwrap();
    assert!(status.success(), "sub exits 0 after --count messages: {status:?}");
}
