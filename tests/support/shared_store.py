"""A durable, shared reference backend for the tests: the queue contract on one SQLite file.

It exists so that the contract suite and the pool's tests can exercise what the in-memory queue
cannot: jobs that outlive the queue process, several owners (queue processes, pools) on one store,
a dead owner's reservations coming back, and replies carried from the pool that ran a job to the
pool that sent it.  It is deliberately plain (one transaction per call, no batching, polling for
replies): correctness, not speed.  Jobs, reservations and replies are rows; an owner is alive
while its process is (``os.kill(pid, 0)``: one machine).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from honeydew._process import pid_alive
from honeydew.queues.base import FAILED_STORE, PRIORITIES, Job, Owner, Queue, Reply

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, payload BLOB NOT NULL, origin TEXT NOT NULL,
    timeout REAL NOT NULL, deliveries INTEGER NOT NULL, failures INTEGER NOT NULL,
    bounces INTEGER NOT NULL, ready_at REAL NOT NULL, mode TEXT NOT NULL,
    pool TEXT, queue INTEGER, gen INTEGER, pid INTEGER          -- the owner of a reservation
);
CREATE TABLE IF NOT EXISTS replies (origin TEXT NOT NULL, job_id TEXT NOT NULL, ok INTEGER NOT NULL, value BLOB,
                                    partial BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS owners (pool TEXT NOT NULL, queue INTEGER NOT NULL, gen INTEGER NOT NULL,
                                   pid INTEGER NOT NULL);
"""

_COLUMNS = "id, payload, origin, timeout, deliveries, failures, bounces, 0, mode"  # (no priorities: 0)


def _earlier(row: tuple[Any, ...], owner: Owner) -> bool:
    """Is ``row`` an earlier generation of the queue process ``owner``?"""
    return bool(row[0] == owner.pool and row[1] == owner.queue and row[2] < owner.generation)


class SharedStore(Queue):
    durable: ClassVar[bool] = True
    #: plain on purpose: strict FIFO, and no failed store (``honeydew.queues.SQLite`` has both)
    lacks: ClassVar[frozenset[str]] = frozenset({PRIORITIES, FAILED_STORE})

    #: how often an open store looks for replies to its pool's callers (tick)
    POLL = 0.02

    def __init__(self, path: str | Path, refuse_while: str | Path | None = None,
                 unopenable_while: str | Path | None = None) -> None:
        """``refuse_while``: while a file of that name exists, ``enqueue`` raises as a full disk
        would; ``unopenable_while``: ``open`` does (for the tests of a backend that fails)."""
        self.path = str(path)
        self.refuse_while = None if refuse_while is None else str(refuse_while)
        self.unopenable_while = None if unopenable_while is None else str(unopenable_while)
        self._db: sqlite3.Connection | None = None
        self.owner: Owner | None = None
        self.told_hold: list[int] = []   # every hold() the queue process sent (for tests)

    def __repr__(self) -> str:
        return f"SharedStore({self.path!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "refuse_while": self.refuse_while, "unopenable_while": self.unopenable_while,
                "_db": None, "owner": None, "told_hold": []}

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "open() first"
        return self._db

    def open(self, owner: Owner) -> None:
        if self.unopenable_while is not None and os.path.exists(self.unopenable_while):
            raise OSError(13, "Permission denied", self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self.owner = owner
        with self._tx():
            self.db.execute("INSERT INTO owners VALUES (?, ?, ?, ?)", owner)
            dead = [row for row in self.db.execute("SELECT pool, queue, gen, pid FROM owners")
                    if tuple(row) != tuple(owner) and (_earlier(row, owner) or not pid_alive(row[3]))]
            for pool, queue, gen, pid in dead:
                self.db.execute("UPDATE jobs SET pool = NULL, queue = NULL, gen = NULL, pid = NULL "
                                "WHERE pool = ? AND queue = ? AND gen = ? AND pid = ?", (pool, queue, gen, pid))
                self.db.execute("DELETE FROM owners WHERE pool = ? AND queue = ? AND gen = ? AND pid = ?",
                                (pool, queue, gen, pid))
            live = {row[0] for row in self.db.execute("SELECT pool FROM owners")}
            for (origin,) in list(self.db.execute("SELECT DISTINCT origin FROM replies")):
                if origin not in live:
                    self.db.execute("DELETE FROM replies WHERE origin = ?", (origin,))

    def close(self) -> None:
        if self._db is None:
            return
        owner = self.owner
        assert owner is not None
        with self._tx():
            self.db.execute("DELETE FROM owners WHERE pool = ? AND queue = ? AND gen = ? AND pid = ?", owner)
            if not list(self.db.execute("SELECT 1 FROM owners WHERE pool = ?", (owner.pool,))):
                self.db.execute("DELETE FROM replies WHERE origin = ?", (owner.pool,))
        self._db.close()
        self._db = None

    def _tx(self) -> Any:
        db = self.db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind: Any, *_: Any) -> None:
                db.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Tx()

    def _mine(self) -> tuple[Any, ...]:
        assert self.owner is not None
        return (self.owner.pool, self.owner.queue, self.owner.generation, self.owner.pid)

    def enqueue(self, jobs: Sequence[Job], ready_at: float = 0.0) -> None:
        if self.refuse_while is not None and os.path.exists(self.refuse_while):
            raise OSError(28, "No space left on device", self.path)
        with self._tx():
            top = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
            for i, job in enumerate(jobs, 1):
                self.db.execute("INSERT OR IGNORE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)",  # noqa: E501
                                (job.id, top + i, job.payload, job.origin, job.timeout, job.deliveries, job.failures,
                                 job.bounces, ready_at, job.mode))

    def reserve(self, now: float) -> Job | None:
        with self._tx():
            row = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE pool IS NULL AND ready_at <= ? "
                                  "ORDER BY ready_at > 0, ready_at, seq LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE jobs SET deliveries = deliveries + 1, pool = ?, queue = ?, gen = ?, pid = ? "
                            "WHERE id = ?", (*self._mine(), row[0]))
        job = Job(*row)
        job.deliveries += 1
        return job

    def ack(self, job_ids: Sequence[str], replies: Sequence[Reply] = ()) -> None:
        if not job_ids and not replies:
            return
        with self._tx():
            for job_id in job_ids:
                self.db.execute("DELETE FROM jobs WHERE id = ? AND pool = ? AND queue = ? AND gen = ? AND pid = ?",
                                (job_id, *self._mine()))
            for r in replies:
                self.db.execute("INSERT INTO replies VALUES (?, ?, ?, ?, ?)", (r.origin, r.job_id, int(r.ok),
                                                                                 _blob(r.value), r.partial))

    def nack(self, job: Job, ready_at: float = 0.0, *, front: bool = False) -> bool:
        with self._tx():
            if front:
                seq = self.db.execute("SELECT COALESCE(MIN(seq), 0) - 1 FROM jobs").fetchone()[0]
            else:
                seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            cur = self.db.execute(
                "UPDATE jobs SET pool = NULL, queue = NULL, gen = NULL, pid = NULL, seq = ?, ready_at = ?, "
                "deliveries = ?, failures = ?, bounces = ? WHERE id = ? AND pool = ? AND queue = ? AND gen = ? "
                "AND pid = ?", (seq, 0.0 if front else ready_at, job.deliveries, job.failures, job.bounces, job.id,
                                *self._mine()))
            return cur.rowcount == 1

    def cancel(self, job_id: str) -> Job | None:
        with self._tx():
            row = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND pool IS NULL", (job_id,)).fetchone()
            if row is None:
                return None
            self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return Job(*row)

    def is_pending(self, job_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM jobs WHERE id = ? AND pool IS NULL", (job_id,)).fetchone() is not None

    def next_ready_in(self, now: float) -> float | None:
        first = self.db.execute("SELECT MIN(ready_at) FROM jobs WHERE pool IS NULL AND ready_at > 0").fetchone()[0]
        return None if first is None else max(0.0, first - now)

    def take_pending(self) -> list[Job]:
        with self._tx():
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE pool IS NULL ORDER BY seq").fetchall()
            self.db.execute("DELETE FROM jobs WHERE pool IS NULL")
        return [Job(*row) for row in rows]

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM jobs WHERE pool IS NULL").fetchone()[0])

    def status(self) -> dict[str, Any]:
        pending, delayed, reserved = self.db.execute(
            "SELECT COALESCE(SUM(pool IS NULL), 0), COALESCE(SUM(pool IS NULL AND ready_at > 0), 0), "
            "COALESCE(SUM(pool IS NOT NULL), 0) FROM jobs").fetchone()
        return {"pending": pending, "delayed": delayed, "reserved": reserved}

    def tick(self, now: float) -> float | None:
        return self.POLL

    def hold(self, jobs: int) -> None:
        self.told_hold.append(jobs)

    def take_replies(self) -> list[Reply]:
        assert self.owner is not None
        with self._tx():
            rows = self.db.execute("SELECT origin, job_id, ok, value, partial FROM replies WHERE origin = ?",
                                   (self.owner.pool,)).fetchall()
            if rows:
                self.db.execute("DELETE FROM replies WHERE origin = ?", (self.owner.pool,))
        return [Reply(origin, job_id, bool(ok), _unblob(ok, value), partial)
                for origin, job_id, ok, value, partial in rows]


def _blob(value: Any) -> bytes:
    """A reply's value as stored: the pickled result as is, a failure record pickled."""
    import pickle
    return value if isinstance(value, bytes) else pickle.dumps(value)


def _unblob(ok: int, value: bytes) -> Any:
    import pickle
    return value if ok else pickle.loads(value)
