"""``PoolConfig``: every option of a pool, checked and with its defaults resolved, before anything
starts.  [caller]

``Pool(...)`` builds one from its keyword arguments (``PoolConfig.from_options``); a command line
builds one the same way from its flags.  Every error names the option, shows what it got, and shows a correct
call, so the first message is the one that fixes it: ``num_workers=-1`` gets ``ValueError:
num_workers must be an int >= 0, got -1; e.g. honeydew.Pool(riak_worker, ['127.0.0.1', 8087], ...)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from . import _threads
from .dispatchers import LRU, Dispatcher
from .failure_modes import Abandon, FailureMode
from .queues import Memory, Queue

#: every option ``Pool`` takes beside the worker and its arguments, in the order the docs give them
OPTIONS = ("num_workers", "init_retry_secs", "init_retry_max_secs", "queue", "dispatcher", "failure_mode",
           "num_queues", "max_pending", "prefetch", "job_timeout", "init_timeout", "kill_grace_secs",
           "max_jobs_per_worker", "max_memory_per_worker", "threads_per_worker", "start_method", "suspended")
#: the correct call every error message shows
EXAMPLE = "honeydew.Pool(riak_worker, ['127.0.0.1', 8087], num_workers=5, failure_mode=honeydew.Requeue())"
START_METHODS = ("auto", "fork", "spawn")


@dataclass(frozen=True)
class PoolConfig:
    """A pool's options, valid and resolved: build it with :meth:`from_options`, which checks each
    one and fills in the defaults (the constructor itself checks nothing)."""

    num_workers: int                        # worker processes (``None`` given: the CPUs this process may use)
    init_retry_secs: float                  # first back-off after a failed init, doubling ...
    init_retry_max_secs: float              # ... up to this
    queue: Queue                            # the backend (given ``None``: ``Memory()``)
    dispatcher: Dispatcher                  # which idle worker gets a job (given ``None``: ``LRU()``)
    failure_mode: FailureMode               # what a failed job becomes (given ``None``: ``Abandon()``)
    num_queues: int                         # queue processes; jobs go round-robin
    max_pending: int | None                 # jobs (casts included) a caller may have outstanding; None: no limit
    prefetch: int                           # jobs a worker may hold from each queue
    job_timeout: float | None               # the default run-time limit of a job; None: none
    init_timeout: float | None              # how long init may run before its worker is stopped; None: for ever
    kill_grace_secs: float                  # SIGTERM, then SIGKILL this much later
    max_jobs_per_worker: int | None         # a worker is replaced after this many jobs
    max_memory_per_worker: int | None       # ... or once its memory (bytes) passes this
    threads_per_worker: int | None          # native (BLAS/OpenMP) threads per worker ("auto" resolved); None: any
    start_method: str                       # "auto", "fork" or "spawn": how the supervisor starts
    suspended: bool = False                 # start with dispatch suspended (pool.resume() starts it)

    @classmethod
    def from_options(cls, *, num_workers: int | None = None, init_retry_secs: float = 5.0,
                     init_retry_max_secs: float = 300.0, queue: Queue | None = None,
                     dispatcher: Dispatcher | None = None, failure_mode: FailureMode | None = None,
                     num_queues: int = 1, max_pending: int | None = None, prefetch: int = 1,
                     job_timeout: float | None = None, init_timeout: float | None = None,
                     kill_grace_secs: float = 1.0, max_jobs_per_worker: int | None = None,
                     max_memory_per_worker: int | None = None, threads_per_worker: int | str | None = "auto",
                     start_method: str = "auto", suspended: bool = False, **unknown: Any) -> PoolConfig:
        """Check every option (``ValueError``, or ``TypeError`` for an unknown option or a value of
        the wrong kind) and resolve the defaults; the defaults are ``Pool``'s."""
        if unknown:
            raise unknown_options(unknown)
        if num_workers is None:
            num_workers = len(os.sched_getaffinity(0))
        check_int("num_workers", num_workers, 0)
        check_int("num_queues", num_queues, 1)
        check_int("prefetch", prefetch, 1)
        if max_pending is not None:
            check_int("max_pending", max_pending, 1)
        for name, value in (("init_retry_secs", init_retry_secs), ("init_retry_max_secs", init_retry_max_secs),
                            ("kill_grace_secs", kill_grace_secs)):
            check_secs(name, value, allow_none=False)
        for name, limit in (("job_timeout", job_timeout), ("init_timeout", init_timeout)):
            check_secs(name, limit, allow_none=True, positive=True)
        if max_jobs_per_worker is not None:
            check_int("max_jobs_per_worker", max_jobs_per_worker, 1)
        if max_memory_per_worker is not None:
            check_int("max_memory_per_worker", max_memory_per_worker, 1)
        if threads_per_worker == "auto":
            threads_per_worker = _threads.auto_limit(num_workers)
        elif threads_per_worker is not None:
            if isinstance(threads_per_worker, str):
                raise ValueError(f"threads_per_worker must be 'auto', an int >= 1 or None (no limit), "
                                 f"got {threads_per_worker!r}; e.g. honeydew.Pool(num_workers=4, threads_per_worker=2)")
            check_int("threads_per_worker", threads_per_worker, 1)
        queue = Memory() if queue is None else queue
        dispatcher = LRU() if dispatcher is None else dispatcher
        failure_mode = Abandon() if failure_mode is None else failure_mode
        check_instance("queue", queue, Queue, "honeydew.queues.Memory()")
        check_instance("dispatcher", dispatcher, Dispatcher, "honeydew.dispatchers.LRU()")
        check_instance("failure_mode", failure_mode, FailureMode, "honeydew.Requeue(max_deliveries=5)")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be 'auto', 'fork' or 'spawn', got {start_method!r}; "
                             f"e.g. honeydew.Pool(riak_worker, args, start_method='spawn')")
        return cls(num_workers=num_workers, init_retry_secs=float(init_retry_secs),
                   init_retry_max_secs=float(init_retry_max_secs), queue=queue, dispatcher=dispatcher,
                   failure_mode=failure_mode, num_queues=num_queues, max_pending=max_pending, prefetch=prefetch,
                   job_timeout=float(job_timeout) if job_timeout else None,
                   init_timeout=float(init_timeout) if init_timeout else None,
                   kill_grace_secs=float(kill_grace_secs), max_jobs_per_worker=max_jobs_per_worker,
                   max_memory_per_worker=max_memory_per_worker, threads_per_worker=threads_per_worker,
                   start_method=start_method, suspended=bool(suspended))

    def options(self) -> dict[str, Any]:
        """The options as keyword arguments: ``Pool(worker, args, **config.options())``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def unknown_options(unknown: dict[str, Any]) -> TypeError:
    """The error for options ``Pool`` does not take: it lists the ones it does."""
    return TypeError(f"unknown Pool option(s) {', '.join(sorted(unknown))}; the options are "
                     f"{', '.join(OPTIONS)}; e.g. {EXAMPLE}")


def check_int(name: str, value: Any, minimum: int) -> None:
    """``ValueError`` unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}; e.g. {EXAMPLE}")


def check_secs(name: str, value: Any, *, allow_none: bool, positive: bool = False) -> None:
    """``ValueError`` unless ``value`` is a number of seconds ``>= 0`` (``> 0`` if ``positive``),
    or ``None`` when ``allow_none``."""
    if value is None and allow_none:
        return
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0
            or (positive and value == 0)):  # (value != value: NaN)
        bound = "> 0" if positive else ">= 0"
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a number of seconds {bound}{none}, got {value!r}; e.g. {EXAMPLE}")


def check_instance(name: str, value: Any, kind: type, example: str) -> None:
    """``TypeError`` unless ``value`` is an instance of ``kind`` (a class given for its instance
    gets its own message)."""
    if isinstance(value, type) and issubclass(value, kind):
        raise TypeError(f"{name}= takes an instance, not the class: e.g. {name}={example}")
    if not isinstance(value, kind):
        raise TypeError(f"{name}= must be a {kind.__module__}.{kind.__name__}, got {value!r}; e.g. {name}={example}")
