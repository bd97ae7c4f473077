"""The queue process's I/O shell (:mod:`honeydew.queue_process`), on real sockets in this process."""

from __future__ import annotations

import logging
import select

from honeydew._wire import Endpoint, pack, socketpair
from honeydew.dispatchers import LRU
from honeydew.failure_modes import Abandon
from honeydew.protocol import KillWorker
from honeydew.queue_process import QueueConfig, _Shell
from honeydew.queues import Memory


def _shell() -> tuple[_Shell, list[Endpoint]]:
    caller = socketpair()
    worker = socketpair()
    kill = socketpair()
    cfg = QueueConfig(index=0, gen=0, token="t", backend=Memory(), dispatcher=LRU(), failure_mode=Abandon(),
                      caller=Endpoint(caller[0]), workers=[Endpoint(worker[0])], monitors=[Endpoint(kill[0])],
                      count_settled=False, has_workers=True)
    shell = _Shell(cfg, logging.getLogger("test"))
    for fd in (cfg.caller.fd, cfg.workers[0].fd):
        shell._watch(fd)
    return shell, [Endpoint(caller[1]), Endpoint(worker[1]), Endpoint(kill[1])]


def test_a_full_kill_socket_is_watched_for_writability_then_forgotten() -> None:
    """A monitor's kill socket is never read by the queue: it is registered with poll only while
    its buffer is full, and unregistered once it drains (it used to be modified without ever
    having been registered, which killed the queue process with ENOENT)."""
    shell, (_, _, monitor_end) = _shell()
    kill_fd = shell.cfg.monitors[0].fd
    out = shell.monitor_out[0]
    while True:  # fill the socket: the monitor (stopped, say) reads nothing
        for _ in range(2000):
            out.put(KillWorker(123, "x" * 200, "cancelled"))
        shell._flush()
        if kill_fd in shell.writing:
            break
    assert out, "the socket should be full with messages still waiting"
    events = dict(shell.poller.poll(0))
    assert kill_fd not in events  # registered for writability only, and not writable yet
    got = 0
    while out or got == 0:
        got += len(monitor_end.recv(block=False, frames=1 << 20))
        shell._flush()
    assert kill_fd not in shell.writing
    assert not out
    # unregistered again: poll knows nothing of it
    shell.poller.register(kill_fd, select.POLLOUT)  # (would raise FileExistsError if still registered)
    for ep in [shell.cfg.caller, shell.cfg.workers[0], shell.cfg.monitors[0], monitor_end]:
        ep.sock.close()


def test_a_full_worker_socket_keeps_being_read() -> None:
    shell, (_, worker_end, _) = _shell()
    fd = shell.cfg.workers[0].fd
    out = shell.worker_out[0]
    while fd not in shell.writing:
        for _ in range(2000):
            out.put(KillWorker(1, "y" * 200, ""))
        shell._flush()
    # still registered for reading, now for writing too
    worker_end.sock.sendmsg(pack([KillWorker(2, "", "")])[0])
    events = dict(shell.poller.poll(0))
    assert events.get(fd, 0) & select.POLLIN
    while out:
        worker_end.recv(block=False, frames=1 << 20)
        shell._flush()
    assert fd not in shell.writing and fd in shell.reading
