"""Failure modes: properties of ``decide()`` and constructor validation."""

from __future__ import annotations

import base64
import math
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import honeydew
from honeydew.errors import Failure, HoneydewError, WorkerCrashed
from honeydew.failure_modes import (
    Abandon,
    Decision,
    FailureMode,
    GiveUp,
    Move,
    Redeliver,
    Requeue,
    Retry,
    own_mode_key,
    read_own_mode,
)
from honeydew.queues.base import OWN_MODE

FAST = settings(max_examples=100, deadline=None)


class AppError(Exception):
    pass


class DatabaseError(AppError):
    pass


class Timeoutish(DatabaseError, TimeoutError):
    pass


def raised(exc: BaseException) -> Failure:
    try:
        raise exc
    except BaseException as e:
        return Failure.from_exception(e)


EXCEPTIONS = [ValueError("v"), KeyError("k"), AppError("a"), DatabaseError("d"), Timeoutish("t"),
              SystemExit(3), KeyboardInterrupt(), ConnectionResetError("c"), WorkerCrashed("w")]

failures = st.one_of(
    st.sampled_from(EXCEPTIONS).map(raised),
    st.builds(Failure.crash, st.sampled_from([-9, -11, -15, 0, 1, 13, None]), st.integers(1, 99999),
              st.just("running job x")),
)
counts = st.integers(min_value=0, max_value=50)


class Recorder(FailureMode):
    """A ``then`` that records what it was asked and answers a marker."""

    def __init__(self) -> None:
        self.calls: list[tuple[Failure, int, int]] = []

    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        self.calls.append((failure, deliveries, retries))
        return Redeliver(delay=12345.0)


# --------------------------------------------------------------------------- Abandon


@FAST
@given(failure=failures, deliveries=counts, retries=counts)
def test_abandon_always_gives_up(failure: Failure, deliveries: int, retries: int) -> None:
    assert Abandon().decide(failure, deliveries, retries) == GiveUp(failure)


def test_abandon_equality() -> None:
    assert Abandon() == Abandon()
    assert hash(Abandon()) == hash(Abandon())
    assert Abandon() != Requeue()


# --------------------------------------------------------------------------- Requeue


@FAST
@given(failure=failures, max_deliveries=st.integers(1, 20), deliveries=st.integers(1, 30), retries=counts)
def test_requeue_redelivers_until_max_deliveries(failure: Failure, max_deliveries: int, deliveries: int,
                                                 retries: int) -> None:
    then = Recorder()
    decision = Requeue(max_deliveries=max_deliveries, then=then).decide(failure, deliveries, retries)
    if deliveries < max_deliveries:
        assert decision == Redeliver(0.0, retry=False)
        assert then.calls == []
    else:
        assert decision == Redeliver(delay=12345.0)
        assert then.calls == [(failure, deliveries, retries)]


def test_requeue_defaults() -> None:
    r = Requeue()
    assert r.max_deliveries == 5
    assert r.then == Abandon()
    f = raised(ValueError("x"))
    assert r.decide(f, 4, 0) == Redeliver()
    assert r.decide(f, 5, 0) == GiveUp(f)


def test_requeue_max_one_never_redelivers() -> None:
    f = raised(ValueError("x"))
    assert Requeue(max_deliveries=1).decide(f, 1, 0) == GiveUp(f)


# --------------------------------------------------------------------------- Retry


@FAST
@given(times=st.integers(0, 10), backoff=st.floats(0, 100), retries=st.integers(0, 15), deliveries=counts)
def test_retry_doubles_the_delay(times: int, backoff: float, retries: int, deliveries: int) -> None:
    then = Recorder()
    f = raised(ValueError("x"))
    decision = Retry(times=times, backoff=backoff, then=then).decide(f, deliveries, retries)
    if retries < times:
        assert decision == Redeliver(backoff * 2 ** retries, retry=True)
        assert then.calls == []
    else:
        assert decision == Redeliver(delay=12345.0)
        assert then.calls == [(f, deliveries, retries)]


def test_retry_delay_sequence() -> None:
    r = Retry(times=4, backoff=0.5)
    f = raised(ValueError("x"))
    delays = [r.decide(f, n + 1, n).delay for n in range(4)]
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert [r.delay(a) for a in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert r.decide(f, 5, 4) == GiveUp(f)


def test_retry_defaults() -> None:
    r = Retry()
    f = raised(ValueError("x"))
    assert r.decide(f, 1, 0) == Redeliver(1.0, retry=True)
    assert r.decide(f, 3, 2) == Redeliver(4.0, retry=True)
    assert r.decide(f, 4, 3) == GiveUp(f)


@FAST
@given(times=st.integers(1, 10), retries=st.integers(0, 15))
def test_retry_callable_backoff(times: int, retries: int) -> None:
    asked: list[int] = []

    def backoff(attempt: int) -> float:
        asked.append(attempt)
        return attempt * 10 + 0.5

    f = raised(ValueError("x"))
    decision = Retry(times=times, backoff=backoff).decide(f, retries + 1, retries)
    if retries < times:
        assert decision == Redeliver(float((retries + 1) * 10 + 0.5), retry=True)
        assert asked == [retries + 1]  # attempt counts from 1
    else:
        assert decision == GiveUp(f)
        assert asked == []


def test_retry_callable_backoff_negative_is_no_delay() -> None:
    f = raised(ValueError("x"))
    assert Retry(backoff=lambda attempt: -5).decide(f, 1, 0) == Redeliver(0.0, retry=True)


def test_retry_zero_times_goes_straight_to_then() -> None:
    f = raised(ValueError("x"))
    assert Retry(times=0).decide(f, 1, 0) == GiveUp(f)


@pytest.mark.parametrize("retries", [1023, 1024, 1100, 4000])
def test_retry_never_raises_for_many_retries(retries: int) -> None:
    """``decide`` "never raises for a well-formed failure": ``Retry(times=5000, backoff=0)`` (retry
    at once, many times) must keep redelivering past the 1024th attempt."""
    f = raised(ValueError("x"))
    assert Retry(times=5000, backoff=0.0).decide(f, retries + 1, retries) == Redeliver(0.0, retry=True)
    decision = Retry(times=5000, backoff=1.0).decide(f, retries + 1, retries)
    assert isinstance(decision, Redeliver) and decision.retry and decision.delay > 0


# ---- matching ``on`` by MRO names


@pytest.mark.parametrize(
    ("on", "exc", "matches"),
    [
        ((Exception,), ValueError("x"), True),
        ((ValueError,), ValueError("x"), True),
        ((ValueError,), KeyError("x"), False),
        ((LookupError,), KeyError("x"), True),  # a subclass of a listed class matches
        ((KeyError,), LookupError("x"), False),  # a base class does not
        ((AppError,), DatabaseError("x"), True),
        ((AppError,), Timeoutish("x"), True),
        ((TimeoutError,), Timeoutish("x"), True),  # multiple inheritance: any class in the MRO
        ((OSError,), Timeoutish("x"), True),
        ((DatabaseError,), AppError("x"), False),
        ((ValueError, AppError), DatabaseError("x"), True),
        (AppError, DatabaseError("x"), True),  # a single class, not a tuple
        ((Exception,), SystemExit(1), False),
        ((Exception,), KeyboardInterrupt(), False),
        ((BaseException,), KeyboardInterrupt(), True),
        ((SystemExit,), SystemExit(1), True),
    ],
)
def test_retry_matches_by_mro(on: Any, exc: BaseException, matches: bool) -> None:
    f = raised(exc)
    r = Retry(times=1, on=on)
    assert r.matches(f) is matches
    assert isinstance(r.decide(f, 1, 0), Redeliver) is matches


def test_retry_does_not_match_a_same_named_class_from_elsewhere() -> None:
    ValueErrorLookalike = type("ValueError", (Exception,), {"__module__": "myapp.errors"})
    f = raised(ValueErrorLookalike("x"))
    assert not Retry(on=ValueError).matches(f)
    assert Retry(on=ValueErrorLookalike).matches(f)


@pytest.mark.parametrize("exitcode", [-9, -11, 0, 13, None])
@pytest.mark.parametrize(
    ("on", "matches"),
    [
        ((Exception,), True),
        ((WorkerCrashed,), True),
        ((HoneydewError,), True),
        ((honeydew.WorkerCrashed, ValueError), True),
        ((BaseException,), True),
        ((ValueError,), False),
        ((OSError,), False),
    ],
)
def test_retry_matches_crashes(exitcode: int | None, on: Any, matches: bool) -> None:
    f = Failure.crash(exitcode, 4242, "running job j1")
    assert Retry(on=on).matches(f) is matches
    decision = Retry(times=2, backoff=3.0, on=on).decide(f, 1, 0)
    assert decision == (Redeliver(3.0, retry=True) if matches else GiveUp(f))


def test_crash_mro_is_the_real_mro() -> None:
    """The queue matches crashes by a hard-coded MRO: it must be WorkerCrashed's real one."""
    f = Failure.crash(-9, 1, "x")
    assert f.mro == Failure.from_exception(WorkerCrashed("w")).mro
    assert f.type_name == Failure.from_exception(WorkerCrashed("w")).type_name


@FAST
@given(failure=failures, times=st.integers(0, 5), retries=st.integers(0, 8), deliveries=counts)
def test_retry_unmatched_goes_to_then(failure: Failure, times: int, retries: int, deliveries: int) -> None:
    then = Recorder()
    r = Retry(times=times, on=(KeyError,), then=then)
    decision = r.decide(failure, deliveries, retries)
    if "builtins.KeyError" in failure.mro and retries < times:
        assert decision.retry is True
    else:
        assert decision == Redeliver(delay=12345.0)
        assert then.calls == [(failure, deliveries, retries)]


# ---- composition


def test_retry_then_requeue() -> None:
    mode = Retry(times=2, backoff=1.0, then=Requeue(max_deliveries=5))
    f = raised(ValueError("x"))
    # deliveries count every run; retries only the ones Retry sent back
    assert mode.decide(f, 1, 0) == Redeliver(1.0, retry=True)
    assert mode.decide(f, 2, 1) == Redeliver(2.0, retry=True)
    assert mode.decide(f, 3, 2) == Redeliver(0.0, retry=False)  # Requeue's turn
    assert mode.decide(f, 4, 2) == Redeliver(0.0, retry=False)
    assert mode.decide(f, 5, 2) == GiveUp(f)


def test_retry_only_some_errors_then_requeue_crashes() -> None:
    mode = Retry(times=3, backoff=0.1, on=(ConnectionError,), then=Requeue(max_deliveries=2))
    conn = raised(ConnectionResetError("x"))
    crash = Failure.crash(-9, 7, "running job")
    assert mode.decide(conn, 1, 0).retry is True
    assert mode.decide(crash, 1, 0) == Redeliver(0.0, retry=False)
    assert mode.decide(crash, 2, 0) == GiveUp(crash)


@FAST
@given(failure=failures, deliveries=counts, retries=counts)
def test_decisions_are_well_formed(failure: Failure, deliveries: int, retries: int) -> None:
    modes = [Abandon(), Requeue(), Requeue(3, then=Retry()), Retry(), Retry(5, 0.25, (Exception,), Requeue(2)),
             Retry(2, lambda a: a, (AppError, WorkerCrashed))]
    for mode in modes:
        d = mode.decide(failure, deliveries, retries)
        assert isinstance(d, (GiveUp, Redeliver))
        if isinstance(d, GiveUp):
            assert d.failure == failure
        else:
            assert d.delay >= 0 and math.isfinite(d.delay)


def test_reprs() -> None:
    assert repr(Abandon()) == "Abandon()"
    assert repr(Requeue(3)) == "Requeue(max_deliveries=3, then=Abandon())"
    assert "on=(ValueError,)" in repr(Retry(on=ValueError))


# --------------------------------------------------------------------------- constructor validation


def _lambda_mode(failure: Failure, deliveries: int, retries: int) -> Decision:
    return GiveUp(failure)


BAD_REQUEUE = [
    {"max_deliveries": 0},
    {"max_deliveries": -1},
    {"max_deliveries": True},
    {"max_deliveries": 2.5},
    {"max_deliveries": "5"},
    {"max_deliveries": None},
    {"then": Abandon},  # the class, not an instance
    {"then": Requeue},
    {"then": "abandon"},
    {"then": _lambda_mode},
]

BAD_RETRY = [
    {"times": -1},
    {"times": True},
    {"times": False},
    {"times": 2.0},
    {"times": "3"},
    {"times": None},
    {"backoff": "1.0"},
    {"backoff": -1},
    {"backoff": -0.5},
    {"backoff": True},
    {"backoff": None},
    {"backoff": float("nan")},
    {"backoff": float("inf")},
    {"on": ValueError("x")},  # an instance
    {"on": "ValueError"},
    {"on": ()},
    {"on": (int,)},
    {"on": object},
    {"on": (ValueError, "KeyError")},
    {"on": None},
    {"then": Abandon},
    {"then": Retry},
    {"then": _lambda_mode},
]


@pytest.mark.parametrize("kwargs", BAD_REQUEUE, ids=repr)
def test_requeue_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        Requeue(**kwargs)
    message = str(info.value)
    assert "honeydew." in message, message  # shows a correct call
    assert "Requeue(" in message


@pytest.mark.parametrize("kwargs", BAD_RETRY, ids=repr)
def test_retry_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        Retry(**kwargs)
    message = str(info.value)
    assert "honeydew." in message, message
    assert "Retry(" in message


@pytest.mark.parametrize("kwargs", [{"then": Abandon}, {"then": "x"}, {"on": "ValueError"}, {"on": (int,)}],
                         ids=repr)
def test_wrong_kind_of_argument_is_a_type_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        Retry(**kwargs)


@pytest.mark.parametrize(
    "mode",
    [
        lambda: Requeue(1),
        lambda: Requeue(max_deliveries=100, then=Retry()),
        lambda: Retry(0),
        lambda: Retry(times=0, backoff=0),
        lambda: Retry(backoff=2),  # int seconds
        lambda: Retry(backoff=lambda attempt: 1.0),
        lambda: Retry(on=KeyboardInterrupt),
        lambda: Retry(on=(ValueError, honeydew.WorkerCrashed)),
        lambda: Retry(then=Requeue(then=Abandon())),
    ],
)
def test_good_arguments_accepted(mode: Any) -> None:
    assert isinstance(mode(), FailureMode)


# --- a job's own failure mode, as its key ----------------------------------------------------------

class _MyMode(FailureMode):
    """A user's failure mode, defined where no other process can import it by name."""

    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        return Redeliver(0.25) if deliveries < 2 else GiveUp(failure)


@pytest.mark.parametrize("mode", [Abandon(), Move(), Requeue(max_deliveries=4, then=Move()),
                                  Retry(times=2, backoff=lambda attempt: attempt / 10, on=(KeyError,)), _MyMode()])
def test_a_jobs_own_failure_mode_goes_round_its_key(mode: FailureMode) -> None:
    key = own_mode_key(mode)
    assert key.startswith(OWN_MODE) and key.isascii()
    back = read_own_mode(key)
    assert type(back).__name__ == type(mode).__name__ and repr(back).split(" at ")[0] == repr(mode).split(" at ")[0]
    failure = Failure.from_exception(KeyError("k"))
    assert back.decide(failure, 1, 0) == mode.decide(failure, 1, 0)


def test_a_key_no_task_name_can_have() -> None:
    assert not OWN_MODE[0].isidentifier()


def test_an_unpicklable_failure_mode_has_no_key() -> None:
    import threading

    mode = Retry(times=1)
    mode.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"cannot be pickled.*e\.g\. pool\.options\(failure_mode="):
        own_mode_key(mode)


@pytest.mark.parametrize("key, error", [
    ("its_task", ValueError), (OWN_MODE + "%%%", ValueError),
    (OWN_MODE + base64.b64encode(pickle.dumps([1, 2])).decode(), TypeError),
])
def test_what_is_not_a_key_does_not_read(key: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_own_mode(key)
