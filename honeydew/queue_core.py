"""The queue's decisions, with no I/O: what to do with each message a queue process reads.

:class:`QueueCore` is the whole state of one queue process: the backend's jobs, which worker slot
each dispatched job is charged to, the workers' credits (the dispatcher), and the pool's failure
mode.  It reads messages (:meth:`~QueueCore.from_caller`, :meth:`~QueueCore.from_worker`) and
writes its answers into sinks (an :class:`~honeydew._wire.Outbox` in the queue process, a list in
the tests); the I/O shell around it (:mod:`honeydew.queue_process`) polls the sockets, flushes the
sinks and handles signals.  Nothing here touches a socket, so every rule below is unit-tested
without a process (``tests/unit/test_queue_core.py``).

Dispatch: while the backend has a ready job and the dispatcher has a worker with credit, the job
is reserved (the backend counts the delivery), charged to that worker slot, and sent.  The charge
is recorded before the worker even sees the job, which is how a crash anywhere is attributed to
the right job.

Failures: a job that failed (``Failed``, or its worker died holding it) goes to the failure mode,
whose :class:`~honeydew.failure_modes.Decision` is applied; the decision calls back
:meth:`QueueCore.redeliver` or :meth:`QueueCore.give_up`.  A failure mode that raises, or answers
with something that is not a decision, fails the job with ``FailureModeError``.  The failure mode
is the job's own (``pool.options(failure_mode=...)``, unpickled from its ``mode`` key when it
fails, and kept for the next failures), else its task's (``@honeydew.task(failure_mode=...)``),
else the pool's; a job's own that will not unpickle here gets the pool's, and an error is logged.

A generation number tells incarnations apart: a restarted queue process (``gen`` > 0) ignores the
caller until the caller says ``Resync(gen)`` (it has dealt with whatever it sent before), and
ignores ``Credit`` granted to an earlier generation.

Jobs of callers in other pools (a backend shared by several pools): their outcome reaches the
queue as ``Answer`` (a result) or as the failure mode's give-up, and goes to the backend with the
ack (:class:`~honeydew.queues.base.Reply`); replies the backend brings for this pool's own callers
(:meth:`QueueCore.collect_replies`) go to the caller as ``Result``/``JobFailed``.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from . import _process, _spool
from .dispatchers import Dispatcher
from .errors import NO_WORKER_MRO, Failure
from .failure_modes import Decision, FailureMode, read_own_mode
from .protocol import (
    Answer,
    Cancel,
    Control,
    ControlReply,
    Credit,
    Done,
    Drain,
    Enqueue,
    Failed,
    Hello,
    HookFailed,
    JobFailed,
    JobState,
    KillWorker,
    Partial,
    Release,
    Result,
    Resync,
    Settled,
    StatusReply,
    StatusRequest,
    StopWorker,
    Stored,
    WhereIs,
    WorkerDied,
    WorkerInitFailed,
    WorkersDown,
    dispatch_wire,
    failure_record,
    read_failure,
)
from .queues.base import FAILED_STORE, OWN_MODE, Job, Queue, Reply

_MARK = _spool.MARK

#: Once every worker slot's init has failed this many times in a row and no worker has served,
#: queued jobs fail with WorkerInitError instead of waiting blind (the pool keeps retrying init).
INIT_FAILURES_TO_GIVE_UP = 3

#: A job handed back unstarted this many times (its workers died before starting it) counts as
#: delivered from then on, so even a payload that kills workers while being received is bounded.
MAX_BOUNCES = 3

#: How many jobs' own failure modes (``pool.options(failure_mode=...)``) a queue keeps unpickled,
#: by key; past it the table starts again (a storm of failures unpickles each key once).
OWN_MODES_KEPT = 256


class Sink(Protocol):
    """Where the core writes messages for one peer (an ``Outbox``; a list-like recorder in tests)."""

    def put(self, msg: Any) -> None: ...

    def put_wire(self, wire: tuple[Any, ...]) -> None: ...


class QueueCore:
    """One queue process's state and rules.  ``caller``, ``workers[j]`` and ``monitors[j]`` are the
    sinks for the caller, worker slot ``j`` and its monitor; ``token`` is the pool's own origin."""

    def __init__(self, *, index: int, gen: int, token: str, backend: Queue, dispatcher: Dispatcher,
                 failure_mode: FailureMode, caller: Sink, workers: list[Sink], monitors: list[Sink],
                 count_settled: bool, has_workers: bool, suspended: bool = False,
                 task_modes: dict[str, FailureMode] | None = None, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.index, self.gen, self.token = index, gen, token
        self.backend = backend
        self.dispatcher = dispatcher
        self.failure_mode = failure_mode
        self.task_modes = task_modes or {}     # the failure modes tasks have of their own, by task name
        #: jobs' own failure modes, unpickled, by key; or why the key would not unpickle here
        self.own_modes: dict[str, FailureMode | str] = {}
        self.caller, self.workers, self.monitors = caller, workers, monitors
        self.count_settled = count_settled
        self.has_workers = has_workers
        self.log = log or logging.getLogger(f"honeydew.queue.{index}")
        self.clock = clock
        self.reserved: list[dict[str, Job]] = [{} for _ in workers]   # per slot: the jobs charged to it
        self.pids = [0] * len(workers)          # current worker pid per slot
        self.cancelled: set[str] = set()        # running jobs being stopped because they were cancelled
        self.answers: dict[str, tuple[bytes, bool]] = {}   # Answer of a job of another pool: (value, partial)
        self.awaiting: set[str] = set()         # durable: this pool's stored jobs whose caller waits for them
        self.accepting = gen == 0               # a restarted queue waits for the caller's Resync
        self.draining = False                   # Drain: finish every job, then stop
        self.suspended = suspended              # pool.suspend(): nothing is dispatched
        self.shutting_down = False              # SIGTERM: finish running jobs, start nothing new, then stop
        self.settled = 0                        # jobs settled since the last Settled
        self.init_failures: dict[int, int] = {}  # slot -> init failures in a row
        self.served = False                     # some worker has come up
        self.last_init: tuple[int, Failure] | None = None   # (slot, its last init failure)
        self.no_worker = False                  # every slot failed init often enough and none served
        self._acks: list[str] = []              # finished jobs, acked in one backend call per step
        self._replies: list[Reply] = []         # their replies to callers in other pools
        self._applied = False                   # the decision being applied has moved its job
        self._failure: Failure | None = None    # the failure whose decision is being applied
        self._wants_hold = type(backend).hold is not Queue.hold
        self._held = -1                         # what the backend was last told it may hold
        self._durable = backend.durable
        #: for status(): jobs done, given up, redelivered, and failures by kind, since the queue started
        self.counts = {"done": 0, "failed": 0, "retried": 0, "crashed": 0, "timed_out": 0, "hook_errors": 0}
        self._rate_samples: collections.deque[tuple[float, int]] = collections.deque()  # (time, done), 1/s

    # ---------------------------------------------------------------- the shell's entry points

    def start(self) -> None:
        """The queue process has started: every worker slot is greeted with this generation."""
        for out in self.workers:
            out.put(Hello(self.gen))

    def step(self) -> None:
        """Commit what the last messages decided (acks, replies), then dispatch what can go, and
        tell the caller how many of its jobs settled.  Called before every wait."""
        if self._acks or self._replies:
            self._sample_rate()
            self._commit()
        if self._wants_hold:
            self._tell_hold()
        if self.no_worker and len(self.backend):
            self._drop_for_no_worker()
        dispatcher = self.dispatcher
        if len(dispatcher) and not self.shutting_down and not self.suspended:
            backend, reserved, workers = self.backend, self.reserved, self.workers
            now = self.clock()
            while len(dispatcher):
                job = backend.reserve(now)
                if job is None:
                    break
                slot = dispatcher.check_out()
                assert slot is not None
                reserved[slot][job.id] = job
                workers[slot].put_wire(dispatch_wire(job.id, job.payload, job.origin, job.deliveries, job.timeout))
        if self.settled:
            self.caller.put(Settled(self.settled))
            self.settled = 0

    def wait_for(self) -> float | None:
        """Seconds until a delayed job is ready for a worker waiting with credit; ``None``: none."""
        if len(self.dispatcher) and not self.shutting_down and not self.suspended:
            return self.backend.next_ready_in(self.clock())
        return None

    def finished(self) -> bool:
        """Has the queue nothing left to do (drained after ``Drain``, or shut down after SIGTERM)?
        Then the shell calls :meth:`stop_workers` and exits."""
        if self.draining and self._drained():
            return True
        return self.shutting_down and self._shut_down()

    def stop_workers(self) -> None:
        for out in self.workers:
            out.put(StopWorker())

    def terminate_requested(self) -> None:
        """SIGTERM: finish the running jobs, start no new one."""
        if not self.shutting_down:
            self.log.warning("SIGTERM: finishing the running jobs; starting no new one")
            self.shutting_down = True

    def collect_replies(self) -> None:
        """Pass on what the backend brought for this pool's callers (jobs that ran in other pools).
        A restarted queue passes on nothing before the caller's ``Resync``."""
        if not self.accepting:
            return
        for r in self.backend.take_replies():
            if r.ok:
                self.caller.put(Result(r.job_id, r.value))
            else:
                if r.partial:
                    self.caller.put(Partial(r.job_id, r.partial))  # read before the JobFailed it belongs to
                self.caller.put(JobFailed(r.job_id, r.value))
            self.awaiting.discard(r.job_id)
            self._settle()

    # ---------------------------------------------------------------- from the caller

    def from_caller(self, msgs: list[Any]) -> None:
        backend = self.backend
        batch: list[Job] = []
        for m in msgs:
            t = type(m)
            if not self.accepting:
                if t is Resync and m.gen == self.gen:
                    self.accepting = True
                    self.awaiting.update(m.awaiting)
                continue
            if t is Enqueue:
                if m.ready_at:  # a delayed job: enqueued on its own, in its turn (Stored counts in order)
                    if batch:
                        self._enqueue(batch)
                        batch = []
                    self._enqueue([Job(m.job_id, m.payload, m.origin, m.timeout, priority=m.priority, mode=m.mode)],
                                  m.ready_at)
                else:
                    batch.append(Job(m.job_id, m.payload, m.origin, m.timeout, priority=m.priority, mode=m.mode))
                continue
            if batch:
                self._enqueue(batch)
                batch = []
            if t is Cancel:
                self._cancel(m)
            elif t is WhereIs:
                if self._running_on(m.job_id) is not None:
                    state = "running"
                else:
                    state = "queued" if backend.is_pending(m.job_id) else "gone"
                self.caller.put(JobState(m.req_id, m.job_id, state))
            elif t is Drain:
                self.draining = True
                if self.suspended and not self._durable and len(backend):
                    # the in-memory jobs would be lost, or the close would wait for ever
                    self.log.warning("the pool is closing while suspended: resuming dispatch to finish the %d "
                                     "queued job(s)", len(backend))
                    self.suspended = False

            elif t is StatusRequest:
                self.caller.put(StatusReply(m.req_id, self.status()))
            elif t is Control:
                self.caller.put(self._control(m))
        if batch:
            self._enqueue(batch)

    def _control(self, m: Control) -> ControlReply:
        """An operator's request (see ``Control``): its answer."""
        backend = self.backend
        try:
            if m.op == "suspend" or m.op == "resume":
                was, self.suspended = self.suspended, m.op == "suspend"
                if was != self.suspended:
                    self.log.info("dispatch %s", "suspended" if self.suspended else "resumed")
                return ControlReply(m.req_id, True, True)
            if m.op == "failed":
                return ControlReply(m.req_id, True, [tuple(f) for f in backend.failed(m.arg)])
            if m.op == "retry_failed":
                return ControlReply(m.req_id, True, backend.retry_failed(m.arg))
            if m.op == "purge_failed":
                return ControlReply(m.req_id, True, backend.purge_failed(m.arg))
        except NotImplementedError as e:
            return ControlReply(m.req_id, False, str(e))
        except Exception as e:
            self.log.exception("%s failed", m.op)
            return ControlReply(m.req_id, False, f"{m.op} failed in the queue's backend {backend!r}: "
                                                 f"{type(e).__name__}: {e}")
        return ControlReply(m.req_id, False, f"unknown request {m.op!r}")

    def _enqueue(self, jobs: list[Job], ready_at: float = 0.0) -> None:
        try:
            self.backend.enqueue(jobs, ready_at)
        except Exception as e:
            why = f"the queue {self.backend!r} could not store the job: {type(e).__name__}: {e}"
            self.log.error("%d job(s) refused: %s", len(jobs), why)
            if self._durable:
                self.caller.put(Stored(self.gen, len(jobs), why))
            else:
                for job in jobs:
                    self._report(job, Failure.lost(f"job {job.id} was not queued: {why}"))
            return
        if self._durable:
            self.caller.put(Stored(self.gen, len(jobs), ""))
            token = self.token
            self.awaiting.update(job.id for job in jobs if job.origin == token)

    def _cancel(self, m: Cancel) -> None:
        backend = self.backend
        if len(self.dispatcher) and not self.shutting_down:
            self.step()  # idle workers take what they would have taken had we been quicker
        job = backend.cancel(m.job_id)
        if job is not None:
            self.awaiting.discard(job.id)
            _forget(job)
            self._settle()
            state = "cancelled"
        else:
            slot = self._running_on(m.job_id)
            state = "gone" if slot is None else "running"
            if slot is not None and m.terminate and self.pids[slot]:
                self.cancelled.add(m.job_id)
                self.monitors[slot].put(KillWorker(self.pids[slot], m.job_id, WorkerDied.CANCELLED))
        if m.req_id:
            self.caller.put(JobState(m.req_id, m.job_id, state))

    def _sample_rate(self) -> None:
        """Keep (time, jobs done) about once a second for the last minute: the rates in status()."""
        samples, now = self._rate_samples, time.monotonic()
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, self.counts["done"]))
            while now - samples[0][0] > 61.0:
                samples.popleft()

    def _rate(self, window: float) -> float:
        """Jobs done per second over about the last ``window`` seconds."""
        now, done = time.monotonic(), self.counts["done"]
        for t, count in self._rate_samples:
            if now - t <= window:
                return (done - count) / max(now - t, 1.0)
        return 0.0

    def status(self) -> dict[str, Any]:
        info = dict(self.backend.status())
        info.update(self.counts)
        info.update(jobs_per_s_10s=round(self._rate(10.0), 1), jobs_per_s_60s=round(self._rate(60.0), 1))
        info.update(index=self.index, pid=os.getpid(), generation=self.gen, backend=repr(self.backend),
                    idle_credits=len(self.dispatcher), draining=self.draining, shutting_down=self.shutting_down,
                    suspended=self.suspended,
                    no_worker=self.no_worker,
                    running={slot: sorted(jobs) for slot, jobs in enumerate(self.reserved) if jobs})
        return info

    def _running_on(self, job_id: str) -> int | None:
        """The worker slot the job was dispatched to (and is charged to), if any."""
        for slot, jobs in enumerate(self.reserved):
            if job_id in jobs:
                return slot
        return None

    # ---------------------------------------------------------------- from a worker slot

    def from_worker(self, slot: int, msgs: list[Any]) -> None:
        dispatcher = self.dispatcher
        reserved = self.reserved[slot]
        for m in msgs:
            t = type(m)
            if t is Done:
                self.cancelled.discard(m.job_id)
                job = reserved.pop(m.job_id, None)
                if job is not None:
                    self._acks.append(job.id)
                    self.counts["done"] += 1
                    if self._durable:
                        self.awaiting.discard(job.id)
                    if self.answers and job.origin:
                        answer = self.answers.pop(job.id, None)
                        if answer is not None and job.origin != self.token:
                            self._replies.append(Reply(job.origin, job.id, True, answer[0]))
                    _forget(job)
                    if m.more:
                        dispatcher.check_in(slot)
                    self._settle()
            elif t is Credit:
                if m.gen != self.gen:
                    continue
                self.served, self.no_worker = True, False
                if m.pid != self.pids[slot]:
                    if self.pids[slot] and reserved:
                        # no WorkerDied arrived for the previous incarnation: treat it as dead now
                        self._worker_died(slot, WorkerDied(self.pids[slot], None, None, WorkerDied.CRASHED, ""))
                    self.pids[slot] = m.pid
                dispatcher.check_in(slot, m.count)
            elif t is HookFailed:
                self.counts["hook_errors"] += m.count
            elif t is Answer:
                if m.job_id in reserved:
                    self.answers[m.job_id] = (m.value, m.partial)
            elif t is Failed:
                job = reserved.pop(m.job_id, None)
                if job is not None:
                    if m.more:
                        dispatcher.check_in(slot)
                    self._failed(job, read_failure(m.failure))
            elif t is Release:
                job = reserved.pop(m.job_id, None)
                if job is not None:
                    job.deliveries -= 1  # it never started
                    self.backend.nack(job, front=True)
            elif t is WorkerDied:
                # always the slot's latest worker, or one that never sent a credit: a WorkerDied is
                # written before the slot's next worker starts, so it precedes all that worker says.
                self._worker_died(slot, m)
            elif t is WorkerInitFailed:
                self.init_failures[slot] = m.failures
                self.served = self.served or m.served
                self.last_init = (slot, read_failure(m.failure))
                self.no_worker = (not self.served and len(self.init_failures) == len(self.workers)
                                  and min(self.init_failures.values()) >= INIT_FAILURES_TO_GIVE_UP)

    def _worker_died(self, slot: int, m: WorkerDied) -> None:
        self.dispatcher.remove(slot)
        self.pids[slot] = 0
        # the slot's next worker reads this first (even an uncredited worker may have read the
        # Hello meant for its successor: so it is sent again)
        self.workers[slot].put(Hello(self.gen))
        jobs = list(self.reserved[slot].values())
        self.reserved[slot].clear()
        # does the monitor say which job ran?  Then the others never started
        known = bool(m.job_id) or m.reason in (WorkerDied.IDLE, WorkerDied.LEFT)
        for job in jobs:
            if job.id in self.cancelled:
                self.cancelled.discard(job.id)
                self.answers.pop(job.id, None)
                self._acks.append(job.id)
                _forget(job)
                self._settle()
            elif known and job.id != m.job_id and (m.reason == WorkerDied.LEFT or job.bounces < MAX_BOUNCES):
                # it never started (still in the worker's socket, or prefetched): back to the head,
                # not counted; a job that keeps killing workers before it starts is counted after a few
                if m.reason != WorkerDied.LEFT:
                    job.bounces += 1
                job.deliveries -= 1
                self.backend.nack(job, front=True)
            elif m.reason == WorkerDied.TIMEOUT and job.id == m.job_id:
                self._failed(job, Failure.timeout(job.id, job.timeout, m.pid, m.signal_name))
            else:
                self._failed(job, Failure.crash(m.exitcode, m.pid or None, f"running job {job.id}"))

    # ---------------------------------------------------------------- failures

    def _failed(self, job: Job, failure: Failure) -> None:
        """Hand a reserved job that failed to the failure mode and apply its decision."""
        if failure.kind == Failure.CRASHED:
            self.counts["crashed"] += 1
        elif failure.kind == Failure.TIMEOUT:
            self.counts["timed_out"] += 1
        key = job.mode
        if not key:
            mode = self.failure_mode
        elif key.startswith(OWN_MODE):
            mode = self._own_mode(job)
        else:
            mode = self.task_modes.get(key, self.failure_mode)
        try:
            decision = mode.decide(failure, job.deliveries, job.failures)
        except Exception as e:
            self.log.error("failure mode %r raised deciding about job %s", mode, job.id, exc_info=True)
            self.give_up(job, Failure.of_failure_mode(job.id, failure, mode, e))
            return
        if not isinstance(decision, Decision):
            self.log.error("failure mode %r answered %r for job %s, which is not a decision", mode, decision, job.id)
            self.give_up(job, Failure.of_failure_mode(
                job.id, failure, mode, f"answered {decision!r}, which is not a decision "
                                       f"(honeydew.failure_modes.GiveUp, Redeliver, ...)"))
            return
        self._applied, self._failure = False, failure
        try:
            decision.apply(job, failure, self)
        except Exception as e:
            self.log.error("decision %r of failure mode %r raised for job %s", decision, mode, job.id, exc_info=True)
            if not self._applied:
                self.give_up(job, Failure.of_failure_mode(job.id, failure, mode, e))
        finally:
            self._failure = None

    def _own_mode(self, job: Job) -> FailureMode:
        """The failure mode ``job`` carries (``pool.options(failure_mode=...)``), unpickled once per
        key.  One that will not unpickle here (its class cannot be imported in this process, say)
        leaves the job to the pool's failure mode, which handles it like any other, with an error
        logged naming the job and why: the job is neither lost nor left to loop."""
        key = job.mode
        found = self.own_modes.get(key)
        if found is None:
            if len(self.own_modes) >= OWN_MODES_KEPT:
                self.own_modes.clear()
            _process.decoding = f"queue process {self.index} decoded the failure mode of job {job.id}"
            try:
                found = read_own_mode(key)
            except Exception as e:
                found = f"{type(e).__name__}: {e}"
            finally:
                _process.decoding = ""
            self.own_modes[key] = found
        if isinstance(found, str):
            self.log.error("job %s failed and its own failure mode (pool.options(failure_mode=...)) could not be "
                           "read in this queue process (%s): the pool's failure mode %r handles it instead",
                           job.id, found, self.failure_mode)
            return self.failure_mode
        return found

    # the DecisionContext a decision is applied with (failure_modes.DecisionContext)

    def redeliver(self, job: Job, delay: float, retry: bool) -> None:
        self._applied = True
        self.counts["retried"] += 1
        if retry:
            job.failures += 1
        self.answers.pop(job.id, None)
        why = f" ({self._failure.describe()})" if self._failure is not None else ""
        self.log.info("job %s failed%s; redelivering in %.3gs", job.id, why, delay)
        self.backend.nack(job, self.clock() + delay if delay > 0 else 0.0)

    def give_up(self, job: Job, failure: Failure, keep: bool = False) -> None:
        self._applied = True
        self.counts["failed"] += 1
        if keep and FAILED_STORE in self.backend.lacks:
            self.log.warning("job %s is given up without being kept: %r has no failed store", job.id, self.backend)
            keep = False
        answer = self.answers.pop(job.id, None)
        reply = None
        if job.origin and job.origin != self.token:
            partial = answer[0] if answer is not None and answer[1] else b""  # a map chunk's item outcomes
            reply = Reply(job.origin, job.id, False, failure_record(failure), partial)
        if keep:
            self.backend.give_up(job, failure_record(failure), reply, keep=True)
        else:
            self.backend.give_up(job, failure_record(failure), reply)
        self._report(job, failure, forget=not keep)

    def _report(self, job: Job, failure: Failure, forget: bool = True) -> None:
        """The job is over with ``failure`` (the backend no longer has it, unless in its failed
        store: then its spooled payload stays, for a retry): tell its caller."""
        if forget:
            _forget(job)
        self.awaiting.discard(job.id)
        if failure.kind not in (Failure.RAISED, Failure.NO_WORKER):  # (no_worker: logged once for the batch)
            self.log.warning("job %s given up: %s", job.id, failure.describe())
        if job.origin == self.token:
            self.caller.put(JobFailed(job.id, failure_record(failure)))
        self._settle()

    def _drop_for_no_worker(self) -> None:
        """No worker could start: fail every queued job (a waiting caller gets ``WorkerInitError``,
        with the last init failure as its cause), log the casts as dropped, and tell the caller how
        many.  A durable backend keeps its jobs: they run once a worker comes up."""
        if self._durable:
            return
        assert self.last_init is not None
        slot, init = self.last_init
        jobs = self.backend.take_pending()
        casts = 0
        for job in jobs:
            casts += not job.origin
            message = (f"job {job.id} was not run: no worker could start (the init of every worker failed at least "
                       f"{INIT_FAILURES_TO_GIVE_UP} times; worker {slot}'s last: {init.describe()}); "
                       f"the pool goes on retrying init")
            self._report(job, init._replace(kind=Failure.NO_WORKER, type_name="honeydew.errors.WorkerInitError",
                                            message=message, mro=NO_WORKER_MRO, partial=False))
        self.log.warning("%d queued job(s) dropped (%d of them casts): no worker could start; worker %d's last "
                         "init failure: %s", len(jobs), casts, slot, init.describe())
        self.caller.put(WorkersDown(len(jobs), failure_record(init)))

    # ---------------------------------------------------------------- ending

    def _drained(self) -> bool:
        if not self.has_workers and not self._durable:
            for job in self.backend.take_pending():
                self._report(job, Failure.lost("the pool closed with no workers to run this job"))
            return True
        if self.awaiting:
            return False  # (durable: a job of this pool's, stored, whose caller waits; another pool may run it)
        if not self.has_workers or self.suspended or self.backend.paused():
            # (durable: what this pool sent is stored; other pools, or this one later, run it)
            return not any(self.reserved)
        return len(self.backend) == 0 and not any(self.reserved)

    def _shut_down(self) -> bool:
        """Warm shutdown: done once no job runs.  An in-memory queue's waiting jobs are reported lost;
        a durable queue keeps them for the next pool."""
        if any(self.reserved):
            return False
        if not self._durable:
            for job in self.backend.take_pending():
                self._report(job, Failure.lost(f"job {job.id} was never started: the pool was shut down by SIGTERM"))
        return True

    # ---------------------------------------------------------------- bookkeeping

    def _commit(self) -> None:
        acks, replies = self._acks, self._replies
        self._acks, self._replies = [], []
        self.backend.ack(acks, replies)

    def _tell_hold(self) -> None:
        held = len(self.dispatcher) + sum(len(jobs) for jobs in self.reserved)
        if held != self._held:
            self._held = held
            self.backend.hold(held)

    def _settle(self) -> None:
        if self.count_settled:
            self.settled += 1


def _forget(job: Job) -> None:
    """The job is over for good: remove its spooled payload, if it has one."""
    if job.payload[:1] == _MARK:
        _spool.discard(job.payload)
