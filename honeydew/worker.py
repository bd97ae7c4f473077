"""The worker process: runs ``init`` once, then jobs, one at a time, as credit allows.

Forked by its monitor (:mod:`honeydew.monitor`).  It reads ``Hello``/``Dispatch``/``StopWorker``
from one socket per queue process, writes ``Credit``/``Done``/``Failed``/``Release`` back on the
same socket, writes ``Result`` straight to the caller's reply socket (or, for a caller in another
pool, ``Answer`` to the queue), and tells its monitor
``InitOk``/``InitFailed``/``Leaving``.  A job is charged to this worker by the queue *before* it is
sent, so if this process dies anywhere (even unpickling the arguments) the queue knows which job
to hand to the failure mode.

Credit: after ``init`` the worker grants each queue ``prefetch`` jobs.  Every ``Done``/``Failed``
hands one credit back.  With several queues a worker may be offered more jobs than it can hold;
the extra ones go straight back (``Release``), unstarted and uncounted, and that queue is offered
credit again when the worker is idle.
"""

from __future__ import annotations

import _signal
import logging
import os
import select
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

from . import _process, context
from ._jobslot import JobSlot
from ._payload import callable_of, decode, encode_result
from ._process import EXIT_INIT_FAILED, EXIT_OK, become, log_exception_and_exit
from ._wire import Endpoint
from .errors import Failure, qualname
from .protocol import (
    Answer,
    CallJob,
    Credit,
    Dispatch,
    Failed,
    Hello,
    HookFailed,
    InitFailed,
    InitOk,
    JobEnded,
    JobStarted,
    Leaving,
    Progress,
    Release,
    StopWorker,
    done_wire,
    failure_record,
    partial_wire,
    read_failure,
    read_payload,
    result_wire,
)
from .tasks import WorkerSpec


@dataclass
class WorkerConfig:
    slot: int
    spec: WorkerSpec
    queues: list[Endpoint]   # one per queue process, index = queue number
    reply: Endpoint          # to the caller
    monitor: Endpoint        # to this worker's monitor
    slot_memory: JobSlot     # the running job's id, read by the monitor
    token: str               # the pool's own jobs carry this origin
    prefetch: int
    max_jobs: int | None = None      # recycle after this many jobs
    max_memory: int | None = None    # recycle when RSS exceeds this many bytes after a job
    log: logging.Logger | None = None  # made by the monitor before the fork
    spool: str | None = None         # the pool's spool directory: big results go there (_spool)
    dump_fd: int = -1                # SIGUSR1's stack dumps go to this pipe, which the monitor forwards


_SIGTERM = int(signal.SIGTERM)  # for _signal.signal, which skips signal.signal's enum wrapping (see _process)


class _WarmStop(BaseException):
    """SIGTERM while idle: leave now (SIGTERM during a job: leave after it)."""


class _JobStop(BaseException):
    """SIGTERM from the monitor to stop the running job (its time limit passed, or it was
    cancelled): raised in the task, so that it ends within moments and its ``finally`` blocks run;
    then the worker dies by SIGTERM (its monitor starts the next one)."""


# A SIGTERM interrupts only ``init`` and the idle wait for a job (by raising ``_WarmStop`` there);
# anywhere else it is a request the job loop reads when it is next idle.  It raises at most once,
# so a second SIGTERM can never fire in the middle of the first one's clean-up.
_busy = False
_term_requested = False
_slot: JobSlot | None = None


def _on_sigterm(signum: int, frame: Any) -> None:
    global _term_requested, _busy
    if _slot is not None and _slot.stop_requested():
        raise _JobStop
    _term_requested = True
    if not _busy:
        _busy = True
        raise _WarmStop


def _rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def private_memory() -> int:
    """Bytes only this process holds (USS: what exiting would free).  A forked worker's RSS also
    counts the pages it still shares with its parents, which would make a cap depend on the caller."""
    total = 0
    with open("/proc/self/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def _over_memory_cap(cap: int) -> int:
    """The worker's private memory if it is above ``cap``, else 0.  RSS (cheap) bounds it from
    above, so the costlier USS is read only when RSS is already over the cap."""
    if _rss() <= cap:
        return 0
    uss = private_memory()
    return uss if uss > cap else 0


def _flush_logging() -> None:
    """Before a worker whose init failed exits: flush what ``init`` set up to log through (a
    ``QueueHandler`` on a ``multiprocessing`` queue, the usual way to log from processes, sends
    from a thread that a bare exit would cut short).  Bounded: never holds the exit up for long."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for handler in lg.handlers:
            try:
                handler.flush()
                queue = getattr(handler, "queue", None)
                if queue is not None and hasattr(queue, "join_thread"):
                    queue.close()
                    feeder = getattr(queue, "_thread", None)
                    if feeder is not None:
                        feeder.join(1.0)
            except Exception:
                pass


def _run_chunk(fn: Any, items: list[Any], star: bool, spec: WorkerSpec, state: Any) -> tuple[list[Any], dict[int, Any]]:
    """A map chunk: every item's result, and for the items that raised, their failure records."""
    values: list[Any] = []
    errors: dict[int, Any] = {}
    call, state_first = spec.function(fn)
    append = values.append
    if not spec.passes_state:
        for i, item in enumerate(items):
            try:
                append(call(*item) if star else call(item))
            except _JobStop:
                raise
            except BaseException as e:
                append(None)
                errors[i] = failure_record(Failure.from_exception(e))
    else:
        for i, item in enumerate(items):
            try:
                a = item if star else (item,)
                append(call(state, *a) if state_first else call(*a, state))
            except _JobStop:
                raise
            except BaseException as e:
                append(None)
                errors[i] = failure_record(Failure.from_exception(e))
    return values, errors


def run(cfg: WorkerConfig, monitor_pid: int) -> NoReturn:
    """The worker's whole life; never returns (nothing raised here reaches the monitor's code it
    was forked from)."""
    name = f"hd-worker-{cfg.slot}"
    become(name, parent=monitor_pid, dump_fd=cfg.dump_fd)
    os.setpgid(0, 0)  # its own process group: a timeout stops the task's children with it
    log = cfg.log or logging.getLogger(f"honeydew.worker.{cfg.slot}")
    pid = os.getpid()
    global _busy, _slot
    _slot = cfg.slot_memory
    try:
        _signal.signal(_SIGTERM, _on_sigterm)  # (until here SIGTERM simply ends the process)
        state = cfg.spec.build_state()
        _busy = True  # until the job loop waits idle: a SIGTERM now only asks the worker to leave
    except BaseException as e:
        if isinstance(e, _WarmStop):
            e = RuntimeError(f"init of worker {cfg.slot} (pid {pid}) was interrupted by SIGTERM")
        failure = Failure.from_exception(e, kind=Failure.INIT)
        try:
            cfg.monitor.send(InitFailed(failure_record(failure)))
            _flush_logging()
        finally:
            os._exit(EXIT_INIT_FAILED)
    try:
        cfg.monitor.send(InitOk(pid))
        recycle = _serve(cfg, state, pid, log)
        cfg.monitor.send(Leaving(recycle))
        sys.stdout.flush()
        sys.stderr.flush()
    except _JobStop:
        _process.default_signal(_SIGTERM)  # die as stopped: the monitor reports the job's time limit or cancel
        os.kill(pid, _SIGTERM)
    except BaseException:
        log_exception_and_exit(log, f"worker {cfg.slot} (pid {pid})")
    os._exit(EXIT_OK)


def _serve(cfg: WorkerConfig, state: Any, pid: int, log: logging.Logger) -> bool:
    """The job loop.  Returns True to be replaced by a fresh worker, False when the pool stops."""
    queues = cfg.queues
    nq = len(queues)
    gens = [-1] * nq          # generation of each queue process, from its Hello
    granted = [0] * nq        # jobs each queue may still send us
    stopped = [False] * nq
    held: deque[tuple[int, Any]] = deque()
    capacity = cfg.prefetch
    by_fd = {ep.fd: i for i, ep in enumerate(queues)}
    poller = select.poll()
    for ep in queues:
        poller.register(ep.fd, select.POLLIN)

    def top_up() -> None:
        for q in range(nq):
            if gens[q] >= 0 and not stopped[q] and granted[q] < capacity:
                queues[q].send(Credit(gens[q], pid, capacity - granted[q]))
                granted[q] = capacity

    def take(q: int, msgs: list[Any]) -> None:
        for m in msgs:
            if type(m) is Dispatch:
                if gens[q] < 0:
                    continue  # sent to this slot's previous worker: the queue has dealt with it
                granted[q] -= 1
                if len(held) >= capacity:
                    queues[q].send(Release(m.job_id))
                else:
                    held.append((q, m))
            elif type(m) is Hello:
                if m.gen == gens[q]:
                    continue  # a second Hello for the slot's next worker: we already credited this queue
                gens[q] = m.gen
                granted[q] = 0
                stopped[q] = False
            elif type(m) is StopWorker:
                stopped[q] = True  # final whichever worker it was meant for: that queue has exited

    try:
        return _loop(cfg, state, pid, log, queues, held, granted, stopped, top_up, take, poller, by_fd)
    except _WarmStop:
        for q2, other in held:
            queues[q2].send(Release(other.job_id))
        log.info("worker %d (pid %d): SIGTERM while idle; leaving for a fresh worker", cfg.slot, pid)
        return True


def _loop(cfg: WorkerConfig, state: Any, pid: int, log: logging.Logger, queues: list[Endpoint],
          held: deque[tuple[int, Any]], granted: list[int], stopped: list[bool], top_up: Any, take: Any,
          poller: Any, by_fd: dict[int, int]) -> bool:
    global _busy
    spec, reply, token, slot = cfg.spec, cfg.reply, cfg.token, cfg.slot
    context._progress_sink = _PROGRESS
    _PROGRESS.reply = reply
    jobs_done = 0
    single = queues[0] if len(queues) == 1 else None
    while True:
        if not held:
            if all(stopped):
                return False
            if _term_requested:  # it came while we were finishing a job: leave before sleeping
                raise _WarmStop
            top_up()
            _busy = False  # the only place a SIGTERM interrupts: the idle wait
            if _term_requested:  # it came just before the line above
                _busy = True
                raise _WarmStop
            if single is not None:
                # one queue: wait in recv itself, which saves a poll() per job
                try:
                    msgs = single.recv(block=True, frames=1)
                except EOFError:
                    _busy = True
                    stopped[0] = True
                    continue
                _busy = True
                take(0, msgs)
                continue
            events = poller.poll()
            _busy = True
            for fd, _ in events:
                q = by_fd[fd]
                try:
                    take(q, queues[q].recv(block=False, frames=1))
                except EOFError:
                    stopped[q] = True
                    poller.unregister(fd)
            continue
        q, job = held.popleft()
        running = cfg.slot_memory
        running.start(job.job_id)
        if job.timeout > 0:
            cfg.monitor.send(JobStarted(job.job_id, job.timeout))
        outcome, blob = _run_one(job, spec, state, token, slot, cfg.spool)
        if job.timeout > 0:
            cfg.monitor.send(JobEnded(job.job_id))
        if _hook_errors:
            _report_hook_errors(queues[q])
        jobs_done += 1
        why = None
        if context._take_restart():
            why = "restart_worker() was called"
        elif _term_requested:
            why = "SIGTERM"
        elif cfg.max_jobs is not None and jobs_done >= cfg.max_jobs:
            why = f"max_jobs_per_worker={cfg.max_jobs} reached"
        elif cfg.max_memory is not None and (uss := _over_memory_cap(cfg.max_memory)):
            why = f"private memory {uss // 1024} KiB above max_memory_per_worker={cfg.max_memory // 1024} KiB"
        more = why is None
        if blob is not None and job.origin != token:
            # the caller is in another pool: the outcome goes through the queue, which hands it to
            # the backend shared with that pool, just before the job is acked
            queues[q].send(Answer(job.job_id, blob, outcome is not None))
            blob = None
        if outcome is not None:
            if blob is not None:  # a map chunk whose items partly raised: their outcomes first
                reply.send_wire(partial_wire(job.job_id, blob))
            queues[q].send(Failed(job.job_id, failure_record(outcome), more))
        else:
            if blob is not None:
                # the result first: the caller is the one waiting; the ack after it costs the caller
                # nothing (a death between the two re-runs the job: at-least-once, first outcome wins)
                reply.send_wire(result_wire(job.job_id, blob))
            queues[q].send_wire(done_wire(job.job_id, more))
        running.end()
        blob = None
        if more:
            granted[q] += 1  # the job's credit goes back to that queue
        else:
            # hand back anything prefetched, unstarted, then go: the monitor starts a fresh worker
            # (jobs still in flight to us are handed back by the queue when the monitor reports us gone)
            for q2, other in held:
                queues[q2].send(Release(other.job_id))
            log.info("worker %d (pid %d) recycles: %s", slot, pid, why)
            return True


_hook_errors = 0   # after_job hooks that raised since the queue was last told (HookFailed)


class _ProgressSender:
    """``honeydew.progress()`` in this worker: straight to the waiting caller, at most one report
    per :data:`INTERVAL` per job, and the last one held back is sent when the job ends."""

    INTERVAL = 0.1
    __slots__ = ("reply", "job_id", "last", "held")

    def __init__(self) -> None:
        self.reply: Endpoint | None = None
        self.job_id = ""        # the running job, when its caller is this pool's ('' otherwise: nobody to tell)
        self.last = 0.0
        self.held: tuple[float, str] | None = None

    def __call__(self, fraction: float, message: str) -> None:
        if not self.job_id or self.reply is None:
            return
        now = time.monotonic()
        if now - self.last >= self.INTERVAL or fraction >= 1.0:
            self.last, self.held = now, None
            self.reply.send(Progress(self.job_id, fraction, message))
        else:
            self.held = (fraction, message)

    def end(self) -> None:
        """The job is over: send what was held back (before its result)."""
        if self.held is not None and self.reply is not None:
            self.reply.send(Progress(self.job_id, *self.held))
        self.job_id, self.held, self.last = "", None, 0.0


_PROGRESS = _ProgressSender()


def _report_hook_errors(queue: Endpoint) -> None:
    global _hook_errors
    queue.send(HookFailed(_hook_errors))
    _hook_errors = 0


def _after_job(spec: WorkerSpec, hook: Any, state: Any, info: context.JobInfo, error: BaseException | None) -> None:
    """Run ``after_job``; if it raises, log it with its traceback and count it (never swallowed)."""
    global _hook_errors
    try:
        spec.hook(hook, state, info, error)
    except _JobStop:
        raise
    except BaseException:
        _hook_errors += 1
        logging.getLogger("honeydew.worker").exception("after_job raised after job %s (worker %d); the job's "
                                                       "outcome stands", info.id, info.worker)


def _run_one(job: Dispatch, spec: WorkerSpec, state: Any, token: str, slot: int,
             spool: str | None = None) -> tuple[Failure | None, bytes | None]:
    """Run one job.  Returns (its failure or None, the pickled result if a caller waits for it).

    A ``map`` chunk in which some items raised is a failed job (its first failing item's failure,
    so that the failure mode decides whether to run the chunk again) *and* a result: every item's
    outcome, which the caller uses if the job is given up."""
    job_id = job.job_id
    info = context.JobInfo(job_id, job.deliveries, slot)
    context._enter(info)
    if job.origin == token:
        _PROGRESS.job_id = job_id
    try:
        try:
            _process.decoding = f"hd-worker-{slot} decoded job {job_id}"
            payload = read_payload(decode(job.payload))
            fn = callable_of(payload.task)
            _process.decoding = ""
        except _JobStop:
            raise
        except BaseException as e:
            _process.decoding = ""
            return Failure.from_exception(e, kind=Failure.BAD_ARGUMENTS)._replace(
                type_name="honeydew.errors.SerializationError",
                message=f"the arguments of job {job_id} could not be unpickled in the worker: "
                        f"{qualname(type(e))}: {e}"), None
        failure = None
        before, after = spec.before_job, spec.after_job
        try:
            if before is not None:
                spec.hook(before, state, info)  # raising: the job fails (through the failure mode), unrun
            if type(payload) is CallJob:
                value = spec.invoke(fn, payload.args, payload.kwargs, state)
            else:
                value = _run_chunk(fn, payload.items, payload.star, spec, state)
                if value[1]:
                    failure = read_failure(value[1][min(value[1])])._replace(partial=True)
        except _JobStop:
            raise
        except BaseException as e:
            if after is not None:
                _after_job(spec, after, state, info, e)
            return Failure.from_exception(e), None
        finally:
            payload = None
        if after is not None:
            _after_job(spec, after, state, info, None)
        if not job.origin:
            return failure, None  # a cast: nobody waits for the result
        if job.origin != token:
            spool = None  # another pool's caller, which may not share this pool's spool directory
        try:
            return failure, encode_result(value, spool, f"result-{os.getpid()}-{job_id}-{job.deliveries}")
        except _JobStop:
            raise
        except BaseException as e:
            return Failure.from_exception(e, kind=Failure.BAD_RESULT)._replace(
                type_name="honeydew.errors.SerializationError",
                message=f"the result of job {job_id} (a {qualname(type(value))}) could not be pickled: "
                        f"{qualname(type(e))}: {e}"), None
    finally:
        context._enter(None)
        if _PROGRESS.job_id:
            _PROGRESS.end()
