"""The documented defaults of ``honeydew.Pool`` (README, "Pool options"), each checked by what the
pool does, so that each test fails if its default changes:

* ``num_workers``: the CPUs usable by this process (``len(os.sched_getaffinity(0))``, not
  ``os.cpu_count()``), and that many distinct workers really serve;
* ``init_retry_secs``: 5 seconds before the first retry of a failed ``init``;
* ``queue``: ``honeydew.queues.Memory()``;
* ``dispatcher``: ``honeydew.dispatchers.LRU()`` (sequential calls alternate between idle workers,
  where ``MRU()`` keeps reusing one).

``failure_mode=Abandon()`` is covered by test_failure_modes.py::test_abandon_is_the_default_and_runs_once.
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path
from typing import Any

import pytest
from support import integration_helpers as H

import honeydew

T = 30


def rendezvous(directory: str, n: int, timeout: float, *_state: Any) -> int:
    """Check in (one file per process) and wait until ``n`` distinct processes have checked in: only
    ``n`` jobs running at once, on ``n`` different workers, can all return.  Returns our pid."""
    Path(directory, f"here-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(directory).glob("here-*"))) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(Path(directory).glob('here-*')))} of {n} workers checked in")
        time.sleep(0.01)
    return os.getpid()


def _serving(pool: honeydew.Pool, n: int) -> dict[str, Any]:
    """The status once all ``n`` worker slots serve and the queue holds a credit from each."""
    def ready() -> dict[str, Any] | None:
        st = pool.status(timeout=T)
        if (len(st["workers"]) == n and all(w["state"] == "serving" for w in st["workers"])
                and st["queues"][0]["idle_credits"] == n):
            return st
        return None

    return H.wait_until(ready, T, what=f"{n} workers serving, each with its credit in the queue")


# --- num_workers ----------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_num_workers_defaults_to_the_usable_cpus_and_that_many_workers_serve(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    assert inspect.signature(honeydew.Pool).parameters["num_workers"].default is None
    with honeydew.Pool() as pool:
        assert pool.num_workers == cpus
        st = _serving(pool, cpus)
        slot_pids = {w["pid"] for w in st["workers"]}
        assert len(slot_pids) == cpus and 0 not in slot_pids, st["workers"]
        assert {p.pid for p in H.pool_processes() if p.name().startswith("hd-worker-")} == slot_pids
        # every one of them takes jobs: `cpus` jobs that can only finish when all run at once
        futs = [pool.submit(rendezvous, str(tmp_path), cpus, T) for _ in range(cpus)]
        pids = [f.result(timeout=T + 10) for f in futs]
    assert sorted(pids) == sorted(slot_pids)


AFFINITY = """
import os
import honeydew
from support import integration_helpers as H

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # this process may now use one CPU
with honeydew.Pool() as pool:
    print("NUM_WORKERS", pool.num_workers, flush=True)
    print("SLOTS", len(pool.status(timeout=30)["workers"]), flush=True)
    print("PIDS", len({pool.call(H.getpid) for _ in range(10)}), flush=True)
print("CPU_COUNT", os.cpu_count(), flush=True)
"""


@pytest.mark.timeout(90)
def test_num_workers_default_follows_the_cpu_affinity_not_the_cpu_count(tmp_path):
    """A caller restricted to one CPU gets one worker, whatever ``os.cpu_count()`` says (on a
    machine with several CPUs this tells ``sched_getaffinity`` from ``cpu_count``)."""
    res = H.run_script(tmp_path, AFFINITY, timeout=80)
    assert res.returncode == 0, res.stderr
    out = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert out["NUM_WORKERS"] == "1", res.stdout
    assert out["SLOTS"] == "1", res.stdout
    assert out["PIDS"] == "1", res.stdout


# --- init_retry_secs ------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_init_retry_secs_defaults_to_5_seconds(tmp_path):
    """A worker whose first init raises: its slot reports a back-off of 5 s (the jitter only ever
    lengthens it, and by far less than the doubling to 10 s), and the second attempt indeed comes no
    sooner than 5 s after the first; then the worker serves."""
    assert inspect.signature(honeydew.Pool).parameters["init_retry_secs"].default == 5
    with honeydew.Pool(H, [str(tmp_path), 1], num_workers=1) as pool:
        def in_backoff() -> dict[str, Any] | None:
            w = pool.status(timeout=T)["workers"][0]
            return w if w["state"] == "backoff" else None

        w = H.wait_until(in_backoff, T, what="the slot to back off after its failed init")
        assert w["init_failures"] == 1, w
        assert "init failure 1 of 1" in w["last_error"], w
        assert 5.0 <= w["retry_in"] < 6.0, w
        state = pool.options(timeout=T).call("state_of")
    attempts = H.init_attempts(tmp_path)
    assert len(attempts) == 2, attempts
    assert state["pid"] == attempts[1][0]
    gap = attempts[1][1] - attempts[0][1]
    assert gap >= 5.0 * 0.95, f"the retry came {gap:.2f}s after the failed init, not after 5s"


# --- queue ----------------------------------------------------------------------------------------

def test_queue_defaults_to_an_in_memory_queue():
    assert inspect.signature(honeydew.Pool).parameters["queue"].default is None  # None means Memory()
    with honeydew.Pool(num_workers=1) as pool:
        assert pool.call(H.echo, "x") == "x"
        queues = pool.status(timeout=T)["queues"]
    assert len(queues) == 1
    assert queues[0]["backend"] == repr(honeydew.queues.Memory()) == "Memory()", queues[0]


# --- dispatcher -----------------------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("dispatcher, spreads", [
    pytest.param(None, True, id="default"),
    pytest.param(honeydew.dispatchers.LRU(), True, id="LRU"),
    pytest.param(honeydew.dispatchers.MRU(), False, id="MRU"),
])
def test_dispatcher_defaults_to_lru(dispatcher, spreads):
    """Sequential calls, each made once both workers are idle (the queue holds both credits: the
    previous worker's ack has arrived).  LRU hands each call to the worker idle the longest, so the
    two workers alternate; MRU hands it to the one just used, so one worker runs them all.  The
    default must behave like the explicit LRU() and unlike MRU()."""
    kwargs = {} if dispatcher is None else {"dispatcher": dispatcher}
    with honeydew.Pool(num_workers=2, **kwargs) as pool:
        slot_pids = {w["pid"] for w in _serving(pool, 2)["workers"]}
        pids = []
        for _ in range(12):
            H.wait_until(lambda: pool.status(timeout=T)["queues"][0]["idle_credits"] == 2, T,
                         what="both workers' credits back in the queue")
            pids.append(pool.options(timeout=T).call(H.getpid))
    assert set(pids) <= slot_pids, (pids, slot_pids)
    if spreads:
        assert set(pids) == slot_pids, pids
        assert all(a != b for a, b in zip(pids, pids[1:], strict=False)), f"not alternating: {pids}"
    else:
        assert len(set(pids)) == 1, pids
