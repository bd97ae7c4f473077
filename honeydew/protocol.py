"""Every message that crosses a process boundary, declared once.

Each message is a small ``NamedTuple`` with a unique ``TAG``.  On the wire a message is the
plain tuple ``(TAG, *fields)`` (cheap to pickle, no class lookup); :func:`decode` turns it back
into the named record.  Several messages bound for the same socket travel in one frame
(see :mod:`honeydew._wire`), so a backlog costs one write, not one write per message.

The table below says who writes each message and who reads it; ``docs/architecture.md`` draws
the same thing and a test checks that every class here appears there.

=====================  ==================  ==================  =================================
message                written by          read by             on which socket
=====================  ==================  ==================  =================================
Enqueue                caller              queue               caller<->queue ``i``
Cancel                 caller              queue               caller<->queue ``i``
WhereIs                caller              queue               caller<->queue ``i``
JobState               queue               caller              caller<->queue ``i``
Resync                 caller              queue               caller<->queue ``i``
Wake                   caller              queue               caller<->queue ``i``
JobFailed              queue               caller              caller<->queue ``i``
Stored                 queue               caller              caller<->queue ``i``
Settled                queue               caller              caller<->queue ``i``
Hello                  queue               worker              queue ``i``<->worker slot ``j``
Dispatch               queue               worker              queue ``i``<->worker slot ``j``
StopWorker             queue               worker              queue ``i``<->worker slot ``j``
Credit                 worker              queue               queue ``i``<->worker slot ``j``
Done                   worker              queue               queue ``i``<->worker slot ``j``
Failed                 worker              queue               queue ``i``<->worker slot ``j``
Release                worker              queue               queue ``i``<->worker slot ``j``
Answer                 worker              queue               queue ``i``<->worker slot ``j``
HookFailed             worker              queue               queue ``i``<->worker slot ``j``
WorkerDied             monitor/supervisor  queue               queue ``i``<->worker slot ``j``
WorkerInitFailed       monitor             queue               queue ``i``<->worker slot ``j``
WorkersDown            queue               caller              caller<->queue ``i``
WorkerStarted          monitor             supervisor          monitor ``j`` <-> supervisor
KillWorker             queue               monitor             queue ``i`` -> monitor ``j``
JobStarted             worker              monitor             worker -> monitor socket
JobEnded               worker              monitor             worker -> monitor socket
Result                 worker, queue       caller              worker slot ``j`` -> caller, queue ``i``
Partial                worker, queue       caller              worker slot ``j`` -> caller, queue ``i``
Progress               worker              caller              worker slot ``j`` -> caller
InitOk                 worker              monitor             worker -> monitor socket
InitFailed             worker              monitor             worker -> monitor socket
Leaving                worker              monitor             worker -> monitor socket
Drain                  caller              queue               caller<->queue ``i``
Terminate              caller              supervisor          caller<->supervisor control
Shutdown               caller              supervisor          caller<->supervisor control
StatusRequest          caller              queue, supervisor   caller<->queue ``i``, control
Control                caller              queue               caller<->queue ``i``
ControlReply           queue               caller              caller<->queue ``i``
StatusReply            queue, supervisor   caller              caller<->queue ``i``, control
WorkerState            monitor             supervisor          monitor ``j`` <-> supervisor
QueueRestarted         supervisor          caller              caller<->supervisor control
BootFailed             supervisor          caller              caller<->supervisor control
=====================  ==================  ==================  =================================
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .errors import Failure

# --------------------------------------------------------------------------- caller -> queue


class Enqueue(NamedTuple):
    """A new job.  ``payload`` is the pickled ``(task, args, kwargs)``; the queue never opens it.
    ``origin`` is the token of the pool whose caller waits for the outcome ('' for a cast).
    ``timeout`` is the job's run-time limit in seconds (0: none), enforced by the monitor.
    ``ready_at`` is when it may run (a ``time.time()`` stamp; 0: now), ``priority`` its priority
    (higher first), ``mode`` its failure mode: its own (``pool.options(failure_mode=...)``:
    ``OWN_MODE`` and the pickle, see ``honeydew.failure_modes.own_mode_key``), else the name of its
    task when that task has one of its own (``@honeydew.task(failure_mode=...)``), else '' (the pool's)."""

    TAG = 1
    job_id: str
    payload: bytes
    origin: str
    timeout: float
    ready_at: float = 0.0
    priority: int = 0
    mode: str = ""


class Cancel(NamedTuple):
    """Drop this job if it has not been dispatched yet; if it has and ``terminate``, stop its worker.
    Answered by ``JobState`` (``cancelled``, ``running`` or ``gone``) unless ``req_id`` is 0."""

    TAG = 2
    job_id: str
    terminate: bool
    req_id: int


class WhereIs(NamedTuple):
    """Where is this job?  Answered by ``JobState``: ``queued``, ``running`` or ``gone``."""

    TAG = 6
    job_id: str
    req_id: int


class Resync(NamedTuple):
    """The caller has seen queue generation ``gen`` start and dealt with everything it sent before:
    failed it (an in-memory queue), or (a durable one) it sends again, after this, every job not yet
    ``Stored``; ``awaiting`` then lists the jobs stored by an earlier generation whose outcome the
    caller still waits for (a drain waits for them: another pool may run them).  The new queue
    ignores caller messages, and passes on no reply, until this one arrives."""

    TAG = 3
    gen: int
    awaiting: tuple[str, ...] = ()


class Wake(NamedTuple):
    """The caller stored jobs in the backend itself (a backend with a caller-side
    :meth:`~honeydew.queues.base.Queue.producer`: the durable SQLite queue's casts): look for them
    now rather than at the next poll.  Nothing is answered; a queue that has not had its
    ``Resync`` yet ignores it (it looks at the store when it starts)."""

    TAG = 9


# --------------------------------------------------------------------------- queue -> caller


class JobFailed(NamedTuple):
    """The job's failure mode gave up: ``failure`` is a :class:`honeydew.errors.Failure` tuple."""

    TAG = 10
    job_id: str
    failure: tuple[Any, ...]


class JobState(NamedTuple):
    """The answer to ``Cancel`` or ``WhereIs`` number ``req_id``: what the queue knows of ``job_id``:
    ``cancelled`` (it was queued and is no more), ``queued``, ``running`` (dispatched to a worker)
    or ``gone`` (finished, given up, or never seen)."""

    TAG = 14
    req_id: int
    job_id: str
    state: str


class WorkersDown(NamedTuple):
    """No worker could start: ``dropped`` jobs (casts included) were failed with
    ``WorkerInitError``; ``failure`` is the record of the last ``init`` failure."""

    TAG = 13
    dropped: int
    failure: tuple[Any, ...]


class Stored(NamedTuple):
    """A durable backend holds the next ``count`` jobs this caller sent to queue generation ``gen``
    (it committed them), or, when ``error`` is not empty, refused them (the disk is full, the file
    read-only...): their ``cast`` raises ``HoneydewError`` with ``error``.  Sent only by a queue
    whose backend is ``durable``; jobs are answered in the order they were sent.  The caller ignores
    a ``Stored`` of an earlier generation: it has sent again whatever was not stored when it learnt
    of the restart (the backend's ``enqueue`` is idempotent by job id)."""

    TAG = 15
    gen: int
    count: int
    error: str


class Settled(NamedTuple):
    """``count`` jobs of this caller reached a final state (only sent when ``max_pending`` is set)."""

    TAG = 11
    count: int


# --------------------------------------------------------------------------- queue -> worker


class Hello(NamedTuple):
    """A queue incarnation ``gen`` has started; grant it credit afresh."""

    TAG = 20
    gen: int


class Dispatch(NamedTuple):
    """Run this job.  It is already charged to the receiving worker slot."""

    TAG = 21
    job_id: str
    payload: bytes
    origin: str
    deliveries: int
    timeout: float


class StopWorker(NamedTuple):
    """The queue has drained: finish what you hold, then exit."""

    TAG = 22


# --------------------------------------------------------------------------- worker -> queue


class Credit(NamedTuple):
    """Worker ``pid`` can take ``count`` more jobs from queue generation ``gen``."""

    TAG = 30
    gen: int
    pid: int
    count: int


class Done(NamedTuple):
    """The job completed (its result, if wanted, was already sent to the caller).  ``more``: the
    job's credit comes back (False when the worker is about to leave)."""

    TAG = 31
    job_id: str
    more: bool


class Failed(NamedTuple):
    """The task raised (or its result would not pickle).  ``more`` as for ``Done``."""

    TAG = 32
    job_id: str
    failure: tuple[Any, ...]
    more: bool


class Release(NamedTuple):
    """Returned unstarted (the worker was busy with another queue's job); no delivery is counted."""

    TAG = 33
    job_id: str


class Answer(NamedTuple):
    """The outcome of a job whose caller is in another pool (its ``origin`` is not this pool's):
    the pickled result, or with ``partial`` a ``map`` chunk's item outcomes (see ``Partial``).
    Sent to the queue just before the job's ``Done`` or ``Failed``; the queue hands it to the
    backend, which carries it to the caller's pool."""

    TAG = 34
    job_id: str
    value: bytes
    partial: bool


class HookFailed(NamedTuple):
    """``count`` ``after_job`` hooks raised in this worker (each logged there with its traceback);
    the queue counts them for ``status()`` (``hook_errors``).  Sent before the job's ``Done``."""

    TAG = 35
    count: int


# --------------------------------------------------------------------------- monitor -> queue


class WorkerDied(NamedTuple):
    """The worker ``pid`` of this slot is gone (``pid`` 0: whichever incarnation was current).
    Written by the monitor after ``waitpid``, or by the supervisor when the monitor died too.
    ``reason`` is '' for a crash while running ``job_id`` ('' if unknown: the monitor died too),
    ``idle`` for a crash while no job ran, ``timeout`` when the monitor stopped it because
    ``job_id`` ran past its limit, ``cancelled`` when it was killed because ``job_id`` was
    cancelled, ``left`` when it exited on purpose.  Jobs charged to the worker other than
    ``job_id`` never started."""

    TAG = 40
    pid: int
    exitcode: int | None
    signal_name: str | None
    reason: str
    job_id: str

    # the reasons (class constants, not fields)
    CRASHED = ""                           # died while running job_id ('' when nobody knows)
    IDLE = "idle"                          # died while running no job
    TIMEOUT = "timeout"                    # stopped: job_id ran past its time limit
    CANCELLED = "cancelled"                # stopped: job_id was cancelled while running
    LEFT = "left"                          # exited on purpose (recycled, or the pool stops)
    INIT_TIMEOUT = "init timeout"          # stopped: init ran past init_timeout
    STOPPED_IN_INIT = "shutdown during init"  # stopped in init: the pool shuts down


class WorkerInitFailed(NamedTuple):
    """The slot's worker died in ``init``: its ``failures``-th failure in a row; ``failure`` is the
    record of the last one.  ``served``: a worker of this slot has served before.  Written by the
    monitor, right after its ``WorkerDied``: the queue fails its jobs with ``WorkerInitError`` once
    every slot has failed 3 times and none has served."""

    TAG = 42
    failures: int
    served: bool
    failure: tuple[Any, ...]


# --------------------------------------------------------------------------- queue -> monitor


class KillWorker(NamedTuple):
    """Stop worker ``pid`` (its job ``job_id`` was cancelled while running: ``reason`` is
    ``WorkerDied.CANCELLED``, which its ``WorkerDied`` then carries)."""

    TAG = 41
    pid: int
    job_id: str
    reason: str


# --------------------------------------------------------------------------- worker -> caller


class Result(NamedTuple):
    """The job's pickled return value, sent straight to the caller that waits for it by a worker
    of its own pool, or by its queue when a worker of another pool ran the job (``Answer``)."""

    TAG = 50
    job_id: str
    value: bytes


class Progress(NamedTuple):
    """The running task reported ``honeydew.progress(fraction, message)`` (the worker sends at most
    about ten a second per job, and always the last); the caller keeps the latest on the job's future."""

    TAG = 52
    job_id: str
    fraction: float
    message: str


class Partial(NamedTuple):
    """A ``map`` chunk in which some items raised: the pickled ``(values, errors)`` of every item.
    The job itself is reported ``Failed`` (with its first item's failure) so that the failure mode
    decides; the caller keeps this and resolves the chunk with it only if the job is given up."""

    TAG = 51
    job_id: str
    value: bytes


# --------------------------------------------------------------------------- worker -> monitor


class InitOk(NamedTuple):
    TAG = 60
    pid: int


class InitFailed(NamedTuple):
    TAG = 61
    failure: tuple[Any, ...]


class JobStarted(NamedTuple):
    """The worker starts ``job_id``, which must finish within ``timeout`` seconds (sent only for
    jobs with a limit: the monitor enforces it)."""

    TAG = 63
    job_id: str
    timeout: float


class JobEnded(NamedTuple):
    """The job announced by ``JobStarted`` is over."""

    TAG = 64
    job_id: str


class Leaving(NamedTuple):
    """The worker exits on purpose: ``recycle`` True means "start a fresh one" (restart_worker),
    False means "the pool is stopping"."""

    TAG = 62
    recycle: bool


class Control(NamedTuple):
    """An operator's request to a queue (``pool.suspend()``, ``pool.failed()``...): ``op`` is
    ``suspend``, ``resume``, ``failed`` (``arg``: the limit), ``retry_failed`` or ``purge_failed``
    (``arg``: a list of job ids, or None for all).  Answered by ``ControlReply`` with ``req_id``."""

    TAG = 8
    req_id: int
    op: str
    arg: Any


class ControlReply(NamedTuple):
    """The answer to ``Control`` ``req_id``: when ``ok``, ``value`` is the result (True, a count,
    a list of ``FailedJob`` tuples); otherwise it is why the queue could not (its backend has no
    failed store...)."""

    TAG = 16
    req_id: int
    ok: bool
    value: Any


class StatusRequest(NamedTuple):
    """Report your state (for ``Pool.status()``); answered by ``StatusReply`` with the same id."""

    TAG = 5
    req_id: int


class StatusReply(NamedTuple):
    TAG = 12
    req_id: int
    info: dict[str, Any]


class Drain(NamedTuple):
    """The pool is closing: no job follows this one; stop once every job is finished.  Sent on the
    same socket as the jobs, so the queue cannot see it before a job sent earlier."""

    TAG = 4


# --------------------------------------------------------------------------- monitor -> supervisor


class WorkerStarted(NamedTuple):
    """The monitor forked worker ``pid`` (the supervisor kills it if the monitor dies)."""

    TAG = 70
    pid: int


class WorkerState(NamedTuple):
    """A worker slot's state changed: ``starting`` (a worker was forked and runs ``init``),
    ``serving`` (its ``init`` succeeded) or ``backoff`` (its ``init`` failed; the next attempt is in
    ``retry_in`` seconds); with its init failures in a row and the last one's error."""

    TAG = 71
    state: str
    pid: int
    init_failures: int
    last_error: str
    retry_in: float

    # the states (class constants, not fields)
    STARTING = "starting"
    SERVING = "serving"
    BACKOFF = "backoff"


# --------------------------------------------------------------------------- caller <-> supervisor


class Terminate(NamedTuple):
    TAG = 81


class Shutdown(NamedTuple):
    """The calling process got SIGTERM: warm shutdown (a second one: stop now)."""

    TAG = 83


class QueueRestarted(NamedTuple):
    """Queue ``index`` died and generation ``gen`` replaced it; jobs sent before are lost."""

    TAG = 82
    index: int
    gen: int
    reason: str


class BootFailed(NamedTuple):
    """A supervisor started as a fresh interpreter could not load the pool's worker and options
    (``reason``: the error); it exits at once and the pool is broken."""

    TAG = 84
    reason: str


MESSAGES: dict[int, type[Any]] = {}
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, tuple) and hasattr(_cls, "TAG"):
        assert _cls.TAG not in MESSAGES, f"duplicate TAG {_cls.TAG}"
        MESSAGES[_cls.TAG] = _cls
del _cls


def encode(msg: Any) -> tuple[Any, ...]:
    """The wire form of one message: ``(TAG, *fields)``."""
    return (msg.TAG, *msg)


def decode(raw: tuple[Any, ...]) -> Any:
    """The named record for a wire tuple."""
    return MESSAGES[raw[0]]._make(raw[1:])


# --------------------------------------------------------------------------- hot-path wire forms
# The per-job messages are built and read in wire form, skipping the named record (one tuple
# fewer per message).  These functions are the only places that know their field order; the
# tests check each against the record's own fields.

_ENQUEUE, _DISPATCH, _DONE, _RESULT, _PARTIAL = Enqueue.TAG, Dispatch.TAG, Done.TAG, Result.TAG, Partial.TAG


def enqueue_wire(job_id: str, payload: bytes, origin: str, timeout: float, ready_at: float = 0.0,
                 priority: int = 0, mode: str = "") -> tuple[Any, ...]:
    """``Enqueue`` in wire form."""
    return (_ENQUEUE, job_id, payload, origin, timeout, ready_at, priority, mode)


def dispatch_wire(job_id: str, payload: bytes, origin: str, deliveries: int, timeout: float) -> tuple[Any, ...]:
    """``Dispatch`` in wire form."""
    return (_DISPATCH, job_id, payload, origin, deliveries, timeout)


def done_wire(job_id: str, more: bool) -> tuple[Any, ...]:
    """``Done`` in wire form."""
    return (_DONE, job_id, more)


def result_wire(job_id: str, value: bytes) -> tuple[Any, ...]:
    """``Result`` in wire form."""
    return (_RESULT, job_id, value)


def partial_wire(job_id: str, value: bytes) -> tuple[Any, ...]:
    """``Partial`` in wire form."""
    return (_PARTIAL, job_id, value)


# --------------------------------------------------------------------------- the failure record


def failure_record(failure: Failure) -> tuple[Any, ...]:
    """A :class:`~honeydew.errors.Failure` as it travels in a message: a plain tuple."""
    return tuple(failure)


def read_failure(record: tuple[Any, ...]) -> Failure:
    """The :class:`~honeydew.errors.Failure` a message carries."""
    return Failure._make(record)


# --------------------------------------------------------------------------- the job payload
# What the caller pickles for a job (the queue never opens it): a plain tuple whose first item
# says which kind of job it is.  Only these functions build and read it.

CALL = 0   # (CALL, task, args, kwargs)
MAP = 1    # (MAP, task, items, star): run task over a chunk of items


class CallJob(NamedTuple):
    """Run ``task(*args, **kwargs)``.  ``task`` is a registered task's name or a callable's
    reference (``honeydew._payload``)."""

    task: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class MapJob(NamedTuple):
    """Run ``task`` over each of ``items`` (``task(*item)`` when ``star``): a ``map`` chunk."""

    task: Any
    items: list[Any]
    star: bool


def call_payload(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The tuple to pickle for a ``CallJob``."""
    return (CALL, task, args, kwargs)


def map_payload(task: Any, items: list[Any], star: bool) -> tuple[Any, ...]:
    """The tuple to pickle for a ``MapJob``."""
    return (MAP, task, items, star)


def read_payload(payload: tuple[Any, ...]) -> CallJob | MapJob:
    """The job an unpickled payload stands for.  Raises ``ValueError`` for anything else."""
    if type(payload) is tuple and len(payload) == 4:
        kind = payload[0]
        if kind == CALL:
            return CallJob(payload[1], payload[2], payload[3])
        if kind == MAP:
            return MapJob(payload[1], payload[2], payload[3])
    raise ValueError(f"not a honeydew job payload: {type(payload).__name__}")
