"""Random identifiers: session ids, socket ids."""

from __future__ import annotations

import base64
import os
import threading

__all__ = ["random_id"]

_POOL_SIZE = 3840  # 256 ids of 15 bytes per refill


class _Pool(threading.local):
    """Random bytes not handed out yet, per thread (so that no two ids share bytes)."""

    data = b""
    offset = 0


_pool = _Pool()


def random_id(nbytes: int = 15) -> str:
    """``nbytes`` random bytes from the operating system's CSPRNG, URL-safe base64 encoded
    (20 characters for the default 15 bytes, 120 bits): what ``secrets.token_urlsafe(15)``
    gives, with the random bytes fetched from the system a few kilobytes at a time instead
    of one system call per id. Every byte is used once.
    """
    pool = _pool
    offset = pool.offset
    if offset + nbytes > len(pool.data):
        pool.data, offset = os.urandom(max(_POOL_SIZE, nbytes)), 0
    pool.offset = offset + nbytes
    chunk = pool.data[offset : offset + nbytes]
    return base64.urlsafe_b64encode(chunk).rstrip(b"=").decode("ascii")
