"""What travels on the broker for :mod:`honeydew.queues.rabbitmq`: signed envelopes, read without unpickling.

Every message honeydew publishes carries, beside its body, two headers: ``x-honeydew`` (the
*meta*: a short JSON text naming the kind of message, the queue it belongs to, the job id, its
origin, its counts...) and ``x-honeydew-sig``, the HMAC-SHA256 of the meta and the body under the
signing key.  A message is opened (its meta read, its body unpickled by a worker or a caller) only
once :func:`open_envelope` has checked the signature; nothing else here unpickles anything.

:func:`names_a_task` tells, by reading the pickle's opcodes without running them, whether a job's
payload names a registered task (a string) or carries a callable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickletools
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import HoneydewError

META = "x-honeydew"
SIG = "x-honeydew-sig"
KEY_ENV = "HONEYDEW_SIGNING_KEY"

JOB = "job"
REPLY = "reply"


class BrokerError(HoneydewError):
    """The broker refused or could not take something (unreachable, a nack, an unroutable message,
    a queue declared with other arguments): the message says which queue and what to do."""


class Lost(Exception):
    """The connection went away in the middle of a call (internal to the RabbitMQ queue)."""


_NAMES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_SKIP = frozenset({"PROTO", "FRAME", "MARK", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})


def signing_key(key: bytes | str | None) -> bytes:
    """The key given, else ``$HONEYDEW_SIGNING_KEY``; a ``ValueError`` saying how to set one if neither is."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None:
        raise ValueError(f"the RabbitMQ queue signs every message and needs a signing key: pass "
                         f"RabbitMQ(url, name, signing_key='a long random secret') or set the environment variable "
                         f"{KEY_ENV}; every producer and worker node of the queue must use the same key "
                         f"(e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError(f"signing_key must be non-empty bytes or str, got {type(key).__name__}")
    return bytes(key)


def _mac(key: bytes, meta: str, body: bytes) -> str:
    return hmac.new(key, meta.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def seal(key: bytes, meta: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The headers that carry ``meta`` and the signature of (meta, body)."""
    text = json.dumps(meta, separators=(",", ":"), sort_keys=True)
    return {META: text, SIG: _mac(key, text, body)}


def open_envelope(key: bytes, headers: dict[str, Any] | None, body: bytes, kind: str,
                  queue: str) -> tuple[dict[str, Any] | None, str]:
    """``(meta, "")`` for a message signed with ``key`` of this ``kind`` for ``queue``; else
    ``(None, why)``.  Nothing is unpickled."""
    headers = headers or {}
    text, sig = headers.get(META), headers.get(SIG)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if isinstance(sig, bytes):
        sig = sig.decode("ascii", "replace")
    if not isinstance(text, str) or not isinstance(sig, str):
        return None, "no signature"
    if not hmac.compare_digest(_mac(key, text, body), sig):
        return None, "a wrong signature"
    try:
        meta = json.loads(text)
    except ValueError:
        return None, "unreadable signed headers"
    if not isinstance(meta, dict) or meta.get("k") != kind or meta.get("q") != queue:
        return None, f"a signature for another purpose (not a {kind} of queue {queue!r})"
    return meta, ""


def names_a_task(payload: bytes) -> bool:
    """Does the job payload ``(kind, task, ...)`` name its task (a registered task's name) rather
    than carry a callable?  Read from the pickle's opcodes; nothing is run."""
    values = 0
    try:
        for op, _arg, _pos in pickletools.genops(payload):
            if op.name in _SKIP:
                continue
            values += 1
            if values == 2:
                return op.name in _NAMES
    except Exception:
        return False
    return False


def redact(url: str) -> str:
    """The broker's address without user name or password: ``amqp://host:port/vhost``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<an unreadable AMQP URL>"
