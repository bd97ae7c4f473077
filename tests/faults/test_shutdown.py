"""FAULTS (e) 32-38: shutdown, terminate, cancel, signals (SIGTERM, SIGINT, SIGUSR1), big payloads
in flight."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import threading

import pytest
from support import faults_helpers as F
from support import workers as W

import honeydew

T = 30
MB100 = 100 * 1000 * 1000


# --- 32: leaving `with` ------------------------------------------------------------------------------

def test_leaving_with_finishes_queued_jobs_then_every_process_is_gone(tmp_path):
    with honeydew.Pool(num_workers=2) as pool:
        futs = [pool.submit(F.report, str(tmp_path)) for _ in range(40)]
        for _ in range(20):
            pool.cast(F.record_run, str(tmp_path), "cast")
        procs = F.pool_processes()
    assert all(f.done() and f.exception() is None for f in futs)
    assert F.count_runs(tmp_path) == 40 and F.count_runs(tmp_path, "cast") == 20
    assert F.wait_gone([p.pid for p in procs], 0.0) == []  # gone when join returned, not later
    assert F.pool_processes() == [] and F.zombie_children() == []


# --- 33: terminate() ------------------------------------------------------------------------------------

def test_terminate_stops_in_flight_jobs_wakes_waiters_leaves_nothing(tmp_path):
    pool = honeydew.Pool(num_workers=2)
    try:
        running = [pool.submit(F.announce_then_wait, str(tmp_path / f"f{i}"), str(tmp_path / "never"), 600)
                   for i in range(2)]
        F.wait_until(lambda: len(list(tmp_path.glob("f*"))) == 2, T, what="two running jobs")
        workers = [int((tmp_path / f"f{i}").read_text()) for i in range(2)]
        queued = [pool.submit(F.echo, i) for i in range(10)]
        box: list[BaseException] = []
        t = threading.Thread(target=lambda: _catch(box, lambda: pool.call(F.echo, "waiting")))
        t.start()
        procs = F.pool_processes()
        F.call_with_deadline(pool.terminate, T, "terminate()")
        t.join(T)
        assert not t.is_alive() and len(box) == 1 and isinstance(box[0], honeydew.PoolClosed), box
        for fut in running + queued:
            assert isinstance(fut.exception(timeout=T), honeydew.PoolClosed)
        assert F.wait_gone(workers + [p.pid for p in procs], T) == []
        with pytest.raises(honeydew.PoolClosed):
            pool.cast(F.echo, 1)
    finally:
        pool.terminate()


def _catch(box: list[BaseException], fn) -> None:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001
        box.append(e)


# --- 34: a worker crashes during a graceful shutdown ---------------------------------------------------

@pytest.mark.parametrize("mode", ["abandon", "requeue"])
def test_worker_crash_during_graceful_shutdown_does_not_hang(tmp_path, mode):
    fm = honeydew.Requeue(max_deliveries=2) if mode == "requeue" else honeydew.Abandon()
    pool = honeydew.Pool(num_workers=2, init_retry_secs=0.05, failure_mode=fm)
    try:
        good = [pool.submit(F.report, str(tmp_path)) for _ in range(10)]
        bad = [pool.submit(F.fault_task, how) for how in ("kill", "segv", "exit0")]
        more = [pool.submit(F.report, str(tmp_path)) for _ in range(10)]
        pool.close()
        F.call_with_deadline(lambda: pool.join(timeout=60), 90, "join() after crashes during close")
        assert all(isinstance(f.exception(timeout=0), honeydew.WorkerCrashed) for f in bad)
        assert all(f.result(timeout=0)[1] == 1 for f in good + more)
        assert F.count_runs(tmp_path) == 20
        assert F.pool_processes() == []
    finally:
        pool.terminate()


def test_worker_sigkilled_from_outside_during_graceful_shutdown(tmp_path):
    pool = honeydew.Pool(num_workers=1, init_retry_secs=0.05, failure_mode=honeydew.Requeue(max_deliveries=3))
    try:
        release = tmp_path / "release"
        fut = pool.submit(F.announce_run_wait, str(tmp_path), "j", str(release), 60)
        more = [pool.submit(F.report, str(tmp_path)) for _ in range(5)]
        F.wait_until((tmp_path / "flag-j-1").exists, T, what="the job to run")
        pool.close()
        F.signal_pid(int((tmp_path / "flag-j-1").read_text()), signal.SIGKILL)
        release.touch()
        F.call_with_deadline(lambda: pool.join(timeout=60), 90, "join()")
        assert fut.result(timeout=0)[1] == 2
        assert all(f.done() for f in more)
    finally:
        pool.terminate()


# --- 35: use after close, and submissions racing close -----------------------------------------------

@pytest.mark.parametrize("used", [False, True], ids=["fresh", "served"])
@pytest.mark.parametrize("api", ["cast", "call", "submit", "map"])
def test_use_after_close_is_pool_closed(api, used):
    """Once close() was called, every way to send a job (cast, call, submit, map; a call with a wait
    timeout too) raises PoolClosed at once, and join() then returns: on a worker-less pool closed
    before it ran anything (a plain callable), and on a module-worker pool closed after it served
    (a task by name)."""
    pool = honeydew.Pool(W, [], num_workers=1) if used else honeydew.Pool(num_workers=1)
    task = "echo" if used else F.echo
    try:
        if used:
            assert pool.options(timeout=T).call(task, 1) == 1
        pool.close()
        with pytest.raises(honeydew.PoolClosed):
            if api == "map":
                list(pool.map(task, [1, 2]))
            else:
                getattr(pool, api)(task, 1)
        with pytest.raises(honeydew.PoolClosed):
            pool.options(timeout=1).call(task, 1)
        F.call_with_deadline(lambda: pool.join(timeout=T), T + 10, "join()")
    finally:
        pool.terminate()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("max_pending", [None, 8])
def test_submissions_racing_close_each_run_or_get_pool_closed(tmp_path, max_pending):
    pool = honeydew.Pool(num_workers=2, max_pending=max_pending)
    accepted: list[list[honeydew.JobFuture]] = [[] for _ in range(4)]
    refused = [0] * 4
    started = threading.Barrier(5)

    def submitter(k: int) -> None:
        started.wait()
        for i in range(2000):
            try:
                accepted[k].append(pool.submit(F.echo, (k, i)))
            except honeydew.PoolClosed:
                refused[k] += 1
                return

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        started.wait()
        F.wait_until(lambda: sum(map(len, accepted)) >= 200, T, what="some accepted submissions")
        pool.close()
        for t in threads:
            t.join(T)
            assert not t.is_alive(), "a submitter hung after close()"
        F.call_with_deadline(lambda: pool.join(timeout=60), 90, "join()")
        for k in range(4):
            assert [f.result(timeout=0) for f in accepted[k]] == [(k, i) for i in range(len(accepted[k]))]
            assert refused[k] == 1 or len(accepted[k]) == 2000
    finally:
        pool.terminate()


# --- 36: signals ----------------------------------------------------------------------------------------

SIGTERM_CALLER = """
import os, sys, time
import honeydew
from support import faults_helpers as F

d, prefetch = sys.argv[1], int(sys.argv[2])
pool = honeydew.Pool(num_workers=1, prefetch=prefetch)
running = pool.submit(F.announce_wait_record, d, "running")
queued = [pool.submit(F.record_run, d, f"queued{i}") for i in range(5)]
casts = [pool.cast(F.record_run, d, "cast") for i in range(3)]
F.wait_until(lambda: os.path.exists(d + "/flag"), 30)
print("PIDS", " ".join(str(p.pid) for p in F.pool_processes()), flush=True)
print("READY", flush=True)
running.exception(timeout=120)
time.sleep(60)  # the warm stop is over: the process ends by SIGTERM long before this
print("UNREACHABLE", flush=True)
"""


def _sigterm(w: F.Watched, target: str) -> None:
    if target == "group":
        os.killpg(w.proc.pid, signal.SIGTERM)
    else:
        w.proc.send_signal(signal.SIGTERM)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prefetch", [1, 2])
@pytest.mark.parametrize("target", ["owner", "group"])
def test_sigterm_is_a_warm_shutdown_then_the_process_ends_by_sigterm(tmp_path, target, prefetch):
    """``kill PID`` (or a SIGTERM to the whole group, as systemd and container runtimes send it): the
    running job finishes, queued ones never start, every pool process exits, and then the program
    ends as SIGTERM would have ended it (exit status 143 in a shell), instead of going on."""
    w = F.start_watched(tmp_path, SIGTERM_CALLER, args=[str(tmp_path), str(prefetch)], start_new_session=True)
    pids: list[int] = []
    try:
        pids = [int(x) for x in w.value("PIDS", timeout=60).split()]
        w.wait_for("READY")
        _sigterm(w, target)
        w.wait_for("SIGTERM: finishing the running jobs", which="err")  # the queue took it
        (tmp_path / "release").touch()
        assert w.finish(90) == -signal.SIGTERM, w.text()
        assert "UNREACHABLE" not in w.out
        assert F.count_runs(tmp_path, "running") == 1                # the running job finished
        assert F.count_runs(tmp_path, "queued") == 0 and F.count_runs(tmp_path, "cast") == 0
        assert F.wait_gone(pids, T) == []
    finally:
        w.kill()
        F.kill_all(pids)


OWN_HANDLER_CALLER = """
import os, signal, sys
import honeydew
from support import faults_helpers as F

d = sys.argv[1]
stopping = []
signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))   # the program's own handler
pool = honeydew.Pool(num_workers=1)
running = pool.submit(F.announce_wait_record, d, "running")
F.wait_until(lambda: os.path.exists(d + "/flag"), 30)
print("READY", flush=True)
F.wait_until(lambda: stopping, 60)
pool.close()
pool.join(timeout=60)
print("RESULT", running.result(timeout=0), flush=True)
print("EXITING", flush=True)
"""


@pytest.mark.timeout(120)
def test_a_program_with_its_own_sigterm_handler_keeps_it(tmp_path):
    w = F.start_watched(tmp_path, OWN_HANDLER_CALLER, args=[str(tmp_path)], start_new_session=True)
    try:
        w.wait_for("READY")
        w.proc.send_signal(signal.SIGTERM)
        (tmp_path / "release").touch()
        assert w.finish(90) == 0, w.text()
        assert any(line.startswith("RESULT") for line in w.out) and "EXITING" in w.out
        assert F.count_runs(tmp_path, "running") == 1
    finally:
        w.kill()


SECOND_SIGTERM_CALLER = """
import glob, sys
import honeydew
from support import faults_helpers as F

d = sys.argv[1]
pool = honeydew.Pool(num_workers=2)
futs = [pool.submit(F.ignore_term_and_sleep, d + f"/flag{i}", 600) for i in range(2)]
F.wait_until(lambda: len(glob.glob(d + "/flag*")) == 2, 30)
print("PIDS", " ".join(str(p.pid) for p in F.pool_processes()), flush=True)
print("READY", flush=True)
futs[0].result()
print("UNREACHABLE", flush=True)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", ["owner", "group"])
def test_second_sigterm_stops_now_and_the_caller_dies_by_sigterm(tmp_path, target):
    w = F.start_watched(tmp_path, SECOND_SIGTERM_CALLER, args=[str(tmp_path)], start_new_session=True)
    pids: list[int] = []
    try:
        pids = [int(x) for x in w.value("PIDS", timeout=60).split()]
        w.wait_for("READY")
        _sigterm(w, target)
        w.wait_for("SIGTERM: finishing the running jobs", which="err")
        _sigterm(w, target)
        assert w.finish(60) == -signal.SIGTERM, w.text("err")
        assert "UNREACHABLE" not in w.out
        left = F.wait_gone(pids, T)
        assert left == [], f"pool processes outlived the second SIGTERM: {left}"
    finally:
        w.kill()
        F.kill_all(pids)


def test_pool_processes_ignore_sigint():
    with honeydew.Pool(num_workers=1) as pool:
        assert pool.options(timeout=T).call(F.echo, 1) == 1
        procs = F.wait_until(lambda: (lambda ps: ps if len(ps) == 4 else None)(F.pool_processes()), T)
        for p in procs:
            p.send_signal(signal.SIGINT)
        assert pool.options(timeout=T).call(F.echo, 2) == 2
        assert {p.pid for p in F.pool_processes()} == {p.pid for p in procs}


SIGUSR1_CALLER = """
import ctypes, os, time
import honeydew
from support import faults_helpers as F

def stuck_in_c(seconds):
    # a read in C that a signal does not end (it is restarted): no Python signal handler runs meanwhile
    r, w = os.pipe()
    ctypes.CDLL(None).read(r, ctypes.create_string_buffer(1), 1)
    return "woke"

with honeydew.Pool(num_workers=1) as pool:
    assert pool.call(F.echo, 1) == 1
    F.wait_until(lambda: len(F.pool_processes()) == 4, 30)
    for p in F.pool_processes():
        print("PROC", p.name(), p.pid, flush=True)
    print("READY", flush=True)
    input()
    print("STILL", pool.call(F.echo, 2), flush=True)
    stuck = pool.submit(stuck_in_c, 30)
    F.wait_until(lambda: any(pool.status()["queues"][0]["running"].values()), 30)
    print("STUCK", stuck.job_id, flush=True)
    input()
    print("RESULT", stuck.result(), flush=True)
"""

HEADING = "honeydew: stacks of "


@pytest.mark.timeout(90)
def test_sigusr1_makes_every_pool_process_dump_its_stack(tmp_path):
    """Each dump starts with a line naming the process's role and pid (and a worker's job); a worker
    stuck in C code, where no Python handler can run, dumps all the same (its monitor forwards it)."""
    w = F.Watched(F.start_script(tmp_path, SIGUSR1_CALLER, stdin=subprocess.PIPE))
    try:
        w.wait_for("READY", timeout=60)
        procs = {line.split()[1]: int(line.split()[2]) for line in w.out if line.startswith("PROC")}
        assert sorted(procs) == ["hd-monitor-0", "hd-queue-0", "hd-supervisor", "hd-worker-0"]
        for n, (name, pid) in enumerate(sorted(procs.items()), start=1):
            os.kill(pid, signal.SIGUSR1)
            w.wait_for(HEADING, which="err", count=n, timeout=T)
            dump = w.text("err").split(HEADING)[-1]
            assert dump.startswith(f"{name} (pid {pid}"), (name, dump)
            where = {"hd-supervisor": "supervisor.py", "hd-queue-0": "queue_process.py",
                     "hd-monitor-0": "monitor.py", "hd-worker-0": "worker.py"}[name]
            w.wait_until_text(where, which="err", after=HEADING, timeout=T)
        w.proc.stdin.write("\n")
        w.proc.stdin.flush()
        w.wait_for("STILL 2", timeout=T)  # dumping is harmless: the pool goes on
        job = w.value("STUCK", timeout=T)
        worker = F.one("hd-worker-0").pid
        os.kill(worker, signal.SIGUSR1)
        w.wait_for(HEADING, which="err", count=5, timeout=T)
        dump = w.text("err").split(HEADING)[-1]
        assert dump.startswith(f"hd-worker-0 (pid {worker}, running job {job})"), dump
        w.wait_until_text("stuck_in_c", which="err", after=HEADING, timeout=T)  # while it is still in C
        assert not any(line.startswith("RESULT") for line in w.out)
        F.signal_pid(worker, signal.SIGKILL)
        w.proc.stdin.write("\n")
        w.proc.stdin.flush()
        assert w.finish(60) == 1 and "WorkerCrashed" in w.text("err")
    finally:
        w.kill()


# --- 37: cancel ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["abandon", "requeue"])
def test_cancel_a_running_job_stops_and_replaces_its_worker_without_a_rerun(tmp_path, mode):
    """``cancel()`` on a running job does what ``Future.cancel`` promises: False, the job goes on
    (``running()``, not ``cancelled()``) and completes with its own result on a worker never
    touched.  ``cancel(terminate=True)`` stops a running job: True, the future is cancelled and its
    ``result()`` raises CancelledError, its worker is stopped and replaced, the job queued behind it
    runs once on the new worker, and the cancelled job is not run again (even under Requeue)."""
    fm = honeydew.Requeue(max_deliveries=3) if mode == "requeue" else honeydew.Abandon()
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05, failure_mode=fm, kill_grace_secs=0.2) as pool:
        alone = pool.submit(F.announce_run_wait, str(tmp_path), "a", str(tmp_path / "go"), 60)
        F.wait_until((tmp_path / "flag-a-1").exists, T, what="the first job to run")
        worker = int((tmp_path / "flag-a-1").read_text())
        assert alone.running() is True
        assert alone.cancel() is False
        assert not alone.cancelled() and alone.running()
        (tmp_path / "go").touch()
        assert alone.result(timeout=T) == (worker, 1)
        assert not alone.running() and alone.done()
        assert pool.options(timeout=T).call(F.getpid) == worker

        fut = pool.submit(F.announce_run_wait, str(tmp_path), "j", str(tmp_path / "never"), 600)
        behind = pool.submit(F.report, str(tmp_path))
        F.wait_until((tmp_path / "flag-j-1").exists, T, what="the job to run")
        assert int((tmp_path / "flag-j-1").read_text()) == worker
        assert fut.cancel() is False and fut.running()
        assert fut.cancel(terminate=True) is True
        assert fut.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            fut.result(timeout=0)
        assert F.wait_gone([worker], T) == []
        pid, deliveries = behind.result(timeout=T)
        assert pid != worker and deliveries == 1
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        assert F.count_runs(tmp_path) == 3  # "a", "j" and the one behind: the cancelled job was not run again
        assert not (tmp_path / "flag-j-2").exists()


def test_cancel_a_queued_job_it_never_starts(tmp_path):
    """Cancelling every other one of 20 jobs queued behind a running one: each ``cancel()`` is True,
    the future is cancelled (not running) and its ``result()`` raises CancelledError; the cancelled
    jobs never run, the others (queued between and behind them) complete, and the pool serves on."""
    with honeydew.Pool(num_workers=1) as pool:
        release = tmp_path / "release"
        blocker = pool.submit(F.announce_then_wait, str(tmp_path / "flag"), str(release), 60)
        F.wait_until((tmp_path / "flag").exists, T, what="the blocker to run")
        queued = [pool.submit(F.record_run, str(tmp_path), f"q{i}") for i in range(20)]
        assert [f.cancel() for f in queued[::2]] == [True] * 10
        release.touch()
        worker = blocker.result(timeout=T)
        for i, f in enumerate(queued):
            if i % 2 == 0:
                assert f.cancelled() and not f.running()
                with pytest.raises(concurrent.futures.CancelledError):
                    f.result(timeout=1)
            else:
                assert f.result(timeout=T) == worker
        assert pool.options(timeout=T).call(F.echo, "fence") == "fence"
    assert sorted(i for i in range(20) if F.count_runs(tmp_path, f"q{i}")) == list(range(1, 20, 2))


# --- 38: stop with 100 MB payloads in flight ----------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["close", "terminate"])
def test_stop_with_100mb_payloads_in_flight_does_not_deadlock(how):
    pool = honeydew.Pool(num_workers=1)
    try:
        big = b"a" * MB100
        args_in = [pool.submit(F.echo_len, big) for _ in range(2)]
        results_out = [pool.submit(F.big_bytes, MB100) for _ in range(2)]
        del big
        if how == "close":
            pool.close()
            F.call_with_deadline(lambda: pool.join(timeout=150), 170, "join() with 100 MB payloads in flight")
            assert [f.result(timeout=0) for f in args_in] == [MB100, MB100]
            assert all(len(f.result(timeout=0)) == MB100 for f in results_out)
        else:
            F.call_with_deadline(pool.terminate, 60, "terminate() with 100 MB payloads in flight")
            assert all(f.done() for f in args_in + results_out)
        assert F.pool_processes() == []
    finally:
        pool.terminate()
