"""Big arguments and results go through the pool's spool (files on a tmpfs), not through the queue
process: the job stays charged to its worker before the worker reads them, each file goes when its
job is over (done, given up, cancelled), and when the spool cannot be written the payload simply
goes through the sockets."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest
from support import integration_helpers as H

import honeydew
from honeydew import _spool

pytestmark = pytest.mark.timeout(120)
T = 30
MB = 1_000_000


def echo_len(blob: bytes) -> tuple[int, bytes]:
    return len(blob), blob[:4]


def echo(blob: bytes) -> bytes:
    return blob


def hold(blob: bytes, release: str) -> int:
    H.wait_until(lambda: os.path.exists(release), T, what=release)
    return len(blob)


def raise_once_then_len(blob: bytes, flag: str) -> int:
    if not os.path.exists(flag):
        Path(flag).write_text("x")
        raise ValueError("first delivery fails")
    return len(blob)


def die_on_first_delivery(blob: bytes) -> int:
    if honeydew.current_job().deliveries == 1:
        os.kill(os.getpid(), 9)
    return len(blob)


def jobs_in(spool: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(spool) if n.startswith("job-"))
    except FileNotFoundError:
        return []


def no_job_files(spool: str) -> None:
    """Wait until no job's file is left (a job's ``Done`` reaches the queue after its result
    reached the caller, so the file goes a moment after the caller has its answer)."""
    H.wait_until(lambda: not jobs_in(spool), T, what=f"the job files in {spool} to go: {jobs_in(spool)}")


def queue_uss() -> int:
    [q] = H.by_name("hd-queue-0")
    return psutil.Process(q.pid).memory_full_info().uss


def test_a_big_argument_and_result_round_trip_through_the_spool(tmp_path):
    data = os.urandom(5 * MB)
    release = str(tmp_path / "release")
    with honeydew.Pool(num_workers=1) as pool:
        assert pool.call(echo, data) == data
        no_job_files(pool._spool)
        fut = pool.submit(hold, data, release)
        H.wait_until(lambda: jobs_in(pool._spool), T, what="the running job's file")  # read by the worker
        Path(release).write_text("go")
        assert fut.result(timeout=T) == 5 * MB
        no_job_files(pool._spool)
        spool = pool._spool
    assert not os.path.exists(spool)


def test_the_queue_process_never_holds_big_payloads(tmp_path):
    """Twenty 5 MB jobs wait in the queue; its private memory stays what it was."""
    release = str(tmp_path / "release")
    with honeydew.Pool(num_workers=1) as pool:
        pool.call(echo_len, b"warm")
        before = queue_uss()
        futs = [pool.submit(hold, os.urandom(5 * MB), release) for _ in range(20)]
        H.wait_until(lambda: len(jobs_in(pool._spool)) == 20, T, what="20 spooled jobs")
        pool.status()  # the queue has read every Enqueue by the time it answers
        grown = queue_uss() - before
        Path(release).write_text("go")
        assert [f.result(timeout=T) for f in futs] == [5 * MB] * 20
    assert grown < 5 * MB, f"the queue process grew by {grown / MB:.1f} MB with 100 MB of jobs pending"


def test_cancelled_and_given_up_jobs_take_their_files_with_them(tmp_path):
    release = str(tmp_path / "release")
    with honeydew.Pool(num_workers=1) as pool:
        blocker = pool.submit(hold, b"small", release)
        queued = pool.submit(echo_len, os.urandom(2 * MB))
        H.wait_until(lambda: len(jobs_in(pool._spool)) == 1, T, what="the queued job's file")
        assert queued.cancel()
        H.wait_until(lambda: not jobs_in(pool._spool), T, what="the cancelled job's file to go")
        Path(release).write_text("go")
        assert blocker.result(timeout=T) == 5
        with pytest.raises(ValueError, match="first delivery fails"):
            pool.call(raise_once_then_len, os.urandom(2 * MB), str(tmp_path / "flag"))  # Abandon: given up
        no_job_files(pool._spool)


def test_a_retried_job_reads_its_file_again(tmp_path):
    with honeydew.Pool(num_workers=1, failure_mode=honeydew.Retry(times=2, backoff=0.01)) as pool:
        assert pool.call(raise_once_then_len, os.urandom(2 * MB), str(tmp_path / "flag")) == 2 * MB
        no_job_files(pool._spool)


def test_a_worker_killed_holding_a_big_job_under_requeue(tmp_path):
    with honeydew.Pool(num_workers=1, failure_mode=honeydew.Requeue(max_deliveries=3)) as pool:
        assert pool.call(die_on_first_delivery, os.urandom(3 * MB)) == 3 * MB
        no_job_files(pool._spool)


def test_without_a_usable_spool_payloads_go_through_the_sockets(monkeypatch):
    calls = []
    real = _spool.write
    monkeypatch.setattr(_spool, "write", lambda *a: calls.append(a) or real("/proc/no-such-dir", *a[1:]))
    data = os.urandom(2 * MB)
    with honeydew.Pool(num_workers=1) as pool:
        assert pool.call(echo, data) == data  # the worker's spool is fine; the caller's was not
    assert calls, "the caller tried the spool first"


def test_many_threads_sending_big_payloads(tmp_path):
    with honeydew.Pool(num_workers=2) as pool:
        errors: list[BaseException] = []

        def send(k: int) -> None:
            try:
                for i in range(5):
                    blob = bytes([k, i]) * (100_000 + k)
                    assert pool.call(echo, blob) == blob
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T)
        assert not errors, errors
        no_job_files(pool._spool)
