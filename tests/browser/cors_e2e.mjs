// Drives headless Chromium for test_cors_browser.py: loads cors_page.html from each page
// origin given, while the Socket.IO server lives at another origin.
//
// Environment:
//   CORS_PAGES   the page URLs, space-separated (each with ?server=<the server's URL>)
//   CHROMIUM     the Chromium executable
//
// Prints one JSON line: {"pages": [<window.result of each page>], "errors": [...]}, then
// exits (1 on a page error).

import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, required } from "./e2e_support.mjs";

const pages = required("CORS_PAGES").split(" ");
const browser = await chromium.launch({
  executablePath: required("CHROMIUM"),
  args: CHROMIUM_ARGS,
});
const output = { pages: [], errors: [] };
try {
  for (const url of pages) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("pageerror", (error) => output.errors.push(error.message));
    await page.goto(url);
    output.pages.push(await page.evaluate(() => window.result));
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(output));
process.exit(output.errors.length ? 1 : 0);
