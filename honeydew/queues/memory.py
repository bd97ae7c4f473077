"""The default backend: an in-memory FIFO with delayed jobs, priorities and a failed store.  Lost if
its process dies.

It lives in its queue process alone: it is not durable and not shared, so it has no dead owner to
recover from and never carries replies between pools (``lacks``).  Its failed store (``Move``)
lives as long as the queue process does."""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from .base import RECOVERY, SHARED, FailedJob, Job, Queue, Reply


class Memory(Queue):
    """FIFO of ready jobs (one per priority other than 0, beside the default one), a heap of delayed
    ones, a dict of reservations.

    Every operation is O(1) but delayed jobs (O(log n)) and the choice among priorities (O(number
    of distinct priorities)).  A cancelled job stays in its deque until it reaches the head and is
    skipped there, so cancelling does not scan the queue."""

    durable = False
    lacks: ClassVar[frozenset[str]] = frozenset({SHARED, RECOVERY})

    def __init__(self) -> None:
        self._ready: deque[Job] = deque()             # priority 0
        self._other: dict[int, deque[Job]] = {}       # every other priority that has ready jobs
        self._failed: dict[str, FailedJob] = {}       # the failed store, oldest first
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
            elif job.priority:
                self._line(job.priority).append(job)
            else:
                self._ready.append(job)

    def _line(self, priority: int) -> deque[Job]:
        if not priority:
            return self._ready
        line = self._other.get(priority)
        if line is None:
            line = self._other[priority] = deque()
        return line

    def _promote(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            job = heapq.heappop(delayed)[2]
            self._line(job.priority).append(job)

    def reserve(self, now: float) -> Job | None:
        if self._delayed:
            self._promote(now)
        if self._other:
            return self._reserve_by_priority()
        return self._take(self._ready)

    def _take(self, line: deque[Job]) -> Job | None:
        pending = self._pending
        while line:
            job = line.popleft()
            if pending.get(job.id) is job:
                del pending[job.id]
                self._reserved[job.id] = job
                job.deliveries += 1
                return job
        return None

    def _reserve_by_priority(self) -> Job | None:
        other = self._other
        for priority in sorted([*other, 0], reverse=True):
            line = self._ready if priority == 0 else other[priority]
            job = self._take(line)
            if priority and not line:
                del other[priority]
            if job is not None:
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
            self._line(job.priority).appendleft(job)
        elif ready_at:
            heapq.heappush(self._delayed, (ready_at, next(self._seq), job))
        else:
            self._line(job.priority).append(job)
        return True

    def give_up(self, job: Job, failure: tuple[Any, ...], reply: Reply | None = None, *,
                keep: bool = False) -> None:
        self._reserved.pop(job.id, None)
        self._pending.pop(job.id, None)
        if keep:
            self._failed.pop(job.id, None)
            self._failed[job.id] = FailedJob(job.id, job.payload, job.origin, job.timeout, tuple(failure),
                                             job.deliveries, time.time(), job.priority, job.mode)

    def failed(self, limit: int = 100) -> list[FailedJob]:
        return list(itertools.islice(reversed(self._failed.values()), limit))

    def retry_failed(self, ids: Sequence[str] | None = None) -> int:
        chosen = list(self._failed) if ids is None else [i for i in dict.fromkeys(ids) if i in self._failed]
        jobs = []
        for job_id in chosen:
            f = self._failed.pop(job_id)
            jobs.append(Job(f.id, f.payload, f.origin, f.timeout, priority=f.priority, mode=f.mode))
        self.enqueue(jobs)
        return len(jobs)

    def purge_failed(self, ids: Sequence[str] | None = None) -> int:
        if ids is None:
            n = len(self._failed)
            self._failed.clear()
            return n
        return sum(self._failed.pop(i, None) is not None for i in dict.fromkeys(ids))

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
        self._other.clear()
        self._delayed.clear()
        return jobs

    def __len__(self) -> int:
        return len(self._pending)

    def status(self) -> dict[str, Any]:
        delayed = sum(1 for _, _, j in self._delayed if self._pending.get(j.id) is j)
        return {"pending": len(self._pending), "delayed": delayed, "reserved": len(self._reserved),
                "failed_store": len(self._failed)}
