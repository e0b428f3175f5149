"""The ``stall`` marker: the slow-consumer acceptance tests, a minute of real time each.

Select them with ``pytest -m stall``, leave them out with ``pytest -m "not stall"``.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stall: real-time slow-consumer test against a server process (minutes)"
    )
