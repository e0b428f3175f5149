// Drives one headless Chromium page (compression_page.html) against the trio_sio server of
// test_compression_browser.py, which has permessage-deflate and HTTP compression on.
//
// Environment:
//   COMPRESSION_URL  the server's page (http://127.0.0.1:PORT/)
//   CHROMIUM         the Chromium executable
//
// Prints one JSON line: {"page": <window.result>, "handshakes": [<101 response headers>],
// "encodings": [<Content-Encoding of each polling response of 1 KB or more>]}, then exits
// (1 on a page error).

import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, required } from "./e2e_support.mjs";

const URL = required("COMPRESSION_URL");
const browser = await chromium.launch({
  executablePath: required("CHROMIUM"),
  args: CHROMIUM_ARGS,
});
const output = { handshakes: [], encodings: [], errors: [] };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (error) => output.errors.push(error.message));
  // The DevTools protocol shows the WebSocket handshake's response headers, and the
  // encoding of each HTTP response as it came over the wire.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketHandshakeResponseReceived", (event) => {
    output.handshakes.push(event.response.headers);
  });
  cdp.on("Network.responseReceived", (event) => {
    const { url, headers } = event.response;
    if (url.includes("transport=polling")) {
      const lower = Object.fromEntries(
        Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
      if (lower["content-encoding"]) output.encodings.push(lower["content-encoding"]);
    }
  });
  await page.goto(URL);
  output.page = await page.evaluate(() => window.result);
} finally {
  await browser.close();
}
console.log(JSON.stringify(output));
process.exit(output.errors.length || output.page?.error ? 1 : 0);
