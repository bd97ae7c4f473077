"""The queue contract: what the queue process asks of a storage backend.

A backend is a data structure, not a process: it does no messaging, starts no process and never
unpickles a job's payload.  The queue process (:mod:`honeydew.queue_process`) owns one backend and
calls these methods from its single loop, so no method needs to be thread-safe.  The in-memory
FIFO (:mod:`honeydew.queues.memory`) is the default; durable backends (SQLite, RabbitMQ) follow
the same contract and run the same contract test suite (``tests/unit/test_queue_contract.py``).
"""

from __future__ import annotations

import abc
from typing import Any


class Job:
    """One job as the queue sees it: an id, an opaque payload and its delivery bookkeeping."""

    __slots__ = ("id", "payload", "origin", "deliveries", "failures", "timeout", "bounces")

    def __init__(self, id: str, payload: bytes, origin: str = "", deliveries: int = 0, failures: int = 0,
                 timeout: float = 0.0) -> None:
        self.id = id
        self.payload = payload
        self.origin = origin        # the token of the pool whose caller waits ('' for a cast)
        self.deliveries = deliveries  # times handed to a worker
        self.failures = failures    # times a Retry sent it back
        self.timeout = timeout      # run-time limit in seconds, 0 for none
        self.bounces = 0            # times handed back unstarted because its worker died idle

    def __repr__(self) -> str:
        return f"<Job {self.id} deliveries={self.deliveries} failures={self.failures}>"


class Queue(abc.ABC):
    """A store of jobs with reservations.  Every job is in exactly one state: pending (ready or
    delayed), reserved (charged to a worker, waiting for ack or nack), or gone."""

    #: True when jobs survive the death of the queue process (the caller then sees no JobLost).
    durable: bool = False

    def open(self) -> None:  # noqa: B027 - optional hook
        """Called once in the queue process before any other method (connect, create tables)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Called once when the queue process stops."""

    @abc.abstractmethod
    def enqueue(self, job: Job, ready_at: float = 0.0) -> None:
        """Add ``job`` at the tail, ready now or from ``ready_at`` (a ``time.time()`` stamp).

        Raises ``ValueError`` if a job with that id is already pending or reserved."""

    @abc.abstractmethod
    def reserve(self, now: float) -> Job | None:
        """Take the oldest ready job and mark it reserved; ``None`` when nothing is ready.

        ``now`` is ``time.time()``; delayed jobs whose time has come count as ready."""

    @abc.abstractmethod
    def ack(self, job_id: str) -> Job | None:
        """Forget a reserved job that is finished; returns it, or ``None`` if it was not reserved
        (a late or duplicate ack, which is harmless)."""

    @abc.abstractmethod
    def nack(self, job_id: str, ready_at: float = 0.0, *, front: bool = False) -> Job | None:
        """Put a reserved job back: at the head when ``front`` (it never started), else at the
        tail, ready from ``ready_at`` (a ``time.time()`` stamp; 0 means now).  Returns it, or ``None``
        if it was not reserved."""

    @abc.abstractmethod
    def get_reserved(self, job_id: str) -> Job | None:
        """The reserved job with this id, or ``None``."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> Job | None:
        """Remove a pending job and return it; ``None`` if it is unknown or already reserved."""

    @abc.abstractmethod
    def is_pending(self, job_id: str) -> bool:
        """Is the job pending (ready or delayed)?"""

    @abc.abstractmethod
    def next_ready_in(self, now: float) -> float | None:
        """Seconds until the earliest delayed job is ready (0 if one is), ``None`` if none is delayed."""

    @abc.abstractmethod
    def take_pending(self) -> list[Job]:
        """Remove and return every pending job (used when an in-memory pool stops with no workers)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of pending jobs (ready and delayed), not counting reserved ones."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """Counts for operators: at least ``pending``, ``delayed`` and ``reserved``."""
