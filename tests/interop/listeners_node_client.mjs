// The official Node client (socket.io-client 4) against the app of test_listeners_node.py:
// per-socket listeners and packet middleware, as the client sees them.
//
//     node listeners_node_client.mjs <url> '<transports as JSON>'
//
// Prints one JSON line {"results": {...}} (or {"error": ...} and exits 1).

import { io } from "socket.io-client";

const [url, transportsArg] = process.argv.slice(2);
const socket = io(url, { transports: JSON.parse(transportsArg), reconnection: false });
const refused = [];
socket.on("refused", (message) => refused.push(message));

const watchdog = setTimeout(() => fail(new Error("the run took longer than 20 s")), 20000);

function fail(err) {
  process.stdout.write(JSON.stringify({ error: String(err), refused }) + "\n", () =>
    process.exit(1),
  );
}

const ask = (...args) => socket.timeout(3000).emitWithAck(...args);
// For events that get no ack: the wait is short.
const noAck = (...args) =>
  socket
    .timeout(500)
    .emitWithAck(...args)
    .then(
      (value) => value,
      (err) => `error: ${err.message}`,
    );
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run() {
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  const results = {};
  results.before_login = await noAck("add", "apple");
  results.login = await ask("login", "token");
  results.add = [await ask("add", "apple"), await ask("add", "pear")];
  results.checkout = await ask("checkout");
  results.checkout_again = await noAck("checkout");
  results.shout = await ask("shout", "hello");
  results.admin = await noAck("admin:reset");
  // Five events at once against a bucket of three: three acks, two refusals.
  const burst = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => socket.timeout(500).emitWithAck("msg", i)));
  results.burst = burst.map((r) => (r.status === "fulfilled" ? r.value : "refused"));
  await sleep(200);
  results.refused = refused;
  socket.disconnect();
  return results;
}

run().then(
  (results) => {
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify({ results }) + "\n", () => process.exit(0));
  },
  (err) => fail(err),
);
