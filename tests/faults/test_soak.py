"""The soak: tens of thousands of mixed jobs while a killer thread SIGKILLs pool processes every
200-500 ms; zero jobs lost, and the long-lived pool processes' memory flat.

Phase 1 (zero loss): workers and monitor 0 are killed at random; failure mode Requeue, so every
job must complete: every ``submit``/``call``/``map`` returns its own value and every ``cast`` ran.
Jobs go in rounds of 500; each round ends drained (every future settled, every cast run) and then
the memory of the processes never killed in this phase (the supervisor, the queue process,
monitors 1 and 2) is sampled.  After a warm-up (the first 30 % of the samples) a least-squares line
through (jobs done, RSS without its file-backed pages) and one through (jobs done, anonymous RSS:
the process's own heap) must each rise less than 1 KiB per 1,000 jobs, at every size.  File-backed
pages (``RssFile``: the interpreter's and libraries' code, read in the first time a path runs, say
a rare log line's) are left out: a process faulting in a page of ``libc`` is not holding memory
it allocated, and a step of 64-80 KiB of them was seen to fail the line beside a busy loop while the
heap stayed flat; they are reported with the rest.  USS is sampled and reported
too, but not asserted: these processes are forked from one another and fork again, so a page
counts as "unique" or not depending on whether a child still shares it copy-on-write; USS jumps
by hundreds of KiB whenever a child is re-forked or writes a shared page, which says nothing about
the process's own allocations.  RSS counts every resident page of the process, shared or not, so
a leak in it shows and a sibling's copy-on-write does not.

Phase 2 (queue kills): the in-memory queue process is killed at random.  Its jobs may be lost, and
only so: every future ends completed or ``JobLost`` naming a queue process this test killed;
every job that completed ran; the pool serves afterwards.  Lost jobs are counted, not hidden.

Sizes: CI (default) runs phase 1 until at least 100,000 jobs *and* 100 kills (one to two
minutes), phase 2 for 2,000 jobs and 10 kills.  ``HONEYDEW_SOAK_MINUTES=30`` (``make soak``) runs phase 1
for that many minutes instead.  ``HONEYDEW_SOAK_REPORT=path.json`` writes the figures.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import faults_helpers as F

import honeydew

MINUTES = float(os.environ.get("HONEYDEW_SOAK_MINUTES", "0") or 0)
MIN_JOBS = 100_000      # the issue asks for 20,000; 100,000 lets a 4 KiB page step weigh < 60 B per 1,000 jobs
MIN_KILLS = 100
PHASE2_JOBS = 2_000
PHASE2_KILLS = 10
NUM_WORKERS = 3
MAX_DELIVERIES = 25     # a job is hit by a kill far fewer times than this: zero loss is the claim
WAIT = 120.0
WINDOW = 1_000          # outstanding futures at most
SAMPLE_EVERY = 500      # jobs per round; each round ends drained, then memory is sampled
SLOPE_LIMIT = 1024.0    # bytes per 1,000 jobs
WARMUP = 0.3            # share of the samples discarded as warm-up


def soak_task(directory: str, value: int, payload: bytes, nap: float, record: bool, *_state: Any) -> tuple:
    if record:  # one line per run in this worker's own log: cheap to read incrementally
        with open(os.path.join(directory, f"runs-{os.getpid()}"), "a") as f:
            f.write(f"{value}\n")
    if nap:
        time.sleep(nap)
    return value, len(payload)


def soak_item(x: int, *_state: Any) -> int:
    return x * 2


class RunLog:
    """Reads the run logs ``soak_task`` appends to, incrementally; counts runs per value."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[str, int] = {}
        self.counts: dict[int, int] = {}

    def update(self) -> dict[int, int]:
        for name in os.listdir(self.directory):
            with open(self.directory / name, "rb") as f:
                f.seek(self.offsets.get(name, 0))
                data = f.read()
            end = data.rfind(b"\n") + 1  # only whole lines (a worker may die mid-write)
            for line in data[:end].split():
                v = int(line)
                self.counts[v] = self.counts.get(v, 0) + 1
            self.offsets[name] = self.offsets.get(name, 0) + end
        return self.counts

    def wait_for(self, values: list[int], what: str) -> None:
        F.wait_until(lambda: all(v in self.update() for v in values), WAIT, what=what)


class Killer(threading.Thread):
    """SIGKILLs a random process among ``names`` every 200-500 ms until stopped."""

    def __init__(self, names: list[str], seed: int) -> None:
        super().__init__(daemon=True, name="soak-killer")
        self.names = names
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.kills: dict[str, int] = {}
        self.killed_pids: set[int] = set()
        self.misses = 0

    @property
    def total(self) -> int:
        return sum(self.kills.values())

    def run(self) -> None:
        while not self.stop_event.wait(self.rng.uniform(0.2, 0.5)):
            name = self.rng.choice(self.names)
            targets = F.by_name(name)
            if not targets:
                self.misses += 1
                continue
            for p in targets:
                self.killed_pids.add(p.pid)
                F.signal_pid(p.pid, signal.SIGKILL)
            self.kills[name] = self.kills.get(name, 0) + 1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


class Sampler:
    """(jobs done, (RSS, USS, RssAnon, RssFile, RSS - RssFile)) samples of processes that are never killed."""

    def __init__(self, names: list[str]) -> None:
        self.pids = {name: F.one(name).pid for name in names}
        self.samples: list[tuple[int, dict[str, tuple[int, int]]]] = []

    def sample(self, done: int) -> None:
        row = {}
        for name, pid in self.pids.items():
            m = psutil.Process(pid).memory_full_info()
            anon, file = _rss_parts(pid)
            row[name] = (m.rss, m.uss, anon, file, m.rss - file)
        self.samples.append((done, row))

    def slopes(self, which: int) -> dict[str, float]:
        """Bytes per 1,000 jobs of a least-squares line through the samples after the warm-up;
        ``which``: an index into a sample's row (:meth:`sample`)."""
        keep = self.samples[int(len(self.samples) * WARMUP):]
        return {name: 1000.0 * _slope([(float(d), float(row[name][which])) for d, row in keep])
                for name in self.pids}


def _rss_parts(pid: int) -> tuple[int, int]:
    """The process's anonymous resident memory (its heap and stacks, whether or not a relative still
    shares a page copy-on-write) and its file-backed resident memory: ``RssAnon`` and ``RssFile`` in
    /proc/PID/status."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("RssAnon", "RssFile"):
                found[key] = int(line.split()[1]) * 1024
    if len(found) != 2:
        raise AssertionError(f"no RssAnon/RssFile for pid {pid}: {found}")
    return found["RssAnon"], found["RssFile"]


def _slope(points: list[tuple[float, float]]) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _payload(rng: random.Random, big: bool = False) -> bytes:
    """Phase 1 keeps payloads at 10 KB or less: a burst of 100 KB payloads raises the queue's heap
    high-water mark by a few hundred KiB for good (allocator fragmentation, not a leak), which a
    line through a minute of samples cannot tell from growth.  Phase 2 sends big ones too; FAULTS
    50/52 test 100 MB and 1 MB payloads for memory on their own."""
    return b"p" * rng.choice([0, 0, 0, 100, 1_000, 10_000] + ([100_000] if big else []))


@pytest.mark.slow
@pytest.mark.timeout(int(MINUTES * 60 + 1800))
def test_soak_zero_loss_and_flat_memory_under_kills(tmp_path, record_property):
    seed = int(os.environ.get("HONEYDEW_SOAK_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    runs = tmp_path / "runs"
    runs.mkdir()
    report: dict[str, Any] = {"seed": seed}
    # pytest's logging plugin keeps every record in memory (LogCaptureHandler); forked pool processes
    # would inherit it, and the queue's one "redelivering" record per killed job would then show up
    # as memory growth that is the test harness's, not honeydew's: fork the pool without it
    root = logging.getLogger()
    kept = [h for h in root.handlers if "LogCaptureHandler" in type(h).__name__]
    for h in kept:
        root.removeHandler(h)
    try:
        pool = honeydew.Pool(num_workers=NUM_WORKERS, init_retry_secs=0.05, init_retry_max_secs=0.2,
                             failure_mode=honeydew.Requeue(max_deliveries=MAX_DELIVERIES), start_method="fork")
    finally:
        for h in kept:
            root.addHandler(h)
    try:
        assert pool.options(timeout=WAIT).call(soak_item, 1) == 2
        F.wait_until(lambda: len(F.pool_processes()) == 2 + 2 * NUM_WORKERS, WAIT, what="the whole tree")
        report["phase1"] = _phase1(pool, rng, runs, seed)
        report["phase2"] = _phase2(pool, rng, runs, seed)
        pool.close()
        pool.join(timeout=WAIT)
    finally:
        pool.terminate()
    print(f"\nsoak report: {json.dumps(report)}", file=sys.stderr)
    for key, value in report.items():
        record_property(key, value)
    if os.environ.get("HONEYDEW_SOAK_REPORT"):
        Path(os.environ["HONEYDEW_SOAK_REPORT"]).write_text(json.dumps(report, indent=2))
    p1, p2 = report["phase1"], report["phase2"]
    assert p1["lost"] == 0 and p1["wrong"] == 0
    assert p1["jobs"] >= MIN_JOBS and p1["kills"] >= MIN_KILLS
    # Memory: each long-lived process's RSS (less the file-backed pages of code it has read in), and
    # its anonymous RSS (its own heap), must not grow.
    # USS is reported, not asserted: it counts only the pages no other process maps, so it moves
    # whenever a relative forked from this process (or forked with it) dies, is re-forked or writes
    # a page they share copy-on-write -- the kills make it jump by hundreds of KiB either way while
    # the process's own memory (RSS, RssAnon) does not move.  A leak shows in RSS and RssAnon.
    for kind in ("rss_without_file", "rss_anon"):
        for name, slope in p1[f"{kind}_slope_bytes_per_1000_jobs"].items():
            assert slope < SLOPE_LIMIT, f"{name}: {kind} grows {slope:.0f} B per 1,000 jobs (seed {seed})"
    assert p2["unexplained"] == 0 and p2["kills"] >= PHASE2_KILLS


def _phase1(pool: honeydew.Pool, rng: random.Random, runs: Path, seed: int) -> dict[str, Any]:
    """Mixed jobs in rounds of ``SAMPLE_EVERY``; every round ends drained (every future settled,
    every cast run), and only then are the long-lived processes' memory sampled."""
    sampler = Sampler(["hd-supervisor", "hd-queue-0", "hd-monitor-1", "hd-monitor-2"])
    killer = Killer([f"hd-worker-{j}" for j in range(NUM_WORKERS)] + ["hd-monitor-0"], seed)
    log = RunLog(runs)
    deadline = time.monotonic() + MINUTES * 60 if MINUTES else None
    value = jobs = lost = wrong = casts = 0
    t0 = time.monotonic()
    killer.start()

    def settle(fut: Any, expected: Any) -> None:
        nonlocal lost, wrong
        try:
            got = list(fut) if isinstance(expected, list) else fut.result(timeout=WAIT)
        except TimeoutError:
            raise AssertionError(f"a job waited more than {WAIT}s (a hang; seed {seed})") from None
        except Exception as e:  # noqa: BLE001 - counted: the claim is zero
            lost += 1
            print(f"soak: job lost: {e!r}", file=sys.stderr)
            return
        if got != expected:
            wrong += 1

    try:
        while not ((time.monotonic() >= deadline) if deadline else (jobs >= MIN_JOBS and killer.total >= MIN_KILLS)):
            futures: deque[tuple[Any, Any]] = deque()
            round_casts: list[int] = []
            round_start = jobs
            while jobs - round_start < SAMPLE_EVERY:
                value += 1
                payload, nap = _payload(rng), rng.choice([0, 0, 0, 0.001])
                r = rng.random()
                if r < 0.3:
                    pool.cast(soak_task, str(runs), value, payload, nap, True)
                    round_casts.append(value)
                elif r < 0.9:
                    futures.append((pool.submit(soak_task, str(runs), value, payload, nap, False),
                                    (value, len(payload))))
                elif r < 0.97:
                    settle(_Call(pool, (soak_task, str(runs), value, payload, nap, False)), (value, len(payload)))
                else:
                    items = list(range(value, value + 20))
                    futures.append((pool.map(soak_item, items, chunksize=5, timeout=WAIT), [2 * x for x in items]))
                    value += 20
                    jobs += 19
                jobs += 1
                if len(futures) > WINDOW:
                    settle(*futures.popleft())
            while futures:
                settle(*futures.popleft())
            log.wait_for(round_casts, f"every cast of the round to run (seed {seed})")
            casts += len(round_casts)
            sampler.sample(jobs)
    finally:
        killer.stop()
    elapsed = time.monotonic() - t0
    over = [v for v, n in log.update().items() if n > MAX_DELIVERIES]
    assert not over, f"casts ran more than {MAX_DELIVERIES} times: {over[:10]}"
    first, last = sampler.samples[int(len(sampler.samples) * WARMUP)][1], sampler.samples[-1][1]
    return {"jobs": jobs, "casts": casts, "lost": lost, "wrong": wrong,
            "kills": killer.total, "kills_by_target": killer.kills, "kill_misses": killer.misses,
            "seconds": round(elapsed, 1), "jobs_per_second": round(jobs / elapsed), "samples": len(sampler.samples),
            "rss_slope_bytes_per_1000_jobs": {k: round(v, 1) for k, v in sampler.slopes(0).items()},
            "rss_anon_slope_bytes_per_1000_jobs": {k: round(v, 1) for k, v in sampler.slopes(2).items()},
            "uss_slope_bytes_per_1000_jobs": {k: round(v, 1) for k, v in sampler.slopes(1).items()},
            "rss_file_slope_bytes_per_1000_jobs": {k: round(v, 1) for k, v in sampler.slopes(3).items()},
            "rss_without_file_slope_bytes_per_1000_jobs": {k: round(v, 1) for k, v in sampler.slopes(4).items()},
            "rss_kib_after_warmup_and_at_end": {k: [first[k][0] // 1024, last[k][0] // 1024] for k in sampler.pids},
            "uss_kib_after_warmup_and_at_end": {k: [first[k][1] // 1024, last[k][1] // 1024] for k in sampler.pids},
            "series_jobs_rss_uss_anon_file_nonfile_kib": {
                k: [(d, *(b // 1024 for b in row[k])) for d, row in sampler.samples] for k in sampler.pids}}


def _phase2(pool: honeydew.Pool, rng: random.Random, runs: Path, seed: int) -> dict[str, Any]:
    killer = Killer(["hd-queue-0"], seed + 1)
    log = RunLog(runs)
    futures: list[tuple[int, Any, int]] = []
    value = 10**9
    killer.start()
    try:
        while not (len(futures) >= PHASE2_JOBS and killer.total >= PHASE2_KILLS):
            for _ in range(50):
                value += 1
                payload = _payload(rng, big=True)
                futures.append((value, pool.submit(soak_task, str(runs), value, payload, 0.001, True), len(payload)))
            pending = [f for _, f, _ in futures if not f.done()]
            if len(pending) > 200:  # keep about 200 in flight
                try:
                    pending[0].exception(timeout=WAIT)
                except TimeoutError:
                    raise AssertionError(f"a job waited more than {WAIT}s (a hang; seed {seed})") from None
    finally:
        killer.stop()
    completed, lost, unexplained = [], 0, 0
    for v, fut, size in futures:
        try:
            exc = fut.exception(timeout=WAIT)
        except TimeoutError:
            raise AssertionError(f"a job waited more than {WAIT}s after a queue kill (seed {seed})") from None
        if exc is None and fut.result(0) == (v, size):
            completed.append(v)
        elif isinstance(exc, honeydew.JobLost) and _names_a_killed_queue(exc, killer.killed_pids):
            lost += 1
        else:
            unexplained += 1
            print(f"soak phase 2: unexpected outcome {exc!r}", file=sys.stderr)
    counts = log.update()
    unexplained += sum(1 for v in completed if counts.get(v, 0) < 1)  # a result without a run?
    assert pool.options(timeout=WAIT).call(soak_item, 21) == 42  # it serves afterwards
    return {"jobs": len(futures), "completed": len(completed), "job_lost": lost, "unexplained": unexplained,
            "kills": killer.total}


def _names_a_killed_queue(exc: BaseException, killed: set[int]) -> bool:
    named = re.search(r"\(pid (\d+)\)", str(exc))
    return bool(named) and int(named.group(1)) in killed


class _Call:
    """``pool.call`` made to look like a future for ``settle``: the call happens in ``result``."""

    def __init__(self, pool: honeydew.Pool, args: tuple[Any, ...]) -> None:
        self.pool, self.args = pool, args

    def result(self, timeout: float) -> Any:
        return self.pool.options(timeout=timeout).call(*self.args)
