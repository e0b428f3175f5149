"""Developer tasks: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s chat`,
`nox -s chat-cluster`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True

INTEROP = "tests/interop"
BENCH = "bench"


def _npm_ci(session: nox.Session, folder: str) -> None:
    if shutil.which("npm") is None:
        session.error("npm is needed for the interop tests (install Node.js 18+)")
    session.run("npm", "ci", "--no-audit", "--no-fund", "--prefix", folder, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration and interop (Node and python-socketio peers)."""
    session.install("-r", "requirements/test.txt")
    session.install("--no-deps", "-e", ".")
    _npm_ci(session, INTEROP)
    _npm_ci(session, BENCH)  # for the benchmark's smoke test
    # Chromium (from the system's packages, if missing) and the browser tests' Node packages.
    session.run("bash", "tests/browser/setup.sh", external=True)
    args = session.posargs or ["-q"]
    session.run("pytest", *args, env={"PYTHONDONTWRITEBYTECODE": "1"})


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
    session.run("mypy", "--strict", "tests/typing/typed_app.py")


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


@nox.session
def chat(session: nox.Session) -> None:
    """Set up and run the example chat server on http://127.0.0.1:8000/ (PORT to change;
    arguments go to the server: `nox -s chat -- --admin` adds the Admin UI)."""
    session.install("-r", "requirements/test.txt")
    session.install("--no-deps", "-e", ".")
    _npm_ci(session, "examples/chat")
    port = os.environ.get("PORT", "8000")
    session.run(
        "python", "examples/chat/server.py", "--host", "127.0.0.1", "--port", port, *session.posargs
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
    session.install("-r", "requirements/test.txt")
    session.install("--no-deps", "-e", ".")
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
