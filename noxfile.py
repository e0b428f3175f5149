"""Developer tasks.

- ``nox -s unit``: the everyday loop, no Node.js, browser, Redis or nginx (about a minute).
- ``nox -s tests``: the whole suite, as CI runs it, under branch coverage. Installs the
  system packages it needs when missing (``tests/setup-system.sh``: nodejs, npm, chromium,
  redis-server, nginx, with apt-get, with sudo when not root); ``TRIO_SIO_NO_APT=1`` skips
  that.
- ``nox -s lint typecheck docs``: the quality gates.
- ``nox -s chat``, ``nox -s game``, ``nox -s chat-cluster``: the examples.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


class _NoUvNotice(logging.Filter):
    """Nox looks for uv even with the venv backend and logs that it is not there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "uv binary not found" not in record.getMessage()


logging.getLogger("nox").addFilter(_NoUvNotice())

INTEROP = "tests/interop"
BENCH = "bench"
#: What ``pytest -m`` leaves out of ``nox -s unit``: tests needing Node.js, Chromium,
#: redis-server or nginx (marked by tests/conftest.py), and the minute-long stall tests.
UNIT_MARKERS = "not external and not stall"


def _npm_ci(session: nox.Session, folder: str) -> None:
    if shutil.which("npm") is None:
        session.error(f"npm is needed in {folder} (install Node.js 18+)")
    session.run("npm", "ci", "--no-audit", "--no-fund", "--prefix", folder, external=True)


def _install(session: nox.Session, *args: str) -> None:
    """``pip install`` ``args`` into the session's virtualenv, once: again only when the
    arguments or the requirement files change (``--reinstall`` forces it)."""
    digest = hashlib.sha256(repr(args).encode())
    for path in [*sorted(Path("requirements").glob("*.txt")), Path("pyproject.toml")]:
        digest.update(path.read_bytes())
    stamp = Path(session.virtualenv.location) / ".trio-sio-installed"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        session.log("requirements already installed (nox --reinstall to force it)")
        return
    session.install(*args)
    session.install("--no-deps", "-e", ".")
    stamp.write_text(digest.hexdigest())


@nox.session
def unit(session: nox.Session) -> None:
    """The quick everyday run: every test that needs no Node.js, Chromium, redis-server or
    nginx (and not the minute-long stall tests). Arguments go to pytest."""
    _install(session, "-r", "requirements/test.txt")
    args = session.posargs or ["-q"]
    session.run("pytest", "-m", UNIT_MARKERS, *args, env={"PYTHONDONTWRITEBYTECODE": "1"})


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite under branch coverage: unit, integration, interop (Node and
    python-socketio peers), browser, Redis and nginx. Installs the system packages it needs
    when missing (tests/setup-system.sh; TRIO_SIO_NO_APT=1 skips that), then the Node
    packages; prints the coverage report, also when a test fails."""
    _install(session, "-r", "requirements/test.txt")
    session.run("sh", "tests/setup-system.sh", external=True)
    _npm_ci(session, INTEROP)
    _npm_ci(session, BENCH)  # for the benchmark's smoke test
    session.run("sh", "tests/browser/setup.sh", external=True)
    args = session.posargs or ["-q"]
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    session.run("coverage", "erase")
    try:
        session.run("coverage", "run", "-m", "pytest", *args, env=env)
    finally:
        session.run("coverage", "report")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("-r", "requirements/lint.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "trio_sio")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, then over a small application that uses it as a
    strictly typed user would (tests/typing/typed_app.py): the public API must type-check
    without Any leaking into the user's code."""
    session.install("-r", "requirements/lint.txt", "-r", "requirements/test.txt")
    session.install("--no-deps", "-e", ".")
    session.run("mypy")
    session.run(
        "mypy", "--strict", "tests/typing/typed_app.py", "tests/typing/test_typed_fixtures.py"
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML documentation; any Sphinx warning is an error."""
    session.install("-r", "requirements/docs.txt", "-r", "requirements/test.txt")
    session.install("--no-deps", "-e", ".")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark trio_sio against python-socketio + uvicorn (and Node socket.io).

    `nox -s bench` runs the full benchmark (a few minutes); `nox -s bench -- --quick` is a
    smoke run; other arguments go to bench/run.py (see bench/README.md).
    """
    session.install("-r", "requirements/test.txt", "-r", "bench/requirements.txt")
    session.install("--no-deps", "-e", ".")
    _npm_ci(session, BENCH)
    session.run("python", "bench/run.py", *session.posargs)


#: What the examples need: trio_sio with the Admin UI's and the Redis adapter's extras, at
#: the versions CI tests (the test stack itself is not needed).
EXAMPLE_REQUIREMENTS = ("-c", "requirements/test.txt", "-e", ".[admin,redis]")


@nox.session
def chat(session: nox.Session) -> None:
    """Set up and run the example chat server on http://127.0.0.1:8000/ (PORT to change;
    arguments go to the server: `nox -s chat -- --admin` adds the Admin UI at /admin/).
    Ctrl+C stops it."""
    _install(session, *EXAMPLE_REQUIREMENTS)
    _npm_ci(session, "examples/chat")
    port = os.environ.get("PORT", "8000")
    session.run(
        "python", "examples/chat/server.py", "--host", "127.0.0.1", "--port", port, *session.posargs
    )


@nox.session
def game(session: nox.Session) -> None:
    """Set up and run the example game server on http://127.0.0.1:8001/ (PORT to change;
    arguments go to the server, e.g. `nox -s game -- --tick-rate 20`). Ctrl+C stops it;
    `python examples/game/bots.py` (in this session's virtualenv) adds bot players."""
    _install(session, *EXAMPLE_REQUIREMENTS)
    _npm_ci(session, "examples/game")
    port = os.environ.get("PORT", "8001")
    session.run(
        "python", "examples/game/server.py", "--host", "127.0.0.1", "--port", port, *session.posargs
    )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@nox.session(name="chat-cluster")
def chat_cluster(session: nox.Session) -> None:
    """Two chat servers sharing a Redis: http://127.0.0.1:8000/ and http://127.0.0.1:8001/.

    Starts its own redis-server (on 6379 if free, else on a free port; nothing is saved to
    disk); Ctrl+C stops all three. Open one page on each port: they chat together.
    """
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        session.error("redis-server is needed (apt-get install redis-server)")
    _install(session, *EXAMPLE_REQUIREMENTS)
    _npm_ci(session, "examples/chat")
    python = os.path.join(session.bin, "python")
    redis_port = 6379
    if not _port_free(redis_port):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            redis_port = sock.getsockname()[1]
    redis_url = f"redis://127.0.0.1:{redis_port}"
    redis_command = [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1"]
    redis_command += ["--save", "", "--appendonly", "no"]
    with tempfile.TemporaryDirectory(prefix="chat-cluster-") as workdir:
        procs = [subprocess.Popen([*redis_command, "--dir", workdir], stdout=subprocess.DEVNULL)]
        try:
            if not _wait_port(redis_port, procs[0]):
                session.error(f"redis-server did not start on port {redis_port}")
            for port in (8000, 8001):
                command = [python, "examples/chat/server.py", "--port", str(port)]
                procs.append(subprocess.Popen([*command, "--redis", redis_url]))
                if not _wait_port(port, procs[-1]):
                    session.error(f"the chat server on port {port} did not start")
            session.log(f"Redis: {redis_url}")
            session.log("chat: http://127.0.0.1:8000/ and http://127.0.0.1:8001/ (Ctrl+C stops)")
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
            session.error("a process of the cluster ended; stopping the others")
        except KeyboardInterrupt:
            session.log("stopping")
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
            for proc in reversed(procs):
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@nox.session
def soak(session: nox.Session) -> None:
    """The full-size churn soak: 5,000 connect/emit/disconnect cycles over loopback TCP, then
    no session, socket or extra task may be left and RSS must stay bounded; the figures are
    printed. Extra arguments go to pytest."""
    session.install("-r", "requirements/test.txt")
    session.install("--no-deps", "-e", ".")
    args = session.posargs or ["-q", "-s"]
    session.run(
        "pytest",
        *args,
        "tests/robustness/test_churn.py",
        env={"TRIO_SIO_SOAK": "full", "PYTHONDONTWRITEBYTECODE": "1"},
    )
