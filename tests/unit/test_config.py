"""``PoolConfig``: every pool option checked, and its defaults resolved, without starting anything."""

from __future__ import annotations

import dataclasses
import os

import pytest

import honeydew
from honeydew import _threads
from honeydew.config import EXAMPLE, OPTIONS, PoolConfig
from honeydew.dispatchers import LRU, MRU
from honeydew.failure_modes import Abandon
from honeydew.queues import Memory, Queue


def test_the_defaults_are_resolved() -> None:
    cfg = PoolConfig.from_options()
    cpus = len(os.sched_getaffinity(0))
    assert cfg.num_workers == cpus
    assert cfg.threads_per_worker == _threads.auto_limit(cpus)
    assert isinstance(cfg.queue, Memory) and isinstance(cfg.dispatcher, LRU) and isinstance(cfg.failure_mode, Abandon)
    assert (cfg.num_queues, cfg.prefetch, cfg.max_pending, cfg.start_method) == (1, 1, None, "auto")
    assert (cfg.init_retry_secs, cfg.init_retry_max_secs, cfg.kill_grace_secs) == (5.0, 300.0, 1.0)
    assert (cfg.job_timeout, cfg.init_timeout, cfg.max_jobs_per_worker, cfg.max_memory_per_worker) == (None,) * 4


def test_given_values_are_kept_and_seconds_become_floats() -> None:
    mru = MRU()
    cfg = PoolConfig.from_options(num_workers=3, dispatcher=mru, threads_per_worker=None, init_retry_secs=2,
                                  job_timeout=7, init_timeout=1, kill_grace_secs=0, max_pending=10)
    assert cfg.num_workers == 3 and cfg.dispatcher is mru and cfg.threads_per_worker is None
    assert cfg.max_pending == 10
    for name in ("init_retry_secs", "job_timeout", "init_timeout", "kill_grace_secs"):
        assert type(getattr(cfg, name)) is float, name
    assert PoolConfig.from_options(num_workers=4, threads_per_worker="auto").threads_per_worker == \
        _threads.auto_limit(4)


def test_it_holds_every_option_pool_takes_and_is_frozen() -> None:
    assert tuple(f.name for f in dataclasses.fields(PoolConfig)) == OPTIONS
    cfg = PoolConfig.from_options(num_workers=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_workers = 3  # type: ignore[misc]
    assert PoolConfig.from_options(**cfg.options()) == cfg   # a resolved config checks again as itself


@pytest.mark.parametrize("options, exc, message", [
    ({"num_workers": -1}, ValueError, f"num_workers must be an int >= 0, got -1; e.g. {EXAMPLE}"),
    ({"num_workers": True}, ValueError, f"num_workers must be an int >= 0, got True; e.g. {EXAMPLE}"),
    ({"num_queues": 0}, ValueError, f"num_queues must be an int >= 1, got 0; e.g. {EXAMPLE}"),
    ({"prefetch": 1.5}, ValueError, f"prefetch must be an int >= 1, got 1.5; e.g. {EXAMPLE}"),
    ({"max_pending": 0}, ValueError, f"max_pending must be an int >= 1, got 0; e.g. {EXAMPLE}"),
    ({"init_retry_secs": -1}, ValueError,
     f"init_retry_secs must be a number of seconds >= 0, got -1; e.g. {EXAMPLE}"),
    ({"kill_grace_secs": None}, ValueError,
     f"kill_grace_secs must be a number of seconds >= 0, got None; e.g. {EXAMPLE}"),
    ({"job_timeout": 0}, ValueError,
     f"job_timeout must be a number of seconds > 0 or None, got 0; e.g. {EXAMPLE}"),
    ({"init_timeout": "1"}, ValueError,
     f"init_timeout must be a number of seconds > 0 or None, got '1'; e.g. {EXAMPLE}"),
    ({"max_jobs_per_worker": 0}, ValueError, f"max_jobs_per_worker must be an int >= 1, got 0; e.g. {EXAMPLE}"),
    ({"max_memory_per_worker": 0}, ValueError,
     f"max_memory_per_worker must be an int >= 1, got 0; e.g. {EXAMPLE}"),
    ({"threads_per_worker": "many"}, ValueError,
     "threads_per_worker must be 'auto', an int >= 1 or None (no limit), got 'many'; "
     "e.g. honeydew.Pool(num_workers=4, threads_per_worker=2)"),
    ({"threads_per_worker": 0}, ValueError, f"threads_per_worker must be an int >= 1, got 0; e.g. {EXAMPLE}"),
    ({"failure_mode": honeydew.Requeue}, TypeError,
     "failure_mode= takes an instance, not the class: e.g. failure_mode=honeydew.Requeue(max_deliveries=5)"),
    ({"dispatcher": "LRU"}, TypeError,
     "dispatcher= must be a honeydew.dispatchers.Dispatcher, got 'LRU'; e.g. dispatcher=honeydew.dispatchers.LRU()"),
    ({"queue": 1}, TypeError,
     f"queue= must be a {Queue.__module__}.Queue, got 1; e.g. queue=honeydew.queues.Memory()"),
    ({"start_method": "forkserver"}, ValueError,
     "start_method must be 'auto', 'fork' or 'spawn', got 'forkserver'; "
     "e.g. honeydew.Pool(riak_worker, args, start_method='spawn')"),
    ({"chunks": 3, "no_such_option": 1}, TypeError,
     f"unknown Pool option(s) chunks, no_such_option; the options are {', '.join(OPTIONS)}; e.g. {EXAMPLE}"),
])
def test_each_invalid_option_is_named_with_a_correct_call(options, exc, message) -> None:
    with pytest.raises(exc) as info:
        PoolConfig.from_options(**options)
    assert str(info.value) == message


def test_the_first_invalid_option_in_pools_order_is_the_one_named() -> None:
    with pytest.raises(ValueError, match="^num_queues"):
        PoolConfig.from_options(num_queues=0, prefetch=0, start_method="x")
    with pytest.raises(ValueError, match="^threads_per_worker"):
        PoolConfig.from_options(threads_per_worker=0, start_method="x", dispatcher="LRU")  # type: ignore[arg-type]
