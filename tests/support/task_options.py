"""A worker module whose tasks have options of their own (``@honeydew.task(...)``)."""

from __future__ import annotations

import time
from pathlib import Path

import honeydew


def _stamp(directory: str, name: str) -> float:
    now = time.time()
    (Path(directory) / name).write_text(repr(now))
    return now


@honeydew.task
def plain_stamp(directory: str, name: str) -> float:
    return _stamp(directory, name)


@honeydew.task(priority=5)
def urgent_stamp(directory: str, name: str) -> float:
    return _stamp(directory, name)


@honeydew.task(job_timeout=0.3)
def quick_nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _runs(path: str) -> int:
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n


@honeydew.task(failure_mode=honeydew.Retry(times=2, backoff=0))
def flaky(path: str) -> int:
    n = _runs(path)
    if n < 2:
        raise ValueError(f"run {n} fails")
    return n


@honeydew.task
def fails_once(path: str) -> int:
    n = _runs(path)
    if n < 2:
        raise ValueError(f"run {n} fails")
    return n
