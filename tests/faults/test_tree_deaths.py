"""FAULTS (d) 27-31: deaths in the process tree, orphans, a pool nobody joined."""

from __future__ import annotations

import signal
import subprocess
import threading

import pytest
from support import faults_helpers as F

import honeydew

T = 30

CALLER = """
import sys, time
from pathlib import Path
import honeydew
from support import faults_helpers as F

method, tree = sys.argv[1], sys.argv[2]
pool = honeydew.Pool(num_workers=2, start_method=method)
assert pool.call(F.echo, 1) == 1
if tree != "-":
    pool.submit(F.spawn_tree, tree, "hang")
    F.wait_until(lambda: "worker" in F.tree_pids(Path(tree)), 30)
else:
    pool.submit(F.nap_forever)
F.wait_until(lambda: len(F.pool_processes()) == 6, 30)
print("PIDS", " ".join(str(p.pid) for p in F.pool_processes()), flush=True)
time.sleep(600)
"""


# --- 27: the caller is SIGKILLed --------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_caller_sigkilled_every_pool_process_exits_within_2s(tmp_path, method):
    w = F.start_watched(tmp_path, CALLER, args=[method, "-"])
    pids: list[int] = []
    try:
        pids = [int(x) for x in w.value("PIDS", timeout=60).split()]
        assert len(pids) == 6
        w.proc.send_signal(signal.SIGKILL)
        w.finish(30)
        left = F.wait_gone(pids, 2.0)
        assert left == [], f"pool processes outlived their SIGKILLed caller by 2 s: {left}"
    finally:
        w.kill()
        F.kill_all(pids)


@pytest.mark.timeout(90)
def test_caller_sigkilled_a_running_task_tree_dies_too(tmp_path):
    tree = tmp_path / "tree"
    w = F.start_watched(tmp_path, CALLER, args=["fork", str(tree)])
    pids: list[int] = []
    try:
        pids = [int(x) for x in w.value("PIDS", timeout=60).split()]
        task_tree = F.tree_pids(tree)
        w.proc.send_signal(signal.SIGKILL)
        w.finish(30)
        assert F.wait_gone(pids, 2.0) == []
        left = F.wait_gone(task_tree.values(), T)
        assert left == [], f"the running task's processes outlived the SIGKILLed caller: {left}"
    finally:
        w.kill()
        F.kill_all(pids)
        F.kill_all(F.tree_pids(tree).values())


# --- 28: the supervisor is SIGKILLed ----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_supervisor_sigkilled_everything_exits_callers_get_job_lost(tmp_path):
    pool = honeydew.Pool(num_workers=2, init_retry_secs=0.05)
    try:
        assert pool.options(timeout=T).call(F.echo, 1) == 1
        procs = F.wait_until(lambda: (lambda ps: ps if len(ps) == 6 else None)(F.pool_processes()), T)
        running = [pool.submit(F.announce_then_wait, str(tmp_path / f"f{i}"), str(tmp_path / "never"), 60)
                   for i in range(2)]
        F.wait_until(lambda: len(list(tmp_path.glob("f*"))) == 2, T, what="both jobs running")
        queued = [pool.submit(F.echo, i) for i in range(5)]
        sup = F.one("hd-supervisor")
        sup.kill()
        assert F.wait_gone([p.pid for p in procs], 2.0) == []
        for fut in running + queued:
            assert isinstance(fut.exception(timeout=T), honeydew.JobLost)
        with pytest.raises(honeydew.PoolClosed):
            pool.call(F.echo, 2)
        with pytest.raises(honeydew.PoolClosed):
            pool.cast(F.echo, 2)
    finally:
        pool.terminate()
    F.wait_until(lambda: F.zombie_children() == [], T, what="no zombies")


@pytest.mark.timeout(60)
def test_supervisor_sigkilled_a_running_task_tree_dies_too(tmp_path):
    tree = tmp_path / "tree"
    pool = honeydew.Pool(num_workers=1)
    try:
        fut = pool.submit(F.spawn_tree, str(tree), "hang")
        task_tree = F.wait_until(lambda: (lambda t: t if "worker" in t else None)(F.tree_pids(tree)), T)
        F.one("hd-supervisor").kill()
        assert isinstance(fut.exception(timeout=T), honeydew.JobLost)
        left = F.wait_gone(task_tree.values(), T)
        assert left == [], f"the running task's processes outlived the SIGKILLed supervisor: {left}"
    finally:
        pool.terminate()
        F.kill_all(F.tree_pids(tree).values())


# --- 29: a monitor is killed --------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["abandon", "requeue"])
def test_monitor_killed_its_worker_exits_job_to_failure_mode_monitor_restarted(tmp_path, mode):
    fm = honeydew.Requeue(max_deliveries=3) if mode == "requeue" else honeydew.Abandon()
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05, failure_mode=fm) as pool:
        release = tmp_path / "release"
        fut = pool.submit(F.announce_run_wait, str(tmp_path), "j", str(release), 60)
        F.wait_until(lambda: (tmp_path / "flag-j-1").exists(), T, what="the job to run")
        worker = int((tmp_path / "flag-j-1").read_text())
        monitor = F.one("hd-monitor-0")
        monitor.kill()
        assert F.wait_gone([worker], T) == []  # its worker went with it
        new_monitor = F.wait_until(lambda: [p for p in F.by_name("hd-monitor-0") if p.pid != monitor.pid], T,
                                   what="a new monitor")[0]
        release.touch()
        if mode == "abandon":
            exc = fut.exception(timeout=T)
            assert isinstance(exc, honeydew.WorkerCrashed) and exc.pid == worker, repr(exc)
        else:
            pid, deliveries = fut.result(timeout=T)
            assert deliveries == 2 and pid != worker
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        assert F.one("hd-monitor-0").pid == new_monitor.pid


@pytest.mark.timeout(60)
def test_monitor_killed_a_running_task_tree_dies_too(tmp_path):
    tree = tmp_path / "tree"
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        try:
            fut = pool.submit(F.spawn_tree, str(tree), "hang")
            task_tree = F.wait_until(lambda: (lambda t: t if "worker" in t else None)(F.tree_pids(tree)), T)
            F.one("hd-monitor-0").kill()
            assert isinstance(fut.exception(timeout=T), honeydew.WorkerCrashed)
            left = F.wait_gone(task_tree.values(), T)
            assert left == [], f"the running task's processes outlived its killed monitor: {left}"
            assert pool.options(timeout=T).call(F.echo, "next") == "next"
        finally:
            F.kill_all(F.tree_pids(tree).values())


@pytest.mark.timeout(60)
def test_monitor_killed_while_idle_then_serves():
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        assert pool.options(timeout=T).call(F.echo, 0) == 0
        monitor, worker = F.one("hd-monitor-0"), F.one("hd-worker-0")
        monitor.kill()
        assert F.wait_gone([monitor.pid, worker.pid], T) == []
        F.wait_until(lambda: [p for p in F.by_name("hd-worker-0") if p.pid != worker.pid], T, what="a new worker")
        assert [pool.options(timeout=T).call(F.echo, i) for i in range(5)] == list(range(5))


# --- 30: the queue process is killed ----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_queue_killed_is_restarted_waiting_callers_get_job_lost_next_call_works(tmp_path):
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        release = tmp_path / "release"
        running = pool.submit(F.announce_then_wait, str(tmp_path / "flag"), str(release), 60)
        F.wait_until((tmp_path / "flag").exists, T, what="the job to run")
        queued = [pool.submit(F.echo, i) for i in range(10)]
        cast_id = pool.cast(F.echo, "cast")
        queue = F.one("hd-queue-0")
        box: list[BaseException] = []

        def waiter() -> None:
            try:
                pool.options(timeout=T).call(F.echo, "waiting")
            except BaseException as e:  # noqa: BLE001
                box.append(e)

        t = threading.Thread(target=waiter)
        t.start()
        queue.kill()
        for fut in [running, *queued]:
            assert isinstance(fut.exception(timeout=T), honeydew.JobLost)
        t.join(T)
        assert not t.is_alive() and len(box) == 1 and isinstance(box[0], honeydew.JobLost), box
        new_queue = F.wait_until(lambda: [p for p in F.by_name("hd-queue-0") if p.pid != queue.pid], T)[0]
        release.touch()
        assert pool.options(timeout=T).call(F.echo, "next") == "next"
        assert [pool.options(timeout=T).call(F.echo, i) for i in range(3)] == [0, 1, 2]
        assert F.one("hd-queue-0").pid == new_queue.pid
        assert cast_id


# --- 31: a pool nobody joined -----------------------------------------------------------------------

EXIT_WITH_PENDING = """
import sys
import honeydew
from support import faults_helpers as F

d = sys.argv[1]
pool = honeydew.Pool(num_workers=2)
assert pool.call(F.echo, 1) == 1
for i in range(6):
    pool.cast(F.record_then_hang, d, 0.05)                 # casts, queued behind each other
futs = [pool.submit(F.record_run, d, "submitted") for i in range(50)]
executor = honeydew.ProcessPoolExecutor(2)
more = [executor.submit(F.record_run, d, "executor") for i in range(20)]
F.wait_until(lambda: len(F.pool_processes()) == 12, 30)
print("PIDS", " ".join(str(p.pid) for p in F.pool_processes()), flush=True)
print("EXITING", flush=True)
"""

GC_WITH_PENDING = """
import gc, sys
import honeydew
from support import faults_helpers as F

pool = honeydew.Pool(num_workers=2)
assert pool.call(F.echo, 1) == 1
for _ in range(4):
    pool.cast(F.nap_forever)
F.wait_until(lambda: len(F.pool_processes()) == 6, 30)
# (both workers have taken their job: what the pool says it dropped does not depend on timing)
F.wait_until(lambda: sum(len(j) for q in pool.status()["queues"] for j in q["running"].values()) == 2, 30)
pids = [p.pid for p in F.pool_processes()]
print("PIDS", " ".join(map(str, pids)), flush=True)
del pool
gc.collect()
left = F.wait_gone(pids, 30)
print("LEFT", left, flush=True)
print("ZOMBIES", F.zombie_children(), flush=True)
"""


@pytest.mark.timeout(90)
def test_jobs_sent_before_the_interpreter_exits_run_to_completion_silently(tmp_path):
    """A script that ends without joining its pools: the jobs it sent (casts included) run to
    completion, with nothing on stderr, as ProcessPoolExecutor's do; then every process is gone."""
    w = F.start_watched(tmp_path, EXIT_WITH_PENDING, args=[str(tmp_path)])
    pids: list[int] = []
    try:
        pids = [int(x) for x in w.value("PIDS", timeout=60).split()]
        assert w.finish(60) == 0, w.text("err")
        assert w.text("err") == ""
        runs = {tag: F.count_runs(tmp_path, tag) for tag in ("run", "submitted", "executor")}
        assert runs == {"run": 6, "submitted": 50, "executor": 20}, runs
        assert F.wait_gone(pids, T) == []
    finally:
        w.kill()
        F.kill_all(pids)


@pytest.mark.timeout(90)
def test_garbage_collected_pool_is_terminated_and_says_what_it_dropped(tmp_path):
    res = F.run_script(tmp_path, GC_WITH_PENDING, timeout=80)
    assert res.returncode == 0, res.stderr
    out = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert out["LEFT"] == "[]", res.stderr
    assert out["ZOMBIES"] == "[]"
    # four casts: two running (one per worker), two queued
    assert ("was garbage-collected without being joined: stopped; 4 job(s) dropped (2 running, 2 queued, "
            "casts included)") in res.stderr, res.stderr


TERMINATE_WITH_PENDING = """
import logging
import honeydew
from support import faults_helpers as F

logging.basicConfig()
pool = honeydew.Pool(num_workers=1)
waiting = [pool.submit(F.nap_forever) for _ in range(2)]
for _ in range(3):
    pool.cast(F.nap_forever)
F.wait_until(lambda: any(pool.status()["queues"][0]["running"].values()), 30)
pool.terminate()
print("FUTURES", [type(f.exception(timeout=0)).__name__ for f in waiting], flush=True)
"""


@pytest.mark.timeout(90)
def test_terminate_says_how_many_jobs_it_dropped_casts_included(tmp_path):
    res = F.run_script(tmp_path, TERMINATE_WITH_PENDING, timeout=80)
    assert res.returncode == 0, res.stderr
    assert "terminate(): 5 job(s) dropped (1 running, 4 queued, casts included); 2 waiting caller(s) get " \
           "PoolClosed" in res.stderr, res.stderr
    assert "FUTURES ['PoolClosed', 'PoolClosed']" in res.stdout


# --- restarts in a caller that logs to a file (B7 in docs/reliability.md) ---------------------------

LOGGING_CALLER = """
import logging, sys
import honeydew
from support import faults_helpers as F

logging.basicConfig(filename=sys.argv[1], level=logging.INFO)   # an ordinary application set-up
pool = honeydew.Pool(num_workers=2, init_retry_secs=0.05)
assert pool.call(F.echo, 0) == 0
for i in range(1, 6):
    for name in ("hd-worker-0", "hd-monitor-1", "hd-queue-0"):
        F.one(name, timeout=30).kill()          # every pool process logs a warning about it
        F.wait_until(lambda: len(F.pool_processes()) == 6, 30, what=f"the whole tree after killing {name}")
    for _ in range(20):
        try:
            assert pool.options(timeout=30).call(F.echo, i) == i
            break
        except (honeydew.JobLost, honeydew.WorkerCrashed):
            pass  # a job sent while the queue or a worker was being replaced
    print("ROUND", i, flush=True)
pool.close()
pool.join(timeout=30)
print("DONE", flush=True)
"""


@pytest.mark.timeout(180)
def test_restarts_in_a_caller_that_logs_to_a_file(tmp_path):
    """A caller with a logging FileHandler (fork start method): the pool survives repeated kills of
    workers, monitors and the queue, every time with its whole tree back, and keeps serving."""
    w = F.start_watched(tmp_path, LOGGING_CALLER, args=[str(tmp_path / "app.log")])
    try:
        try:
            code = w.finish(150)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0 and "DONE" in w.out, f"exit {code}\n{w.text()}\n{w.text('err')[-3000:]}"
        assert "Bad file descriptor" not in w.text("err")
    finally:
        w.kill()


HIDDEN_STREAM_CALLER = """
import logging, os, sys
import honeydew
from support import faults_helpers as F

class Hidden:
    '''A stream that writes to a descriptor it does not reveal (no fileno), as pytest's live log does.'''
    def __init__(self, fd):
        self.fd = fd
    def write(self, text):
        os.write(self.fd, text.encode())
    def flush(self):
        pass

logging.basicConfig(stream=Hidden(os.dup(2)), level=logging.INFO)
with honeydew.Pool(num_workers=1) as pool:
    pid = pool.call(F.getpid)
    F.one("hd-queue-0", timeout=30).kill()      # the supervisor logs a warning about it
    F.wait_until(lambda: len(F.pool_processes()) == 4, 30, what="the queue process back")
    for _ in range(20):
        try:
            assert pool.options(timeout=30).call(F.getpid) == pid, "the worker was replaced"
            break
        except honeydew.JobLost:
            pass  # a job sent while the queue was being replaced
print("DONE", flush=True)
"""


@pytest.mark.timeout(120)
def test_a_log_stream_that_hides_its_descriptor_cannot_reach_a_pool_socket(tmp_path):
    """The forked supervisor lets go of the caller's descriptors; one a logging handler writes to
    without revealing it must not be reused by the supervisor's own sockets (its warning about a
    restarted queue would reach a monitor, which would take it for its supervisor's death and kill
    its worker)."""
    w = F.start_watched(tmp_path, HIDDEN_STREAM_CALLER)
    try:
        try:
            code = w.finish(90)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0 and "DONE" in w.out, f"exit {code}\n{w.text()}\n{w.text('err')[-3000:]}"
    finally:
        w.kill()
