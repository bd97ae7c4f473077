"""``honeydew.ProcessPoolExecutor``: the standard ``concurrent.futures.ProcessPoolExecutor``
signature and contract on a honeydew pool, so that changing one import gives a program crash
recovery.  [caller]

What stays as in ``concurrent.futures``: the constructor's arguments and their checks,
``submit``/``map``/``shutdown``, futures that cancel only while queued, ``RuntimeError`` after
``shutdown`` and after interpreter shutdown has begun, an ``initializer`` whose return value is
ignored and which, when it keeps failing, breaks the executor (``BrokenProcessPool``), and the
remote traceback on ``__cause__`` as ``concurrent.futures.process._RemoteTraceback``.

What is better by design: a worker killed in the middle of a job (SIGKILL, the OOM killer, a
segfault) fails that job alone, with :class:`~honeydew.WorkerCrashed` (a ``BrokenProcessPool``, so
existing handlers still catch it), and the executor goes on serving with a fresh worker; orphans
cannot outlive the program; ``fut.cancel(terminate=True)`` stops a running job.  ``docs/executor.md``
says what changes when moving from ``ProcessPoolExecutor``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import _RemoteTraceback
from typing import Any

from .errors import BrokenPayload, Failure, PoolBroken, SerializationError
from .pool import Pool
from .tasks import WorkerSpec

#: how fast a failing initializer is retried before the executor breaks (it breaks on the third
#: failure in a row of every worker, within about half a second)
_INIT_RETRY_SECS = 0.05
_INIT_RETRY_MAX_SECS = 0.2


class _Initializer:
    """The executor's ``init``: runs ``initializer(*initargs)``; what it returns is not kept."""

    def __init__(self, initializer: Callable[..., Any], initargs: tuple[Any, ...]) -> None:
        self.initializer = initializer
        self.initargs = initargs

    def __call__(self) -> None:
        try:
            self.initializer(*self.initargs)
        except BaseException:
            # where ProcessPoolExecutor's workers say it (handlers added there by the initializer see it)
            logging.getLogger("concurrent.futures").critical("Exception in initializer:", exc_info=True)
            raise


def _remote_traceback(text: str) -> BaseException:
    """ProcessPoolExecutor's own ``__cause__``: its ``tb`` holds the remote traceback's text."""
    return _RemoteTraceback(f'\n"""\n{text}"""')


class ProcessPoolExecutor(Pool):
    """``concurrent.futures.ProcessPoolExecutor``, on a honeydew pool.

    ``max_workers`` (default: the CPUs this process may use) worker processes; ``mp_context`` picks
    how the pool starts (a ``"fork"`` context forks it, ``"spawn"`` and ``"forkserver"`` start it
    as a fresh interpreter; by default honeydew forks when it is safe); ``initializer(*initargs)``
    runs once in each worker; ``max_tasks_per_child`` replaces a worker after that many jobs.

    Unlike ``ProcessPoolExecutor``, a worker that dies in a job fails only that job
    (:class:`~honeydew.WorkerCrashed`, which is a ``BrokenProcessPool``) and is replaced."""

    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (), *,
                 max_tasks_per_child: int | None = None) -> None:
        if max_workers is None:
            max_workers = len(os.sched_getaffinity(0))
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        start_method = "auto"
        if mp_context is not None:
            start_method = "fork" if mp_context.get_start_method() == "fork" else "spawn"
            if start_method == "fork" and max_tasks_per_child is not None:
                # ProcessPoolExecutor's own rule, kept for compatibility (honeydew's forked workers
                # would not mind: Pool(max_jobs_per_worker=...) has no such limit)
                raise ValueError("max_tasks_per_child is incompatible with the 'fork' multiprocessing start method; "
                                 "supply a different mp_context.")
        init = _Initializer(initializer, tuple(initargs)) if initializer is not None else None
        spec = WorkerSpec("executor", getattr(initializer, "__qualname__", "executor"), init, (), {})
        self._max_workers = max_workers
        super().__init__(spec, num_workers=max_workers, max_jobs_per_worker=max_tasks_per_child,
                         start_method=start_method, init_retry_secs=_INIT_RETRY_SECS,
                         init_retry_max_secs=_INIT_RETRY_MAX_SECS)
        self._remote_traceback = _remote_traceback
        self._no_worker_error = PoolBroken
        self._breaks_on_init = True
        # ProcessPoolExecutor has already handed its oldest jobs to its workers' queue when
        # shutdown(cancel_futures=True) comes: those run, even on a pool whose workers are starting
        self._spared_by_cancel_futures = max_workers

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[type-arg]
        """``Executor.submit``.  Arguments that cannot be pickled fail the future with the pickling
        error, as ``ProcessPoolExecutor``'s do (``honeydew.Pool`` raises at once instead)."""
        try:
            return super().submit(fn, *args, **kwargs)
        except SerializationError as e:
            failed: Future = Future()  # type: ignore[type-arg]
            failed.set_exception(e.__cause__ if isinstance(e.__cause__, BaseException) else e)
            return failed

    def _exception_of(self, failure: tuple[Any, ...], job_id: str) -> BaseException:
        """ProcessPoolExecutor's exceptions: a result that would not pickle in the worker raises
        the pickling error itself; arguments that would not unpickle there are a
        ``BrokenProcessPool`` (:class:`~honeydew.errors.BrokenPayload`), for this job only."""
        exc = super()._exception_of(failure, job_id)
        kind = Failure._make(failure).kind
        cause = exc.__cause__
        if kind == Failure.BAD_RESULT and cause is not None and not isinstance(cause, _RemoteTraceback):
            return cause
        if kind == Failure.BAD_ARGUMENTS:
            broken = BrokenPayload(str(exc))
            broken.__cause__ = cause
            return broken
        return exc

    def _unpickling_failed(self, message: str) -> BaseException:
        return BrokenPayload(message)

    def __repr__(self) -> str:
        return f"<honeydew.ProcessPoolExecutor max_workers={self._max_workers} {super().__repr__()[1:-1]}>"
