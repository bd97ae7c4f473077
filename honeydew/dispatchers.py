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


class _Rotation(Dispatcher):
    """Workers in a rotation, each with a credit count; O(workers) at worst, O(1) typically."""

    def __init__(self) -> None:
        self._order: deque[int] = deque()   # workers holding credit, least recently used first
        self._credits: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def check_in(self, worker: int, credits: int = 1) -> None:
        if credits < 1:
            raise ValueError(f"credits must be >= 1, got {credits}")
        held = self._credits.get(worker, 0)
        self._credits[worker] = held + credits
        if held:
            self._order.remove(worker)
        self._order.append(worker)  # it just came back: the most recently used

    def _take(self, worker: int) -> int:
        left = self._credits[worker] - 1
        if left:
            self._credits[worker] = left
        else:
            del self._credits[worker]
        return worker

    def remove(self, worker: int) -> int:
        held = self._credits.pop(worker, 0)
        if held:
            self._order.remove(worker)
        return held

    def credits(self, worker: int) -> int:
        return self._credits.get(worker, 0)

    def __len__(self) -> int:
        return sum(self._credits.values())


class LRU(_Rotation):
    """Least recently used first: jobs spread evenly over the idle workers (the default)."""

    def check_out(self) -> int | None:
        if not self._order:
            return None
        worker = self._order.popleft()
        if self._credits[worker] > 1:
            self._order.append(worker)  # still has credit: to the back of the rotation
        return self._take(worker)


class MRU(_Rotation):
    """Most recently used first: jobs go to the warmest worker (good for caches); the others idle."""

    def check_out(self) -> int | None:
        if not self._order:
            return None
        worker = self._order[-1]
        if self._credits[worker] == 1:
            self._order.pop()
        return self._take(worker)
