"""Issue #2: ``init`` runs once per worker process, state lives with the worker,
``current_job()`` and ``restart_worker()`` inside tasks."""

from __future__ import annotations

import pytest
from support import integration_helpers as H
from support import workers as W

import honeydew


def test_init_runs_once_per_worker_not_per_job(tmp_path):
    with honeydew.Pool(H, [str(tmp_path)], num_workers=2, init_retry_secs=0.05) as pool:
        results = [pool.call("state_of") for _ in range(30)]
        results += list(pool.map(H.state_of, [], chunksize=1))
        futs = [pool.submit(H.getpid) for _ in range(30)]
        job_pids = {f.result(timeout=20) for f in futs}
    attempts = H.init_attempts(tmp_path)
    init_pids = [pid for pid, _ in attempts]
    assert len(attempts) == 2, attempts          # exactly one init per worker
    assert len(set(init_pids)) == 2
    assert {r["pid"] for r in results} <= set(init_pids)
    assert job_pids <= set(init_pids)


def test_state_timestamp_is_the_same_for_every_job_of_a_worker():
    with honeydew.Pool(W, ["p"], num_workers=1) as pool:
        created = {pool.call(lambda state: state["created"]) for _ in range(20)}
        pids = {pool.call("whoami") for _ in range(5)}
    assert len(created) == 1
    assert len(pids) == 1


def test_state_persists_across_jobs_of_one_worker(tmp_path):
    with honeydew.Pool(H, [str(tmp_path)], num_workers=1) as pool:
        seen = [pool.call("bump") for _ in range(5)]
    pid = seen[0][0]
    assert seen == [(pid, n) for n in range(1, 6)]


def test_current_job_inside_a_task():
    with honeydew.Pool(num_workers=1) as pool:
        fut = pool.submit(H.job_info)
        job_id, deliveries, worker, _pid = fut.result(timeout=10)
        assert job_id == fut.job_id
        assert deliveries == 1
        assert worker == 0
        cast_id = pool.cast(H.echo, None)
        assert pool.call(H.job_info)[0] not in (job_id, cast_id)


def test_current_job_ids_match_call_and_cast(tmp_path):
    with honeydew.Pool(W, [], num_workers=1) as pool:
        got = pool.call(lambda state: honeydew.current_job())
        assert isinstance(got, tuple)
        assert got[1] == 1


def test_current_job_outside_a_task_raises():
    with pytest.raises(RuntimeError):
        honeydew.current_job()
    with pytest.raises(RuntimeError):
        honeydew.restart_worker()


def test_current_job_deliveries_grow_after_requeue(tmp_path):
    """A task that crashes its worker on the first delivery sees deliveries == 2 on the redelivery."""
    with honeydew.Pool(num_workers=1, failure_mode=honeydew.Requeue(max_deliveries=3),
                       init_retry_secs=0.05) as pool:
        deliveries, _pid = pool.options(timeout=30).call(H.crash_until, str(tmp_path), 2)
    assert deliveries == 2
    assert H.count_runs(tmp_path) == 2


def test_restart_worker_gives_a_fresh_worker_and_the_result_arrives(tmp_path):
    with honeydew.Pool(H, [str(tmp_path)], num_workers=1, init_retry_secs=0.05) as pool:
        first_pid, jobs = pool.call("bump")
        assert jobs == 1
        assert pool.call("bump") == (first_pid, 2)
        assert pool.call(H.restart_me) == first_pid            # the job's result still arrives
        new_pid, jobs = pool.options(timeout=10).call("bump")
        assert new_pid != first_pid
        assert jobs == 1                                        # fresh state from a new init
        assert H.wait_gone([first_pid], 5) == []
    attempts = H.init_attempts(tmp_path)
    assert [pid for pid, _ in attempts] == [first_pid, new_pid]


def test_restart_worker_from_a_cast_job(tmp_path):
    with honeydew.Pool(W, [], num_workers=1, init_retry_secs=0.05) as pool:
        before = pool.call("whoami")
        pool.cast(H.restart_me)
        after = pool.call("whoami")
        assert after != before
        assert pool.call("whoami") == after
