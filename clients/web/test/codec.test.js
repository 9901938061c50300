// Codec tests: every byte example of docs/PROTOCOL.md, read from the document itself, plus the
// enum and field tables of sections 6 and 10 checked against the codec, and round trips of
// every message variant.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  ERROR_NAMES, Event, FrameReader, HuddleError, Reader, Request, RequestFrame, Response,
  ResponseFrame, StreamHeader, Writer, decodeBody, decodeFrame, encodeBody, encodeFrame, types,
} from "../huddle.js";

const DOC = readFileSync(new URL("../../../docs/PROTOCOL.md", import.meta.url), "utf8");

/** @param {string} s */
function hex(s) {
  return Uint8Array.from(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
}

/** @param {Uint8Array} b */
function toHex(b) {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
}

/** @param {string} marker */
function at(marker) {
  const i = DOC.indexOf(marker);
  assert.notEqual(i, -1, `PROTOCOL.md no longer contains ${JSON.stringify(marker)}`);
  return i;
}

const HEX_LINE = /^\s*[0-9a-f]{2}(\s+[0-9a-f]{2})*\s*$/;

/**
 * The bytes of the first fenced block after `marker` that has lines of hex bytes (other lines
 * of the block, such as a struct literal or an annotation line, are skipped).
 * @param {string} marker
 */
function blockAfter(marker) {
  const start = at(marker);
  for (const m of DOC.matchAll(/```[a-z]*\n([\s\S]*?)```/g)) {
    if (/** @type {number} */ (m.index) + m[0].length < start) continue; // the block may hold the marker
    const lines = m[1].split("\n").filter((l) => HEX_LINE.test(l));
    if (lines.length) return hex(lines.join(" "));
  }
  throw new Error(`no hex block after ${marker}`);
}

/**
 * The bytes of the first inline code span of hex bytes after `marker`.
 * @param {string} marker
 */
function inlineAfter(marker) {
  const span = /`([0-9a-f]{2}(?: [0-9a-f]{2})*)`/g;
  span.lastIndex = at(marker) + marker.length;
  const m = span.exec(DOC);
  assert.ok(m, `no hex span after ${marker}`);
  return hex(m[1]);
}

const sig = "0123456789abcdef".repeat(4);
const r1 = "r1";
const textHi = { type: "Text", text: "hi" };
const seven = new Uint8Array(16).fill(7);

/** Whole frames: [marker, how, codec, value]. */
const FRAMES = [
  ["### 11.1", blockAfter, RequestFrame, { request_id: 1, request: { type: "Login", protocol_version: 1, user_id: "alice", user_name: "Alice", token: `hd1:dev:alice:1700000000:1700003600:${sig}` } }],
  ["### 11.2", blockAfter, ResponseFrame, { request_id: 1, reply: { type: "Ok", response: { type: "LoggedIn", session_id: 300, resume_secret: Uint8Array.from({ length: 16 }, (_, i) => i), server_time_ms: 1700000000123, token_expires_at_s: 1700003600 } } }],
  ["After this frame the server opens the session stream", inlineAfter, StreamHeader, { type: "Session" }],
  ["### 11.3", blockAfter, RequestFrame, { request_id: 2, request: { type: "SendRoomMessage", room_id: r1, body: textHi, priority: { type: "Medium" }, client_msg_id: "m1" } }],
  ["### 11.4", blockAfter, ResponseFrame, { request_id: 2, reply: { type: "Ok", response: { type: "MessageSent", room_id: r1, message_id: 42, seq: 1, timestamp_ms: 1700000000456, duplicate: false } } }],
  ["Bob's `r1` stream began with", inlineAfter, StreamHeader, { type: "Room", room_id: r1 }],
  ["Event::RoomMessage(RoomMessage {", blockAfter, Event, { type: "RoomMessage", room_id: r1, seq: 1, message_id: 42, sender: "alice", timestamp_ms: 1700000000456, priority: { type: "Medium" }, body: textHi }],
  ["For example the error reply to request 5", blockAfter, ResponseFrame, { request_id: 5, reply: { type: "Err", code: 3002, message: "room does not exist" } }],
  ["`RoomDestroyed{room_id: \"r1\"}` is the frame", inlineAfter, Event, { type: "RoomDestroyed", room_id: r1 }],
  ["`RemovedFromRoom{room_id: \"r1\", reason: Kicked}` is", inlineAfter, Event, { type: "RemovedFromRoom", room_id: r1, reason: { type: "Kicked" } }],
  ["Pinned examples: `StreamHeader::Session` is the frame", inlineAfter, StreamHeader, { type: "Session" }],
  ["`StreamHeader::Room{room_id: \"r1\"}` is", inlineAfter, StreamHeader, { type: "Room", room_id: r1 }],
  ["`StreamHeader::RoomLow{room_id: \"r1\"}` is", inlineAfter, StreamHeader, { type: "RoomLow", room_id: r1 }],
  ["SetRoomAttributes, request 15", blockAfter, RequestFrame, { request_id: 15, request: { type: "SetRoomAttributes", room_id: r1, attributes: [["mood", "calm"], ["topic", "go"]], is_force: false, is_update_owner: true, is_delete_after_owner_left: true } }],
  ["Its answer: `topic` failed", blockAfter, ResponseFrame, { request_id: 15, reply: { type: "Ok", response: { type: "RoomAttributesChanged", room_id: r1, failed: [{ key: "topic", code: 6004 }] } } }],
  ["RoomAttributesBatch, request 18", blockAfter, RequestFrame, { request_id: 18, request: { type: "RoomAttributesBatch", room_id: r1, ops: [{ type: "Set", attributes: [["topic", "go"]], is_force: true, is_update_owner: true, is_delete_after_owner_left: false }, { type: "Delete", keys: ["mood"], is_force: false }] } }],
  ["Its answer (a batch either applies", blockAfter, ResponseFrame, { request_id: 18, reply: { type: "Ok", response: { type: "RoomAttributesChanged", room_id: r1, failed: [] } } }],
  ["Event::RoomAttributesUpdated { room_id: \"r1\", set: [(\"topic\"", blockAfter, Event, { type: "RoomAttributesUpdated", room_id: r1, set: [["topic", "go"]], deleted: ["mood"] }],
  ["Resume, request 22", blockAfter, RequestFrame, { request_id: 22, request: { type: "Resume", protocol_version: 1, user_id: "alice", user_name: "Alice", token: "t", session_id: 300, resume_secret: seven, rooms: [[r1, 41]] } }],
  ["Its answer, `Resumed`", blockAfter, ResponseFrame, { request_id: 22, reply: { type: "Ok", response: { type: "Resumed", session_id: 300, resume_secret: seven, session_resumed: true, token_expires_at_s: 1700003600, rooms: [{ room_id: r1, rejoined: true, recovered: true, replayed: 2, last_seq: 43, error_code: 0 }] } } }],
  ["Pinned frames: request id 23 with token", inlineAfter, RequestFrame, { request_id: 23, request: { type: "RenewToken", token: "t2" } }],
  ["its answer with expiry 1,700,003,600 is", inlineAfter, ResponseFrame, { request_id: 23, reply: { type: "Ok", response: { type: "TokenRenewed", token_expires_at_s: 1700003600 } } }],
  ["Pinned frames: request\nid 24 is", inlineAfter, RequestFrame, { request_id: 24, request: { type: "Ping" } }],
  ["id 24 is `02 00 00 00 18 17`; its answer is", inlineAfter, ResponseFrame, { request_id: 24, reply: { type: "Ok", response: { type: "Pong" } } }],
  ["Pinned frame with expiry 1,700,003,600:", inlineAfter, Event, { type: "TokenWillExpire", expires_at_s: 1700003600 }],
];

for (const [marker, how, codec, value] of FRAMES) {
  test(`PROTOCOL.md frame: ${marker.split("\n").join(" ")}`, () => {
    const bytes = /** @type {(m: string) => Uint8Array} */ (how)(/** @type {string} */ (marker));
    assert.equal(toHex(encodeFrame(codec, value)), toHex(bytes), "encoding");
    assert.deepEqual(decodeFrame(codec, bytes), value, "decoding");
  });
}

/** Bodies of section 6.4 ("Some encodings at a glance"): [marker, codec, value]. */
const BODIES = [
  ["`MessageBody::Text(\"hi\")` is", types.MessageBody, textHi],
  ["`MessageBody::Custom{sub_type: 7, data: de ad be ef}` is", types.MessageBody, { type: "Custom", sub_type: 7, data: hex("de ad be ef") }],
  ["`Priority::High`\nis", types.Priority, { type: "High" }],
  ["`HistoryAnchor::BeforeSeq(70000)` is", types.HistoryAnchor, { type: "BeforeSeq", seq: 70000 }],
  ["`RoomConfig` with delay 300\nand attributes `[(\"topic\", \"rust\")]` is", types.RoomConfig, { destroy_delay_s: 300, attributes: [["topic", "rust"]] }],
  ["is_delete_after_owner_left: false}` is", types.AttributeOp, { type: "Set", attributes: [["k", "v"]], is_force: false, is_update_owner: true, is_delete_after_owner_left: false }],
  ["`AttributeOp::Delete{keys: [\"k\"], is_force: true}` is", types.AttributeOp, { type: "Delete", keys: ["k"], is_force: true }],
  ["`AttributeFailure{key: \"k\", code: 6004}` is", types.AttributeFailure, { key: "k", code: 6004 }],
  ["`MemberAttributes{user_id: \"bob\", attributes: []}` is", types.MemberAttributes, { user_id: "bob", attributes: [] }],
];

for (const [marker, codec, value] of BODIES) {
  test(`PROTOCOL.md body: ${marker.split("\n").join(" ")}`, () => {
    const bytes = inlineAfter(/** @type {string} */ (marker));
    assert.equal(toHex(encodeBody(codec, value)), toHex(bytes));
    assert.deepEqual(decodeBody(codec, bytes), value);
  });
}

test("PROTOCOL.md frames state their total sizes", () => {
  for (const [marker, size] of [["### 11.1", 120], ["### 11.2", 40], ["### 11.3", 18], ["### 11.4", 22], ["### 11.5", 30]]) {
    assert.equal(blockAfter(/** @type {string} */ (marker)).length, size, /** @type {string} */ (marker));
  }
});

test("varint table of section 3.1, both ways", () => {
  const section = DOC.slice(at("### 3.1"), at("Decoding rules"));
  const rows = [...section.matchAll(/^\| ([\d,]+)[^|]*\| `([0-9a-f ]+)` \|$/gm)];
  assert.ok(rows.length >= 9, `only ${rows.length} varint rows found`);
  for (const [, num, bytes] of rows) {
    const v = BigInt(num.replaceAll(",", ""));
    const value = v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    const w = new Writer();
    w.varint(value, 0xffffffffffffffffn);
    assert.equal(toHex(w.bytes()), bytes, `encode ${num}`);
    const r = new Reader(hex(bytes));
    assert.equal(r.varint(0xfd), value, `decode ${num}`);
    r.done();
  }
});

test("varint decoding rules of section 3.1", () => {
  // A longer-than-necessary form is accepted.
  assert.equal(new Reader(hex("fb 05 00")).varint(0xfd), 5);
  // The tag must fit the field's type; ff is always an error.
  assert.throws(() => new Reader(hex("fc 00 00 01 00")).varint(0xfb), /not allowed/);
  assert.throws(() => new Reader(hex("fd 00 00 00 00 01 00 00 00")).varint(0xfc), /not allowed/);
  assert.throws(() => new Reader(hex("fe" + " 00".repeat(16))).varint(0xfd), /not allowed/);
  assert.throws(() => new Reader(hex("ff")).varint(0xfd), /not allowed/);
  // u64 beyond 2^53 stays exact as a bigint.
  const big = 0xfedcba9876543210n;
  const w = new Writer();
  w.varint(big, 0xffffffffffffffffn);
  assert.equal(new Reader(w.bytes()).varint(0xfd), big);
});

test("decoder refuses what section 2 and 3.2 call errors", () => {
  const ok = encodeFrame(Event, { type: "RoomDestroyed", room_id: "r1" });
  // trailing bytes
  assert.throws(() => decodeBody(Event, hex("08 02 72 31 00")), /trailing/);
  // too short
  assert.throws(() => decodeBody(Event, hex("08 02 72")), /length|short/);
  // bad bool, bad option tag, unknown variant, invalid UTF-8, zero-length body
  assert.throws(() => decodeBody(Event, hex("03 fb d4 07 00") /* KickedOut fine */ && hex("0a")), (e) => e.unknownVariant === true);
  assert.throws(() => decodeBody(types.RoomRecovery, hex("02 72 31 02 01 00 00 00")), /bool/);
  assert.throws(() => decodeBody(Request, hex("08 02 72 31 00 00 00 02")), /option/);
  assert.throws(() => decodeBody(types.Member, hex("02 c3 28 00")), /UTF-8/);
  assert.throws(() => decodeBody(Event, new Uint8Array(0)), /empty/);
  // a 12-byte body claiming a huge string is refused before allocating
  assert.throws(() => decodeBody(types.Member, hex("fd 00 00 00 00 00 01 00 00 61 62 63")), /exceeds/);
  assert.deepEqual(decodeFrame(Event, ok), { type: "RoomDestroyed", room_id: "r1" });
});

test("FrameReader reassembles frames split anywhere and checks the prefix first", () => {
  const frames = [blockAfter("### 11.2"), blockAfter("### 11.4"), inlineAfter("Pinned examples: `StreamHeader::Session` is the frame")];
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let off = 0;
  for (const f of frames) {
    all.set(f, off);
    off += f.length;
  }
  for (const step of [1, 3, 7, all.length]) {
    const fr = new FrameReader();
    const bodies = [];
    for (let i = 0; i < all.length; i += step) {
      fr.push(all.subarray(i, i + step));
      for (let b = fr.next(); b; b = fr.next()) bodies.push(toHex(b));
    }
    assert.deepEqual(bodies, frames.map((f) => toHex(f.subarray(4))), `step ${step}`);
    assert.equal(fr.partial, false);
  }
  const big = new FrameReader(65536);
  big.push(hex("01 00 01 00"));
  assert.throws(() => big.next(), (e) => e instanceof HuddleError && e.code === 1001);
  const zero = new FrameReader();
  zero.push(hex("00 00 00 00"));
  assert.throws(() => zero.next(), (e) => e instanceof HuddleError && e.code === 1002);
});

/**
 * The rows `| n | `Name` | ...` of the first table after `marker`.
 * @param {string} marker
 */
function enumTable(marker) {
  const start = at(marker);
  const rest = DOC.slice(start);
  const table = rest.slice(rest.indexOf("\n|"), rest.indexOf("\n\n", rest.indexOf("\n|") + 1));
  return [...table.matchAll(/^\| (\d+) \| `(\w+)` \|(.*)$/gm)].map(([, n, name, tail]) => ({ n: Number(n), name, tail }));
}

/** The codec's documented type notation, for comparing with the doc's field lists. */
function notation(/** @type {any} */ c) {
  return c.doc;
}

/**
 * `name: type` pairs of a field list cell.
 * @param {string} cell
 */
function docFields(cell) {
  return [...cell.matchAll(/`(\w+): ([^`]+)`/g)].map(([, name, type]) => [name, type.replace(/\s+/g, "")]);
}

const ROW_64 = Object.fromEntries(
  [...DOC.slice(at("### 6.4 Value types"), at("Meanings: timestamps")).matchAll(/^\| `(\w+)` \| (struct|enum) \| (.*) \|$/gm)]
    .map(([, name, kind, cell]) => [name, { kind, cell }]),
);

/**
 * Checks an enum codec's variants (names, order, field names and types) against a doc table.
 * @param {any} codec
 * @param {string} marker
 * @param {number} fieldsColumn index of the fields cell in the row's tail
 */
function checkEnum(codec, marker, fieldsColumn) {
  const rows = enumTable(marker);
  assert.deepEqual(rows.map((r) => r.n), rows.map((_, i) => i), "indexes from 0 without gaps");
  assert.deepEqual(codec.names, rows.map((r) => r.name));
  for (const row of rows) {
    const cell = row.tail.split(" | ")[fieldsColumn] ?? "";
    let expected = docFields(cell);
    const flattened = cell.match(/^\s*`(\w+)` \(its fields directly follow the index\)/);
    if (flattened) expected = docFields(ROW_64[flattened[1]].cell);
    assert.deepEqual(codec.fieldsOf(row.name).map((/** @type {[string, any]} */ [n, c]) => [n, notation(c)]), expected, `${row.name} fields`);
  }
}

test("Request variants and fields match the table of section 6.1", () => {
  checkEnum(Request, "`Request` (enum):", 0);
});

test("Response variants and fields match the table of section 6.2", () => {
  checkEnum(Response, "`Response` (enum):", 1);
});

test("Event variants and fields match the table of section 6.3", () => {
  checkEnum(Event, "`Event` (enum):", 1);
});

test("value types match the table of section 6.4", () => {
  const names = Object.keys(ROW_64);
  assert.deepEqual(names.sort(), Object.keys(types).sort());
  for (const [name, { kind, cell }] of Object.entries(ROW_64)) {
    const codec = /** @type {any} */ (types)[name];
    if (kind === "struct") {
      assert.deepEqual(codec.fields.map((/** @type {[string, any]} */ [n, c]) => [n, notation(c)]), docFields(cell), name);
    } else {
      const variants = [...cell.matchAll(/#(\d+) (\w+)/g)].map(([, , v]) => v);
      assert.deepEqual(codec.names, variants, name);
    }
  }
});

test("error names match the table of section 10", () => {
  const rows = [...DOC.slice(at("## 10. Error codes")).matchAll(/^\| (\d{4}) \| `(\w+)` \|/gm)];
  assert.deepEqual(Object.fromEntries(rows.map(([, c, n]) => [c, n])), Object.fromEntries(Object.entries(ERROR_NAMES)));
  const e = new HuddleError(3002, "room does not exist");
  assert.equal(e.code, 3002);
  assert.equal(e.codeName, "room_does_not_exist");
  assert.equal(new HuddleError(3999, "").codeName, "unknown_3xxx");
});

// ---- round trips of every variant ----

const member = { user_id: "bob", user_name: "Bob" };
const roomState = { room_id: r1, room_name: "Room", created: true, already_member: false, member_count: 2, last_seq: 70000, created_at_ms: 1700000000123, attributes: [["k", "v"]] };
const message = { room_id: r1, seq: 5, message_id: 2n ** 60n, sender: "alice", timestamp_ms: 1700000000456, priority: { type: "High" }, body: { type: "Custom", sub_type: 70000, data: hex("00 ff") } };
const mattrs = { user_id: "bob", attributes: [["a", "1"], ["b", ""]] };
const info = { room_id: r1, room_name: "" };
const config = { destroy_delay_s: 10800, attributes: [] };

/** One sample per variant. */
const SAMPLES = {
  Request: {
    Login: { protocol_version: 1, user_id: "alice", user_name: "", token: "t" },
    Logout: {},
    CreateRoom: { info, config },
    JoinRoom: { room_id: r1 },
    EnterRoom: { info: { room_id: "a:b@c", room_name: "ünïcødé" }, config: { destroy_delay_s: 0, attributes: [["k", "v"], ["k2", ""]] } },
    LeaveRoom: { room_id: r1 },
    LeaveAllRooms: {},
    SwitchRoom: { from_room_id: r1, to: { room_id: "r2", room_name: "two" }, create_if_missing: true, config },
    SendRoomMessage: { room_id: r1, body: { type: "Text", text: "x".repeat(300) }, priority: { type: "Low" }, client_msg_id: null },
    QueryRoomMembers: { room_id: r1, next_flag: "", count: 100 },
    QueryRoomOnlineCount: { room_id: r1 },
    QueryRoomMembersById: { room_id: r1, user_ids: ["a", "b"] },
    QueryJoinedRooms: {},
    QueryHistory: { room_id: r1, anchor: { type: "AfterSeq", seq: 2 ** 40 }, count: 1 },
    SetRoomAttributes: { room_id: r1, attributes: [["k", "v"]], is_force: true, is_update_owner: false, is_delete_after_owner_left: true },
    DeleteRoomAttributes: { room_id: r1, keys: ["k", "l"], is_force: false },
    QueryRoomAttributes: { room_id: r1 },
    RoomAttributesBatch: { room_id: r1, ops: [] },
    SetRoomMembersAttributes: { room_id: r1, user_ids: ["bob"], attributes: [["a", "1"]] },
    QueryRoomMembersAttributes: { room_id: r1, user_ids: [] },
    QueryRoomMemberAttributesList: { room_id: r1, next_flag: "opaque", count: 7 },
    Resume: { protocol_version: 1, user_id: "alice", user_name: "A", token: "t", session_id: 2n ** 63n + 5n, resume_secret: seven, rooms: [[r1, 0], ["r2", 2 ** 33]] },
    RenewToken: { token: "t2" },
    Ping: {},
  },
  Response: {
    LoggedIn: { session_id: 1, resume_secret: seven, server_time_ms: 2, token_expires_at_s: 3 },
    LoggedOut: {},
    RoomEntered: roomState,
    RoomLeft: { room_id: r1 },
    RoomsLeft: { room_ids: [r1, "r2"] },
    RoomSwitched: { left_room_id: "r0", room: roomState },
    MessageSent: { room_id: r1, message_id: 9, seq: 10, timestamp_ms: 11, duplicate: true },
    RoomMembers: { room_id: r1, members: [member, { user_id: "c", user_name: "" }], next_flag: "n" },
    RoomOnlineCount: { room_id: r1, count: 10000 },
    RoomMembersById: { room_id: r1, members: [member], not_found: ["zed"] },
    JoinedRooms: { rooms: [{ room_id: r1, room_name: "", member_count: 3 }] },
    History: { room_id: r1, messages: [message, { ...message, seq: 6, body: textHi, priority: { type: "Low" } }], has_more: true },
    RoomAttributesChanged: { room_id: r1, failed: [{ key: "topic", code: 6004 }] },
    RoomAttributes: { room_id: r1, attributes: [["a", "b"]] },
    RoomMembersAttributesSet: { room_id: r1, members: [mattrs], failed_user_ids: ["x"] },
    RoomMembersAttributes: { room_id: r1, members: [mattrs] },
    RoomMemberAttributesList: { room_id: r1, members: [], next_flag: "" },
    Resumed: { session_id: 1, resume_secret: seven, session_resumed: false, token_expires_at_s: 4, rooms: [{ room_id: r1, rejoined: false, recovered: false, replayed: 0, last_seq: 0, error_code: 3002 }] },
    TokenRenewed: { token_expires_at_s: 5 },
    Pong: {},
  },
  Event: {
    MembersJoined: { room_id: r1, members: [member] },
    MembersLeft: { room_id: r1, members: [member], reason: { type: "Offline" } },
    RoomMessage: message,
    KickedOut: { code: 2004, message: "logged in elsewhere" },
    MemberCountUpdated: { room_id: r1, count: 501 },
    RoomAttributesUpdated: { room_id: r1, set: [], deleted: ["k"] },
    RoomMemberAttributesUpdated: { room_id: r1, members: [mattrs], operated_by: "alice" },
    TokenWillExpire: { expires_at_s: 1700003600 },
    RoomDestroyed: { room_id: r1 },
    RemovedFromRoom: { room_id: r1, reason: { type: "Left" } },
  },
};

for (const [enumName, codec] of [["Request", Request], ["Response", Response], ["Event", Event]]) {
  test(`round trip of every ${enumName} variant`, () => {
    const samples = /** @type {any} */ (SAMPLES)[/** @type {string} */ (enumName)];
    assert.deepEqual(Object.keys(samples), /** @type {any} */ (codec).names, "a sample for every variant");
    for (const [type, fields] of Object.entries(samples)) {
      const value = { type, ...fields };
      if (enumName === "Request") {
        const frame = { request_id: 0xffffffff, request: value };
        assert.deepEqual(decodeFrame(RequestFrame, encodeFrame(RequestFrame, frame)), frame, type);
      } else if (enumName === "Response") {
        const frame = { request_id: 7, reply: { type: "Ok", response: value } };
        assert.deepEqual(decodeFrame(ResponseFrame, encodeFrame(ResponseFrame, frame)), frame, type);
      } else {
        assert.deepEqual(decodeFrame(Event, encodeFrame(Event, value)), value, type);
      }
    }
  });
}

test("encoders refuse values outside their types", () => {
  assert.throws(() => encodeBody(types.AttributeFailure, { key: "k", code: 70000 }), RangeError);
  assert.throws(() => encodeBody(types.RoomSummary, { room_id: "r", room_name: "", member_count: -1 }), RangeError);
  assert.throws(() => encodeBody(Request, { type: "Nope" }), TypeError);
  assert.throws(() => encodeBody(Request, { type: "JoinRoom" }), TypeError);
  assert.throws(() => encodeBody(Response, { type: "LoggedIn", session_id: 1, resume_secret: new Uint8Array(15), server_time_ms: 0, token_expires_at_s: 0 }), RangeError);
});
