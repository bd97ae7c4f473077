"""What the fresh-interpreter scripts share: one system's pool, made and used as its users do.

The scripts in this directory run as files (``python benchmarks/scripts/NAME.py SYSTEM ...``), so
this directory comes first on their ``sys.path`` and they import this module as ``_pools``; it
holds nothing of theirs, so their ``__main__`` stays what a user's script would be.  Every pool
has ``--workers`` workers (the harness passes ``benchmarks.systems.WORKERS``: 2) and each side's
default options: ``honeydew.Pool(num_workers=2)``, ``multiprocessing.Pool(2)``,
``concurrent.futures.ProcessPoolExecutor(2)``; the scripts leave each by its own ``with`` exit.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

HONEYDEW = "honeydew"
MP = "mp.Pool"
PPE = "ProcessPoolExecutor"
SYSTEMS = (HONEYDEW, MP, PPE)
WORKERS = 2


def parser(doc: str, size: int | None = None, size_help: str = "") -> argparse.ArgumentParser:
    """``SYSTEM [SIZE] [--workers N]`` (a worker spawned by ``multiprocessing`` that re-imports the
    script as ``__mp_main__`` gets the same ``sys.argv``, so parsing it at module level is safe)."""
    ap = argparse.ArgumentParser(description=doc.strip().split("\n\n")[0])
    ap.add_argument("system", choices=SYSTEMS)
    if size is not None:
        ap.add_argument("size", type=int, nargs="?", default=size, help=f"{size_help} (default {size:_})")
    ap.add_argument("--workers", type=int, default=WORKERS, help=f"workers of the pool (default {WORKERS})")
    return ap


def factory(system: str, workers: int) -> Callable[[], Any]:
    """A constructor of a fresh pool of ``system``; its library is imported now, outside any timing."""
    if system == HONEYDEW:
        import psutil  # noqa: F401  (for find_process; honeydew depends on it anyway)

        import honeydew
        return functools.partial(honeydew.Pool, num_workers=workers)
    if system == MP:
        import multiprocessing
        return functools.partial(multiprocessing.Pool, workers)
    if system == PPE:
        import concurrent.futures
        return functools.partial(concurrent.futures.ProcessPoolExecutor, workers)
    raise ValueError(f"unknown system {system!r}")


def call(system: str, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """One blocking call: ``pool.call``, ``Pool.apply``, ``submit().result()``."""
    if system == HONEYDEW:
        return pool.call(fn, *args)
    if system == MP:
        return pool.apply(fn, args)
    return pool.submit(fn, *args).result()


def map_list(pool: Any, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
    """``pool.map`` with each side's default chunking, as a list."""
    return list(pool.map(fn, items))


def threads() -> int:
    """This process's OS threads (honeydew forks only from a single-threaded caller)."""
    return len(os.listdir("/proc/self/task"))


def start_method(pool: Any) -> str | None:
    """honeydew's ``Pool.start_method`` (``fork`` or ``spawn``); None for the others."""
    return getattr(pool, "start_method", None)


def find_process(name: str, timeout: float = 5.0) -> Any:
    """The descendant of this process named ``name`` (a ``psutil.Process``; honeydew names its
    processes, e.g. ``hd-queue-0``; a process may still carry its parent's name for a moment after
    its fork)."""
    import psutil
    end = time.monotonic() + timeout
    while True:
        for p in psutil.Process().children(recursive=True):
            try:
                if p.name() == name:
                    return p
            except psutil.Error:
                continue
        if time.monotonic() > end:
            raise LookupError(f"no descendant process named {name!r} within {timeout}s")
        time.sleep(0.005)


def process_uss(name: str, timeout: float = 5.0) -> int:
    """USS of the descendant of this process named ``name`` (see :func:`find_process`)."""
    return int(find_process(name, timeout).memory_full_info().uss)


class UssSampler:
    """Reads the USS of one process from a background thread every ``interval_s`` (one read right
    away, then one per interval, one last at :meth:`stop`): its peak, not just its last value (a
    process that held a big buffer a moment ago may have handed it back to the OS since).  Each
    read (``memory_full_info``: ``/proc/PID/smaps_rollup``) costs this process CPU, so a run that
    samples is not a timed run."""

    def __init__(self, proc: Any, interval_s: float = 0.002) -> None:
        import threading
        self.proc, self.interval_s = proc, interval_s
        self.first: int | None = None
        self.last: int | None = None
        self.peak = 0
        self.samples = 0
        self.max_gap_s = 0.0
        self._t_last = 0.0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uss-sampler", daemon=True)

    def _read(self) -> None:
        uss = int(self.proc.memory_full_info().uss)
        now = time.perf_counter()
        if self.samples:
            self.max_gap_s = max(self.max_gap_s, now - self._t_last)
        else:
            self.first = uss
        self._t_last = now
        self.last = uss
        self.peak = max(self.peak, uss)
        self.samples += 1

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self._read()
        except BaseException as e:  # e.g. the process is gone: stop() raises it
            self._error = e

    def start(self) -> UssSampler:
        self._read()
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop the thread, take one last read; the figures in bytes (``max_gap_ms``: the longest
        time between two reads, which says how fine the sampling really was)."""
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"the USS sampler of process {self.proc.pid} failed") from self._error
        self._read()
        return {"first": self.first, "last": self.last, "peak": self.peak, "samples": self.samples,
                "interval_ms": self.interval_s * 1000, "max_gap_ms": self.max_gap_s * 1000}


def emit(result: dict[str, Any]) -> None:
    """The script's result: one JSON line on stdout (the harness reads the last such line)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
