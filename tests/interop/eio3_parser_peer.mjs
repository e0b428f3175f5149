// The Engine.IO v3 payload codec of socket.io-client 2.x (engine.io-parser 2.x, shipped
// with it) as a peer for test_eio3_interop.py: encodes a fixed packet list, and decodes
// payloads given on stdin, printing JSON. Binary data travels as hex.
//
//     node eio3_parser_peer.mjs encode
//     node eio3_parser_peer.mjs decode < '{"text": "...", "binary": "<base64>"}'

import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const clientDir = require.resolve("socket.io-client-v2/package.json").replace(/package\.json$/, "");
const parser = require(require.resolve("engine.io-parser", { paths: [clientDir] }));

const PACKETS = [
  { type: "message", data: "hello" },
  { type: "message", data: "héllo wörld 😀" },
  { type: "message", data: Buffer.from([0, 1, 2, 255]) },
  { type: "ping" },
  { type: "message", data: "x".repeat(300) },
];

const describe = (packet) => ({
  type: packet.type,
  data: Buffer.isBuffer(packet.data) ? { hex: packet.data.toString("hex") } : packet.data ?? "",
});

const [mode] = process.argv.slice(2);
if (mode === "encode") {
  parser.encodePayload(PACKETS, false, (text) => {
    parser.encodePayload(PACKETS, true, (binary) => {
      const out = { text, binary: Buffer.from(binary).toString("base64") };
      process.stdout.write(JSON.stringify(out) + "\n");
    });
  });
} else {
  const input = JSON.parse(readFileSync(0, "utf8"));
  const decode = (payload) => {
    const packets = [];
    parser.decodePayload(payload, (packet) => {
      packets.push(describe(packet));
    });
    return packets;
  };
  const out = { text: decode(input.text), binary: decode(Buffer.from(input.binary, "base64")) };
  process.stdout.write(JSON.stringify(out) + "\n");
}
