"""Benchmarks of honeydew against multiprocessing.Pool, ProcessPoolExecutor, loky, pebble and mpire.

``python -m benchmarks.run [--smoke] [--only NAME ...] [--repeats N] [--systems S ...] [--out DIR]``
(``make bench`` runs it in full; ``make bench-smoke`` the tiny version).

One run, one machine, 2 workers for every system, each side's default options.  Every system runs
in its own long-lived host process (:mod:`benchmarks.host`); the runner drives them in turn, so
the repeats are interleaved (A B C ... A B C ..., the order rotated by one each repeat).  What
depends on a fresh interpreter's ``__main__`` or imports (``main_globals``, ``numpy_first``,
``big_payload``) is measured by a script of ``benchmarks/scripts/`` that the host runs as a new
process per trial.  On RabbitMQ (``rabbitmq``: :mod:`benchmarks.broker_trials`) honeydew is measured
beside Dramatiq and bare pika; with no broker answering, that measurement is skipped and the run
says why.  It prints a table of medians with their spread, every target with PASS/FAIL
and its measured ratio, and writes ``results.json``, ``results.png`` and ``results.md`` into the
output directory (``benchmarks/results/`` for a full run, ``benchmarks/results/local/`` otherwise).

To benchmark an exported tree (``git archive``), set ``BENCH_GIT_COMMIT`` so the results name it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import report, tasks
from .systems import (
    DRAMATIQ,
    FLOOR,
    HAVE_DRAMATIQ,
    HAVE_HUEY,
    HAVE_PIKA,
    HONEYDEW,
    HUEY,
    MP,
    PIKA,
    PPE,
    SERIAL,
    SYSTEMS,
    WORKERS,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

#: family -> the trial kinds it runs, in order
FAMILIES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "floor"),
    "throughput": ("throughput", "cast"),
    "map": ("map_tiny", "map_cpu"),
    "start_stop": ("start_stop",),
    "recovery": ("recovery",),
    "memory": ("memory",),
    "scale": ("scale",),
    "main_globals": ("main_globals",),
    "numpy_first": ("numpy_first",),
    "big_payload": ("big_payload",),
    "durable": ("durable",),
    "rabbitmq": ("rabbitmq",),
}

KIND_SYSTEMS: dict[str, tuple[str, ...]] = {
    "latency": SYSTEMS, "floor": (FLOOR,), "throughput": SYSTEMS, "cast": (HONEYDEW, MP), "map_tiny": SYSTEMS,
    "map_cpu": (SERIAL, FLOOR, *SYSTEMS), "start_stop": SYSTEMS, "recovery": (HONEYDEW,), "memory": SYSTEMS,
    "scale": (HONEYDEW,), "main_globals": (HONEYDEW, MP, PPE), "numpy_first": (HONEYDEW, MP, PPE),
    "big_payload": (HONEYDEW, MP, PPE), "durable": (HONEYDEW, HUEY) if HAVE_HUEY else (HONEYDEW,),
    # honeydew's side needs honeydew.queues.RabbitMQ (main() leaves it out, and says so, when it is missing)
    "rabbitmq": (HONEYDEW, *((DRAMATIQ,) if HAVE_DRAMATIQ else ()), *((PIKA,) if HAVE_PIKA else ())),
}
#: the trial kinds that need the RabbitMQ broker (skipped, with the reason, when none answers)
BROKER_KINDS = ("rabbitmq",)

FULL: dict[str, dict[str, Any]] = {
    "latency": {"calls": 5000},
    "floor": {"calls": 5000},
    "throughput": {"jobs": 50_000},
    "cast": {"jobs": 50_000},
    "map_tiny": {"items": 200_000, "items_chunks_of_one": 10_000},
    "map_cpu": {"items": 400},
    "start_stop": {"stop_deadline_s": 10.0},
    "recovery": {"stream_jobs": 2000, "stream_kills": 3, "stream_nap_s": 0.001},
    "memory": {"idle_s": 0.5},
    "scale": {"low": 10_000, "high": 1_000_000, "segment": 50_000},
    "main_globals": {"n": 40_000_000, "n_small": 1_000_000},
    "numpy_first": {},
    "big_payload": {"bytes": 50_000_000, "round_trips": 5},
    "durable": {"jobs_1": 3000, "jobs_8": 16_000},
    "rabbitmq": {"publishes": 3000, "round_trips": 2000, "jobs_1": 3000, "jobs_8": 8000, "calls": 2000},
}
SMOKE: dict[str, dict[str, Any]] = {
    "latency": {"calls": 100},
    "floor": {"calls": 100},
    "throughput": {"jobs": 200},
    "cast": {"jobs": 200},
    "map_tiny": {"items": 2000, "items_chunks_of_one": 500},
    "map_cpu": {"items": 4},
    "start_stop": {"stop_deadline_s": 10.0},
    "recovery": {"stream_jobs": 100, "stream_kills": 1, "stream_nap_s": 0.001},
    "memory": {"idle_s": 0.05},
    "scale": {"low": 1000, "high": 10_000, "segment": 3000},
    "main_globals": {"n": 1_000_000, "n_small": 250_000},
    "numpy_first": {},
    "big_payload": {"bytes": 1_000_000, "round_trips": 5},
    "durable": {"jobs_1": 50, "jobs_8": 200},
    "rabbitmq": {"publishes": 50, "round_trips": 30, "jobs_1": 50, "jobs_8": 80, "calls": 30},
}
#: default repeats per trial kind (full run); --repeats overrides them all
REPEATS = {"latency": 5, "floor": 3, "throughput": 5, "cast": 3, "map_tiny": 3, "map_cpu": 5, "start_stop": 5,
           "recovery": 5, "memory": 3, "scale": 2, "main_globals": 5, "numpy_first": 5, "big_payload": 5,
           "durable": 3, "rabbitmq": 3}
#: a system whose trials of one kind time out this many times has its remaining repeats skipped
MAX_TIMEOUTS = 2
SMOKE_REPEATS = 2
TIMEOUT = {"scale": 300.0, "rabbitmq": 300.0}
DEFAULT_TIMEOUT = 150.0
SMOKE_TIMEOUT = 60.0


# --------------------------------------------------------------------------- hosts

class Host:
    """The runner's handle on one system's host process."""

    def __init__(self, name: str, logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"host-{name.replace('.', '_')}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = b""
        self.helpers: list[str] = []
        self.ready = False

    def launch(self) -> None:
        """Start the host process (it then imports its library and makes one throwaway pool)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.host", self.name], cwd=ROOT, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True)
        self.buf = b""
        self.ready = False

    def _start(self, timeout: float) -> None:
        if self.proc is None:
            self.launch()
        ready = self._read(timeout)
        if not ready.get("ok"):
            raise RuntimeError(f"host {self.name} did not start: {ready.get('error')}")
        self.helpers = ready.get("helpers", [])
        self.ready = True

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no reply within {timeout:.0f}s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError(f"{self.name}: the host exited (code {self.proc.wait()}); "
                                   f"log tail:\n{self.tail()}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def run_start(self, timeout: float) -> None:
        """Make sure the host is up (outside any timing); a failure shows at the next ``run``."""
        try:
            self._start(timeout)
        except (TimeoutError, EOFError, OSError, RuntimeError):
            self.kill(dump=False)

    def run(self, kind: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one trial; any failure (an exception, a hang, a dead host) becomes an error entry."""
        try:
            if not self.ready:
                self._start(timeout)
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write((json.dumps({"kind": kind, "params": params}) + "\n").encode())
            self.proc.stdin.flush()
            return self._read(timeout)
        except (TimeoutError, EOFError, OSError, RuntimeError) as e:
            stacks = self.kill(dump=isinstance(e, TimeoutError))
            return {"ok": False, "error": f"{type(e).__name__}: {e}\n{stacks}"}

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self, dump: bool) -> str:
        """Stop this host and every process under it (after dumping their stacks if it hung)."""
        if self.proc is None:
            return ""
        import psutil
        stacks = ""
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.Error:
            tree = []
        if dump and tree:
            stacks = dump_stacks([p.pid for p in tree])
            with open(self.log_path, "a") as f:
                f.write(stacks)
        for p in tree:
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.proc = None
        self.ready = False
        return stacks

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"kind": "exit"}\n')
            self.proc.stdin.flush()
            self.proc.stdin.close()
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.kill(dump=False)
        self.proc = None
        self.ready = False


def dump_stacks(pids: list[int]) -> str:
    """Stacks of hung processes: py-spy if installed (every thread, native waits too), else SIGUSR1
    (honeydew processes and the hosts dump their Python stacks to their stderr = the host log)."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    out = []
    for pid in pids:
        if spy:
            try:
                r = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20)
                out.append(f"--- py-spy dump {pid}\n{r.stdout}{r.stderr}")
                continue
            except (OSError, subprocess.TimeoutExpired) as e:
                out.append(f"--- py-spy dump {pid} failed: {e}")
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    if not spy:
        time.sleep(0.5)
        out.append("(stacks dumped by SIGUSR1 into the host log)")
    return "\n".join(out)


# --------------------------------------------------------------------------- the run

def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        mem = None
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu": cpu, "mem_bytes": mem,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "kernel": platform.release(), "platform": platform.platform()}


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dist in ("honeydew", "loky", "pebble", "mpire", "matplotlib", "psutil", "cloudpickle", "threadpoolctl"):
        try:
            out[dist] = metadata.version("honeydew-pool" if dist == "honeydew" else dist)  # its name on PyPI
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "honeydew"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10)
        out["git_commit"] = head.stdout.strip() or os.environ.get("BENCH_GIT_COMMIT") or None
        out["honeydew_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        out["git_commit"] = os.environ.get("BENCH_GIT_COMMIT")
    import honeydew
    out["honeydew_path"] = str(Path(honeydew.__file__).parent)
    return out


#: trials during which other processes used more than this share of the machine are flagged
NOISY = 0.10


class QuietGate:
    """Before a trial, wait (within a budget for the whole run) until the machine has been quiet
    for a moment: less than ``NOISY`` of the CPUs busy, measured over 0.25 s while every host is
    idle.  On a shared machine this keeps trials out of other programs' bursts."""

    def __init__(self, budget_s: float) -> None:
        self.budget = budget_s
        self.waited = 0.0

    def wait(self) -> float:
        if self.budget <= 0:
            return 0.0
        ncpu = os.cpu_count() or 1
        ticks = os.sysconf("SC_CLK_TCK")
        t0 = time.monotonic()
        while self.waited + (time.monotonic() - t0) < self.budget:
            b0 = _cpu_busy()[0]
            time.sleep(0.25)
            busy = (_cpu_busy()[0] - b0) / ticks / (0.25 * ncpu)
            if busy < NOISY:
                break
        spent = time.monotonic() - t0
        self.waited += spent
        return spent


def _timed_trial(host: Host, kind: str, params: dict[str, Any], timeout: float,
                 gate: QuietGate | None = None) -> dict[str, Any]:
    """Run one trial and measure how much CPU the rest of the machine used meanwhile: machine-wide
    busy time (/proc/stat) minus this runner's and the host's (with every pool process it reaped)."""
    ticks = os.sysconf("SC_CLK_TCK")
    if not host.ready:
        host.run_start(timeout)
    waited = gate.wait() if gate else 0.0
    before = _cpu_busy()
    me0 = sum(os.times()[:2])
    t0 = time.monotonic()
    entry = host.run(kind, params, timeout)
    wall = time.monotonic() - t0
    busy, _ = _cpu_busy()
    # the broker's CPU (RabbitMQ, Redis) is the broker trials' own work, not another program's
    own = sum(os.times()[:2]) - me0 + entry.get("cpu_s", 0.0) + (entry.get("result") or {}).get("broker_cpu_s", 0.0)
    others = max(0.0, (busy - before[0]) / ticks - own)
    entry["trial_wall_s"] = wall
    entry["quiet_wait_s"] = waited
    entry["interference"] = others / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0
    return entry


def _cpu_busy(before: tuple[float, float] | None = None) -> Any:
    """Machine-wide (busy, total) CPU seconds from /proc/stat; with ``before``, the busy fraction
    since then (all CPUs; the benchmark itself keeps at most about 2 busy, so a much higher value
    means something else competed for the machine)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])
    busy = total - fields[3] - fields[4]
    if before is None:
        return busy, total
    return (busy - before[0]) / max(1e-9, total - before[1])


#: what --systems may name (the baselines serial, raw-pipes and pika always run with their measurements)
SELECTABLE = (*SYSTEMS, HUEY, DRAMATIQ)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and 2 repeats: checks the harness (< 30 s)")
    ap.add_argument("--only", nargs="+", metavar="NAME", default=None,
                    help=f"run only these families or trial kinds: {', '.join(FAMILIES)} "
                         f"(kinds: {', '.join(KIND_SYSTEMS)})")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (default: per family)")
    ap.add_argument("--systems", nargs="+", metavar="S", default=None,
                    help=f"only these systems (default all): {', '.join(SELECTABLE)}")
    ap.add_argument("--out", type=Path, default=None, help="output directory")
    ap.add_argument("--quiet-wait", type=float, default=None, metavar="S",
                    help="before each trial wait for the machine to be quiet, at most S seconds in all "
                         "(default 120; 0 with --smoke)")
    ap.add_argument("--retry-noisy", type=int, default=None, metavar="K",
                    help=f"run a trial again (up to K times) when other processes used > {NOISY * 100:.0f}%% of the "
                         f"CPUs during it (default 1; 0 with --smoke)")
    args = ap.parse_args(argv)
    kinds = [k for f in FAMILIES.values() for k in f]
    for name in args.only or ():
        if name not in FAMILIES and name not in kinds:
            ap.error(f"unknown measurement {name!r}; choose from {', '.join([*FAMILIES, *kinds])}")
    for s in args.systems or ():
        if s not in SELECTABLE:
            ap.error(f"unknown system {s!r}; choose from {', '.join(SELECTABLE)}")
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.smoke else 120.0
    if args.retry_noisy is None:
        args.retry_noisy = 0 if args.smoke else 1
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(family, kind, repeats) in the order they run."""
    out = []
    for fam, kinds in FAMILIES.items():
        for kind in kinds:
            if args.only and fam not in args.only and kind not in args.only:
                continue
            reps = args.repeats or (SMOKE_REPEATS if args.smoke else REPEATS[kind])
            out.append((fam, kind, reps))
    return out


def broker_check(steps: list[tuple[str, str, int]]) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """Before any host starts, for the measurements on the RabbitMQ broker: (the kinds skipped, with
    why; what the results must say about the ones that run; the systems left out of a kind).  No
    broker answering skips them; without ``honeydew.queues.RabbitMQ`` the peers run alone.  Sets
    ``$HONEYDEW_BENCH_RUN`` (inherited by the hosts): the prefix of every queue this run declares."""
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    absent: dict[str, set[str]] = {}
    kinds = [kind for _, kind, _ in steps if kind in BROKER_KINDS]
    if not kinds:
        return skipped, notes, absent
    from . import broker_trials
    os.environ["HONEYDEW_BENCH_RUN"] = os.urandom(4).hex()
    why = broker_trials.broker_missing()
    for kind in kinds:
        if why:
            skipped[kind] = why
            continue
        said = []
        missing = broker_trials.honeydew_missing()
        if missing:
            absent.setdefault(kind, set()).add(HONEYDEW)
            said.append(f"{missing}: the peers ran alone (its targets are not measured)")
        if not HAVE_DRAMATIQ:
            said.append("Dramatiq is not installed (the bench extra has it): bare pika only")
        elif broker_trials.redis_missing():
            said.append(broker_trials.redis_missing())
        if said:
            notes[kind] = "; ".join(said)
    return skipped, notes, absent


def broker_sweep() -> None:
    """Delete every queue of this run still on the broker (a trial deletes its own; a host killed
    in the middle of one cannot)."""
    from . import broker_trials
    try:
        found, errors = broker_trials.sweep(broker_trials.run_prefix())
    except Exception as e:  # the broker went away: nothing more to do here than say so
        print(f"WARNING: could not look for this run's queues on the broker: {type(e).__name__}: {e}", flush=True)
        return
    if found:
        print(f"WARNING: {len(found)} queue(s) of this run were left on the broker (a trial failed to delete "
              f"them) and are now deleted: {', '.join(found[:5])}{' ...' if len(found) > 5 else ''}", flush=True)
    for e in errors:
        print(f"WARNING: {e}", flush=True)


def broker_prefix(steps: list[tuple[str, str, int]]) -> str | None:
    """The prefix of every queue this run declared on the broker (None: it used none)."""
    if not any(kind in BROKER_KINDS for _, kind, _ in steps):
        return None
    from . import broker_trials
    return broker_trials.run_prefix()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even when started in the background (SIGINT ignored)
    started = time.monotonic()
    now = _dt.datetime.now(_dt.timezone.utc)
    sizes = SMOKE if args.smoke else FULL
    partial = bool(args.smoke or args.only or args.systems)
    out_dir: Path = args.out or (RESULTS / "local" if partial else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="honeydew-bench-logs-"))
    wanted = set(args.systems or SELECTABLE) | {SERIAL, FLOOR, PIKA}
    steps = plan(args)
    skipped, notes, absent = broker_check(steps)
    steps = [step for step in steps if step[1] not in skipped]

    print(f"honeydew benchmarks: {'SMOKE ' if args.smoke else ''}{WORKERS} workers per system, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; host logs in {logdir}", flush=True)
    for kind, why in skipped.items():
        print(f"  {kind}: skipped: {why}", flush=True)
    for kind, why in notes.items():
        print(f"  {kind}: {why}", flush=True)
    iters = None
    if any(kind == "map_cpu" for _, kind, _ in steps):
        iters = tasks.calibrate_busy(0.020)
        print(f"calibrated busy loop: {iters} iterations ~ 20 ms", flush=True)

    hosts: dict[str, Host] = {}
    for _, kind, _ in steps:  # start every host at once: their start-up is outside every timing
        for s in KIND_SYSTEMS[kind]:
            if s in wanted and s not in hosts and s not in absent.get(kind, ()):
                hosts[s] = Host(s, logdir)
                hosts[s].launch()
    for h in hosts.values():
        h.run_start(SMOKE_TIMEOUT if args.smoke else DEFAULT_TIMEOUT)
    gate = QuietGate(args.quiet_wait)
    load_before = os.getloadavg()
    cpu_before = _cpu_busy()
    raw: report.Raw = {}
    try:
        for fam, kind, reps in steps:
            systems = [s for s in KIND_SYSTEMS[kind] if s in wanted and s not in absent.get(kind, ())]
            params = dict(sizes[kind])
            if kind == "map_cpu":
                params["iters"] = iters
            timeout = SMOKE_TIMEOUT if args.smoke else TIMEOUT.get(fam, DEFAULT_TIMEOUT)
            raw[kind] = {s: [] for s in systems}
            t_kind = time.monotonic()
            timeouts = dict.fromkeys(systems, 0)
            for r in range(reps):
                order = systems[r % len(systems):] + systems[:r % len(systems)]
                for s in order:
                    if timeouts[s] >= MAX_TIMEOUTS:
                        raw[kind][s].append({"ok": False, "error": f"skipped: {MAX_TIMEOUTS} earlier repeats hung"})
                        continue
                    entry = _timed_trial(hosts[s], kind, params, timeout, gate)
                    for _ in range(args.retry_noisy):
                        if not entry.get("ok") or entry["interference"] <= NOISY:
                            break
                        print(f"  ~ {kind} / {s} / repeat {r + 1}: other processes used {entry['interference']:.0%}"
                              f" of the CPUs meanwhile; running it again", flush=True)
                        noisy_before = entry["interference"]
                        entry = _timed_trial(hosts[s], kind, params, timeout, gate)
                        entry["retried_after_interference"] = noisy_before
                    raw[kind][s].append(entry)
                    if not entry.get("ok"):
                        timeouts[s] += entry.get("error", "").startswith("TimeoutError")
                        print(f"  ! {kind} / {s} / repeat {r + 1} failed: "
                              f"{entry.get('error', '').strip().splitlines()[0][:200]}", flush=True)
                    elif entry["interference"] > NOISY:
                        print(f"  ~ {kind} / {s} / repeat {r + 1}: other processes used "
                              f"{entry['interference']:.0%} of the CPUs meanwhile", flush=True)
            print(f"  {kind}: {reps} repeat(s) x {len(systems)} system(s) in {time.monotonic() - t_kind:.1f}s",
                  flush=True)
    except BaseException:
        for h in hosts.values():  # interrupted (Ctrl-C, SIGTERM) or broken: stop every host now
            h.kill(dump=False)
        raise
    finally:
        for h in hosts.values():
            h.close()
        if any(kind in BROKER_KINDS for _, kind, _ in steps):
            broker_sweep()

    cpu_during = _cpu_busy(cpu_before)
    noisy = sorted({f"{k}/{s}" for k, per in raw.items() for s, es in per.items() for e in es
                    if e.get("interference", 0) > NOISY})
    interference = [e["interference"] for per in raw.values() for es in per.values() for e in es
                    if "interference" in e]
    ms = report.metrics(raw)
    ts = report.targets(ms, raw, {**notes, **skipped})
    elapsed = time.monotonic() - started
    mach = machine()
    vers = versions()
    start_methods = sorted({e["result"].get("start_method") for k in raw.values() for e in k.get(HONEYDEW, [])
                            if e.get("ok") and e["result"].get("start_method")})
    # the pools made by the fresh-interpreter scripts, not by the hosts: a script may have threads
    script_start_methods = sorted({e["result"].get("pool_start_method") for k in raw.values()
                                   for e in k.get(HONEYDEW, [])
                                   if e.get("ok") and e["result"].get("pool_start_method")})
    meta = {
        "date": now.isoformat(timespec="seconds"), "command": "python -m benchmarks.run " + " ".join(
            sys.argv[1:] if argv is None else argv), "smoke": args.smoke, "partial": partial,
        "workers": WORKERS, "machine": mach, "versions": vers, "sizes": sizes, "busy_iters_20ms": iters,
        "repeats": {k: r for _, k, r in steps}, "elapsed_s": elapsed, "honeydew_start_methods": start_methods,
        "honeydew_script_start_methods": script_start_methods,
        "host_helpers": {s: h.helpers for s, h in hosts.items() if h.helpers}, "host_logs": str(logdir),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "machine_cpu_busy_during_run": cpu_during,
        "quiet_wait_s": gate.waited,
        "interference_median": statistics.median(interference) if interference else None,
        "interference_max": max(interference) if interference else None, "noisy_trials": noisy,
        "skipped": skipped, "notes": notes,
        "broker_queue_prefix": broker_prefix(steps),
    }
    doc = {"meta": meta, "targets": ts, "metrics": ms, "raw": raw}
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(out_dir / "results.json")
    head = (f"Measured {now:%Y-%m-%d %H:%M} UTC on {mach['nproc']} CPUs ({mach['cpu']}), Python {mach['python']}, "
            f"Linux {mach['kernel']}; honeydew {vers.get('git_commit') or vers.get('honeydew')}; "
            f"{WORKERS} workers each; `{meta['command']}`; {elapsed / 60:.1f} min; median interference from other "
            f"processes {meta['interference_median'] or 0:.1%}.\n\n"
            + "".join(f"**{kind}:** skipped: {why}\n\n" for kind, why in skipped.items())
            + "".join(f"**{kind}:** {why}\n\n" for kind, why in notes.items()))
    (out_dir / "results.md").write_text(head + report.markdown(ms, ts))
    title = (f"honeydew vs peers, {WORKERS} workers - {mach['nproc']} CPUs, Python {mach['python']}, "
             f"{now:%Y-%m-%d}{' (smoke)' if args.smoke else ''}")
    try:
        report.chart(ms, ts, raw, out_dir / "results.png", title)
    except ImportError as e:
        print(f"(no chart: {e}; `make bench` installs matplotlib)")

    print()
    print(report.text_table(ms))
    print()
    print(report.text_targets(ts))
    if noisy:
        shown = ", ".join(noisy[:8]) + (f" and {len(noisy) - 8} more" if len(noisy) > 8 else "")
        print(f"\nWARNING: other processes used > {NOISY:.0%} of the CPUs during some trials ({shown}); "
              f"median interference {meta['interference_median']:.1%}, max {meta['interference_max']:.0%}. "
              f"Timings from a busy machine are not comparable; rerun on a quiet one.")
    passed = sum(t["pass"] for t in ts)
    measured = sum(t["status"] != "SKIP" for t in ts)
    print(f"\n{passed}/{measured} targets met; {elapsed:.0f}s; results in {out_dir}/results.json, results.png, "
          f"results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
