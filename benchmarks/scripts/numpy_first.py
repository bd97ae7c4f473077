"""A user's script that imports numpy, then makes a pool: time to its first result.

``python benchmarks/scripts/numpy_first.py SYSTEM [--workers 2]`` (SYSTEM: honeydew, mp.Pool,
ProcessPoolExecutor).  ``import numpy`` comes first, outside the timing (its BLAS may start
threads, which decides honeydew's default start method).  Timed from just before the pool is
made to the result of one call of ``noop``, defined here in ``__main__``; then the pool is left
(``exit_ms``, not part of ``first_result_ms``).  Prints one JSON line: ``first_result_ms``,
``exit_ms``, ``threads_before`` (this process's threads just before the pool),
``pool_start_method`` (honeydew; else null), ``numpy``.
"""

from __future__ import annotations

import time

import _pools
import numpy


def noop() -> None:
    return None


def main() -> None:
    args = _pools.parser(__doc__).parse_args()
    new = _pools.factory(args.system, args.workers)
    threads = _pools.threads()
    t0 = time.perf_counter()
    with new() as pool:
        result = _pools.call(args.system, pool, noop)
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    if result is not None:
        raise AssertionError(f"{args.system}: noop returned {result!r}")
    _pools.emit({"system": args.system, "first_result_ms": (t1 - t0) * 1000, "exit_ms": (t2 - t1) * 1000,
                 "threads_before": threads, "pool_start_method": _pools.start_method(pool),
                 "numpy": numpy.__version__})


if __name__ == "__main__":
    main()
