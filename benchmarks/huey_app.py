"""huey's side of the ``durable`` measurement: a ``SqliteHuey`` on one file, fsync on (SQLite
``synchronous=FULL``, as honeydew's SQLite queue by default), results not stored, and its no-op task.

The benchmark host builds its own instance on the trial's file (:func:`build`); the consumer it
starts imports this module, whose ``huey`` is built on ``$HONEYDEW_BENCH_HUEY_DB``::

    python -m huey.bin.huey_consumer benchmarks.huey_app.huey -w 2 -k process
"""

from __future__ import annotations

import os
from typing import Any


def noop() -> None:
    return None


def build(path: str) -> tuple[Any, Any]:
    """(the huey instance on ``path``, its no-op task)."""
    from huey import SqliteHuey

    h = SqliteHuey("honeydew-bench", filename=path, fsync=True, results=False)
    return h, h.task(name="noop")(noop)


huey: Any = build(os.environ["HONEYDEW_BENCH_HUEY_DB"])[0] if os.environ.get("HONEYDEW_BENCH_HUEY_DB") else None
