"""Queue backends.  ``Memory`` is the default; every backend implements :class:`Queue`.

``SQLite`` (the durable queue) is imported on first use, so that ``import honeydew`` does not load
``sqlite3`` for the pools that never touch it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import FailedJob, Job, Owner, Producer, Queue, Reply
from .memory import Memory

if TYPE_CHECKING:
    from .sqlite import SQLite

__all__ = ["FailedJob", "Job", "Memory", "Owner", "Producer", "Queue", "Reply", "SQLite"]


def __getattr__(name: str) -> Any:
    if name == "SQLite":
        from .sqlite import SQLite
        return SQLite
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
