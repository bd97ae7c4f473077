"""The failure record and how the caller turns it back into an exception."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import honeydew
from honeydew.errors import (
    Failure,
    HoneydewError,
    JobLost,
    JobTimeout,
    PoolClosed,
    QueueFull,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    UnknownTask,
    WorkerCrashed,
    signal_name,
    to_exception,
)


class AppError(Exception):
    pass


class NeedsTwo(Exception):
    """Pickles (args holds one string) but cannot be rebuilt: ``NeedsTwo(msg)`` lacks an argument."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


class HoldsALock(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def deep_in_the_task(exc: BaseException) -> None:
    raise exc


def failure_of(exc: BaseException, kind: str = "raised") -> Failure:
    try:
        deep_in_the_task(exc)
    except BaseException as e:
        return Failure.from_exception(e, kind)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- raised -> the same exception


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value", 42), KeyError("k"), AppError(), RuntimeError("x", ["nested", 1]), SystemExit(3),
     KeyboardInterrupt(), FileNotFoundError(2, "No such file", "/nope"), honeydew.UnknownTask("t")],
    ids=lambda e: type(e).__name__,
)
def test_round_trip_gives_the_same_exception(exc: BaseException) -> None:
    f = failure_of(exc)
    assert f.kind == "raised"
    assert f.type_name == f"{type(exc).__module__}.{type(exc).__qualname__}"
    back = to_exception(f, "job-1")
    assert type(back) is type(exc)
    assert back.args == exc.args
    cause = back.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "deep_in_the_task" in cause.text
    assert type(exc).__name__ in cause.text
    assert "Remote traceback" in str(cause)


def test_round_trip_from_a_plain_tuple() -> None:
    """The failure travels as a plain tuple (and through pickle); either form rebuilds."""
    f = failure_of(ValueError("v"))
    for form in (tuple(f), pickle.loads(pickle.dumps(tuple(f))), pickle.loads(pickle.dumps(f))):
        back = to_exception(form)
        assert type(back) is ValueError and back.args == ("v",)


def test_failure_records_the_mro() -> None:
    f = failure_of(FileNotFoundError("x"))
    assert f.mro[0] == "builtins.FileNotFoundError"
    assert "builtins.OSError" in f.mro
    assert f.mro[-2:] == ("builtins.BaseException", "builtins.object")


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from([ValueError, KeyError, RuntimeError, TypeError, AppError, LookupError]),
    args=st.lists(st.one_of(st.text(max_size=20), st.integers(), st.binary(max_size=10), st.none()), max_size=4),
)
def test_round_trip_property(kind: type[Exception], args: list[Any]) -> None:
    back = to_exception(failure_of(kind(*args)))
    assert type(back) is kind
    assert back.args == tuple(args)
    assert isinstance(back.__cause__, RemoteTraceback)


# --------------------------------------------------------------------------- exceptions that won't come back


def test_exception_that_cannot_be_rebuilt_is_a_remote_error() -> None:
    f = failure_of(NeedsTwo("a", "b"))
    assert f.exc_blob is not None  # it pickled fine in the worker ...
    back = to_exception(f)  # ... but NeedsTwo("a/b") raises TypeError in the caller
    assert isinstance(back, RemoteError)
    assert back.type_name.endswith("NeedsTwo")
    assert back.type_name == f.type_name
    assert "a/b" in str(back)
    assert "deep_in_the_task" in back.traceback_text
    assert isinstance(back, SerializationError)  # "the exception can't be unpickled" row of the table
    assert isinstance(back.__cause__, TypeError)


def test_unpicklable_exception_is_a_remote_error() -> None:
    f = failure_of(HoldsALock("locked up"))
    assert f.exc_blob is None
    back = to_exception(f)
    assert isinstance(back, RemoteError)
    assert isinstance(back, SerializationError)  # "the exception can't be pickled" row of the table
    assert back.type_name.endswith("HoldsALock")
    assert back.remote_message == "locked up"
    assert "deep_in_the_task" in back.traceback_text
    assert "HoldsALock" in str(back)
    assert isinstance(back.__cause__, RemoteTraceback) and "deep_in_the_task" in str(back.__cause__)


def test_local_exception_class_comes_back_as_itself() -> None:
    """A class the C pickler cannot name (defined in a function) goes by value, and cloudpickle
    hands this process back its own class: ``except LocalOnly`` catches it."""
    class LocalOnly(Exception):
        pass

    back = to_exception(failure_of(LocalOnly("here")))
    assert type(back) is LocalOnly and back.args == ("here",)


def test_unprintable_exception() -> None:
    f = failure_of(BadStr())
    assert "unprintable" in f.message and "BadStr" in f.message


def test_remote_error_pickles() -> None:
    """A RemoteError is an ordinary exception: it can be pickled (e.g. re-raised from a task of
    another pool, logged by a process pool, sent anywhere) and keeps its fields."""
    err = RemoteError("mod.Kind", "boom", "Traceback ...\n")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RemoteError
    assert (back.type_name, back.remote_message, back.traceback_text) == ("mod.Kind", "boom", "Traceback ...\n")


def test_remote_error_raised_in_a_task_comes_back() -> None:
    """A task that calls another pool and lets its RemoteError propagate: the outer caller should get
    the RemoteError, not a RemoteError about failing to rebuild a RemoteError."""
    inner = RemoteError("mod.Kind", "boom", "tb")
    back = to_exception(failure_of(inner))
    assert type(back) is RemoteError
    assert back.type_name == "mod.Kind"


# --------------------------------------------------------------------------- crashes


@pytest.mark.parametrize(
    ("exitcode", "sig", "how"),
    [(-9, "SIGKILL", "killed by SIGKILL"), (-11, "SIGSEGV", "killed by SIGSEGV"), (13, None, "code 13"),
     (0, None, "code 0"), (None, None, "vanished")],
)
def test_crash_failure(exitcode: int | None, sig: str | None, how: str) -> None:
    f = Failure.crash(exitcode, 4321, "running job j1")
    assert f.kind == "crashed"
    assert f.signal_name == sig
    exc = to_exception(f, "j1")
    assert type(exc) is WorkerCrashed
    assert isinstance(exc, HoneydewError)
    assert (exc.exitcode, exc.signal_name, exc.pid) == (exitcode, sig, 4321)
    assert "4321" in str(exc)
    assert how in str(exc)
    assert "j1" in str(exc)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(exc))
        assert type(back) is WorkerCrashed
        assert (back.exitcode, back.signal_name, back.pid) == (exitcode, sig, 4321)
        assert str(back) == str(exc)


def test_crash_names_the_job_once() -> None:
    f = Failure.crash(-9, 1, "holding a job")
    assert "job-77" in str(to_exception(f, "job-77"))
    f = Failure.crash(-9, 1, "running job job-77")
    assert str(to_exception(f, "job-77")).count("job-77") == 1


def test_timeout_failure() -> None:
    f = Failure.timeout("j5", 2.5, 99, "SIGKILL")
    assert f.kind == "timeout"
    assert f.mro == Failure.from_exception(JobTimeout("t")).mro  # the hard-coded MRO is the real one
    exc = to_exception(f, "j5")
    assert type(exc) is JobTimeout
    assert "j5" in str(exc) and "99" in str(exc)


def test_signal_name() -> None:
    assert signal_name(-9) == "SIGKILL"
    assert signal_name(-15) == "SIGTERM"
    assert signal_name(-11) == "SIGSEGV"
    assert signal_name(0) is None
    assert signal_name(1) is None
    assert signal_name(None) is None
    unknown = signal_name(-200)
    assert unknown is not None and "200" in unknown


# --------------------------------------------------------------------------- the other kinds


def test_serialization_failure() -> None:
    original = failure_of(TypeError("cannot pickle '_thread.lock' object"), kind="serialization")
    exc = to_exception(original, "j9")
    assert type(exc) is SerializationError
    assert "j9" in str(exc)
    assert type(exc.__cause__) is TypeError
    assert exc.__cause__.args == ("cannot pickle '_thread.lock' object",)
    assert isinstance(exc.__cause__.__cause__, RemoteTraceback)


def test_serialization_failure_whose_error_wont_pickle() -> None:
    exc = to_exception(failure_of(HoldsALock("x"), kind="serialization"))
    assert type(exc) is SerializationError
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "HoldsALock" in exc.__cause__.text


@pytest.mark.parametrize(("kind", "cls"), [("lost", JobLost), ("timeout", JobTimeout)])
def test_lost_and_timeout(kind: str, cls: type[Exception]) -> None:
    f = Failure(kind=kind, type_name="x", message="it went away", traceback="")
    exc = to_exception(f, "j3")
    assert type(exc) is cls
    assert "it went away" in str(exc) and "j3" in str(exc)


def test_init_failure() -> None:
    exc = to_exception(failure_of(ConnectionRefusedError("db down"), kind="init"))
    assert type(exc) is ConnectionRefusedError
    assert isinstance(exc.__cause__, RemoteTraceback)
    exc = to_exception(failure_of(HoldsALock("db down"), kind="init"))
    assert isinstance(exc, RemoteError) and "db down" in str(exc)


# --------------------------------------------------------------------------- the family


ERRORS = [
    PoolClosed("closed"),
    QueueFull("full"),
    UnknownTask("'nope' is not a task"),
    SerializationError("no pickle"),
    JobLost("lost"),
    JobTimeout("slow"),
    RemoteError("m.K", "msg", "tb"),
    WorkerCrashed("died", exitcode=-9, signal_name="SIGKILL", pid=12),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_is_a_honeydew_error_and_pickles(err: HoneydewError) -> None:
    assert isinstance(err, HoneydewError)
    assert getattr(honeydew, type(err).__name__) is type(err)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert vars(back) == vars(err)


def test_unknown_task_is_a_lookup_error() -> None:
    assert issubclass(UnknownTask, LookupError)


def test_remote_traceback_pickles() -> None:
    back = pickle.loads(pickle.dumps(RemoteTraceback("line 1\n")))
    assert back.text == "line 1\n"
