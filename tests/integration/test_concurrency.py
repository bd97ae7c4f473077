"""Issue #2, a Pool used from many threads: concurrent calls, callbacks that call the pool again,
what ``running()`` and ``cancel()`` answer around a job's start and end, ``max_pending``
back-pressure."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any

import pytest
from support import integration_helpers as H
from support import workers as W

import honeydew


def _block(pool: honeydew.Pool, tmp_path, name: str = "blocker") -> tuple[honeydew.JobFuture, int]:
    """Occupy a worker until ``_unblock``; returns (future, worker pid)."""
    flag = tmp_path / f"{name}.running"
    fut = pool.submit(H.announce_then_wait, str(flag), str(tmp_path / f"{name}.release"), 30)
    H.wait_until(lambda: flag.exists() and flag.read_text(), 10, what=f"{name} to start")
    return fut, int(flag.read_text())


def _unblock(tmp_path, name: str = "blocker") -> None:
    (tmp_path / f"{name}.release").touch()


def _in_thread(fn, *args) -> tuple[threading.Thread, list]:  # type: ignore[no-untyped-def]
    box: list = []

    def run() -> None:
        try:
            box.append(("ok", fn(*args)))
        except BaseException as e:
            box.append(("err", e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


# --- many threads -------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_pool_used_from_eight_threads_at_once():
    with honeydew.Pool(W, ["t"], num_workers=2) as pool:
        barrier = threading.Barrier(8)

        def hammer(k: int) -> list:
            barrier.wait(10)
            out = []
            for i in range(40):
                v = (k, i)
                if i % 4 == 0:
                    out.append(pool.call("echo", v) == v)
                elif i % 4 == 1:
                    out.append(pool.submit("tag", str(v)).result(timeout=30) == f"t:{v}")
                elif i % 4 == 2:
                    out.append(list(pool.map("echo", [v, v], chunksize=1)) == [v, v])
                else:
                    out.append(pool.call(lambda x, state: (x, state["prefix"]), v) == (v, "t"))
            return out

        threads = [_in_thread(hammer, k) for k in range(8)]
        for t, _ in threads:
            t.join(50)
        for t, box in threads:
            assert not t.is_alive()
            assert box and box[0][0] == "ok", box
            assert all(box[0][1]), box


def test_a_second_thread_call_completes_while_another_waits_on_a_slow_one(tmp_path):
    with honeydew.Pool(num_workers=2) as pool:
        flag = tmp_path / "slow.running"
        slow, slow_box = _in_thread(pool.call, H.announce_then_wait, str(flag), str(tmp_path / "slow.release"), 30)
        H.wait_until(flag.exists, 10, what="the slow call to start")
        fast, fast_box = _in_thread(pool.options(timeout=20).call, H.echo, "fast")
        fast.join(20)
        assert fast_box == [("ok", "fast")]
        assert slow.is_alive() and not slow_box         # the slow caller is still waiting
        assert pool.call(H.echo, "main") == "main"      # and this thread too gets through
        (tmp_path / "slow.release").touch()
        slow.join(20)
        assert slow_box and slow_box[0][0] == "ok"


def test_waiters_on_one_future_from_many_threads(tmp_path):
    with honeydew.Pool(num_workers=1) as pool:
        fut, _ = _block(pool, tmp_path)
        waiters = [_in_thread(fut.result, 20) for _ in range(4)]
        _unblock(tmp_path)
        for t, box in waiters:
            t.join(20)
            assert box and box[0][0] == "ok"


# --- callbacks ----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_done_callback_that_calls_the_pool_again_does_not_deadlock():
    with honeydew.Pool(num_workers=2) as pool:
        got: list = []
        done = threading.Event()

        def callback(fut) -> None:  # type: ignore[no-untyped-def]
            try:
                got.append(pool.options(timeout=20).call(H.echo, fut.result() + 1))
            except BaseException as e:
                got.append(e)
            done.set()

        fut = pool.submit(H.echo, 1)
        fut.add_done_callback(callback)    # nobody waits: the pool's own reader must fire it
        assert done.wait(30), "the done callback never ran or deadlocked"
        assert got == [2]


@pytest.mark.timeout(60)
def test_done_callback_calling_the_pool_while_the_caller_waits():
    with honeydew.Pool(num_workers=2) as pool:
        got: list = []

        def callback(fut) -> None:  # type: ignore[no-untyped-def]
            got.append(pool.options(timeout=20).call(H.echo, "from callback"))
            got.append(pool.submit(H.echo, "nested submit").result(timeout=20))

        futs = [pool.submit(H.echo, i) for i in range(5)]
        for f in futs:
            f.add_done_callback(callback)
        assert [f.result(timeout=30) for f in futs] == list(range(5))
        H.wait_until(lambda: len(got) == 10, 30, what="every callback to finish")
        assert got.count("from callback") == 5 and got.count("nested submit") == 5


@pytest.mark.timeout(60)
def test_callback_chain_submits_from_callbacks():
    with honeydew.Pool(num_workers=1) as pool:
        finished = threading.Event()
        seen: list[int] = []

        def step(fut) -> None:  # type: ignore[no-untyped-def]
            n = fut.result()
            seen.append(n)
            if n < 10:
                pool.submit(H.echo, n + 1).add_done_callback(step)
            else:
                finished.set()

        pool.submit(H.echo, 0).add_done_callback(step)
        assert finished.wait(30)
        assert seen == list(range(11))


# --- cancel (a queued job, a running job: tests/faults/test_shutdown.py) --------------------------

def test_running_is_false_while_queued_and_after_a_cancel(tmp_path):
    with honeydew.Pool(num_workers=1) as pool:
        blocker, _ = _block(pool, tmp_path)
        queued = pool.submit(H.echo, "q")
        assert queued.running() is False
        assert queued.cancel() is True and queued.running() is False and queued.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result(timeout=1)
        _unblock(tmp_path)
        blocker.result(timeout=20)


def test_cancel_racing_the_end_of_a_running_job(tmp_path):
    """The job may finish before a terminating cancel reaches its monitor: then the worker is left
    alone (it is never killed in place of the next job).  The future tells which happened: cancelled,
    or finished with the job's own result; either way the pool serves and closes cleanly."""
    with honeydew.Pool(num_workers=1) as pool:
        running, pid = _block(pool, tmp_path)
        _unblock(tmp_path)
        stopped = running.cancel(terminate=True)
        if stopped:
            assert running.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                running.result(timeout=0)
        else:
            assert running.result(timeout=20) == int((tmp_path / "blocker.running").read_text())
        assert all(isinstance(pool.call(os.getpid), int) for _ in range(5))


def test_cancel_a_finished_future_returns_false():
    with honeydew.Pool(num_workers=1) as pool:
        fut = pool.submit(H.echo, "done")
        assert fut.result(timeout=20) == "done"
        assert fut.cancel() is False
        assert not fut.cancelled()
        assert pool.call(H.echo, 1) == 1


# --- max_pending --------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_max_pending_blocks_cast_until_there_is_room(tmp_path):
    with honeydew.Pool(num_workers=1, max_pending=2) as pool:
        _block(pool, tmp_path)                               # pending: 1 (running)
        pool.cast(H.echo, "queued")                          # pending: 2 (queued)
        entered = threading.Event()
        returned = threading.Event()
        errors: list[BaseException] = []

        def third() -> None:
            entered.set()
            try:
                pool.cast(H.touch, str(tmp_path / "third-ran"))
            except BaseException as e:
                errors.append(e)
            returned.set()

        t = threading.Thread(target=third, daemon=True)
        t.start()
        assert entered.wait(10)
        assert not returned.wait(0.5), "the third cast did not block with max_pending=2 full"
        _unblock(tmp_path)
        assert returned.wait(20), "the third cast never got room"
        t.join(10)
        assert errors == []                                   # no QueueFull when blocking
        H.wait_until((tmp_path / "third-ran").exists, 20)


@pytest.mark.timeout(60)
def test_max_pending_blocks_submit_too(tmp_path):
    with honeydew.Pool(num_workers=1, max_pending=1) as pool:
        _block(pool, tmp_path)
        t, box = _in_thread(pool.submit, H.echo, "later")
        t.join(0.5)
        assert t.is_alive() and not box
        _unblock(tmp_path)
        t.join(20)
        assert box and box[0][0] == "ok"
        assert box[0][1].result(timeout=20) == "later"


@pytest.mark.timeout(60)
def test_max_pending_cast_with_timeout_raises_timeout_error(tmp_path):
    with honeydew.Pool(num_workers=1, max_pending=2) as pool:
        _block(pool, tmp_path)
        pool.cast(H.echo, "queued")
        with pytest.raises(TimeoutError):
            pool.options(timeout=0.1).cast(H.touch, str(tmp_path / "never"))
        with pytest.raises(TimeoutError):
            pool.options(timeout=0.1).submit(H.echo, 1)
        _unblock(tmp_path)
        # room comes back: the pool goes on serving, and the timed-out casts were never enqueued
        assert pool.options(timeout=20).call(H.echo, "ok") == "ok"
        assert [pool.options(timeout=20).call(H.echo, i) for i in range(5)] == list(range(5))
    assert not (tmp_path / "never").exists()


@pytest.mark.timeout(60)
def test_max_pending_firehose_with_many_threads():
    with honeydew.Pool(num_workers=2, max_pending=3) as pool:
        def fire(k: int) -> list:
            return [pool.submit(H.echo, (k, i)) for i in range(50)]

        threads = [_in_thread(fire, k) for k in range(4)]
        for t, _ in threads:
            t.join(40)
        results = []
        for t, box in threads:
            assert not t.is_alive() and box and box[0][0] == "ok", box
            results += [f.result(timeout=20) for f in box[0][1]]
        assert sorted(results) == sorted((k, i) for k in range(4) for i in range(50))


@pytest.mark.timeout(60)
def test_non_blocking_enqueue_reads_the_settled_news_nobody_else_read():
    """The queue's word that a job settled arrives after its result; once the last future has its
    result nobody reads the caller's sockets.  A non-blocking enqueue must read what has arrived
    before it says QueueFull (it used to raise for ever: CI, under load)."""
    with honeydew.Pool(num_workers=1, max_pending=1) as pool:
        assert pool.submit(H.echo, "first").result(timeout=20) == "first"
        # the queue's Settled is on its way; nobody else reads any more.  Only the non-blocking
        # submits themselves can take it in: if they did not read, they would raise for ever
        def second() -> Any:
            try:
                return pool.options(block=False).submit(H.echo, "second")
            except honeydew.QueueFull:
                return None
        fut = H.wait_until(second, 20, interval=0.01, what="room for a non-blocking submit")
        assert fut.result(timeout=20) == "second"


def test_max_pending_raises_queue_full_when_asked_not_to_block(tmp_path):
    """pool.options(block=False): a full queue raises QueueFull at once; nothing is enqueued, and
    the pool takes jobs again once there is room."""
    with honeydew.Pool(num_workers=1, max_pending=2) as pool:
        _block(pool, tmp_path)                                    # 1 pending (running)
        queued = pool.submit(H.echo, "queued")                    # 2 pending
        with pytest.raises(honeydew.QueueFull, match="max_pending=2"):
            pool.options(block=False).cast(H.touch, str(tmp_path / "never"))
        with pytest.raises(honeydew.QueueFull):
            pool.options(block=False).submit(H.echo, "never")
        _unblock(tmp_path)
        assert queued.result(timeout=20) == "queued"
        def room() -> bool:
            try:
                return pool.options(block=False).submit(H.echo, "room").result(timeout=20) == "room"
            except honeydew.QueueFull:
                return False  # the settled count has not reached the caller yet

        H.wait_until(room, 20, what="room in the queue")
    assert not (tmp_path / "never").exists()
