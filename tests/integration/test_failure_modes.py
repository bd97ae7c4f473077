"""Issue #2, failure modes with real processes: Abandon, Requeue, Retry and their composition.
Runs are counted with one file per run in ``tmp_path``."""

from __future__ import annotations

import pytest
from support import integration_helpers as H

import honeydew


def _pool(mode: honeydew.FailureMode, num_workers: int = 1) -> honeydew.Pool:
    return honeydew.Pool(num_workers=num_workers, failure_mode=mode, init_retry_secs=0.05)


# --- Abandon ------------------------------------------------------------------------------------

def test_abandon_is_the_default_and_runs_once(tmp_path):
    with honeydew.Pool(num_workers=1) as pool:
        with pytest.raises(ValueError):
            pool.call(H.fail_counted, str(tmp_path), ValueError)
        assert H.count_runs(tmp_path) == 1
        with pytest.raises(honeydew.WorkerCrashed):
            pool.options(timeout=20).call(H.always_crash, str(tmp_path))
        assert H.count_runs(tmp_path) == 2
        assert pool.call(H.echo, 1) == 1


def test_explicit_abandon_crash(tmp_path):
    with _pool(honeydew.Abandon()) as pool:
        with pytest.raises(honeydew.WorkerCrashed):
            pool.options(timeout=20).call(H.always_crash, str(tmp_path))
        assert pool.call(H.echo, 1) == 1
    assert H.count_runs(tmp_path) == 1


# --- Requeue ------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_requeue_redelivers_a_crashing_job_until_it_succeeds(tmp_path):
    with _pool(honeydew.Requeue(max_deliveries=3)) as pool:
        deliveries, pid = pool.options(timeout=30).call(H.crash_until, str(tmp_path), 3)
        assert deliveries == 3
        assert pool.call(H.getpid) == pid
    assert H.count_runs(tmp_path) == 3


@pytest.mark.timeout(60)
def test_requeue_gives_up_after_max_deliveries(tmp_path):
    with _pool(honeydew.Requeue(max_deliveries=2)) as pool:
        with pytest.raises(honeydew.WorkerCrashed) as info:
            pool.options(timeout=30).call(H.always_crash, str(tmp_path))
        assert info.value.signal_name == "SIGKILL"
        assert H.count_runs(tmp_path) == 2
        assert pool.call(H.echo, "ok") == "ok"
    assert H.count_runs(tmp_path) == 2


def test_requeue_applies_to_raised_exceptions_too(tmp_path):
    with _pool(honeydew.Requeue(max_deliveries=3)) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30).call(H.fail_counted, str(tmp_path), ValueError)
    assert H.count_runs(tmp_path) == 3


def test_requeue_puts_the_job_at_the_tail(tmp_path):
    """One worker: a crashed job is redelivered after the jobs queued behind it."""
    markers = [str(tmp_path / f"m{i}") for i in range(3)]
    with _pool(honeydew.Requeue(max_deliveries=2)) as pool:
        first = pool.submit(H.crash_once_then_report, str(tmp_path), markers)
        later = [pool.submit(H.touch, m) for m in markers]
        assert first.result(timeout=30) == [True, True, True]
        assert [f.result(timeout=30) for f in later] == markers


def test_requeue_then_retry_composition(tmp_path):
    mode = honeydew.Requeue(max_deliveries=2, then=honeydew.Retry(times=1, backoff=0.01))
    with _pool(mode) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30).call(H.fail_counted, str(tmp_path), ValueError)
    assert H.count_runs(tmp_path) == 3


# --- Retry --------------------------------------------------------------------------------------

def test_retry_runs_times_plus_one_then_raises(tmp_path):
    with _pool(honeydew.Retry(times=2, backoff=0.05, on=(ValueError,))) as pool:
        with pytest.raises(ValueError) as info:
            pool.options(timeout=30).call(H.fail_counted, str(tmp_path), ValueError)
        assert "run 3" in str(info.value)
    assert H.count_runs(tmp_path) == 3


def test_retry_until_success_returns_the_result(tmp_path):
    with _pool(honeydew.Retry(times=3, backoff=0.01)) as pool:
        assert pool.options(timeout=30).call(H.fail_until, str(tmp_path), 3) == 3
    assert H.count_runs(tmp_path) == 3


def test_retry_on_does_not_retry_other_exceptions(tmp_path):
    with _pool(honeydew.Retry(times=3, backoff=0.01, on=(KeyError,))) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30).call(H.fail_counted, str(tmp_path), ValueError)
        assert H.count_runs(tmp_path) == 1
        (tmp_path / "k").mkdir()
        with pytest.raises(KeyError):
            pool.options(timeout=30).call(H.fail_counted, str(tmp_path / "k"), KeyError)
        assert H.count_runs(tmp_path / "k") == 4


def test_retry_matches_subclasses(tmp_path):
    with _pool(honeydew.Retry(times=1, backoff=0.01, on=(LookupError,))) as pool:
        with pytest.raises(KeyError):
            pool.options(timeout=30).call(H.fail_counted, str(tmp_path), KeyError)
    assert H.count_runs(tmp_path) == 2


@pytest.mark.timeout(60)
def test_retry_on_worker_crashed(tmp_path):
    with _pool(honeydew.Retry(times=2, backoff=0.01, on=(honeydew.WorkerCrashed,))) as pool:
        with pytest.raises(honeydew.WorkerCrashed):
            pool.options(timeout=30).call(H.always_crash, str(tmp_path))
        assert pool.call(H.echo, 1) == 1
    assert H.count_runs(tmp_path) == 3


@pytest.mark.timeout(60)
def test_retry_then_requeue_composition(tmp_path):
    """Delivery 1 crashes (not a ValueError: goes to ``then``, Requeue); deliveries 2 and 3 raise
    ValueError: the first is retried, the second exhausts Retry and Requeue's cap: given up."""
    mode = honeydew.Retry(times=1, backoff=0.01, on=(ValueError,), then=honeydew.Requeue(max_deliveries=3))
    with _pool(mode) as pool:
        with pytest.raises(ValueError, match="delivery 3"):
            pool.options(timeout=30).call(H.crash_then_raise, str(tmp_path))
        assert pool.call(H.echo, 1) == 1
    assert H.count_runs(tmp_path) == 3


def test_retry_then_requeue_counts_every_delivery(tmp_path):
    mode = honeydew.Retry(times=1, backoff=0.01, on=(ValueError,), then=honeydew.Requeue(max_deliveries=4))
    with _pool(mode) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30).call(H.fail_counted, str(tmp_path), ValueError)
    assert H.count_runs(tmp_path) == 4


def test_retry_backoff_doubles(tmp_path):
    with _pool(honeydew.Retry(times=3, backoff=0.1)) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30).call(H.fail_timed, str(tmp_path))
    times = H.run_times(tmp_path)
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4], strict=True):
        assert gap >= delay * 0.9, (gaps, "a retry came before its back-off")


def test_retry_backoff_callable(tmp_path):
    calls = tmp_path / "backoff"
    calls.mkdir()

    def backoff(attempt: int) -> float:
        (calls / f"attempt-{attempt}").touch()
        return 0.05 * attempt

    with _pool(honeydew.Retry(times=3, backoff=backoff)) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30).call(H.fail_timed, str(tmp_path))
    assert sorted(p.name for p in calls.iterdir()) == ["attempt-1", "attempt-2", "attempt-3"]
    times = H.run_times(tmp_path)
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.15], strict=True):
        assert gap >= delay * 0.9, gaps


def test_retry_backoff_importable_callable(tmp_path):
    with _pool(honeydew.Retry(times=2, backoff=H.backoff_delay)) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30).call(H.fail_timed, str(tmp_path))
    assert len(H.run_times(tmp_path)) == 3


def test_retry_delay_does_not_block_the_worker(tmp_path):
    """One worker: while a job waits out a long back-off, other jobs run on that worker."""
    with _pool(honeydew.Retry(times=1, backoff=3.0)) as pool:
        fut = pool.submit(H.fail_until, str(tmp_path), 2)
        H.wait_until(lambda: H.count_runs(tmp_path) >= 1, 10, what="the first run")
        assert [pool.options(timeout=2.5).call(H.echo, i) for i in range(3)] == [0, 1, 2]
        assert not fut.done()          # still in its back-off, yet the worker served others
        assert fut.result(timeout=20) == 2
    assert H.count_runs(tmp_path) == 2


# --- map items go through the failure mode too ------------------------------------------------------

def _map(pool: honeydew.Pool, tmp_path, n: int, flaky: int, failures: int,
         broken: int) -> tuple[list[int], Exception | None]:
    out: list[int] = []
    try:
        for v in pool.map(H.flaky_item, [str(tmp_path)] * n, range(n), [flaky] * n, [failures] * n, [broken] * n,
                          chunksize=3):
            out.append(v)
    except Exception as e:  # noqa: BLE001 - the test looks at which one
        return out, e
    return out, None


def test_retry_reruns_a_map_chunk_whose_item_raised(tmp_path):
    with _pool(honeydew.Retry(times=2, backoff=0.01), num_workers=2) as pool:
        out, err = _map(pool, tmp_path, 12, flaky=7, failures=2, broken=-1)
        assert err is None
        assert out == [i * 10 for i in range(12)]
        assert pool.call(H.echo, "ok") == "ok"
    assert H.item_runs(tmp_path, 7) == 3           # failed twice, then succeeded
    assert H.item_runs(tmp_path, 6) == 3           # its chunk ran with it (at-least-once)
    assert H.item_runs(tmp_path, 0) == 1           # other chunks ran once


def test_a_given_up_map_chunk_yields_its_good_items_then_raises_at_the_failing_one(tmp_path):
    # KeyError is not retried: the chunk is given up at once, with every item's outcome
    with _pool(honeydew.Retry(times=3, backoff=0.01, on=(ValueError,)), num_workers=2) as pool:
        out, err = _map(pool, tmp_path, 12, flaky=-1, failures=0, broken=10)
        assert isinstance(err, KeyError)
        assert out == [i * 10 for i in range(10)]
    assert H.item_runs(tmp_path, 10) == 1
    assert H.item_runs(tmp_path, 11) == 1          # the rest of the chunk ran too


def test_a_map_item_that_keeps_failing_is_retried_then_raised_where_it_stands(tmp_path):
    with _pool(honeydew.Retry(times=2, backoff=0.01), num_workers=1) as pool:
        out, err = _map(pool, tmp_path, 9, flaky=4, failures=10, broken=-1)
        assert isinstance(err, ValueError)
        assert out == [0, 10, 20, 30]
    assert H.item_runs(tmp_path, 4) == 3           # the first run and two retries


def test_requeue_redelivers_a_map_chunk_whose_item_raised(tmp_path):
    with _pool(honeydew.Requeue(max_deliveries=3), num_workers=2) as pool:
        out, err = _map(pool, tmp_path, 6, flaky=1, failures=1, broken=-1)
        assert err is None
        assert out == [i * 10 for i in range(6)]
    assert H.item_runs(tmp_path, 1) == 2


def test_abandon_runs_a_failing_map_chunk_once(tmp_path):
    with honeydew.Pool(num_workers=2) as pool:
        out, err = _map(pool, tmp_path, 6, flaky=4, failures=5, broken=-1)
        assert isinstance(err, ValueError)
        assert out == [0, 10, 20, 30]
    assert H.item_runs(tmp_path, 4) == 1


# --- a job's own failure mode: pool.options(failure_mode=...) ------------------------------------

def test_a_jobs_own_retry_overrides_the_pools_abandon(tmp_path):
    own, plain, call, cast = (tmp_path / name for name in ("own", "plain", "call", "cast"))
    for d in (own, plain, call, cast):
        d.mkdir()
    with _pool(honeydew.Abandon()) as pool:
        fut = pool.options(failure_mode=honeydew.Retry(times=2, backoff=0.01)).submit(H.fail_counted, str(own),
                                                                                       ValueError)
        with pytest.raises(ValueError, match="run 3"):
            fut.result(timeout=30)
        assert H.count_runs(own) == 3
        with pytest.raises(ValueError):  # the next job without one gets the pool's Abandon
            pool.options(timeout=30).call(H.fail_counted, str(plain), ValueError)
        assert H.count_runs(plain) == 1
        # cast and call carry it too
        opts = pool.options(failure_mode=honeydew.Retry(times=3, backoff=0.01), timeout=30)
        assert opts.call(H.fail_until, str(call), 3) == 3
        opts.cast(H.fail_until, str(cast), 2)
        H.wait_until(lambda: H.count_runs(cast) == 2, 30, what="the cast's retry")


def test_a_jobs_own_abandon_overrides_the_pools_retry(tmp_path):
    with _pool(honeydew.Retry(times=3, backoff=0.01)) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30, failure_mode=honeydew.Abandon()).call(H.fail_counted, str(tmp_path), ValueError)
        assert H.count_runs(tmp_path) == 1


@pytest.mark.timeout(60)
def test_a_jobs_own_failure_mode_handles_its_crashes_and_time_outs(tmp_path):
    with _pool(honeydew.Abandon()) as pool:
        deliveries, _pid = pool.options(timeout=30, failure_mode=honeydew.Requeue(max_deliveries=3)).call(
            H.crash_until, str(tmp_path), 3)
        assert deliveries == 3 and H.count_runs(tmp_path) == 3
        with pytest.raises(honeydew.JobTimeout):
            pool.options(timeout=30, job_timeout=0.3,
                         failure_mode=honeydew.Retry(times=1, backoff=0.01, on=honeydew.JobTimeout)).call(H.nap, 30)
        assert pool.status()["timed_out"] == 2  # run, timed out, retried once, timed out again
        assert pool.call(H.echo, "still serving") == "still serving"


def test_a_jobs_own_move_keeps_it_in_the_failed_store(tmp_path):
    with _pool(honeydew.Abandon()) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=30, failure_mode=honeydew.Move()).call(H.fail_counted, str(tmp_path), ValueError)
        [kept] = pool.failed()
        assert "ValueError" in kept.error and kept.deliveries == 1
        assert pool.retry_failed() == 1
        H.wait_until(lambda: H.count_runs(tmp_path) == 2 and pool.failed(), 30, what="the retried job to fail again")


@pytest.mark.parametrize("bad, error, says", [
    ("retry", TypeError, "must be a honeydew.FailureMode instance"),
    (honeydew.Retry, TypeError, "got the class"),
    (lambda: None, TypeError, "must be a honeydew.FailureMode instance"),
])
def test_a_bad_failure_mode_of_a_job_is_refused_and_the_pool_goes_on(bad, error, says):
    with _pool(honeydew.Abandon()) as pool:
        with pytest.raises(error, match=rf"{says}.*e\.g\. pool\.options\(failure_mode=honeydew\.Retry"):
            pool.options(failure_mode=bad)
        assert pool.call(H.echo, 1) == 1


def test_an_unpicklable_failure_mode_of_a_job_is_refused_and_the_pool_goes_on(tmp_path):
    import threading

    mode = honeydew.Retry(times=1)
    mode.guard = threading.Lock()  # (a user's subclass holding a lock, say)
    with _pool(honeydew.Abandon()) as pool:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pool.options(failure_mode=mode).submit(H.echo, 1)
        assert pool.call(H.echo, 1) == 1
