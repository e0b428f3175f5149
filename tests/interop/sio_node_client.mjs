// The official Node client (socket.io-client) against sio_trio_server.py: every scenario of
// the "emitting events" page, in both directions.
//
//     node sio_node_client.mjs <url> '<transports as JSON>'
//
// e.g. '["websocket"]', '["polling"]' or '["polling","websocket"]' (then the client must
// upgrade to WebSocket). Prints one JSON line:
//
//     {"transports": [...], "sids": {"a", "b", "admin"}, "results": {<scenario>: {"ok", ...}}}
//
// where a failed scenario has "ok": false and an "error" message. Binary values are written
// as {"$bytes": "<hex>", "type": "Buffer" | "ArrayBuffer" | ...}. Exits 1 if a scenario
// failed, 2 if the whole run took longer than RUN_LIMIT_MS.

import { Buffer } from "node:buffer";
import { isDeepStrictEqual } from "node:util";
import { io } from "socket.io-client";

const [url, transportsArg] = process.argv.slice(2);
const transports = JSON.parse(transportsArg ?? '["polling","websocket"]');
const upgrade = transports.length > 1;
const WAIT_MS = 3000;
const SCENARIO_LIMIT_MS = 5000;
const RUN_LIMIT_MS = 25000;

const output = { transports, sids: {}, results: {} };
const sockets = [];

const watchdog = setTimeout(() => {
  output.error = `the run took longer than ${RUN_LIMIT_MS} ms`;
  finish(2);
}, RUN_LIMIT_MS);

function finish(code) {
  clearTimeout(watchdog);
  for (const socket of sockets) socket.disconnect();
  process.stdout.write(JSON.stringify(output) + "\n", () => process.exit(code));
}

// -- helpers ------------------------------------------------------------------------------

function describe(value) {
  if (Buffer.isBuffer(value)) return { $bytes: value.toString("hex"), type: "Buffer" };
  if (value instanceof ArrayBuffer) {
    return { $bytes: Buffer.from(value).toString("hex"), type: "ArrayBuffer" };
  }
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bytes: bytes.toString("hex"), type: value.constructor.name };
  }
  if (typeof value === "function") return { $function: true };
  if (Array.isArray(value)) return value.map(describe);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
  }
  return value;
}

function isBytes(value, expected) {
  const binary = Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value);
  if (!binary) return false;
  const bytes = value instanceof ArrayBuffer ? Buffer.from(value)
    : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return bytes.equals(Buffer.from(expected));
}

function check(condition, message, data) {
  if (!condition) {
    const error = new Error(message);
    error.details = data;
    throw error;
  }
}

function equal(actual, expected, what) {
  check(isDeepStrictEqual(actual, expected),
    `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(describe(actual))}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/** Every event a socket receives, recorded from before it connects. */
class Recorder {
  constructor(socket) {
    this.events = [];
    this.waiters = [];
    socket.onAny((event, ...args) => {
      this.events.push({ event, args });
      for (const waiter of [...this.waiters]) waiter();
    });
  }

  all(event) {
    return this.events.filter((e) => e.event === event).map((e) => e.args);
  }

  /** The args of the first ``event`` received (now or later). */
  first(event, ms = WAIT_MS) {
    const found = () => this.events.find((e) => e.event === event);
    return withTimeout(new Promise((resolve) => {
      const done = () => {
        const hit = found();
        if (hit) {
          this.waiters = this.waiters.filter((w) => w !== done);
          resolve(hit.args);
        }
      };
      this.waiters.push(done);
      done();
    }), ms, `event "${event}"`);
  }
}

function connect(socket, what) {
  return withTimeout(new Promise((resolve, reject) => {
    if (socket.connected) resolve();
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`${what}: connect_error ${err.message}`)));
  }), WAIT_MS, `${what} connect`);
}

function connectError(socket) {
  return withTimeout(new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error("connected instead of being refused")));
    socket.once("connect_error", resolve);
  }), WAIT_MS, "connect_error");
}

/** Emit with a plain callback; resolves with all the ack's arguments. */
function emitAckArgs(socket, event, ...args) {
  return withTimeout(new Promise((resolve) => {
    socket.emit(event, ...args, (...ackArgs) => resolve(ackArgs));
  }), WAIT_MS, `ack of "${event}"`);
}

async function scenario(name, fn) {
  const started = Date.now();
  try {
    const data = await withTimeout(Promise.resolve().then(fn), SCENARIO_LIMIT_MS, name);
    output.results[name] = { ok: true, ms: Date.now() - started, data: describe(data ?? null) };
  } catch (err) {
    output.results[name] = {
      ok: false,
      ms: Date.now() - started,
      error: String(err?.message ?? err),
      details: describe(err?.details ?? null),
    };
  }
}

class Hero {
  #hp;

  constructor() {
    this.#hp = 42;
  }

  toJSON() {
    return { hp: this.#hp };
  }
}

// -- the sockets --------------------------------------------------------------------------

const options = { transports, forceNew: true, reconnection: false, timeout: WAIT_MS };
const suffix = Math.random().toString(36).slice(2, 10);
const room = `room-${suffix}`;
const muted = `muted-${suffix}`;

function answerQuestions(socket, name) {
  socket.on("question", (...args) => {
    const callback = args.pop();
    if (args[0] === "single") callback("only");
    else callback("answer", ...args);
  });
  socket.on("ignored", () => {}); // never acknowledged
  socket.on("poll", (_room, callback) => callback(name));
  socket.on("poll-some", (_room, callback) => {
    if (name === "A") callback(name); // B stays silent
  });
}

const a = io(url, { ...options, auth: { token: "t-main", user: "node-a" }, query: { q: "1" } });
sockets.push(a);
const recA = new Recorder(a);
answerQuestions(a, "A");

// -- scenarios ----------------------------------------------------------------------------

await scenario("connect", async () => {
  await connect(a, "A");
  output.sids.a = a.id;
  const who = await a.timeout(WAIT_MS).emitWithAck("whoami");
  equal(who.nsp, "/", "whoami.nsp");
  equal(who.sid, a.id, "whoami.sid");
  equal(who.auth, { token: "t-main", user: "node-a" }, "whoami.auth");
  equal(who.query, { q: "1" }, "whoami.query");
  return { id: a.id, first_transport: a.io.engine.transport.name };
});

await scenario("server_emit_basic", async () => {
  const args = await recA.first("hello");
  equal(args, ["world"], "hello");
  equal(await recA.first("nothing"), [], "an event without args");
  return args;
});

await scenario("server_emit_multi", async () => {
  const args = await recA.first("hello-multi");
  check(args.length === 3, `3 args expected, got ${args.length}`, args);
  equal(args[0], 1, "arg1");
  equal(args[1], "2", "arg2");
  equal(Object.keys(args[2]).sort(), ["3", "5"], "arg3 keys");
  equal(args[2]["3"], "4", "arg3['3']");
  check(isBytes(args[2]["5"], [6]), "arg3['5'] must be binary [6]", args);
  return args;
});

await scenario("server_emit_date", async () => {
  const [epoch, later] = await recA.first("dates");
  equal(epoch, "1970-01-01T00:00:00.000Z", "epoch string");
  equal(new Date(epoch).getTime(), 0, "epoch ms");
  equal(later, "2024-05-06T07:08:09.123Z", "later string (UTC, milliseconds)");
  equal(new Date(later).getTime(), Date.UTC(2024, 4, 6, 7, 8, 9, 123), "later ms");
  return [epoch, later];
});

await scenario("server_emit_hook", async () => {
  const args = await recA.first("hero");
  equal(args, [{ hp: 42 }], "hero");
  return args;
});

await scenario("server_emit_dataclass", async () => {
  const args = await recA.first("point");
  equal(args, [{ x: 1, y: 2, label: "p" }], "point");
  return args;
});

await scenario("transport", async () => {
  const expected = transports.includes("websocket") ? "websocket" : "polling";
  if (upgrade && a.io.engine.transport.name !== "websocket") {
    await withTimeout(new Promise((resolve) => a.io.engine.once("upgrade", resolve)),
      WAIT_MS, "upgrade");
  }
  equal(a.io.engine.transport.name, expected, "client transport");
  const server = await a.timeout(WAIT_MS).emitWithAck("transport");
  equal(server, expected, "server's view of the transport");
  return { client: a.io.engine.transport.name, server };
});

await scenario("client_emit_basic", async () => {
  a.emit("hello", "world");
  equal(await a.timeout(WAIT_MS).emitWithAck("sync"), "sync", "sync");
});

await scenario("client_emit_multi", async () => {
  a.emit("hello-multi", 1, "2", { 3: "4", 5: Buffer.from([6]) });
  const map = new Map([["k", 1]]);
  const set = new Set(["s"]);
  a.emit("types", new Date(0), new Hero(), [...map.entries()], [...set.keys()],
    new Uint8Array([1, 2, 3]), new Uint8Array([4, 5]).buffer, { nested: [Buffer.from([7])] });
  equal(await a.timeout(WAIT_MS).emitWithAck("sync"), "sync", "sync");
});

await scenario("echo", async () => {
  const sent = [1, "2", { 3: "4", 5: Buffer.from([6]) }, [Buffer.from([]), null, true]];
  const ack = await emitAckArgs(a, "echo", ...sent);
  const echoed = await recA.first("echoed");
  for (const [what, got] of [["ack", ack], ["echoed", echoed]]) {
    check(got.length === 4, `${what}: 4 args expected`, got);
    equal(got[0], 1, `${what}[0]`);
    equal(got[1], "2", `${what}[1]`);
    equal(got[2]["3"], "4", `${what}[2]['3']`);
    check(isBytes(got[2]["5"], [6]), `${what}[2]['5'] must be binary [6]`, got);
    check(isBytes(got[3][0], []), `${what}[3][0] must be empty binary`, got);
    equal(got[3].slice(1), [null, true], `${what}[3][1:]`);
  }
  return { ack, echoed };
});

await scenario("ack_client_to_server", async () => {
  const [viaCallback] = await emitAckArgs(a, "update item", "1", { name: "updated" });
  equal(viaCallback, { status: "ok" }, "emit(..., callback)");
  const viaPromise = await a.timeout(WAIT_MS).emitWithAck("update item", "1", { name: "updated" });
  equal(viaPromise, { status: "ok" }, "emitWithAck");
  const [err, res] = await new Promise((resolve) => {
    a.timeout(2000).emit("update item", "1", { name: "updated" }, (e, r) => resolve([e, r]));
  });
  equal(err, null, "timeout(2000).emit err");
  equal(res, { status: "ok" }, "timeout(2000).emit response");
  return { viaCallback, viaPromise, res };
});

await scenario("ack_client_timeout", async () => {
  const started = Date.now();
  const callback = new Promise((resolve) => {
    a.timeout(500).emit("no-answer", 1, (err, res) => resolve([err, res]));
  });
  const promise = a.timeout(500).emitWithAck("no-answer", 2).then(
    (value) => ({ resolved: value }),
    (err) => ({ rejected: String(err?.message ?? err) }),
  );
  const [[err, res], rejection] = await Promise.all([callback, promise]);
  const elapsed = Date.now() - started;
  check(err instanceof Error, "timeout(500).emit: the callback must get an Error", { err, res });
  equal(res, undefined, "no response with the timeout error");
  equal(rejection, { rejected: "operation has timed out" }, "timeout(500).emitWithAck");
  check(elapsed >= 450, `timed out too early (${elapsed} ms)`);
  return { err: err.message, rejection, elapsed };
});

await scenario("ack_server_to_client", async () => {
  const multi = await a.timeout(WAIT_MS).emitWithAck("ask", "q1", Buffer.from([7, 8]));
  check(multi.reply.length === 3, "the ack had 3 args", multi);
  equal(multi.reply.slice(0, 2), ["answer", "q1"], "multi reply");
  check(isBytes(multi.reply[2], [7, 8]), "binary in the ack comes back", multi);
  const single = await a.timeout(WAIT_MS).emitWithAck("ask", "single");
  equal(single, { reply: ["only"] }, "single-arg reply");
  const within = await a.timeout(WAIT_MS).emitWithAck("ask-within", "w1");
  equal(within, { reply: ["answer", "w1"] }, "emit_with_ack(timeout=2) answered");
  return { multi, single, within };
});

await scenario("ack_server_timeout", async () => {
  const result = await a.timeout(WAIT_MS).emitWithAck("ask-timeout");
  equal(result.error, "AckTimeoutError", "server emit_with_ack(timeout=0.3)");
  return result;
});

await scenario("ack_server_callback", async () => {
  const ok = await a.timeout(WAIT_MS).emitWithAck("ask-callback", "cb1");
  equal(ok, { err: null, args: ["answer", "cb1"] }, "timeout(2).emit(callback) answered");
  const late = await a.timeout(WAIT_MS).emitWithAck("ask-callback-timeout");
  equal(late, { err: "AckTimeoutError", args: [] }, "timeout(0.3).emit(callback) unanswered");
  const plain = await a.timeout(WAIT_MS).emitWithAck("ask-callback-plain", "p1");
  equal(plain, { args: ["answer", "p1"] }, "emit(callback) without timeout");
  return { ok, late, plain };
});

await scenario("volatile_server", async () => {
  a.emit("volatile-burst", 5);
  await recA.first("volatile-done");
  const got = recA.all("position");
  const xs = got.map(([x]) => x);
  check(got.length >= 1 && got.length <= 5, `1 to 5 positions expected, got ${got.length}`, got);
  check(got.every(([x, y]) => Number.isInteger(x) && x >= 0 && x < 5 && y === 2 * x),
    "positions are (i, 2i) with 0 <= i < 5", got);
  check(xs.every((x, i) => i === 0 || x > xs[i - 1]), "positions in order", got);
  return { received: xs.length, positions: xs };
});

await scenario("volatile_client", async () => {
  for (let i = 1; i <= 5; i++) {
    a.volatile.emit("vping", i);
    await sleep(30);
  }
  const got = await a.timeout(WAIT_MS).emitWithAck("volatile-count");
  check(Array.isArray(got) && got.length >= 1 && got.length <= 5, "1 to 5 vpings", got);
  check(got.every((x, i) => Number.isInteger(x) && x >= 1 && x <= 5 && (i === 0 || x > got[i - 1])),
    "vpings in order, from 1..5", got);
  return { received: got.length, values: got };
});

await scenario("server_set_typeerror", async () => {
  const result = await a.timeout(WAIT_MS).emitWithAck("emit-set");
  equal(result.error, "TypeError", "emitting a set");
  equal(recA.all("set-event"), [], "nothing was sent");
  return result;
});

// Two clients in a room.
const b = io(url, { ...options, auth: { token: "t-b", user: "node-b" } });
sockets.push(b);
const recB = new Recorder(b);
answerQuestions(b, "B");

await scenario("rooms", async () => {
  await connect(b, "B");
  output.sids.b = b.id;
  equal(await a.timeout(WAIT_MS).emitWithAck("join", room), [room], "A's rooms");
  equal(await b.timeout(WAIT_MS).emitWithAck("join", room), [room], "B's rooms");
  equal(await b.timeout(WAIT_MS).emitWithAck("join", muted), [muted, room].sort(), "B's rooms");

  // socket.to(room): the others in the room, not the sender.
  equal(await a.timeout(WAIT_MS).emitWithAck("to-room", room, "n1", Buffer.from([9])), "sent", "to-room");
  const news = await recB.first("room-news");
  check(news.length === 2 && news[0] === "n1" && isBytes(news[1], [9]), "B got room-news", news);
  equal(recA.all("room-news"), [], "the sender gets no room-news");

  // sio.to(room).except_(muted): the sender too, but not B (muted).
  equal(await a.timeout(WAIT_MS).emitWithAck("to-room-except", room, muted, "n2"), "sent", "ack");
  equal(await recA.first("room-news2"), ["n2"], "A got room-news2");
  equal(await b.timeout(WAIT_MS).emitWithAck("sync"), "sync", "B sync");
  equal(recB.all("room-news2"), [], "B (muted) gets no room-news2");

  // socket.broadcast: everybody else.
  equal(await a.timeout(WAIT_MS).emitWithAck("broadcast", "n3"), "sent", "broadcast");
  equal(await recB.first("all-news"), ["n3"], "B got all-news");
  equal(recA.all("all-news"), [], "the sender gets no all-news");

  equal(await b.timeout(WAIT_MS).emitWithAck("leave", muted), [room], "B's rooms after leave");
  return { room, muted, news };
});

await scenario("broadcast_ack", async () => {
  const all = await a.timeout(WAIT_MS).emitWithAck("poll-room", room, "poll", 2);
  equal(all, { replies: ["A", "B"] }, "every client answered");
  const some = await a.timeout(WAIT_MS).emitWithAck("poll-room", room, "poll-some", 0.5);
  equal(some, { error: "AckTimeoutError", replies: ["A"] }, "B stayed silent");
  const started = Date.now();
  const none = await a.timeout(WAIT_MS).emitWithAck("poll-room", `empty-${suffix}`, "poll", 2);
  equal(none, { replies: [] }, "an empty room");
  check(Date.now() - started < 1000, "an empty room answers at once, not at the timeout");
  return { all, some, none };
});

// Namespaces: /admin multiplexed on A's connection, and a refused one on its own.
await scenario("namespace_admin", async () => {
  const admin = a.io.socket("/admin", { auth: { token: "secret", user: "node-admin" } });
  sockets.push(admin);
  const rec = new Recorder(admin); // the socket connects by itself (autoConnect)
  await connect(admin, "admin");
  output.sids.admin = admin.id;
  equal(await rec.first("admin-hello"), [{ welcome: "node-admin" }], "admin-hello");
  const who = await admin.timeout(WAIT_MS).emitWithAck("whoami");
  equal(who.nsp, "/admin", "whoami.nsp");
  equal(who.auth, { token: "secret", user: "node-admin" }, "whoami.auth");
  const ack = await emitAckArgs(admin, "echo", "x", Buffer.from([1]));
  check(ack.length === 2 && ack[0] === "x" && isBytes(ack[1], [1]), "admin echo", ack);
  equal(a.io.engine.id, admin.io.engine.id, "one Engine.IO connection for both namespaces");
  return { id: admin.id, who };
});

await scenario("namespace_refused", async () => {
  const refused = io(`${url}/admin`, { ...options, auth: { token: "bad" } });
  sockets.push(refused);
  const err = await connectError(refused);
  refused.disconnect();
  equal(err.message, "not authorized", "err.message");
  equal(err.data, { code: 403, reason: "bad token" }, "err.data");
  return { message: err.message, data: err.data };
});

await scenario("disconnect", async () => {
  const closed = new Promise((resolve) => a.once("disconnect", resolve));
  a.disconnect(); // the connection stays open: the admin socket still uses it
  equal(await withTimeout(closed, WAIT_MS, "disconnect"), "io client disconnect", "reason");
  b.disconnect();
  // Over polling the DISCONNECT packets go in later POST requests: ask the server (on the
  // admin socket) until it has seen them, rather than exit before they are sent.
  const admin = a.io.nsps["/admin"];
  const deadline = Date.now() + WAIT_MS;
  let still = [true, true];
  while (still.some(Boolean) && Date.now() < deadline) {
    still = await admin.timeout(WAIT_MS).emitWithAck("connected", [output.sids.a, output.sids.b]);
    if (still.some(Boolean)) await sleep(20);
  }
  equal(still, [false, false], "the server saw A and B disconnect");
  admin.disconnect();
  await sleep(200); // time for the last POST (admin's DISCONNECT) before exiting
});

const failed = Object.entries(output.results).filter(([, r]) => !r.ok);
for (const [name, r] of failed) process.stderr.write(`FAILED ${name}: ${r.error}\n`);
finish(failed.length ? 1 : 0);
