"""The SQLite queue's producer: how a caller's process stores its casts itself (group commit
across threads, the log synced after the commit), and what its threads see when a write fails.
The pool's side (a cast through it, its ``Wake``) is in tests/integration/test_sqlite_queue.py."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.common import small_tmpfs

from honeydew.queues import Job, Owner, SQLite
from honeydew.queues.sqlite import StoreError, _Producer

ME = Owner("pool-a", 0, 0, os.getpid())
T = 30.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def producer(path: Path) -> Iterator[_Producer]:
    p = SQLite(path).producer()
    yield p
    p.close()


@pytest.fixture
def queue(path: Path) -> Iterator[SQLite]:
    q = SQLite(path)
    q.open(ME)
    q.hold(100)
    yield q
    q.close()


def _wait(cond: Any, what: str) -> None:
    done = threading.Event()
    for _ in range(int(T / 0.01)):
        if cond():
            return
        done.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_stored_job_is_pending_for_the_queue_with_all_it_carries(producer: _Producer, queue: SQLite) -> None:
    assert producer.store(Job("a", b"payload-a", "", 2.5, priority=3, mode="task-x")) == 1
    producer.store(Job("later", b"p"), ready_at=4e9)  # (a wall-clock stamp far ahead)
    assert len(queue) == 2 and queue.next_ready_in(1e9) is not None
    job = queue.reserve(1e9)
    assert job is not None
    assert (job.id, job.payload, job.origin, job.timeout, job.priority, job.mode, job.deliveries) == \
        ("a", b"payload-a", "", 2.5, 3, "task-x", 1)
    assert queue.reserve(1e9) is None  # the delayed one waits


def test_the_threads_that_arrive_during_a_write_share_the_next_one(producer: _Producer, queue: SQLite) -> None:
    first_in = threading.Event()
    release = threading.Event()
    writes: list[list[str]] = []
    real_write = producer._write

    def write(rows: list[tuple[Any, ...]]) -> None:
        writes.append([row[0] for row in rows])
        if len(writes) == 1:
            first_in.set()
            assert release.wait(T)
        real_write(rows)

    producer._write = write  # type: ignore[method-assign]
    numbers: dict[str, int] = {}

    def store(job_id: str) -> None:
        numbers[job_id] = producer.store(Job(job_id, b"p"))

    first = threading.Thread(target=store, args=("first",))
    first.start()
    assert first_in.wait(T)
    others = [threading.Thread(target=store, args=(f"t{i}",)) for i in range(7)]
    for t in others:
        t.start()
    _wait(lambda: len(producer._next.rows) == 7, "the seven jobs to wait for the next write")
    release.set()
    for t in (first, *others):
        t.join(T)
    assert writes[0] == ["first"] and sorted(writes[1]) == sorted(f"t{i}" for i in range(7)) and len(writes) == 2
    assert numbers["first"] == 1 and {numbers[f"t{i}"] for i in range(7)} == {2}
    assert len(queue) == 8


def test_every_job_of_many_threads_is_stored_once_each_threads_in_its_order(producer: _Producer,
                                                                            queue: SQLite) -> None:
    def cast(thread: int) -> None:
        for i in range(100):
            producer.store(Job(f"{thread}-{i:03d}", b"p"))

    threads = [threading.Thread(target=cast, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    seen: list[str] = []
    while (job := queue.reserve(1e9)) is not None:
        seen.append(job.id)
        queue.ack([job.id])
    assert sorted(seen) == sorted(f"{n}-{i:03d}" for n in range(8) for i in range(100))
    for n in range(8):
        mine = [j for j in seen if j.startswith(f"{n}-")]
        assert mine == sorted(mine)  # FIFO per thread


@pytest.mark.parametrize("error", [StoreError("the disk is full (test)"), RuntimeError("a bug (test)")])
def test_a_failed_write_raises_in_each_of_its_threads_and_the_next_write_goes_on(
        producer: _Producer, queue: SQLite, error: BaseException) -> None:
    release = threading.Event()
    real_write = producer._write
    calls = [0]

    def write(rows: list[tuple[Any, ...]]) -> None:
        calls[0] += 1
        if calls[0] == 1:
            assert release.wait(T)
            raise error
        real_write(rows)

    producer._write = write  # type: ignore[method-assign]
    outcomes: dict[str, object] = {}

    def store(job_id: str) -> None:
        try:
            outcomes[job_id] = producer.store(Job(job_id, b"p"))
        except BaseException as e:
            outcomes[job_id] = e

    first = threading.Thread(target=store, args=("refused",))
    first.start()
    _wait(lambda: calls[0] == 1, "the first write")
    second = threading.Thread(target=store, args=("next",))
    second.start()
    _wait(lambda: len(producer._next.rows) == 1, "the second job to wait")
    release.set()
    first.join(T)
    second.join(T)
    assert outcomes["refused"] is error
    assert outcomes["next"] == 2
    assert [queue.reserve(1e9).id] == ["next"]  # type: ignore[union-attr]


def test_a_full_disk_refuses_the_cast_naming_the_file(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, "1m") as d:
        producer = SQLite(d / "jobs.db").producer()
        try:
            producer.store(Job("small", b"x"))
            with open(d / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            with pytest.raises(StoreError, match=r"(full|I/O error).*jobs\.db"):
                for i in range(50):
                    producer.store(Job(f"big{i}", os.urandom(20_000)))
            (d / "filler").unlink()
            producer.store(Job("after", b"x"))
        finally:
            producer.close()
        q = SQLite(d / "jobs.db")
        q.open(ME)
        try:
            ids = [j.id for j in q.take_pending()]
        finally:
            q.close()
        assert ids[0] == "small" and ids[-1] == "after"


@pytest.mark.parametrize("synchronous, synced", [("FULL", True), ("NORMAL", False)])
def test_the_log_is_synced_after_each_commit_at_full_only(path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          synchronous: str, synced: bool) -> None:
    calls: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    producer = SQLite(path, synchronous=synchronous).producer()
    try:
        producer.store(Job("a", b"x"))
        producer.store(Job("b", b"x"))
    finally:
        producer.close()
    assert calls == ([f"{path}-wal"] * 2 if synced else [])


def test_close_is_idempotent_and_a_closed_producer_opens_again(producer: _Producer, queue: SQLite) -> None:
    producer.store(Job("a", b"x"))
    producer.close()
    producer.close()
    producer.store(Job("b", b"x"))
    assert len(queue) == 2
