"""The per-process control socket: how ``honeydew status --pid PID`` reaches the pools of a running
program.  [caller process: :func:`register`, :func:`unregister`; the command line: :func:`ask`]

**Server.**  The first pool registered in a process starts one daemon thread (``honeydew-control``)
serving a Unix stream socket ``<dir>/<pid>.sock``, where ``<dir>`` is a per-user directory:
``$XDG_RUNTIME_DIR/honeydew``, else ``/tmp/honeydew-<uid>``, else ``~/.cache/honeydew-control``; the
first that is (or can be made) a real directory owned by this user with mode 0700.  A directory
that is a symbolic link or another user's is never used; one of ours with group or other bits is
set back to 0700.  Beside the socket, ``<pid>.key`` (mode 0600) holds a random key: a client must
pass multiprocessing's authkey challenge with it (``multiprocessing.connection.deliver_challenge``
/ ``answer_challenge``, both ways) before it is heard, and its peer credentials must name this
user.  So only the pool's owner can reach it: the directory keeps others from the socket and the
key, the challenge keeps out whoever reaches the socket without the key.  Both files go when the
last pool unregisters and at interpreter exit; the files of dead pids are removed when a server
starts.

**Requests.**  One per connection, JSON (never pickle) in one ``send_bytes``:
``{"op": "pools"|"status"|"failed"|"retry_failed"|"purge_failed"|"suspend"|"resume", "pool": index
or None (every pool), "ids": [...] or None (all), "limit": n, "timeout": seconds}``.  The answer is
``{"ok": True, "value": [one entry per pool]}``, each entry ``{"pool": i, "repr": ..., "ok": True,
"value": ...}`` or ``{"pool": i, "repr": ..., "ok": False, "error": "..."}``; or
``{"ok": False, "error": "..."}`` for a request that names no pool or is malformed.  The server
calls the pools' public methods only (``status``, ``failed``, ``retry_failed``, ``purge_failed``,
``suspend``, ``resume``), within the request's time.

**Never a crash or a hang.**  Each connection's reads and writes have a time limit
(``SO_RCVTIMEO``/``SO_SNDTIMEO``), a request is served in at most its ``timeout`` (at most 60 s),
and every exception is answered as an error or logged; the thread goes on.  It holds weak
references only: registration never keeps a pool alive, and a collected pool leaves the registry.

**Forks.**  A forked child inherits neither the registry nor the server (an at-fork handler resets
both and closes the child's copies of the server's descriptors; every entry point also compares
``os.getpid()``).  While a fork runs, the server thread holds no lock: the at-fork handler waits
until it is idle (between connections), so the thread does not make forking the program unsafe
(``_threads.mark_fork_safe``) and later pools still fork their supervisor.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import AuthenticationError, Connection, answer_challenge, deliver_challenge
from typing import Any

from . import _process, _threads

__all__ = ["ControlError", "OPS", "address", "ask", "control_dirs", "find_socket", "handle", "live_pids",
           "register", "registered", "shutdown", "unregister"]

log = logging.getLogger("honeydew.control")

#: the operations a request may name
OPS = ("pools", "status", "failed", "retry_failed", "purge_failed", "suspend", "resume")
#: how long one connection may take to authenticate, send its request and take its answer
IO_TIMEOUT = 5.0
#: the longest a request may ask to be served in, and the default
MAX_TIMEOUT = 60.0
DEFAULT_TIMEOUT = 5.0
#: the biggest request the server reads; the biggest answer a client reads
MAX_REQUEST = 1 << 20
MAX_ANSWER = 1 << 26
#: how long a fork waits for the server thread to finish the connection it serves
FORK_WAIT = 10.0
#: how long the last unregister waits for the stopped server thread (it waits only while a request runs)
JOIN_WAIT = 1.0


class ControlError(Exception):
    """A target that cannot be reached or that refused (the message names the pid and why)."""


# --------------------------------------------------------------------------- the directory

def control_dirs() -> list[str]:
    """Where control sockets live, in the order a server tries them (a client looks in each)."""
    uid = os.getuid()
    out = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        out.append(os.path.join(runtime, "honeydew"))
    out.append(f"/tmp/honeydew-{uid}")
    home = os.path.expanduser("~")
    if os.path.isabs(home) and home != "/":
        out.append(os.path.join(home, ".cache", "honeydew-control"))
    return out


def _private(path: str, create: bool) -> bool:
    """Is ``path`` a real directory owned by this user with no group or other bits (made so when
    ``create``)?  A symbolic link, a file or another user's directory never is."""
    if create:
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return False
    if st.st_mode & 0o077:
        if not create:
            return False
        try:
            os.chmod(path, 0o700, follow_symlinks=False)
        except (OSError, NotImplementedError):
            return False
        return _private(path, False)
    return True


def _pid_of(name: str) -> int | None:
    stem = name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def _remove_stale(directory: str) -> None:
    """Remove the sockets and keys of processes that are gone (they died without cleaning up)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    me = os.getpid()
    for name in names:
        pid = _pid_of(name)
        if pid is None or pid == me or _process.pid_alive(pid):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def find_socket(pid: int) -> tuple[str, str] | None:
    """The socket and key paths of process ``pid``'s control server, in the first private
    directory that holds them; ``None`` if none does."""
    for directory in control_dirs():
        sock = os.path.join(directory, f"{pid}.sock")
        if os.path.exists(sock) and _private(directory, False):
            return sock, os.path.join(directory, f"{pid}.key")
    return None


def live_pids() -> list[int]:
    """The pids of this user's live processes that have a control socket now (for error messages)."""
    found: set[int] = set()
    for directory in control_dirs():
        if not _private(directory, False):
            continue
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            pid = _pid_of(name)
            if pid is not None and name.endswith(".sock") and _process.pid_alive(pid):
                found.add(pid)
    return sorted(found)


def _timeouts(sock: socket.socket, seconds: float) -> None:
    """Reads and writes on ``sock``'s descriptor give up after ``seconds`` (EAGAIN), even once it
    is a multiprocessing ``Connection`` that reads the raw descriptor."""
    whole = int(seconds)
    tv = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


# --------------------------------------------------------------------------- the registry

_lock = threading.Lock()
_pools: dict[int, weakref.ref[Any]] = {}   # index -> pool (indices are never reused in a process)
_dead: list[int] = []                       # indices of collected pools, pruned under _lock
_next = 0
_owner = os.getpid()
_server: _Server | None = None
_exiting = False
_atexit_registered = False
_busy = threading.Lock()                    # held by the server thread whenever it is not idle
_fork = threading.local()


def register(pool: Any) -> None:
    """Make ``pool`` reachable by ``honeydew ... --pid <this pid>``.  Cheap, thread-safe and
    idempotent; the first registration in a process starts the control server (if no private
    directory can be had, a warning says so and the pool works all the same)."""
    global _next, _server, _atexit_registered
    with _locked():
        _check_pid()
        if any(ref() is pool for ref in _pools.values()):
            return
        index = _next
        _next += 1
        _pools[index] = weakref.ref(pool, _collected(index))
        if _server is None and not _exiting:
            if not _atexit_registered:
                # (registered late, so that it runs before the pool module's own exit hooks)
                atexit.register(shutdown)
                _atexit_registered = True
            try:
                _server = _Server.start()
            except Exception as e:   # (a pool works without its control socket)
                _warn(f"{type(e).__name__}: {e}")


def unregister(pool: Any) -> None:
    """``pool`` is over (joined, terminated): forget it; the last one stops the server and removes
    its files.  Cheap, thread-safe, idempotent (an unknown pool is ignored)."""
    with _locked():
        _check_pid()
        for index, ref in list(_pools.items()):
            if ref() is pool:
                del _pools[index]
        stopped = _stop_if_idle()
    if stopped is not None:
        stopped.join()   # (its descriptors are closed when this returns: a caller may count them)


def registered() -> list[Any]:
    """The live pools registered in this process, in registration order."""
    return [pool for _, pool in _snapshot()]


def address() -> str | None:
    """This process's control socket, if it serves one now."""
    with _locked():
        _check_pid()
        return _server.sock_path if _server is not None else None


def _snapshot() -> list[tuple[int, Any]]:
    with _locked():
        _check_pid()
        return [(i, p) for i, p in ((i, ref()) for i, ref in sorted(_pools.items())) if p is not None]


@contextmanager
def _locked() -> Iterator[None]:
    """``_lock``, then the pools collected meanwhile are pruned.  (A collected pool's weakref
    callback appends to ``_dead`` and then tries the lock without waiting: whichever of it and the
    holder comes second sees the other's work, so no collected pool is missed.)"""
    with _lock:
        yield
        _prune()
    while _dead and _lock.acquire(blocking=False):
        try:
            _prune()
        finally:
            _lock.release()


def _collected(index: int) -> Any:
    def callback(_ref: Any) -> None:
        _dead.append(index)
        if _lock.acquire(blocking=False):
            try:
                _prune()
            finally:
                _lock.release()
    return callback


def _prune() -> None:
    """(under ``_lock``)"""
    if _owner != os.getpid():
        return
    while _dead:
        _pools.pop(_dead.pop(), None)
    _stop_if_idle()


def _stop_if_idle() -> _Server | None:
    """(under ``_lock``) No pool is left: stop the server and remove its files; the server stopped."""
    global _server
    if _server is not None and not any(ref() is not None for ref in _pools.values()):
        stopped, _server = _server, None
        stopped.stop()
        return stopped
    return None


def _check_pid() -> None:
    """(under ``_lock``) In a process forked without the at-fork handler: start afresh."""
    if _owner != os.getpid():
        _reset_in_child()


def _reset_in_child() -> None:
    global _pools, _dead, _next, _owner, _server, _exiting, _lock, _busy, _fork
    if _server is not None:
        _server.forget()
    _pools, _dead, _next, _owner, _server, _exiting = {}, [], 0, os.getpid(), None, False
    _lock, _busy, _fork = threading.Lock(), threading.Lock(), threading.local()


def _before_fork() -> None:
    global _fork_held
    server = _server
    if server is not None and server.thread is not threading.current_thread() and _owner == os.getpid():
        _fork.held = _busy.acquire(timeout=FORK_WAIT)
        _fork_held = True


def _after_fork_in_parent() -> None:
    if _fork_held and getattr(_fork, "held", False):
        _fork.held = False
        _busy.release()


def _after_fork_in_child() -> None:
    """Forget the parent's registry and server, unless there is nothing to forget: a process whose
    registry is empty and unlocked (a pool's own processes, after the supervisor's reset) forks
    its children without running more Python here, so a forked worker writes fewer of the pages it
    shares with its monitor.  Its stale ``_owner`` is put right by :func:`_check_pid` on first use."""
    if _server is not None or _pools or _dead or _lock.locked() or _busy.locked():
        _reset_in_child()


_fork_held = False   # some fork ever held _busy (then the after-fork handlers look at _fork)
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def shutdown() -> None:
    """No control server in this process any more (its files removed), and none starts again: at
    interpreter exit, and for a process about to end otherwise (the pools' SIGTERM path)."""
    global _exiting, _server
    if _owner != os.getpid():
        return
    with _lock:
        _exiting = True
        stopped, _server = _server, None
        if stopped is not None:
            stopped.stop()
    if stopped is not None:
        stopped.join()


# --------------------------------------------------------------------------- the server

class _Server:
    """The listening socket, its key file and the thread that serves them."""

    def __init__(self, directory: str, listener: socket.socket, key: bytes) -> None:
        self.directory = directory
        self.sock_path = os.path.join(directory, f"{os.getpid()}.sock")
        self.key_path = os.path.join(directory, f"{os.getpid()}.key")
        self.listener = listener
        self.key = key
        self.wake_r, self.wake_w = os.pipe()   # closing wake_w stops the thread
        self.stopped = False   # stop() was called: the files are gone, the thread ends
        self.closed = False    # the descriptors are closed (by the thread, or forget() in a child)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="honeydew-control", daemon=True)

    @classmethod
    def start(cls) -> _Server | None:
        """(under ``_lock``) Bind the socket in the first usable directory, write the key, start
        the thread.  ``None`` (and a warning) if no directory will do."""
        errors = []
        for directory in control_dirs():
            if not _private(directory, True):
                errors.append(f"{directory}: not a private directory of this user")
                continue
            _remove_stale(directory)
            try:
                server = cls._bind(directory)
            except OSError as e:
                errors.append(f"{directory}: {e}")
                continue
            try:
                server.thread.start()
            except BaseException:
                server.stop()
                server.forget()
                raise
            # its native id is known once start() returns: fork_hazard knows it before a next pool
            # forks, without waiting here for the thread to be scheduled (the pool's start path)
            assert server.thread.native_id is not None
            _threads.mark_fork_safe(server.thread.native_id)
            return server
        _warn("; ".join(errors))
        return None

    @classmethod
    def _bind(cls, directory: str) -> _Server:
        pid = os.getpid()
        sock_path = os.path.join(directory, f"{pid}.sock")
        key_path = os.path.join(directory, f"{pid}.key")
        key = os.urandom(32)
        tmp = f"{key_path}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, key)
        finally:
            os.close(fd)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.replace(tmp, key_path)   # the key exists whenever the socket does
            for stale in (sock_path,):  # a dead process of the same pid left it
                try:
                    os.unlink(stale)
                except FileNotFoundError:
                    pass
            listener.bind(sock_path)
            listener.listen(16)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            for path in (tmp, key_path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise
        return cls(directory, listener, key)

    def stop(self) -> None:
        """(under ``_lock``, any thread) Remove the files now; the thread closes the socket and ends."""
        if self.stopped:
            return
        self.stopped = True
        for path in (self.sock_path, self.key_path):
            try:
                os.unlink(path)
            except OSError:
                pass
        os.close(self.wake_w)

    def join(self) -> None:
        """Wait (briefly: at once when idle, at most ``JOIN_WAIT``) for the stopped thread to end."""
        if self.thread is not threading.current_thread() and self.thread.is_alive():
            self.thread.join(JOIN_WAIT)

    def forget(self) -> None:
        """In a forked child: close this process's copies of the server's descriptors, touch no file."""
        if self.closed:
            return
        self.closed = True
        self.listener.close()
        for fd in (self.wake_r, -1 if self.stopped else self.wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _serve(self) -> None:
        _threads.mark_fork_safe()
        self.ready.set()
        poller = select.poll()
        poller.register(self.listener.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        try:
            while not self.stopped:
                try:
                    poller.poll()   # (idle: no lock held, so a fork may run now)
                    with _busy:
                        if not self.stopped:
                            self._serve_one()
                except Exception as e:  # (never: but the thread must go on)
                    log.warning("honeydew: control socket %s: %r", self.sock_path, e)
                    time.sleep(0.1)
        finally:
            with _busy:   # (a fork does not copy them half closed)
                self.closed = True
                self.listener.close()
                os.close(self.wake_r)

    def _serve_one(self) -> None:
        """Accept a connection, if one is there, and serve it."""
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.warning("honeydew: control socket %s: accept failed: %s", self.sock_path, e)
            time.sleep(0.1)   # (out of descriptors: do not spin)
            return
        try:
            self._converse(conn)
        except Exception as e:
            log.debug("honeydew: control socket %s: a connection failed: %r", self.sock_path, e)
        finally:
            conn.close()

    def _converse(self, sock: socket.socket) -> None:
        """Authenticate one client, read its request, answer it."""
        sock.setblocking(True)
        _timeouts(sock, IO_TIMEOUT)
        uid = _peer_uid(sock)
        if uid != os.getuid():
            log.warning("honeydew: control socket %s: refused a connection from uid %d", self.sock_path, uid)
            return
        conn = Connection(sock.detach())
        try:
            try:
                deliver_challenge(conn, self.key)
                answer_challenge(conn, self.key)
            except AuthenticationError as e:
                log.warning("honeydew: control socket %s: refused a client without the key (%s)", self.sock_path, e)
                return
            raw = conn.recv_bytes(MAX_REQUEST)
            try:
                request = json.loads(raw)
            except ValueError as e:
                answer: dict[str, Any] = {"ok": False, "error": f"a request is one JSON object: {e}"}
            else:
                answer = handle(request, _snapshot)
            conn.send_bytes(_dumps(answer))
        finally:
            conn.close()


_warned = False


def _warn(why: str) -> None:
    """Say once per process that its pools cannot be reached, and why."""
    global _warned
    if not _warned:
        _warned = True
        log.warning("honeydew: no control socket for this process (honeydew status --pid %d will not reach its "
                    "pools): %s", os.getpid(), why)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=repr).encode()


# --------------------------------------------------------------------------- requests

class _BadRequest(Exception):
    pass


def _request(request: Any) -> tuple[str, int | None, list[str] | None, int, float]:
    if not isinstance(request, dict):
        raise _BadRequest(f"a request is a JSON object, not {type(request).__name__}")
    op = request.get("op")
    if op not in OPS:
        raise _BadRequest(f"unknown op {op!r}: one of {', '.join(OPS)}")
    index = request.get("pool")
    if index is not None and (type(index) is not int or index < 0):
        raise _BadRequest(f"pool must be a pool's index (an int >= 0) or null, not {index!r}")
    ids = request.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise _BadRequest("ids must be a list of job ids (strings) or null")
    limit = request.get("limit", 100)
    if type(limit) is not int or limit < 0:
        raise _BadRequest(f"limit must be an int >= 0, not {limit!r}")
    timeout = request.get("timeout", DEFAULT_TIMEOUT)
    if type(timeout) not in (int, float) or not 0 < timeout <= MAX_TIMEOUT:
        raise _BadRequest(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], not {timeout!r}")
    return op, index, ids, limit, float(timeout)


def handle(request: Any, pools: Any) -> dict[str, Any]:
    """The answer to one request; ``pools()`` gives the ``(index, pool)`` pairs registered now.
    Never raises: a malformed request, and each pool's exception, is answered as an error."""
    try:
        op, index, ids, limit, timeout = _request(request)
        found = pools()
        if not found:
            return {"ok": False, "error": f"process {os.getpid()} holds no pool now"}
        if index is not None:
            found = [(i, p) for i, p in found if i == index]
            if not found:
                have = ", ".join(str(i) for i, _ in pools()) or "none"
                return {"ok": False, "error": f"process {os.getpid()} has no pool {index} (its pools: {have})"}
        deadline = time.monotonic() + timeout
        entries = []
        for i, pool in found:
            entry: dict[str, Any] = {"pool": i, "repr": _repr(pool)}
            try:
                value = _run(pool, op, ids, limit, max(0.05, deadline - time.monotonic()))
                entry.update(ok=True, value=value)
            except Exception as e:
                entry.update(ok=False, error=_describe(e))
            entries.append(entry)
        return {"ok": True, "value": entries}
    except _BadRequest as e:
        return {"ok": False, "error": str(e)}
    except Exception as e:
        log.debug("honeydew: control request %r failed", request, exc_info=True)
        return {"ok": False, "error": f"the request failed: {_describe(e)}"}


def _run(pool: Any, op: str, ids: list[str] | None, limit: int, timeout: float) -> Any:
    if op == "pools":
        try:
            backends = sorted({q.get("backend", "?") for q in pool.status(timeout=min(timeout, 2.0))["queues"]})
            backend = ", ".join(backends)
        except Exception as e:
            backend = f"? ({_describe(e)})"
        return {"pid": os.getpid(), "backend": backend}
    if op == "status":
        return pool.status(timeout=timeout)
    if op == "failed":
        return [record._asdict() for record in pool.failed(limit, timeout=timeout)]
    if op == "retry_failed":
        return pool.retry_failed(ids, timeout=timeout)
    if op == "purge_failed":
        return pool.purge_failed(ids, timeout=timeout)
    if op == "suspend":
        pool.suspend(timeout=timeout)
        return None
    assert op == "resume"
    pool.resume(timeout=timeout)
    return None


def _repr(pool: Any) -> str:
    try:
        return repr(pool)
    except Exception as e:
        return f"<a pool whose repr failed: {_describe(e)}>"


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# --------------------------------------------------------------------------- the client

def ask(pid: int, request: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Send ``request`` to process ``pid``'s control server and return its answer (the request's
    ``timeout`` is set to ``timeout``; the wait for the answer allows a little more).  Raises
    :class:`ControlError` saying why the process cannot be asked."""
    if pid <= 0:
        raise ControlError(f"{pid} is not a process id")
    if not _process.pid_alive(pid):
        raise ControlError(f"no process {pid}")
    found = find_socket(pid)
    if found is None:
        if _owned_by_other(pid):
            raise ControlError(f"process {pid} is another user's: only its owner can reach its pools")
        raise ControlError(f"process {pid} holds no honeydew pool (or it is another user's)")
    sock_path, key_path = found
    key = _read_key(pid, key_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _timeouts(sock, timeout + IO_TIMEOUT)
        try:
            sock.connect(sock_path)
        except (ConnectionRefusedError, FileNotFoundError):
            raise ControlError(f"process {pid} holds no honeydew pool now (its control socket {sock_path} is "
                               f"stale)") from None
        except OSError as e:
            raise ControlError(f"cannot connect to the control socket {sock_path} of process {pid}: {e}") from None
        conn = Connection(sock.detach())
    finally:
        sock.close()
    try:
        answer_challenge(conn, key)
        deliver_challenge(conn, key)
        conn.send_bytes(_dumps({**request, "timeout": timeout}))
        raw = conn.recv_bytes(MAX_ANSWER)
    except AuthenticationError as e:
        raise ControlError(f"process {pid} refused the key in {key_path} ({e})") from None
    except EOFError:
        raise ControlError(f"process {pid} closed its control socket {sock_path} without answering") from None
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise ControlError(f"process {pid} did not answer within {timeout + IO_TIMEOUT:g}s "
                               f"(its control socket {sock_path})") from None
        raise ControlError(f"process {pid}: its control socket {sock_path}: {e}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(raw)
    except ValueError as e:
        raise ControlError(f"process {pid} answered something that is not JSON ({e})") from None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise ControlError(f"process {pid} answered {str(answer)[:80]!r}, not a control answer")
    return answer


def _read_key(pid: int, key_path: str) -> bytes:
    try:
        fd = os.open(key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ControlError(f"process {pid} holds no honeydew pool now (its key file {key_path} is gone)") from None
    except OSError as e:
        raise ControlError(f"cannot read the control key {key_path} of process {pid}: {e}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
            raise ControlError(f"the control key {key_path} is not a private file of this user "
                               f"(mode {stat.S_IMODE(st.st_mode):o}): remove it, and restart the program")
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _owned_by_other(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid != os.getuid()
    except OSError:
        return False
