"""The honeydew worker module of the ``rabbitmq`` measurement: jobs that come from the broker name
a registered task (a raw callable is refused there unless the pool allows it)."""

from __future__ import annotations

import honeydew


@honeydew.task
def noop() -> None:
    """The no-op job of the cast and call measurements."""
    return None
