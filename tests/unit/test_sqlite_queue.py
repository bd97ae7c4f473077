"""What ``honeydew.queues.SQLite`` does beyond the queue contract (which
``tests/unit/test_queue_contract.py`` runs against it): its options and pickling, ``check()`` and
the errors of a path that cannot work, leases, the versions a payload was pickled with, replies to
pools that are gone, and several processes reserving from one file."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.common import small_tmpfs

from honeydew.errors import Failure, HoneydewError
from honeydew.queues import Job, Owner, Reply, SQLite
from honeydew.queues.sqlite import StoreError

T0 = 1_000.0
ME = Owner("pool-a", 0, 0, os.getpid())
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def opened(path: Path) -> Iterator[list[SQLite]]:
    """Backends to close at the end of the test."""
    qs: list[SQLite] = []
    yield qs
    for q in qs:
        q.close()


def open_q(opened: list[SQLite], path: Path, owner: Owner = ME, **options: object) -> SQLite:
    q = SQLite(path, **options)  # type: ignore[arg-type]
    q.open(owner)
    opened.append(q)
    return q


def put(q: SQLite, *ids: str, origin: str = "", ready_at: float = 0.0) -> None:
    q.enqueue([Job(i, f"p-{i}".encode(), origin) for i in ids], ready_at)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


# --------------------------------------------------------------------------- options, pickling


def test_declares_durable_with_every_capability(path: Path) -> None:
    q = SQLite(path)
    assert q.durable is True and q.lacks == frozenset()
    assert (q.synchronous, q.lease_secs, q.recovery_cap) == ("FULL", 10.0, 5)
    assert repr(q) == f"SQLite({str(path)!r})"


@pytest.mark.parametrize("bad", [{"synchronous": "SOMETIMES"}, {"lease_secs": 0}, {"busy_timeout": -1},
                                 {"poll_secs": "1"}, {"recovery_cap": 0}, {"recovery_cap": 2.5},
                                 {"reply_grace": True}])
def test_bad_options_are_refused_at_once(path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SQLite(path, **bad)  # type: ignore[arg-type]


def test_pickles_by_value_without_its_connection(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path, synchronous="normal", lease_secs=3.0, recovery_cap=2)
    put(q, "a")
    copy = pickle.loads(pickle.dumps(q))
    assert copy._db is None and copy.owner is None
    assert (copy.path, copy.synchronous, copy.lease_secs, copy.recovery_cap) == (str(path), "NORMAL", 3.0, 2)
    copy.open(ME._replace(queue=1))
    opened.append(copy)
    assert copy.take_pending()[0].id == "a"


def test_a_method_before_open_says_so(path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        SQLite(path).enqueue([Job("a", b"p")])


# --------------------------------------------------------------------------- check() and bad paths


def test_check_makes_the_file_and_leaves_no_connection(path: Path) -> None:
    q = SQLite(path)
    q.check()
    assert path.exists() and q._db is None
    with raw(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "1"
    q.check()  # again, on the existing file


def test_check_missing_directory(tmp_path: Path) -> None:
    bad = tmp_path / "no" / "such" / "dir" / "jobs.db"
    with pytest.raises(HoneydewError, match=r"does not exist.*create it") as info:
        SQLite(bad).check()
    assert str(bad.parent) in str(info.value)


def test_check_and_open_refuse_a_file_that_is_not_a_database(path: Path) -> None:
    path.write_bytes(b"this is a text file, not a database\n" * 100)
    with pytest.raises(StoreError, match=r"not a honeydew queue database.*move it away") as info:
        SQLite(path).check()
    assert str(path) in str(info.value)
    with pytest.raises(StoreError, match="not a honeydew queue database"):
        SQLite(path).open(ME)
    assert path.read_bytes().startswith(b"this is a text file")  # untouched


def test_a_corrupt_database_is_refused(path: Path) -> None:
    q = SQLite(path)
    q.check()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page's content
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        q.open(ME)


def test_another_programs_database_is_not_taken_over(path: Path) -> None:
    with raw(path) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(StoreError, match="database of something else"):
        SQLite(path).check()
    with raw(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["customers"]


def test_a_directory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a regular file"):
        SQLite(tmp_path).check()


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` (and what is in it) read-only for this process: chmod, or for root a
    read-only remount of the tmpfs it is."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    done = subprocess.run(["mount", "-o", "remount,ro", str(directory)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(directory)], capture_output=True)


def _mountable_dir(tmp_path: Path) -> contextlib.AbstractContextManager[Path]:
    if os.geteuid() == 0:
        return small_tmpfs(tmp_path, "4m")
    d = tmp_path / "dir"
    d.mkdir()
    return contextlib.nullcontext(d)


def test_a_read_only_directory_is_refused_by_check_and_open(tmp_path: Path) -> None:
    with _mountable_dir(tmp_path) as d, read_only(d):
        with pytest.raises(HoneydewError, match=r"cannot be written.*writable") as info:
            SQLite(d / "jobs.db").check()
        assert str(d / "jobs.db") in str(info.value)
        with pytest.raises(StoreError):
            SQLite(d / "jobs.db").open(ME)


def test_a_read_only_database_is_refused_and_a_store_raises(tmp_path: Path) -> None:
    with _mountable_dir(tmp_path) as d:
        q = SQLite(d / "jobs.db")
        q.check()
        with read_only(d):
            with pytest.raises(StoreError, match="cannot be written"):
                q.check()
            with pytest.raises(StoreError):
                q.open(ME)


def test_a_full_disk_refuses_the_whole_batch_and_the_queue_goes_on(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, "1m") as d:
        q = SQLite(d / "jobs.db")
        q.open(ME)
        try:
            q.enqueue([Job("small", b"x")])
            filler = d / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
            os.close(fd)
            big = [Job(f"big{i}", os.urandom(20_000)) for i in range(20)]
            with pytest.raises(StoreError, match=r"(full|I/O error).*jobs\.db"):
                q.enqueue(big)
            filler.unlink()
            assert [j.id for j in q.take_pending()] == ["small"]  # none of the refused batch
            q.enqueue(big[:3])
            assert len(q) == 3
        finally:
            q.close()


def test_a_database_locked_by_another_program_raises_after_busy_timeout(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path, busy_timeout=0.3)
    put(q, "a")
    other = raw(path)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"locked.*busy_timeout=0.3s") as info:
            put(q, "b")
        assert 0.25 <= time.monotonic() - started < 5
        assert str(path) in str(info.value)
        assert q.is_pending("a")  # reads go on (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    put(q, "b")
    assert len(q) == 2


def test_a_lock_held_briefly_is_waited_out(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path)
    other = raw(path)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.2, lambda: other.execute("COMMIT")).start()
    put(q, "a")  # waits for the other writer, then stores
    other.close()
    assert q.is_pending("a")


# --------------------------------------------------------------------------- transactions


def test_only_stores_wait_for_synchronous_acks_ride_with_the_next_transaction(path: Path,
                                                                             opened: list[SQLite]) -> None:
    q = open_q(opened, path)
    seen: list[str] = []
    q.db.set_trace_callback(seen.append)
    put(q, "a", "b")
    assert seen[:2] == ["PRAGMA synchronous=FULL", "BEGIN IMMEDIATE"]
    assert seen[-1] == "PRAGMA synchronous=NORMAL"
    del seen[:]
    a = q.reserve(T0)
    assert a is not None and a.id == "a"
    assert "FULL" not in "\n".join(seen) and any(s.startswith("UPDATE jobs SET owner") for s in seen)
    del seen[:]
    q.ack(["a"])
    assert seen == []  # kept: it rides with the next transaction
    b = q.reserve(T0)
    assert b is not None and b.id == "b"
    text = "\n".join(seen)
    assert "FULL" not in text and text.index("DELETE FROM jobs WHERE id") < text.index("UPDATE jobs SET owner")
    q.ack(["b"])
    q.db.set_trace_callback(None)
    with raw(path) as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1  # ("b" is not written yet)
    q.tick(T0)
    with raw(path) as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    assert q.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL between calls


def test_an_ack_with_replies_is_written_at_once(path: Path, opened: list[SQLite]) -> None:
    sender = open_q(opened, path, Owner("pool-s", 0, 0, os.getpid()))
    runner = open_q(opened, path, Owner("pool-r", 0, 0, os.getpid()))
    put(sender, "a", "b", origin="pool-s")
    a, b = runner.reserve(T0), runner.reserve(T0)
    assert a is not None and b is not None
    runner.ack([a.id])
    runner.ack([b.id], [Reply("pool-s", b.id, True, b"rb")])
    assert [r.job_id for r in sender.take_replies()] == ["b"]
    assert sender.status()["reserved"] == 0  # both acks written with the reply


def test_claims_for_free_credits_ride_with_the_store_and_stay_pending(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path, claim_ahead=0)
    q.hold(3)                        # our workers can take 3 jobs
    seen: list[str] = []
    q.db.set_trace_callback(seen.append)
    put(q, *"abcde")                  # one transaction: stored, and 3 claimed for the workers
    assert seen.count("BEGIN IMMEDIATE") == 1
    assert len(q) == 5 and q.is_pending("a") and q.status()["reserved"] == 0 and q.status()["pending"] == 5
    with raw(path) as db:  # (what other pools see: taken)
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE owner IS NOT NULL").fetchone()[0] == 3
    del seen[:]
    got = [q.reserve(T0) for _ in range(3)]
    assert [j.id for j in got if j] == ["a", "b", "c"] and seen == []  # no transaction at all
    assert [j.deliveries for j in got if j] == [1, 1, 1]
    assert len(q) == 2 and q.status()["reserved"] == 3
    # a claimed job can be cancelled, and comes back uncounted when the claims are given back
    q.hold(5)
    assert q.reserve(T0).id == "d"  # type: ignore[union-attr]  # claims d and e
    cancelled = q.cancel("e")
    assert cancelled is not None and (cancelled.id, cancelled.deliveries) == ("e", 0)
    assert len(q) == 0


def test_claims_give_way_to_a_higher_priority_and_a_front_nack(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path, claim_ahead=0)
    q.hold(2)
    q.enqueue([Job("lo1", b"p"), Job("lo2", b"p"), Job("lo3", b"p")])  # lo1, lo2 claimed
    q.enqueue([Job("hi", b"p", priority=5)])
    assert q.reserve(T0).id == "hi"  # type: ignore[union-attr]
    lo1 = q.reserve(T0)
    assert lo1 is not None and lo1.id == "lo1"
    lo1.deliveries -= 1
    q.nack(lo1, front=True)           # claims (lo2) go back first
    assert [q.reserve(T0).id for _ in range(3)] == ["lo1", "lo2", "lo3"]  # type: ignore[union-attr]


def test_claims_ahead_spare_a_transaction_per_job_and_other_pools_take_the_rest(path: Path,
                                                                                 opened: list[SQLite]) -> None:
    q = open_q(opened, path, claim_ahead=2)
    other = open_q(opened, path, Owner("pool-b", 0, 0, os.getpid()))
    put(q, *"abcdef")                 # no hold() yet: nothing claimed
    q.hold(1)
    seen: list[str] = []
    q.db.set_trace_callback(seen.append)
    assert q.reserve(T0).id == "a"  # type: ignore[union-attr]  # one transaction claims a, b, c
    assert seen.count("BEGIN IMMEDIATE") == 1
    q.ack(["a"])
    assert q.reserve(T0).id == "b"  # type: ignore[union-attr]
    assert seen.count("BEGIN IMMEDIATE") == 1
    assert [other.reserve(T0).id for _ in range(3)] == ["d", "e", "f"]  # type: ignore[union-attr]
    assert len(q) == 1 and q.is_pending("c") and not other.is_pending("c")


def test_unused_claims_go_back_at_the_next_tick(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path)
    other = open_q(opened, path, Owner("pool-b", 0, 0, os.getpid()))
    q.hold(4)
    put(q, "a", "b")                  # both claimed by q
    assert other.reserve(T0) is None
    q.tick(T0)                       # nobody took them: back to the line, uncounted
    got = other.reserve(T0)
    assert got is not None and (got.id, got.deliveries) == ("a", 1)


def test_synchronous_normal_never_toggles(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path, synchronous="NORMAL")
    seen: list[str] = []
    q.db.set_trace_callback(seen.append)
    put(q, "a")
    q.ack([q.reserve(T0).id])  # type: ignore[union-attr]
    assert not [s for s in seen if "synchronous" in s]


# --------------------------------------------------------------------------- leases, owners


def _owner_rows(path: Path) -> list[tuple[object, ...]]:
    with raw(path) as db:
        return db.execute("SELECT pool, queue, gen, pid, machine FROM owners ORDER BY id").fetchall()


def test_open_registers_and_close_unregisters_giving_reservations_back(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path)
    assert [r[:4] for r in _owner_rows(path)] == [("pool-a", 0, 0, os.getpid())]
    put(q, "a", "b")
    assert q.reserve(T0).id == "a"  # type: ignore[union-attr]
    q.close()
    assert _owner_rows(path) == []
    again = open_q(opened, path, ME._replace(generation=1))
    got = again.reserve(T0)
    assert got is not None and (got.id, got.deliveries) == ("a", 2)  # given back, its delivery counted


def _lapse(path: Path, pool: str, machine: str | None = None) -> None:
    """Make ``pool``'s owners look like they live elsewhere, their lease lapsed."""
    with raw(path) as db:
        db.execute("UPDATE owners SET lease_expires = ?, machine = COALESCE(?, machine) WHERE pool = ?",
                   (time.time() - 1, machine, pool))


def test_a_lapsed_lease_is_recovered_by_tick_a_valid_one_never(path: Path, opened: list[SQLite]) -> None:
    far = open_q(opened, path, Owner("pool-far", 0, 0, os.getpid()))
    near = open_q(opened, path, Owner("pool-near", 0, 0, os.getpid()))
    put(far, "a", "b")
    assert far.reserve(T0).id == "a"  # type: ignore[union-attr]
    with raw(path) as db:  # pool-far is on another machine, its lease valid
        db.execute("UPDATE owners SET machine = 'elsewhere' WHERE pool = 'pool-far'")
    near._next_scan = 0.0
    wait = near.tick(T0)
    assert wait is not None and 0 < wait <= near.poll_secs
    assert near.status()["reserved"] == 1
    _lapse(path, "pool-far")
    near._next_scan = 0.0
    near.tick(T0)
    assert near.status()["reserved"] == 0
    got = near.reserve(T0)
    assert got is not None and (got.id, got.deliveries) == ("a", 2)
    # the lapsed owner comes back: it finds itself taken for dead and registers again
    far._next_lease = 0.0
    far.tick(T0)
    assert len([r for r in _owner_rows(path) if r[0] == "pool-far"]) == 1
    far.ack(["a"])  # no longer its own: ignored
    assert near.status()["reserved"] == 1


def test_a_same_machine_owner_whose_pid_is_gone_is_recovered_at_once(path: Path, opened: list[SQLite]) -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead = open_q(opened, path, Owner("pool-dead", 0, 0, p.pid))
    put(dead, "a")
    dead.reserve(T0)
    live = open_q(opened, path, Owner("pool-live", 0, 0, os.getpid()))
    # (its open already recovered it)
    assert live.status()["reserved"] == 0 and live.is_pending("a")


def test_tick_asks_to_be_called_often_enough(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path, poll_secs=0.05, lease_secs=0.1)
    wait = q.tick(T0)
    assert wait is not None and 0 <= wait <= 0.05


# --------------------------------------------------------------------------- versions


def test_a_job_pickled_by_other_versions_goes_to_the_failed_store(path: Path, opened: list[SQLite]) -> None:
    sender = open_q(opened, path, Owner("pool-sender", 0, 0, os.getpid()))
    sender.enqueue([Job("old", b"p", "pool-sender"), Job("new", b"p")])
    with raw(path) as db:
        db.execute("INSERT INTO envs (python, cloudpickle) VALUES ('2.7', '0.1.0')")
        db.execute("UPDATE jobs SET env = (SELECT id FROM envs WHERE python = '2.7') WHERE id = 'old'")
    runner = open_q(opened, path, Owner("pool-runner", 0, 0, os.getpid()))
    got = runner.reserve(T0)
    assert got is not None and got.id == "new"
    assert runner.reserve(T0) is None
    [kept] = runner.failed()
    failure = Failure._make(kept.failure)
    assert (kept.id, kept.deliveries, failure.kind) == ("old", 0, Failure.SERIALIZATION)
    assert "Python 2.7" in failure.message and "cloudpickle 0.1.0" in failure.message
    assert failure.type_name == "honeydew.errors.SerializationError"
    [reply] = sender.take_replies()
    assert (reply.job_id, reply.ok, Failure._make(reply.value).kind) == ("old", False, Failure.SERIALIZATION)


# --------------------------------------------------------------------------- replies


def test_replies_to_a_closed_pool_are_dropped_those_of_a_live_one_kept(path: Path, opened: list[SQLite]) -> None:
    live = open_q(opened, path, Owner("pool-live", 0, 0, os.getpid()))
    closing = open_q(opened, path, Owner("pool-closing", 0, 0, os.getpid()))
    runner = open_q(opened, path, Owner("pool-runner", 0, 0, os.getpid()))
    closing.close()
    runner.ack([], [Reply("pool-live", "j1", True, b"r1"), Reply("pool-closing", "j2", True, b"r2")])
    runner._next_scan = 0.0
    runner.tick(T0)
    assert runner.status()["replies"] == 1
    assert [r.job_id for r in live.take_replies()] == ["j1"]


def test_a_queue_process_closing_on_an_exception_keeps_its_pools_replies(path: Path, opened: list[SQLite]) -> None:
    """It is about to be restarted: what other pools sent its callers waits for its next generation."""
    q = open_q(opened, path, Owner("pool-failing", 0, 0, os.getpid()))
    runner = open_q(opened, path, Owner("pool-runner", 0, 0, os.getpid()))
    runner.ack([], [Reply("pool-failing", "j1", True, b"r1")])
    try:
        raise RuntimeError("a bug in the queue process")
    except RuntimeError:
        q.close()
    again = open_q(opened, path, Owner("pool-failing", 0, 1, os.getpid()))
    assert [r.job_id for r in again.take_replies()] == ["j1"]


def test_a_pool_with_no_live_owner_keeps_its_replies_for_the_grace(path: Path, opened: list[SQLite]) -> None:
    """A queue process that restarts finds what arrived meanwhile; a pool killed for good does not
    leak its replies past ``reply_grace``."""
    q = open_q(opened, path, Owner("pool-restarting", 0, 0, os.getpid()))
    runner = open_q(opened, path, Owner("pool-runner", 0, 0, os.getpid()), reply_grace=0.3)
    with raw(path) as db:  # the queue process died (no close)
        db.execute("DELETE FROM owners WHERE pool = 'pool-restarting'")
    q._db.close()  # type: ignore[union-attr]
    q._db = None
    runner.ack([], [Reply("pool-restarting", "j1", True, b"r1")])
    runner._next_scan = 0.0
    runner.tick(T0)
    restarted = open_q(opened, path, Owner("pool-restarting", 0, 1, os.getpid()))
    assert [r.job_id for r in restarted.take_replies()] == ["j1"]
    restarted._db.close()  # type: ignore[union-attr]
    restarted._db = None
    with raw(path) as db:
        db.execute("DELETE FROM owners WHERE pool = 'pool-restarting'")
    runner.ack([], [Reply("pool-restarting", "j2", True, b"r2")])
    time.sleep(0.35)
    runner._next_scan = 0.0
    runner.tick(T0)
    assert runner.status()["replies"] == 0


# --------------------------------------------------------------------------- several processes


RESERVER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from honeydew.queues import Owner, SQLite
    q = SQLite({path!r}, synchronous="NORMAL")
    q.open(Owner("pool-" + sys.argv[1], 0, 0, os.getpid()))
    got = []
    idle = time.monotonic() + 2.0
    while time.monotonic() < idle:
        job = q.reserve(time.time())
        if job is None:
            time.sleep(0.001)
            continue
        got.append(job.id)
        q.ack([job.id])
        idle = time.monotonic() + 2.0
    q.close()
    print(" ".join(got))
""")


@pytest.mark.timeout(60)
def test_every_job_is_reserved_by_exactly_one_of_several_processes(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path)
    ids = [f"j{i}" for i in range(600)]
    code = RESERVER.format(repo=str(REPO), path=str(path))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], stdout=subprocess.PIPE, text=True)
             for n in range(3)]
    for i in range(0, len(ids), 50):
        q.enqueue([Job(j, b"p") for j in ids[i:i + 50]])
        time.sleep(0.01)
    outs = [p.communicate(timeout=40)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    got = [j for out in outs for j in out]
    assert sorted(got) == sorted(ids), "a job reserved twice, or never"
    assert len(q) == 0 and q.status()["reserved"] == 0


@pytest.mark.timeout(60)
def test_a_sigkilled_owners_reservation_comes_back_counted(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path, Owner("pool-test", 0, 0, os.getpid()))
    put(q, "a", "b")
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from honeydew.queues import Owner, SQLite
        q = SQLite({str(path)!r})
        q.open(Owner("pool-victim", 0, 0, os.getpid()))
        print(q.reserve(time.time()).id, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "a"
        q._next_scan = 0.0
        q.tick(T0)
        assert q.status()["reserved"] == 1  # alive: untouched
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        q._next_scan = 0.0
        q.tick(T0)
        got = q.reserve(T0)
        assert got is not None and (got.id, got.deliveries) == ("a", 2)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- suspending the file


def test_a_suspended_file_reserves_nothing_and_claims_go_back(path: Path, opened: list[SQLite]) -> None:
    q = open_q(opened, path)
    q.hold(2)
    put(q, "a", "b", "c")
    assert q.reserve(T0).id == "a"  # type: ignore[union-attr]  (b and c claimed into the hand)
    other = SQLite(path)
    assert other.set_suspended(True, wait=0.2) == ["pool-a/0"]  # (q has not looked at the file yet)
    q.tick(T0)  # it sees the suspension: gives its claims back and says so
    assert other.set_suspended(True, wait=5.0) == []
    assert q.paused() and q.reserve(T0) is None
    assert q.status()["file_suspended"] is True and q.status()["reserved"] == 1  # (a runs on)
    fresh = open_q(opened, path, Owner("pool-b", 0, 0, os.getpid()))
    fresh.hold(2)
    assert fresh.reserve(T0) is None  # a pool that opens the file later sees it too
    other.set_suspended(False)
    q.tick(T0)
    assert not q.paused() and q.reserve(T0).id == "b"  # type: ignore[union-attr]
    assert q.status()["file_suspended"] is False
