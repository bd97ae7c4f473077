"""Dramatiq's side of the ``rabbitmq`` measurement: a ``RabbitmqBroker`` on the bench's broker with
Dramatiq's defaults (persistent messages, a message acked after its job), results through its Redis
backend, and two actors on the trial's queue: ``noop`` (cast: no result stored) and ``noop_result``
(its result stored, for ``send`` + ``get_result``).

The benchmark host builds its own broker (:func:`build`, publisher confirms on or off); the worker
it starts imports this module, whose ``broker`` is built on ``$HONEYDEW_BENCH_DRAMATIQ_QUEUE``::

    dramatiq benchmarks.dramatiq_app:broker --processes 2 --threads 1 --queues QUEUE
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from .systems import AMQP_URL, REDIS_URL


def noop() -> None:
    return None


class App(NamedTuple):
    broker: Any
    backend: Any     # the Redis result backend
    cast: Any        # the actor whose results are not stored
    call: Any        # the actor whose results are stored


def build(queue: str, confirm_delivery: bool, url: str = AMQP_URL, redis_url: str = REDIS_URL) -> App:
    """A broker of its own with both actors on ``queue`` (nothing is declared until it is used)."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    broker = RabbitmqBroker(url=url, confirm_delivery=confirm_delivery)
    backend = RedisBackend(url=redis_url)
    broker.add_middleware(Results(backend=backend))
    cast = dramatiq.actor(noop, actor_name="noop", queue_name=queue, broker=broker)
    call = dramatiq.actor(noop, actor_name="noop_result", queue_name=queue, broker=broker, store_results=True)
    return App(broker, backend, cast, call)


_queue = os.environ.get("HONEYDEW_BENCH_DRAMATIQ_QUEUE")
broker: Any = build(_queue, confirm_delivery=False).broker if _queue else None
