"""The failed store of the RabbitMQ queue: the queue ``<name>.failed``, read and edited in place.

A kept job is a message of ``<name>.failed`` with the job's body and signed meta, plus its failure
record and when it failed; a message whose signature was missing or wrong is there too, untouched
(the broker dead-lettered it), and is listed without its body, which is never opened.  Listing,
retrying and purging by id read the whole queue on a channel of their own and ack what they take;
what they leave goes back, in its order, when that channel closes.
"""

from __future__ import annotations

import base64
import pickle
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pika.exceptions

from ..errors import Failure
from ..protocol import failure_record
from . import _amqp_envelope as env
from ._amqp_envelope import BrokerError, Lost
from .base import FailedJob, Job

_BROWSE_MAX = 100_000      # the most failed-store messages one listing reads
_ERRORS = (pika.exceptions.AMQPError, OSError, AssertionError)


class FailedStore:
    """``failed``, ``retry_failed`` and ``purge_failed`` of :class:`~honeydew.queues.rabbitmq.RabbitMQ`
    (a mixin: it uses the queue's connection, key and publishing)."""

    name: str
    url: str
    _key: bytes
    _conn: Any
    _pub_ch: Any
    _published: float

    if TYPE_CHECKING:  # (RabbitMQ's own)
        @property
        def failed_queue(self) -> str: ...
        def _reconnect(self) -> bool: ...
        def _lost(self, e: BaseException, doing: str) -> None: ...
        def _publish(self, items: Sequence[tuple[str, bytes, dict[str, Any], str]]) -> list[str]: ...
        def _job_item(self, job: Job, queue: str, d: int, failure: bytes = b"", at: float = 0.0,
                      reply_to: str | None = None) -> tuple[str, bytes, dict[str, Any], str]: ...

    def _browse(self, fn: Callable[[Any, list[tuple[int, FailedJob | None, Any, bytes]]], Any]) -> Any:
        """Read the whole failed store on a channel of its own (``fn(channel, entries)``); what
        ``fn`` does not ack goes back, in its order, when the channel closes."""
        if self._conn is None and not self._reconnect():
            raise BrokerError(f"the broker at {env.redact(self.url)} is unreachable: the failed store of queue "
                              f"{self.name!r} cannot be read now")
        try:
            ch = self._conn.channel()
        except _ERRORS as e:
            self._lost(e, "opening a channel")
            raise BrokerError(f"the connection to the broker was lost reading {self.failed_queue!r}") from None
        try:
            entries = []
            while len(entries) < _BROWSE_MAX:
                method, props, body = ch.basic_get(self.failed_queue, auto_ack=False)
                if method is None:
                    break
                entries.append((method.delivery_tag, self._failed_job(props, body), props, body))
            return fn(ch, entries)
        finally:
            try:
                ch.close()
            except _ERRORS:
                pass

    def _failed_job(self, props: Any, body: bytes) -> FailedJob | None:
        meta, why = env.open_envelope(self._key, props.headers, body, env.JOB, self.name)
        if meta is None:
            record = failure_record(Failure(
                kind=Failure.SERIALIZATION, type_name="honeydew.queues.rabbitmq.UnsignedMessage",
                message=f"message {props.message_id!r} of queue {self.name!r} has {why}: it was never opened "
                        f"(purge it with purge_failed)", traceback=""))
            at = float(props.timestamp or 0)
            return FailedJob(str(props.message_id or "<unsigned>"), b"", "", 0.0, record, 0, at)
        try:
            failure = tuple(pickle.loads(base64.b64decode(meta.get("x", "")))) if meta.get("x") else ()
        except Exception:
            failure = ()
        return FailedJob(str(meta["id"]), body, str(meta.get("o", "")), float(meta.get("t", 0.0)), failure,
                         int(meta.get("d", 0)), float(meta.get("at", 0.0)), int(meta.get("p", 0)),
                         str(meta.get("m", "")))

    def failed(self, limit: int = 100) -> list[FailedJob]:
        def listing(_ch: Any, entries: list[Any]) -> list[FailedJob]:
            return [f for _, f, _, _ in reversed(entries) if f is not None][:max(0, int(limit))]

        return self._browse(listing)  # type: ignore[no-any-return]

    def retry_failed(self, ids: Sequence[str] | None = None) -> int:
        chosen = None if ids is None else set(ids)

        def retry(ch: Any, entries: list[Any]) -> int:
            picked = []
            for tag, f, props, _body in entries:
                if f is None or not f.payload or (chosen is not None and f.id not in chosen):
                    continue
                meta, _ = env.open_envelope(self._key, props.headers, f.payload, env.JOB, self.name)
                job = Job(f.id, f.payload, f.origin, f.timeout, 0, 0, 0, f.priority, f.mode)
                picked.append((tag, self._job_item(job, self.name, 0, reply_to=str((meta or {}).get("r", "")))))
            if not picked:
                return 0
            try:
                outcomes = self._publish([item for _, item in picked])
            except Lost:
                raise BrokerError(f"the connection was lost retrying failed jobs of {self.name!r}; "
                                  f"nothing was removed from the failed store") from None
            moved = 0
            for (tag, _), outcome in zip(picked, outcomes, strict=True):
                if outcome == "ack":
                    ch.basic_ack(tag)
                    moved += 1
            self._published = time.monotonic()
            return moved

        return self._browse(retry)  # type: ignore[no-any-return]

    def purge_failed(self, ids: Sequence[str] | None = None) -> int:
        if ids is None:
            if self._conn is None and not self._reconnect():
                raise BrokerError(f"the broker at {env.redact(self.url)} is unreachable: nothing was purged")
            try:
                return int(self._pub_ch.queue_purge(self.failed_queue).method.message_count)
            except _ERRORS as e:
                self._lost(e, "purging the failed store")
                raise BrokerError(f"the connection was lost purging {self.failed_queue!r}") from None
        chosen = set(ids)

        def purge(ch: Any, entries: list[Any]) -> int:
            n = 0
            for tag, f, _, _ in entries:
                if f is not None and f.id in chosen:
                    ch.basic_ack(tag)
                    n += 1
            return n

        return self._browse(purge)  # type: ignore[no-any-return]
