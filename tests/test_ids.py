"""Random ids: the format of ``secrets.token_urlsafe(15)``, never repeated, per thread."""

from __future__ import annotations

import re
import threading

from trio_sio._ids import random_id


def test_ids_look_like_token_urlsafe_and_do_not_repeat() -> None:
    ids = [random_id() for _ in range(10_000)]  # several refills of the pool
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{20}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert re.fullmatch(r"[A-Za-z0-9_-]{6}", random_id(4))  # 4 bytes: 6 characters


def test_threads_never_share_random_bytes() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        out.extend(random_id() for _ in range(2_000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in results for i in out]
    assert len(set(everything)) == len(everything) == 8_000
