"""Signed jobs on a shared SQLite file: with a signing key (``SQLite(path, signing_key=...)`` or
``$HONEYDEW_SIGNING_KEY``) every payload, reply and failure record in the file is signed
(HMAC-SHA256), and one that is not signed with the key is never unpickled: a job goes to the
failed store unread, a reply is dropped.  Without a key, a file anyone may write is refused."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from honeydew.failure_modes import Requeue, Retry, own_mode_key, read_own_mode
from honeydew.queues import Job, Owner, Reply, SQLite
from honeydew.queues.base import OWN_MODE
from honeydew.queues.sqlite import KEY_ENV, StoreError, _seal

ME = Owner("pool-a", 0, 0, os.getpid())
KEY = b"a long random secret for the tests"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def q(path: Path) -> Iterator[SQLite]:
    queue = SQLite(path, signing_key=KEY)
    queue.open(ME)
    queue.hold(4)
    yield queue
    queue.close()


def _raw_insert(path: Path, job_id: str, payload: bytes, mode: str = "") -> None:
    """What another program writing to the file without the key would do."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        env = db.execute("SELECT id FROM envs LIMIT 1").fetchone()[0]
        db.execute("INSERT INTO jobs (id, payload, origin, timeout, priority, mode, ready_at, deliveries, failures, "
                   "bounces, env) VALUES (?, ?, '', 0, 0, ?, 0, 0, 0, 0, ?)", (job_id, payload, mode, env))
    finally:
        db.close()


class Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.abort, ())  # (unpickling it would kill the test process)


def test_a_signed_job_goes_round_and_is_stored_signed(q: SQLite, path: Path) -> None:
    q.enqueue([Job("a", b"payload-a")])
    producer = SQLite(path, signing_key=KEY).producer()
    try:
        producer.store(Job("b", b"payload-b"))
    finally:
        producer.close()
    stored = dict(sqlite3.connect(path).execute("SELECT id, payload FROM jobs").fetchall())
    assert all(blob.startswith(b"\x00hd-sig1") for blob in stored.values())
    assert [(j.id, j.payload) for j in (q.reserve(1e9), q.reserve(1e9))] == [("a", b"payload-a"),  # type: ignore
                                                                              ("b", b"payload-b")]


@pytest.mark.parametrize("how", ["unsigned", "wrong key"])
def test_a_job_not_signed_with_the_key_is_never_unpickled_and_kept_failed(q: SQLite, path: Path, how: str) -> None:
    evil = pickle.dumps(Boom())
    _raw_insert(path, "evil", evil if how == "unsigned" else _seal(b"another key", evil))
    q.enqueue([Job("good", b"ok")])
    job = q.reserve(1e9)
    assert job is not None and job.id == "good"
    assert q.reserve(1e9) is None
    (failed,) = q.failed()
    assert failed.id == "evil" and failed.payload == b""  # (never handed out, never read)
    assert "not signed with this pool's signing key" in failed.failure[2]


def test_a_reply_not_signed_with_the_key_is_dropped(q: SQLite, path: Path) -> None:
    other = SQLite(path, signing_key=b"another key")
    other.open(Owner("pool-b", 0, 0, os.getpid()))
    try:
        other.ack([], [Reply("pool-a", "j1", True, pickle.dumps(Boom()))])
    finally:
        other.close()
    signed = SQLite(path, signing_key=KEY)
    signed.open(Owner("pool-c", 0, 0, os.getpid()))
    try:
        signed.ack([], [Reply("pool-a", "j2", True, b"fine")])
    finally:
        signed.close()
    assert [(r.job_id, r.value) for r in q.take_replies()] == [("j2", b"fine")]


def test_the_key_comes_from_the_environment_too(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    a = SQLite(path)
    a.open(ME)
    try:
        a.enqueue([Job("a", b"x")])
    finally:
        a.close()
    monkeypatch.delenv(KEY_ENV)
    b = SQLite(path, signing_key=KEY)
    b.open(ME)
    try:
        b.hold(1)
        assert b.reserve(1e9).payload == b"x"  # type: ignore[union-attr]
    finally:
        b.close()


def test_bad_keys_are_refused_at_once(path: Path) -> None:
    for bad in (b"", 42):
        with pytest.raises(ValueError, match="signing_key"):
            SQLite(path, signing_key=bad)  # type: ignore[arg-type]


def test_without_a_key_a_file_anyone_may_write_is_refused(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    SQLite(path).check()
    os.chmod(path, 0o666)
    with pytest.raises(StoreError, match=r"written by any user.*chmod o-w.*signing_key"):
        SQLite(path).check()
    with pytest.raises(StoreError, match="written by any user"):
        SQLite(path).open(ME)
    SQLite(path, signing_key=KEY).check()  # (signed jobs: the file's mode does not matter)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    SQLite(path).check()


def test_a_jobs_own_failure_mode_is_stored_signed_and_read_back(q: SQLite, path: Path) -> None:
    """A job's own failure mode is a pickle the queue process reads: signed like its payload."""
    key = own_mode_key(Retry(times=2, backoff=0.5))
    q.enqueue([Job("a", b"payload-a", mode=key), Job("t", b"payload-t", mode="its_task")])
    producer = SQLite(path, signing_key=KEY).producer()
    try:
        producer.store(Job("b", b"payload-b", mode=key))
    finally:
        producer.close()
    stored = dict(sqlite3.connect(path).execute("SELECT id, mode FROM jobs").fetchall())
    assert stored["t"] == "its_task"  # (a task's name is no pickle: as it is)
    for job_id in ("a", "b"):
        assert stored[job_id].startswith(OWN_MODE) and stored[job_id] != key
        assert base64.b64decode(stored[job_id][len(OWN_MODE):]).startswith(b"\x00hd-sig1")
    got = {j.id: j.mode for j in (q.reserve(1e9), q.reserve(1e9), q.reserve(1e9)) if j is not None}
    assert got == {"a": key, "t": "its_task", "b": key}
    assert repr(read_own_mode(got["a"])) == repr(Retry(times=2, backoff=0.5))


@pytest.mark.parametrize("how", ["unsigned", "wrong key"])
def test_a_jobs_own_failure_mode_not_signed_with_the_key_is_never_unpickled(
        q: SQLite, path: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    """The job still runs (its payload is signed); if it fails, the pool's failure mode handles it."""
    evil = pickle.dumps(Boom())
    blob = evil if how == "unsigned" else _seal(b"another key", evil)
    _raw_insert(path, "j", _seal(KEY, b"payload-j"), mode=OWN_MODE + base64.b64encode(blob).decode())
    with caplog.at_level(logging.ERROR, logger="honeydew.queues.sqlite"):
        job = q.reserve(1e9)
    assert job is not None and (job.id, job.payload, job.mode) == ("j", b"payload-j", "")
    assert any("job j" in r.getMessage() and "not signed" in r.getMessage() for r in caplog.records)


def test_without_a_key_a_jobs_own_failure_mode_goes_as_it_is(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key = own_mode_key(Requeue(max_deliveries=3))
    plain = SQLite(path)
    plain.open(ME)
    try:
        plain.hold(1)
        plain.enqueue([Job("a", b"x", mode=key)])
        assert plain.reserve(1e9).mode == key  # type: ignore[union-attr]
    finally:
        plain.close()
