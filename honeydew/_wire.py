"""Framing over ``SOCK_SEQPACKET`` Unix sockets: the only way honeydew processes talk.

Why seqpacket and not pipes: every ``send`` is delivered whole or not at all, so a process killed
in the middle of a write, or of a read, never leaves half a message behind for the next reader.
That lets a socket outlive the processes at its ends (the supervisor keeps both ends of every
socket and each restarted child inherits its own), so a restart needs no file descriptor passing
and no reconnection.

A frame is one pickled list of wire tuples (several messages for one destination travel in one
write).  A frame bigger than :data:`CHUNK` goes as several packets, each with a one-byte header:
bit 0 marks the first packet, bit 1 the last.  The reader drops a half-reassembled frame when a
new first packet arrives, and drops continuation packets that have no first one, so a writer or
reader that dies mid-frame costs only that frame.
"""

from __future__ import annotations

import errno
import os
import pickle
import socket
from collections import deque
from typing import Any

from .protocol import decode, encode

CHUNK = 60 * 1024
FIRST = 1
LAST = 2
_WHOLE = bytes([FIRST | LAST])
_FIRST = bytes([FIRST])
_MIDDLE = bytes([0])
_LAST = bytes([LAST])
_BUFSIZE = 4 * 1024 * 1024


def socketpair() -> tuple[socket.socket, socket.socket]:
    """A connected seqpacket pair with roomy buffers; both ends non-inheritable across exec."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFSIZE)
    return a, b


def pack(msgs: list[Any]) -> list[list[Any]]:
    """The packets (header + data buffers) that carry ``msgs`` as one frame."""
    return pack_wire([encode(m) for m in msgs])


def pack_wire(wire: list[tuple[Any, ...]]) -> list[list[Any]]:
    """The packets for messages already in wire form ``(TAG, *fields)`` (the per-job hot paths
    build those directly, skipping the named record)."""
    frame = pickle.dumps(wire, protocol=5)
    n = len(frame)
    if n <= CHUNK:
        return [[_WHOLE, frame]]
    view = memoryview(frame)
    packets = [[_FIRST, view[:CHUNK]]]
    pos = CHUNK
    while pos + CHUNK < n:
        packets.append([_MIDDLE, view[pos : pos + CHUNK]])
        pos += CHUNK
    packets.append([_LAST, view[pos:]])
    return packets


class Endpoint:
    """One end of a seqpacket socket: blocking or non-blocking sends, reassembling reads."""

    __slots__ = ("sock", "fd", "_parts")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._parts: list[bytes] | None = None

    def fileno(self) -> int:
        return self.fd

    def send(self, *msgs: Any) -> None:
        """Send ``msgs`` as one frame, blocking while the peer's buffer is full.

        Raises ``BrokenPipeError``/``ConnectionResetError`` when no process holds the other end."""
        sendmsg = self.sock.sendmsg
        for packet in pack(list(msgs)):
            sendmsg(packet)

    def send_wire(self, *wire: tuple[Any, ...]) -> None:
        """:meth:`send` for messages already in wire form (``Message.TAG``, fields in order)."""
        frame = pickle.dumps(list(wire), protocol=5)
        if len(frame) <= CHUNK:
            self.sock.sendmsg([_WHOLE, frame])
            return
        for packet in pack_wire(list(wire)):
            self.sock.sendmsg(packet)

    def recv(self, block: bool = True, frames: int = 512) -> list[Any]:
        """The messages of up to ``frames`` complete frames now readable (waiting for the first
        one if ``block``).  Readers that expect one frame at a time pass ``frames=1`` and let their
        level-triggered ``poll`` bring them back for more: that saves a failing read per wake-up.

        Raises ``EOFError`` when the other end is closed everywhere."""
        out: list[Any] = []
        recv = self.sock.recv
        done = 0
        while done < frames:
            try:
                data = recv(CHUNK + 1, socket.MSG_DONTWAIT if (out or not block) else 0)
            except (BlockingIOError, InterruptedError):
                return out
            except ConnectionResetError:
                raise EOFError from None
            if not data:
                if out:
                    return out
                raise EOFError
            head = data[0]
            if head & FIRST:
                self._parts = None
                if head & LAST:
                    out.extend(map(decode, pickle.loads(memoryview(data)[1:])))
                    done += 1
                else:
                    self._parts = [data[1:]]
            elif self._parts is not None:
                self._parts.append(data[1:])
                if head & LAST:
                    frame = b"".join(self._parts)
                    self._parts = None
                    out.extend(map(decode, pickle.loads(frame)))
                    done += 1
        return out


class Outbox:
    """Messages waiting for one endpoint, sent without ever blocking the sender.

    Used by the queue process and the supervisor, which must never block writing to anyone: as
    long as they always read, no cycle of processes can wait on each other's writes."""

    __slots__ = ("endpoint", "msgs", "packets")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.msgs: list[Any] = []
        self.packets: deque[list[Any]] = deque()

    def put(self, msg: Any) -> None:
        self.msgs.append(encode(msg))

    def put_wire(self, wire: tuple[Any, ...]) -> None:
        self.msgs.append(wire)

    def __bool__(self) -> bool:
        return bool(self.msgs or self.packets)

    def flush(self) -> bool:
        """Send what the socket takes now; True when nothing is left.

        Raises ``BrokenPipeError`` when the peer is gone for good."""
        if not self.packets and self.msgs:
            self.packets.extend(pack_wire(self.msgs))
            self.msgs = []
        sendmsg = self.endpoint.sock.sendmsg
        packets = self.packets
        while packets:
            try:
                sendmsg(packets[0], [], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                    return False
                raise
            packets.popleft()
            if not packets and self.msgs:
                packets.extend(pack_wire(self.msgs))
                self.msgs = []
        return True


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
