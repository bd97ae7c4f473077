"""Pools that nobody stopped: what a garbage-collected pool leaves, and how many jobs a pool drops
when it is stopped at once.  [caller]

A pool collected without being joined is stopped by a ``weakref.finalize`` callback that holds
what it needs (the supervisor's handle, the queue sockets, the write buffers), never the pool:
those stay open until the callback has run, whatever order the cyclic collector finalizes the
rest in.  It asks each queue process how many jobs it holds (a ``StatusRequest``, answered within
a fraction of a second), stops the tree (killing the supervisor is enough: queues and monitors die
with it, and each monitor takes its worker's tree along), removes the spool and says what was
dropped.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from typing import Any

from . import _spool
from ._wire import Endpoint, pack
from .protocol import StatusReply, StatusRequest

log = logging.getLogger("honeydew.pool")
_ASK = b"".join(bytes(b) for b in pack([StatusRequest(-1)])[0])


def queue_counts(queues: list[Endpoint], timeout: float) -> tuple[int, int] | None:
    """(jobs queued, jobs running) over every queue process, asked directly on their sockets;
    ``None`` if some queue did not answer in time.  For a pool that no thread uses any more."""
    waiting = {}
    for ep in queues:
        try:
            ep.sock.send(_ASK, socket.MSG_DONTWAIT)
        except OSError:
            return None
        waiting[ep.fd] = ep
    queued = running = 0
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        for fd in select.select(list(waiting), [], [], left)[0]:
            try:
                msgs = waiting[fd].recv(block=False)
            except (EOFError, OSError):
                return None
            for m in msgs:
                if type(m) is StatusReply and m.req_id == -1:
                    queued += m.info.get("pending", 0)
                    running += m.info.get("reserved", 0)
                    waiting.pop(fd, None)
    return queued, running


def stop_collected(owner: int, name: str, supervisor: Any, queues: list[Endpoint], writer: Any,
                   spool: str | None, wake: Any, durable: str = "") -> None:
    """The ``weakref.finalize`` callback of a pool collected without being joined.  ``wake`` is the
    event its result thread sleeps on: set, so that the thread sees the pool is gone and ends.
    ``durable`` names the pool's durable queue, which keeps its jobs ('' for one that does not)."""
    writer.stop()   # (its timer thread ends too)
    wake.set()
    if os.getpid() != owner or supervisor.exitcode is not None:
        return  # a forked child's copy, or a pool whose tree is gone already
    try:
        unsent = sum(len(buf) for buf in writer.bufs)   # jobs that never left this process
        counts = queue_counts(queues, 0.25)
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.reap(True)
    except OSError:
        counts, unsent = None, 0
    supervisor.close()
    for ep in queues:
        ep.sock.close()
    if spool is not None:
        _spool.remove(spool)
    if counts is None:
        log.warning("honeydew: %s was garbage-collected without being joined: stopped; the jobs it still held "
                    "were dropped (how many is unknown: a queue did not answer)", name)
    elif durable and counts[0] + counts[1]:
        log.warning("honeydew: %s was garbage-collected without being joined: stopped; %d running job(s) stopped "
                    "and %d queued left in %s, where they run when a pool serves it again; leave its `with` "
                    "block, or close() and join() it, to run them now", name, counts[1], counts[0], durable)
    elif counts[0] + counts[1] + unsent:
        log.warning("honeydew: %s was garbage-collected without being joined: stopped; %d job(s) dropped "
                    "(%d running, %d queued, casts included); leave its `with` block, or close() and join() it, "
                    "to run them", name, counts[0] + counts[1] + unsent, counts[1], counts[0] + unsent)
