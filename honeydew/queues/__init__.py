"""Queue backends.  ``Memory`` is the default; every backend implements :class:`Queue`."""

from .base import Job, Owner, Queue, Reply
from .memory import Memory

__all__ = ["Job", "Memory", "Owner", "Queue", "Reply"]
