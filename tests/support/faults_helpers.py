"""Helpers and tasks for tests/faults: stage-specific faults, process trees, fd/memory probes.  What
the integration tests share with these (waiting, pool process discovery, caller scripts, watched
scripts, ``echo``/``getpid``/``record_run``...) lives in ``support.common`` and is re-exported here.

This module is also a worker module (``honeydew.Pool(F, [flag_dir])``): ``init`` fails while
``<flag_dir>/fail-init`` exists and hangs while ``<flag_dir>/hang-init`` exists, so a test (or the
chaos machine) toggles init failures with a file.  Its plain functions take a trailing ``*_state``
so that they run on a worker-less pool and on a pool with state alike.  Importable, so everything
here pickles by reference.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import os
import signal
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

import honeydew
from support.common import (  # noqa: F401  (re-exported: tests use them as F.<name>)
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
    process_name,
    read_line_with,
    reaped,
    record_run,
    run_script,
    script_env,
    signal_pid,
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

# --- the fault catalogue's ways to die ----------------------------------------------------------

#: crash=SIGKILL-self, exit=os._exit(13), exit0=os._exit(0), raise, segfault
FAULTS = ("kill", "exit", "exit0", "raise", "segv")
#: what the caller sees for a worker that died that way: (WorkerCrashed.exitcode, .signal_name)
CRASHES = {"kill": (-9, "SIGKILL"), "exit": (13, None), "exit0": (0, None), "segv": (-11, "SIGSEGV")}


class FaultRaised(Exception):
    """What the ``raise`` fault raises (an ordinary, picklable exception)."""


def crash_now(how: str) -> None:
    """Misbehave the way ``how`` says, right now, in this process."""
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: SIGKILL to self is delivered before kill() returns
    if how == "exit":
        os._exit(13)
    if how == "exit0":
        os._exit(0)
    if how == "segv":
        ctypes.string_at(0)
    if how == "raise":
        raise FaultRaised(f"fault {how!r} in pid {os.getpid()}")
    raise ValueError(f"unknown fault {how!r}")


class CrashOnUnpickle:
    """Pickles fine anywhere; *unpickling* it (in the worker, decoding the arguments) calls
    ``crash_now(how)``."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (crash_now, (self.how,))


class CrashOnPickle:
    """Built in the worker as a task's result; *pickling* it there calls ``crash_now(how)``."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        crash_now(self.how)
        return (str, ())  # only for how="raise"... which raised above; never reached


class RaiseInCaller:
    """Pickles fine in the worker; unpickling it (in the caller, decoding the result) calls a
    function that raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (raise_in_caller, ("this result refuses to be rebuilt",))


def raise_in_caller(message: str) -> None:
    raise FaultRaised(message)


class CrashInCaller:
    """Pickles fine in the worker; unpickling it calls ``crash_now(how)`` in the *caller*.  Only
    ever returned to a caller that is a throw-away script."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (crash_now, (self.how,))


def fault_task(how: str, *_state: Any) -> None:
    crash_now(how)


def echo_len(value: Any, *_state: Any) -> int:
    return len(value)


def return_crash_on_pickle(how: str, *_state: Any) -> CrashOnPickle:
    return CrashOnPickle(how)


def return_raise_in_caller(*_state: Any) -> RaiseInCaller:
    return RaiseInCaller()


def return_crash_in_caller(how: str, *_state: Any) -> CrashInCaller:
    return CrashInCaller(how)


def big_bytes(n: int, *_state: Any) -> bytes:
    return b"r" * n


# --- a module that exists only in the worker (or only in the caller) ---------------------------

def make_module(directory: str, name: str) -> str:
    """Write ``<directory>/<name>.py`` defining ``Thing`` and ``Oops`` (an exception)."""
    Path(directory, f"{name}.py").write_text(
        "class Thing:\n"
        "    def __init__(self, v):\n"
        "        self.v = v\n\n"
        "class Oops(Exception):\n"
        "    pass\n")
    return name


def _import_from(directory: str, name: str) -> Any:
    import importlib

    if directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def return_worker_only_thing(directory: str, *_state: Any) -> Any:
    """A result whose class lives in a module only this worker can import."""
    name = make_module(directory, f"hd_worker_only_{uuid.uuid4().hex}")
    return _import_from(directory, name).Thing(42)


def raise_worker_only_exception(directory: str, *_state: Any) -> None:
    """An exception whose class lives in a module only this worker can import."""
    name = make_module(directory, f"hd_worker_only_{uuid.uuid4().hex}")
    raise _import_from(directory, name).Oops("raised from a worker-only module")


# --- the at-least-once window and a partial frame -----------------------------------------------

def die_in_reply_window(directory: str, where: str, *_state: Any) -> int:
    """Record the run; on the first delivery, SIGKILL this worker around the send of its result.

    The worker sends the ``Result`` to the caller *before* it acks the job (``Done`` to the queue;
    docs/architecture.md), so after the task returns, the first packet the worker writes is the
    (small, one-packet) ``Result``.  A profile hook watches that ``sendmsg``:
    ``where="before_result"`` dies as the ``Result`` is about to be written (nothing sent to the
    caller, the job not acked); ``where="after_result"`` dies right after it was written (the caller
    has it; the queue never gets the ``Done``).  Returns the delivery."""
    record_run(directory)
    job = honeydew.current_job()
    if job.deliveries == 1:
        edge = "c_call" if where == "before_result" else "c_return"

        def hook(frame: Any, event: str, arg: Any) -> None:
            if event == edge and getattr(arg, "__name__", "") == "sendmsg":
                write_atomically(Path(directory, f"killed-{job.id}"), str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)

        sys.setprofile(hook)
    return job.deliveries


def die_midway_through_result(n: int, packets: int, call: str = "sendmsg", *_state: Any) -> bytes:
    """Return ``n`` bytes; SIGKILL this worker after ``packets`` calls of ``call`` while the result
    goes out: ``sendmsg`` packets of a frame to the caller's socket (a partial frame is left
    behind), or ``write`` calls of a big result's spool file (a partial file is left behind)."""
    sent = [0]

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") == call:
            sent[0] += 1
            if sent[0] > packets:
                os.kill(os.getpid(), signal.SIGKILL)

    value = b"p" * n
    sys.setprofile(hook)
    return value


def announce_wait_record(directory: str, tag: str, *_state: Any) -> int:
    """Create ``<directory>/flag`` (with our pid), wait for ``<directory>/release``, then record a
    run tagged ``tag``: the record proves the job ran to its end."""
    write_atomically(Path(directory, "flag"), str(os.getpid()))
    deadline = time.monotonic() + 120
    while not Path(directory, "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("release never appeared")
        time.sleep(0.01)
    record_run(directory, tag)
    return os.getpid()


def report(directory: str, *_state: Any) -> tuple[int, int]:
    """Record the run; return ``(pid, deliveries)``."""
    record_run(directory)
    return os.getpid(), honeydew.current_job().deliveries


def announce_run_wait(directory: str, key: str, release: str, timeout: float, *_state: Any) -> tuple[int, int]:
    """Record the run, write our pid to ``<directory>/flag-<key>-<delivery>``, wait for ``release``."""
    record_run(directory)
    deliveries = honeydew.current_job().deliveries
    write_atomically(Path(directory, f"flag-{key}-{deliveries}"), str(os.getpid()))
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.01)
    return os.getpid(), deliveries


def record_then_hang(directory: str, seconds: float, *_state: Any) -> None:
    """Record the run, ignore SIGTERM, overrun any limit."""
    record_run(directory)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)


def runs_by_value(directory: Path | str) -> dict[int, int]:
    """How many times each value's job ran (the files :func:`chaos_task` leaves)."""
    counts: dict[int, int] = {}
    for name in os.listdir(directory):
        if name.startswith("v"):
            v = int(name[1:].split("-", 1)[0])
            counts[v] = counts.get(v, 0) + 1
    return counts


def chaos_task(directory: str, kind: str, value: Any, nap: float, *_state: Any) -> Any:
    """The chaos and soak tests' task: record the run (one file ``v<value>-<job id>-<pid>-<random>``;
    every job gets its own ``value``), maybe sleep, then return ``value``, raise ``ValueError``
    (``kind="raise"``) or SIGKILL this worker (``kind="crash"``)."""
    Path(directory, f"v{value}-{honeydew.current_job().id}-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()
    if nap:
        time.sleep(nap)
    if kind == "raise":
        raise ValueError(f"chaos {value}")
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    return value


# --- tasks that block, ignore signals, start process trees --------------------------------------


def loop_then_mark(directory: str, seconds: float, *_state: Any) -> None:
    """Spin in Python for ``seconds``; whatever ends the loop, leave ``<directory>/finally-ran``."""
    try:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
    finally:
        Path(directory, "finally-ran").write_text("yes")


def nap_forever(*_state: Any) -> None:
    time.sleep(3600)


def ignore_term_and_sleep(flag: str, seconds: float, *_state: Any) -> int:
    """Ignore SIGTERM for real (not the worker's deferral), announce, overrun any sane limit."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_atomically(Path(flag), str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


_CHILD = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pidfile = sys.argv[1]
gc = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
    start_new_session=True)
with open(pidfile, "a") as f:
    f.write(f"child {os.getpid()}\ngrandchild {gc.pid}\n")
time.sleep(600)
"""

_tree_children: list[subprocess.Popen[bytes]] = []


def spawn_tree(pidfile: str, mode: str, *_state: Any) -> int:
    """Start a child (which starts a grandchild in its own session) and a second child in its own
    session; every one ignores SIGTERM.  Their pids, and ours, go to ``pidfile``.  Then:
    ``hang`` (ignore SIGTERM and sleep: for timeouts, cancel and outside kills) or ``die``
    (SIGKILL ourselves)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    a = subprocess.Popen([sys.executable, "-c", _CHILD, pidfile])
    b = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
                         start_new_session=True)
    _tree_children.extend([a, b])
    with open(pidfile, "a") as f:
        f.write(f"session-child {b.pid}\n")
    deadline = time.monotonic() + 30
    while "grandchild" not in Path(pidfile).read_text():
        if time.monotonic() > deadline:
            raise TimeoutError("the child never reported its grandchild")
        time.sleep(0.01)
    with open(pidfile, "a") as f:
        f.write(f"worker {os.getpid()}\n")
    if mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)
    return os.getpid()


def tree_pids(pidfile: Path) -> dict[str, int]:
    """``{'worker': pid, 'child': pid, 'grandchild': pid, 'session-child': pid}`` once all are known."""
    out: dict[str, int] = {}
    if pidfile.exists():
        for line in pidfile.read_text().splitlines():
            role, pid = line.split()
            out[role] = int(pid)
    return out


# --- memory, descriptors, the worker's own view ------------------------------------------------

class Marker:
    """Instances are counted in a process with :func:`count_markers` (finds leaked references)."""

    def __init__(self, size: int = 0) -> None:
        self.blob = b"m" * size


def take_marker(marker: Marker, *_state: Any) -> int:
    return len(marker.blob)


def make_marker(size: int, *_state: Any) -> Marker:
    return Marker(size)


def count_markers(*_state: Any) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Marker)


def uss_of_self(*_state: Any) -> int:
    """The worker's private memory, which max_memory_per_worker compares."""
    return psutil.Process().memory_full_info().uss


_ballast: list[bytes] = []


def grow(megabytes: int, *_state: Any) -> int:
    """Keep ``megabytes`` MiB more alive in this worker (a leak); returns the pid."""
    _ballast.append(os.urandom(1024) * (1024 * megabytes))
    return os.getpid()


def exhaust_memory_then_die(directory: str, *_state: Any) -> None:
    """A poison job: record the run, allocate ~200 MB, then die the way the OOM killer kills."""
    record_run(directory)
    hog = bytearray(200 * 1024 * 1024)
    hog[::4096] = b"x" * len(hog[::4096])
    os.kill(os.getpid(), signal.SIGKILL)


def exhaust_memory_error(directory: str, *_state: Any) -> None:
    """A poison job that hits a memory limit: record the run, then raise ``MemoryError``."""
    record_run(directory)
    raise MemoryError("simulated: cannot allocate 64 GiB")


def fd_targets(pid: int) -> list[str]:
    """What each open descriptor of ``pid`` points to (``socket:[123]``, ``pipe:[4]``, a path)."""
    out = []
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            out.append(os.readlink(f"{base}/{name}"))
        except OSError:
            continue
    return sorted(out)


def fd_count(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def uss(pid: int) -> int:
    return psutil.Process(pid).memory_full_info().uss


def unsent_bytes(sock: Any) -> int:
    """Bytes written on ``sock`` that the peer has not read yet (SIOCOUTQ)."""
    buf = bytearray(4)
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
    return int.from_bytes(buf, sys.byteorder)


# --- a worker module: init controlled by flag files --------------------------------------------

def init(flag_dir: str | None = None) -> dict[str, Any]:
    """Fails while ``<flag_dir>/fail-init`` exists; hangs while ``<flag_dir>/hang-init`` exists.
    Every attempt is logged as one file ``init-<pid>-<process name>`` in ``flag_dir`` (the name
    says the slot: ``hd-worker-1``)."""
    if flag_dir is not None:
        with open("/proc/self/comm") as f:
            comm = f.read().strip()
        Path(flag_dir, f"init-{os.getpid()}-{comm}").touch()
        if os.path.exists(os.path.join(flag_dir, "fail-init")):
            raise RuntimeError(f"init fails on purpose (flag file in {flag_dir})")
        while os.path.exists(os.path.join(flag_dir, "hang-init")):
            time.sleep(0.01)
    return {"pid": os.getpid(), "flag_dir": flag_dir}


def init_attempts(flag_dir: Path) -> int:
    return len(list(Path(flag_dir).glob("init-*")))


def init_pids(flag_dir: Path, slot: int) -> set[int]:
    """Pids of every init attempt logged so far by workers of ``slot``."""
    return {int(p.name.split("-")[1]) for p in Path(flag_dir).glob(f"init-*-hd-worker-{slot}")}


SHARED_LOCK = threading.Lock()


def take_shared_lock(*_state: Any) -> bool:
    """True if this process can take :data:`SHARED_LOCK` (a lock a caller thread may hold)."""
    ok = SHARED_LOCK.acquire(timeout=5)
    if ok:
        SHARED_LOCK.release()
    return ok


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))
