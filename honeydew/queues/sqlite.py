"""The durable local backend: the queue contract on one SQLite file (stdlib ``sqlite3``, WAL).

``honeydew.Pool(queue=honeydew.queues.SQLite("jobs.db"))``: jobs outlive the queue process, the pool
and the machine's power; several pools, in several processes of one machine, share one file (each
job is reserved by exactly one owner); a job's outcome reaches its caller in whichever pool sent
it.  Delays are wall-clock stamps, so they survive restarts too.  One connection per queue
process, made in :meth:`SQLite.open`; nothing is shared between processes but the file.

Schema (``meta.schema`` = 1)::

    meta    (key PRIMARY KEY, value)                      -- schema version, creation stamp
    envs    (id PRIMARY KEY, python, cloudpickle)          -- who pickled a payload (see below)
    owners  (id PRIMARY KEY, pool, queue, gen, pid, pid_started, machine, lease_expires, started)
    jobs    (seq INTEGER PRIMARY KEY, id UNIQUE, payload, origin, timeout, priority, mode, ready_at,
             deliveries, failures, bounces, recoveries, env, owner)
            -- pending: owner IS NULL; ready: and ready_at = 0; delayed: ready_at > 0 (a stamp);
            -- reserved: owner = owners.id
            index jobs_ready   (priority DESC, seq)  WHERE owner IS NULL AND ready_at = 0
            index jobs_delayed (ready_at)            WHERE owner IS NULL AND ready_at > 0
            index jobs_owner   (owner)               WHERE owner IS NOT NULL
    failed  (seq PRIMARY KEY, id UNIQUE, payload, origin, timeout, priority, mode, env, failure,
             deliveries, failed_at)                         -- the failed store (``Move``)
    replies (seq PRIMARY KEY, origin, job_id, ok, value, partial, created)   index on origin
    gone    (pool PRIMARY KEY, at)                          -- pools that closed (their replies go)

Order.  ``seq`` is the rowid: a new job gets the largest one (the tail), a job nacked to the front
one less than the smallest.  ``reserve`` takes the first entry of ``jobs_ready``: highest priority,
then lowest ``seq``.  A delayed job waits in ``jobs_delayed``; once its time has come, the next
``reserve`` promotes it (``ready_at`` = 0, a new ``seq`` at the tail, in ``(ready_at, seq)``
order), so a busy queue's hot path stays one index probe.

Transactions and what each guarantees.  Every call is all or nothing: one transaction.  Two
levels: ``synchronous`` (``FULL`` by default: the WAL is fsynced at commit) for the transactions
that store jobs, and ``NORMAL`` for the others, which in WAL mode means: durable against the death
of any process (the commit is in the WAL, in the kernel's page cache), not against a power cut
until the next ``FULL`` commit or checkpoint, whose fsync covers every earlier commit too.  The
file is never corrupted either way.  (``synchronous="NORMAL"`` puts everything at ``NORMAL``.)

* At ``synchronous``: ``enqueue`` (a whole frame of jobs: one group commit; once it returns the
  jobs survive a power cut, which is what the caller's ``Stored`` promises), the caller's casts
  (below), ``cancel``, ``take_pending``, the failed store's ``retry``/``purge``, the recovery of
  dead owners, ``close``.
* At ``NORMAL``, with no fsync of their own: reservations, the promotion of due delayed jobs,
  ``ack``, ``nack``, ``give_up`` (to the failed store in the same transaction), lease renewals,
  taking replies.  A power cut can only undo their last few: a reservation or an ack undone leaves
  its job to run again (at least once, as always), a nack or a give-up undone leaves it reserved by
  an owner that is dead, so recovered; a reply taken again went to a caller that died with the
  machine.  All of them survive the death of the process (a SIGKILLed pool), which is what the
  recovery below counts on.
* An ``ack`` without replies writes nothing by itself: the finished jobs ride with the next
  transaction (a reservation, a store, the next tick, within ``poll_secs``).  A queue process
  killed before then runs those jobs again.

The caller's casts.  A ``cast`` does not go through the queue process: the caller's process
stores it itself, through :meth:`SQLite.producer` (one connection of its own), and returns once it
is on disk.  The casts of concurrent threads share a write: a thread that finds no write under way
writes every cast waiting then (after up to :data:`_GATHER` seconds for as many as the last write
carried); the commit is at ``NORMAL`` (the file's write lock is held for microseconds, not for an
fsync, so the queue processes' reservations and acks are not starved) and the log is fsynced just
after it, outside the lock, which makes the commit as durable as a ``FULL`` one.  The caller then
wakes a queue process; every queue process also finds such jobs by itself (``data_version``).

Reservations are claimed in batches: one transaction claims the jobs the workers have free
credits for (:meth:`~SQLite.hold`), plus ``claim_ahead`` more, into the queue process's *hand*;
``reserve`` hands them out one by one with no transaction (while the workers take whole claims,
each next claim is twice as big, up to :data:`_CLAIM_MAX`, until the next tick).  A claimed job is
reserved by this owner in the file (its delivery counted; no other pool can take it) and still
pending as far as this queue process's callers can tell (``len``, ``is_pending``, ``cancel``,
``status``); a new job of a higher priority sent through this queue process, or a nack, puts the
hand back first, and what the hand still holds at the next tick goes back to the line uncounted
(a cast of a higher priority stored by a caller waits behind one claim at most).  When the
workers are idle, ``enqueue`` claims in its own transaction: a call to an idle pool costs one
commit in all.  ``len()``, ``next_ready_in()``
and an empty ``reserve`` ask the file only when another connection has written to it since
(``PRAGMA data_version``): this process's own writes keep what it knows up to date.

Owners, leases, recovery.  ``open(owner)`` registers the queue process in ``owners``: its pid and
that process's start time, its ``machine`` (host name, boot id and pid namespace, so two containers
are never taken for one machine) and a lease (``lease_secs``, renewed every ``lease_secs/4`` by
:meth:`~SQLite.tick`).  An owner is dead when it is an earlier generation of the same (pool,
queue); when it is on this machine and its process is gone (no such pid, or the pid now belongs
to a process that started later); or when it is on another machine and its lease has lapsed.  A
live process on this machine is never taken for dead, not even one stopped for longer than its
lease.  ``open`` and every scan in ``tick`` (every ``min(1, lease_secs/4)`` s) give a dead owner's
reservations back, in one transaction: pending again at their old place, their delivery still
counted, and one more *recovery* counted (a claimed job in a dead owner's hand is counted as
well: it cannot be told from one a worker had started); a job recovered ``recovery_cap`` times
(its pool, or its queue process, died while holding it that many times) goes to the failed store
instead, with a ``JobLost`` failure saying so (its caller, if one waits, is told), so a job that
kills its whole pool cannot loop for ever.  Only its owner can ack or nack a reservation.  ``close`` gives the
owner's reservations back (counted, not as a recovery) and unregisters it.  An owner that finds
its own row gone (on another machine, its lease lapsed while it was stopped) registers again;
what it held has been given back.

Replies.  ``ack``/``give_up`` store the outcome of a job whose caller is in another pool; that
pool's queue process takes them in :meth:`~SQLite.take_replies` (after each ``tick``: every
``poll_secs``).  A pool whose last queue process closes is recorded in ``gone`` and its replies
are dropped; replies of a pool with no live owner (a killed pool) are dropped after
``reply_grace`` seconds, which is longer than a queue process takes to restart.

Versions.  A payload is a pickle made by one Python and one cloudpickle; each job row names them
(``env``).  A job reserved by a queue process of another Python (major.minor) or cloudpickle
version is not handed out: it goes to the failed store with a ``SerializationError`` naming both,
and can be retried from a pool of the versions that stored it.

Errors.  A full disk, a read-only file or directory, a file that is not a database (or a corrupt
one), a database locked by another program for longer than ``busy_timeout``: each is a
:class:`StoreError` (a :class:`~honeydew.errors.HoneydewError`) naming the path and what to do.
``open``, ``check``, ``enqueue`` (the caller's ``cast`` then raises), ``cancel``, ``take_pending``
and the failed store's calls raise it.  The writes of the queue process's loop do not kill it: a
refused ``ack``, ``nack`` or ``give_up`` is kept and written, in order, before the next write or at
the next tick (its jobs stay reserved meanwhile, and run again if the process dies); a refused
reservation, lease renewal or reply take is logged (every 10 s at most) and tried again.  No job
is dropped, and nothing waits for ever on the file.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import logging
import os
import pickle
import socket
import sqlite3
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import Failure, HoneydewError, SerializationError, qualname
from ..protocol import failure_record
from .base import OWN_MODE, FailedJob, Job, Owner, Producer, Queue, Reply

__all__ = ["SQLite", "StoreError"]

log = logging.getLogger("honeydew.queues.sqlite")

SCHEMA_VERSION = 1
_HEADER = b"SQLite format 3\x00"
_SYNC_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS envs (id INTEGER PRIMARY KEY, python TEXT NOT NULL, cloudpickle TEXT NOT NULL,
                                 UNIQUE (python, cloudpickle));
CREATE TABLE IF NOT EXISTS owners (id INTEGER PRIMARY KEY, pool TEXT NOT NULL, queue INTEGER NOT NULL,
                                   gen INTEGER NOT NULL, pid INTEGER NOT NULL, pid_started REAL NOT NULL,
                                   machine TEXT NOT NULL, lease_expires REAL NOT NULL, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload BLOB NOT NULL, origin TEXT NOT NULL,
    timeout REAL NOT NULL, priority INTEGER NOT NULL, mode TEXT NOT NULL, ready_at REAL NOT NULL,
    deliveries INTEGER NOT NULL, failures INTEGER NOT NULL, bounces INTEGER NOT NULL,
    recoveries INTEGER NOT NULL DEFAULT 0, env INTEGER NOT NULL, owner INTEGER);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (priority DESC, seq) WHERE owner IS NULL AND ready_at = 0;
CREATE INDEX IF NOT EXISTS jobs_delayed ON jobs (ready_at) WHERE owner IS NULL AND ready_at > 0;
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS failed (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload BLOB NOT NULL, origin TEXT NOT NULL,
    timeout REAL NOT NULL, priority INTEGER NOT NULL, mode TEXT NOT NULL, env INTEGER NOT NULL,
    failure BLOB NOT NULL, deliveries INTEGER NOT NULL, failed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS replies (seq INTEGER PRIMARY KEY, origin TEXT NOT NULL, job_id TEXT NOT NULL,
                                    ok INTEGER NOT NULL, value BLOB NOT NULL, partial BLOB NOT NULL,
                                    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS replies_origin ON replies (origin);
CREATE TABLE IF NOT EXISTS gone (pool TEXT PRIMARY KEY, at REAL NOT NULL);
"""

_JOB = "id, payload, origin, timeout, deliveries, failures, bounces, priority, mode"  # Job's positional order
_ENV, _SEQ = 9, 10  # (a claimed row: the Job's fields, then env and seq)

_INSERT = ("INSERT INTO jobs (id, payload, origin, timeout, priority, mode, ready_at, deliveries, failures, bounces, "
           "env) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")  # (an id it holds: skipped)
_CLAIM = ("UPDATE jobs SET owner = ?, deliveries = deliveries + 1 WHERE seq IN "
          "(SELECT seq FROM jobs WHERE owner IS NULL AND ready_at = 0 ORDER BY priority DESC, seq LIMIT ?) "
          f"RETURNING {_JOB}, env, seq")
_UNCLAIM = "UPDATE jobs SET owner = NULL, deliveries = deliveries - 1 WHERE seq = ? AND owner = ?"
_ACK = "DELETE FROM jobs WHERE id = ? AND owner = ?"
_REPLY = "INSERT INTO replies (origin, job_id, ok, value, partial, created) VALUES (?, ?, ?, ?, ?, ?)"
_NACK_TAIL = ("UPDATE jobs SET owner = NULL, seq = (SELECT MAX(seq) FROM jobs) + 1, ready_at = ?, deliveries = ?, "
              "failures = ?, bounces = ? WHERE id = ? AND owner = ?")
_NACK_FRONT = ("UPDATE jobs SET owner = NULL, seq = (SELECT MIN(seq) FROM jobs) - 1, ready_at = 0, deliveries = ?, "
               "failures = ?, bounces = ? WHERE id = ? AND owner = ?")
_NEXT_DUE = "SELECT MIN(ready_at) FROM jobs WHERE owner IS NULL AND ready_at > 0"
_ANY_READY = "SELECT 1 FROM jobs WHERE owner IS NULL AND ready_at = 0 LIMIT 1"
_TO_FAILED = ("INSERT OR REPLACE INTO failed (id, payload, origin, timeout, priority, mode, env, failure, deliveries, "
              "failed_at) SELECT id, payload, origin, timeout, priority, mode, env, ?, ?, ? FROM jobs WHERE seq = ?")

#: how many due delayed jobs one promotion moves to the ready line
_PROMOTE_BATCH = 1000
#: how long a write waits for the file's lock by yielding the CPU before it sleeps between tries
_SPIN_SECS = 0.0003
#: the most jobs one reservation transaction claims for the workers' free credits
_CLAIM_MAX = 64
#: the longest a caller's write of casts waits for the threads that cast with it last time
_GATHER = 0.0003
#: tombstones of closed pools are kept this long (a late reply to such a pool is dropped meanwhile)
_GONE_KEEP = 86400.0

# SQLite's primary result codes (sqlite3.h)
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 5, 6, 8, 10, 11, 13, 14, 26

_SERIALIZATION_MRO = tuple(qualname(k) for k in SerializationError.__mro__)

T = TypeVar("T")


class StoreError(HoneydewError):
    """The SQLite queue's file cannot be used (full disk, read-only, not a database, locked by
    another program...): the message names the file and what to do.  ``path`` is the file."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (StoreError, (self.args[0], self.path))


def _process_started(pid: int) -> float:
    """When process ``pid`` started (psutil's stamp, stable for a process's life); 0 if unknown."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return 0.0


def _alive(pid: int, started: float) -> bool:
    """Is the process that registered (``pid``, which started at ``started``) still there?  A
    zombie is not, nor is a pid now used by another process (one that started at another time)."""
    import psutil

    try:
        p = psutil.Process(pid)
        if started and abs(p.create_time() - started) > 0.05:
            return False
        return bool(p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OSError):
        return True  # (not ours to read: it exists)


def _machine() -> str:
    """This machine as owners record it: host name, boot id and pid namespace (a pid is only
    meaningful to a process that shares all three)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return f"{socket.gethostname()}/{boot}/{ns}"


def _versions() -> tuple[str, str]:
    """(Python major.minor, cloudpickle version): what a payload's pickle depends on."""
    import cloudpickle

    return f"{sys.version_info[0]}.{sys.version_info[1]}", str(getattr(cloudpickle, "__version__", "?"))


def _code(e: BaseException) -> int | None:
    """SQLite's primary result code of ``e`` (Python >= 3.11 carries it; else guessed from the text)."""
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(e).lower()
    for needle, guess in (("locked", _BUSY), ("busy", _BUSY), ("readonly", _READONLY), ("read-only", _READONLY),
                          ("disk is full", _FULL), ("not a database", _NOTADB), ("malformed", _CORRUPT),
                          ("unable to open", _CANTOPEN), ("disk i/o", _IOERR)):
        if needle in text:
            return guess
    return None


def _busy(e: BaseException) -> bool:
    return isinstance(e, sqlite3.OperationalError) and _code(e) in (_BUSY, _LOCKED)


def _transaction(db: sqlite3.Connection, work: Callable[[], T]) -> T:
    """``work()`` in one write transaction on ``db`` (``BEGIN IMMEDIATE`` ... ``COMMIT``), rolled
    back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise
    return result


def _blob(value: Any) -> bytes:
    """A reply's value as stored: the pickled result as is, a failure record pickled."""
    return value if isinstance(value, bytes) else pickle.dumps(tuple(value), protocol=pickle.HIGHEST_PROTOCOL)


#: a signed blob: this prefix (a pickle never starts with a zero byte), its HMAC-SHA256, the blob
_SIGNED = b"\x00hd-sig1"
_MAC = 32
#: the environment variable that gives a signing key when none is passed (shared by every store)
KEY_ENV = "HONEYDEW_SIGNING_KEY"


def _unreadable(message: str) -> Failure:
    """The failure of a job (or record) that must not be unpickled here."""
    return Failure(kind=Failure.SERIALIZATION, type_name=qualname(SerializationError), message=message,
                   traceback="", mro=_SERIALIZATION_MRO)


def _key(key: bytes | str | None) -> bytes | None:
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError(f"signing_key must be non-empty bytes or str, got {type(key).__name__}; e.g. "
                         f"SQLite('jobs.db', signing_key=os.environ['MY_SECRET'])")
    return bytes(key)


def _seal(key: bytes | None, blob: bytes) -> bytes:
    """``blob`` as stored: signed with ``key`` (as is without one)."""
    if key is None:
        return blob
    return _SIGNED + hmac.new(key, blob, hashlib.sha256).digest() + blob


def _unseal(key: bytes | None, stored: bytes) -> bytes | None:
    """The blob ``stored`` carries, or ``None`` when a key is set and its signature is missing or
    wrong (it must not be unpickled).  Without a key a signed blob is taken as it is."""
    stored = bytes(stored)
    signed = stored.startswith(_SIGNED)
    blob = stored[len(_SIGNED) + _MAC:] if signed else stored
    if key is None:
        return blob
    if not signed or not hmac.compare_digest(stored[len(_SIGNED):len(_SIGNED) + _MAC],
                                              hmac.new(key, blob, hashlib.sha256).digest()):
        return None
    return blob


def _seal_mode(key: bytes | None, mode: str) -> str:
    """A job's ``mode`` as stored: a failure mode of the job's own (a pickle, which the queue
    process unpickles when the job fails) signed with ``key``, as a payload is; anything else
    (a task's name, '') as it is."""
    if key is None or not mode or not mode.startswith(OWN_MODE):
        return mode
    try:
        blob = base64.b64decode(mode[len(OWN_MODE):], validate=True)
    except (binascii.Error, ValueError):
        return mode  # (not one: stored unsigned, so never read back)
    return OWN_MODE + base64.b64encode(_seal(key, blob)).decode("ascii")


def _job_row(key: bytes | None, job: Job, ready_at: float) -> tuple[Any, ...]:
    """A new job as ``_INSERT`` stores it (its payload and its own failure mode signed with
    ``key``), but for the interpreter's versions (``env``), which the writer adds."""
    return (job.id, _seal(key, job.payload), job.origin, job.timeout, job.priority, _seal_mode(key, job.mode),
            ready_at, job.deliveries, job.failures, job.bounces)


def _unseal_mode(key: bytes | None, stored: str) -> str | None:
    """The job's own failure mode that ``stored`` (see :func:`_seal_mode`) carries, as its key;
    ``None`` when a key is set and its signature is missing or wrong (it must not be unpickled)."""
    try:
        blob = _unseal(key, base64.b64decode(stored[len(OWN_MODE):], validate=True))
    except (binascii.Error, ValueError):
        return None if key is not None else stored  # (without a key: the queue process says it is unreadable)
    return None if blob is None else OWN_MODE + base64.b64encode(blob).decode("ascii")


class SQLite(Queue):
    """The durable queue on one SQLite file (WAL), shared by every pool that opens it.

    ``SQLite(path, *, synchronous="FULL", lease_secs=10.0, busy_timeout=10.0, poll_secs=0.02,
    recovery_cap=5, reply_grace=60.0, claim_ahead=8, signing_key=None)``

    * ``synchronous``: the SQLite level of the transactions that store or end a job (``FULL``:
      a stored job survives a power cut; ``NORMAL``: it survives any process's death, and the
      last commits before a power cut may be lost; ``OFF``: faster still, and a power cut may
      corrupt the file).  Reservations never wait for an fsync of their own (see the module).
    * ``lease_secs``: an owner on another machine that has not renewed its lease for this long is
      dead (on this machine, a dead owner's process is seen gone within a second).
    * ``busy_timeout``: how long a call waits for a database locked by another program (or pool)
      before it raises :class:`StoreError`.
    * ``poll_secs``: how often :meth:`tick` asks to be called, which is how soon a reply to this
      pool's callers from a job another pool ran is noticed.
    * ``recovery_cap``: a job whose owner died while holding it this many times goes to the failed
      store (``JobLost``) instead of pending again (the pool may set it from its failure mode).
    * ``reply_grace``: seconds a reply waits for a pool that has no live queue process.
    * ``signing_key`` (default ``$HONEYDEW_SIGNING_KEY``): sign every payload, reply and failure
      record written to the file, and a job's own failure mode (HMAC-SHA256), and check each
      before it is unpickled; one that is not signed with the key is never read (a job goes to the
      failed store, a reply is dropped, a job's own failure mode gives way to the pool's).
      Without a key the file is trusted as the user's own: a file or directory any user may write
      is refused (whoever writes a job makes the workers run it).

    The object pickles by value (its path and options): the connection is made by :meth:`open` in
    the queue process.  :meth:`check` is for the caller, at ``Pool(...)`` time: it fails fast, with
    a :class:`StoreError` saying what to do, on a path that cannot work (a missing or read-only
    directory, a read-only file, a file that is not a database or not a honeydew queue, a database
    locked for longer than ``busy_timeout``); it makes the file and its tables if they do not
    exist, and leaves no connection open.  It costs one connection and a few reads (a few ms).
    """

    durable: ClassVar[bool] = True
    lacks: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL", lease_secs: float = 10.0,
                 busy_timeout: float = 10.0, poll_secs: float = 0.02, recovery_cap: int = 5,
                 reply_grace: float = 60.0, claim_ahead: int = 8,
                 signing_key: bytes | str | None = None) -> None:
        level = str(synchronous).upper()
        if level not in _SYNC_LEVELS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNC_LEVELS)}, got {synchronous!r}; "
                             f"e.g. SQLite('jobs.db', synchronous='FULL')")
        for name, value in (("lease_secs", lease_secs), ("busy_timeout", busy_timeout), ("poll_secs", poll_secs),
                            ("reply_grace", reply_grace)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        if isinstance(recovery_cap, bool) or not isinstance(recovery_cap, int) or recovery_cap < 1:
            raise ValueError(f"recovery_cap must be an int >= 1, got {recovery_cap!r}")
        if isinstance(claim_ahead, bool) or not isinstance(claim_ahead, int) or claim_ahead < 0:
            raise ValueError(f"claim_ahead must be an int >= 0, got {claim_ahead!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.synchronous = level
        self.lease_secs = float(lease_secs)
        self.busy_timeout = float(busy_timeout)
        self.poll_secs = float(poll_secs)
        self.recovery_cap = recovery_cap
        self.reply_grace = float(reply_grace)
        self.claim_ahead = claim_ahead
        self._key = _key(signing_key)
        self._reset()

    def _reset(self) -> None:
        """The state of an unopened backend (also what unpickling gives)."""
        self._db: sqlite3.Connection | None = None
        self.owner: Owner | None = None
        self._oid = 0                       # our row in owners
        self._env = 0                       # our row in envs
        self._versions = ("", "")
        self._machine = ""
        self._pid_started = 0.0
        self._deferred: list[tuple[str, Callable[[sqlite3.Connection], Any]]] = []  # writes to retry, in order
        self._acks: list[tuple[str, int]] = []   # acked, not yet written: they ride with the next transaction
        self._hand: deque[tuple[Any, ...]] = deque()  # claimed (reserved here, counted), not yet handed out
        self._out: set[str] = set()          # handed out, not yet acked, nacked or given up
        self._held = 0                       # hold(): the jobs our workers can take, running ones included
        self._popped = False                 # a reservation was taken from the hand since the last tick
        self._claim_more = self.claim_ahead  # claimed beyond the free credits (see _ahead)
        self._paused = False                 # the file is suspended (set_suspended): reserve nothing
        self._paused_dv = -1                 # ... as read at this data_version
        self._paused_seen = 0                # the last suspension we said we saw
        # what we know without asking, valid while no other connection has committed (data_version)
        self._count: int | None = None       # pending jobs in the file (the hand not included)
        self._count_dv = -1
        self._due_dv = -1                    # _due is exact at this data_version (-1: not known)
        self._none_ready_dv = -1             # no job was ready at this data_version (-1: not known)
        self._delta = 0                      # pending jobs added by the transaction being written
        self._blocked_until = 0.0           # monotonic: no reservation before (the file refused a write)
        self._complained: dict[str, float] = {}  # what was last logged when (monotonic)
        self._due = float("inf")            # the earliest delayed job (may be early, never late)
        self._next_lease = 0.0              # monotonic: when tick renews the lease next
        self._next_scan = 0.0               # monotonic: when tick looks for dead owners next
        # the level of the transactions that store or end jobs, and of the others
        self._light = "NORMAL" if self.synchronous in ("FULL", "EXTRA") else self.synchronous
        self._toggle = self.synchronous != self._light

    def __repr__(self) -> str:
        return f"SQLite({self.path!r})"

    def _sealed(self, value: Any) -> bytes:
        """A reply's value or a failure record as stored (signed when there is a key)."""
        return _seal(self._key, _blob(value))

    def _record(self, stored: bytes, what: str) -> tuple[Any, ...]:
        """A stored failure record, read back; one that is not signed as it must be is replaced by
        a record saying so (it is never unpickled)."""
        blob = _unseal(self._key, stored)
        if blob is None:
            log.warning("%r: %s is not signed with this pool's signing key: not read", self, what)
            return tuple(_unreadable(f"{what} is not signed with this pool's signing key (not read)"))
        return tuple(pickle.loads(blob))

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "synchronous": self.synchronous, "lease_secs": self.lease_secs,
                "busy_timeout": self.busy_timeout, "poll_secs": self.poll_secs, "recovery_cap": self.recovery_cap,
                "reply_grace": self.reply_grace, "claim_ahead": self.claim_ahead, "_key": self._key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # ------------------------------------------------------------------ connection, errors, retries

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self!r} is not open: open() is called in the queue process first", self.path)
        return self._db

    def check(self) -> None:
        """Fail fast on a path that cannot work (see the class docstring).  Cheap; for the caller."""
        path = Path(self.path)
        directory = path.parent
        if not directory.is_dir():
            raise StoreError(f"the queue's directory {str(directory)!r} does not exist (queue file {self.path!r}): "
                             f"create it, or give SQLite() a path in an existing directory", self.path)
        if path.exists():
            if not path.is_file():
                raise StoreError(f"the queue file {self.path!r} is not a regular file: give SQLite() the path of a "
                                 f"file (it is created if missing)", self.path)
            try:
                with open(path, "rb") as f:
                    head = f.read(len(_HEADER))
            except OSError as e:
                raise StoreError(f"cannot read the queue file {self.path!r} ({e}): make it readable and writable by "
                                 f"this user", self.path) from e
            if head and head != _HEADER[:len(head)] or 0 < len(head) < len(_HEADER):
                raise self._not_a_database(f"its first bytes are {head[:16]!r}, not SQLite's header")
            if not os.access(path, os.R_OK | os.W_OK):
                raise self._read_only(f"{self.path!r} is not writable by this user")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise self._read_only(f"its directory {str(directory)!r} is not writable by this user")
        db = self._connect()
        db.close()
        self._check_permissions()

    def _check_permissions(self) -> None:
        """Whoever can write the file can make the workers run code of theirs (a job is a pickle).
        Without a signing key, a file or directory that anyone may write is refused, and one its
        group may write is logged; with a key, a job not signed with it is never unpickled."""
        if self._key is not None:
            return
        for what in (self.path, os.path.dirname(self.path)):
            try:
                mode = os.stat(what).st_mode
            except OSError:
                continue
            if mode & stat.S_IWOTH and not (os.path.isdir(what) and mode & stat.S_ISVTX):
                raise StoreError(f"{what!r} may be written by any user, and whoever writes the queue file can run "
                                 f"code in its workers: chmod o-w {what!r}, or sign the jobs: SQLite({self.path!r}, "
                                 f"signing_key=...) (or ${KEY_ENV}) in every program that uses the file", self.path)
            if mode & stat.S_IWGRP and not os.path.isdir(what):
                log.warning("%r: %s may be written by its group, whose members can then run code in the workers: "
                            "chmod g-w it, or give SQLite(signing_key=...)", self, what)

    def _connect(self) -> sqlite3.Connection:
        """Connect, switch to WAL, make or check the schema; the connection at the light level."""
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=0.0, check_same_thread=False,
                                 cached_statements=64)
        except sqlite3.Error as e:
            raise self._error(e, "opening it") from e
        try:
            self._retry(lambda: self._setup(db), "setting it up")
        except BaseException:
            db.close()
            raise
        return db

    def _setup(self, db: sqlite3.Connection) -> None:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the queue file {self.path!r} cannot be switched to WAL mode (it stays {mode!r}): "
                             f"it must be on a local file system that supports shared memory", self.path)
        db.execute(f"PRAGMA synchronous={self._light}")
        db.execute("PRAGMA journal_size_limit=67108864")
        db.execute("PRAGMA foreign_keys=OFF")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise self._not_a_database(f"it is an SQLite database of something else (tables {sorted(tables)[:5]})")
        if "jobs" not in tables or "gone" not in tables:
            def create() -> None:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (repr(time.time()),))

            self._sync(db, True)
            try:
                _transaction(db, create)
            finally:
                self._sync(db, False)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            raise self._not_a_database("it has a meta table but no honeydew schema version")
        if int(row[0]) > SCHEMA_VERSION:
            raise StoreError(f"the queue file {self.path!r} was made by a newer honeydew (schema {row[0]}, this one "
                             f"reads {SCHEMA_VERSION}): upgrade honeydew here, or use another file", self.path)

    def _sync(self, db: sqlite3.Connection, durable: bool) -> None:
        if self._toggle:
            db.execute(f"PRAGMA synchronous={self.synchronous if durable else self._light}")

    def _retry(self, fn: Callable[[], T], doing: str) -> T:
        """Run ``fn`` (one statement or one transaction, safe to run again), waiting out a database
        that another connection holds locked, up to ``busy_timeout``."""
        started = 0.0
        pause = 0.00005
        while True:
            try:
                return fn()
            except sqlite3.Error as e:
                if not _busy(e):
                    raise self._error(e, doing) from e
                now = time.monotonic()
                if not started:
                    started = now
                elif now - started >= self.busy_timeout:
                    raise self._error(e, doing) from e
                if now - started < _SPIN_SECS:
                    # another pool process holds the lock for one commit, tens of microseconds (no
                    # fsync under it): give up the CPU and try again, rather than sleep, which the
                    # kernel's timer slack stretches to 100 us or more
                    os.sched_yield()
                    continue
                time.sleep(pause)
                pause = min(pause * 2, 0.01)

    def _tx(self, body: Callable[[sqlite3.Connection], T], doing: str, durable: bool = True) -> T:
        """``body(db)`` in one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), at the durable
        level (``synchronous``) or the light one.  The acks kept since the last one ride with it."""
        db = self.db
        acks = self._acks
        hand = list(self._hand)

        def work() -> T:
            if acks:
                db.executemany(_ACK, acks)
            return body(db)

        def run() -> T:
            self._delta = 0
            try:
                return _transaction(db, work)
            except BaseException:
                # what the body did in memory goes with the transaction: the hand as it was, and
                # what it learnt of the delayed jobs is asked again
                self._hand.clear()
                self._hand.extend(hand)
                self._due_dv = -1
                raise

        if durable and self._toggle:
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            try:
                result = self._retry(run, doing)
            finally:
                db.execute(f"PRAGMA synchronous={self._light}")
        else:
            result = self._retry(run, doing)
        if acks:
            self._acks = []
        if self._delta and self._count is not None:
            self._count += self._delta
        self._none_ready_dv = -1
        return result

    def _one(self, sql: str, params: Sequence[Any], doing: str) -> list[Any]:
        """One read; every row it returns."""
        db = self.db
        return self._retry(lambda: db.execute(sql, params).fetchall(), doing)

    def _error(self, e: BaseException, doing: str) -> StoreError:
        code = _code(e)
        path = self.path
        if code == _FULL or getattr(e, "errno", None) == errno.ENOSPC:
            return StoreError(f"the disk holding the queue file {path!r} is full ({e}) while {doing}: nothing of "
                              f"this call was stored; free some space there, or move the queue to another disk",
                              path)
        if code in (_READONLY, _PERM):
            return self._read_only(f"{e} while {doing}")
        if code == _CANTOPEN:
            return StoreError(f"cannot open the queue file {path!r} ({e}) while {doing}: its directory must exist "
                              f"and be writable by this user (SQLite also makes {path}-wal and {path}-shm beside it)",
                              path)
        if code in (_NOTADB, _CORRUPT):
            return self._not_a_database(f"{e}, while {doing}")
        if code in (_BUSY, _LOCKED):
            return StoreError(f"the queue file {path!r} stayed locked by another connection for more than "
                              f"busy_timeout={self.busy_timeout:g}s while {doing} ({e}): find the program that holds "
                              f"it (e.g. `fuser {path}`), or raise SQLite(busy_timeout=...)", path)
        if code == _IOERR:
            return StoreError(f"I/O error on the queue file {path!r} while {doing} ({e}): check the disk (a full "
                              f"disk or a file size limit shows this way too)", path)
        return StoreError(f"SQLite error on the queue file {path!r} while {doing}: {type(e).__name__}: {e}", path)

    def _read_only(self, why: str) -> StoreError:
        return StoreError(f"the queue file {self.path!r} cannot be written ({why}): make the file and its directory "
                          f"writable by this user (SQLite also writes {self.path}-wal and {self.path}-shm beside it), "
                          f"or give SQLite() another path", self.path)

    def _not_a_database(self, why: str) -> StoreError:
        return StoreError(f"the queue file {self.path!r} is not a honeydew queue database, or it is corrupt ({why}): "
                          f"move it away (a new queue starts in its place) or give SQLite() another path", self.path)

    # ------------------------------------------------------------------ open / close

    def open(self, owner: Owner) -> None:
        if self._db is not None:
            raise StoreError(f"{self!r} is already open (as {self.owner})", self.path)
        self._db = self._connect()
        try:
            self._check_permissions()
        except StoreError:
            self._db.close()
            self._db = None
            raise
        self.owner = owner
        self._machine = _machine()
        self._pid_started = _process_started(owner.pid)
        self._versions = _versions()
        try:
            self._env = self._retry(self._env_id, "registering this interpreter's versions")
            self._tx(self._register, "registering its queue process")
        except BaseException:
            self._db.close()
            self._db = None
            raise
        self._forget()
        now = time.monotonic()
        self._next_lease = now + self.lease_secs / 4
        self._next_scan = now + self._scan_every()

    def _env_id(self) -> int:
        db = self.db
        python, cp = self._versions
        row = db.execute("SELECT id FROM envs WHERE python = ? AND cloudpickle = ?", (python, cp)).fetchone()
        if row is None:
            db.execute("INSERT OR IGNORE INTO envs (python, cloudpickle) VALUES (?, ?)", (python, cp))
            row = db.execute("SELECT id FROM envs WHERE python = ? AND cloudpickle = ?", (python, cp)).fetchone()
        return int(row[0])

    def _register(self, db: sqlite3.Connection) -> None:
        owner = self.owner
        assert owner is not None
        now = time.time()
        cur = db.execute("INSERT INTO owners (pool, queue, gen, pid, pid_started, machine, lease_expires, started) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (owner.pool, owner.queue, owner.generation, owner.pid, self._pid_started, self._machine,
                          now + self.lease_secs, now))
        assert cur.lastrowid is not None
        self._oid = cur.lastrowid
        if db.execute("DELETE FROM gone WHERE pool = ?", (owner.pool,)).rowcount:
            # this pool's token closed before: what was left for it is stale
            db.execute("DELETE FROM replies WHERE origin = ?", (owner.pool,))
        db.execute("DELETE FROM gone WHERE at < ?", (now - _GONE_KEEP,))
        self._recover(db, self._dead_owners(db, now))
        self._sweep_replies(db, now)

    def close(self) -> None:
        if self._db is None:
            return
        # closing because the queue process is failing (an exception on its way out): it will be
        # restarted, so what other pools sent its callers stays for the next generation
        final = sys.exc_info()[0] is None
        try:
            self._flush_deferred()
            self._tx(lambda db: self._unregister(db, final), "closing")
        except StoreError as e:
            log.warning("%r: could not give back this queue's reservations at close (the next open does): %s",
                        self, e)
        finally:
            db, self._db = self._db, None
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _unregister(self, db: sqlite3.Connection, final: bool = True) -> None:
        assert self.owner is not None
        self._forget()
        self._release(db)
        db.execute("UPDATE jobs SET owner = NULL WHERE owner = ?", (self._oid,))
        db.execute("DELETE FROM owners WHERE id = ?", (self._oid,))
        db.execute("DELETE FROM meta WHERE key = ?", (f"seen:{self._oid}",))
        pool = self.owner.pool
        if final and db.execute("SELECT 1 FROM owners WHERE pool = ? LIMIT 1", (pool,)).fetchone() is None:
            db.execute("INSERT OR REPLACE INTO gone VALUES (?, ?)", (pool, time.time()))
            db.execute("DELETE FROM replies WHERE origin = ?", (pool,))

    # ------------------------------------------------------------------ owners: leases and recovery

    def _scan_every(self) -> float:
        return min(1.0, self.lease_secs / 4)

    def _dead_owners(self, db: sqlite3.Connection, now: float) -> list[tuple[int, str]]:
        """(id, why) of every owner row but ours that is dead: an earlier generation of our own
        queue; on this machine, one whose process is gone; elsewhere, one whose lease lapsed."""
        me = self.owner
        assert me is not None
        dead = []
        for oid, pool, queue, gen, pid, pid_started, machine, lease in db.execute(
                "SELECT id, pool, queue, gen, pid, pid_started, machine, lease_expires FROM owners WHERE id != ?",
                (self._oid,)):
            if pool == me.pool and queue == me.queue and gen < me.generation:
                dead.append((oid, f"queue {queue} of pool {pool} restarted (generation {gen} -> {me.generation})"))
            elif machine == self._machine:
                if not _alive(pid, pid_started):
                    dead.append((oid, f"its process (pid {pid}, queue {queue} of pool {pool}) is gone"))
            elif lease < now:
                dead.append((oid, f"queue {queue} of pool {pool} (pid {pid} on {machine.split('/')[0]}) has not "
                                  f"renewed its lease for {now - lease + self.lease_secs:.1f}s"))
        return dead

    def _recover(self, db: sqlite3.Connection, dead: list[tuple[int, str]]) -> None:
        """Give back the reservations of dead owners (in a transaction): pending again, one more
        recovery counted; those recovered ``recovery_cap`` times go to the failed store."""
        cap = self.recovery_cap
        for oid, why in dead:
            if not db.execute("DELETE FROM owners WHERE id = ?", (oid,)).rowcount:
                continue  # another owner recovered it first
            rows = db.execute("UPDATE jobs SET owner = NULL, recoveries = recoveries + 1 WHERE owner = ? "
                              "RETURNING seq, id, origin, deliveries, recoveries", (oid,)).fetchall()
            if not rows:
                continue
            capped = [r for r in rows if r[4] >= cap]
            self._forget()
            log.warning("%r: %s: %d job(s) it held are pending again%s", self, why, len(rows) - len(capped),
                        f", {len(capped)} moved to the failed store (recovered {cap} times)" if capped else "")
            now = time.time()
            for seq, job_id, origin, deliveries, recoveries in capped:
                failure = Failure.lost(
                    f"job {job_id} was given up: the pool (queue process) that held it died while running it "
                    f"{recoveries} times (recovery_cap={cap}), the last time because {why}; it is kept in the failed "
                    f"store of {self.path} (pool.failed(), pool.retry_failed())")
                self._to_failed(db, seq, job_id, origin, failure_record(failure), deliveries, now)

    def _to_failed(self, db: sqlite3.Connection, seq: int, job_id: str, origin: str, record: tuple[Any, ...],
                   deliveries: int, now: float) -> None:
        """Move job ``seq`` to the failed store and tell its caller, if one waits (in a transaction)."""
        blob = self._sealed(record)
        db.execute(_TO_FAILED, (blob, deliveries, now, seq))
        db.execute("DELETE FROM jobs WHERE seq = ?", (seq,))
        if origin:
            db.execute(_REPLY, (origin, job_id, 0, blob, b"", now))

    def _sweep_replies(self, db: sqlite3.Connection, now: float) -> None:
        """Drop the replies of pools that closed, and of pools with no live owner for ``reply_grace``."""
        db.execute("DELETE FROM replies WHERE origin IN (SELECT pool FROM gone) OR "
                   "(created < ? AND origin NOT IN (SELECT pool FROM owners))", (now - self.reply_grace,))

    def tick(self, now: float) -> float | None:
        """Write what was kept for later, renew the lease, give back dead owners' reservations,
        notice delayed jobs other pools stored; call again within ``poll_secs`` (replies are taken
        right after).  Leases use the wall clock, whatever ``now`` says.  A file that refuses a
        write is logged, not raised: the next tick tries again."""
        mono = time.monotonic()
        try:
            if self._deferred:
                self._flush_deferred()
            if self._hand and not self._popped:  # (claims nobody took since the last tick: back to the line)
                self._tx(self._release, "giving back unused claims", durable=False)
            elif self._acks:
                self._tx(lambda db: None, "acking", durable=False)
            self._popped = False
            self._claim_more = self.claim_ahead
            self._check_paused()
            if mono >= self._next_lease:
                self._next_lease = mono + self.lease_secs / 4
                self._renew()
            if mono >= self._next_scan:
                self._next_scan = mono + self._scan_every()
                self._scan()
            self._retry(self._delayed, "looking for delayed jobs")  # (notices one another pool stored)
        except StoreError as e:
            self._refused(e, "the periodic work (lease, recovery)")
        return min(self.poll_secs, max(0.0, min(self._next_lease, self._next_scan) - mono))

    def _renew(self) -> None:
        assert self.owner is not None
        now = time.time()

        def body(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE owners SET lease_expires = ? WHERE id = ?", (now + self.lease_secs, self._oid))
            if cur.rowcount:
                return True
            self._register(db)  # taken for dead (stopped longer than the lease): what we held was given back
            return False

        if not self._tx(body, "renewing its lease", durable=False):
            log.warning("%r: queue %d of pool %s had been taken for dead (no lease renewal for %gs): registered "
                        "again; the jobs it held were given back", self, self.owner.queue, self.owner.pool,
                        self.lease_secs)

    def _scan(self) -> None:
        now = time.time()
        db = self.db
        dead = self._retry(lambda: self._dead_owners(db, now), "looking for dead owners")
        stale = self._retry(lambda: db.execute(
            "SELECT 1 FROM replies WHERE origin IN (SELECT pool FROM gone) OR "
            "(created < ? AND origin NOT IN (SELECT pool FROM owners)) LIMIT 1",
            (now - self.reply_grace,)).fetchone(), "looking for stale replies")
        if not dead and stale is None:
            return

        def body(db: sqlite3.Connection) -> None:
            self._recover(db, self._dead_owners(db, now))  # (again, under the lock: still dead?)
            self._sweep_replies(db, now)

        self._tx(body, "giving back the jobs of dead owners")

    # ------------------------------------------------------------------ the queue

    def _forget(self) -> None:
        """Ask the file again for the pending count and the earliest delayed job."""
        self._count = None
        self._due_dv = -1
        self._due = 0.0

    def _dv(self) -> int:
        """The file's ``data_version``: it changes when another connection commits."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def _delayed(self, dv: int | None = None) -> float:
        """The earliest delayed job's ready time (inf: none), asked of the file only when another
        connection has written since we last knew (``dv``: the ``data_version`` just read, if any)."""
        if dv is None:
            dv = self._dv()
        if dv != self._due_dv:
            first = self.db.execute(_NEXT_DUE).fetchone()[0]
            self._due = float("inf") if first is None else float(first)
            self._due_dv = dv
        return self._due

    def _any_ready(self, dv: int) -> bool:
        """Is a job ready?  Asked of the file only when someone wrote to it since it said no."""
        if dv == self._none_ready_dv:
            return False
        if self.db.execute(_ANY_READY).fetchone():
            return True
        self._none_ready_dv = dv
        return False

    def _pending(self) -> int:
        """Pending jobs in the file (the hand not included), counted only when another connection
        has written since we last knew: our own writes keep the count up to date."""
        dv = self._dv()
        if self._count is None or dv != self._count_dv:
            self._count = int(self.db.execute("SELECT COUNT(*) FROM jobs WHERE owner IS NULL").fetchone()[0])
            self._count_dv = dv
        return self._count

    def enqueue(self, jobs: Sequence[Job], ready_at: float = 0.0) -> None:
        """One transaction at ``synchronous`` for the batch.  When our workers have free credits
        (:meth:`hold`), the same transaction claims the jobs they will take next (see ``reserve``),
        so a job cast to an idle pool costs one commit in all."""
        if not jobs:
            return
        env = self._env
        ready_at = float(ready_at) if ready_at and ready_at > 0 else 0.0
        key = self._key
        rows = [(*_job_row(key, j, ready_at), env) for j in jobs]
        top = max(j.priority for j in jobs)
        inserted = [0]

        def body(db: sqlite3.Connection) -> None:
            inserted[0] = db.executemany(_INSERT, rows).rowcount
            self._delta += inserted[0]
            if ready_at:
                return
            if self._hand and top > min(row[7] for row in self._hand):
                self._release(db)  # (the new jobs come first: claim again)
            free = self._free()
            if free > len(self._hand):  # (idle workers: what they take next rides with this commit)
                self._claim(db, free + self._ahead() - len(self._hand))

        self._tx(body, f"storing {len(rows)} job(s)")
        if ready_at:
            if inserted[0] == len(rows):
                self._due = min(self._due, ready_at)
            else:
                self._due_dv = -1  # (an id we already held was not stored again)

    def hold(self, jobs: int) -> None:
        self._held = jobs

    # ------------------------------------------------------------------ suspending the whole file

    def set_suspended(self, suspended: bool, wait: float | None = None) -> list[str]:
        """Suspend (or resume) every pool on the file: while suspended no queue process reserves
        a job (running jobs finish; a pool that closes leaves its jobs in the file).  In force when
        it returns: it waits (up to ``wait`` seconds; default ``max(2, 10 * poll_secs)``) until each
        live queue process on the file has seen it and given its unstarted claims back, and
        returns the owners that did not in time (``pool/queue`` names; a stopped process, say).
        Resuming waits for nobody.  Usable on a backend that is not open (the command line)."""
        db = self._db if self._db is not None else self._connect()
        try:
            def body(d: sqlite3.Connection) -> int:
                if not suspended:
                    d.execute("DELETE FROM meta WHERE key = 'suspended'")
                    return 0
                now = d.execute("SELECT value FROM meta WHERE key = 'suspended'").fetchone()
                if now is not None:
                    return int(now[0])  # (suspended already: wait for the same confirmations)
                row = d.execute("SELECT value FROM meta WHERE key = 'suspend_seq'").fetchone()
                seq = (int(row[0]) if row else 0) + 1
                d.execute("INSERT OR REPLACE INTO meta VALUES ('suspend_seq', ?)", (str(seq),))
                d.execute("INSERT OR REPLACE INTO meta VALUES ('suspended', ?)", (str(seq),))
                return seq

            seq = self._write_with(db, body, "suspending the file" if suspended else "resuming the file")
            if self._db is not None:
                self._check_paused()
            if not suspended:
                return []
            deadline = time.monotonic() + (max(2.0, 10 * self.poll_secs) if wait is None else wait)
            while True:
                late = self._unseen(db, seq)
                if not late or time.monotonic() >= deadline:
                    return late
                time.sleep(min(0.005, self.poll_secs))
        finally:
            if db is not self._db:
                db.close()

    def _write_with(self, db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], doing: str) -> T:
        """``body`` in one write transaction at ``synchronous`` on ``db`` (maybe not our own)."""
        def run() -> T:
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            try:
                return _transaction(db, lambda: body(db))
            finally:
                db.execute(f"PRAGMA synchronous={self._light}")

        return self._retry(run, doing)

    def _unseen(self, db: sqlite3.Connection, seq: int) -> list[str]:
        """The live owners (but us) that have not seen suspension ``seq`` yet."""
        now = time.time()
        late = []
        for oid, pool, queue, pid, started, machine, lease in db.execute(
                "SELECT id, pool, queue, pid, pid_started, machine, lease_expires FROM owners WHERE id != ?",
                (self._oid,)).fetchall():
            if machine == _machine() and not _alive(pid, started) or machine != _machine() and lease < now:
                continue  # (dead: it dispatches nothing)
            row = db.execute("SELECT value FROM meta WHERE key = ?", (f"seen:{oid}",)).fetchone()
            if row is None or int(row[0]) < seq:
                late.append(f"{pool}/{queue}")
        return late

    def _check_paused(self) -> bool:
        """Read the file's suspension when someone wrote since; on a new one, give the claims back
        and say we have seen it (``set_suspended`` waits for that)."""
        dv = self._dv()
        if dv == self._paused_dv:
            return self._paused
        row = self.db.execute("SELECT value FROM meta WHERE key = 'suspended'").fetchone()
        seq = int(row[0]) if row else 0
        self._paused_dv = dv
        was, self._paused = self._paused, bool(seq)
        if self._paused and self._paused_seen != seq:
            oid = self._oid

            def body(db: sqlite3.Connection) -> None:
                self._release(db)
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"seen:{oid}", str(seq)))

            self._tx(body, "giving back its claims: the file is suspended", durable=False)
            self._paused_seen = seq
            self._paused_dv = self._dv()  # (our own write)
        if was != self._paused:
            log.info("%r: the file is %s", self, "suspended: no job is reserved" if self._paused else "resumed")
        return self._paused

    def paused(self) -> bool:
        return self._paused

    def _free(self) -> int:
        """Our workers' free credits (:meth:`hold` counts the running jobs too)."""
        return self._held - len(self._out)

    def _ahead(self) -> int:
        """Jobs to claim beyond the free credits, once ``hold`` said we have workers: ``claim_ahead``,
        doubled (up to :data:`_CLAIM_MAX`) each time the workers took a whole claim before the next
        tick and the line had that many, so a busy queue claims in bigger batches; back to
        ``claim_ahead`` at every tick, so another pool's turn, or a new job of a higher priority,
        waits behind one tick's worth of claims at most."""
        return self._claim_more if self._held > 0 else 0

    def _claim(self, db: sqlite3.Connection, n: int) -> None:
        """Reserve the next ``n`` ready jobs for us, their delivery counted, into the hand (in a
        transaction)."""
        if n <= 0:
            return
        rows = db.execute(_CLAIM, (self._oid, min(n, _CLAIM_MAX))).fetchall()
        if len(rows) > 1:
            rows.sort(key=lambda r: (-r[7], r[_SEQ]))
        self._hand.extend(rows)
        self._delta -= len(rows)

    def _release(self, db: sqlite3.Connection) -> None:
        """Give the claimed jobs not handed out back to the line, uncounted (in a transaction)."""
        if self._hand:
            oid = self._oid
            db.executemany(_UNCLAIM, [(row[_SEQ], oid) for row in self._hand])
            self._delta += len(self._hand)
            self._hand.clear()

    def reserve(self, now: float) -> Job | None:
        """The next claimed job (no transaction).  When none is left, one transaction at
        ``NORMAL`` promotes the delayed jobs whose time has come and claims the jobs our workers
        have free credits for, plus ``claim_ahead`` more: a claimed job is reserved by us in the
        file (its delivery counted; another pool cannot take it) and pending to the queue process
        until this hands it out; what nobody took by the next tick goes back to the line."""
        while True:
            if not self._hand:
                if self._deferred and not self._flush_deferred() or time.monotonic() < self._blocked_until:
                    return None  # the file refuses writes: try again later (tick keeps the loop waking)
                try:
                    if not self._fill(now):
                        return None
                except StoreError as e:
                    self._refused(e, "reserving a job")
                    return None
            row = self._hand.popleft()
            self._popped = True
            if row[_ENV] != self._env:
                try:
                    self._foreign(row)
                except StoreError as e:
                    self._hand.appendleft(row)  # (tried again at the next reservation)
                    self._refused(e, "moving a job of other versions to the failed store")
                    return None
                continue
            payload = _unseal(self._key, row[1])
            if payload is None:
                try:
                    self._unsigned(row)
                except StoreError as e:
                    self._hand.appendleft(row)
                    self._refused(e, "moving an unsigned job to the failed store")
                    return None
                continue
            self._out.add(row[0])
            job = Job(row[0], payload, *row[2:_ENV])
            if job.mode and job.mode.startswith(OWN_MODE):
                self._open_mode(job)
            return job

    def _open_mode(self, job: Job) -> None:
        """The reserved ``job`` carries a failure mode of its own: its signature is checked (and
        taken off).  One not signed with the key is never unpickled: the pool's failure mode
        handles the job if it fails, and the error says why."""
        mode = _unseal_mode(self._key, job.mode)
        if mode is None:
            log.error("%r: job %s carries a failure mode of its own (pool.options(failure_mode=...)) that is not "
                      "signed with this pool's signing key (it was stored by a program without the key, or altered): "
                      "it is not read; the pool's failure mode applies to the job", self, job.id)
            mode = ""
        job.mode = mode

    def _fill(self, now: float) -> bool:
        """Claim jobs into the hand; False if none is ready."""
        if self._retry(self._check_paused, "reading whether the file is suspended"):
            return False

        def ready() -> tuple[bool, bool]:
            dv = self._dv()
            promote = self._delayed(dv) <= now
            return promote, promote or self._any_ready(dv)

        promote, any_ready = self._retry(ready, "looking for jobs")
        if not any_ready:
            return False
        n = max(1, self._free()) + self._ahead()

        def body(db: sqlite3.Connection) -> None:
            if promote:
                self._promote(db, now)
            self._claim(db, n)

        self._tx(body, "reserving a job", durable=False)
        if len(self._hand) >= n and self._claim_more:
            self._claim_more = min(self._claim_more * 2, _CLAIM_MAX)
        return bool(self._hand)

    def _promote(self, db: sqlite3.Connection, now: float) -> None:
        """Due delayed jobs join the ready line, at its tail, in (ready_at, seq) order (in a
        transaction); ``_due`` becomes the earliest delayed job left."""
        due = db.execute("SELECT seq FROM jobs WHERE owner IS NULL AND ready_at > 0 AND ready_at <= ? "
                         "ORDER BY ready_at, seq LIMIT ?", (now, _PROMOTE_BATCH)).fetchall()
        if due:
            db.executemany("UPDATE jobs SET seq = (SELECT MAX(seq) FROM jobs) + 1, ready_at = 0 WHERE seq = ?", due)
        first = db.execute(_NEXT_DUE).fetchone()[0]
        self._due = float("inf") if first is None else float(first)  # (exact once committed: our own write)

    def _foreign(self, row: tuple[Any, ...]) -> None:
        """A job pickled by another Python or cloudpickle version: to the failed store, not run."""
        job_id, env = row[0], row[_ENV]
        found = self._one("SELECT python, cloudpickle FROM envs WHERE id = ?", (env,), "reading versions")
        python, cp = found[0] if found else ("?", "?")
        mine = self._versions
        differs = [f"Python {python} (this pool runs {mine[0]})" if python != mine[0] else "",
                   f"cloudpickle {cp} (this pool has {mine[1]})" if cp != mine[1] else ""]
        self._set_aside(row, f"job {job_id} was not run: it was stored with "
                             f"{' and '.join(d for d in differs if d) or 'other versions'}, and its payload may not "
                             f"unpickle here; it is kept in the failed store of {self.path}: retry it "
                             f"(pool.retry_failed) from a pool of the versions that stored it",
                        f"moving job {job_id} of other versions to the failed store")

    def _unsigned(self, row: tuple[Any, ...]) -> None:
        """A job whose signature is missing or wrong (written by someone without the signing key):
        to the failed store, never unpickled, never run."""
        job_id = row[0]
        self._set_aside(row, f"job {job_id} was not run: its payload is not signed with this pool's signing key (it "
                             f"was written to {self.path} by a program without the key, or altered); it is kept, "
                             f"unread, in the failed store: purge it (honeydew failed purge --sqlite)",
                        f"moving unsigned job {job_id} to the failed store")

    def _set_aside(self, row: tuple[Any, ...], why: str, doing: str) -> None:
        """A claimed job that must not run here goes to the failed store, unread, with a
        ``SerializationError`` saying ``why`` (its caller, if one waits, is told)."""
        job_id, origin, deliveries, seq = row[0], row[2], row[4], row[_SEQ]
        failure = _unreadable(why)
        log.warning("%r: %s", self, why)
        oid = self._oid

        def body(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM jobs WHERE seq = ? AND owner = ?", (seq, oid)).fetchone():
                self._to_failed(db, seq, job_id, origin, failure_record(failure), deliveries - 1, time.time())

        self._tx(body, doing)

    def ack(self, job_ids: Sequence[str], replies: Sequence[Reply] = ()) -> None:
        """The acks ride with the next transaction (a reservation, a store, the next tick: within
        ``poll_secs``); with replies, they are written now, with them, in one transaction at
        ``NORMAL``.  A job whose ack a dying process had not written yet runs again."""
        if job_ids:
            out, oid = self._out, self._oid
            for job_id in job_ids:
                out.discard(job_id)
            self._acks.extend((job_id, oid) for job_id in job_ids)
        if not replies:
            return
        now = time.time()
        key = self._key
        answers = [(r.origin, r.job_id, int(bool(r.ok)), self._sealed(r.value),
                    _seal(key, r.partial) if r.partial else b"", now) for r in replies]
        self._write_later(f"storing {len(answers)} repl(ies)", lambda db: db.executemany(_REPLY, answers))

    def nack(self, job: Job, ready_at: float = 0.0, *, front: bool = False) -> bool:
        """One transaction at ``NORMAL`` (a nack lost to a power cut leaves the job to the recovery
        of a dead owner: pending again, its delivery counted)."""
        self._out.discard(job.id)
        if front:
            sql, params = _NACK_FRONT, (job.deliveries, job.failures, job.bounces, job.id, self._oid)
        else:
            ready_at = float(ready_at) if ready_at and ready_at > 0 else 0.0
            sql, params = _NACK_TAIL, (ready_at, job.deliveries, job.failures, job.bounces, job.id, self._oid)
        done = [True]  # (a nack kept for later is taken as done: the job is ours until then)

        def body(db: sqlite3.Connection) -> None:
            self._release(db)  # (the claimed jobs go back to their places: the nacked one may come first)
            done[0] = db.execute(sql, params).rowcount == 1
            self._delta += done[0]

        self._write_later(f"putting job {job.id} back", body)
        if done[0] and not front and ready_at and ready_at < self._due:
            self._due = ready_at
        return done[0]

    def give_up(self, job: Job, failure: tuple[Any, ...], reply: Reply | None = None, *,
                keep: bool = False) -> None:
        """One transaction at ``NORMAL``: the job goes (to the failed store with ``keep``), its reply is stored."""
        self._out.discard(job.id)
        oid = self._oid
        blob = self._sealed(failure)
        answer = None if reply is None else (reply.origin, reply.job_id, int(bool(reply.ok)), self._sealed(reply.value),
                                             _seal(self._key, reply.partial) if reply.partial else b"", time.time())

        def body(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT seq FROM jobs WHERE id = ? AND owner = ?", (job.id, oid)).fetchone()
            if row is not None:
                if keep:
                    db.execute(_TO_FAILED, (blob, job.deliveries, time.time(), row[0]))
                db.execute("DELETE FROM jobs WHERE seq = ?", (row[0],))
            if answer is not None:
                db.execute(_REPLY, answer)

        self._write_later(f"giving up job {job.id}", body)

    def _write_later(self, doing: str, body: Callable[[sqlite3.Connection], Any]) -> bool:
        """Write ``body`` (a transaction at ``NORMAL``) after the writes kept before it; if the file
        refuses, keep it for later.  True if it is written now."""
        self._deferred.append((doing, body))
        return self._flush_deferred()

    def _flush_deferred(self) -> bool:
        while self._deferred:
            doing, body = self._deferred[0]
            try:
                self._tx(body, doing, durable=False)
            except StoreError as e:
                self._refused(e, f"{doing} ({len(self._deferred)} write(s) kept to retry)")
                return False
            self._deferred.pop(0)
        return True

    def _refused(self, e: StoreError, doing: str) -> None:
        """A write the queue process can do later was refused: say so (every 10 s at most), and
        hold reservations back for a second."""
        mono = time.monotonic()
        self._blocked_until = mono + 1.0
        key = doing.split(" ")[0]
        if mono - self._complained.get(key, -1e9) >= 10.0:
            self._complained[key] = mono
            log.error("%r: %s failed, will retry: %s", self, doing, e)

    # ------------------------------------------------------------------ the failed store

    def failed(self, limit: int = 100) -> list[FailedJob]:
        rows = self._one("SELECT id, payload, origin, timeout, failure, deliveries, failed_at, priority, mode "
                         "FROM failed ORDER BY seq DESC LIMIT ?", (int(limit),), "listing failed jobs")
        return [FailedJob(i, _unseal(self._key, p) or b"", o, t, self._record(f, f"the failure record of job {i}"),
                          d, at, pr, m) for i, p, o, t, f, d, at, pr, m in rows]

    def retry_failed(self, ids: Sequence[str] | None = None) -> int:
        chosen = None if ids is None else [(i,) for i in dict.fromkeys(ids)]

        def body(db: sqlite3.Connection) -> int:
            if chosen is None:
                seqs = db.execute("SELECT seq FROM failed ORDER BY seq").fetchall()
            else:
                seqs = []
                for (job_id,) in chosen:
                    row = db.execute("SELECT seq FROM failed WHERE id = ?", (job_id,)).fetchone()
                    if row is not None:
                        seqs.append(row)
            moved = 0
            for (seq,) in seqs:
                cur = db.execute("INSERT INTO jobs (id, payload, origin, timeout, priority, mode, ready_at, "
                                 "deliveries, failures, bounces, env) SELECT id, payload, origin, timeout, priority, "
                                 "mode, 0, 0, 0, 0, env FROM failed WHERE seq = ? ON CONFLICT (id) DO NOTHING", (seq,))
                if cur.rowcount:  # (an id that is queued again meanwhile stays in the failed store)
                    db.execute("DELETE FROM failed WHERE seq = ?", (seq,))
                    moved += 1
            return moved

        moved = self._tx(body, "retrying failed jobs")
        self._forget()
        return moved

    def purge_failed(self, ids: Sequence[str] | None = None) -> int:
        if ids is None:
            return self._tx(lambda db: db.execute("DELETE FROM failed").rowcount, "purging failed jobs")
        chosen = [(i,) for i in dict.fromkeys(ids)]

        def body(db: sqlite3.Connection) -> int:
            return sum(db.execute("DELETE FROM failed WHERE id = ?", one).rowcount for one in chosen)

        return self._tx(body, "purging failed jobs")

    # ------------------------------------------------------------------ pending jobs

    def cancel(self, job_id: str) -> Job | None:
        claimed = next((row for row in self._hand if row[0] == job_id), None)
        if claimed is not None:  # claimed, not handed out: still pending as far as the queue knows
            self._hand.remove(claimed)
            gone = (claimed[_SEQ], self._oid)
            self._tx(lambda db: db.execute("DELETE FROM jobs WHERE seq = ? AND owner = ?", gone),
                     f"cancelling job {job_id}")
            return Job(claimed[0], _unseal(self._key, claimed[1]) or b"", *claimed[2:4], claimed[4] - 1,
                       *claimed[5:_ENV])

        def body(db: sqlite3.Connection) -> list[Any]:
            rows = db.execute(f"DELETE FROM jobs WHERE id = ? AND owner IS NULL RETURNING {_JOB}",
                              (job_id,)).fetchall()
            self._delta -= len(rows)
            return rows

        rows = self._tx(body, f"cancelling job {job_id}")
        self._due_dv = -1  # (it may have been the earliest delayed job)
        return Job(rows[0][0], _unseal(self._key, rows[0][1]) or b"", *rows[0][2:]) if rows else None

    def is_pending(self, job_id: str) -> bool:
        if self._hand and any(row[0] == job_id for row in self._hand):
            return True
        return bool(self._one("SELECT 1 FROM jobs WHERE id = ? AND owner IS NULL", (job_id,), "reading a job"))

    def next_ready_in(self, now: float) -> float | None:
        due = self._retry(self._delayed, "looking for delayed jobs")
        return None if due == float("inf") else max(0.0, due - now)

    def take_pending(self) -> list[Job]:
        def body(db: sqlite3.Connection) -> list[Any]:
            self._release(db)
            return db.execute(f"DELETE FROM jobs WHERE owner IS NULL RETURNING {_JOB}, seq").fetchall()

        rows = self._tx(body, "taking the pending jobs")
        self._forget()
        rows.sort(key=lambda r: r[_ENV])
        return [Job(row[0], _unseal(self._key, row[1]) or b"", *row[2:_ENV]) for row in rows]

    def __len__(self) -> int:
        return self._retry(self._pending, "counting jobs") + len(self._hand)

    def __bool__(self) -> bool:
        return len(self) > 0

    def status(self) -> dict[str, Any]:
        """``pending`` (``delayed`` among them), ``reserved`` (by any owner; ``reserved_here``: by
        this one), ``failed``, ``replies`` waiting, live ``owners``, and the ``path``."""
        if self._acks:
            self._tx(lambda db: None, "acking", durable=False)
        hand = len(self._hand)

        def read() -> dict[str, Any]:
            db = self.db
            db.execute("BEGIN")  # one snapshot for every count
            try:
                pending, delayed = db.execute("SELECT COUNT(*), COALESCE(SUM(ready_at > 0), 0) FROM jobs "
                                              "WHERE owner IS NULL").fetchone()
                reserved, here = db.execute("SELECT COUNT(*), COALESCE(SUM(owner = ?), 0) FROM jobs "
                                            "WHERE owner IS NOT NULL", (self._oid,)).fetchone()
                failed = db.execute("SELECT COUNT(*) FROM failed").fetchone()[0]
                replies = db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
                owners = db.execute("SELECT COUNT(*) FROM owners").fetchone()[0]
                paused = db.execute("SELECT 1 FROM meta WHERE key = 'suspended'").fetchone() is not None
            finally:
                db.execute("COMMIT")
            return {"pending": pending + hand, "delayed": delayed, "reserved": reserved - hand,
                    "reserved_here": here - hand, "failed_store": failed, "replies": replies, "owners": owners,
                    "file_suspended": paused,
                    "path": self.path}

        return self._retry(read, "reading its status")

    # ------------------------------------------------------------------ the caller's writer

    def producer(self) -> _Producer:
        """The caller's own writer: a ``cast`` commits its job to the file from the caller's
        process (see :class:`_Producer`)."""
        return _Producer(self)

    # ------------------------------------------------------------------ replies

    def take_replies(self) -> list[Reply]:
        if self.owner is None:
            return []
        pool = (self.owner.pool,)
        try:
            if not self._one("SELECT 1 FROM replies WHERE origin = ? LIMIT 1", pool, "looking for replies"):
                return []
            rows = self._tx(lambda db: db.execute("DELETE FROM replies WHERE origin = ? RETURNING seq, origin, job_id, "
                                                  "ok, value, partial", pool).fetchall(), "taking replies",
                            durable=False)
        except StoreError as e:
            self._refused(e, "taking replies")
            return []
        rows.sort()
        replies = []
        for _, origin, job_id, ok, value, partial in rows:
            result = _unseal(self._key, value)
            items = _unseal(self._key, partial) if partial else b""
            if result is None or items is None:
                # (written by someone without the key: never unpickled; the caller's timeout applies)
                log.warning("%r: dropped a reply for job %s that is not signed with this pool's signing key",
                            self, job_id)
                continue
            replies.append(Reply(origin, job_id, bool(ok), result if ok else tuple(pickle.loads(result)), items))
        return replies


class _Batch:
    """The jobs of one write of a :class:`_Producer`, and the threads waiting for it."""

    __slots__ = ("number", "rows", "cond", "full", "taken", "synced", "error")

    def __init__(self, number: int, lock: threading.Lock) -> None:
        self.number = number
        self.rows: list[tuple[Any, ...]] = []
        self.cond = threading.Condition(lock)  # its threads wait here: to write it, or for it to be written
        self.full: threading.Condition | None = None  # its writer waits here for company (_Producer.store)
        self.taken = False                     # a thread is writing it
        self.synced = False                    # written and on disk, or refused (error)
        self.error: BaseException | None = None

    def outcome(self) -> int:
        if self.error is not None:
            raise self.error
        return self.number


class _Producer(Producer):
    """Stores the casts of a caller's threads in the file, from the caller's process, with group
    commit: a thread that finds no write under way writes every job waiting then (its own and
    those that arrived meanwhile) in one transaction at ``synchronous``; the threads that arrive
    while it writes wait, and the first of them writes their batch next.  One fsync stores as many
    jobs as arrived during the previous one, so eight casting threads cost about one commit per
    eight jobs, and a single thread's cast costs one commit and no round trip to the queue process.

    Its connection is its own (opened on the first ``store``, in the caller's process); it writes
    nothing but new jobs, so it never touches a reservation.  A refused write (full disk, locked
    file) raises :class:`StoreError` in every thread whose job was in it: none of them is stored.
    """

    def __init__(self, queue: SQLite) -> None:
        self._store = SQLite.__new__(SQLite)
        self._store.__setstate__(queue.__getstate__())
        self._pid = 0
        self._lock = threading.Lock()
        self._next = _Batch(1, self._lock)         # the jobs waiting for the next write
        self._busy = False                         # a thread is writing a batch (commit, then fsync)
        self._expect = 1                           # jobs in the last write: how many the next one waits for
        self._wal = -1                             # the write-ahead log, fsynced after each commit

    def __repr__(self) -> str:
        return f"<SQLite producer {self._store.path!r}>"

    def _open(self) -> None:
        store = self._store
        store._db = store._connect()  # (at the light level: the fsync is ours, after the commit)
        self._wal = -1
        store._versions = _versions()
        try:
            store._env = store._retry(store._env_id, "registering this interpreter's versions")
        except BaseException:
            store._db.close()
            store._db = None
            raise

    def store(self, job: Job, ready_at: float = 0.0) -> int:
        ready_at = float(ready_at) if ready_at and ready_at > 0 else 0.0
        row = _job_row(self._store._key, job, ready_at)
        with self._lock:
            batch = self._next
            rows = batch.rows
            rows.append(row)
            if batch.full is not None and len(rows) >= self._expect:
                batch.full.notify()
            while not batch.synced:
                if not self._busy and not batch.taken:
                    break  # nobody is writing our batch: we do
                batch.cond.wait()
            else:
                return batch.outcome()
            self._busy = batch.taken = True
            if len(rows) < self._expect:
                # the last write carried more jobs: their threads are on their way back with the
                # next ones; wait a moment for them, so that one fsync stores them all
                batch.full = threading.Condition(self._lock)
                batch.full.wait(_GATHER)
                batch.full = None
            self._expect = len(rows)
            self._next = _Batch(batch.number + 1, self._lock)
        error: BaseException | None = None
        try:
            self._write(rows)
            if self._store._toggle:
                self._sync()
        except BaseException as e:  # (whatever it is, the threads of this batch hear of it, none waits for ever)
            error = e
        with self._lock:
            self._busy = False
            batch.error = error
            batch.synced = True
            batch.cond.notify_all()
            if self._next.rows:
                self._next.cond.notify()  # one of its threads writes it
            return batch.outcome()

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        store = self._store
        if store._db is None or self._pid != os.getpid():
            self._open()
            self._pid = os.getpid()
        env = store._env
        db = store.db
        if len(rows) == 1:  # one statement, its own transaction (the common case of a lone caller)
            row = (*rows[0], env)
            store._retry(lambda: db.execute(_INSERT, row), "storing a job")
            return
        rows = [(*row, env) for row in rows]
        store._retry(lambda: _transaction(db, lambda: db.executemany(_INSERT, rows)), f"storing {len(rows)} job(s)")

    def _sync(self) -> None:
        """Make the commit durable: fsync the write-ahead log, outside the write lock.

        The commit was written at the light level (``NORMAL``: into the log, in the kernel's page
        cache) so that it holds the file's write lock for microseconds rather than for an fsync,
        and the queue processes' reservations and acks are not starved while the casts of many
        threads commit back to back.  Once the log is fsynced the commit survives a power cut, as a
        ``FULL`` commit would: a checkpoint that moved it into the database file meanwhile fsynced
        that file first.  Our connection stays open, so the log file is never deleted under us."""
        path = self._store.path + "-wal"
        try:
            if self._wal < 0 or os.fstat(self._wal).st_nlink == 0:
                if self._wal >= 0:
                    os.close(self._wal)
                    self._wal = -1
                self._wal = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            os.fdatasync(self._wal)
        except OSError as e:
            raise StoreError(f"the queue file {self._store.path!r}: its write-ahead log {path!r} could not be "
                             f"synced to disk ({e}); the job may not survive a power cut: check the disk", path) from e

    def close(self) -> None:
        with self._lock:
            db, self._store._db = self._store._db, None
            wal, self._wal = self._wal, -1
        if self._pid != os.getpid():
            return  # (a forked copy: the parent's connection and descriptor are not ours)
        if wal >= 0:
            os.close(wal)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
