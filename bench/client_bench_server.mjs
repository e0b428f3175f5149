// The server every client of bench/client_bench.py talks to: the official Node socket.io
// 4.8 server (fast enough not to be the limit for one client).
//
//     node bench/client_bench_server.mjs
//
// Prints its port on the first line; serves until stdin closes. Events:
//   echo(data, ack)   -> ack(data)
//   burst(n, ack)     -> n times emit("tick", i, "hello"), then ack("done")
import { createServer } from "node:http";
import { Server } from "socket.io";

const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });
io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => ack?.(data));
  socket.on("burst", (n, ack) => {
    for (let i = 0; i < n; i++) socket.emit("tick", i, "hello");
    ack?.("done");
  });
});
httpServer.listen({ port: 0, host: "127.0.0.1" }, () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
