// An in-memory stand-in for WebTransport and a small Huddle server behind it, for the client
// tests. The server implements just enough of docs/PROTOCOL.md (login, rooms, messages, history,
// resumption with replay) to drive the client; tests reach into it to drop sessions, inject
// frames and override answers.

import {
  Event, FrameReader, RequestFrame, ResponseFrame, StreamHeader, decodeBody, encodeFrame,
} from "../huddle.js";

/** One fake WebTransport session, as the client sees it, with server-side handles. */
export class FakeTransport {
  /**
   * @param {MiniServer} server
   * @param {string} url
   * @param {any} options
   */
  constructor(server, url, options) {
    this.server = server;
    this.url = url;
    this.options = options;
    this.isClosed = false;
    /** @type {ReadableStreamDefaultController<any>[]} */
    this.controllers = [];
    this.ready = server.refuse ? Promise.reject(new Error("refused")) : Promise.resolve();
    this.ready.catch(() => {});
    this.closed = new Promise((resolve, reject) => {
      this.resolveClosed = resolve;
      this.rejectClosed = reject;
    });
    this.closed.catch(() => {});
    this.incomingUnidirectionalStreams = new ReadableStream({
      start: (c) => {
        this.uniController = c;
      },
    });
    this.datagrams = {
      readable: new ReadableStream({ start: (c) => (this.datagramController = c) }),
    };
    this.requests = new FrameReader(65536);
    /** @type {any[]} every decoded RequestFrame, in order */
    this.received = [];
    /** @type {any} the server-side session state (MiniServer) */
    this.state = null;
  }

  async createBidirectionalStream() {
    const readable = new ReadableStream({
      start: (c) => {
        this.controlController = c;
        this.controllers.push(c);
      },
    });
    const writable = new WritableStream({
      write: (chunk) => {
        if (this.isClosed) throw new Error("closed");
        this.requests.push(chunk);
        for (let body = this.requests.next(); body; body = this.requests.next()) {
          const frame = decodeBody(RequestFrame, body);
          this.received.push(frame);
          this.server.handle(this, frame);
        }
      },
    });
    return { readable, writable };
  }

  /** Client-side close. */
  close(info = {}) {
    this.end({ closeCode: info.closeCode ?? 0, reason: info.reason ?? "" });
  }

  /**
   * Ends the session: `closed` resolves with `info` (or rejects when `info` is null), then the
   * streams fail.
   * @param {{ closeCode: number, reason: string }|null} info
   */
  end(info) {
    if (this.isClosed) return;
    this.isClosed = true;
    if (info) this.resolveClosed(info);
    else this.rejectClosed(new Error("connection lost"));
    const err = new Error("session closed");
    for (const c of [...this.controllers, this.uniController, this.datagramController]) {
      try {
        c.error(err);
      } catch {
        // already closed
      }
    }
    this.server.detached(this);
  }

  /** @param {Uint8Array} bytes */
  sendControl(bytes) {
    if (!this.isClosed) this.controlController.enqueue(bytes);
  }

  /**
   * Opens a server unidirectional stream and returns its writer.
   * @param {any} header a StreamHeader value
   */
  openUni(header) {
    /** @type {ReadableStreamDefaultController<any>} */
    let ctl;
    const stream = new ReadableStream({ start: (c) => (ctl = c) });
    // @ts-ignore assigned synchronously by start
    this.controllers.push(ctl);
    this.uniController.enqueue(stream);
    const uni = {
      send: (/** @type {Uint8Array} */ bytes) => {
        if (!this.isClosed) ctl.enqueue(bytes);
      },
      event: (/** @type {any} */ e) => uni.send(encodeFrame(Event, e)),
      finish: () => {
        if (!this.isClosed) ctl.close();
      },
      reset: () => ctl.error(new Error("reset")),
    };
    uni.send(encodeFrame(StreamHeader, header));
    return uni;
  }
}

/** A small Huddle server: enough of the protocol to test the client against. */
export class MiniServer {
  constructor() {
    /** @type {FakeTransport[]} */
    this.transports = [];
    /** @type {Map<string, { seq: number, history: any[], members: Set<any> }>} */
    this.rooms = new Map();
    /** @type {Map<number, any>} sessions by id */
    this.sessions = new Map();
    this.nextSession = 300;
    this.nextMessageId = 40;
    this.refuse = false;
    /** @type {(t: FakeTransport, frame: any) => any} returns a reply, or undefined for default */
    this.override = () => undefined;
    /** @type {Map<string, any>} client_msg_id -> first MessageSent */
    this.dedup = new Map();
  }

  /** The `createTransport` option for the client. */
  get factory() {
    return (/** @type {string} */ url, /** @type {any} */ options) => {
      const t = new FakeTransport(this, url, options);
      this.transports.push(t);
      return t;
    };
  }

  /**
   * @param {FakeTransport} t
   * @param {number} id
   * @param {any} reply
   */
  reply(t, id, reply) {
    t.sendControl(encodeFrame(ResponseFrame, { request_id: id, reply }));
  }

  /** @param {string} id */
  room(id) {
    let r = this.rooms.get(id);
    if (!r) {
      r = { seq: 0, history: [], members: new Set() };
      this.rooms.set(id, r);
    }
    return r;
  }

  /**
   * @param {any} s
   * @param {string} roomId
   */
  roomState(s, roomId) {
    const r = this.room(roomId);
    return { room_id: roomId, room_name: "", created: false, already_member: false, member_count: r.members.size, last_seq: r.seq, created_at_ms: 1, attributes: [] };
  }

  /**
   * @param {any} s
   * @param {string} roomId
   */
  enter(s, roomId) {
    const r = this.room(roomId);
    for (const other of r.members) {
      other.streams.get(roomId)?.event({ type: "MembersJoined", room_id: roomId, members: [{ user_id: s.user_id, user_name: s.user_name }] });
    }
    r.members.add(s);
    s.rooms.add(roomId);
    if (s.transport) s.streams.set(roomId, s.transport.openUni({ type: "Room", room_id: roomId }));
  }

  /**
   * @param {FakeTransport} t
   * @param {any} frame
   */
  handle(t, frame) {
    const { request_id: id, request: q } = frame;
    const custom = this.override(t, frame);
    if (custom === null) return; // left unanswered on purpose
    if (custom !== undefined) return this.reply(t, id, custom);
    const ok = (/** @type {any} */ response) => this.reply(t, id, { type: "Ok", response });
    const err = (/** @type {number} */ code, /** @type {string} */ message) => this.reply(t, id, { type: "Err", code, message });
    const s = t.state;
    switch (q.type) {
      case "Login": {
        const sid = this.nextSession++;
        const st = { id: sid, user_id: q.user_id, user_name: q.user_name, secret: new Uint8Array(16).fill(sid % 256), rooms: new Set(), streams: new Map(), transport: t };
        this.sessions.set(sid, st);
        t.state = st;
        ok({ type: "LoggedIn", session_id: sid, resume_secret: st.secret, server_time_ms: 1700000000123, token_expires_at_s: 1700003600 });
        st.session = t.openUni({ type: "Session" });
        return;
      }
      case "Resume": {
        const held = this.sessions.get(q.session_id);
        if (held && (held.user_id !== q.user_id || !held.secret.every((/** @type {number} */ b, /** @type {number} */ i) => b === q.resume_secret[i]))) {
          err(2007, "session not found");
          return t.end({ closeCode: 2007, reason: "session_not_found" });
        }
        if (!held) return err(9001, "the mini server only resumes held sessions");
        held.transport?.end({ closeCode: 2008, reason: "session_resumed" });
        held.transport = t;
        t.state = held;
        held.streams = new Map();
        const listed = new Map(q.rooms);
        const recoveries = [];
        for (const roomId of held.rooms) {
          const r = this.room(roomId);
          const from = listed.get(roomId) ?? r.seq;
          const missed = r.history.filter((m) => m.seq > from && m.priority.type !== "Low" && m.sender !== held.user_id);
          recoveries.push({ room_id: roomId, rejoined: true, recovered: true, replayed: missed.length + (this.extraReplay ? 1 : 0), last_seq: r.seq, error_code: 0 });
        }
        for (const [roomId] of listed) {
          if (!held.rooms.has(roomId)) recoveries.push({ room_id: roomId, rejoined: false, recovered: false, replayed: 0, last_seq: this.rooms.get(roomId)?.seq ?? 0, error_code: 3003 });
        }
        ok({ type: "Resumed", session_id: held.id, resume_secret: held.secret, session_resumed: true, token_expires_at_s: 1700003600, rooms: recoveries });
        held.session = t.openUni({ type: "Session" });
        for (const roomId of held.rooms) {
          const r = this.room(roomId);
          const stream = t.openUni({ type: "Room", room_id: roomId });
          held.streams.set(roomId, stream);
          // `extraReplay` replays one message the client has already seen, to test dedup.
          const from = (listed.get(roomId) ?? r.seq) - (this.extraReplay ? 1 : 0);
          for (const m of r.history) if (m.seq > from && m.priority.type !== "Low" && m.sender !== held.user_id) stream.event({ type: "RoomMessage", ...m });
        }
        return;
      }
    }
    if (!s) {
      err(2000, "not logged in");
      return t.end({ closeCode: 2000, reason: "not_logged_in" });
    }
    switch (q.type) {
      case "EnterRoom":
      case "CreateRoom":
      case "JoinRoom": {
        const roomId = q.room_id ?? q.info.room_id;
        if (q.type === "JoinRoom" && !this.rooms.has(roomId)) return err(3002, "room does not exist");
        const created = !this.rooms.has(roomId);
        const already = s.rooms.has(roomId);
        const state = { ...this.roomState(s, roomId), created, already_member: already };
        if (!already) this.enter(s, roomId);
        state.member_count = this.room(roomId).members.size;
        return ok({ type: "RoomEntered", ...state });
      }
      case "LeaveRoom": {
        const r = this.rooms.get(q.room_id);
        if (!r) return err(3002, "room does not exist");
        if (!s.rooms.has(q.room_id)) return err(3003, "not in room");
        r.members.delete(s);
        s.rooms.delete(q.room_id);
        s.streams.get(q.room_id)?.finish();
        s.streams.delete(q.room_id);
        for (const other of r.members) other.streams.get(q.room_id)?.event({ type: "MembersLeft", room_id: q.room_id, members: [{ user_id: s.user_id, user_name: s.user_name }], reason: { type: "Left" } });
        return ok({ type: "RoomLeft", room_id: q.room_id });
      }
      case "SendRoomMessage": {
        const r = this.rooms.get(q.room_id);
        if (!r) return err(3002, "room does not exist");
        if (!s.rooms.has(q.room_id)) return err(3003, "not in room");
        const size = q.body.type === "Text" ? new TextEncoder().encode(q.body.text).length : q.body.data.length;
        if (size > 32768) return err(5000, "message too large");
        const key = `${s.user_id}/${q.room_id}/${q.client_msg_id}`;
        if (q.client_msg_id && this.dedup.has(key)) return ok({ ...this.dedup.get(key), duplicate: true });
        const m = { room_id: q.room_id, seq: ++r.seq, message_id: ++this.nextMessageId, sender: s.user_id, timestamp_ms: 1700000000456, priority: q.priority, body: q.body };
        r.history.push(m);
        const sent = { type: "MessageSent", room_id: q.room_id, message_id: m.message_id, seq: m.seq, timestamp_ms: m.timestamp_ms, duplicate: false };
        if (q.client_msg_id) this.dedup.set(key, sent);
        for (const other of r.members) if (other !== s) other.streams.get(q.room_id)?.event({ type: "RoomMessage", ...m });
        return ok(sent);
      }
      case "QueryRoomMembers": {
        const r = this.rooms.get(q.room_id);
        if (!r) return err(3002, "room does not exist");
        return ok({ type: "RoomMembers", room_id: q.room_id, members: [...r.members].map((m) => ({ user_id: m.user_id, user_name: m.user_name })), next_flag: "" });
      }
      case "QueryHistory": {
        const r = this.rooms.get(q.room_id);
        if (!r) return err(3002, "room does not exist");
        return ok({ type: "History", room_id: q.room_id, messages: r.history.slice(-q.count), has_more: false });
      }
      case "Ping":
        return ok({ type: "Pong" });
      case "Logout":
        for (const roomId of s.rooms) this.room(roomId).members.delete(s);
        this.sessions.delete(s.id);
        ok({ type: "LoggedOut" });
        return setTimeout(() => t.end({ closeCode: 0, reason: "bye" }), 1);
      default:
        return err(1000, `the mini server does not do ${q.type}`);
    }
  }

  /** @param {FakeTransport} t */
  detached(t) {
    if (t.state && t.state.transport === t) t.state.transport = null;
  }
}

/** Resolves after the pending stream callbacks have run. */
export function settle(ms = 5) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Waits until `cond()` holds (polling), failing after `ms`.
 * @param {() => any} cond
 * @param {number} [ms]
 */
export async function until(cond, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${cond}`);
    await settle(2);
  }
}
