"""Queue backends.  ``Memory`` is the default; every backend implements :class:`Queue`."""

from .base import FailedJob, Job, Owner, Queue, Reply
from .memory import Memory
from .sqlite import SQLite

__all__ = ["FailedJob", "Job", "Memory", "Owner", "Queue", "Reply", "SQLite"]
