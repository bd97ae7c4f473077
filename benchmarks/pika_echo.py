"""The consumer of the bare pika round trip (the floor of the ``rabbitmq`` measurement).

``python -m benchmarks.pika_echo QUEUE [QUEUE ...]`` consumes the given queues of the broker at
``$HONEYDEW_BENCH_AMQP_URL`` (prefetch 1, as one worker) and answers each request on its
``reply_to`` queue with the request's correlation id, then acks it (as a worker acks after its
job).  It stops on SIGTERM.  :func:`serve` is the consumer process's skeleton, which
:mod:`benchmarks.pika_drain` shares.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any


def serve(consume: Callable[[Any], None]) -> None:
    """Connect to the broker, let ``consume(channel)`` add its consumers (each of prefetch 1), and
    consume until SIGTERM."""
    import pika

    from .systems import AMQP_URL

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)  # (per consumer, for the consumers made after it)
        consume(ch)
        ch.start_consuming()
    finally:
        try:
            conn.close()
        except Exception:  # the broker or the connection went first: nothing left to close
            pass


def main(queues: list[str]) -> None:
    import pika

    def answer(ch: Any, method: Any, props: Any, body: bytes) -> None:
        ch.basic_publish("", props.reply_to, body, pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)

    def consume(ch: Any) -> None:
        for q in queues:
            ch.basic_consume(q, answer)

    serve(consume)


if __name__ == "__main__":
    main(sys.argv[1:])
