"""Queue backends.  ``Memory`` is the default; every backend implements :class:`Queue`."""

from .base import Job, Queue
from .memory import Memory

__all__ = ["Job", "Memory", "Queue"]
