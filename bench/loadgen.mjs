// Load generator for bench/run.py: raw Engine.IO v4 / Socket.IO v5 frames over `ws`.
//
//     node bench/loadgen.mjs '<json config>'
//
// It speaks only what the scenarios need (WebSocket transport from the start, namespace "/",
// pings answered), so that it stays much cheaper than the server under test. It prints one
// JSON object on stdout when done; progress and errors go to stderr.
//
// Config: {scenario, port, serverPid, clkTck, ...}; scenarios and their options (a cluster
// gives serverPids, all its nodes' pids, instead of serverPid; redisPid for Redis's CPU):
//   echo       conns, depth, warmupMs, durationMs         42<id>["echo",{...}] -> 43<id>[...]
//   binary     conns, depth, size, warmupMs, durationMs   451-<id>["bin",<attachment>] + frame
//   broadcast  conns, count, warmups, timeoutMs           42["bcast",i] -> 42["tick",i,"hello"]
//              with ports [a, b, ...] (a cluster): connections spread over the nodes, the
//              broadcasts sent to node a, deliveries counted per node (rate_a, rate_b, ...)
//   burst      conns, count, warmups, timeoutMs           42["burst",count] -> count ticks, in order
//   tick       conns, count, warmups, timeoutMs           42["bcast",i] once all got tick i - 1
//   (broadcast, burst and tick: warmupTimeoutMs bounds the warm-up broadcasts, 10 s unless
//   given; they report us_per_delivery: server CPU time / deliveries)
//   rss        conns, concurrency, settleMs               idle connections, server RSS
//   connects   concurrency, warmupMs, durationMs          handshake + CONNECT "/", then close
// Every scenario is bounded by hardTimeoutMs (the process exits).
import { readdirSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const CLK_TCK = cfg.clkTck ?? 100;
const HOST = cfg.host ?? "127.0.0.1";
const urlOf = (port) => `ws://${HOST}:${port}/socket.io/?EIO=4&transport=websocket`;
const CONNECT_TIMEOUT_MS = cfg.connectTimeoutMs ?? 15000;

const hardTimer = setTimeout(() => {
  process.stdout.write(JSON.stringify({ scenario: cfg.scenario, ok: false, error: "hard timeout" }) + "\n");
  process.exit(3);
}, cfg.hardTimeoutMs ?? 60000);
hardTimer.unref();

// -- /proc readings ---------------------------------------------------------------------
/** CPU time of a process: the sum of its threads' run time in ns (schedstat), so that short
 * windows are measured exactly (utime + stime come in clock ticks of 10 ms); utime + stime
 * if schedstat cannot be read. Time of a thread that ends within a window is not counted
 * (the servers measured here start none then). */
function cpuSeconds(pid) {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "latin1").split(" ")[0]);
    }
    if (Number.isFinite(ns) && ns > 0) return ns / 1e9;
  } catch {
    // no schedstat here (or the process is gone): clock ticks below
  }
  return cpuTicksSeconds(pid);
}

function cpuTicksSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
  } catch {
    return NaN;
  }
}

function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "latin1");
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  return match ? Number(match[1]) : NaN;
}

/** [busy, total] jiffies of one core (busy: all but idle and iowait), from /proc/stat. */
function coreTicks(core) {
  if (core === null || core === undefined) return null;
  const line = readFileSync("/proc/stat", "latin1")
    .split("\n")
    .find((l) => l.startsWith(`cpu${core} `));
  if (!line) return null;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal
  return [total - v[3] - v[4], total];
}

const serverPids = cfg.serverPids ?? [cfg.serverPid];
const serversCpuSeconds = () => serverPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);

/** CPU of the server (a cluster: all its nodes) and of this process over a window, as
 * fractions of one core; and how busy the server's core was (which also counts kernel work
 * done there for others). */
class CpuWindow {
  constructor() {
    this.t = performance.now();
    this.server = serversCpuSeconds();
    this.self = cpuSeconds(process.pid);
    this.redis = cfg.redisPid ? cpuSeconds(cfg.redisPid) : NaN;
    this.core = coreTicks(cfg.serverCore);
  }
  end() {
    const seconds = (performance.now() - this.t) / 1000;
    const result = {
      seconds,
      server_cpu: (serversCpuSeconds() - this.server) / seconds,
      loadgen_cpu: (cpuSeconds(process.pid) - this.self) / seconds,
    };
    if (cfg.redisPid) result.redis_cpu = (cpuSeconds(cfg.redisPid) - this.redis) / seconds;
    const core = coreTicks(cfg.serverCore);
    if (core && this.core && core[1] > this.core[1]) {
      result.server_core_busy = (core[0] - this.core[0]) / (core[1] - this.core[1]);
    }
    return result;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- a minimal Socket.IO client over one WebSocket ----------------------------------------
function readInt(buf, start) {
  let value = 0;
  let i = start;
  for (; i < buf.length; i++) {
    const c = buf[i];
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
  }
  return [value, i];
}

class Conn {
  constructor(port = cfg.port) {
    this.port = port;
    this.url = urlOf(port);
    this.ws = null;
    this.onAck = null; // (conn, id) for "43<id>[...]"
    this.onBinaryAck = null; // (conn, id, buffer) for "46N-<id>[...]" + its attachment
    this.onEvent = null; // (conn, buffer) for "42[...]"
    this.awaitingBinary = -1;
    this.closed = false;
  }

  /** Resolves once the Socket.IO CONNECT to "/" is acknowledged. */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 64 << 20 });
      this.ws = ws;
      let settled = false;
      const timer = setTimeout(() => fail(new Error("connect timeout")), CONNECT_TIMEOUT_MS);
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(err);
      };
      ws.on("error", fail);
      ws.on("close", () => {
        this.closed = true;
        fail(new Error("closed before connect"));
      });
      ws.on("message", (data, isBinary) => {
        if (isBinary) {
          const id = this.awaitingBinary;
          this.awaitingBinary = -1;
          if (id >= 0 && this.onBinaryAck) this.onBinaryAck(this, id, data);
          return;
        }
        const c0 = data[0];
        if (c0 === 0x34) {
          // Engine.IO MESSAGE carrying a Socket.IO packet
          const c1 = data[1];
          if (c1 === 0x33) {
            if (this.onAck) this.onAck(this, readInt(data, 2)[0]);
          } else if (c1 === 0x32) {
            if (this.onEvent) this.onEvent(this, data);
          } else if (c1 === 0x36) {
            const [, dash] = readInt(data, 2); // attachment count, then "-"
            this.awaitingBinary = readInt(data, dash + 1)[0];
          } else if (c1 === 0x30) {
            if (!settled) {
              settled = true;
              clearTimeout(timer);
              resolve(this);
            }
          } else if (c1 === 0x34) {
            fail(new Error(`connect error: ${data.toString()}`));
          }
        } else if (c0 === 0x32) {
          ws.send("3"); // PING -> PONG
        } else if (c0 === 0x30) {
          ws.send("40"); // OPEN -> CONNECT "/"
        }
      });
    });
  }

  close() {
    if (this.ws) this.ws.close(1000);
  }

  kill() {
    if (this.ws) this.ws.terminate();
  }
}

/** Open n connections, at most `concurrency` handshakes at a time. */
const errors = []; // the first few connection errors, reported with the result

function noteError(err) {
  if (errors.length < 3) errors.push(String(err?.message ?? err));
}

async function openMany(n, concurrency, setup, portOf = null) {
  const conns = [];
  let failures = 0;
  let next = 0;
  async function worker() {
    while (next < n) {
      const conn = new Conn(portOf ? portOf(next) : cfg.port);
      next++;
      if (setup) setup(conn);
      try {
        conns.push(await conn.open());
      } catch (err) {
        failures++;
        noteError(err);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  if (conns.length === 0) throw new Error(`no connection could be opened (${failures} failures: ${errors.join("; ")})`);
  return { conns, failures };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function drain(pendingCount, ms) {
  const deadline = performance.now() + ms;
  while (pendingCount() > 0 && performance.now() < deadline) await sleep(10);
  return pendingCount();
}

// -- scenarios ----------------------------------------------------------------------------
/** Request/ack traffic with `depth` requests in flight per connection. */
async function requestAck(kind) {
  const { conns: n, depth, warmupMs, durationMs } = cfg;
  const size = cfg.size ?? 0;
  const blob = Buffer.alloc(size);
  for (let i = 0; i < size; i++) blob[i] = (i * 131 + 7) & 0xff;
  let measuring = false;
  let stopping = false;
  let done = 0;
  let unexpected = 0;
  let corrupt = 0;
  const latencies = [];

  const send = (conn) => {
    const id = conn.nextId++;
    conn.pending.set(id, performance.now());
    if (kind === "echo") {
      conn.ws.send(`42${id}["echo",{"n":${id},"msg":"hello"}]`);
    } else {
      conn.ws.send(`451-${id}["bin",{"_placeholder":true,"num":0}]`);
      conn.ws.send(blob);
    }
  };
  const complete = (conn, id) => {
    const started = conn.pending.get(id);
    if (started === undefined) {
      unexpected++;
      return;
    }
    conn.pending.delete(id);
    if (measuring) {
      done++;
      latencies.push(performance.now() - started);
    }
    if (!stopping) send(conn);
  };
  const setup = (conn) => {
    conn.nextId = 0;
    conn.pending = new Map();
    conn.onAck = complete;
    conn.onBinaryAck = (c, id, data) => {
      if (data.length !== size || data[size - 1] !== blob[size - 1] || data[0] !== blob[0]) corrupt++;
      complete(c, id);
    };
  };
  const { conns, failures } = await openMany(n, 50, setup);
  for (const conn of conns) for (let k = 0; k < depth; k++) send(conn);
  await sleep(warmupMs);
  const window = new CpuWindow();
  measuring = true;
  await sleep(durationMs);
  measuring = false;
  const cpu = window.end();
  stopping = true;
  const pending = () => conns.reduce((sum, c) => sum + c.pending.size, 0);
  const lost = await drain(pending, 5000);
  for (const conn of conns) conn.kill();
  latencies.sort((a, b) => a - b);
  const result = {
    connections: conns.length,
    connect_failures: failures,
    depth,
    completed: done,
    rate: done / cpu.seconds,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    lost,
    unexpected,
    ...cpu,
  };
  if (kind === "binary") {
    result.size = size;
    result.corrupt = corrupt;
    result.mb_per_s = (done * size) / cpu.seconds / 1e6;
  }
  return result;
}

/** Broadcasts to every connection; every connection must get every one. Three kinds:
 *   broadcast  one client sends `count` bcast events at once (each handler emits once)
 *   burst      one client sends one burst event, n = `count` (one handler emits in a loop)
 *   tick       one client sends bcast(i), waits until every connection got tick i, then
 *              sends bcast(i + 1)
 * Burst and tick must arrive in order at each connection (out_of_order counts those that do
 * not). With cfg.ports, the connections are spread over a cluster's nodes and the trigger is
 * on the first node: deliveries are also counted per node, each node's rate over its own time
 * to finish. */
async function broadcast(kind = "broadcast") {
  const { conns: n, count } = cfg;
  const warmups = cfg.warmups ?? 3;
  const ports = cfg.ports ?? [cfg.port];
  const ordered = kind !== "broadcast";
  const nodeOf = (index) => index % ports.length;
  const perNode = ports.map(() => ({ delivered: 0, expected: 0, last: 0 }));
  const tickGot = new Uint32Array(count); // per tick: how many connections have it
  let delivered = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  let warmDelivered = 0;
  let allDone = null;
  let onTickComplete = null; // (i) once every connection got tick i
  let connected = 0;
  const setup = (conn) => {
    conn.node = ports.indexOf(conn.port);
    conn.seen = new Uint8Array(count);
    conn.got = 0;
    conn.onEvent = (c, data) => {
      const text = data.toString("latin1");
      if (!text.startsWith('42["tick"')) return;
      const i = parseInt(text.slice(text.indexOf(",") + 1), 10);
      if (i < 0) {
        warmDelivered++;
        return;
      }
      if (i >= count || c.seen[i]) {
        duplicates++;
        return;
      }
      if (i !== c.got) outOfOrder++;
      c.seen[i] = 1;
      c.got++;
      delivered++;
      const node = perNode[c.node];
      node.delivered++;
      node.last = performance.now();
      if (++tickGot[i] === connected && onTickComplete) onTickComplete(i);
      if (delivered === connected * count && allDone) allDone();
    };
  };
  const { conns, failures } = await openMany(n, 100, setup, (index) => ports[nodeOf(index)]);
  connected = conns.length;
  const total = conns.length * count;
  const trigger = conns.find((c) => c.node === 0) ?? conns[0];
  for (const conn of conns) perNode[conn.node].expected += count;
  // Warm-up broadcasts (negative numbers), then the measured ones.
  for (let w = 1; w <= warmups; w++) trigger.ws.send(`42["bcast",${-w}]`);
  const warmDeadline = performance.now() + (cfg.warmupTimeoutMs ?? 10000);
  while (warmDelivered < conns.length * warmups && performance.now() < warmDeadline) await sleep(5);
  await sleep(100);
  const finished = new Promise((resolve) => {
    allDone = resolve;
  });
  const window = new CpuWindow();
  if (kind === "burst") {
    trigger.ws.send(`42["burst",${count}]`);
  } else if (kind === "tick") {
    onTickComplete = (i) => {
      if (i + 1 < count) trigger.ws.send(`42["bcast",${i + 1}]`);
    };
    trigger.ws.send('42["bcast",0]');
  } else {
    for (let i = 0; i < count; i++) trigger.ws.send(`42["bcast",${i}]`);
  }
  let timer;
  await Promise.race([finished, new Promise((resolve) => (timer = setTimeout(resolve, cfg.timeoutMs ?? 30000)))]);
  clearTimeout(timer);
  const cpu = window.end();
  const incomplete = conns.filter((c) => c.got !== count).length;
  for (const conn of conns) conn.kill();
  const result = {
    connections: conns.length,
    connect_failures: failures,
    broadcasts: count,
    expected: total,
    delivered,
    lost: total - delivered + failures * count,
    incomplete_connections: incomplete,
    duplicates,
    warmup_delivered: warmDelivered,
    rate: delivered / cpu.seconds,
    // server CPU time over the window / deliveries (a cluster: all its nodes' CPU time)
    us_per_delivery: delivered > 0 ? (cpu.server_cpu * cpu.seconds * 1e6) / delivered : null,
    ...cpu,
  };
  if (ordered) result.out_of_order = outOfOrder;
  if (cfg.ports) {
    perNode.forEach((node, k) => {
      const name = String.fromCharCode(97 + k); // a, b, ...
      const seconds = (node.last - window.t) / 1000;
      result[`delivered_${name}`] = node.delivered;
      result[`lost_${name}`] = node.expected - node.delivered;
      result[`rate_${name}`] = seconds > 0 ? node.delivered / seconds : 0;
    });
  }
  return result;
}

/** Server RSS growth per idle WebSocket connection. */
async function rss() {
  const { conns: n } = cfg;
  const concurrency = cfg.concurrency ?? 100;
  // Warm the server's code paths first, so that first-use costs are not counted.
  const warm = await openMany(20, 20);
  for (const conn of warm.conns) conn.close();
  await sleep(cfg.settleMs ?? 1000);
  const before = rssKiB(cfg.serverPid);
  const t0 = performance.now();
  const { conns, failures } = await openMany(n, concurrency);
  const openSeconds = (performance.now() - t0) / 1000;
  await sleep(cfg.settleMs ?? 1000);
  const after = rssKiB(cfg.serverPid);
  const alive = conns.filter((c) => !c.closed).length;
  for (const conn of conns) conn.kill();
  return {
    connections: conns.length,
    alive,
    connect_failures: failures,
    lost: n - alive,
    rss_before_kib: before,
    rss_after_kib: after,
    kib_per_conn: (after - before) / Math.max(1, conns.length),
    open_seconds: openSeconds,
  };
}

/** Full connects (Engine.IO handshake over WebSocket + Socket.IO CONNECT), then close. */
async function connects() {
  const concurrency = cfg.concurrency ?? 20;
  let measuring = false;
  let stop = false;
  let count = 0;
  let failures = 0;
  async function worker() {
    while (!stop) {
      const conn = new Conn();
      try {
        await conn.open();
        if (measuring) count++;
      } catch (err) {
        failures++;
        noteError(err);
        await sleep(10);
      }
      conn.close();
    }
  }
  const workers = Array.from({ length: concurrency }, worker);
  await sleep(cfg.warmupMs);
  const window = new CpuWindow();
  measuring = true;
  await sleep(cfg.durationMs);
  measuring = false;
  const cpu = window.end();
  stop = true;
  await Promise.race([Promise.all(workers), sleep(CONNECT_TIMEOUT_MS)]);
  return { concurrency, completed: count, connect_failures: failures, lost: failures, rate: count / cpu.seconds, ...cpu };
}

const scenarios = {
  echo: () => requestAck("echo"),
  binary: () => requestAck("binary"),
  broadcast: () => broadcast("broadcast"),
  burst: () => broadcast("burst"),
  tick: () => broadcast("tick"),
  rss,
  connects,
};

try {
  const run = scenarios[cfg.scenario];
  if (!run) throw new Error(`unknown scenario ${cfg.scenario}`);
  const result = await run();
  if (errors.length) result.errors = errors;
  process.stdout.write(JSON.stringify({ scenario: cfg.scenario, ok: true, ...result }) + "\n");
  process.exit(0);
} catch (err) {
  process.stdout.write(JSON.stringify({ scenario: cfg.scenario, ok: false, error: String(err?.stack ?? err) }) + "\n");
  process.exit(1);
}
