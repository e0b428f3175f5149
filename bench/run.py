"""Benchmark trio_sio's standalone server against python-socketio (ASGI under uvicorn).

    python bench/run.py                 # full run: 3 interleaved rounds, a few minutes
    python bench/run.py --quick         # tiny sizes, one round: a smoke run
    python bench/run.py --only trio_sio --scenarios echo1,broadcast
    python bench/run.py --only trio_sio,node --scenarios redis-broadcast   # 2 nodes + Redis

Each server runs in a fresh process per measurement, pinned to one core; the load generator
(``bench/loadgen.mjs``, Node + ``ws``, raw Engine.IO/Socket.IO frames) runs on another core.
For every scenario the servers take turns (A, B, A, B, ...), and the table shows the medians
over the rounds with the ratio trio_sio / python-socketio. The server's and the generator's
CPU use (from /proc/<pid>/stat over the measured window) is printed too: a generator near
100% of its core means the numbers measure the generator, not the server.

Everything listens on 127.0.0.1 only; every step has a time limit, and every child process is
killed when this script exits (also when it is killed: the children get SIGKILL then).

Needs: Node.js 18+ with ``npm ci --prefix bench``; for python-socketio: ``pip install -r
bench/requirements.txt``; the Node reference column needs the same npm install (skip it with
``--only trio_sio,python-socketio``). ``--profile DIR`` records trio_sio with py-spy. The
cluster scenario (``redis-broadcast``, not run unless named or ``--quick``) needs
redis-server.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import dataclasses
import importlib.util
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS_DIR = HERE / "servers"
LOADGEN = HERE / "loadgen.mjs"
NODE_MODULES = HERE / "node_modules"

#: seconds a server has to print its port.
START_TIMEOUT = 20.0


# -- scenarios ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scenario:
    key: str
    loadgen: dict[str, Any]  # the generator's config (without port/pid)
    hard_timeout: float  # seconds
    nodes: int = 1  # more: a cluster of that many server processes sharing a redis-server


#: Scenarios run only when named in --scenarios (they need more than the others: Redis).
OPT_IN = {"redis-broadcast"}
#: Servers run only when named in --only: the extra row of python-socketio on plain asyncio
#: (its users' best setup, uvicorn[standard], is the baseline).
OPT_IN_SERVERS = {"python-socketio-asyncio"}


def broadcasts(quick: bool, big: int) -> list[Scenario]:
    """The broadcast scenarios: 1,000 sockets and ``big`` (10,000 unless the open-files limit
    is lower) in three patterns (see loadgen.mjs): ``broadcast`` (one client sends that many
    separate ``bcast`` events), ``burst`` (one ``burst`` event: one handler emits them in a
    loop) and ``tick`` (``bcast(i)`` once every socket has tick i - 1).

    With 10,000 sockets, 20 broadcasts (10 ticks): at 27ec2b5 trio_sio took about 35 s for
    20 to 10,000 sockets and 60 s for 10 ticks on a busy 2-core machine; the time limits
    leave room for that, 3 rounds of 3 servers stay within minutes per scenario.
    """
    out = []
    for suffix, conns, counts, warmups, timeout_ms, hard in (
        ("", 1000, (100, 100, 100), 3, 30_000, 60),
        ("10k", big, (20, 20, 10), 2, 120_000, 300),
    ):
        for kind, count in zip(("broadcast", "burst", "tick"), counts, strict=True):
            config = {
                "scenario": kind,
                "conns": conns,
                "count": count,
                "warmups": warmups,
                "warmupTimeoutMs": max(10_000, timeout_ms // 4),
                "timeoutMs": timeout_ms,
            }
            if quick:
                config.update(
                    conns=50 if suffix == "" else 100,
                    count=20 if suffix == "" else 5,
                    warmupTimeoutMs=10_000,
                    timeoutMs=10_000,
                )
            out.append(Scenario(kind + suffix, config, 60 if quick else hard))
    return out


#: Sockets in the 10k scenarios (fewer if the open-files limit is too low for them).
BIG = 10_000
#: The scenarios whose result is a broadcast's deliveries (rate, server CPU per delivery).
BROADCASTS = {"broadcast", "burst", "tick", "broadcast10k", "burst10k", "tick10k"}


def scenarios(quick: bool, rss_conns: int, big: int = BIG) -> dict[str, Scenario]:
    warm, window = (100, 300) if quick else (400, 1500)
    conns_echo = 10 if quick else 50
    return {
        s.key: s
        for s in (
            Scenario(
                "echo1",
                {
                    "scenario": "echo",
                    "conns": conns_echo,
                    "depth": 1,
                    "warmupMs": warm,
                    "durationMs": window,
                },
                30,
            ),
            Scenario(
                "echo8",
                {
                    "scenario": "echo",
                    "conns": conns_echo,
                    "depth": 8,
                    "warmupMs": warm,
                    "durationMs": window,
                },
                30,
            ),
            *broadcasts(quick, big),
            Scenario(
                "redis-broadcast",
                {
                    "scenario": "broadcast",
                    "conns": 50 if quick else 1000,  # half on each node
                    "count": 20 if quick else 100,
                    "warmups": 3,
                    "timeoutMs": 10000 if quick else 30000,
                },
                60,
                nodes=2,
            ),
            Scenario(
                "rss",
                {
                    "scenario": "rss",
                    "conns": rss_conns,
                    "concurrency": 50 if quick else 200,
                    "settleMs": 200 if quick else 700,
                },
                90,
            ),
            Scenario(
                "connects",
                {
                    "scenario": "connects",
                    "concurrency": 5 if quick else 20,
                    "warmupMs": warm,
                    "durationMs": window,
                },
                30,
            ),
            Scenario(
                "binary",
                {
                    "scenario": "binary",
                    "conns": 2 if quick else 4,
                    "depth": 2,
                    "size": 65536,
                    "warmupMs": warm,
                    "durationMs": window,
                },
                30,
            ),
        )
    }


# -- servers --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ServerKind:
    key: str
    title: str
    command: Callable[[], list[str]]
    available: Callable[[], str | None]  # None when it can run, else why not
    # a node of a cluster, given the Redis URL (None: no cluster scenario for this server)
    cluster_command: Callable[[str], list[str]] | None = None
    cluster_available: Callable[[], str | None] = lambda: None


def _python_module_missing(*modules: str) -> str | None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"missing Python modules: {', '.join(missing)}" if missing else None


def _node_missing(*packages: str) -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    missing = [p for p in packages if not (NODE_MODULES / p / "package.json").exists()]
    if missing:
        return f"run `npm ci --prefix bench` (missing {', '.join(missing)})"
    return None


SERVERS = {
    s.key: s
    for s in (
        ServerKind(
            "trio_sio",
            "trio_sio",
            lambda: [sys.executable, str(SERVERS_DIR / "trio_sio_server.py")],
            lambda: _python_module_missing("trio_sio", "trio", "trio_websocket", "h11"),
            lambda url: [sys.executable, str(SERVERS_DIR / "trio_sio_server.py"), "--redis", url],
            lambda: _python_module_missing("coredis", "msgpack"),
        ),
        ServerKind(
            "python-socketio",
            "python-socketio + uvicorn[standard] (uvloop, httptools)",
            lambda: [
                sys.executable,
                str(SERVERS_DIR / "pysio_server.py"),
                *("--loop", "uvloop", "--http", "httptools"),
            ],
            lambda: _python_module_missing(
                "socketio", "engineio", "uvicorn", "uvloop", "httptools"
            ),
        ),
        ServerKind(
            "python-socketio-asyncio",
            "python-socketio + uvicorn (plain asyncio, h11)",
            lambda: [
                sys.executable,
                str(SERVERS_DIR / "pysio_server.py"),
                *("--loop", "asyncio", "--http", "h11"),
            ],
            lambda: _python_module_missing("socketio", "engineio", "uvicorn"),
        ),
        ServerKind(
            "node",
            "Node socket.io",
            lambda: ["node", str(SERVERS_DIR / "node_server.mjs")],
            lambda: _node_missing("socket.io"),
            lambda url: ["node", str(SERVERS_DIR / "node_server.mjs"), "0", "--redis", url],
            lambda: _node_missing("@socket.io/redis-adapter", "redis"),
        ),
    )
}


# -- child processes ------------------------------------------------------------------------
_children: list[subprocess.Popen[bytes]] = []
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup(cpu: int | None) -> Callable[[], None]:
    def setup() -> None:
        # Die with this script, whatever ends it; run on the given core.
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


def _spawn(command: list[str], cpu: int | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    # preexec_fn is safe here: this script starts no threads.
    setup = _child_setup(cpu)
    proc = subprocess.Popen(command, preexec_fn=setup, cwd=ROOT, **kwargs)  # noqa: PLW1509
    _children.append(proc)
    return proc


def _stop(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc in _children:
        _children.remove(proc)


def _stop_all() -> None:
    for proc in list(_children):
        with contextlib.suppress(Exception):
            _stop(proc, grace=1.0)


def _on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class _LineReader:
    """Lines from a pipe, with a timeout, without a thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def readline(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                return b""
            chunk = os.read(self._fd, 4096)
            if not chunk:
                break
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


@contextlib.contextmanager
def running_server(
    kind: ServerKind, cpu: int | None, log_dir: Path, command: list[str] | None = None
) -> Iterator[tuple[int, int]]:
    """Start a server (``kind.command()`` unless ``command``); yield (pid, port); stop it."""
    stderr_path = log_dir / f"{kind.key}.stderr.log"
    with stderr_path.open("ab") as stderr:
        proc = _spawn(
            command or kind.command(),
            cpu,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdout is not None
    reader = _LineReader(proc.stdout.fileno())
    try:
        first = reader.readline(START_TIMEOUT)
        if not first.strip().isdigit():
            tail = stderr_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{kind.key} server did not start: {first!r}\n{tail}")
        if kind.key == "python-socketio":
            with contextlib.suppress(ValueError):
                STACK_INFO.update(json.loads(reader.readline(START_TIMEOUT)))
        yield proc.pid, int(first)
    finally:
        _stop(proc)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_redis(cpu: int | None, log_dir: Path) -> Iterator[tuple[int, str]]:
    """Start a fresh redis-server (nothing saved to disk); yield (pid, url); stop it."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed")
    port = _free_port()
    command = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(log_dir)]
    command += ["--logfile", str(log_dir / "redis.log")]
    proc = _spawn(command, cpu, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield proc.pid, f"redis://127.0.0.1:{port}"
    finally:
        _stop(proc)


STACK_INFO: dict[str, Any] = {}
PROFILE_NATIVE = False


def run_loadgen(config: dict[str, Any], cpu: int | None, timeout: float) -> dict[str, Any]:
    config = {**config, "hardTimeoutMs": int(timeout * 1000)}
    proc = _spawn(
        ["node", str(LOADGEN), json.dumps(config)],
        cpu,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        _stop(proc, grace=0.5)
        return {"ok": False, "error": "load generator timed out"}
    finally:
        if proc in _children:
            _children.remove(proc)
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            if not result.get("ok"):
                result["stderr"] = err.decode(errors="replace")[-2000:]
            return result
    return {"ok": False, "error": f"no result (exit {proc.returncode})", "stderr": err.decode()}


@contextlib.contextmanager
def profiling(pid: int, out: Path | None, cpu: int | None) -> Iterator[None]:
    """Record the process with py-spy (raw collapsed stacks) while the block runs.

    py-spy pauses the process for each sample (accurate stacks); with PROFILE_NATIVE set, C
    frames (system calls, the garbage collector, json) are recorded too, at a lower rate.
    """
    if out is None:
        yield
        return
    spy = _spawn(
        [
            *("py-spy", "record", "--pid", str(pid), "--format", "raw", "--output", str(out)),
            *("--function", "--idle"),
            *(("--native", "--rate", "100") if PROFILE_NATIVE else ("--rate", "200")),
        ],
        cpu,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(10)
        except subprocess.TimeoutExpired:
            _stop(spy)
        if spy in _children:
            _children.remove(spy)


def measure(
    kind: ServerKind,
    *,
    scenario: Scenario,
    server_cpu: int | None,
    gen_cpu: int | None,
    log_dir: Path,
    clk_tck: int,
    profile: Path | None,
) -> dict[str, Any]:
    """One run: a fresh server, the load generator against it, then the server stopped."""
    if scenario.nodes > 1:
        return measure_cluster(
            kind,
            scenario=scenario,
            server_cpu=server_cpu,
            gen_cpu=gen_cpu,
            log_dir=log_dir,
            clk_tck=clk_tck,
        )
    try:
        with running_server(kind, server_cpu, log_dir) as (pid, port):
            config = {
                **scenario.loadgen,
                "port": port,
                "serverPid": pid,
                "clkTck": clk_tck,
                "serverCore": server_cpu,
            }
            with profiling(pid, profile, gen_cpu):
                return run_loadgen(config, gen_cpu, scenario.hard_timeout)
    except RuntimeError as exc:
        return {"ok": False, "error": str(exc)}


def measure_cluster(
    kind: ServerKind,
    *,
    scenario: Scenario,
    server_cpu: int | None,
    gen_cpu: int | None,
    log_dir: Path,
    clk_tck: int,
) -> dict[str, Any]:
    """One run of a cluster scenario: a fresh redis-server and ``scenario.nodes`` fresh
    servers sharing it (all on the server's core), the load generator against all of them."""
    assert kind.cluster_command is not None
    try:
        with contextlib.ExitStack() as stack:
            redis_pid, url = stack.enter_context(running_redis(server_cpu, log_dir))
            nodes = [
                stack.enter_context(
                    running_server(kind, server_cpu, log_dir, kind.cluster_command(url))
                )
                for _ in range(scenario.nodes)
            ]
            config = {
                **scenario.loadgen,
                "port": nodes[0][1],
                "ports": [port for _, port in nodes],
                "serverPids": [pid for pid, _ in nodes],
                "redisPid": redis_pid,
                "clkTck": clk_tck,
                "serverCore": server_cpu,
            }
            return run_loadgen(config, gen_cpu, scenario.hard_timeout)
    except RuntimeError as exc:
        return {"ok": False, "error": str(exc)}


# -- reporting ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    scenario: str
    field: str
    fmt: str
    lower_is_better: bool = False
    per_cpu: bool = True  # in the table per server CPU-second


def rows(quick: bool, rss_conns: int, sizes: dict[str, Scenario]) -> list[Row]:
    e = sizes["echo1"].loadgen["conns"]
    bin_ = sizes["binary"].loadgen
    r = sizes["redis-broadcast"]
    return [
        Row(f"echo with ack, {e} conns, 1 in flight: acks/s", "echo1", "rate", "k"),
        Row("  p50 latency, ms", "echo1", "p50_ms", ".2f", True),
        Row("  p99 latency, ms", "echo1", "p99_ms", ".2f", True),
        Row(f"echo with ack, {e} conns, 8 in flight: acks/s", "echo8", "rate", "k"),
        Row("  p50 latency, ms", "echo8", "p50_ms", ".2f", True),
        Row("  p99 latency, ms", "echo8", "p99_ms", ".2f", True),
        *(
            row
            for key in sorted(BROADCASTS, key=list(sizes).index)
            for row in _broadcast_rows(sizes[key])
        ),
        Row(
            f"idle WebSocket connection ({rss_conns:,} open): KiB of RSS each",
            "rss",
            "kib_per_conn",
            ".1f",
            True,
        ),
        Row("connects/s (WebSocket handshake + CONNECT /)", "connects", "rate", "k"),
        Row(
            f"{bin_['size'] // 1024} KiB binary echo ({bin_['conns']} conns, "
            f"{bin_['depth']} in flight): MB/s",
            "binary",
            "mb_per_s",
            ".0f",
        ),
        Row(
            f"broadcast through Redis, {r.nodes} nodes, {r.loadgen['conns']:,} sockets"
            f" ({r.loadgen['count']} broadcasts): deliveries/s",
            r.key,
            "rate",
            "k",
        ),
        # each over its own time to finish; not per CPU (the CPU is both nodes')
        Row("  at the broadcasting node's sockets", r.key, "rate_a", "k", per_cpu=False),
        Row("  at the other node's sockets (through Redis)", r.key, "rate_b", "k", per_cpu=False),
        Row(
            "  CPU of both nodes per delivery, us",
            r.key,
            "us_per_delivery",
            ".1f",
            lower_is_better=True,
            per_cpu=False,
        ),
    ]


def _broadcast_rows(scenario: Scenario) -> list[Row]:
    """A broadcast scenario's rows: deliveries/s, then server CPU per delivery."""
    n, count = scenario.loadgen["conns"], scenario.loadgen["count"]
    what = {
        "broadcast": f"broadcast to {n:,} sockets ({count} bcast events)",
        "burst": f"burst: one handler emits {count} broadcasts to {n:,} sockets",
        "tick": f"tick: {count} broadcasts to {n:,} sockets, each once all got the last",
    }[scenario.loadgen["scenario"]]
    return [
        Row(f"{what}: deliveries/s", scenario.key, "rate", "k"),
        Row(
            "  server CPU per delivery, us",
            scenario.key,
            "us_per_delivery",
            ".1f",
            lower_is_better=True,
            per_cpu=False,
        ),
    ]


def _fmt(value: float | None, fmt: str) -> str:
    if value is None:
        return "—"
    if fmt == "k":
        return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
    return format(value, fmt)


def _median(results: list[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in results if r.get("ok") and isinstance(r.get(field), int | float)]
    return statistics.median(values) if values else None


def table(
    servers: list[str], results: dict[str, dict[str, list[dict[str, Any]]]], row_list: list[Row]
) -> str:
    base = "python-socketio"
    head = ["metric"]
    for key in servers:
        head.append(SERVERS[key].title)
        if key != base and base in servers:
            head.append(f"{key} / {base}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in row_list:
        cells = [row.label + (" (lower is better)" if row.lower_is_better else "")]
        base_value = _median(results.get(base, {}).get(row.scenario, []), row.field)
        for key in servers:
            value = _median(results.get(key, {}).get(row.scenario, []), row.field)
            cells.append(_fmt(value, row.fmt))
            if key != base and base in servers:
                ratio = value / base_value if value is not None and base_value else None
                cells.append("—" if ratio is None else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(
    servers: list[str], results: dict[str, dict[str, list[dict[str, Any]]]], keys: list[str]
) -> str:
    head = ["scenario"] + [f"{SERVERS[k].title}: server / its core busy / loadgen" for k in servers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in keys:
        if scenario == "rss":
            continue
        cells = [scenario]
        for key in servers:
            runs = results.get(key, {}).get(scenario, [])
            server_cpu = _median(runs, "server_cpu")
            core_busy = _median(runs, "server_core_busy")
            gen_cpu = _median(runs, "loadgen_cpu")
            if server_cpu is None or gen_cpu is None:
                cells.append("—")
            else:
                busy = "—" if core_busy is None else f"{core_busy:.0%}"
                cells.append(f"{server_cpu:.0%} / {busy} / {gen_cpu:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def efficiency_table(
    servers: list[str], results: dict[str, dict[str, list[dict[str, Any]]]], row_list: list[Row]
) -> str:
    """Throughput per second of server CPU: steadier than raw rates on a shared machine."""
    base = "python-socketio"
    head = ["per server CPU-second"]
    for key in servers:
        head.append(SERVERS[key].title)
        if key != base and base in servers:
            head.append(f"{key} / {base}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def value(key: str, row: Row) -> float | None:
        runs = [
            {"ok": True, "v": r[row.field] / r["server_cpu"]}
            for r in results.get(key, {}).get(row.scenario, [])
            if r.get("ok") and r.get(row.field) and (r.get("server_cpu") or 0) > 0.05
        ]
        return _median(runs, "v")

    for row in row_list:
        if row.lower_is_better or not row.per_cpu:
            continue
        cells = [row.label]
        base_value = value(base, row)
        for key in servers:
            mine = value(key, row)
            cells.append(_fmt(mine, row.fmt))
            if key != base and base in servers:
                ratio = mine / base_value if mine is not None and base_value else None
                cells.append("—" if ratio is None else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _git_state() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "trio_sio"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" with uncommitted changes in trio_sio/" if dirty else "")


def losses(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, int]:
    """Lost messages (or connections) per server, over every run; failed runs count as 1."""
    totals: dict[str, int] = {}
    for key, by_scenario in results.items():
        total = 0
        for runs in by_scenario.values():
            for r in runs:
                if not r.get("ok"):
                    total += 1
                    continue
                total += int(r.get("lost", 0)) + int(r.get("unexpected", 0))
                total += int(r.get("corrupt", 0)) + int(r.get("duplicates", 0))
                total += int(r.get("out_of_order", 0))
                total += int(r.get("incomplete_connections", 0))
        totals[key] = total
    return totals


def summarize(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        detail = f"{result.get('error')} {result.get('stderr', '')[-500:]}"
        return "FAILED: " + " ".join(detail.split())
    parts = []
    for field, fmt in (
        ("rate", ".0f"),
        ("rate_a", ".0f"),
        ("rate_b", ".0f"),
        ("mb_per_s", ".0f"),
        ("p50_ms", ".2f"),
        ("p99_ms", ".2f"),
        ("us_per_delivery", ".1f"),
        ("kib_per_conn", ".1f"),
        ("connections", "d"),
        ("lost", "d"),
        ("lost_a", "d"),
        ("lost_b", "d"),
        ("out_of_order", "d"),
        ("server_cpu", ".0%"),
        ("redis_cpu", ".0%"),
        ("server_core_busy", ".0%"),
        ("loadgen_cpu", ".0%"),
    ):
        value = result.get(field)
        if isinstance(value, int | float):
            parts.append(f"{field}={format(value, fmt)}")
    if result.get("errors"):
        parts.append(f"errors={result['errors']}")
    return " ".join(parts)


# -- main -----------------------------------------------------------------------------------
def _cluster_ready(kind: ServerKind, scenario: Scenario) -> bool:
    """Whether ``kind`` can run the cluster scenario (says why not on stderr)."""
    if kind.cluster_command is None:
        why: str | None = "no cluster set-up in this benchmark"
    elif shutil.which("redis-server") is None:
        why = "redis-server is not installed"
    else:
        why = kind.cluster_available()
    if why is not None:
        print(f"skipping {kind.key} in {scenario.key}: {why}", file=sys.stderr)
    return why is None


def _cores(no_pin: bool) -> tuple[int | None, int | None, str]:
    allowed = sorted(os.sched_getaffinity(0))
    if no_pin:
        return None, None, "not pinned (--no-pin)"
    if len(allowed) < 2:
        return None, None, f"not pinned: only {len(allowed)} core available"
    note = f"server on core {allowed[0]}, load generator on core {allowed[1]}"
    return allowed[0], allowed[1], note


def _raise_fd_limit(wanted: int) -> tuple[int, str]:
    """Raise the soft open-files limit toward the hard one (every child inherits it); return
    how many connections one process can then hold (at most ``wanted``) and a note."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + 1000)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = max(100, min(wanted, soft - 200))
    return usable, f"open files: soft limit {soft}, hard limit {hard}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trio_sio vs python-socketio benchmark")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke run)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3, quick 1)")
    parser.add_argument(
        "--only",
        help="comma-separated servers: trio_sio,python-socketio,node (the default), and"
        " python-socketio-asyncio (plain asyncio + h11; only when named)",
    )
    parser.add_argument(
        "--scenarios",
        help="comma-separated: echo1,echo8,broadcast,burst,tick,broadcast10k,burst10k,tick10k,"
        "rss,connects,binary (the default), and redis-broadcast (2 nodes sharing a"
        " redis-server; only when named, or with --quick)",
    )
    parser.add_argument("--rss-conns", type=int, help="idle connections (default 10000)")
    parser.add_argument("--json", type=Path, help="write every run's results to this file")
    parser.add_argument("--profile", type=Path, help="py-spy recordings of trio_sio go here")
    parser.add_argument(
        "--profile-native", action="store_true", help="with --profile: C frames too"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_signal)
    started = time.monotonic()
    rss_wanted = args.rss_conns or (200 if args.quick else 10_000)
    usable, fd_note = _raise_fd_limit(max(rss_wanted, BIG))
    rss_conns, big = min(rss_wanted, usable), min(BIG, usable)
    if rss_conns < rss_wanted:
        fd_note += f"; only {rss_conns} idle connections instead of {rss_wanted}"
    if big < BIG and not args.quick:
        fd_note += f"; the 10k scenarios with only {big} sockets"
    sizes = scenarios(args.quick, rss_conns, big)
    if args.scenarios:
        keys = args.scenarios.split(",")
    elif args.quick:  # the smoke run: every scenario (those that cannot run say why)
        keys = list(sizes)
    else:
        keys = [k for k in sizes if k not in OPT_IN]
    unknown = [k for k in keys if k not in sizes]
    if unknown:
        parser.error(f"unknown scenarios: {unknown}")
    rounds = args.rounds or (1 if args.quick else 3)

    if shutil.which("node") is None or _node_missing("ws"):
        print(f"cannot run: {_node_missing('ws')}", file=sys.stderr)
        return 2
    wanted = args.only.split(",") if args.only else [k for k in SERVERS if k not in OPT_IN_SERVERS]
    servers = []
    for key in wanted:
        if key not in SERVERS:
            parser.error(f"unknown server {key!r}")
        why = SERVERS[key].available()
        if why is None:
            servers.append(key)
        else:
            print(f"skipping {key}: {why}", file=sys.stderr)
    if not servers:
        print("no server can run", file=sys.stderr)
        return 2
    if args.profile is not None:
        if shutil.which("py-spy") is None:
            parser.error("--profile needs py-spy (pip install py-spy)")
        args.profile.mkdir(parents=True, exist_ok=True)
        global PROFILE_NATIVE  # noqa: PLW0603
        PROFILE_NATIVE = args.profile_native

    server_cpu, gen_cpu, pin_note = _cores(args.no_pin)
    log_dir = Path(tempfile.mkdtemp(prefix="trio_sio-bench-"))
    clk_tck = os.sysconf("SC_CLK_TCK")
    print(f"# {pin_note}; {fd_note}", file=sys.stderr)

    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in servers}
    try:
        for scenario_key in keys:
            scenario = sizes[scenario_key]
            runnable = servers
            if scenario.nodes > 1:
                runnable = [key for key in servers if _cluster_ready(SERVERS[key], scenario)]
            for round_ in range(1, rounds + 1):
                for key in runnable:
                    result = measure(
                        SERVERS[key],
                        scenario=scenario,
                        server_cpu=server_cpu,
                        gen_cpu=gen_cpu,
                        log_dir=log_dir,
                        clk_tck=clk_tck,
                        profile=args.profile / f"{scenario_key}-round{round_}.txt"
                        if args.profile is not None and key == "trio_sio"
                        else None,
                    )
                    result["round"] = round_
                    results[key].setdefault(scenario_key, []).append(result)
                    print(
                        f"{scenario_key:>9} round {round_} {key:<16} {summarize(result)}",
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _stop_all()

    row_list = [r for r in rows(args.quick, rss_conns, sizes) if r.scenario in keys]
    lost = losses(results)
    elapsed = time.monotonic() - started
    print(f"\n## trio_sio benchmark ({'quick' if args.quick else 'full'}, medians of {rounds})\n")
    print(table(servers, results, row_list))
    print("\nThroughput per second of server CPU (rate / server CPU share; medians):\n")
    print(efficiency_table(servers, results, row_list))
    print(
        "\nCPU over the measured window (medians; share of one core: the server process, its"
        " core\nincluding kernel work done there for anyone, the load generator):\n"
    )
    print(cpu_table(servers, results, keys))
    print()
    print(f"- trio_sio: commit {_git_state()}")
    print(f"- pinning: {pin_note}; {fd_note}")
    if "python-socketio" in servers and STACK_INFO:
        stack = ", ".join(f"{k} {v}" for k, v in STACK_INFO.items())
        print(f"- python-socketio stack: {stack}")
    print(f"- lost messages: {', '.join(f'{k} {v}' for k, v in lost.items())}")
    print(f"- elapsed: {elapsed:.0f} s")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "servers": servers,
                    "rounds": rounds,
                    "results": results,
                    "lost": lost,
                    "stack": STACK_INFO,
                    "pinning": pin_note,
                    "quick": args.quick,
                },
                indent=1,
            )
        )
    failed = any(not r.get("ok") for by in results.values() for runs in by.values() for r in runs)
    if failed:
        print(f"- server logs: {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if failed or any(lost.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
