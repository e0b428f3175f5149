// Drives two headless Chromium pages through the game example (examples/game).
//
// Run by test_game_browser.py, which owns the game server and the bots. Environment:
//   GAME_URL        the game server's base URL (http://127.0.0.1:PORT/)
//   SCREENSHOT_DIR  where to write the screenshot
//   CHROMIUM        the Chromium executable (default: chromium from PATH)
//
// Talks to the test on stdin/stdout, one line each way:
//   "run-bots"      -> the test starts 3 bots (bots.py) for 3 seconds and answers "started"
//   "screenshot P"  a screenshot was written to P
//   "ok"            every check passed (the exit status says so too)
// Any other line is progress for the test's log.

import path from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, askTest, required, step } from "./e2e_support.mjs";

const URL = required("GAME_URL");
const SCREENSHOT_DIR = required("SCREENSHOT_DIR");
const WAIT = 10_000; // ms, for one expectation

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- a player in a page --------------------------------------------------------------------
async function openPlayer(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(`${name}: ${error.message}`));
  await page.goto(`${URL}?name=${encodeURIComponent(name)}`);
  await waitFor(page, () => document.querySelector("#status").textContent === "connected",
    undefined, `${name} never connected`);
  await waitFor(page, () => window.myId !== null && window.gameState !== null,
    undefined, `${name} got no world`);
  return page;
}

/** Polls `fn(arg)` in the page until it is truthy; fails with `message` after `timeout`. */
async function waitFor(page, fn, arg, message, timeout = WAIT) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (error) {
    const state = await page.evaluate(() => JSON.stringify(window.gameState)).catch(() => "?");
    throw new Error(`${message} (last world: ${state})`);
  }
}

/** Where the last world received by `page` puts player `id` (or null). */
function positionIn(page, id) {
  return page.evaluate((pid) => {
    const entry = (window.gameState?.p || []).find(([i]) => i === pid);
    return entry ? [entry[1], entry[2]] : null;
  }, id);
}

async function expectPlayers(page, count) {
  await waitFor(page, (n) => window.gameState?.p.length === n, count,
    `the page never saw ${count} players`);
  await waitFor(page, (n) => document.querySelectorAll("#scores li").length === n, count,
    `the scoreboard never showed ${count} players`);
}

// -- the scenario --------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || undefined,
  headless: true,
  args: CHROMIUM_ARGS,
});
try {
  step("alice and bob join the game");
  const alice = await openPlayer(browser, "alice");
  const bob = await openPlayer(browser, "bob");
  await expectPlayers(alice, 2);
  await expectPlayers(bob, 2);
  const aliceId = await alice.evaluate(() => window.myId);
  const bobId = await bob.evaluate(() => window.myId);
  if (aliceId === bobId) throw new Error(`both pages have the id ${aliceId}`);

  step("bob receives worlds, about 30 a second");
  const counted = await bob.evaluate(async () => {
    const start = window.worldsReceived;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return window.worldsReceived - start;
  });
  console.log(`# bob: ${counted} worlds in 1 s`);
  // Loose bounds: the exact rate is checked in virtual time (tests/examples/test_game.py);
  // here a busy machine may delay the server's ticks.
  if (counted < 10 || counted > 45) throw new Error(`bob got ${counted} worlds in a second`);

  step("alice holds an arrow key: bob sees her move that way");
  const [x0, y0] = await positionIn(bob, aliceId);
  const width = await alice.evaluate(() => document.querySelector("#arena").width);
  const [key, sign] = x0 < width / 2 ? ["ArrowRight", 1] : ["ArrowLeft", -1];
  await alice.keyboard.down(key);
  await waitFor(
    bob,
    ([id, x, sign]) => {
      const entry = window.gameState?.p.find(([i]) => i === id);
      return entry && (entry[1] - x) * sign >= 80;
    },
    [aliceId, x0, sign],
    `bob never saw alice move 80 px (${key} from x=${x0})`,
  );
  await alice.keyboard.up(key);
  const [x1, y1] = await positionIn(bob, aliceId);
  console.log(`# alice: (${x0}, ${y0}) -> (${x1}, ${y1}) with ${key}`);
  if (y1 !== y0) throw new Error(`alice moved vertically: ${y0} -> ${y1}`);

  step("alice lets go: she stops, in both pages");
  await sleep(1500);
  const stopped = await positionIn(bob, aliceId);
  await sleep(300);
  const still = await positionIn(bob, aliceId);
  const own = await positionIn(alice, aliceId);
  if (String(stopped) !== String(still) || String(still) !== String(own)) {
    throw new Error(`alice did not stop: ${stopped} then ${still} (her page: ${own})`);
  }
  const bobSeen = await positionIn(alice, bobId);
  if (bobSeen === null) throw new Error("alice does not see bob");

  step("three bots join: both pages see five players");
  await askTest("run-bots", "started");
  await expectPlayers(alice, 5);
  await expectPlayers(bob, 5);
  const names = await alice.locator("#scores li .name").allTextContents();
  console.log(`# alice's scoreboard: ${names.join(", ")}`);
  for (const name of ["alice (you)", "bob", "bot-1", "bot-2", "bot-3"]) {
    if (!names.includes(name)) throw new Error(`"${name}" is not on the scoreboard`);
  }
  await sleep(1000); // let the bots run around a little for the picture
  const file = path.join(SCREENSHOT_DIR, "game-alice.png");
  await alice.screenshot({ path: file });
  console.log(`screenshot ${file}`);

  step("the bots leave: both pages are back to two players");
  await expectPlayers(alice, 2);
  await expectPlayers(bob, 2);

  const errors = [...alice.errors, ...bob.errors];
  if (errors.length > 0) throw new Error(`uncaught errors in the pages:\n${errors.join("\n")}`);
  console.log("ok");
} finally {
  await browser.close();
  process.stdin.destroy();
}
