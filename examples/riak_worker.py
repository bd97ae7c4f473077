"""A decorator-registered task module, in the style of the README's Riak example.

A real worker would open a database connection in ``init``; this one keeps a dict, so the demo
runs anywhere.  ``init`` runs once per worker process; what it returns is the worker's state,
appended after the positional arguments of every task.
"""

from __future__ import annotations

import os

import honeydew


class FakeRiak:
    def __init__(self, ip: str, port: int) -> None:
        self.address = f"{ip}:{port}"
        self.pid = os.getpid()
        self.data: dict[tuple[str, str], object] = {}

    def ping(self) -> str:
        return "pong"


def init(ip: str, port: int) -> FakeRiak:
    print(f"  [worker pid {os.getpid()}] init: connecting to {ip}:{port}", flush=True)
    return FakeRiak(ip, port)


@honeydew.task
def up(riak: FakeRiak) -> bool:
    return riak.ping() == "pong"


@honeydew.task
def put(bucket: str, key: str, obj: object, riak: FakeRiak, *, content_type: str = "text/plain") -> None:
    riak.data[(bucket, key)] = obj


@honeydew.task
def get(bucket: str, key: str, riak: FakeRiak) -> object:
    return riak.data.get((bucket, key))


@honeydew.task
def whoami(riak: FakeRiak) -> int:
    return riak.pid


@honeydew.task
def flaky_write(key: str, riak: FakeRiak) -> str:
    """Dies (SIGKILL, as an OOM kill would) the first time it is delivered; succeeds after."""
    job = honeydew.current_job()
    if job.deliveries == 1:
        os.kill(os.getpid(), 9)
    return f"{key} written by pid {riak.pid} on delivery {job.deliveries}"


@honeydew.task
def poison(riak: FakeRiak) -> None:
    """Kills every worker that takes it."""
    os.kill(os.getpid(), 9)
