"""Profile one honeydew scenario across its whole process tree with py-spy, and say where time goes.

``python -m benchmarks.profile SCENARIO [--n N] [--rate HZ] [--out DIR] [--sched]`` (needs
``pip install py-spy``; ``--sched`` needs ``perf`` and root instead).

It runs ``py-spy record --subprocesses --format raw`` around a small driver that exercises the
scenario on a fresh ``honeydew.Pool(num_workers=2)`` (default options, like the benchmarks), then
prints, for each pool process (caller, supervisor, queue, monitors, workers), how many samples it
was on CPU and its hottest functions by self time and by inclusive time.  The raw stacks stay in
``DIR/SCENARIO.raw`` (collapsed-stack format: feed it to flamegraph.pl or speedscope).

With ``--sched`` it runs the same driver under ``perf sched record`` and prints, per pool process
and thread, wake-ups, CPU time and time spent runnable but waiting for a CPU, per job, over the
measured window only: how many hand-offs a job costs and what each one costs.

Scenarios: ``call`` (sequential round trips), ``submit`` (submit N then collect), ``cast``
(cast N then close+join), ``map`` (map over N tiny items), ``enqueue`` (cast N to a pool with
no workers: the queue process's cost per pending job).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import tasks

SCENARIOS = ("call", "submit", "cast", "map", "enqueue")
DEFAULT_N = {"call": 20_000, "submit": 50_000, "cast": 50_000, "map": 2_000_000, "enqueue": 300_000}


class _MpPool:
    """``multiprocessing.Pool(2)`` behind the few honeydew calls the driver makes (for comparison)."""

    def __init__(self) -> None:
        import multiprocessing
        self.pool = multiprocessing.Pool(2)

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        return self.pool.apply(fn, args)

    def submit(self, fn, *args):  # type: ignore[no-untyped-def]
        r = self.pool.apply_async(fn, args)
        r.result = r.get
        return r

    def cast(self, fn, *args):  # type: ignore[no-untyped-def]
        self.pool.apply_async(fn, args)

    def map(self, fn, items):  # type: ignore[no-untyped-def]
        return self.pool.map(fn, items)

    def close(self) -> None:
        self.pool.close()

    def join(self) -> None:
        self.pool.join()

    terminate = close


def _drive(scenario: str, n: int, pids_file: Path, system: str) -> None:
    """The profiled program (runs under py-spy or perf)."""
    import psutil

    import honeydew

    def record(pool_roles: dict[int, str], window: list[float]) -> None:
        for k, p in enumerate(psutil.Process().children(recursive=True)):
            try:
                pool_roles[p.pid] = p.name() if system == "honeydew" else f"mp-worker-{k}"
            except psutil.Error:
                pass
        pool_roles[os.getpid()] = "caller"
        pids_file.write_text(json.dumps({"roles": pool_roles, "window": window, "n": n}))

    roles: dict[int, str] = {}
    if system == "mp":
        if scenario == "enqueue":
            raise SystemExit("enqueue is honeydew-only")
        pool: Any = _MpPool()
    else:
        pool = honeydew.Pool(num_workers=0 if scenario == "enqueue" else 2)
    try:
        if scenario != "enqueue":
            for _ in range(100):
                pool.call(tasks.noop)
        time.sleep(0.2)
        record(roles, [])
        w0 = time.clock_gettime(time.CLOCK_MONOTONIC)
        t = time.perf_counter()
        if scenario == "call":
            for _ in range(n):
                pool.call(tasks.noop)
        elif scenario == "submit":
            futures = [pool.submit(tasks.noop) for _ in range(n)]
            for f in futures:
                f.result()
        elif scenario in ("cast", "enqueue"):
            for _ in range(n):
                pool.cast(tasks.noop)
            if scenario == "enqueue":
                time.sleep(1.0)  # let the queue process absorb the backlog while sampled
        elif scenario == "map":
            out = list(pool.map(tasks.tiny, range(n)))
            assert len(out) == n
        took = time.perf_counter() - t
        record(roles, [w0, time.clock_gettime(time.CLOCK_MONOTONIC)])
        print(f"{scenario}: {n} in {took:.2f}s = {n / took:,.0f}/s", file=sys.stderr)
    finally:
        if scenario == "enqueue":
            pool.terminate()
        else:
            pool.close()
            pool.join()


_PROC = re.compile(r"^process (\d+):")


def summarize(raw: Path, roles: dict[int, str], top: int = 12) -> str:
    """Per process role: samples on CPU, hottest functions by self and by inclusive samples."""
    self_t: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl_t: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        role = "?"
        while frames and (m := _PROC.match(frames[0])):  # parent -> child -> ...: the last one sampled
            role = roles.get(int(m.group(1)), f"pid {m.group(1)}")
            frames = frames[1:]
        role = re.sub(r"-\d+$", "-*", role)
        frames = [f for f in frames if not f.startswith("thread ")]
        total[role] += count
        if frames:
            self_t[role][_short(frames[-1])] += count
        for f in set(map(_short, frames)):
            incl_t[role][f] += count
    out = []
    for role, n in total.most_common():
        out.append(f"== {role}: {n} samples on CPU")
        out.append("  self:")
        out += [f"    {c:7d} {100 * c / n:5.1f}%  {f}" for f, c in self_t[role].most_common(top)]
        out.append("  inclusive (frames on every sample of this process left out):")
        out += [f"    {c:7d} {100 * c / n:5.1f}%  {f}" for f, c in
                [(f, c) for f, c in incl_t[role].most_common() if c < n][:top]]
    return "\n".join(out)


def sched_summary(data: Path, info: dict[str, object]) -> str:
    """From ``perf sched record`` data: per pool process (and thread), within the measured window,
    wake-ups, CPU time and scheduling delay (runnable but not running) per job."""
    roles = {int(k): v for k, v in info["roles"].items()}  # type: ignore[union-attr]
    t0, t1 = info["window"]  # type: ignore[misc]
    n = int(info["n"])  # type: ignore[arg-type]
    r = subprocess.run(["perf", "sched", "timehist", "-i", str(data), "-p", ",".join(map(str, roles))],
                       capture_output=True, text=True)
    runs: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        try:
            ts = float(parts[0])
            delay, run = float(parts[-2]), float(parts[-1])
        except ValueError:
            continue
        if not t0 <= ts <= t1:
            continue
        m = re.search(r"\[(\d+)(?:/(\d+))?\]", parts[2])
        if not m:
            continue
        tid, pid = int(m.group(1)), int(m.group(2) or m.group(1))
        who = roles.get(pid, str(pid)) + ("" if tid == pid else f" thread {tid}")
        acc = runs[who]
        acc[0] += 1
        acc[1] += delay
        acc[2] += run
    out = [f"per job over the {n} jobs of the measured window ({(t1 - t0) * 1e6 / n:.1f} µs of wall per job):"]
    total = 0.0
    for who, (k, delay, run) in sorted(runs.items()):
        total += run
        out.append(f"  {who:28s} wake-ups {k / n:5.2f}   CPU {run * 1000 / n:7.1f} µs   "
                   f"waiting for a CPU {delay * 1000 / n:7.1f} µs")
    out.append(f"  {'all':28s}                CPU {total * 1000 / n:7.1f} µs")
    return "\n".join(out)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py:123)"
    m = re.match(r"^(.*) \((.*?)([^/]+):(\d+)\)$", frame)
    return f"{m.group(1)} ({m.group(3)}:{m.group(4)})" if m else frame


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second per process")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "local")
    ap.add_argument("--sched", action="store_true",
                    help="instead of py-spy, `perf sched record` (root): wake-ups, CPU and scheduling delay per job")
    ap.add_argument("--system", choices=("honeydew", "mp"), default="honeydew",
                    help="mp: the same driver on multiprocessing.Pool(2), for comparison")
    ap.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pids", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n = args.n or DEFAULT_N[args.scenario]
    if args.drive:
        _drive(args.scenario, n, args.pids, args.system)
        return 0
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.scenario if args.system == "honeydew" else f"{args.scenario}-{args.system}"
    pids = args.out / f"{stem}.pids.json"
    drive = [sys.executable, "-m", "benchmarks.profile", args.scenario, "--n", str(n), "--drive", "--pids", str(pids),
             "--system", args.system]
    if args.sched:
        if not shutil.which("perf"):
            print("perf is not installed", file=sys.stderr)
            return 2
        data = args.out / f"{stem}.sched"
        r = subprocess.run(["perf", "sched", "record", "-o", str(data), "--", *drive], cwd=root, env=env)
        if r.returncode != 0:
            print(f"perf sched record failed ({r.returncode})", file=sys.stderr)
            return 1
        text = sched_summary(data, json.loads(pids.read_text()))
        (args.out / f"{stem}.sched.txt").write_text(text + "\n")
        print(text)
        return 0
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not spy:
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    raw = args.out / f"{stem}.raw"
    cmd = [spy, "record", "--subprocesses", "--format", "raw", "--rate", str(args.rate), "--nonblocking",
           "-o", str(raw), "--", *drive]
    r = subprocess.run(cmd, cwd=root, env=env)
    if r.returncode != 0 or not raw.exists():
        print(f"py-spy failed ({r.returncode})", file=sys.stderr)
        return 1
    roles = {int(k): v for k, v in json.loads(pids.read_text())["roles"].items()} if pids.exists() else {}
    text = summarize(raw, roles)
    (args.out / f"{stem}.txt").write_text(text + "\n")
    print(text)
    print(f"\nraw stacks: {raw}; summary: {args.out / (stem + '.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
