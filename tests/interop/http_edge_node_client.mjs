// The official Node client (socket.io-client) against a trio_sio server, for the HTTP edge
// tests of test_http_edge_interop.py.
//
//   node http_edge_node_client.mjs <url> <mode>
//
// Modes:
//   refused-polling    connect over polling with token=bad; print the connect_error:
//                      {"message", "description" (the HTTP status), "body" (the JSON sent)}
//   refused-websocket  the same over WebSocket only: {"message", "detail"}
//   cookie             connect over polling with withCredentials (the client keeps cookies)
//                      and an X-Forwarded-For header; print {"engine_id", "whoami": <the
//                      ack of "whoami">}
// Prints one JSON line; exits 1 on an unexpected event, 2 after 15 s.

import { io } from "socket.io-client";

const [url, mode] = process.argv.slice(2);
const watchdog = setTimeout(() => finish({ error: "timed out" }, 2), 15000);
let socket;

function finish(output, code = 0) {
  clearTimeout(watchdog);
  socket?.disconnect();
  process.stdout.write(JSON.stringify(output) + "\n", () => process.exit(code));
}

if (mode === "refused-polling" || mode === "refused-websocket") {
  const transport = mode.slice("refused-".length);
  socket = io(url, { transports: [transport], query: { token: "bad" }, reconnection: false });
  socket.on("connect", () => finish({ error: "connected" }, 1));
  socket.on("connect_error", (err) => {
    if (transport === "polling") {
      finish({
        message: err.message,
        description: err.description,
        body: JSON.parse(err.context.responseText),
      });
    } else {
      const detail = err.description?.message ?? String(err.description);
      finish({ message: err.message, detail });
    }
  });
} else if (mode === "cookie") {
  socket = io(url, {
    transports: ["polling"],
    withCredentials: true,
    extraHeaders: { "x-forwarded-for": "203.0.113.7" },
    reconnection: false,
  });
  socket.on("connect_error", (err) => finish({ error: String(err) }, 1));
  socket.on("connect", async () => {
    const whoami = await socket.timeout(5000).emitWithAck("whoami");
    // one more round trip, so that several requests carry the cookie
    await socket.timeout(5000).emitWithAck("whoami");
    finish({ engine_id: socket.io.engine.id, whoami });
  });
} else {
  finish({ error: `unknown mode ${mode}` }, 1);
}
