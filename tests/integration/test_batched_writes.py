"""The caller writes jobs to the queue in batches (``honeydew/_outbuf.py``): invisible to the user.
Jobs reach the workers with nobody waiting, in order, and no other message overtakes them."""

from __future__ import annotations

import os
import threading
import time

import pytest
from support import integration_helpers as H

import honeydew
from honeydew import _outbuf
from honeydew.protocol import enqueue_wire


@pytest.mark.timeout(60)
def test_casts_reach_the_workers_with_nobody_waiting(tmp_path):
    """A lone cast, then a burst too small to fill a batch: the caller never waits for the pool,
    yet every job runs (the first at once, the others by the timer)."""
    with honeydew.Pool(num_workers=2) as pool:
        pool.cast(H.touch, str(tmp_path / "lone"))
        H.wait_until(lambda: (tmp_path / "lone").exists(), 10, what="the lone cast to run")
        burst = [tmp_path / f"burst-{i}" for i in range(_outbuf.MAX_JOBS // 4)]
        for path in burst:
            pool.cast(H.touch, str(path))
        H.wait_until(lambda: all(p.exists() for p in burst), 10, what="every cast of the burst to run")


@pytest.mark.timeout(60)
def test_submitted_futures_resolve_with_nobody_asking(tmp_path):
    """Done callbacks fire although no thread ever waits on the pool."""
    with honeydew.Pool(num_workers=2) as pool:
        done = threading.Event()
        seen: list[int] = []
        futures = [pool.submit(H.echo, i) for i in range(10)]
        for f in futures:
            f.add_done_callback(lambda f: (seen.append(f.result()), len(seen) == 10 and done.set()))
        assert done.wait(10), seen
        assert sorted(seen) == list(range(10))


@pytest.mark.timeout(60)
def test_jobs_from_one_thread_run_in_order_across_batches(tmp_path):
    n = _outbuf.MAX_JOBS * 3 + 7
    with honeydew.Pool(num_workers=1) as pool:
        for i in range(n):
            pool.cast(_append_line, str(tmp_path / "log"), str(i))
    assert (tmp_path / "log").read_text().split() == [str(i) for i in range(n)]


@pytest.mark.timeout(60)
def test_a_cancel_never_overtakes_the_job_it_cancels(tmp_path):
    """Cancelled right after submit, while the job may still sit in the caller's buffer: it never runs."""
    with honeydew.Pool(num_workers=1) as pool:
        flag = tmp_path / "blocker.running"
        blocker = pool.submit(H.announce_then_wait, str(flag), str(tmp_path / "release"), 30)
        H.wait_until(lambda: flag.exists() and flag.read_text(), 10, what="the blocker to start")
        cancelled = []
        for i in range(50):
            fut = pool.submit(H.touch, str(tmp_path / f"cancelled-{i}"))
            assert fut.cancel()
            cancelled.append(fut)
        (tmp_path / "release").touch()
        assert blocker.result(timeout=30) is not None
        assert pool.call(H.echo, "after") == "after"
    assert not list(tmp_path.glob("cancelled-*"))
    assert all(f.cancelled() for f in cancelled)


@pytest.mark.timeout(60)
def test_close_writes_what_is_buffered(tmp_path):
    n = 1000
    with honeydew.Pool(num_workers=2) as pool:
        for _ in range(n):
            pool.cast(H.record_run, str(tmp_path))
    assert H.count_runs(tmp_path) == n


@pytest.mark.timeout(60)
def test_big_payloads_are_written_before_the_buffer_grows_past_its_byte_cap(tmp_path):
    """Payloads over the byte cap together: each write stays bounded and every job arrives intact."""
    blob = os.urandom(_outbuf.MAX_BYTES // 3)
    with honeydew.Pool(num_workers=2) as pool:
        futures = [pool.submit(len, blob) for _ in range(10)]
        assert [f.result(timeout=30) for f in futures] == [len(blob)] * 10


def test_writer_cuts_batches_by_count_and_bytes():
    """The buffering rules alone, on a socket pair, with the timer left out (the tests above cover
    it) and "a write has just happened" set by hand, so that no rule depends on how fast this runs."""
    from honeydew._wire import Endpoint, socketpair
    a, b = socketpair()
    writer = _outbuf.Writer([Endpoint(a)], [threading.Lock()])
    writer._arm = lambda: None  # type: ignore[method-assign]
    reader = Endpoint(b)

    def busy() -> None:  # as if the last write were a moment ago: nothing counts as a quiet spell
        writer.last[0] = time.monotonic() + 3600

    try:
        writer.put_job(0, enqueue_wire("first", b"x", "", 0.0), 1)          # after a quiet spell: at once
        assert [m.job_id for m in reader.recv(block=False)] == ["first"]
        busy()
        for i in range(_outbuf.MAX_JOBS):
            writer.put_job(0, enqueue_wire(f"j{i}", b"x", "", 0.0), 1)
            if i < _outbuf.MAX_JOBS - 1:
                busy()
        got = [m.job_id for m in reader.recv(block=False)]
        assert got == [f"j{i}" for i in range(_outbuf.MAX_JOBS)]   # one full batch, in order
        busy()
        big = b"y" * (_outbuf.MAX_BYTES // 2 + 1)
        writer.put_job(0, enqueue_wire("big1", big, "", 0.0), len(big))
        assert reader.recv(block=False) == []                      # held: under both caps
        writer.put_job(0, enqueue_wire("big2", big, "", 0.0), len(big))     # over the byte cap: written
        assert [m.job_id for m in reader.recv(block=False)] == ["big1", "big2"]
        busy()
        huge = b"z" * (_outbuf.MAX_BYTES + 1)
        writer.put_job(0, enqueue_wire("huge", huge, "", 0.0), len(huge))   # one job past the cap: at once
        assert [m.job_id for m in reader.recv(block=False)] == ["huge"]
        busy()
        writer.put_job(0, enqueue_wire("last", b"x", "", 0.0), 1)
        assert reader.recv(block=False) == []
        writer.flush_all()                                          # a thread is about to wait
        assert [m.job_id for m in reader.recv(block=False)] == ["last"]
        assert reader.recv(block=False) == []
    finally:
        writer.stop()
        a.close()
        b.close()


def _append_line(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
