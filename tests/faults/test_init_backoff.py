"""The back-off between attempts to start a worker whose ``init`` failed (``init_retry_secs``,
doubling up to ``init_retry_max_secs``; honeydew/monitor.py ``backoff()``):

* it is reset once an init succeeds: a worker that served and then went away (killed, or asked
  for a fresh worker with ``honeydew.restart_worker()``) and whose next init fails is retried after
  the first step again, not after the doubled delay its earlier failures had reached;
* a worker that *dies* during init (``os._exit``, SIGKILL), not only one whose init raises, is
  retried with the same growing back-off, while the other workers keep serving.

The figures come from ``pool.status()`` (each back-off is reported with ``init_failures``, the
failures in a row, and ``retry_in``, the delay chosen) and from the init attempts' own log.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from support import faults_helpers as F
from support import integration_helpers as H

import honeydew

T = 30


class ScheduledInit:
    """A class worker whose init (the constructor) follows a schedule per worker slot.

    ``schedules[slot][k - 1]`` says what the ``k``-th init attempt of that slot does: ``F`` raises,
    ``X`` dies by ``os._exit(3)``, ``K`` dies by SIGKILL of itself; past the end of the schedule (or
    ``S``) it succeeds.  Each attempt is logged as the file ``init-<slot>-<pid>`` holding its
    ``time.monotonic()`` (written, then renamed into place): a slot's attempts follow one another, so
    counting its files is race-free."""

    def __init__(self, directory: str, schedules: dict[int, str]) -> None:
        with open("/proc/self/comm") as f:
            slot = int(f.read().strip().rsplit("-", 1)[1])   # hd-worker-<slot>
        tmp = Path(directory, f".tmp-{slot}-{os.getpid()}")
        tmp.write_text(f"{time.monotonic():.6f}")
        tmp.rename(Path(directory, f"init-{slot}-{os.getpid()}"))   # a logged attempt is always complete
        attempt = len(list(Path(directory).glob(f"init-{slot}-*")))
        schedule = schedules.get(slot, "")
        step = schedule[attempt - 1] if attempt <= len(schedule) else "S"
        if step == "F":
            raise RuntimeError(f"scheduled init failure (slot {slot}, attempt {attempt})")
        if step == "X":
            os._exit(3)
        if step == "K":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # never reached
        self.slot = slot
        self.pid = os.getpid()

    @honeydew.task
    def whoami(self) -> tuple[int, int]:
        return self.slot, self.pid

    @honeydew.task
    def restart(self) -> int:
        honeydew.restart_worker()
        return self.pid


def attempts(directory: Path, slot: int) -> list[tuple[int, float]]:
    """``(pid, monotonic start)`` of each init attempt of ``slot`` so far, in order."""
    out = [(int(p.name.rsplit("-", 1)[1]), float(p.read_text()))
           for p in Path(directory).glob(f"init-{slot}-*")]
    return sorted(out, key=lambda a: a[1])


def watch(pool: honeydew.Pool, slot: int, done: Any, what: str, on_backoff: Any = None,
          timeout: float = T) -> list[dict[str, Any]]:
    """Poll ``pool.status()`` until ``done(status)``; return every back-off ``slot`` reported
    meanwhile (one per failed attempt, told apart by the failed worker's pid), in order.
    ``on_backoff(report)`` runs when one is first seen, while the slot is backing off."""
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        st = pool.status(timeout=T)
        w = st["workers"][slot]
        if w["state"] == "backoff" and w["pid"] not in seen:
            seen[w["pid"]] = dict(w)
            if on_backoff is not None:
                on_backoff(w)
        if done(st):
            return list(seen.values())
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last status of slot {slot}: {w}; "
                                 f"back-offs seen: {list(seen.values())}")
        time.sleep(0.01)


def serving_as(slot: int, pid_of: Any) -> Any:
    """A ``done`` for :func:`watch`: ``slot`` serves, and its worker is ``pid_of()`` (not None)."""
    def done(st: dict[str, Any]) -> bool:
        w = st["workers"][slot]
        pid = pid_of()
        return pid is not None and w["state"] == "serving" and w["pid"] == pid
    return done


def nth_pid(directory: Path, slot: int, n: int) -> Any:
    def pid() -> int | None:
        a = attempts(directory, slot)
        return a[n - 1][0] if len(a) >= n else None
    return pid


def assert_step(report: dict[str, Any], failures: int, base: float) -> None:
    """The back-off after ``failures`` failed inits in a row: ``base * 2**(failures-1)``, which the
    jitter only lengthens (by at most 10%; asserted: less than the next doubling)."""
    step = base * 2 ** (failures - 1)
    assert report["init_failures"] == failures, report
    assert step <= report["retry_in"] < 2 * step, (failures, report)


# --- the back-off is reset by a successful init ----------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["kill", "restart_worker"])
def test_backoff_resets_after_a_successful_init(tmp_path, how):
    """Init fails, fails (back-offs of B then 2B), succeeds; the worker serves, then is SIGKILLed
    (or asks for a fresh worker); the next init fails once more: that back-off is B again (one
    failure in a row), where without the reset it would be the third step, 4B."""
    base = 0.5
    pool = honeydew.Pool(ScheduledInit, [str(tmp_path), {0: "FFSF"}], num_workers=1, init_retry_secs=base,
                         init_retry_max_secs=60)
    try:
        first = watch(pool, 0, serving_as(0, nth_pid(tmp_path, 0, 3)), "the third init to succeed")
        assert [r["pid"] for r in first] == [pid for pid, _ in attempts(tmp_path, 0)[:2]], first
        assert_step(first[0], 1, base)
        assert_step(first[1], 2, base)     # the back-off did grow
        served = attempts(tmp_path, 0)[2][0]
        assert pool.options(timeout=T).call("whoami") == (0, served)

        if how == "kill":
            os.kill(served, signal.SIGKILL)
        else:
            assert pool.options(timeout=T).call("restart") == served
        assert F.wait_gone([served], T) == []

        second = watch(pool, 0, serving_as(0, nth_pid(tmp_path, 0, 5)), "the fifth init to succeed")
        log = attempts(tmp_path, 0)
        assert len(log) == 5, log
        assert [r["pid"] for r in second] == [log[3][0]], second
        assert_step(second[0], 1, base)    # reset: the first step again, not 4 * base
        assert "scheduled init failure (slot 0, attempt 4)" in second[0]["last_error"], second
        assert pool.options(timeout=T).call("whoami") == (0, log[4][0])
        H.finish(pool, T)
    finally:
        pool.terminate()

    # each back-off was waited (a lower bound per gap; how long a gap may grow on a loaded machine
    # has no bound, so the reset itself is told by the delay the monitor chose, above: retry_in)
    starts = [t for _, t in log]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    for i, failures in ((0, 1), (1, 2), (3, 1)):   # (gap 2 is the served worker's life)
        assert gaps[i] >= F.init_backoff_floor(failures, base, 60) - F.CLOCK_SLACK, (i, gaps)


# --- a worker that dies during init backs off like one whose init raises ------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("how, error", [
    ("X", "exited with code 3 while running init"),
    ("K", "was killed by SIGKILL(-9) while running init"),
], ids=["os._exit", "SIGKILL"])
def test_worker_dying_in_init_backs_off_growing_while_others_serve(tmp_path, how, error):
    """Slot 1's worker dies in its first three inits, then starts; slot 0 is healthy.  Slot 1 is
    retried after B, 2B, 4B (each reported with the death), by a fresh process every time, and a
    call made while it backs off is served by slot 0.  Then both serve."""
    base = 0.5
    pool = honeydew.Pool(ScheduledInit, [str(tmp_path), {1: how * 3}], num_workers=2, init_retry_secs=base,
                         init_retry_max_secs=60)
    served_meanwhile: list[tuple[int, int]] = []

    def call_while_backing_off(report: dict[str, Any]) -> None:
        served_meanwhile.append(pool.options(timeout=T).call("whoami"))

    try:
        reports = watch(pool, 1, serving_as(1, nth_pid(tmp_path, 1, 4)), "slot 1's fourth init to succeed",
                        on_backoff=call_while_backing_off)
        log = attempts(tmp_path, 1)
        assert len(log) == 4, log
        assert len({pid for pid, _ in log}) == 4             # a fresh process for every attempt
        assert [r["pid"] for r in reports] == [pid for pid, _ in log[:3]], reports
        for failures, report in enumerate(reports, 1):
            assert_step(report, failures, base)
            assert error in report["last_error"] and str(report["pid"]) in report["last_error"], report

        healthy = attempts(tmp_path, 0)
        assert len(healthy) == 1, healthy                    # slot 0 never restarted
        assert served_meanwhile == [(0, healthy[0][0])] * 3, served_meanwhile

        # and now both slots serve: two jobs that can only finish when both run at once
        flag_dir = tmp_path / "both"
        flag_dir.mkdir()
        futs = [pool.submit(both_here, str(flag_dir)) for _ in range(2)]
        assert sorted(f.result(timeout=T) for f in futs) == [(0, healthy[0][0]), (1, log[3][0])]
        H.finish(pool, T)
    finally:
        pool.terminate()

    starts = [t for _, t in log]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    for failures, gap in enumerate(gaps, 1):                 # each back-off was waited, doubling
        assert gap >= F.init_backoff_floor(failures, base, 60) - F.CLOCK_SLACK, (failures, gaps)


def both_here(directory: str, state: ScheduledInit, timeout: float = T) -> tuple[int, int]:
    """Check in; return ``(slot, pid)`` once two workers have checked in."""
    Path(directory, f"here-{state.pid}").touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(directory).glob("here-*"))) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the other worker never checked in")
        time.sleep(0.01)
    return state.slot, state.pid


@pytest.mark.timeout(60)
def test_status_keeps_the_init_failures_while_the_next_attempt_starts(tmp_path):
    """An operator looking while the retry runs still sees how many inits failed and why, and a
    back-off shows both its length (``retry_in``) and what is left of it (``next_attempt_in``)."""
    slow_start = tmp_path / "slow"
    with honeydew.Pool(SlowSecondInit, [str(tmp_path), str(slow_start)], num_workers=1,
                       init_retry_secs=1.0) as pool:
        backoff = H.wait_until(lambda: _slot0(pool) if _slot0(pool)["state"] == "backoff" else None, T,
                               what="the first back-off")
        assert backoff["init_failures"] == 1 and "first init fails" in backoff["last_error"]
        assert 0.0 <= backoff["next_attempt_in"] <= backoff["retry_in"]
        # the second init runs (it waits for "go"); the monitor's word of it reaches the supervisor soon
        starting = H.wait_until(lambda: (s := _slot0(pool))["state"] == "starting" and slow_start.exists() and s, T,
                                what="the second init to start")
        assert starting["init_failures"] == 1 and "first init fails" in starting["last_error"]
        (tmp_path / "go").touch()
        assert pool.options(timeout=T).call("ping") == "pong"
        # (the monitor's word that its worker serves reaches the supervisor on its own path)
        serving = H.wait_until(lambda: (s := _slot0(pool))["state"] == "serving" and s, T, what="serving")
        assert (serving["init_failures"], serving["last_error"]) == (0, "")


def _slot0(pool: honeydew.Pool) -> dict[str, Any]:
    return pool.status()["workers"][0]


class SlowSecondInit:
    """The first init raises; the second one announces itself and waits for ``go``."""

    def __init__(self, directory: str, announce: str) -> None:
        marker = Path(directory, "first-done")
        if not marker.exists():
            marker.touch()
            raise RuntimeError("first init fails")
        Path(announce).touch()
        deadline = time.monotonic() + T
        while not Path(directory, "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    @honeydew.task
    def ping(self) -> str:
        return "pong"
