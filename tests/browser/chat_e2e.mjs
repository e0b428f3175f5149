// Drives two headless Chromium pages through the chat example (examples/chat).
//
// Run by test_chat_browser.py, which owns the chat server. Environment:
//   CHAT_URL        the chat server's base URL (http://127.0.0.1:PORT/)
//   SCREENSHOT_DIR  where to write the final screenshots
//   CHROMIUM        the Chromium executable (default: chromium from PATH)
//
// Talks to the test on stdin/stdout, one line each way:
//   "stop-server"   -> the test kills the server and answers "stopped"
//   "start-server"  -> the test starts it again on the same port and answers "started"
//   "screenshot P"  a screenshot was written to P
//   "ok"            every check passed (the exit status says so too)
// Any other line is progress for the test's log.

import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, askTest, required, step } from "./e2e_support.mjs";

const URL = required("CHAT_URL");
const SCREENSHOT_DIR = required("SCREENSHOT_DIR");
const WAIT = 10_000; // ms, for one expectation
const RECONNECT_WAIT = 20_000; // ms, for a reconnection (the client backs off)

// -- a user in a page ----------------------------------------------------------------------
const pages = new Map(); // nickname -> page, for the screenshots

async function openUser(browser, nickname) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  pages.set(nickname, page);
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(`${nickname}: ${error.message}`));
  await page.goto(URL);
  await page.fill("#nickname", nickname);
  await page.click("#login-form button");
  await expectText(page, "#status", /^connected$/);
  await expectVisible(page, "#chat");
  return page;
}

async function expectText(page, selector, pattern, timeout = WAIT) {
  // Polls until the element's text matches (the page updates it asynchronously).
  try {
    await page.waitForFunction(
      ([sel, source, flags]) => {
        const element = document.querySelector(sel);
        return element !== null && new RegExp(source, flags).test(element.textContent);
      },
      [selector, pattern.source, pattern.flags],
      { timeout, polling: 50 },
    );
  } catch (error) {
    const actual = await page.textContent(selector).catch(() => "(no such element)");
    throw new Error(`${selector} never matched ${pattern}; it shows ${JSON.stringify(actual)}`);
  }
}

async function expectVisible(page, selector) {
  await page.locator(selector).waitFor({ state: "visible", timeout: WAIT });
}

async function expectUsers(page, names) {
  const wanted = [...names].sort().join(",");
  try {
    await page.waitForFunction(
      (list) =>
        [...document.querySelectorAll("#users li")]
          .map((li) => li.textContent)
          .sort()
          .join(",") === list,
      wanted,
      { timeout: WAIT, polling: 50 },
    );
  } catch (error) {
    const shown = await page.locator("#users li").allTextContents();
    throw new Error(`the user list shows ${JSON.stringify(shown)}, not ${wanted}`);
  }
}

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The locator of the message whose text is `text`. */
function message(page, text) {
  return page.locator("#messages li.message").filter({
    has: page.locator(".text", { hasText: new RegExp(`^${escapeRegExp(text)}$`) }),
  });
}

async function expectMessage(page, author, text) {
  const item = message(page, text);
  await item.waitFor({ timeout: WAIT });
  const shownAuthor = await item.locator(".author").textContent();
  if (shownAuthor !== author) throw new Error(`"${text}" is by ${shownAuthor}, not ${author}`);
}

async function expectAck(page, text, state, label, timeout = WAIT) {
  const ack = message(page, text).locator(".ack");
  try {
    await ack.and(page.locator(`[data-state="${state}"]`)).waitFor({ timeout });
  } catch (error) {
    const shown = await ack.textContent().catch(() => "(none)");
    throw new Error(`the ack of "${text}" shows ${JSON.stringify(shown)}, not ${label}`);
  }
  const shown = await ack.textContent();
  if (shown !== label) throw new Error(`the ack of "${text}" reads ${shown}, not ${label}`);
}

async function expectRecovered(page, texts) {
  // Exactly these messages are marked recovered, in this order, each shown once.
  const marked = await page.locator("#messages li.message.recovered .text").allTextContents();
  if (JSON.stringify(marked) !== JSON.stringify(texts)) {
    throw new Error(`the recovered messages are ${JSON.stringify(marked)}, not ${texts}`);
  }
  for (const text of texts) {
    const count = await message(page, text).count();
    if (count !== 1) throw new Error(`"${text}" is shown ${count} times`);
  }
}

async function joinRoom(page, room) {
  await page.fill("#join-room", room);
  await page.click("#join-form button");
  await expectText(page, "#room-name", new RegExp(`^${escapeRegExp(room)}$`));
}

async function send(page, text) {
  await page.locator("#text").pressSequentially(text, { delay: 15 });
  await page.press("#text", "Enter");
}

async function screenshots(prefix) {
  for (const [name, page] of pages) {
    const file = path.join(SCREENSHOT_DIR, `${prefix}-${name}.png`);
    await page.screenshot({ path: file });
    console.log(`screenshot ${file}`);
  }
}

// -- the scenario --------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || undefined,
  headless: true,
  args: CHROMIUM_ARGS,
});
try {
  step("alice and bob log in and join the room 'den'");
  const alice = await openUser(browser, "alice");
  const bob = await openUser(browser, "bob");
  await joinRoom(alice, "den");
  await joinRoom(bob, "den");
  await expectUsers(alice, ["alice", "bob"]);
  await expectUsers(bob, ["alice", "bob"]);
  await expectText(alice, "#rooms", /#den\s*2/);

  step("a third page cannot take the nickname of alice");
  const other = await browser.newContext();
  const eve = await other.newPage();
  await eve.goto(URL);
  await eve.fill("#nickname", "ALICE");
  await eve.click("#login-form button");
  await expectText(eve, "#login-error", /the nickname 'ALICE' is taken/);
  await other.close();

  step("alice types: bob sees it");
  await alice.locator("#text").pressSequentially("hello bob", { delay: 15 });
  await expectText(bob, "#typing", /^alice is typing…$/);

  step("alice sends: bob gets the message, alice the delivery ack");
  await alice.press("#text", "Enter");
  await expectMessage(bob, "alice", "hello bob");
  await expectAck(alice, "hello bob", "delivered", "✓ delivered");
  await expectText(bob, "#typing", /^$/);

  step("alice's network drops: bob's messages meanwhile reach her, marked recovered");
  await alice.context().setOffline(true);
  await expectText(alice, "#status", /reconnecting/);
  await expectUsers(bob, ["bob"]); // the server has let her socket go
  await send(bob, "while you were away");
  await send(bob, "and one more");
  await expectAck(bob, "and one more", "delivered", "✓ delivered");
  await alice.context().setOffline(false);
  await expectText(alice, "#status", /^reconnected$/, RECONNECT_WAIT);
  await expectText(alice, "#messages", /Connection state recovered \(2 missed messages\)\./);
  await expectMessage(alice, "bob", "and one more");
  await expectRecovered(alice, ["while you were away", "and one more"]);
  await expectUsers(alice, ["alice", "bob"]);
  await expectUsers(bob, ["alice", "bob"]);
  await expectText(bob, "#messages", /alice is back/);
  await send(bob, "welcome back");
  await expectMessage(alice, "bob", "welcome back");
  await expectRecovered(alice, ["while you were away", "and one more"]);

  step("the server goes away: both pages say they are reconnecting");
  await askTest("stop-server", "stopped");
  await expectText(alice, "#status", /reconnecting/);
  await expectText(bob, "#status", /reconnecting/);

  step("alice writes while offline: her message waits, marked …");
  await send(alice, "anyone there?");
  await expectAck(alice, "anyone there?", "pending", "…");

  step("the server is back: both pages reconnect, in the same room, as the same users");
  await askTest("start-server", "started");
  await expectText(alice, "#status", /^reconnected$/, RECONNECT_WAIT);
  await expectText(bob, "#status", /^reconnected$/, RECONNECT_WAIT);
  for (const page of [alice, bob]) {
    await expectText(page, "#messages", /Connection lost .*Reconnecting…/);
    await expectText(page, "#messages", /Reconnected after \d+ attempts?\./);
    await expectText(page, "#room-name", /^den$/);
    await expectUsers(page, ["alice", "bob"]);
  }
  await expectAck(alice, "anyone there?", "delivered", "✓ delivered");
  await expectMessage(bob, "alice", "anyone there?");

  step("they chat again");
  await bob.locator("#text").pressSequentially("yes, back again", { delay: 15 });
  await expectText(alice, "#typing", /^bob is typing…$/);
  await bob.press("#text", "Enter");
  await expectMessage(alice, "bob", "yes, back again");
  await expectAck(bob, "yes, back again", "delivered", "✓ delivered");
  await expectText(alice, "#typing", /^$/);

  await screenshots("chat");
  const errors = [...alice.errors, ...bob.errors];
  if (errors.length > 0) throw new Error(`uncaught errors in the pages:\n${errors.join("\n")}`);
  console.log("ok");
} catch (error) {
  // Leave what the pages showed in the test's log.
  for (const [name, page] of pages) {
    const shown = await page.evaluate(() => document.body.innerText).catch(() => "?");
    console.log(`# ${name}'s page:\n${shown.replace(/^/gm, "#   ")}`);
  }
  await screenshots("failed").catch(() => {});
  throw error;
} finally {
  await browser.close();
  process.stdin.destroy();
}
