// Client logic against an in-memory WebTransport and a small server (test/fake.js): login,
// requests matched to responses, events from unidirectional streams, resumption with replay and
// dedup, and the cases where the client must not resume.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Event, HuddleClient, HuddleError, encodeFrame } from "../huddle.js";
import { MiniServer, settle, until } from "./fake.js";

const URL_ = "https://127.0.0.1:7443/huddle";

/**
 * @param {MiniServer} server
 * @param {object} [extra]
 */
function client(server, extra = {}) {
  return new HuddleClient({
    url: URL_, createTransport: server.factory, sleep: (ms) => settle(Math.min(ms, 3)), ...extra,
  });
}

/**
 * Collects a client's events.
 * @param {HuddleClient} c
 */
function collect(c) {
  /** @type {any[]} */
  const seen = [];
  c.on("*", (e) => seen.push(e));
  return seen;
}

/** @param {any[]} events */
function texts(events) {
  return events.filter((e) => e.type === "RoomMessage").map((e) => e.body.text);
}

test("login sends the Login frame, passes the certificate hash, and opens the session stream", async () => {
  const server = new MiniServer();
  const hash = Buffer.alloc(32, 9).toString("base64");
  const c = client(server, { certHashes: [hash] });
  const r = await c.login({ userId: "alice", userName: "Alice", token: "tok" });
  assert.equal(r.type, "LoggedIn");
  assert.equal(r.session_id, 300);
  const t = server.transports[0];
  assert.equal(t.url, URL_);
  assert.equal(t.options.serverCertificateHashes[0].algorithm, "sha-256");
  assert.deepEqual([...t.options.serverCertificateHashes[0].value], Array(32).fill(9));
  assert.deepEqual(t.received[0], { request_id: 1, request: { type: "Login", protocol_version: 1, user_id: "alice", user_name: "Alice", token: "tok" } });
  assert.deepEqual(c.sessionState()?.resume_secret, Array(16).fill(300 % 256));
  c.close();
});

test("responses are matched by request id, not by order", async () => {
  const server = new MiniServer();
  /** @type {any[]} */
  const held = [];
  server.override = (t, frame) => {
    if (frame.request.type !== "Ping" && frame.request.type !== "QueryJoinedRooms") return undefined;
    held.push([t, frame]);
    if (held.length < 2) return null;
    // Answer the second request first, then the first.
    for (const [tt, f] of held.reverse()) {
      const response = f.request.type === "Ping" ? { type: "Pong" } : { type: "JoinedRooms", rooms: [{ room_id: "r9", room_name: "", member_count: 1 }] };
      server.reply(tt, f.request_id, { type: "Ok", response });
    }
    return null;
  };
  const c = client(server);
  await c.login({ userId: "alice", token: "t" });
  const [pong, rooms] = await Promise.all([c.ping(), c.queryJoinedRooms()]);
  assert.equal(pong.type, "Pong");
  assert.equal(rooms.rooms[0].room_id, "r9");
  c.close();
});

test("an Err reply rejects with a HuddleError carrying code and name", async () => {
  const server = new MiniServer();
  const c = client(server);
  await c.login({ userId: "alice", token: "t" });
  await assert.rejects(c.joinRoom("nope"), (e) => e instanceof HuddleError && e.code === 3002 && e.codeName === "room_does_not_exist");
  await c.enterRoom("r1");
  await assert.rejects(c.sendText("r1", "x".repeat(32769)), (e) => e instanceof HuddleError && e.code === 5000 && e.codeName === "message_too_large");
  // A request over the 64 KiB frame limit is refused before it is sent.
  const sent = server.transports[0].received.length;
  await assert.rejects(c.sendText("r1", "x".repeat(70000)), (e) => e instanceof HuddleError && e.code === 1001);
  assert.equal(server.transports[0].received.length, sent);
  // The connection is still usable.
  assert.equal((await c.ping()).type, "Pong");
  c.close();
});

test("two clients in a room: member events and messages arrive on the room streams", async () => {
  const server = new MiniServer();
  const alice = client(server);
  const bob = client(server);
  const aliceEvents = collect(alice);
  await alice.login({ userId: "alice", userName: "Alice", token: "t" });
  await bob.login({ userId: "bob", userName: "Bob", token: "t" });
  const entered = await alice.enterRoom("r1", { roomName: "Room one" });
  assert.equal(entered.type, "RoomEntered");
  const bobIter = bob.events();
  await bob.joinRoom("r1");
  await until(() => aliceEvents.some((e) => e.type === "MembersJoined"));
  assert.deepEqual(aliceEvents.find((e) => e.type === "MembersJoined").members, [{ user_id: "bob", user_name: "Bob" }]);
  const sent = await alice.sendText("r1", "hello", { priority: "High" });
  assert.equal(sent.seq, 1);
  await alice.sendCustom("r1", 7, new Uint8Array([1, 2, 3]));
  const first = (await bobIter.next()).value;
  assert.equal(first.type, "RoomMessage");
  assert.equal(first.body.text, "hello");
  assert.equal(first.priority.type, "High");
  assert.equal(first.sender, "alice");
  const second = (await bobIter.next()).value;
  assert.deepEqual(second.body, { type: "Custom", sub_type: 7, data: new Uint8Array([1, 2, 3]) });
  // Every send carries a client_msg_id by default.
  const sends = server.transports[0].received.filter((f) => f.request.type === "SendRoomMessage");
  assert.ok(sends.every((f) => typeof f.request.client_msg_id === "string" && f.request.client_msg_id.length <= 64));
  assert.notEqual(sends[0].request.client_msg_id, sends[1].request.client_msg_id);
  await bob.leaveRoom("r1");
  await until(() => aliceEvents.some((e) => e.type === "MembersLeft"));
  assert.deepEqual(bob.sessionState()?.rooms, []);
  alice.close();
  bob.close();
  assert.equal((await bobIter.next()).value.type, "closed");
  assert.equal((await bobIter.next()).done, true, "the iterator ends with the client");
});

test("frames split byte by byte, unknown event variants and datagrams", async () => {
  const server = new MiniServer();
  const c = client(server);
  const seen = collect(c);
  await c.login({ userId: "bob", token: "t" });
  await c.enterRoom("r1");
  const t = server.transports[0];
  const stream = t.openUni({ type: "Room", room_id: "r1" });
  const msg = (/** @type {number} */ seq, /** @type {string} */ prio) => ({ type: "RoomMessage", room_id: "r1", seq, message_id: seq, sender: "alice", timestamp_ms: 1, priority: { type: prio }, body: { type: "Text", text: `m${seq}` } });
  const bytes = encodeFrame(Event, msg(1, "Medium"));
  for (const b of bytes) stream.send(new Uint8Array([b]));
  // A newer server's event (variant 99) is skipped (section 12), the stream goes on.
  stream.send(new Uint8Array([2, 0, 0, 0, 99, 0]));
  stream.event(msg(2, "Medium"));
  await until(() => texts(seen).length === 2);
  // Low messages as datagrams: passed on only above the last Low seq (section 4.4).
  t.datagramController.enqueue(encodeFrame(Event, msg(4, "Low")));
  t.datagramController.enqueue(encodeFrame(Event, msg(3, "Low")));
  t.datagramController.enqueue(encodeFrame(Event, msg(5, "Medium"))); // not Low: ignored
  t.datagramController.enqueue(new Uint8Array([1, 2, 3])); // not a frame: ignored
  await until(() => texts(seen).length >= 3);
  await settle(10);
  assert.deepEqual(texts(seen), ["m1", "m2", "m4"]);
  assert.equal(server.transports.length, 1);
  c.close();
});

test("a lost session is resumed: replay in order, duplicates dropped by seq, no member events", async () => {
  const server = new MiniServer();
  server.extraReplay = true; // the server also replays one message the client has seen
  const alice = client(server);
  const bob = client(server);
  const bobEvents = collect(bob);
  const aliceEvents = collect(alice);
  await alice.login({ userId: "alice", token: "t" });
  await bob.login({ userId: "bob", token: "t" });
  await alice.enterRoom("r1");
  await bob.enterRoom("r1");
  await alice.sendText("r1", "one", { priority: "Medium" });
  await until(() => texts(bobEvents).length === 1);
  // The network drops Bob's session (no close code).
  server.transports[1].end(null);
  await until(() => bobEvents.some((e) => e.type === "connection_lost"));
  await alice.sendText("r1", "two");
  await alice.sendText("r1", "low", { priority: "Low" });
  await alice.sendText("r1", "three", { priority: "High" });
  await until(() => bobEvents.some((e) => e.type === "resumed"));
  await until(() => texts(bobEvents).length >= 3);
  await settle(10);
  const resume = server.transports[2].received[0].request;
  assert.equal(resume.type, "Resume");
  assert.equal(resume.session_id, 301);
  assert.deepEqual([...resume.resume_secret], Array(16).fill(301 % 256));
  assert.deepEqual(resume.rooms, [["r1", 1]]);
  assert.deepEqual(texts(bobEvents), ["one", "two", "three"], "replayed once each, in seq order, Low not replayed");
  const resumed = bobEvents.find((e) => e.type === "resumed");
  assert.equal(resumed.session_resumed, true);
  assert.equal(resumed.rooms[0].recovered, true);
  assert.ok(!aliceEvents.some((e) => e.type === "MembersLeft" || (e.type === "MembersJoined" && aliceEvents.indexOf(e) > 0)));
  // Live traffic continues on the new session.
  await alice.sendText("r1", "four");
  await until(() => texts(bobEvents).length === 4);
  assert.deepEqual(bob.sessionState()?.rooms, [["r1", 5]]);
  alice.close();
  bob.close();
});

test("a send left unanswered by the lost session is sent again after Resumed with the same client_msg_id", async () => {
  const server = new MiniServer();
  const c = client(server);
  const seen = collect(c);
  await c.login({ userId: "alice", token: "t" });
  await c.enterRoom("r1");
  // The server takes the send but the answer is lost with the session.
  server.override = (t, frame) => {
    if (frame.request.type !== "SendRoomMessage" || server.transports.length > 1) return undefined;
    server.override = () => undefined;
    server.handle(t, frame); // applied...
    t.end(null); // ...but the session dies before the answer arrives
    return null;
  };
  const reply = c.sendText("r1", "once", { clientMsgId: "cm-1" });
  const queued = c.ping(); // a request made while resuming waits for it
  const sent = await reply;
  assert.equal(sent.duplicate, true, "the server recognised the resend");
  assert.equal(sent.seq, 1);
  assert.equal((await queued).type, "Pong");
  const second = server.transports[1].received.map((f) => f.request.type);
  assert.deepEqual(second.slice(0, 2), ["Resume", "SendRoomMessage"], "Resume first, then the resend, before new requests");
  assert.equal(server.transports[1].received[1].request.client_msg_id, "cm-1");
  assert.equal(server.rooms.get("r1")?.history.length, 1);
  assert.ok(seen.some((e) => e.type === "resumed"));
  c.close();
});

test("a request that cannot be repeated fails with connection_lost when the session is lost", async () => {
  const server = new MiniServer();
  const c = client(server);
  await c.login({ userId: "alice", token: "t" });
  await c.enterRoom("r1");
  server.override = (t, frame) => {
    if (frame.request.type !== "LeaveRoom") return undefined;
    server.override = () => undefined;
    t.end(null);
    return null;
  };
  await assert.rejects(c.leaveRoom("r1"), (e) => e instanceof HuddleError && e.codeName === "connection_lost");
  await until(() => server.transports.length === 2 && server.transports[1].received.length > 0);
  c.close();
});

test("a malformed frame on a room stream hangs up and resumes", async () => {
  const server = new MiniServer();
  const c = client(server);
  const seen = collect(c);
  await c.login({ userId: "bob", token: "t" });
  await c.enterRoom("r1");
  const stream = server.transports[0].state.streams.get("r1");
  stream.send(new Uint8Array([2, 0, 0, 0, 2, 0xff])); // RoomMessage with a varint tag 0xff
  await until(() => seen.some((e) => e.type === "resumed"));
  assert.equal(server.transports[0].isClosed, true);
  assert.equal(server.transports[1].received[0].request.type, "Resume");
  c.close();
});

for (const [code, name] of [[2004, "kicked_out"], [2008, "session_resumed"], [2011, "disconnected_by_admin"]]) {
  test(`no resumption after ${name}`, async () => {
    const server = new MiniServer();
    const c = client(server);
    const seen = collect(c);
    await c.login({ userId: "alice", token: "t" });
    const t = server.transports[0];
    if (code !== 2008) t.state.session.event({ type: "KickedOut", code, message: "bye" });
    await settle(5);
    t.end({ closeCode: /** @type {number} */ (code), reason: /** @type {string} */ (name) });
    await until(() => seen.some((e) => e.type === "closed"));
    await settle(20);
    const closed = seen.find((e) => e.type === "closed");
    assert.equal(closed.code, code);
    assert.equal(closed.codeName, name);
    assert.equal(server.transports.length, 1, "no new session was opened");
    assert.equal(seen.filter((e) => e.type === "KickedOut").length, code === 2008 ? 0 : 1);
    await assert.rejects(c.ping(), (e) => e instanceof HuddleError && e.codeName === "closed");
  });
}

test("session_not_found: log in again and re-join the rooms", async () => {
  const server = new MiniServer();
  const c = client(server);
  const seen = collect(c);
  await c.login({ userId: "alice", token: "t" });
  await c.enterRoom("r1");
  // The server now holds the session with another secret.
  server.transports[0].state.secret = new Uint8Array(16).fill(1);
  server.transports[0].end(null);
  await until(() => seen.some((e) => e.type === "resumed"));
  const resumed = seen.find((e) => e.type === "resumed");
  assert.equal(resumed.relogin, true);
  assert.equal(resumed.rooms[0].rejoined, true);
  const kinds = server.transports.slice(1).map((t) => t.received.map((f) => f.request.type));
  assert.deepEqual(kinds, [["Resume"], ["Login", "JoinRoom"]]);
  assert.equal((await c.ping()).type, "Pong");
  c.close();
});

test("logout ends the session for good", async () => {
  const server = new MiniServer();
  const c = client(server);
  const seen = collect(c);
  await c.login({ userId: "alice", token: "t" });
  await c.enterRoom("r1");
  assert.equal((await c.logout()).type, "LoggedOut");
  await until(() => seen.some((e) => e.type === "closed"));
  await settle(20);
  assert.equal(server.transports.length, 1);
  assert.equal(c.sessionState(), null);
});

test("resume() continues a held session from saved state, e.g. after a page reload", async () => {
  const server = new MiniServer();
  const alice = client(server);
  const first = client(server, { autoResume: false });
  await alice.login({ userId: "alice", token: "t" });
  await first.login({ userId: "bob", token: "t" });
  await alice.enterRoom("r1");
  await first.enterRoom("r1");
  const saved = JSON.parse(JSON.stringify(first.sessionState()));
  server.transports[1].end(null); // the page went away
  await alice.sendText("r1", "while away");
  const again = client(server);
  const seen = collect(again);
  const r = await again.resume({ userId: "bob", token: "t" }, saved);
  assert.equal(r.type, "Resumed");
  assert.equal(r.session_resumed, true);
  await until(() => texts(seen).length === 1);
  assert.deepEqual(texts(seen), ["while away"]);
  alice.close();
  again.close();
});

test("a server that cannot be reached fails login with connect_failed", async () => {
  const server = new MiniServer();
  server.refuse = true;
  const c = client(server);
  await assert.rejects(c.login({ userId: "alice", token: "t" }), (e) => e instanceof HuddleError && e.codeName === "connect_failed");
});

test("a reset room stream hangs up and resumes; a resumed session's close code is waited for", async () => {
  const server = new MiniServer();
  const c = client(server);
  const seen = collect(c);
  await c.login({ userId: "bob", token: "t" });
  await c.enterRoom("r1");
  server.transports[0].state.streams.get("r1").reset();
  await until(() => seen.some((e) => e.type === "resumed"));
  assert.equal(server.transports[0].isClosed, true);
  // Now the server closes with session_resumed while a stream fails first: no resumption.
  const t = server.transports[1];
  t.state.streams.get("r1").reset();
  await settle(1);
  t.end({ closeCode: 2008, reason: "session_resumed" });
  await until(() => seen.some((e) => e.type === "closed"));
  assert.equal(seen.find((e) => e.type === "closed").code, 2008);
  await settle(20);
  assert.equal(server.transports.length, 2);
});
