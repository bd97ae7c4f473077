"""Failure modes: what happens to a job when it fails.  Pure policies, composed with ``then``.

A failure is the task raising or the worker dying while holding the job.  The queue process asks
the pool's failure mode to :meth:`~FailureMode.decide` and applies the :class:`Decision` it gets:
:class:`GiveUp` (the caller, if any, gets the failure; with ``keep``, the job also goes to the
queue's failed store: :class:`Move`) or :class:`Redeliver` (back to the queue, possibly after a
delay; the delay is a timestamp in the queue, it never blocks a worker).  The set
of decisions is open: a decision is anything with an ``apply`` (:class:`Decision`).  A failure
mode that raises, or answers with something that is not a ``Decision``, fails the job with
``FailureModeError``; the queue goes on.

A job may carry a failure mode of its own (``pool.options(failure_mode=...)``): it travels with the
job as a string (:func:`own_mode_key`), even through a durable backend to another pool, and the
queue process reads it back (:func:`read_own_mode`) only when the job fails.
"""

from __future__ import annotations

import abc
import base64
import binascii
import math
import numbers
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import Failure, qualname
from .queues.base import OWN_MODE, Job, Queue

#: The longest redelivery delay honoured (a year); longer ones, even infinite, are cut to it.
MAX_DELAY = 365 * 86400.0


class DecisionContext(Protocol):
    """What a :class:`Decision` may do to the queue that carries it out (the queue process's core):
    the job's storage backend, and the two moves every decision is made of."""

    @property
    def backend(self) -> Queue: ...

    def redeliver(self, job: Job, delay: float, retry: bool) -> None:
        """Put the reserved ``job`` back, ready after ``delay`` seconds (a ``Retry`` when ``retry``)."""

    def give_up(self, job: Job, failure: Failure, keep: bool = False) -> None:
        """The job is over: the backend lets it go (:meth:`Queue.give_up`), or with ``keep`` keeps
        it in its failed store, and its caller, if any, gets ``failure``."""


class Decision(abc.ABC):
    """What a failure mode decided for one failed job.  The queue process calls :meth:`apply` and
    nothing else, so a new kind of decision is a new subclass, with no change to the queue."""

    __slots__ = ()

    @abc.abstractmethod
    def apply(self, job: Job, failure: Failure, queue: DecisionContext) -> None:
        """Carry the decision out on the reserved ``job``, which failed with ``failure``."""


@dataclass(frozen=True, slots=True)
class GiveUp(Decision):
    """Final: report ``failure`` to the job's caller; with ``keep``, keep the job in the queue's
    failed store (``pool.failed()``, ``pool.retry_failed()``)."""

    failure: Failure
    keep: bool = False

    def apply(self, job: Job, failure: Failure, queue: DecisionContext) -> None:
        queue.give_up(job, self.failure, self.keep)


@dataclass(frozen=True, slots=True)
class Redeliver(Decision):
    """Put the job back in the queue, ready after ``delay`` seconds.  ``retry`` counts the
    redelivery as one of the job's retries (``Retry``); ``Requeue`` does not."""

    delay: float = 0.0
    retry: bool = False

    def apply(self, job: Job, failure: Failure, queue: DecisionContext) -> None:
        queue.redeliver(job, _bounded(self.delay), self.retry)


def _bounded(delay: float) -> float:
    """A delay the queue can honour: NaN and negative ones are 0, longer ones are cut to MAX_DELAY."""
    delay = float(delay)
    if math.isnan(delay):
        return 0.0
    return min(max(0.0, delay), MAX_DELAY)


class FailureMode(abc.ABC):
    """The contract.  ``deliveries`` counts how many times the job was handed to a worker
    (this failed run included); ``retries`` how many times a ``Retry`` already sent it back."""

    @abc.abstractmethod
    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        """What to do with the job.  Never raises for a well-formed failure."""


class Abandon(FailureMode):
    """Drop the job; a waiting caller gets the failure.  The default."""

    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        return GiveUp(failure)

    def __repr__(self) -> str:
        return "Abandon()"

    def __eq__(self, other: object) -> bool:
        return type(other) is Abandon

    def __hash__(self) -> int:
        return hash(Abandon)


class Move(FailureMode):
    """Give the job up and keep it in the queue's failed store, where ``pool.failed()`` lists it
    and ``pool.retry_failed()`` puts it back; a waiting caller gets the failure, as with
    ``Abandon``.  Usable alone or as ``then=`` of ``Requeue`` and ``Retry``:
    ``honeydew.Retry(times=3, then=honeydew.Move())``.  On the in-memory queue the failed store
    lives as long as the queue process; on a durable queue it is durable."""

    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        return GiveUp(failure, keep=True)

    def __repr__(self) -> str:
        return "Move()"

    def __eq__(self, other: object) -> bool:
        return type(other) is Move

    def __hash__(self) -> int:
        return hash(Move)


def _check_then(then: object, example: str) -> FailureMode:
    if not isinstance(then, FailureMode):
        raise TypeError(f"then= must be a failure mode such as honeydew.Abandon(), got {then!r}; e.g. {example}")
    return then


class Requeue(FailureMode):
    """Back to the tail of the queue with its delivery count, until it has been delivered
    ``max_deliveries`` times; then the job goes to ``then``."""

    def __init__(self, max_deliveries: int = 5, then: FailureMode | None = None) -> None:
        example = "honeydew.Requeue(max_deliveries=5, then=honeydew.Abandon())"
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise ValueError(f"max_deliveries must be an int >= 1, got {max_deliveries!r}; e.g. {example}")
        self.max_deliveries = max_deliveries
        self.then = _check_then(then if then is not None else Abandon(), example)

    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        if deliveries < self.max_deliveries:
            return Redeliver()
        return self.then.decide(failure, deliveries, retries)

    def __repr__(self) -> str:
        return f"Requeue(max_deliveries={self.max_deliveries}, then={self.then!r})"


class Retry(FailureMode):
    """Run the job again after ``backoff`` seconds, doubling each time (or ``backoff(attempt)``
    seconds, attempt counting from 1), for failures matching ``on``; after ``times`` retries, or
    for a failure ``on`` does not match, the job goes to ``then``.

    ``on`` holds exception classes; a worker crash matches ``honeydew.WorkerCrashed`` (and so
    ``Exception``).  Matching is by class name along the exception's MRO, so the queue never
    unpickles the user's exception."""

    def __init__(
        self,
        times: int = 3,
        backoff: float | Callable[[int], float] = 1.0,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        then: FailureMode | None = None,
    ) -> None:
        example = "honeydew.Retry(times=3, backoff=1.0, on=(ConnectionError,), then=honeydew.Abandon())"
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            raise ValueError(f"times must be an int >= 0, got {times!r}; e.g. {example}")
        if not callable(backoff):
            if (isinstance(backoff, bool) or not isinstance(backoff, numbers.Real) or not math.isfinite(backoff)
                    or backoff < 0):
                raise ValueError(f"backoff must be seconds >= 0 or a callable(attempt) -> seconds, got {backoff!r}; "
                                 f"e.g. {example}")
        if isinstance(on, type):
            on = (on,)
        if not isinstance(on, tuple) or not on or not all(isinstance(c, type) and issubclass(c, BaseException)
                                                          for c in on):
            raise TypeError(f"on= must be an exception class or a tuple of them, got {on!r}; e.g. {example}")
        self.times = times
        self.backoff = backoff
        self.on = on
        self._names = frozenset(qualname(c) for c in on)
        self.then = _check_then(then if then is not None else Abandon(), example)

    def matches(self, failure: Failure) -> bool:
        return any(name in self._names for name in failure.mro)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if callable(self.backoff):
            delay = float(self.backoff(attempt))
        else:
            delay = float(self.backoff) * 2.0 ** min(attempt - 1, 64)
        return _bounded(delay)

    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        if retries < self.times and self.matches(failure):
            return Redeliver(self.delay(retries + 1), retry=True)
        return self.then.decide(failure, deliveries, retries)

    def __repr__(self) -> str:
        names = ", ".join(c.__name__ for c in self.on)
        return f"Retry(times={self.times}, backoff={self.backoff!r}, on=({names},), then={self.then!r})"


def own_mode_key(mode: FailureMode) -> str:
    """A job's own failure mode as its ``mode`` key: :data:`~honeydew.queues.base.OWN_MODE` and the
    mode pickled (cloudpickle: a ``backoff`` lambda, or a class defined in the script, travels by
    value), in base64.  ``TypeError`` if it cannot be pickled."""
    import cloudpickle  # (here: only a job with a failure mode of its own needs it)

    try:
        blob = cloudpickle.dumps(mode, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise TypeError(f"the job's failure_mode {mode!r} cannot be pickled ({type(e).__name__}: {e}); it travels "
                        f"with the job to the queue process: give it picklable attributes, e.g. "
                        f"pool.options(failure_mode=honeydew.Retry(times=3, backoff=1.0)).submit(task, ...)") from None
    return OWN_MODE + base64.b64encode(blob).decode("ascii")


def read_own_mode(key: str) -> FailureMode:
    """The failure mode a key of :func:`own_mode_key` carries.  Raises (``ValueError`` for a key
    that is not one, whatever unpickling raises, ``TypeError`` for something not a failure mode)."""
    if not key.startswith(OWN_MODE):
        raise ValueError(f"{key[:40]!r} is not a job's own failure mode")
    try:
        blob = base64.b64decode(key[len(OWN_MODE):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its job's own failure mode is not valid base64") from None
    mode = pickle.loads(blob)
    if not isinstance(mode, FailureMode):
        raise TypeError(f"its job's own failure mode unpickled as {type(mode).__name__}, not a honeydew.FailureMode")
    return mode
