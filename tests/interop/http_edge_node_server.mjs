// The official Node "engine.io" server with the HTTP edge options set, as the reference the
// trio_sio server's answers are compared with (test_http_edge_interop.py).
//
//   node http_edge_node_server.mjs '<options as JSON>'
//
// The options are passed to the Server as they are (cors, cookie, ...), except
// "allowRequest": {"good": "<token>", "reason": "<message>"}, which becomes a function
// accepting a handshake whose query has token=<good>, refusing one with another token with
// <reason>, and one without a token with no reason. Listens on 127.0.0.1, port 0; the first
// line on stdout is the port. Exits when its stdin closes.

import http from "node:http";
import { Server } from "engine.io";

const options = JSON.parse(process.argv[2] ?? "{}");
const rule = options.allowRequest;
if (rule) {
  options.allowRequest = (req, callback) => {
    const token = new URL(req.url, "http://x").searchParams.get("token");
    if (token === null) callback(null, false);
    else if (token === rule.good) callback(null, true);
    else callback(rule.reason, false);
  };
}

const httpServer = http.createServer((req, res) => res.writeHead(404).end());
const server = new Server(options);
server.attach(httpServer);
server.on("connection", (socket) => socket.on("message", (data) => socket.send(data)));

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
