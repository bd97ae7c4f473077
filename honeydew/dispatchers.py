"""Dispatchers choose which idle worker gets the next job.  Pure data structures.

The queue process holds one dispatcher.  A worker's credits (how many more jobs it can take) are
checked in one unit at a time; :meth:`Dispatcher.check_out` takes one unit from the worker the
policy prefers.  Only workers with credit are ever chosen, so a job never waits behind a busy
worker while another is idle.
"""

from __future__ import annotations

import abc
from collections import deque


class Dispatcher(abc.ABC):
    """The contract.  Workers are identified by an ``int`` slot number."""

    @abc.abstractmethod
    def check_in(self, worker: int, credits: int = 1) -> None:
        """``worker`` can take ``credits`` more jobs.  Raises ``ValueError`` if ``credits < 1``."""

    @abc.abstractmethod
    def check_out(self) -> int | None:
        """Take one credit from the preferred worker and return it; ``None`` if nobody is idle."""

    @abc.abstractmethod
    def remove(self, worker: int) -> int:
        """Forget every credit of ``worker`` (it died or left); returns how many there were."""

    @abc.abstractmethod
    def credits(self, worker: int) -> int:
        """How many credits ``worker`` holds."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Total credits held, over all workers."""


class _Deque(Dispatcher):
    def __init__(self) -> None:
        self._units: deque[int] = deque()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def check_in(self, worker: int, credits: int = 1) -> None:
        if credits < 1:
            raise ValueError(f"credits must be >= 1, got {credits}")
        self._units.extend([worker] * credits)

    def remove(self, worker: int) -> int:
        before = len(self._units)
        self._units = deque(w for w in self._units if w != worker)
        return before - len(self._units)

    def credits(self, worker: int) -> int:
        return self._units.count(worker)

    def __len__(self) -> int:
        return len(self._units)


class LRU(_Deque):
    """Least recently used first: jobs spread evenly over the idle workers (the default)."""

    def check_out(self) -> int | None:
        return self._units.popleft() if self._units else None


class MRU(_Deque):
    """Most recently used first: jobs go to the warmest worker (good for caches); the others idle."""

    def check_out(self) -> int | None:
        return self._units.pop() if self._units else None
