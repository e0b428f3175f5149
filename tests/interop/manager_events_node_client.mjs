// socket.io-client's manager events, as the reference for our client's
// (test_client_manager_events.py).
//
//     node manager_events_node_client.mjs <url> '<transports as JSON>'
//
// Connects with a fixed reconnection delay and writes one JSON line per event it sees:
//   {"ev": "<manager event>", "arg": <reason / attempt / error message, if any>}
//   {"ev": "socket:<connect|disconnect|connect_error>", "arg": ...}
// ("packet" is written as {"ev": "packet", "type": <packet type>}). Exits when stdin closes.

import { io } from "socket.io-client";

const [url, transportsArg] = process.argv.slice(2);
const transports = JSON.parse(transportsArg ?? '["websocket"]');
const socket = io(url, {
  transports,
  reconnectionDelay: 200,
  reconnectionDelayMax: 200,
  randomizationFactor: 0,
});
const write = (entry) => process.stdout.write(`${JSON.stringify(entry)}\n`);
const manager = socket.io;
for (const name of ["open", "ping", "reconnect_attempt", "reconnect", "reconnect_failed"]) {
  manager.on(name, (arg) => write({ ev: name, arg: arg ?? null }));
}
manager.on("close", (reason) => write({ ev: "close", arg: reason }));
manager.on("error", (err) => write({ ev: "error", arg: String(err?.message ?? err) }));
manager.on("reconnect_error", (err) =>
  write({ ev: "reconnect_error", arg: String(err?.message ?? err) }),
);
manager.on("packet", (packet) => write({ ev: "packet", type: packet.type }));
socket.on("connect", () => write({ ev: "socket:connect", arg: null }));
socket.on("disconnect", (reason) => write({ ev: "socket:disconnect", arg: reason }));
socket.on("connect_error", (err) => write({ ev: "socket:connect_error", arg: err.message }));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
