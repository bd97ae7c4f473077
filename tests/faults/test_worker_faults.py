"""FAULTS (a) 3-11: the worker misbehaves, dies, overruns, leaves children, leaks memory; callbacks raise.

Each test asserts what the caller sees and that the pool serves the next job.  (a) 1, 2 and the
crash stages are the matrix in ``test_crash_matrix.py``.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import faults_helpers as F
from support import workers as W

import honeydew
from honeydew.errors import RemoteTraceback

T = 30  # generous deadline for every wait that must not hang


def raise_base(kind: str, *_state):
    if kind == "SystemExit":
        raise SystemExit(3)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt("from a task")
    if kind == "GeneratorExit":
        raise GeneratorExit("from a task")
    raise BaseException("a bare BaseException")


class Custom(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def raise_custom(*_state):
    raise Custom(7, "seven")


# --- (a) 3: SystemExit, KeyboardInterrupt, BaseException ---------------------------------------

@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit, BaseException],
                         ids=lambda t: t.__name__)
def test_base_exceptions_are_ordinary_task_failures(exc_type):
    """The rule: anything a task raises, BaseException included, fails that job like any exception:
    the caller gets exactly that type (from a future, and raised by call), with the remote traceback
    on ``__cause__``; the worker (with its state) is not stopped by it: the job queued behind runs,
    and the same worker serves the next calls."""
    with honeydew.Pool(W, ["st"], num_workers=1) as pool:
        pid = pool.options(timeout=T).call("whoami")
        fut = pool.submit(raise_base, exc_type.__name__)
        behind = pool.submit(F.echo, "behind")
        exc = fut.exception(timeout=T)
        assert type(exc) is exc_type
        assert isinstance(exc.__cause__, RemoteTraceback)
        assert behind.result(timeout=T) == "behind"
        with pytest.raises(exc_type) as info:
            pool.options(timeout=T).call(raise_base, exc_type.__name__)
        assert type(info.value) is exc_type
        assert pool.options(timeout=T).call("whoami") == pid
        assert pool.options(timeout=T).call(F.getpid) == pid


def test_base_exception_is_not_retried_by_retry_on_exception(tmp_path):
    """Retry(on=(Exception,)) matches by class: SystemExit is not an Exception, so it is not retried."""
    with honeydew.Pool(num_workers=1, failure_mode=honeydew.Retry(times=3, backoff=0.01)) as pool:
        with pytest.raises(SystemExit):
            pool.options(timeout=T).call(_record_and_exit, str(tmp_path))
        assert F.count_runs(tmp_path) == 1
        assert pool.options(timeout=T).call(F.echo, 1) == 1


def _record_and_exit(directory, *_state):
    F.record_run(directory)
    raise SystemExit(2)


# --- (a) 4: an ordinary exception --------------------------------------------------------------

def test_ordinary_exception_same_type_and_args_with_remote_traceback():
    with honeydew.Pool(num_workers=2) as pool:
        futs = [pool.submit(raise_custom) for _ in range(4)]
        excs = [f.exception(timeout=T) for f in futs]
        for exc in excs:
            assert type(exc) is Custom
            assert exc.args == (7, "seven")
            assert isinstance(exc.__cause__, RemoteTraceback)
            assert "raise_custom" in exc.__cause__.text and "Custom" in exc.__cause__.text
        assert len({id(e) for e in excs}) == 4  # each caller its own exception object
        with pytest.raises(Custom) as a:
            pool.call(raise_custom)
        with pytest.raises(Custom) as b:
            pool.call(raise_custom)
        assert a.value is not b.value
        assert pool.options(timeout=T).call(F.echo, "next") == "next"


# --- (a) 5: workers killed from outside, several at once ---------------------------------------

def _start_blocked(pool, tmp_path, n):
    release = tmp_path / "release"
    futs = [pool.submit(F.announce_run_wait, str(tmp_path), f"j{i}", str(release), 120) for i in range(n)]
    try:
        F.wait_until(lambda: len(list(tmp_path.glob("flag-*-1"))) == n, T, what=f"{n} jobs running")
    except AssertionError as e:
        release.touch()  # or leaving the pool would wait for the blocked jobs
        raise AssertionError(f"{e}; running: {sorted(p.name for p in tmp_path.glob('flag-*'))}; "
                             f"status: {pool.status(timeout=T)}") from None
    pids = {f"j{i}": int((tmp_path / f"flag-j{i}-1").read_text()) for i in range(n)}
    assert len(set(pids.values())) == n
    return futs, pids, release


def test_several_workers_sigkilled_at_once_in_random_order(tmp_path):
    with honeydew.Pool(num_workers=4, init_retry_secs=0.05) as pool:
        futs, pids, release = _start_blocked(pool, tmp_path, 4)
        order = list(pids.values())
        random.shuffle(order)
        for pid in order:
            F.signal_pid(pid, signal.SIGKILL)
        for i, fut in enumerate(futs):
            exc = fut.exception(timeout=T)
            assert isinstance(exc, honeydew.WorkerCrashed), repr(exc)
            assert exc.pid == pids[f"j{i}"]  # each job failed with the worker that held it
            assert exc.signal_name == "SIGKILL"
        release.touch()
        again = [pool.submit(F.getpid) for _ in range(8)]
        new = {f.result(timeout=T) for f in again}
        assert not new & set(order)
        # every slot has a worker again (a replacement may still be starting: wait for it, by name)
        F.wait_until(lambda: len(F.by_name("hd-worker-0") + F.by_name("hd-worker-3")) == 2, T,
                     what="replacements in slots 0 and 3")


def test_several_workers_sigkilled_at_once_under_requeue_nothing_lost(tmp_path):
    with honeydew.Pool(num_workers=4, init_retry_secs=0.05, failure_mode=honeydew.Requeue(max_deliveries=3)) as pool:
        futs, pids, release = _start_blocked(pool, tmp_path, 4)
        order = list(pids.values())
        random.shuffle(order)
        for pid in order:
            F.signal_pid(pid, signal.SIGKILL)
        release.touch()
        results = [f.result(timeout=T) for f in futs]
        assert all(d == 2 and pid not in order for pid, d in results), results
        assert F.count_runs(tmp_path) == 8  # each job ran twice: killed once, then completed


def test_idle_worker_sigkilled_the_next_job_is_not_failed():
    """An idle worker killed from outside (as the OOM killer would) held no job: the job sent next
    must run on its replacement, every time (FAULTS 5, 14)."""
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        failures = []
        for i in range(10):
            pid = pool.options(timeout=T).call(F.getpid)
            F.signal_pid(pid, signal.SIGKILL)
            try:
                assert pool.options(timeout=T).call(F.echo, i) == i
            except honeydew.WorkerCrashed as e:
                failures.append(str(e))
        assert failures == [], f"{len(failures)} of 10 jobs failed with a worker they never reached: {failures[:2]}"


def test_sigterm_to_a_busy_worker_is_a_warm_stop_and_its_job_completes(tmp_path):
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        futs, pids, release = _start_blocked(pool, tmp_path, 1)
        pid = pids["j0"]
        behind = pool.submit(F.echo, "behind")
        assert F.signal_pid(pid, signal.SIGTERM)
        release.touch()
        assert futs[0].result(timeout=T) == (pid, 1)  # finished, once, by the SIGTERMed worker
        assert F.wait_gone([pid], T) == []             # which then left
        assert behind.result(timeout=T) == "behind"
        assert pool.options(timeout=T).call(F.getpid) != pid
        assert F.count_runs(tmp_path) == 1


def test_sigterm_to_an_idle_worker_replaces_it_and_loses_nothing(tmp_path):
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        pid = pool.options(timeout=T).call(F.getpid)
        assert F.signal_pid(pid, signal.SIGTERM)
        assert F.wait_gone([pid], T) == []
        futs = [pool.submit(F.report, str(tmp_path)) for _ in range(5)]
        results = [f.result(timeout=T) for f in futs]
        assert all(p != pid and d == 1 for p, d in results)
        assert F.count_runs(tmp_path) == 5


# --- (a) 6: a task that overruns its time limit ----------------------------------------------------

def sleep_then_mark(directory: str, seconds: float, *_state: Any) -> None:
    try:
        time.sleep(seconds)
    finally:
        Path(directory, "finally-ran").write_text("yes")


@pytest.mark.parametrize("task", ["sleeping", "looping"])
def test_a_python_task_ends_at_its_time_limit_not_after_the_grace(tmp_path, task):
    """A task that returns to Python (sleeping or looping) is ended by the monitor's SIGTERM itself,
    at its time limit: its ``finally`` blocks run and the worker dies by SIGTERM.  The grace period
    (a minute here) is only for code that never returns to Python, which SIGKILL then ends."""
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05, job_timeout=0.5, kill_grace_secs=60) as pool:
        fn = sleep_then_mark if task == "sleeping" else F.loop_then_mark
        with pytest.raises(honeydew.JobTimeout) as info:
            pool.options(timeout=T).call(fn, str(tmp_path), 600)
        assert "ran past its 0.5s limit" in str(info.value)
        assert "(it ended by SIGTERM)" in str(info.value), str(info.value)  # not SIGKILL after the grace
        assert (tmp_path / "finally-ran").read_text() == "yes"
        assert pool.options(timeout=T).call(F.echo, "next") == "next"


def test_a_warm_stop_still_lets_the_running_job_finish(tmp_path):
    """The stop of a timed-out job must not turn every SIGTERM into a job stop: the pool's warm
    shutdown (SIGTERM from the monitor without a stop request) lets a job with a limit finish."""
    with honeydew.Pool(num_workers=1, job_timeout=30) as pool:
        futs, pids, release = _start_blocked(pool, tmp_path, 1)
        assert F.signal_pid(pids["j0"], signal.SIGTERM)
        release.touch()
        assert futs[0].result(timeout=T) == (pids["j0"], 1)


SLOW_INIT_CALLER = """
import os, sys, time
import honeydew, honeydew.monitor
from support import faults_helpers as F

d = sys.argv[1]
honeydew.monitor.SLOW_INIT_SECS = 0.3  # (10 s by default; the forked monitor inherits this)
with honeydew.Pool(F, [d], num_workers=1, start_method="fork") as pool:
    F.wait_until(lambda: os.path.exists(d + "/seen"), 30)
    os.unlink(d + "/hang-init")
    print("RESULT", pool.call(F.echo, 1), flush=True)
"""


def test_a_slow_init_is_reported_once(tmp_path):
    """An init still running after a while (10 s by default) logs one warning naming the slot."""
    (tmp_path / "hang-init").touch()
    w = F.start_watched(tmp_path, SLOW_INIT_CALLER, args=[str(tmp_path)])
    try:
        w.wait_for("init has been running", which="err", timeout=T)
        (tmp_path / "seen").touch()
        assert w.finish(60) == 0, w.text("err")
        assert "RESULT 1" in w.out
        lines = [ln for ln in w.err if "init has been running" in ln]
        assert len(lines) == 1 and "worker 0 (pid " in lines[0] and "no init_timeout" in lines[0], lines
    finally:
        w.kill()


# --- (a) 6: a task that ignores SIGTERM and overruns its time limit ------------------------------

def test_task_ignoring_sigterm_past_job_timeout_is_sigkilled(tmp_path):
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05, job_timeout=0.5, kill_grace_secs=0.3) as pool:
        flag = tmp_path / "flag"
        with pytest.raises(honeydew.JobTimeout) as info:
            pool.options(timeout=T).call(F.ignore_term_and_sleep, str(flag), 600)
        pid = int(flag.read_text())
        assert str(pid) in str(info.value)
        assert "SIGKILL" in str(info.value)  # SIGTERM was ignored: it took the SIGKILL
        assert F.wait_gone([pid], T) == []
        assert pool.options(timeout=T).call(F.echo, "next") == "next"


def test_per_job_timeout_option_and_retry_on_job_timeout(tmp_path):
    mode = honeydew.Retry(times=2, backoff=0.01, on=(honeydew.JobTimeout,))
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05, failure_mode=mode, kill_grace_secs=0.2) as pool:
        with pytest.raises(honeydew.JobTimeout):
            pool.options(timeout=T, job_timeout=0.3).call(F.record_then_hang, str(tmp_path), 600)
        assert F.count_runs(tmp_path) == 3  # the first run and two retries, each stopped
        # without the option, no limit applies to the next job
        assert pool.options(timeout=T).call(F.echo, "next") == "next"


# --- (a) 7: a task's process tree dies with it ---------------------------------------------------

def _tree(tmp_path: Path) -> dict[str, int]:
    pidfile = tmp_path / "tree"
    return F.wait_until(lambda: (lambda t: t if "worker" in t else None)(F.tree_pids(pidfile)), T,
                        what="the task's process tree")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["timeout", "self-kill", "outside-kill", "cancel", "terminate"])
def test_task_process_tree_dies_with_the_task(tmp_path, how):
    pidfile = tmp_path / "tree"
    mode = "die" if how == "self-kill" else "hang"
    pool = honeydew.Pool(num_workers=1, init_retry_secs=0.05, kill_grace_secs=0.3,
                         job_timeout=2.0 if how == "timeout" else None)
    try:
        fut = pool.submit(F.spawn_tree, str(pidfile), mode)
        tree = _tree(tmp_path)
        assert set(tree) == {"worker", "child", "grandchild", "session-child"}
        if how == "outside-kill":
            F.signal_pid(tree["worker"], signal.SIGKILL)
        elif how == "cancel":
            assert fut.cancel(terminate=True)
        elif how == "terminate":
            pool.terminate()
        left = F.wait_gone(tree.values(), T)
        assert left == [], f"{how}: processes of the task's tree survived it: {left}"
        if how == "timeout":
            assert isinstance(fut.exception(timeout=T), honeydew.JobTimeout)
        elif how in ("self-kill", "outside-kill"):
            assert isinstance(fut.exception(timeout=T), honeydew.WorkerCrashed)
        elif how == "terminate":
            assert isinstance(fut.exception(timeout=T), honeydew.PoolClosed)
            return
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        pool.close()
        pool.join(timeout=T)
    finally:
        pool.terminate()
        F.kill_all(F.tree_pids(pidfile).values())  # never leave a survivor to the next test


# --- (a) 8: the at-least-once window -------------------------------------------------------------

WINDOW_CASES = [
    # (where the worker dies, failure mode, runs expected, what the caller gets)
    ("after_result", "requeue", 2, 1),         # result delivered (run 1); the job runs again; 2nd dropped
    ("after_result", "abandon", 1, 1),         # result delivered; the queue's give-up is dropped
    ("before_result", "requeue", 2, 2),        # no result left: run again, run 2's result
    ("before_result", "abandon", 1, "crash"),  # no result left: the caller gets WorkerCrashed
]


@pytest.mark.parametrize("where, mode, runs, outcome", WINDOW_CASES)
def test_worker_dies_around_its_result(tmp_path, where, mode, runs, outcome):
    """The worker sends a job's ``Result`` before it acks it (``Done``).  It is SIGKILLed (a profile
    hook in the task fires on the send of that ``Result``) either before the result leaves or right
    after it left, before the ack.  Either way the caller's future resolves exactly once; under
    Requeue the job runs again (the at-least-once window), and a second outcome is dropped."""
    fm = honeydew.Requeue(max_deliveries=3) if mode == "requeue" else honeydew.Abandon()
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05, failure_mode=fm) as pool:
        calls = []
        fut = pool.submit(F.die_in_reply_window, str(tmp_path), where)
        fut.add_done_callback(lambda f: calls.append(f.exception() or f.result()))
        if outcome == "crash":
            exc = fut.exception(timeout=T)
            assert isinstance(exc, honeydew.WorkerCrashed) and exc.signal_name == "SIGKILL", repr(exc)
        else:
            assert fut.result(timeout=T) == outcome
        # the marker is written, not renamed, into place: wait for its content, not only its name
        dead = int(F.wait_until(lambda: "".join(p.read_text() for p in tmp_path.glob("killed-*")), T,
                                what="the worker to die in the window"))
        F.wait_until(lambda: F.count_runs(tmp_path) >= runs, T, what=f"{runs} run(s)")
        # a fence: once a replacement worker exists, the queue has the dead one's WorkerDied in hand
        # (test_job_sent_to_a_worker_dying_in_its_reply_is_not_failed covers a job sent before that)
        F.wait_until(lambda: [p for p in F.by_name("hd-worker-0") if p.pid != dead], T, what="a new worker")
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        assert F.count_runs(tmp_path) == runs
        assert len(calls) == 1
        assert (fut.exception(timeout=0) or fut.result(timeout=0)) is calls[0]


def test_job_sent_to_a_worker_dying_in_its_reply_is_not_failed(tmp_path):
    """A job queued behind one whose worker dies while sending its ``Result`` never started: under
    Abandon it must still run (FAULTS 9: no other job is affected)."""
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        fut = pool.submit(F.die_in_reply_window, str(tmp_path), "before_result")
        behind = pool.submit(F.echo, "behind")
        assert isinstance(fut.exception(timeout=T), honeydew.WorkerCrashed)
        assert behind.result(timeout=T) == "behind"


# --- (a) 9: the worker dies in the middle of writing a large result -----------------------------

@pytest.mark.parametrize("size, packets, call", [
    (80_000, 1, "sendmsg"),     # below the spool's threshold: one 60 KB packet of an 80 KB frame written
    (20_000_000, 0, "write"),  # a big result goes through the spool: the worker dies writing its file
], ids=["socket-frame", "spool-file"])
def test_worker_dies_midway_through_a_large_result(tmp_path, size, packets, call):
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        other = pool.submit(F.echo, "before")
        fut = pool.submit(F.die_midway_through_result, size, packets, call)
        behind = pool.submit(F.big_bytes, size)                   # a whole large result after it
        assert other.result(timeout=T) == "before"
        exc = fut.exception(timeout=T)
        assert isinstance(exc, honeydew.WorkerCrashed) and exc.signal_name == "SIGKILL", repr(exc)
        assert behind.result(timeout=T) == b"r" * size
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        spool = pool._spool
    assert not os.path.exists(spool), "the pool's spool directory (and the half-written file) outlived it"


# --- (a) 10: recycling by job count and by memory -------------------------------------------------

@pytest.mark.parametrize("prefetch", [1, 2])
def test_max_jobs_per_worker_recycles_without_losing_queued_work(tmp_path, prefetch):
    with honeydew.Pool(num_workers=2, max_jobs_per_worker=3, prefetch=prefetch) as pool:
        futs = [pool.submit(F.report, str(tmp_path)) for _ in range(50)]
        results = [f.result(timeout=T) for f in futs]
    per_pid = Counter(pid for pid, _ in results)
    assert max(per_pid.values()) <= 3
    assert len(per_pid) >= 17  # 50 jobs, 3 per worker at most
    assert all(d == 1 for _, d in results)  # nothing charged to a leaving worker and redelivered
    assert F.count_runs(tmp_path) == 50      # every job ran exactly once


def test_memory_cap_recycles_without_losing_queued_work(tmp_path):
    with honeydew.Pool(num_workers=1) as pool:
        base = pool.options(timeout=T).call(F.uss_of_self)  # the cap compares private memory (USS)
    cap = base + 25 * 1024 * 1024
    with honeydew.Pool(num_workers=1, max_memory_per_worker=cap, prefetch=2) as pool:
        futs = [pool.submit(F.grow, 10) for _ in range(12)] + [pool.submit(F.report, str(tmp_path))
                                                              for _ in range(10)]
        pids = [f.result(timeout=T) for f in futs[:12]]
        reports = [f.result(timeout=T) for f in futs[12:]]
    per_pid = Counter(pids)
    assert len(per_pid) >= 4, per_pid        # a 10 MiB leak per job crosses a 25 MiB cap every ~3 jobs
    assert max(per_pid.values()) <= 3, per_pid
    assert all(d == 1 for _, d in reports)
    assert F.count_runs(tmp_path) == 10


# --- (a) 11: a done-callback raises in the caller -------------------------------------------------

def test_done_callback_raising_does_not_hurt_the_pool(caplog):
    with honeydew.Pool(num_workers=2) as pool:
        fired = []

        def bad(f):
            fired.append(("bad", f.result()))
            raise RuntimeError("callback bug")

        def good(f):
            fired.append(("good", f.result()))

        with caplog.at_level(logging.ERROR):
            futs = []
            for i in range(20):
                fut = pool.submit(F.echo, i)
                fut.add_done_callback(bad)
                fut.add_done_callback(good)
                futs.append(fut)
            assert [f.result(timeout=T) for f in futs] == list(range(20))
            F.wait_until(lambda: len(fired) == 40, T, what="every callback to fire")
        assert sorted(v for k, v in fired if k == "good") == list(range(20))
        assert "callback bug" in caplog.text or "exception calling callback" in caplog.text
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        late = pool.submit(F.echo, "late")
        late.result(timeout=T)
        late.add_done_callback(bad)  # already done: runs (and raises) right here, logged
        assert pool.options(timeout=T).call(F.echo, "after") == "after"
