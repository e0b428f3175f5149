// The Node reference: socket.io 4.8.3 instrumented by @socket.io/admin-ui 0.5.1, to compare
// trio_sio's Admin UI protocol with (test_admin_interop.py).
//
//   node tests/admin/node_reference_server.js   # prints "listening on <port>"
//
// Environment: ADMIN_PASSWORD_HASH (bcrypt), UI_ORIGIN (allowed by CORS, optional).
// Sockets of "/" are named and join rooms from their auth ({name, rooms}).

const { createServer } = require("node:http");
const { Server } = require("socket.io");
const { instrument } = require("@socket.io/admin-ui");

const httpServer = createServer();
const io = new Server(httpServer, {
  cors: { origin: process.env.UI_ORIGIN ? [process.env.UI_ORIGIN] : [], credentials: true },
});

io.use((socket, next) => {
  socket.data.name = socket.handshake.auth.name;
  next();
});
io.on("connection", (socket) => {
  socket.join(socket.handshake.auth.rooms || []);
  socket.on("ping", (value) => socket.emit("pong", value + 1));
});

instrument(io, {
  auth: { type: "basic", username: "admin", password: process.env.ADMIN_PASSWORD_HASH },
  mode: "development",
  serverId: "node-reference",
});

httpServer.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`listening on ${httpServer.address().port}`);
});
