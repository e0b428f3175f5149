// The official @socket.io/redis-emitter 5.1 (with a redis 4 client), driven over stdin, for
// the mixed-cluster tests (test_mixed_cluster.py): a process that runs no server and reaches
// every node of a cluster (trio_sio or Node) through Redis.
//
//   node node_emitter.mjs --redis URL [--key KEY]
//
// The packages come from tests/interop (package.json there; `npm ci` in that directory).
// The first line on stdout is "0" once connected (the port-line convention of the other
// peers, with no port); then one {"ev": "result", "id", ...} line per command.
//
// Commands on stdin, {"id": n, "cmd": ..., ...}, each selecting sockets with "nsp" (default
// "/"), "to" and "except" (lists of rooms) and a "volatile" flag; bytes are written
// {"$bytes": "<hex>"} (a Buffer here):
//   emit {event, args}
//   socketsJoin {rooms} / socketsLeave {rooms}
//   disconnectSockets {close}
//   serverSideEmit {event, args}
// The result line comes once Redis has taken the message (a PING sent after it was answered:
// one connection answers in order).
//
// The process exits when its stdin closes.

import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(new URL("../interop/package.json", import.meta.url));
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");

function option(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : fallback;
}

const REDIS = option("redis", "redis://127.0.0.1:6379");
const KEY = option("key", "socket.io");

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === "object") {
    if (typeof value.$bytes === "string") return Buffer.from(value.$bytes, "hex");
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

function log(entry) {
  process.stdout.write(`${JSON.stringify(entry)}\n`);
}

const client = createClient({ url: REDIS });
client.on("error", (err) => process.stderr.write(`redis-error: ${err.message}\n`));
await client.connect();
const root = new Emitter(client, { key: KEY });

function operator(cmd) {
  const emitter = cmd.nsp && cmd.nsp !== "/" ? root.of(cmd.nsp) : root;
  let op = emitter;
  if (cmd.to?.length) op = op.to(cmd.to);
  if (cmd.except?.length) op = op.except(cmd.except);
  if (cmd.volatile) op = op.volatile;
  return op;
}

const commands = {
  emit: (cmd) => operator(cmd).emit(cmd.event, ...revive(cmd.args ?? [])),
  socketsJoin: (cmd) => operator(cmd).socketsJoin(cmd.rooms),
  socketsLeave: (cmd) => operator(cmd).socketsLeave(cmd.rooms),
  disconnectSockets: (cmd) => operator(cmd).disconnectSockets(Boolean(cmd.close)),
  serverSideEmit: (cmd) => {
    const emitter = cmd.nsp && cmd.nsp !== "/" ? root.of(cmd.nsp) : root;
    emitter.serverSideEmit(cmd.event, ...revive(cmd.args ?? []));
  },
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
    handler(cmd);
    await client.ping();
    log({ ev: "result", id: cmd.id });
  } catch (err) {
    log({ ev: "result", id: cmd.id, error: String(err?.message ?? err) });
  }
}

process.stdout.write("0\n");

// one command at a time, in order
let queue = Promise.resolve();
const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  queue = queue.then(() => run(line));
});
input.on("close", () => {
  queue.finally(() => client.quit()).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
