"""The running job's id, shared between a worker and its monitor without a message or a lock.

The monitor maps a small anonymous shared page before forking the worker.  The worker writes the
job id it starts and clears it when the job ends; a sequence number, bumped after each write (odd
while a job runs), lets the monitor detect a torn read and retry.  Nothing blocks, and a worker
killed mid-write leaves at worst a value the monitor reads as "no job".

The monitor reads it only when it must act on one job: a cancel (``KillWorker``) or a passed
time limit.  It stops the worker only if that job is still the one running, and escalates to
SIGKILL only if it still is when the grace period ends, so a job that finished meanwhile is never
killed in place of the next one.  Before its SIGTERM it writes that job's sequence number into the
page's last word (the worker never writes there): the worker's handler, seeing its running job
named, ends the job at once, where a SIGTERM alone (a warm stop) lets the job finish.
"""

from __future__ import annotations

import mmap
import struct

_SIZE = 256
_HEAD = struct.Struct("=QHB")  # sequence, id length, state: written by the worker only
_STOP = struct.Struct("=Q")    # the sequence number of a job the monitor wants stopped: written by the monitor only
_STOP_AT = _SIZE - _STOP.size
_MAX_ID = _STOP_AT - _HEAD.size
IDLE, RUNNING = 0, 1


class JobSlot:
    __slots__ = ("_buf", "_seq")

    def __init__(self) -> None:
        self._buf = mmap.mmap(-1, _SIZE)
        self._buf[0:1] = b"\0"  # fault the shared page in here, before the fork: it is then no one's own
        self._seq = 0

    def start(self, job_id: str) -> None:
        """Worker: ``job_id`` starts now."""
        raw = job_id.encode()[:_MAX_ID]
        self._seq += 1
        self._buf[_HEAD.size:_HEAD.size + len(raw)] = raw
        _HEAD.pack_into(self._buf, 0, self._seq, len(raw), RUNNING)

    def end(self) -> None:
        """Worker: the job is over (and its result, if any, sent)."""
        self._seq += 1
        _HEAD.pack_into(self._buf, 0, self._seq, 0, IDLE)

    def stop_requested(self) -> bool:
        """Worker (in its SIGTERM handler): has the monitor asked to stop the job running now?"""
        return bool(self._seq & 1) and _STOP.unpack_from(self._buf, _STOP_AT)[0] == self._seq

    def read(self) -> tuple[int, str | None]:
        """Monitor: (state, job id)."""
        return self._read()[:2]

    def _read(self) -> tuple[int, str | None, int]:
        for _ in range(100):
            seq, n, state = _HEAD.unpack_from(self._buf, 0)
            raw = bytes(self._buf[_HEAD.size:_HEAD.size + n])
            if _HEAD.unpack_from(self._buf, 0)[0] == seq:
                return state, (raw.decode(errors="replace") if n else None), seq
        return IDLE, None, 0

    def request_stop(self, job_id: str) -> bool:
        """Monitor: ask the worker to stop ``job_id`` now, if it is the job running (the SIGTERM that
        follows then ends the job instead of being a warm stop).  True if it was running."""
        state, current, seq = self._read()
        if state != RUNNING or current != job_id:
            return False
        _STOP.pack_into(self._buf, _STOP_AT, seq)
        return True

    def current(self) -> str | None:
        """Monitor: the id of the job running now, or None."""
        state, job_id = self.read()
        return job_id if state == RUNNING else None

    def close(self) -> None:
        self._buf.close()
