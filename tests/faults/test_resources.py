"""FAULTS (g) 50-54: huge payloads, a million pending jobs, references kept, descriptors, poison
jobs that eat memory."""

from __future__ import annotations

import gc
import os
import sys
import time
import weakref

import pytest
from support import faults_helpers as F

import honeydew

T = 60
MB100 = 100 * 1000 * 1000


# --- 50: 100 MB argument and result -------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_100mb_argument_and_100mb_result():
    with honeydew.Pool(num_workers=1) as pool:
        big = b"z" * MB100
        assert pool.options(timeout=T).call(F.echo_len, big) == MB100
        out = pool.options(timeout=T).call(F.big_bytes, MB100)
        assert len(out) == MB100 and out[:1] == out[-1:] == b"r"
        del out
        # the same through submit: a future resolved by the background reader (regression: B1)
        fut = pool.submit(F.echo, big)
        del big
        assert len(fut.result(timeout=T)) == MB100
        assert pool.options(timeout=T).call(F.echo, "next") == "next"


# --- 51: a million pending jobs ----------------------------------------------------------------------

N_PENDING = 1_000_000


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_million_pending_jobs_bounded_memory_no_extra_process(record_property):
    """A million casts behind a job that holds the pool's one worker: the queue process holds them
    all.  Memory per pending job is bounded (the figure goes to docs/reliability.md); no process is
    started for them; the caller keeps nothing per cast."""
    pool = honeydew.Pool(num_workers=1)
    try:
        queue = F.one("hd-queue-0")
        pool.cast(F.nap_forever)
        F.wait_until(lambda: any(pool.status()["queues"][0]["running"].values()), T, what="the worker held")
        names = sorted(p.name() for p in F.pool_processes())
        assert names == ["hd-monitor-0", "hd-queue-0", "hd-supervisor", "hd-worker-0"]
        q0, c0 = F.uss(queue.pid), F.uss(os.getpid())
        t0 = time.monotonic()
        batch = []
        for i in range(N_PENDING):
            pool.cast(F.echo, i)
            if i % 100_000 == 99_999:
                batch.append(time.monotonic())
        F.wait_until(lambda: F.unsent_bytes(pool._queues[0].sock) == 0, T, what="the queue to read every job")
        elapsed = time.monotonic() - t0
        q1, c1 = F.uss(queue.pid), F.uss(os.getpid())
        per_job = (q1 - q0) / N_PENDING
        rates = [round(100_000 / (b - a)) for a, b in zip([t0, *batch[:-1]], batch, strict=True)]
        record_property("queue_bytes_per_pending_job", round(per_job))
        record_property("caller_bytes_per_cast", round((c1 - c0) / N_PENDING))
        record_property("casts_per_second_per_100k_batch", rates)
        print(f"\n{N_PENDING} pending: queue USS +{(q1 - q0) / 2**20:.0f} MiB = {per_job:.0f} B/job; caller "
              f"+{(c1 - c0) / 2**20:.1f} MiB; {elapsed:.1f} s; casts/s per 100k: {rates}", file=sys.stderr)
        assert per_job < 1024, f"{per_job:.0f} bytes per pending job"
        assert (c1 - c0) / N_PENDING < 64  # the caller keeps nothing per cast
        assert sorted(p.name() for p in F.pool_processes()) == names  # no extra process
    finally:
        F.call_with_deadline(pool.terminate, T, "terminate() with a million pending jobs")


# --- 52: no references kept to finished jobs' arguments or results ------------------------------------

def test_no_reference_kept_to_arguments_or_results():
    with honeydew.Pool(num_workers=1) as pool:
        # the caller: arguments and results are free once we drop them
        arg = F.Marker(1000)
        ref_arg = weakref.ref(arg)
        futs = [pool.submit(F.take_marker, arg) for _ in range(5)]
        pool.cast(F.take_marker, arg)
        assert [f.result(timeout=T) for f in futs] == [1000] * 5
        res = pool.options(timeout=T).call(F.make_marker, 10)
        ref_res = weakref.ref(res)
        del arg, res, futs
        gc.collect()
        assert ref_arg() is None, "the caller keeps a finished job's argument"
        assert ref_res() is None, "the caller keeps a finished job's result"
        # the worker: no Marker left alive from arguments it unpickled or results it returned
        for _ in range(5):
            pool.options(timeout=T).call(F.make_marker, 10)
        assert pool.options(timeout=T).call(F.count_markers) == 0


@pytest.mark.timeout(180)
def test_memory_of_long_lived_processes_does_not_grow_with_big_jobs():
    """200 jobs of 1 MB in and 1 MB out: the queue, the worker and the caller end within a few MB
    of where they started (a kept reference would cost 200 MB or more)."""
    mb = 1024 * 1024
    with honeydew.Pool(num_workers=1) as pool:
        warm = [pool.submit(F.echo, os.urandom(mb)) for _ in range(20)]
        [f.result(timeout=T) for f in warm]
        del warm
        queue, worker = F.one("hd-queue-0").pid, F.one("hd-worker-0").pid
        gc.collect()
        before = {"queue": F.uss(queue), "worker": F.uss(worker), "caller": F.uss(os.getpid())}
        for _ in range(10):
            futs = [pool.submit(F.echo, os.urandom(mb)) for _ in range(20)]
            assert all(len(f.result(timeout=T)) == mb for f in futs)
            del futs
        gc.collect()
        after = {"queue": F.uss(queue), "worker": F.uss(worker), "caller": F.uss(os.getpid())}
        grew = {k: (after[k] - before[k]) / mb for k in before}
        assert all(g < 40 for g in grew.values()), f"MiB grown over 200 x 1 MiB jobs: {grew}"


# --- 53: descriptors --------------------------------------------------------------------------------------

def _fds(pid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
    return out


@pytest.mark.parametrize("num_queues", [1, 2])
def test_a_worker_holds_only_its_own_sockets(num_queues):
    """Besides stdin/stdout/stderr and the files the caller prints and logs to (kept so that pool
    processes print and log where the caller does), a worker holds exactly: one socket per queue, its reply
    socket to the caller, its status socket to its monitor and the pipe its stack dumps (SIGUSR1) go to
    its monitor through; nothing else.  (The caller's other descriptors are there as /dev/null: their
    numbers stay taken, so nothing still writing to one can reach a pool socket; they hold nothing.)"""
    from honeydew._boot import output_fds

    with honeydew.Pool(num_workers=1, num_queues=num_queues) as pool:
        assert pool.options(timeout=T).call(F.echo, 1) == 1
        worker = F.one("hd-worker-0").pid
        logs = output_fds()
        extra = {fd: target for fd, target in _fds(worker).items()
                 if fd > 2 and fd not in logs and target != os.devnull}
        sockets = [t for t in extra.values() if t.startswith("socket:")]
        pipes = [t for t in extra.values() if t.startswith("pipe:")]
        assert len(sockets) == num_queues + 2 and len(pipes) == 1 and len(extra) == num_queues + 3, extra


@pytest.mark.parametrize("how", ["join", "terminate", "with"])
def test_caller_descriptors_return_after_join(how):
    """A pool that was joined (or terminated) gives back every descriptor it opened in the caller."""
    def one_pool() -> None:
        if how == "with":
            with honeydew.Pool(num_workers=2) as pool:
                pool.options(timeout=T).call(F.echo, 1)
            return
        pool = honeydew.Pool(num_workers=2)
        pool.options(timeout=T).call(F.echo, 1)
        if how == "join":
            pool.close()
            pool.join(timeout=T)
        else:
            pool.terminate()

    one_pool()  # anything made once per process (not per pool) is made now
    gc.collect()
    start = F.fd_count()
    for _ in range(5):
        one_pool()
    gc.collect()
    assert F.fd_count() <= start + 1, f"{F.fd_count() - start} descriptors more after 5 pools ({how})"


@pytest.mark.timeout(120)
def test_descriptor_counts_stay_flat_across_restarts(tmp_path):
    with honeydew.Pool(num_workers=2, init_retry_secs=0.05) as pool:
        assert pool.options(timeout=T).call(F.echo, 1) == 1
        procs = F.wait_until(lambda: (lambda ps: ps if len(ps) == 6 else None)(F.pool_processes()), T)

        def counts() -> dict[str, int]:
            out = {"caller": F.fd_count()}
            for p in F.pool_processes():
                out[p.name()] = F.fd_count(p.pid)
            return out

        first = counts()
        for round_ in range(10):
            for how in ("kill", "segv", "exit"):
                with pytest.raises(honeydew.WorkerCrashed):
                    pool.options(timeout=T).call(F.fault_task, how)
            # a monitor and the queue die too now and then
            if round_ % 5 == 4:
                F.one("hd-monitor-0").kill()
                F.one("hd-queue-0").kill()
            F.wait_until(lambda: len(F.worker_pids()) == 2 and len(F.pool_processes()) == 6, T,
                         what="a whole tree again")
            F.wait_until(lambda: _serves(pool), T, what="the pool to serve")
        def flat() -> bool:
            now = counts()
            return now.keys() == first.keys() and now["caller"] <= first["caller"] and all(
                now[k] == first[k] for k in first if k != "caller")

        F.wait_until(flat, T, what=f"descriptor counts back to {first}")
    assert procs


def _serves(pool: honeydew.Pool) -> bool:
    try:
        return pool.options(timeout=T).call(F.echo, "ok") == "ok"
    except honeydew.JobLost:
        return False


# --- 54: a poison job that eats memory -----------------------------------------------------------------

@pytest.mark.timeout(120)
def test_poison_job_killed_like_the_oom_killer_is_bounded_by_the_delivery_limit(tmp_path):
    (tmp_path / "poison").mkdir()
    with honeydew.Pool(num_workers=2, init_retry_secs=0.05, failure_mode=honeydew.Requeue(max_deliveries=3)) as pool:
        ok = [pool.submit(F.report, str(tmp_path)) for _ in range(10)]
        with pytest.raises(honeydew.WorkerCrashed) as info:
            pool.options(timeout=T).call(F.exhaust_memory_then_die, str(tmp_path / "poison"))
        assert info.value.signal_name == "SIGKILL"
        assert F.count_runs(tmp_path / "poison") == 3  # exactly the delivery limit, then given up
        assert all(f.result(timeout=T)[1] >= 1 for f in ok)
        assert pool.options(timeout=T).call(F.echo, "next") == "next"


def test_poison_job_raising_memory_error_is_bounded_by_retry(tmp_path):
    with honeydew.Pool(num_workers=1, failure_mode=honeydew.Retry(times=2, backoff=0.01)) as pool:
        pid = pool.options(timeout=T).call(F.getpid)
        with pytest.raises(MemoryError):
            pool.options(timeout=T).call(F.exhaust_memory_error, str(tmp_path))
        assert F.count_runs(tmp_path) == 3
        assert pool.options(timeout=T).call(F.getpid) == pid
