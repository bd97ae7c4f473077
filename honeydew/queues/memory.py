"""The default backend: an in-memory FIFO with delayed jobs.  Lost if its process dies.

It lives in its queue process alone: it is not durable and not shared, so it has no dead owner to
recover from and never carries replies between pools (``lacks``)."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from .base import RECOVERY, SHARED, Job, Queue, Reply


class Memory(Queue):
    """FIFO of ready jobs, a heap of delayed ones, a dict of reservations.

    Every operation is O(1) but delayed jobs (O(log n)).  A cancelled job stays in the deque until
    it reaches the head and is skipped there, so cancelling does not scan the queue."""

    durable = False
    lacks: ClassVar[frozenset[str]] = frozenset({SHARED, RECOVERY})

    def __init__(self) -> None:
        self._ready: deque[Job] = deque()
        self._delayed: list[tuple[float, int, Job]] = []
        self._pending: dict[str, Job] = {}
        self._reserved: dict[str, Job] = {}
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return "Memory()"

    def enqueue(self, jobs: Sequence[Job], ready_at: float = 0.0) -> None:
        pending, reserved = self._pending, self._reserved
        for job in jobs:
            if job.id in pending or job.id in reserved:
                continue  # sent again by a caller that could not know we had it
            pending[job.id] = job
            if ready_at:
                heapq.heappush(self._delayed, (ready_at, next(self._seq), job))
            else:
                self._ready.append(job)

    def _promote(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._ready.append(heapq.heappop(delayed)[2])

    def reserve(self, now: float) -> Job | None:
        if self._delayed:
            self._promote(now)
        ready, pending = self._ready, self._pending
        while ready:
            job = ready.popleft()
            if pending.get(job.id) is job:
                del pending[job.id]
                self._reserved[job.id] = job
                job.deliveries += 1
                return job
        return None

    def ack(self, job_ids: Sequence[str], replies: Sequence[Reply] = ()) -> None:
        reserved = self._reserved
        for job_id in job_ids:
            reserved.pop(job_id, None)
        # (replies: nobody else shares this store, so there is no other pool to carry them to)

    def nack(self, job: Job, ready_at: float = 0.0, *, front: bool = False) -> bool:
        held = self._reserved.pop(job.id, None)
        if held is None:
            return False
        if held is not job:
            held.deliveries, held.failures, held.bounces = job.deliveries, job.failures, job.bounces
            job = held
        self._pending[job.id] = job
        if front:
            self._ready.appendleft(job)
        elif ready_at:
            heapq.heappush(self._delayed, (ready_at, next(self._seq), job))
        else:
            self._ready.append(job)
        return True

    def cancel(self, job_id: str) -> Job | None:
        return self._pending.pop(job_id, None)

    def is_pending(self, job_id: str) -> bool:
        return job_id in self._pending

    def next_ready_in(self, now: float) -> float | None:
        delayed, pending = self._delayed, self._pending
        while delayed and pending.get(delayed[0][2].id) is not delayed[0][2]:
            heapq.heappop(delayed)  # cancelled while delayed
        if not delayed:
            return None
        return max(0.0, delayed[0][0] - now)

    def take_pending(self) -> list[Job]:
        jobs = list(self._pending.values())
        self._pending.clear()
        self._ready.clear()
        self._delayed.clear()
        return jobs

    def __len__(self) -> int:
        return len(self._pending)

    def status(self) -> dict[str, Any]:
        delayed = sum(1 for _, _, j in self._delayed if self._pending.get(j.id) is j)
        return {"pending": len(self._pending), "delayed": delayed, "reserved": len(self._reserved)}
