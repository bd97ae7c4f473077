"""FAULTS (b) 12, 13, 15, 18, 19: serialization in both directions.

14 (a crash while unpickling the arguments), 16 (a crash while pickling the result) and 17 (a
result that will not unpickle in the caller) are rows of the crash matrix, ``test_crash_matrix.py``.
20 (version skew between producer and consumer) needs a durable queue or a broker: with the
in-memory queue the caller and every worker run the same interpreter and cloudpickle, so it does
not apply yet (docs/reliability.md).
"""

from __future__ import annotations

import importlib
import socket
import sys
import threading

import pytest
from support import faults_helpers as F

import honeydew

T = 30


class ReduceRaises:
    def __reduce__(self):
        raise RuntimeError("refuses to be pickled")


def _marker_task(path, value, *_state):
    open(path, "w").write("ran")
    return value


# --- 12: arguments that will not pickle ---------------------------------------------------------

@pytest.mark.parametrize("bad", ["lock", "socket", "reduce_raises", "generator"])
@pytest.mark.parametrize("api", ["cast", "call", "submit"])
def test_unpicklable_argument_fails_in_the_caller_and_enqueues_nothing(tmp_path, api, bad):
    """An argument that will not pickle (a lock, a socket, a ``__reduce__`` that raises, a
    generator), given to cast, call or submit: SerializationError in the caller, saying nothing was
    enqueued; the job indeed never runs (one FIFO worker serves the next call first) and the pool
    goes on serving."""
    marker = tmp_path / "ran"
    with honeydew.Pool(num_workers=1) as pool:
        with socket.socket() as sock:
            value = {"lock": threading.Lock(), "socket": sock, "reduce_raises": ReduceRaises(),
                     "generator": (i for i in range(3))}[bad]
            with pytest.raises(honeydew.SerializationError) as info:
                getattr(pool, api)(_marker_task, str(marker), value)
        assert "nothing was enqueued" in str(info.value)
        # one worker, FIFO: had the bad job been enqueued it would have run before this one
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
    assert not marker.exists()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("max_pending", [None, 3, 5])
def test_100_bad_and_100_good_submissions_to_one_worker_never_deadlock(max_pending):
    """100 rounds of a cast and a submit whose argument will not pickle (each raises
    SerializationError in the caller) and a good submit, on one worker, with and without
    back-pressure: the 100 good jobs all complete, in order, and the pool still serves (a bad call
    raises, the next good one runs)."""
    with honeydew.Pool(num_workers=1, max_pending=max_pending) as pool:
        good = []
        for i in range(100):
            for api in ("cast", "submit"):
                with pytest.raises(honeydew.SerializationError):
                    getattr(pool, api)(F.echo, threading.Lock())
            good.append(pool.submit(F.echo, i))
        assert [f.result(timeout=T) for f in good] == list(range(100))
        with pytest.raises(honeydew.SerializationError):
            pool.call(F.echo, ReduceRaises())
        assert pool.options(timeout=T).call(F.echo, "next") == "next"


# --- 13: arguments that pickle but will not unpickle in the worker ------------------------------

def test_argument_of_a_module_the_worker_cannot_import(tmp_path):
    """The class lives in a module the caller imported after the pool started, from a directory
    the worker's sys.path lacks: ModuleNotFoundError in the worker -> SerializationError, and the
    worker survives."""
    with honeydew.Pool(num_workers=1) as pool:
        pid = pool.options(timeout=T).call(F.getpid)
        name = F.make_module(str(tmp_path), "hd_caller_only_module")
        sys.path.insert(0, str(tmp_path))
        try:
            importlib.invalidate_caches()
            thing = importlib.import_module(name).Thing(1)
            fut = pool.submit(F.echo, thing)
            behind = pool.submit(F.echo, "behind")
            exc = fut.exception(timeout=T)
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop(name, None)
        assert isinstance(exc, honeydew.SerializationError), repr(exc)
        assert "could not be unpickled in the worker" in str(exc)
        assert "hd_caller_only_module" in str(exc)
        assert isinstance(exc.__cause__, ModuleNotFoundError)
        assert behind.result(timeout=T) == "behind"
        assert pool.options(timeout=T).call(F.getpid) == pid


@pytest.mark.parametrize("mode", ["abandon", "requeue"])
def test_argument_raising_on_unpickle_fails_that_job_only(mode):
    fm = honeydew.Requeue(max_deliveries=2) if mode == "requeue" else honeydew.Abandon()
    with honeydew.Pool(num_workers=2, failure_mode=fm) as pool:
        pids = F.wait_until(lambda: (lambda w: w if len(w) == 2 else None)(F.worker_pids()), T)
        futs = [pool.submit(F.echo, i) for i in range(10)]
        bad = pool.submit(F.echo, F.CrashOnUnpickle("raise"))
        more = [pool.submit(F.echo, i) for i in range(10, 20)]
        assert isinstance(bad.exception(timeout=T), honeydew.SerializationError)
        assert [f.result(timeout=T) for f in futs + more] == list(range(20))
        assert F.worker_pids() == pids  # no worker was replaced


# --- 15: results that will not pickle -------------------------------------------------------------

def _return_lock(*_state):
    return threading.Lock()


def _return_lambda(k, *_state):
    return lambda x: x * k


def _return_generator(*_state):
    return (i for i in range(3))


@pytest.mark.parametrize("task, type_name", [(_return_lock, "lock"), (_return_generator, "generator")])
def test_result_that_will_not_pickle_names_its_type_and_the_worker_survives(task, type_name):
    with honeydew.Pool(num_workers=1) as pool:
        pid = pool.options(timeout=T).call(F.getpid)
        with pytest.raises(honeydew.SerializationError) as info:
            pool.options(timeout=T).call(task)
        assert type_name in str(info.value)
        assert "could not be pickled" in str(info.value)
        assert info.value.__cause__ is not None
        assert pool.options(timeout=T).call(F.getpid) == pid


def test_a_lambda_result_round_trips_by_value():
    """A lambda does not pickle with pickle, but the worker falls back to cloudpickle."""
    with honeydew.Pool(num_workers=1) as pool:
        triple = pool.options(timeout=T).call(_return_lambda, 3)
        assert triple(5) == 15


# --- 18: an exception that cannot be rebuilt in the caller -------------------------------------

class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}+{b}")


def _raise_needs_two(*_state):
    raise NeedsTwo("left", "right")


class UnpicklableError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


def _raise_unpicklable_error(*_state):
    raise UnpicklableError("holds a lock")


@pytest.mark.parametrize("task, type_name, text", [
    (_raise_needs_two, "NeedsTwo", "left+right"),
    (_raise_unpicklable_error, "UnpicklableError", "holds a lock"),
])
def test_exception_that_cannot_be_rebuilt_is_a_remote_error(task, type_name, text):
    with honeydew.Pool(num_workers=1) as pool:
        pid = pool.options(timeout=T).call(F.getpid)
        fut = pool.submit(task)
        exc = fut.exception(timeout=T)
        assert isinstance(exc, honeydew.RemoteError), repr(exc)
        assert exc.type_name.endswith(type_name)
        assert text in str(exc)
        assert task.__name__ in exc.traceback_text
        assert pool.options(timeout=T).call(F.getpid) == pid


# --- 19: functions from __main__, nested, recursive, closures ----------------------------------

def test_nested_recursive_and_closure_callables_round_trip():
    k = 7

    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    def outer():
        def inner(x):
            return x + k
        return inner

    with honeydew.Pool(num_workers=1) as pool:
        assert pool.options(timeout=T).call(fact, 6) == 720
        assert pool.options(timeout=T).call(outer(), 1) == 8
        assert pool.options(timeout=T).call(lambda x: [x] * 2, "a") == ["a", "a"]
        assert list(pool.map(lambda x: x * k, range(5))) == [0, 7, 14, 21, 28]


MAIN_FUNCTIONS = """
import sys
import honeydew

def top(x):
    return x + 1

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

class Box:
    def __init__(self, v):
        self.v = v

def make_adder(k):
    def add(x):
        return Box(x.v + k)
    return add

def make_self_recursive():
    def countdown(n):
        return 0 if n == 0 else 1 + countdown(n - 1)
    return countdown

if __name__ == "__main__":
    with honeydew.Pool(num_workers=1, start_method=sys.argv[1]) as pool:
        print("METHOD", pool.start_method)
        print("TOP", pool.call(top, 1))
        print("FIB", pool.call(fib, 15))
        print("LAMBDA", pool.call(lambda s: s.upper(), "abc"))
        print("CLOSURE", pool.call(make_adder(10), Box(5)).v)
        print("NESTED", pool.call(make_self_recursive(), 30))
        print("MAP", list(pool.map(top, [1, 2, 3])))
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_functions_and_classes_defined_in_main_round_trip(tmp_path, method):
    res = F.run_script(tmp_path, MAIN_FUNCTIONS, timeout=80, args=[method])
    assert res.returncode == 0, res.stderr
    out = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert out == {"METHOD": method, "TOP": "2", "FIB": "610", "LAMBDA": "ABC", "CLOSURE": "15",
                   "NESTED": "30", "MAP": "[2, 3, 4]"}
