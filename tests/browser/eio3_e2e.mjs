// Drives one headless Chromium page (eio3_page.html: socket.io-client 2.x) against the
// trio_sio server of test_eio3_browser.py, which allows Engine.IO v3 clients.
//
// Environment:
//   EIO3_URL  the server's page (http://127.0.0.1:PORT/)
//   CHROMIUM  the Chromium executable
//
// Prints one JSON line: {"page": <window.result>, "polling": [{"url", "status",
// "type"} of each polling response], "posts": [<Content-Type of each polling POST>]}, then
// exits (1 on a page error).

import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, required } from "./e2e_support.mjs";

const URL = required("EIO3_URL");
const browser = await chromium.launch({
  executablePath: required("CHROMIUM"),
  args: CHROMIUM_ARGS,
});
const output = { polling: [], posts: [], errors: [] };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (error) => output.errors.push(error.message));
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().includes("transport=polling")) {
      output.posts.push(request.headers()["content-type"] ?? null);
    }
  });
  page.on("response", (response) => {
    const url = response.url();
    if (url.includes("transport=polling")) {
      const type = response.headers()["content-type"];
      output.polling.push({ url, status: response.status(), type });
    }
  });
  await page.goto(URL);
  output.page = await page.evaluate(() => window.result);
} finally {
  await browser.close();
}
console.log(JSON.stringify(output));
process.exit(output.errors.length || output.page?.error ? 1 : 0);
