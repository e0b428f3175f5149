// The official Node client (socket.io-client) against a trio_sio server with compression on.
//
//     node compression_node_client.mjs <url> <mode>
//
// mode: "websocket" (ws, which offers permessage-deflate), "upgrade" (polling, then the
// upgrade to WebSocket), "xhr" (the default Node polling, xmlhttprequest-ssl) or "fetch"
// (polling with Node's fetch, which asks for gzip). Large
// payloads go both ways: an "echo" acknowledged with [text, binary], then the server pushes
// "pushed" (may be compressed) and, once that came, "plain" (socket.compress(false)).
// Prints one JSON line:
//
//     {"mode", "transport", "extensions", "results": {<name>: {"ok", "error"?}}}
//
// Exits 1 if a check failed, 2 if the run took longer than RUN_LIMIT_MS.

import { Buffer } from "node:buffer";
import { Fetch } from "engine.io-client";
import { io } from "socket.io-client";

const [url, mode] = process.argv.slice(2);
const RUN_LIMIT_MS = 20000;
const transports = {
  websocket: ["websocket"],
  upgrade: ["polling", "websocket"],
  xhr: ["polling"],
  fetch: [Fetch],
}[mode];
const output = { mode, results: {} };

// Compressible, but not trivially: the same on the Python side (compression_payload()).
const TEXT = Array.from({ length: 20000 }, (_, i) => i.toString(36)).join(",");
const BINARY = Buffer.from(TEXT.slice(0, 50000), "latin1");

const watchdog = setTimeout(() => finish(2, `the run took longer than ${RUN_LIMIT_MS} ms`),
  RUN_LIMIT_MS);
let socket;

function finish(code, error) {
  clearTimeout(watchdog);
  if (error) output.error = error;
  socket?.disconnect();
  process.stdout.write(JSON.stringify(output) + "\n", () => process.exit(code));
}

function record(name, ok, error) {
  output.results[name] = ok ? { ok } : { ok, error: String(error) };
}

function sameBytes(value, expected) {
  return Buffer.isBuffer(value) && value.equals(expected);
}

socket = io(url, { transports, upgrade: mode === "upgrade", reconnection: false });
const pushed = new Promise((resolve) => socket.on("pushed", (...args) => resolve(args)));
const plain = new Promise((resolve) => socket.on("plain", (...args) => resolve(args)));

socket.on("connect_error", (err) => finish(1, `connect_error: ${err.message}`));
socket.on("connect", async () => {
  if (mode === "upgrade" && socket.io.engine.transport.name !== "websocket") {
    await new Promise((resolve) => socket.io.engine.once("upgrade", resolve));
  }
  const transport = socket.io.engine.transport;
  output.transport = transport.name;
  // what ws agreed (the parameters of the server's answer), when on WebSocket
  output.extensions = transport.ws?._extensions?.["permessage-deflate"]?.params ?? null;
  try {
    const [text, binary] = await socket.timeout(10000).emitWithAck("echo", TEXT, BINARY);
    record("echo", text === TEXT && sameBytes(binary, BINARY), "echo differs");
    socket.emit("push");
    const [pushText, pushBinary] = await pushed;
    record("pushed", pushText === TEXT && sameBytes(pushBinary, BINARY), "pushed differs");
    socket.emit("push-plain"); // after: a polling response of its own
    const [plainText, plainBinary] = await plain;
    record("plain", plainText === TEXT && sameBytes(plainBinary, BINARY), "plain differs");
  } catch (err) {
    finish(1, String(err));
    return;
  }
  const failed = Object.values(output.results).some((r) => !r.ok);
  finish(failed ? 1 : 0);
});
