"""Real pools on ``honeydew.queues.SQLite``: one pool, an enqueue-only pool beside a worker pool on
the same file, a cast that outlives its sender, whole pool trees SIGKILLed mid-job (their jobs run
in the next pool, or in a pool still alive on the file, their delivery counted), and paths that
cannot work (a clear HoneydewError, never a hang)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support import durable_tasks as D
from support import integration_helpers as H

import honeydew
from honeydew.queues import Owner, SQLite

T = 30.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "q.db"


def test_a_pool_on_sqlite_runs_call_submit_map_and_cast(path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "cast-ran"
    with honeydew.Pool(num_workers=2, queue=SQLite(path)) as pool:
        assert pool.options(timeout=T).call(H.echo, "hello") == "hello"
        futs = [pool.submit(D.square, i) for i in range(50)]
        assert [f.result(timeout=T) for f in futs] == [i * i for i in range(50)]
        assert list(pool.map(D.square, range(100), timeout=T)) == [i * i for i in range(100)]
        pool.cast(H.touch, str(marker))
        H.wait_until(marker.exists, T, what="the cast to run")
        with pytest.raises(D.ItsOwnError, match="mine"):
            pool.options(timeout=T).call(D.raise_its_own, "mine")
        status = pool.status()["queues"][0]
        assert status["path"] == str(path) and status["pending"] == 0
    with _inspect(path) as q:
        assert len(q) == 0 and q.status()["reserved"] == 0


class _inspect:
    """An SQLite backend opened in the test as an owner of its own (it recovers dead owners' jobs)."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.q = SQLite(path, **options)

    def __enter__(self) -> SQLite:
        self.q.open(Owner("inspector", 0, 0, os.getpid()))
        return self.q

    def __exit__(self, *_: object) -> None:
        self.q.close()


@pytest.fixture
def runner(path: Path):
    """A pool with workers on the file: it runs what the enqueue-only pools send."""
    with honeydew.Pool(num_workers=2, queue=SQLite(path), failure_mode=honeydew.Abandon()) as pool:
        yield pool


def test_an_enqueue_only_pool_gets_every_kind_of_outcome_from_the_pool_that_ran_it(path: Path, runner) -> None:
    with honeydew.Pool(num_workers=0, queue=SQLite(path)) as sender:
        assert sender.options(timeout=T).call(H.echo, "ran elsewhere") == "ran elsewhere"
        assert sender.options(timeout=T).call(H.getpid) in H.worker_pids()
        assert sender.submit(D.square, 7).result(timeout=T) == 49
        with pytest.raises(D.ItsOwnError, match="its own class"):
            sender.options(timeout=T).call(D.raise_its_own, "its own class")
        with pytest.raises(honeydew.WorkerCrashed):
            sender.options(timeout=T).call(H.crash_self)
        assert list(sender.map(D.square, range(10), timeout=T)) == [x * x for x in range(10)]
        results = sender.map(D.square_unless_three, range(6), chunksize=6, timeout=T)
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(D.ItsOwnError, match="three"):
            next(results)
    assert runner.options(timeout=T).call(H.echo, "still serving") == "still serving"


def test_a_cast_survives_its_sender_killed_right_after_it_returned(path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = H.run_script(tmp_path, f"""
        import os, signal
        import honeydew
        from honeydew.queues import SQLite
        from support import integration_helpers as H
        pool = honeydew.Pool(num_workers=0, queue=SQLite({str(path)!r}))
        pool.cast(H.touch, {str(marker)!r})
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not marker.exists()
    with honeydew.Pool(num_workers=1, queue=SQLite(path)):
        H.wait_until(marker.exists, T, what="the stored cast to run")


def test_a_cast_to_an_idle_pool_runs_at_once_not_at_the_next_poll(path: Path, tmp_path: Path) -> None:
    """A cast is stored by the caller itself, then wakes the queue process: with the file polled
    only once a minute, the job still runs at once."""
    marker = tmp_path / "ran"
    with honeydew.Pool(num_workers=1, queue=SQLite(path, poll_secs=60.0)) as pool:
        pool.options(timeout=T).call(H.echo, 1)  # (the worker is up and the queue idle)
        pool.cast(H.touch, str(marker))
        H.wait_until(marker.exists, T, what="the cast to run before the next poll, a minute away")


def test_casts_from_threads_racing_close_are_stored_and_run(path: Path, tmp_path: Path) -> None:
    """``close()`` waits for the casts being stored: every cast that returned runs in this pool,
    every one that did not raised ``PoolClosed``."""
    import threading
    returned: list[str] = []
    refused: list[BaseException] = []
    pool = honeydew.Pool(num_workers=2, queue=SQLite(path))
    def caster(k: int) -> None:
        for i in range(100_000):
            marker = str(tmp_path / f"{k}-{i}")
            try:
                pool.cast(H.touch, marker)
            except honeydew.PoolClosed as e:
                refused.append(e)
                return
            returned.append(marker)

    threads = [threading.Thread(target=caster, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    H.wait_until(lambda: len(returned) >= 50, T, what="some casts to return")
    pool.close()
    pool.join(T)
    for t in threads:
        t.join(T)
    assert len(refused) == 4  # (each thread's first cast after close())
    missing = [m for m in returned if not os.path.exists(m)]
    assert not missing, f"{len(missing)} cast(s) returned but did not run in the pool: {missing[:3]}"
    with _inspect(path) as q:
        assert len(q) == 0


def test_close_waits_for_a_cast_being_stored(path: Path, tmp_path: Path) -> None:
    """A cast whose commit is still under way when another thread calls ``close()`` is stored before
    the pool's last word to its queue, so this pool runs it (the write is held until ``close()`` has
    begun, then a moment longer)."""
    import threading
    marker = tmp_path / "ran"
    pool = honeydew.Pool(num_workers=1, queue=SQLite(path))
    producer = pool._producer
    assert producer is not None
    real_write = producer._write
    closing = threading.Event()

    def write(rows: list[tuple[object, ...]]) -> None:
        H.wait_until(lambda: pool._closed, T, what="close() to begin")
        closing.wait(0.3)
        real_write(rows)

    producer._write = write  # type: ignore[method-assign]
    caster = threading.Thread(target=pool.cast, args=(H.touch, str(marker)))
    caster.start()
    H.wait_until(lambda: pool._storing == 1, T, what="the cast to be storing")
    pool.close()
    closing.set()
    pool.join(T)
    caster.join(T)
    assert marker.exists()


def test_signed_jobs_run_and_a_job_written_without_the_key_never_does(path: Path, tmp_path: Path) -> None:
    """With a signing key every pool on the file signs what it writes; a job another program wrote
    into the file without the key (a pickle that would touch a file) is never unpickled: it goes to
    the failed store, and the pool goes on."""
    import pickle
    import sqlite3

    from honeydew.protocol import call_payload
    key = "a secret shared by the programs of this file"
    forged, good = tmp_path / "forged-ran", tmp_path / "good-ran"
    with honeydew.Pool(num_workers=1, queue=SQLite(path, signing_key=key)) as pool:
        assert pool.options(timeout=T).call(H.echo, 7) == 7
        db = sqlite3.connect(path, isolation_level=None)
        env = db.execute("SELECT id FROM envs LIMIT 1").fetchone()[0]
        db.execute("INSERT INTO jobs (id, payload, origin, timeout, priority, mode, ready_at, deliveries, failures, "
                   "bounces, env) VALUES ('forged', ?, '', 0, 0, '', 0, 0, 0, 0, ?)",
                   (pickle.dumps(call_payload(H.touch, (str(forged),), {})), env))
        db.close()
        pool.cast(H.touch, str(good))
        H.wait_until(good.exists, T, what="the signed cast to run")
        H.wait_until(lambda: pool.failed(), T, what="the forged job to reach the failed store")
        (record,) = pool.failed()
        assert record.id == "forged" and "not signed" in record.error
    assert not forged.exists()


def test_a_jobs_own_failure_mode_goes_through_the_file_to_the_pool_that_runs_it(path: Path, tmp_path: Path) -> None:
    """A pool with no workers sends jobs with a Retry of their own (a call through its queue
    process, a cast stored by the caller itself); the pool that runs them, whose failure mode is
    Abandon, retries them as they say.  Signed, as everything in a file with a key."""
    key = "a secret shared by the programs of this file"
    called, cast, plain = (tmp_path / name for name in ("called", "cast", "plain"))
    for d in (called, cast, plain):
        d.mkdir()
    with honeydew.Pool(num_workers=1, queue=SQLite(path, signing_key=key), failure_mode=honeydew.Abandon()), \
            honeydew.Pool(num_workers=0, queue=SQLite(path, signing_key=key)) as sender:
        retry = sender.options(timeout=T, failure_mode=honeydew.Retry(times=2, backoff=0.01))
        with pytest.raises(ValueError, match="run 3"):
            retry.call(H.fail_counted, str(called), ValueError)
        assert H.count_runs(called) == 3
        retry.cast(H.fail_until, str(cast), 3)
        H.wait_until(lambda: H.count_runs(cast) == 3, T, what="the cast's two retries")
        with pytest.raises(ValueError):  # (a job without one: the running pool's Abandon)
            sender.options(timeout=T).call(H.fail_counted, str(plain), ValueError)
        assert H.count_runs(plain) == 1
    assert H.count_runs(cast) == 3


def test_an_enqueue_only_pool_needs_no_init_arguments(path: Path) -> None:
    """A producer takes the worker for its task names: it runs no init, so it is not asked for the
    arguments the worker pools give it."""
    with honeydew.Pool(D.Store, ["db.internal", 8087], num_workers=1, queue=SQLite(path)), \
            honeydew.Pool(D.Store, num_workers=0, queue=SQLite(path)) as producer:
        assert producer.options(timeout=T).call("where_am_i", "job") == "job@db.internal:8087"
    with pytest.raises(TypeError, match="does not take the arguments"):
        honeydew.Pool(D.Store, num_workers=1, queue=SQLite(path))  # (a pool that runs init still checks)


def test_terminate_says_the_jobs_stay_in_the_file_and_they_do(path: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """``terminate()`` on a durable queue drops nothing: it says the jobs are left in the file, and
    the next pool on the file runs them."""
    release = tmp_path / "release"
    pool = honeydew.Pool(num_workers=1, queue=SQLite(path))
    pool.cast(H.wait_for_file, str(release), 60)
    H.wait_until(lambda: pool.status()["queues"][0]["running"], T, what="the job to start")
    pool.cast(H.echo, "queued")
    with caplog.at_level("WARNING", logger="honeydew.pool"):
        pool.terminate()
    assert "1 running job(s) stopped and 1 queued left in SQLite(" in caplog.text, caplog.text
    assert "dropped" not in caplog.text
    release.touch()
    with honeydew.Pool(num_workers=1, queue=SQLite(path)):
        pass  # (leaving waits for both jobs)
    with _inspect(path) as q:
        assert len(q) == 0 and q.status()["reserved"] == 0


BURST = """
import sys, threading
import honeydew
from honeydew.queues import SQLite
from support import integration_helpers as H

pool = honeydew.Pool(num_workers=2, queue=SQLite(sys.argv[1]))
lock = threading.Lock()

def caster(k):
    for i in range(10_000):
        marker = f"{sys.argv[2]}/{k}-{i}"
        pool.cast(H.touch, marker)
        with lock:
            print("CAST", marker, flush=True)

threads = [threading.Thread(target=caster, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


@pytest.mark.timeout(120)
def test_a_tree_sigkilled_in_a_burst_of_casts_from_several_threads_loses_none_that_returned(
        path: Path, tmp_path: Path) -> None:
    """Four threads cast as fast as they can while the pool runs jobs; the whole program (caller,
    supervisor, queue, monitors, workers) is SIGKILLed mid-burst.  Every job whose ``cast`` had
    returned runs, at least once, in the next pool on the file."""
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = H.start_script(tmp_path, BURST, args=[str(path), str(marks)], start_new_session=True)
    returned = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("CAST "):
                returned.append(line.split()[1])
            if len(returned) >= 300:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the caller and its process group at once; the workers
        proc.wait(T)                          # (in groups of their own) die with their parents
    assert len(returned) >= 300, proc.stderr.read() if proc.stderr else ""
    with honeydew.Pool(num_workers=2, queue=SQLite(path)):
        H.wait_until(lambda: all(os.path.exists(m) for m in returned), 60,
                     what=f"the {len(returned)} casts that returned to run")


def test_killing_the_queue_process_loses_no_job(path: Path) -> None:
    with honeydew.Pool(num_workers=2, queue=SQLite(path)) as pool:
        futs = [pool.submit(H.nap, 0.05) for _ in range(20)]
        queue_pid = pool.status()["queues"][0]["pid"]
        os.kill(queue_pid, signal.SIGKILL)
        more = [pool.submit(D.square, i) for i in range(20)]
        assert [f.result(timeout=T) for f in futs] == [0.05] * 20
        assert [f.result(timeout=T) for f in more] == [i * i for i in range(20)]
        H.wait_until(lambda: pool.status()["queues"][0]["pid"] != queue_pid, T, what="a new queue process")
        assert pool.options(timeout=T).call(H.echo, "after") == "after"


@pytest.mark.timeout(120)
def test_two_worker_pools_on_one_file_run_every_job_once(path: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    with honeydew.Pool(num_workers=2, queue=SQLite(path)) as a, honeydew.Pool(num_workers=2, queue=SQLite(path)) as b:
        assert a.options(timeout=T).call(H.echo, 1) == 1 and b.options(timeout=T).call(H.echo, 2) == 2
        # (both pools' four workers, each past the moment it still carries its monitor's name)
        H.wait_until(lambda: len(H.worker_pids()) == 4, T, what="the four workers")
        workers = H.worker_pids()
        with honeydew.Pool(num_workers=0, queue=SQLite(path)) as sender:
            futs = [sender.submit(H.record_run, str(runs)) for _ in range(400)]
            pids = [f.result(timeout=T) for f in futs]
    job_ids = [p.name[len("run-"):].rsplit("-", 2)[0] for p in runs.iterdir()]
    assert len(job_ids) == 400 and len(set(job_ids)) == 400, "a job ran twice, or never"
    assert set(pids) <= workers


# --------------------------------------------------------------------------- whole trees killed

TREE = """
import os, sys, time
import honeydew
from honeydew.queues import SQLite
from support import durable_tasks as D
from support import integration_helpers as H

path, runs, release, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pool = honeydew.Pool(num_workers=2, queue=SQLite(path))
for i in range(jobs):
    pool.cast(D.run_and_wait, runs, release, 120)
before = int(sys.argv[5]) if len(sys.argv) > 5 else 0  # (runs recorded before: wait for a new one)
H.wait_until(lambda: len(D.runs(runs)) >= before + max(1, min(jobs, 2)), 60, what="the jobs to start")
print("PIDS", os.getpid(), " ".join(str(p.pid) for p in H.pool_processes()), flush=True)
time.sleep(600)
"""


def _kill_tree(w: H.Watched) -> list[int]:
    """SIGKILL the script and every process of its pool, the queue process first, at once."""
    pids = [int(x) for x in w.value("PIDS", timeout=60).split()]
    script, pool = pids[0], pids[1:]
    queues = [p.pid for p in H.pool_processes(script) if p.name().startswith("hd-queue-")]
    H.kill_all(queues + [script] + pool)
    w.finish(30)
    assert H.wait_gone(pool, 10.0) == []
    return pool


@pytest.mark.timeout(120)
def test_a_pool_tree_killed_mid_job_its_jobs_run_in_the_next_pool_counted(path: Path, tmp_path: Path) -> None:
    runs, release = tmp_path / "runs", tmp_path / "release"
    runs.mkdir()
    w = H.start_watched(tmp_path, TREE, args=[str(path), str(runs), str(release), "3"])
    try:
        _kill_tree(w)
    finally:
        w.kill()
    first = D.runs(runs)
    assert len(first) == 2 and all(r.deliveries == 1 for r in first)
    with _inspect(path) as q:  # its open gives the dead pool's reservations back
        assert len(q) == 3 and q.status()["reserved"] == 0
        counts = dict(q.db.execute("SELECT id, deliveries FROM jobs").fetchall())
        assert all(counts[r.job_id] == 1 for r in first)
    release.touch()
    with honeydew.Pool(num_workers=2, queue=SQLite(path)) as pool:
        H.wait_until(lambda: len(D.runs(runs)) == 5, T, what="every job to run again")
        workers = H.worker_pids()
        again = [r for r in D.runs(runs) if r not in first]
        assert {r.job_id for r in again} >= {r.job_id for r in first}
        assert all(r.pid in workers for r in again)
        assert sorted(r.deliveries for r in again if r.job_id in {f.job_id for f in first}) == [2, 2]
        H.wait_until(lambda: pool.status()["queues"][0]["reserved"] == 0, T, what="the acks")
    with _inspect(path) as q:
        assert len(q) == 0 and q.status()["failed_store"] == 0


@pytest.mark.timeout(120)
def test_a_pool_killed_mid_job_its_jobs_run_in_a_live_pool_on_the_file(path: Path, tmp_path: Path) -> None:
    """Two pools serve one file; while both live, neither runs the other's reservation; once one is
    SIGKILLed (its whole tree), the other runs what it held, within its lease and a margin."""
    runs, release = tmp_path / "runs", tmp_path / "release"
    runs.mkdir()
    w = H.start_watched(tmp_path, TREE, args=[str(path), str(runs), str(release), "2"])
    try:
        H.wait_until(lambda: len(D.runs(runs)) == 2, 60, what="the first pool's jobs to start")
        with honeydew.Pool(num_workers=2, queue=SQLite(path)) as alive:
            assert alive.options(timeout=T).call(H.echo, 1) == 1
            time.sleep(1.5)  # (more than a scan for dead owners)
            assert len(D.runs(runs)) == 2, "the live pool ran a job the other pool held"
            _kill_tree(w)
            killed = time.monotonic()
            release.touch()
            H.wait_until(lambda: len(D.runs(runs)) == 4, 10.0 + 5.0, what="the live pool to run the dead one's jobs")
            took = time.monotonic() - killed
            workers = H.worker_pids()
            by_job: dict[str, list[int]] = {}
            for r in D.runs(runs):
                by_job.setdefault(r.job_id, []).append(r.deliveries)
            assert sorted(by_job.values()) == [[1, 2], [1, 2]], "each job: the dead pool's run, then one more"
            assert all(r.pid in workers for r in D.runs(runs) if r.deliveries == 2)
            assert took < 15.0
    finally:
        w.kill()


@pytest.mark.timeout(120)
def test_a_job_whose_pool_keeps_dying_ends_in_the_failed_store(path: Path, tmp_path: Path) -> None:
    """A job that takes its whole pool down each time it runs is not run for ever: once its pools
    died holding it ``recovery_cap`` times, the next owner to open the file keeps it failed, with a
    JobLost failure that says so."""
    runs, release = tmp_path / "runs", tmp_path / "release"
    runs.mkdir()
    for death in (1, 2):
        w = H.start_watched(tmp_path, TREE, args=[str(path), str(runs), str(release), "1" if death == 1 else "0",
                                                  str(death - 1)])
        try:
            _kill_tree(w)
        finally:
            w.kill()
        assert [r.deliveries for r in D.runs(runs)] == list(range(1, death + 1))
    with _inspect(path, recovery_cap=2) as q:
        assert len(q) == 0 and q.status()["reserved"] == 0
        [kept] = q.failed()
        failure = honeydew.errors.Failure._make(kept.failure)
        assert (kept.deliveries, failure.type_name) == (2, "honeydew.errors.JobLost")
        assert "died while running it 2 times" in failure.message


def test_a_delay_survives_its_sender(path: Path, tmp_path: Path) -> None:
    """A delayed cast is stored with its wall-clock time: the sender SIGKILLed, a later pool runs
    it, not before its time."""
    marker = tmp_path / "ran"
    proc = H.run_script(tmp_path, f"""
        import os, signal, time
        import honeydew
        from honeydew.queues import SQLite
        from support import integration_helpers as H
        pool = honeydew.Pool(num_workers=0, queue=SQLite({str(path)!r}))
        print("CAST", time.time(), flush=True)
        pool.options(delay=1.5).cast(H.touch, {str(marker)!r})
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    cast_at = float(proc.stdout.split("CAST", 1)[1].split()[0])
    with honeydew.Pool(num_workers=1, queue=SQLite(path)):
        H.wait_until(marker.exists, T, what="the delayed cast to run")
        ran_at = marker.stat().st_mtime
    assert ran_at >= cast_at + 1.5 - 0.05


# --------------------------------------------------------------------------- paths that cannot work


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    return filler


@pytest.mark.timeout(90)
def test_a_full_disk_refuses_new_jobs_clearly_and_the_pool_goes_on(tmp_path: Path) -> None:
    """A job cast on a full disk raises, naming the file; a job running meanwhile finishes (its ack
    waits in the queue process until the disk has room); once there is room again, all goes on."""
    with H.small_tmpfs(tmp_path, "2m") as d:
        path = d / "q.db"
        release = tmp_path / "release"
        with honeydew.Pool(num_workers=1, queue=SQLite(path)) as pool:
            assert pool.options(timeout=T).call(H.echo, 1) == 1
            queue_pid = pool.status()["queues"][0]["pid"]
            running = pool.submit(H.wait_for_file, str(release), 60)
            H.wait_until(lambda: pool.status()["queues"][0]["running"], T, what="the job to start")
            filler = _fill(d)
            with pytest.raises(honeydew.HoneydewError, match=r"was not stored.*full.*q\.db.*free some space"):
                pool.options(timeout=T).call(H.echo, "x" * 50_000)
            with pytest.raises(honeydew.HoneydewError, match=r"was not stored.*full.*q\.db.*free some space"):
                pool.cast(H.echo, "x" * 50_000)  # (stored by the caller itself: the same error)
            release.touch()
            assert running.result(timeout=T) > 0
            filler.unlink()
            assert pool.options(timeout=T).call(H.echo, 2) == 2
            assert pool.status()["queues"][0]["pid"] == queue_pid  # (it never died)
        with _inspect(path) as q:
            assert len(q) == 0 and q.status()["reserved"] == 0


def test_bad_paths_give_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "q.db"
    not_a_db = tmp_path / "text.db"
    not_a_db.write_text("hello, I am not a database\n" * 50)
    for bad, says in ((missing, "does not exist"), (not_a_db, "not a honeydew queue database")):
        with pytest.raises(honeydew.HoneydewError, match=says) as info:
            SQLite(bad).check()
        assert str(bad) in str(info.value)


def test_a_pool_on_a_bad_path_raises_never_hangs(tmp_path: Path) -> None:
    """``Pool()`` checks the queue's path in the caller: a path that cannot work raises there,
    naming the file, instead of a queue process that cannot start.  (In a script, so that a hang
    leaves nothing behind.)"""
    bad = tmp_path / "no" / "such" / "q.db"
    try:
        proc = H.run_script(tmp_path, f"""
            import honeydew
            from honeydew.queues import SQLite
            from support import integration_helpers as H
            try:
                with honeydew.Pool(num_workers=1, queue=SQLite({str(bad)!r})) as pool:
                    pool.options(timeout=10).call(H.echo, 1)
            except honeydew.HoneydewError as e:
                print("RAISED", type(e).__name__, e)
            """, timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("a pool on a missing directory hung") from None
    assert "RAISED" in proc.stdout and "does not exist" in proc.stdout and str(bad.parent) in proc.stdout, \
        proc.stdout + proc.stderr
