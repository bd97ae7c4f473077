"""A user's script whose ``__main__`` holds a big global that its task reads.

``python benchmarks/scripts/main_globals.py SYSTEM [N] [--workers 2] [--sample-uss]`` (SYSTEM:
honeydew, mp.Pool, ProcessPoolExecutor).  ``BIG = bytearray(N)`` is a module global and
``f(i) = len(BIG) + i`` is defined here, in ``__main__``.  Timed from just before the pool is made
to just after its ``with`` block is left: 10 blocking calls ``f(i)``, then ``map(f, range(200))``.

``--sample-uss`` (honeydew only): once the pool is up, find its queue process (``hd-queue-0``) and
read its USS from a background thread every ``--sample-ms`` (2) ms, from just before the first
call until just after the map (:class:`_pools.UssSampler`), then once more just before leaving the
block: the peak while the jobs ran and the final value.  The peak is what tells whether the queue
held the global: a queue that had a copy of it per job in flight has handed the memory back to the
OS by the time the jobs are done.  The sampler takes CPU from the script, so a sampled run is not
a timed run (its ``wall_s`` is reported, marked ``sampled``, but the harness times a run without
it); the pid lookup and the last read are left out of its ``wall_s``.

Prints one JSON line: ``wall_s``, ``calls_s``, ``map_s``, ``exit_s``, ``sampled``, ``queue_uss``
(the final value), ``queue_uss_peak``, ``queue_uss_first``, ``uss_samples``, ``uss_max_gap_ms``
(these with ``--sample-uss``; else null), ``threads_before``, ``pool_start_method`` and, for
honeydew, ``honeydew_file`` (also written to stderr: which copy of honeydew the script imported).
"""

from __future__ import annotations

import sys
import time

import _pools

AP = _pools.parser(__doc__, 40_000_000, "bytes of the __main__ global BIG")
AP.add_argument("--sample-uss", action="store_true",
                help="honeydew: sample the queue process's USS while the jobs run (not a timed run)")
AP.add_argument("--sample-ms", type=float, default=2.0, help="milliseconds between two USS reads (default 2)")
ARGS = AP.parse_args()
BIG = bytearray(ARGS.size)


def f(i: int) -> int:
    return len(BIG) + i


def main() -> None:
    system, n = ARGS.system, ARGS.size
    sample = ARGS.sample_uss
    if sample and system != _pools.HONEYDEW:
        raise SystemExit(f"--sample-uss: {system} has no queue process")
    new = _pools.factory(system, ARGS.workers)
    honeydew_file = None
    if system == _pools.HONEYDEW:
        honeydew_file = sys.modules["honeydew"].__file__
        sys.stderr.write(f"main_globals.py: honeydew from {honeydew_file}\n")
        sys.stderr.flush()
    threads = _pools.threads()
    usage: dict[str, object] = {}
    lookup = 0.0  # finding the queue process and starting the sampler: left out of the timings
    t0 = time.perf_counter()
    with new() as pool:
        if sample:
            ta = time.perf_counter()
            sampler = _pools.UssSampler(_pools.find_process("hd-queue-0"), ARGS.sample_ms / 1000).start()
            lookup = time.perf_counter() - ta
        calls = [_pools.call(system, pool, f, i) for i in range(10)]
        t1 = time.perf_counter()
        mapped = _pools.map_list(pool, f, range(200))
        t2 = time.perf_counter()
        if sample:
            usage = sampler.stop()
        t3 = time.perf_counter()
    t4 = time.perf_counter()
    left_out = lookup + (t3 - t2)
    if calls != [n + i for i in range(10)] or mapped != [n + i for i in range(200)]:
        raise AssertionError(f"{system}: wrong results: calls {calls[:3]}..., map {mapped[:3]}...")
    _pools.emit({"system": system, "n": n, "wall_s": t4 - t0 - left_out, "calls_s": t1 - t0 - lookup,
                 "map_s": t2 - t1, "exit_s": t4 - t3, "sampled": sample, "uss_read_s": left_out if sample else None,
                 "queue_uss": usage.get("last"), "queue_uss_peak": usage.get("peak"),
                 "queue_uss_first": usage.get("first"), "uss_samples": usage.get("samples"),
                 "uss_max_gap_ms": usage.get("max_gap_ms"), "threads_before": threads,
                 "pool_start_method": _pools.start_method(pool), "honeydew_file": honeydew_file})


if __name__ == "__main__":
    main()
