// socket.io-client (Node) for bench/client_bench.py: the same three measurements as the
// Python clients, printed as one JSON line.
//
//     node bench/client_bench_node.mjs <url> <events> <echo seconds>
import { io } from "socket.io-client";

const [url, eventsArg, secondsArg] = process.argv.slice(2);
const events = Number(eventsArg);
const seconds = Number(secondsArg);
const socket = io(url, { transports: ["websocket"] });
await new Promise((resolve) => socket.once("connect", resolve));

// events/s received: the server emits `events` ticks back to back.
let got = 0;
let done;
const allIn = new Promise((resolve) => (done = resolve));
socket.on("tick", () => {
  got += 1;
  if (got === events) done();
});
let start = process.hrtime.bigint();
socket.emit("burst", events);
await allIn;
const receive = events / (Number(process.hrtime.bigint() - start) / 1e9);

// echo with ack, one at a time, for `seconds`.
let acks = 0;
start = process.hrtime.bigint();
const until = start + BigInt(Math.round(seconds * 1e9));
while (process.hrtime.bigint() < until) {
  await socket.emitWithAck("echo", { n: acks, text: "hello" });
  acks += 1;
}
const echo = acks / (Number(process.hrtime.bigint() - start) / 1e9);

// the same from 32 loops at once.
acks = 0;
start = process.hrtime.bigint();
const until32 = start + BigInt(Math.round(seconds * 1e9));
const loop = async () => {
  while (process.hrtime.bigint() < until32) {
    await socket.emitWithAck("echo", { n: acks, text: "hello" });
    acks += 1;
  }
};
await Promise.all(Array.from({ length: 32 }, loop));
const echo32 = acks / (Number(process.hrtime.bigint() - start) / 1e9);
process.stdout.write(`${JSON.stringify({ receive, echo, echo32 })}\n`);
socket.close();
process.exit(0);
