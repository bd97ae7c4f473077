"""honeydew: a job queue and worker pool with a supervisor tree ("Honey, do!").

Permanent worker processes hold state built once by ``init``, pull jobs on demand, and survive
the crashes of the jobs they run.  Start with :class:`Pool`; ``docs/architecture.md`` shows the
process tree, every message and one job's life.
"""

from . import dispatchers, queues
from .context import JobInfo, current_job, progress, restart_worker
from .errors import (
                     HoneydewError,
                     JobLost,
                     JobTimeout,
                     PoolBroken,
                     PoolClosed,
                     QueueFull,
                     RemoteError,
                     SerializationError,
                     UnknownTask,
                     WorkerCrashed,
                     WorkerInitError,
)
from .executor import ProcessPoolExecutor
from .failed import FailedRecord
from .failure_modes import Abandon, FailureMode, Move, Requeue, Retry
from .pool import JobFuture, Pool
from .tasks import task

__version__ = "0.1.0"

__all__ = [
    "Abandon",
    "FailedRecord",
    "FailureMode",
    "HoneydewError",
    "JobFuture",
    "JobInfo",
    "JobLost",
    "JobTimeout",
    "Move",
    "Pool",
    "PoolBroken",
    "PoolClosed",
    "ProcessPoolExecutor",
    "QueueFull",
    "RemoteError",
    "Requeue",
    "Retry",
    "SerializationError",
    "UnknownTask",
    "WorkerCrashed",
    "WorkerInitError",
    "current_job",
    "dispatchers",
    "progress",
    "queues",
    "restart_worker",
    "task",
]
