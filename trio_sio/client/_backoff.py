"""Exponential back-off with jitter, as the official client computes its reconnection delays.

Pure and deterministic given its random source, so it is tested without any clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays ``minimum * factor**attempt``, capped at ``maximum``, each moved up or down by
    a random share (up to ``jitter``) of itself.

    Args:
        minimum: first delay, seconds (JS ``reconnectionDelay``: 1 s).
        maximum: largest delay, seconds (JS ``reconnectionDelayMax``: 5 s).
        factor: growth per attempt (2).
        jitter: randomization factor between 0 and 1 (JS ``randomizationFactor``: 0.5).
        rng: a function returning floats in [0, 1) (``random.random`` by default).
    """

    def __init__(
        self,
        minimum: float = 1.0,
        maximum: float = 5.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if minimum < 0 or maximum < minimum or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need 0 <= minimum <= maximum, factor >= 1, 0 <= jitter <= 1")
        self.minimum = minimum
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self.attempts = 0

    def duration(self) -> float:
        """The next delay, in seconds; each call counts one more attempt."""
        delay = self.minimum * self.factor ** min(self.attempts, 64)
        self.attempts += 1
        if self.jitter:
            draw = self._rng()
            deviation = draw * self.jitter * delay
            # An even tenth of the draw moves down, an odd one up (as backo2 does).
            delay = delay - deviation if int(draw * 10) % 2 == 0 else delay + deviation
        return max(0.0, min(delay, self.maximum))

    def reset(self) -> None:
        """Start again from ``minimum`` (after a successful connection)."""
        self.attempts = 0
