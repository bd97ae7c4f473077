"""Big payloads and shipped code travel out of band: through files in a per-pool directory on a
tmpfs (``/dev/shm``: memory, not disk), not through the queue process.  [caller, queue, worker]

Why: a job's payload crosses two sockets (caller → queue → worker) and a result one, each time
framed, split into packets and copied several times; for a 50 MB argument that is most of the
round trip, and every pending big job sits in the queue process's heap.  A callable defined in the
script goes by value with every global it reads (a loaded model, a big array), so without help it
would make that trip with every job.  So:

* a payload (a job's arguments, a result, a ``map`` chunk's outcomes) pickled to at least
  :data:`THRESHOLD` bytes is written to a file of the spool, and the message carries only
  :data:`MARK` + the file's path.  The queue never opens it (it stays a few bytes in the queue's
  memory) and removes the file when the job reaches a final state (done, given up, cancelled); the
  worker reads it after the job is charged to it, so a crash while reading is attributed as any
  other; the caller opens a result's file and unlinks it as soon as the ``Result`` arrives.
* a plain function whose pickle (code and captured globals) is bigger than
  :data:`CODE_THRESHOLD` is written once, as :class:`Shipped` code, and each worker reads it the
  first time a job names it and keeps it (by path) for its later jobs.  The files stay until the
  pool ends, up to :data:`CODE_SPOOL_MAX` bytes in all; past that, code travels with the job.

Nothing depends on the spool: if a file cannot be written (no ``/dev/shm``, no space), the payload
goes through the sockets as before.  The directory (``honeydew-<caller pid>-<pool token>``) is made
on first use and removed when the pool ends: by the caller after ``join``/``terminate``, by the
supervisor when the caller died; one left by a tree that was killed whole is swept when the next
pool's supervisor starts.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import tempfile
from typing import Any, NamedTuple

#: payloads pickled to at least this many bytes go through the spool (measured: below ~100 KB the
#: sockets are faster, above it the spool, by 2x at 1 MB)
THRESHOLD = 96 << 10
#: a callable pickled bigger than this is shipped once per worker (as :class:`Shipped`)
CODE_THRESHOLD = 64 << 10
#: the most bytes of shipped code one pool keeps in its spool; later code travels with each job
CODE_SPOOL_MAX = 256 << 20
#: first byte of a spooled payload on the wire (a pickle never starts with a zero byte)
MARK = b"\x00"
_PREFIX = "honeydew-"

_made: set[str] = set()   # spool directories this process has made (or found) already


class Shipped(NamedTuple):
    """A callable shipped once through the spool: workers load it from ``path`` on first use."""

    path: str


def directory(token: str) -> str:
    """The spool directory of the pool ``token`` created by this process (not made yet)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(base, f"{_PREFIX}{os.getpid()}-{token}")


def is_spooled(blob: bytes) -> bool:
    return blob[:1] == MARK


def write(spool: str, name: str, data: bytes) -> bytes | None:
    """Store ``data`` as file ``name`` of ``spool``; the marker the message carries instead, or
    ``None`` when it cannot be stored (then the data goes inline, through the sockets)."""
    path = os.path.join(spool, name)
    try:
        if spool not in _made:
            os.makedirs(spool, mode=0o700, exist_ok=True)
            _made.add(spool)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        _unlink(path)
        return None
    os.close(fd)
    return MARK + os.fsencode(path)


def path_of(marker: bytes) -> str:
    return os.fsdecode(marker[1:])


def load(marker: bytes) -> Any:
    """Unpickle a spooled payload (the file stays: the job may run again)."""
    with open(path_of(marker), "rb") as f:
        return pickle.load(f)


def load_path(path: str) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def take(marker: bytes) -> Any:
    """Open a spooled result and unlink it at once: the open file keeps the data until it is read,
    whatever happens to the directory meanwhile.  Returns the open file (``load_file`` reads it)."""
    path = path_of(marker)
    f = open(path, "rb")  # noqa: SIM115 - closed by load_file
    _unlink(path)
    return f


def load_file(f: Any) -> Any:
    with f:
        return pickle.load(f)


def discard(marker: bytes) -> None:
    """Remove a spooled payload whose job is over (or a result nobody will read)."""
    _unlink(path_of(marker))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove(spool: str) -> None:
    """Remove the whole spool directory (the pool has ended)."""
    _made.discard(spool)
    shutil.rmtree(spool, ignore_errors=True)


def sweep(spool: str) -> None:
    """Remove the spool directories of pools whose calling process is dead (a tree killed whole
    leaves its directory behind).  Best effort; never raises."""
    base = os.path.dirname(spool)
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        pid = name[len(_PREFIX):].partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its caller lives
        except OSError as e:
            if e.errno != errno.ESRCH:
                continue
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)
