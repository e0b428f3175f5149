// The official Node Socket.IO server ("socket.io") with a scenario app, for the tests of
// our client against it (test_client_vs_node_server.py).
//
//   node sio_node_server.mjs [port] [pingInterval ms] [pingTimeout ms]
//
// Listens on 127.0.0.1 (path /socket.io/); port 0 picks a free port. The first line on
// stdout is the port; then one JSON object per line for what the server saw, so that the
// tests can check the server's side of each exchange. Binary values are written as
// {"$bytes": "<hex>"} when they are a Buffer (what socket.io gives for a binary
// attachment), and as {"$bytes": "<hex>", "type": "<class>"} otherwise:
//
//   {"ev": "connection", "nsp", "sid", "eio", "auth", "transport"}
//   {"ev": "event", "nsp", "sid", "event", "args", "ack"}   every event received (onAny);
//                                                          "ack": whether it wants an ack
//   {"ev": "date", "sid", "value", "type", "ms"}            what `new Date(value)` made of it
//   {"ev": "answer", "sid", ...}                            a reply the server asked for
//   {"ev": "refused", "nsp", "auth"}                        a middleware refusal
//   {"ev": "upgrade", "sid", "transport"}
//   {"ev": "disconnect", "nsp", "sid", "reason"}
//
// The server exits when its stdin closes, so it never outlives the test run.
//
// On connection to "/" it emits the examples of the "emitting events" page:
//   hello("world")
//   hello-multi(1, "2", {3: "4", 5: Buffer.from([6])})
//   date(Date 2024-05-06T07:08:09.123Z, Date 0)
//   here's a hero(new Hero())                  (a class with toJSON → {hp: 42})
//   nested({list: [Buffer [1, 2], {deep: Buffer []}], text: "x"})
// and answers these events (cb is the client's ack callback, when it asked for one):
//   sync(token?)                  cb("sync"): a round trip
//   transport                     cb(the server's view of the transport)
//   whoami                        cb({nsp, sid, eio, auth})
//   echo(...args)                 emits echoed(...args), then cb(...args)
//   update item(id, diff)         cb({status: "ok"}) (the page's example)
//   no-answer                     never acknowledged
//   date(value)                   logs what `new Date(value)` gives; cb(its epoch ms)
//   ask({id, event, args, timeout, style})
//                                 asks the client `event(...args)` and reports its reply
//                                 with answer({id, style, ...}) (and in the log):
//                                   style "promise":  socket.timeout(t).emitWithAck(...)
//                                                     → {value} or {error}
//                                   style "callback": socket.timeout(t).emit(..., cb)
//                                                     → {err: null | message, args}
//                                   style "plain":    socket.emit(..., cb) → {args}
//                                 plus "ms", the time the reply took
//   volatile-burst(n)             n volatile position(i, 2 * i) 20 ms apart, then a plain
//                                 volatile-done(n)
//   join(room)                    cb(the socket's rooms, sorted, without its own id)
//   to-room(room, ...args)        socket.to(room).emit("room-news", ...args); cb("sent")
//   ping(count)                   logged like every event (the page's restart example)
//   kick-me                       socket.disconnect() (any namespace): "io server disconnect"
//
// "/admin" accepts only auth.token === "secret"; its middleware refuses anything else with
// an Error("not authorized") whose data is {code: 403, reason: "bad token"}. It emits
// admin-hello({welcome: auth.user}) on connection and answers whoami, echo, sync and kick-me.

import { Buffer } from "node:buffer";
import http from "node:http";
import { Server } from "socket.io";

const [portArg, intervalArg, timeoutArg] = process.argv.slice(2);
const port = Number(portArg ?? 0);
const pingInterval = Number(intervalArg ?? 25000);
const pingTimeout = Number(timeoutArg ?? 20000);

function describe(value) {
  if (Buffer.isBuffer(value)) return { $bytes: value.toString("hex") };
  if (value instanceof ArrayBuffer) {
    return { $bytes: Buffer.from(value).toString("hex"), type: "ArrayBuffer" };
  }
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bytes: bytes.toString("hex"), type: value.constructor.name };
  }
  if (value === undefined) return { $undefined: true };
  if (typeof value === "function") return { $function: true };
  if (Array.isArray(value)) return value.map(describe);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
  }
  return value;
}

function log(entry) {
  process.stdout.write(`${JSON.stringify(describe(entry))}\n`);
}

/** Split a handler's arguments into (args, ack callback or null). */
function split(args) {
  if (args.length && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, null];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Hero {
  #hp;

  constructor() {
    this.#hp = 42;
  }

  toJSON() {
    return { hp: this.#hp };
  }
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404).end();
});
const io = new Server(httpServer, {
  pingInterval,
  pingTimeout,
  transports: ["polling", "websocket"],
  serveClient: false,
});

function common(socket) {
  const nsp = socket.nsp.name;
  log({
    ev: "connection",
    nsp,
    sid: socket.id,
    eio: socket.conn.id,
    auth: socket.handshake.auth,
    transport: socket.conn.transport.name,
  });
  socket.onAny((event, ...raw) => {
    const [args, cb] = split(raw);
    log({ ev: "event", nsp, sid: socket.id, event, args, ack: cb !== null });
  });
  socket.on("disconnect", (reason) => log({ ev: "disconnect", nsp, sid: socket.id, reason }));
  socket.on("sync", (...raw) => split(raw)[1]?.("sync"));
  socket.on("whoami", (cb) => {
    cb?.({ nsp, sid: socket.id, eio: socket.conn.id, auth: socket.handshake.auth });
  });
  socket.on("echo", (...raw) => {
    const [args, cb] = split(raw);
    socket.emit("echoed", ...args);
    cb?.(...args);
  });
  socket.on("kick-me", () => socket.disconnect());
}

async function ask(socket, request) {
  const { id, event, args = [], timeout = null, style = "promise" } = request ?? {};
  // socket.timeout() sets a flag on the socket itself, for its next emit only.
  const target = () => (timeout === null ? socket : socket.timeout(timeout));
  const started = Date.now();
  let answer;
  if (style === "promise") {
    try {
      const value = await target().emitWithAck(event, ...args);
      answer = { value: value === undefined ? { $undefined: true } : value };
    } catch (err) {
      answer = { error: String(err?.message ?? err) };
    }
  } else if (style === "callback") {
    answer = await new Promise((resolve) => {
      target().emit(event, ...args, (err, ...reply) => {
        resolve({ err: err ? String(err.message ?? err) : null, args: reply });
      });
    });
  } else {
    answer = await new Promise((resolve) => {
      socket.emit(event, ...args, (...reply) => resolve({ args: reply }));
    });
  }
  const report = { id, style, ...answer, ms: Date.now() - started };
  log({ ev: "answer", sid: socket.id, ...report });
  socket.emit("answer", report);
}

io.on("connection", (socket) => {
  common(socket);
  socket.conn.on("upgrade", (transport) => {
    log({ ev: "upgrade", sid: socket.id, transport: transport.name });
  });

  socket.on("transport", (cb) => cb?.(socket.conn.transport.name));
  socket.on("update item", (arg1, arg2, cb) => cb?.({ status: "ok" }));
  socket.on("date", (value, cb) => {
    const ms = new Date(value).getTime();
    log({ ev: "date", sid: socket.id, value, type: typeof value, ms });
    cb?.(ms);
  });
  socket.on("ask", (request) => {
    ask(socket, request);
  });
  socket.on("volatile-burst", async (n) => {
    for (let i = 0; i < n; i++) {
      socket.volatile.emit("position", i, 2 * i);
      await sleep(20);
    }
    socket.emit("volatile-done", n);
  });
  socket.on("join", (room, cb) => {
    socket.join(room);
    cb?.([...socket.rooms].filter((r) => r !== socket.id).sort());
  });
  socket.on("to-room", (room, ...raw) => {
    const [args, cb] = split(raw);
    socket.to(room).emit("room-news", ...args);
    cb?.("sent");
  });

  // The examples of the page, server → client.
  socket.emit("hello", "world");
  socket.emit("hello-multi", 1, "2", { 3: "4", 5: Buffer.from([6]) });
  socket.emit("date", new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 123)), new Date(0));
  socket.emit("here's a hero", new Hero());
  socket.emit("nested", { list: [Buffer.from([1, 2]), { deep: Buffer.alloc(0) }], text: "x" });
});

const admin = io.of("/admin");
admin.use((socket, next) => {
  const auth = socket.handshake.auth ?? {};
  if (auth.token === "secret") {
    next();
    return;
  }
  log({ ev: "refused", nsp: "/admin", auth });
  const err = new Error("not authorized");
  err.data = { code: 403, reason: "bad token" };
  next(err);
});
admin.on("connection", (socket) => {
  common(socket);
  socket.emit("admin-hello", { welcome: socket.handshake.auth.user ?? null });
});

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});

process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
