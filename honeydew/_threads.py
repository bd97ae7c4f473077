"""The native thread pools of the workers (BLAS, OpenMP): limited so that CPU batches do not
oversubscribe the machine.  [supervisor, once at start; every worker inherits it]

N workers that each run a NumPy/SciPy/scikit-learn call with one BLAS or OpenMP thread per CPU
start N × CPUs threads on CPUs cores: they fight for the cores and the batch runs slower than
with one thread each.  So the pool limits the native thread pools of its workers, by default to
``CPUs usable by the pool's process // num_workers`` (at least 1), as loky does for joblib.

Two mechanisms, because a library may be loaded before the pool starts or after:

* libraries already loaded (imported by the caller before the pool forked its supervisor) are
  limited at run time with ``threadpoolctl``, which finds them among the loaded shared objects
  and calls their own ``*_set_num_threads``;
* libraries loaded later (in ``init`` or in a task) read the usual environment variables when they
  load, so those are set.

Both are done once, in the supervisor before it forks anything: the limits are process memory and
environment, which every monitor and worker inherits, so a worker pays nothing for them (doing it
in each worker cost ~0.4 MiB of private memory per worker, ~0.8 MiB with threadpoolctl's look).
``Pool(threads_per_worker=None)`` leaves both alone; an ``int`` sets the limit.
"""

from __future__ import annotations

import os

#: read by OpenMP runtimes, OpenBLAS, MKL, BLIS, Apple Accelerate and numexpr when they load
ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def auto_limit(num_workers: int) -> int:
    """The default: the CPUs this process may use, shared among the workers."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, num_workers))


#: file name prefixes of the native libraries with a thread pool threadpoolctl can limit
LIBRARY_PREFIXES = (b"libopenblas", b"libscipy_openblas", b"libmkl_rt", b"libblis", b"libflexiblas", b"libgomp",
                    b"libiomp", b"libomp", b"libvcomp")


def limit(threads: int | None) -> None:
    """At most ``threads`` native threads per pool in this process and its children (None: no limit)."""
    if threads is None:
        return
    for var in ENV_VARS:
        os.environ[var] = str(threads)
    if native_pools_loaded():
        # (imported only then: threadpoolctl's look costs ~0.7 MiB of private memory)
        import threadpoolctl

        threadpoolctl.threadpool_limits(limits=threads)


def native_pools_loaded() -> bool:
    """Is a library with a native thread pool mapped into this process already?"""
    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return True  # cannot tell: let threadpoolctl look
    for line in maps.split(b"\n"):
        name = line.rpartition(b"/")[2]
        if name.startswith(LIBRARY_PREFIXES):
            return True
    return False
