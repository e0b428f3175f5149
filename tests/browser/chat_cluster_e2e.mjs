// Drives headless Chromium pages through the chat example run as two servers sharing a Redis
// (examples/chat/server.py --redis): pages on different servers chat with each other.
//
// Run by test_chat_cluster_browser.py, which owns Redis and both servers. Environment:
//   CHAT_URL_A, CHAT_URL_B  the two servers' base URLs (http://127.0.0.1:PORT/)
//   SCREENSHOT_DIR          where to write the final screenshots
//   CHROMIUM                the Chromium executable (default: chromium from PATH)
//
// Prints "screenshot P" for each screenshot written, "ok" when every check passed (the exit
// status says so too); any other line is progress for the test's log.

import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, required, step } from "./e2e_support.mjs";

const URL_A = required("CHAT_URL_A");
const URL_B = required("CHAT_URL_B");
const SCREENSHOT_DIR = required("SCREENSHOT_DIR");
const WAIT = 10_000; // ms, for one expectation

// -- a user in a page ----------------------------------------------------------------------
const pages = new Map(); // nickname -> page, for the screenshots

async function openUser(browser, nickname, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  pages.set(nickname, page);
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(`${nickname}: ${error.message}`));
  await page.goto(url);
  await page.fill("#nickname", nickname);
  await page.click("#login-form button");
  await expectText(page, "#status", /^connected$/);
  await page.locator("#chat").waitFor({ state: "visible", timeout: WAIT });
  return page;
}

async function expectText(page, selector, pattern) {
  // Polls until the element's text matches (the page updates it asynchronously).
  try {
    await page.waitForFunction(
      ([sel, source, flags]) => {
        const element = document.querySelector(sel);
        return element !== null && new RegExp(source, flags).test(element.textContent);
      },
      [selector, pattern.source, pattern.flags],
      { timeout: WAIT, polling: 50 },
    );
  } catch (error) {
    const actual = await page.textContent(selector).catch(() => "(no such element)");
    throw new Error(`${selector} never matched ${pattern}; it shows ${JSON.stringify(actual)}`);
  }
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

async function expectDelivered(page, text) {
  const ack = message(page, text).locator(".ack");
  try {
    await ack.and(page.locator('[data-state="delivered"]')).waitFor({ timeout: WAIT });
  } catch (error) {
    const shown = await ack.textContent().catch(() => "(none)");
    throw new Error(`the ack of "${text}" shows ${JSON.stringify(shown)}, not delivered`);
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
    if (page.isClosed()) continue;
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
  step("alice logs in on server A, bob on server B; both join the room 'den'");
  const alice = await openUser(browser, "alice", URL_A);
  const bob = await openUser(browser, "bob", URL_B);
  await joinRoom(alice, "den");
  await joinRoom(bob, "den");
  step("the user list and the room list count both servers' users");
  await expectUsers(alice, ["alice", "bob"]);
  await expectUsers(bob, ["alice", "bob"]);
  await expectText(alice, "#rooms", /#den\s*2/);
  await expectText(bob, "#rooms", /#den\s*2/);

  step("alice types on A: bob sees it on B");
  await alice.locator("#text").pressSequentially("hello from A", { delay: 15 });
  await expectText(bob, "#typing", /^alice is typing…$/);

  step("alice sends on A: bob gets it on B, alice gets the ack");
  await alice.press("#text", "Enter");
  await expectMessage(bob, "alice", "hello from A");
  await expectDelivered(alice, "hello from A");
  await expectText(bob, "#typing", /^$/);

  step("bob answers on B: alice gets it on A");
  await send(bob, "hello from B");
  await expectMessage(alice, "bob", "hello from B");
  await expectDelivered(bob, "hello from B");

  step("carol joins 'den' on B: everyone sees her; B's history has only what B carried");
  const carol = await openUser(browser, "carol", URL_B);
  await joinRoom(carol, "den");
  for (const page of [alice, bob, carol]) await expectUsers(page, ["alice", "bob", "carol"]);
  await expectText(alice, "#messages", /carol joined/);
  await expectMessage(carol, "bob", "hello from B");
  if ((await message(carol, "hello from A").count()) !== 0) {
    throw new Error("the history of server B has a message sent through A (it is per server)");
  }

  step("bob's page closes on B: alice on A sees him leave");
  await bob.context().close();
  await expectText(alice, "#messages", /bob left/);
  await expectUsers(alice, ["alice", "carol"]);
  await expectUsers(carol, ["alice", "carol"]);
  await expectText(alice, "#rooms", /#den\s*2/);

  await screenshots("chat-cluster");
  const errors = [...alice.errors, ...bob.errors, ...carol.errors];
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
