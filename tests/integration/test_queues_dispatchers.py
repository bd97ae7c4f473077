"""Issue #2: ``num_queues`` spreads jobs over several queue processes; the LRU and MRU dispatchers
choose among idle workers."""

from __future__ import annotations

import os
import signal

import pytest
from support import integration_helpers as H
from support import workers as W

import honeydew


@pytest.mark.timeout(60)
def test_two_queues_all_jobs_complete():
    with honeydew.Pool(num_workers=2, num_queues=2) as pool:
        assert pool.num_queues == 2
        H.one("hd-queue-0"), H.one("hd-queue-1")
        assert [pool.call(H.echo, i) for i in range(20)] == list(range(20))
        futs = [pool.submit(H.echo, i) for i in range(200)]
        assert [f.result(timeout=30) for f in futs] == list(range(200))
        assert list(pool.map(W.square, range(100))) == [x * x for x in range(100)]
        ids = {pool.cast(H.echo, i) for i in range(50)}
        assert len(ids) == 50


@pytest.mark.timeout(60)
def test_two_queues_jobs_are_spread_over_both(tmp_path):
    """Freeze queue 1: the jobs routed to queue 0 complete, those routed to queue 1 wait; thaw it
    and they complete too.  So both queues carried jobs."""
    pool = honeydew.Pool(num_workers=2, num_queues=2)
    q1 = H.one("hd-queue-1")
    try:
        assert [pool.call(H.echo, i) for i in range(4)] == list(range(4))   # both queues warmed up
        os.kill(q1.pid, signal.SIGSTOP)
        try:
            futs = [pool.submit(H.echo, i) for i in range(10)]
            done = H.wait_until(lambda: [f for f in futs if f.done()] if len([f for f in futs if f.done()]) >= 5
                                else None, 20, what="the jobs of queue 0")
            assert 0 < len(done) < 10, "all jobs went through one queue"
            assert all(not f.done() for f in futs if f not in done)
        finally:
            os.kill(q1.pid, signal.SIGCONT)
        assert [f.result(timeout=20) for f in futs] == list(range(10))
        H.finish(pool)
    finally:
        try:
            os.kill(q1.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        pool.terminate()


@pytest.mark.timeout(60)
def test_two_queues_every_worker_takes_from_both(tmp_path):
    """One worker, two queues: jobs sent through either queue reach it."""
    with honeydew.Pool(num_workers=1, num_queues=2) as pool:
        pids = {pool.call(H.getpid) for _ in range(10)}
        assert len(pids) == 1
        assert [f.result(timeout=20) for f in [pool.submit(H.echo, i) for i in range(10)]] == list(range(10))


@pytest.mark.timeout(60)
def test_two_queues_with_a_killed_queue(tmp_path):
    with honeydew.Pool(num_workers=2, num_queues=2, init_retry_secs=0.05) as pool:
        assert [pool.call(H.echo, i) for i in range(4)] == list(range(4))
        q1 = H.one("hd-queue-1")
        os.kill(q1.pid, signal.SIGKILL)
        H.wait_until(lambda: [p for p in H.by_name("hd-queue-1") if p.pid != q1.pid], 10, what="queue 1 restarted")
        assert [pool.options(timeout=20).call(H.echo, i) for i in range(6)] == list(range(6))


def _both_ready(pool: honeydew.Pool) -> None:
    """Wait until both workers have finished init and take jobs."""
    H.wait_until(lambda: len(set(pool.map(H.nap_pid, [0.1, 0.1], chunksize=1))) == 2, 10, what="both workers")


def test_lru_spreads_sequential_calls_over_idle_workers():
    """With both workers idle when each call is dispatched, LRU gives each call to the worker that
    has waited longest: the calls alternate.  (Without waiting for the last ack, a call may reach
    the queue before the worker that just answered is idle again: scheduling, not the dispatcher.)"""
    with honeydew.Pool(num_workers=2, dispatcher=honeydew.dispatchers.LRU()) as pool:
        _both_ready(pool)
        pids = []
        for _ in range(10):
            _all_idle(pool)
            pids.append(pool.call(H.getpid))
    assert len(set(pids)) == 2 and all(a != b for a, b in zip(pids, pids[1:], strict=False)), pids


# (that LRU is the default, told apart from MRU: tests/integration/test_defaults.py)


def _all_idle(pool: honeydew.Pool, n: int = 2) -> None:
    """Wait until the queue holds a credit from every worker (each one's last ack has arrived)."""
    H.wait_until(lambda: pool.status()["queues"][0]["idle_credits"] == n, 10, what="every worker to be idle")


def test_mru_sends_sequential_calls_to_one_worker():
    """MRU's contract: with every worker idle, the next job goes to the most recently used one.
    A worker sends its result before its ack (the caller is the one waiting), so a caller that
    fires its next job at once can beat that ack; the test waits for it instead of racing it."""
    with honeydew.Pool(num_workers=2, dispatcher=honeydew.dispatchers.MRU()) as pool:
        _both_ready(pool)
        pool.call(H.getpid)
        pids = []
        for _ in range(20):
            _all_idle(pool)
            pids.append(pool.call(H.getpid))
    assert len(set(pids)) == 1, pids


def test_mru_still_uses_every_worker_under_load():
    with honeydew.Pool(num_workers=2, dispatcher=honeydew.dispatchers.MRU()) as pool:
        pids = set(pool.map(H.nap_pid, [0.2] * 6, chunksize=1))
    assert len(pids) == 2
