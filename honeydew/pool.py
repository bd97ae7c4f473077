"""``Pool``: the caller's handle on a supervised tree of worker processes.  [caller]

::

    caller (your process)                          supervisor ── restarts ──┐
      │  Enqueue/Cancel/Drain ─────────────▶ queue 0..N-1 ◀── Credit/Done/Failed ── worker j
      │  ◀────────────── JobFailed/Settled                 ──── Dispatch ───────▶   ▲
      │  ◀──────────────────────────────────────────────── Result ───────────── worker j
      │  Terminate ─▶ supervisor ─▶ QueueRestarted                          monitor j (forks, reaps)

The caller makes every socket and starts the supervisor (``_launch``), then writes to the queue
processes (``_outbuf``) and reads them and the workers' replies directly (``_inbox``, which owns the
table of pending jobs).  This module holds the API and the pool's lifecycle; ``docs/architecture.md``
has the whole story.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, _base
from typing import Any

from . import _leftovers, _process, _spool, control
from ._inbox import Inbox, Unstored
from ._launch import launch
from ._outbuf import Writer
from ._payload import Encoder
from ._process import pidfd
from ._wire import pack
from .config import PoolConfig, check_int, check_secs, unknown_options
from .dispatchers import Dispatcher
from .errors import (
    Failure,
    HoneydewError,
    JobLost,
    PoolClosed,
    QueueFull,
    RemoteTraceback,
    SerializationError,
    WorkerInitError,
    signal_name,
    to_exception,
)
from .failed import FailedRecord, describe
from .failure_modes import MAX_DELAY, FailureMode, Requeue, own_mode_key
from .protocol import (
    Cancel,
    Control,
    Drain,
    Resync,
    Shutdown,
    StatusRequest,
    Terminate,
    Wake,
    WhereIs,
    encode,
    enqueue_wire,
)
from .queues import FailedJob, Job, Queue
from .tasks import WorkerSpec, make_spec

log = logging.getLogger("honeydew.pool")
_SHUTDOWN_PACKET = b"".join(bytes(b) for b in pack([Shutdown()])[0])  # pre-built: signal handlers stay simple
_TERMINATE_PACKET = b"".join(bytes(b) for b in pack([Terminate()])[0])

_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
#: the longest a ``cast``/``submit`` waits for a durable backend to store its job, unless given a timeout
STORE_WAIT = 60.0
_WAKE = encode(Wake())
_PENDING, _RUNNING, _FINISHED = _base.PENDING, _base.RUNNING, _base.FINISHED
_CANCELLED, _CANCELLED_AND_NOTIFIED = _base.CANCELLED, _base.CANCELLED_AND_NOTIFIED


class JobFuture(Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` for one job; ``job_id`` names it.  Waiting on it reads the
    pool's replies in the waiting thread itself.  ``cancel()`` removes a job that has not started."""

    def __init__(self, pool: Pool, job_id: str, queue: int, is_async: bool) -> None:
        # Future.__init__ would build a Condition per job (a lock and more): a pool's futures share
        # one.  Safe because result() and exception() here never sleep on it (the inbox wakes them);
        # concurrent.futures.wait()/as_completed() use their own waiters, which Future still calls.
        self._condition = pool._future_condition
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        self.job_id = job_id
        self._pool = pool
        self._queue = queue
        self._is_async = is_async

    #: the latest ``(fraction, message)`` the task reported with ``honeydew.progress()``, or None
    progress: tuple[float, str] | None = None

    def result(self, timeout: float | None = None) -> Any:
        if not self.done():
            self._pool._wait(self, timeout)
        if not self.done():
            raise self._pool._timed_out(self.job_id, timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.done():
            self._pool._wait(self, timeout)
        if not self.done():
            raise self._pool._timed_out(self.job_id, timeout)
        return super().exception(0)

    def cancel(self, terminate: bool = False) -> bool:
        """Cancel the job, as ``Future.cancel`` promises: a job still queued is removed and never
        starts (True); a job already handed to a worker is not touched (False, and ``running()``
        says True from then on); False if it finished.  The queue is asked, so the answer is exact.

        ``terminate=True`` also stops a job that is running: its worker's process tree is stopped
        (SIGTERM, then SIGKILL after ``kill_grace_secs``) and replaced, and the future is cancelled
        (True).  An ``asyncio`` task awaiting the future, when cancelled, cancels without it."""
        state = self._state
        if state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
            return True
        if state == _FINISHED or (state == _RUNNING and not terminate):
            return False
        answer = self._pool._ask(self, terminate)
        if answer == "cancelled" or (answer == "running" and terminate):
            return self._pool._cancelled(self)
        if answer == "running":
            self._mark_running()
        return False

    def running(self) -> bool:
        """Has the job been handed to a worker (and not finished)?  The queue is asked."""
        if self._state == _RUNNING:
            return True
        if self._state != _PENDING:
            return False
        if self._pool._ask(self, None) == "running":
            self._mark_running()
        return self._state == _RUNNING

    def _mark_running(self) -> None:
        with self._condition:
            if self._state == _PENDING:
                self._state = _RUNNING

    def _cancel_queued(self) -> None:
        """Cancel if still queued, without waiting for the queue's word (a map whose iteration was
        abandoned: if the job started meanwhile, its outcome is dropped)."""
        if self._state == _PENDING:
            self._pool._cancel_nowait(self)


class _CallSlot:
    """What ``call`` waits on: a bare result slot (a ``Future`` without its condition and
    callbacks, which nobody can reach here)."""

    __slots__ = ("job_id", "_queue", "_done", "_ok", "_value", "progress")
    _is_async = False

    def __init__(self, job_id: str, queue: int) -> None:
        self.job_id = job_id
        self._queue = queue
        self._done = False
        self._ok = False
        self._value: Any = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._ok, self._value, self._done = True, value, True

    def set_exception(self, exc: BaseException) -> None:
        self._ok, self._value, self._done = False, exc, True

    def outcome(self) -> Any:
        if self._ok:
            return self._value
        exc, self._value = self._value, None
        raise exc


class Options:
    """Per-job options, kept apart from the task's own keyword arguments:
    ``pool.options(timeout=5).call("get", "bucket", "key")``."""

    def __init__(self, pool: Pool, timeout: float | None, job_timeout: float | None, block: bool,
                 delay: float = 0.0, priority: int | None = None, mode: str = "") -> None:
        self._pool = pool
        self._timeout = timeout
        self._job_timeout = None if job_timeout is None else float(job_timeout)  # None: the task's, or the pool's
        self._block = block
        self._delay = delay
        self._priority = priority
        self._mode = mode  # the job's own failure mode, as its key (own_mode_key); '': the task's, or the pool's

    def _ready_at(self) -> float:
        return time.time() + self._delay if self._delay else 0.0

    def call(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return self._pool._call(fn, args, kwargs, self._timeout, self._job_timeout, self._ready_at(), self._priority,
                                self._mode)

    def cast(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> str:
        return self._pool._cast(fn, args, kwargs, self._block, self._timeout, self._job_timeout, self._ready_at(),
                                self._priority, self._mode)

    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> JobFuture:
        return self._pool._submit(fn, args, kwargs, self._block, self._timeout, self._job_timeout, self._ready_at(),
                                  self._priority, self._mode)


class Pool(Executor):
    """A supervised pool of permanent worker processes.

    ``Pool(worker, args, num_workers=..., ...)``: see the README for every option.  Use it as a
    context manager: leaving the ``with`` block waits for queued jobs (``close`` + ``join``), or
    stops at once when left by ``KeyboardInterrupt`` (``terminate``).  It is a
    ``concurrent.futures.Executor`` (``submit``, ``map``, ``shutdown``), so it serves wherever one
    is taken (``loop.run_in_executor``)."""

    def __init__(self, worker: Any = None, args: Iterable[Any] | None = None, *, num_workers: int | None = None,
                 init_retry_secs: float = 5.0, init_retry_max_secs: float = 300.0, queue: Queue | None = None,
                 dispatcher: Dispatcher | None = None, failure_mode: FailureMode | None = None,
                 num_queues: int = 1, max_pending: int | None = None, prefetch: int = 1,
                 job_timeout: float | None = None, init_timeout: float | None = None, kill_grace_secs: float = 1.0,
                 max_jobs_per_worker: int | None = None, max_memory_per_worker: int | None = None,
                 threads_per_worker: int | str | None = "auto", start_method: str = "auto", suspended: bool = False,
                 **unknown: Any) -> None:
        self._started = False
        self._owner = os.getpid()
        self._foreign = False   # set in a process forked from the owner (os.register_at_fork below)
        if _process.decoding:
            raise HoneydewError(_nested_pool_message())
        if unknown:
            raise unknown_options(unknown)
        # (a WorkerSpec already made: honeydew.ProcessPoolExecutor's, from its initializer)
        # (an enqueue-only pool runs no init: it takes the worker for its task names alone)
        self._spec: WorkerSpec = worker if isinstance(worker, WorkerSpec) else make_spec(
            worker, args, runs_init=num_workers != 0)
        self._config = config = PoolConfig.from_options(
            num_workers=num_workers, init_retry_secs=init_retry_secs, init_retry_max_secs=init_retry_max_secs,
            queue=queue, dispatcher=dispatcher, failure_mode=failure_mode, num_queues=num_queues,
            max_pending=max_pending, prefetch=prefetch, job_timeout=job_timeout, init_timeout=init_timeout,
            kill_grace_secs=kill_grace_secs, max_jobs_per_worker=max_jobs_per_worker,
            max_memory_per_worker=max_memory_per_worker, threads_per_worker=threads_per_worker,
            start_method=start_method, suspended=suspended)
        num_workers, num_queues, queue = config.num_workers, config.num_queues, config.queue
        queue.check()  # a backend that cannot work says so here, before any process starts
        if isinstance(config.failure_mode, Requeue) and hasattr(queue, "recovery_cap"):
            # a job whose whole pool dies while running it counts against Requeue's cap too
            queue.recovery_cap = config.failure_mode.max_deliveries
        self._suspended = config.suspended  # what a restarted queue process is told after Resync
        self.threads_per_worker: int | None = config.threads_per_worker
        self._job_timeout = config.job_timeout or 0.0
        self.num_workers = num_workers
        # an enqueue-only pool on a queue no other pool can share: nobody will ever run a job
        self._nobody_runs = (f"this pool has no workers (num_workers=0) and its queue {queue!r} is not shared with "
                             f"any other pool, so no job sent here can ever run or answer; give it workers "
                             f"(honeydew.Pool(riak_worker, args, num_workers=2)), or use a durable queue that "
                             f"other pools serve") if num_workers == 0 and not queue.durable else ""
        self.num_queues = num_queues
        self.max_pending = config.max_pending
        #: the backend keeps what it accepted across a queue restart: a ``cast`` returns once it is
        #: stored, and a restart means sending again what was not, rather than ``JobLost``
        self._durable = queue.durable
        self._token = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._rr = itertools.count()
        self._queue_locks = [threading.Lock() for _ in range(num_queues)]
        self._closed = False
        self._terminated = False
        self._broken: str | None = None
        self._boot_error = ""   # why a spawned supervisor could not start (its BootFailed)
        self._init_dropped = 0  # jobs the queues dropped because no worker could start (WorkersDown)
        self._init_failure: tuple[Any, ...] | None = None
        self._outstanding = [0] * num_queues   # jobs (casts included) not settled yet, per queue (max_pending)
        self._count_lock = threading.Lock()     # guards _outstanding
        self._future_condition = threading.Condition()  # shared by every JobFuture of this pool
        self._finisher: threading.Thread | None = None   # shutdown(wait=False): joins in the background
        #: the type hung on a remote exception's ``__cause__`` (its traceback text)
        self._remote_traceback: Callable[[str], BaseException] = RemoteTraceback
        #: what a job dropped because no worker could start raises; an executor breaks on it instead
        self._no_worker_error: type[WorkerInitError] = WorkerInitError
        self._breaks_on_init = False
        self._spared_by_cancel_futures = 0  # the oldest jobs shutdown(cancel_futures=True) leaves to run
        self._bg: threading.Thread | None = None
        self._spool = None if queue.durable else _spool.directory(self._token)
        self._encoder = Encoder(self._spool)
        # the operator's command line reaches it (honeydew status --pid <this pid>).  Registered before
        # the tree starts: the first pool of a process starts the control thread, which is quick
        # while the CPUs are idle and slow once the new pool processes compete for them
        control.register(self)
        tree = launch(config, self._spec, self._token, self._spool, self._encoder)
        self.start_method = tree.start_method
        #: why the supervisor was spawned rather than forked ('' when forked), for status()
        self.spawn_reason = tree.spawn_reason
        self._supervisor = tree.supervisor
        self._lifeline = tree.lifeline
        self._control = tree.control
        self._queues = tree.queues
        self._writer = Writer(self._queues, self._queue_locks)
        #: a durable backend's writer in this process: a cast stores its job itself (group commit
        #: across threads), then wakes a queue process; None: every job goes through a queue process
        #: (and so do all of them under max_pending, whose count the queue processes keep)
        self._producer = queue.producer() if self._durable and self.max_pending is None else None
        self._woken = [0] * num_queues          # the producer's last write each queue was woken for
        self._stores = threading.Condition()    # close() waits for the casts being stored
        self._storing = 0
        self._replies = tree.replies
        self._inbox = Inbox(tree.control, tree.queues, tree.replies, tree.supervisor.pidfd, _Events(self),
                            self._writer.flush_all, self._future_condition)
        self._jobs = self._inbox.jobs
        #: the job table's pending jobs (job id -> (future or call slot, queue)): _enqueue adds to it directly
        self._pending = self._jobs.pending
        self._submit_opened = self._jobs.submit_opened
        self._started = True
        # collected without being joined: stop the tree and say what was dropped (_leftovers)
        self._finalizer = weakref.finalize(
            self, _leftovers.stop_collected, self._owner, f"<honeydew.Pool {self._spec.name} workers={num_workers}>",
            self._supervisor, self._queues, self._writer, self._spool, self._jobs.submits_open,
            repr(queue) if self._durable else "")
        self._finalizer.atexit = False  # at interpreter exit, _terminate_leftovers does it
        _live_pools.add(self)
        _SigtermHandler.install()

    # ---------------------------------------------------------------- the public API

    def cast(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> str:
        """Enqueue a job and return its id without waiting (fire and forget).  Blocks while
        ``max_pending`` jobs are outstanding."""
        return self._cast(fn, args, kwargs, True, None, None)

    def call(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run a job and return its result, or raise its exception (remote traceback on ``__cause__``).
        For a wait timeout: ``pool.options(timeout=5).call(...)``."""
        return self._call(fn, args, kwargs, None, None)

    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> JobFuture:
        """Enqueue a job and return a ``concurrent.futures.Future`` for its outcome."""
        return self._submit(fn, args, kwargs, True, None, None)

    async def asubmit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> JobFuture:
        """``submit`` for asyncio code: never blocks the event loop (when sending could wait, for
        ``max_pending`` room or a durable backend's word, it waits in the loop's default executor).
        ``await asyncio.wrap_future(fut)`` awaits its outcome; :meth:`acall` does both."""
        if self.max_pending is None and not self._durable:
            return self.submit(fn, *args, **kwargs)
        import asyncio  # (here: importing it costs every worker's memory, and only asyncio code needs it)

        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(self.submit, fn, *args,
                                                                                        **kwargs))

    async def acall(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``call`` for asyncio code: ``await pool.acall("get", "bucket", "key")``.  The event loop
        goes on while the job runs; cancelling the awaiting task cancels the job if it has not
        started (a running job runs to its end, as ``Future.cancel`` promises)."""
        import asyncio

        return await asyncio.wrap_future(await self.asubmit(fn, *args, **kwargs))

    def options(self, *, timeout: float | None = None, job_timeout: float | None = None,
                block: bool = True, delay: float = 0.0, priority: int | None = None,
                failure_mode: FailureMode | None = None) -> Options:
        """Per-job options that can never collide with a task's keyword arguments:
        ``pool.options(timeout=5, job_timeout=60).call("get", "bucket", "key")``.

        * ``timeout``: how long ``call`` (and an enqueue blocked by ``max_pending``) waits before
          ``TimeoutError``; the job itself goes on.
        * ``job_timeout``: the job's own run-time limit, enforced by its worker's monitor, which
          stops the worker (SIGTERM, then SIGKILL) and hands the job to the failure mode as ``JobTimeout``.
        * ``block``: False makes ``cast``/``submit`` raise ``QueueFull`` instead of waiting for room.
        * ``delay``: the job runs no earlier than this many seconds from now; it holds no worker
          while it waits (wall-clock: on a durable queue a delay survives a restart).
        * ``priority``: an int; higher runs first (default 0), equal priorities in the order sent.
        * ``failure_mode``: what happens to this job when it fails (it raises, its worker dies, it
          times out): ``pool.options(failure_mode=honeydew.Retry(times=3)).submit(task, ...)``.
          It must pickle (``TypeError`` here otherwise): it travels with the job, through a
          durable queue too, and is unpickled by the queue process that sees the job fail (with
          cloudpickle's reach: a ``backoff`` lambda, a ``FailureMode`` subclass of the script).
          It is pickled here, once per ``options()`` (keep the ``Options`` to send many jobs).
          Should it not unpickle there (a class that process cannot import), the pool's failure
          mode handles the job instead and the queue process logs an error naming the job and
          why.  A job whose whole pool (or queue process) dies while running it is counted
          against the durable backend's ``recovery_cap`` (which a pool-level ``Requeue`` sets),
          not against this mode's.

        ``job_timeout``, ``failure_mode`` and ``priority`` override what ``@honeydew.task(...)``
        gave the task, which overrides the pool's."""
        check_secs("timeout", timeout, allow_none=True)
        check_secs("job_timeout", job_timeout, allow_none=True, positive=True)
        check_secs("delay", delay, allow_none=False)
        delay = min(float(delay), MAX_DELAY)  # (a year: what the queue honours, as for a Retry's back-off)
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise TypeError(f"priority must be an int (higher runs first), got {priority!r}; "
                            f"e.g. pool.options(priority=10).cast(task, ...)")
        mode = ""
        if failure_mode is not None:
            if not isinstance(failure_mode, FailureMode):
                what = "the class" if isinstance(failure_mode, type) else repr(failure_mode)
                raise TypeError(f"failure_mode must be a honeydew.FailureMode instance, got {what}; "
                                f"e.g. pool.options(failure_mode=honeydew.Retry(times=3)).submit(task, ...)")
            mode = own_mode_key(failure_mode)
        return Options(self, timeout, job_timeout, bool(block), float(delay), priority, mode)

    def map(self, fn: str | Callable[..., Any], *iterables: Iterable[Any], chunksize: int | None = None,
            timeout: float | None = None, progress: bool = False) -> Iterator[Any]:
        """Like ``Executor.map``: results in input order; an item's exception is raised when the
        iteration reaches it.  Items go in chunks: ``chunksize`` items each, or by default about 4
        per worker for the first three quarters of the items and chunks a quarter that size for the
        rest, so that workers finish together even when one runs slower than another."""
        self._check_owner()
        if not iterables:
            raise TypeError("map() needs at least one iterable: pool.map(fn, items)")
        if chunksize is not None:
            check_int("chunksize", chunksize, 1)
        ref = self._ref(fn)
        job_timeout, priority, mode = self._task_defaults(fn, None, None)
        star = len(iterables) > 1
        items = list(zip(*iterables, strict=False)) if star else list(iterables[0])
        bounds = _chunks(len(items), self.num_workers, chunksize)
        futures = []
        try:
            for start, end in bounds:
                payload = self._encoder.map_payload(ref, items[start:end], star)
                # (a chunk a durable backend refuses fails its future: nothing to wait for here)
                futures.append(self._enqueue(payload, True, True, timeout, job_timeout, confirm=False,
                                             priority=priority, mode=mode))
        except BaseException:
            for f in futures:
                f._cancel_queued()
            raise
        del items
        deadline = None if timeout is None else time.monotonic() + timeout  # counted from the call
        bar = _progress_bar(sum(end - start for start, end in bounds), getattr(fn, "__name__", str(fn))) \
            if progress else None
        if bar is not None:
            for fut, (start, end) in zip(futures, bounds, strict=True):
                fut.add_done_callback(lambda _f, n=end - start: bar.update(n))
        return self._map_results(futures, deadline, bar)  # type: ignore[arg-type]

    def _map_results(self, futures: list[JobFuture | None], deadline: float | None,
                     bar: Any = None) -> Iterator[Any]:
        """Yield each chunk's items in order.  Nothing here outlives what it yields: a chunk's future
        is dropped once read, and each item leaves the chunk's list as it is yielded."""
        try:
            for k in range(len(futures)):
                fut = futures[k]
                assert fut is not None
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                values, errors = fut.result(remaining)
                futures[k] = fut = None
                values.reverse()
                if not errors:
                    while values:
                        yield values.pop()
                    continue
                for i in range(len(values)):
                    if i in errors:
                        raise self._exception_of(errors[i], "")
                    yield values.pop()
        finally:
            for fut in futures:
                if fut is not None and not fut.done():
                    fut._cancel_queued()
            if bar is not None:
                bar.close()

    # ---------------------------------------------------------------- job control

    def suspend(self, timeout: float = 5.0) -> None:
        """Dispatch nothing more until :meth:`resume`: running jobs finish, new ones wait in the
        queue (they may still be sent).  In force when this returns; ``status()`` shows it.  On a
        queue several pools share, it suspends this pool's dispatch only."""
        self._ask_queues("suspend", None, timeout)
        self._suspended = True

    def resume(self, timeout: float = 5.0) -> None:
        """Dispatch again after :meth:`suspend` (or ``Pool(..., suspended=True)``)."""
        self._ask_queues("resume", None, timeout)
        self._suspended = False

    def failed(self, limit: int = 100, timeout: float = 5.0) -> list[FailedRecord]:
        """The jobs the failure mode ``honeydew.Move()`` kept, newest first (at most ``limit``):
        each with its ``id``, ``task``, ``args`` (a short repr), ``error``, ``traceback``,
        ``deliveries`` and ``failed_at``.  The in-memory queue keeps them while its process lives."""
        check_int("limit", limit, 0)
        answers = self._ask_queues("failed", limit, timeout)
        kept = sorted((FailedJob(*f) for rows in answers for f in rows), key=lambda f: f.failed_at, reverse=True)
        return [describe(f) for f in kept[:limit]]

    def retry_failed(self, ids: Iterable[str] | None = None, timeout: float = 5.0) -> int:
        """Put kept jobs back in the queue, their delivery count reset (``None``: all of them);
        returns how many.  A retried job is gone from :meth:`failed` when this returns."""
        return sum(self._ask_queues("retry_failed", _job_ids(ids), timeout))

    def purge_failed(self, ids: Iterable[str] | None = None, timeout: float = 5.0) -> int:
        """Delete kept jobs (``None``: all of them); returns how many."""
        return sum(self._ask_queues("purge_failed", _job_ids(ids), timeout))

    def _ask_queues(self, op: str, arg: Any, timeout: float | None) -> list[Any]:
        """Send ``Control(op, arg)`` to every queue and wait for every answer; their values."""
        self._check_owner()
        if self._closed and op in ("suspend", "resume"):
            raise self._closed_error()
        if self._inbox.supervisor_gone:
            raise PoolClosed(self._closed_reason())
        req = self._jobs.new_request()
        for q, lock in enumerate(self._queue_locks):
            with lock:
                try:
                    self._writer.send(q, Control(req, op, arg))
                except OSError:
                    raise PoolClosed(f"the pool's queue process is gone ({self._broken or 'it stopped'})") from None
        jobs = self._jobs
        ok = self._inbox.wait(lambda: jobs.control_count(req) >= self.num_queues or self._inbox.supervisor_gone,
                              timeout)
        answers = jobs.take_control(req)
        if not ok:
            raise TimeoutError(f"the pool's queues did not answer {op} within {timeout}s")
        if len(answers) < self.num_queues:
            raise PoolClosed(self._closed_reason())
        refused = [value for good, value in answers if not good]
        if refused:
            raise HoneydewError(f"{op}: {refused[0]}")
        return [value for _, value in answers]

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """A snapshot for operators: each queue process (pending, delayed, reserved and running
        jobs) and each worker slot (state ``starting``/``serving``/``backoff``, pid, init failures,
        last init error (kept while the next attempt starts), the back-off's length ``retry_in`` and
        the seconds left of it ``next_attempt_in``, monitor restarts); whether the pool is
        ``suspended``; and since it started, summed over its queues: jobs ``done``, ``failed``
        (given up), ``retried`` (redelivered), ``crashed`` and ``timed_out`` (failures of those
        kinds), ``hook_errors`` (``after_job`` hooks that raised), and ``jobs_per_s_10s`` /
        ``jobs_per_s_60s``.  Cheap enough to poll every second.

        Raises ``PoolClosed`` once every pool process is gone, ``TimeoutError`` if no answer came."""
        self._check_owner()
        if self._inbox.supervisor_gone:
            raise PoolClosed(self._closed_reason())
        req = self._jobs.new_request()
        expected = self.num_queues + 1
        try:
            self._control.send(StatusRequest(req))
            for i, lock in enumerate(self._queue_locks):
                with lock:
                    self._writer.send(i, StatusRequest(req))
        except OSError as e:
            raise PoolClosed(f"the pool's processes are gone ({e})") from None
        ok = self._inbox.wait(lambda: self._jobs.status_count(req) >= expected or self._inbox.supervisor_gone,
                              timeout)
        replies = self._jobs.take_status(req)
        if not ok:
            raise TimeoutError(f"the pool did not answer a status request within {timeout}s")
        out: dict[str, Any] = {"queues": [], "workers": [], "pending_in_caller": len(self._jobs),
                               "closed": self._closed, "suspended": self._suspended, "start_method": self.start_method,
                               "spawn_reason": self.spawn_reason}
        for source, info in replies:
            if source == "queue":
                out["queues"].append(info)
            else:
                out.update({k: v for k, v in info.items() if k != "workers"})
                out["workers"] = info["workers"]
        out["queues"].sort(key=lambda q: q["index"])
        for key in _COUNTED:  # the whole pool's counts, summed over its queues
            out[key] = sum(q.get(key, 0) for q in out["queues"])
        out["progress"] = {slot.job_id: {"fraction": p[0], "message": p[1]} for slot in self._jobs.slots()
                           if (p := getattr(slot, "progress", None)) is not None}
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``Executor.shutdown``: accept no more jobs; with ``cancel_futures``, cancel every job of
        a future that has not started (casts run all the same); with ``wait``, wait until every
        remaining job is done and every process has exited (``close()`` + ``join()``).  Without
        ``wait`` it returns at once and the pool finishes its jobs in the background."""
        self._check_owner()
        if cancel_futures:
            queued = [fut for fut in self._jobs.slots() if isinstance(fut, JobFuture)
                      and fut._state == _PENDING][self._spared_by_cancel_futures:]
            for fut, answer in zip(queued, self._ask_all(queued), strict=True):
                if answer == "cancelled":
                    self._cancelled(fut)
        self.close()
        if wait:
            self.join()
        elif not self._inbox.supervisor_gone and self._finisher is None:
            # (this thread keeps the pool alive, so that the collector does not stop it, until it is done)
            self._finisher = threading.Thread(target=_finish, args=(self,), name="honeydew-finish", daemon=True)
            self._finisher.start()

    def close(self) -> None:
        """Accept no more jobs; queued jobs still run.  Returns at once (``join`` waits)."""
        self._check_owner()
        if self._closed:
            return
        with self._stores:  # a cast being stored is committed before the Drain, which finds it in the store
            self._closed = True
            while self._storing:
                self._stores.wait()
        for i, lock in enumerate(self._queue_locks):
            with lock:
                self._closed = True
                try:
                    self._writer.send(i, Drain())
                except OSError:
                    pass

    def join(self, timeout: float | None = None) -> None:
        """Wait until every queued job is done and every pool process has exited.  ``close()``
        first.  Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds."""
        self._check_owner()
        if not self._closed:
            raise ValueError("join() waits for a closed pool: call pool.close() first (or use `with Pool(...)`)")
        if not self._inbox.wait(lambda: self._inbox.supervisor_gone, timeout):
            raise TimeoutError(f"the pool did not finish within {timeout}s; {len(self._jobs)} jobs still "
                               f"pending (see the log for workers in init back-off); pool.terminate() stops it")
        self._supervisor.reap(True)
        self._shutdown_bg()
        self._release_fds()
        _SigtermHandler.uninstall_if_idle()
        if self._init_dropped and not self._breaks_on_init:  # (an executor broke: its futures said so)
            dropped, self._init_dropped = self._init_dropped, 0  # said once
            raise self._init_error(f"{dropped} job(s) were dropped because no worker could start")

    def _timed_out(self, job_id: str, timeout: float | None) -> TimeoutError:
        """The caller's wait for ``job_id`` ran out: say where the job stands (running, or still
        queued and why: no worker serving, with the last init error), as far as a quick look tells."""
        head = f"job {job_id} did not finish within {timeout}s"
        try:
            st = self.status(timeout=0.5)
        except Exception:
            return TimeoutError(f"{head} (it goes on)")
        if any(job_id in jobs for q in st["queues"] for jobs in q["running"].values()):
            return TimeoutError(f"{head}: it is running (it goes on)")
        if job_id not in self._jobs:
            return TimeoutError(f"{head} (it has finished since)")
        serving = [w for w in st["workers"] if w["state"] == "serving"]
        if serving or not st["workers"]:
            pending = sum(q["pending"] for q in st["queues"])
            return TimeoutError(f"{head}: it is still queued, not started ({pending} job(s) pending); "
                                f"it goes on waiting")
        why = "; ".join(f"worker {w['slot']}: {w['state']}" + (f", init failed {w['init_failures']} time(s): "
                                                               f"{w['last_error']}" if w["init_failures"] else "")
                        for w in st["workers"])
        return TimeoutError(f"{head}: it is still queued, not started: no worker is serving ({why})")

    def _exception_of(self, failure: tuple[Any, ...], job_id: str) -> BaseException:
        """The exception a failed job's caller gets (``to_exception``; an executor adapts it)."""
        return to_exception(failure, job_id, self._remote_traceback, self._no_worker_error)

    def _unpickling_failed(self, message: str) -> BaseException:
        """The error for a result that would not unpickle here."""
        return SerializationError(message)

    def _workers_down(self, dropped: int, failure: tuple[Any, ...]) -> None:
        """A queue dropped ``dropped`` jobs because no worker could start (their callers got the error).
        An executor that breaks on it stops its tree now (its supervisor's exit fails the rest)."""
        self._init_dropped += dropped
        self._init_failure = failure
        if self._breaks_on_init and not self._broken:
            self._broken = f"its initializer keeps failing: {Failure._make(failure).describe()}"
            self._closed = True
            try:
                self._control.sock.send(_TERMINATE_PACKET, socket.MSG_DONTWAIT)
            except OSError:
                pass

    def _ask_to_terminate(self) -> None:
        try:
            self._control.send(Terminate())
        except OSError:
            pass

    def _init_error(self, what: str) -> WorkerInitError:
        assert self._init_failure is not None
        f = Failure._make(self._init_failure)
        err = to_exception(f._replace(kind=Failure.NO_WORKER, message=f"{what}; the last init failure: {f.describe()}"),
                           remote=self._remote_traceback, no_worker=self._no_worker_error)
        assert isinstance(err, WorkerInitError)
        return err

    def _release_fds(self) -> None:
        """Every pool process is gone: close every descriptor the caller held for them, once no
        thread polls them any more (the inbox makes sure).  Later calls raise ``PoolClosed``."""
        if self._lifeline < 0:
            return
        self._finalizer.detach()
        control.unregister(self)
        os.close(self._lifeline)
        self._lifeline = -1
        if self._spool is not None:
            _spool.remove(self._spool)
        if self._producer is not None:
            self._producer.close()
        self._inbox.close()
        self._supervisor.close()
        for ep in (self._control, *self._queues, *self._replies):
            ep.sock.close()

    def terminate(self) -> None:
        """Stop now: running jobs are killed, waiting callers get ``PoolClosed``, no process is left."""
        self._check_owner()
        if self._terminated:
            return
        self._terminated = True
        dropped = self._count_dropped() if not self._inbox.supervisor_gone else None
        self._closed = True
        if dropped:
            log.warning("honeydew: terminate(): %s", dropped)
        if not self._supervisor.reap(False):
            # asked by message (the supervisor kills its tree at once), SIGKILL if it has not gone in 5 s
            _process.stop(self._supervisor.pid, 5.0, ask=self._ask_to_terminate,
                          gone=lambda timeout: self._inbox.wait(lambda: self._inbox.supervisor_gone, timeout))
            self._supervisor.reap(True)
        self._inbox.fail_all(lambda jid: PoolClosed(f"job {jid}: the pool was terminated"))
        self._shutdown_bg()
        self._release_fds()
        _SigtermHandler.uninstall_if_idle()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._foreign and exc_type is not None:
            return  # a forked child leaving its parent's block by an exception (sys.exit): not its pool to stop
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.terminate()
            return
        try:
            self.close()
            self.join()
        except WorkerInitError:
            if exc_type is None:
                raise
            # the block is failing already (most likely with this very error): let its exception through
        except KeyboardInterrupt:
            self.terminate()  # Ctrl-C while the block waits for its jobs: stop them now
            raise

    def __repr__(self) -> str:
        state = "terminated" if self._terminated else "closed" if self._closed else "running"
        return (f"<honeydew.Pool {self._spec.name} workers={self.num_workers} queues={self.num_queues} "
                f"{state} pending={len(self._jobs)}>")

    # ---------------------------------------------------------------- enqueueing

    def _ref(self, fn: str | Callable[..., Any]) -> Any:
        """A registered task's name, or what to send for any other callable (``_payload``)."""
        ref = self._spec.resolve(fn)
        if isinstance(ref, str):
            return ref
        return self._encoder.callable_ref(ref)

    def _payload(self, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        ref = self._ref(fn)
        if type(ref) is str and self._spec.checks_args:
            self._spec.check_args(ref, args, kwargs)
        return self._encoder.payload(ref, args, kwargs)

    def _task_defaults(self, fn: Any, job_timeout: float | None, priority: int | None,
                       mode: str = "") -> tuple[float, int, str]:
        """A job's time limit, priority and failure-mode key: the job's own (given: not None, or for
        ``mode`` not ''), else its task's (``@honeydew.task(...)``), else the pool's.  The key is the
        job's own failure mode (``own_mode_key``), else the task's name when the task has a failure
        mode of its own, else '' (the pool's)."""
        if not self._spec.options:
            return (self._job_timeout if job_timeout is None else job_timeout), priority or 0, mode
        name = fn if isinstance(fn, str) else self._spec.resolve(fn)
        options = self._spec.options.get(name) if isinstance(name, str) else None
        if options is not None:
            if job_timeout is None:
                job_timeout = options.job_timeout
            if priority is None:
                priority = options.priority
            if not mode and options.failure_mode is not None:
                mode = name  # type: ignore[assignment]
        return (self._job_timeout if job_timeout is None else job_timeout), priority or 0, mode

    def _cast(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], block: bool,
              timeout: float | None, job_timeout: float | None, ready_at: float = 0.0,
              priority: int | None = None, mode: str = "") -> str:
        payload = self._payload(fn, args, kwargs)
        job_timeout, priority, mode = self._task_defaults(fn, job_timeout, priority, mode)
        return self._enqueue(payload, False, block, timeout, job_timeout,  # type: ignore[no-any-return]
                             ready_at=ready_at, priority=priority, mode=mode)

    def _call(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None,
              job_timeout: float | None, ready_at: float = 0.0, priority: int | None = None, mode: str = "") -> Any:
        payload = self._payload(fn, args, kwargs)
        job_timeout, priority, mode = self._task_defaults(fn, job_timeout, priority, mode)
        slot = self._enqueue(payload, True, True, timeout, job_timeout, is_async=False,
                             ready_at=ready_at, priority=priority, mode=mode)
        if not slot._done:
            self._inbox.wait(slot.done, timeout)
            if not slot._done:
                raise self._timed_out(slot.job_id, timeout)
        return slot.outcome()

    def _submit(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], block: bool,
                timeout: float | None, job_timeout: float | None, ready_at: float = 0.0,
                priority: int | None = None, mode: str = "") -> JobFuture:
        payload = self._payload(fn, args, kwargs)
        job_timeout, priority, mode = self._task_defaults(fn, job_timeout, priority, mode)
        return self._enqueue(payload, True, block, timeout,  # type: ignore[no-any-return]
                             job_timeout, ready_at=ready_at, priority=priority, mode=mode)

    def _enqueue(self, payload: bytes, reply: bool, block: bool, timeout: float | None, job_timeout: float,
                 is_async: bool = True, confirm: bool = True, ready_at: float = 0.0, priority: int = 0,
                 mode: str = "") -> Any:
        """Send one job; a ``cast`` returns its id, a ``submit`` its future, a ``call`` its slot.  On
        a durable backend a cast or submit returns once the backend holds the job (unless not
        ``confirm``: a ``map``'s chunks, whose futures fail if it refuses them)."""
        if self._closed:
            raise self._closed_error()
        if self._nobody_runs:
            raise ValueError(self._nobody_runs)
        if self.num_queues == 1:
            q = 0
        else:
            q = next(self._rr) % self.num_queues
        if self._producer is not None and not reply:
            return self._store_cast(q, payload, job_timeout, ready_at, priority, mode)
        if self.max_pending is not None:
            self._reserve_room(q, block, timeout)
        job_id = f"{self._token}-{next(self._ids)}"
        fut = None
        with self._queue_locks[q]:
            if self._closed:
                self._room_back(q)
                raise self._closed_error()
            if reply:
                fut = JobFuture(self, job_id, q, is_async) if is_async else _CallSlot(job_id, q)
                self._pending[job_id] = (fut, q)
                if is_async:
                    self._submit_opened()
                    if self._bg is None:
                        self._start_background()
            try:
                wire = enqueue_wire(job_id, payload, self._token if reply else "", job_timeout, ready_at, priority,
                                    mode)
                if self._durable:
                    unstored = Unstored(job_id, wire, fut)
                    self._jobs.unstored[q].append(unstored)
                if reply and not is_async:
                    self._writer.send_wire(q, wire)  # a call waits at once: nothing to gain by holding it back
                else:
                    self._writer.put_job(q, wire, len(payload))
            except OSError:
                self._pending.pop(job_id, None)
                self._room_back(q)
                raise PoolClosed(f"the pool's queue process is gone ({self._broken or 'it stopped'})") from None
        if self._durable and confirm and (is_async or not reply):
            self._wait_stored(unstored, timeout)
        return fut if reply else job_id

    def _store_cast(self, q: int, payload: bytes, job_timeout: float, ready_at: float, priority: int,
                    mode: str) -> str:
        """A cast on a backend with a producer: stored from here (with the casts of other threads
        that arrive meanwhile: one commit), then queue ``q`` is woken to look for it, once per write."""
        producer = self._producer
        assert producer is not None
        with self._stores:
            if self._closed:
                raise self._closed_error()
            self._storing += 1
        job_id = f"{self._token}-{next(self._ids)}"
        try:
            write = producer.store(Job(job_id, payload, "", job_timeout, priority=priority, mode=mode), ready_at)
        except HoneydewError as e:
            raise self._not_stored(job_id, str(e)) from None
        finally:
            with self._stores:
                self._storing -= 1
                if not self._storing:
                    self._stores.notify_all()
        if write > self._woken[q]:
            with self._queue_locks[q]:
                if write > self._woken[q]:
                    self._woken[q] = write
                    try:
                        self._writer.wake(q, _WAKE)
                    except OSError:
                        pass  # the queue process is gone: the next one looks at the store when it starts
        return job_id

    def _wait_stored(self, entry: Unstored, timeout: float | None) -> None:
        """A ``cast`` or ``submit`` to a durable backend returns once the backend holds the job.
        Never for ever: a backend that cannot store for :data:`STORE_WAIT` seconds (its queue
        process cannot open it, and restarts) is an error the caller sees."""
        limit = STORE_WAIT if timeout is None else timeout
        if not self._inbox.wait(lambda: entry.stored or self._inbox.supervisor_gone or self._terminated, limit):
            raise TimeoutError(f"job {entry.job_id} was not confirmed stored within {limit}s (the queue's log says "
                               f"why: a backend it cannot open?); it may still be stored and run")
        if entry.error:
            raise self._not_stored(entry.job_id, entry.error)
        if not entry.stored:
            raise PoolClosed(f"job {entry.job_id} may not have been stored: {self._closed_reason()}")

    def _not_stored(self, job_id: str, error: str) -> HoneydewError:
        return HoneydewError(f"job {job_id} was not stored, so it will not run: {error}")

    def _count_dropped(self) -> str:
        """What terminating now drops, in words ('' if nothing): every job the queues hold (casts
        included) and those still in this process's write buffers."""
        waiting = len(self._jobs)
        try:
            st = self.status(timeout=0.5)
            queued = sum(q["pending"] for q in st["queues"]) + sum(len(b) for b in self._writer.bufs)
            running = sum(q["reserved"] for q in st["queues"])
        except Exception:
            return f"{waiting} job(s) with a waiting caller dropped (and an unknown number of casts)" if waiting else ""
        if not queued + running:
            return ""
        if self._durable:  # (nothing stored is dropped: the jobs stay in the durable queue)
            return (f"{running} running job(s) stopped and {queued} queued left in {self._config.queue!r}, where "
                    f"they run when a pool serves it again (the stopped ones counted as delivered); {waiting} "
                    f"waiting caller(s) get PoolClosed")
        return (f"{queued + running} job(s) dropped ({running} running, {queued} queued, casts included); "
                f"{waiting} waiting caller(s) get PoolClosed")

    def _check_owner(self) -> None:
        """Any use of a pool from a process other than the one that made it (a forked child that
        inherited a copy, a task running in another pool) raises at once and touches no descriptor:
        the descriptors it would write to belong to, or were reused by, something else there."""
        if self._foreign:
            raise HoneydewError(
                f"this pool was made by process {self._owner} and cannot be used from process {os.getpid()}, "
                f"which inherited a copy of it when it was forked (a module-level pool used by a forked child, "
                f"or by a task running in another pool); make a pool in this process, or send the work to the "
                f"process that owns this one")

    def _closed_error(self) -> Exception:
        """What a job sent to a closed pool raises (a ``RuntimeError``, as executors do)."""
        self._check_owner()
        if self._breaks_on_init and self._init_failure is not None:
            return self._init_error(f"the executor is broken: {self._broken}")
        if _exiting:
            # ProcessPoolExecutor's words, which code written for it may look for
            return RuntimeError("cannot schedule new futures after interpreter shutdown")
        return PoolClosed(self._closed_reason())

    def _closed_reason(self) -> str:
        self._check_owner()
        if self._broken:
            return f"the pool is broken: {self._broken}"
        return "the pool was terminated" if self._terminated else "the pool is closed; it accepts no more jobs"

    def _reserve_room(self, q: int, block: bool, timeout: float | None) -> None:
        limit = self.max_pending
        assert limit is not None
        while True:
            with self._count_lock:
                if sum(self._outstanding) < limit:
                    self._outstanding[q] += 1
                    return
            if not block:
                # read what has arrived without waiting: the queue's word that jobs settled may be
                # sitting unread (nobody else reads once the last future has its result)
                if not self._inbox.wait(lambda: sum(self._outstanding) < limit or self._closed, 0.0):
                    raise QueueFull(f"{limit} jobs are pending (max_pending={limit}); retry later or let cast block")
            elif not self._inbox.wait(lambda: sum(self._outstanding) < limit or self._closed, timeout):
                raise TimeoutError(f"no room in the queue within {timeout}s (max_pending={limit})")
            if self._closed:
                raise self._closed_error()

    def _room_back(self, q: int) -> None:
        if self.max_pending is not None:
            with self._count_lock:
                self._outstanding[q] -= 1

    # ---------------------------------------------------------------- waiting & bookkeeping

    def _wait(self, fut: Future, timeout: float | None) -> None:  # type: ignore[type-arg]
        self._check_owner()
        self._inbox.wait(fut.done, timeout)

    def _ask(self, fut: JobFuture, terminate: bool | None) -> str:
        """Ask ``fut``'s queue to cancel its job (``terminate`` False/True) or where it is (None),
        and wait for the answer: ``cancelled``, ``queued``, ``running`` or ``gone``.  ``gone`` too
        when the job's outcome arrives first or the queue is replaced (the outcome says why)."""
        self._check_owner()
        if self._terminated or self._inbox.supervisor_gone:
            return "gone"
        req = self._jobs.new_request()
        msg = WhereIs(fut.job_id, req) if terminate is None else Cancel(fut.job_id, terminate, req)
        with self._queue_locks[fut._queue]:
            try:
                self._writer.send(fut._queue, msg)
            except OSError:
                return "gone"
        jobs = self._jobs
        self._inbox.wait(lambda: jobs.has_state(req) or fut.done() or self._inbox.supervisor_gone, None)
        return jobs.take_state(req)

    def _ask_all(self, futs: list[JobFuture]) -> list[str]:
        """``_ask(fut, False)`` for many futures at once: every ``Cancel`` written first (a frame
        per queue), then every answer awaited."""
        if not futs or self._terminated or self._inbox.supervisor_gone:
            return ["gone"] * len(futs)
        reqs = [self._jobs.new_request() for _ in futs]
        for q, lock in enumerate(self._queue_locks):
            mine = [Cancel(f.job_id, False, r) for f, r in zip(futs, reqs, strict=True) if f._queue == q]
            if mine:
                with lock:
                    try:
                        self._writer.send_many(q, mine)
                    except OSError:
                        pass
        jobs = self._jobs
        self._inbox.wait(lambda: all(jobs.has_state(r) or f.done() for f, r in zip(futs, reqs, strict=True))
                         or self._inbox.supervisor_gone, None)
        return [jobs.take_state(r) for r in reqs]

    def _cancelled(self, fut: JobFuture) -> bool:
        """The queue dropped (or stopped) ``fut``'s job: the future is cancelled, unless its
        outcome won the race."""
        if self._jobs.discard(fut.job_id) is None:
            return fut.cancelled()
        with fut._condition:
            if fut._state not in (_PENDING, _RUNNING):
                return fut._state in (_CANCELLED, _CANCELLED_AND_NOTIFIED)
            fut._state = _CANCELLED
            fut._condition.notify_all()
        fut._invoke_callbacks()
        return True

    def _cancel_nowait(self, fut: JobFuture) -> None:
        if fut.job_id not in self._jobs or not self._cancelled(fut):
            return
        if not self._terminated:
            with self._queue_locks[fut._queue]:
                try:
                    self._writer.send(fut._queue, Cancel(fut.job_id, False, 0))
                except OSError:
                    pass
        self._inbox.wake()

    def _settled(self, q: int, count: int) -> None:
        with self._count_lock:
            self._outstanding[q] = max(0, self._outstanding[q] - count)

    def _start_background(self) -> None:
        """The first ``submit``: start the thread that reads while submit futures are open."""
        self._bg = threading.Thread(target=_background, args=(weakref.ref(self),),
                                    name="honeydew-results", daemon=True)
        self._bg.start()

    def _shutdown_bg(self) -> None:
        self._writer.stop()
        self._jobs.submits_open.set()
        self._inbox.wake()
        bg = self._bg
        if bg is not None and bg is not threading.current_thread():
            bg.join(5.0)

    def _queue_restarted(self, q: int, gen: int, reason: str) -> list[tuple[Any, BaseException]]:
        """Queue ``q`` was replaced: its jobs are lost.  Fail them, then let the new one serve.  A
        durable backend lost nothing it stored: send again what it had not stored, and go on."""
        if self._durable:
            return self._durable_queue_restarted(q, gen, reason)
        with self._queue_locks[q]:
            lost = self._jobs.lose_queue(q)
            failed: list[tuple[Any, BaseException]] = [
                (fut, JobLost(f"job {jid} was lost: {reason} (in-memory queue {q})")) for jid, fut in lost]
            if lost:
                log.warning("%d job(s) lost with queue %d: %s", len(lost), q, reason)
            with self._count_lock:
                self._outstanding[q] = 0
            self._writer.drop(q)  # jobs put before we knew: failed above (or casts the old queue took down)
            try:
                self._writer.send_many(q, [Resync(gen), Control(0, "suspend" if self._suspended else "resume", None)])
                if self._closed:
                    self._writer.send(q, Drain())
            except OSError:
                pass
        return failed

    def _durable_queue_restarted(self, q: int, gen: int, reason: str) -> list[tuple[Any, BaseException]]:
        jobs = self._jobs
        with self._queue_locks[q]:
            jobs.gens[q] = gen  # the old generation's late Stored no longer counts
            unstored = list(jobs.unstored[q])
            # (a snapshot: a cancel may take a job out meanwhile, from another thread)
            stored = {jid for jid, (_, qi) in list(jobs.pending.items()) if qi == q}.difference(
                e.job_id for e in unstored)
            log.warning("queue %d restarted (%s): %d job(s) stored by the backend are kept; %d not yet stored are "
                        "sent again", q, reason, len(stored), len(unstored))
            self._writer.drop(q)  # every job in it is in the unstored list, sent again below
            try:
                self._writer.send_many(q, [Resync(gen, tuple(sorted(stored))),
                                           Control(0, "suspend" if self._suspended else "resume", None)])
                for entry in unstored:
                    self._writer.bufs[q].append(entry.wire)
                if self._closed:
                    self._writer.send(q, Drain())
                else:
                    self._writer.write(q)
            except OSError:
                pass
        return []

    def _supervisor_exited(self) -> Callable[[str], BaseException]:
        self._supervisor.reap(True)  # its pidfd is readable: it has exited, this does not block
        if self._boot_error:
            self._broken = f"its supervisor could not start: {self._boot_error}"
            log.error("honeydew pool: %s", self._broken)
            self._closed = True
        elif not self._closed:
            code = self._supervisor.exitcode
            how = (f"was killed by {signal_name(code)}" if code is not None and code < 0
                   else f"exited with code {code}")
            self._broken = f"its supervisor process (pid {self._supervisor.pid}) {how}"
            log.error("honeydew pool: %s; every pool process is gone", self._broken)
            self._closed = True
        self._jobs.refuse_all(self._broken or "the pool's processes are gone")
        return self._stranded_error

    def _stranded_error(self, jid: str) -> BaseException:
        """What a job still pending when every pool process is gone raises."""
        if self._breaks_on_init and self._init_failure is not None:
            return self._init_error(f"job {jid} was not run: the executor is broken")
        if self._terminated:
            return PoolClosed(f"job {jid}: the pool was terminated")
        if self._boot_error:
            return PoolClosed(f"job {jid} was not run: the pool is broken: {self._broken}")
        return JobLost(f"job {jid} was lost: the pool's processes are gone")


#: what status() sums over the queues: jobs done, given up, redelivered, failures by kind, after_job
#: hooks that raised, and the jobs done per second over the last 10 and 60 seconds
_COUNTED = ("done", "failed", "retried", "crashed", "timed_out", "hook_errors", "jobs_per_s_10s", "jobs_per_s_60s")


def _progress_bar(total: int, what: str) -> Any:
    """A tqdm bar on stderr for ``map(..., progress=True)``, or None when stderr is not a terminal."""
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    from tqdm import tqdm  # (imported only when a bar is drawn)
    return tqdm(total=total, desc=f"map({what})", unit="item", file=sys.stderr)


def _job_ids(ids: Iterable[str] | None) -> list[str] | None:
    if ids is None:
        return None
    if isinstance(ids, str):
        raise TypeError(f"ids must be a list of job ids (or None for all), got the string {ids!r}; "
                        f"e.g. pool.retry_failed([{ids!r}])")
    out = list(ids)
    for i in out:
        if not isinstance(i, str):
            raise TypeError(f"a job id is a string (as cast() returns it), got {i!r}")
    return out


class _Events:
    """The pool's side of the inbox (``_inbox.PoolEvents``): what the inbox reads but only the
    pool can act on.  A separate object, so that ``Pool`` itself gains no public method."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def settled(self, queue: int, count: int) -> None:
        self._pool._settled(queue, count)

    def workers_down(self, dropped: int, failure: tuple[Any, ...]) -> None:
        self._pool._workers_down(dropped, failure)

    def queue_restarted(self, index: int, gen: int, reason: str) -> list[tuple[Any, BaseException]]:
        return self._pool._queue_restarted(index, gen, reason)

    def boot_failed(self, reason: str) -> None:
        self._pool._boot_error = reason

    def supervisor_exited(self) -> Callable[[str], BaseException]:
        return self._pool._supervisor_exited()

    def not_stored(self, job_id: str, error: str) -> BaseException:
        return self._pool._not_stored(job_id, error)

    def exception_of(self, failure: tuple[Any, ...], job_id: str) -> BaseException:
        return self._pool._exception_of(failure, job_id)

    def unpickling_failed(self, message: str) -> BaseException:
        return self._pool._unpickling_failed(message)


class _SigtermHandler:
    """SIGTERM sent to the process that owns the pools (``kill PID``, a container runtime): warm
    shutdown of every live pool (running jobs finish, no new job starts, queued in-memory jobs are
    reported lost), then the process ends as SIGTERM would have ended it (killed by SIGTERM: exit
    status 143 in a shell).  A second SIGTERM stops the pools now and ends the process at once.

    Installed only from the main thread and only over the default disposition: a program that
    handles SIGTERM itself keeps its handler (it can call ``pool.close()``/``terminate()``) and its
    own say over when it ends."""

    installed = False
    count = 0

    @classmethod
    def install(cls) -> None:
        if cls.installed or threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return
            signal.signal(signal.SIGTERM, cls._handle)
        except ValueError:
            return
        cls.installed = True
        cls.count = 0

    @classmethod
    def uninstall_if_idle(cls) -> None:
        if not cls.installed or cls.count or any(not p._inbox.supervisor_gone for p in list(_live_pools)):
            return
        try:
            if signal.getsignal(signal.SIGTERM) == cls._handle:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:
            return
        cls.installed = False

    @classmethod
    def _handle(cls, signum: int, frame: Any) -> None:
        cls.count += 1
        log.warning("honeydew: SIGTERM %s", "(warm shutdown of every pool, then this process ends)"
                    if cls.count == 1 else "again (stop now)")
        watch = []
        for pool in list(_live_pools):
            pool._closed = True
            try:
                pool._control.sock.send(_SHUTDOWN_PACKET, socket.MSG_DONTWAIT)
            except OSError:
                pass
            fd = pidfd(pool._supervisor.pid) if pool._supervisor.exitcode is None else None
            if fd is not None:
                watch.append(fd)
        if cls.count >= 2:
            _die_by_sigterm()
        threading.Thread(target=_end_after_warm_stop, args=(watch,), name="honeydew-sigterm", daemon=True).start()


def _end_after_warm_stop(pidfds: list[int]) -> None:
    """Wait until every pool's supervisor has exited (the warm stop is over), then end the process."""
    try:
        for fd in pidfds:
            select.select([fd], [], [])
            os.close(fd)
    finally:
        _die_by_sigterm()


def _die_by_sigterm() -> None:
    """End this process as an unhandled SIGTERM does, from any thread: the default disposition is
    restored in libc directly (``signal.signal`` works only in the main thread), then the signal sent."""
    control.shutdown()  # (no atexit on this path: remove the control socket's files now)
    _process.default_signal(signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)


def _finish(pool: Pool) -> None:
    """``shutdown(wait=False)``: join the pool in the background (logged, never raised)."""
    try:
        pool.join()
    except Exception as e:
        log.error("honeydew: %r: %s", pool, e)


def _background(ref: weakref.ref[Pool]) -> None:
    """Resolve ``submit`` futures while nobody else reads (their done callbacks must fire)."""
    while True:
        pool = ref()
        if pool is None:
            return
        event = pool._jobs.submits_open
        del pool
        event.wait()
        pool = ref()
        if pool is None or pool._inbox.supervisor_gone or pool._terminated:
            return
        pool._inbox.wait(lambda p=pool: p._jobs.submits == 0 or p._inbox.supervisor_gone or p._terminated, None)
        del pool


def _chunks(n: int, workers: int, chunksize: int | None) -> list[tuple[int, int]]:
    """(start, end) of each chunk of ``n`` map items.  Default: ``n / (4 * workers)`` items per chunk
    (multiprocessing.Pool.map's choice) for the first three quarters; then guided chunks, each
    ``remaining / (2 * workers)`` items, down to 1/64 of the first size: a worker that runs slower
    (a busier core) then holds up the end by a small chunk, not a big one, and the tail is shared
    out as the workers free up.  (Tiny items pay about 10 more chunks than mp's fixed size.)"""
    if chunksize is not None:
        return [(i, min(n, i + chunksize)) for i in range(0, n, chunksize)]
    w = max(1, workers)
    big = max(1, -(-n // (w * 4)))
    floor = max(1, big // 64)
    head = (n - n // 4) // big * big
    out = [(i, i + big) for i in range(0, head, big)]
    i = head
    while i < n:
        size = min(n - i, max(floor, -(-(n - i) // (2 * w))))
        out.append((i, i + size))
        i += size
    return out


def _forget_pools_in_child() -> None:
    """In a forked child: every pool inherited from the parent is the parent's.  Mark them so that
    any use raises at once, and leave them alone at exit and on SIGTERM (an inherited SIGTERM
    handler of ours goes back to the default)."""
    for pool in list(_live_pools):
        pool._foreign = True
        pool._closed = True
    _live_pools.clear()
    if _SigtermHandler.installed:
        _SigtermHandler.installed = False
        try:
            if signal.getsignal(signal.SIGTERM) == _SigtermHandler._handle:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:
            pass


os.register_at_fork(after_in_child=_forget_pools_in_child)


def _nested_pool_message() -> str:
    """The error for a pool created while a pool process imports the user's code: a module-level
    pool in a module the workers import would start a whole pool in every worker."""
    module = "?"
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            module = frame.f_globals.get("__name__", "?")
            break
        frame = frame.f_back  # type: ignore[assignment]
    return (f"honeydew.Pool() was called at the top level of module {module!r} while {_process.decoding}: "
            f"a pool made when a module is imported would start a whole new pool in every pool process "
            f"that imports it.  Make pools under `if __name__ == \"__main__\":` (or in a function the "
            f"program calls), as multiprocessing requires for its start-up")


_exiting = False   # the interpreter is exiting: no job may be sent any more


def _join_at_exit() -> None:
    """The interpreter is exiting (threading's exit hook, which runs before non-daemon threads are
    joined, as ProcessPoolExecutor's does): every pool that was not joined or terminated is closed
    and joined, so the jobs sent before run to completion, silently.  The wait ends as ``join()``
    does (a pool whose ``init`` keeps failing ends it with ``WorkerInitError``, logged once); a
    SIGTERM meanwhile is handled as anywhere else, and Ctrl-C stops every pool at once (as does
    the program ending by an uncaught Ctrl-C)."""
    global _exiting
    _exiting = True
    pools = [p for p in list(_live_pools) if not (p._terminated or p._foreign or p._inbox.supervisor_gone)]
    if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt):
        # the program is ending by an uncaught Ctrl-C: nobody wants its jobs waited for
        for pool in pools:
            try:
                pool.terminate()
            except Exception:
                pass
        return
    try:
        for pool in pools:
            pool.close()
        for pool in pools:
            try:
                pool.join()
            except WorkerInitError as e:
                log.error("honeydew: %r at interpreter exit: %s", pool, e)
    except KeyboardInterrupt:
        for pool in pools:
            try:
                pool.terminate()
            except Exception:
                pass


threading._register_atexit(_join_at_exit)  # type: ignore[attr-defined]


@atexit.register
def _terminate_leftovers() -> None:
    """The last word at interpreter exit: a pool still running (made after the exit began, or left
    by a Ctrl-C) is terminated, so that exit never hangs.  A process that got SIGTERM and was about
    to end normally ends by SIGTERM after all."""
    if _SigtermHandler.count:
        _die_by_sigterm()
    for pool in list(_live_pools):
        if pool._inbox.supervisor_gone or pool._terminated:
            continue
        log.warning("honeydew: %r was not joined; terminating it at interpreter exit", pool)
        try:
            pool.terminate()
        except Exception:
            pass
