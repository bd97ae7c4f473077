"""Job control with real processes: suspend and resume, the failed store (Move), delays,
priorities, and asyncio's acall/asubmit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path

import pytest
from support import integration_helpers as H

import honeydew

T = 30.0


class Broken(Exception):
    pass


def _fail(message: str, *_state: object) -> None:
    raise Broken(message)


def _stamp(directory: str, name: str, *_state: object) -> float:
    now = time.time()
    (Path(directory) / name).write_text(repr(now))
    return now


def _order(directory: Path) -> list[str]:
    return [p.name for p in sorted(directory.iterdir(), key=lambda p: float(p.read_text()))]


# --- suspend and resume ---------------------------------------------------------------------------

def test_a_suspended_pool_takes_jobs_but_runs_none_until_resumed(tmp_path):
    with honeydew.Pool(num_workers=2) as pool:
        assert pool.options(timeout=T).call(H.echo, "warm") == "warm"
        pool.suspend()
        st = pool.status()
        assert st["suspended"] and all(q["suspended"] for q in st["queues"])
        futs = [pool.submit(H.echo, i) for i in range(5)]
        pool.cast(H.touch, str(tmp_path / "cast"))
        done, _ = concurrent.futures.wait(futs, timeout=0.5)
        assert not done and not (tmp_path / "cast").exists()
        assert pool.status()["queues"][0]["pending"] == 6
        pool.resume()
        assert [f.result(timeout=T) for f in futs] == list(range(5))
        H.wait_until((tmp_path / "cast").exists, T, what="the cast to run")
        assert pool.status()["suspended"] is False


def test_a_pool_started_suspended_runs_nothing_and_closing_it_still_runs_its_jobs(tmp_path):
    """Pool(suspended=True) dispatches nothing; leaving ``with`` resumes, since the in-memory jobs
    would otherwise be lost or the close would wait for ever."""
    with honeydew.Pool(num_workers=1, suspended=True) as pool:
        assert pool.status()["suspended"]
        fut = pool.submit(H.echo, "queued")
        assert concurrent.futures.wait([fut], timeout=0.5).not_done == {fut}
    assert fut.result(timeout=T) == "queued"


def test_a_running_job_finishes_while_the_pool_is_suspended(tmp_path):
    with honeydew.Pool(num_workers=1) as pool:
        flag, release = tmp_path / "started", tmp_path / "release"
        running = pool.submit(H.announce_then_wait, str(flag), str(release), T)
        H.wait_until(flag.exists, T, what="the job to start")
        pool.suspend()
        queued = pool.submit(H.echo, "after")
        release.touch()
        assert running.result(timeout=T)
        assert concurrent.futures.wait([queued], timeout=0.5).not_done == {queued}
        pool.resume()
        assert queued.result(timeout=T) == "after"


# --- the failed store --------------------------------------------------------------------------------

def test_move_keeps_given_up_jobs_to_list_retry_and_purge():
    with honeydew.Pool(num_workers=1, failure_mode=honeydew.Retry(times=1, backoff=0, then=honeydew.Move())) as pool:
        ids = []
        for i in range(3):
            fut = pool.submit(_fail, f"bad {i}")
            with pytest.raises(Broken):  # the caller still gets the failure
                fut.result(timeout=T)
            ids.append(fut.job_id)
        kept = pool.failed()
        assert [r.id for r in kept] == ids[::-1]  # newest first
        first = kept[-1]
        assert first.task.endswith("_fail") and "'bad 0'" in first.args
        assert first.error == f"{Broken.__module__}.Broken: bad 0" or first.error.endswith("Broken: bad 0")
        assert "raise Broken(message)" in first.traceback and first.deliveries == 2
        assert first.failed_at <= time.time()
        assert [r.id for r in pool.failed(limit=1)] == [ids[2]]
        # a retried job runs again (and fails again: back in the store, counted afresh); suspended,
        # so that it cannot have failed again before we look
        pool.suspend()
        assert pool.retry_failed([ids[0], "no-such-job"]) == 1
        assert ids[0] not in [r.id for r in pool.failed()]
        pool.resume()
        H.wait_until(lambda: ids[0] in [r.id for r in pool.failed()], T, what="the retried job to fail again")
        assert next(r for r in pool.failed() if r.id == ids[0]).deliveries == 2
        assert pool.purge_failed([ids[1]]) == 1
        assert pool.purge_failed() == 2
        assert pool.failed() == []
        assert pool.options(timeout=T).call(H.echo, "still serving") == "still serving"


def test_the_failed_store_refuses_bad_input_clearly():
    with honeydew.Pool(num_workers=1) as pool:
        with pytest.raises(TypeError, match=r"retry_failed\(\['abc'\]\)"):
            pool.retry_failed("abc")
        with pytest.raises(TypeError, match="a job id is a string"):
            pool.purge_failed([1])
        with pytest.raises(ValueError, match="limit"):
            pool.failed(limit=-1)
        assert pool.failed() == [] and pool.retry_failed() == 0


# --- delays and priorities -----------------------------------------------------------------------

def test_a_delayed_job_runs_no_earlier_and_holds_no_worker(tmp_path):
    with honeydew.Pool(num_workers=1) as pool:
        assert pool.options(timeout=T).call(H.echo, "warm") == "warm"
        sent = time.time()
        later = pool.options(delay=1.0).submit(_stamp, str(tmp_path), "later")
        assert pool.options(timeout=T).call(H.echo, "meanwhile") == "meanwhile"  # the worker is free
        assert later.result(timeout=T) >= sent + 1.0
        assert pool.status()["queues"][0]["delayed"] == 0


def test_higher_priorities_run_first_and_equal_ones_in_order(tmp_path):
    with honeydew.Pool(num_workers=1, suspended=True) as pool:
        futs = [pool.options(priority=p).submit(_stamp, str(tmp_path), name)
                for name, p in [("low", -5), ("a", 0), ("urgent", 10), ("b", 0), ("high", 5)]]
        pool.resume()
        concurrent.futures.wait(futs, timeout=T)
        assert _order(tmp_path) == ["urgent", "high", "a", "b", "low"]


@pytest.mark.parametrize("bad, error, says", [
    ({"delay": -1}, ValueError, "delay"),
    ({"delay": "soon"}, ValueError, "delay"),
    ({"delay": float("nan")}, ValueError, "delay"),
    ({"priority": "high"}, TypeError, r"priority=10"),
    ({"priority": 1.5}, TypeError, "priority must be an int"),
])
def test_bad_delays_and_priorities_are_refused_with_an_example(bad, error, says):
    with honeydew.Pool(num_workers=1) as pool:
        with pytest.raises(error, match=says):
            pool.options(**bad)
        assert pool.options(timeout=T).call(H.echo, 1) == 1


# --- asyncio -------------------------------------------------------------------------------------------

def test_acall_and_asubmit_await_without_blocking_the_loop():
    async def main(pool: honeydew.Pool) -> tuple[list[float], int, int]:
        ticks = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        tick = asyncio.ensure_future(ticker())
        slow = pool.acall(H.nap, 0.5)
        fut = await pool.asubmit(H.echo, 7)
        results = await asyncio.gather(slow, asyncio.wrap_future(fut))
        tick.cancel()
        with pytest.raises(Broken):
            await pool.acall(_fail, "async")
        return ticks, results[0], results[1]

    with honeydew.Pool(num_workers=2) as pool:
        ticks, slept, seven = asyncio.run(main(pool))
    assert slept == 0.5 and seven == 7
    assert len(ticks) >= 2  # the loop kept turning while the job ran


def test_pool_futures_work_with_wait_and_as_completed():
    with honeydew.Pool(num_workers=2) as pool:
        futs = [pool.submit(H.nap, d) for d in (0.3, 0.0, 0.1)]
        order = [f.result() for f in concurrent.futures.as_completed(futs, timeout=T)]
        assert sorted(order) == [0.0, 0.1, 0.3]
        done, not_done = concurrent.futures.wait(futs, timeout=T, return_when=concurrent.futures.ALL_COMPLETED)
        assert done == set(futs) and not not_done


# --- hooks, progress and counts ------------------------------------------------------------------

def test_hooks_run_around_each_job_and_their_failures_are_visible():
    from support import workers as W

    with honeydew.Pool(W.Hooked, num_workers=1) as pool:
        armed = pool.call("arm_refusal")
        refused = pool.submit("history")
        with pytest.raises(PermissionError, match="before_job refused"):  # the task's body did not run
            refused.result(timeout=T)
        with pytest.raises(ValueError, match="the task failed"):
            pool.call("fail")
        broken = pool.call("arm_after_failure")    # its after_job raises: logged and counted, outcome stands
        seen = pool.call("history")
        ids = {a: i for i, a in enumerate([armed, refused.job_id, broken])}
        assert ("before", refused.job_id, None) in seen and ("after", refused.job_id, "PermissionError") in seen
        assert ("after", armed, None) in seen and ("after", broken, None) in seen
        assert [s for s in seen if s[2] == "ValueError"]  # the failing task's after_job saw its error
        assert len(ids) == 3
        # (a call returns on its result; the queue learns the job is done just after)
        st = H.wait_until(lambda: (lambda s: s if s["done"] == 3 else None)(pool.status()), T, what="3 jobs done")
        assert st["hook_errors"] == 1 and st["failed"] == 2


def test_progress_reaches_the_future_and_status():
    from support import workers as W

    with honeydew.Pool(W.Hooked, num_workers=1) as pool:
        fut = pool.submit("steps", 50)
        assert fut.result(timeout=T) == 50
        assert fut.progress == (1.0, "step 50 of 50")  # the last report always arrives, before the result


def test_progress_outside_a_task_and_bad_fractions_are_refused():
    with pytest.raises(RuntimeError, match="only be called from a task"):
        honeydew.progress(0.5)
    with honeydew.Pool(num_workers=1) as pool:
        with pytest.raises(ValueError, match="fraction from 0 to 1"):
            pool.options(timeout=T).call(honeydew.progress, 1.5)


def test_status_counts_what_the_pool_did(tmp_path):
    with honeydew.Pool(num_workers=1, failure_mode=honeydew.Retry(times=1, backoff=0)) as pool:
        for i in range(5):
            assert pool.options(timeout=T).call(H.echo, i) == i
        with pytest.raises(Broken):
            pool.options(timeout=T).call(_fail, "twice")
        with pytest.raises(honeydew.WorkerCrashed):
            pool.options(timeout=T).call(H.crash_self)
        with pytest.raises(honeydew.JobTimeout):
            pool.options(timeout=T, job_timeout=0.2).call(H.nap, 30)
        st = H.wait_until(lambda: (lambda s: s if s["done"] == 5 else None)(pool.status()), T, what="5 jobs done")
        assert (st["done"], st["failed"], st["retried"]) == (5, 3, 3)
        assert (st["crashed"], st["timed_out"], st["hook_errors"]) == (2, 2, 0)
        assert st["jobs_per_s_60s"] >= 0 and st["jobs_per_s_10s"] >= 0


def test_map_draws_no_bar_when_stderr_is_not_a_terminal(capsys):
    with honeydew.Pool(num_workers=2) as pool:
        assert list(pool.map(H.echo, range(20), progress=True)) == list(range(20))
    assert capsys.readouterr().err == ""


# --- a task's own options -------------------------------------------------------------------------

def test_a_tasks_own_options_apply_and_a_jobs_override_them(tmp_path):
    from support import task_options as TO

    with honeydew.Pool(TO, num_workers=1, failure_mode=honeydew.Abandon(), suspended=True) as pool:
        # priority: the task's own (5) beats the pool's default (0); a job's own beats the task's
        order = [pool.submit("plain_stamp", str(tmp_path), "plain"),
                 pool.submit("urgent_stamp", str(tmp_path), "urgent"),
                 pool.options(priority=9).submit("plain_stamp", str(tmp_path), "first")]
        pool.resume()
        concurrent.futures.wait(order, timeout=T)
        assert _order(tmp_path) == ["first", "urgent", "plain"]
        # job_timeout: the task's own (0.3 s) applies; a job's own (30 s) overrides it
        with pytest.raises(honeydew.JobTimeout):
            pool.options(timeout=T).call("quick_nap", 10)
        assert pool.options(timeout=T, job_timeout=30).call("quick_nap", 0.5) == 0.5
        # failure_mode: the task's own Retry runs it again; the pool's Abandon gives the other up at once
        assert pool.options(timeout=T).call("flaky", str(tmp_path / "flaky")) == 2
        with pytest.raises(ValueError):
            pool.options(timeout=T).call("fails_once", str(tmp_path / "once"))


def test_a_jobs_own_failure_mode_overrides_its_tasks_and_the_pools(tmp_path):
    """Job's own > task's > pool's: ``flaky``'s own Retry(2) would run it again; the job's Abandon
    gives it up at once.  ``fails_once`` has none: the job's Retry beats the pool's Abandon."""
    from support import task_options as TO

    with honeydew.Pool(TO, num_workers=1, failure_mode=honeydew.Abandon()) as pool:
        with pytest.raises(ValueError, match="run 1 fails"):
            pool.options(timeout=T, failure_mode=honeydew.Abandon()).call("flaky", str(tmp_path / "flaky"))
        assert (tmp_path / "flaky").read_text() == "1"
        assert pool.options(timeout=T).call("flaky", str(tmp_path / "flaky-task")) == 2  # (the task's own still)
        retry = pool.options(timeout=T, failure_mode=honeydew.Retry(times=1, backoff=0))
        assert retry.call("fails_once", str(tmp_path / "once")) == 2
        assert retry.submit(TO.fails_once, str(tmp_path / "by-function")).result(timeout=T) == 2


@pytest.mark.parametrize("bad, error", [
    ({"job_timeout": 0}, ValueError), ({"failure_mode": honeydew.Retry}, TypeError),
    ({"priority": "high"}, TypeError), ({"failure_mode": "retry"}, TypeError),
])
def test_bad_task_options_are_refused_when_the_task_is_defined(bad, error):
    with pytest.raises(error, match="e.g."):
        honeydew.task(**bad)
