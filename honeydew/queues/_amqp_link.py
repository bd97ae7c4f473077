"""The RabbitMQ queue's link to the broker: its connection, channels, reconnection and publishing.

One connection per queue process, with two channels: a ``BlockingChannel`` for the calls that wait
for an answer (declaring and counting queues) whose asynchronous channel beneath publishes with
confirms and ``mandatory``, and pika's asynchronous channel, which consumes jobs and replies and
acks them (its deliveries come straight to the queue's callbacks, inside pika's I/O, which only
queue them).  :meth:`Link._publish` sends a batch and waits once for all its confirms.  A lost
connection (or a channel the broker closed) is forgotten whole (:meth:`Link._lost`): every delivery
it carried comes back from the broker; :meth:`Link._reconnect` connects again, with a back-off
from 0.1 s doubling to 5 s, and declares the queues again.
"""

from __future__ import annotations

import base64
import collections
import logging
import math
import os
import pickle
import select
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from . import _amqp_envelope as env
from ._amqp_envelope import BrokerError
from ._amqp_envelope import Lost as _Lost
from .base import Job, Owner, Reply

log = logging.getLogger("honeydew.queues.rabbitmq")

PUB = "x-honeydew-pub"    # (unsigned) which publish of this channel a returned message was
ERRORS = (pika.exceptions.AMQPError, OSError, AssertionError)
_PUB, _ERRORS = PUB, ERRORS


class _NotBlocking:
    """Stands, for ``BlockingConnection.close()``, where a ``BlockingChannel`` would be for our
    asynchronous channel: closing the connection closes it."""

    is_open = False


class Link:
    """The connection side of :class:`~honeydew.queues.rabbitmq.RabbitMQ` (a mixin: the state is the queue's)."""

    url: str
    name: str
    queue_type: str
    reply_grace: float
    confirm_timeout: float
    owner: Owner | None
    _key: bytes
    _conn: Any
    _pub_ch: Any
    _ch: Any
    _epoch: int
    _reconnects: int
    _retry_at: float
    _backoff: float
    _fd: int
    _idle: tuple[int, int] | None
    _sock_fd: int
    _tls: bool
    _unflushed: bool
    _reply_q: str
    _reply_tag: str
    _seq: int
    _confirms: dict[int, str]
    _blocked: bool
    _broken: str
    _redeclare: bool
    _live: dict[str, int]
    _retiring: set[str]
    _inbox: collections.deque[tuple[Any, ...]]
    _replies_in: collections.deque[tuple[Any, ...]]
    _reply_tags: list[int]
    _hand: collections.deque[Any]
    _delayed: list[float]
    _delay_declared: dict[int, float]
    _count_at: float
    _complained: dict[str, float]

    @property
    def failed_queue(self) -> str:
        return f"{self.name}.failed"

    if TYPE_CHECKING:  # (RabbitMQ's own)
        def _fit(self) -> None: ...

    # ------------------------------------------------------------------ connection

    def _params(self) -> Any:
        params = pika.URLParameters(self.url)
        if params.blocked_connection_timeout is None:
            params.blocked_connection_timeout = self.confirm_timeout
        return params

    def _open_connection(self) -> Any:
        """A new connection to the broker, or a BrokerError saying why there is none (no password in it)."""
        where = env.redact(self.url)
        try:
            return pika.BlockingConnection(self._params())
        except pika.exceptions.ProbableAuthenticationError:
            raise BrokerError(f"the broker at {where} refused the user name or password in the queue's URL "
                              f"(queue {self.name!r}): check them") from None
        except pika.exceptions.ProbableAccessDeniedError:
            raise BrokerError(f"the broker at {where} denied access to the virtual host in the queue's URL "
                              f"(queue {self.name!r}): check its permissions") from None
        except _ERRORS as e:
            raise BrokerError(f"cannot connect to the broker at {where} for queue {self.name!r}: "
                              f"{type(e).__name__}: {e}; is RabbitMQ running there?") from None

    def _connect(self) -> None:
        """Connect, declare the topology, open both channels; raise BrokerError if it cannot."""
        conn = self._open_connection()
        try:
            pub = conn.channel()
            self._declare(pub)
        except BaseException:
            try:
                conn.close()
            except Exception:
                pass
            raise
        self._conn, self._pub_ch = conn, pub
        try:
            self._epoch += 1
            self._seq = 0
            self._confirms.clear()
            self._live.clear()
            self._retiring.clear()
            self._blocked = False
            self._broken = ""
            self._sock_fd = conn._impl._transport._sock.fileno()
            self._tls = conn._impl.params.ssl_options is not None
            impl = pub._impl
            ready: list[Any] = []
            impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=ready.append)
            impl.add_on_return_callback(self._on_return)
            conn.add_on_connection_blocked_callback(lambda *_: setattr(self, "_blocked", True))
            conn.add_on_connection_unblocked_callback(lambda *_: setattr(self, "_blocked", False))
            # the consuming channel is pika's asynchronous one: its deliveries come straight to our callbacks
            ch = conn._impl.channel(on_open_callback=ready.append)
            if not self._pump(lambda: len(ready) >= 2, self.confirm_timeout):
                raise BrokerError(f"the broker at {env.redact(self.url)} did not open the channels of queue "
                                  f"{self.name!r} in time")
            ch._set_cookie(_NotBlocking())  # (BlockingConnection.close() asks each channel's wrapper; this has none)
            ch.add_on_close_callback(self._on_channel_closed)
            ch.add_on_cancel_callback(self._on_cancelled)
            if self._reply_q:  # (before the prefetch of 1 below, which applies to the consumers made after it)
                self._reply_tag = ch.basic_consume(self._reply_q, self._on_reply, auto_ack=False)
            ch.basic_qos(prefetch_count=1)  # (each job consumer: one job; see hold())
            self._ch = ch
            if self._fd >= 0:
                os.dup2(self._sock_fd, self._fd)
            self._count_at = -1.0
        except BaseException:
            self._conn = self._pub_ch = self._ch = None
            try:
                conn.close()
            except Exception:
                pass
            raise

    def _declare(self, ch: Any) -> None:
        name, failed = self.name, self.failed_queue
        args: dict[str, Any] = {"x-queue-type": self.queue_type, "x-dead-letter-exchange": "",
                                "x-dead-letter-routing-key": failed}
        if self.queue_type == "quorum":
            # (a full queue nacks rather than drops.  Dead-lettering stays at-most-once: it moves only
            # messages that failed their signature, and RabbitMQ 3.10 cannot declare or recover an
            # at-least-once dead-lettering queue after `rabbitmqctl stop_app; start_app`)
            args["x-overflow"] = "reject-publish"
        for queue, arguments in ((failed, {"x-queue-type": "classic"}), (name, args)):
            try:
                ch.queue_declare(queue, durable=True, arguments=arguments)
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code == 406:
                    raise BrokerError(f"the queue {queue!r} exists on {env.redact(self.url)} with other arguments "
                                      f"than honeydew declares ({e.reply_text}): delete it (rabbitmqctl delete_queue "
                                      f"{queue}) or give RabbitMQ() another name") from None
                raise BrokerError(f"the broker at {env.redact(self.url)} refused to declare the queue {queue!r} "
                                  f"({e.reply_code} {e.reply_text}): check the user's permissions") from None
            except pika.exceptions.ConnectionClosedByBroker as e:
                raise BrokerError(f"the broker at {env.redact(self.url)} closed the connection while declaring the "
                                  f"queue {queue!r} ({e.reply_code} {e.reply_text}); is it starting up or shutting "
                                  f"down? Try again") from None
        if self.owner is not None:
            ch.queue_declare(self._reply_q, durable=True,
                             arguments={"x-expires": int(self.reply_grace * 1000), "x-queue-type": "classic"})

    def check(self) -> None:
        """In the caller, at ``Pool(...)``: connect, declare the queues, disconnect; a
        :class:`BrokerError` says what is wrong (unreachable, credentials, a conflicting queue)."""
        conn = self._open_connection()
        try:
            self._declare(conn.channel())
        finally:
            try:
                conn.close()
            except Exception:
                pass

    def _lost(self, e: BaseException, doing: str) -> None:
        """The connection is gone (or unusable): forget its deliveries and plan a reconnection."""
        if self._conn is None:
            return
        self._complain("lost", f"{self!r}: the connection to the broker was lost while {doing} "
                               f"({type(e).__name__}: {e}); reconnecting", logging.WARNING)
        try:
            self._conn.close()
        except Exception:
            pass
        self._conn = self._pub_ch = self._ch = None
        self._hand.clear()          # (unacked: the broker delivers them again)
        self._inbox.clear()
        self._replies_in.clear()
        self._reply_tags.clear()
        self._live.clear()
        self._retiring.clear()
        for seq, state in self._confirms.items():
            if not state:
                self._confirms[seq] = "lost"
        if self._idle is not None and self._fd >= 0:
            os.dup2(self._idle[0], self._fd)
        self._retry_at = time.monotonic()
        self._backoff = 0.1

    def _reconnect(self) -> bool:
        """Try to connect again if the back-off allows; True once connected."""
        if self._conn is not None:
            return True
        if self.owner is None or time.monotonic() < self._retry_at:
            return False
        try:
            self._connect()
        except (BrokerError, *_ERRORS) as e:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            self._complain("reconnect", f"{self!r}: cannot reconnect yet ({e}); next try in {self._backoff:.1f}s",
                           logging.WARNING)
            self._conn = None
            return False
        self._reconnects += 1
        log.warning("%r: reconnected to the broker (reconnection %d)", self, self._reconnects)
        self._fit()
        return True

    def _pump(self, until: Callable[[], bool], timeout: float) -> bool:
        """Run the connection's I/O (callbacks, timers, heartbeats) until ``until()`` or ``timeout``."""
        deadline = time.monotonic() + timeout
        conn = self._conn
        while True:
            conn.process_data_events(0)
            self._unflushed = False
            if until():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self._sock_fd], [], [], min(left, 0.05))

    def _arrived(self) -> bool:
        """Has the broker sent anything pika has not read?  (A poll of the socket, ~100 times
        cheaper than a round of pika's I/O; over TLS, decrypted data may wait inside the SSL
        object, out of the socket's sight: then always.)"""
        if self._tls:
            return True
        try:
            return bool(select.select([self._sock_fd], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # (let pika's I/O find out what is wrong)

    def _io(self, doing: str) -> bool:
        """Take in what arrived (no wait); False if the connection is gone."""
        if self._conn is None:
            return False
        try:
            self._conn.process_data_events(0)
            self._unflushed = False
            if self._broken:
                raise pika.exceptions.ChannelClosed(0, self._broken)
        except _ERRORS as e:
            self._lost(e, doing)
            return False
        return True

    def _complain(self, key: str, message: str, level: int = logging.ERROR) -> None:
        now = time.monotonic()
        if now - self._complained.get(key, -1e9) >= 10.0:
            self._complained[key] = now
            log.log(level, "%s", message)

    # ------------------------------------------------------------------ callbacks (inside pika's I/O)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        state = "ack" if isinstance(method, pika.spec.Basic.Ack) else "nack"
        tag = method.delivery_tag
        confirms = self._confirms
        if method.multiple:
            for seq in [s for s, st in confirms.items() if s <= tag and not st]:
                confirms[seq] = state
        elif tag in confirms and not confirms[tag]:
            confirms[tag] = state

    def _on_return(self, _ch: Any, _method: Any, props: Any, _body: bytes) -> None:
        seq = (props.headers or {}).get(_PUB)
        if isinstance(seq, int) and seq in self._confirms:
            self._confirms[seq] = "returned"  # (its ack follows: it must not overwrite this)

    def _on_job(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._inbox.append((method.delivery_tag, method.consumer_tag, method.redelivered, props, body))

    def _on_reply(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._replies_in.append((method.delivery_tag, props, body))

    def _on_channel_closed(self, _ch: Any, reason: Any) -> None:
        self._broken = str(reason)

    def _on_cancelled(self, frame: Any) -> None:
        tag = getattr(frame.method, "consumer_tag", "")
        if tag and tag == self._reply_tag:  # (our reply queue was deleted: declared again, consumed again)
            self._reply_tag = ""
            self._redeclare = True
        elif tag in self._live:
            self._live.pop(tag)
            self._retiring.discard(tag)
            self._complain("cancelled", f"{self!r}: the broker cancelled a consumer of queue {self.name!r} (deleted "
                                        f"or moved?); declaring it again", logging.WARNING)
            self._count_at = -1.0
            self._redeclare = True

    # ------------------------------------------------------------------ publishing

    def _publish(self, items: Sequence[tuple[str, bytes, dict[str, Any], str]]) -> list[str]:
        """Publish ``(routing_key, body, headers, message_id)`` items, persistent and mandatory, and
        wait for every confirm together.  The outcome of each: "ack", "nack" or "returned".
        Raises :class:`_Lost` if the connection goes, :class:`BrokerError` past ``confirm_timeout``."""
        if self._conn is None:
            raise _Lost("not connected")
        impl = self._pub_ch._impl
        seqs = []
        try:
            for routing_key, body, headers, message_id in items:
                self._seq += 1
                seq = self._seq
                self._confirms[seq] = ""
                headers[_PUB] = seq
                props = pika.BasicProperties(delivery_mode=2, headers=headers, message_id=message_id,
                                             correlation_id=message_id, timestamp=int(time.time()))
                impl.basic_publish("", routing_key, body, props, mandatory=True)
                seqs.append(seq)
            confirms = self._confirms
            done = self._pump(lambda: all(confirms[s] for s in seqs), self.confirm_timeout)
        except _ERRORS as e:
            for s in seqs:
                self._confirms.pop(s, None)
            self._lost(e, "publishing")
            raise _Lost(str(e)) from None
        outcomes = [self._confirms.pop(s, "lost") for s in seqs]
        if "lost" in outcomes:
            raise _Lost("the connection was lost waiting for confirms")
        if not done:
            why = " (the broker blocked the connection: a memory or disk alarm)" if self._blocked else ""
            self._lost(TimeoutError("no confirm"), "waiting for confirms")
            raise BrokerError(f"the broker did not confirm {len(seqs)} message(s) for queue {self.name!r} within "
                              f"{self.confirm_timeout:g}s{why}; they may or may not have been stored")
        return outcomes

    def _job_item(self, job: Job, queue: str, d: int, failure: bytes = b"", at: float = 0.0,
                  reply_to: str | None = None) -> tuple[str, bytes, dict[str, Any], str]:
        meta: dict[str, Any] = {"k": env.JOB, "q": self.name, "id": job.id, "o": job.origin, "t": job.timeout,
                                "p": job.priority, "m": job.mode, "d": d, "f": job.failures, "b": job.bounces,
                                "r": reply_to if reply_to is not None else (self._reply_q if job.origin else "")}
        if failure:
            meta["x"] = base64.b64encode(failure).decode()
            meta["at"] = at
        return queue, job.payload, env.seal(self._key, meta, job.payload), job.id

    def _reply_item(self, reply: Reply, reply_to: str) -> tuple[str, bytes, dict[str, Any], str]:
        value = reply.value if reply.ok else pickle.dumps(tuple(reply.value), protocol=pickle.HIGHEST_PROTOCOL)
        partial = reply.partial or b""
        body = partial + value
        meta = {"k": env.REPLY, "q": self.name, "id": reply.job_id, "o": reply.origin, "ok": bool(reply.ok),
                "pl": len(partial)}
        return reply_to, body, env.seal(self._key, meta, body), reply.job_id

    def _delay_queue(self, ready_at: float) -> str:
        """The delay queue for a job ready at ``ready_at`` ('' if it is ready now), declared if needed.
        Delays are rounded up to two significant figures (so few queues serve every back-off)."""
        ms = math.ceil((ready_at - time.time()) * 1000)
        if ms <= 0:
            return ""
        digits = 10 ** max(0, len(str(ms)) - 2)
        ms = -(-ms // digits) * digits
        queue = f"{self.name}.delay.{ms}"
        now = time.monotonic()
        if now - self._delay_declared.get(ms, -1e9) > 30.0:
            try:
                self._pub_ch.queue_declare(queue, durable=True, arguments={
                    "x-queue-type": "classic", "x-message-ttl": ms, "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.name, "x-expires": 2 * ms + 60_000})
            except _ERRORS as e:
                self._lost(e, f"declaring the delay queue {queue}")
                raise _Lost(str(e)) from None
            self._delay_declared[ms] = now
        self._delayed.append(ready_at)
        return queue
