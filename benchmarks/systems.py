"""One adapter per system: how each side does the same thing with its own default options.

Every pool has ``WORKERS`` (2) workers; nothing else is tuned.  Leaving the pool is each side's
own ``with`` exit (``__exit__``): honeydew close+join, ``multiprocessing.Pool`` terminate,
``ProcessPoolExecutor``/loky ``shutdown(wait=True)``, pebble close+join, mpire terminate.
Each adapter imports its library lazily, so a system's benchmark host loads only its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any

WORKERS = 2

HONEYDEW = "honeydew"
MP = "mp.Pool"
PPE = "ProcessPoolExecutor"
LOKY = "loky"
PEBBLE = "pebble"
MPIRE = "mpire"
SERIAL = "serial"          # the CPU-bound items run one after the other, no pool
FLOOR = "raw-pipes"        # bare pickled messages over pipes between forked processes, no pool

#: Every system, in the order of the tables.
SYSTEMS = (HONEYDEW, MP, PPE, LOKY, PEBBLE, MPIRE)
PEERS = SYSTEMS[1:]

#: A durable task queue beside honeydew's durable SQLite queue (the ``durable`` measurement only):
#: ``SqliteHuey`` and its consumer, when huey is installed (the bench extra has it).
HUEY = "huey"
HAVE_HUEY = importlib.util.find_spec("huey") is not None

#: The ``rabbitmq`` measurement (benchmarks/broker_trials.py): Dramatiq on the same RabbitMQ broker as
#: honeydew's RabbitMQ queue, and bare pika (the floor: a loop of confirmed publishes, a round trip
#: through an echo consumer).  Neither holds a pool in its host: each trial starts its own workers.
DRAMATIQ = "dramatiq"
PIKA = "pika"
HAVE_PIKA = importlib.util.find_spec("pika") is not None
HAVE_DRAMATIQ = HAVE_PIKA and importlib.util.find_spec("dramatiq") is not None
#: the brokers of that measurement (the environment variables override them; their passwords are
#: never printed: :func:`shown`)
AMQP_URL = os.environ.get("HONEYDEW_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("HONEYDEW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def shown(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and results)."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class System:
    """The operations a measurement needs.  ``open`` makes a fresh pool; ``exit`` leaves its
    ``with`` block (so every side stops the way its users' code stops it)."""

    name = ""
    #: what ``call`` / ``submit`` / ``map`` are for this side, for the tables
    call_api = submit_api = map_api = ""
    #: True when ``map``'s default chunksize is 1 (one message per item)
    map_chunks_of_one = False

    def open(self) -> Any:
        raise NotImplementedError

    def call(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def collect(self, handle: Any) -> Any:
        raise NotImplementedError

    def map(self, pool: Any, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        raise NotImplementedError

    def exit(self, pool: Any) -> None:
        pool.__exit__(None, None, None)


class Honeydew(System):
    name = HONEYDEW
    call_api, submit_api, map_api = "pool.call", "pool.submit + result", "pool.map"

    def open(self) -> Any:
        import honeydew
        return honeydew.Pool(num_workers=WORKERS).__enter__()

    def call(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.call(fn, *args)

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.submit(fn, *args)

    def collect(self, handle: Any) -> Any:
        return handle.result()

    def map(self, pool: Any, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return list(pool.map(fn, items))


class MpPool(System):
    name = MP
    call_api, submit_api, map_api = "Pool.apply", "Pool.apply_async + get", "Pool.map"

    def open(self) -> Any:
        import multiprocessing
        return multiprocessing.Pool(WORKERS).__enter__()

    def call(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.apply(fn, args)

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.apply_async(fn, args)

    def collect(self, handle: Any) -> Any:
        return handle.get()

    def map(self, pool: Any, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return pool.map(fn, items)


class _Executor(System):
    call_api, submit_api, map_api = "submit().result()", "submit + result", "Executor.map"
    map_chunks_of_one = True

    def call(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.submit(fn, *args).result()

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.submit(fn, *args)

    def collect(self, handle: Any) -> Any:
        return handle.result()

    def map(self, pool: Any, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return list(pool.map(fn, items))


class ProcessPoolExecutor(_Executor):
    name = PPE

    def open(self) -> Any:
        import concurrent.futures
        return concurrent.futures.ProcessPoolExecutor(max_workers=WORKERS).__enter__()


class Loky(_Executor):
    name = LOKY

    def open(self) -> Any:
        import loky
        return loky.ProcessPoolExecutor(max_workers=WORKERS).__enter__()


class Pebble(System):
    name = PEBBLE
    call_api, submit_api, map_api = "schedule().result()", "schedule + result", "ProcessPool.map"
    map_chunks_of_one = True

    def open(self) -> Any:
        import pebble
        return pebble.ProcessPool(max_workers=WORKERS).__enter__()

    def call(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.schedule(fn, args).result()

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.schedule(fn, args)

    def collect(self, handle: Any) -> Any:
        return handle.result()

    def map(self, pool: Any, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return list(pool.map(fn, items).result())


class Mpire(System):
    name = MPIRE
    call_api, submit_api, map_api = "WorkerPool.apply", "apply_async + get", "WorkerPool.map"

    def open(self) -> Any:
        import mpire
        return mpire.WorkerPool(n_jobs=WORKERS).__enter__()

    def call(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.apply(fn, args)

    def submit(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return pool.apply_async(fn, args)

    def collect(self, handle: Any) -> Any:
        return handle.get()

    def map(self, pool: Any, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        return pool.map(fn, items)


class _BrokerClient(System):
    """A system measured only by the ``rabbitmq`` trials, which start its worker processes
    themselves.  Its host holds no pool: ``open`` imports the client library (so the host pays for
    that at start, outside every timing) and ``call`` runs the function in the host."""

    library = ""

    def open(self) -> Any:
        return importlib.import_module(self.library)

    def call(self, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def exit(self, pool: Any) -> None:
        return None


class Dramatiq(_BrokerClient):
    name = DRAMATIQ
    library = "dramatiq.brokers.rabbitmq"


class Pika(_BrokerClient):
    name = PIKA
    library = "pika"


ADAPTERS: dict[str, type[System]] = {
    HONEYDEW: Honeydew, MP: MpPool, PPE: ProcessPoolExecutor, LOKY: Loky, PEBBLE: Pebble, MPIRE: Mpire,
    DRAMATIQ: Dramatiq, PIKA: Pika,
}


def adapter(name: str) -> System:
    return ADAPTERS[name]()
