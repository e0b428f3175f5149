"""Plain files served next to the Engine.IO endpoint (``static_files``), by both front ends."""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Mapping

import trio

from ..engineio.config import HttpResponse, RequestHead

__all__ = ["StaticFiles", "not_found", "static_response"]

log = logging.getLogger("trio_sio.frontends")

#: URL path -> file.
StaticFiles = Mapping[str, str | os.PathLike[str]]


def not_found() -> HttpResponse:
    """A plain 404."""
    return HttpResponse(404, [("Content-Type", "text/plain")], b"Not Found")


async def static_response(files: StaticFiles | None, head: RequestHead) -> HttpResponse | None:
    """The file of ``files`` for a GET/HEAD of its path, or None if none is mapped there.

    A mapped file that cannot be read is answered 404 (and logged as a warning: it is a
    configuration error, but any client can make it show). The content type comes from the
    file name.
    """
    name = (files or {}).get(head.path)
    if name is None or head.method not in ("GET", "HEAD"):
        return None
    try:
        body = await trio.Path(name).read_bytes()
    except OSError as exc:
        log.warning("static file for %s cannot be read: %s", head.path, exc)
        return not_found()
    kind = mimetypes.guess_type(str(name))[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        kind += "; charset=utf-8"
    headers = [("Content-Type", kind), ("Cache-Control", "no-cache")]
    return HttpResponse(200, headers, body)
