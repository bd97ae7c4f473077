"""FAULTS (c) 21-26: init failures, hangs, permanent failure, fork failures, bad configuration,
fork-unsafe state in the caller."""

from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import faults_helpers as F
from support import integration_helpers as H

import honeydew

T = 30


# --- 21: init raises -----------------------------------------------------------------------------

INIT_RAISES = """
import sys
import honeydew
from support import integration_helpers as H

log_dir = sys.argv[1]
pool = honeydew.Pool(H, [log_dir, 0, "one_healthy"], num_workers=2, init_retry_secs=0.05,
                     init_retry_max_secs=0.2)
print("HEALTHY", pool.options(timeout=30).call("state_of")["pid"], flush=True)
pids = {pool.options(timeout=30).call(H.getpid) for _ in range(20)}
print("SERVED_BY", " ".join(map(str, sorted(pids))), flush=True)
H.wait_until(lambda: len(H.init_attempts(log_dir)) >= 6, 60, what="six init attempts")
print("SERVED_AFTER_RETRIES", pool.options(timeout=30).call("state_of")["pid"], flush=True)
pool.terminate()
print("LEFT", len(H.pool_processes()), flush=True)
print("ATTEMPTS", " ".join(str(pid) for pid, _ in H.init_attempts(log_dir)), flush=True)
"""


@pytest.mark.timeout(90)
def test_init_raising_backs_off_takes_no_job_logs_each_attempt(tmp_path):
    """One worker's init keeps raising while the other's succeeds: the failing slot backs off and
    retries (a fresh process every time), takes no job meanwhile (every job, before and after its
    retries, runs on the healthy worker), and its monitor logs one line per failed attempt, with the
    error; terminate() leaves no pool process."""
    (tmp_path / "log").mkdir()
    res = F.run_script(tmp_path, INIT_RAISES, timeout=80, args=[str(tmp_path / "log")])
    assert res.returncode == 0, res.stderr
    out = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    healthy = int(out["HEALTHY"])
    served = [int(x) for x in out["SERVED_BY"].split()]
    attempts = [int(x) for x in out["ATTEMPTS"].split()]
    assert served == [healthy], f"jobs ran on more than the healthy worker: {served}"
    assert int(out["SERVED_AFTER_RETRIES"]) == healthy
    assert int(out["LEFT"]) == 0
    failed = [pid for pid in attempts if pid not in served]
    assert len(failed) == len(attempts) - 1 >= 5
    assert len(set(failed)) == len(failed)  # every retry is a fresh process
    lines = [ln for ln in res.stderr.splitlines() if "init raised" in ln]
    # one line per failed attempt (the last one may still be on its way when the pool stops)
    assert len(failed) - 1 <= len(lines) <= len(failed), res.stderr
    assert all("not the healthy worker" in ln and "retrying in" in ln for ln in lines)


# --- 22: init hangs -------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_init_hanging_past_init_timeout_is_stopped_and_retried(tmp_path):
    hang = tmp_path / "hang-init"
    hang.touch()
    pool = honeydew.Pool(F, [str(tmp_path)], num_workers=1, init_timeout=0.3, init_retry_secs=0.05,
                         init_retry_max_secs=0.2, kill_grace_secs=0.2)
    try:
        fut = pool.submit(F.getpid)
        F.wait_until(lambda: F.init_attempts(tmp_path) >= 3, T, what="three init attempts")
        # three hung inits in a row and no worker ever served: the job queued meanwhile is not left waiting
        exc = fut.exception(timeout=T)
        assert isinstance(exc, honeydew.WorkerInitError) and isinstance(exc.__cause__, TimeoutError), repr(exc)
        assert "init_timeout=0.3s" in str(exc.__cause__)
        hung = {int(p.name.split("-")[1]) for p in tmp_path.glob("init-*")}
        hang.unlink()
        # the pool went on retrying init: jobs fail at once until a worker is up, then run
        pid = F.wait_until(lambda: _call_or_none(pool, F.getpid), T, what="a job to run once init succeeds")
        others = hung - {pid}
        assert len(others) >= 2 and F.wait_gone(others, T) == []  # each hung attempt was stopped
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        pool.close()
        with pytest.raises(honeydew.WorkerInitError, match="dropped"):
            pool.join(timeout=T)  # it says, once more, that jobs were dropped
    finally:
        pool.terminate()


# --- 23: every worker's init fails for good -------------------------------------------------------

@pytest.mark.timeout(60)
def test_every_init_failing_for_good_fails_the_queued_jobs_and_terminate_leaves_nothing(tmp_path):
    """Every worker's init fails and keeps failing: a call with a wait timeout says why its job is
    still queued; once every slot has failed 3 times with no worker ever serving, every job queued
    so far fails with WorkerInitError (the last init error on __cause__), later ones too while no
    worker serves; join() raises it instead of waiting; the pool goes on retrying init."""
    (tmp_path / "fail-init").touch()
    # a 2 s back-off: the third failure of each slot is seconds away when the first checks run
    pool = honeydew.Pool(F, [str(tmp_path)], num_workers=2, init_retry_secs=2, init_retry_max_secs=2)
    try:
        status = F.wait_until(lambda: (lambda s: s if all(w["state"] == "backoff" for w in s["workers"]) else None)(
            pool.status(timeout=T)), T, what="both workers in back-off")
        assert len(status["workers"]) == 2
        assert all("init fails on purpose" in str(w.get("last_error", w)) for w in status["workers"]), status
        with pytest.raises(TimeoutError, match="still queued, not started: no worker is serving") as info:
            pool.options(timeout=0.2).call(F.echo, 1)
        assert "init fails on purpose" in str(info.value) and "backoff" in str(info.value)
        fut = pool.submit(F.echo, 2)
        assert pool.cast(F.echo, 3)
        exc = fut.exception(timeout=T)
        assert isinstance(exc, honeydew.WorkerInitError), repr(exc)
        assert isinstance(exc.__cause__, RuntimeError) and "init fails on purpose" in str(exc.__cause__)
        assert "init fails on purpose" in str(exc.__cause__.__cause__)  # the remote traceback
        assert pool.status(timeout=T)["queues"][0]["no_worker"] is True
        with pytest.raises(honeydew.WorkerInitError):
            pool.options(timeout=T).call(F.echo, 4)  # while no worker serves, a new job fails at once
        attempts = F.init_attempts(tmp_path)
        F.wait_until(lambda: F.init_attempts(tmp_path) > attempts, T, what="init retried again")
        procs = F.pool_processes()
        assert sorted(p.name() for p in procs if not p.name().startswith("hd-worker-")) == [
            "hd-monitor-0", "hd-monitor-1", "hd-queue-0", "hd-supervisor"]
        pool.close()
        with pytest.raises(honeydew.WorkerInitError, match=r"4 job\(s\) were dropped because no worker could start"):
            pool.join(timeout=T)
    finally:
        pool.terminate()
    assert F.wait_gone([p.pid for p in procs], T) == []
    assert F.pool_processes() == []
    F.wait_until(lambda: F.zombie_children() == [], T, what="no zombies")


@pytest.mark.timeout(60)
def test_jobs_run_once_a_worker_comes_up_after_init_failed_for_good(tmp_path):
    flag = tmp_path / "fail-init"
    flag.touch()
    with honeydew.Pool(F, [str(tmp_path)], num_workers=1, init_retry_secs=0.05, init_retry_max_secs=0.2) as pool:
        with pytest.raises(honeydew.WorkerInitError):
            pool.options(timeout=T).call(F.echo, 1)
        flag.unlink()
        up = F.wait_until(lambda: _call_or_none(pool, F.echo, "up"), T, what="a job to run once init succeeds")
        assert up == "up"
        assert pool.status(timeout=T)["queues"][0]["no_worker"] is False
        pool.close()
        with pytest.raises(honeydew.WorkerInitError, match="dropped"):
            pool.join(timeout=T)


def _call_or_none(pool: honeydew.Pool, fn: Any, *args: Any) -> Any:
    try:
        return pool.options(timeout=T).call(fn, *args)
    except honeydew.WorkerInitError:
        return None


@pytest.mark.timeout(90)
def test_join_does_not_wait_for_a_worker_in_init_backoff_once_the_queue_is_done(tmp_path):
    """One worker's init keeps failing, with a long back-off; the healthy one runs every job.  Once
    the queue has drained, nothing is left for the failing slot to do: join returns at once instead
    of retrying that init for ever (its monitor is told to stop, and no new worker is started)."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    pool = honeydew.Pool(H, [str(log_dir), 0, "one_healthy"], num_workers=2, init_retry_secs=60,
                         init_retry_max_secs=60)
    try:
        assert {pool.call(H.getpid) for _ in range(5)}
        F.wait_until(lambda: len(H.init_attempts(log_dir)) >= 2, T, what="the failing init attempt")
        status = F.wait_until(lambda: (lambda s: s if any(w["state"] == "backoff" for w in s["workers"]) else None)(
            pool.status(timeout=T)), T, what="one worker in back-off")
        assert any("not the healthy worker" in w["last_error"] for w in status["workers"]), status
        pool.close()
        pool.join(timeout=20)  # the back-off has 60 s to go
    finally:
        pool.terminate()
    assert len(H.init_attempts(log_dir)) == 2  # no retry after the queue finished
    assert F.pool_processes() == []


# --- 24: forking a replacement fails ---------------------------------------------------------------

PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


def _pids_cgroup() -> Path | None:
    """A fresh pids cgroup (v1) we may write, or None (needs root and a pids controller)."""
    if not (PIDS_CGROUP / "cgroup.procs").exists():
        return None
    path = PIDS_CGROUP / f"honeydew-faults-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        path.mkdir()
        (path / "pids.max").write_text("max")
    except OSError:
        return None
    return path


@pytest.mark.timeout(90)
def test_fork_failing_for_a_replacement_worker_backs_off_and_recovers(tmp_path):
    """The monitor cannot fork (its pids cgroup is full): it logs, backs off, and the job queued
    meanwhile waits; once forking works again the job runs.  Nothing is stranded silently."""
    cg = _pids_cgroup()
    if cg is None:
        pytest.skip("needs a writable pids cgroup (v1) to make fork() fail: run as root on Linux")
    script = FORK_FAILS.replace("CGROUP", str(cg))
    w = F.start_watched(tmp_path, script, args=[str(tmp_path)])
    try:
        w.wait_for("MOVED", timeout=60)
        w.wait_for("cannot fork a worker", which="err", timeout=60, count=2)
        w.wait_for("QUEUED_NOT_DONE", timeout=60)
        (cg / "pids.max").write_text("max")
        w.wait_for("RESULT ok", timeout=60)
        assert w.finish(60) == 0, w.text("err")
        assert re.search(r"cannot fork a worker \(.*(Resource temporarily unavailable|EAGAIN).*\); retrying in",
                         w.text("err"))
    finally:
        w.kill()
        F.wait_until(lambda: not (cg / "cgroup.procs").read_text().strip(), T, what="the cgroup to empty")
        cg.rmdir()


FORK_FAILS = """
import os, signal, sys
import honeydew
from support import faults_helpers as F

pool = honeydew.Pool(num_workers=1, init_retry_secs=0.1, init_retry_max_secs=0.2)
worker = pool.call(F.getpid)
monitor = F.one("hd-monitor-0").pid
with open("CGROUP/cgroup.procs", "w") as f:
    f.write(str(monitor))
with open("CGROUP/pids.max", "w") as f:
    f.write("1")
print("MOVED", flush=True)
crash = pool.submit(F.fault_task, "kill")   # the worker dies running it; the monitor must fork anew
fut = pool.submit(F.echo, "ok")              # queued behind it
assert isinstance(crash.exception(timeout=60), honeydew.WorkerCrashed)
try:
    fut.result(timeout=1.0)
except TimeoutError:
    print("QUEUED_NOT_DONE", flush=True)
print("RESULT", fut.result(timeout=60), flush=True)
pool.close()
pool.join(timeout=30)
"""


# --- 25: invalid configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc", [
    ({"num_workers": -1}, ValueError),
    ({"num_workers": 1.5}, ValueError),
    ({"num_workers": "2"}, ValueError),
    ({"num_queues": 0}, ValueError),
    ({"prefetch": 0}, ValueError),
    ({"max_pending": 0}, ValueError),
    ({"init_retry_secs": -1}, ValueError),
    ({"job_timeout": 0}, ValueError),
    ({"init_timeout": -2}, ValueError),
    ({"kill_grace_secs": "1"}, ValueError),
    ({"max_jobs_per_worker": 0}, ValueError),
    ({"max_memory_per_worker": -5}, ValueError),
    ({"threads_per_worker": "many"}, ValueError),
    ({"threads_per_worker": 0}, ValueError),
    ({"start_method": "forkserver"}, ValueError),
    ({"no_such_option": 1}, TypeError),
    ({"chunks": 3}, TypeError),
    ({"failure_mode": honeydew.Requeue}, TypeError),
    ({"failure_mode": "requeue"}, TypeError),
    ({"queue": object()}, TypeError),
    ({"dispatcher": honeydew.dispatchers.LRU}, TypeError),
    ({"dispatcher": "LRU"}, TypeError),
])
def test_invalid_configuration_raises_before_any_process_starts(kwargs, exc):
    """A bad Pool option raises (ValueError for a bad value, TypeError for a wrong kind or an unknown
    option) from the constructor, before any process is started; the message names the option and
    shows a correct call (``e.g. honeydew.Pool(...)``, or ``e.g. <option>=honeydew....``)."""
    before = {p.pid for p in F.descendants()}
    option = next(iter(kwargs))
    with pytest.raises(exc) as info:
        honeydew.Pool(**{"num_workers": 1, **kwargs})
    message = str(info.value)
    assert option in message  # the message names the culprit
    assert "e.g. honeydew.Pool(" in message or f"e.g. {option}=honeydew." in message, \
        f"no correct call shown: {message}"
    assert {p.pid for p in F.descendants()} == before
    assert F.pool_processes() == []


@pytest.mark.parametrize("make", [
    lambda: honeydew.Requeue(max_deliveries=0),
    lambda: honeydew.Requeue(then="abandon"),
    lambda: honeydew.Retry(times=-1),
    lambda: honeydew.Retry(backoff=-1.0),
    lambda: honeydew.Retry(on=(int,)),
])
def test_invalid_failure_mode_arguments_raise_at_construction(make):
    with pytest.raises((ValueError, TypeError)):
        make()


# --- 26: fork-unsafe state in the caller ---------------------------------------------------------------

@pytest.mark.timeout(60)
def test_caller_threads_holding_locks_do_not_reach_the_pool():
    """A caller thread holds a lock when the pool starts: the pool starts its supervisor as a fresh
    interpreter (spawn), so no pool process inherits the held lock; monitors and the queue stay
    single-threaded."""
    held, stop = threading.Event(), threading.Event()

    def holder():
        with F.SHARED_LOCK:
            held.set()
            stop.wait(60)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    held.wait(10)
    try:
        with honeydew.Pool(num_workers=2) as pool:
            assert pool.start_method == "spawn"
            assert pool.options(timeout=T).call(F.take_shared_lock) is True
            procs = F.wait_until(lambda: (lambda ps: ps if len(ps) == 6 else None)(F.pool_processes()), T)
            for p in procs:
                if not p.name().startswith("hd-worker"):
                    assert F.threads_of(p.pid) == 1, f"{p.name()} has {F.threads_of(p.pid)} threads"
    finally:
        stop.set()
        t.join(10)


@pytest.mark.timeout(60)
def test_forcing_fork_with_a_held_lock_shows_the_hazard_auto_avoids():
    """The contrast: start_method='fork' copies the held lock into every pool process."""
    held, stop = threading.Event(), threading.Event()

    def holder():
        with F.SHARED_LOCK:
            held.set()
            stop.wait(60)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    held.wait(10)
    try:
        with honeydew.Pool(num_workers=1, start_method="fork") as pool:
            assert pool.options(timeout=T).call(F.take_shared_lock) is False
    finally:
        stop.set()
        t.join(10)
