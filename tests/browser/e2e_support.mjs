// What the browser e2e scripts share: Chromium's flags, environment, and the line protocol
// with the Python test (a command on stdout, the test's answer on stdin).

import readline from "node:readline";

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const fromTest = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

export async function askTest(command, answer) {
  console.log(command);
  const { value, done } = await fromTest.next();
  if (done || value.trim() !== answer) {
    throw new Error(`asked "${command}", expected "${answer}", got ${done ? "EOF" : value}`);
  }
}

export function step(text) {
  console.log(`# ${text}`);
}
