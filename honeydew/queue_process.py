"""The queue process: the I/O shell around :class:`~honeydew.queue_core.QueueCore`.

One per ``num_queues``, forked by the supervisor.  It opens the backend as its owner (the pool's
token, its index and generation), then runs one loop that waits on one ``poll`` over the caller's
socket (``Enqueue``, ``Cancel``, ``WhereIs``, ``Resync``, ``Drain``, ``StatusRequest``), one socket
per worker slot (``Credit``, ``Done``, ``Failed``, ``Release``, ``Answer``, and the monitor's
``WorkerDied``/``WorkerInitFailed``), the SIGTERM pipe, the backend's own descriptor if it has one
(a broker's connection) and, when some socket's buffer was full, writability.  Every message goes
to the core, which decides; the shell writes what the core put in the outboxes.  It never blocks
writing to anyone (every write goes through an :class:`~honeydew._wire.Outbox`), so no cycle of
processes can wedge on writes.
"""

from __future__ import annotations

import logging
import os
import select
import time
from dataclasses import dataclass
from typing import NoReturn

from ._process import EXIT_OK, SignalPipe, become, log_exception_and_exit
from ._wire import Endpoint, Outbox
from .dispatchers import Dispatcher
from .failure_modes import FailureMode
from .queue_core import QueueCore
from .queues.base import Owner, Queue

_IN = select.POLLIN
_OUT = select.POLLOUT
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


@dataclass
class QueueConfig:
    index: int
    gen: int
    token: str                    # the pool's own origin
    backend: Queue
    dispatcher: Dispatcher
    failure_mode: FailureMode
    caller: Endpoint
    workers: list[Endpoint]       # the queue's end of each worker slot's socket
    monitors: list[Endpoint]      # the queue's end of each monitor's kill socket
    count_settled: bool           # send Settled (the caller enforces max_pending)
    has_workers: bool
    suspended: bool = False       # start with dispatch suspended (Pool(suspended=True))
    task_modes: dict[str, FailureMode] | None = None   # @honeydew.task(failure_mode=...), by task name


def run(cfg: QueueConfig, supervisor_pid: int) -> NoReturn:
    become(f"hd-queue-{cfg.index}", parent=supervisor_pid)
    log = logging.getLogger(f"honeydew.queue.{cfg.index}")
    try:
        _Shell(cfg, log).serve()
    except Exception:
        log_exception_and_exit(log, f"queue {cfg.index}")
    os._exit(EXIT_OK)


class _Shell:
    def __init__(self, cfg: QueueConfig, log: logging.Logger) -> None:
        self.cfg = cfg
        self.log = log
        self.caller_out = Outbox(cfg.caller)
        self.worker_out = [Outbox(w) for w in cfg.workers]
        self.monitor_out = [Outbox(m) for m in cfg.monitors]
        self.core = QueueCore(index=cfg.index, gen=cfg.gen, token=cfg.token, backend=cfg.backend,
                              dispatcher=cfg.dispatcher, failure_mode=cfg.failure_mode, caller=self.caller_out,
                              workers=self.worker_out, monitors=self.monitor_out, count_settled=cfg.count_settled,
                              has_workers=cfg.has_workers, suspended=cfg.suspended, task_modes=cfg.task_modes,
                              log=log)
        self.poller = select.poll()
        self.outs: dict[int, Outbox] = {cfg.caller.fd: self.caller_out}
        self.outs.update({w.fd: self.worker_out[i] for i, w in enumerate(cfg.workers)})
        self.outs.update({m.fd: self.monitor_out[i] for i, m in enumerate(cfg.monitors)})
        self.reading: set[int] = set()    # registered for reading (the monitors' sockets are not)
        self.writing: set[int] = set()    # also watched for writability: their buffer was full

    def serve(self) -> None:
        cfg, core, backend = self.cfg, self.core, self.cfg.backend
        backend.open(Owner(cfg.token, cfg.index, cfg.gen, os.getpid()))
        try:
            core.start()
            self._loop()
        finally:
            backend.close()

    def _watch(self, fd: int) -> None:
        self.poller.register(fd, _IN)
        self.reading.add(fd)

    def _loop(self) -> None:
        cfg, core, backend = self.cfg, self.core, self.cfg.backend
        term = SignalPipe()
        caller_fd = cfg.caller.fd
        slots = {w.fd: slot for slot, w in enumerate(cfg.workers)}
        self._watch(caller_fd)
        self._watch(term.fd)
        for fd in slots:
            self._watch(fd)
        backend_fd = backend.fileno()
        if backend_fd is not None:
            self._watch(backend_fd)
        next_tick: float | None = time.time()
        while True:
            if next_tick is not None and time.time() >= next_tick:
                wait = backend.tick(time.time())
                next_tick = None if wait is None else time.time() + wait
                core.collect_replies()
            core.step()
            self._flush()
            if core.finished():
                core.stop_workers()
                self._flush_before_exit()
                return
            wait = core.wait_for()
            if next_tick is not None:
                left = next_tick - time.time()
                wait = left if wait is None else min(wait, left)
            timeout = None if wait is None else max(1, int(min(wait, 3600.0) * 1000) + 1)  # poll() takes ms
            events = self.poller.poll(timeout)
            if len(events) > 1:
                events.sort(key=lambda e: e[0] == caller_fd)  # the caller's socket last (see below)
            heard_workers = False
            for fd, ev in events:
                if not ev & _READABLE or fd not in self.reading:
                    continue  # only writability (the flush below takes care of it)
                if fd == term.fd:
                    term.drain()
                    if term.count:
                        core.terminate_requested()
                elif fd == backend_fd:
                    backend.readable()
                    core.collect_replies()
                elif fd == caller_fd:
                    if heard_workers:
                        # workers that just finished get their next job before we read a batch of
                        # new ones: a worker waiting on us is the costliest wait there is
                        core.step()
                        self._flush()
                    try:
                        msgs = cfg.caller.recv(block=False, frames=16)
                    except EOFError:
                        self._unwatch(fd)  # the caller is gone; the supervisor will stop us
                        continue
                    core.from_caller(msgs)
                else:
                    slot = slots[fd]
                    try:
                        msgs = cfg.workers[slot].recv(block=False, frames=1)
                    except EOFError:
                        self._unwatch(fd)
                        continue
                    heard_workers = True
                    core.from_worker(slot, msgs)

    def _unwatch(self, fd: int) -> None:
        self.poller.unregister(fd)
        self.reading.discard(fd)
        self.writing.discard(fd)

    def _flush(self) -> None:
        """Write every outbox; watch for writability only where a socket's buffer was full.  A
        monitor's kill socket is watched only while it is full (nothing is read from it here)."""
        for fd, out in self.outs.items():
            if not out:
                continue
            try:
                done = out.flush()
            except OSError:  # the peer is gone for good: what it would have read is moot
                out.msgs.clear()
                out.packets.clear()
                done = True
            if done and fd in self.writing:
                self.writing.discard(fd)
                if fd in self.reading:
                    self.poller.modify(fd, _IN)
                else:
                    self.poller.unregister(fd)
            elif not done and fd not in self.writing:
                self.writing.add(fd)
                if fd in self.reading:
                    self.poller.modify(fd, _IN | _OUT)
                else:
                    self.poller.register(fd, _OUT)

    def _flush_before_exit(self) -> None:
        """Write what is left (every worker's ``StopWorker``), waiting up to 5 s for full buffers."""
        deadline = time.monotonic() + 5.0
        for out in self.outs.values():
            while out and time.monotonic() < deadline:
                try:
                    if not out.flush():
                        select.select([], [out.endpoint.fd], [], 0.1)
                except OSError:
                    break
