"""Tasks for the tests of durable queues, importable by every process (a caller script's pool and
the test's own pool run the same job, so its task must pickle by reference on both sides).

Each run leaves a file ``run-<job id>-<deliveries>-<pid>`` in a directory, so a test can tell which
pool ran a job, how many times, and what delivery count the job carried each time."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import honeydew


class Run(NamedTuple):
    job_id: str
    deliveries: int
    pid: int


def run_and_wait(directory: str, release: str, timeout: float = 60.0, *_state: Any) -> int:
    """Record this run, then wait until ``release`` exists (at most ``timeout`` s); the delivery count."""
    info = honeydew.current_job()
    Path(directory, f"run-{info.id}-{info.deliveries}-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.01)
    return info.deliveries


def runs(directory: Path | str) -> list[Run]:
    """Every run :func:`run_and_wait` recorded in ``directory``."""
    out = []
    for p in Path(directory).glob("run-*"):
        job_id, deliveries, pid = p.name[len("run-"):].rsplit("-", 2)
        out.append(Run(job_id, int(deliveries), int(pid)))
    return sorted(out)


class ItsOwnError(Exception):
    """An exception class of the tests' own: it must come back to a caller in another pool as itself."""


def raise_its_own(message: str, *_state: Any) -> None:
    raise ItsOwnError(message)


def square(x: int) -> int:
    return x * x


def square_unless_three(x: int) -> int:
    if x == 3:
        raise ItsOwnError("three")
    return x * x


class Store:
    """A worker class whose state needs arguments (a host and a port, say): an enqueue-only pool
    names its tasks without knowing them."""

    def __init__(self, host: str, port: int) -> None:
        self.where = f"{host}:{port}"

    @honeydew.task
    def where_am_i(self, tag: str) -> str:
        return f"{tag}@{self.where}"
