"""Issue #2, the failure table: what the caller sees for every kind of failure, and that the
pool keeps serving afterwards."""

from __future__ import annotations

import threading
import time

import pytest
from support import integration_helpers as H
from support import workers as W

import honeydew
from honeydew.errors import RemoteTraceback


@pytest.fixture
def pool():
    with honeydew.Pool(W, ["st"], num_workers=1, init_retry_secs=0.05) as p:
        yield p


@pytest.fixture
def pool2():
    with honeydew.Pool(W, ["st"], num_workers=2, init_retry_secs=0.05) as p:
        yield p


# --- the task raised ----------------------------------------------------------------------------

def test_task_exception_is_reraised_with_remote_traceback(pool):
    with pytest.raises(ValueError, match="kaboom") as info:
        pool.call("boom", "kaboom")
    exc = info.value
    assert type(exc) is ValueError
    cause = exc.__cause__
    assert isinstance(cause, RemoteTraceback)
    text = str(cause)
    assert "Traceback" in text or "traceback" in text
    assert "boom" in text and "kaboom" in text and "workers.py" in text


def test_each_caller_gets_its_own_exception_object(pool2):
    futs = [pool2.submit("boom", "same") for _ in range(2)]
    excs = [f.exception(timeout=10) for f in futs]
    assert all(isinstance(e, ValueError) for e in excs)
    assert excs[0] is not excs[1]
    with pytest.raises(ValueError) as a:
        pool2.call("boom", "same")
    with pytest.raises(ValueError) as b:
        pool2.call("boom", "same")
    assert a.value is not b.value


def test_exception_that_cannot_be_rebuilt_becomes_remote_error(pool):
    with pytest.raises(honeydew.RemoteError) as info:
        pool.call(H.raise_unrebuildable)
    err = info.value
    assert "NeedsTwoArgs" in err.type_name
    assert "NeedsTwoArgs" in str(err)
    assert "raise_unrebuildable" in err.traceback_text
    assert isinstance(err, honeydew.HoneydewError)
    assert pool.call("echo", 1) == 1


# --- the worker died ----------------------------------------------------------------------------

@pytest.mark.parametrize("how, exitcode, signame", [
    ("kill", -9, "SIGKILL"),
    ("segv", -11, "SIGSEGV"),
    ("exit0", 0, None),
    ("exit", 13, None),
])
def test_worker_death_is_worker_crashed(pool, how, exitcode, signame):
    pid = pool.call("whoami")
    with pytest.raises(honeydew.WorkerCrashed) as info:
        pool.options(timeout=20).call("die", how)
    err = info.value
    assert err.exitcode == exitcode
    assert err.signal_name == signame
    assert err.pid == pid
    msg = str(err)
    assert str(pid) in msg
    if signame:
        assert signame in msg
    else:
        assert str(exitcode) in msg
    # a new worker serves the next call
    new_pid = pool.options(timeout=20).call("whoami")
    assert new_pid != pid
    assert pool.call("echo", "after") == "after"


def test_worker_death_in_plain_callable(pool):
    with pytest.raises(honeydew.WorkerCrashed) as info:
        pool.options(timeout=20).call(lambda state: W.crash("kill"))
    assert info.value.signal_name == "SIGKILL"
    assert pool.call("echo", 2) == 2


def test_crash_while_unpickling_arguments_fails_that_job_only(pool2):
    good = [pool2.submit("sleep", 0.05) for _ in range(6)]
    bad = pool2.submit("echo", W.Unpicklable())
    more = [pool2.submit("echo", i) for i in range(6)]
    with pytest.raises(honeydew.WorkerCrashed) as info:
        bad.result(timeout=20)
    assert info.value.exitcode == 7
    assert [f.result(timeout=20) for f in good] == [0.05] * 6
    assert [f.result(timeout=20) for f in more] == list(range(6))
    assert pool2.call("echo", "ok") == "ok"


# --- arguments that won't pickle ----------------------------------------------------------------

def test_unpicklable_argument_to_a_lambda(pool):
    lock = threading.Lock()
    with pytest.raises(honeydew.SerializationError):
        pool.call(lambda state: lock)
    assert pool.call("echo", 3) == 3


# --- the caller's side --------------------------------------------------------------------------

def test_unknown_task_name_raises_in_the_caller(pool):
    with pytest.raises(honeydew.UnknownTask) as info:
        pool.call("no_such_task")
    assert "no_such_task" in str(info.value)
    with pytest.raises(honeydew.UnknownTask):
        pool.cast("no_such_task")
    with pytest.raises(honeydew.UnknownTask):
        pool.submit("no_such_task")
    with pytest.raises(honeydew.UnknownTask):
        pool.map("no_such_task", [1])
    assert pool.call("echo", 1) == 1


def test_call_timeout_raises_timeout_error_and_the_job_goes_on(pool, tmp_path):
    marker = tmp_path / "finished"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.options(timeout=0.2).call(H.nap_then_touch, 1.0, str(marker))
    assert time.monotonic() - t0 < 5
    H.wait_until(marker.exists, 10, what="the timed-out job to finish anyway")
    assert pool.call("echo", "next") == "next"


def test_call_timeout_on_a_slow_sleep(pool):
    with pytest.raises(TimeoutError):
        pool.options(timeout=0.2).call("sleep", 5)
    # tidy: the pool's close+join waits for the 5 s job; terminate instead
    pool.terminate()


def test_use_after_terminate_raises_pool_closed():
    pool = honeydew.Pool(W, [], num_workers=1)
    try:
        pool.terminate()
        with pytest.raises(honeydew.PoolClosed):
            pool.call("echo", 1)
    finally:
        pool.terminate()


def test_terminate_wakes_waiting_callers_with_pool_closed(tmp_path):
    pool = honeydew.Pool(W, [], num_workers=1)
    got: list[BaseException | object] = []
    try:
        flag = tmp_path / "running"

        def waiter() -> None:
            try:
                got.append(pool.call(H.announce_then_wait, str(flag), str(tmp_path / "never"), 30))
            except BaseException as e:
                got.append(e)

        t = threading.Thread(target=waiter)
        t.start()
        H.wait_until(flag.exists, 10, what="the job to start")
        fut = pool.submit("echo", "queued behind")
        pool.terminate()
        t.join(10)
        assert not t.is_alive()
        assert len(got) == 1 and isinstance(got[0], honeydew.PoolClosed), got
        with pytest.raises(honeydew.PoolClosed):
            fut.result(timeout=5)
    finally:
        pool.terminate()
