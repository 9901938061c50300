// Huddle web client: the wire codec of docs/PROTOCOL.md and a client over WebTransport.
// A dependency-free ES module for browsers and Node 20; no build step.
//
// Values follow the field names of docs/PROTOCOL.md (snake_case). Enums are objects with a
// `type` naming the variant and the variant's fields beside it, e.g.
// `{ type: "Text", text: "hi" }` or `{ type: "JoinRoom", room_id: "r1" }`. A `u64` decodes to
// a number when it is at most Number.MAX_SAFE_INTEGER and to a bigint otherwise; encoders take
// either.

/** Protocol version sent in Login and Resume. */
export const PROTOCOL_VERSION = 1;
/** Largest frame body a client may send (section 2). */
export const MAX_CLIENT_FRAME_LEN = 65536;
/** Largest frame body a server may send (section 2). */
export const MAX_FRAME_LEN = 4 * 1024 * 1024;
/** Path of the WebTransport endpoint on a Huddle server. */
export const WEBTRANSPORT_PATH = "/huddle";

// ---------------------------------------------------------------------------------------------
// Error codes (section 10)

/** @type {Record<number, string>} */
export const ERROR_NAMES = {
  1000: "invalid_request", 1001: "frame_too_large", 1002: "malformed_frame",
  1003: "unsupported_version", 1004: "protocol_violation", 1005: "frame_timeout",
  2000: "not_logged_in", 2001: "token_invalid", 2002: "token_expired", 2003: "login_timeout",
  2004: "kicked_out", 2005: "already_logged_in", 2006: "token_too_long",
  2007: "session_not_found", 2008: "session_resumed", 2009: "token_not_yet_valid",
  2010: "token_malformed", 2011: "disconnected_by_admin",
  3000: "invalid_room_id", 3001: "room_already_exists", 3002: "room_does_not_exist",
  3003: "not_in_room", 3004: "room_full", 3005: "room_name_too_long",
  3006: "invalid_destroy_delay", 3007: "server_room_limit",
  4000: "invalid_user_id", 4001: "room_limit_reached", 4002: "user_name_too_long",
  4003: "too_many_user_ids",
  5000: "message_too_large", 5001: "rate_limited", 5002: "invalid_client_msg_id",
  6000: "attribute_count_exceeded", 6001: "attribute_key_too_long",
  6002: "attribute_value_too_long", 6003: "attributes_too_large", 6004: "attribute_not_owned",
  6005: "member_attributes_members_exceeded",
  7000: "slow_consumer", 7001: "connection_limit", 7002: "operation_rate_limited",
  7003: "address_rate_limited",
  9000: "server_shutdown", 9001: "internal", 9002: "cluster_unavailable",
};

/** Codes after which a client must not resume automatically (sections 4.6, 8.7). */
const NO_RESUME_CODES = new Set([2004, 2008, 2011]);
/** Refusals of a Resume that a later attempt may get past (0: the session was lost). */
const RETRY_RESUME_CODES = new Set([0, 7003, 9000, 9001]);

/**
 * The snake_case name of an error code; an unknown code is named after its block
 * (`unknown_3xxx`), as section 10 asks a client to treat it as a generic error of that block.
 * @param {number} code
 * @returns {string}
 */
export function errorName(code) {
  if (ERROR_NAMES[code]) return ERROR_NAMES[code];
  if (code === 0) return "ok";
  return `unknown_${Math.floor(code / 1000)}xxx`;
}

/**
 * An error from the server (an `Err` reply, a close code) or from the client itself. `code` is a
 * number from section 10 (0 for client-side conditions such as `connection_lost`), `codeName`
 * its snake_case name.
 */
export class HuddleError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   * @param {string} [codeName] defaults to the name of `code`
   */
  constructor(code, message, codeName) {
    const n = codeName ?? errorName(code);
    super(message ? `${n} (${code}): ${message}` : `${n} (${code})`);
    this.name = "HuddleError";
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.codeName = n;
    /** @type {string} the server's human-readable detail */
    this.detail = message;
  }
}

/** A body that does not decode (`malformed_frame`) or a length over the maximum. */
export class DecodeError extends HuddleError {
  /**
   * @param {string} message
   * @param {boolean} [unknownVariant] true when only an enum index was unknown
   */
  constructor(message, unknownVariant = false) {
    super(1002, message);
    this.name = "DecodeError";
    /** @type {boolean} */
    this.unknownVariant = unknownVariant;
  }
}

// ---------------------------------------------------------------------------------------------
// Byte writer and reader (section 3)

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Growable byte buffer. */
export class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.len = 0;
  }

  /** @param {number} n */
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** @param {number} b */
  byte(b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  /** @param {Uint8Array} bytes */
  raw(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  /**
   * Shortest-form varint of an unsigned integer at most `max`.
   * @param {number|bigint} value
   * @param {bigint} max
   */
  varint(value, max) {
    const v = typeof value === "bigint" ? value : toBigUint(value);
    if (v < 0n || v > max) throw new RangeError(`integer ${v} out of range`);
    if (v <= 250n) return this.byte(Number(v));
    const dv = (/** @type {number} */ n) => {
      this.reserve(n);
      const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.len, n);
      this.len += n;
      return view;
    };
    if (v <= 0xffffn) {
      this.byte(0xfb);
      dv(2).setUint16(0, Number(v), true);
    } else if (v <= 0xffffffffn) {
      this.byte(0xfc);
      dv(4).setUint32(0, Number(v), true);
    } else {
      this.byte(0xfd);
      dv(8).setBigUint64(0, v, true);
    }
  }

  /** @returns {Uint8Array} */
  bytes() {
    return this.buf.slice(0, this.len);
  }
}

/** @param {number} n */
function toBigUint(n) {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not an unsigned integer: ${n}`);
  return BigInt(n);
}

/** Reads one body; every read checks the bytes remaining first. */
export class Reader {
  /** @param {Uint8Array} buf */
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** @param {number} n */
  need(n) {
    if (n > this.buf.length - this.pos) throw new DecodeError("body too short");
  }

  byte() {
    this.need(1);
    return this.buf[this.pos++];
  }

  /** @param {number} n */
  take(n) {
    this.need(n);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /**
   * A varint whose first byte is at most `maxTag` (0xfb for u16, 0xfc for u32, 0xfd for u64).
   * @param {number} maxTag
   * @returns {number|bigint}
   */
  varint(maxTag) {
    const tag = this.byte();
    if (tag <= 250) return tag;
    if (tag > maxTag) throw new DecodeError(`varint tag 0x${tag.toString(16)} not allowed here`);
    if (tag === 0xfb) {
      this.need(2);
      const v = this.view.getUint16(this.pos, true);
      this.pos += 2;
      return v;
    }
    if (tag === 0xfc) {
      this.need(4);
      const v = this.view.getUint32(this.pos, true);
      this.pos += 4;
      return v;
    }
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  /** A length or count, checked against the bytes left (each element takes at least `min`). */
  length(min = 1) {
    const n = this.varint(0xfd);
    if (typeof n === "bigint" || n * min > this.buf.length - this.pos) {
      throw new DecodeError(`length ${n} exceeds the body`);
    }
    return n;
  }

  done() {
    if (this.pos !== this.buf.length) {
      throw new DecodeError(`${this.buf.length - this.pos} trailing bytes`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Codecs for the value types of section 3.2, composed into the messages of section 6

/**
 * @template T
 * @typedef {{ enc: (w: Writer, v: T) => void, dec: (r: Reader) => T, min: number, doc: string, optional?: boolean }} Codec
 * (`min` is the fewest bytes a value takes; `doc` its notation in PROTOCOL.md section 6)
 */

/** @type {Codec<number>} */
const u8 = { min: 1, doc: "u8", enc: (w, v) => w.byte(v), dec: (r) => r.byte() };
/** @type {Codec<number>} */
const u16 = { min: 1, doc: "u16", enc: (w, v) => w.varint(v, 0xffffn), dec: (r) => /** @type {number} */ (r.varint(0xfb)) };
/** @type {Codec<number>} */
const u32 = { min: 1, doc: "u32", enc: (w, v) => w.varint(v, 0xffffffffn), dec: (r) => /** @type {number} */ (r.varint(0xfc)) };
/** @type {Codec<number|bigint>} */
const u64 = { min: 1, doc: "u64", enc: (w, v) => w.varint(v, 0xffffffffffffffffn), dec: (r) => r.varint(0xfd) };
/** @type {Codec<boolean>} */
const bool = {
  min: 1,
  doc: "bool",
  enc: (w, v) => w.byte(v ? 1 : 0),
  dec: (r) => {
    const b = r.byte();
    if (b > 1) throw new DecodeError(`bad bool byte ${b}`);
    return b === 1;
  },
};
/** @type {Codec<string>} */
const string = {
  min: 1,
  doc: "string",
  enc: (w, v) => {
    const b = utf8Encoder.encode(v);
    w.varint(b.length, 0xffffffffffffffffn);
    w.raw(b);
  },
  dec: (r) => {
    const n = r.length(1);
    const b = r.buf.subarray(r.pos, r.pos + n);
    r.pos += n;
    try {
      return utf8Decoder.decode(b);
    } catch {
      throw new DecodeError("invalid UTF-8");
    }
  },
};
/** @type {Codec<Uint8Array>} */
const bytes = {
  min: 1,
  doc: "bytes",
  enc: (w, v) => {
    w.varint(v.length, 0xffffffffffffffffn);
    w.raw(v);
  },
  dec: (r) => r.take(r.length(1)),
};
/** @type {Codec<Uint8Array>} */
const secret16 = {
  min: 16,
  doc: "[u8;16]",
  enc: (w, v) => {
    if (v.length !== 16) throw new RangeError("resume_secret must be 16 bytes");
    w.raw(v);
  },
  dec: (r) => r.take(16),
};

/**
 * @template T
 * @param {Codec<T>} t
 * @returns {Codec<T|null>}
 */
function option(t) {
  return {
    min: 1,
    doc: `option<${t.doc}>`,
    optional: true,
    enc: (w, v) => {
      if (v === null || v === undefined) return w.byte(0);
      w.byte(1);
      t.enc(w, v);
    },
    dec: (r) => {
      const tag = r.byte();
      if (tag === 0) return null;
      if (tag !== 1) throw new DecodeError(`bad option tag ${tag}`);
      return t.dec(r);
    },
  };
}

/**
 * @template T
 * @param {Codec<T>} t
 * @returns {Codec<T[]>}
 */
function list(t) {
  return {
    min: 1,
    doc: `list<${t.doc}>`,
    enc: (w, v) => {
      w.varint(v.length, 0xffffffffffffffffn);
      for (const x of v) t.enc(w, x);
    },
    dec: (r) => {
      const n = r.length(t.min);
      const out = new Array(n);
      for (let i = 0; i < n; i++) out[i] = t.dec(r);
      return out;
    },
  };
}

/**
 * @param {Codec<any>} a
 * @param {Codec<any>} b
 * @returns {Codec<[any, any]>}
 */
function pair(a, b) {
  return {
    min: a.min + b.min,
    doc: `(${a.doc},${b.doc})`,
    enc: (w, v) => {
      a.enc(w, v[0]);
      b.enc(w, v[1]);
    },
    dec: (r) => [a.dec(r), b.dec(r)],
  };
}

/** @typedef {[string, Codec<any>][]} Fields */

/**
 * @param {Fields} fields
 * @returns {Codec<Record<string, any>> & { fields: Fields }}
 */
function struct(fields) {
  return {
    fields,
    doc: "struct",
    min: fields.reduce((s, [, c]) => s + c.min, 0),
    enc: (w, v) => {
      for (const [name, c] of fields) {
        if (!(name in v) && !c.optional) throw new TypeError(`missing field ${name}`);
        c.enc(w, v[name]);
      }
    },
    dec: (r) => {
      /** @type {Record<string, any>} */
      const out = {};
      for (const [name, c] of fields) out[name] = c.dec(r);
      return out;
    },
  };
}

/**
 * An enum: the variant index as a u32 varint, then the variant's fields. Values are
 * `{ type: name, ...fields }`.
 * @param {string} enumName
 * @param {[string, Fields][]} variants
 * @returns {Codec<Record<string, any>> & { names: string[], fieldsOf: (name: string) => Fields }}
 */
function enumOf(enumName, variants) {
  const index = new Map(variants.map(([name], i) => [name, i]));
  const bodies = variants.map(([, fields]) => struct(fields));
  return {
    names: variants.map(([name]) => name),
    fieldsOf: (name) => bodies[/** @type {number} */ (index.get(name))].fields,
    doc: enumName,
    min: 1,
    enc: (w, v) => {
      const i = index.get(v.type);
      if (i === undefined) throw new TypeError(`unknown ${enumName} variant ${v.type}`);
      w.varint(i, 0xffffffffn);
      bodies[i].enc(w, v);
    },
    dec: (r) => {
      const i = /** @type {number} */ (r.varint(0xfc));
      if (i >= variants.length) throw new DecodeError(`unknown ${enumName} variant ${i}`, true);
      return { type: variants[i][0], ...bodies[i].dec(r) };
    },
  };
}

const attrs = list(pair(string, string));

/** @type {Fields} */
const roomStateFields = [
  ["room_id", string], ["room_name", string], ["created", bool], ["already_member", bool],
  ["member_count", u32], ["last_seq", u64], ["created_at_ms", u64], ["attributes", attrs],
];
/** The value types of section 6.4, by name. */
export const types = {};
types.Priority = enumOf("Priority", [["Low", []], ["Medium", []], ["High", []]]);
types.MessageBody = enumOf("MessageBody", [
  ["Text", [["text", string]]],
  ["Custom", [["sub_type", u32], ["data", bytes]]],
]);
/** @type {Fields} */
const roomMessageFields = [
  ["room_id", string], ["seq", u64], ["message_id", u64], ["sender", string],
  ["timestamp_ms", u64], ["priority", types.Priority], ["body", types.MessageBody],
];
types.Member = struct([["user_id", string], ["user_name", string]]);
types.RoomInfo = struct([["room_id", string], ["room_name", string]]);
types.RoomConfig = struct([["destroy_delay_s", u32], ["attributes", attrs]]);
types.RoomMessage = struct(roomMessageFields);
types.LeaveReason = enumOf("LeaveReason", [["Left", []], ["Offline", []], ["Kicked", []]]);
types.RoomState = struct(roomStateFields);
types.HistoryAnchor = enumOf("HistoryAnchor", [
  ["Latest", []], ["BeforeSeq", [["seq", u64]]], ["AfterSeq", [["seq", u64]]],
]);
types.RoomSummary = struct([["room_id", string], ["room_name", string], ["member_count", u32]]);
types.MemberAttributes = struct([["user_id", string], ["attributes", attrs]]);
types.AttributeFailure = struct([["key", string], ["code", u16]]);
/** @type {Fields} */
const setFlags = [["is_force", bool], ["is_update_owner", bool], ["is_delete_after_owner_left", bool]];
types.AttributeOp = enumOf("AttributeOp", [
  ["Set", [["attributes", attrs], ...setFlags]],
  ["Delete", [["keys", list(string)], ["is_force", bool]]],
]);
types.RoomRecovery = struct([
  ["room_id", string], ["rejoined", bool], ["recovered", bool], ["replayed", u32],
  ["last_seq", u64], ["error_code", u16],
]);
for (const [name, codec] of Object.entries(types)) codec.doc = name;

/** `Request` (section 6.1). */
export const Request = enumOf("Request", [
  ["Login", [["protocol_version", u16], ["user_id", string], ["user_name", string], ["token", string]]],
  ["Logout", []],
  ["CreateRoom", [["info", types.RoomInfo], ["config", types.RoomConfig]]],
  ["JoinRoom", [["room_id", string]]],
  ["EnterRoom", [["info", types.RoomInfo], ["config", types.RoomConfig]]],
  ["LeaveRoom", [["room_id", string]]],
  ["LeaveAllRooms", []],
  ["SwitchRoom", [["from_room_id", string], ["to", types.RoomInfo], ["create_if_missing", bool], ["config", types.RoomConfig]]],
  ["SendRoomMessage", [["room_id", string], ["body", types.MessageBody], ["priority", types.Priority], ["client_msg_id", option(string)]]],
  ["QueryRoomMembers", [["room_id", string], ["next_flag", string], ["count", u32]]],
  ["QueryRoomOnlineCount", [["room_id", string]]],
  ["QueryRoomMembersById", [["room_id", string], ["user_ids", list(string)]]],
  ["QueryJoinedRooms", []],
  ["QueryHistory", [["room_id", string], ["anchor", types.HistoryAnchor], ["count", u32]]],
  ["SetRoomAttributes", [["room_id", string], ["attributes", attrs], ...setFlags]],
  ["DeleteRoomAttributes", [["room_id", string], ["keys", list(string)], ["is_force", bool]]],
  ["QueryRoomAttributes", [["room_id", string]]],
  ["RoomAttributesBatch", [["room_id", string], ["ops", list(types.AttributeOp)]]],
  ["SetRoomMembersAttributes", [["room_id", string], ["user_ids", list(string)], ["attributes", attrs]]],
  ["QueryRoomMembersAttributes", [["room_id", string], ["user_ids", list(string)]]],
  ["QueryRoomMemberAttributesList", [["room_id", string], ["next_flag", string], ["count", u32]]],
  ["Resume", [
    ["protocol_version", u16], ["user_id", string], ["user_name", string], ["token", string],
    ["session_id", u64], ["resume_secret", secret16], ["rooms", list(pair(string, u64))],
  ]],
  ["RenewToken", [["token", string]]],
  ["Ping", []],
]);

/** `Response` (section 6.2). */
export const Response = enumOf("Response", [
  ["LoggedIn", [["session_id", u64], ["resume_secret", secret16], ["server_time_ms", u64], ["token_expires_at_s", u64]]],
  ["LoggedOut", []],
  ["RoomEntered", roomStateFields],
  ["RoomLeft", [["room_id", string]]],
  ["RoomsLeft", [["room_ids", list(string)]]],
  ["RoomSwitched", [["left_room_id", string], ["room", types.RoomState]]],
  ["MessageSent", [["room_id", string], ["message_id", u64], ["seq", u64], ["timestamp_ms", u64], ["duplicate", bool]]],
  ["RoomMembers", [["room_id", string], ["members", list(types.Member)], ["next_flag", string]]],
  ["RoomOnlineCount", [["room_id", string], ["count", u32]]],
  ["RoomMembersById", [["room_id", string], ["members", list(types.Member)], ["not_found", list(string)]]],
  ["JoinedRooms", [["rooms", list(types.RoomSummary)]]],
  ["History", [["room_id", string], ["messages", list(types.RoomMessage)], ["has_more", bool]]],
  ["RoomAttributesChanged", [["room_id", string], ["failed", list(types.AttributeFailure)]]],
  ["RoomAttributes", [["room_id", string], ["attributes", attrs]]],
  ["RoomMembersAttributesSet", [["room_id", string], ["members", list(types.MemberAttributes)], ["failed_user_ids", list(string)]]],
  ["RoomMembersAttributes", [["room_id", string], ["members", list(types.MemberAttributes)]]],
  ["RoomMemberAttributesList", [["room_id", string], ["members", list(types.MemberAttributes)], ["next_flag", string]]],
  ["Resumed", [["session_id", u64], ["resume_secret", secret16], ["session_resumed", bool], ["token_expires_at_s", u64], ["rooms", list(types.RoomRecovery)]]],
  ["TokenRenewed", [["token_expires_at_s", u64]]],
  ["Pong", []],
]);

/** `Reply` = `#0 Ok(Response) | #1 Err(ErrorBody)`. */
export const Reply = enumOf("Reply", [
  ["Ok", [["response", Response]]],
  ["Err", [["code", u16], ["message", string]]],
]);

/** `RequestFrame` = `{ request_id: u32, request: Request }`. */
export const RequestFrame = struct([["request_id", u32], ["request", Request]]);
/** `ResponseFrame` = `{ request_id: u32, reply: Reply }`. */
export const ResponseFrame = struct([["request_id", u32], ["reply", Reply]]);

/** `StreamHeader` (section 6.3). */
export const StreamHeader = enumOf("StreamHeader", [
  ["Session", []], ["Room", [["room_id", string]]], ["RoomLow", [["room_id", string]]],
]);

/** `Event` (section 6.3). */
export const Event = enumOf("Event", [
  ["MembersJoined", [["room_id", string], ["members", list(types.Member)]]],
  ["MembersLeft", [["room_id", string], ["members", list(types.Member)], ["reason", types.LeaveReason]]],
  ["RoomMessage", roomMessageFields],
  ["KickedOut", [["code", u16], ["message", string]]],
  ["MemberCountUpdated", [["room_id", string], ["count", u32]]],
  ["RoomAttributesUpdated", [["room_id", string], ["set", attrs], ["deleted", list(string)]]],
  ["RoomMemberAttributesUpdated", [["room_id", string], ["members", list(types.MemberAttributes)], ["operated_by", string]]],
  ["TokenWillExpire", [["expires_at_s", u64]]],
  ["RoomDestroyed", [["room_id", string]]],
  ["RemovedFromRoom", [["room_id", string], ["reason", types.LeaveReason]]],
]);

// ---------------------------------------------------------------------------------------------
// Framing (section 2)

/**
 * Encodes a value as a body (no length prefix).
 * @param {Codec<any>} codec
 * @param {any} value
 * @returns {Uint8Array}
 */
export function encodeBody(codec, value) {
  const w = new Writer();
  codec.enc(w, value);
  return w.bytes();
}

/**
 * Decodes a body exactly: leftover bytes are an error.
 * @param {Codec<any>} codec
 * @param {Uint8Array} body
 */
export function decodeBody(codec, body) {
  if (body.length === 0) throw new DecodeError("empty body");
  const r = new Reader(body);
  const v = codec.dec(r);
  r.done();
  return v;
}

/**
 * Encodes a value as a whole frame: the 4-byte little-endian length, then the body.
 * @param {Codec<any>} codec
 * @param {any} value
 * @returns {Uint8Array}
 */
export function encodeFrame(codec, value) {
  const w = new Writer();
  w.raw(new Uint8Array(4));
  codec.enc(w, value);
  const out = w.bytes();
  new DataView(out.buffer).setUint32(0, out.length - 4, true);
  return out;
}

/**
 * Decodes one whole frame (prefix and body, nothing more), e.g. a DATAGRAM payload.
 * @param {Codec<any>} codec
 * @param {Uint8Array} frame
 * @param {number} [maxLen]
 */
export function decodeFrame(codec, frame, maxLen = MAX_FRAME_LEN) {
  if (frame.length < 4) throw new DecodeError("frame shorter than its prefix");
  const len = new DataView(frame.buffer, frame.byteOffset, 4).getUint32(0, true);
  if (len > maxLen) throw new HuddleError(1001, `frame of ${len} bytes`);
  if (len !== frame.length - 4) throw new DecodeError("frame length does not match");
  return decodeBody(codec, frame.subarray(4));
}

/** Reassembles frame bodies from stream chunks split anywhere. */
export class FrameReader {
  /** @param {number} [maxLen] the largest body accepted */
  constructor(maxLen = MAX_FRAME_LEN) {
    this.maxLen = maxLen;
    /** @type {Uint8Array[]} */
    this.chunks = [];
    this.buffered = 0;
  }

  /** @param {Uint8Array} chunk */
  push(chunk) {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** True when a frame has begun but not ended (a FIN now is `malformed_frame`). */
  get partial() {
    return this.buffered > 0;
  }

  /**
   * The next complete body, or null if more bytes are needed. The length prefix is checked
   * before any body byte is kept.
   * @returns {Uint8Array|null}
   */
  next() {
    if (this.buffered < 4) return null;
    const head = this.peek(4);
    const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
    if (len > this.maxLen) throw new HuddleError(1001, `frame of ${len} bytes`);
    if (len === 0) throw new DecodeError("zero-length frame");
    if (this.buffered < 4 + len) return null;
    return this.peek(4 + len, true).subarray(4);
  }

  /**
   * @param {number} n
   * @param {boolean} [consume]
   */
  peek(n, consume = false) {
    if (this.chunks[0].length < n) {
      const all = new Uint8Array(this.buffered);
      let off = 0;
      for (const c of this.chunks) {
        all.set(c, off);
        off += c.length;
      }
      this.chunks = [all];
    }
    const first = this.chunks[0];
    const out = first.subarray(0, n);
    if (consume) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
    }
    return out;
  }
}

/**
 * Yields the frame bodies of a byte stream; a FIN inside a frame is `malformed_frame`.
 * @param {ReadableStream<Uint8Array>} readable
 * @param {number} [maxLen]
 * @returns {AsyncGenerator<Uint8Array>}
 */
export async function* readFrames(readable, maxLen = MAX_FRAME_LEN) {
  const reader = readable.getReader();
  const frames = new FrameReader(maxLen);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        if (frames.partial) throw new DecodeError("stream ended inside a frame");
        return;
      }
      frames.push(value);
      for (let body = frames.next(); body; body = frames.next()) yield body;
    }
  } finally {
    reader.releaseLock();
  }
}

// ---------------------------------------------------------------------------------------------
// Client

/**
 * @typedef {object} ClientOptions
 * @property {string} url WebTransport URL, e.g. `https://127.0.0.1:7443/huddle`
 * @property {(string|BufferSource)[]} [certHashes] SHA-256 hashes of the server certificate
 *   (base64 strings or raw 32 bytes) for `serverCertificateHashes`; none with a CA certificate
 * @property {(url: string, options: object) => any} [createTransport] makes the transport;
 *   default `new WebTransport(url, options)` (tests inject a fake)
 * @property {boolean} [autoResume] resume after a lost session (default true)
 * @property {number} [resumeWindowMs] give up resuming after this long (default 60000)
 * @property {number} [initialBackoffMs] first reconnect delay (default 100, doubling, jittered)
 * @property {number} [maxBackoffMs] largest reconnect delay (default 5000)
 * @property {() => Promise<string>|string} [getToken] a fresh token for Resume and, on
 *   `TokenWillExpire`, for an automatic RenewToken
 * @property {(ms: number) => Promise<void>} [sleep] injectable delay (tests)
 * @property {number} [closeWaitMs] after a stream fails, how long to wait for the session's
 *   close code before deciding whether to resume (default 1000)
 */

/**
 * @typedef {object} Credentials
 * @property {string} userId
 * @property {string} [userName]
 * @property {string} token
 */

/** Requests that may be sent again after resuming (section 4.6, "Requests left unanswered"). */
const RETRYABLE = new Set([
  "SendRoomMessage", "JoinRoom", "EnterRoom", "QueryRoomMembers", "QueryRoomOnlineCount",
  "QueryRoomMembersById", "QueryJoinedRooms", "QueryHistory", "QueryRoomAttributes",
  "QueryRoomMembersAttributes", "QueryRoomMemberAttributesList", "RenewToken", "Ping",
]);

/**
 * Closes a session's transport (code 0) if it is still open.
 * @param {{ transport: any }} conn
 */
function hangUp(conn) {
  try {
    conn.transport.close({ closeCode: 0, reason: "" });
  } catch {
    // already closed
  }
}

/** @param {string|BufferSource} h */
function hashBytes(h) {
  if (typeof h !== "string") return h;
  const bin = atob(h);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** @param {Record<string,string>|[string,string][]|undefined} a */
function pairs(a) {
  if (!a) return [];
  return Array.isArray(a) ? a : Object.entries(a);
}

/**
 * @typedef {object} Conn one WebTransport session
 * @property {any} transport
 * @property {WritableStreamDefaultWriter<Uint8Array>} writer
 * @property {Map<number, Pending>} pending
 * @property {boolean} lost
 * @property {number|null} closeCode the Huddle code the session ended with, when known
 * @property {boolean} resuming true until its Resume (or re-login) has been answered: its loss
 *   is handled by the reconnection loop
 * @property {Promise<void>} ended settles once `transport.closed` has, with `closeCode` set
 */

/**
 * @typedef {object} Pending
 * @property {Record<string, any>} request
 * @property {(r: any) => void} resolve
 * @property {(e: any) => void} reject
 */

/**
 * A Huddle session over WebTransport: requests matched to responses by id, events from the
 * server's unidirectional streams, and resumption after a lost session with replay and dedup.
 *
 * Events are delivered to `on(type, fn)` listeners (`"*"` for all) and to `events()`. Besides the
 * wire events of section 6.3 (`RoomMessage`, `MembersJoined`, ...), the client emits
 * `connection_lost` `{ error }`, `resumed` (the `Resumed` answer, plus `relogin: true` when the
 * session had to be made again by Login) and `closed` `{ code, codeName, reason }` once for
 * good.
 */
export class HuddleClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    this.options = {
      autoResume: true, resumeWindowMs: 60000, initialBackoffMs: 100, maxBackoffMs: 5000,
      closeWaitMs: 1000,
      sleep: (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms)),
      createTransport: (/** @type {string} */ url, /** @type {object} */ o) =>
        new (/** @type {any} */ (globalThis).WebTransport)(url, o),
      ...options,
    };
    /** @type {Conn|null} */
    this.conn = null;
    this.nextRequestId = 1;
    /** @type {Credentials|null} */
    this.credentials = null;
    /** @type {{ session_id: number|bigint, resume_secret: Uint8Array }|null} */
    this.session = null;
    /** Rooms this session is in, with the last Medium/High and Low seqs delivered. */
    /** @type {Map<string, { seq: number|bigint, lowSeq: number|bigint }>} */
    this.rooms = new Map();
    /** @type {Map<string, Set<(e: any) => void>>} */
    this.listeners = new Map();
    /** @type {Set<{ push: (e: any) => void, end: () => void }>} */
    this.iterators = new Set();
    /** Set once the client is closed for good (logout, close, no-resume code, failure). */
    this.closed = false;
    /** Set once `closed` has been emitted for the current login. */
    this.finished = false;
    this.msgPrefix = Math.random().toString(36).slice(2, 10);
    this.msgCounter = 0;
    /** A reconnection in progress: new requests wait for it. */
    /** @type {Promise<void>|null} */
    this.reconnecting = null;
  }

  // ---- events ----

  /**
   * Adds a listener for events of `type` (`"*"` for every event); returns a remover.
   * @param {string} type
   * @param {(e: any) => void} fn
   */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)?.add(fn);
    return () => this.listeners.get(type)?.delete(fn);
  }

  /**
   * Every event from now on, as an async iterator; it ends when the client closes for good.
   * @returns {AsyncIterableIterator<any>}
   */
  events() {
    /** @type {any[]} */
    const queue = [];
    /** @type {((v: IteratorResult<any>) => void)|null} */
    let wake = null;
    let ended = this.closed;
    const sink = {
      push: (/** @type {any} */ e) => {
        if (wake) {
          const w = wake;
          wake = null;
          w({ value: e, done: false });
        } else queue.push(e);
      },
      end: () => {
        ended = true;
        if (wake) wake({ value: undefined, done: true });
      },
    };
    this.iterators.add(sink);
    const self = this;
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      next() {
        if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((r) => (wake = r));
      },
      return() {
        self.iterators.delete(sink);
        ended = true;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  /** @param {any} e */
  emit(e) {
    for (const key of [e.type, "*"]) {
      for (const fn of this.listeners.get(key) ?? []) {
        try {
          fn(e);
        } catch (err) {
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
    for (const it of this.iterators) it.push(e);
  }

  // ---- connection ----

  /**
   * Opens a session and logs in. Resolves with the `LoggedIn` response.
   * @param {Credentials} credentials
   */
  async login(credentials) {
    this.credentials = { userName: "", ...credentials };
    this.closed = false;
    this.finished = false;
    const conn = await this.open();
    const r = await this.send(conn, this.loginRequest());
    this.session = { session_id: r.session_id, resume_secret: r.resume_secret };
    return r;
  }

  /**
   * Continues a session held by the server (for example after a page reload), with the state
   * `sessionState()` returned. Resolves with the `Resumed` response.
   * @param {Credentials} credentials
   * @param {{ session_id: number|bigint|string, resume_secret: Uint8Array|number[], rooms: [string, number|bigint][] }} state
   */
  async resume(credentials, state) {
    this.credentials = { userName: "", ...credentials };
    this.closed = false;
    this.finished = false;
    this.session = {
      session_id: typeof state.session_id === "string" ? BigInt(state.session_id) : state.session_id,
      resume_secret: Uint8Array.from(state.resume_secret),
    };
    for (const [room, seq] of state.rooms) this.rooms.set(room, { seq, lowSeq: seq });
    const conn = await this.open();
    return this.sendResume(conn);
  }

  /** What `resume()` needs to continue this session later (JSON-safe apart from bigints). */
  sessionState() {
    if (!this.session) return null;
    return {
      session_id: String(this.session.session_id),
      resume_secret: Array.from(this.session.resume_secret),
      rooms: [...this.rooms].map(([id, r]) => [id, r.seq]),
    };
  }

  loginRequest() {
    const c = /** @type {Credentials} */ (this.credentials);
    return { type: "Login", protocol_version: PROTOCOL_VERSION, user_id: c.userId, user_name: c.userName ?? "", token: c.token };
  }

  /**
   * Opens a WebTransport session and its control stream; it becomes the current connection.
   * @param {boolean} [resuming] opened by the reconnection loop
   * @returns {Promise<Conn>}
   */
  async open(resuming = false) {
    const o = this.options;
    /** @type {Record<string, any>} */
    const topts = {};
    if (o.certHashes?.length) {
      topts.serverCertificateHashes = o.certHashes.map((h) => ({ algorithm: "sha-256", value: hashBytes(h) }));
    }
    let transport;
    try {
      transport = o.createTransport(o.url, topts);
      transport.closed?.catch?.(() => {});
      await transport.ready;
    } catch (err) {
      throw new HuddleError(0, `cannot open ${o.url}: ${/** @type {any} */ (err)?.message ?? err}`, "connect_failed");
    }
    const bidi = await transport.createBidirectionalStream();
    /** @type {Conn} */
    /** @type {Conn} */
    const conn = {
      transport, writer: bidi.writable.getWriter(), pending: new Map(), lost: false,
      closeCode: null, resuming, ended: Promise.resolve(),
    };
    this.conn = conn;
    conn.ended = transport.closed.then(
      (/** @type {any} */ info) => {
        if (info && typeof info.closeCode === "number" && info.closeCode !== 0) conn.closeCode ??= info.closeCode;
        this.lose(conn, new HuddleError(info?.closeCode ?? 0, info?.reason ?? "session closed", info?.closeCode ? undefined : "connection_lost"));
      },
      (/** @type {any} */ err) => this.lose(conn, err),
    );
    this.readResponses(conn, bidi.readable);
    this.acceptStreams(conn);
    this.readDatagrams(conn);
    return conn;
  }

  /**
   * @param {Conn} conn
   * @param {ReadableStream<Uint8Array>} readable
   */
  async readResponses(conn, readable) {
    try {
      for await (const body of readFrames(readable)) {
        const frame = decodeBody(ResponseFrame, body);
        const p = conn.pending.get(frame.request_id);
        if (!p) continue;
        conn.pending.delete(frame.request_id);
        if (frame.reply.type === "Ok") {
          this.track(p.request, frame.reply.response);
          p.resolve(frame.reply.response);
        } else {
          const err = new HuddleError(frame.reply.code, frame.reply.message);
          if (p.request.type === "Login" || p.request.type === "Resume" || frame.reply.code === 2000) {
            conn.closeCode = frame.reply.code;
          }
          p.reject(err);
        }
      }
      this.lose(conn, new HuddleError(0, "control stream finished", "connection_lost"));
    } catch (err) {
      if (err instanceof HuddleError) hangUp(conn);
      this.lose(conn, err);
    }
  }

  /** @param {Conn} conn */
  async acceptStreams(conn) {
    try {
      const reader = conn.transport.incomingUnidirectionalStreams.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.readEventStream(conn, value);
      }
    } catch (err) {
      this.lose(conn, err);
    }
  }

  /**
   * @param {Conn} conn
   * @param {ReadableStream<Uint8Array>} stream
   */
  async readEventStream(conn, stream) {
    try {
      let header = null;
      for await (const body of readFrames(stream)) {
        if (conn.lost) return;
        if (!header) {
          header = decodeBody(StreamHeader, body);
          continue;
        }
        let event;
        try {
          event = decodeBody(Event, body);
        } catch (err) {
          if (err instanceof DecodeError && err.unknownVariant) continue; // section 12
          throw err;
        }
        this.dispatch(conn, event);
      }
    } catch (err) {
      if (conn.lost) return;
      // A server stream that ends in error has lost events: hang up and resume (section 4.6).
      // A frame that does not decode is known at once; a stream error may be the session
      // closing, whose close code `afterLoss` waits for before it hangs up.
      if (err instanceof HuddleError) hangUp(conn);
      this.lose(conn, err);
    }
  }

  /** @param {Conn} conn */
  async readDatagrams(conn) {
    const readable = conn.transport.datagrams?.readable;
    if (!readable) return;
    let reader;
    try {
      reader = readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || conn.lost) return;
        let event;
        try {
          event = decodeFrame(Event, value);
        } catch {
          continue;
        }
        if (event.type === "RoomMessage" && event.priority.type === "Low") this.dispatch(conn, event);
      }
    } catch {
      // the session's end is handled through `closed`
    }
  }

  /**
   * Applies an event to the client's state, drops duplicates, and emits it.
   * @param {Conn} conn
   * @param {any} e
   */
  dispatch(conn, e) {
    if (conn !== this.conn) return;
    switch (e.type) {
      case "RoomMessage": {
        const r = this.roomState(e.room_id);
        if (e.priority.type === "Low") {
          if (e.seq <= r.lowSeq) return;
          r.lowSeq = e.seq;
        } else {
          if (e.seq <= r.seq) return;
          r.seq = e.seq;
        }
        break;
      }
      case "RoomDestroyed":
      case "RemovedFromRoom":
        this.rooms.delete(e.room_id);
        break;
      case "KickedOut":
        conn.closeCode = e.code;
        break;
      case "TokenWillExpire":
        if (this.options.getToken) this.renewWithFreshToken();
        break;
    }
    this.emit(e);
  }

  async renewWithFreshToken() {
    try {
      const token = await /** @type {() => any} */ (this.options.getToken)();
      await this.renewToken(token);
    } catch {
      // the session ends with token_expired, which is reported through `closed`
    }
  }

  /** @param {string} roomId */
  roomState(roomId) {
    let r = this.rooms.get(roomId);
    if (!r) {
      r = { seq: 0, lowSeq: 0 };
      this.rooms.set(roomId, r);
    }
    return r;
  }

  /**
   * Keeps the room list and dedup baselines in step with answers.
   * @param {any} req
   * @param {any} res
   */
  track(req, res) {
    /** @param {any} state */
    const entered = (state) => {
      const r = this.roomState(state.room_id);
      if (state.last_seq > r.seq) r.seq = state.last_seq;
      if (state.last_seq > r.lowSeq) r.lowSeq = state.last_seq;
    };
    switch (res.type) {
      case "LoggedIn":
        this.rooms.clear();
        break;
      case "RoomEntered":
        entered(res);
        break;
      case "RoomSwitched":
        if (res.left_room_id !== res.room.room_id) this.rooms.delete(res.left_room_id);
        entered(res.room);
        break;
      case "RoomLeft":
        this.rooms.delete(res.room_id);
        break;
      case "RoomsLeft":
        this.rooms.clear();
        break;
      case "Resumed":
        this.session = { session_id: res.session_id, resume_secret: res.resume_secret };
        for (const rec of res.rooms) {
          if (rec.rejoined) this.roomState(rec.room_id);
          else this.rooms.delete(rec.room_id);
        }
        break;
      case "TokenRenewed":
        if (this.credentials && req.type === "RenewToken") this.credentials.token = req.token;
        break;
    }
  }

  /**
   * Writes a request on `conn` and waits for its answer.
   * @param {Conn} conn
   * @param {Record<string, any>} request
   * @returns {Promise<any>}
   */
  send(conn, request) {
    const id = this.nextRequestId;
    this.nextRequestId = id >= 0xffffffff ? 1 : id + 1;
    const frame = encodeFrame(RequestFrame, { request_id: id, request });
    if (frame.length - 4 > MAX_CLIENT_FRAME_LEN) {
      return Promise.reject(new HuddleError(1001, `request of ${frame.length - 4} bytes is over ${MAX_CLIENT_FRAME_LEN}`));
    }
    if (conn.lost) return Promise.reject(new HuddleError(0, "session lost", "connection_lost"));
    return new Promise((resolve, reject) => {
      conn.pending.set(id, { request, resolve, reject });
      conn.writer.write(frame).catch((err) => this.lose(conn, err));
    });
  }

  /**
   * Sends any request (section 6.1) and resolves with its `Response`, or rejects with a
   * `HuddleError`. Waits for a resumption in progress.
   * @param {Record<string, any>} request
   * @returns {Promise<any>}
   */
  async request(request) {
    if (this.reconnecting) await this.reconnecting;
    if (this.closed || !this.conn) throw new HuddleError(0, "not connected", "closed");
    return this.send(this.conn, request);
  }

  /**
   * The connection `conn` ended: fail or keep its requests, and resume when allowed.
   * @param {Conn} conn
   * @param {any} error
   */
  lose(conn, error) {
    if (conn.lost) return;
    conn.lost = true;
    if (error instanceof HuddleError && error.code >= 1000 && conn.closeCode === null) conn.closeCode = error.code;
    const keep = conn === this.conn && !conn.resuming && !this.closed && this.options.autoResume;
    const failure = error instanceof HuddleError ? error : new HuddleError(0, String(error?.message ?? error), "connection_lost");
    /** @type {Pending[]} */
    const retry = [];
    for (const [, p] of conn.pending) {
      if (keep && RETRYABLE.has(p.request.type)) retry.push(p);
      else p.reject(failure);
    }
    conn.pending.clear();
    try {
      conn.writer.releaseLock();
    } catch {
      // released already
    }
    if (conn !== this.conn || conn.resuming) return;
    if (this.closed) {
      this.finish(conn.closeCode ?? 0, error);
      return;
    }
    this.reconnecting = this.afterLoss(conn, error, retry).finally(() => (this.reconnecting = null));
  }

  /**
   * Waits for the close code of a lost session, then resumes or gives up.
   * @param {Conn} conn
   * @param {any} error
   * @param {Pending[]} retry
   */
  async afterLoss(conn, error, retry) {
    await Promise.race([conn.ended, /** @type {(ms: number) => Promise<void>} */ (this.options.sleep)(/** @type {number} */ (this.options.closeWaitMs))]);
    hangUp(conn);
    const code = conn.closeCode ?? 0;
    if (this.closed || !this.session || !this.options.autoResume || NO_RESUME_CODES.has(code) || (code === 2002 && !this.options.getToken)) {
      for (const p of retry) p.reject(new HuddleError(code, "session ended"));
      this.finish(code, error);
      return;
    }
    this.emit({ type: "connection_lost", code, error });
    await this.reconnect(retry);
  }

  /**
   * @param {number} code
   * @param {any} error
   */
  finish(code, error) {
    if (this.finished) return;
    this.finished = true;
    this.closed = true;
    this.conn = null;
    this.emit({ type: "closed", code, codeName: errorName(code), reason: String(error?.message ?? "") });
    for (const it of this.iterators) it.end();
    this.iterators.clear();
  }

  /**
   * Reconnects with jittered backoff and resumes; resends unanswered requests first.
   * @param {Pending[]} retry
   */
  async reconnect(retry) {
    const o = this.options;
    const deadline = Date.now() + /** @type {number} */ (o.resumeWindowMs);
    let delay = /** @type {number} */ (o.initialBackoffMs);
    let lastError = null;
    while (!this.closed && Date.now() < deadline) {
      await /** @type {(ms: number) => Promise<void>} */ (o.sleep)(delay / 2 + Math.random() * delay / 2);
      delay = Math.min(delay * 2, /** @type {number} */ (o.maxBackoffMs));
      let conn;
      try {
        conn = await this.open(true);
      } catch (err) {
        lastError = err;
        continue;
      }
      try {
        if (o.getToken && this.credentials) this.credentials.token = await o.getToken();
        const res = await this.sendResume(conn);
        this.emit({ ...res, type: "resumed" });
      } catch (err) {
        lastError = err;
        if (!(err instanceof HuddleError) || RETRY_RESUME_CODES.has(err.code)) continue;
        if (err.code === 2007) {
          // The secret or user no longer matches: a fresh session that re-joins the rooms.
          try {
            conn = await this.relogin();
          } catch (e2) {
            lastError = e2;
            continue;
          }
        } else {
          for (const p of retry) p.reject(err);
          this.finish(err.code, err);
          return;
        }
      }
      conn.resuming = false;
      if (conn.lost) continue; // lost again while resuming
      for (const p of retry) this.send(conn, p.request).then(p.resolve, p.reject);
      return;
    }
    const err = lastError instanceof HuddleError ? lastError : new HuddleError(0, "could not resume", "connection_lost");
    for (const p of retry) p.reject(err);
    this.finish(err.code, err);
  }

  /** @param {Conn} conn */
  async sendResume(conn) {
    const c = /** @type {Credentials} */ (this.credentials);
    const s = /** @type {NonNullable<HuddleClient["session"]>} */ (this.session);
    return this.send(conn, {
      type: "Resume", protocol_version: PROTOCOL_VERSION, user_id: c.userId,
      user_name: c.userName ?? "", token: c.token, session_id: s.session_id,
      resume_secret: s.resume_secret, rooms: [...this.rooms].map(([id, r]) => [id, r.seq]),
    });
  }

  /** After `session_not_found`: log in on a new session and join the rooms again. */
  async relogin() {
    const rooms = [...this.rooms.keys()];
    const saved = new Map(this.rooms);
    const conn = await this.open(true);
    const r = await this.send(conn, this.loginRequest());
    this.session = { session_id: r.session_id, resume_secret: r.resume_secret };
    const recoveries = [];
    for (const room of rooms) {
      try {
        const st = await this.send(conn, { type: "JoinRoom", room_id: room });
        const prev = saved.get(room);
        // What came between the old seq and this join is a gap for QueryHistory.
        recoveries.push({ room_id: room, rejoined: true, recovered: st.last_seq <= (prev?.seq ?? 0), replayed: 0, last_seq: st.last_seq, error_code: 0 });
      } catch (err) {
        recoveries.push({ room_id: room, rejoined: false, recovered: false, replayed: 0, last_seq: 0, error_code: /** @type {any} */ (err)?.code ?? 9001 });
      }
    }
    this.emit({ type: "resumed", relogin: true, session_id: r.session_id, session_resumed: false, rooms: recoveries });
    return conn;
  }

  /** Hangs up without Logout: the server holds the session for its offline grace period. */
  close() {
    const conn = this.conn;
    this.closed = true;
    if (conn) {
      hangUp(conn);
      this.lose(conn, new HuddleError(0, "closed by the client", "closed"));
    }
    this.finish(0, null);
  }

  /** Hangs up the current session as if the network had dropped it (tests, demo). */
  dropConnection() {
    const conn = this.conn;
    if (!conn) return;
    hangUp(conn);
    this.lose(conn, new HuddleError(0, "dropped by the client", "connection_lost"));
  }

  // ---- operations (section 7) ----

  /** Leaves every room and ends the session. */
  async logout() {
    if (this.reconnecting) await this.reconnecting;
    const conn = this.conn;
    if (this.closed || !conn) throw new HuddleError(0, "not connected", "closed");
    this.closed = true;
    const r = await this.send(conn, { type: "Logout" });
    this.session = null;
    this.rooms.clear();
    if (this.conn) this.lose(this.conn, new HuddleError(0, "logged out", "closed"));
    return r;
  }

  /**
   * @typedef {object} RoomOptions
   * @property {string} [roomName]
   * @property {number} [destroyDelayS]
   * @property {Record<string,string>|[string,string][]} [attributes] initial room attributes
   */

  /**
   * @param {string} roomId
   * @param {RoomOptions} [o]
   */
  static roomArgs(roomId, o = {}) {
    return {
      info: { room_id: roomId, room_name: o.roomName ?? "" },
      config: { destroy_delay_s: o.destroyDelayS ?? 0, attributes: pairs(o.attributes) },
    };
  }

  /**
   * Creates a room and joins it; resolves with its `RoomEntered` (a RoomState).
   * @param {string} roomId
   * @param {RoomOptions} [o]
   */
  createRoom(roomId, o) {
    return this.request({ type: "CreateRoom", ...HuddleClient.roomArgs(roomId, o) });
  }

  /** @param {string} roomId */
  joinRoom(roomId) {
    return this.request({ type: "JoinRoom", room_id: roomId });
  }

  /**
   * Create-or-join.
   * @param {string} roomId
   * @param {RoomOptions} [o]
   */
  enterRoom(roomId, o) {
    return this.request({ type: "EnterRoom", ...HuddleClient.roomArgs(roomId, o) });
  }

  /** @param {string} roomId */
  leaveRoom(roomId) {
    return this.request({ type: "LeaveRoom", room_id: roomId });
  }

  leaveAllRooms() {
    return this.request({ type: "LeaveAllRooms" });
  }

  /**
   * @param {string} fromRoomId
   * @param {string} toRoomId
   * @param {RoomOptions & { createIfMissing?: boolean }} [o]
   */
  switchRoom(fromRoomId, toRoomId, o = {}) {
    const { info, config } = HuddleClient.roomArgs(toRoomId, o);
    return this.request({ type: "SwitchRoom", from_room_id: fromRoomId, to: info, create_if_missing: !!o.createIfMissing, config });
  }

  /**
   * @typedef {object} SendOptions
   * @property {"Low"|"Medium"|"High"} [priority] default `Medium` here (the wire default is Low)
   * @property {string|null} [clientMsgId] default: a fresh id, so a resend after resuming
   *   counts once; `null` sends none
   */

  /**
   * @param {string} roomId
   * @param {any} body a `MessageBody`
   * @param {SendOptions} [o]
   */
  sendMessage(roomId, body, o = {}) {
    const clientMsgId = o.clientMsgId === undefined ? `${this.msgPrefix}-${++this.msgCounter}` : o.clientMsgId;
    return this.request({
      type: "SendRoomMessage", room_id: roomId, body,
      priority: { type: o.priority ?? "Medium" }, client_msg_id: clientMsgId,
    });
  }

  /**
   * Sends a text message; resolves with `MessageSent`.
   * @param {string} roomId
   * @param {string} text
   * @param {SendOptions} [o]
   */
  sendText(roomId, text, o) {
    return this.sendMessage(roomId, { type: "Text", text }, o);
  }

  /**
   * Sends custom bytes with an application-defined sub type.
   * @param {string} roomId
   * @param {number} subType
   * @param {Uint8Array} data
   * @param {SendOptions} [o]
   */
  sendCustom(roomId, subType, data, o) {
    return this.sendMessage(roomId, { type: "Custom", sub_type: subType, data }, o);
  }

  /**
   * One page of members; pass the answer's `next_flag` for the next.
   * @param {string} roomId
   * @param {{ nextFlag?: string, count?: number }} [o]
   */
  queryRoomMembers(roomId, o = {}) {
    return this.request({ type: "QueryRoomMembers", room_id: roomId, next_flag: o.nextFlag ?? "", count: o.count ?? 100 });
  }

  /**
   * Every member, paging until the last page.
   * @param {string} roomId
   */
  async allRoomMembers(roomId) {
    const all = [];
    let nextFlag = "";
    do {
      const page = await this.queryRoomMembers(roomId, { nextFlag });
      all.push(...page.members);
      nextFlag = page.next_flag;
    } while (nextFlag);
    return all;
  }

  /** @param {string} roomId */
  queryRoomOnlineCount(roomId) {
    return this.request({ type: "QueryRoomOnlineCount", room_id: roomId });
  }

  /**
   * @param {string} roomId
   * @param {string[]} userIds
   */
  queryRoomMembersById(roomId, userIds) {
    return this.request({ type: "QueryRoomMembersById", room_id: roomId, user_ids: userIds });
  }

  queryJoinedRooms() {
    return this.request({ type: "QueryJoinedRooms" });
  }

  /**
   * @param {string} roomId
   * @param {{ beforeSeq?: number|bigint, afterSeq?: number|bigint, count?: number }} [o]
   *   neither seq: the latest messages
   */
  queryHistory(roomId, o = {}) {
    const anchor = o.beforeSeq !== undefined ? { type: "BeforeSeq", seq: o.beforeSeq }
      : o.afterSeq !== undefined ? { type: "AfterSeq", seq: o.afterSeq } : { type: "Latest" };
    return this.request({ type: "QueryHistory", room_id: roomId, anchor, count: o.count ?? 50 });
  }

  /**
   * @typedef {object} SetFlags
   * @property {boolean} [isForce]
   * @property {boolean} [isUpdateOwner]
   * @property {boolean} [isDeleteAfterOwnerLeft]
   */

  /** @param {SetFlags} o */
  static flags(o) {
    return { is_force: !!o.isForce, is_update_owner: !!o.isUpdateOwner, is_delete_after_owner_left: !!o.isDeleteAfterOwnerLeft };
  }

  /**
   * @param {string} roomId
   * @param {Record<string,string>|[string,string][]} attributes
   * @param {SetFlags} [o]
   */
  setRoomAttributes(roomId, attributes, o = {}) {
    return this.request({ type: "SetRoomAttributes", room_id: roomId, attributes: pairs(attributes), ...HuddleClient.flags(o) });
  }

  /**
   * @param {string} roomId
   * @param {string[]} keys
   * @param {{ isForce?: boolean }} [o]
   */
  deleteRoomAttributes(roomId, keys, o = {}) {
    return this.request({ type: "DeleteRoomAttributes", room_id: roomId, keys, is_force: !!o.isForce });
  }

  /** @param {string} roomId */
  queryRoomAttributes(roomId) {
    return this.request({ type: "QueryRoomAttributes", room_id: roomId });
  }

  /**
   * An atomic batch; `ops` are `AttributeOp`s, e.g. made with `HuddleClient.setOp` and
   * `HuddleClient.deleteOp`.
   * @param {string} roomId
   * @param {any[]} ops
   */
  roomAttributesBatch(roomId, ops) {
    return this.request({ type: "RoomAttributesBatch", room_id: roomId, ops });
  }

  /**
   * @param {Record<string,string>|[string,string][]} attributes
   * @param {SetFlags} [o]
   */
  static setOp(attributes, o = {}) {
    return { type: "Set", attributes: pairs(attributes), ...HuddleClient.flags(o) };
  }

  /**
   * @param {string[]} keys
   * @param {{ isForce?: boolean }} [o]
   */
  static deleteOp(keys, o = {}) {
    return { type: "Delete", keys, is_force: !!o.isForce };
  }

  /**
   * @param {string} roomId
   * @param {string[]} userIds
   * @param {Record<string,string>|[string,string][]} attributes
   */
  setRoomMembersAttributes(roomId, userIds, attributes) {
    return this.request({ type: "SetRoomMembersAttributes", room_id: roomId, user_ids: userIds, attributes: pairs(attributes) });
  }

  /**
   * @param {string} roomId
   * @param {string[]} userIds
   */
  queryRoomMembersAttributes(roomId, userIds) {
    return this.request({ type: "QueryRoomMembersAttributes", room_id: roomId, user_ids: userIds });
  }

  /**
   * @param {string} roomId
   * @param {{ nextFlag?: string, count?: number }} [o]
   */
  queryRoomMemberAttributesList(roomId, o = {}) {
    return this.request({ type: "QueryRoomMemberAttributesList", room_id: roomId, next_flag: o.nextFlag ?? "", count: o.count ?? 100 });
  }

  /**
   * Replaces the session's token; later resumes use it.
   * @param {string} token
   */
  renewToken(token) {
    return this.request({ type: "RenewToken", token });
  }

  /** Round trip to the server; resolves with `Pong`. */
  ping() {
    return this.request({ type: "Ping" });
  }
}
