"""The bare pika consumer under honeydew's demand rule (a floor of the ``rabbitmq`` measurement).

``python -m benchmarks.pika_drain QUEUE SLOTS`` consumes ``QUEUE`` of the broker at
``$HONEYDEW_BENCH_AMQP_URL`` with ``SLOTS`` consumers of prefetch 1 each, on one connection: at
most ``SLOTS`` unacknowledged messages, as a honeydew pool whose workers hold ``SLOTS`` credits in
all, running jobs included, may hold (its consumer prefetch).  Each delivery is acked at once: no
work and no hop to a worker process, so what it drains is the most any consumer held to that
prefetch can drain on this broker.  It stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def main(queue: str, slots: int) -> None:
    import pika

    from .systems import AMQP_URL

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)  # (per consumer: each of the SLOTS consumers holds one message)

        def ack(ch: Any, method: Any, props: Any, body: bytes) -> None:
            ch.basic_ack(method.delivery_tag)

        for _ in range(slots):
            ch.basic_consume(queue, ack)
        ch.start_consuming()
    finally:
        try:
            conn.close()
        except Exception:  # the broker or the connection went first: nothing left to close
            pass


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
