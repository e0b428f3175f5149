// The official Node client (socket.io-client) for the recovery interop tests
// (test_recovery_interop.py): it connects, reports, and does what it is told.
//
//   node csr_node_client.mjs <url> '<transports as JSON>'
//
// It connects with auth {name: "node", rooms: ["r1"]} and reconnects quickly (100 ms, no
// jitter). One JSON object per line on stdout:
//
//   {"ev": "connect", "id", "recovered"}
//   {"ev": "event", "event", "args"}      every event, with its arguments as the application
//                                          gets them (the offset, if any, is the last one)
//   {"ev": "disconnect", "reason"}
//
// Commands on stdin, one per line: "disconnect" (socket.disconnect()), "connect"
// (socket.connect()). It exits when stdin closes.

import readline from "node:readline";
import { io } from "socket.io-client";

const [url, transportsArg] = process.argv.slice(2);

function log(entry) {
  process.stdout.write(JSON.stringify(entry) + "\n");
}

const socket = io(url, {
  transports: JSON.parse(transportsArg ?? '["websocket"]'),
  auth: { name: "node", rooms: ["r1"] },
  reconnectionDelay: 100,
  reconnectionDelayMax: 100,
  randomizationFactor: 0,
});
socket.on("connect", () => log({ ev: "connect", id: socket.id, recovered: socket.recovered }));
socket.on("disconnect", (reason) => log({ ev: "disconnect", reason }));
socket.onAny((event, ...args) => log({ ev: "event", event, args }));

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
  if (line.trim() === "disconnect") socket.disconnect();
  if (line.trim() === "connect") socket.connect();
});
commands.on("close", () => {
  socket.disconnect();
  process.exit(0);
});
