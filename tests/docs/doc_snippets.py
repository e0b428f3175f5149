"""Reading the guides' paired snippets (``Server``, ``Client (Python)``, ``Client
(JavaScript)`` captioned code blocks): shared by test_snippets.py and test_snippets_js.py."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["emitting-events.rst", "cookbook.rst"]

_DIRECTIVE = re.compile(r"^\.\. code-block:: (?P<lang>\w+)\s*$")
_CAPTION = re.compile(r"^\s+:caption: (?P<caption>.+?)\s*$")
_UNDERLINE = re.compile(r"^([=\-~^])\1{2,}\s*$")


@dataclass
class Example:
    page: str
    section: str
    line: int
    server: str = ""
    client: str = ""
    javascript: str = ""
    blocks: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line} ({self.section})"


def code_blocks(path: Path) -> list[tuple[str, int, str, str, str]]:
    """``(section, line, language, caption, code)`` for each captioned code block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    section = ""
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip():
            section = line.strip()
        directive = _DIRECTIVE.match(line)
        if not directive:
            continue
        j = i + 1
        caption = ""
        while j < len(lines) and lines[j].strip().startswith(":"):
            option = _CAPTION.match(lines[j])
            if option:
                caption = option["caption"]
            j += 1
        body = []
        for text in lines[j:]:
            if text.strip() and not text.startswith("   "):
                break
            body.append(text[3:])
        if caption:
            found.append((section, i + 1, directive["lang"], caption, "\n".join(body).strip()))
    return found


def examples() -> list[Example]:
    found: list[Example] = []
    for page in PAGES:
        for section, line, _lang, caption, code in code_blocks(DOCS / page):
            if caption == "Server":
                found.append(Example(page, section, line, server=code))
                continue
            assert found and found[-1].page == page, f"{page}:{line}: a client before a server"
            example = found[-1]
            if caption == "Client (Python)":
                assert not example.client, f"{page}:{line}: two Python clients in a row"
                example.client = code
            elif caption == "Client (JavaScript)":
                example.javascript = code
    return found


EXAMPLES = examples()


def expected_prints(code: str) -> list[str]:
    """What each ``print`` call in ``code`` should print: its comment, or its literal."""
    lines = code.splitlines()
    expected = []
    for node in ast.walk(ast.parse(code)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id != "print":
            continue
        [arg, *rest] = node.args or [None]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not rest:
            expected.append(arg.value)
            continue
        _, _, comment = lines[node.lineno - 1].partition("  # ")
        assert comment, f"print without an expected output: {lines[node.lineno - 1]!r}"
        expected.append(comment.strip())
    return expected


def recorder(out: list[str]) -> Callable[..., None]:
    def fake_print(*args: Any, **kwargs: Any) -> None:
        out.append(" ".join(map(str, args)))

    return fake_print
