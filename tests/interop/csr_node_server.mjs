// The official Node Socket.IO server with connection state recovery, driven by the recovery
// interop tests (test_recovery_interop.py); csr_trio_server.py is the same app on ours.
//
//   node csr_node_server.mjs <maxDisconnectionDuration ms> <pingInterval ms>
//
// Listens on 127.0.0.1 (path /socket.io/) on a free port, with pingTimeout equal to the ping
// interval. The first line on stdout is the port; then one JSON object per line:
//
//   {"ev": "connection", "sid", "recovered", "rooms", "data"}   rooms: sorted, without its id
//   {"ev": "disconnect", "sid", "reason"}
//   {"ev": "done", "id"}                                        a command was carried out
//
// A new socket joins the rooms of auth.rooms and keeps auth.name in its data. Commands come
// on stdin, one JSON object per line; the server exits when stdin closes:
//
//   {"id", "op": "emit", "to": [rooms], "event", "args"}   io.to(rooms).emit (all if [])
//   {"id", "op": "volatile", "event", "args"}              io.volatile.emit

import http from "node:http";
import readline from "node:readline";
import { Server } from "socket.io";

const [durationArg, pingArg] = process.argv.slice(2);
const ping = Number(pingArg);

function log(entry) {
  process.stdout.write(JSON.stringify(entry) + "\n");
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  pingInterval: ping,
  pingTimeout: ping,
  connectionStateRecovery: { maxDisconnectionDuration: Number(durationArg) },
});

io.on("connection", (socket) => {
  const auth = socket.handshake.auth ?? {};
  if (!socket.recovered) {
    socket.join(auth.rooms ?? []);
    socket.data.name = auth.name ?? null;
  }
  const rooms = [...socket.rooms].filter((r) => r !== socket.id).sort();
  log({ ev: "connection", sid: socket.id, recovered: socket.recovered, rooms, data: socket.data });
  socket.on("disconnect", (reason) => log({ ev: "disconnect", sid: socket.id, reason }));
});

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.op === "emit") {
    io.to(command.to).emit(command.event, ...command.args);
  } else {
    io.volatile.emit(command.event, ...command.args);
  }
  log({ ev: "done", id: command.id });
});
commands.on("close", () => process.exit(0));

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
