"""Helpers and tasks for tests/integration.  What the fault tests share with these (waiting, pool
process discovery, caller scripts, ``echo``/``getpid``/``record_run``...) lives in
``support.common`` and is re-exported here.

This module is also a worker module (``honeydew.Pool(H, [log_dir, ...])``): ``init`` logs every
attempt to ``<log_dir>/init.log`` and can be told to fail.  Its plain functions take an optional
trailing ``*_state`` so that they run on a worker-less pool and on a pool with state alike.
Importable, so everything here pickles by reference.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import honeydew
from support.common import (  # noqa: F401  (re-exported: tests use them as H.<name>)
    CLOCK_SLACK,
    POOL_PREFIXES,
    REPO_DIR,
    TESTS_DIR,
    Watched,
    announce_then_wait,
    by_name,
    call_with_deadline,
    child_pids,
    count_runs,
    descendants,
    echo,
    finish,
    getpid,
    init_backoff_floor,
    kill_all,
    names,
    one,
    pool_processes,
    read_line_with,
    reaped,
    record_run,
    run_script,
    script_env,
    signal_pid,
    small_tmpfs,
    start_script,
    start_watched,
    wait_for_file,
    wait_gone,
    wait_until,
    worker_pids,
    write_atomically,
    write_script,
    zombie_children,
)

# --- a worker module: init that logs (and may fail) ---------------------------------------------

def init(log_dir: str | None = None, failures: int = 0, mode: str = "count") -> dict[str, Any]:
    """Log the attempt (``pid monotonic wall`` to ``log_dir/init.log``) and maybe fail.

    ``mode``: ``count`` fails the first ``failures`` attempts (pool-wide); ``always`` always fails;
    ``one_healthy``: the first attempt to claim ``log_dir/healthy`` succeeds, every other one fails."""
    pid = os.getpid()
    if log_dir is not None:
        log = Path(log_dir) / "init.log"
        with open(log, "a") as f:
            f.write(f"{pid} {time.monotonic():.6f} {time.time():.6f}\n")
        attempts = len(log.read_text().splitlines())
        if mode == "always":
            raise RuntimeError(f"init always fails (attempt {attempts})")
        if mode == "count" and attempts <= failures:
            raise RuntimeError(f"init failure {attempts} of {failures}")
        if mode == "one_healthy":
            try:
                os.close(os.open(Path(log_dir) / "healthy", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                raise RuntimeError("not the healthy worker") from None
    return {"pid": pid, "created": time.monotonic(), "log_dir": log_dir, "jobs": 0}


def init_attempts(log_dir: Path) -> list[tuple[int, float]]:
    """(pid, monotonic time) of every init attempt logged so far."""
    log = Path(log_dir) / "init.log"
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        pid, mono, _ = line.split()
        out.append((int(pid), float(mono)))
    return out


@honeydew.task
def state_of(state):
    return state


@honeydew.task
def bump(state):
    """Mutates the worker's state: shows that the state lives as long as the worker."""
    state["jobs"] += 1
    return state["pid"], state["jobs"]


# --- plain functions (any pool) -----------------------------------------------------------------

def crash_self(*_state: Any) -> None:
    """SIGKILL the worker running this (as the OOM killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)


def touch(path: str, *_state: Any) -> str:
    write_atomically(Path(path), str(os.getpid()))
    return path


def nap(seconds: float, *_state: Any) -> float:
    time.sleep(seconds)
    return seconds


def nap_pid(seconds: float, *_state: Any) -> int:
    time.sleep(seconds)
    return os.getpid()


def nap_then_touch(seconds: float, path: str, *_state: Any) -> int:
    time.sleep(seconds)
    Path(path).write_text("ran")
    return os.getpid()


def job_info(*_state: Any) -> tuple[str, int, int, int]:
    info = honeydew.current_job()
    return info.id, info.deliveries, info.worker, os.getpid()


def crash_until(directory: str, good_delivery: int, *_state: Any) -> tuple[int, int]:
    """Record the run; SIGKILL the worker until the job's ``good_delivery``-th delivery."""
    record_run(directory)
    deliveries = honeydew.current_job().deliveries
    if deliveries < good_delivery:
        os.kill(os.getpid(), signal.SIGKILL)
    return deliveries, os.getpid()


def always_crash(directory: str, *_state: Any) -> None:
    record_run(directory)
    os.kill(os.getpid(), signal.SIGKILL)


def fail_counted(directory: str, exc_type: type[BaseException], *_state: Any) -> None:
    """Record the run, then raise ``exc_type``."""
    record_run(directory)
    raise exc_type(f"run {count_runs(directory)}")


def fail_until(directory: str, good_run: int, *_state: Any) -> int:
    """Record the run; raise ValueError on runs before ``good_run`` (a file count)."""
    record_run(directory)
    n = count_runs(directory)
    if n < good_run:
        raise ValueError(f"run {n}")
    return n


def crash_then_raise(directory: str, *_state: Any) -> int:
    """First delivery: SIGKILL the worker; later ones raise ValueError (recorded as runs)."""
    record_run(directory)
    if honeydew.current_job().deliveries == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    raise ValueError(f"delivery {honeydew.current_job().deliveries}")


def restart_me(*_state: Any) -> int:
    honeydew.restart_worker()
    return os.getpid()


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be rebuilt: ``__reduce__`` gives ``(cls, (msg,))`` and ``__init__`` needs two."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def raise_unrebuildable(*_state: Any) -> None:
    raise NeedsTwoArgs("left", "right")


def return_lock(*_state: Any) -> threading.Lock:
    return threading.Lock()


def print_and_return(text: str, *_state: Any) -> int:
    print(text, flush=True)
    print(text + "-err", file=sys.stderr, flush=True)
    return os.getpid()


def log_and_return(text: str, *_state: Any) -> int:
    import logging

    logging.getLogger("integration.worker").warning(text)
    return os.getpid()


def backoff_delay(attempt: int) -> float:
    return 0.05 * attempt


def fail_timed(directory: str, *_state: Any) -> None:
    """Log the run's monotonic time to ``directory/times.log``, then raise ValueError."""
    record_run(directory)
    with open(Path(directory) / "times.log", "a") as f:
        f.write(f"{time.monotonic():.6f}\n")
    raise ValueError("timed failure")


def run_times(directory: Path) -> list[float]:
    log = Path(directory) / "times.log"
    return [float(x) for x in log.read_text().split()] if log.exists() else []


def crash_once_then_report(directory: str, markers: list[str], *_state: Any) -> list[bool]:
    """Delivery 1: SIGKILL the worker; later: which of ``markers`` exist (jobs that ran before)."""
    record_run(directory)
    if honeydew.current_job().deliveries == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return [os.path.exists(m) for m in markers]


def fork_holder_then_die(seconds: float, pidfile: str, *_state: Any) -> None:
    """Fork a child that keeps every inherited socket open for ``seconds``, then SIGKILL the worker."""
    child = os.fork()
    if child == 0:
        time.sleep(seconds)
        os._exit(0)
    Path(pidfile).write_text(str(child))
    os.kill(os.getpid(), signal.SIGKILL)


def crash_on(value: Any, bad: Any, *_state: Any) -> Any:
    """SIGKILL the worker when ``value == bad``; else return ``value``."""
    if value == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def nap_pid_slot(seconds: float, *_state: Any) -> tuple[int, int]:
    time.sleep(seconds)
    return honeydew.current_job().worker, os.getpid()


def flaky_item(directory: str, item: int, flaky: int, failures: int, broken: int) -> int:
    """A ``map`` item: counts its runs in ``directory/item-<item>-<run>``; item ``flaky`` raises
    ValueError on its first ``failures`` runs, item ``broken`` always raises KeyError."""
    n = len(list(Path(directory).glob(f"item-{item}-*")))
    Path(directory, f"item-{item}-{n}").touch()
    if item == flaky and n < failures:
        raise ValueError(f"item {item}, run {n}")
    if item == broken:
        raise KeyError(item)
    return item * 10


def item_runs(directory: Path, item: int) -> int:
    return len(list(Path(directory).glob(f"item-{item}-*")))
