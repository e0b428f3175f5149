// The official Node peers with the official msgpack parser (socket.io-msgpack-parser), for
// test_msgpack_interop.py. Three modes:
//
//   node msgpack_peer.mjs codec            < {"decode": [hex, ...], "dates": [ms, ...]}
//       The parser alone, no network. Prints one JSON object:
//         "encoded":   {name: hex}        packets as the JS server and client build them,
//                                         encoded by the official Encoder
//         "decoded":   [packet | {error}] each frame of "decode", through the official
//                                         Decoder (with its checks)
//         "reencoded": [hex | null]       each decoded packet encoded again by the Encoder
//         "iso":       [string | null]    new Date(ms).toISOString() for each of "dates"
//
//   node msgpack_peer.mjs server
//       A socket.io server (parser: msgpack) on 127.0.0.1. First line on stdout: the port;
//       then one JSON line per event received: {"ev": "event", "sid", "event", "args",
//       "ack"}, and {"ev": "connection", "nsp", "sid", "auth"}. Exits when stdin closes.
//
//   node msgpack_peer.mjs client <url> '<transports as JSON>'
//       socket.io-client (parser: msgpack) against our server: runs the scenarios below
//       and prints {"results": {<scenario>: {"ok", "error"?, "data"?}}}. Exit 1 if one
//       failed.
//
// Both servers (ours and this one) answer the same events:
//   echo(...args)            emits echoed(...args), then acks (...args)
//   ask(event, ...args)      emits event(...args) to the sender with an ack, then acks
//                            ([...the sender's reply])
//   join(room)               joins; acks (room)
//   to-room(room, ...args)   socket.to(room).emit("room-news", ...args); acks ("sent")
//   specials(...args)        acks (...args) as the server decoded them (this one: described)
//   send-specials()          emits specials(...) with the server's own special values
//   sync()                   acks ("sync")
// "/private" refuses every connection (message "nope", no data).
//
// Values are described in JSON as {"$bytes": hex, "type": "Buffer" | "ArrayBuffer" | ...},
// {"$date": iso | null}, {"$undefined": true}.

import { Buffer } from "node:buffer";
import http from "node:http";
import { isDeepStrictEqual } from "node:util";
import msgpackParser from "socket.io-msgpack-parser";
import { Server } from "socket.io";
import { io } from "socket.io-client";

const [mode, ...rest] = process.argv.slice(2);
const WAIT_MS = 3000;

function describe(value) {
  if (Buffer.isBuffer(value)) return { $bytes: value.toString("hex"), type: "Buffer" };
  if (value instanceof ArrayBuffer) {
    return { $bytes: Buffer.from(value).toString("hex"), type: "ArrayBuffer" };
  }
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bytes: bytes.toString("hex"), type: value.constructor.name };
  }
  if (value instanceof Date) {
    return { $date: Number.isNaN(value.getTime()) ? null : value.toISOString() };
  }
  if (value === undefined) return { $undefined: true };
  if (typeof value === "function") return { $function: true };
  if (Array.isArray(value)) return value.map(describe);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
  }
  return value;
}

/** The values notepack.io treats specially, as a JS app would emit them. */
function specials() {
  return [
    new Date(0),
    new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 123)),
    new Date(-1),
    new Date(8.64e15),
    new Date(-8.64e15),
    undefined,
    { keep: 1, gone: undefined },
    new Uint8Array([9]), // ext 8, type 0, 1 byte: not undefined
    new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), // ext 8, type 0, 8 bytes: not a Date
    new Uint8Array([1, 2, 3]).buffer,
    Buffer.from([4, 5]),
    [new Date(1), [undefined, Buffer.alloc(0)]],
    2 ** 40,
    -(2 ** 40),
    1.5,
    -7,
    "ünï ☃ 😀",
  ];
}

// -- codec --------------------------------------------------------------------------------

async function codec() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const request = JSON.parse(input || "{}");
  const encoder = new msgpackParser.Encoder();
  const packets = {
    // What the JS server sends: socket.emit(), the CONNECT answer, a middleware refusal.
    server_event: { type: 2, data: ["hello", 1, Buffer.from([1, 2])], nsp: "/" },
    server_connect: { type: 0, data: { sid: "abc", pid: undefined }, nsp: "/" },
    server_connect_error: {
      type: 4,
      data: { message: "not authorized", data: undefined },
      nsp: "/admin",
    },
    server_ack: { type: 3, data: [], id: 0, nsp: "/" },
    server_disconnect: { type: 1, nsp: "/" },
    // What the JS client sends: CONNECT without auth, an emit with an ack.
    client_connect: { type: 0, data: undefined, nsp: "/" },
    client_event: {
      type: 2,
      data: ["hello", { deep: [Buffer.from([3])] }],
      options: { compress: true },
      id: 3,
      nsp: "/admin",
    },
    specials: { type: 2, data: ["specials", ...specials()], nsp: "/" },
    numbers: {
      type: 2,
      data: ["n", 2 ** 53, -(2 ** 53), 2 ** 32, -(2 ** 31) - 1, 255, -33, 0.1, -0.5],
      nsp: "/",
    },
    binary_sizes: {
      type: 2,
      data: ["b", Buffer.alloc(255, 1), Buffer.alloc(256, 2), Buffer.alloc(65536, 3)],
      nsp: "/",
    },
    typed_arrays: {
      type: 2,
      data: ["t", new Uint16Array([1, 2]), new ArrayBuffer(0), new Uint8Array(300).fill(4)],
      nsp: "/",
    },
    invalid_date: { type: 2, data: ["d", new Date(NaN)], nsp: "/" },
  };
  const encoded = {};
  for (const [name, packet] of Object.entries(packets)) {
    encoded[name] = encoder.encode(packet)[0].toString("hex");
  }
  const decoded = [];
  const reencoded = [];
  for (const hex of request.decode ?? []) {
    const decoder = new msgpackParser.Decoder();
    let packet = null;
    decoder.on("decoded", (p) => {
      packet = p;
    });
    try {
      decoder.add(Buffer.from(hex, "hex"));
      decoded.push(describe(packet));
      reencoded.push(encoder.encode(packet)[0].toString("hex"));
    } catch (err) {
      decoded.push({ error: String(err?.message ?? err) });
      reencoded.push(null);
    }
  }
  const iso = (request.dates ?? []).map((ms) => {
    const date = new Date(ms);
    return Number.isNaN(date.getTime()) ? null : date.toISOString();
  });
  process.stdout.write(`${JSON.stringify({ encoded, decoded, reencoded, iso })}\n`);
}

// -- server -------------------------------------------------------------------------------

function log(entry) {
  process.stdout.write(`${JSON.stringify(describe(entry))}\n`);
}

function split(args) {
  if (args.length && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, null];
}

function server() {
  const httpServer = http.createServer((req, res) => res.writeHead(404).end());
  const sio = new Server(httpServer, { parser: msgpackParser, serveClient: false });
  sio.on("connection", (socket) => {
    log({ ev: "connection", nsp: "/", sid: socket.id, auth: socket.handshake.auth });
    socket.onAny((event, ...raw) => {
      const [args, cb] = split(raw);
      log({ ev: "event", sid: socket.id, event, args, ack: cb !== null });
    });
    socket.on("echo", (...raw) => {
      const [args, cb] = split(raw);
      socket.emit("echoed", ...args);
      cb?.(...args);
    });
    socket.on("ask", (event, ...raw) => {
      const [args, cb] = split(raw);
      socket.timeout(WAIT_MS).emit(event, ...args, (err, ...reply) => {
        cb?.(err ? { error: String(err.message ?? err) } : reply);
      });
    });
    socket.on("join", (room, cb) => {
      socket.join(room);
      cb?.(room);
    });
    socket.on("to-room", (room, ...raw) => {
      const [args, cb] = split(raw);
      socket.to(room).emit("room-news", ...args);
      cb?.("sent");
    });
    socket.on("specials", (...raw) => {
      const [args, cb] = split(raw);
      cb?.(...args.map(describe));
    });
    socket.on("send-specials", () => socket.emit("specials", ...specials()));
    socket.on("sync", (cb) => cb?.("sync"));
  });
  sio.of("/private").use((socket, next) => next(new Error("nope")));
  httpServer.listen(0, "127.0.0.1", () => {
    process.stdout.write(`${httpServer.address().port}\n`);
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

// -- client -------------------------------------------------------------------------------

function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

function equal(actual, expected, what) {
  const got = describe(actual);
  const want = describe(expected);
  if (!isDeepStrictEqual(got, want)) {
    throw new Error(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  }
}

function emitAck(socket, event, ...args) {
  return withTimeout(new Promise((resolve) => {
    socket.emit(event, ...args, (...reply) => resolve(reply));
  }), WAIT_MS, `ack of ${event}`);
}

function next(socket, event) {
  return withTimeout(new Promise((resolve) => socket.once(event, (...args) => resolve(args))),
    WAIT_MS, `event ${event}`);
}

function connect(socket) {
  return withTimeout(new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }), WAIT_MS, "connect");
}

async function client(url, transportsArg) {
  const transports = JSON.parse(transportsArg ?? '["websocket"]');
  const options = { transports, forceNew: true, reconnection: false, parser: msgpackParser };
  const results = {};
  const sockets = [];
  const scenario = async (name, fn) => {
    try {
      const data = await withTimeout(Promise.resolve().then(fn), 2 * WAIT_MS, name);
      results[name] = { ok: true, data: describe(data ?? null) };
    } catch (err) {
      results[name] = { ok: false, error: String(err?.message ?? err) };
    }
  };
  const a = io(url, { ...options, auth: { token: "a", when: new Date(0) } });
  const b = io(url, options); // no auth: its CONNECT carries data: undefined
  sockets.push(a, b);
  a.on("question", (...args) => {
    const cb = args.pop();
    cb("answer", ...args);
  });

  await scenario("connect", async () => {
    await Promise.all([connect(a), connect(b)]);
    return [a.id, b.id];
  });

  const sent = [
    1,
    "2",
    { 3: "4", 5: Buffer.from([6]) },
    [Buffer.alloc(0), null, true],
    { deep: { list: [Buffer.from([1, 2]), { x: Buffer.alloc(300, 7) }] } },
    1.5,
    -(2 ** 40),
  ];
  await scenario("echo_multi_args_nested_binary", async () => {
    const echoed = next(a, "echoed");
    const ack = await emitAck(a, "echo", ...sent);
    equal(ack, sent, "ack");
    equal(await echoed, sent, "echoed");
  });

  await scenario("echo_large_binary", async () => {
    const big = Buffer.alloc(70000, 9); // bin 32
    const ack = await emitAck(a, "echo", "big", big);
    equal(ack, ["big", big], "ack");
  });

  await scenario("ack_server_to_client", async () => {
    const [reply] = await emitAck(a, "ask", "question", "q1", Buffer.from([7, 8]));
    equal(reply, ["answer", "q1", Buffer.from([7, 8])], "the server got the client's ack");
  });

  await scenario("specials_to_server", async () => {
    return await emitAck(a, "specials", ...specials());
  });

  await scenario("specials_from_server", async () => {
    const got = next(a, "specials");
    a.emit("send-specials");
    return await got;
  });

  await scenario("rooms", async () => {
    const room = `room-${Math.random().toString(36).slice(2)}`;
    equal(await emitAck(a, "join", room), [room], "A joined");
    equal(await emitAck(b, "join", room), [room], "B joined");
    const news = next(b, "room-news");
    let aGotNews = false;
    a.on("room-news", () => {
      aGotNews = true;
    });
    equal(await emitAck(a, "to-room", room, "news", { bin: Buffer.from([1]) }), ["sent"], "sent");
    equal(await news, ["news", { bin: Buffer.from([1]) }], "B's room-news");
    equal(await emitAck(a, "sync"), ["sync"], "sync");
    if (aGotNews) throw new Error("the sender got its own room-news");
  });

  await scenario("refused", async () => {
    const refused = io(`${url}/private`, options);
    sockets.push(refused);
    const err = await withTimeout(new Promise((resolve, reject) => {
      refused.once("connect", () => reject(new Error("connected")));
      refused.once("connect_error", resolve);
    }), WAIT_MS, "connect_error");
    return { message: err.message, data: err.data };
  });

  for (const socket of sockets) socket.disconnect();
  const failed = Object.entries(results).filter(([, r]) => !r.ok);
  for (const [name, r] of failed) process.stderr.write(`FAILED ${name}: ${r.error}\n`);
  process.stdout.write(`${JSON.stringify({ results })}\n`, () => process.exit(failed.length ? 1 : 0));
}

if (mode === "codec") await codec();
else if (mode === "server") server();
else if (mode === "client") await client(...rest);
else {
  process.stderr.write("usage: node msgpack_peer.mjs codec|server|client <url> <transports>\n");
  process.exit(2);
}
