"""Queue backends.  ``Memory`` is the default; every backend implements :class:`Queue`.

``SQLite`` (the durable queue) and ``RabbitMQ`` (the broker-backed queue, with the ``rabbitmq``
extra) are imported on first use, so that ``import honeydew`` loads neither ``sqlite3`` nor
``pika`` for the pools that never touch them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import FailedJob, Job, Owner, Producer, Queue, Reply
from .memory import Memory

if TYPE_CHECKING:
    from .rabbitmq import RabbitMQ
    from .sqlite import SQLite

__all__ = ["FailedJob", "Job", "Memory", "Owner", "Producer", "Queue", "RabbitMQ", "Reply", "SQLite"]


def __getattr__(name: str) -> Any:
    if name == "SQLite":
        from .sqlite import SQLite
        return SQLite
    if name == "RabbitMQ":
        from .rabbitmq import RabbitMQ  # (raises an ImportError naming the extra when pika is missing)
        return RabbitMQ
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
