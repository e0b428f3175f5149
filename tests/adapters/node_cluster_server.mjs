// A Node socket.io 4.8 server with the official @socket.io/redis-adapter 8.3 (classic
// pub/sub, redis 4 clients) or, with --adapter streams, @socket.io/redis-streams-adapter 0.3
// (stream and channel prefix: KEY), for the mixed-cluster tests (test_mixed_cluster.py,
// test_mixed_recovery.py): one node of a cluster whose other nodes are trio_sio servers on
// the same Redis.
//
//   node node_cluster_server.mjs --redis URL [--key KEY] [--name NAME]
//                                [--requests-timeout MS] [--specific-response-channel]
//                                [--adapter classic|streams|sharded] [--recovery] [--port PORT]
//                                [--mode static|dynamic|dynamic-private]
//
// --adapter sharded is createShardedAdapter (REDIS: a node of a Redis Cluster; --mode its
// subscriptionMode). --recovery turns connection state recovery on; --port listens there.
//
// The packages come from tests/interop (package.json there; `npm ci` in that directory).
// Listens on 127.0.0.1, port 0. The first line on stdout is the port; after it, one JSON
// object per line. Bytes are written {"$bytes": "<hex>"} both ways (a Buffer here); in
// commands, {"$date": ms}, {"$nan": true}, {"$inf": true} and {"$undefined": true} stand for
// the JS values JSON cannot write.
//
// The server exits when its stdin closes, so it never outlives the test run.
//
// What the server does:
//   namespaces "/" and "/chat"; on connection: socket.data.name = auth.name; joins auth.rooms
//   server-side handlers (io.on(...), what serverSideEmit from other nodes reaches):
//     whoami(cb)         cb(NAME)
//     hello(x, cb)       cb(`${NAME}:${x}`)
//     silent(cb)         never answers
//   and every server-side event is logged.
//
// It also runs official socket.io-client clients, in this process ("client" command);
// each logs what it receives and answers every event that asks for an ack with its `ack`
// value (when it has one).
//
// Output lines:
//   {"ev": "connection", "nsp", "sid", "auth"}  a socket connected to this server
//   {"ev": "disconnect", "nsp", "sid", "reason"} ... and left
//   {"ev": "server-side", "event", "args"}    a server-side event from another node
//   {"ev": "client-connect", "client", "sid", "recovered"}
//   {"ev": "client-event", "client", "event", "args", "ack"}
//   {"ev": "client-disconnect", "client", "reason"}
//   {"ev": "result", "id", ...}               the answer to a command ("error": why it failed)
//
// Redis client errors (Redis going away) are written to stderr.
//
// Commands on stdin, {"id": n, "cmd": ..., ...}; the broadcast ones select sockets with
// "nsp" (default "/"), "to" and "except" (lists of rooms) and "local"/"volatile" flags:
//   client {name, auth, ack?, nsp?, url?, reconnect?}
//                                             -> {sid} once connected (to url: another server,
//                                                or a proxy; reconnect: every 100 ms)
//   closeClient {name}                        -> {}
//   emit {event, args}                        -> {}
//   emitWithAck {event, args, timeout}        -> {replies} | {timedOut, replies}
//   fetchSockets {}                           -> {sockets: [{id, rooms, data, handshake, local}]}
//   socketsJoin {rooms} / socketsLeave {rooms} -> {}
//   disconnectSockets {close}                 -> {}
//   remote {sid, op: emit|emitWithAck|join|leave|disconnect, event?, args?, rooms?, close?,
//           timeout?}                         -> {remote} (acts on the socket fetchSockets
//                                                gives: remote, whether a RemoteSocket);
//                                                emitWithAck: {reply} | {timedOut}
//   serverSideEmit {event, args}              -> {}
//   serverSideEmitWithAck {event, args}       -> {replies} | {timedOut, replies}
//   serverCount {}                            -> {count}
//   allRooms {}                               -> {rooms} (sorted, the adapter's allRooms())
//   rooms {sid}                               -> {rooms} (a local socket's, sorted; null if none)
//   info {}                                   -> {uid} (the adapter's node id)

import { Buffer } from "node:buffer";
import http from "node:http";
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(new URL("../interop/package.json", import.meta.url));
const { Server } = require("socket.io");
const { io: connectClient } = require("socket.io-client");
const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
const { createAdapter: createStreamsAdapter } = require("@socket.io/redis-streams-adapter");
const { createClient, createCluster } = require("redis");

function option(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : fallback;
}

const REDIS = option("redis", "redis://127.0.0.1:6379");
const KEY = option("key", "socket.io");
const NAME = option("name", "node");
const REQUESTS_TIMEOUT = Number(option("requests-timeout", "5000"));
const SPECIFIC = process.argv.includes("--specific-response-channel");
const ADAPTER = option("adapter", "classic");
const RECOVERY = process.argv.includes("--recovery");
const PORT = Number(option("port", "0"));
const MODE = option("mode", "dynamic");

function describe(value) {
  if (Buffer.isBuffer(value)) return { $bytes: value.toString("hex") };
  // anything else binary keeps its class name: the tests expect a Buffer
  if (value instanceof ArrayBuffer) {
    return { $bytes: Buffer.from(value).toString("hex"), type: "ArrayBuffer" };
  }
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bytes: bytes.toString("hex"), type: value.constructor.name };
  }
  if (value === undefined) return { $undefined: true };
  if (value instanceof Set) return [...value].map(describe);
  if (Array.isArray(value)) return value.map(describe);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
  }
  return value;
}

// the reverse of describe, plus values JSON cannot write: {"$date": ms} is a Date,
// {"$nan": true} NaN, {"$inf": true} Infinity, {"$undefined": true} undefined
function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === "object") {
    if (typeof value.$bytes === "string") return Buffer.from(value.$bytes, "hex");
    if (typeof value.$date === "number") return new Date(value.$date);
    if (value.$nan === true) return NaN;
    if (value.$inf === true) return Infinity;
    if (value.$undefined === true) return undefined;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

function log(entry) {
  process.stdout.write(`${JSON.stringify(describe(entry))}\n`);
}

function split(args) {
  if (args.length && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, null];
}

// --adapter sharded: REDIS is one node of a Redis Cluster
const pubClient =
  ADAPTER === "sharded" ? createCluster({ rootNodes: [{ url: REDIS }] }) : createClient({ url: REDIS });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  // without a listener, an error (Redis going away) would end the process
  client.on("error", (err) => process.stderr.write(`redis-error: ${err.message}\n`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = http.createServer((req, res) => res.writeHead(404).end());
function makeAdapter() {
  if (ADAPTER === "streams") {
    return createStreamsAdapter(pubClient, { streamName: KEY, channelPrefix: KEY });
  }
  if (ADAPTER === "sharded") {
    return createShardedAdapter(pubClient, subClient, { channelPrefix: KEY, subscriptionMode: MODE });
  }
  return createAdapter(pubClient, subClient, {
    key: KEY,
    requestsTimeout: REQUESTS_TIMEOUT,
    publishOnSpecificResponseChannel: SPECIFIC,
  });
}
const adapter = makeAdapter();
const io = new Server(httpServer, {
  serveClient: false,
  adapter,
  ...(RECOVERY ? { connectionStateRecovery: { maxDisconnectionDuration: 120000 } } : {}),
});

for (const nsp of ["/", "/chat"]) {
  io.of(nsp).on("connection", (socket) => {
    const auth = socket.handshake.auth ?? {};
    socket.data.name = auth.name ?? null;
    for (const room of auth.rooms ?? []) socket.join(room);
    log({ ev: "connection", nsp, sid: socket.id, auth });
    socket.on("disconnect", (reason) => log({ ev: "disconnect", nsp, sid: socket.id, reason }));
  });
}

function serverSide(event, answer) {
  io.on(event, (...raw) => {
    const [args, cb] = split(raw);
    log({ ev: "server-side", event, args });
    if (cb && answer) cb(answer(...args));
  });
}
serverSide("whoami", () => NAME);
serverSide("hello", (x) => `${NAME}:${x}`);
serverSide("silent", null);

function operator(cmd) {
  let op = io.of(cmd.nsp ?? "/");
  if (cmd.to?.length) op = op.to(cmd.to);
  if (cmd.except?.length) op = op.except(cmd.except);
  if (cmd.local) op = op.local;
  if (cmd.volatile) op = op.volatile;
  return op;
}

const clients = new Map();

function startClient({ name, auth, ack, nsp, url, reconnect }) {
  const port = httpServer.address().port;
  const base = url ?? `http://127.0.0.1:${port}`;
  const socket = connectClient(`${base}${nsp ?? "/"}`, {
    transports: ["websocket"],
    forceNew: true,
    auth: auth ?? {},
    ...(reconnect
      ? { reconnectionDelay: 100, reconnectionDelayMax: 100, randomizationFactor: 0 }
      : { reconnection: false }),
  });
  clients.set(name, socket);
  socket.on("connect", () =>
    log({ ev: "client-connect", client: name, sid: socket.id, recovered: socket.recovered }),
  );
  socket.onAny((event, ...raw) => {
    const [args, cb] = split(raw);
    log({ ev: "client-event", client: name, event, args, ack: cb !== null });
    if (cb && ack !== undefined && ack !== null) cb(revive(ack));
  });
  socket.on("disconnect", (reason) => log({ ev: "client-disconnect", client: name, reason }));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ sid: socket.id }));
    socket.once("connect_error", (err) => reject(err));
  });
}

function sortedRooms(rooms) {
  return [...rooms].map(String).sort();
}

function describeSocket(socket) {
  const local = socket.constructor.name === "Socket";
  const { sessionStore, ...handshake } = socket.handshake;
  return { id: socket.id, rooms: sortedRooms(socket.rooms), data: socket.data, handshake, local };
}

async function failed(promise) {
  try {
    return { replies: await promise };
  } catch (err) {
    return { timedOut: err.message, replies: err.responses ?? null };
  }
}

const commands = {
  client: (cmd) => startClient(cmd),
  closeClient: ({ name }) => {
    clients.get(name)?.disconnect();
    clients.delete(name);
    return {};
  },
  emit: (cmd) => {
    operator(cmd).emit(cmd.event, ...revive(cmd.args ?? []));
    return {};
  },
  emitWithAck: (cmd) =>
    failed(operator(cmd).timeout(cmd.timeout ?? 2000).emitWithAck(cmd.event, ...revive(cmd.args ?? []))),
  fetchSockets: async (cmd) => ({ sockets: (await operator(cmd).fetchSockets()).map(describeSocket) }),
  socketsJoin: (cmd) => {
    operator(cmd).socketsJoin(cmd.rooms);
    return {};
  },
  socketsLeave: (cmd) => {
    operator(cmd).socketsLeave(cmd.rooms);
    return {};
  },
  disconnectSockets: (cmd) => {
    operator(cmd).disconnectSockets(Boolean(cmd.close));
    return {};
  },
  remote: async (cmd) => {
    const sockets = await io.of(cmd.nsp ?? "/").fetchSockets();
    const socket = sockets.find((s) => s.id === cmd.sid);
    if (!socket) throw new Error(`no socket ${cmd.sid}`);
    if (cmd.op === "emit") socket.emit(cmd.event, ...revive(cmd.args ?? []));
    else if (cmd.op === "emitWithAck") {
      const args = revive(cmd.args ?? []);
      try {
        return { reply: await socket.timeout(cmd.timeout ?? 2000).emitWithAck(cmd.event, ...args) };
      } catch (err) {
        return { timedOut: err.message };
      }
    }
    else if (cmd.op === "join") socket.join(cmd.rooms);
    else if (cmd.op === "leave") for (const room of cmd.rooms) socket.leave(room);
    else if (cmd.op === "disconnect") socket.disconnect(Boolean(cmd.close));
    else throw new Error(`unknown op ${cmd.op}`);
    return { remote: socket.constructor.name === "RemoteSocket" };
  },
  serverSideEmit: (cmd) => {
    io.of(cmd.nsp ?? "/").serverSideEmit(cmd.event, ...revive(cmd.args ?? []));
    return {};
  },
  serverSideEmitWithAck: (cmd) =>
    failed(io.of(cmd.nsp ?? "/").serverSideEmitWithAck(cmd.event, ...revive(cmd.args ?? []))),
  serverCount: async (cmd) => ({ count: await io.of(cmd.nsp ?? "/").adapter.serverCount() }),
  allRooms: async (cmd) => ({ rooms: sortedRooms(await io.of(cmd.nsp ?? "/").adapter.allRooms()) }),
  rooms: (cmd) => {
    const socket = io.of(cmd.nsp ?? "/").sockets.get(cmd.sid);
    return { rooms: socket ? sortedRooms(socket.rooms) : null };
  },
  info: (cmd) => ({ uid: io.of(cmd.nsp ?? "/").adapter.uid }),
};

async function run(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    return;
  }
  try {
    const handler = commands[cmd.cmd];
    if (!handler) throw new Error(`unknown command ${cmd.cmd}`);
    log({ ev: "result", id: cmd.id, ...(await handler(cmd)) });
  } catch (err) {
    log({ ev: "result", id: cmd.id, error: String(err?.message ?? err) });
  }
}

httpServer.listen(PORT, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => void run(line));
input.on("close", () => {
  for (const socket of clients.values()) socket.disconnect();
  io.close();
  Promise.allSettled([pubClient.quit(), subClient.quit()]).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
