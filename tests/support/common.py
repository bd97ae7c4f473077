"""What the fault and the integration tests share: waiting, finding pool processes, caller scripts
(run, or started and watched), and the plain tasks both send to workers.

``faults_helpers`` (``F``) and ``integration_helpers`` (``H``) re-export all of it, so ``F.echo`` and
``H.echo`` are this module's ``echo``.  A task defined here pickles by reference as
``support.common.<name>`` (its ``__module__``), which every pool process and every caller script
can import, as it can the two helper modules.  The tasks take a trailing ``*_state`` so that they
run on a worker-less pool and on a pool with state alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
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


def call_with_deadline(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a thread; fail (not hang) if it has not returned after ``timeout`` s."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box.append((False, e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise AssertionError(f"{what} did not return within {timeout}s (a hang)")
    ok, value = box[0]
    if not ok:
        raise value
    return value


def finish(pool: honeydew.Pool, timeout: float = 20.0) -> None:
    """close + join with a deadline (a hang fails the test instead of eating its whole timeout)."""
    pool.close()
    pool.join(timeout=timeout)


# --- pool processes and other descendants ---------------------------------------------------------

def process_name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants() -> list[psutil.Process]:
    """Every descendant of this process now (zombies included)."""
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def child_pids() -> set[int]:
    """Pids of every descendant of this process now (to ignore a previous test's debris)."""
    return {p.pid for p in descendants()}


def zombie_children(ignore: Iterable[int] = ()) -> list[int]:
    """Unreaped descendants of this process (but ``ignore``)."""
    skip = set(ignore)
    out = []
    for p in descendants():
        try:
            if p.pid not in skip and p.status() == psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def pool_processes(root: int | None = None) -> list[psutil.Process]:
    """Live honeydew processes below ``root`` (default: this process)."""
    try:
        kids = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in kids if process_name(p).startswith(POOL_PREFIXES) and _alive(p)]


def by_name(name: str, root: int | None = None) -> list[psutil.Process]:
    """Live pool processes below ``root`` whose name is exactly ``name``."""
    return [p for p in pool_processes(root) if process_name(p) == name]


def one(name: str, root: int | None = None, timeout: float = 10.0) -> psutil.Process:
    """The single live process called ``name`` (waits for it to exist).  A process forked a moment
    ago keeps its parent's name until it names itself (a monitor's new worker is "hd-monitor-N"
    for a few microseconds), so two of a name must stay two for ``timeout`` to fail."""
    found: list[psutil.Process] = []

    def single() -> bool:
        found[:] = by_name(name, root)
        return len(found) == 1

    try:
        wait_until(single, timeout, what=f"a single process named {name}")
    except AssertionError:
        raise AssertionError(f"expected one {name}, found {[p.pid for p in found]}") from None
    return found[0]


def names(root: int | None = None) -> list[str]:
    return sorted(process_name(p) for p in pool_processes(root))


def worker_pids(root: int | None = None) -> set[int]:
    """Pids of the live ``hd-worker-*`` processes below ``root``."""
    return {p.pid for p in pool_processes(root) if process_name(p).startswith("hd-worker-")}


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


def reaped(pid: int) -> bool:
    """True once ``pid`` no longer exists, not even as a zombie."""
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return False


def signal_pid(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid``; False if there was no such process."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        signal_pid(pid, signal.SIGKILL)


# --- the monitor's init back-off ----------------------------------------------------------------

#: slack for comparing the start times that init attempts log (``time.monotonic()``, one clock for
#: every process, written to the microsecond) with a back-off
CLOCK_SLACK = 0.001


def init_backoff_floor(failures: int, base: float, cap: float) -> float:
    """The least wait before the next init after ``failures`` failed inits in a row, as
    honeydew/monitor.py ``backoff()`` chooses it: ``base * 2**(failures-1)`` (``init_retry_secs``
    doubling), capped at ``max(cap, base)`` (``init_retry_max_secs``), times a jitter in [1, 1.1)
    that only lengthens it.  The gap between two attempts' starts holds that wait and more (the
    failed worker's exit, the fork of the next), as much more as a loaded machine makes it: this is
    a safe lower bound for each gap; an upper bound or a ratio of gaps is not."""
    return min(base * 2 ** (failures - 1), max(cap, base))


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


class Watched:
    """A started script whose stdout and stderr lines are collected by two threads."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(proc.stdout, self.out), daemon=True),
                         threading.Thread(target=self._pump, args=(proc.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def text(self, which: str = "out") -> str:
        return "\n".join(self.out if which == "out" else self.err)

    def wait_for(self, marker: str, which: str = "out", timeout: float = 60.0, count: int = 1) -> str:
        """Wait until ``count`` lines of ``which`` contain ``marker``; return the last such line."""
        lines = self.out if which == "out" else self.err

        def found() -> list[str]:
            hits = [ln for ln in list(lines) if marker in ln]
            return hits if len(hits) >= count else []

        try:
            return wait_until(found, timeout, what=f"{marker!r} x{count} on the script's std{which}")[-1]
        except AssertionError:
            raise AssertionError(f"{marker!r} not seen (x{count}) within {timeout}s; exit={self.proc.poll()}\n"
                                 f"stdout:\n{self.text('out')}\nstderr:\n{self.text('err')}") from None

    def wait_until_text(self, text: str, which: str = "out", after: str = "", timeout: float = 60.0) -> None:
        """Wait until ``text`` appears in ``which`` after the last occurrence of ``after``."""
        def found() -> bool:
            return text in self.text(which).split(after)[-1] if after else text in self.text(which)

        try:
            wait_until(found, timeout, what=f"{text!r} on the script's std{which}")
        except AssertionError:
            raise AssertionError(f"{text!r} not seen within {timeout}s; exit={self.proc.poll()}\n"
                                 f"stdout:\n{self.text('out')}\nstderr:\n{self.text('err')}") from None

    def value(self, key: str, timeout: float = 60.0) -> str:
        """The rest of the first stdout line that starts with ``key``."""
        line = self.wait_for(key, "out", timeout)
        return line.split(key, 1)[1].strip()

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.finish(10)
        except subprocess.TimeoutExpired:
            pass


def start_watched(tmp_path: Path, code: str, args: Iterable[str] = (), **kwargs: Any) -> Watched:
    return Watched(start_script(tmp_path, code, args=args, **kwargs))


# --- plain tasks (any pool) ---------------------------------------------------------------------

def echo(value: Any, *_state: Any) -> Any:
    return value


def getpid(*_state: Any) -> int:
    return os.getpid()


def wait_for_file(path: str, timeout: float, *_state: Any) -> int:
    """Block until ``path`` exists (the test creates it), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return os.getpid()


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted under ``tmp_path``, for a full disk (root only; skips elsewhere)."""
    import pytest  # (here: the scripts the tests run import this module too)

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    where = tmp_path / "mnt"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def write_atomically(path: str | Path, text: str) -> None:
    """Make ``path`` with ``text`` in it, all at once: a test that waits for the file to exist
    never reads it empty (``write_text`` creates it first, then writes)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # (a dot file: no test's glob matches it)
    tmp.write_text(text)
    os.replace(tmp, path)


def announce_then_wait(flag: str, release: str, timeout: float, *_state: Any) -> int:
    """Create ``flag`` (I am running, with my pid in it), then wait for ``release``."""
    write_atomically(flag, str(os.getpid()))
    return wait_for_file(release, timeout)


def record_run(directory: str, tag: str = "run", *_state: Any) -> int:
    """Leave one file per run in ``directory``: ``<tag>-<job id>-<pid>-<random>`` (``nojob`` for the
    job id outside a job); returns the run's pid.  (On a pool with state, pass ``tag``: the state
    comes after it.)"""
    try:
        jid = honeydew.current_job().id
    except RuntimeError:
        jid = "nojob"
    Path(directory, f"{tag}-{jid}-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()
    return os.getpid()


def count_runs(directory: Path | str, tag: str = "run", job_id: str | None = None) -> int:
    """How many runs :func:`record_run` recorded in ``directory`` with ``tag`` (of job ``job_id``)."""
    pattern = f"{tag}-{job_id}-*" if job_id else f"{tag}-*"
    return len(list(Path(directory).glob(pattern)))
