"""`make demo`: state from init, cast, call, futures, map, and a crash recovered."""

from __future__ import annotations

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import riak_worker  # noqa: E402

import honeydew  # noqa: E402


def crunch(n: int) -> int:
    return sum(i * i for i in range(n))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  %(processName)s %(levelname)s %(message)s")
    print("1. A pool of 2 stateful workers (init runs once in each; MRU sends jobs to the warmest):")
    with honeydew.Pool(riak_worker, ["127.0.0.1", 8087], num_workers=2, init_retry_secs=1,
                       dispatcher=honeydew.dispatchers.MRU(),  # the warmest worker first
                       failure_mode=honeydew.Requeue(max_deliveries=3)) as pool:
        print(f"   call('up')                   -> {pool.call('up')}")
        pool.call("put", "bucket", "key", "value", content_type="text/plain")
        fut = pool.submit(riak_worker.get, "bucket", "key")   # each worker has its own state (dict)
        print(f"   submit(get).result()         -> {fut.result(timeout=5)!r} (job {fut.job_id})")
        job_id = pool.cast("put", "bucket", "other", "value")
        print(f"   cast('put', ...)             -> job {job_id} (fire and forget)")
        print(f"   call(lambda riak: riak.ping) -> {pool.call(lambda riak: riak.ping())}")
        print("\n2. A job whose worker is SIGKILLed on its first delivery (failure mode: Requeue):")
        print(f"   {pool.call('flaky_write', 'k1')}")
        print("\n3. A poison job that kills every worker that takes it: delivered 3 times, then given up:")
        try:
            pool.call("poison")
        except honeydew.WorkerCrashed as e:
            print(f"   the caller sees WorkerCrashed: {e}")
        print(f"   the monitors restarted the workers; the pool keeps serving: {pool.call('up')}")
    print("\n4. A worker-less pool for a CPU batch (results in input order):")
    with honeydew.Pool(num_workers=2) as pool:
        print(f"   map(crunch, [10, 100, 1000]) -> {list(pool.map(crunch, [10, 100, 1000]))}")
    print("\nEvery pool process has exited. Done.")


if __name__ == "__main__":
    main()
