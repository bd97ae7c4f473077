"""What a running task can ask about its own job: :func:`current_job`, :func:`restart_worker`."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class JobInfo(NamedTuple):
    """The job the calling task is running.  ``deliveries`` is 1 on the first run and grows on
    every redelivery, so a task can make itself idempotent under at-least-once execution."""

    id: str
    deliveries: int
    worker: int


_current: JobInfo | None = None
_restart_requested = False


def current_job() -> JobInfo:
    """The running job's id, delivery count and worker slot.

    Raises ``RuntimeError`` outside a task running in a honeydew worker."""
    if _current is None:
        raise RuntimeError("honeydew.current_job() can only be called from a task running in a honeydew worker")
    return _current


def restart_worker() -> None:
    """Ask for a fresh worker process (state rebuilt by ``init``) once the current task returns.

    The job still completes normally.  Raises ``RuntimeError`` outside a task."""
    global _restart_requested
    if _current is None:
        raise RuntimeError("honeydew.restart_worker() can only be called from a task running in a honeydew worker")
    _restart_requested = True


_progress_sink: Callable[[float, str], None] | None = None   # set by the worker while a job whose caller waits runs


def progress(fraction: float, message: str = "") -> None:
    """Report how far the running task has got: ``fraction`` from 0 to 1, and a short message.
    The caller sees the latest on the job's future (``fut.progress``, a ``(fraction, message)``
    pair) and in ``pool.status()``; at most about ten reports a second per job travel (the last
    one always does).  A job nobody waits for (a ``cast``) reports to nobody.

    Raises ``RuntimeError`` outside a task, ``ValueError`` for a fraction outside 0..1."""
    if _current is None:
        raise RuntimeError("honeydew.progress() can only be called from a task running in a honeydew worker")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress takes a fraction from 0 to 1, got {fraction!r}; "
                         f"e.g. honeydew.progress(done / total, f'{{done}} of {{total}} rows')")
    if _progress_sink is not None:
        _progress_sink(float(fraction), str(message))


def _enter(info: JobInfo | None) -> None:
    global _current
    _current = info


def _take_restart() -> bool:
    global _restart_requested
    flag, _restart_requested = _restart_requested, False
    return flag
