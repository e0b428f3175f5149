// socket.io-client 2.x (Engine.IO v3, Socket.IO v4 protocol) against the app of
// test_eio3_interop.py (a trio_sio server with allow_eio3=True).
//
//     node eio3_node_client.mjs <url> '<transports as JSON>'
//
// Prints one JSON line {"results": {...}} where each scenario is {"ok": true, ...data} or
// {"ok": false, "error": "..."}; exits 1 if one failed.

import { Buffer } from "node:buffer";
import io from "socket.io-client-v2";

const [url, transportsArg] = process.argv.slice(2);
const transports = JSON.parse(transportsArg);
const results = {};
const sockets = [];
const WAIT_MS = 4000;

const watchdog = setTimeout(() => finish("the run took longer than 40 s"), 40000);

function finish(error) {
  clearTimeout(watchdog);
  for (const socket of sockets) socket.close();
  const output = error ? { error, results } : { results };
  const failed = error || Object.values(results).some((r) => !r.ok);
  process.stdout.write(JSON.stringify(output) + "\n", () => process.exit(failed ? 1 : 0));
}

function open(path, opts = {}) {
  const socket = io(url + path, { transports, forceNew: true, ...opts });
  sockets.push(socket);
  return socket;
}

function within(ms, what, executor) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    executor(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

const once = (emitter, event, what = event) =>
  within(WAIT_MS, what, (resolve) => emitter.once(event, (...args) => resolve(args)));

// An emit with an ack: resolves with the ack's arguments.
const ask = (socket, event, ...args) =>
  within(WAIT_MS, `ack of ${event}`, (resolve) =>
    socket.emit(event, ...args, (...reply) => resolve(reply)),
  );

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function describe(value) {
  if (Buffer.isBuffer(value)) return { $bytes: value.toString("hex") };
  if (value instanceof ArrayBuffer) return { $bytes: Buffer.from(value).toString("hex") };
  if (Array.isArray(value)) return value.map(describe);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
  }
  return value;
}

async function scenario(name, fn) {
  try {
    results[name] = { ok: true, ...((await fn()) ?? {}) };
  } catch (err) {
    results[name] = { ok: false, error: String(err && err.stack ? err.stack : err) };
  }
}

async function run() {
  const main = open("/", { query: { user: "alice" } });
  const hello = once(main, "hello");
  await once(main, "connect", "connect to /");
  await scenario("connect", async () => {
    const [greeting] = await hello;
    return { greeting };
  });
  if (transports.length > 1) {
    await scenario("upgrade", async () => {
      if (main.io.engine.transport.name !== "websocket") {
        await once(main.io.engine, "upgrade", "the upgrade");
      }
      const [transport] = await ask(main, "transport");
      return { client: main.io.engine.transport.name, server: transport };
    });
  } else {
    await scenario("transport", async () => {
      const [transport] = await ask(main, "transport");
      return { client: main.io.engine.transport.name, server: transport };
    });
  }
  await scenario("event_and_ack", async () => {
    const echoed = once(main, "echoed");
    const reply = await ask(main, "echo", 1, "two", { three: [3] });
    return { reply, echoed: await echoed };
  });
  await scenario("unicode", async () => {
    const text = "héllo wörld 😀 ∑";
    const [reply] = await ask(main, "echo", text);
    return { same: reply === text };
  });
  await scenario("binary", async () => {
    const payload = Buffer.from([0, 1, 2, 253, 254, 255]);
    const got = once(main, "bytes-back");
    const reply = await ask(main, "reverse", payload, "label");
    return { reply: describe(reply), event: describe(await got) };
  });
  await scenario("server_asks", async () => {
    main.once("question", (x, callback) => callback({ answer: x * 2 }));
    const [reply] = await ask(main, "ask", 21);
    return { reply };
  });
  await scenario("rooms", async () => {
    const other = open("/");
    await once(other, "connect", "second socket");
    await ask(other, "join", "blue");
    const news = once(other, "room-news");
    let mainGot = false;
    main.once("room-news", () => (mainGot = true));
    await ask(main, "to-room", "blue", "hi blue");
    const got = await news;
    await sleep(200);
    other.close();
    return { news: got, mainGot };
  });
  await scenario("namespace", async () => {
    const chat = open("/chat", { query: { token: "secret" } });
    await once(chat, "connect", "connect to /chat");
    const [reply] = await ask(chat, "whoami");
    chat.close();
    return { reply };
  });
  await scenario("namespace_refused", async () => {
    const chat = open("/chat", { query: { token: "wrong" } });
    const [withData] = await once(chat, "error", "the refusal");
    chat.close();
    const plain = open("/chat", { query: { token: "" } });
    const [message] = await once(plain, "error", "the plain refusal");
    plain.close();
    const nowhere = open("/nowhere");
    const [invalid] = await once(nowhere, "error", "the invalid namespace");
    nowhere.close();
    return { withData, message, invalid };
  });
  await scenario("heartbeat", async () => {
    // The server's ping interval is short: the client pings, the server answers.
    let pongs = 0;
    main.io.engine.on("pong", () => pongs++);
    let lost = null;
    main.once("disconnect", (reason) => (lost = reason));
    await sleep(1500);
    main.io.engine.off("pong");
    return { pongs: pongs >= 2, lost };
  });
  await scenario("reconnection", async () => {
    const dropped = once(main, "disconnect", "the drop");
    const back = once(main, "reconnect", "the reconnection");
    main.emit("drop");
    const [reason] = await dropped;
    await back;
    const [reply] = await ask(main, "echo", "again");
    return { reason, reply };
  });
}

run().then(
  () => finish(),
  (err) => finish(String(err)),
);
