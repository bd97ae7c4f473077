"""The queue process: owns a queue backend, dispatches against credit, runs the failure mode.

One per ``num_queues``, forked by the supervisor.  Its single loop waits on one ``poll`` over the
caller's socket (``Enqueue``, ``Cancel``, ``Resync``, ``Drain``), one socket per worker slot
(``Credit``, ``Done``, ``Failed``, ``Release``, and the monitor's ``WorkerDied``) and, when some
socket's buffer was full, writability.  It never blocks writing to anyone (every write goes
through an :class:`~honeydew._wire.Outbox`), so no cycle of processes can wedge on writes.

Dispatch: while the backend has a ready job and the dispatcher has a worker with credit, the job
is reserved, charged to that worker slot (``reserved``), and sent.  The charge is recorded before
the worker even sees the job, which is how a crash anywhere is attributed to the right job.

A generation number tells incarnations apart: a restarted queue process (``gen`` > 0) ignores
the caller until the caller says ``Resync(gen)`` (it has failed whatever it sent before), and
ignores ``Credit`` granted to an earlier generation.
"""

from __future__ import annotations

import logging
import os
import select
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from . import _spool
from ._process import EXIT_OK, SignalPipe, become, log_exception_and_exit
from ._wire import Endpoint, Outbox
from .dispatchers import Dispatcher
from .errors import NO_WORKER_MRO, Failure
from .failure_modes import FailureMode, GiveUp, Redeliver
from .protocol import (
    Cancel,
    Credit,
    Dispatch,
    Done,
    Drain,
    Enqueue,
    Failed,
    Hello,
    JobFailed,
    JobState,
    KillWorker,
    Release,
    Resync,
    Settled,
    StatusReply,
    StatusRequest,
    StopWorker,
    WhereIs,
    WorkerDied,
    WorkerInitFailed,
    WorkersDown,
)
from .queues.base import Job, Queue

_DISPATCH = Dispatch.TAG  # sent per job in wire form
_MARK = _spool.MARK
assert Dispatch._fields == ("job_id", "payload", "origin", "deliveries", "timeout")


@dataclass
class QueueConfig:
    index: int
    gen: int
    backend: Queue
    dispatcher: Dispatcher
    failure_mode: FailureMode
    caller: Endpoint
    workers: list[Endpoint]       # the queue's end of each worker slot's socket
    monitors: list[Endpoint]      # the queue's end of each monitor's kill socket
    count_settled: bool           # send Settled (the caller enforces max_pending)
    has_workers: bool


@dataclass
class _State:
    cfg: QueueConfig
    log: logging.Logger
    caller_out: Outbox
    worker_out: list[Outbox]
    monitor_out: list[Outbox] = field(default_factory=list)
    reserved: list[dict[str, Job]] = field(default_factory=list)   # per slot
    cancelled: set[str] = field(default_factory=set)               # running jobs being killed
    pids: list[int] = field(default_factory=list)                   # current worker pid per slot
    accepting: bool = True
    draining: bool = False        # Drain: finish every job, then stop
    shutting_down: bool = False   # SIGTERM: finish running jobs, start nothing new, then stop
    settled: int = 0
    init_failures: dict[int, int] = field(default_factory=dict)  # slot -> init failures in a row
    served: bool = False          # some worker has come up (credited us, or its monitor says so)
    last_init: tuple[int, Failure] | None = None   # (slot, its last init failure)
    no_worker: bool = False       # every slot failed init often enough and none served: jobs are dropped


def run(cfg: QueueConfig, supervisor_pid: int) -> NoReturn:
    become(f"hd-queue-{cfg.index}", parent=supervisor_pid)
    log = logging.getLogger(f"honeydew.queue.{cfg.index}")
    try:
        _loop(cfg, log)
    except Exception:
        log_exception_and_exit(log, f"queue {cfg.index}")
    os._exit(EXIT_OK)


def _loop(cfg: QueueConfig, log: logging.Logger) -> None:
    backend = cfg.backend
    backend.open()
    st = _State(cfg, log, Outbox(cfg.caller), [Outbox(w) for w in cfg.workers], [Outbox(m) for m in cfg.monitors],
                [{} for _ in cfg.workers], pids=[0] * len(cfg.workers), accepting=(cfg.gen == 0))
    for out in st.worker_out:
        out.put(Hello(cfg.gen))
    term = SignalPipe()
    poller = select.poll()
    handlers: dict[int, Any] = {cfg.caller.fd: None, term.fd: "signal"}
    poller.register(cfg.caller.fd, select.POLLIN)
    poller.register(term.fd, select.POLLIN)
    for slot, w in enumerate(cfg.workers):
        handlers[w.fd] = slot
        poller.register(w.fd, select.POLLIN)
    writing: set[int] = set()
    outs = {cfg.caller.fd: st.caller_out, **{w.fd: st.worker_out[i] for i, w in enumerate(cfg.workers)},
            **{m.fd: st.monitor_out[i] for i, m in enumerate(cfg.monitors)}}

    def flush() -> None:
        """Write every outbox; watch for writability only where a socket's buffer was full."""
        for fd, out in outs.items():
            if out:
                try:
                    done = out.flush()
                except OSError:
                    out.msgs.clear()
                    out.packets.clear()
                    done = True
                if done and fd in writing:
                    writing.discard(fd)
                    poller.modify(fd, select.POLLIN)
                elif not done and fd not in writing:
                    writing.add(fd)
                    poller.modify(fd, select.POLLIN | select.POLLOUT)

    caller_fd = cfg.caller.fd
    try:
        while True:
            _dispatch(st)
            flush()
            if (st.draining and _finished(st)) or (st.shutting_down and _shut_down(st)):
                _stop_workers(st, outs)
                return
            timeout = None
            if len(cfg.dispatcher):
                wait = backend.next_ready_in(time.time())
                if wait is not None:
                    timeout = max(1, int(min(wait, 3600.0) * 1000) + 1)  # poll() takes an int of ms
            events = poller.poll(timeout)
            if len(events) > 1:
                events.sort(key=lambda e: e[0] == caller_fd)  # the caller's socket last (see below)
            heard_workers = False
            for fd, ev in events:
                if fd not in handlers:
                    continue  # a monitor socket that was only watched for writability
                if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    slot = handlers[fd]
                    if slot == "signal":
                        term.drain()
                        if term.count and not st.shutting_down:
                            log.warning("SIGTERM: finishing the running jobs; starting no new one")
                            st.shutting_down = True
                        continue
                    if slot is None and heard_workers:
                        # workers that just finished get their next job before we read a batch of
                        # new ones: a worker waiting on us is the costliest wait there is
                        _dispatch(st)
                        flush()
                    ep = cfg.caller if slot is None else cfg.workers[slot]
                    try:
                        msgs = ep.recv(block=False, frames=16 if slot is None else 1)
                    except EOFError:
                        poller.unregister(fd)  # the caller is gone; the supervisor will stop us
                        continue
                    if slot is None:
                        _from_caller(st, msgs)
                    else:
                        heard_workers = True
                        _from_worker(st, slot, msgs)
    finally:
        backend.close()


def _finished(st: _State) -> bool:
    if not st.cfg.has_workers and not st.cfg.backend.durable:
        for job in st.cfg.backend.take_pending():
            _give_up(st, job, Failure("lost", "honeydew.errors.JobLost",
                                      "the pool closed with no workers to run this job", ""))
        return True
    return len(st.cfg.backend) == 0 and not any(st.reserved)


def _shut_down(st: _State) -> bool:
    """Warm shutdown: done once no job runs.  An in-memory queue's waiting jobs are reported lost;
    a durable queue keeps them for the next pool."""
    if any(st.reserved):
        return False
    if not st.cfg.backend.durable:
        for job in st.cfg.backend.take_pending():
            _give_up(st, job, Failure("lost", "honeydew.errors.JobLost",
                                      f"job {job.id} was never started: the pool was shut down by SIGTERM", ""))
    return True


def _stop_workers(st: _State, outs: dict[int, Outbox]) -> None:
    for out in st.worker_out:
        out.put(StopWorker())
    deadline = time.monotonic() + 5.0
    for out in outs.values():
        while out and time.monotonic() < deadline:
            try:
                if not out.flush():
                    select.select([], [out.endpoint.fd], [], 0.1)
            except OSError:
                break


def _from_caller(st: _State, msgs: list[Any]) -> None:
    backend = st.cfg.backend
    for m in msgs:
        t = type(m)
        if not st.accepting:
            if t is Resync and m.gen == st.cfg.gen:
                st.accepting = True
            continue
        if t is Enqueue:
            backend.enqueue(Job(m.job_id, m.payload, m.origin, timeout=m.timeout))
        elif t is Cancel:
            if len(st.cfg.dispatcher) and len(backend):
                _dispatch(st)  # idle workers take what they would have taken had we been quicker
            job = backend.cancel(m.job_id)
            if job is not None:
                _forget(job)
                _settle(st)
                state = "cancelled"
            else:
                slot = _running_on(st, m.job_id)
                state = "gone" if slot is None else "running"
                if slot is not None and m.terminate and st.pids[slot]:
                    st.cancelled.add(m.job_id)
                    st.monitor_out[slot].put(KillWorker(st.pids[slot], m.job_id, "cancelled"))
            if m.req_id:
                st.caller_out.put(JobState(m.req_id, m.job_id, state))
        elif t is WhereIs:
            if _running_on(st, m.job_id) is not None:
                state = "running"
            else:
                state = "queued" if backend.is_pending(m.job_id) else "gone"
            st.caller_out.put(JobState(m.req_id, m.job_id, state))
        elif t is Drain:
            st.draining = True
        elif t is StatusRequest:
            info = dict(backend.status())
            info.update(index=st.cfg.index, pid=os.getpid(), generation=st.cfg.gen, backend=repr(backend),
                        idle_credits=len(st.cfg.dispatcher), draining=st.draining, shutting_down=st.shutting_down,
                        no_worker=st.no_worker,
                        running={slot: sorted(jobs) for slot, jobs in enumerate(st.reserved) if jobs})
            st.caller_out.put(StatusReply(m.req_id, info))


def _running_on(st: _State, job_id: str) -> int | None:
    """The worker slot the job was dispatched to (and is charged to), if any."""
    for slot, jobs in enumerate(st.reserved):
        if job_id in jobs:
            return slot
    return None


def _from_worker(st: _State, slot: int, msgs: list[Any]) -> None:
    backend, dispatcher = st.cfg.backend, st.cfg.dispatcher
    reserved = st.reserved[slot]
    for m in msgs:
        t = type(m)
        if t is Done:
            st.cancelled.discard(m.job_id)
            job = reserved.pop(m.job_id, None)
            if job is not None:
                backend.ack(m.job_id)
                if job.payload[:1] == _MARK:
                    _spool.discard(job.payload)
                if m.more:
                    dispatcher.check_in(slot)
                _settle(st)
        elif t is Credit:
            if m.gen != st.cfg.gen:
                continue
            st.served, st.no_worker = True, False
            if m.pid != st.pids[slot]:
                if st.pids[slot] and reserved:
                    # no WorkerDied arrived for the previous incarnation: treat it as dead now
                    _worker_died(st, slot, WorkerDied(st.pids[slot], None, None, "", ""))
                st.pids[slot] = m.pid
            dispatcher.check_in(slot, m.count)
        elif t is Failed:
            job = reserved.pop(m.job_id, None)
            if job is not None:
                if m.more:
                    dispatcher.check_in(slot)
                _failed(st, job, Failure._make(m.failure))
        elif t is Release:
            job = reserved.pop(m.job_id, None)
            if job is not None:
                job.deliveries -= 1
                backend.nack(m.job_id, front=True)
        elif t is WorkerDied:
            # always the slot's latest worker, or one that never sent a credit: a WorkerDied is
            # written before the slot's next worker starts, so it precedes all that worker says.
            # (Even an uncredited worker may have read the Hello meant for its successor: resend it.)
            _worker_died(st, slot, m)
        elif t is WorkerInitFailed:
            st.init_failures[slot] = m.failures
            st.served = st.served or m.served
            st.last_init = (slot, Failure._make(m.failure))
            st.no_worker = (not st.served and len(st.init_failures) == len(st.cfg.workers)
                            and min(st.init_failures.values()) >= INIT_FAILURES_TO_GIVE_UP)


def _worker_died(st: _State, slot: int, m: WorkerDied) -> None:
    st.cfg.dispatcher.remove(slot)
    st.pids[slot] = 0
    st.worker_out[slot].put(Hello(st.cfg.gen))  # the slot's next worker reads this first
    jobs = list(st.reserved[slot].values())
    st.reserved[slot].clear()
    known = bool(m.job_id) or m.reason in ("idle", "left")  # does the monitor say which job ran?
    for job in jobs:
        if job.id in st.cancelled:
            st.cancelled.discard(job.id)
            st.cfg.backend.ack(job.id)
            _forget(job)
            _settle(st)
        elif known and job.id != m.job_id and (m.reason == "left" or job.bounces < MAX_BOUNCES):
            # it never started (still in the worker's socket, or prefetched): back to the head,
            # not counted; a job that keeps killing workers before it starts is counted after a few
            if m.reason != "left":
                job.bounces += 1
            job.deliveries -= 1
            st.cfg.backend.nack(job.id, front=True)
        elif m.reason == "timeout" and job.id == m.job_id:
            _failed(st, job, Failure.timeout(job.id, job.timeout, m.pid, m.signal_name))
        else:
            _failed(st, job, Failure.crash(m.exitcode, m.pid or None, f"running job {job.id}"))


#: Once every worker slot's init has failed this many times in a row and no worker has served,
#: queued jobs fail with WorkerInitError instead of waiting blind (the pool keeps retrying init).
INIT_FAILURES_TO_GIVE_UP = 3


def _drop_for_no_worker(st: _State) -> None:
    """No worker could start: fail every queued job (a waiting caller gets ``WorkerInitError``, with
    the last init failure as its cause), log the casts as dropped, and tell the caller how many."""
    assert st.last_init is not None
    slot, init = st.last_init
    jobs = st.cfg.backend.take_pending()
    casts = 0
    for job in jobs:
        casts += not job.origin
        message = (f"job {job.id} was not run: no worker could start (the init of every worker failed at least "
                   f"{INIT_FAILURES_TO_GIVE_UP} times; worker {slot}'s last: {init.describe()}); "
                   f"the pool goes on retrying init")
        _give_up(st, job, init._replace(kind="no_worker", type_name="honeydew.errors.WorkerInitError",
                                        message=message, mro=NO_WORKER_MRO, partial=False))
    st.log.warning("%d queued job(s) dropped (%d of them casts): no worker could start; worker %d's last init "
                   "failure: %s", len(jobs), casts, slot, init.describe())
    st.caller_out.put(WorkersDown(len(jobs), tuple(init)))


#: A job handed back unstarted this many times (its workers died before starting it) counts as
#: delivered from then on, so even a payload that kills workers while being received is bounded.
MAX_BOUNCES = 3


def _failed(st: _State, job: Job, failure: Failure) -> None:
    """Hand a reserved job that failed to the failure mode and carry out its decision."""
    try:
        decision = st.cfg.failure_mode.decide(failure, job.deliveries, job.failures)
    except Exception as e:
        st.log.error("failure mode %r raised %r for job %s; abandoning it", st.cfg.failure_mode, e, job.id)
        decision = GiveUp(failure)
    if isinstance(decision, Redeliver):
        if decision.retry:
            job.failures += 1
        st.log.info("job %s failed (%s); redelivering in %.3gs", job.id, failure.describe(), decision.delay)
        st.cfg.backend.nack(job.id, time.time() + decision.delay if decision.delay > 0 else 0.0)
    else:
        st.cfg.backend.ack(job.id)
        _give_up(st, job, decision.failure)


def _forget(job: Job) -> None:
    """The job is over for good: remove its spooled payload, if it has one."""
    if job.payload[:1] == _MARK:
        _spool.discard(job.payload)


def _give_up(st: _State, job: Job, failure: Failure) -> None:
    _forget(job)
    if failure.kind not in ("raised", "no_worker"):  # (no_worker: logged once for the whole batch)
        st.log.warning("job %s given up: %s", job.id, failure.describe())
    if job.origin:
        st.caller_out.put(JobFailed(job.id, tuple(failure)))
    _settle(st)


def _settle(st: _State) -> None:
    if st.cfg.count_settled:
        st.settled += 1


def _dispatch(st: _State) -> None:
    backend, dispatcher = st.cfg.backend, st.cfg.dispatcher
    if st.no_worker and len(backend):
        _drop_for_no_worker(st)
    if len(dispatcher) and len(backend) and not st.shutting_down:
        now = time.time()
        while len(dispatcher):
            job = backend.reserve(now)
            if job is None:
                break
            slot = dispatcher.check_out()
            assert slot is not None
            job.deliveries += 1
            st.reserved[slot][job.id] = job
            st.worker_out[slot].put_wire((_DISPATCH, job.id, job.payload, job.origin, job.deliveries, job.timeout))
    if st.settled:
        st.caller_out.put(Settled(st.settled))
        st.settled = 0
