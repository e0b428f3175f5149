"""Shared fixtures of the ASGI tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test on any ERROR record of a ``trio_sio`` logger in this process (servers
    run by Hypercorn processes are checked on their stderr)."""
    caplog.set_level(logging.INFO, logger="trio_sio")
    yield
    errors = [
        record
        for record in caplog.get_records("call")
        if record.name.startswith("trio_sio") and record.levelno >= logging.ERROR
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
