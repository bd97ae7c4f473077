"""The queue contract: what the queue process asks of a storage backend.

A backend stores jobs; it does no messaging with honeydew's processes, starts no process and
never unpickles a job's payload.  The queue process owns one backend and calls these methods from
its single loop, so no method needs to be thread-safe.  The in-memory FIFO
(:mod:`honeydew.queues.memory`) is the default.  Every backend runs the one contract suite
(``tests/unit/test_queue_contract.py``), which skips what a backend declares it :attr:`~Queue.lacks`.

The life of a job in a backend::

    enqueue ──▶ pending ──reserve──▶ reserved ──ack──▶ gone (its reply, if any, stored)
                 ▲  ▲                   │  │
                 │  └──────nack─────────┘  └──give_up──▶ gone (or kept failed: Move)
                 └── open(): a dead owner's reservations come back

Who counts what.  The backend counts a delivery when it reserves (the ``Job`` it returns carries
the new count); the queue process changes a job's counts only on the ``Job`` it hands back to
``nack``, which persists them.  Nothing relies on object identity: a backend may return a fresh
``Job`` on every call.

Who owns a reservation.  ``open(owner)`` names the queue process: its pool, its index among that
pool's queues and its generation (a restarted queue process has the next one).  A reservation
belongs to its owner.  A durable backend gives a *dead* owner's reservations back (they become
pending, their delivery counted); a live sibling's (another queue process, another pool on the
same store) are never touched.

A push-driven backend (a broker delivering messages) exposes a descriptor (:meth:`~Queue.fileno`)
that the queue process polls beside its sockets, is told how many jobs it may hold for the
workers (:meth:`~Queue.hold`) and gets a periodic call (:meth:`~Queue.tick`) for heartbeats; a
backend shared by several pools carries the outcome of a job to the pool that sent it
(:meth:`~Queue.ack` stores a :class:`Reply`, :meth:`~Queue.take_replies` collects them).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

#: A job's ``mode`` that starts with this carries the job's own failure mode
#: (``pool.options(failure_mode=...)``): the rest is its pickle in base64
#: (:func:`honeydew.failure_modes.own_mode_key`).  No task name can start with it (a task's name is
#: a Python identifier).  A backend stores and returns ``mode`` as it is; one that signs what it
#: stores signs this too, as it signs a payload (the queue process unpickles it when the job fails).
OWN_MODE = "!fm:"


class Job:
    """One job as the queue sees it: an id, an opaque payload and its delivery bookkeeping."""

    __slots__ = ("id", "payload", "origin", "timeout", "deliveries", "failures", "bounces", "priority", "mode")

    def __init__(self, id: str, payload: bytes, origin: str = "", timeout: float = 0.0, deliveries: int = 0,
                 failures: int = 0, bounces: int = 0, priority: int = 0, mode: str = "") -> None:
        self.id = id
        self.payload = payload
        self.origin = origin          # the token of the pool whose caller waits ('' for a cast)
        self.timeout = timeout        # run-time limit in seconds, 0 for none
        self.deliveries = deliveries  # times handed to a worker (counted by reserve)
        self.failures = failures      # times a Retry sent it back
        self.bounces = bounces        # times handed back unstarted because its worker died idle
        self.priority = priority      # higher is reserved first; equal priorities stay FIFO
        self.mode = mode              # its failure mode: its own (OWN_MODE...), else its task's name if that
        #                               task has one of its own, else '' (the pool's)

    def __repr__(self) -> str:
        return f"<Job {self.id} deliveries={self.deliveries} failures={self.failures}>"


class Owner(NamedTuple):
    """Who opened the backend: queue process ``queue`` of pool ``pool`` (the pool's token), in its
    ``generation`` (0, then one more at each restart), process ``pid``."""

    pool: str
    queue: int
    generation: int
    pid: int


class Reply(NamedTuple):
    """The outcome of a job for a caller in another pool (``origin``): ``value`` is the pickled
    result when ``ok``, else a failure record (:func:`honeydew.protocol.failure_record`).  A ``map``
    chunk given up after some of its items raised also carries its items' outcomes in ``partial``
    (the pickled ``(values, errors)``; empty otherwise), so the caller yields the items that
    succeeded before it raises."""

    origin: str
    job_id: str
    ok: bool
    value: Any
    partial: bytes = b""


class FailedJob(NamedTuple):
    """A job kept in the failed store (the failure mode ``Move``): what it was and why it failed.
    ``failure`` is its failure record (:func:`honeydew.protocol.failure_record`); ``failed_at`` a
    ``time.time()`` stamp.  The payload is kept as sent, so the job can be retried as it was."""

    id: str
    payload: bytes
    origin: str
    timeout: float
    failure: tuple[Any, ...]
    deliveries: int
    failed_at: float
    priority: int = 0
    mode: str = ""


#: Capabilities a backend may lack (:attr:`Queue.lacks`); the contract suite skips their tests.
DELAYS = "delays"        # enqueue/nack with ready_at in the future
SHARED = "shared"        # several owners (queue processes, pools) on one store at once; replies
RECOVERY = "recovery"    # a dead owner's reservations come back at open()
PRIORITIES = "priorities"  # a job's priority orders reservations (higher first; FIFO among equals)
FAILED_STORE = "failed store"  # give_up(keep=True) keeps the job; failed/retry_failed/purge_failed
CAPABILITIES = frozenset({DELAYS, SHARED, RECOVERY, PRIORITIES, FAILED_STORE})


class Producer(abc.ABC):
    """A durable backend's writer in the caller's process (:meth:`Queue.producer`): a ``cast``
    stores its job through it and returns once it is stored, with no round trip through the
    queue process.  Thread-safe: the casts of concurrent threads are stored together (one
    transaction, one fsync, for all of them)."""

    @abc.abstractmethod
    def store(self, job: Job, ready_at: float = 0.0) -> int:
        """Store ``job`` (pending: ready now, or from ``ready_at``), waiting until it is stored or
        raising a :class:`~honeydew.errors.HoneydewError` that says why it is not.  Returns the
        number of the write that stored it (1, 2, ...), so that several threads whose jobs went
        in one write wake the queue process once."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what it holds (a connection).  Idempotent."""


class Queue(abc.ABC):
    """A store of jobs with reservations.  Every job is in exactly one state: pending (ready or
    delayed), reserved (charged to a worker of its owner, waiting for ``ack``/``nack``), or gone."""

    #: True when jobs survive the death of the queue process.  The caller then waits for the
    #: queue's word that a ``cast`` is stored (``Stored``) and sees no ``JobLost`` when the queue
    #: process restarts: it sends again what was not yet stored (``enqueue`` ignores known ids).
    durable: ClassVar[bool] = False

    #: The capabilities (``DELAYS``, ``SHARED``, ``RECOVERY``) this backend does not have.
    lacks: ClassVar[frozenset[str]] = frozenset()

    def check(self) -> None:  # noqa: B027 - optional hook
        """Called in the caller at ``Pool(...)``, before any process starts: raise a clear
        ``HoneydewError`` for a configuration that cannot work (a missing directory, a read-only
        file), so the user learns it there rather than from a queue process's log."""

    def open(self, owner: Owner) -> None:  # noqa: B027 - optional hook
        """Called once in the queue process before any other method (connect, create tables).
        A durable backend makes the reservations of owners that are dead pending again here
        (their delivery stays counted): those of ``owner``'s earlier generations, and those of any
        owner it can tell is gone (a lapsed lease); a live owner's are never touched."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Called once when the queue process stops."""

    @abc.abstractmethod
    def enqueue(self, jobs: Sequence[Job], ready_at: float = 0.0) -> None:
        """Add ``jobs``, in order, at the tail: ready now, or from ``ready_at`` (a ``time.time()``
        stamp).  All or nothing: a durable backend stores them in one transaction and raises if it
        cannot.  A job whose id the backend already holds (pending or reserved) is skipped: the
        caller sends a job again when it cannot know that a dead queue process stored it."""

    @abc.abstractmethod
    def reserve(self, now: float) -> Job | None:
        """Take the oldest ready job of the highest priority, mark it reserved by this owner and
        count the delivery: the returned job's ``deliveries`` includes this one.  ``None`` when
        nothing is ready.  (A backend that lacks ``PRIORITIES`` takes the oldest.)

        ``now`` is ``time.time()``; delayed jobs whose time has come count as ready."""

    @abc.abstractmethod
    def ack(self, job_ids: Sequence[str], replies: Sequence[Reply] = ()) -> None:
        """The jobs are over (done, or given up): forget them, and store ``replies`` for callers
        in other pools, in one step.  An id that is not reserved is ignored (a late ack)."""

    @abc.abstractmethod
    def nack(self, job: Job, ready_at: float = 0.0, *, front: bool = False) -> bool:
        """Put the reserved job ``job.id`` back, keeping the counts ``job`` carries (``deliveries``,
        ``failures``, ``bounces``): at the head when ``front`` (it never started), else at the
        tail, ready from ``ready_at`` (0: now).  False if it was not reserved."""

    def give_up(self, job: Job, failure: tuple[Any, ...], reply: Reply | None = None, *,
                keep: bool = False) -> None:
        """The failure mode gave the job up (``failure`` is its failure record): it is over, as by
        :meth:`ack` (with its ``reply``), and with ``keep`` (``Move``) it goes to the failed store,
        in the same step, with its counts and a time stamp.  A backend that lacks
        ``FAILED_STORE`` raises ``NotImplementedError`` for ``keep``."""
        if keep:
            raise NotImplementedError(f"{self!r} has no failed store")
        self.ack([job.id], [reply] if reply is not None else ())

    def paused(self) -> bool:
        """Is the store itself suspended (``honeydew suspend --sqlite PATH``: every pool on it)?
        While it is, ``reserve`` gives nothing, and a pool that closes leaves its jobs in the store
        rather than waiting for them (as a suspended durable pool does).  The default: never."""
        return False

    # ------------------------------------------------------------ the failed store (Move)

    def failed(self, limit: int = 100) -> list[FailedJob]:
        """The kept jobs, newest first, at most ``limit``."""
        raise NotImplementedError(f"{self!r} has no failed store")

    def retry_failed(self, ids: Sequence[str] | None = None) -> int:
        """Put kept jobs back as pending, at the tail, their delivery and failure counts reset
        (``None``: all of them); returns how many.  A retried job is gone from :meth:`failed`."""
        raise NotImplementedError(f"{self!r} has no failed store")

    def purge_failed(self, ids: Sequence[str] | None = None) -> int:
        """Delete kept jobs (``None``: all of them); returns how many."""
        raise NotImplementedError(f"{self!r} has no failed store")

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
        """Remove and return every pending job (an in-memory pool that stops with no worker)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of pending jobs (ready and delayed) this owner could reserve."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """Counts for operators: at least ``pending``, ``delayed`` and ``reserved``."""

    # ------------------------------------------------------------ push-driven and shared backends

    def fileno(self) -> int | None:
        """A descriptor the queue process polls for reading, beside its sockets (a broker's
        connection); :meth:`readable` is called when it is readable.  ``None``: there is none."""
        return None

    def readable(self) -> None:  # noqa: B027 - optional hook
        """The descriptor from :meth:`fileno` is readable: take in what arrived."""

    def tick(self, now: float) -> float | None:
        """Periodic work (heartbeats, lease renewal, polling a shared store).  Returns the seconds
        until the next call is due, ``None`` if none is (the default: never called again)."""
        return None

    def hold(self, jobs: int) -> None:  # noqa: B027 - optional hook
        """The queue's workers can take ``jobs`` jobs: their free credits plus the jobs they are
        running.  A broker counts unacknowledged messages against its prefetch, so its prefetch
        is this number (never 0, which a broker reads as "unlimited").  Called when it changes."""

    def producer(self) -> Producer | None:
        """A writer for the caller's process that stores a ``cast``'s job in the backend itself
        (see :class:`Producer`), or ``None`` (the default): the caller sends every job to the
        queue process, and a durable backend's queue process answers ``Stored``.  Called in the
        caller's process, after the pool's processes started; the queue process then learns of
        the new jobs from a ``Wake`` (and from its own polling of a shared store)."""
        return None

    def take_replies(self) -> list[Reply]:
        """The outcomes of this pool's jobs that ran in another pool and have arrived since the
        last call (after :meth:`readable` and :meth:`tick` the queue process asks).  Taken
        replies are gone from the store.  A shared backend also drops, when it can tell (at
        :meth:`open`, on a lapsed lease), the replies of a pool none of whose queue processes is
        alive any more, so that a caller that went away leaks nothing."""
        return []
