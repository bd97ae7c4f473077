"""The worker monitor: forks one worker, watches it, stops it when told, restarts it.  Single-threaded.

One monitor per worker slot, forked by the supervisor.  It is a child subreaper, so everything its
worker starts stays its descendant even after a double fork or ``setsid``.  It waits on one
``poll`` over:

* the worker's pidfd: death is noticed even if a task's own child still holds the worker's sockets;
* the worker's status socket: ``InitOk``/``InitFailed``, ``JobStarted``/``JobEnded`` (jobs with a
  time limit), ``Leaving``;
* one socket per queue process: ``KillWorker`` (a running job was cancelled);
* its supervisor socket: end of file means the supervisor is gone;
* a deadline: the running job's limit, or ``init_timeout``.

Stopping a worker (limit passed, job cancelled, init hung) sends SIGTERM to the worker's process
group and every other descendant, then SIGKILL after ``kill_grace_secs``.  When the worker is gone
the monitor kills and reaps whatever it left running (its whole tree dies with it), then writes
``WorkerDied`` on the worker's own socket to every queue: the queue reads it after everything the
worker wrote before dying, and hands the jobs the worker held to the failure mode.  Then it
starts a new worker: at once after a crash, a stop or a recycle; after a back-off after a failed
``init`` (``init_retry_secs``, doubling up to ``init_retry_max_secs``, reset by a successful
``init``); not at all after a clean stop of the pool.
"""

from __future__ import annotations

import logging
import os
import random
import re
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import psutil

from . import worker
from ._jobslot import RUNNING, JobSlot
from ._process import (
    EXIT_OK,
    EXIT_PARENT_GONE,
    Escalation,
    SignalPipe,
    become,
    dump_heading,
    exit_status,
    kill_descendants,
    set_subreaper,
)
from ._wire import Endpoint, pack, socketpair
from .errors import Failure, signal_name, to_exception
from .protocol import (
    InitFailed,
    InitOk,
    JobEnded,
    JobStarted,
    KillWorker,
    Leaving,
    WorkerDied,
    WorkerInitFailed,
    WorkerStarted,
    WorkerState,
    failure_record,
    read_failure,
)
from .tasks import WorkerSpec


@dataclass
class MonitorConfig:
    slot: int
    spec: WorkerSpec
    queues: list[Endpoint]      # the worker's ends of its sockets to each queue
    kills: list[Endpoint]       # this monitor's ends of its sockets from each queue (KillWorker)
    reply: Endpoint             # the worker's end of the reply socket to the caller
    supervisor: Endpoint        # this monitor's socket to the supervisor
    token: str
    prefetch: int
    init_retry_secs: float
    init_retry_max_secs: float
    init_timeout: float | None
    kill_grace_secs: float
    max_jobs: int | None
    max_memory: int | None
    spool: str | None


#: the first line of each thread's part of a faulthandler dump
_THREAD_LINE = re.compile(rb"^(?:Current thread|Thread) (0x[0-9a-f]+) ")

#: an init still running after this many seconds is logged once (it goes on: init_timeout stops it)
SLOW_INIT_SECS = 10.0


def backoff(cfg: MonitorConfig, failures: int) -> float:
    """Seconds before restarting a worker whose init failed ``failures`` times in a row.
    Doubles from ``init_retry_secs`` to the cap; the jitter only ever lengthens the wait."""
    base = min(cfg.init_retry_secs * 2 ** (failures - 1), max(cfg.init_retry_max_secs, cfg.init_retry_secs))
    return base * (1.0 + random.random() * 0.1)


def run(cfg: MonitorConfig, supervisor_pid: int) -> NoReturn:
    become(f"hd-monitor-{cfg.slot}", parent=supervisor_pid, death_signal=signal.SIGUSR2)
    set_subreaper()
    signal.signal(signal.SIGUSR2, _supervisor_died)
    term = SignalPipe()  # SIGTERM: the pool is shutting down; start no new worker
    me = os.getpid()
    log = logging.getLogger(f"honeydew.monitor.{cfg.slot}")
    failures = 0
    last_error = ""    # why the last init failed (kept in the status until an init succeeds)
    served = False     # a worker of this slot has come up (then no job is dropped for its init failures)
    while True:
        if term.count:
            os._exit(EXIT_OK)
        watch = _Watch(cfg, log, me, term, failures, last_error)
        try:
            watch.start()
        except OSError as e:  # fork failed (EAGAIN, ENOMEM): back off like a failed init
            failures += 1
            delay = backoff(cfg, failures)
            log.error("worker %d: cannot fork a worker (%s); retrying in %.1fs", cfg.slot, e, delay)
            _pause(cfg, delay, term)
            continue
        outcome = watch.wait()
        if outcome.leaving is not None and outcome.code == 0:
            outcome.reason = WorkerDied.LEFT
        died = WorkerDied(watch.pid, outcome.code, signal_name(outcome.code), outcome.reason, outcome.job_id)
        for q in cfg.queues:
            try:
                q.send(died)
            except OSError:
                pass
        if (outcome.leaving is False and outcome.code == 0) or term.count:
            os._exit(EXIT_OK)  # the pool is stopping
        if outcome.leaving is True and outcome.code == 0:
            failures, last_error = 0, ""
            continue
        if outcome.init_ok:
            failures, last_error, served = 0, "", True
            what = Failure.crash(outcome.code, watch.pid, "serving jobs").message
            if outcome.reason in (WorkerDied.TIMEOUT, WorkerDied.CANCELLED):
                what = f"worker pid {watch.pid} was stopped ({outcome.reason} of job {outcome.job_id})"
            log.warning("worker %d: %s; starting a new one", cfg.slot, what)
            continue
        failures += 1
        delay = backoff(cfg, failures)
        if outcome.reason == WorkerDied.INIT_TIMEOUT:  # (stopped by us: what its init then raised is beside the point)
            why = f"init did not finish within init_timeout={cfg.init_timeout}s"
            record = Failure.from_exception(TimeoutError(why), kind=Failure.INIT)
        elif outcome.init_failure is not None:
            record = read_failure(outcome.init_failure)
            why = f"init raised {record.describe()}"
        else:
            crash = Failure.crash(outcome.code, watch.pid, "running init")
            why = crash.message
            record = Failure.from_exception(to_exception(crash), kind=Failure.INIT)
        note = WorkerInitFailed(failures, served, failure_record(record))
        for q in cfg.queues:
            try:
                q.send(note)  # (the worker is dead and reaped: we are this socket's writer now)
            except OSError:
                pass
        log.warning("worker %d: %s; retrying in %.1fs (attempt %d)", cfg.slot, why, delay, failures + 1)
        last_error = why
        _report(cfg, WorkerState.BACKOFF, watch.pid, failures, why, delay)
        _pause(cfg, delay, term)


def _supervisor_died(signum: int, frame: object) -> None:
    """PR_SET_PDEATHSIG: the supervisor is gone.  Take the worker and everything it started along."""
    kill_descendants()
    os._exit(EXIT_PARENT_GONE)


def _report(cfg: MonitorConfig, state: str, pid: int, failures: int, error: str, retry_in: float = 0.0) -> None:
    """Tell the supervisor (for ``Pool.status()``); never blocks, never fails the monitor."""
    try:
        cfg.supervisor.sock.sendmsg(pack([WorkerState(state, pid, failures, error, retry_in)])[0], [],
                                    socket.MSG_DONTWAIT)
    except OSError:
        pass


def _pause(cfg: MonitorConfig, delay: float, term: SignalPipe) -> None:
    """Wait ``delay`` seconds; leave at once if the supervisor is gone or the pool shuts down."""
    ready = select.select([cfg.supervisor.fd, term.fd], [], [], delay)[0]
    if cfg.supervisor.fd in ready:
        os._exit(EXIT_PARENT_GONE)  # the supervisor socket is readable only at end of file
    if term.fd in ready:
        os._exit(EXIT_OK)


class _Outcome:
    __slots__ = ("init_ok", "leaving", "init_failure", "code", "reason", "job_id")

    def __init__(self) -> None:
        self.init_ok = False
        self.leaving: bool | None = None
        self.init_failure: tuple[Any, ...] | None = None
        self.code: int | None = None
        self.reason = ""
        self.job_id = ""


class _Watch:
    """One worker's life, from fork to reaping."""

    def __init__(self, cfg: MonitorConfig, log: logging.Logger, me: int, term: SignalPipe, failures: int = 0,
                 last_error: str = "") -> None:
        self.cfg = cfg
        self.failures, self.last_error = failures, last_error  # of the inits before this one
        # the worker's logger, made here: a forked worker finds it ready (and touches fewer pages)
        self.worker_log = logging.getLogger(f"honeydew.worker.{cfg.slot}")
        self.me = me
        self.term = term
        self.log = log
        self.pid = 0
        self.out = _Outcome()
        self.deadline: float | None = None   # when to start stopping the worker
        self.deadline_why = ("", "")         # (reason, job id) for that deadline
        # stopping the worker's tree: SIGTERM now, SIGKILL after kill_grace_secs
        self.stopping = Escalation(lambda: self._signal_tree(signal.SIGTERM),
                                   lambda: self._signal_tree(signal.SIGKILL), cfg.kill_grace_secs)

    def start(self) -> None:
        cfg = self.cfg
        mon_sock, wrk_sock = socketpair()
        self.running = JobSlot()
        dump_r, dump_w = os.pipe2(os.O_CLOEXEC)  # the worker's SIGUSR1 stack dumps (see _process.become)
        try:
            pid = os.fork()
        except OSError:
            mon_sock.close()
            wrk_sock.close()
            self.running.close()
            os.close(dump_r)
            os.close(dump_w)
            raise
        if pid == 0:
            mon_sock.close()
            os.close(dump_r)
            for ep in (cfg.supervisor, *cfg.kills):
                ep.sock.close()
            signal.set_wakeup_fd(-1)  # before its pipe is closed: a signal now must not write to it
            for fd in (self.term.fd, self.term.wfd):
                os.close(fd)
            worker.run(worker.WorkerConfig(cfg.slot, cfg.spec, cfg.queues, cfg.reply, Endpoint(wrk_sock),
                                           self.running, cfg.token, cfg.prefetch, cfg.max_jobs, cfg.max_memory,
                                           self.worker_log, cfg.spool, dump_w),
                       self.me)
        wrk_sock.close()
        os.close(dump_w)
        os.set_blocking(dump_r, False)
        self.dumps = dump_r
        self.dump_seen = 0.0
        self.dump_partial = b""
        self.dump_threads: set[bytes] | None = None   # thread ids of the dump being forwarded
        self.pid = pid
        self.status = Endpoint(mon_sock)
        cfg.supervisor.send(WorkerStarted(pid))
        _report(cfg, WorkerState.STARTING, pid, self.failures, self.last_error)
        self.slow_init_at: float | None = time.monotonic() + SLOW_INIT_SECS
        if cfg.init_timeout:
            self.deadline = time.monotonic() + cfg.init_timeout
            self.deadline_why = (WorkerDied.INIT_TIMEOUT, "")

    def wait(self) -> _Outcome:
        cfg = self.cfg
        fd = os.pidfd_open(self.pid)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self.status.fd, select.POLLIN)
        poller.register(cfg.supervisor.fd, select.POLLIN)
        poller.register(self.term.fd, select.POLLIN)
        poller.register(self.dumps, select.POLLIN)
        kill_fds = {ep.fd: ep for ep in cfg.kills}
        for kfd in kill_fds:
            poller.register(kfd, select.POLLIN)
        try:
            alive = True
            while alive:
                timeout = None
                due = min((t for t in (self.deadline, self.stopping.kill_at, self.slow_init_at) if t is not None),
                          default=None)
                if due is not None:
                    timeout = max(0, int((due - time.monotonic()) * 1000) + 1)
                for ready, _ in poller.poll(timeout):
                    if ready == fd:
                        alive = False
                    elif ready == self.status.fd:
                        self._read_status()
                    elif ready == self.dumps:
                        if not self._forward_dump():
                            poller.unregister(self.dumps)
                    elif ready in kill_fds:
                        self._read_kills(kill_fds[ready])
                    elif ready == cfg.supervisor.fd:
                        self._signal_tree(signal.SIGKILL)
                        os._exit(EXIT_PARENT_GONE)
                    elif ready == self.term.fd:
                        self.term.drain()
                        if not self.out.init_ok:
                            self._stop(WorkerDied.STOPPED_IN_INIT, "")
                        else:
                            # shutting down: the worker finishes its job, hands back what it holds
                            # unstarted, and leaves (it is in its own process group: tell it)
                            try:
                                os.kill(self.pid, signal.SIGTERM)
                            except ProcessLookupError:
                                pass
                now = time.monotonic()
                if self.slow_init_at is not None and now >= self.slow_init_at:
                    self.slow_init_at = None
                    if alive and not self.out.init_ok and self.out.init_failure is None:
                        limit = f"init_timeout={cfg.init_timeout}s" if cfg.init_timeout else "no init_timeout"
                        self.log.warning("worker %d (pid %d): init has been running for %gs (it goes on; %s)",
                                         cfg.slot, self.pid, SLOW_INIT_SECS, limit)
                if alive and self.deadline is not None and now >= self.deadline:
                    reason, job_id = self.deadline_why
                    self.deadline = None
                    if not job_id or self.running.current() == job_id:
                        self._stop(reason, job_id)
                if alive and self.stopping.due(now):
                    # only if the job we stopped it for still runs: a worker that finished it is
                    # leaving by itself after its current job (it got SIGTERM), never killed in its place
                    if not self.out.job_id or self.running.current() == self.out.job_id:
                        self.stopping.force()
                    else:
                        self.stopping.cancel()
            self._read_status()
            while self._forward_dump():
                pass
            _, st = os.waitpid(self.pid, 0)
            self.out.code = exit_status(st)
            if not self.out.reason:
                # which job was it running?  Only that one is charged; the others never started
                state, job_id = self.running.read()
                if state == RUNNING and job_id:
                    self.out.job_id = job_id
                else:
                    self.out.reason = WorkerDied.IDLE
            kill_descendants()  # the worker is gone: kill and reap whatever it started
            return self.out
        finally:
            os.close(fd)
            os.close(self.dumps)
            self.status.sock.close()
            self.running.close()

    def _forward_dump(self) -> bool:
        """Copy what the worker's faulthandler wrote to our stderr, each dump headed by the worker's
        role, pid and job.  A dump lists each thread once, so a thread seen again (or data after a
        quiet spell) starts the next one.  False at end of file or when nothing was there."""
        try:
            data = os.read(self.dumps, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            return False
        now = time.monotonic()
        if now - self.dump_seen > 0.05:
            self.dump_threads = None  # a new burst: a new dump
        self.dump_seen = now
        out = []
        lines = (self.dump_partial + data).split(b"\n")
        self.dump_partial = lines.pop()
        for line in lines:
            head = _THREAD_LINE.match(line)
            if head is not None and self.dump_threads is not None and head.group(1) in self.dump_threads:
                self.dump_threads = None
            if self.dump_threads is None:
                job = self.running.current()
                doing = f"running job {job}" if job else "not running a job"
                out.append(dump_heading(f"hd-worker-{self.cfg.slot} (pid {self.pid}, {doing})"))
                self.dump_threads = set()
            if head is not None:
                self.dump_threads.add(head.group(1))
            out.append(line + b"\n")
        view = memoryview(b"".join(out))
        try:
            while view:
                view = view[os.write(2, view):]
        except OSError:
            pass
        return True

    def _read_status(self) -> None:
        try:
            msgs = self.status.recv(block=False)
        except EOFError:
            return
        out = self.out
        for m in msgs:
            t = type(m)
            if t is JobStarted:
                self.deadline = time.monotonic() + m.timeout
                self.deadline_why = (WorkerDied.TIMEOUT, m.job_id)
            elif t is JobEnded:
                self.deadline = None
            elif t is InitOk:
                out.init_ok = True
                self.deadline = None
                self.slow_init_at = None
                _report(self.cfg, WorkerState.SERVING, self.pid, 0, "")
            elif t is InitFailed:
                out.init_failure = m.failure
            elif t is Leaving:
                out.leaving = m.recycle

    def _read_kills(self, ep: Endpoint) -> None:
        try:
            msgs = ep.recv(block=False)
        except EOFError:
            return
        for m in msgs:
            if type(m) is KillWorker and m.pid == self.pid and self.running.current() == m.job_id:
                self._stop(m.reason, m.job_id)

    def _stop(self, reason: str, job_id: str) -> None:
        """SIGTERM the worker's tree now, SIGKILL after the grace period."""
        if self.out.reason:
            return
        self.out.reason, self.out.job_id = reason, job_id
        self.deadline = None
        if job_id:
            self.running.request_stop(job_id)  # the SIGTERM below then ends the job, not a warm stop
        # a pool shutting down while a worker starts is the normal course of things, not a warning
        level = logging.INFO if reason == WorkerDied.STOPPED_IN_INIT else logging.WARNING
        self.log.log(level, "worker %d (pid %d): stopping it (%s%s)", self.cfg.slot, self.pid, reason,
                     f" of job {job_id}" if job_id else "")
        self.stopping.start(time.monotonic())

    def _signal_tree(self, sig: int) -> None:
        """Signal the worker's process group and every descendant of this monitor."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            kids = psutil.Process().children(recursive=True)
        except psutil.Error:
            kids = []
        for p in kids:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass

