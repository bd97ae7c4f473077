"""The failed store as its readers see it: :class:`FailedRecord`, made from a backend's
:class:`~honeydew.queues.base.FailedJob` by :func:`describe`.

The queue process never opens a job's payload, so the record is made where it is read (the caller's
``pool.failed()``, the command line): the task and a short repr of its arguments come from the
payload, the error and traceback from the failure record.  A payload that cannot be decoded here
(its task's module is not importable in this process) is described as such, never raised."""

from __future__ import annotations

import pickle
import reprlib
from typing import Any, NamedTuple

from . import _spool
from ._payload import decode
from .errors import Failure
from .protocol import MapJob, read_payload
from .queues.base import FailedJob

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6


class FailedRecord(NamedTuple):
    """A job kept by ``honeydew.Move()``: ``pool.failed()`` lists these, newest first."""

    id: str
    task: str           # the task's name (a registered task) or the callable's qualified name
    args: str           # a short repr of its arguments (a ``map`` chunk: its items)
    error: str          # "ExceptionType: message"
    traceback: str      # the failure's traceback text ('' when the worker died)
    deliveries: int     # times it was handed to a worker
    failed_at: float    # when it was given up (a ``time.time()`` stamp)


def describe(job: FailedJob | tuple[Any, ...]) -> FailedRecord:
    """The readable record of a kept job."""
    job = FailedJob(*job)
    failure = Failure._make(job.failure)
    error = f"{failure.type_name}: {failure.message}" if failure.message else failure.type_name
    task, args = _task_and_args(job.payload)
    return FailedRecord(job.id, task, args, error, failure.traceback or "", job.deliveries, job.failed_at)


def _task_and_args(payload: bytes) -> tuple[str, str]:
    try:
        job = read_payload(decode(payload))
    except Exception as e:
        return "<cannot be decoded here>", f"<{type(e).__name__}: {e}>"
    task = job.task if isinstance(job.task, str) else _name_of(job.task)
    if isinstance(job, MapJob):
        return task, f"map over {_repr.repr(list(job.items))}"
    parts = [_repr.repr(a) for a in job.args] + [f"{k}={_repr.repr(v)}" for k, v in job.kwargs.items()]
    return task, f"({', '.join(parts)})"


def _pickled_name(blob: bytes) -> str:
    """The ``module.qualname`` a by-reference pickle of a function names, read without loading it
    (the function's module may not be importable here: a script's ``__main__``)."""
    import pickletools
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(blob):
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if op.name == "GLOBAL" and isinstance(arg, str):
                return arg.replace(" ", ".")
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:
        pass
    return ""


def _name_of(ref: Any) -> str:
    """A pickled callable's name, without running it (a shipped one: the spool file's)."""
    if isinstance(ref, _spool.Shipped):
        return "<a function shipped by value>"
    try:
        fn = pickle.loads(ref)
    except Exception as e:
        return _pickled_name(ref) or f"<a callable that cannot be loaded here: {type(e).__name__}>"
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}" if module and module != "builtins" else name
