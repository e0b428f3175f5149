// The benchmark app on the official Node socket.io server (reference column).
//
//     node bench/servers/node_server.mjs [port] [--redis URL]
//
// With --redis URL it is one node of a cluster (@socket.io/redis-adapter, classic pub/sub,
// with the `redis` client): bcast reaches the sockets of every node.
// Prints the listening port on the first line of stdout, then serves until stdin closes.
// Same events as trio_sio_server.py:
//     echo(data)  -> acks data
//     bin(data)   -> acks data
//     bcast(i)    -> io.emit("tick", i, "hello")
//     burst(n)    -> the same for i = 0 .. n - 1, in a loop in that one handler
import { createServer } from "node:http";
import { Server } from "socket.io";

const args = process.argv.slice(2);
const redisAt = args.indexOf("--redis");
const redisUrl = redisAt >= 0 ? args.splice(redisAt, 2)[1] : null;
const port = Number(args[0] ?? 0);
const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });
if (redisUrl) {
  // Only in a cluster: these packages are not needed otherwise.
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

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
  socket.on("burst", (n) => {
    for (let i = 0; i < n; i++) io.emit("tick", i, "hello");
  });
});

httpServer.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});

process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
