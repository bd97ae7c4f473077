"""Pools that share a durable backend: a job's outcome reaches its caller in whichever pool sent
it, a cast survives its sender, and a queue process killed mid-run loses nothing the backend holds.

The backend is the tests' reference store (``support.shared_store.SharedStore``: the queue contract
on one SQLite file), so these tests need nothing more than a backend shared by two pools."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from support import durable_tasks as D
from support import integration_helpers as H
from support.shared_store import SharedStore

import honeydew

T = 30.0


@pytest.fixture
def store(tmp_path: Path) -> SharedStore:
    return SharedStore(tmp_path / "jobs.db")


@pytest.fixture
def runner(store: SharedStore):
    """A pool with workers on the store: it runs what the enqueue-only pools send."""
    with honeydew.Pool(num_workers=2, queue=store, failure_mode=honeydew.Abandon()) as pool:
        yield pool


def test_an_enqueue_only_pool_gets_every_kind_of_outcome_from_the_pool_that_ran_it(store, runner):
    with honeydew.Pool(num_workers=0, queue=store) as sender:
        assert sender.options(timeout=T).call(H.echo, "ran elsewhere") == "ran elsewhere"
        pid = sender.options(timeout=T).call(H.getpid)
        assert pid in H.worker_pids()                          # one of the runner's workers
        fut = sender.submit(D.square, 7)
        assert fut.result(timeout=T) == 49
        with pytest.raises(D.ItsOwnError, match="its own class"):
            sender.options(timeout=T).call(D.raise_its_own, "its own class")
        with pytest.raises(honeydew.WorkerCrashed):
            sender.options(timeout=T).call(H.crash_self)
        assert list(sender.map(D.square, range(10), timeout=T)) == [x * x for x in range(10)]
        # a chunk given up after some items raised: the items before it, then its own error
        results = sender.map(D.square_unless_three, range(6), chunksize=6, timeout=T)
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(D.ItsOwnError, match="three"):
            next(results)
    assert runner.options(timeout=T).call(H.echo, "still serving") == "still serving"


def test_leaving_with_on_an_enqueue_only_pool_waits_for_its_futures_not_its_casts(store, tmp_path):
    """Casts are stored when cast() returns, so closing does not wait for them to run; a submit's
    future does get its outcome, from a pool that starts only after the sender has closed."""
    marker = tmp_path / "cast-ran"
    with honeydew.Pool(num_workers=0, queue=store) as sender:
        sender.cast(H.touch, str(marker))
        fut = sender.submit(D.square, 5)
        with honeydew.Pool(num_workers=1, queue=store):
            assert fut.result(timeout=T) == 25
            H.wait_until(marker.exists, T, what="the cast to run")
    assert fut.result() == 25


def test_a_cast_survives_its_sender_killed_right_after_it_returned(store, tmp_path):
    """cast() on a durable backend returns once the backend holds the job: SIGKILL the whole sending
    program right then, and a pool started later still runs it."""
    marker = tmp_path / "ran"
    proc = H.run_script(tmp_path, f"""
        import os, signal, sys
        import honeydew
        from support import integration_helpers as H
        from support.shared_store import SharedStore
        pool = honeydew.Pool(num_workers=0, queue=SharedStore({str(store.path)!r}))
        pool.cast(H.touch, {str(marker)!r})
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not marker.exists()
    with honeydew.Pool(num_workers=1, queue=store):
        H.wait_until(marker.exists, T, what="the stored cast to run")


def test_killing_the_queue_process_of_a_durable_pool_loses_no_job(store, tmp_path):
    """The backend keeps what it stored: the restarted queue process takes the jobs back, the
    waiting callers get their results (no JobLost), and nothing is lost of what was sent after."""
    with honeydew.Pool(num_workers=2, queue=store) as pool:
        futs = [pool.submit(H.nap, 0.05) for _ in range(20)]
        queue_pid = pool.status()["queues"][0]["pid"]
        os.kill(queue_pid, signal.SIGKILL)
        more = [pool.submit(D.square, i) for i in range(20)]
        assert [f.result(timeout=T) for f in futs] == [0.05] * 20
        assert [f.result(timeout=T) for f in more] == [i * i for i in range(20)]
        H.wait_until(lambda: pool.status()["queues"][0]["pid"] != queue_pid, T, what="a new queue process")
        assert pool.options(timeout=T).call(H.echo, "after") == "after"


def test_a_backend_that_refuses_a_job_fails_its_cast(tmp_path):
    """A durable backend that cannot store a job (its disk is full) makes cast(), submit() and
    call() raise, saying why; nothing waits for ever, and the pool goes on once it can store."""
    full = tmp_path / "disk-full"
    with honeydew.Pool(num_workers=1, queue=SharedStore(tmp_path / "jobs.db", refuse_while=full),
                       max_pending=5) as pool:
        assert pool.options(timeout=T).call(H.echo, 1) == 1
        full.touch()
        for _ in range(10):  # more than max_pending: a refused job gives its room back
            with pytest.raises(honeydew.HoneydewError, match="was not stored.*No space left on device"):
                pool.cast(H.echo, 2)
        with pytest.raises(honeydew.HoneydewError, match="was not stored"):
            pool.submit(H.echo, 3)
        with pytest.raises(honeydew.HoneydewError, match="was not stored"):
            pool.options(timeout=T).call(H.echo, 4)
        full.unlink()
        assert pool.options(timeout=T).call(H.echo, 5) == 5


@pytest.mark.timeout(90)
def test_a_durable_cast_never_waits_for_ever_on_a_backend_that_cannot_open(tmp_path):
    """The queue process is restarted onto a backend it cannot open (it fails, and is restarted
    again): a cast waiting for its Stored gives up with TimeoutError after its timeout (never a hang),
    and once the backend opens again the pool goes on."""
    broken = tmp_path / "broken"
    with honeydew.Pool(num_workers=1, queue=SharedStore(tmp_path / "jobs.db", unopenable_while=broken)) as pool:
        assert pool.options(timeout=T).call(H.echo, 1) == 1
        broken.touch()
        os.kill(pool.status()["queues"][0]["pid"], signal.SIGKILL)
        with pytest.raises(TimeoutError, match="not confirmed stored within 2"):
            pool.options(timeout=2).cast(H.echo, 2)
        broken.unlink()
        assert pool.options(timeout=T).call(H.echo, 3) == 3


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("the reference store's liveness check is Linux's")
