"""Issue #2, the public contract: cast / call / submit / map, module, class and worker-less pools,
workers defined in ``__main__`` (fork and spawn)."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
from support import integration_helpers as H
from support import workers as W

import honeydew


@pytest.fixture
def pool():
    with honeydew.Pool(W, ["st"], num_workers=2, init_retry_secs=0.05) as p:
        yield p


@pytest.fixture
def bare():
    with honeydew.Pool(num_workers=2, init_retry_secs=0.05) as p:
        yield p


# --- cast / call / submit -----------------------------------------------------------------------

def test_cast_returns_a_job_id_and_the_job_runs(pool, tmp_path):
    target = tmp_path / "cast.txt"
    job_id = pool.cast(H.touch, str(target))
    assert isinstance(job_id, str) and job_id
    H.wait_until(target.exists, 10, what="the cast job's file")
    assert int(target.read_text()) in {p.pid for p in H.by_name("hd-worker-0") + H.by_name("hd-worker-1")}


def test_cast_ids_are_unique(pool):
    ids = {pool.cast("echo", i) for i in range(50)}
    assert len(ids) == 50


def test_call_by_registered_name(pool):
    assert pool.call("echo", 42) == 42
    assert pool.call("tag", "x") == "st:x"


def test_call_by_registered_function_object(pool):
    assert pool.call(W.tag, "y") == "st:y"
    assert pool.call(W.echo, [1, 2]) == [1, 2]


@pytest.mark.parametrize("api", ["call", "cast", "submit"])
def test_a_missing_argument_names_the_users_parameter_not_the_state(pool, api):
    """``tag(value, state, *, suffix="")`` called without ``value``: Python would report the state's
    parameter missing; the caller names ``value``, and nothing is enqueued."""
    with pytest.raises(TypeError, match="missing a required argument: 'value'") as info:
        getattr(pool, api)("tag")
    assert "'state', receives the worker's state" in str(info.value)
    with pytest.raises(TypeError, match="'surplus'"):
        getattr(pool, api)(W.tag, "x", surplus=1)
    assert pool.status()["queues"][0]["pending"] == 0
    assert pool.call("tag", "x", suffix="!") == "st:x!"


def test_call_by_lambda_gets_state_appended(pool):
    assert pool.call(lambda a, b, state: (a, b, state["prefix"]), 1, 2) == (1, 2, "st")


def test_call_by_closure_gets_state_appended(pool):
    outer = "closed-over"
    assert pool.call(lambda state: (outer, state["prefix"])) == ("closed-over", "st")


def test_keyword_args_stay_keywords(pool):
    assert pool.call("tag", "v", suffix="!") == "st:v!"
    assert pool.call(W.tag, "v", suffix="?") == "st:v?"
    assert pool.call(lambda v, state, *, k=None: (v, k, state["prefix"]), "a", k="kw") == ("a", "kw", "st")


def test_submit_returns_a_future_with_job_id(pool):
    fut = pool.submit("tag", "f", suffix=".")
    assert isinstance(fut, concurrent.futures.Future)
    assert isinstance(fut.job_id, str) and fut.job_id
    assert fut.result(timeout=10) == "st:f."
    assert fut.done() and fut.exception(timeout=0) is None


def test_submit_future_carries_the_exception(pool):
    fut = pool.submit("boom", "nope")
    with pytest.raises(ValueError, match="nope"):
        fut.result(timeout=10)
    assert isinstance(fut.exception(timeout=0), ValueError)


def test_submit_works_with_concurrent_futures_wait(pool):
    futs = [pool.submit("echo", i) for i in range(20)]
    done, not_done = concurrent.futures.wait(futs, timeout=20)
    assert not not_done
    assert sorted(f.result() for f in done) == list(range(20))
    assert [f.result() for f in concurrent.futures.as_completed(futs, timeout=5)]


def test_submit_result_timeout(pool):
    fut = pool.submit("sleep", 1.0)
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.05)
    assert fut.result(timeout=10) == 1.0


# --- map ----------------------------------------------------------------------------------------

def test_map_in_input_order(bare):
    items = list(range(37))
    assert list(bare.map(W.square, items)) == [x * x for x in items]


def test_map_results_in_order_even_when_early_items_are_slow(bare):
    delays = [0.3, 0.0, 0.2, 0.0, 0.0, 0.1]
    assert list(bare.map(H.nap, delays, chunksize=1)) == delays


def test_map_raises_per_item_when_reached(bare):
    def f(x):
        if x == 5:
            raise KeyError(x)
        return x * 10

    it = bare.map(f, range(10), chunksize=3)
    got = []
    with pytest.raises(KeyError) as info:
        for v in it:
            got.append(v)
    assert got == [0, 10, 20, 30, 40]
    assert isinstance(info.value.__cause__, honeydew.errors.RemoteTraceback)


def test_map_error_inside_a_chunk_yields_earlier_items_of_that_chunk(bare):
    def f(x):
        if x == 2:
            raise ValueError("two")
        return x

    it = bare.map(f, range(4), chunksize=4)
    assert next(it) == 0
    assert next(it) == 1
    with pytest.raises(ValueError, match="two"):
        next(it)


@pytest.mark.parametrize("chunksize", [1, 2, 7, 100])
def test_map_chunksize(bare, chunksize):
    assert list(bare.map(W.square, range(25), chunksize=chunksize)) == [x * x for x in range(25)]


def test_map_multiple_iterables(bare):
    assert list(bare.map(W.add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]


def test_map_multiple_iterables_stops_at_shortest(bare):
    assert list(bare.map(W.add, [1, 2, 3, 4], [10, 20])) == [11, 22]


def test_map_empty_input(bare):
    assert list(bare.map(W.square, [])) == []


def test_map_over_a_generator(bare):
    assert list(bare.map(W.square, (x for x in range(5)))) == [0, 1, 4, 9, 16]


def test_map_with_a_stateful_pool_appends_state(pool):
    assert list(pool.map(W.tag, ["a", "b", "c"])) == ["st:a", "st:b", "st:c"]
    assert list(pool.map("echo", [3, 2, 1])) == [3, 2, 1]
    assert list(pool.map(lambda x, state: (x, state["prefix"]), [1, 2], chunksize=1)) == [(1, "st"), (2, "st")]


@pytest.mark.timeout(60)
def test_map_over_10k_tiny_items(bare):
    n = 10_000
    assert list(bare.map(W.square, range(n))) == [x * x for x in range(n)]


def test_map_uses_both_workers(bare):
    pids = set(bare.map(H.nap_pid, [0.2] * 8, chunksize=1))
    assert len(pids) == 2


# --- class workers ------------------------------------------------------------------------------

def test_class_worker_keeps_state_per_worker():
    with honeydew.Pool(W.Counter, [10], num_workers=1) as pool:
        assert pool.call("incr") == 11
        assert pool.call("incr", 5) == 16
        assert pool.call(W.Counter.incr, by=2) == 18
        assert pool.call(W.Counter.get) == 18
        assert pool.call("get") == 18


def test_class_worker_each_worker_has_its_own_instance():
    with honeydew.Pool(W.Counter, [0], num_workers=2, dispatcher=honeydew.dispatchers.LRU()) as pool:
        # both workers ready (each has taken a job), then sequential calls alternate (LRU)
        H.wait_until(lambda: len(set(pool.map(lambda _x, c: (time.sleep(0.1), c.pid)[1], [0, 1], chunksize=1))) == 2,
                     10, what="both workers to serve")
        # a plain callable sent to a class worker gets the instance appended; each call is sent
        # with both workers idle, so that LRU (not the scheduler) decides who takes it
        owners = []
        for _ in range(10):
            H.wait_until(lambda: pool.status()["queues"][0]["idle_credits"] == 2, 10, what="both workers idle")
            owners.append(pool.call(lambda c: (c.pid, c.incr())))
    by_pid: dict[int, list[int]] = {}
    for pid, value in owners:
        by_pid.setdefault(pid, []).append(value)
    assert len(by_pid) == 2
    for values in by_pid.values():
        assert values == list(range(1, len(values) + 1))


def test_class_worker_unregistered_method_is_unknown():
    with honeydew.Pool(W.Counter, [0], num_workers=1) as pool:
        with pytest.raises(honeydew.UnknownTask):
            pool.call("not_a_task")
        assert pool.call("incr") == 1


# --- worker-less pool ---------------------------------------------------------------------------

def test_workerless_pool_runs_plain_callables(bare):
    assert bare.call(W.square, 7) == 49
    assert bare.call(lambda: "no state") == "no state"
    assert bare.call(W.add, 1, b=2) == 3
    with pytest.raises(honeydew.UnknownTask):
        bare.call("square", 3)


def test_module_without_init_gets_no_state():
    import types

    ns = types.ModuleType("stateless_worker")

    @honeydew.task
    def hello(name):
        return f"hello {name}"

    ns.hello = hello
    with honeydew.Pool(ns, num_workers=1) as pool:
        assert pool.call("hello", "you") == "hello you"
        assert pool.call(lambda: "no state appended") == "no state appended"


# --- invalid workers (bad options: tests/faults/test_init.py) -------------------------------------

def _no_init_worker():
    import types
    return types.ModuleType("no_init_worker")


def _bad_init_worker():
    import types
    ns = types.ModuleType("bad_init_worker")
    ns.init = 42
    return ns


@pytest.mark.parametrize("make, args", [
    (lambda: 42, None),
    (lambda: W, "not-a-list"),
    (lambda: W, [1, 2, 3]),             # init(prefix) takes one argument
    (_no_init_worker, [1]),             # no init, but arguments
    (_bad_init_worker, []),             # init is not a function
    (lambda: None, [1]),                # arguments but no worker
])
def test_invalid_worker_raises_before_any_process_starts(make, args):
    with pytest.raises(TypeError) as info:
        honeydew.Pool(make(), args)
    assert "honeydew.Pool(" in str(info.value), f"no correct call shown: {info.value}"
    assert H.pool_processes() == []


# --- workers defined in __main__ ----------------------------------------------------------------

MAIN_SCRIPT = """
import json, os, sys
import honeydew

def init(prefix):
    return {"prefix": prefix, "pid": os.getpid()}

@honeydew.task
def greet(name, state):
    return state["prefix"] + name

def plain(x):
    return x + 1

def plain_v(x):
    return x.v + 1

class Tally:
    def __init__(self, start):
        self.n = start

    @honeydew.task
    def add(self, k):
        self.n += k
        return self.n

if __name__ == "__main__":
    method = sys.argv[1]
    out = {}
    with honeydew.Pool(sys.modules[__name__], ["hi "], num_workers=1, start_method=method) as pool:
        out["method"] = pool.start_method
        out["by_name"] = pool.call("greet", "bob")
        out["by_function"] = pool.call(greet, "ann")
        out["lambda"] = pool.call(lambda x, state: state["prefix"] + str(x), 5)
        out["map"] = list(pool.map(greet, ["a", "b"]))
    with honeydew.Pool(Tally, [100], num_workers=1, start_method=method) as pool:
        out["class"] = [pool.call("add", 1), pool.call(Tally.add, 2), pool.call(lambda t: t.n)]
    with honeydew.Pool(num_workers=1, start_method=method) as pool:
        out["plain"] = pool.call(plain, 1)
        out["plain_lambda"] = pool.call(lambda: "main lambda")
        out["plain_map"] = list(pool.map(plain, range(3)))

        # defined after the pool started: forked workers never saw them, so they go by value
        class Late:
            def __init__(self, v):
                self.v = v

        def late(x):
            return x.v * 2

        out["late_class_argument"] = pool.call(plain_v, Late(4))
        out["late_function"] = pool.call(late, Late(5))
        out["late_map"] = list(pool.map(late, [Late(1), Late(2)]))
    print("RESULT " + json.dumps(out))
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_defined_in_main(tmp_path, method):
    proc = H.run_script(tmp_path, MAIN_SCRIPT, timeout=60, args=[method])
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, (proc.stdout, proc.stderr)
    out = json.loads(line[0][len("RESULT "):])
    assert out == {
        "method": method,
        "by_name": "hi bob",
        "by_function": "hi ann",
        "lambda": "hi 5",
        "map": ["hi a", "hi b"],
        "class": [101, 103, 103],
        "plain": 2,
        "plain_lambda": "main lambda",
        "plain_map": [1, 2, 3],
        "late_class_argument": 5,
        "late_function": 10,
        "late_map": [2, 4],
    }
