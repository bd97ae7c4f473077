"""The ``concurrent.futures.Executor`` contract, kept by ``honeydew.Pool`` and
``honeydew.ProcessPoolExecutor`` alike: shutdown, errors after shutdown and after interpreter
shutdown, futures that cancel only while queued, nothing kept alive past its job, the initializer,
remote tracebacks, ``loop.run_in_executor``; and what the executor does better than
``ProcessPoolExecutor`` (a crash fails one job, the pool goes on)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback
from typing import Any

import pytest
from support import integration_helpers as H

import honeydew
from honeydew.errors import RemoteTraceback

pytestmark = pytest.mark.timeout(120)
T = 30
KINDS = ["Pool", "ProcessPoolExecutor"]


def make(kind: str, workers: int = 2, **kw: Any) -> concurrent.futures.Executor:
    if kind == "Pool":
        return honeydew.Pool(num_workers=workers, **kw)
    return honeydew.ProcessPoolExecutor(max_workers=workers, **kw)


def square(x: int) -> int:
    return x * x


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def nap_then_touch(path: str) -> None:
    time.sleep(0.05)
    open(path, "w").close()


def make_object(i: int) -> Any:
    return Holder(i)


class Holder:
    def __init__(self, i: int) -> None:
        self.i = i

    def method(self) -> int:
        return self.i


class SetOnCollect:
    """An argument whose collection in the worker sets a Manager event."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def __del__(self) -> None:
        self.event.set()


def raise_here() -> None:
    raise ValueError(123)  # the line a remote traceback must show


def initialized_value() -> Any:
    return INITIALIZED


INITIALIZED: Any = None


def set_initialized(value: Any) -> str:
    global INITIALIZED
    INITIALIZED = value
    return "a return value nobody sees"


def fail_init() -> None:
    raise RuntimeError("initializer fails")


# --- the Executor -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_is_an_executor_with_the_standard_methods(kind):
    with make(kind) as ex:
        assert isinstance(ex, concurrent.futures.Executor)
        fut = ex.submit(square, 3)
        assert isinstance(fut, concurrent.futures.Future) and fut.result(timeout=T) == 9
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
        done, _ = concurrent.futures.wait([ex.submit(square, i) for i in range(4)], timeout=T)
        assert sorted(f.result() for f in done) == [0, 1, 4, 9]
        assert sorted(f.result() for f in concurrent.futures.as_completed([ex.submit(square, 5)])) == [25]


@pytest.mark.parametrize("kind", KINDS)
def test_submit_after_shutdown_is_a_runtime_error(kind):
    ex = make(kind)
    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError) as info:
        ex.submit(square, 2)
    assert isinstance(info.value, honeydew.PoolClosed)
    assert H.pool_processes() == []


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_without_wait_finishes_the_jobs_in_the_background(kind, tmp_path):
    ex = make(kind)
    futs = [ex.submit(nap_then_touch, str(tmp_path / f"f{i}")) for i in range(6)]
    ex.shutdown(wait=False)
    del ex, futs  # nothing refers to the pool any more: the collector must not stop it
    gc.collect()
    H.wait_until(lambda: all((tmp_path / f"f{i}").exists() for i in range(6)), T, what="every job to run")
    H.wait_until(lambda: H.pool_processes() == [], T, what="the pool to finish in the background")


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_with_cancel_futures_cancels_what_has_not_started(kind, tmp_path):
    ex = make(kind, workers=1)
    flag, release = str(tmp_path / "flag"), str(tmp_path / "release")
    running = ex.submit(H.announce_then_wait, flag, release, T)
    H.wait_until(lambda: os.path.exists(flag), T, what="the first job to run")
    queued = [ex.submit(H.touch, str(tmp_path / f"q{i}")) for i in range(5)]
    threading.Timer(0.3, lambda: open(release, "w").close()).start()
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=0) > 0
    assert all(f.cancelled() for f in queued)
    assert not any((tmp_path / f"q{i}").exists() for i in range(5))


@pytest.mark.parametrize("kind", KINDS)
def test_map_timeout_counts_from_the_call(kind):
    """``Executor.map``: the timeout runs from the ``map()`` call, not from the first ``next()``.
    Each item takes 2 s; the iteration starts 1 s after the call with a 1.5 s timeout: counted
    from the call the first item is late (TimeoutError), counted from ``next()`` it would not be."""
    with make(kind) as ex:
        results = ex.map(nap, [2.0, 2.0], timeout=1.5)
        time.sleep(1.0)
        with pytest.raises(TimeoutError):
            next(results)


@pytest.mark.parametrize("kind", KINDS)
def test_map_keeps_no_reference_to_what_it_yielded(kind):
    with make(kind) as ex:
        for obj in ex.map(make_object, range(10)):
            ref = weakref.ref(obj)
            del obj
            gc.collect()
            assert ref() is None, "map kept a reference to an item it had yielded"


@pytest.mark.parametrize("kind", KINDS)
def test_no_reference_outlives_its_job(kind):
    """A submitted callable (a bound method, which holds its object), its arguments and its result
    are not kept by the pool once the job is done."""
    with make(kind) as ex:
        holder, arg = Holder(7), Holder(8)
        seen = [weakref.ref(holder), weakref.ref(arg)]
        fut = ex.submit(holder.method)
        assert fut.result(timeout=T) == 7
        fut2 = ex.submit(Holder.method, arg)
        assert fut2.result(timeout=T) == 8
        result = weakref.ref(ex.submit(make_object, 9).result(timeout=T))
        del holder, arg
        gc.collect()
        assert [r() for r in seen] == [None, None]
        assert result() is None


# --- futures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_futures_cancel_only_while_queued_and_say_when_they_run(kind, tmp_path):
    with make(kind, workers=1) as ex:
        flag, release = str(tmp_path / "flag"), str(tmp_path / "release")
        running = ex.submit(H.announce_then_wait, flag, release, T)
        H.wait_until(lambda: os.path.exists(flag), T, what="the job to run")
        queued = ex.submit(square, 4)
        assert running.running() and not queued.running()
        assert running.cancel() is False and not running.cancelled()
        assert queued.cancel() is True and queued.cancelled()
        open(release, "w").close()
        assert running.result(timeout=T) == int(open(flag).read())  # its worker was not touched
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result(timeout=0)


@pytest.mark.parametrize("kind", KINDS)
def test_cancelling_an_awaiting_asyncio_task_does_not_kill_the_worker(kind, tmp_path):
    flag, release = str(tmp_path / "flag"), str(tmp_path / "release")

    async def main(ex: Any) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(ex, square, 6) == 36
        task = asyncio.ensure_future(loop.run_in_executor(ex, H.announce_then_wait, flag, release, T))
        while not os.path.exists(flag):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        open(release, "w").close()
        return int(open(flag).read()), await loop.run_in_executor(ex, os.getpid)

    with make(kind, workers=1) as ex:
        worker, after = asyncio.run(main(ex))
    assert worker == after, "cancelling the awaiting task killed the worker"


# --- ProcessPoolExecutor's signature and its initializer ----------------------------------------

@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_must_be_positive(bad):
    with pytest.raises(ValueError, match="^max_workers must be greater than 0$"):
        honeydew.ProcessPoolExecutor(max_workers=bad)
    assert H.pool_processes() == []


def test_the_standard_arguments():
    with pytest.raises(TypeError, match="initializer must be a callable"):
        honeydew.ProcessPoolExecutor(2, initializer="nope")
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1"):
        honeydew.ProcessPoolExecutor(2, max_tasks_per_child=0)
    with pytest.raises(ValueError, match="incompatible with the 'fork' multiprocessing start method"):
        honeydew.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"), max_tasks_per_child=3)
    ctx = multiprocessing.get_context("spawn")
    with honeydew.ProcessPoolExecutor(2, mp_context=ctx, max_tasks_per_child=2) as ex:
        assert ex.start_method == "spawn"
        pids = [ex.submit(os.getpid).result(timeout=T) for _ in range(8)]
    assert max(pids.count(p) for p in set(pids)) <= 2, "max_tasks_per_child: a worker ran more than 2 jobs"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_initializer_runs_in_each_worker_and_its_value_is_not_passed(method):
    ctx = multiprocessing.get_context(method)
    with honeydew.ProcessPoolExecutor(2, mp_context=ctx, initializer=set_initialized, initargs=("ready",)) as ex:
        assert [ex.submit(initialized_value).result(timeout=T) for _ in range(4)] == ["ready"] * 4
        assert ex.submit(square, 3).result(timeout=T) == 9  # no state appended to the arguments


def test_an_initializer_that_keeps_failing_breaks_the_executor():
    ex = honeydew.ProcessPoolExecutor(2, initializer=fail_init)
    try:
        waiting = ex.submit(square, 2)
        with pytest.raises(BrokenProcessPool) as info:
            waiting.result(timeout=T)
        assert isinstance(info.value, honeydew.PoolBroken)
        assert isinstance(info.value.__cause__, RuntimeError) and "initializer fails" in str(info.value.__cause__)
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 3)
        H.wait_until(lambda: H.pool_processes() == [], T, what="the broken executor's processes to stop")
    finally:
        ex.shutdown()


def test_a_crash_fails_one_job_and_the_executor_goes_on():
    """Better than ProcessPoolExecutor by design: the crash is that job's ``WorkerCrashed``, which
    code written for ProcessPoolExecutor still catches as ``BrokenProcessPool``."""
    with honeydew.ProcessPoolExecutor(2) as ex:
        crashed = ex.submit(H.crash_self)
        with pytest.raises(BrokenProcessPool) as info:
            crashed.result(timeout=T)
        assert isinstance(info.value, honeydew.WorkerCrashed) and info.value.signal_name == "SIGKILL"
        assert [f.result(timeout=T) for f in [ex.submit(square, i) for i in range(6)]] == [0, 1, 4, 9, 16, 25]


# --- tracebacks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_the_remote_traceback_shows_the_source_line(kind):
    with make(kind) as ex:
        with pytest.raises(ValueError) as info:
            ex.submit(raise_here).result(timeout=T)
    assert info.value.args == (123,)
    cause = info.value.__cause__
    if kind == "ProcessPoolExecutor":
        assert type(cause) is _RemoteTraceback  # exactly what ProcessPoolExecutor attaches
        assert "raise ValueError(123)  # the line a remote traceback must show" in cause.tb
    else:
        assert type(cause) is RemoteTraceback
        assert "raise ValueError(123)  # the line a remote traceback must show" in str(cause)


MAIN_TRACEBACK = """
import json, sys
import honeydew

def from_main():
    raise KeyError("k")  # a line of the script

out = {}
for kind in ("Pool", "ProcessPoolExecutor"):
    for method in ("fork", "spawn"):
        make = (lambda: honeydew.Pool(num_workers=1, start_method=method)) if kind == "Pool" else (
            lambda: honeydew.ProcessPoolExecutor(1, mp_context=__import__("multiprocessing").get_context(method)))
        with make() as ex:
            try:
                ex.submit(from_main).result()
            except KeyError as e:
                text = getattr(e.__cause__, "tb", None) or str(e.__cause__)
                out[f"{kind}-{method}"] = "a line of the script" in text
print(json.dumps(out))
"""


def test_a_remote_traceback_shows_the_scripts_own_lines(tmp_path):
    """Code from ``__main__`` too (shipped by value, cloudpickle would have named its file
    ``<dynamic-code>``): fork and spawn, Pool and executor."""
    proc = H.run_script(tmp_path, MAIN_TRACEBACK)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {f"{k}-{m}": True for k in KINDS for m in ("fork", "spawn")}, out


# --- a spawned pool and multiprocessing's authentication ----------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_manager_proxies_work_as_arguments_of_a_spawned_pool(kind):
    """A spawned supervisor gets the caller's authkey, so Manager proxies authenticate; and an
    argument is collected in the worker once its job is done."""
    with multiprocessing.Manager() as manager:
        event = manager.Event()
        spawn = {"start_method": "spawn"} if kind == "Pool" else {"mp_context": multiprocessing.get_context("spawn")}
        with make(kind, **spawn) as ex:
            assert ex.submit(id, SetOnCollect(event)).result(timeout=T)
            assert event.wait(T), "the argument was not collected in the worker after its job"


# --- the end of the interpreter -----------------------------------------------------------------

AT_EXIT = """
import atexit, sys
import honeydew
from support import faults_helpers as F

d, kind, stop = sys.argv[1], sys.argv[2], sys.argv[3]
ex = honeydew.Pool(num_workers=2) if kind == "Pool" else honeydew.ProcessPoolExecutor(2)
if stop != "terminate":
    open(d + "/release", "w").close()   # (with terminate, the jobs wait for it until they are stopped)
for i in range(8):
    ex.submit(F.announce_wait_record, d, "ran")

def submit_late():
    try:
        ex.submit(F.record_run, d, "late")
    except RuntimeError as e:
        print("LATE", type(e).__name__, e, flush=True)

atexit.register(submit_late)
if stop == "terminate":
    ex.terminate()
print("END", flush=True)
"""


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stop", ["nothing", "terminate"])
def test_at_interpreter_exit_jobs_run_silently_and_later_submits_are_refused(kind, stop, tmp_path):
    proc = H.run_script(tmp_path, AT_EXIT, args=[str(tmp_path), kind, stop])
    assert proc.returncode == 0, proc.stderr
    ran = len(list(tmp_path.glob("ran-*")))
    if stop == "nothing":
        assert ran == 8 and proc.stderr == "", proc.stderr
    else:
        assert ran == 0 and "terminate(): 8 job(s) dropped" in proc.stderr, proc.stderr
    assert "LATE RuntimeError cannot schedule new futures after interpreter shutdown" in proc.stdout, proc.stdout
    assert not list(tmp_path.glob("late-*"))


INIT_FAILS_AT_EXIT = """
import types
import honeydew

def init():
    raise RuntimeError("no database")

@honeydew.task
def ping(state):
    return "pong"

worker = types.ModuleType("w")
worker.init, worker.ping = init, ping
pool = honeydew.Pool(worker, num_workers=1, init_retry_secs=0.05)
pool.cast("ping")
print("END", flush=True)
"""


def test_a_pool_whose_init_keeps_failing_ends_the_exit_wait_with_one_error(tmp_path):
    proc = H.run_script(tmp_path, INIT_FAILS_AT_EXIT)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "at interpreter exit" in ln]
    assert len(lines) == 1 and "dropped because no worker could start" in lines[0], proc.stderr
    assert H.pool_processes() == []


# --- what CPython's own executor tests check, beyond the table above ----------------------------

class ExitWhenUnpickled:
    """A value whose unpickling raises ``SystemExit`` (in whichever process unpickles it)."""

    def __reduce__(self) -> Any:
        return (_exit_now, ())


def _exit_now() -> None:
    raise SystemExit(1)


class ErrorWhenPickled:
    def __reduce__(self) -> Any:
        raise pickle.PicklingError("no pickling this")


class ErrorWhenUnpickled:
    def __reduce__(self) -> Any:
        return (_raise_value_error, ())


def _raise_value_error() -> None:
    raise ValueError("no unpickling this")


def returns(value_type: type) -> Any:
    return value_type()


@pytest.mark.parametrize("kind", KINDS)
def test_a_result_whose_unpickling_raises_system_exit_fails_only_its_job(kind):
    """Unpickling runs user code in the caller: even a ``SystemExit`` there fails that job alone
    (the thread resolving futures survives, and so do the other jobs of the same batch)."""
    with make(kind) as ex:
        futs = [ex.submit(returns, ExitWhenUnpickled) for _ in range(3)] + [ex.submit(square, 4)]
        for f in futs[:3]:
            exc = f.exception(timeout=T)
            assert isinstance(exc, honeydew.SerializationError) and isinstance(exc.__cause__, SystemExit), repr(exc)
            assert isinstance(exc, BrokenProcessPool) == (kind == "ProcessPoolExecutor")
        assert futs[3].result(timeout=T) == 16
        assert ex.submit(square, 5).result(timeout=T) == 25


def test_serialization_errors_as_process_pool_executor_reports_them():
    """honeydew.ProcessPoolExecutor: arguments that will not pickle fail the future with the
    pickling error; a result that will not pickle raises that error; arguments that will not
    unpickle in the worker, or a result in the caller, are a BrokenProcessPool, for that job alone."""
    with honeydew.ProcessPoolExecutor(2) as ex:
        with pytest.raises(pickle.PicklingError):
            ex.submit(id, ErrorWhenPickled()).result(timeout=T)
        with pytest.raises(pickle.PicklingError):
            ex.submit(returns, ErrorWhenPickled).result(timeout=T)
        with pytest.raises(BrokenProcessPool):
            ex.submit(id, ErrorWhenUnpickled()).result(timeout=T)
        with pytest.raises(BrokenProcessPool):
            ex.submit(returns, ErrorWhenUnpickled).result(timeout=T)
        assert ex.submit(square, 6).result(timeout=T) == 36


def test_pool_reports_serialization_errors_as_its_own():
    with honeydew.Pool(num_workers=2) as pool:
        with pytest.raises(honeydew.SerializationError):
            pool.submit(id, ErrorWhenPickled())  # at once, nothing enqueued
        with pytest.raises(honeydew.SerializationError, match="could not be pickled"):
            pool.submit(returns, ErrorWhenPickled).result(timeout=T)
        with pytest.raises(honeydew.SerializationError, match="could not be unpickled in the worker"):
            pool.submit(id, ErrorWhenUnpickled()).result(timeout=T)
        assert pool.call(square, 7) == 49


def log_then_fail(path: str) -> None:
    handler = logging.FileHandler(path)
    logging.getLogger("concurrent.futures").addHandler(handler)
    raise ValueError("error in initializer")


def test_a_failing_initializer_is_logged_where_process_pool_executor_logs_it(tmp_path):
    log = str(tmp_path / "log")
    ex = honeydew.ProcessPoolExecutor(1, initializer=log_then_fail, initargs=(log,))
    try:
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 2).result(timeout=T)
    finally:
        ex.shutdown()
    text = open(log).read()
    assert "Exception in initializer:" in text and "ValueError: error in initializer" in text


def put_into(queue: Any) -> None:
    queue.put(os.getpid())


@pytest.mark.allow_leftovers  # (multiprocessing's resource tracker, started for the Queue, lives on)
def test_multiprocessing_objects_in_initargs_with_a_spawn_context():
    """A ``multiprocessing`` Queue is shared at process start, as ProcessPoolExecutor shares it."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with honeydew.ProcessPoolExecutor(2, mp_context=ctx, initializer=put_into, initargs=(queue,)) as ex:
        assert ex.start_method == "spawn"
        assert ex.submit(square, 3).result(timeout=T) == 9
        workers = {queue.get(timeout=T), queue.get(timeout=T)}  # each worker's initializer put its pid
        assert workers == {p.pid for p in H.by_name("hd-worker-0") + H.by_name("hd-worker-1")}
    assert H.pool_processes() == []


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_cancel_futures_right_after_submitting_lets_idle_workers_take_their_jobs(kind):
    """What the workers were free to take when the cancel arrived, they take (as ProcessPoolExecutor
    does with the jobs it already queued for its workers); the rest is cancelled."""
    ex = make(kind)
    [f.result(timeout=T) for f in [ex.submit(nap, 0.1) for _ in range(2)]]  # every worker is up
    futs = [ex.submit(nap, 0.1) for _ in range(50)]
    ex.shutdown(cancel_futures=True)
    done = [f for f in futs if not f.cancelled()]
    assert len(futs) - len(done) > 20
    assert done and all(f.result(timeout=0) == 0.1 for f in done)


def test_an_executor_dropped_without_shutdown_leaves_no_thread():
    def honeydew_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("honeydew-")]

    before = honeydew_threads()
    ex = honeydew.ProcessPoolExecutor(1)
    assert ex.submit(square, 2).result(timeout=T) == 4
    del ex
    gc.collect()
    H.wait_until(lambda: honeydew_threads() == before, T, what="the dropped executor's threads to end")
    H.wait_until(lambda: H.pool_processes() == [], T, what="the dropped executor's processes to stop")


SIGTERM_AT_EXIT = """
import sys
import honeydew
from support import faults_helpers as F

d = sys.argv[1]
ex = honeydew.ProcessPoolExecutor(1)
ex.submit(F.announce_wait_record, d, "running")
queued = [ex.submit(F.record_run, d, "queued") for _ in range(3)]
print("END", flush=True)
"""


def test_sigterm_during_the_exit_wait_is_a_warm_stop_then_the_end(tmp_path):
    """At exit the program waits for its jobs; a SIGTERM then is handled as anywhere else: the
    running job finishes, the queued ones never start, and the program ends by SIGTERM."""
    from support import faults_helpers as F

    w = F.start_watched(tmp_path, SIGTERM_AT_EXIT, args=[str(tmp_path)])
    try:
        w.wait_for("END", timeout=T)
        H.wait_until(lambda: (tmp_path / "flag").exists(), T, what="the job to run")
        w.proc.send_signal(signal.SIGTERM)  # (the script has ended: the exit waits for the job)
        w.wait_for("finishing the running jobs", which="err", timeout=T)
        (tmp_path / "release").touch()
        assert w.finish(T) == -signal.SIGTERM, w.text("err")
        assert F.count_runs(tmp_path, "running") == 1 and F.count_runs(tmp_path, "queued") == 0
    finally:
        w.kill()
