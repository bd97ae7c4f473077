"""A job's payload: how the caller turns (task, arguments) into bytes and a worker turns them back.
[caller: :class:`Encoder`; worker: :func:`decode`, :func:`callable_of`, :func:`encode_result`]

The payload is the pickled tuple of :func:`honeydew.protocol.call_payload` or
:func:`~honeydew.protocol.map_payload` (read back by :func:`~honeydew.protocol.read_payload`);
the queue never opens it.  ``task`` is one of:

* a registered task's name (``str``);
* a pickled callable (``bytes``): by reference when the workers can find it by name (a module's
  function; in a forked pool, a function of ``__main__`` that existed when the pool started, which
  every worker inherited), otherwise by value with cloudpickle (lambdas, closures, functions
  defined after the pool started, or in a spawned pool), code and captured globals together;
* :class:`~honeydew._spool.Shipped` code: a function pickled by value bigger than
  ``_spool.CODE_THRESHOLD`` (it captured a big global), written once to the spool and read by each
  worker the first time it is named.

Either way a worker unpickles a given callable once and keeps it (:func:`callable_of`), and the
caller pickles a given function object once and keeps the result for as long as the function lives
(weakly: the cache never keeps a callable, or what it holds, alive).  A function therefore runs with
its globals as they were when it was first sent to the pool, or, for a function the forked workers
inherited, when the pool started: a snapshot, as with ``multiprocessing``'s fork.

Arguments go by reference whenever the workers have what they name, and by value (cloudpickle)
otherwise.  A payload of ``_spool.THRESHOLD`` bytes or more goes through the spool.
"""

from __future__ import annotations

import io
import itertools
import pickle
import sys
import types
import weakref
from collections import ChainMap
from collections.abc import Callable
from typing import Any

import cloudpickle

from . import _spool
from .errors import SerializationError
from .protocol import call_payload, map_payload

_MAIN = b"__main__"


def _code_keeping_its_file(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, with the code's own file name: cloudpickle writes
    ``<dynamic-code>`` there (so that a payload does not depend on where a function was defined),
    which would leave every traceback from a task sent by value without its source lines."""
    rebuild, args = _cloudpickle_code_reduce(code)
    return rebuild, tuple(code.co_filename if type(a) is str and a == "<dynamic-code>" else a for a in args)


_cloudpickle_code_reduce = getattr(cloudpickle.cloudpickle, "_code_reduce", None)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, keeping code objects' file names (see :func:`_code_keeping_its_file`)."""

    if _cloudpickle_code_reduce is not None:
        dispatch_table = ChainMap({types.CodeType: _code_keeping_its_file}, cloudpickle.Pickler.dispatch_table)


def dumps_for_spawn(obj: Any) -> tuple[bytes, list[int]]:
    """cloudpickle for a fresh interpreter that this process starts and that inherits descriptors:
    ``multiprocessing``'s objects made to be shared at process start (a ``Queue``, a ``Lock``, an
    ``Event``, a ``Connection``: in an executor's ``initargs``, say) pickle as they do for
    multiprocessing's own spawn.  Returns the pickle and the descriptors to pass on."""
    from multiprocessing import context, reduction
    from multiprocessing.popen_spawn_posix import _DupFd

    class Spawning:  # stands for multiprocessing's spawning Popen while ``obj`` is pickled
        DupFd = _DupFd

        def __init__(self) -> None:
            self.fds: list[int] = []

        def duplicate_for_child(self, fd: int) -> int:
            self.fds.append(fd)
            return fd

    class Pickler(_Pickler):
        dispatch_table = ChainMap(reduction.ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
                                  getattr(_Pickler, "dispatch_table", cloudpickle.Pickler.dispatch_table))

    spawning = Spawning()
    buf = io.BytesIO()
    context.set_spawning_popen(spawning)
    try:
        Pickler(buf, protocol=5).dump(obj)
    finally:
        context.set_spawning_popen(None)
    return buf.getvalue(), spawning.fds


def fds_held_by(obj: Any) -> set[int]:
    """The descriptors of the ``multiprocessing`` connections and the sockets ``obj`` holds (a
    ``Queue`` holds two), found by pickling it into nothing: a forked pool keeps them open."""
    import socket
    from multiprocessing import connection, context, synchronize

    fds: set[int] = set()

    class Finder(_Pickler):
        def reducer_override(self, o: Any) -> Any:
            if isinstance(o, (connection.Connection, socket.socket)):
                fds.add(o.fileno())
                return (int, ())
            if isinstance(o, synchronize.SemLock):
                return (int, ())
            return super().reducer_override(o)

    context.set_spawning_popen(object())  # (so that a Queue lets itself be pickled)
    try:
        Finder(io.BytesIO(), protocol=5).dump(obj)
    finally:
        context.set_spawning_popen(None)
    return fds


def cloudpickle_dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps`` (protocol 5), with code objects' file names kept."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=5).dump(obj)
    return buf.getvalue()


class _NotInWorkers(Exception):
    """A ``__main__`` object the forked workers do not have (defined or rebound after the start)."""


class Encoder:
    """The caller's side: pickles callables and payloads for one pool.

    ``fork``: the workers are forked from this process as it was at :meth:`snapshot_main`, so the
    ``__main__`` objects recorded then can go by reference.  ``spool``: the pool's spool directory
    (``None``: never spool, e.g. for a queue whose jobs must outlive this process)."""

    def __init__(self, spool: str | None) -> None:
        self.fork = False
        self.spool = spool
        self._main: dict[str, Any] = {}        # __main__'s classes and functions when the workers forked
        self._main_module: Any = None
        self._callables: dict[int, tuple[weakref.ref[Any], Any]] = {}  # id(fn) -> (weakref, what to send)
        self._names = itertools.count(1)
        self._code_bytes = 0

    def snapshot_main(self) -> None:
        """Record ``__main__``'s functions and classes: the workers about to be forked have these."""
        self.fork = True
        main = sys.modules.get("__main__")
        self._main_module = main
        if main is not None:
            self._main = {k: v for k, v in vars(main).items() if isinstance(v, (type, types.FunctionType))}

    # ---------------------------------------------------------------- callables

    def callable_ref(self, fn: Callable[..., Any]) -> Any:
        """What to send for a callable that is not a registered task (see the module docstring)."""
        key = id(fn)
        hit = self._callables.get(key)
        if hit is not None and hit[0]() is fn:
            return hit[1]
        ref = self._pickle_callable(fn)
        try:
            wr = weakref.ref(fn, lambda _, k=key, c=self._callables: c.pop(k, None))
        except TypeError:
            return ref  # a builtin and the like: cheap to pickle again
        self._callables[key] = (wr, ref)
        return ref

    def _pickle_callable(self, fn: Callable[..., Any]) -> Any:
        try:
            blob = pickle.dumps(fn, protocol=5)
            if _MAIN not in blob or (blob.count(_MAIN) == 1 and self._in_workers(fn)):
                return blob
        except Exception:
            pass
        try:
            blob = cloudpickle_dumps(fn)
        except Exception as e:
            raise SerializationError(f"the task {fn!r} could not be pickled: {type(e).__name__}: {e}") from e
        if (len(blob) > _spool.CODE_THRESHOLD and self.spool is not None and type(fn) is types.FunctionType
                and self._code_bytes + len(blob) <= _spool.CODE_SPOOL_MAX):
            marker = _spool.write(self.spool, f"code-{next(self._names)}", blob)
            if marker is not None:
                self._code_bytes += len(blob)
                return _spool.Shipped(_spool.path_of(marker))
        return blob

    def _in_workers(self, obj: Any) -> bool:
        """Is ``obj`` (a ``__main__`` function or class) one the forked workers have, unchanged?"""
        if not self.fork:
            return False
        top = getattr(obj, "__qualname__", "").partition(".")[0]
        have = self._main.get(top)
        return have is not None and have is getattr(self._main_module, top, None)

    # ---------------------------------------------------------------- payloads

    def dumps(self, payload: tuple[Any, ...]) -> bytes:
        """The pickled payload.  The C pickler serves, by reference, unless the payload names a
        ``__main__`` object the workers lack: then it goes by value, with cloudpickle."""
        ref = payload[1]
        try:
            blob = pickle.dumps(payload, protocol=5)
            if _MAIN not in blob:
                return blob
            if self.fork and blob.count(_MAIN) == (ref.count(_MAIN) if type(ref) is bytes else 0):
                return blob  # the only __main__ is inside the callable's own pickle, checked already
            if self.fork and self._args_in_workers(payload):
                return blob
        except Exception:
            pass
        try:
            return cloudpickle_dumps(payload)
        except Exception as e:
            raise SerializationError(f"the arguments could not be pickled ({type(e).__name__}: {e}); "
                                     f"nothing was enqueued") from e

    def _args_in_workers(self, payload: tuple[Any, ...]) -> bool:
        checker = _MainChecker(io.BytesIO(), self)
        try:
            checker.dump(payload)
        except _NotInWorkers:
            return False
        return True

    def spool_payload(self, blob: bytes) -> bytes:
        """``blob`` itself, or a spool marker for it when it is big."""
        if len(blob) < _spool.THRESHOLD or self.spool is None:
            return blob
        marker = _spool.write(self.spool, f"job-{next(self._names)}", blob)
        return blob if marker is None else marker

    def payload(self, ref: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return self.spool_payload(self.dumps(call_payload(ref, args, kwargs)))

    def map_payload(self, ref: Any, items: list[Any], star: bool) -> bytes:
        return self.spool_payload(self.dumps(map_payload(ref, items, star)))


class _MainChecker(pickle.Pickler):
    """Pickles into nothing, only to raise :class:`_NotInWorkers` at a ``__main__`` function or
    class the forked workers do not have (called only when a payload mentions ``__main__``)."""

    def __init__(self, file: Any, encoder: Encoder) -> None:
        super().__init__(file, protocol=5)
        self.encoder = encoder

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            if not self.encoder._in_workers(obj):
                raise _NotInWorkers
        return NotImplemented


# --------------------------------------------------------------------------- the worker's side

_callables: dict[Any, Any] = {}


def decode(payload: bytes) -> tuple[Any, ...]:
    """The payload tuple (read from the spool if it went there)."""
    if payload[:1] == _spool.MARK:
        return _spool.load(payload)  # type: ignore[no-any-return]
    return pickle.loads(payload)  # type: ignore[no-any-return]


def callable_of(ref: Any) -> Any:
    """A task name stays a name; a pickled or shipped callable is loaded once and kept."""
    t = type(ref)
    if t is str:
        return ref
    key = ref if t is bytes else ref.path
    fn = _callables.get(key)
    if fn is None:
        fn = pickle.loads(ref) if t is bytes else _spool.load_path(ref.path)
        if len(_callables) >= 256:
            _callables.clear()
        _callables[key] = fn
    return fn


def dumps_value(value: Any) -> bytes:
    """Pickle a result or an exception: the C pickler, or cloudpickle for what it cannot take (a
    lambda, a class the workers got by value, which then goes back by value too and is matched to
    the caller's own class by cloudpickle)."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        return cloudpickle_dumps(value)


def encode_result(value: Any, spool: str | None, name: str) -> bytes:
    """A result for the caller: pickled, and through the spool when it is big."""
    blob = dumps_value(value)
    if spool is None or len(blob) < _spool.THRESHOLD:
        return blob
    marker = _spool.write(spool, name, blob)
    return blob if marker is None else marker
