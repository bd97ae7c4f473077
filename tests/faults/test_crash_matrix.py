"""FAULTS (a) 1, 2, 14, 16, 17 as one matrix: a fault (SIGKILL of itself, os._exit(13), os._exit(0),
an exception, a segfault) at each stage of a job's life in the worker (unpickling the arguments,
running, pickling the result), and in the caller (unpickling the result).

Every case asserts what the caller sees, that a job queued behind the bad one is not affected,
and that the pool serves the next job.

The caller stage: the caller alone decodes results (never the queue or the supervisor), so a
result that misbehaves while being rebuilt can only hurt the caller.  Raising there (a callable
that raises, or a class from a module the caller cannot import) is a ``SerializationError`` for
that job.  A *crash* there (SIGKILL, exit, segfault while the caller unpickles) kills the calling
process itself: no pool can answer that, so those variants run in a throw-away caller script and
assert the only thing left to assert, that the caller dies the way it crashed and leaves no pool
process behind (FAULTS 27).
"""

from __future__ import annotations

import signal

import pytest
from support import faults_helpers as F

import honeydew
from honeydew.errors import RemoteTraceback

STAGES = ("unpickle_args", "run", "pickle_result")


def submit_fault(pool: honeydew.Pool, stage: str, how: str) -> honeydew.JobFuture:
    if stage == "unpickle_args":
        return pool.submit(F.echo, F.CrashOnUnpickle(how))
    if stage == "run":
        return pool.submit(F.fault_task, how)
    assert stage == "pickle_result"
    return pool.submit(F.return_crash_on_pickle, how)


@pytest.mark.parametrize("how", F.FAULTS)
@pytest.mark.parametrize("stage", STAGES)
def test_fault_in_the_worker(stage, how):
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        pid = pool.options(timeout=30).call(F.getpid)
        bad = submit_fault(pool, stage, how)
        behind = pool.submit(F.echo, "queued behind")
        if how == "raise":
            exc = bad.exception(timeout=30)
            if stage == "run":
                assert type(exc) is F.FaultRaised
                assert isinstance(exc.__cause__, RemoteTraceback)
                assert "fault_task" in str(exc.__cause__)
            else:
                assert isinstance(exc, honeydew.SerializationError), repr(exc)
                assert "FaultRaised" in str(exc)
                if stage == "pickle_result":
                    assert "CrashOnPickle" in str(exc)  # names the type that would not pickle
                    assert "could not be pickled" in str(exc)
                else:
                    assert "could not be unpickled in the worker" in str(exc)
            # the worker survived
            assert pool.options(timeout=30).call(F.getpid) == pid
        else:
            exitcode, signame = F.CRASHES[how]
            exc = bad.exception(timeout=30)
            assert isinstance(exc, honeydew.WorkerCrashed), repr(exc)
            assert exc.exitcode == exitcode
            assert exc.signal_name == signame
            assert exc.pid == pid
            assert str(pid) in str(exc)
            if signame:
                assert signame in str(exc)
            assert pool.options(timeout=30).call(F.getpid) != pid  # a new worker replaced it
        assert behind.result(timeout=30) == "queued behind"
        assert pool.options(timeout=30).call(F.echo, "next") == "next"


def test_result_that_raises_while_unpickled_in_the_caller():
    with honeydew.Pool(num_workers=1) as pool:
        pid = pool.options(timeout=30).call(F.getpid)
        with pytest.raises(honeydew.SerializationError) as info:
            pool.options(timeout=30).call(F.return_raise_in_caller)
        assert "could not be unpickled in the caller" in str(info.value)
        assert "(pickled as support.faults_helpers.raise_in_caller)" in str(info.value)  # what it was
        assert type(info.value.__cause__) is F.FaultRaised
        assert pool.options(timeout=30).call(F.getpid) == pid
        assert pool.options(timeout=30).call(F.echo, "next") == "next"


def test_result_of_a_class_the_caller_cannot_import(tmp_path):
    """A bogus-module reference: the result's class lives in a module only the worker has."""
    with honeydew.Pool(num_workers=1) as pool:
        pid = pool.options(timeout=30).call(F.getpid)
        fut = pool.submit(F.return_worker_only_thing, str(tmp_path))
        behind = pool.submit(F.echo, "behind")
        exc = fut.exception(timeout=30)
        assert isinstance(exc, honeydew.SerializationError), repr(exc)
        assert isinstance(exc.__cause__, ModuleNotFoundError)
        assert "hd_worker_only_" in str(exc)
        assert behind.result(timeout=30) == "behind"
        assert pool.options(timeout=30).call(F.getpid) == pid


def test_exception_of_a_class_the_caller_cannot_import(tmp_path):
    """FAULTS 17, the exception half: it cannot be rebuilt, so a RemoteError carries its text."""
    with honeydew.Pool(num_workers=1) as pool:
        pid = pool.options(timeout=30).call(F.getpid)
        with pytest.raises(honeydew.RemoteError) as info:
            pool.options(timeout=30).call(F.raise_worker_only_exception, str(tmp_path))
        err = info.value
        assert err.type_name.startswith("hd_worker_only_") and err.type_name.endswith(".Oops")
        assert "raised from a worker-only module" in str(err)
        assert "raise_worker_only_exception" in err.traceback_text
        assert pool.options(timeout=30).call(F.getpid) == pid


CALLER_DECODES_A_CRASH = """
import sys
import honeydew
from support import faults_helpers as F

pool = honeydew.Pool(num_workers=1, start_method=sys.argv[2])
assert pool.call(F.echo, 1) == 1
print("PIDS", " ".join(str(p.pid) for p in F.pool_processes()), flush=True)
pool.call(F.return_crash_in_caller, sys.argv[1])
print("SURVIVED", flush=True)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["kill", "exit", "exit0", "segv"])
def test_crash_while_the_caller_unpickles_kills_only_the_caller(tmp_path, how):
    """The crash variants of the caller stage: the caller dies as it crashed; no pool process is left."""
    w = F.start_watched(tmp_path, CALLER_DECODES_A_CRASH, args=[how, "fork"])
    pids: list[int] = []
    try:
        pids = [int(x) for x in w.value("PIDS", timeout=60).split()]
        assert len(pids) == 4
        code = w.finish(60)
        expected = {"kill": -signal.SIGKILL, "exit": 13, "exit0": 0, "segv": -signal.SIGSEGV}[how]
        assert code == expected, w.text("err")
        assert "SURVIVED" not in w.text("out")
        left = F.wait_gone(pids, 10.0)
        assert left == [], f"pool processes outlived their crashed caller: {left}"
    finally:
        w.kill()
        F.kill_all(F.wait_gone(pids, 0))


FAULTHANDLER_CALLER = """
import faulthandler, os
import honeydew
from support import faults_helpers as F

faulthandler.enable(file=os.dup(2))   # as pytest and `python -X faulthandler` do: a private descriptor
with honeydew.Pool(num_workers=1) as pool:
    pool.call(F.echo, 1)
    F.wait_until(lambda: len(F.pool_processes()) == 4, 30)
    keep = [p for p in F.pool_processes() if not p.name().startswith("hd-worker")]
    for i in range(8):
        try:
            pool.call(F.fault_task, "segv")
        except honeydew.WorkerCrashed as e:
            print("CRASH", e.signal_name, e.pid is not None, flush=True)
    print("SAME", all(p.is_running() and p.status() != "zombie" for p in keep), keep, flush=True)
"""


def test_a_callers_faulthandler_never_writes_into_a_pool_descriptor(tmp_path):
    """The caller's faulthandler descriptor is closed in the pool's processes and its number reused
    by their sockets and pipes: a worker's segfault traceback must go to stderr (through its
    monitor, under a heading naming the worker and the job), not into a socket, where it would
    crash the monitor or the queue reading it."""
    res = F.run_script(tmp_path, FAULTHANDLER_CALLER, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("CRASH SIGSEGV True") == 8, res.stdout + res.stderr
    assert "SAME True" in res.stdout, "a queue or monitor died with the worker"
    assert res.stderr.count("Fatal Python error: Segmentation fault") == 8
    assert res.stderr.count("honeydew: stacks of hd-worker-0 (pid ") == 8
