"""Developer tasks: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s chat`."""

from __future__ import annotations

import os
import shutil

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
    """Set up and run the example chat server on http://127.0.0.1:8000/ (PORT to change)."""
    session.install("-r", "requirements/test.txt")
    session.install("--no-deps", "-e", ".")
    _npm_ci(session, "examples/chat")
    port = os.environ.get("PORT", "8000")
    session.run("python", "examples/chat/server.py", "--host", "127.0.0.1", "--port", port)
