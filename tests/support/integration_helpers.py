"""Helpers and tasks for tests/integration: polling, pool process discovery, caller scripts.

This module is also a worker module (``honeydew.Pool(H, [log_dir, ...])``): ``init`` logs every
attempt to ``<log_dir>/init.log`` and can be told to fail.  Its plain functions take an optional
trailing ``*_state`` so that they run on a worker-less pool and on a pool with state alike.
Importable, so everything here pickles by reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

import honeydew

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = TESTS_DIR.parent
POOL_PREFIXES = ("hd-supervisor", "hd-queue-", "hd-monitor-", "hd-worker-")


# --- waiting ------------------------------------------------------------------------------------

def wait_until(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``cond`` until it returns something truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(interval)


# --- pool processes -----------------------------------------------------------------------------

def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pool_processes(root: int | None = None) -> list[psutil.Process]:
    """Live honeydew processes below ``root`` (default: this process)."""
    try:
        kids = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in kids if _name(p).startswith(POOL_PREFIXES) and _alive(p)]


def by_name(name: str, root: int | None = None) -> list[psutil.Process]:
    """Live pool processes below ``root`` whose name is exactly ``name``."""
    return [p for p in pool_processes(root) if _name(p) == name]


def one(name: str, root: int | None = None, timeout: float = 10.0) -> psutil.Process:
    """The single live process called ``name`` (waits for it to exist)."""
    found = wait_until(lambda: by_name(name, root), timeout, what=f"a process named {name}")
    assert len(found) == 1, f"expected one {name}, found {[p.pid for p in found]}"
    return found[0]


def names(root: int | None = None) -> list[str]:
    return sorted(_name(p) for p in pool_processes(root))


def wait_gone(pids: Iterable[int], timeout: float = 2.0) -> list[int]:
    """Pids (of any process, child or not) still alive after ``timeout``; [] when all are gone."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    deadline = time.monotonic() + timeout
    while True:
        alive = [p.pid for p in procs if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def zombie_children(ignore: Iterable[int] = ()) -> list[int]:
    """Unreaped children of this process (but ``ignore``)."""
    skip = set(ignore)
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in skip and p.status() == psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def child_pids() -> set[int]:
    """Pids of every descendant of this process now (to ignore a previous test's debris)."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def reaped(pid: int) -> bool:
    """True once ``pid`` no longer exists, not even as a zombie."""
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return False


def finish(pool: honeydew.Pool, timeout: float = 20.0) -> None:
    """close + join with a deadline (a hang fails the test instead of eating its whole timeout)."""
    pool.close()
    pool.join(timeout=timeout)


# --- caller scripts in a subprocess -------------------------------------------------------------

def script_env() -> dict[str, str]:
    env = dict(os.environ)
    path = [str(REPO_DIR), str(TESTS_DIR)]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def write_script(tmp_path: Path, code: str, name: str = "caller.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def run_script(tmp_path: Path, code: str, timeout: float = 60.0, name: str = "caller.py",
               args: Iterable[str] = (), env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as ``__main__`` of a fresh interpreter; capture its output.  ``env``: variables
    to add to the environment."""
    path = write_script(tmp_path, code, name)
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout,
                          env={**script_env(), **(env or {})}, cwd=str(tmp_path))


def start_script(tmp_path: Path, code: str, name: str = "caller.py", args: Iterable[str] = (),
                 **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``code`` as ``__main__`` of a fresh interpreter, stdout/stderr piped (text)."""
    path = write_script(tmp_path, code, name)
    return subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=script_env(), cwd=str(tmp_path), **kwargs)


def read_line_with(proc: subprocess.Popen[str], marker: str, timeout: float = 30.0) -> str:
    """Read ``proc``'s stdout until a line starting with ``marker``; return the rest of it."""
    assert proc.stdout is not None
    result: list[str] = []
    seen: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(marker):
                result.append(line[len(marker):].strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        raise AssertionError(f"no line starting with {marker!r} within {timeout}s; stdout so far: {seen!r}")
    return result[0]


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
    Path(path).write_text(str(os.getpid()))
    return path


def record_run(directory: str, *_state: Any) -> int:
    """Leave one file per run in ``directory``; returns the run's pid."""
    pid = os.getpid()
    (Path(directory) / f"run-{pid}-{uuid.uuid4().hex}").touch()
    return pid


def runs(directory: Path) -> int:
    return len(list(Path(directory).glob("run-*")))


def echo(value: Any, *_state: Any) -> Any:
    return value


def getpid(*_state: Any) -> int:
    return os.getpid()


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


def wait_for_file(path: str, timeout: float, *_state: Any) -> int:
    """Block until ``path`` exists (the test creates it), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return os.getpid()


def announce_then_wait(flag: str, release: str, timeout: float, *_state: Any) -> int:
    """Create ``flag`` (I am running, with my pid in it), then wait for ``release``."""
    Path(flag).write_text(str(os.getpid()))
    return wait_for_file(release, timeout)


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
    raise exc_type(f"run {runs(Path(directory))}")


def fail_until(directory: str, good_run: int, *_state: Any) -> int:
    """Record the run; raise ValueError on runs before ``good_run`` (a file count)."""
    record_run(directory)
    n = runs(Path(directory))
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


def raise_base(kind: str, *_state: Any) -> None:
    if kind == "exit":
        raise SystemExit(3)
    if kind == "kbi":
        raise KeyboardInterrupt
    if kind == "base":
        raise BaseException("plain BaseException")
    raise ValueError(kind)


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
