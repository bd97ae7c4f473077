"""The default backend: an in-memory FIFO with delayed jobs.  Lost if its process dies."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any

from .base import Job, Queue


class Memory(Queue):
    """FIFO of ready jobs, a heap of delayed ones, a dict of reservations.

    Every operation is O(1) but delayed jobs (O(log n)).  A cancelled job stays in the deque until
    it reaches the head and is skipped there, so cancelling does not scan the queue."""

    durable = False

    def __init__(self) -> None:
        self._ready: deque[Job] = deque()
        self._delayed: list[tuple[float, int, Job]] = []
        self._pending: dict[str, Job] = {}
        self._reserved: dict[str, Job] = {}
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return "Memory()"

    def enqueue(self, job: Job, ready_at: float = 0.0) -> None:
        if job.id in self._pending or job.id in self._reserved:
            raise ValueError(f"job {job.id} is already in the queue")
        self._pending[job.id] = job
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
                return job
        return None

    def ack(self, job_id: str) -> Job | None:
        return self._reserved.pop(job_id, None)

    def nack(self, job_id: str, ready_at: float = 0.0, *, front: bool = False) -> Job | None:
        job = self._reserved.pop(job_id, None)
        if job is None:
            return None
        self._pending[job.id] = job
        if front:
            self._ready.appendleft(job)
        elif ready_at:
            heapq.heappush(self._delayed, (ready_at, next(self._seq), job))
        else:
            self._ready.append(job)
        return job

    def get_reserved(self, job_id: str) -> Job | None:
        return self._reserved.get(job_id)

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
