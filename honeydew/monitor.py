"""The worker monitor: forks one worker, watches it, restarts it.  Single-threaded.

One monitor per worker slot, forked by the supervisor.  It waits on one ``poll`` over the
worker's pidfd (death is noticed even if a task's own child still holds the worker's sockets
open), the worker's status socket (``InitOk``/``InitFailed``/``Leaving``) and its supervisor
socket (end of file = the supervisor is gone).

When the worker dies the monitor reaps it and writes ``WorkerDied`` on the worker's own socket
to every queue: the queue reads it after everything the worker wrote before dying, and hands the
jobs the worker held to the failure mode.  Then it starts a new worker, at once after a crash or
a ``restart_worker()``, after a back-off after a failed ``init`` (``init_retry_secs``, doubling up
to a cap, reset by a successful ``init``), and not at all after a clean stop.
"""

from __future__ import annotations

import logging
import os
import random
import select
from dataclasses import dataclass
from typing import NoReturn

from . import worker
from ._process import EXIT_OK, EXIT_PARENT_GONE, become, exit_status, kill_and_reap
from ._wire import Endpoint, socketpair
from .errors import Failure, signal_name
from .protocol import InitFailed, InitOk, Leaving, WorkerDied, WorkerStarted
from .tasks import WorkerSpec


@dataclass
class MonitorConfig:
    slot: int
    spec: WorkerSpec
    queues: list[Endpoint]      # the worker's ends of its sockets to each queue
    reply: Endpoint             # the worker's end of the reply socket to the caller
    supervisor: Endpoint        # this monitor's socket to the supervisor
    token: str
    prefetch: int
    init_retry_secs: float
    init_retry_max_secs: float


def backoff(cfg: MonitorConfig, failures: int) -> float:
    """Seconds before restarting a worker whose init failed ``failures`` times in a row.
    Doubles from ``init_retry_secs`` to the cap; the jitter only ever lengthens the wait."""
    base = min(cfg.init_retry_secs * 2 ** (failures - 1), max(cfg.init_retry_max_secs, cfg.init_retry_secs))
    return base * (1.0 + random.random() * 0.1)


def run(cfg: MonitorConfig, supervisor_pid: int) -> NoReturn:
    become(f"hd-monitor-{cfg.slot}", parent=supervisor_pid)
    log = logging.getLogger(f"honeydew.monitor.{cfg.slot}")
    me = os.getpid()
    failures = 0
    while True:
        mon_sock, wrk_sock = socketpair()
        pid = os.fork()
        if pid == 0:
            mon_sock.close()
            cfg.supervisor.sock.close()
            worker.run(worker.WorkerConfig(cfg.slot, cfg.spec, cfg.queues, cfg.reply, Endpoint(wrk_sock),
                                           cfg.token, cfg.prefetch), me)
        wrk_sock.close()
        status = Endpoint(mon_sock)
        cfg.supervisor.send(WorkerStarted(pid))
        init_ok, leaving, init_failure, code = _watch(cfg, pid, status, log)
        mon_sock.close()
        died = WorkerDied(pid, code, signal_name(code))
        for q in cfg.queues:
            try:
                q.send(died)
            except OSError:
                pass
        if leaving is False and code == 0:
            os._exit(EXIT_OK)
        if leaving is True and code == 0:
            failures = 0
            continue
        if init_ok:
            failures = 0
            log.warning("worker %d: %s; starting a new one", cfg.slot, Failure.crash(code, pid, "serving jobs").message)
            continue
        failures += 1
        delay = backoff(cfg, failures)
        if init_failure is not None:
            why = f"init raised {Failure._make(init_failure).describe()}"
        else:
            why = Failure.crash(code, pid, "running init").message
        log.warning("worker %d: %s; retrying in %.1fs (attempt %d)", cfg.slot, why, delay, failures + 1)
        if select.select([cfg.supervisor.fd], [], [], delay)[0]:
            os._exit(EXIT_PARENT_GONE)  # the supervisor socket is readable only at end of file


def _watch(cfg: MonitorConfig, pid: int, status: Endpoint, log: logging.Logger) -> tuple[bool, bool | None, tuple | None, int | None]:  # type: ignore[type-arg]
    """Wait for the worker to exit; returns (init succeeded, Leaving.recycle or None, init failure, exit code)."""
    fd = os.pidfd_open(pid)
    init_ok = False
    leaving: bool | None = None
    init_failure = None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(status.fd, select.POLLIN)
    poller.register(cfg.supervisor.fd, select.POLLIN)
    alive = True

    def read_status() -> None:
        nonlocal init_ok, leaving, init_failure
        try:
            msgs = status.recv(block=False)
        except EOFError:
            return
        for m in msgs:
            if type(m) is InitOk:
                init_ok = True
            elif type(m) is InitFailed:
                init_failure = m.failure
            elif type(m) is Leaving:
                leaving = m.recycle

    try:
        while alive:
            for ready, _ in poller.poll():
                if ready == status.fd:
                    read_status()
                elif ready == fd:
                    alive = False
                elif ready == cfg.supervisor.fd:
                    kill_and_reap(pid, grace=0)
                    os._exit(EXIT_PARENT_GONE)
        read_status()
        _, st = os.waitpid(pid, 0)
        return init_ok, leaving, init_failure, exit_status(st)
    finally:
        os.close(fd)
