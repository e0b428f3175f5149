// The benchmark app on the official Node socket.io server (reference column).
//
//     node bench/servers/node_server.mjs [port]
//
// Prints the listening port on the first line of stdout, then serves until stdin closes.
// Same events as trio_sio_server.py:
//     echo(data)  -> acks data
//     bin(data)   -> acks data
//     bcast(i)    -> io.emit("tick", i, "hello")
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 0);
const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });

io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
  socket.on("bin", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
  socket.on("bcast", (i) => {
    io.emit("tick", i, "hello");
  });
});

httpServer.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});

process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
