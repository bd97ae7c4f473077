"""The caller's reading side: every socket the pool's processes write to the caller.  [caller]

No dedicated reader thread stands between a reply and the thread that waits for it: a thread that
waits (``call``, ``Future.result``, a blocked ``cast``, ``join``) becomes the *leader* if nobody
reads yet, polls every socket itself and resolves whatever arrives; other waiting threads sleep on
a condition until their own job is resolved or the leadership is free.  So the common case, one
thread calling and waiting, reads its own reply with no thread hand-off.  A background thread
takes the same role only while ``submit`` futures are outstanding and nobody else waits (done
callbacks must fire even if nobody asks for the result).

Futures are resolved *after* the leader gives up leadership, outside every lock, so a done
callback that calls the pool again can itself lead.

The inbox is given its sockets (the control socket, each queue's, each worker slot's reply socket)
and the supervisor's pidfd; it owns the caller's :class:`JobTable`, settles the jobs whose outcome
arrives, and hands the rest to the pool through :class:`PoolEvents` (a queue replaced, no worker
able to start, the supervisor gone...), the few things only the pool can act on.
"""

from __future__ import annotations

import collections
import itertools
import os
import pickle
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, _base
from typing import Any, Protocol

from . import _spool
from ._wire import Endpoint
from .errors import Failure, RemoteError
from .protocol import (
    BootFailed,
    ControlReply,
    JobFailed,
    JobState,
    Partial,
    Progress,
    QueueRestarted,
    Result,
    Settled,
    StatusReply,
    Stored,
    WorkersDown,
)

# a unit of work for the resolve phase: (future or call slot, kind, value-or-blob-or-exception)
_Work = tuple[Any, int, Any]
_OK_BLOB = 0      # value is the pickled result
_FAILURE = 1      # value is a Failure tuple
_EXC = 2          # value is an exception instance
_PARTIAL_FIELD = Failure._fields.index("partial")
_OPEN = (_base.PENDING, _base.RUNNING)
_FINISHED = _base.FINISHED
_MARK = _spool.MARK


class Unstored:
    """A job sent to a queue whose backend is durable, until the queue says it is ``Stored``:
    its wire form (sent again if the queue restarts first) and the caller's slot, if one waits."""

    __slots__ = ("job_id", "wire", "slot", "stored", "error")

    def __init__(self, job_id: str, wire: tuple[Any, ...], slot: Any) -> None:
        self.job_id, self.wire, self.slot = job_id, wire, slot
        self.stored = False   # the queue has answered (``error`` says whether the backend refused it)
        self.error = ""

    def done(self) -> bool:
        return self.stored


class JobTable:
    """The caller's jobs that wait for an outcome, and the queues' and the supervisor's answers
    about them.  Bookkeeping only (no I/O, no user code): the :class:`Inbox` owns it and settles its
    jobs as their outcomes arrive; the pool registers jobs and asks it.

    Each change is one dict operation (atomic under the GIL); the pool registers a queue's jobs, and
    takes them back when the queue is replaced, under that queue's send lock.  A slot (a future, or
    a ``call``'s bare slot) carries ``_is_async`` while it is a ``submit`` future not yet counted out
    of :attr:`submits`; whoever settles or cancels it first clears it and counts it out."""

    def __init__(self, num_queues: int = 1) -> None:
        #: per queue, oldest first: the jobs sent to a durable backend and not yet ``Stored``.  The
        #: pool appends under the queue's send lock (so in the order sent); only the reading thread
        #: takes them out (a deque's append and popleft are atomic).
        self.unstored: list[collections.deque[Unstored]] = [collections.deque() for _ in range(num_queues)]
        #: per queue, the generation whose ``Stored`` counts (an earlier one's are stale)
        self.gens = [0] * num_queues
        #: job id -> (future or call slot, queue index).  Public for the pool's hot path: it adds a
        #: job with one dict store (and removes it with one pop if the job cannot be written)
        self.pending: dict[str, tuple[Any, int]] = {}
        #: job id -> a map chunk's Partial outcome, kept until the chunk is given up (see protocol)
        self.partials: dict[str, bytes] = {}
        #: ``submit`` futures not settled yet: their done callbacks must fire, so somebody must read
        self.submits = 0
        #: set while :attr:`submits` > 0 (the background reader sleeps on it; the pool sets it to
        #: wake that reader when the pool ends)
        self.submits_open = threading.Event()
        self._submits_lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._states: dict[int, str] = {}      # answers to Cancel/WhereIs (JobState), by request id
        self._status: dict[int, list[tuple[str, dict[str, Any]]]] = {}   # StatusReply, by request id
        self._control: dict[int, list[tuple[bool, Any]]] = {}   # ControlReply (ok, value), by request id

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.pending

    def slots(self) -> list[Any]:
        """Every pending job's future or call slot, oldest first."""
        return [slot for slot, _ in list(self.pending.values())]

    # ---------------------------------------------------------------- submit futures

    def submit_opened(self) -> None:
        """A ``submit`` future was registered."""
        with self._submits_lock:
            self.submits += 1
        if not self.submits_open.is_set():
            self.submits_open.set()

    def submits_settled(self, n: int) -> None:
        """``n`` submit futures were settled or cancelled (counted once per batch)."""
        with self._submits_lock:
            self.submits -= n
            if self.submits == 0:
                self.submits_open.clear()

    # ---------------------------------------------------------------- taking jobs out

    def discard(self, job_id: str) -> Any | None:
        """Take ``job_id`` out (it was cancelled): its slot, or None if it was not pending."""
        entry = self.pending.pop(job_id, None)
        if entry is None:
            return None
        self.partials.pop(job_id, None)
        slot = entry[0]
        if slot._is_async:
            slot._is_async = False
            self.submits_settled(1)
        return slot

    def lose_queue(self, q: int) -> list[tuple[str, Any]]:
        """Take out every job sent to queue ``q`` (it was replaced): (job id, slot) pairs."""
        lost = [(jid, slot) for jid, (slot, qi) in list(self.pending.items()) if qi == q]
        for jid, _ in lost:
            self.pending.pop(jid, None)
            self.partials.pop(jid, None)
        return lost

    def take_all(self) -> list[tuple[str, Any]]:
        """Take out every job (the pool's processes are gone, or it was terminated)."""
        self.partials.clear()
        out = []
        for jid, (slot, _) in list(self.pending.items()):
            self.pending.pop(jid, None)
            out.append((jid, slot))
        return out

    # ---------------------------------------------------------------- a durable backend's answers

    def mark_stored(self, q: int, gen: int, count: int, error: str) -> list[Unstored]:
        """Queue ``q`` (generation ``gen``) stored the next ``count`` jobs sent to it, or refused
        them with ``error``; returns the refused ones.  A stale generation's answer changes nothing."""
        if gen != self.gens[q]:
            return []
        queue = self.unstored[q]
        refused = []
        for _ in range(min(count, len(queue))):
            entry = queue.popleft()
            entry.error = error
            entry.stored = True
            if error:
                refused.append(entry)
        return refused

    def refuse_all(self, error: str) -> None:
        """No ``Stored`` will come (the pool's processes are gone): whoever waits for one learns it."""
        for queue in self.unstored:
            while queue:
                entry = queue.popleft()
                entry.error, entry.stored = error, True

    # ---------------------------------------------------------------- requests and their answers

    def new_request(self) -> int:
        """An id for a ``Cancel``, ``WhereIs`` or ``StatusRequest``: its answers carry it."""
        return next(self._request_ids)

    def record_state(self, req_id: int, state: str) -> None:
        self._states[req_id] = state

    def has_state(self, req_id: int) -> bool:
        return req_id in self._states

    def take_state(self, req_id: int) -> str:
        """The answer to request ``req_id`` (``cancelled``, ``queued``, ``running``), or ``gone``."""
        return self._states.pop(req_id, "gone")

    def record_status(self, req_id: int, source: str, info: dict[str, Any]) -> None:
        self._status.setdefault(req_id, []).append((source, info))

    def status_count(self, req_id: int) -> int:
        return len(self._status.get(req_id, ()))

    def record_control(self, req_id: int, ok: bool, value: Any) -> None:
        self._control.setdefault(req_id, []).append((ok, value))

    def control_count(self, req_id: int) -> int:
        return len(self._control.get(req_id, ()))

    def take_control(self, req_id: int) -> list[tuple[bool, Any]]:
        """Every queue's answer to ``Control`` request ``req_id``: (ok, value)."""
        return self._control.pop(req_id, [])

    def take_status(self, req_id: int) -> list[tuple[str, dict[str, Any]]]:
        """Every answer to status request ``req_id``: (``"queue"`` or ``"supervisor"``, info)."""
        return self._status.pop(req_id, [])


class PoolEvents(Protocol):
    """What the inbox reads but cannot settle itself: the pool acts on it.  Called by the reading
    thread (the leader) with no lock held, except ``exception_of`` and ``unpickling_failed``, which
    are called while the outcomes are rebuilt, outside every lock."""

    def settled(self, queue: int, count: int) -> None:
        """Queue ``queue`` says ``count`` of this caller's jobs reached a final state (``Settled``)."""

    def workers_down(self, dropped: int, failure: tuple[Any, ...]) -> None:
        """A queue dropped ``dropped`` jobs because no worker could start (``WorkersDown``)."""

    def queue_restarted(self, index: int, gen: int, reason: str) -> list[tuple[Any, BaseException]]:
        """Queue ``index`` was replaced by generation ``gen``: take every job sent to it out of the
        table; return each one's slot with the error it gets."""

    def not_stored(self, job_id: str, error: str) -> BaseException:
        """The error of a job a durable backend refused (``Stored`` with an error)."""

    def boot_failed(self, reason: str) -> None:
        """A spawned supervisor could not load the pool's configuration (``BootFailed``)."""

    def supervisor_exited(self) -> Callable[[str], BaseException]:
        """The supervisor has exited (every pool process is gone).  Returns the error a job still
        pending gets, given its id."""

    def exception_of(self, failure: tuple[Any, ...], job_id: str) -> BaseException:
        """The exception a failed job's caller gets."""

    def unpickling_failed(self, message: str) -> BaseException:
        """The error for a result that would not unpickle here."""


class Inbox:
    """Reads every socket the pool's processes write to the caller, and settles the caller's jobs."""

    def __init__(self, control: Endpoint, queues: list[Endpoint], replies: list[Endpoint], supervisor_pidfd: int,
                 events: PoolEvents, flush: Callable[[], None], future_condition: threading.Condition) -> None:
        """``flush`` writes whatever waits in the pool's write buffers (a thread is about to wait);
        ``future_condition`` is the one condition every future of the pool shares."""
        self.jobs = JobTable(len(queues))
        self.control = control
        self.queues = queues
        self.replies = replies
        self.supervisor_pidfd = supervisor_pidfd
        self.events = events
        self.flush = flush
        self.future_condition = future_condition
        self.cv = threading.Condition(threading.Lock())
        self.leading = False
        self.poller = select.poll()
        self.handlers: dict[int, Callable[[list[_Work]], None]] = {}
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.supervisor_gone = False
        self.closed = False
        self._add(self.wake_r, self._drain_wake)
        self._add(control.fd, self._on_control)
        for i, ep in enumerate(queues):
            self._add(ep.fd, lambda work, i=i: self._on_queue(i, work))
        for ep in replies:
            self._add(ep.fd, lambda work, ep=ep: self._on_reply(ep, work))
        self.reply_fds = frozenset(ep.fd for ep in replies)
        self._add(supervisor_pidfd, self._on_supervisor_exit)

    def _add(self, fd: int, handler: Callable[[list[_Work]], None]) -> None:
        self.handlers[fd] = handler
        self.poller.register(fd, select.POLLIN)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` (before its owner closes it)."""
        if self.handlers.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def close(self) -> None:
        """Every pool process is gone: stop watching, once no thread is in ``poll`` any more, and
        close the wake-up pipe (``wake`` becomes a no-op).  The caller may then close the sockets."""
        with self.cv:
            self.closed = True
            while self.leading:
                self.wake()
                self.cv.wait(0.05)
            for fd in list(self.handlers):
                self.forget(fd)
            wake_r, wake_w, self.wake_r, self.wake_w = self.wake_r, self.wake_w, -1, -1
            self.cv.notify_all()
        for fd in (wake_r, wake_w):
            if fd >= 0:
                os.close(fd)

    def wake(self) -> None:
        """Make a leader blocked in ``poll`` return (close, terminate, cancel)."""
        fd = self.wake_w
        if fd < 0:
            return
        try:
            os.write(fd, b"x")
        except OSError:
            pass

    # ---------------------------------------------------------------- waiting

    def wait(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Read and resolve until ``done()`` or ``timeout`` seconds; returns ``done()``.  With
        ``timeout=0`` it still reads once what has already arrived (unless another thread reads)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.flush()  # whatever we wait for may still sit in a write buffer
        cv = self.cv
        polled = False
        with cv:
            while True:
                if done():
                    return True
                if self.closed:
                    return done()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0 and (polled or self.leading):
                    return False
                if self.leading:
                    cv.wait(remaining)
                    continue
                self.leading = True
                cv.release()
                work: list[_Work] = []
                try:
                    self._poll(None if remaining is None else max(0.0, remaining), work)
                    polled = True
                finally:
                    cv.acquire()
                    self.leading = False
                    if cv._waiters:  # type: ignore[attr-defined]  (nobody sleeps on it: skip the work)
                        cv.notify_all()
                if work:
                    cv.release()
                    try:
                        self._resolve(work)
                    finally:
                        cv.acquire()
                    if cv._waiters:  # type: ignore[attr-defined]
                        cv.notify_all()
                    if self.leading:
                        # another thread took the lead while we resolved (outside the lock) and may be
                        # asleep in poll() waiting for a job we just resolved: wake it to look again
                        self.wake()

    def _poll(self, timeout: float | None, work: list[_Work]) -> None:
        ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        events = self.poller.poll(ms)
        gone = False
        # workers' results before the queues' failures: a worker that dies right after sending a
        # result wrote it before anyone knew of its death, so the result is the job's first outcome
        replies = self.reply_fds
        events.sort(key=lambda ev: ev[0] not in replies)
        for fd, _ in events:
            handler = self.handlers.get(fd)
            if handler is None:
                continue
            if handler == self._on_supervisor_exit:
                gone = True
                continue
            handler(work)
        if gone:
            self._on_supervisor_exit(work)

    # ---------------------------------------------------------------- readers (leader only)

    def _drain_wake(self, work: list[_Work]) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except OSError:
            pass

    def _on_reply(self, ep: Endpoint, work: list[_Work]) -> None:
        jobs = self.jobs
        try:
            # one frame when a call waits for its reply; a backlog of submit() results in one go
            msgs = ep.recv(block=False, frames=64 if jobs.submits else 1)
        except EOFError:
            self.poller.unregister(ep.fd)
            self.handlers.pop(ep.fd, None)
            return
        self._replies_read(msgs, jobs.pending, work, "")

    def _replies_read(self, msgs: list[Any], pending: dict[str, Any], work: list[_Work], keep: str) -> None:
        partials = self.jobs.partials
        for m in msgs:
            if type(m) is Progress:
                entry = pending.get(m.job_id)
                if entry is not None:
                    entry[0].progress = (m.fraction, m.message)
                continue
            value = m.value
            if value[:1] == _MARK:
                # a big value came through the spool: open its file and unlink it now (the open file
                # keeps it for as long as it takes; the pool's directory may go first)
                value = _spool.take(value) if (m.job_id in pending or m.job_id == keep) else _spool.discard(value)
            if type(m) is Result:
                entry = pending.pop(m.job_id, None)
                if entry is not None:
                    work.append((entry[0], _OK_BLOB, value))
                    if partials:
                        partials.pop(m.job_id, None)
            elif type(m) is Partial:
                # kept until the failure mode gives the chunk up (or a re-run succeeds)
                if m.job_id in pending or m.job_id == keep:
                    partials[m.job_id] = value

    def _on_queue(self, i: int, work: list[_Work]) -> None:
        ep = self.queues[i]
        try:
            msgs = ep.recv(block=False)
        except EOFError:
            self.poller.unregister(ep.fd)
            self.handlers.pop(ep.fd, None)
            return
        jobs = self.jobs
        for m in msgs:
            t = type(m)
            if t is JobFailed:
                entry = jobs.pending.pop(m.job_id, None)
                if entry is not None:
                    partial = self._partial_of(m.job_id, m.failure, work)
                    if partial is not None:
                        work.append((entry[0], _OK_BLOB, partial))  # every item's outcome, as map wants
                    else:
                        work.append((entry[0], _FAILURE, m.failure))
            elif t is Settled:
                self.events.settled(i, m.count)
            elif t is Stored:
                refused = jobs.mark_stored(i, m.gen, m.count, m.error)
                if refused:
                    for entry in refused:
                        entry_ = jobs.pending.pop(entry.job_id, None)
                        if entry_ is not None:
                            work.append((entry_[0], _EXC, self.events.not_stored(entry.job_id, m.error)))
                    self.events.settled(i, len(refused))  # refused jobs never settle: their room comes back
            elif t is Result:
                # the outcome of a job that ran in another pool, passed on by the queue
                entry = jobs.pending.pop(m.job_id, None)
                if entry is not None:
                    work.append((entry[0], _OK_BLOB, m.value))
                    jobs.partials.pop(m.job_id, None)
            elif t is Partial:
                if m.job_id in jobs.pending:
                    jobs.partials[m.job_id] = m.value
            elif t is WorkersDown:
                self.events.workers_down(m.dropped, m.failure)
            elif t is JobState:
                jobs.record_state(m.req_id, m.state)
            elif t is StatusReply:
                jobs.record_status(m.req_id, "queue", m.info)
            elif t is ControlReply:
                if m.req_id:
                    jobs.record_control(m.req_id, m.ok, m.value)

    def _partial_of(self, job_id: str, failure: tuple[Any, ...], work: list[_Work]) -> bytes | None:
        """The ``Partial`` outcome of a given-up map chunk.  The worker wrote it before it reported
        the failure, so it is in a reply socket already, though maybe not read yet: read them all."""
        partials = self.jobs.partials
        if job_id not in partials and len(failure) > _PARTIAL_FIELD and failure[_PARTIAL_FIELD]:
            for ep in self.replies:
                if ep.fd not in self.handlers:
                    continue
                try:
                    msgs = ep.recv(block=False, frames=1 << 30)
                except EOFError:
                    continue
                self._replies_read(msgs, self.jobs.pending, work, job_id)
        return partials.pop(job_id, None)

    def _on_control(self, work: list[_Work]) -> None:
        try:
            msgs = self.control.recv(block=False)
        except EOFError:
            return
        for m in msgs:
            if type(m) is QueueRestarted:
                for slot, exc in self.events.queue_restarted(m.index, m.gen, m.reason):
                    work.append((slot, _EXC, exc))
            elif type(m) is StatusReply:
                self.jobs.record_status(m.req_id, "supervisor", m.info)
            elif type(m) is BootFailed:
                self.events.boot_failed(m.reason)

    def _on_supervisor_exit(self, work: list[_Work]) -> None:
        """Every pool process is gone.  Read what they left, then fail what is still pending."""
        if self.supervisor_gone:
            return
        for fd, handler in list(self.handlers.items()):
            if handler != self._on_supervisor_exit and fd != self.wake_r:
                handler(work)
        self.supervisor_gone = True
        fd = self.supervisor_pidfd
        self.poller.unregister(fd)
        self.handlers.pop(fd, None)
        error = self.events.supervisor_exited()
        for jid, slot in self.jobs.take_all():
            work.append((slot, _EXC, error(jid)))

    def fail_all(self, error: Callable[[str], BaseException]) -> None:
        """Fail every pending job now, with ``error(job_id)`` (the pool was terminated)."""
        self._resolve([(slot, _EXC, error(jid)) for jid, slot in self.jobs.take_all()])

    # ---------------------------------------------------------------- resolving (no lock held)

    def _resolve(self, work: list[_Work]) -> None:
        """Give every job in ``work`` its outcome.  Outcomes are rebuilt first, outside every lock
        (unpickling runs user code); then the pool's futures, which share one condition, are
        settled under a single acquisition of it, and their done callbacks run after, outside it."""
        settled: list[tuple[Future, bool, Any]] = []  # type: ignore[type-arg]
        interrupted: BaseException | None = None
        events = self.events
        for fut, kind, value in work:
            job_id = getattr(fut, "job_id", "?")
            if kind == _OK_BLOB:
                try:
                    value = pickle.loads(value) if type(value) is bytes else _spool.load_file(value)
                    ok = True
                except BaseException as e:  # (user code ran: even a SystemExit must not strand the batch)
                    if isinstance(e, KeyboardInterrupt):
                        interrupted = e
                    if type(value) is not bytes:
                        value.seek(0)  # a spooled result: name its type from the start of the file
                    value_exc = events.unpickling_failed(
                        f"the result of job {job_id} (pickled as {pickled_type(value)}) "
                        f"could not be unpickled in the caller: {type(e).__name__}: {e}")
                    value_exc.__cause__ = e
                    value, ok = value_exc, False
            elif kind == _FAILURE:
                try:
                    value, ok = events.exception_of(value, job_id), False
                except BaseException as e:  # an exception whose unpickling ran wild
                    if isinstance(e, KeyboardInterrupt):
                        interrupted = e
                    f = Failure._make(value)
                    value, ok = RemoteError(f.type_name, f.message, f.traceback), False
                    value.__cause__ = e
            else:
                ok = False
            if isinstance(fut, Future):
                settled.append((fut, ok, value))
            elif ok:
                fut.set_result(value)  # a call's bare slot: only its own thread looks at it
            else:
                fut.set_exception(value)
        if not settled:
            if interrupted is not None:
                raise interrupted
            return
        n_async = 0
        callbacks = []
        cond = self.future_condition
        with cond:
            for fut, ok, value in settled:
                if fut._is_async:  # type: ignore[attr-defined]
                    fut._is_async = False  # type: ignore[attr-defined]
                    n_async += 1
                if fut._state not in _OPEN:  # type: ignore[attr-defined]
                    continue  # cancelled meanwhile
                # what Future.set_result/set_exception do, for the whole batch at once
                if ok:
                    fut._result = value  # type: ignore[attr-defined]
                else:
                    fut._exception = value  # type: ignore[attr-defined]
                fut._state = _FINISHED  # type: ignore[attr-defined]
                for waiter in fut._waiters:  # type: ignore[attr-defined]
                    (waiter.add_result if ok else waiter.add_exception)(fut)
                if fut._done_callbacks:  # type: ignore[attr-defined]
                    callbacks.append(fut)
            cond.notify_all()
        if n_async:
            self.jobs.submits_settled(n_async)
        for fut in callbacks:
            fut._invoke_callbacks()  # type: ignore[attr-defined]
        if interrupted is not None:
            raise interrupted  # (every job of the batch has its outcome first)


def pickled_type(blob: bytes) -> str:
    """The qualified name of the first class a pickle refers to (the result's own type, for a
    result that is an instance), read from the opcodes without unpickling: for error messages."""
    import pickletools
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(blob):
            if op.name in ("GLOBAL", "INST"):
                return str(arg).replace(" ", ".")
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:
        pass
    return "value of a builtin type"
