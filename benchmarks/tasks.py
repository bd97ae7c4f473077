"""The work every system runs: module-level functions, so each side pickles them by reference.
Imports nothing but the standard library, so a peer's benchmark host never loads honeydew."""

from __future__ import annotations

import os
import time


def noop() -> None:
    """The no-op task of the latency and throughput measurements."""
    return None


def tiny(x: int) -> int:
    """The per-item function of the tiny-items map."""
    return x + 1


def busy(n: int) -> int:
    """A pure-Python busy loop (no BLAS, no threads: nothing to oversubscribe).  The parent
    calibrates ``n`` once so that one call takes about 20 ms."""
    x = 0
    for i in range(n):
        x += i
    return x


def calibrate_busy(target_s: float = 0.020) -> int:
    """The ``busy`` iteration count that takes about ``target_s`` seconds here (median of 5)."""
    n = 10_000
    while True:
        t = time.perf_counter()
        busy(n)
        if time.perf_counter() - t > 0.05:
            break
        n *= 2
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        busy(n)
        rates.append(n / (time.perf_counter() - t))
    rates.sort()
    return max(1, int(rates[len(rates) // 2] * target_s))


def block(path: str) -> None:
    """Hold a worker until ``path`` exists (so that the jobs cast behind it stay pending)."""
    while not os.path.exists(path):
        time.sleep(0.01)
