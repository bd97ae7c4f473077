"""The queue contract (:class:`honeydew.queues.Queue`), run against every backend.

A backend plugs in by adding one entry to :data:`BACKENDS`: a factory ``(directory) -> Queue`` that
builds a fresh, unopened backend (a durable one keeps its files under ``directory``).  Every test
here, and the stateful model test at the end, then runs against it; a test of a capability the
backend declares it lacks (``Queue.lacks``) is skipped for it, and the durability tests run only for
a ``durable`` backend.  ``tests/support/shared_store.py`` is the reference durable, shared backend.

Time is never real: every call that takes ``now`` gets a fake clock value.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from support import rabbit
from support.shared_store import SharedStore

from honeydew.errors import Failure
from honeydew.queues import Job, Memory, Owner, Queue, Reply, SQLite
from honeydew.queues.base import CAPABILITIES, DELAYS, FAILED_STORE, PRIORITIES, RECOVERY, SHARED

QueueFactory = Callable[[Path], Queue]

#: One entry per backend.
BACKENDS = [
    pytest.param(lambda _dir: Memory(), id="memory"),
    pytest.param(lambda d: SharedStore(d / "jobs.db"), id="shared_store"),
    pytest.param(lambda d: SQLite(d / "jobs.db"), id="sqlite"),
    pytest.param(rabbit.ContractBackend(), id="rabbitmq"),  # (the real broker: skips without it, fails if CI=true)
]

T0 = 1_000.0  # the fake clock starts here (never 0: ready_at=0 means "ready now")
ME = Owner("pool-a", 0, 0, os.getpid())


@dataclass
class Opener:
    """Opens backends of the parametrised kind: ``make()`` a fresh one in its own directory,
    ``again(directory, owner)`` another one on an existing store (durable backends)."""

    factory: QueueFactory
    tmp: Path
    opened: list[Queue]
    counter: Iterator[int]

    def make(self, owner: Owner = ME) -> Queue:
        directory = self.tmp / f"q{next(self.counter)}"
        directory.mkdir()
        q = self.factory(directory)
        q.open(owner)
        q.directory = directory  # type: ignore[attr-defined]
        self.opened.append(q)
        return q

    def again(self, of: Queue, owner: Owner, configure: Callable[[Queue], None] | None = None) -> Queue:
        q = self.factory(of.directory)  # type: ignore[attr-defined]
        if configure is not None:
            configure(q)
        q.open(owner)
        q.directory = of.directory  # type: ignore[attr-defined]
        self.opened.append(q)
        return q


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    cannot = getattr(request.param, "cannot", {}).get(request.function.__name__)
    if cannot:  # (what a backend cannot do by its nature, with the reason: a broker's queue)
        pytest.skip(cannot)
    o = Opener(request.param, tmp_path, [], itertools.count())
    yield o
    for q in o.opened:
        q.close()


@pytest.fixture
def queue_factory(opener: Opener) -> Callable[[], Queue]:
    return opener.make


@pytest.fixture
def q(opener: Opener) -> Queue:
    return opener.make()


def needs(q: Queue, *capabilities: str) -> None:
    """Skip the test for a backend that declares it lacks one of ``capabilities``."""
    missing = set(capabilities) & set(q.lacks)
    if missing:
        pytest.skip(f"{q!r} lacks {', '.join(sorted(missing))}")


def needs_durable(q: Queue) -> None:
    if not q.durable:
        pytest.skip(f"{q!r} is not durable")


def job(id: str, payload: bytes | None = None, origin: str = "") -> Job:
    return Job(id, payload if payload is not None else f"payload-{id}".encode(), origin)


def put(q: Queue, *ids: str, ready_at: float = 0.0) -> None:
    q.enqueue([job(i) for i in ids], ready_at)


def drain(q: Queue, now: float = T0) -> list[str]:
    """Reserve everything ready at ``now``; the ids in order."""
    out = []
    while (j := q.reserve(now)) is not None:
        out.append(j.id)
    return out


def take(q: Queue, now: float = T0) -> Job:
    got = q.reserve(now)
    assert got is not None
    return got


# --------------------------------------------------------------------------- basics


def test_empty_queue(q: Queue) -> None:
    assert q.reserve(T0) is None
    assert len(q) == 0
    assert q.next_ready_in(T0) is None
    assert q.take_pending() == []
    status = q.status()
    assert (status["pending"], status["delayed"], status["reserved"]) == (0, 0, 0)


def test_declarations(q: Queue) -> None:
    assert isinstance(q.durable, bool)
    assert isinstance(q.lacks, frozenset) and q.lacks <= CAPABILITIES
    if not q.durable:
        assert RECOVERY in q.lacks and SHARED in q.lacks  # nothing to recover or share without a store


def test_fifo_order(q: Queue) -> None:
    ids = [f"j{i}" for i in range(20)]
    for i in ids:
        put(q, i)
    assert drain(q) == ids
    assert q.reserve(T0) is None


def test_a_batch_is_enqueued_in_order(q: Queue) -> None:
    put(q, "first")
    put(q, *(f"b{i}" for i in range(50)))
    put(q, "last")
    assert drain(q) == ["first", *(f"b{i}" for i in range(50)), "last"]


def test_reserve_keeps_payload_origin_and_timeout(q: Queue) -> None:
    q.enqueue([Job("a", b"\x00\xffbinary", "caller-token", timeout=2.5)])
    got = take(q)
    assert (got.id, got.payload, got.origin, got.timeout) == ("a", b"\x00\xffbinary", "caller-token", 2.5)


def test_len_and_status_count_pending_not_reserved(q: Queue) -> None:
    put(q, "r0", "r1", "r2")
    put(q, "d", ready_at=T0 + 10)
    assert len(q) == 4
    assert q.status()["pending"] == 4
    assert q.status()["delayed"] == 1
    assert q.status()["reserved"] == 0
    q.reserve(T0)
    assert len(q) == 3
    s = q.status()
    assert (s["pending"], s["delayed"], s["reserved"]) == (3, 1, 1)


def test_the_optional_hooks_are_harmless(q: Queue) -> None:
    fd = q.fileno()
    assert fd is None or isinstance(fd, int)
    wait = q.tick(T0)
    assert wait is None or wait >= 0
    q.hold(3)
    q.hold(1)
    assert q.take_replies() == []
    put(q, "a")
    assert drain(q) == ["a"]


# --------------------------------------------------------------------------- delivery counts


def test_reserve_counts_the_delivery(q: Queue) -> None:
    put(q, "a", "b")
    assert take(q).deliveries == 1
    assert take(q).deliveries == 1
    assert q.reserve(T0) is None


def test_nack_persists_the_counts_it_is_given(q: Queue) -> None:
    put(q, "a")
    got = take(q)
    assert got.deliveries == 1
    got.failures += 1  # a Retry
    assert q.nack(got)
    again = take(q)
    assert (again.deliveries, again.failures) == (2, 1)
    again.deliveries -= 1  # it never started: not counted
    again.bounces += 1
    assert q.nack(again, front=True)
    third = take(q)
    assert (third.deliveries, third.failures, third.bounces) == (2, 1, 1)


def test_nack_does_not_rely_on_object_identity(q: Queue) -> None:
    put(q, "a")
    got = take(q)
    copy = Job(got.id, got.payload, got.origin, got.timeout, deliveries=7, failures=3, bounces=2)
    assert q.nack(copy)
    again = take(q)
    assert (again.deliveries, again.failures, again.bounces) == (8, 3, 2)


# --------------------------------------------------------------------------- ack / nack


def test_ack_forgets_the_job(q: Queue) -> None:
    put(q, "a")
    q.reserve(T0)
    q.ack(["a"])
    q.ack(["a"])  # duplicate ack: harmless
    assert len(q) == 0 and q.status()["reserved"] == 0
    assert q.reserve(T0) is None


def test_ack_of_many_at_once(q: Queue) -> None:
    put(q, *"abcde")
    got = drain(q)
    q.ack(got[:4])
    assert q.status()["reserved"] == 1
    q.ack([])
    q.ack(["e", "nope"])
    assert q.status()["reserved"] == 0


def test_ack_of_unknown_or_pending_job_is_ignored(q: Queue) -> None:
    q.ack(["nope"])
    put(q, "a")
    q.ack(["a"])  # pending, never reserved: left alone
    assert drain(q) == ["a"]


def test_nack_goes_to_the_tail(q: Queue) -> None:
    put(q, *"abc")
    a = take(q)
    assert a.id == "a"
    assert q.nack(a) is True
    assert q.status()["reserved"] == 0
    assert drain(q) == ["b", "c", "a"]


def test_nack_front_goes_to_the_head(q: Queue) -> None:
    put(q, *"abc")
    a, b = take(q), take(q)
    q.nack(a, front=True)
    q.nack(b, front=True)
    # the last one put back in front comes out first
    assert drain(q) == ["b", "a", "c"]


def test_nack_of_unknown_or_pending_job_is_false(q: Queue) -> None:
    assert q.nack(job("nope")) is False
    put(q, "a", "b")
    assert q.nack(job("a")) is False
    assert q.nack(job("a"), front=True) is False
    assert drain(q) == ["a", "b"]  # order untouched, no duplicate


def test_nack_twice_second_is_false(q: Queue) -> None:
    put(q, "a")
    a = take(q)
    assert q.nack(a) is True
    assert q.nack(a) is False
    assert drain(q) == ["a"]


def test_nack_with_delay(q: Queue) -> None:
    needs(q, DELAYS)
    put(q, "a", "b")
    a = take(q)
    q.nack(a, ready_at=T0 + 10)
    assert len(q) == 2
    assert q.status()["delayed"] == 1
    assert take(q).id == "b"
    assert q.reserve(T0) is None
    assert q.reserve(T0 + 9.999) is None
    assert q.next_ready_in(T0) == pytest.approx(10)
    assert take(q, T0 + 10).id == "a"


def test_give_up_by_default_forgets_the_job(q: Queue) -> None:
    put(q, "a")
    a = take(q)
    q.give_up(a, ("raised", "builtins.ValueError", "no", ""))
    assert q.status()["reserved"] == 0 and len(q) == 0
    assert q.reserve(T0) is None


# --------------------------------------------------------------------------- delayed jobs


def test_delayed_job_waits_for_its_time(q: Queue) -> None:
    needs(q, DELAYS)
    put(q, "later", ready_at=T0 + 5)
    assert len(q) == 1
    assert q.reserve(T0) is None
    assert q.reserve(T0 + 4.9) is None
    assert q.next_ready_in(T0) == pytest.approx(5)
    assert q.next_ready_in(T0 + 3) == pytest.approx(2)
    assert q.next_ready_in(T0 + 7) == 0
    assert take(q, T0 + 5).id == "later"
    assert q.next_ready_in(T0 + 5) is None


def test_delayed_jobs_come_out_by_ready_time(q: Queue) -> None:
    needs(q, DELAYS)
    put(q, "c", ready_at=T0 + 3)
    put(q, "a", ready_at=T0 + 1)
    put(q, "b", ready_at=T0 + 2)
    put(q, "a2", ready_at=T0 + 1)  # same time as "a": enqueue order breaks the tie
    assert q.next_ready_in(T0) == pytest.approx(1)
    assert drain(q, T0 + 10) == ["a", "a2", "b", "c"]


def test_ready_at_in_the_past_is_ready(q: Queue) -> None:
    needs(q, DELAYS)
    put(q, "a", ready_at=T0 - 100)
    assert take(q).id == "a"


def test_ready_jobs_do_not_wait_behind_delayed_ones(q: Queue) -> None:
    needs(q, DELAYS)
    put(q, "slow", ready_at=T0 + 60)
    put(q, "now")
    assert drain(q) == ["now"]
    assert drain(q, T0 + 60) == ["slow"]


# --------------------------------------------------------------------------- cancel


def test_cancel_pending(q: Queue) -> None:
    put(q, *"abc")
    cancelled = q.cancel("b")
    assert cancelled is not None and cancelled.id == "b"  # the job itself: the queue removes its spooled payload
    assert cancelled.payload == b"payload-b"
    assert len(q) == 2
    assert q.status()["pending"] == 2
    assert q.cancel("b") is None  # already gone
    assert drain(q) == ["a", "c"]


def test_cancel_unknown(q: Queue) -> None:
    assert q.cancel("nope") is None


def test_cancel_reserved_is_refused(q: Queue) -> None:
    put(q, "a")
    q.reserve(T0)
    assert q.cancel("a") is None
    assert not q.is_pending("a")
    assert q.status()["reserved"] == 1
    q.ack(["a"])
    assert q.status()["reserved"] == 0


def test_is_pending(q: Queue) -> None:
    put(q, "a")
    assert q.is_pending("a") and not q.is_pending("nope")
    a = take(q)
    assert not q.is_pending("a")
    q.nack(a)
    assert q.is_pending("a")


def test_cancel_delayed(q: Queue) -> None:
    needs(q, DELAYS)
    put(q, "a", ready_at=T0 + 5)
    assert q.cancel("a") is not None
    assert len(q) == 0
    assert q.status()["delayed"] == 0
    assert q.reserve(T0 + 10) is None


def test_cancel_delayed_leaves_no_timer(q: Queue) -> None:
    """``next_ready_in`` is "None if none is delayed": a cancelled delayed job is not delayed.

    (The queue process polls with this timeout whenever a worker is idle, so a stale answer makes
    it wake up for nothing; a stale 0 makes it spin every millisecond.)"""
    needs(q, DELAYS)
    put(q, "a", ready_at=T0 + 5)
    assert q.cancel("a") is not None
    assert q.next_ready_in(T0) is None
    assert q.next_ready_in(T0 + 10) is None


def test_cancel_then_same_id_again(q: Queue) -> None:
    put(q, "a", "b")
    assert q.cancel("a")
    q.enqueue([job("a", b"second")])
    got = [q.reserve(T0), q.reserve(T0), q.reserve(T0)]
    assert [j.id for j in got[:2] if j] == ["b", "a"]
    assert got[1] is not None and got[1].payload == b"second"
    assert got[2] is None


# --------------------------------------------------------------------------- ids sent again


def test_an_id_already_pending_is_not_stored_twice(q: Queue) -> None:
    put(q, "a")
    q.enqueue([job("a", b"again"), job("b")])
    assert len(q) == 2
    first = take(q)
    assert (first.id, first.payload) == ("a", b"payload-a")
    assert drain(q) == ["b"]


def test_an_id_already_delayed_is_not_stored_twice(q: Queue) -> None:
    needs(q, DELAYS)
    put(q, "a", ready_at=T0 + 5)
    put(q, "a")
    assert len(q) == 1
    assert q.reserve(T0) is None


def test_an_id_already_reserved_is_not_stored_twice(q: Queue) -> None:
    put(q, "a")
    q.reserve(T0)
    put(q, "a")
    assert len(q) == 0 and q.status()["reserved"] == 1


def test_id_reusable_once_acked(q: Queue) -> None:
    put(q, "a")
    q.reserve(T0)
    q.ack(["a"])
    put(q, "a")
    assert drain(q) == ["a"]


# --------------------------------------------------------------------------- take_pending


def test_take_pending(q: Queue) -> None:
    put(q, *"abc")
    put(q, "d", ready_at=T0 + 5)
    q.reserve(T0)  # "a" is reserved: not pending
    q.cancel("c")
    taken = q.take_pending()
    assert sorted(j.id for j in taken) == ["b", "d"]
    assert len(q) == 0
    assert q.reserve(T0 + 100) is None
    assert q.next_ready_in(T0) is None
    assert q.status()["pending"] == 0 and q.status()["delayed"] == 0
    # the reservation survives
    assert q.status()["reserved"] == 1
    q.ack(["a"])
    assert q.take_pending() == []


# --------------------------------------------------------------------------- durability, owners, recovery


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_jobs_outlive_the_backend_instance(opener: Opener) -> None:
    q = opener.make()
    needs_durable(q)
    put(q, "a", "b")
    q.enqueue([Job("c", b"pc", "origin-x", 1.5)], ready_at=T0 + 5)
    q.close()
    again = opener.again(q, ME._replace(generation=1))
    assert len(again) == 3
    assert drain(again) == ["a", "b"]
    c = take(again, T0 + 5)
    assert (c.payload, c.origin, c.timeout) == (b"pc", "origin-x", 1.5)


def test_an_earlier_generations_reservations_come_back_counted(opener: Opener) -> None:
    q = opener.make()
    needs(q, RECOVERY)
    put(q, "a", "b", "c")
    take(q), take(q)
    # the queue process dies (no close); its next generation opens the store
    again = opener.again(q, ME._replace(generation=1))
    assert len(again) == 3
    assert sorted(drain(again)) == ["a", "b", "c"]
    assert again.status()["reserved"] == 3


def test_recovered_jobs_keep_their_delivery_count(opener: Opener) -> None:
    q = opener.make()
    needs(q, RECOVERY)
    put(q, "a")
    assert take(q).deliveries == 1
    again = opener.again(q, ME._replace(generation=1))
    got = take(again)
    assert (got.id, got.deliveries) == ("a", 2)


def test_a_dead_owners_reservations_come_back(opener: Opener) -> None:
    q = opener.make(Owner("pool-dead", 0, 0, _dead_pid()))
    needs(q, RECOVERY)
    put(q, "a", "b")
    take(q)
    other = opener.again(q, Owner("pool-b", 0, 0, os.getpid()))
    assert sorted(drain(other)) == ["a", "b"]


def test_a_live_siblings_reservations_are_never_touched(opener: Opener) -> None:
    q = opener.make()
    needs(q, SHARED)
    put(q, "a", "b", "c")
    a = take(q)
    sibling = opener.again(q, ME._replace(queue=1))        # another queue process of the same pool
    other_pool = opener.again(q, Owner("pool-b", 0, 0, os.getpid()))
    assert take(sibling).id == "b"
    assert take(other_pool).id == "c"
    # nobody else can ack or nack what the first owner holds
    other_pool.ack(["a"])
    assert other_pool.nack(Job("a", b"", deliveries=1)) is False
    assert q.status()["reserved"] == 3
    assert q.nack(a)
    assert drain(other_pool) == ["a"]


def test_each_job_is_reserved_by_one_owner_only(opener: Opener) -> None:
    q = opener.make()
    needs(q, SHARED)
    other = opener.again(q, Owner("pool-b", 0, 0, os.getpid()))
    put(q, *(f"j{i}" for i in range(30)))
    got: list[str] = []
    for i in range(40):
        j = (q if i % 2 else other).reserve(T0)
        if j is not None:
            got.append(j.id)
    assert sorted(got) == sorted(f"j{i}" for i in range(30))


def test_replies_reach_the_pool_that_sent_the_job(opener: Opener) -> None:
    sender = opener.make(Owner("pool-a", 0, 0, os.getpid()))
    needs(sender, SHARED)
    runner = opener.again(sender, Owner("pool-b", 0, 0, os.getpid()))
    sender.enqueue([Job("call-1", b"p", "pool-a"), Job("call-2", b"p", "pool-a"), Job("cast-3", b"p", "")])
    jobs = {j.id: j for j in (take(runner), take(runner), take(runner))}
    assert runner.take_replies() == []
    runner.ack(["call-1", "cast-3"], [Reply("pool-a", "call-1", True, b"result-bytes")])
    record = ("raised", "builtins.ValueError", "bad", "tb")
    runner.give_up(jobs["call-2"], record, Reply("pool-a", "call-2", False, record))
    sender.tick(T0)
    replies = sorted(sender.take_replies())
    assert [(r.job_id, r.ok) for r in replies] == [("call-1", True), ("call-2", False)]
    assert replies[0].value == b"result-bytes"
    assert tuple(replies[1].value) == record
    assert sender.take_replies() == []  # taken once
    assert runner.take_replies() == []  # never another pool's


def test_replies_for_a_pool_that_is_gone_do_not_pile_up(opener: Opener) -> None:
    sender = opener.make(Owner("pool-gone", 0, 0, os.getpid()))
    needs(sender, SHARED)
    runner = opener.again(sender, Owner("pool-b", 0, 0, os.getpid()))
    sender.enqueue([Job("call-1", b"p", "pool-gone")])
    sender.close()
    opener.opened.remove(sender)
    got = take(runner)
    runner.ack([got.id], [Reply("pool-gone", got.id, True, b"late")])
    late = opener.again(runner, Owner("pool-c", 0, 0, os.getpid()))  # any later open sweeps
    assert late.take_replies() == []
    revived = opener.again(runner, Owner("pool-gone", 0, 1, os.getpid()))
    assert revived.take_replies() == []


# --------------------------------------------------------------------------- priorities


def put_with(q: Queue, *pairs: tuple[str, int], ready_at: float = 0.0) -> None:
    """Enqueue ``(id, priority)`` pairs, in order, in one batch."""
    q.enqueue([Job(i, f"payload-{i}".encode(), priority=p) for i, p in pairs], ready_at)


def test_higher_priority_first_fifo_among_equals(q: Queue) -> None:
    needs(q, PRIORITIES)
    put_with(q, ("a0", 0), ("b5", 5), ("c1", 1), ("d5", 5), ("e0", 0))
    put_with(q, ("f-1", -1), ("g5", 5), ("h0", 0))
    assert drain(q) == ["b5", "d5", "g5", "c1", "a0", "e0", "h0", "f-1"]


def test_reserve_returns_the_priority(q: Queue) -> None:
    needs(q, PRIORITIES)
    put_with(q, ("a", 7))
    assert take(q).priority == 7


def test_nack_front_keeps_the_priority(q: Queue) -> None:
    needs(q, PRIORITIES)
    put_with(q, ("lo", 0))
    lo = take(q)
    put_with(q, ("hi1", 3), ("hi2", 3), ("lo2", 0))
    hi1 = take(q)
    assert hi1.id == "hi1"
    q.nack(hi1, front=True)   # back at the head of its own priority
    q.nack(lo, front=True)    # at the head of priority 0: still behind every higher one
    assert drain(q) == ["hi1", "hi2", "lo", "lo2"]


def test_nack_to_the_tail_keeps_the_priority(q: Queue) -> None:
    needs(q, PRIORITIES)
    put_with(q, ("a5", 5), ("b5", 5), ("c0", 0))
    a = take(q)
    assert q.nack(a)
    assert drain(q) == ["b5", "a5", "c0"]


def test_a_due_delayed_job_keeps_its_priority(q: Queue) -> None:
    needs(q, PRIORITIES, DELAYS)
    put_with(q, ("late-hi", 9), ready_at=T0 + 5)
    put_with(q, ("now-lo", 0), ("now-lo2", 0))
    assert take(q).id == "now-lo"
    assert drain(q, T0 + 5) == ["late-hi", "now-lo2"]


# --------------------------------------------------------------------------- the failed store


def record(message: str) -> tuple[object, ...]:
    """A failure record (what the queue process hands ``give_up``)."""
    return tuple(Failure(Failure.RAISED, "builtins.ValueError", message, "Traceback..."))


RECORD = record("bad value")


def _give_up_kept(q: Queue, id: str, record: tuple[object, ...] = RECORD) -> Job:
    got = q.reserve(T0)
    assert got is not None and got.id == id
    q.give_up(got, record, keep=True)
    return got


def test_give_up_keep_moves_the_job_to_the_failed_store(q: Queue) -> None:
    needs(q, FAILED_STORE)
    q.enqueue([Job("a", b"\x00payload", "origin-x", timeout=2.5, priority=4)])
    got = take(q)
    got.failures = 2
    q.nack(got)
    got = take(q)
    assert got.deliveries == 2
    before = time.time()
    q.give_up(got, RECORD, keep=True)
    assert len(q) == 0 and q.status()["reserved"] == 0
    assert q.reserve(T0 + 1000) is None and not q.is_pending("a")
    [kept] = q.failed()
    assert (kept.id, kept.payload, kept.origin, kept.timeout) == ("a", b"\x00payload", "origin-x", 2.5)
    assert kept.priority == 4
    assert tuple(kept.failure) == RECORD
    assert kept.deliveries == 2
    assert before - 1 <= kept.failed_at <= time.time() + 1
    assert q.status()["failed_store"] == 1


def test_give_up_without_keep_keeps_nothing(q: Queue) -> None:
    needs(q, FAILED_STORE)
    put(q, "a")
    q.give_up(take(q), RECORD)
    assert q.failed() == []
    assert q.status()["failed_store"] == 0


def test_a_jobs_mode_is_kept_through_the_failed_store(q: Queue) -> None:
    q.enqueue([Job("a", b"p", mode="its-task")])
    got = take(q)
    assert got.mode == "its-task"
    if FAILED_STORE in q.lacks:
        return
    q.give_up(got, RECORD, keep=True)
    assert q.failed()[0].mode == "its-task"
    q.retry_failed()
    assert take(q).mode == "its-task"


def test_failed_lists_newest_first_up_to_the_limit(q: Queue) -> None:
    needs(q, FAILED_STORE)
    put(q, "a", "b", "c")
    for i in "abc":
        _give_up_kept(q, i, record(f"failed {i}"))
    assert [f.id for f in q.failed()] == ["c", "b", "a"]
    assert [f.id for f in q.failed(2)] == ["c", "b"]
    assert [Failure._make(f.failure).message for f in q.failed()] == ["failed c", "failed b", "failed a"]


def test_retry_failed_resets_counts_and_the_job_is_reservable(q: Queue) -> None:
    needs(q, FAILED_STORE)
    q.enqueue([Job("a", b"pa", "o", timeout=1.5, priority=2), Job("b", b"pb")])
    a = take(q)
    a.failures = 3
    q.nack(a)
    a = take(q)  # (priority 2: first again)
    assert (a.id, a.deliveries, a.failures) == ("a", 2, 3)
    q.give_up(a, RECORD, keep=True)
    assert q.retry_failed(["a", "unknown"]) == 1
    assert q.failed() == []
    assert q.is_pending("a")
    again = take(q)   # priority 2: before "b"; back as it was, its counts reset
    assert (again.id, again.payload, again.origin, again.timeout) == ("a", b"pa", "o", 1.5)
    assert (again.deliveries, again.failures, again.bounces) == (1, 0, 0)
    assert drain(q) == ["b"]
    assert q.retry_failed(["a"]) == 0   # no longer kept


def test_retry_failed_all_goes_to_the_tail_oldest_failure_first(q: Queue) -> None:
    needs(q, FAILED_STORE)
    put(q, "a", "b")
    _give_up_kept(q, "a")
    _give_up_kept(q, "b")
    put(q, "c")
    assert q.retry_failed() == 2
    assert q.retry_failed() == 0
    assert q.failed() == []
    got = drain(q)
    assert got == ["c", "a", "b"]


def test_purge_failed_by_ids_or_all(q: Queue) -> None:
    needs(q, FAILED_STORE)
    put(q, *"abcd")
    for i in "abcd":
        _give_up_kept(q, i)
    assert q.purge_failed(["a", "a", "nope"]) == 1
    assert [f.id for f in q.failed()] == ["d", "c", "b"]
    assert q.purge_failed([]) == 0
    assert q.purge_failed() == 3
    assert q.failed() == [] and q.purge_failed() == 0
    assert q.retry_failed() == 0
    assert len(q) == 0


def test_the_same_id_failed_twice_is_kept_once(q: Queue) -> None:
    needs(q, FAILED_STORE)
    put(q, "a")
    _give_up_kept(q, "a", record("first"))
    put(q, "a")
    _give_up_kept(q, "a", record("second"))
    [kept] = q.failed()
    assert Failure._make(kept.failure).message == "second"


def test_the_failed_store_is_durable(opener: Opener) -> None:
    q = opener.make()
    needs(q, FAILED_STORE)
    needs_durable(q)
    q.enqueue([Job("a", b"pa", "o", priority=3)])
    _give_up_kept(q, "a")
    q.close()
    again = opener.again(q, ME._replace(generation=1))
    [kept] = again.failed()
    assert (kept.id, kept.payload, kept.priority, tuple(kept.failure)) == ("a", b"pa", 3, RECORD)
    assert again.retry_failed(None) == 1
    assert take(again).id == "a"


# --------------------------------------------------------------------------- durable delays


def test_delays_survive_close_and_open(opener: Opener) -> None:
    q = opener.make()
    needs(q, DELAYS)
    needs_durable(q)
    put(q, "later", ready_at=T0 + 5)
    put(q, "r")
    r = take(q)
    q.nack(r, ready_at=T0 + 3)
    q.close()
    again = opener.again(q, ME._replace(generation=1))
    assert again.reserve(T0) is None
    assert again.next_ready_in(T0) == pytest.approx(3)
    assert again.status()["delayed"] == 2
    assert drain(again, T0 + 3) == ["r"]
    assert drain(again, T0 + 4.9) == []
    assert drain(again, T0 + 5) == ["later"]


# --------------------------------------------------------------------------- recovery, with counts


def test_a_dead_owners_jobs_come_back_with_every_count(opener: Opener) -> None:
    q = opener.make(Owner("pool-dead", 0, 0, _dead_pid()))
    needs(q, RECOVERY)
    put(q, "a", "b")
    a = take(q)
    a.failures, a.bounces = 2, 1
    q.nack(a)                       # a Retry persisted its counts
    assert take(q).id == "b"
    a = take(q)
    assert (a.deliveries, a.failures, a.bounces) == (2, 2, 1)
    other = opener.again(q, Owner("pool-b", 0, 0, os.getpid()))
    assert len(other) == 2 and other.status()["reserved"] == 0
    got = {j.id: j for j in (take(other), take(other))}
    assert (got["a"].deliveries, got["a"].failures, got["a"].bounces) == (3, 2, 1)
    assert got["b"].deliveries == 2


def test_a_live_siblings_reservations_survive_every_tick(opener: Opener) -> None:
    q = opener.make()
    needs(q, SHARED, RECOVERY)
    put(q, "a", "b")
    a = take(q)
    other = opener.again(q, Owner("pool-b", 0, 0, os.getpid()))
    later = opener.again(q, Owner("pool-c", 0, 0, os.getpid()))
    for now in (T0, T0 + 1, T0 + 3600):
        other.tick(now)
        later.tick(now)
    assert q.status()["reserved"] == 1
    assert drain(other) == ["b"]
    assert later.reserve(T0) is None
    assert q.nack(a)
    assert drain(later) == ["a"]


def test_a_job_whose_owner_keeps_dying_goes_to_the_failed_store(opener: Opener) -> None:
    """A job that kills its whole pool (every time it runs) is not recovered for ever: after
    ``recovery_cap`` deaths it is kept failed, with a JobLost record saying so, and its caller, if
    one waits in a pool still alive, gets that failure."""
    sender = opener.make(Owner("pool-sender", 0, 0, os.getpid()))
    needs(sender, RECOVERY, FAILED_STORE)
    if not hasattr(sender, "recovery_cap"):
        pytest.skip(f"{sender!r} has no recovery_cap")

    def cap(q: Queue) -> None:
        q.recovery_cap = 3  # type: ignore[attr-defined]

    sender.enqueue([Job("killer", b"p", "pool-sender"), Job("fine", b"p")])
    runner = Owner("pool-runner", 0, 0, os.getpid())
    for gen in range(3):
        # generation `gen` of the runner's queue takes the job and dies; the next one opens
        current = opener.again(sender, runner._replace(generation=gen), cap)
        got = take(current)
        assert (got.id, got.deliveries) == ("killer", gen + 1)
    last = opener.again(sender, runner._replace(generation=3), cap)
    assert drain(last) == ["fine"]
    [kept] = last.failed()
    failure = Failure._make(kept.failure)
    assert (kept.id, kept.deliveries, failure.kind) == ("killer", 3, Failure.LOST)
    assert "3 times" in failure.message
    sender.tick(T0)
    [reply] = sender.take_replies()
    assert (reply.job_id, reply.ok, Failure._make(reply.value).kind) == ("killer", False, Failure.LOST)
    assert last.retry_failed() == 1
    assert take(last).id == "killer"


# --------------------------------------------------------------------------- the model test


@dataclass
class ModelJob:
    id: str
    payload: bytes
    delayed: bool  # enqueued or nacked with a ready_at (else: ready now, in FIFO order)
    ready_at: float  # meaningful when delayed
    key: int  # FIFO key: enqueue/nack order; front nacks get ever smaller keys
    deliveries: int = 0


IDS = [f"j{i}" for i in range(8)]
DELAY_CHOICES = st.sampled_from([None, None, 0.0, 1.0, 2.5, 5.0])  # None: ready now; else ready_at = now + d


class QueueMachine(RuleBasedStateMachine):
    """Drives a backend and a list/dict model side by side.

    Checked: every enqueued job is in exactly one of pending/reserved/gone; reserve hands out
    only ready jobs (a delayed job never before its time) and never returns None while one is
    ready; ready-now jobs come out FIFO (front nacks first, latest first), delayed jobs in
    (ready_at, enqueue order); ``len()`` and ``status()`` agree with the model."""

    factory: Callable[[], Queue]

    def __init__(self) -> None:
        super().__init__()
        self.q = type(self).factory()
        self.now = T0
        self.pending: dict[str, ModelJob] = {}
        self.reserved: dict[str, tuple[bytes, Job]] = {}
        self.gone: set[str] = set()
        self.seq = itertools.count()
        self.front = itertools.count(-1, -1)
        self.payloads = itertools.count()

    def teardown(self) -> None:
        self.q.close()

    def _ready_at(self, delay: float | None) -> float:
        return 0.0 if delay is None else self.now + delay

    def _put(self, id: str, payload: bytes, ready_at: float, front: bool = False, deliveries: int = 0) -> None:
        key = next(self.front) if front else next(self.seq)
        self.pending[id] = ModelJob(id, payload, bool(ready_at) and not front, ready_at, key, deliveries)

    # ---- rules

    @rule(id=st.sampled_from(IDS), delay=DELAY_CHOICES)
    def enqueue(self, id: str, delay: float | None) -> None:
        payload = b"p%d" % next(self.payloads)
        ready_at = self._ready_at(delay)
        self.q.enqueue([Job(id, payload)], ready_at)
        if id in self.pending or id in self.reserved:
            return  # sent again: the store keeps the first
        self.gone.discard(id)
        self._put(id, payload, ready_at)

    @rule(ids=st.lists(st.sampled_from(IDS), min_size=2, max_size=4, unique=True), delay=DELAY_CHOICES)
    def enqueue_several(self, ids: list[str], delay: float | None) -> None:
        ready_at = self._ready_at(delay)
        batch = [Job(id, b"p%d" % next(self.payloads)) for id in ids]
        self.q.enqueue(batch, ready_at)
        for j in batch:
            if j.id not in self.pending and j.id not in self.reserved:
                self.gone.discard(j.id)
                self._put(j.id, j.payload, ready_at)

    @rule()
    def reserve(self) -> None:
        got = self.q.reserve(self.now)
        ready = [m for m in self.pending.values() if not m.delayed or m.ready_at <= self.now]
        if not ready:
            assert got is None, f"reserve returned {got!r} but nothing is ready at {self.now}"
            return
        assert got is not None, f"reserve returned None while {[m.id for m in ready]} are ready"
        assert got.id in self.pending, f"reserve returned {got.id}, which is not pending"
        m = self.pending[got.id]
        assert got.payload == m.payload
        if m.delayed:
            assert m.ready_at <= self.now, f"{got.id} came out at {self.now}, before its time {m.ready_at}"
            first = min((x for x in ready if x.delayed), key=lambda x: (x.ready_at, x.key))
            assert got.id == first.id, f"delayed {got.id} came out before {first.id}"
        else:
            first = min((x for x in ready if not x.delayed), key=lambda x: x.key)
            assert got.id == first.id, f"FIFO broken: {got.id} came out before {first.id}"
        assert got.deliveries == m.deliveries + 1, f"{got.id}: delivery not counted"
        del self.pending[got.id]
        self.reserved[got.id] = (m.payload, got)

    def _pick(self, data: st.DataObject, likely: dict[str, object]) -> str:
        """Mostly an id in ``likely`` (a reserved job to ack, a pending one to cancel), sometimes any id."""
        if likely and data.draw(st.integers(0, 3), label="likely") > 0:
            return data.draw(st.sampled_from(sorted(likely)), label="id")
        return data.draw(st.sampled_from(IDS), label="id")

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        id = self._pick(data, self.reserved)
        self.q.ack([id])
        if id in self.reserved:
            del self.reserved[id]
            self.gone.add(id)

    @rule(data=st.data(), how=st.sampled_from(["tail", "front", "delay"]), delay=st.sampled_from([0.0, 1, 4]))
    def nack(self, data: st.DataObject, how: str, delay: float) -> None:
        id = self._pick(data, self.reserved)
        held = self.reserved[id][1] if id in self.reserved else Job(id, b"")
        # what the queue process does: a job that never started is not counted
        copy = Job(held.id, held.payload, held.origin, held.timeout, held.deliveries - (how == "front"))
        if how == "front":
            got = self.q.nack(copy, front=True)
            ready_at = 0.0
        elif how == "delay":
            ready_at = self.now + delay
            got = self.q.nack(copy, ready_at)
        else:
            got = self.q.nack(copy)
            ready_at = 0.0
        assert got is (id in self.reserved)
        if got:
            payload, _ = self.reserved.pop(id)
            self._put(id, payload, ready_at, front=how == "front", deliveries=copy.deliveries)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        id = self._pick(data, self.pending)
        assert (self.q.cancel(id) is not None) is (id in self.pending)
        if id in self.pending:
            del self.pending[id]
            self.gone.add(id)

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0]))
    def advance_time(self, dt: float) -> None:
        self.now += dt

    @rule()
    def take_pending(self) -> None:
        taken = self.q.take_pending()
        assert sorted(j.id for j in taken) == sorted(self.pending)
        for j in taken:
            assert j.payload == self.pending[j.id].payload
        self.gone.update(self.pending)
        self.pending.clear()

    # ---- invariants

    @invariant()
    def one_state_each(self) -> None:
        assert not (set(self.pending) & set(self.reserved))
        assert not (set(self.pending) & self.gone)
        assert not (set(self.reserved) & self.gone)
        for id in IDS:
            assert self.q.is_pending(id) is (id in self.pending), id

    @invariant()
    def counts(self) -> None:
        assert len(self.q) == len(self.pending)
        status = self.q.status()
        assert status["pending"] == len(self.pending)
        assert status["reserved"] == len(self.reserved)
        future = sum(1 for m in self.pending.values() if m.delayed and m.ready_at > self.now)
        waiting = sum(1 for m in self.pending.values() if m.delayed)
        assert future <= status["delayed"] <= waiting


class QueueTimerMachine(QueueMachine):
    """The model test plus ``next_ready_in``: None when no job is delayed, 0 only when a delayed job's
    time has come, else the wait for the earliest one."""

    @invariant()
    def next_ready_in(self) -> None:
        wait = self.q.next_ready_in(self.now)
        delayed = [m for m in self.pending.values() if m.delayed]
        future = [m.ready_at - self.now for m in delayed if m.ready_at > self.now]
        if wait is None:
            assert not future, f"next_ready_in is None but jobs are delayed for {future}"
            return
        assert delayed, f"next_ready_in is {wait} but no pending job is delayed"
        if wait == 0:
            assert any(m.ready_at <= self.now for m in delayed)
        else:
            assert future and wait == pytest.approx(min(future)), f"next_ready_in {wait}, delayed for {future}"


MODEL_SETTINGS = settings(max_examples=75, stateful_step_count=35, deadline=None, report_multiple_bugs=False,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run(machine: type[QueueMachine], make: Callable[[], Queue]) -> None:
    runner = type(machine.__name__, (machine,), {"factory": staticmethod(make)})
    run_state_machine_as_test(runner, settings=MODEL_SETTINGS)


def test_model(queue_factory: Callable[[], Queue]) -> None:
    needs(queue_factory(), DELAYS)
    _run(QueueMachine, queue_factory)


def test_model_next_ready_in(queue_factory: Callable[[], Queue]) -> None:
    needs(queue_factory(), DELAYS)
    _run(QueueTimerMachine, queue_factory)
