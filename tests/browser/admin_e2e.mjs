// Drives the Socket.IO Admin UI's own built page (@socket.io/admin-ui 0.5.1, ui/dist) in a
// headless Chromium against an instrumented trio_sio server (tests/admin/admin_app.py).
//
// Run by test_admin_browser.py, which owns the server. Environment:
//   ADMIN_UI_URL      where the UI's page is served (another origin than the server)
//   SERVER_URL        the trio_sio server
//   ADMIN_USERNAME, ADMIN_PASSWORD   the UI's credentials
//   SERVER_ID         the server's name in the UI
//   ALICE_ID, BOB_ID  the socket ids of the two clients connected to "/"
//   SCREENSHOT_DIR    where to write the screenshots
//   CHROMIUM          the Chromium executable
//
// Talks to the test on stdin/stdout, one line each way:
//   "expect <client> <what>"  -> the test waits until that client reports <what> ("got
//                                <event>" or "disconnected") and answers "seen"
//   "screenshot P"            a screenshot was written to P
//   "ok"                      every check passed (the exit status says so too)
// Any other line is progress for the test's log.

import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, askTest, required, step } from "./e2e_support.mjs";

const UI = required("ADMIN_UI_URL");
const SERVER = required("SERVER_URL");
const USERNAME = required("ADMIN_USERNAME");
const PASSWORD = required("ADMIN_PASSWORD");
const SERVER_ID = required("SERVER_ID");
const ALICE = required("ALICE_ID");
const BOB = required("BOB_ID");
const SCREENSHOT_DIR = required("SCREENSHOT_DIR");
const WAIT = 10_000; // ms, for one expectation

// Keeps the page's WebSockets and the frames it sends on them, to find the UI's own
// connection to the server (see the emit step).
function recordWebSockets() {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.sentFrames = [];
      window.__sockets.push(this);
    }
    send(data) {
      this.sentFrames.push(String(data));
      super.send(data);
    }
  };
}

async function expectText(locator, pattern, what) {
  try {
    await locator.filter({ hasText: pattern }).first().waitFor({ timeout: WAIT });
  } catch (error) {
    const shown = await locator.allInnerTexts().catch(() => ["(nothing)"]);
    throw new Error(`${what} never showed ${pattern}; it shows ${JSON.stringify(shown)}`);
  }
}

async function expectGone(locator, what) {
  try {
    await locator.first().waitFor({ state: "detached", timeout: WAIT });
  } catch (error) {
    throw new Error(`${what} is still shown`);
  }
}

/** The table rows of the page's main area whose first cell is `name`. */
function row(page, name) {
  return page.locator("main tbody tr").filter({
    has: page.locator("td:first-child", { hasText: new RegExp(`^\\s*${name}\\s*$`) }),
  });
}

async function connect(page, password) {
  await page.getByLabel("Server URL").fill(SERVER);
  await page.getByLabel("Username").fill(USERNAME);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Connect" }).click();
}

async function open(page, hash) {
  await page.goto(`${UI}#${hash}`); // the UI's router uses the hash: the page stays loaded
}

async function screenshot(page, name) {
  const file = path.join(SCREENSHOT_DIR, `admin-${name}.png`);
  await page.waitForTimeout(500); // the page's fade between views
  await page.screenshot({ path: file, animations: "disabled" });
  console.log(`screenshot ${file}`);
}

// -- the scenario --------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || undefined,
  headless: true,
  args: CHROMIUM_ARGS,
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const errors = [];
page.on("pageerror", (error) => errors.push(error.message));
// The page asks Google Fonts and a CDN for fonts and icons: not needed, and maybe offline.
await page.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, (route) => route.abort());
await page.addInitScript(recordWebSockets);
const status = page.locator("header .v-chip");

try {
  step("the UI's page loads and asks for a server");
  await page.goto(UI);
  await page.getByLabel("Server URL").waitFor({ timeout: WAIT });

  step("a wrong password is refused");
  await connect(page, "not the password");
  await expectText(page.locator(".v-dialog"), /Invalid credentials/, "the connection form");
  await expectText(status, /disconnected/i, "the status");

  step("the right password connects; the server hands out a session");
  await connect(page, PASSWORD);
  await expectText(status, /^\s*connected\s*$/i, "the status");
  await page.waitForFunction(() => /^[0-9a-f]{16}$/.test(localStorage.getItem("session_id")));

  step("the dashboard and the servers page show our server");
  await expectText(page.locator("main"), /\/admin/, "the dashboard's namespaces");
  await open(page, "/servers/");
  await expectText(row(page, SERVER_ID), /healthy/i, `the row of server ${SERVER_ID}`);
  await screenshot(page, "servers");

  step("the sockets page lists both clients' sockets");
  await open(page, "/sockets/");
  await expectText(row(page, ALICE), /WebSocket/, "alice's socket");
  await expectText(row(page, BOB), /WebSocket/, "bob's socket");
  await screenshot(page, "sockets");

  step("the rooms page shows their rooms");
  await open(page, "/rooms/");
  await expectText(row(page, "lobby"), /\b2\b/, "the room lobby");
  await expectText(row(page, "red"), /\b1\b/, "the room red");
  await screenshot(page, "rooms");

  step("bob's page shows his data and rooms; the UI makes him join a room");
  await open(page, `/n/%2F/sockets/${BOB}`);
  await expectText(page.locator("main"), /"name": "bob"/, "bob's socket data");
  await expectText(row(page, "lobby"), /lobby/, "bob's rooms");
  await page.getByLabel("Join a room").fill("blue");
  await page.locator("main form button[type=submit]").click();
  await expectText(row(page, "blue"), /blue/, "bob's rooms after the join");
  await screenshot(page, "socket");

  step("an emit from the UI's connection reaches alice, and only her");
  // The 0.5.1 page has no emit form (its emit() method is empty), so the UI's `emit`
  // command goes over the page's own authenticated connection once it runs on WebSocket.
  const command = JSON.stringify(["emit", "/", ALICE, "hello-from-ui", { n: 1 }]);
  const sent = await page
    .waitForFunction(
      (frame) => {
        const ws = window.__sockets.find((s) => s.readyState === 1 && s.sentFrames.includes("5"));
        if (ws === undefined) return false; // not upgraded yet
        ws.send(frame);
        return true;
      },
      `42/admin,${command}`,
      { timeout: WAIT, polling: 100 },
    )
    .catch(() => null);
  if (sent === null) throw new Error("the UI's connection never upgraded to WebSocket");
  await askTest("expect alice got hello-from-ui", "seen");

  step("the events page shows what happened");
  await open(page, "/events/");
  await expectText(page.locator("main tbody"), /Room joined/, "the events");

  step("the UI disconnects bob");
  await open(page, "/sockets/");
  await row(page, BOB).locator("button").first().click(); // its disconnect button
  await askTest("expect bob disconnected", "seen");
  await open(page, "/sockets/"); // the click on the row also opened bob's page
  await expectGone(row(page, BOB), "bob's socket");
  await expectText(row(page, ALICE), /WebSocket/, "alice's socket");

  step("after a reload, the UI comes back with its session id, without the password");
  await page.reload();
  await expectText(status, /^\s*connected\s*$/i, "the status after the reload");
  await open(page, "/");
  await expectText(page.locator("main"), /\/admin/, "the dashboard");
  await screenshot(page, "dashboard");

  if (errors.length > 0) throw new Error(`uncaught errors in the page:\n${errors.join("\n")}`);
  console.log("ok");
} catch (error) {
  const shown = await page.evaluate(() => document.body.innerText).catch(() => "?");
  console.log(`# the page:\n${shown.replace(/^/gm, "#   ")}`);
  await screenshot(page, "failed").catch(() => {});
  throw error;
} finally {
  await browser.close();
  process.stdin.destroy();
}
