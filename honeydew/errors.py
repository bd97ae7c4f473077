"""HoneydewError and its family, and the one failure record every kind of failure travels as.

A :class:`Failure` is built where the failure happens (the worker for a raised task, the monitor
for a dead worker, the queue for a lost job) and carried as a plain tuple to the queue, whose
failure mode decides what happens next, and, when the job is given up, on to the caller, which
alone turns it back into an exception (:func:`to_exception`).  Nothing between the worker and
the caller ever unpickles the user's exception, so a bad one cannot break the tree.
"""

from __future__ import annotations

import pickle
import signal
import traceback
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

__all__ = [
    "BrokenPayload",
    "Failure",
    "FailureModeError",
    "HoneydewError",
    "JobLost",
    "JobTimeout",
    "PoolBroken",
    "PoolClosed",
    "QueueFull",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "UnknownTask",
    "WorkerCrashed",
    "WorkerInitError",
    "signal_name",
]


class HoneydewError(Exception):
    """Base class of every error honeydew raises itself."""


class PoolClosed(HoneydewError, RuntimeError):
    """The pool was closed or terminated; the job was not (or will not be) run.  A ``RuntimeError``,
    as ``concurrent.futures`` executors raise after ``shutdown()``."""


class QueueFull(HoneydewError):
    """``max_pending`` jobs are already waiting and the caller asked not to block."""


class UnknownTask(HoneydewError, LookupError):
    """A task name that the worker does not register with ``@honeydew.task``."""


class SerializationError(HoneydewError):
    """Arguments, a result or an exception could not be pickled or unpickled."""


class BrokenPayload(SerializationError, BrokenProcessPool):
    """For :class:`honeydew.ProcessPoolExecutor`: a job's arguments would not unpickle in the
    worker, or its result in the caller.  ``ProcessPoolExecutor`` calls its whole pool broken then
    (``BrokenProcessPool``); here only that job fails, and the executor goes on."""


class JobLost(HoneydewError):
    """The in-memory queue process holding the job died; the job may or may not have run."""


class FailureModeError(HoneydewError):
    """The pool's failure mode raised, or answered with something that is not a decision, while
    deciding what to do with a failed job: the job is given up with this error, whose message
    names the job's own failure and the failure mode's error (its traceback on ``__cause__``).
    The queue goes on with the other jobs."""


class JobTimeout(HoneydewError):
    """The job ran past its time limit and its worker was stopped."""


class WorkerInitError(HoneydewError):
    """The job was not run because no worker could start: every worker slot's ``init`` failed (at
    least 3 times each) and no worker has served yet.  ``__cause__`` is the last ``init``'s
    exception (its remote traceback on its own ``__cause__``).  The pool goes on retrying ``init``:
    jobs sent later run once a worker comes up, and fail the same way while none has."""


class PoolBroken(WorkerInitError, BrokenProcessPool):
    """A :class:`honeydew.ProcessPoolExecutor` whose ``initializer`` keeps failing is broken, as
    ``ProcessPoolExecutor`` is: the jobs waiting and every later ``submit`` fail with this error
    (the last initializer failure on ``__cause__``), and its processes stop."""


class RemoteError(SerializationError):
    """The task raised an exception that could not be rebuilt in the caller: it would not pickle in
    the worker, or not unpickle here.  A :class:`SerializationError` that names the exception's type
    and carries its message and traceback text; ``__cause__`` is the unpickling error, or the
    remote traceback when the exception would not pickle."""

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}\n\nRemote traceback:\n{traceback_text}")
        self.type_name = type_name
        self.remote_message = message
        self.traceback_text = traceback_text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (RemoteError, (self.type_name, self.remote_message, self.traceback_text))


class WorkerCrashed(HoneydewError, BrokenProcessPool):
    """The worker process died while it held the job.  Only that job fails: the pool goes on
    serving.  It is a ``concurrent.futures.process.BrokenProcessPool`` too, so that code written
    for ``ProcessPoolExecutor`` (where a crash breaks the whole pool) still catches it."""

    def __init__(
        self,
        message: str,
        *,
        exitcode: int | None = None,
        signal_name: str | None = None,
        pid: int | None = None,
    ) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal_name = signal_name
        self.pid = pid

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_crash, (self.args[0], self.exitcode, self.signal_name, self.pid))


def _rebuild_crash(message: str, exitcode: int | None, sig: str | None, pid: int | None) -> WorkerCrashed:
    return WorkerCrashed(message, exitcode=exitcode, signal_name=sig, pid=pid)


class RemoteTraceback(Exception):
    """Hung on ``__cause__`` of a remote exception: the traceback text from the worker."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\nRemote traceback (most recent call last):\n" + self.text


def signal_name(exitcode: int | None) -> str | None:
    """``-9`` -> ``'SIGKILL'``; ``None`` for an exit that was not by signal."""
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


class Failure(NamedTuple):
    """What went wrong with one job, in plain data.

    ``kind`` is one of ``raised`` (the task raised), ``crashed`` (the worker died holding the job),
    ``serialization`` (a value would not pickle or unpickle; ``bad_arguments``: the arguments in the
    worker, ``bad_result``: the result in the worker), ``lost`` (the queue died),
    ``timeout`` (the job overran its limit), ``init`` (the worker's ``init`` failed), ``no_worker``
    (the job was dropped because no worker could start; it carries the last ``init`` failure),
    ``failure_mode`` (the failure mode raised deciding about the job).  Each kind is also a class
    constant (``Failure.CRASHED``).
    ``mro`` lists the qualified names of the exception's classes, so that a failure mode can match
    ``Retry(on=...)`` without unpickling anything.
    """

    # the kinds (class constants, not fields)
    RAISED = "raised"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    LOST = "lost"
    INIT = "init"
    NO_WORKER = "no_worker"
    SERIALIZATION = "serialization"
    BAD_ARGUMENTS = "bad_arguments"
    BAD_RESULT = "bad_result"
    FAILURE_MODE = "failure_mode"

    kind: str
    type_name: str
    message: str
    traceback: str
    exitcode: int | None = None
    signal_name: str | None = None
    pid: int | None = None
    exc_blob: bytes | None = None
    mro: tuple[str, ...] = ()
    partial: bool = False   # a map chunk: its items' outcomes went to the caller as ``Partial``

    @classmethod
    def from_exception(cls, exc: BaseException, kind: str = RAISED) -> Failure:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        blob: bytes | None
        try:
            blob = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            # a class the C pickler cannot name (one the worker got by value: defined in the script
            # after the pool started, in a spawned pool, or in a closure) goes by value; cloudpickle
            # gives the caller back its own class, which it tracks by an id across the round trip
            try:
                import cloudpickle

                blob = cloudpickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                blob = None
        return cls(
            kind=kind,
            type_name=qualname(type(exc)),
            message=_safe_str(exc),
            traceback=tb,
            exc_blob=blob,
            mro=tuple(qualname(k) for k in type(exc).__mro__),
        )

    @classmethod
    def crash(cls, exitcode: int | None, pid: int | None, what: str) -> Failure:
        sig = signal_name(exitcode)
        how = f"was killed by {sig}({exitcode})" if sig else f"exited with code {exitcode}"
        if exitcode is None:
            how = "vanished"
        return cls(
            kind=cls.CRASHED,
            type_name="honeydew.errors.WorkerCrashed",
            message=f"worker pid {pid} {how} while {what}",
            traceback="",
            exitcode=exitcode,
            signal_name=sig,
            pid=pid,
            mro=_CRASH_MRO,
        )

    @classmethod
    def timeout(cls, job_id: str, limit: float, pid: int | None, sig: str | None) -> Failure:
        how = f" (it ended by {sig})" if sig else ""
        return cls(
            kind=cls.TIMEOUT,
            type_name="honeydew.errors.JobTimeout",
            message=f"job {job_id} ran past its {limit:g}s limit; its worker pid {pid} was stopped{how}",
            traceback="",
            signal_name=sig,
            pid=pid,
            mro=_TIMEOUT_MRO,
        )

    @classmethod
    def lost(cls, message: str) -> Failure:
        """The job was lost (the queue that held it stopped or died): ``JobLost``."""
        return cls(kind=cls.LOST, type_name="honeydew.errors.JobLost", message=message, traceback="",
                   mro=_LOST_MRO)

    @classmethod
    def of_failure_mode(cls, job_id: str, failure: Failure, mode: object, error: BaseException | str) -> Failure:
        """The failure mode ``mode`` raised ``error`` (or answered ``error``, not a decision) about
        ``job_id``, which had failed with ``failure``: ``FailureModeError``."""
        if isinstance(error, BaseException):
            what = f"raised {qualname(type(error))}: {_safe_str(error)}"
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        else:
            what, tb = error, ""
        message = (f"job {job_id} failed ({failure.describe()}); deciding what to do with it, the pool's failure "
                   f"mode {mode!r} {what}; the job is given up")
        return cls(kind=cls.FAILURE_MODE, type_name="honeydew.errors.FailureModeError", message=message,
                   traceback=tb, mro=_FAILURE_MODE_MRO)

    def describe(self) -> str:
        return f"{self.type_name}: {self.message}"


_TIMEOUT_MRO = tuple(f"{k.__module__}.{k.__qualname__}" for k in JobTimeout.__mro__)
NO_WORKER_MRO = tuple(f"{k.__module__}.{k.__qualname__}" for k in WorkerInitError.__mro__)
_CRASH_MRO = tuple(f"{k.__module__}.{k.__qualname__}" for k in WorkerCrashed.__mro__)
_LOST_MRO = tuple(f"{k.__module__}.{k.__qualname__}" for k in JobLost.__mro__)
_FAILURE_MODE_MRO = tuple(f"{k.__module__}.{k.__qualname__}" for k in FailureModeError.__mro__)


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def to_exception(f: Failure | tuple, job_id: str = "",  # type: ignore[type-arg]
                 remote: Callable[[str], BaseException] | None = None,
                 no_worker: type[WorkerInitError] = WorkerInitError) -> BaseException:
    """Rebuild, in the caller, the exception that the failure record stands for.  ``remote`` makes
    what hangs on ``__cause__`` from the remote traceback text (:class:`RemoteTraceback` by default;
    ``ProcessPoolExecutor``'s own type for :class:`honeydew.ProcessPoolExecutor`)."""
    remote = remote or RemoteTraceback
    f = Failure._make(f)
    where = f" (job {job_id})" if job_id and job_id not in f.message else ""
    if f.kind == Failure.CRASHED:
        return WorkerCrashed(f.message + where, exitcode=f.exitcode, signal_name=f.signal_name, pid=f.pid)
    if f.kind == Failure.LOST:
        return JobLost(f.message + where)
    if f.kind == Failure.TIMEOUT:
        return JobTimeout(f.message + where)
    if f.kind == Failure.FAILURE_MODE:
        err = FailureModeError(f.message)
        err.__cause__ = remote(f.traceback) if f.traceback else None
        return err
    if f.kind in (Failure.SERIALIZATION, Failure.BAD_ARGUMENTS, Failure.BAD_RESULT):
        err = SerializationError(f.message + where)
        err.__cause__ = _unpickle(f, remote) or (remote(f.traceback) if f.traceback else None)
        return err
    if f.kind == Failure.INIT:
        exc = _unpickle(f, remote) or RemoteError(f.type_name, f.message, f.traceback)
        return exc
    if f.kind == Failure.NO_WORKER:
        err = no_worker(f.message + where)
        err.__cause__ = _unpickle(f, remote) or (remote(f.traceback) if f.traceback else None)
        return err
    if f.exc_blob is not None:
        try:
            exc = pickle.loads(f.exc_blob)
        except Exception as e:
            unpicklable = RemoteError(f.type_name, f.message, f.traceback)
            unpicklable.__cause__ = e
            return unpicklable
        if isinstance(exc, BaseException):
            if f.traceback:
                exc.__cause__ = remote(f.traceback)
            return exc
    rebuilt = RemoteError(f.type_name, f.message, f.traceback)
    if f.traceback:
        rebuilt.__cause__ = remote(f.traceback)
    return rebuilt


def _unpickle(f: Failure, remote: Callable[[str], BaseException]) -> BaseException | None:
    """The original exception with its remote traceback on ``__cause__``, if it can be rebuilt."""
    if f.exc_blob is None:
        return None
    try:
        exc = pickle.loads(f.exc_blob)
    except Exception:
        return None
    if not isinstance(exc, BaseException):
        return None
    if f.traceback:
        exc.__cause__ = remote(f.traceback)
    return exc
