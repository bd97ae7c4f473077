"""Each worker's native (BLAS/OpenMP) thread pools are limited by default, so CPU batches do not
oversubscribe the machine; ``threads_per_worker`` sets the limit or (None) leaves them alone."""

from __future__ import annotations

import os
from typing import Any

import pytest

import honeydew
from honeydew import _threads

np = pytest.importorskip("numpy")  # the bench extra brings it (make test installs it)
threadpoolctl = pytest.importorskip("threadpoolctl")


def native_threads(*_state: Any) -> tuple[dict[str, str | None], list[int]]:
    """The thread-count environment variables and every loaded BLAS/OpenMP pool's thread count."""
    env = {var: os.environ.get(var) for var in _threads.ENV_VARS}
    return env, sorted(info["num_threads"] for info in threadpoolctl.threadpool_info())


def blas_product(n: int, *_state: Any) -> float:
    a = np.ones((n, n))
    return float((a @ a)[0, 0])


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_default_limit_is_the_cpus_shared_among_the_workers(start_method):
    """Forked, the supervisor inherits the caller's loaded BLAS and limits it; spawned, it starts
    without it and the workers load it (importing this module) under the environment's limit."""
    cpus = len(os.sched_getaffinity(0))
    assert threadpoolctl.threadpool_info(), "numpy's BLAS is loaded in the caller"
    for workers in (1, 2, 4):
        expected = max(1, cpus // workers)
        with honeydew.Pool(num_workers=workers, start_method=start_method) as pool:
            assert pool.threads_per_worker == expected
            env, pools = pool.call(native_threads)
        # the BLAS the caller had loaded before the fork is limited at run time ...
        assert pools and all(n == expected for n in pools), pools
        # ... and libraries loaded later (in init or a task) read the environment
        assert all(v == str(expected) for v in env.values()), env


def test_explicit_limit_applies_to_every_worker_and_to_init():
    seen = set()
    with honeydew.Pool(num_workers=2, threads_per_worker=1) as pool:
        for _ in range(8):
            env, pools = pool.call(native_threads)
            seen.add((env["OMP_NUM_THREADS"], tuple(pools)))
        assert pool.call(blas_product, 64) == 64.0  # BLAS still works with one thread
    assert all(omp == "1" and all(n == 1 for n in pools) for omp, pools in seen), seen


def test_none_leaves_the_native_pools_alone(monkeypatch):
    for var in _threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    caller = sorted(info["num_threads"] for info in threadpoolctl.threadpool_info())
    with honeydew.Pool(num_workers=2, threads_per_worker=None) as pool:
        assert pool.threads_per_worker is None
        env, pools = pool.call(native_threads)
    assert env == {var: None for var in _threads.ENV_VARS}
    assert pools == caller


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True])
def test_bad_threads_per_worker_is_refused_before_any_process_starts(bad):
    with pytest.raises(ValueError, match="threads_per_worker"):
        honeydew.Pool(num_workers=1, threads_per_worker=bad)
