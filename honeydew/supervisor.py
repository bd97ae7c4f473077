"""The supervisor: starts the queue process(es) and one monitor per worker slot, restarts them.

Started by the :class:`~honeydew.Pool` (forked when the caller is single-threaded, otherwise a
fresh interpreter, :mod:`honeydew._boot`).  It creates nothing on the job path: every socket
between caller, queues and workers was made by the caller before it started, and the supervisor
keeps both ends of each so that a restarted child inherits the very same sockets.

Its single loop waits on one ``poll`` over:

* the lifeline pipe from the caller: end of file means the caller died, so everything is killed
  at once (no orphans);
* the control socket from the caller: ``Terminate`` kills everything now;
* a pidfd per child: a queue process that dies is restarted with the next generation and the
  caller is told (``QueueRestarted``: its in-memory jobs are lost); a monitor that dies has its
  worker killed and reaped (the supervisor is their subreaper), a ``WorkerDied`` written for it,
  and is restarted.  A child that exits 0 has finished on purpose (drained) and is not restarted;
* each monitor's socket (``WorkerStarted``: which worker pid to kill if the monitor dies).

A child that keeps dying young is restarted after a growing delay, never in a hot loop.
The supervisor exits once every child has exited.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import psutil

from . import _spool, _threads, monitor, queue_process
from ._process import (
    EXIT_OK,
    EXIT_PARENT_GONE,
    SignalPipe,
    become,
    exit_status,
    kill_and_reap,
    kill_descendants,
    log_exception_and_exit,
    reap_strays,
    set_subreaper,
    signal_pid,
)
from ._wire import Endpoint, Outbox, socketpair
from .dispatchers import Dispatcher
from .errors import signal_name
from .failure_modes import FailureMode
from .protocol import (
    QueueRestarted,
    Shutdown,
    StatusReply,
    StatusRequest,
    Terminate,
    WorkerDied,
    WorkerStarted,
    WorkerState,
)
from .queues.base import Queue
from .tasks import WorkerSpec


@dataclass
class SupervisorConfig:
    """All a supervisor needs.  Sockets are given as file descriptor numbers, valid in the
    supervisor (inherited by fork, or passed to the fresh interpreter)."""

    token: str
    spec: WorkerSpec
    num_workers: int
    num_queues: int
    queue: Queue
    dispatcher: Dispatcher
    failure_mode: FailureMode
    prefetch: int
    init_retry_secs: float
    init_retry_max_secs: float
    count_settled: bool
    suspended: bool                    # the queues start with dispatch suspended
    init_timeout: float | None
    kill_grace_secs: float
    max_jobs: int | None
    max_memory: int | None
    threads: int | None                # native (BLAS/OpenMP) threads per worker; None: no limit
    spool: str | None                  # the pool's spool directory (big payloads, shipped code; _spool)
    lifeline: int                      # read end; EOF = the caller died
    control: int                       # supervisor's end of the control socket
    queue_callers: list[int]           # queue i's end of its caller socket
    queue_workers: list[list[int]]     # [i][j]: queue i's end of its socket with worker slot j
    worker_queues: list[list[int]]     # [j][i]: worker slot j's end of its socket with queue i
    worker_replies: list[int]          # worker slot j's end of its reply socket
    queue_monitors: list[list[int]]    # [i][j]: queue i's end of its kill socket to monitor j
    monitor_queues: list[list[int]]    # [j][i]: monitor j's end of its kill socket from queue i

    def fds(self) -> set[int]:
        out = {self.lifeline, self.control, *self.queue_callers, *self.worker_replies}
        for row in self.queue_workers + self.worker_queues + self.queue_monitors + self.monitor_queues:
            out.update(row)
        return out


class _Child:
    __slots__ = ("kind", "index", "pid", "pidfd", "started", "restarts", "worker_pid", "reason")

    def __init__(self, kind: str, index: int) -> None:
        self.kind = kind
        self.index = index
        self.pid = 0
        self.pidfd = -1
        self.started = 0.0
        self.restarts = 0
        self.worker_pid = 0
        self.reason = ""


def run(cfg: SupervisorConfig) -> NoReturn:
    become("hd-supervisor", parent=None)
    set_subreaper()
    _threads.limit(cfg.threads)  # once, before any worker exists: every worker inherits the limits
    log = logging.getLogger("honeydew.supervisor")
    try:
        code = _Supervisor(cfg, log).serve()
    except Exception:
        log.exception("supervisor: internal error in honeydew; stopping the pool")
        code = 70
    os._exit(code)


class _Supervisor:
    def __init__(self, cfg: SupervisorConfig, log: logging.Logger) -> None:
        self.cfg = cfg
        self.log = log
        self.me = os.getpid()
        ep = lambda fd: Endpoint(_sock(fd))  # noqa: E731
        self.control = ep(cfg.control)
        self.control_out = Outbox(self.control)
        self.queue_callers = [ep(fd) for fd in cfg.queue_callers]
        self.queue_workers = [[ep(fd) for fd in row] for row in cfg.queue_workers]
        self.worker_queues = [[ep(fd) for fd in row] for row in cfg.worker_queues]
        self.worker_replies = [ep(fd) for fd in cfg.worker_replies]
        self.queue_monitors = [[ep(fd) for fd in row] for row in cfg.queue_monitors]
        self.monitor_queues = [[ep(fd) for fd in row] for row in cfg.monitor_queues]
        self.monitor_socks = [socketpair() for _ in range(cfg.num_workers)]  # (supervisor end, monitor end)
        self.monitor_eps = [Endpoint(s) for s, _ in self.monitor_socks]
        self.finished_queues = 0     # queues that exited on purpose (drained): never restarted
        self.children: dict[int, _Child] = {}   # by pidfd
        self.gens = [0] * cfg.num_queues
        self.pending_restart: list[tuple[float, _Child]] = []
        self.term = SignalPipe()
        self.shutdown_requests = 0   # Shutdown messages from the caller (its own SIGTERMs)
        self.shutting_down = False
        self.worker_states: list[dict[str, Any]] = [
            {"slot": j, "state": WorkerState.STARTING, "pid": 0, "init_failures": 0, "last_error": "", "retry_in": 0.0,
             "monitor_restarts": 0} for j in range(cfg.num_workers)]

    # ---------------------------------------------------------------- starting children

    def _fork(self, child: _Child) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)  # our SIGTERM pipe is about to be closed in the child
                if child.kind == "queue":
                    self._queue_child(child.index)
                else:
                    self._monitor_child(child.index)
            except BaseException:
                log_exception_and_exit(self.log, f"{child.kind} {child.index}")
            finally:
                os._exit(70)
        child.pid = pid
        child.started = time.monotonic()
        child.worker_pid = 0
        fd = os.pidfd_open(pid)
        child.pidfd = fd
        self.children[fd] = child

    def _queue_child(self, i: int) -> None:
        cfg = self.cfg
        keep = {self.queue_callers[i].fd, *(e.fd for e in self.queue_workers[i]),
                *(e.fd for e in self.queue_monitors[i])}
        self._close_all_but(keep)
        queue_process.run(queue_process.QueueConfig(
            index=i, gen=self.gens[i], token=cfg.token, backend=cfg.queue, dispatcher=cfg.dispatcher,
            failure_mode=cfg.failure_mode, caller=self.queue_callers[i], workers=self.queue_workers[i],
            monitors=self.queue_monitors[i], count_settled=cfg.count_settled,
            has_workers=cfg.num_workers > 0, suspended=cfg.suspended, task_modes=cfg.spec.failure_modes), self.me)

    def _monitor_child(self, j: int) -> None:
        cfg = self.cfg
        mon_end = self.monitor_socks[j][1]
        keep = {e.fd for e in self.worker_queues[j] + self.monitor_queues[j]}
        keep |= {self.worker_replies[j].fd, mon_end.fileno()}
        self._close_all_but(keep)
        monitor.run(monitor.MonitorConfig(
            slot=j, spec=cfg.spec, queues=self.worker_queues[j], kills=self.monitor_queues[j],
            reply=self.worker_replies[j], supervisor=Endpoint(mon_end), token=cfg.token, prefetch=cfg.prefetch,
            init_retry_secs=cfg.init_retry_secs, init_retry_max_secs=cfg.init_retry_max_secs,
            init_timeout=cfg.init_timeout, kill_grace_secs=cfg.kill_grace_secs, max_jobs=cfg.max_jobs,
            max_memory=cfg.max_memory, spool=cfg.spool), self.me)

    def _close_all_but(self, keep: set[int]) -> None:
        every = self.cfg.fds() | {fd for a, b in self.monitor_socks for fd in (a.fileno(), b.fileno())}
        every |= set(self.children) | {self.term.fd, self.term.wfd}
        for fd in every - keep:
            try:
                os.close(fd)
            except OSError:
                pass

    # ---------------------------------------------------------------- the loop

    def serve(self) -> int:
        cfg = self.cfg
        for i in range(cfg.num_queues):
            self._fork(_Child("queue", i))
        for j in range(cfg.num_workers):
            self._fork(_Child("monitor", j))
        # we keep each monitor's end too (a restarted monitor inherits it); a monitor sees EOF on it
        # when the supervisor's end is closed, i.e. when we are gone
        mon_by_fd = {s.fileno(): j for j, (s, _) in enumerate(self.monitor_socks)}
        poller = select.poll()
        poller.register(cfg.lifeline, select.POLLIN)
        poller.register(self.control.fd, select.POLLIN)
        poller.register(self.term.fd, select.POLLIN)
        for fd in self.children:
            poller.register(fd, select.POLLIN)
        for fd in mon_by_fd:
            poller.register(fd, select.POLLIN)
        if cfg.spool is not None:
            _spool.sweep(cfg.spool)  # directories of pools whose whole tree was killed (off the start path)
        while self.children or self.pending_restart:
            timeout = None
            if self.pending_restart:
                timeout = max(0, int((min(t for t, _ in self.pending_restart) - time.monotonic()) * 1000) + 1)
            for fd, _ in poller.poll(timeout):
                if fd == cfg.lifeline:
                    self.log.warning("the process that owns the pool died; stopping every pool process")
                    self._kill_all()
                    if cfg.spool is not None:
                        _spool.remove(cfg.spool)  # nobody else will
                    return EXIT_PARENT_GONE
                if fd == self.control.fd:
                    try:
                        msgs = self.control.recv(block=False)
                    except EOFError:
                        msgs = [Terminate()]
                    if any(type(m) is Terminate for m in msgs):
                        self._kill_all()
                        return EXIT_OK
                    self.shutdown_requests += sum(1 for m in msgs if type(m) is Shutdown)
                    for m in msgs:
                        if type(m) is StatusRequest:
                            self.control_out.put(StatusReply(m.req_id, self._status()))
                    if self._signalled():
                        return EXIT_OK
                elif fd == self.term.fd:
                    self.term.drain()
                    if self._signalled():
                        return EXIT_OK
                elif fd in mon_by_fd:
                    if not self._read_monitor(mon_by_fd[fd]):
                        poller.unregister(fd)
                elif fd in self.children:
                    child = self.children.pop(fd)
                    poller.unregister(fd)
                    os.close(fd)
                    if child.kind == "monitor":
                        self._read_monitor(child.index)  # its last WorkerStarted names the worker to bury
                    self._exited(child)
            now = time.monotonic()
            due = [c for t, c in self.pending_restart if t <= now]
            if due:
                self.pending_restart = [(t, c) for t, c in self.pending_restart if t > now]
                for child in due:
                    self._fork(child)
                    poller.register(child.pidfd, select.POLLIN)
                    if child.kind == "queue":
                        self.control_out.put(QueueRestarted(child.index, self.gens[child.index], child.reason))
            reap_strays({c.pid for c in self.children.values()})
            if self.control_out:
                try:
                    self.control_out.flush()
                except OSError:
                    pass
        return EXIT_OK

    def _read_monitor(self, j: int) -> bool:
        """What monitor ``j`` reported (its worker's pid, its state).  False at end of file."""
        try:
            msgs = self.monitor_eps[j].recv(block=False)
        except EOFError:
            return False
        for m in msgs:
            if type(m) is WorkerStarted:
                for c in self.children.values():
                    if c.kind == "monitor" and c.index == j:
                        c.worker_pid = m.pid
            elif type(m) is WorkerState:
                self.worker_states[j].update(m._asdict(), since=time.time())
        return True

    def _status(self) -> dict[str, Any]:
        monitors = {c.index: c for c in self.children.values() if c.kind == "monitor"}
        workers = []
        now = time.time()
        for j, w in enumerate(self.worker_states):
            w = dict(w)
            # retry_in: the whole back-off chosen when it began; next_attempt_in: what is left of it
            w["next_attempt_in"] = (max(0.0, w["retry_in"] - (now - w.get("since", now)))
                                    if w["state"] == "backoff" else 0.0)
            child = monitors.get(j)
            w["monitor_pid"] = child.pid if child else 0
            workers.append(w)
        return {"supervisor_pid": self.me, "shutting_down": self.shutting_down, "workers": workers,
                "queue_generations": list(self.gens)}

    def _signalled(self) -> bool:
        """SIGTERM (to us, or to the caller, which says ``Shutdown``): the first starts a warm
        shutdown, the second of either kind stops now.  True when everything was killed.

        A SIGTERM to the whole process group reaches both the caller and us: that is one request
        of each kind, so still a warm shutdown."""
        if max(self.term.count, self.shutdown_requests) >= 2:
            self.log.warning("second SIGTERM: stopping every pool process now")
            self._kill_all()
            return True
        if (self.term.count or self.shutdown_requests) and not self.shutting_down:
            self.shutting_down = True
            self.pending_restart.clear()
            # (said once to the user: by the caller when the SIGTERM was its, by us when it was ours)
            self.log.log(logging.WARNING if self.term.count else logging.INFO,
                         "SIGTERM: warm shutdown (running jobs finish, no new job starts)")
            for child in self.children.values():
                signal_pid(child.pid, signal.SIGTERM)
        return False

    def _exited(self, child: _Child) -> None:
        try:
            _, status = os.waitpid(child.pid, 0)
            code = exit_status(status)
        except ChildProcessError:
            code = None
        if code == EXIT_OK:
            if child.kind == "queue":
                self.finished_queues += 1
                if self.finished_queues == self.cfg.num_queues:
                    self._queues_finished()
            return  # finished on purpose
        what = f"{child.kind} {child.index} (pid {child.pid})"
        how = f"was killed by {signal_name(code)}" if code is not None and code < 0 else f"exited with code {code}"
        if self.shutting_down:
            self.log.warning("%s %s during shutdown", what, how)
            if child.kind == "monitor":
                self._bury_worker(child)
            return
        if child.kind == "monitor" and self.finished_queues == self.cfg.num_queues:
            if code != -signal.SIGTERM:  # (a SIGTERM before it set its handler is our own stop request)
                self.log.warning("%s %s after the queues finished; not restarting it", what, how)
            self._bury_worker(child)
            return
        self.log.warning("%s %s; restarting it", what, how)
        if child.kind == "monitor":
            self._bury_worker(child)
            self.worker_states[child.index]["monitor_restarts"] += 1
        else:
            self.gens[child.index] += 1
        child.reason = f"{what} {how}"
        lived = time.monotonic() - child.started
        child.restarts = child.restarts + 1 if lived < 1.0 else 0
        delay = 0.0 if child.restarts == 0 else min(0.05 * 2 ** child.restarts, 5.0)
        self.pending_restart.append((time.monotonic() + delay, child))

    def _queues_finished(self) -> None:
        """Every queue has drained and exited: no worker can get another job.  Each queue told its
        workers (``StopWorker``), but a message is read once: a worker that read it and then died
        (killed, or its monitor killed) would leave its replacement waiting for a job forever.  So
        the monitors are told too, by SIGTERM, a state no death can consume: a monitor starts no new
        worker after it, and an idle worker leaves at once.  A monitor restart still pending is dropped."""
        self.pending_restart = [(t, c) for t, c in self.pending_restart if c.kind != "monitor"]
        for child in self.children.values():
            if child.kind == "monitor":
                signal_pid(child.pid, signal.SIGTERM)

    def _bury_worker(self, child: _Child) -> None:
        """The monitor died: make sure its worker is dead and reaped, then tell the queues."""
        pid = child.worker_pid
        code = None
        if pid:
            signal_pid(pid, signal.SIGKILL)
            try:
                _, status = os.waitpid(pid, 0)  # we are its subreaper now
                code = exit_status(status)
            except ChildProcessError:
                pass
        self._bury_strays()
        died = WorkerDied(pid, code, signal_name(code), "", "")
        for ep in self.worker_queues[child.index]:
            try:
                ep.send(died)
            except OSError:
                pass

    def _bury_strays(self) -> None:
        """Kill the processes a dead monitor left (its worker's children, which came to us as
        subreaper), and their descendants: anything below us that is not a live queue or monitor."""
        live = {c.pid for c in self.children.values()}
        try:
            strays = [p for p in psutil.Process().children() if p.pid not in live]
        except psutil.Error:
            return
        for p in strays:
            try:
                for q in p.children(recursive=True) + [p]:
                    q.kill()
            except psutil.Error:
                pass
        if strays:
            psutil.wait_procs(strays, timeout=2.0)
        reap_strays(live)

    def _kill_all(self) -> None:
        for child in list(self.children.values()):
            signal_pid(child.pid, signal.SIGKILL)
            if child.worker_pid:
                signal_pid(child.worker_pid, signal.SIGKILL)
                try:
                    os.killpg(child.worker_pid, signal.SIGKILL)  # the task's own children too
                except (ProcessLookupError, PermissionError):
                    pass
        for child in list(self.children.values()):
            kill_and_reap(child.pid, grace=0)
            os.close(child.pidfd)
        self.children.clear()
        # whatever is left below us (a task's children in their own session, orphaned by their dead
        # monitor, come to us as subreaper): kill it all and reap it, so nothing outlives the pool
        kill_descendants()


def _sock(fd: int) -> Any:
    import socket
    return socket.socket(fileno=fd)
