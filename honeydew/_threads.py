"""The native thread pools of a worker (BLAS, OpenMP): limited so that CPU batches do not
oversubscribe the machine.  [worker]

N workers that each run a NumPy/SciPy/scikit-learn call with one BLAS or OpenMP thread per CPU
start N × CPUs threads on CPUs cores: they fight for the cores and the batch runs slower than
with one thread each.  So each worker limits its native thread pools, by default to
``CPUs usable by the pool's process // num_workers`` (at least 1), as loky does for joblib.

Two mechanisms, because a library may be loaded before the worker starts or after:

* libraries already loaded (imported by the caller before the pool forked) are limited at run time
  with ``threadpoolctl``, which finds them among the loaded shared objects and calls their own
  ``*_set_num_threads``;
* libraries loaded later (in ``init`` or in a task) read the usual environment variables when they
  load, so those are set in the worker before ``init`` runs.

``Pool(threads_per_worker=None)`` leaves both alone; an ``int`` sets the limit.
"""

from __future__ import annotations

import os

import threadpoolctl

#: read by OpenMP runtimes, OpenBLAS, MKL, BLIS, Apple Accelerate and numexpr when they load
ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def auto_limit(num_workers: int) -> int:
    """The default: the CPUs this process may use, shared among the workers."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, num_workers))


def limit(threads: int | None) -> None:
    """In a worker, before ``init``: at most ``threads`` native threads per pool (None: no limit)."""
    if threads is None:
        return
    for var in ENV_VARS:
        os.environ[var] = str(threads)
    threadpoolctl.threadpool_limits(limits=threads)
