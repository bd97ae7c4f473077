"""Issue #2, a pool's life: close / join / terminate / ``with``, a dropped pool, per-job options
that never collide with task keywords, big payloads, map edge cases, demand-driven dispatch."""

from __future__ import annotations

import gc
import time

import pytest
from support import integration_helpers as H

import honeydew


def test_leaving_with_runs_every_queued_job(tmp_path):
    markers = [tmp_path / f"m{i}" for i in range(10)]
    with honeydew.Pool(num_workers=2) as pool:
        for m in markers:
            pool.cast(H.nap_then_touch, 0.05, str(m))
    assert all(m.exists() for m in markers)
    assert H.pool_processes() == []


def test_close_returns_at_once_and_join_waits_for_queued_jobs(tmp_path):
    pool = honeydew.Pool(num_workers=1)
    try:
        flag, release = tmp_path / "running", tmp_path / "release"
        fut = pool.submit(H.announce_then_wait, str(flag), str(release), 30)
        queued = pool.submit(H.echo, "queued")
        H.wait_until(flag.exists, 10)
        pool.close()                                  # returns although a job is running
        with pytest.raises(TimeoutError):
            pool.join(timeout=0.2)
        assert not fut.done()
        release.touch()
        pool.join(timeout=20)
        assert fut.result(timeout=0) > 0
        assert queued.result(timeout=0) == "queued"
        assert H.pool_processes() == []
    finally:
        pool.terminate()


def test_join_before_close_is_an_error():
    with honeydew.Pool(num_workers=1) as pool:
        with pytest.raises((ValueError, RuntimeError)):
            pool.join(timeout=1)


def test_terminate_stops_running_jobs_now(tmp_path):
    pool = honeydew.Pool(num_workers=2)
    try:
        flag = tmp_path / "running"
        fut = pool.submit(H.announce_then_wait, str(flag), str(tmp_path / "never"), 60)
        H.wait_until(flag.exists, 10)
        pids = [p.pid for p in H.pool_processes()]
        pool.terminate()
        assert H.wait_gone(pids, 5) == []
        with pytest.raises(honeydew.PoolClosed):
            fut.result(timeout=5)
        pool.terminate()                              # idempotent
    finally:
        pool.terminate()


@pytest.mark.timeout(30)
def test_a_dropped_pool_leaves_no_processes():
    pool = honeydew.Pool(num_workers=2)
    assert pool.call(H.echo, 1) == 1
    pids = [p.pid for p in H.wait_until(lambda: H.pool_processes() if len(H.pool_processes()) == 6 else None, 10)]
    del pool
    gc.collect()
    assert H.wait_gone(pids, 10) == []


def test_options_never_collide_with_task_keywords():
    with honeydew.Pool(num_workers=1) as pool:
        def f(*, timeout, fn=None, args=None, chunksize=None):
            return timeout, fn, args, chunksize

        assert pool.call(f, timeout=3, fn="x", args=(1,), chunksize=9) == (3, "x", (1,), 9)
        assert pool.submit(f, timeout=4).result(timeout=10) == (4, None, None, None)
        assert pool.options(timeout=10).call(f, timeout=5) == (5, None, None, None)


def test_options_rejects_bad_values():
    with honeydew.Pool(num_workers=1) as pool:
        with pytest.raises((ValueError, TypeError)):
            pool.options(timeout=-1)
        with pytest.raises(TypeError):
            pool.options(no_such_option=1)  # type: ignore[call-arg]
        assert pool.call(H.echo, 1) == 1


@pytest.mark.timeout(60)
def test_big_arguments_and_results():
    big = b"x" * 20_000_000
    with honeydew.Pool(num_workers=2) as pool:
        assert pool.call(H.echo, big) == big
        assert len(pool.call(lambda: b"y" * 30_000_000)) == 30_000_000
        assert list(pool.map(H.echo, [b"z" * 1_000_000] * 8, chunksize=4)) == [b"z" * 1_000_000] * 8


def test_map_timeout_raises_when_iteration_waits_too_long():
    with honeydew.Pool(num_workers=1) as pool:
        it = pool.map(H.nap, [0.0, 2.0], chunksize=1, timeout=0.5)
        assert next(it) == 0.0
        with pytest.raises(TimeoutError):
            next(it)
        pool.terminate()


def test_map_item_that_crashes_the_worker(tmp_path):
    with honeydew.Pool(num_workers=1, init_retry_secs=0.05) as pool:
        it = pool.map(H.crash_on, range(6), [3] * 6, chunksize=1)
        got = []
        with pytest.raises(honeydew.WorkerCrashed):
            for v in it:
                got.append(v)
        assert got == [0, 1, 2]
        assert list(pool.map(H.echo, range(4))) == [0, 1, 2, 3]


def test_map_abandoned_iteration_does_not_break_the_pool():
    with honeydew.Pool(num_workers=2) as pool:
        it = pool.map(H.nap, [0.0] + [0.2] * 10, chunksize=1)
        assert next(it) == 0.0
        del it
        gc.collect()
        assert pool.options(timeout=20).call(H.echo, "still fine") == "still fine"


def test_a_short_job_never_waits_behind_a_busy_worker(tmp_path):
    """Demand-driven dispatch: with one worker busy, short jobs go to the idle one at once."""
    with honeydew.Pool(num_workers=2) as pool:
        flag = tmp_path / "running"
        slow = pool.submit(H.announce_then_wait, str(flag), str(tmp_path / "release"), 30)
        H.wait_until(flag.exists, 10)
        busy_pid = int(flag.read_text())
        pids = [pool.options(timeout=10).call(H.getpid) for _ in range(10)]
        assert busy_pid not in pids
        assert not slow.done()
        (tmp_path / "release").touch()
        assert slow.result(timeout=20) == busy_pid


def test_current_job_worker_is_the_slot_number():
    with honeydew.Pool(num_workers=2) as pool:
        deadline = time.monotonic() + 10
        seen: dict[int, int] = {}
        while len(seen) < 2 and time.monotonic() < deadline:
            for slot, pid in pool.map(H.nap_pid_slot, [0.1, 0.1], chunksize=1):
                seen[slot] = pid
        assert set(seen) == {0, 1}
        for slot, pid in seen.items():
            assert H.one(f"hd-worker-{slot}").pid == pid
