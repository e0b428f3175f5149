"""Summarize py-spy recordings (``--format raw``) made by ``bench/run.py --profile DIR``.

    python bench/profile_summary.py DIR/echo8-round1.txt [more files...] [--top 15]

Prints, over all the given files: the share of samples in the event loop's epoll wait (idle
time, plus the scheduler's zero-timeout polls between batches of work), then, for the other
samples, the top functions by own time (the sampled leaf frame), the top functions by
inclusive time, and own time grouped by package. Without ``--profile-native``, time in C code
(system calls, the garbage collector, json) shows as own time of the Python function that
called it, or that was running when the collector started.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: A frame is "function (path:line)".
_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
#: Frames of the event loop's wait for I/O: samples ending there are idle time.
_IDLE = ("get_events", "epoll", "select", "poll")
#: Frames every stack has; left out of the inclusive ranking.
_ROOTS = {"<module>", "run", "unrolled_run"}


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    return match["func"], match["path"]


def _package(path: str) -> str:
    parts = path.split("/")
    if len(parts) == 1:
        return parts[0] if parts[0] else "?"
    if parts[0] in ("trio_sio", "trio") and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0]


def load(paths: list[Path]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def is_idle(stack: tuple[str, ...]) -> bool:
    func, path = _parse(stack[-1])
    if func in ("epoll_wait", "epoll_pwait", "select", "poll", "ppoll"):  # native frames
        return True
    return any(word in func for word in _IDLE) and ("_io_" in path or "selectors" in path)


def summarize(stacks: Counter[tuple[str, ...]], top: int) -> str:
    total = sum(stacks.values())
    if total == 0:
        return "no samples"
    idle = sum(n for stack, n in stacks.items() if is_idle(stack))
    busy = total - idle
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for stack, n in stacks.items():
        if is_idle(stack):
            continue
        own[stack[-1]] += n
        packages[_package(_parse(stack[-1])[1])] += n
        for frame in set(stack):
            if _parse(frame)[0] not in _ROOTS:
                inclusive[frame] += n

    def pct(n: int) -> str:
        return f"{100 * n / busy:5.1f}%"

    out = [
        f"samples: {total}; in epoll wait (idle or polling): {100 * idle / total:.1f}%; "
        f"others: {busy} (the percentages below are of these)",
        "",
        f"top {top} by own time:",
    ]
    out += [f"  {pct(n)}  {frame}" for frame, n in own.most_common(top)]
    out += ["", f"top {top} by inclusive time:"]
    out += [f"  {pct(n)}  {frame}" for frame, n in inclusive.most_common(top)]
    out += ["", "own time by package:"]
    out += [f"  {pct(n)}  {name}" for name, n in packages.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarize(load(args.files), args.top))


if __name__ == "__main__":
    main()
