"""``python -m trio_sio serve module:app``: one server on every core of a host.

::

    python -m trio_sio serve myapp:sio --workers 4 --redis redis://127.0.0.1:6379 --port 8000

starts 4 processes (*workers*) that listen on the same port (``SO_REUSEPORT``: the kernel
spreads new connections between them), each a node of one cluster through the Redis adapter.
``myapp:sio`` names a :class:`~trio_sio.Server` (or a function returning one) in an importable
module. With ``--redis``, the launcher gives it the adapter (``--adapter``: ``classic``,
``streams`` or ``sharded``) in place of the in-memory one it was made with; without it, the
app must bring its own cluster adapter when ``--workers`` is above 1.

Stickiness. A WebSocket-only client holds one TCP connection: any worker serves it. HTTP
long-polling is a series of requests that must all reach the worker that holds the session,
which the kernel's spreading does not do: polling clients need a sticky proxy. For that,
``--port-per-worker`` makes worker *i* listen on ``port + i`` instead, to list in a proxy's
upstream with stickiness (nginx ``ip_hash``; see the Scaling out page).

The launcher restarts a worker that exits (after a second), forwards SIGINT/SIGTERM to every
worker (each closes its connections gracefully: :meth:`~trio_sio.Server.shutdown`) and exits
once they all have.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import trio

__all__ = ["main"]

log = logging.getLogger("trio_sio.launcher")

#: seconds a worker has to close its connections once told to stop
STOP_GRACE = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trio_sio")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve an app, on one or more worker processes")
    serve.add_argument("app", help="module:attribute, a trio_sio.Server or a function making one")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serve.add_argument("--redis", help="Redis URL: the cluster adapter the workers share")
    serve.add_argument(
        "--adapter",
        choices=("classic", "streams", "sharded"),
        default="classic",
        help="with --redis: pub/sub (default), Redis Streams, or sharded pub/sub (a Cluster)",
    )
    serve.add_argument(
        "--port-per-worker",
        action="store_true",
        help="worker i listens on port+i (for a sticky proxy) instead of sharing the port",
    )
    serve.add_argument("--log-level", default="info", help="logging level (default info)")
    # a worker of a launcher (not for users)
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def load_app(spec: str) -> Any:
    """The :class:`~trio_sio.Server` that ``module:attribute`` names (``sio`` by default).

    Raises:
        ValueError: it names no server.
    """
    from .server import Server  # noqa: PLC0415 - importing the server is this command's job

    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "sio", None)
    if app is not None and not isinstance(app, Server) and callable(app):
        app = app()
    if not isinstance(app, Server):
        raise ValueError(f"{spec} is not a trio_sio.Server (nor a function returning one)")
    return app


def _adapter(kind: str, url: str) -> Any:
    if kind == "streams":
        from .adapters.redis_streams import create_adapter as streams  # noqa: PLC0415

        return streams(url)
    if kind == "sharded":
        from .adapters.redis_sharded import create_adapter as sharded  # noqa: PLC0415

        return sharded(url)
    from .adapters.redis import create_adapter  # noqa: PLC0415

    return create_adapter(url)


def use_adapter(sio: Any, factory: Any) -> None:
    """Give ``sio`` (not serving yet, made with the in-memory adapter) a cluster adapter.

    Raises:
        ValueError: it already has another adapter.
    """
    from .adapters.memory import InMemoryAdapter  # noqa: PLC0415

    if sio.adapter_factory is not InMemoryAdapter:
        raise ValueError("--redis: the app already has an adapter of its own")
    sio.adapter_factory = factory
    for namespace in sio._namespaces.values():
        old = namespace.adapter
        namespace.adapter = factory(namespace)
        namespace.adapter.room_listener = old.room_listener
        if sio.connection_state_recovery is not None:
            namespace.adapter.enable_recovery(sio.connection_state_recovery)


async def _serve_worker(sio: Any, host: str, port: int, reuse_port: bool) -> None:
    """Serve until SIGINT/SIGTERM, then close the connections gracefully and return."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def serve(*, task_status: trio.TaskStatus[Any]) -> None:
                await sio.serve(host, port, reuse_port=reuse_port, task_status=task_status)
                nursery.cancel_scope.cancel()  # shut down: stop waiting for signals

            listeners = await nursery.start(serve)
            bound = listeners[0].socket.getsockname()[1]
            print(f"listening on {bound}", flush=True)
            async for _ in signals:
                log.info("stopping: closing the connections")
                sio.shutdown()
                break


def _run_worker(args: argparse.Namespace) -> None:
    sio = load_app(args.app)
    if args.redis:
        use_adapter(sio, _adapter(args.adapter, args.redis))
    index = args.worker_index or 0
    port = args.port + index if args.port_per_worker else args.port
    shared = args.workers > 1 and not args.port_per_worker
    try:
        trio.run(_serve_worker, sio, args.host, port, shared)
    except KeyboardInterrupt:  # pragma: no cover - a signal before the receiver is open
        pass


async def _supervise(argv: Sequence[str], workers: int) -> int:
    """Run the workers; restart one that exits; stop them all on SIGINT/SIGTERM."""
    processes: dict[int, trio.Process] = {}
    stopping = False

    async def keep(index: int) -> None:
        while not stopping:
            command = [*argv, "--worker-index", str(index)]
            process = await trio.lowlevel.open_process(command, stdin=subprocess.DEVNULL)
            processes[index] = process
            log.info("worker %d started (pid %d)", index, process.pid)
            code = await process.wait()
            if stopping:
                return
            log.warning("worker %d exited with %s; restarting it in 1 s", index, code)
            await trio.sleep(1.0)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for index in range(workers):
                nursery.start_soon(keep, index)
            async for _ in signals:
                stopping = True
                break
            for process in processes.values():
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_GRACE):
                for process in processes.values():
                    await process.wait()
            for process in processes.values():
                if process.returncode is None:
                    process.kill()
            nursery.cancel_scope.cancel()
    return 0


def main(arguments: Sequence[str] | None = None) -> int:
    """The command line: ``python -m trio_sio serve module:app [options]``."""
    args = _parser().parse_args(arguments)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.workers == 1 or args.worker_index is not None:
        _run_worker(args)
        return 0
    if not args.redis:
        log.warning("several workers without --redis: the app must bring a cluster adapter")
    argv = [sys.executable, "-m", "trio_sio", "serve", args.app, "--host", args.host]
    argv += ["--port", str(args.port), "--workers", str(args.workers)]
    argv += ["--adapter", args.adapter, "--log-level", args.log_level]
    if args.redis:
        argv += ["--redis", args.redis]
    if args.port_per_worker:
        argv.append("--port-per-worker")
    return trio.run(_supervise, argv, args.workers)
