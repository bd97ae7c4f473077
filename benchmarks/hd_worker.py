"""The honeydew worker module of the recovery measurement.

``init`` and the ``@honeydew.task`` functions report to a Unix datagram socket owned by the
benchmark host, so the host learns exactly when a worker started (and how long its init took),
when a job began, which delivery it is and on which process it runs.  Times are
``time.monotonic()``: one clock for every process on the machine.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import honeydew


@honeydew.task
def nap(seconds: float, state: str) -> int:
    """A job that sleeps (the loss stream of the recovery measurement): returns its deliveries."""
    time.sleep(seconds)
    return honeydew.current_job().deliveries


def _report(path: str, *fields: Any) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(repr(fields).encode(), path)
    finally:
        s.close()


def init(report_path: str) -> str:
    """Worker init: report (``init``, pid, start, end) on the host's socket; the state is the path."""
    t0 = time.monotonic()
    state = report_path
    _report(report_path, "init", os.getpid(), t0, time.monotonic())
    return state


@honeydew.task
def ping(state: str) -> int:
    return os.getpid()


@honeydew.task
def victim(state: str) -> tuple[int, int]:
    """First delivery: report and hang (the host SIGKILLs this worker).  Re-run: report, return."""
    job = honeydew.current_job()
    _report(state, "start", os.getpid(), time.monotonic(), job.deliveries)
    if job.deliveries == 1:
        time.sleep(60)
    return os.getpid(), job.deliveries


@honeydew.task
def blocker(release_path: str, state: str) -> int:
    """Occupy the other worker until the host says so (so the re-run must go to the replacement)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(release_path)
        s.settimeout(30)
        _report(state, "start", os.getpid(), time.monotonic(), honeydew.current_job().deliveries)
        try:
            s.recv(64)
        except TimeoutError:
            pass
    finally:
        s.close()
    return os.getpid()
