"""A user's script whose ``__main__`` holds a big global that its task reads.

``python benchmarks/scripts/main_globals.py SYSTEM [N] [--workers 2]`` (SYSTEM: honeydew, mp.Pool,
ProcessPoolExecutor).  ``BIG = bytearray(N)`` is a module global and ``f(i) = len(BIG) + i`` is
defined here, in ``__main__``.  Timed from just before the pool is made to just after its ``with``
block is left: 10 blocking calls ``f(i)``, then ``map(f, range(200))``.  For honeydew it also
reads, just before leaving the block, the USS of the pool's queue process (``hd-queue-0``); that
read is left out of ``wall_s``.  Prints one JSON line: ``wall_s``, ``calls_s``, ``map_s``,
``exit_s``, ``queue_uss`` (honeydew; else null), ``threads_before``, ``pool_start_method``.
"""

from __future__ import annotations

import time

import _pools

ARGS = _pools.parser(__doc__, 40_000_000, "bytes of the __main__ global BIG").parse_args()
BIG = bytearray(ARGS.size)


def f(i: int) -> int:
    return len(BIG) + i


def main() -> None:
    system, n = ARGS.system, ARGS.size
    new = _pools.factory(system, ARGS.workers)
    threads = _pools.threads()
    queue_uss = None
    uss_read = 0.0
    t0 = time.perf_counter()
    with new() as pool:
        calls = [_pools.call(system, pool, f, i) for i in range(10)]
        t1 = time.perf_counter()
        mapped = _pools.map_list(pool, f, range(200))
        t2 = time.perf_counter()
        if system == _pools.HONEYDEW:
            queue_uss = _pools.process_uss("hd-queue-0")
        t3 = time.perf_counter()
        uss_read = t3 - t2
    t4 = time.perf_counter()
    if calls != [n + i for i in range(10)] or mapped != [n + i for i in range(200)]:
        raise AssertionError(f"{system}: wrong results: calls {calls[:3]}..., map {mapped[:3]}...")
    _pools.emit({"system": system, "n": n, "wall_s": t4 - t0 - uss_read, "calls_s": t1 - t0, "map_s": t2 - t1,
                 "exit_s": t4 - t3, "uss_read_s": uss_read, "queue_uss": queue_uss, "threads_before": threads,
                 "pool_start_method": _pools.start_method(pool)})


if __name__ == "__main__":
    main()
