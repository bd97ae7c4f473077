"""Native thread pools (BLAS, OpenMP): whether they make forking the caller unsafe, and limiting
them in the workers so that CPU batches do not oversubscribe the machine.
[caller: :func:`fork_hazard`; supervisor, once at start: :func:`limit`; every worker inherits it]

**Forking.**  A process forked from a multi-threaded parent holds a copy of every lock some other
thread held at that moment, and only the forking thread: a Python thread that held the GIL's
companions (the import lock, a logging lock, a lock of the user's) makes the child hang.  Not every
thread is that hazard.  NumPy's default wheels load OpenBLAS, whose pthreads pool starts at import
and registers fork handlers that shut it down before a fork and restart it after; MKL's and the
Intel/LLVM OpenMP runtimes do the same.  GNU OpenMP (libgomp) does not: its threads are gone in the
child and the next parallel region there waits for them for ever.  :func:`fork_hazard` therefore
tells the threads apart, cheaply (no threadpoolctl on this path): any other Python thread is a
hazard, libgomp is, and native threads are not when the fork-safe pools mapped in the process can
account for them (OpenBLAS is asked its pool's size).  A Python thread that makes itself safe to
fork over is not a hazard either: ``honeydew.control``'s server thread holds nothing while a fork
runs (an at-fork handler waits until it is idle) and says so (:func:`mark_fork_safe`).

**Limits.**  N workers that each run a NumPy/SciPy/scikit-learn call with one BLAS or OpenMP thread
per CPU start N × CPUs threads on CPUs cores: they fight for the cores and the batch runs slower
than with one thread each.  So the pool limits the native thread pools of its workers, by default
to ``CPUs usable by the pool's process // num_workers`` (at least 1), as loky does for joblib.
Libraries already loaded are limited at run time (OpenBLAS through its own ``set_num_threads``,
found with ``ctypes`` in a fraction of a millisecond; any other through ``threadpoolctl``); libraries
loaded later (in ``init`` or a task) read the usual environment variables, which are set too.  Both
are done once, in the supervisor before it forks any monitor: limits are process memory and
environment, which every monitor and worker inherits, so a worker pays nothing for them.
``Pool(threads_per_worker=None)`` leaves both alone; an ``int`` sets the limit.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

#: read by OpenMP runtimes, OpenBLAS, MKL, BLIS, Apple Accelerate and numexpr when they load
ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

#: file name prefixes of the native libraries with a thread pool threadpoolctl can limit
LIBRARY_PREFIXES = (b"libopenblas", b"libscipy_openblas", b"libmkl_rt", b"libblis", b"libflexiblas", b"libgomp",
                    b"libiomp", b"libomp", b"libvcomp")
_OPENBLAS = (b"libopenblas", b"libscipy_openblas")
#: pools that restart themselves after a fork (their own fork handlers), so their threads may be forked over
_FORK_SAFE = (b"libmkl_rt", b"libiomp", b"libomp")
_GNU_OPENMP = b"libgomp"


def auto_limit(num_workers: int) -> int:
    """The default: the CPUs this process may use, shared among the workers."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, num_workers))


def loaded_pools() -> dict[bytes, str]:
    """The thread-pool libraries mapped into this process: file name prefix -> path."""
    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return {}
    out: dict[bytes, str] = {}
    for line in maps.split(b"\n"):
        path = line.partition(b"/")[2]
        if not path:
            continue
        name = path.rpartition(b"/")[2]
        if name.startswith(LIBRARY_PREFIXES):
            prefix = next(p for p in LIBRARY_PREFIXES if name.startswith(p))
            out.setdefault(prefix, os.fsdecode(b"/" + path))
    return out


class _OpenBLAS:
    """OpenBLAS's own thread API, reached with ctypes (its symbols carry a prefix and a suffix
    that depend on the build: ``scipy_openblas_set_num_threads64_`` in NumPy 2's wheels)."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        self.affixes = next(((p, s) for p in ("", "scipy_") for s in ("", "64_", "_64")
                             if hasattr(self.lib, f"{p}openblas_get_num_threads{s}")), None)

    def _fn(self, name: str) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
        if self.affixes is None:
            return None
        return getattr(self.lib, f"{self.affixes[0]}{name}{self.affixes[1]}", None)

    def threading_layer(self) -> str:
        fn = self._fn("openblas_get_parallel")
        return {1: "pthreads", 2: "openmp"}.get(fn(), "disabled") if fn is not None else "unknown"

    def num_threads(self) -> int:
        fn = self._fn("openblas_get_num_threads")
        return int(fn()) if fn is not None else 0

    def set_num_threads(self, n: int) -> bool:
        fn = self._fn("openblas_set_num_threads")
        if fn is None:
            return False
        fn(n)
        return True


#: The Python threads that are safe to fork over, by native id (with when each said so): each holds
#: none of its locks while a fork runs (an at-fork handler waits until it is idle).  honeydew.control's
#: server thread is one (:func:`mark_fork_safe`); an id is forgotten once its thread is gone.
fork_safe_tids: dict[int, float] = {}


def mark_fork_safe(native_id: int | None = None) -> None:
    """The calling thread (or the one of ``native_id``) is safe to fork over (see
    :data:`fork_safe_tids`); it stays so until it ends."""
    fork_safe_tids[threading.get_native_id() if native_id is None else native_id] = time.monotonic()


def fork_hazard() -> str:
    """Why forking this process now is unsafe ('' when it is safe: see the module docstring)."""
    looked = time.monotonic()
    tids = os.listdir("/proc/self/task")
    present = {int(t) for t in tids}
    # (an id marked after the look above may be missing from it: only older ones are gone for good)
    for tid, since in list(fork_safe_tids.items()):
        if tid not in present and since < looked:
            fork_safe_tids.pop(tid, None)
    if len(tids) == 1:
        return ""
    safe = {tid for tid in list(fork_safe_tids) if tid in present}
    me = threading.current_thread()
    others = [t.name for t in threading.enumerate() if t is not me and t.native_id not in safe]
    if others:
        return f"it runs other Python threads ({', '.join(sorted(others)[:5])})"
    native = len(tids) - 1 - len(safe)
    if native <= 0:
        return ""
    pools = loaded_pools()
    if _GNU_OPENMP in pools:
        return "GNU OpenMP (libgomp) is loaded, and its threads do not survive a fork"
    if any(p in pools for p in _FORK_SAFE):
        return ""
    explained = 0
    for prefix in _OPENBLAS:
        if prefix in pools:
            try:
                blas = _OpenBLAS(pools[prefix])
                if blas.threading_layer() == "pthreads":
                    explained += max(0, blas.num_threads() - 1)
            except OSError:
                pass
    if native <= explained:
        return ""
    return f"it runs {native} native thread(s) that no fork-safe BLAS/OpenMP pool accounts for"


def limit(threads: int | None) -> None:
    """At most ``threads`` native threads per pool in this process and its children (None: no limit)."""
    if threads is None:
        return
    for var in ENV_VARS:
        os.environ[var] = str(threads)
    pools = loaded_pools()
    rest = [p for p in pools if p not in _OPENBLAS]
    for prefix in _OPENBLAS:
        if prefix in pools:
            try:
                blas = _OpenBLAS(pools[prefix])
                if blas.threading_layer() == "pthreads" and blas.set_num_threads(threads):
                    continue
            except OSError:
                pass
            rest.append(prefix)
    if rest:
        # (imported only then: threadpoolctl's look costs milliseconds and ~0.7 MiB of private memory)
        import threadpoolctl

        threadpoolctl.threadpool_limits(limits=threads, user_api=None)

