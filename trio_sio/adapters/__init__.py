"""Adapters: where rooms live and where broadcasts go (in-memory by default)."""

from __future__ import annotations

from .base import Adapter as Adapter
from .base import BroadcastOptions as BroadcastOptions
from .memory import InMemoryAdapter as InMemoryAdapter

__all__ = ["Adapter", "BroadcastOptions", "InMemoryAdapter"]
