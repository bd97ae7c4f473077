"""Process hygiene, in one place: how every honeydew process starts, names itself and dies.

* :func:`become` is the first call in every forked child: it names the process (``ps`` and log
  records show ``hd-queue-0``, ``hd-monitor-3``, ...), ignores SIGINT (Ctrl-C is the calling
  script's to handle, once), restores default handlers for everything else, dumps every stack on
  SIGUSR1, and asks the kernel to SIGKILL it when its parent dies (``PR_SET_PDEATHSIG``; safe here
  because the parents that use it, the supervisor and the monitors, are single-threaded).
* The supervisor, whose parent (the caller) may be multi-threaded and may have forked it from a
  thread that later exits, watches the caller through a lifeline pipe instead, and is a child
  subreaper so that workers orphaned by a dead monitor are reaped by it.
* :class:`Escalation` is the one way a process is stopped: asked (SIGTERM, or a message), then,
  ``grace`` seconds later if it is still there, killed (SIGKILL).  The monitor drives one from its
  event loop; :func:`stop` (the caller stopping its supervisor) and :func:`kill_and_reap` (the
  supervisor stopping its children) are its blocking forms.
"""

from __future__ import annotations

import _signal
import ctypes
import faulthandler
import gc
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
_RESET_SIGNALS = tuple(int(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2,
                                        signal.SIGALRM, signal.SIGCHLD))
_SIGINT, _SIG_DFL, _SIG_IGN = int(signal.SIGINT), int(signal.SIG_DFL), int(signal.SIG_IGN)
_SIGUSR1 = int(signal.SIGUSR1)

#: Exit codes a honeydew process uses to tell its parent why it stopped.
EXIT_OK = 0          # finished on purpose (drained, stopped, recycled)
EXIT_INIT_FAILED = 3  # a worker whose init raised
EXIT_PARENT_GONE = 4  # the process it served is gone
EXIT_BOOT_FAILED = 5  # a spawned supervisor could not load the pool's worker and options
EXIT_INTERNAL = 70    # a bug in honeydew itself (the traceback is logged)

_role = "caller"

#: Non-empty while this pool process imports the user's code to decode a job or its configuration
#: (what it is doing, for the error): a ``Pool()`` made then is refused (see ``pool.py``).
decoding = ""


def role() -> str:
    """This process's name: ``caller``, ``hd-supervisor``, ``hd-queue-0``, ``hd-monitor-3``, ``hd-worker-3``."""
    return _role


def _set_comm(name: str) -> None:
    # raw os calls: a text file object would run (and so copy-on-write) much of the io machinery
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, name[:15].encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def kill_descendants(grace_pgid: int = 0) -> None:
    """SIGKILL every descendant of this process (and the process group ``grace_pgid`` first, if
    given) and reap what comes back to us; bounded to about two seconds."""
    import psutil

    if grace_pgid:
        try:
            os.killpg(grace_pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if not _has_children():
        return  # no child, so no descendant: skip the scan of every process on the machine
    deadline = time.monotonic() + 2.0
    while True:
        try:
            rest = psutil.Process().children(recursive=True)
        except psutil.Error:
            rest = []
        for p in rest:
            try:
                p.kill()
            except psutil.Error:
                pass
        reap_strays(set())
        if not rest or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _has_children() -> bool:
    """Has this process any child, running or exited?  (A subreaper's orphaned descendants are
    its children by the time their parent is reaped.)"""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def become(name: str, *, parent: int | None, death_signal: int = signal.SIGKILL, dump_fd: int = -1) -> None:
    """Set up a freshly forked (or spawned) honeydew process.  ``parent``: the pid whose death
    must end us (``None`` for the supervisor, which uses its lifeline instead), by ``death_signal``
    (a monitor asks for SIGUSR2, to kill its worker's tree before it goes).

    SIGUSR1 dumps every thread's stack to stderr, headed by a line naming the process's role and
    pid.  A worker may be stuck in C code, where no Python handler runs, so its dump is written by
    faulthandler's own C handler into ``dump_fd``, a pipe its monitor reads and forwards under the
    heading; the others wait in ``poll``, which a signal interrupts, so a Python handler serves."""
    global _role
    _role = name
    gc.freeze()  # objects inherited from the parent are never collected here (nor closed twice)
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    # _signal, not signal: the enum wrapping of the latter runs (and so copies, in a forked child)
    # some 100 KiB of pages that this process would otherwise keep sharing with its parents
    for sig in _RESET_SIGNALS:
        _signal.signal(sig, _SIG_DFL)
    _signal.signal(_SIGINT, _SIG_IGN)
    if dump_fd >= 0:
        faulthandler.register(signal.SIGUSR1, file=dump_fd, all_threads=True)
    else:
        faulthandler.unregister(signal.SIGUSR1)  # (registered by the caller we were forked from)
        _signal.signal(_SIGUSR1, _dump_stacks)
    if faulthandler.is_enabled():
        # the caller enabled faulthandler for fatal signals (python -X faulthandler, pytest): its
        # descriptor was the caller's and may now be one of ours, which a segfault's traceback
        # would corrupt: write to stderr instead (a worker's, to its monitor, under a heading)
        faulthandler.enable(file=dump_fd if dump_fd >= 0 else 2, all_threads=True)
    _set_comm(name)
    factory = logging.getLogRecordFactory()

    def record(*args, **kwargs):  # type: ignore[no-untyped-def]
        rec = factory(*args, **kwargs)
        rec.processName = name
        return rec

    logging.setLogRecordFactory(record)
    if parent is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(EXIT_PARENT_GONE)


def dump_heading(what: str) -> bytes:
    return f"honeydew: stacks of {what}, most recent call first:\n".encode()


def _dump_stacks(signum: int, frame: object) -> None:
    try:
        os.write(2, dump_heading(f"{_role} (pid {os.getpid()})"))
        faulthandler.dump_traceback(file=2, all_threads=True)
    except OSError:
        pass


class SignalPipe:
    """SIGTERM made pollable: the handler counts and writes a byte to a pipe that the process's
    single ``poll`` watches, where the loop then reads :attr:`count`.  (The signal interrupts that
    ``poll``, Python runs the handler before retrying it, and the retry finds the byte.)  Only this
    signal writes there, not ``signal.set_wakeup_fd``'s every signal: a SIGUSR1 asking for a stack
    dump must not look like a SIGTERM."""

    def __init__(self, sig: int = signal.SIGTERM) -> None:
        self.count = 0
        self.fd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        self.count += 1
        try:
            os.write(self.wfd, b"\0")
        except OSError:
            pass  # full: a byte is there already

    def drain(self) -> None:
        try:
            while os.read(self.fd, 64):
                pass
        except OSError:
            pass


def default_signal(sig: int) -> None:
    """Give ``sig`` its default action now, from any thread (libc's ``signal``, below Python's
    handler table, which only the main thread may change)."""
    _libc.signal(int(sig), 0)  # SIG_DFL


def set_subreaper() -> None:
    _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def close_fds_except(keep: set[int]) -> None:
    """Let go of every inherited descriptor but stdio and ``keep`` (a forked supervisor must not
    hold the caller's files and listening sockets; ``keep`` has its own sockets and the files the
    caller's logging writes to).

    Each one is pointed at ``/dev/null`` rather than closed: something inherited may still write to
    its number (a logging handler whose stream hides its descriptor, as pytest's live log does), and
    a closed number is soon reused by a socket this process makes, which would then receive that
    output; the monitor reading the other end would take it for its supervisor's death."""
    fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for fd in fds:
        if fd > 2 and fd not in keep and fd != devnull:
            try:
                os.fstat(fd)  # (the listing's own descriptor is closed by now: leave that number free)
                os.dup2(devnull, fd, inheritable=False)
            except OSError:
                pass
    os.close(devnull)


def exit_status(status: int) -> int:
    """``os.waitpid`` status -> ``Popen.returncode`` convention (negative = killed by signal)."""
    return os.waitstatus_to_exitcode(status)


def pidfd(pid: int) -> int | None:
    """A pollable descriptor that becomes readable when ``pid`` exits (``None`` if it is gone)."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def pid_alive(pid: int) -> bool:
    """Is there a process ``pid`` on this machine (ours to signal or not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_pid(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``; a process already gone is not an error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Escalation:
    """Stopping one process (or one process tree): :meth:`start` asks it to stop (``ask``: SIGTERM,
    say), and once ``grace`` seconds have passed with it still there :meth:`due` says so and
    :meth:`force` kills it (``force``: SIGKILL).  A grace of 0 forces at once.  An event loop keeps
    :attr:`kill_at` among its deadlines; :func:`stop` waits instead."""

    __slots__ = ("_ask", "_force", "grace", "kill_at")

    def __init__(self, ask: Callable[[], None], force: Callable[[], None], grace: float) -> None:
        self._ask, self._force = ask, force
        self.grace = grace
        self.kill_at: float | None = None

    def start(self, now: float) -> None:
        if self.grace > 0:
            self._ask()
            self.kill_at = now + self.grace
        else:
            self.force()

    def due(self, now: float) -> bool:
        return self.kill_at is not None and now >= self.kill_at

    def force(self) -> None:
        self.kill_at = None
        self._force()

    def cancel(self) -> None:
        """No kill after all (the process is leaving by itself)."""
        self.kill_at = None

    @classmethod
    def of_pid(cls, pid: int, grace: float) -> Escalation:
        return cls(lambda: signal_pid(pid, signal.SIGTERM), lambda: signal_pid(pid, signal.SIGKILL), grace)


def stop(pid: int, grace: float, *, ask: Callable[[], None] | None = None,
         gone: Callable[[float], bool] | None = None) -> None:
    """Stop ``pid`` and wait until it has exited: ``ask`` (SIGTERM unless given), up to ``grace``
    seconds for it to go, then SIGKILL.  ``gone(timeout)`` waits for the exit (by default on the
    pid's pidfd); it returns True once the process has exited.  Waits at most ``grace`` plus 5 s."""
    fd = None
    if gone is None:
        fd = pidfd(pid)
        if fd is None:
            return
        gone = lambda timeout: bool(select.select([fd], [], [], timeout)[0])  # noqa: E731
    try:
        esc = Escalation(ask or (lambda: signal_pid(pid, signal.SIGTERM)), lambda: signal_pid(pid, signal.SIGKILL),
                         grace)
        esc.start(time.monotonic())
        if esc.kill_at is not None and not gone(grace):
            esc.force()
        gone(5.0)
    finally:
        if fd is not None:
            os.close(fd)


def kill_and_reap(pid: int, grace: float = 1.0, *, child: bool = True) -> int | None:
    """:func:`stop` ``pid`` (SIGTERM, up to ``grace`` seconds, then SIGKILL).  Returns the exit
    code if we reaped it (``child``), else ``None``."""
    stop(pid, grace)
    if not child:
        return None
    try:
        _, status = os.waitpid(pid, 0)
        return exit_status(status)
    except ChildProcessError:
        return None


def reap_strays(known: set[int]) -> None:
    """Reap exited children we do not watch by pidfd (workers orphaned by a dead monitor, and
    their own children, which come to us as subreaper), leaving ``known`` ones to their owner."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in known:
            return
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            return


def log_exception_and_exit(log: logging.Logger, what: str) -> None:
    log.exception("%s: internal error in honeydew; please report it", what)
    sys.stderr.flush()
    os._exit(EXIT_INTERNAL)


def monotonic() -> float:
    return time.monotonic()
