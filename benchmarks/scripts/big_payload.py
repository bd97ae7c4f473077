"""A user's script that sends a big ``bytes`` argument and gets a result of the same size back.

``python benchmarks/scripts/big_payload.py SYSTEM [BYTES] [--round-trips 5] [--workers 2]``
(SYSTEM: honeydew, mp.Pool, ProcessPoolExecutor).  ``os.urandom(BYTES)`` is made once, outside the
timing; ``echo(b)`` (defined here, in ``__main__``) returns its argument.  After one small warm-up
call, each of the round trips (the argument in, the same bytes back) is timed on its own and its
result checked.  Prints one JSON line: ``round_trip_ms`` (the median), ``samples_ms`` (all of
them), ``bytes``, ``threads_before``, ``pool_start_method`` (honeydew; else null).
"""

from __future__ import annotations

import os
import statistics
import time

import _pools


def echo(b: bytes) -> bytes:
    return b


def main() -> None:
    ap = _pools.parser(__doc__, 50_000_000, "bytes of the argument")
    ap.add_argument("--round-trips", type=int, default=5, help="timed round trips (default 5)")
    args = ap.parse_args()
    system, size, rounds = args.system, args.size, args.round_trips
    payload = os.urandom(size)
    new = _pools.factory(system, args.workers)
    threads = _pools.threads()
    samples = []
    with new() as pool:
        if _pools.call(system, pool, echo, b"x") != b"x":
            raise AssertionError(f"{system}: wrong warm-up result")
        for _ in range(rounds):
            t0 = time.perf_counter()
            result = _pools.call(system, pool, echo, payload)
            samples.append((time.perf_counter() - t0) * 1000)
            if type(result) is not bytes or len(result) != size or result != payload:
                raise AssertionError(f"{system}: {type(result).__name__} of {len(result)} bytes back instead of "
                                     f"the {size} bytes sent")
            del result
    _pools.emit({"system": system, "bytes": size, "round_trip_ms": statistics.median(samples),
                 "samples_ms": samples, "threads_before": threads, "pool_start_method": _pools.start_method(pool)})


if __name__ == "__main__":
    main()
