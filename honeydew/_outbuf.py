"""The caller's writing side: every message to the queue processes, jobs written in batches.  [caller]

A burst of ``cast``/``submit`` calls costs one socket write per batch instead of one per job (a
write is a system call, a wake-up of the queue process and, in a threaded caller, a hand-off of
the GIL).  The rules that keep this invisible to the user:

* The first job after a quiet spell is written at once: a lone ``cast`` or ``submit`` waits for
  nothing.  Jobs that follow it within :data:`DELAY` seconds gather in the queue's buffer.
* A buffer is written when it holds :data:`MAX_JOBS` jobs or :data:`MAX_BYTES` bytes, whenever any
  thread is about to wait for the pool (``call``, ``Future.result``, ``join``, a ``cast`` blocked
  by ``max_pending``: see :meth:`Writer.flush_all`), before any other message to that queue (so a
  ``Cancel`` or ``Drain`` never overtakes a job), and otherwise by a timer thread :data:`DELAY`
  seconds after its first job.
* Everything for queue ``i`` is written under that queue's lock, in the order it was put.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from ._wire import Endpoint
from .protocol import encode

DELAY = 0.0005        # seconds a job may wait for company before the timer writes it
MAX_JOBS = 256        # jobs per write at most
MAX_BYTES = 32 * 1024  # payload bytes per write at most: a batch stays one packet (wire.CHUNK), so the
                       # queue's buffers stay the size they were for one job; bigger ones leave its heap
                       # fragmented, its high-water mark raised for good


class Writer:
    """Buffers and writes the caller's messages to each queue process."""

    def __init__(self, endpoints: list[Endpoint], locks: list[threading.Lock]) -> None:
        self.endpoints = endpoints
        self.locks = locks
        self.bufs: list[list[tuple[Any, ...]]] = [[] for _ in endpoints]
        self.sizes = [0] * len(endpoints)
        self.last = [0.0] * len(endpoints)        # when each queue's buffer was last written
        self.armed = threading.Event()           # some buffer waits for the timer
        self.stopped = False
        self.timer: threading.Thread | None = None
        self._timer_lock = threading.Lock()       # several queues' locks may race to start it

    # Every method below but flush_all and stop expects the caller to hold ``locks[q]``.

    def put_job(self, q: int, wire: tuple[Any, ...], size: int) -> None:
        """Add an ``Enqueue`` (in wire form) for queue ``q``; write now if the rules say so.
        Raises ``OSError`` if the queue's socket is gone (the buffer is dropped)."""
        buf = self.bufs[q]
        buf.append(wire)
        self.sizes[q] += size
        if len(buf) >= MAX_JOBS or self.sizes[q] >= MAX_BYTES:
            self.write(q)                # a full batch (or one big job) gains nothing by waiting
        elif len(buf) == 1:
            if time.monotonic() - self.last[q] > DELAY:
                self.write(q)            # the first job after a quiet spell goes at once
            else:
                self._arm()

    def wake(self, q: int, wire: tuple[Any, ...]) -> None:
        """Add a ``Wake`` (in wire form) for queue ``q`` unless one already waits to be written: it
        goes as a job does (at once after a quiet spell, else with the next write, within
        :data:`DELAY`), so that a busy caller wakes its queue process once per batch, not per job."""
        buf = self.bufs[q]
        if not buf or buf[-1] is not wire:
            self.put_job(q, wire, 0)

    def send(self, q: int, msg: Any) -> None:
        """Write ``msg`` to queue ``q`` now, after every job put before it (one frame)."""
        self.send_wire(q, encode(msg))

    def send_many(self, q: int, msgs: list[Any]) -> None:
        """:meth:`send` for several messages, in one write."""
        self.bufs[q].extend(encode(m) for m in msgs)
        self.write(q)

    def send_wire(self, q: int, wire: tuple[Any, ...]) -> None:
        """:meth:`send` for a message in wire form (a ``call``'s job: its caller waits at once)."""
        self.bufs[q].append(wire)
        self.write(q)

    def write(self, q: int) -> None:
        buf = self.bufs[q]
        if not buf:
            return
        self.bufs[q] = []
        self.sizes[q] = 0
        self.last[q] = time.monotonic()
        self.endpoints[q].send_wire(*buf)

    def drop(self, q: int) -> list[tuple[Any, ...]]:
        """Forget what waits for queue ``q`` (it was replaced: those jobs are failed as lost)."""
        buf, self.bufs[q], self.sizes[q] = self.bufs[q], [], 0
        return buf

    # ------------------------------------------------------------------ any thread, no lock held

    def flush_all(self) -> None:
        """Write every waiting job now (a thread is about to wait for an outcome)."""
        for q, buf in enumerate(self.bufs):
            if buf:
                with self.locks[q]:
                    try:
                        self.write(q)
                    except OSError:
                        pass  # the tree is gone: the supervisor's exit fails those jobs

    def stop(self) -> None:
        self.stopped = True
        self.armed.set()

    def _arm(self) -> None:
        if self.timer is None:
            with self._timer_lock:
                if self.timer is None:
                    timer = threading.Thread(target=_timer, args=(weakref.ref(self),), name="honeydew-writer",
                                             daemon=True)
                    timer.start()
                    self.timer = timer
        self.armed.set()


def _timer(ref: weakref.ref[Writer]) -> None:
    """Write a buffer :data:`DELAY` seconds after its first job arrived, if nothing else did."""
    while True:
        writer = ref()
        if writer is None:
            return
        armed = writer.armed
        del writer
        armed.wait()
        time.sleep(DELAY)
        writer = ref()
        if writer is None or writer.stopped:
            return
        armed.clear()
        writer.flush_all()
        del writer
