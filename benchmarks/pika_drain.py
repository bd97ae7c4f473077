"""The bare pika consumer under honeydew's demand rule (a floor of the ``rabbitmq`` measurement).

``python -m benchmarks.pika_drain QUEUE SLOTS`` consumes ``QUEUE`` of the broker at
``$HONEYDEW_BENCH_AMQP_URL`` with ``SLOTS`` consumers of prefetch 1 each, on one connection: at
most ``SLOTS`` unacknowledged messages, as a honeydew pool whose workers hold ``SLOTS`` credits in
all, running jobs included, may hold (its consumer prefetch).  Each delivery is acked at once: no
work and no hop to a worker process, so what it drains is the most any consumer held to that
prefetch can drain on this broker.  It stops on SIGTERM.
"""

from __future__ import annotations

import sys
from typing import Any

from .pika_echo import serve


def main(queue: str, slots: int) -> None:
    def ack(ch: Any, method: Any, props: Any, body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)

    def consume(ch: Any) -> None:
        for _ in range(slots):
            ch.basic_consume(queue, ack)

    serve(consume)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
