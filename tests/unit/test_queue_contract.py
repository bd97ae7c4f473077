"""The queue contract (:class:`honeydew.queues.Queue`), run against every backend.

A backend plugs in by adding one entry to :data:`BACKENDS`: a factory ``(directory) -> Queue`` that
builds a fresh, unopened backend (a durable one keeps its files under ``directory``).  Every test
here, and the stateful model test at the end, then runs against it.

Time is never real: every call that takes ``now`` gets a fake clock value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from honeydew.queues import Job, Memory, Queue

QueueFactory = Callable[[Path], Queue]

#: One entry per backend.  Add ``pytest.param(lambda d: SQLite(d / "q.db"), id="sqlite")`` etc.
BACKENDS = [
    pytest.param(lambda _dir: Memory(), id="memory"),
]

T0 = 1_000.0  # the fake clock starts here (never 0: ready_at=0 means "ready now")


@pytest.fixture(params=BACKENDS)
def queue_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Queue]]:
    """Builds opened queues of the parametrised backend, each in its own directory; closes them after."""
    factory: QueueFactory = request.param
    opened: list[Queue] = []
    counter = itertools.count()

    def make() -> Queue:
        directory = tmp_path / f"q{next(counter)}"
        directory.mkdir()
        q = factory(directory)
        q.open()
        opened.append(q)
        return q

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def q(queue_factory: Callable[[], Queue]) -> Queue:
    return queue_factory()


def job(id: str, payload: bytes | None = None, origin: str = "") -> Job:
    return Job(id, payload if payload is not None else f"payload-{id}".encode(), origin)


def drain(q: Queue, now: float = T0) -> list[str]:
    """Reserve everything ready at ``now``; the ids in order."""
    out = []
    while (j := q.reserve(now)) is not None:
        out.append(j.id)
    return out


# --------------------------------------------------------------------------- basics


def test_empty_queue(q: Queue) -> None:
    assert q.reserve(T0) is None
    assert len(q) == 0
    assert q.next_ready_in(T0) is None
    assert q.take_pending() == []
    status = q.status()
    assert (status["pending"], status["delayed"], status["reserved"]) == (0, 0, 0)


def test_durable_is_a_bool(q: Queue) -> None:
    assert isinstance(q.durable, bool)


def test_fifo_order(q: Queue) -> None:
    ids = [f"j{i}" for i in range(20)]
    for i in ids:
        q.enqueue(job(i))
    assert drain(q) == ids
    assert q.reserve(T0) is None


def test_reserve_keeps_payload_and_origin(q: Queue) -> None:
    q.enqueue(Job("a", b"\x00\xffbinary", "caller-token"))
    got = q.reserve(T0)
    assert got is not None
    assert (got.id, got.payload, got.origin) == ("a", b"\x00\xffbinary", "caller-token")


def test_len_and_status_count_pending_not_reserved(q: Queue) -> None:
    for i in range(3):
        q.enqueue(job(f"r{i}"))
    q.enqueue(job("d"), ready_at=T0 + 10)
    assert len(q) == 4
    assert q.status()["pending"] == 4
    assert q.status()["delayed"] == 1
    assert q.status()["reserved"] == 0
    q.reserve(T0)
    assert len(q) == 3
    s = q.status()
    assert (s["pending"], s["delayed"], s["reserved"]) == (3, 1, 1)


def test_get_reserved(q: Queue) -> None:
    q.enqueue(job("a"))
    assert q.get_reserved("a") is None  # pending, not reserved
    q.reserve(T0)
    got = q.get_reserved("a")
    assert got is not None and got.id == "a"
    q.ack("a")
    assert q.get_reserved("a") is None


# --------------------------------------------------------------------------- ack / nack


def test_ack_forgets_the_job(q: Queue) -> None:
    q.enqueue(job("a"))
    q.reserve(T0)
    acked = q.ack("a")
    assert acked is not None and acked.id == "a"
    assert q.ack("a") is None  # duplicate ack: harmless
    assert len(q) == 0 and q.status()["reserved"] == 0
    assert q.reserve(T0) is None


def test_ack_of_unknown_or_pending_job_is_none(q: Queue) -> None:
    assert q.ack("nope") is None
    q.enqueue(job("a"))
    assert q.ack("a") is None  # pending, never reserved: left alone
    assert drain(q) == ["a"]


def test_nack_goes_to_the_tail(q: Queue) -> None:
    for i in "abc":
        q.enqueue(job(i))
    assert q.reserve(T0).id == "a"
    nacked = q.nack("a")
    assert nacked is not None and nacked.id == "a"
    assert q.status()["reserved"] == 0
    assert drain(q) == ["b", "c", "a"]


def test_nack_front_goes_to_the_head(q: Queue) -> None:
    for i in "abc":
        q.enqueue(job(i))
    assert q.reserve(T0).id == "a"
    assert q.reserve(T0).id == "b"
    q.nack("a", front=True)
    q.nack("b", front=True)
    # the last one put back in front comes out first
    assert drain(q) == ["b", "a", "c"]


def test_nack_of_unknown_or_pending_job_is_none(q: Queue) -> None:
    assert q.nack("nope") is None
    for i in "ab":
        q.enqueue(job(i))
    assert q.nack("a") is None
    assert q.nack("a", front=True) is None
    assert drain(q) == ["a", "b"]  # order untouched, no duplicate


def test_nack_twice_second_is_none(q: Queue) -> None:
    q.enqueue(job("a"))
    q.reserve(T0)
    assert q.nack("a") is not None
    assert q.nack("a") is None
    assert drain(q) == ["a"]


def test_nack_with_delay(q: Queue) -> None:
    q.enqueue(job("a"))
    q.enqueue(job("b"))
    q.reserve(T0)
    q.nack("a", ready_at=T0 + 10)
    assert len(q) == 2
    assert q.status()["delayed"] == 1
    assert q.reserve(T0).id == "b"
    assert q.reserve(T0) is None
    assert q.reserve(T0 + 9.999) is None
    assert q.next_ready_in(T0) == pytest.approx(10)
    got = q.reserve(T0 + 10)
    assert got is not None and got.id == "a"


def test_nack_keeps_delivery_bookkeeping(q: Queue) -> None:
    q.enqueue(job("a"))
    j = q.reserve(T0)
    j.deliveries += 1  # what the queue process does on dispatch
    q.nack("a")
    again = q.reserve(T0)
    assert again.id == "a" and again.deliveries == 1


# --------------------------------------------------------------------------- delayed jobs


def test_delayed_job_waits_for_its_time(q: Queue) -> None:
    q.enqueue(job("later"), ready_at=T0 + 5)
    assert len(q) == 1
    assert q.reserve(T0) is None
    assert q.reserve(T0 + 4.9) is None
    assert q.next_ready_in(T0) == pytest.approx(5)
    assert q.next_ready_in(T0 + 3) == pytest.approx(2)
    assert q.next_ready_in(T0 + 7) == 0
    got = q.reserve(T0 + 5)
    assert got is not None and got.id == "later"
    assert q.next_ready_in(T0 + 5) is None


def test_delayed_jobs_come_out_by_ready_time(q: Queue) -> None:
    q.enqueue(job("c"), ready_at=T0 + 3)
    q.enqueue(job("a"), ready_at=T0 + 1)
    q.enqueue(job("b"), ready_at=T0 + 2)
    q.enqueue(job("a2"), ready_at=T0 + 1)  # same time as "a": enqueue order breaks the tie
    assert q.next_ready_in(T0) == pytest.approx(1)
    assert drain(q, T0 + 10) == ["a", "a2", "b", "c"]


def test_ready_at_in_the_past_is_ready(q: Queue) -> None:
    q.enqueue(job("a"), ready_at=T0 - 100)
    got = q.reserve(T0)
    assert got is not None and got.id == "a"


def test_ready_jobs_do_not_wait_behind_delayed_ones(q: Queue) -> None:
    q.enqueue(job("slow"), ready_at=T0 + 60)
    q.enqueue(job("now"))
    assert drain(q) == ["now"]
    assert drain(q, T0 + 60) == ["slow"]


# --------------------------------------------------------------------------- cancel


def test_cancel_pending(q: Queue) -> None:
    for i in "abc":
        q.enqueue(job(i))
    cancelled = q.cancel("b")
    assert cancelled is not None and cancelled.id == "b"  # the job itself: the queue removes its spooled payload
    assert len(q) == 2
    assert q.status()["pending"] == 2
    assert q.cancel("b") is None  # already gone
    assert drain(q) == ["a", "c"]


def test_cancel_unknown(q: Queue) -> None:
    assert q.cancel("nope") is None


def test_cancel_reserved_is_refused(q: Queue) -> None:
    q.enqueue(job("a"))
    q.reserve(T0)
    assert q.cancel("a") is None
    assert q.get_reserved("a") is not None
    assert q.status()["reserved"] == 1
    assert q.ack("a") is not None


def test_cancel_delayed(q: Queue) -> None:
    q.enqueue(job("a"), ready_at=T0 + 5)
    assert q.cancel("a") is not None
    assert len(q) == 0
    assert q.status()["delayed"] == 0
    assert q.reserve(T0 + 10) is None


def test_cancel_delayed_leaves_no_timer(q: Queue) -> None:
    """``next_ready_in`` is "None if none is delayed": a cancelled delayed job is not delayed.

    (The queue process polls with this timeout whenever a worker is idle, so a stale answer makes
    it wake up for nothing; a stale 0 makes it spin every millisecond.)"""
    q.enqueue(job("a"), ready_at=T0 + 5)
    assert q.cancel("a") is not None
    assert q.next_ready_in(T0) is None
    assert q.next_ready_in(T0 + 10) is None


def test_cancel_then_same_id_again(q: Queue) -> None:
    q.enqueue(job("a"))
    q.enqueue(job("b"))
    assert q.cancel("a")
    q.enqueue(job("a", b"second"))
    got = [q.reserve(T0), q.reserve(T0), q.reserve(T0)]
    assert [j.id for j in got[:2]] == ["b", "a"]
    assert got[1].payload == b"second"
    assert got[2] is None


# --------------------------------------------------------------------------- duplicate ids


def test_duplicate_pending_id_rejected(q: Queue) -> None:
    q.enqueue(job("a"))
    with pytest.raises(ValueError):
        q.enqueue(job("a"))
    with pytest.raises(ValueError):
        q.enqueue(job("a"), ready_at=T0 + 5)
    assert len(q) == 1
    assert drain(q) == ["a"]


def test_duplicate_delayed_id_rejected(q: Queue) -> None:
    q.enqueue(job("a"), ready_at=T0 + 5)
    with pytest.raises(ValueError):
        q.enqueue(job("a"))
    assert len(q) == 1


def test_duplicate_reserved_id_rejected(q: Queue) -> None:
    q.enqueue(job("a"))
    q.reserve(T0)
    with pytest.raises(ValueError):
        q.enqueue(job("a"))
    assert len(q) == 0 and q.status()["reserved"] == 1


def test_id_reusable_once_acked(q: Queue) -> None:
    q.enqueue(job("a"))
    q.reserve(T0)
    q.ack("a")
    q.enqueue(job("a"))
    assert drain(q) == ["a"]


# --------------------------------------------------------------------------- take_pending


def test_take_pending(q: Queue) -> None:
    for i in "abc":
        q.enqueue(job(i))
    q.enqueue(job("d"), ready_at=T0 + 5)
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
    assert q.ack("a") is not None
    assert q.take_pending() == []


# --------------------------------------------------------------------------- the model test


@dataclass
class ModelJob:
    id: str
    payload: bytes
    delayed: bool  # enqueued or nacked with a ready_at (else: ready now, in FIFO order)
    ready_at: float  # meaningful when delayed
    key: int  # FIFO key: enqueue/nack order; front nacks get ever smaller keys


IDS = [f"j{i}" for i in range(8)]
DELAYS = st.sampled_from([None, None, 0.0, 1.0, 2.5, 5.0])  # None: ready now; else ready_at = now + d


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
        self.reserved: dict[str, bytes] = {}
        self.gone: set[str] = set()
        self.seq = itertools.count()
        self.front = itertools.count(-1, -1)
        self.payloads = itertools.count()

    def teardown(self) -> None:
        self.q.close()

    def _ready_at(self, delay: float | None) -> float:
        return 0.0 if delay is None else self.now + delay

    def _put(self, id: str, payload: bytes, ready_at: float, front: bool = False) -> None:
        key = next(self.front) if front else next(self.seq)
        self.pending[id] = ModelJob(id, payload, bool(ready_at) and not front, ready_at, key)

    # ---- rules

    @rule(id=st.sampled_from(IDS), delay=DELAYS)
    def enqueue(self, id: str, delay: float | None) -> None:
        payload = b"p%d" % next(self.payloads)
        ready_at = self._ready_at(delay)
        if id in self.pending or id in self.reserved:
            with pytest.raises(ValueError):
                self.q.enqueue(Job(id, payload), ready_at)
            return
        self.q.enqueue(Job(id, payload), ready_at)
        self.gone.discard(id)
        self._put(id, payload, ready_at)

    @rule(ids=st.lists(st.sampled_from(IDS), min_size=2, max_size=4, unique=True), delay=DELAYS)
    def enqueue_several(self, ids: list[str], delay: float | None) -> None:
        for id in ids:
            self.enqueue(id, delay)

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
        del self.pending[got.id]
        self.reserved[got.id] = m.payload

    def _pick(self, data: st.DataObject, likely: dict[str, object]) -> str:
        """Mostly an id in ``likely`` (a reserved job to ack, a pending one to cancel), sometimes any id."""
        if likely and data.draw(st.integers(0, 3), label="likely") > 0:
            return data.draw(st.sampled_from(sorted(likely)), label="id")
        return data.draw(st.sampled_from(IDS), label="id")

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        id = self._pick(data, self.reserved)
        got = self.q.ack(id)
        if id in self.reserved:
            assert got is not None and got.id == id
            del self.reserved[id]
            self.gone.add(id)
        else:
            assert got is None

    @rule(data=st.data(), how=st.sampled_from(["tail", "front", "delay"]), delay=st.sampled_from([0.0, 1, 4]))
    def nack(self, data: st.DataObject, how: str, delay: float) -> None:
        id = self._pick(data, self.reserved)
        if how == "front":
            got = self.q.nack(id, front=True)
            ready_at = 0.0
        elif how == "delay":
            ready_at = self.now + delay
            got = self.q.nack(id, ready_at)
        else:
            got = self.q.nack(id)
            ready_at = 0.0
        if id in self.reserved:
            assert got is not None and got.id == id
            payload = self.reserved.pop(id)
            self._put(id, payload, ready_at, front=how == "front")
        else:
            assert got is None

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
            got = self.q.get_reserved(id)
            if id in self.reserved:
                assert got is not None and got.id == id, f"{id} should be reserved"
            else:
                assert got is None, f"{id} should not be reserved"

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
    _run(QueueMachine, queue_factory)


def test_model_next_ready_in(queue_factory: Callable[[], Queue]) -> None:
    _run(QueueTimerMachine, queue_factory)
