// Echo server on the official Node "engine.io" package, for the trio_sio interop tests.
//
//   node eio_node_server.mjs [port] [pingInterval ms] [pingTimeout ms]
//
// Defaults come from EIO_PORT, EIO_PING_INTERVAL, EIO_PING_TIMEOUT, then 0 / 25000 / 20000.
// Listens on 127.0.0.1; port 0 picks a free port. The first line on stdout is the port.
// The server exits when its stdin closes, so it never outlives the test run.
//
// Every message (text or binary) is sent back, except these text commands:
//   "close-me"            the server closes this session (socket.close()).
//   "close-reason:<sid>"  answered with "close-reason:<reason>" once session <sid> has
//                         closed (the reason the server saw: "transport close", ...).
//   "transport"           answered with "transport:<name>" (the server's view).

import http from "node:http";
import { Server } from "engine.io";

const [portArg, intervalArg, timeoutArg] = process.argv.slice(2);
const port = Number(portArg ?? process.env.EIO_PORT ?? 0);
const pingInterval = Number(intervalArg ?? process.env.EIO_PING_INTERVAL ?? 25000);
const pingTimeout = Number(timeoutArg ?? process.env.EIO_PING_TIMEOUT ?? 20000);

const httpServer = http.createServer((req, res) => {
  res.writeHead(404).end();
});
const server = new Server({
  pingInterval,
  pingTimeout,
  maxHttpBufferSize: 1e6,
  transports: ["polling", "websocket"],
});
server.attach(httpServer);

// sid -> promise of the close reason
const closed = new Map();

server.on("connection", (socket) => {
  closed.set(
    socket.id,
    new Promise((resolve) => socket.once("close", (reason) => resolve(reason))),
  );
  socket.on("message", async (data) => {
    if (data === "close-me") {
      socket.close();
    } else if (data === "transport") {
      socket.send(`transport:${socket.transport.name}`);
    } else if (typeof data === "string" && data.startsWith("close-reason:")) {
      const reason = await (closed.get(data.slice("close-reason:".length)) ?? "unknown");
      socket.send(`close-reason:${reason}`);
    } else {
      socket.send(data);
    }
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});

process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
