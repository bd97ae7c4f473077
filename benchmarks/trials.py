"""One trial of one measurement for one system.  Runs inside that system's benchmark host.

Each trial makes a fresh pool (the measurements are per pool), warms it up the same way for every
system (``_warm``: excluded from the timings), measures, leaves the pool by its own ``with`` exit,
checks that the work was really done, and returns plain numbers.  The trials of section 8 measure
what depends on a fresh interpreter (its ``__main__``, what it imported): each runs a script of
``benchmarks/scripts/`` as a new process, which makes its own pool, and returns what it printed.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from . import tasks
from .systems import FLOOR, HONEYDEW, MP, SERIAL, WORKERS, System, adapter

ME = psutil.Process()
SCRIPTS = Path(__file__).resolve().parent / "scripts"
MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers

def descendants() -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in ME.children(recursive=True)}
    except psutil.Error:
        return {}


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def single_threaded(name: str = HONEYDEW, deadline_s: float = 5.0) -> int:
    """For honeydew, wait (bounded) until this host runs one OS thread again: honeydew's default
    start method forks only from a single-threaded caller (as a user's script would be), and the
    previous pool's result thread takes a moment to end.  Returns the thread count seen."""
    end = time.monotonic() + deadline_s
    n = len(os.listdir("/proc/self/task"))
    while name == HONEYDEW and n > 1 and time.monotonic() < end:
        time.sleep(0.002)
        n = len(os.listdir("/proc/self/task"))
    return n


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def procs_cpu(procs: Iterable[psutil.Process]) -> float:
    """CPU seconds used so far by the given processes (user + system; those gone count nothing)."""
    total = 0.0
    for p in procs:
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def tree_cpu(pids: dict[int, psutil.Process]) -> float:
    """CPU seconds used so far by this host and the given live processes (user + system)."""
    t = os.times()
    return t[0] + t[1] + procs_cpu(pids.values())


def _warm(system: System, pool: Any) -> None:
    """The same warm-up for every side, excluded from every timing: sequential round trips, then
    a concurrent burst so that every worker has started and has run the task."""
    for _ in range(20):
        system.call(pool, tasks.noop)
    handles = [system.submit(pool, tasks.noop) for _ in range(8 * WORKERS)]
    for h in handles:
        system.collect(h)


def _start_method(pool: Any) -> str | None:
    return getattr(pool, "start_method", None)


def uss(p: psutil.Process) -> int | None:
    try:
        return p.memory_full_info().uss
    except psutil.Error:
        return None


# --------------------------------------------------------------------------- 1. call latency

def latency(name: str, p: dict[str, Any]) -> dict[str, Any]:
    system = adapter(name)
    threads = single_threaded(name)
    pool = system.open()
    try:
        _warm(system, pool)
        n = p["calls"]
        samples = [0] * n
        clock = time.perf_counter_ns
        call, noop = system.call, tasks.noop
        procs = descendants()
        cpu0 = tree_cpu(procs)
        for i in range(n):
            t = clock()
            call(pool, noop)
            samples[i] = clock() - t
        cpu = tree_cpu(procs) - cpu0
    finally:
        system.exit(pool)
    samples.sort()
    us = [s / 1000.0 for s in samples]
    return {"calls": n, "p50_us": percentile(us, 50), "p90_us": percentile(us, 90), "p99_us": percentile(us, 99),
            "max_us": us[-1], "mean_us": sum(us) / n, "cpu_us_per_call": cpu / n * 1e6, "processes": len(procs),
            "threads_before": threads, "start_method": _start_method(pool)}


def floor(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """The floor under any pool's round trip on this machine: one pickled message per hop over
    ``multiprocessing.connection`` pipes between forked processes, no pool logic at all.
    ``2-hop``: caller -> worker -> caller.  ``3-hop``: caller -> relay (a queue process) ->
    worker -> caller, the shape of honeydew's path."""
    import multiprocessing.connection as mpc
    n = p["calls"]
    out: dict[str, Any] = {"calls": n}
    for hops in (2, 3):
        to_worker_r, to_worker_w = mpc.Pipe(duplex=False)
        back_r, back_w = mpc.Pipe(duplex=False)
        relay_r = relay_w = None
        kids = []
        if hops == 3:
            relay_r, relay_w = mpc.Pipe(duplex=False)
            pid = os.fork()
            if pid == 0:  # the relay: forward each message to the worker
                try:
                    while True:
                        msg = relay_r.recv()
                        if msg is None:
                            to_worker_w.send(None)
                            break
                        to_worker_w.send(msg)
                finally:
                    os._exit(0)
            kids.append(pid)
        pid = os.fork()
        if pid == 0:  # the worker: run the task, reply straight to the caller
            try:
                while True:
                    msg = to_worker_r.recv()
                    if msg is None:
                        break
                    back_w.send((msg[0], msg[1]()))
            finally:
                os._exit(0)
        kids.append(pid)
        send = (relay_w if hops == 3 else to_worker_w).send
        recv = back_r.recv
        samples = [0] * n
        clock = time.perf_counter_ns
        noop = tasks.noop
        for i in range(-200, n):  # 200 warm-up round trips, not timed
            t = clock()
            send((i, noop))
            recv()
            if i >= 0:
                samples[i] = clock() - t
        send(None)
        for k in kids:
            os.waitpid(k, 0)
        for c in (to_worker_r, to_worker_w, back_r, back_w, relay_r, relay_w):
            if c is not None:
                c.close()
        samples.sort()
        us = [x / 1000.0 for x in samples]
        out[f"p50_us_{hops}hop"] = percentile(us, 50)
        out[f"p99_us_{hops}hop"] = percentile(us, 99)
    return out


# --------------------------------------------------------------------------- 2. throughput

def throughput(name: str, p: dict[str, Any]) -> dict[str, Any]:
    system = adapter(name)
    threads = single_threaded(name)
    pool = system.open()
    try:
        _warm(system, pool)
        n = p["jobs"]
        submit, collect, noop = system.submit, system.collect, tasks.noop
        procs = descendants()
        cpu0 = tree_cpu(procs)
        t0 = time.perf_counter()
        handles = [submit(pool, noop) for _ in range(n)]
        t1 = time.perf_counter()
        done = sum(1 for h in handles if collect(h) is None)
        t2 = time.perf_counter()
        cpu = tree_cpu(procs) - cpu0
    finally:
        system.exit(pool)
    if done != n:
        raise AssertionError(f"{name}: {done} of {n} results")
    return {"jobs": n, "jobs_per_s": n / (t2 - t0), "submit_s": t1 - t0, "total_s": t2 - t0,
            "cpu_us_per_job": cpu / n * 1e6, "processes": len(procs), "threads_before": threads,
            "start_method": _start_method(pool)}


def cast(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """Fire and forget until drained: honeydew ``cast`` N then close+join.  The reference for
    ``mp.Pool`` is ``apply_async`` N (results never read) then close+join."""
    system = adapter(name)
    threads = single_threaded(name)
    pool = system.open()
    n = p["jobs"]
    noop = tasks.noop
    try:
        _warm(system, pool)
        if name == HONEYDEW:
            fire = pool.cast
            t0 = time.perf_counter()
            for _ in range(n):
                fire(noop)
        elif name == MP:
            fire = pool.apply_async
            t0 = time.perf_counter()
            for _ in range(n):
                fire(noop)
        else:
            raise ValueError(f"no fire-and-forget measurement for {name}")
        t1 = time.perf_counter()
        pool.close()
        pool.join()
        t2 = time.perf_counter()
    except BaseException:
        system.exit(pool)
        raise
    return {"jobs": n, "jobs_per_s": n / (t2 - t0), "enqueue_s": t1 - t0, "total_s": t2 - t0,
            "threads_before": threads, "start_method": _start_method(pool)}


# --------------------------------------------------------------------------- 3. batch (map)

def map_tiny(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """``map`` over tiny items.  Peers whose default chunksize is 1 run a smaller prefix of the
    same items (``items_chunks_of_one``) and their wall time is scaled to the full count."""
    system = adapter(name)
    full = p["items"]
    n = min(full, p["items_chunks_of_one"]) if system.map_chunks_of_one else full
    items = list(range(n))
    threads = single_threaded(name)
    pool = system.open()
    try:
        _warm(system, pool)
        system.map(pool, tasks.tiny, list(range(100)))  # warm the map path too (same for all)
        t0 = time.perf_counter()
        out = system.map(pool, tasks.tiny, items)
        t1 = time.perf_counter()
    finally:
        system.exit(pool)
    if len(out) != n or out[0] != 1 or out[-1] != n or sum(out) != n * (n + 1) // 2:
        raise AssertionError(f"{name}: wrong map results")
    wall = t1 - t0
    return {"items": n, "full_items": full, "extrapolated": n != full, "wall_s": wall * full / n,
            "measured_wall_s": wall, "items_per_s": n / wall, "threads_before": threads,
            "start_method": _start_method(pool)}


def map_cpu(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """``map`` over CPU-bound items (``busy(iters)``, about 20 ms each).  ``serial`` runs the same
    items one after the other in the host itself: the numerator of the CPU efficiency.
    ``raw-pipes`` forks 2 bare processes that each run half the items: what this machine's 2 CPUs
    give at best (on a VM two busy vCPUs may not run twice as fast as one)."""
    iters, n = p["iters"], p["items"]
    items = [iters] * n
    expect = tasks.busy(iters)
    if name == SERIAL:
        t0 = time.perf_counter()
        out = [tasks.busy(x) for x in items]
        wall = time.perf_counter() - t0
        if out != [expect] * n:
            raise AssertionError("serial: wrong results")
        return {"items": n, "iters": iters, "wall_s": wall, "per_item_ms": wall / n * 1000}
    if name == FLOOR:
        # the machine's own ceiling: 2 forked processes, each running its half, nothing else
        t0 = time.perf_counter()
        kids = []
        for k in range(WORKERS):
            pid = os.fork()
            if pid == 0:
                try:
                    for x in items[k::WORKERS]:
                        tasks.busy(x)
                finally:
                    os._exit(0)
            kids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in kids]
        wall = time.perf_counter() - t0
        if any(codes):
            raise AssertionError(f"raw fork workers exited with {codes}")
        return {"items": n, "iters": iters, "wall_s": wall}
    system = adapter(name)
    threads = single_threaded(name)
    pool = system.open()
    try:
        _warm(system, pool)
        t0 = time.perf_counter()
        out = system.map(pool, tasks.busy, items)
        wall = time.perf_counter() - t0
    finally:
        system.exit(pool)
    if list(out) != [expect] * n:
        raise AssertionError(f"{name}: wrong map results")
    return {"items": n, "iters": iters, "wall_s": wall, "threads_before": threads,
            "start_method": _start_method(pool)}


# --------------------------------------------------------------------------- 4. start and stop

def start_stop(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """``Pool(...)`` to the first result; then leaving ``with`` to every process of the pool gone
    (each one's pidfd readable, i.e. exited), checked again with psutil afterwards."""
    system = adapter(name)
    threads = single_threaded(name)
    before = set(descendants())
    t0 = time.perf_counter()
    pool = system.open()
    system.call(pool, tasks.noop)
    t1 = time.perf_counter()
    procs = {pid: pr for pid, pr in descendants().items() if pid not in before}
    fds: dict[int, int] = {}
    for pid in procs:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    t2 = time.perf_counter()
    system.exit(pool)
    t3 = time.perf_counter()
    deadline = t3 + p.get("stop_deadline_s", 10.0)
    waiting = set(fds)
    t4 = t3
    while waiting:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        ready, _, _ = select.select(list(waiting), [], [], left)
        waiting -= set(ready)
        t4 = time.perf_counter()
    for fd in fds:
        os.close(fd)
    time.sleep(0.05)
    procs.update((pid, pr) for pid, pr in descendants().items() if pid not in before)  # any started late
    leftovers = sorted(f"{pid}:{_name(pr)}" for pid, pr in procs.items() if alive(pr))
    return {"first_result_ms": (t1 - t0) * 1000, "stop_ms": (t4 - t2) * 1000 if not waiting else None,
            "exit_returned_ms": (t3 - t2) * 1000, "processes": len(procs), "leftovers": leftovers,
            "threads_before": threads, "start_method": _start_method(pool)}


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return "?"


# --------------------------------------------------------------------------- 6. memory

def memory(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """USS of each idle worker (and, for honeydew, each monitor, the queue and the supervisor)
    and of the whole tree, after the same warm-up and a short idle period."""
    system = adapter(name)
    threads = single_threaded(name)
    before = set(descendants())
    pool = system.open()
    try:
        _warm(system, pool)
        time.sleep(p.get("idle_s", 0.5))
        procs = {pid: pr for pid, pr in descendants().items() if pid not in before}
        roles: dict[str, list[int]] = {}
        total = 0
        for pr in procs.values():
            u = uss(pr)
            if u is None:
                continue
            total += u
            if name == HONEYDEW:
                role = _name(pr).split("-")[1] if _name(pr).startswith("hd-") else "other"
            else:
                role = "worker" if pr.ppid() == ME.pid else "other"
            roles.setdefault(role, []).append(u)
    finally:
        system.exit(pool)
    out: dict[str, Any] = {"tree_uss": total, "processes": len(procs), "threads_before": threads,
                           "start_method": _start_method(pool)}
    for role, values in roles.items():
        values.sort()
        out[f"{role}_uss"] = values
    return out


# --------------------------------------------------------------------------- 5. recovery

class _Reports:
    """The host's end of the datagram socket the recovery worker reports to."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.backlog: list[tuple[Any, ...]] = []

    def next(self, kind: str, timeout: float = 30.0, pid_not: set[int] | None = None) -> tuple[Any, ...]:
        """The next report of ``kind`` (optionally from a pid not in ``pid_not``)."""
        end = time.monotonic() + timeout
        while True:
            for i, r in enumerate(self.backlog):
                if r[0] == kind and (not pid_not or r[1] not in pid_not):
                    return self.backlog.pop(i)
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} report within {timeout}s (seen: {self.backlog})")
            self.sock.settimeout(left)
            try:
                self.backlog.append(ast.literal_eval(self.sock.recv(4096).decode()))
            except TimeoutError:
                pass

    def close(self) -> None:
        self.sock.close()


def recovery(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """Under ``honeydew.Requeue``: worker A runs a job that hangs, worker B a job that blocks;
    SIGKILL A.  Measured from the kill: the replacement's init, the re-run's start (the
    replacement serving: B is still busy, so only the replacement can take it) and its result.
    Then a stream of short jobs with workers SIGKILLed in the middle of it: jobs lost."""
    import honeydew

    from . import hd_worker
    if name != HONEYDEW:
        raise ValueError("recovery is measured for honeydew only")
    threads = single_threaded()
    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        reports = _Reports(os.path.join(tmp, "r"))
        try:
            out = _recover_once(honeydew, hd_worker, reports, tmp)
            out.update(_loss_stream(honeydew, hd_worker, reports.path, p))
        finally:
            reports.close()
    out["threads_before"] = threads
    return out


def _recover_once(honeydew: Any, hd_worker: Any, reports: _Reports, tmp: str) -> dict[str, Any]:
    pool = honeydew.Pool(hd_worker, [reports.path], num_workers=WORKERS, failure_mode=honeydew.Requeue())
    start_method = pool.start_method
    try:
        first = {reports.next("init")[1] for _ in range(WORKERS)}
        for _ in range(20):
            pool.call(hd_worker.ping)
        vic = pool.submit(hd_worker.victim)
        _, pid_a, _, deliveries = reports.next("start")
        release = os.path.join(tmp, "release")
        blk = pool.submit(hd_worker.blocker, release)
        _, pid_b, _, _ = reports.next("start", pid_not={pid_a})
        if deliveries != 1 or {pid_a, pid_b} != first:
            raise AssertionError(f"unexpected start: A={pid_a} B={pid_b} workers={first} deliveries={deliveries}")
        t_kill = time.monotonic()
        os.kill(pid_a, signal.SIGKILL)
        _, pid_c, init_start, init_end = reports.next("init", pid_not=first)
        _, pid_rerun, t_rerun, rerun_deliveries = reports.next("start")
        result = vic.result(timeout=30)
        t_done = time.monotonic()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.sendto(b"go", release)
        finally:
            s.close()
        blk_pid = blk.result(timeout=30)
        lost = 0 if (result == (pid_c, 2) and blk_pid == pid_b) else 1
    finally:
        pool.__exit__(None, None, None)
    return {"rerun_done_ms": (t_done - t_kill) * 1000, "serving_ms": (t_rerun - t_kill) * 1000,
            "init_ms": (init_end - init_start) * 1000, "kill_to_init_ms": (init_start - t_kill) * 1000,
            "rerun_on_replacement": pid_rerun == pid_c and pid_c not in (pid_a, pid_b),
            "rerun_deliveries": rerun_deliveries, "lost_in_kill": lost, "start_method": start_method}


def _loss_stream(honeydew: Any, hd_worker: Any, report_path: str, p: dict[str, Any]) -> dict[str, Any]:
    n, kills, nap = p["stream_jobs"], p["stream_kills"], p["stream_nap_s"]
    pool = honeydew.Pool(hd_worker, [report_path], num_workers=WORKERS, failure_mode=honeydew.Requeue())
    ok = failed = redelivered = killed = 0
    try:
        futures = [pool.submit(hd_worker.nap, nap) for _ in range(n)]
        marks = {n * (k + 1) // (kills + 1) for k in range(kills)}
        for i, fut in enumerate(futures):
            if i in marks:
                workers = [pr for pr in descendants().values() if _name(pr).startswith("hd-worker")]
                if workers:
                    try:
                        workers[killed % len(workers)].send_signal(signal.SIGKILL)
                        killed += 1
                    except psutil.Error:
                        pass
            try:
                d = fut.result(timeout=60)
            except Exception:
                failed += 1
                continue
            ok += 1
            redelivered += d > 1
    finally:
        pool.__exit__(None, None, None)
    return {"stream_jobs": n, "stream_ok": ok, "stream_lost": n - ok, "stream_failed": failed,
            "stream_redelivered": redelivered, "stream_kills": killed}


# --------------------------------------------------------------------------- 7. scale

def _wait_for_process(before: set[int], prefix: str, timeout: float = 10.0) -> psutil.Process:
    """The new descendant whose name starts with ``prefix`` (pool processes start asynchronously)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for pid, pr in descendants().items():
            if pid not in before and _name(pr).startswith(prefix):
                return pr
        time.sleep(0.005)
    raise TimeoutError(f"no {prefix}* process within {timeout}s")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return chr(data[data.rindex(b")") + 2])


def wait_idle(pid: int, timeout: float = 120.0) -> float:
    """Wait until process ``pid`` sleeps (twice in a row, 0.2 ms apart): for the queue process
    that means it has read everything it was sent (it only ever sleeps in ``poll``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _state(pid) == "S":
            time.sleep(0.0002)
            if _state(pid) == "S":
                return time.perf_counter()
        else:
            time.sleep(0.00005)
    raise TimeoutError(f"process {pid} still busy after {timeout}s")


def scale(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """A pool whose one worker is held by a job: every job cast after it stays pending in the queue
    process.  Enqueue (``cast``) in segments, each timed from its first cast until the queue process
    has absorbed it; the enqueue rate from ~10 k pending (median of 3 segments) vs around ~1 M
    pending (the last 3 segments); queue process USS growth per pending job."""
    import honeydew
    if name != HONEYDEW:
        raise ValueError("scale is measured for honeydew only")
    threads = single_threaded()
    before = set(descendants())
    release = tempfile.mktemp(prefix="honeydew-bench-release-")
    pool = honeydew.Pool(num_workers=1)
    start_method = pool.start_method
    try:
        queue = _wait_for_process(before, "hd-queue")
        pool.cast(tasks.block, release)
        deadline = time.monotonic() + 30
        while not any(pool.status()["queues"][0]["running"].values()):
            if time.monotonic() > deadline:
                raise TimeoutError("the worker never took the holding job")
            time.sleep(0.005)
        wait_idle(queue.pid)
        base = uss(queue) or 0
        low, high, seg = p["low"], p["high"], p["segment"]
        fire, noop = pool.cast, tasks.noop
        segments = []
        pending = 0
        sizes = [low] + [seg] * ((high + seg - low + seg - 1) // seg)
        for size in sizes:
            t0 = time.perf_counter()
            for _ in range(size):
                fire(noop)
            t1 = time.perf_counter()
            t2 = wait_idle(queue.pid)
            segments.append({"pending_before": pending, "jobs": size, "rate": size / (t2 - t0),
                             "caller_rate": size / (t1 - t0)})
            pending += size
        top = uss(queue) or 0
    finally:
        pool.terminate()  # (the holding job is never released: terminate stops it)
    # each end is the median of 3 consecutive segments (one segment can land on a GC pass or a
    # burst from another program): from ~10k pending on, and the last three, around ~1M pending
    first = [s for s in segments if s["pending_before"] >= low][:3]
    last = segments[-3:]
    at_low = {"rate": statistics.median(s["rate"] for s in first), "pending_before": first[0]["pending_before"]}
    at_high = {"rate": statistics.median(s["rate"] for s in last), "pending_before": last[0]["pending_before"]}
    import cloudpickle
    payload = len(pickle.dumps((0, cloudpickle.dumps(noop, protocol=5), (), {}), protocol=5))
    return {"segments": segments, "rate_low": at_low["rate"], "rate_high": at_high["rate"],
            "pending_low": at_low["pending_before"], "pending_high": at_high["pending_before"],
            "pending_total": pending, "queue_uss_base": base, "queue_uss_full": top,
            "bytes_per_job": (top - base) / pending, "payload_bytes_approx": payload,
            "threads_before": threads, "start_method": start_method}


# --------------------------------------------------------------------------- 8. fresh interpreters

def run_script(script: str, *args: Any) -> dict[str, Any]:
    """Run ``benchmarks/scripts/<script>.py ARGS... --workers 2`` as a new interpreter (so it is
    ``__main__`` there, with only what it imported) and return the JSON line it printed last.
    Its output goes through files, not pipes: a pool process that outlived the script cannot
    hold the trial up; its stderr is copied into this host's log."""
    cmd = [sys.executable, str(SCRIPTS / f"{script}.py"), *map(str, args), "--workers", str(WORKERS)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=SCRIPTS.parent.parent)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if stderr:
        sys.stderr.write(f"--- {' '.join(cmd[1:])} (exit {proc.returncode}), its stderr:\n{stderr}")
        sys.stderr.flush()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{script}.py {' '.join(map(str, args))} exited with {proc.returncode}"
                           f"{'' if lines else ' without a result'}:\n{tail}")
    return json.loads(lines[-1])


def main_globals(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """A script whose ``__main__`` holds a ``p["n"]``-byte global read by its task: pool made,
    10 calls, a map over 200 items, pool left (``scripts/main_globals.py``): its wall time.

    For honeydew, how much of the global the queue process holds while the jobs run: the script
    runs twice more with ``--sample-uss`` (its queue process's USS read every 2 ms from just before
    the first call until just after the map), with a ``p["n_small"]``-byte global and with a
    ``p["n"]``-byte one; ``queue_uss_growth_mib`` is the difference of the two peaks.  (The USS
    read once at the end would miss a queue that held a copy of the global per job in flight: by
    then it has handed those buffers back to the OS.)  The sampler takes CPU from the script, so
    the timed run is the first one, without it.  Per trial: timed ``n``, sampled ``n_small``,
    sampled ``n``."""
    big = _run_main_globals(name, p["n"])
    out: dict[str, Any] = dict(big)
    if name != HONEYDEW:
        return out
    runs = {"small": _run_main_globals(name, p["n_small"], "--sample-uss"),
            "big": _run_main_globals(name, p["n"], "--sample-uss")}
    out["small_n"] = runs["small"]["n"]
    for size, r in runs.items():
        if not r["queue_uss_peak"] or not r["queue_uss"] or not r["uss_samples"]:
            raise AssertionError(f"{name}: no USS of the queue process in the {size} sampled run: {r}")
        out[f"queue_uss_peak_{size}_mib"] = r["queue_uss_peak"] / MiB
        out[f"queue_uss_final_{size}_mib"] = r["queue_uss"] / MiB
        out[f"queue_uss_first_{size}_mib"] = r["queue_uss_first"] / MiB
        out[f"uss_samples_{size}"] = r["uss_samples"]
        out[f"uss_max_gap_ms_{size}"] = r["uss_max_gap_ms"]
        out[f"sampled_wall_s_{size}"] = r["wall_s"]
    out["queue_uss_growth_mib"] = (runs["big"]["queue_uss_peak"] - runs["small"]["queue_uss_peak"]) / MiB
    out["queue_uss_final_growth_mib"] = (runs["big"]["queue_uss"] - runs["small"]["queue_uss"]) / MiB
    return out


def _run_main_globals(name: str, n: int, *flags: str) -> dict[str, Any]:
    """One run of ``scripts/main_globals.py``, checked: the global had ``n`` bytes and, for
    honeydew, the script imported this tree's honeydew (the harness puts it first on PYTHONPATH)."""
    r = run_script("main_globals", name, n, *flags)
    if r["n"] != n:
        raise AssertionError(f"{name}: the script made a {r['n']}-byte global instead of {n}")
    if name == HONEYDEW:
        here = SCRIPTS.parent.parent / "honeydew"
        if not r.get("honeydew_file") or Path(r["honeydew_file"]).resolve().parent != here:
            raise AssertionError(f"the script imported honeydew from {r.get('honeydew_file')}, not from {here}")
    return r


def numpy_first(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """A script that imported numpy: pool made to the first result of a no-op defined in the
    script (``scripts/numpy_first.py``), with the script's thread count before the pool."""
    return run_script("numpy_first", name)


def big_payload(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """A ``p["bytes"]``-byte ``bytes`` argument echoed back by a task of the script, after one small
    warm-up call: the median of ``p["round_trips"]`` round trips (``scripts/big_payload.py``)."""
    out = run_script("big_payload", name, p["bytes"], "--round-trips", p["round_trips"])
    if out["bytes"] != p["bytes"] or len(out["samples_ms"]) != p["round_trips"]:
        raise AssertionError(f"{name}: {len(out['samples_ms'])} round trips of {out['bytes']} bytes, "
                             f"expected {p['round_trips']} of {p['bytes']}")
    return out


# --------------------------------------------------------------------------- 9. durable queues

def durable(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """Durable cast+run+ack of no-op jobs until drained, from one casting thread (``jobs_1`` jobs)
    and from eight (``jobs_8``), and the one thread's cast latency (a cast returns once the job is
    stored).  Each run on a fresh file.  honeydew: a Pool of 2 workers on
    ``honeydew.queues.SQLite`` (its defaults: ``synchronous=FULL``), drained by close+join.  huey:
    ``SqliteHuey(fsync=True)`` and a consumer of 2 worker processes polling every millisecond,
    drained when its queue is empty (its last jobs may still be running then)."""
    out: dict[str, Any] = {}
    run = _durable_honeydew if name == HONEYDEW else _durable_huey
    for threads, n in ((1, p["jobs_1"]), (8, p["jobs_8"])):
        with tempfile.TemporaryDirectory(prefix="honeydew-bench-durable-") as tmp:
            rate, latencies = run(os.path.join(tmp, "q.db"), threads, n)
        out[f"jobs_per_s_{threads}t"] = rate
        if latencies:
            latencies.sort()
            out["cast_p50_us"] = percentile(latencies, 50) * 1e6
            out["cast_p99_us"] = percentile(latencies, 99) * 1e6
    out.update(jobs_1=p["jobs_1"], jobs_8=p["jobs_8"], disk_commits_per_s=_disk_commits_per_s())
    return out


def _disk_commits_per_s(n: int = 300) -> float:
    """This disk, now: single-row commits/s of a bare SQLite file (WAL, ``synchronous=FULL``), the
    floor every durable queue here stands on (its speed varies with the host, run to run)."""
    import sqlite3

    with tempfile.TemporaryDirectory(prefix="honeydew-bench-disk-") as tmp:
        db = sqlite3.connect(os.path.join(tmp, "disk.db"), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")
            row = (b"x" * 200,)
            t0 = time.perf_counter()
            for _ in range(n):
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO t (payload) VALUES (?)", row)
                db.execute("COMMIT")
            return n / (time.perf_counter() - t0)
        finally:
            db.close()


def _cast_from(threads: int, n: int, fire: Any, fn: Any) -> list[float]:
    """``fire(fn)`` ``n`` times from ``threads`` threads; one thread's cast latencies (seconds)."""
    if threads == 1:
        clock = time.perf_counter
        latencies = [0.0] * n
        for i in range(n):
            t = clock()
            fire(fn)
            latencies[i] = clock() - t
        return latencies
    import threading

    per = n // threads

    def cast_some() -> None:
        for _ in range(per):
            fire(fn)

    pool = [threading.Thread(target=cast_some) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return []


def _durable_honeydew(path: str, threads: int, n: int) -> tuple[float, list[float]]:
    import honeydew
    from honeydew.queues import Owner, SQLite

    single_threaded(HONEYDEW)
    with honeydew.Pool(num_workers=WORKERS, queue=SQLite(path)) as pool:
        for _ in range(20):
            pool.call(tasks.noop)
        t0 = time.perf_counter()
        latencies = _cast_from(threads, n, pool.cast, tasks.noop)
        pool.close()
        pool.join()
        t1 = time.perf_counter()
    check = SQLite(path)
    check.open(Owner("bench-check", 0, 0, os.getpid()))
    try:
        left = len(check) + check.status()["reserved"]
    finally:
        check.close()
    if left:
        raise AssertionError(f"honeydew: {left} job(s) left in {path} after the drain")
    return (n // threads) * threads / (t1 - t0), latencies


def _durable_huey(path: str, threads: int, n: int) -> tuple[float, list[float]]:
    from . import huey_app

    root = str(Path(__file__).resolve().parent.parent)
    h, noop = huey_app.build(path)
    env = dict(os.environ, HONEYDEW_BENCH_HUEY_DB=path,
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    consumer = subprocess.Popen([sys.executable, "-m", "huey.bin.huey_consumer", "benchmarks.huey_app.huey",
                                 "-w", str(WORKERS), "-k", "process", "-d", "0.001", "-m", "0.001", "-b", "1.0",
                                 "-C", "-n", "-q"], cwd=root, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def drained(deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while h.pending_count():
            if consumer.poll() is not None:
                raise RuntimeError(f"the huey consumer exited ({consumer.returncode}): "
                                   f"{consumer.stderr.read().decode()[-2000:] if consumer.stderr else ''}")
            if time.monotonic() > end:
                raise TimeoutError(f"huey: {h.pending_count()} job(s) still queued after {deadline_s}s")
            time.sleep(0.001)

    try:
        for _ in range(20):
            noop()
        drained(60)
        t0 = time.perf_counter()
        latencies = _cast_from(threads, n, lambda fn: fn(), noop)
        drained(600)
        t1 = time.perf_counter()
    finally:
        try:
            os.killpg(consumer.pid, signal.SIGINT)
            consumer.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(consumer.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            consumer.wait()
        if consumer.stderr:
            consumer.stderr.close()
    return (n // threads) * threads / (t1 - t0), latencies


# --------------------------------------------------------------------------- 10. RabbitMQ

def rabbitmq(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """honeydew's RabbitMQ queue beside Dramatiq and bare pika on the same broker
    (``benchmarks/broker_trials.py``, imported only by the hosts that run it)."""
    from . import broker_trials
    return broker_trials.rabbitmq(name, p)


TRIALS = {
    "latency": latency, "floor": floor, "throughput": throughput, "cast": cast, "map_tiny": map_tiny,
    "map_cpu": map_cpu, "start_stop": start_stop, "memory": memory, "recovery": recovery, "scale": scale,
    "main_globals": main_globals, "numpy_first": numpy_first, "big_payload": big_payload, "durable": durable,
    "rabbitmq": rabbitmq,
}


def run_trial(kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    return TRIALS[kind](name, params)

