// The official Node server with permessage-deflate on, for our client's deflate test
// (test_client_deflate_node.py).
//
//     node deflate_node_server.mjs
//
// Listens on 127.0.0.1, a free port, printed as the first line. Answers:
//   extensions  cb({transport, extensions}): the WebSocket extensions ws agreed ("" if none)
//   echo(...a)  cb(...a)
// Exits when its stdin closes.

import http from "node:http";
import { Server } from "socket.io";

const httpServer = http.createServer();
const io = new Server(httpServer, { perMessageDeflate: { threshold: 0 } });
io.on("connection", (socket) => {
  socket.on("extensions", (cb) => {
    const transport = socket.conn.transport;
    cb({ transport: transport.name, extensions: transport.socket?.extensions ?? null });
  });
  socket.on("echo", (...args) => {
    const cb = args.pop();
    cb(...args);
  });
});
httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
