// Browser tests of the web client: headless Chromium (puppeteer-core, the system's browser)
// opens the demo page that a real `huddle serve` serves, next to a native `huddle client` in
// JSON-lines mode. Usage: node run.mjs HUDDLE_BINARY [CHROMIUM_BINARY]; exits non-zero on a
// failure. clients/web/browser-test.sh installs what it needs and runs it.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";

import puppeteer from "puppeteer-core";

const HUDDLE = process.argv[2];
const CHROMIUM = process.argv[3] ?? "/usr/lib/chromium/chromium";
const ADMIN_TOKEN = "browser-test-admin-token-0123456789";
/** The outbound queue bound the server runs with: one frame over it closes the connection. */
const QUEUE_BYTES = 16384;
const STEP_MS = 10000;

const dir = mkdtempSync(join(tmpdir(), "huddle-browser-"));
/** @type {(() => void)[]} */
const cleanups = [];

/** Waits for `pred` to return a truthy value, polling; fails after `ms` with `what`. */
async function until(what, pred, ms = STEP_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25).unref());
  }
}

/** Runs `huddle ARGS...` to completion and returns its stdout. */
function run(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(HUDDLE, args, { cwd: dir, env: { ...process.env, HUDDLE_CERTS_DIR: join(dir, "certs") } });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", () => {});
    p.on("close", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`huddle ${args[0]} exited ${code}`))));
  });
}

/** Starts `huddle serve` on free loopback ports and reads them from its stdout. */
async function startServer() {
  const config = join(dir, "huddle.toml");
  writeFileSync(config, `[queue]\nmax_bytes = ${QUEUE_BYTES}\nmax_frames = 16384\n`);
  const p = spawn(HUDDLE, ["serve", "--config", config, "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], {
    cwd: dir,
    env: { ...process.env, HUDDLE_CERTS_DIR: join(dir, "certs"), HUDDLE_ADMIN_TOKEN: ADMIN_TOKEN, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  cleanups.push(() => p.kill("SIGTERM"));
  let out = "";
  p.stdout.on("data", (d) => (out += d));
  const exited = new Promise((_, reject) => p.on("exit", (c) => reject(new Error(`huddle serve exited ${c}: ${out}`))));
  const found = until("huddle serve's addresses", () => {
    const quic = /huddle listening on (\S+)/.exec(out)?.[1];
    const admin = /huddle admin API on (\S+)/.exec(out)?.[1];
    const web = /huddle web page on (\S+)/.exec(out)?.[1];
    return quic && admin && web ? { quic, admin, web } : null;
  }, 30000);
  return Promise.race([found, exited]);
}

/** A native `huddle client --json`: requests in, JSON lines out. */
function nativeClient(user, server) {
  const p = spawn(HUDDLE, ["client", "--json", "--user", user, "--server", server], {
    cwd: dir,
    env: { ...process.env, HUDDLE_CERTS_DIR: join(dir, "certs") },
    stdio: ["pipe", "pipe", "ignore"],
  });
  cleanups.push(() => p.kill("SIGTERM"));
  /** @type {any[]} */
  const lines = [];
  let buf = "";
  p.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  let seen = 0;
  return {
    lines,
    send: (/** @type {any} */ req) => p.stdin.write(JSON.stringify(req) + "\n"),
    /** The next line (after those already taken) that matches `pred`. */
    next: async (/** @type {string} */ what, /** @type {(l: any) => boolean} */ pred) => {
      const i = await until(`${user}: ${what}`, () => {
        const k = lines.findIndex((l, n) => n >= seen && pred(l));
        return k >= 0 ? k + 1 : 0;
      });
      seen = i;
      return lines[i - 1];
    },
    /** Every room_message event in `room` so far. */
    messages: (/** @type {string} */ room) => lines.filter((l) => l.type === "event" && l.event === "room_message" && l.room_id === room),
    stop: () => p.stdin.end(),
  };
}

async function admin(base, method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

/** The texts of the demo state's messages in `room`, in the page's order. */
function pageTexts(page, room) {
  return page.evaluate((room) => (window.huddleDemo.rooms.get(room)?.messages ?? []).filter((m) => !m.note).map((m) => `${m.sender}:${m.body.text}`), room);
}

/**
 * Decodes an 8-bit RGB(A) PNG (what Chromium's screenshots are) and returns how many pixels
 * differ from the most common colour, and how many colours there are.
 */
export function inkPixels(png) {
  assert.equal(png.subarray(1, 4).toString(), "PNG");
  let off = 8;
  let width = 0, height = 0, channels = 0;
  const idat = [];
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.subarray(off + 4, off + 8).toString();
    const data = png.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8, "8-bit PNG");
      channels = { 2: 3, 6: 4 }[data[9]] ?? assert.fail(`PNG colour type ${data[9]}`);
    } else if (type === "IDAT") idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
      px[y * stride + x] = (line[x] + pred) & 0xff;
    }
  }
  const counts = new Map();
  for (let i = 0; i < px.length; i += channels) {
    const k = px.readUIntBE(i, 3);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const background = Math.max(...counts.values());
  return { ink: width * height - background, colours: counts.size, total: width * height };
}

const cases = [];
const test = (name, fn) => cases.push({ name, fn });

let server, browser, page, bob, token;

test("a browser user and a native client in one room: messages both ways in order, member events", async () => {
  bob.send({ op: "create_room", room_id: "r1", room_name: "R1", destroy_delay_s: 60 });
  await bob.next("create_room", (l) => l.op === "create_room" && l.ok);
  await page.goto(`${server.web}?user=alice&name=Alice&room=r1&token=${encodeURIComponent(token)}`);
  await page.evaluate(() => window.huddleDemo.ready);
  await page.evaluate(() => document.getElementById("login").requestSubmit());
  await page.waitForSelector('#members li[data-user="bob"]', { timeout: STEP_MS });
  await page.waitForSelector('#members li[data-user="alice"]', { timeout: STEP_MS });
  const joined = await bob.next("members_joined alice", (l) => l.event === "members_joined" && l.room_id === "r1");
  assert.deepEqual(joined.members.map((m) => m.user_id), ["alice"]);
  assert.equal(await page.$eval("#status", (e) => e.dataset.state), "connected");

  for (let i = 1; i <= 5; i++) bob.send({ op: "send_room_message", room_id: "r1", text: `b${i}`, priority: "medium" });
  await page.waitForFunction(() => document.querySelectorAll("#messages li[data-seq]").length >= 5, { timeout: STEP_MS });
  const shown = await page.$$eval("#messages li[data-seq]", (lis) => lis.map((li) => [Number(li.dataset.seq), li.childNodes[1].textContent]));
  assert.deepEqual(shown.map((s) => s[1]), ["b1", "b2", "b3", "b4", "b5"]);
  assert.deepEqual(shown.map((s) => s[0]), [...shown.map((s) => s[0])].sort((a, b) => a - b));

  for (let i = 1; i <= 5; i++) {
    await page.type("#text", `a${i}`);
    await page.evaluate(() => document.getElementById("send").requestSubmit());
    await page.waitForFunction((n) => document.querySelectorAll("#messages li[data-seq]").length >= n, { timeout: STEP_MS }, 5 + i);
  }
  await until("bob receives a1..a5", () => bob.messages("r1").length >= 5);
  const got = bob.messages("r1");
  assert.deepEqual(got.map((m) => `${m.sender}:${m.text}`), ["alice:a1", "alice:a2", "alice:a3", "alice:a4", "alice:a5"]);
  assert.deepEqual(await pageTexts(page, "r1"), ["bob:b1", "bob:b2", "bob:b3", "bob:b4", "bob:b5", "alice:a1", "alice:a2", "alice:a3", "alice:a4", "alice:a5"]);
});

test("two rooms at once", async () => {
  bob.send({ op: "create_room", room_id: "r2", room_name: "R2", destroy_delay_s: 60 });
  await bob.next("create r2", (l) => l.op === "create_room" && l.ok);
  await page.type("#another", "r2");
  await page.evaluate(() => document.getElementById("join").requestSubmit());
  await bob.next("alice joins r2", (l) => l.event === "members_joined" && l.room_id === "r2");
  for (let i = 1; i <= 4; i++) {
    bob.send({ op: "send_room_message", room_id: "r1", text: `x${i}`, priority: "medium" });
    bob.send({ op: "send_room_message", room_id: "r2", text: `y${i}`, priority: "medium" });
  }
  await until("alice gets x1..x4 and y1..y4", async () => (await pageTexts(page, "r2")).length >= 4 && (await pageTexts(page, "r1")).length >= 14);
  assert.deepEqual((await pageTexts(page, "r1")).slice(10), ["bob:x1", "bob:x2", "bob:x3", "bob:x4"]);
  assert.deepEqual(await pageTexts(page, "r2"), ["bob:y1", "bob:y2", "bob:y3", "bob:y4"]);
  await page.evaluate(() => Promise.all([window.huddleDemo.client.sendText("r2", "in two"), window.huddleDemo.client.sendText("r1", "in one")]));
  await until("bob gets alice's two", () => bob.messages("r2").length >= 1 && bob.messages("r1").length >= 6);
  assert.equal(bob.messages("r2")[0].text, "in two");
  assert.equal(bob.messages("r1")[5].text, "in one");
});

test("the server closes the browser's session (slow_consumer); the page resumes with replay", async () => {
  await page.evaluate(() => {
    window.seen = [];
    window.huddleDemo.client.on("*", (e) => window.seen.push({ type: e.type, room: e.room_id, text: e.body?.text, code: e.code, session_resumed: e.session_resumed, rooms: e.rooms }));
    // A gap long enough for bob's messages to be sent while the browser is away.
    window.huddleDemo.client.options.initialBackoffMs = 1500;
  });
  await page.evaluate(() => window.huddleDemo.client.enterRoom("big"));
  const before = (await pageTexts(page, "r1")).length;
  // One frame larger than the connection's outbound bound: the server closes it with 7000.
  await admin(server.admin, "POST", "/v1/rooms/big/messages", { text: "z".repeat(QUEUE_BYTES + 1000), priority: "medium" });
  await page.waitForFunction(() => window.seen.some((e) => e.type === "connection_lost"), { timeout: STEP_MS });
  for (let i = 1; i <= 5; i++) bob.send({ op: "send_room_message", room_id: "r1", text: `m${i}`, priority: "medium" });
  for (let i = 1; i <= 5; i++) await bob.next(`m${i} sent`, (l) => l.op === "send_room_message" && l.ok);
  assert.ok(!(await page.evaluate(() => window.seen.some((e) => e.type === "resumed"))), "m1..m5 were sent while the page was away");
  const resumed = await until("resumed", () => page.evaluate(() => window.seen.find((e) => e.type === "resumed")));
  assert.equal(resumed.session_resumed, true);
  assert.ok(resumed.rooms.find((r) => r.room_id === "r1" && r.rejoined && r.recovered), JSON.stringify(resumed.rooms));
  const lost = await page.evaluate(() => window.seen.findIndex((e) => e.type === "connection_lost"));
  const resumedAt = await page.evaluate(() => window.seen.findIndex((e) => e.type === "resumed"));
  assert.ok(lost < resumedAt);
  await until("m1..m5 on the page", async () => (await pageTexts(page, "r1")).length >= before + 5);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual((await pageTexts(page, "r1")).slice(before), ["bob:m1", "bob:m2", "bob:m3", "bob:m4", "bob:m5"]);
  const delivered = await page.evaluate(() => window.seen.filter((e) => e.type === "RoomMessage" && e.room === "r1").map((e) => e.text));
  assert.deepEqual(delivered, ["m1", "m2", "m3", "m4", "m5"], "each replayed message delivered once, in order");
  // The session goes on after the resume.
  await page.evaluate(() => window.huddleDemo.client.sendText("r1", "back"));
  await until("bob gets back", () => bob.messages("r1").some((m) => m.text === "back"));
});

test("a message over the size limit is refused with message_too_large", async () => {
  const err = await page.evaluate(async () => {
    try {
      await window.huddleDemo.client.sendText("r1", "q".repeat(40000));
      return null;
    } catch (e) {
      return { code: e.code, name: e.codeName };
    }
  });
  assert.deepEqual(err, { code: 5000, name: "message_too_large" });
  const ok = await page.evaluate(() => window.huddleDemo.client.sendText("r1", "after"));
  assert.ok(ok.seq > 0);
  await until("bob gets after", () => bob.messages("r1").some((m) => m.text === "after"));
  assert.ok(!bob.messages("r1").some((m) => m.text.startsWith("qqq")));
});

test("member events: bob leaves and the page's member list follows", async () => {
  bob.send({ op: "leave_room", room_id: "r2" });
  await bob.next("leave r2", (l) => l.op === "leave_room" && l.ok);
  assert.equal(await page.evaluate(() => window.huddleDemo.current), "r2");
  await page.waitForFunction(() => !document.querySelector('#members li[data-user="bob"]'), { timeout: STEP_MS });
  assert.ok(await page.$('#members li[data-user="alice"]'));
  assert.ok(await page.evaluate(() => window.huddleDemo.rooms.get("r1").members.has("bob")));
  // Back in r1 (a click on the room list), bob is listed again.
  await page.$$eval("#rooms li", (lis) => lis.find((li) => li.textContent === "r1").click());
  await page.waitForSelector('#members li[data-user="bob"]', { timeout: STEP_MS });
});

test("the demo page renders (screenshot is not blank)", async () => {
  const shot = Buffer.from(await page.screenshot({ type: "png" }));
  const { ink, colours, total } = inkPixels(shot);
  assert.ok(ink > total / 100 && colours > 20, `page looks blank: ${ink} of ${total} pixels, ${colours} colours`);
  // The same check fails on a blank page.
  const blank = await browser.newPage();
  await blank.setContent("<html><body></body></html>");
  const b = inkPixels(Buffer.from(await blank.screenshot({ type: "png" })));
  assert.ok(!(b.ink > b.total / 100 && b.colours > 20), `a blank page passes the check: ${JSON.stringify(b)}`);
  await blank.close();
  if (process.env.HUDDLE_BROWSER_SCREENSHOT) writeFileSync(process.env.HUDDLE_BROWSER_SCREENSHOT, shot);
});

test("the admin API disconnects the browser user: the page stops, without resuming", async () => {
  await page.evaluate(() => { window.seen = []; });
  const done = await admin(server.admin, "POST", "/v1/users/alice/disconnect");
  assert.equal(done.sessions, 1);
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "closed", { timeout: STEP_MS });
  assert.match(await page.$eval("#status", (e) => e.textContent), /disconnected_by_admin/);
  await new Promise((r) => setTimeout(r, 500));
  const types = await page.evaluate(() => window.seen.map((e) => e.type));
  assert.ok(types.includes("KickedOut") && !types.includes("resumed"), types.join(","));
  await bob.next("members_left alice", (l) => l.event === "members_left" && l.room_id === "r1");
});

async function main() {
  const started = Date.now();
  let failed = 0;
  try {
    await run(["certs"]).catch(() => null);
    server = await startServer();
    token = await run(["token", "--user", "alice"]);
    bob = nativeClient("bob", server.quic);
    await bob.next("ready", (l) => l.type === "ready");
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
    page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 700 });
    page.on("pageerror", (e) => console.error("page error:", e.message));
    for (const c of cases) {
      const t = Date.now();
      try {
        await c.fn();
        console.log(`ok   ${c.name} (${Date.now() - t} ms)`);
      } catch (e) {
        failed++;
        const shown = await page?.$eval("#error", (el) => el.textContent).catch(() => "");
        console.log(`FAIL ${c.name}: ${e.stack ?? e}${shown ? `\n  the page shows: ${shown}` : ""}`);
        break;
      }
    }
  } catch (e) {
    failed++;
    console.log(`FAIL setup: ${e.stack ?? e}`);
  } finally {
    bob?.stop();
    await browser?.close().catch(() => {});
    for (const c of cleanups) c();
    if (!failed) rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  }
  console.log(`${failed ? "FAILED" : "passed"}: ${cases.length} cases in ${Date.now() - started} ms`);
  process.exitCode = failed ? 1 : 0;
}

await main();
