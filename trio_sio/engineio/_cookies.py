"""A small cookie jar for the client's requests (RFC 6265, the parts a load balancer uses).

The client keeps the cookies the server (or a proxy in front of it) sets, and sends them back
with every later request to the same host, as a browser and python-socketio's ``http_session``
do: a cookie-sticky load balancer (HAProxy ``cookie ... insert``, AWS ALB's ``AWSALB``) sends
each request of a session to the node that opened it only if the cookie comes back.

Kept: ``name=value`` with ``Path``, ``Max-Age``, ``Expires`` (kept until that date; a date
in the past deletes the cookie; ``Max-Age`` wins over it) and ``Secure``. ``Domain`` is
honoured for the host itself and its subdomains. The jar is bounded (``MAX_COOKIES``
cookies, ``MAX_COOKIE_SIZE`` bytes each); a cookie beyond a bound is ignored.
Expiry uses Trio's clock, so it runs in virtual time in tests.
"""

from __future__ import annotations

import datetime
import email.utils
import time
from dataclasses import dataclass
from typing import Final

import trio

__all__ = ["CookieJar"]

#: Cookies kept at most (new ones beyond that are ignored).
MAX_COOKIES: Final = 64
#: The longest ``Set-Cookie`` value accepted.
MAX_COOKIE_SIZE: Final = 4096


@dataclass(slots=True)
class _Cookie:
    name: str
    value: str
    domain: str  # lower-cased, no leading dot
    host_only: bool
    path: str
    secure: bool
    expires: float | None  # on Trio's clock, or None for a session cookie


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside Trio (a test, or a sync caller)
        return time.monotonic()


def _default_path(request_path: str) -> str:
    path = request_path.split("?", 1)[0]
    if not path.startswith("/") or path.count("/") <= 1:
        return "/"
    return path[: path.rfind("/")]


def _path_matches(request_path: str, cookie_path: str) -> bool:
    path = request_path.split("?", 1)[0] or "/"
    if path == cookie_path:
        return True
    if path.startswith(cookie_path):
        return cookie_path.endswith("/") or path[len(cookie_path)] == "/"
    return False


def _domain_matches(host: str, domain: str) -> bool:
    return host == domain or (host.endswith("." + domain) and not host.replace(".", "").isdigit())


class CookieJar:
    """The cookies of one client, across its reconnections.

    Not tied to one task: every request of the client reads and updates the same jar.
    """

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], _Cookie] = {}

    def __len__(self) -> int:
        self._expire()
        return len(self._cookies)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self._cookies.values())

    def clear(self) -> None:
        """Forget every cookie."""
        self._cookies.clear()

    def header(self, host: str, path: str, *, secure: bool) -> str | None:
        """The ``Cookie`` header value for a request, or None when no cookie applies."""
        self._expire()
        host = host.lower()
        found = [
            c
            for c in self._cookies.values()
            if (c.domain == host if c.host_only else _domain_matches(host, c.domain))
            and _path_matches(path, c.path)
            and (secure or not c.secure)
        ]
        if not found:
            return None
        found.sort(key=lambda c: -len(c.path))  # longer paths first (RFC 6265 5.4)
        return "; ".join(f"{c.name}={c.value}" for c in found)

    def update(self, host: str, path: str, headers: tuple[tuple[str, str], ...]) -> None:
        """Take the ``Set-Cookie`` fields of a response (names lower-cased) to a request
        for ``host`` and ``path``."""
        for name, value in headers:
            if name == "set-cookie":
                self.set_cookie(host, path, value)

    def set_cookie(self, host: str, path: str, text: str) -> None:
        """Store one ``Set-Cookie`` value; malformed or oversized ones are ignored."""
        if len(text) > MAX_COOKIE_SIZE:
            return
        first, *attributes = text.split(";")
        name, sep, value = first.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            return
        host = host.lower()
        domain, host_only = host, True
        cookie_path = _default_path(path)
        secure = False
        expires: float | None = None
        max_age_seen = False
        for attribute in attributes:
            key, _, arg = attribute.partition("=")
            key, arg = key.strip().lower(), arg.strip()
            if key == "domain" and arg:
                wanted = arg.lstrip(".").lower()
                if not _domain_matches(host, wanted):
                    return  # a cookie for another site: refused (RFC 6265 5.3 step 6)
                domain, host_only = wanted, False
            elif key == "path" and arg.startswith("/"):
                cookie_path = arg
            elif key == "secure":
                secure = True
            elif key == "max-age":
                try:
                    seconds = int(arg)
                except ValueError:
                    continue
                expires, max_age_seen = _now() + seconds, True
            elif key == "expires" and not max_age_seen:
                try:
                    when = email.utils.parsedate_to_datetime(arg)
                except (TypeError, ValueError, IndexError):
                    continue
                if when.tzinfo is None:  # "-0000": a date in UTC
                    when = when.replace(tzinfo=datetime.UTC)
                # Kept until then, counted on Trio's clock from now (a date in the past
                # deletes the cookie).
                expires = _now() + (when.timestamp() - time.time())
        key3 = (domain, cookie_path, name)
        if expires is not None and expires <= _now():
            self._cookies.pop(key3, None)
            return
        if key3 not in self._cookies and len(self._cookies) >= MAX_COOKIES:
            self._expire()
            if len(self._cookies) >= MAX_COOKIES:
                return
        self._cookies[key3] = _Cookie(name, value, domain, host_only, cookie_path, secure, expires)

    def _expire(self) -> None:
        now = _now()
        for key, cookie in list(self._cookies.items()):
            if cookie.expires is not None and cookie.expires <= now:
                del self._cookies[key]
