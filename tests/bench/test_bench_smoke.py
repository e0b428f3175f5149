"""Smoke run of the benchmark: ``bench/run.py --quick --only trio_sio`` runs every scenario,
each reports a complete result, and nothing is lost, duplicated or out of order. No timing
is asserted here.

Needs ``node`` and ``npm ci --prefix bench``, and ``redis-server`` for the cluster scenario;
skipped without them, except under CI (``CI`` set and not ``false``/``0``), where that is an
error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SCENARIOS = {"echo1", "echo8", "rss", "connects", "binary", "redis-broadcast"}
#: every connection of these must get every broadcast (burst and tick: in order)
BROADCASTS = {"broadcast", "burst", "tick", "broadcast10k", "burst10k", "tick10k"}
ORDERED = {"burst", "tick", "burst10k", "tick10k"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_node_modules() -> None:
    reason = None
    if shutil.which("node") is None:
        reason = "node is not installed"
    elif not (BENCH / "node_modules" / "ws" / "package.json").is_file():
        reason = "bench/node_modules is missing: run `npm ci --prefix bench`"
    elif shutil.which("redis-server") is None:
        reason = "redis-server is not installed (the redis-broadcast scenario needs it)"
    if reason is not None:
        if _in_ci():
            pytest.fail(f"benchmark smoke test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)


def test_quick_benchmark_runs_and_loses_nothing(tmp_path: Path) -> None:
    _require_node_modules()
    out = tmp_path / "bench.json"
    command = [sys.executable, str(BENCH / "run.py"), "--quick", "--only", "trio_sio"]
    proc = subprocess.run(
        [*command, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["servers"] == ["trio_sio"]
    runs = report["results"]["trio_sio"]
    assert set(runs) == SCENARIOS | BROADCASTS
    for scenario, results in runs.items():
        assert results, scenario
        for result in results:
            assert result["ok"], (scenario, result)
            assert result["lost"] == 0, (scenario, result)
            assert not result.get("unexpected") and not result.get("duplicates"), result
            assert not result.get("corrupt"), (scenario, result)
            assert result.get("connect_failures", 0) == 0, (scenario, result)
    for scenario in BROADCASTS | {"redis-broadcast"}:
        result = runs[scenario][0]
        assert result["connections"] > 0, (scenario, result)
        assert result["delivered"] == result["expected"], (scenario, result)
        assert result["expected"] == result["connections"] * result["broadcasts"] > 0, result
        assert result["incomplete_connections"] == 0, (scenario, result)
        assert "us_per_delivery" in result, (scenario, result)
    for scenario in ORDERED:
        assert runs[scenario][0]["out_of_order"] == 0, (scenario, runs[scenario][0])
    cluster = runs["redis-broadcast"][0]
    assert cluster["lost_a"] == cluster["lost_b"] == 0, cluster
    assert cluster["delivered_a"] > 0 and cluster["delivered_b"] > 0, cluster
    assert runs["rss"][0]["alive"] == runs["rss"][0]["connections"] > 0
    assert report["lost"] == {"trio_sio": 0}
    assert "| metric |" in proc.stdout  # the markdown table
    assert "burst: one handler emits" in proc.stdout
    assert "server CPU per delivery, us" in proc.stdout


def test_framing_comparison_runs_and_checks_its_outputs() -> None:
    # bench/ws_framing.py checks every decoded message and encoded frame of both
    # implementations before timing; --quick keeps it to a fraction of a second.
    result = subprocess.run(
        [sys.executable, str(BENCH / "ws_framing.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "websockets/own" in result.stdout


def test_echo_cost_counts_one_task_step_and_one_scheduler_pass_per_echo() -> None:
    # bench/echo_cost.py in its counting mode (a Trio instrument in the server: no timing).
    # One connection, 1 in flight: each echo wakes the server once, is read, handled and
    # answered in that one step of the reading task, and its reply is written before the
    # next poll. A task hop (a send task, a handler task) would make it 2.
    result = subprocess.run(
        [sys.executable, str(BENCH / "echo_cost.py"), "--mode", "trio", "--echoes", "50,150"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    per_echo = {
        line.split()[0]: float(line.split()[1]) for line in result.stdout.strip().splitlines()
    }
    assert per_echo["steps"] == 1.0, per_echo
    assert per_echo["io_waits"] == 1.0, per_echo
