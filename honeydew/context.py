"""What a running task can ask about its own job: :func:`current_job`, :func:`restart_worker`."""

from __future__ import annotations

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


def _enter(info: JobInfo | None) -> None:
    global _current
    _current = info


def _take_restart() -> bool:
    global _restart_requested
    flag, _restart_requested = _restart_requested, False
    return flag
