"""No module of ``trio_sio/client`` or ``trio_sio/engineio`` reaches itself through its
imports: every import counts, those under ``if TYPE_CHECKING:`` and inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import trio_sio

PACKAGE = Path(trio_sio.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    modules: dict[str, tuple[Path, bool]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module → the trio_sio modules it imports (``from pkg import sub`` counts as ``sub``
    when that is a module, else as ``pkg``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        edges.add(sub)
                    elif target in modules:
                        edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_circle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path of imports from ``start`` back to itself, if there is one."""
    stack = [(nxt, [start, nxt]) for nxt in sorted(graph[start])]
    seen: set[str] = set()
    while stack:
        module, path = stack.pop()
        if module == start:
            return path
        if module in seen:
            continue
        seen.add(module)
        stack.extend((nxt, [*path, nxt]) for nxt in sorted(graph.get(module, ())))
    return None


def test_the_graph_sees_type_only_and_function_level_imports() -> None:
    graph = import_graph()
    # type-only: under TYPE_CHECKING in _parts.py
    assert {"trio_sio.client._options", "trio_sio.client._link"} <= graph["trio_sio.client._parts"]
    # inside a function: Server.instrument imports the admin package when called
    assert "trio_sio.admin" in graph["trio_sio.server.server"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}, "a") is None


def test_no_import_circle_in_the_client_and_engineio() -> None:
    graph = import_graph()
    circles = []
    for module in sorted(graph):
        if not module.startswith(("trio_sio.client", "trio_sio.engineio")):
            continue
        path = find_circle(graph, module)
        if path is not None:
            circles.append(" -> ".join(path))
    assert circles == []
