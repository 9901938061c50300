// The demo chat page: log in with a user id and token, enter rooms, see members and messages,
// send. The WebTransport URL and certificate hash come from the server's /config.json.
// `window.huddleDemo` exposes the client and the page state to browser tests.

import { HuddleClient } from "./huddle.js";

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));

/**
 * Per room: its members (user id -> name) and the messages shown.
 * @type {Map<string, { members: Map<string, string>, messages: any[], count: number|null }>}
 */
const rooms = new Map();
/** @type {string|null} */
let current = null;
/** @type {HuddleClient|null} */
let client = null;
/** @type {{ webtransport_url?: string, cert_hashes?: string[], cert_hashes_base64?: string[] }} */
let config = {};

const demo = { rooms, get client() { return client; }, get current() { return current; }, ready: loadConfig() };
/** @type {any} */ (window).huddleDemo = demo;

async function loadConfig() {
  const params = new URLSearchParams(location.search);
  try {
    const r = await fetch("/config.json", { cache: "no-store" });
    if (r.ok) config = await r.json();
  } catch {
    // served without a Huddle server: the URL is typed in or given as ?url=
  }
  if (params.get("url")) config.webtransport_url = params.get("url") ?? undefined;
  if (params.get("hash")) config.cert_hashes_base64 = [params.get("hash") ?? ""];
  $("url").value = config.webtransport_url ?? "";
  for (const key of ["user", "name", "room"]) if (params.get(key)) $(key).value = params.get(key);
  if (params.get("token")) $("token").value = params.get("token");
  if (!("WebTransport" in window)) showError("This browser has no WebTransport (it needs a secure context: https, or http://localhost / 127.0.0.1).");
}

/** @param {string} state @param {string} text */
function status(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

/** @param {any} err */
function showError(err) {
  $("error").textContent = err ? String(err.message ?? err) : "";
}

/** @param {string} roomId */
function room(roomId) {
  let r = rooms.get(roomId);
  if (!r) {
    r = { members: new Map(), messages: [], count: null };
    rooms.set(roomId, r);
  }
  return r;
}

function render() {
  const ul = $("rooms");
  ul.replaceChildren(...[...rooms.keys()].map((id) => {
    const li = document.createElement("li");
    li.textContent = id;
    li.className = id === current ? "current" : "";
    li.onclick = () => {
      current = id;
      render();
    };
    return li;
  }));
  const r = current ? rooms.get(current) : null;
  $("title").textContent = current ? `Messages in ${current}` : "Messages";
  $("messages").replaceChildren(...(r?.messages ?? []).map((m) => {
    const li = document.createElement("li");
    if (m.note) {
      li.className = "note";
      li.textContent = m.note;
      return li;
    }
    const who = document.createElement("span");
    who.className = "sender";
    who.textContent = m.sender;
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = ` #${m.seq}${m.priority.type === "Medium" ? "" : ` ${m.priority.type}`}`;
    li.append(who, m.body.type === "Text" ? m.body.text : `[custom ${m.body.sub_type}, ${m.body.data.length} bytes]`, seq);
    li.dataset.seq = String(m.seq);
    return li;
  }));
  $("messages").scrollTop = $("messages").scrollHeight;
  $("members").replaceChildren(...[...(r?.members ?? [])].map(([id, name]) => {
    const li = document.createElement("li");
    li.textContent = name && name !== id ? `${name} (${id})` : id;
    li.dataset.user = id;
    return li;
  }));
  $("count").textContent = r ? `(${r.count ?? r.members.size})` : "";
  const on = !!client && !!current;
  $("text").disabled = !on;
  $("sendButton").disabled = !on;
}

/**
 * Adds a message in seq order (history and live events may interleave).
 * @param {any} m a RoomMessage
 */
function addMessage(m) {
  const list = room(m.room_id).messages;
  if (list.some((x) => !x.note && x.seq === m.seq)) return;
  list.push(m);
  list.sort((a, b) => (a.note || b.note ? 0 : Number(a.seq) - Number(b.seq)));
}

/**
 * @param {string} roomId
 * @param {string} note
 */
function addNote(roomId, note) {
  room(roomId).messages.push({ note });
}

/** @param {string} roomId */
async function enter(roomId) {
  if (!client) return;
  const state = await client.enterRoom(roomId);
  const r = room(roomId);
  current = roomId;
  const [members, history] = await Promise.all([client.allRoomMembers(roomId), client.queryHistory(roomId, { count: 50 })]);
  r.members = new Map(members.map((/** @type {any} */ m) => [m.user_id, m.user_name]));
  r.count = state.member_count > 500 ? state.member_count : null;
  for (const m of history.messages) addMessage(m);
  render();
}

/** @param {any} e */
function onEvent(e) {
  switch (e.type) {
    case "RoomMessage":
      addMessage(e);
      break;
    case "MembersJoined":
      for (const m of e.members) room(e.room_id).members.set(m.user_id, m.user_name);
      break;
    case "MembersLeft":
      for (const m of e.members) room(e.room_id).members.delete(m.user_id);
      break;
    case "MemberCountUpdated":
      room(e.room_id).count = e.count;
      break;
    case "RoomDestroyed":
    case "RemovedFromRoom":
      addNote(e.room_id, e.type === "RoomDestroyed" ? "The room was destroyed." : "You were removed from the room.");
      break;
    case "KickedOut":
      showError(`Kicked out: ${e.message} (${e.code})`);
      break;
    case "connection_lost":
      status("resuming", "connection lost, resuming…");
      break;
    case "resumed":
      status("connected", `connected (resumed${e.session_resumed ? "" : " as a new session"})`);
      for (const rec of e.rooms) {
        if (!rec.rejoined) rooms.delete(rec.room_id);
        else if (!rec.recovered) addNote(rec.room_id, "Some messages could not be recovered.");
      }
      if (current && !rooms.has(current)) current = rooms.keys().next().value ?? null;
      // Member lists may have changed during the gap; their events are not replayed.
      for (const id of rooms.keys()) refreshMembers(id);
      break;
    case "closed":
      status("closed", `closed: ${e.codeName}`);
      client = null;
      $("login").hidden = false;
      $("session").hidden = true;
      break;
  }
  render();
}

/** @param {string} roomId */
async function refreshMembers(roomId) {
  if (!client) return;
  try {
    const members = await client.allRoomMembers(roomId);
    room(roomId).members = new Map(members.map((/** @type {any} */ m) => [m.user_id, m.user_name]));
    render();
  } catch (err) {
    showError(err);
  }
}

$("login").addEventListener("submit", async (/** @type {Event} */ ev) => {
  ev.preventDefault();
  showError(null);
  await demo.ready;
  const url = $("url").value.trim();
  if (!url) return showError("No server URL: serve this page with `huddle serve --web-listen` or give ?url=");
  status("resuming", "connecting…");
  client = new HuddleClient({ url, certHashes: url === config.webtransport_url ? config.cert_hashes_base64 ?? [] : [] });
  client.on("*", onEvent);
  try {
    await client.login({ userId: $("user").value.trim(), userName: $("name").value.trim(), token: $("token").value.trim() });
    status("connected", `connected as ${$("user").value.trim()}`);
    $("login").hidden = true;
    $("session").hidden = false;
    await enter($("room").value.trim());
  } catch (err) {
    showError(err);
    if (client) client.close();
  }
});

$("join").addEventListener("submit", async (/** @type {Event} */ ev) => {
  ev.preventDefault();
  const id = $("another").value.trim();
  if (!id) return;
  try {
    await enter(id);
    $("another").value = "";
    showError(null);
  } catch (err) {
    showError(err);
  }
});

$("send").addEventListener("submit", async (/** @type {Event} */ ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!client || !current || !text) return;
  const roomId = current;
  try {
    const sent = await client.sendText(roomId, text, { priority: $("priority").value });
    $("text").value = "";
    const self = /** @type {any} */ (client.credentials).userId;
    addMessage({ room_id: roomId, seq: sent.seq, message_id: sent.message_id, sender: self, timestamp_ms: sent.timestamp_ms, priority: { type: $("priority").value }, body: { type: "Text", text } });
    showError(null);
    render();
  } catch (err) {
    showError(err);
  }
});

$("leave").addEventListener("click", async () => {
  if (!client || !current) return;
  try {
    await client.leaveRoom(current);
    rooms.delete(current);
    current = rooms.keys().next().value ?? null;
    render();
  } catch (err) {
    showError(err);
  }
});

$("drop").addEventListener("click", () => client?.dropConnection());

$("logout").addEventListener("click", async () => {
  try {
    await client?.logout();
  } catch (err) {
    showError(err);
  }
  rooms.clear();
  current = null;
  render();
});
