"""The broker-backed queue: the queue contract on RabbitMQ (``pika``, the ``rabbitmq`` extra).

``honeydew.Pool(worker, num_workers=N, queue=RabbitMQ(url, name, signing_key=...))``: a producer
pool (``num_workers=0``) publishes; a worker pool consumes and may publish too; any number of them,
on any host, share the queue ``name``.

Topology (declared by every pool, with the same arguments)::

    <name>                  quorum queue (durable; counts every delivery in x-delivery-count),
                            dead-letters what is rejected to <name>.failed
    <name>.failed           classic durable queue: the failed store (Move, the job cap, messages
                            whose signature is missing or wrong, kept untouched)
    <name>.delay.<ms>       classic durable queues with a message TTL of <ms> that dead-letter back
                            to <name> (Retry's back-off, cast with a delay); they expire unused
    <name>.reply.<pool>.<i> the replies for callers of queue process <i> of pool <pool> (matched by
                            job id); it expires once that pool is gone

One queue process owns one connection with two channels: one consumes jobs, one publishes (with
publisher confirms and ``mandatory``) and consumes this pool's replies.  The connection's socket is
the backend's :meth:`~RabbitMQ.fileno` (a duplicate whose number survives reconnections), so the
queue process's ``poll`` wakes when the broker sends anything; :meth:`~RabbitMQ.tick` keeps
heartbeats flowing every ``poll_secs`` while workers (other processes) run jobs of any length.

Demand.  The pool's consumer prefetch equals the workers' credits, running jobs included
(:meth:`~RabbitMQ.hold`): RabbitMQ does not change the prefetch of a running consumer, so the pool
keeps one consumer per credit, each with a prefetch of 1, and adds or cancels consumers as the
number changes (a cancelled consumer's unacknowledged job still counts until it is acked).  A
consumer is cancelled only while it holds a job: the broker may be handing a job to a free consumer
when the cancel comes, and it then takes that job back counting a delivery that never ran.  A free
consumer no longer wanted is retired instead (reused first if demand rises again) and cancelled
once it receives a job, which waits here, unstarted and uncounted, for the next worker.

Counts.  A job's deliveries are the ones carried in its signed meta (``d``: set when honeydew
itself republishes it) plus the broker's ``x-delivery-count`` (every earlier delivery of this copy
that ended without an ack, including those whose node died) plus this one.  A job delivered again
with no outcome seen (its node or connection was lost each time) more than ``recovery_cap`` times
(``Requeue``'s ``max_deliveries``, else 5) goes to ``<name>.failed`` with ``JobLost``.

Outcomes.  A message is acked only once its job's outcome is on the broker: done (its reply, if a
caller in another pool waits, published and confirmed first); a Requeue or Retry (a new copy with
the new counts published and confirmed, to ``<name>`` or a delay queue, then the old one acked); a
give-up (with Move: a copy carrying the failure published to ``<name>.failed``).  A job that ends
while the connection is down cannot be acked (its delivery tag belongs to the lost channel): the
broker delivers it again after the reconnection, and honeydew then settles that copy as the job
ended (acked, moved, requeued) instead of running it again.

Security.  Every message is signed (HMAC-SHA256, :mod:`honeydew.queues._amqp_envelope`); one whose
signature is missing or wrong is never opened: it is rejected to ``<name>.failed`` untouched and
logged.  A job that carries a callable rather than naming a registered task is refused (to the
failed store, its caller told) unless ``allow_callables=True``.  The URL's credentials appear in no
log, error, ``repr`` or ``status()``.

Where the parts live: :mod:`~honeydew.queues._amqp_link` (the connection, its channels,
reconnection, publishing with confirms), :mod:`~honeydew.queues._amqp_envelope` (signing and
reading envelopes; nothing there unpickles), :mod:`~honeydew.queues._amqp_failed` (the failed
store); this module keeps the queue contract: what comes in, what is handed out, how each job ends.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

try:
    import pika  # noqa: I001 (first: a missing extra is named before anything else fails)
    import pika.exceptions
except ImportError as _e:  # pragma: no cover - the extra is not installed
    raise ImportError("honeydew's RabbitMQ queue needs pika: pip install 'honeydew-pool[rabbitmq]'") from _e

from ..errors import Failure, UnknownTask
from ..protocol import failure_record
from . import _amqp_envelope as env
from ._amqp_envelope import BrokerError
from ._amqp_envelope import Lost as _Lost
from ._amqp_failed import FailedStore
from ._amqp_link import ERRORS as _ERRORS
from ._amqp_link import Link
from .base import PRIORITIES, Job, Owner, Queue, Reply

__all__ = ["BrokerError", "RabbitMQ"]

log = logging.getLogger("honeydew.queues.rabbitmq")

_DELIVERY_COUNT = "x-delivery-count"
_MAX_BODY = 128 * 2**20    # RabbitMQ's default max_message_size
_LATER_KEEP = 3600.0       # how long an outcome waits for the redelivery of a job that ended offline


class _Msg:
    """A job message this queue process holds unacked: its delivery (tag, consumer, connection
    epoch), the job, its signed meta, and copies of the same job id delivered meanwhile."""

    __slots__ = ("tag", "consumer", "epoch", "job", "meta", "body", "dups")

    def __init__(self, tag: int, consumer: str, epoch: int, job: Job, meta: dict[str, Any], body: bytes) -> None:
        self.tag, self.consumer, self.epoch = tag, consumer, epoch
        self.job, self.meta, self.body = job, meta, body
        self.dups: list[_Msg] = []


class RabbitMQ(Link, FailedStore, Queue):
    """The queue on RabbitMQ, shared by every pool (on any host) that opens the same ``name``.

    ``RabbitMQ(url="amqp://guest:guest@127.0.0.1:5672/%2F", name="honeydew", *, signing_key=None,
    allow_callables=False, queue_type="quorum", recovery_cap=5, confirm_timeout=30.0,
    poll_secs=0.02, reply_grace=60.0)``

    * ``url``: pika's ``URLParameters`` (``heartbeat``, ``connection_attempts``, ``retry_delay``,
      ``blocked_connection_timeout``, TLS options... are honoured as pika reads them).
    * ``signing_key``: bytes or str, else ``$HONEYDEW_SIGNING_KEY``; required (``ValueError``).
    * ``allow_callables``: run jobs that carry a callable (a lambda, a function by value) rather
      than naming a registered task.  Off: such a job goes to the failed store, its caller told.
    * ``queue_type``: ``"quorum"`` (counts every delivery, survives a node's loss in a cluster) or
      ``"classic"`` (faster; a redelivery whose count the broker does not keep counts as one).
    * ``recovery_cap``: deliveries with no outcome after which a job goes to ``<name>.failed``
      (a pool under ``Requeue`` sets it to ``max_deliveries``, counting every delivery).
    * ``confirm_timeout``: how long a publish waits for the broker's confirm before it is refused.
    * ``poll_secs``: how often the queue process runs the connection's timers (heartbeats).
    * ``reply_grace``: seconds a pool's reply queue outlives the pool.
    """

    durable: ClassVar[bool] = True
    lacks: ClassVar[frozenset[str]] = frozenset({PRIORITIES})

    def __init__(self, url: str = "amqp://guest:guest@127.0.0.1:5672/%2F", name: str = "honeydew", *,
                 signing_key: bytes | str | None = None, allow_callables: bool = False, queue_type: str = "quorum",
                 recovery_cap: int = 5, confirm_timeout: float = 30.0, poll_secs: float = 0.02,
                 reply_grace: float = 60.0) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"url must be an AMQP URL such as 'amqp://user:password@host:5672/%2F', got a "
                             f"{type(url).__name__}")
        if not isinstance(name, str) or not name or len(name) > 200 or name.startswith("amq."):
            raise ValueError(f"name must be a queue name (1-200 characters, not starting with 'amq.'), got {name!r}")
        if queue_type not in ("quorum", "classic"):
            raise ValueError(f"queue_type must be 'quorum' or 'classic', got {queue_type!r}")
        for what, value in (("confirm_timeout", confirm_timeout), ("poll_secs", poll_secs),
                            ("reply_grace", reply_grace)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{what} must be a number of seconds > 0, got {value!r}")
        if isinstance(recovery_cap, bool) or not isinstance(recovery_cap, int) or recovery_cap < 1:
            raise ValueError(f"recovery_cap must be an int >= 1, got {recovery_cap!r}")
        self.url = url
        try:
            pika.URLParameters(url)
        except Exception as e:
            raise ValueError(f"the AMQP URL for {env.redact(url)} cannot be read by pika: {type(e).__name__}") from None
        self.name = name
        self._key = env.signing_key(signing_key)
        self.allow_callables = bool(allow_callables)
        self.queue_type = queue_type
        self._cap = recovery_cap
        self._cap_all = False
        self.confirm_timeout = float(confirm_timeout)
        self.poll_secs = float(poll_secs)
        self.reply_grace = float(reply_grace)
        self._reset()

    # ------------------------------------------------------------------ configuration

    @property
    def recovery_cap(self) -> int:
        return self._cap

    @recovery_cap.setter
    def recovery_cap(self, value: int) -> None:
        # set by the pool from Requeue(max_deliveries): then every delivery counts against the cap
        self._cap = int(value)
        self._cap_all = True

    def __repr__(self) -> str:
        return f"RabbitMQ({env.redact(self.url)!r}, {self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "name": self.name, "_key": self._key, "allow_callables": self.allow_callables,
                "queue_type": self.queue_type, "_cap": self._cap, "_cap_all": self._cap_all,
                "confirm_timeout": self.confirm_timeout, "poll_secs": self.poll_secs,
                "reply_grace": self.reply_grace}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _reset(self) -> None:
        self.owner: Owner | None = None
        self._conn: Any = None                    # pika.BlockingConnection
        self._ch: Any = None                      # pika's async channel: consumes jobs and replies, acks
        self._broken = ""                        # why the broker closed the consuming channel
        self._reply_tag = ""                      # the consumer of our reply queue
        self._pub_ch: Any = None                  # BlockingChannel: declares, counts; publishes (confirms)
        self._epoch = 0                           # one more at each connection
        self._reconnects = 0
        self._retry_at = 0.0                      # monotonic: next reconnection attempt
        self._backoff = 0.1
        self._fd = -1                             # what fileno() returns: a dup of the socket, or of _idle
        self._idle: tuple[int, int] | None = None  # a pipe never written: the fd while disconnected
        self._sock_fd = -1
        self._tls = False
        self._unflushed = False                   # frames (acks, consumers) written since pika's I/O last ran
        self._reply_q = ""
        # publishing
        self._seq = 0                             # the publish sequence of the publishing channel
        self._confirms: dict[int, str] = {}       # seq -> "" (waiting), "ack", "nack", "returned"
        self._blocked = False
        # consuming
        self._held = 0                            # hold(): the jobs our workers can take
        self._live: dict[str, int] = {}           # live consumer tag -> its unacked messages
        self._retiring: set[str] = set()          # live consumers not wanted: cancelled once they hold a job
        self._inbox: collections.deque[tuple[Any, ...]] = collections.deque()   # raw job deliveries
        self._replies_in: collections.deque[tuple[Any, ...]] = collections.deque()
        self._reply_tags: list[int] = []          # replies taken, acked at the next call
        self._hand: collections.deque[_Msg] = collections.deque()   # verified, not handed out
        self._out: dict[str, _Msg] = {}           # handed to a worker, not settled
        self._later: dict[str, tuple[float, Callable[[], None] | None]] = {}  # ended offline: settle its redelivery
        self._delayed: list[float] = []           # ready_at of the jobs this process delayed (status, len)
        self._delay_declared: dict[int, float] = {}  # delay queue ms -> when declared (monotonic)
        self._count = 0                           # the broker's ready count of <name>, as last asked
        self._count_at = -1.0                     # monotonic; -1: ask again
        self._probed_at = 0.0                     # monotonic: when tick() last asked the broker
        self._published = 0.0                     # monotonic: when we last published to <name>
        self._expect = 0                          # jobs we published to <name> and have not seen come in
        self._complained: dict[str, float] = {}
        self._redeclare = False                   # the broker cancelled a consumer: declare the queues again

    # ------------------------------------------------------------------ open, close

    def open(self, owner: Owner) -> None:
        self.owner = owner
        self._reply_q = f"{self.name}.reply.{owner.pool}.{owner.queue}"
        r, w = os.pipe()
        self._idle = (r, w)
        self._fd = os.dup(r)
        try:
            self._connect()
        except (BrokerError, *_ERRORS) as e:
            # (Pool() checked the broker: it went away since; tick() connects when it is back)
            log.warning("%r: cannot connect yet (%s); retrying in the background", self, e)
            self._retry_at = time.monotonic() + self._backoff

    def close(self) -> None:
        final = sys.exc_info()[0] is None
        conn = self._conn
        if conn is not None:
            try:
                self._ack_replies()
                self._cancel_consumers()
                if final and self._reply_q:
                    self._pub_ch.queue_delete(self._reply_q, if_empty=True)
            except _ERRORS:
                pass
            try:
                conn.close()  # (what we held unacked goes back to the broker)
            except _ERRORS:
                pass
        self._conn = None
        for fd in (self._fd, *(self._idle or ())):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd, self._idle = -1, None

    # ------------------------------------------------------------------ the contract: storing

    def enqueue(self, jobs: Sequence[Job], ready_at: float = 0.0) -> None:
        """Publish the batch, confirmed with ``mandatory`` (one wait for all the confirms).  Raises
        :class:`BrokerError` if the broker is unreachable or refuses any of them."""
        if not jobs:
            return
        big = next((j for j in jobs if len(j.payload) > _MAX_BODY), None)
        if big is not None:
            raise BrokerError(f"job {big.id} is {len(big.payload) / 2**20:.0f} MiB pickled, more than RabbitMQ takes "
                              f"by default (max_message_size, 128 MiB) for queue {self.name!r}: nothing of this batch "
                              f"was stored; send big data by reference (a path, a URL) instead")
        for attempt in (1, 2):
            if self._conn is None:
                self._retry_at = 0.0
                if not self._reconnect():
                    raise BrokerError(f"the broker at {env.redact(self.url)} is unreachable: {len(jobs)} job(s) for "
                                      f"queue {self.name!r} were not stored")
            try:
                queue = self._delay_queue(ready_at) if ready_at else ""
                items = [self._job_item(j, queue or self.name, j.deliveries) for j in jobs]
                outcomes = self._publish(items)
            except _Lost:
                if attempt == 1:
                    continue  # (once more on a fresh connection: at worst a job is stored twice)
                raise BrokerError(f"the connection to {env.redact(self.url)} was lost while storing {len(jobs)} "
                                  f"job(s) for queue {self.name!r}; some may have been stored") from None
            if queue == "":
                self._published = time.monotonic()
                self._expect += len(jobs)
            self._count_at = -1.0
            returned = [j for j, o in zip(jobs, outcomes, strict=True) if o == "returned"]
            nacked = [j for j, o in zip(jobs, outcomes, strict=True) if o == "nack"]
            if returned and attempt == 1:
                # the queue is gone (deleted under us?): connect again (which declares the queues and
                # consumes afresh) and send those once more
                self._lost(BrokerError(f"{len(returned)} job(s) unroutable"), "publishing (was the queue deleted?)")
                jobs = returned
                continue
            if returned or nacked:
                bad = returned or nacked
                why = ("unroutable (the queue does not exist and could not be declared again)" if returned else
                       "refused by the broker (nack: the queue is full or the broker is out of resources)")
                raise BrokerError(f"{len(bad)} job(s) for queue {self.name!r} were {why}, the first {bad[0].id}; "
                                  f"they were not stored (the others of the batch were)")
            return

    # ------------------------------------------------------------------ taking jobs in

    def _take_in(self) -> None:
        """Verify what arrived; settle at once what must not run (forged, capped, a callable)."""
        while self._inbox and self._conn is not None:
            tag, consumer, redelivered, props, body = self._inbox.popleft()
            epoch = self._epoch
            self._expect = max(0, self._expect - 1)
            if consumer in self._live:
                self._live[consumer] += 1
                if consumer in self._retiring:  # (not wanted any more: now that it holds a job, it can go)
                    self._cancel_consumer(consumer)
            meta, why = env.open_envelope(self._key, props.headers, body, env.JOB, self.name)
            if meta is None:
                log.warning("%r: message %r (%d bytes) on queue %r has %s: moved unopened to %r", self,
                            props.message_id, len(body), self.name, why, self.failed_queue)
                self._settle_tag(tag, consumer, requeue=False)
                continue
            count = (props.headers or {}).get(_DELIVERY_COUNT)
            lost = int(count) if isinstance(count, int) else int(bool(redelivered))
            d = int(meta.get("d", 0))
            job = Job(str(meta["id"]), body, str(meta.get("o", "")), float(meta.get("t", 0.0)), d + lost,
                      int(meta.get("f", 0)), int(meta.get("b", 0)), int(meta.get("p", 0)), str(meta.get("m", "")))
            msg = _Msg(tag, consumer, epoch, job, meta, body)
            if job.id in self._later:
                _, settle = self._later.pop(job.id)
                self._finish(msg, settle, f"settling job {job.id}, which ended while the connection was down")
                continue
            held = self._out.get(job.id)
            if held is not None:
                if held.epoch != epoch:  # (its run started before a reconnection: this is its redelivery)
                    held.tag, held.consumer, held.epoch = tag, consumer, epoch
                else:
                    held.dups.append(msg)
                continue
            if (d + lost >= self._cap) if self._cap_all else (lost >= self._cap):
                self._refuse(msg, Failure.lost(
                    f"job {job.id} was given up: it was delivered {d + lost} time(s) and {lost} of them ended with "
                    f"no outcome (its worker node or its connection to the broker was lost; recovery_cap="
                    f"{self._cap}); it is kept in the queue {self.failed_queue!r}"))
                continue
            if not self.allow_callables and not env.names_a_task(body):
                self._refuse(msg, Failure.from_exception(UnknownTask(
                    f"job {job.id} carries a callable rather than naming a registered task, and this worker node "
                    f"runs callables from the broker only with RabbitMQ(..., allow_callables=True); it is kept in "
                    f"the queue {self.failed_queue!r}")))
                continue
            self._hand.append(msg)

    def _refuse(self, msg: _Msg, failure: Failure) -> None:
        """A job that must not run: to the failed store, its caller told."""
        log.warning("%r: %s", self, failure.message)
        record = failure_record(failure)
        job = msg.job
        items = [self._job_item(job, self.failed_queue, job.deliveries, pickle.dumps(record), time.time(),
                                reply_to=msg.meta.get("r", ""))]
        if job.origin and msg.meta.get("r"):
            items.append(self._reply_item(Reply(job.origin, job.id, False, record), str(msg.meta["r"])))
        self._finish(msg, lambda: self._must(self._publish(items)[:1], "moving a job to the failed store"),
                     f"moving job {job.id} to the failed store")

    def _must(self, outcomes: list[str], doing: str) -> None:
        if any(o != "ack" for o in outcomes):
            raise BrokerError(f"the broker refused a message while {doing} ({outcomes}) for queue {self.name!r}")

    def _settle_tag(self, tag: int, consumer: str, requeue: bool | None = None) -> None:
        """Ack (``requeue`` None) or reject a delivery of the current channel."""
        try:
            impl = self._ch
            if requeue is None:
                impl.basic_ack(tag)
            else:
                impl.basic_reject(tag, requeue=requeue)
            self._unflushed = True
        except _ERRORS as e:
            self._lost(e, "acknowledging a job")
            return
        if consumer in self._live and self._live[consumer] > 0:
            self._live[consumer] -= 1

    def _finish(self, msg: _Msg, publish: Callable[[], None] | None, doing: str) -> None:
        """The job's outcome is decided: publish what it needs (a reply, a new copy), then ack its
        delivery.  Offline, or a delivery of a lost channel: done on its redelivery instead."""
        for dup in msg.dups:
            if dup.epoch == self._epoch and self._conn is not None:
                self._settle_tag(dup.tag, dup.consumer)
        msg.dups.clear()
        if self._conn is None:
            self._later[msg.job.id] = (time.monotonic(), publish)
            return
        if publish is not None:
            try:
                publish()
            except _Lost:
                self._later[msg.job.id] = (time.monotonic(), publish)
                return
            except BrokerError as e:
                self._complain("finish", f"{self!r}: {doing} failed ({e}); the job stays unacknowledged and the "
                                         f"broker delivers it again")
                if msg.epoch == self._epoch:
                    self._settle_tag(msg.tag, msg.consumer, requeue=True)
                return
        if msg.epoch == self._epoch:
            self._settle_tag(msg.tag, msg.consumer)
        else:
            self._later[msg.job.id] = (time.monotonic(), None)

    def reserve(self, now: float) -> Job | None:
        if self._conn is None:
            return None
        if not self._hand:
            # (the core asks at every step while a worker has credit: pika's I/O runs only when the
            # socket has something, or frames of ours wait to be sent; deliveries taken in by other
            # I/O wait in the inbox)
            if self._unflushed or self._arrived():
                self._io("taking jobs in")
            self._take_in()
        if not self._hand and self._conn is not None:
            if not self._live and self._held <= 0:
                self._get_one()
            elif self._expect and any(n == 0 for n in self._live.values()):
                # we just published jobs and a consumer is free: the broker is about to push one
                self._expect = 0
                if time.monotonic() - self._published < 0.05:
                    self._pump_for_job(0.005)
        if not self._hand:
            return None
        msg = self._hand.popleft()
        msg.job.deliveries += 1
        self._out[msg.job.id] = msg
        self._count_at = -1.0
        job = msg.job
        return Job(job.id, job.payload, job.origin, job.timeout, job.deliveries, job.failures, job.bounces,
                   job.priority, job.mode)

    def _pump_for_job(self, timeout: float) -> None:
        try:
            self._pump(lambda: bool(self._inbox), timeout)
        except _ERRORS as e:
            self._lost(e, "taking jobs in")
        self._take_in()

    def _get_one(self) -> None:
        """No consumer (hold() was never told of a worker): pull one job."""
        got: list[Any] = []
        try:
            self._ch.add_callback(lambda _frame: got.append(None), [pika.spec.Basic.GetEmpty], one_shot=True)
            self._ch.basic_get(self.name, lambda _c, m, p, b: got.append((m, p, b)), auto_ack=False)
            if not self._pump(lambda: bool(got), self.confirm_timeout):
                raise TimeoutError("no answer to basic.get")
        except _ERRORS + (TimeoutError,) as e:
            self._lost(e, "getting a job")
            return
        if got[0] is not None:
            method, props, body = got[0]
            self._inbox.append((method.delivery_tag, "", method.redelivered, props, body))
            self._take_in()

    # ------------------------------------------------------------------ outcomes

    def ack(self, job_ids: Sequence[str], replies: Sequence[Reply] = ()) -> None:
        """Publish the replies (confirmed together), then ack the jobs."""
        if not job_ids and not replies:
            return
        by_id = {r.job_id: r for r in replies}
        msgs = [m for m in (self._out.pop(i, None) for i in job_ids) if m is not None]
        items = []
        for m in msgs:
            r = by_id.get(m.job.id)
            if r is not None and m.meta.get("r"):
                items.append(self._reply_item(r, str(m.meta["r"])))
        if items:
            if self._conn is None:
                for m in msgs:
                    self._finish(m, self._reply_publisher(m, by_id), "acking a job")
                return
            try:
                self._quiet(self._publish(items))
            except _Lost:
                for m in msgs:
                    self._later[m.job.id] = (time.monotonic(), self._reply_publisher(m, by_id))
                return
            except BrokerError as e:
                self._complain("reply", f"{self!r}: replies not confirmed ({e}); their jobs go back to the broker "
                                        f"and run again")
                for m in msgs:
                    if m.epoch == self._epoch and self._conn is not None:
                        self._settle_tag(m.tag, m.consumer, requeue=True)
                self._fit()
                return
        for m in msgs:
            self._finish(m, None, "acking a job")
        self._io("acking")
        self._fit()

    def _reply_publisher(self, m: _Msg, by_id: dict[str, Reply]) -> Callable[[], None] | None:
        r = by_id.get(m.job.id)
        if r is None or not m.meta.get("r"):
            return None
        item = self._reply_item(r, str(m.meta["r"]))
        return lambda: self._quiet(self._publish([item]))

    def _quiet(self, outcomes: list[str]) -> None:
        """Replies: one returned is for a caller that went away (not an error)."""
        if "returned" in outcomes:
            log.debug("%r: %d reply(ies) had no caller waiting any more", self, outcomes.count("returned"))

    def nack(self, job: Job, ready_at: float = 0.0, *, front: bool = False) -> bool:
        msg = self._out.pop(job.id, None)
        if msg is None:
            return False
        msg.job = Job(job.id, job.payload, job.origin, job.timeout, job.deliveries, job.failures, job.bounces,
                      job.priority, job.mode)
        if front and msg.epoch == self._epoch and self._conn is not None:
            self._hand.appendleft(msg)  # (still ours, unacked: handed out next)
            return True
        r = str(msg.meta.get("r", ""))

        def publish() -> None:
            queue = self._delay_queue(ready_at) if ready_at and ready_at > time.time() else ""
            item = self._job_item(msg.job, queue or self.name, job.deliveries, reply_to=r)
            self._must(self._publish([item]), f"putting job {job.id} back")
            if not queue:
                self._published = time.monotonic()

        self._finish(msg, publish, f"putting job {job.id} back")
        self._io("putting a job back")
        self._fit()
        return True

    def give_up(self, job: Job, failure: tuple[Any, ...], reply: Reply | None = None, *,
                keep: bool = False) -> None:
        msg = self._out.pop(job.id, None)
        if msg is None:
            return
        r = str(msg.meta.get("r", ""))
        items = []
        if keep:
            items.append(self._job_item(job, self.failed_queue, job.deliveries, pickle.dumps(tuple(failure)),
                                        time.time(), reply_to=r))
        if reply is not None and r:
            items.append(self._reply_item(reply, r))

        def publish() -> None:
            outcomes = self._publish(items)
            if keep:
                self._must(outcomes[:1], f"moving job {job.id} to the failed store")

        self._finish(msg, publish if items else None, f"giving up job {job.id}")
        self._io("giving up a job")
        self._fit()

    # ------------------------------------------------------------------ demand: consumers

    def hold(self, jobs: int) -> None:
        self._held = max(0, int(jobs))
        self._fit()

    def _fit(self) -> None:
        """Keep one consumer (prefetch 1) per job the workers can take: what the broker may still
        deliver (free consumers) plus what we hold unacked never exceeds ``hold()``."""
        if self._conn is None:
            return
        if self._redeclare:
            self._redeclare = False
            try:
                self._declare(self._pub_ch)
                if self._reply_q and not self._reply_tag:
                    self._reply_tag = self._ch.basic_consume(self._reply_q, self._on_reply, auto_ack=False)
                    self._unflushed = True
            except (BrokerError, *_ERRORS) as e:
                self._lost(e, "declaring the queues again")
                return
        impl = self._ch
        held = self._held
        unacked = len(self._inbox) + len(self._hand)
        unacked += sum(1 + len(m.dups) for m in self._out.values() if m.epoch == self._epoch)
        live, retiring = self._live, self._retiring
        try:
            while True:
                active = [t for t in live if t not in retiring]
                free = [t for t in active if live[t] == 0]
                if free and unacked + len(free) > held:
                    # (a free consumer is never cancelled: the broker may be handing it a job right then,
                    # and it would take that job back counting a delivery that never ran; it is retired,
                    # and cancelled once it holds a job, see _take_in)
                    retiring.add(free[0])
                elif len(active) > held:
                    self._cancel_consumer(next(t for t in active if live[t] > 0))
                else:
                    break
            while len(live) - len(retiring) < held and unacked + sum(
                    1 for t, n in live.items() if n == 0 and t not in retiring) < held:
                if retiring:  # (wanted again: it may even be about to receive a job)
                    retiring.pop()
                    continue
                tag = impl.basic_consume(self.name, self._on_job, auto_ack=False)
                self._unflushed = True
                live[tag] = 0
        except _ERRORS as e:
            self._lost(e, "adjusting the consumers")

    def _cancel_consumers(self) -> None:
        for tag in list(self._live):
            self._cancel_consumer(tag)

    def _cancel_consumer(self, tag: str) -> None:
        """Stop consumer ``tag`` (forgotten here at once).  The jobs the broker sent it before it took
        the cancel still come to us (pika would reject them, which the broker counts as a failed
        delivery of each).  Only a consumer that holds its job is cancelled while the pool runs: the
        broker takes back, counted, a job it was handing to a free consumer when the cancel came."""
        self._live.pop(tag, None)
        self._retiring.discard(tag)
        ch = self._ch
        ch.basic_cancel(tag, callback=lambda _frame: None)
        self._unflushed = True
        ch._cancelled.discard(tag)  # (it stays in pika's consumers until the broker's CancelOk)

    # ------------------------------------------------------------------ the push-driven hooks

    def fileno(self) -> int | None:
        return self._fd if self._fd >= 0 else None

    def readable(self) -> None:
        if self._io("reading from the broker"):
            self._take_in()

    def tick(self, now: float) -> float | None:
        if self._conn is None:
            self._reconnect()
        elif self._io("running the connection's timers"):
            self._take_in()
            self._fit()
            if time.monotonic() - self._probed_at > 2.0:
                # (every 2 s, not at each tick once a job came in: the count is a round trip to the
                # broker, and no job is handed out meanwhile.  A queue deleted under us closes the
                # channel here: we connect again)
                self._probed_at = time.monotonic()
                self._count_at = -1.0
                self._ready_count()
        mono = time.monotonic()
        if self._later:
            for job_id in [i for i, (t, _) in self._later.items() if mono - t > _LATER_KEEP]:
                del self._later[job_id]
        if self._delayed:
            wall = time.time()
            self._delayed = [t for t in self._delayed if t > wall - 1.0]
        if self._conn is None:
            return max(0.01, min(self.poll_secs * 10, self._retry_at - mono))
        return self.poll_secs

    def take_replies(self) -> list[Reply]:
        self._ack_replies()
        out = []
        while self._replies_in:
            tag, props, body = self._replies_in.popleft()
            self._reply_tags.append(tag)
            meta, why = env.open_envelope(self._key, props.headers, body, env.REPLY, self.name)
            if meta is None:
                log.warning("%r: a reply %r (%d bytes) on %r has %s: dropped unopened", self, props.message_id,
                            len(body), self._reply_q, why)
                continue
            cut = int(meta.get("pl", 0))
            partial, value = body[:cut], body[cut:]
            ok = bool(meta.get("ok"))
            try:
                out.append(Reply(str(meta.get("o", "")), str(meta["id"]), ok,
                                 value if ok else tuple(pickle.loads(value)), partial))
            except Exception as e:
                log.warning("%r: a signed reply for job %s cannot be read (%s): dropped", self, meta.get("id"), e)
        return out

    def _ack_replies(self) -> None:
        if self._reply_tags and self._conn is not None:
            tags, self._reply_tags = self._reply_tags, []
            try:
                for tag in tags:
                    self._ch.basic_ack(tag)
                self._unflushed = True
            except _ERRORS as e:
                self._lost(e, "acking replies")

    # ------------------------------------------------------------------ what is pending here

    def cancel(self, job_id: str) -> Job | None:
        """Only a job this queue process holds unstarted can be taken back; the broker cannot
        remove one from the middle of its queue."""
        for msg in self._hand:
            if msg.job.id == job_id:
                self._hand.remove(msg)
                self._settle_tag(msg.tag, msg.consumer)
                self._fit()
                return msg.job
        return None

    def is_pending(self, job_id: str) -> bool:
        return any(msg.job.id == job_id for msg in self._hand)

    def next_ready_in(self, now: float) -> float | None:
        return None  # (delayed jobs come back through the broker, pushed like any other)

    def take_pending(self) -> list[Job]:
        jobs = []
        while self._hand:
            msg = self._hand.popleft()
            self._settle_tag(msg.tag, msg.consumer)
            jobs.append(msg.job)
        return jobs

    def _ready_count(self) -> int:
        mono = time.monotonic()
        if self._conn is not None and (self._count_at < 0 or mono - self._count_at > 0.05):
            try:
                self._count = int(self._pub_ch.queue_declare(self.name, passive=True).method.message_count)
                self._count_at = mono
            except _ERRORS as e:
                self._lost(e, "counting the jobs")
        return self._count

    def _delayed_count(self) -> int:
        wall = time.time()
        return sum(1 for t in self._delayed if t > wall - 1.0)

    def __len__(self) -> int:
        return self._ready_count() + len(self._hand) + self._delayed_count()

    def __bool__(self) -> bool:
        return len(self) > 0

    def status(self) -> dict[str, Any]:
        failed = -1
        if self._conn is not None:
            try:
                failed = int(self._pub_ch.queue_declare(self.failed_queue, passive=True).method.message_count)
            except _ERRORS as e:
                self._lost(e, "counting the failed jobs")
        delayed = self._delayed_count()
        consumers = len(self._live) - len(self._retiring)
        return {"pending": self._ready_count() + len(self._hand) + delayed, "delayed": delayed,
                "reserved": len(self._out), "prefetched": len(self._hand), "consumers": consumers,
                "failed_store": failed, "connected": self._conn is not None, "reconnects": self._reconnects,
                "queue": self.name, "broker": env.redact(self.url)}
