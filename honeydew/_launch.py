"""Starting a pool's process tree: every socket, then the supervisor.  [caller]

:func:`launch` makes every socket of the tree before any process exists (``docs/architecture.md``
draws them), starts the supervisor with its ends, closes them in the caller, and returns the
caller's own ends (:class:`Tree`).  From then on the supervisor starts and restarts everything
else; the caller only talks to the processes through these ends.

The supervisor is forked, unless forking the caller is unsafe (``_threads.fork_hazard``: another
thread, or native threads that would not survive the fork) or ``start_method='spawn'`` asks: then
it is a fresh interpreter (``honeydew._boot.main()``) that reads its configuration from a pipe.
A forked supervisor keeps, of the caller's descriptors, only its own ends, the caller's output
streams and the descriptors the worker's init arguments need.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass

from . import _boot, _threads, supervisor
from ._payload import Encoder, dumps_for_spawn, fds_held_by
from ._process import close_fds_except, exit_status, pidfd
from ._wire import Endpoint, socketpair
from .config import PoolConfig
from .tasks import WorkerSpec


class SupervisorHandle:
    """The caller's view of the supervisor process: pid, pidfd, how to reap it."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None) -> None:
        self.pid = pid
        self.popen = popen
        fd = pidfd(pid)
        self.pidfd = fd if fd is not None else os.open("/dev/null", os.O_RDONLY)
        self.exitcode: int | None = None

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def reap(self, block: bool) -> bool:
        if self.exitcode is not None:
            return True
        if self.popen is not None:
            try:
                code = self.popen.wait(None if block else 0)
            except subprocess.TimeoutExpired:
                return False
            self.exitcode = code
            return True
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.exitcode = -1
            return True
        if pid == 0:
            return False
        self.exitcode = exit_status(status)
        return True


@dataclass
class Tree:
    """The caller's ends of a started tree."""

    control: Endpoint              # the control socket, to and from the supervisor
    queues: list[Endpoint]         # [i]: the socket to and from queue i
    replies: list[Endpoint]        # [j]: the socket worker slot j writes results to
    lifeline: int                  # the lifeline pipe's write end: the supervisor reads EOF when the caller dies
    supervisor: SupervisorHandle
    start_method: str              # how the supervisor was started: "fork" or "spawn"
    spawn_reason: str              # why it was spawned rather than forked ('' when forked), for status()


def launch(config: PoolConfig, spec: WorkerSpec, token: str, spool: str | None, encoder: Encoder) -> Tree:
    """Make every socket, start the supervisor, and return the caller's ends.  ``encoder`` learns
    whether the workers are forked from this process (they then know ``__main__``'s functions).
    Raises ``TypeError`` when the supervisor must be spawned and the worker, its init arguments,
    queue or failure mode cannot be pickled for it."""
    nq, nw = config.num_queues, config.num_workers
    control = socketpair()
    callers = [socketpair() for _ in range(nq)]
    links = [[socketpair() for _ in range(nw)] for _ in range(nq)]       # [i][j]: (queue end, worker end)
    replies = [socketpair() for _ in range(nw)]                          # (caller end, worker end)
    kills = [[socketpair() for _ in range(nw)] for _ in range(nq)]       # [i][j]: (queue end, monitor end)
    life_r, life_w = os.pipe()
    cfg = supervisor.SupervisorConfig(
        token=token, spec=spec, num_workers=nw, num_queues=nq, queue=config.queue,
        dispatcher=config.dispatcher, failure_mode=config.failure_mode, prefetch=config.prefetch,
        init_retry_secs=config.init_retry_secs, init_retry_max_secs=config.init_retry_max_secs,
        count_settled=config.max_pending is not None, suspended=config.suspended,
        lifeline=life_r, control=control[1].fileno(), queue_callers=[b.fileno() for _, b in callers],
        queue_workers=[[a.fileno() for a, _ in links[i]] for i in range(nq)],
        worker_queues=[[links[i][j][1].fileno() for i in range(nq)] for j in range(nw)],
        worker_replies=[b.fileno() for _, b in replies],
        queue_monitors=[[a.fileno() for a, _ in kills[i]] for i in range(nq)],
        monitor_queues=[[kills[i][j][1].fileno() for i in range(nq)] for j in range(nw)],
        init_timeout=config.init_timeout, kill_grace_secs=config.kill_grace_secs,
        max_jobs=config.max_jobs_per_worker, max_memory=config.max_memory_per_worker,
        threads=config.threads_per_worker, spool=spool)
    start_method = config.start_method
    hazard = _threads.fork_hazard() if start_method == "auto" else ""
    use_fork = start_method == "fork" or (start_method == "auto" and not hazard)
    spawn_reason = "" if use_fork else ("start_method='spawn'" if start_method == "spawn"
                                        else f"forking the caller is unsafe: {hazard}")
    if use_fork:
        encoder.snapshot_main()
        sys.stdout.flush()
        sys.stderr.flush()
        keep = cfg.fds() | _boot.output_fds() | inherited_fds(spec)
        pid = os.fork()
        if pid == 0:
            try:
                close_fds_except(keep)
                supervisor.run(cfg)
            finally:
                os._exit(70)
        handle = SupervisorHandle(pid, None)
    else:
        handle = SupervisorHandle(*_spawn(cfg, spawn_reason))
    # keep our ends; close the supervisor's
    os.close(life_r)
    for s in [control[1], *(b for _, b in callers), *(b for _, b in replies),
              *(s for row in links + kills for pair in row for s in pair)]:
        s.close()
    return Tree(control=Endpoint(control[0]), queues=[Endpoint(a) for a, _ in callers],
                replies=[Endpoint(a) for a, _ in replies], lifeline=life_w, supervisor=handle,
                start_method="fork" if use_fork else "spawn", spawn_reason=spawn_reason)


def _spawn(cfg: supervisor.SupervisorConfig, reason: str) -> tuple[int, subprocess.Popen[bytes]]:
    """Start the supervisor as a fresh interpreter and hand it ``cfg`` (``_boot``); ``reason`` is
    why it is not forked, for the error if ``cfg`` cannot be pickled."""
    try:
        blob, inherited = dumps_for_spawn(cfg)
    except Exception as e:
        raise TypeError(f"the pool's worker, its init arguments, queue or failure mode could not be pickled "
                        f"for the supervisor, which starts as a fresh interpreter ({reason}): "
                        f"{type(e).__name__}: {e}") from e
    r, w = os.pipe()
    try:
        popen = subprocess.Popen([sys.executable, "-c", "from honeydew._boot import main; main()", str(r),
                                  str(cfg.control)], pass_fds=sorted(cfg.fds() | {r} | set(inherited)),
                                 close_fds=True)
    finally:
        os.close(r)
    with os.fdopen(w, "wb") as f:
        pickle.dump(list(sys.path), f)
        pickle.dump(_boot.logging_setup(), f)
        pickle.dump(bytes(multiprocessing.current_process().authkey), f)
        f.write(blob)
    return popen.pid, popen


def inherited_fds(spec: WorkerSpec) -> set[int]:
    """The descriptors the worker's init arguments need in the workers (a ``multiprocessing``
    Queue or Connection among them, shared at process start as ProcessPoolExecutor shares them):
    a forked supervisor keeps them while it closes every other descriptor it inherited."""
    if not spec.args and spec.init is None:
        return set()
    try:
        return fds_held_by((spec.init, spec.args))
    except Exception:
        return set()  # not picklable: then it holds no multiprocessing object either
