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

import os
from collections.abc import Callable
from concurrent.futures.process import _RemoteTraceback
from typing import Any

from .errors import PoolBroken
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
        self.initializer(*self.initargs)


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
        init = _Initializer(initializer, tuple(initargs)) if initializer is not None else None
        spec = WorkerSpec("executor", getattr(initializer, "__qualname__", "executor"), init, (), {})
        self._max_workers = max_workers
        super().__init__(spec, num_workers=max_workers, max_jobs_per_worker=max_tasks_per_child,
                         start_method=start_method, init_retry_secs=_INIT_RETRY_SECS,
                         init_retry_max_secs=_INIT_RETRY_MAX_SECS)
        self._remote_traceback = _remote_traceback
        self._no_worker_error = PoolBroken
        self._breaks_on_init = True

    def __repr__(self) -> str:
        return f"<honeydew.ProcessPoolExecutor max_workers={self._max_workers} {super().__repr__()[1:-1]}>"
