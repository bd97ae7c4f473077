"""The queue's rules (:class:`honeydew.queue_core.QueueCore`), without a process or a socket.

Every message a queue process reads is fed to the core by hand; what it writes lands in
recording sinks.  The backend is a real ``Memory`` (or the reference durable store)."""

from __future__ import annotations

import base64
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from support.shared_store import SharedStore

from honeydew import _process
from honeydew.dispatchers import LRU
from honeydew.errors import Failure, FailureModeError, to_exception
from honeydew.failure_modes import (
    Abandon,
    Decision,
    DecisionContext,
    FailureMode,
    Move,
    Requeue,
    Retry,
    own_mode_key,
)
from honeydew.protocol import (
    Answer,
    Cancel,
    Control,
    ControlReply,
    Credit,
    Dispatch,
    Done,
    Drain,
    Enqueue,
    Failed,
    Hello,
    JobFailed,
    JobState,
    KillWorker,
    Partial,
    Release,
    Result,
    Resync,
    Settled,
    StatusReply,
    StatusRequest,
    StopWorker,
    Stored,
    WhereIs,
    WorkerDied,
    WorkerInitFailed,
    WorkersDown,
    decode,
    failure_record,
)
from honeydew.queue_core import INIT_FAILURES_TO_GIVE_UP, MAX_BOUNCES, QueueCore
from honeydew.queues import Job, Memory, Owner, Queue, Reply
from honeydew.queues.base import OWN_MODE

TOKEN = "pool-a"


class Rec:
    """A sink that records what the core wrote (wire tuples decoded to their records)."""

    def __init__(self) -> None:
        self.msgs: list[Any] = []

    def put(self, msg: Any) -> None:
        self.msgs.append(msg)

    def put_wire(self, wire: tuple[Any, ...]) -> None:
        self.msgs.append(decode(wire))

    def take(self, kind: type | None = None) -> list[Any]:
        """The recorded messages (only those of ``kind``), forgetting them all."""
        out = [m for m in self.msgs if kind is None or type(m) is kind]
        self.msgs.clear()
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make(workers: int = 2, failure_mode: FailureMode | None = None, backend: Queue | None = None, gen: int = 0,
         count_settled: bool = False, has_workers: bool = True,
         task_modes: dict[str, FailureMode] | None = None) -> QueueCore:
    backend = backend if backend is not None else Memory()
    core = QueueCore(index=0, gen=gen, token=TOKEN, backend=backend, dispatcher=LRU(),
                     failure_mode=failure_mode or Abandon(), caller=Rec(), workers=[Rec() for _ in range(workers)],
                     monitors=[Rec() for _ in range(workers)], count_settled=count_settled,
                     has_workers=has_workers, task_modes=task_modes, clock=Clock())
    core.start()
    return core


def caller(core: QueueCore) -> Rec:
    return core.caller  # type: ignore[return-value]


def worker(core: QueueCore, slot: int) -> Rec:
    return core.workers[slot]  # type: ignore[return-value]


def enqueue(core: QueueCore, *ids: str, origin: str = TOKEN, timeout: float = 0.0) -> None:
    core.from_caller([Enqueue(i, f"payload-{i}".encode(), origin, timeout) for i in ids])
    core.step()


def credit(core: QueueCore, slot: int, count: int = 1, pid: int | None = None) -> None:
    core.from_worker(slot, [Credit(core.gen, pid or 100 + slot, count)])
    core.step()


def dispatched(core: QueueCore, slot: int) -> list[Dispatch]:
    return worker(core, slot).take(Dispatch)


RAISED = Failure.from_exception(ValueError("boom"))


# --------------------------------------------------------------------------- start, dispatch, credit


def test_start_greets_every_worker_slot_with_the_generation() -> None:
    core = make(workers=3, gen=0)
    for slot in range(3):
        assert worker(core, slot).take() == [Hello(0)]


def test_nothing_is_dispatched_without_credit() -> None:
    core = make()
    enqueue(core, "a", "b")
    assert dispatched(core, 0) == [] and dispatched(core, 1) == []
    assert core.backend.status()["pending"] == 2


def test_dispatch_charges_the_worker_and_counts_the_delivery() -> None:
    core = make()
    enqueue(core, "a")
    credit(core, 1)
    [d] = dispatched(core, 1)
    assert (d.job_id, d.payload, d.origin, d.deliveries) == ("a", b"payload-a", TOKEN, 1)
    assert "a" in core.reserved[1]
    assert core.backend.status()["reserved"] == 1


def test_jobs_go_only_to_idle_workers_one_per_credit() -> None:
    core = make()
    credit(core, 0)
    enqueue(core, "a", "b", "c")
    assert [d.job_id for d in dispatched(core, 0)] == ["a"]
    credit(core, 1)
    assert [d.job_id for d in dispatched(core, 1)] == ["b"]
    core.from_worker(0, [Done("a", True)])
    core.step()
    assert [d.job_id for d in dispatched(core, 0)] == ["c"]


def test_done_acks_in_one_backend_call_per_step() -> None:
    acks: list[list[str]] = []

    class Counting(Memory):
        def ack(self, job_ids: Any, replies: Any = ()) -> None:
            acks.append(list(job_ids))
            super().ack(job_ids, replies)

    core = make(backend=Counting())
    enqueue(core, "a", "b")
    credit(core, 0)
    credit(core, 1)
    core.from_worker(0, [Done("a", False)])
    core.from_worker(1, [Done("b", False)])
    assert acks == []  # not yet: at the next step
    core.step()
    assert acks == [["a", "b"]]
    assert core.backend.status()["reserved"] == 0


def test_a_credit_from_an_earlier_generation_is_ignored() -> None:
    core = make(gen=2)
    core.from_caller([Resync(2)])
    enqueue(core, "a")
    core.from_worker(0, [Credit(1, 100, 1)])
    core.step()
    assert dispatched(core, 0) == []
    core.from_worker(0, [Credit(2, 100, 1)])
    core.step()
    assert [d.job_id for d in dispatched(core, 0)] == ["a"]


def test_a_restarted_queue_ignores_the_caller_until_resync() -> None:
    core = make(gen=1)
    core.from_caller([Enqueue("early", b"p", TOKEN, 0.0), StatusRequest(7)])
    assert len(core.backend) == 0 and caller(core).take() == []
    core.from_caller([Resync(0)])  # not ours
    core.from_caller([Enqueue("still-early", b"p", TOKEN, 0.0)])
    assert len(core.backend) == 0
    core.from_caller([Resync(1), Enqueue("a", b"p", TOKEN, 0.0)])
    assert len(core.backend) == 1


# --------------------------------------------------------------------------- failures and decisions


def test_a_failed_job_given_up_reaches_its_caller() -> None:
    core = make()
    enqueue(core, "a")
    credit(core, 0)
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    [f] = caller(core).take(JobFailed)
    assert f.job_id == "a" and f.failure == failure_record(RAISED)
    assert core.backend.status()["reserved"] == 0 and len(core.backend) == 0


def test_a_failed_cast_tells_nobody() -> None:
    core = make()
    enqueue(core, "a", origin="")
    credit(core, 0)
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    assert caller(core).take(JobFailed) == []


def test_redeliver_keeps_the_counts_in_the_backend() -> None:
    core = make(failure_mode=Retry(times=2, backoff=0.0))
    enqueue(core, "a")
    credit(core, 0)
    assert [d.deliveries for d in dispatched(core, 0)] == [1]
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    [d] = dispatched(core, 0)
    assert d.deliveries == 2
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    [d] = dispatched(core, 0)
    assert d.deliveries == 3
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    assert dispatched(core, 0) == []
    assert [f.job_id for f in caller(core).take(JobFailed)] == ["a"]  # after 2 retries


def test_redeliver_with_a_delay_holds_no_worker() -> None:
    core = make(failure_mode=Retry(times=1, backoff=5.0))
    enqueue(core, "a", "b")
    credit(core, 0)
    assert [d.job_id for d in dispatched(core, 0)] == ["a"]
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    assert [d.job_id for d in dispatched(core, 0)] == ["b"]
    core.from_worker(0, [Done("b", True)])
    core.step()
    assert dispatched(core, 0) == []
    assert core.wait_for() == pytest.approx(5.0)
    core.clock.now += 5.0  # type: ignore[attr-defined]
    core.step()
    assert [d.job_id for d in dispatched(core, 0)] == ["a"]


class _Raising(FailureMode):
    def decide(self, failure: Failure, deliveries: int, retries: int) -> Any:
        raise KeyError("no such policy")

    def __repr__(self) -> str:
        return "Raising()"


class _Answering(FailureMode):
    def decide(self, failure: Failure, deliveries: int, retries: int) -> Any:
        return "requeue please"

    def __repr__(self) -> str:
        return "Answering()"


@pytest.mark.parametrize("mode, says", [(_Raising(), "raised builtins.KeyError"),
                                        (_Answering(), "answered 'requeue please', which is not a decision")])
def test_a_broken_failure_mode_fails_the_job_visibly_and_the_queue_goes_on(mode: FailureMode, says: str) -> None:
    core = make(failure_mode=mode)
    enqueue(core, "a", "b")
    credit(core, 0)
    assert [d.job_id for d in dispatched(core, 0)] == ["a"]
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    [f] = caller(core).take(JobFailed)
    exc = to_exception(f.failure, f.job_id)
    assert isinstance(exc, FailureModeError)
    assert says in str(exc) and "job a failed (builtins.ValueError: boom)" in str(exc)
    assert [d.job_id for d in dispatched(core, 0)] == ["b"]  # the queue goes on
    assert core.backend.status()["reserved"] == 1  # only b


def test_a_worker_crash_under_a_broken_failure_mode_is_not_lost_either() -> None:
    core = make(failure_mode=_Raising())
    enqueue(core, "a")
    credit(core, 0)
    core.from_worker(0, [WorkerDied(100, -9, "SIGKILL", WorkerDied.CRASHED, "a")])
    core.step()
    [f] = caller(core).take(JobFailed)
    assert "WorkerCrashed" in str(to_exception(f.failure, "a"))


class Shelve(Decision):
    """A decision the queue has never heard of: keep the job aside (what Move will be)."""

    shelf: list[tuple[str, str]] = []

    def apply(self, job: Job, failure: Failure, queue: DecisionContext) -> None:
        Shelve.shelf.append((job.id, failure.message))
        queue.backend.ack([job.id])


class _Shelving(FailureMode):
    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        return Shelve()


def test_a_new_kind_of_decision_needs_no_change_to_the_queue() -> None:
    Shelve.shelf.clear()
    core = make(failure_mode=_Shelving())
    enqueue(core, "a")
    credit(core, 0)
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    assert Shelve.shelf == [("a", "boom")]
    assert core.backend.status()["reserved"] == 0
    assert caller(core).take(JobFailed) == []


class _HalfDone(Decision):
    def apply(self, job: Job, failure: Failure, queue: DecisionContext) -> None:
        raise RuntimeError("decision fell over")


class _HalfDoneMode(FailureMode):
    def decide(self, failure: Failure, deliveries: int, retries: int) -> Decision:
        return _HalfDone()


def test_a_decision_that_raises_before_moving_the_job_fails_it_visibly() -> None:
    core = make(failure_mode=_HalfDoneMode())
    enqueue(core, "a")
    credit(core, 0)
    core.from_worker(0, [Failed("a", failure_record(RAISED), True)])
    core.step()
    [f] = caller(core).take(JobFailed)
    assert isinstance(to_exception(f.failure), FailureModeError)
    assert core.backend.status()["reserved"] == 0


# --------------------------------------------------------------------------- worker deaths


def test_a_worker_death_fails_the_running_job_and_returns_the_unstarted_ones_uncounted() -> None:
    core = make(workers=1)
    enqueue(core, "a", "b", "c")
    credit(core, 0, count=2)
    assert [d.job_id for d in dispatched(core, 0)] == ["a", "b"]
    core.from_worker(0, [WorkerDied(100, -9, "SIGKILL", WorkerDied.CRASHED, "a")])
    core.step()
    [f] = caller(core).take(JobFailed)
    assert f.job_id == "a" and "SIGKILL" in str(to_exception(f.failure))
    assert worker(core, 0).take(Hello) == [Hello(0)]  # for the slot's next worker
    credit(core, 0, pid=101)
    [d] = dispatched(core, 0)
    assert (d.job_id, d.deliveries) == ("b", 1)  # b never started: back at the head, not counted


def test_a_job_that_keeps_killing_idle_workers_is_counted_after_a_few_bounces() -> None:
    core = make(workers=1, failure_mode=Requeue(max_deliveries=100))
    enqueue(core, "a")
    deliveries = []
    for pid in range(100, 100 + MAX_BOUNCES + 2):
        credit(core, 0, pid=pid)
        [d] = dispatched(core, 0)
        deliveries.append(d.deliveries)
        core.from_worker(0, [WorkerDied(pid, -9, "SIGKILL", WorkerDied.IDLE, "")])
        core.step()
    assert deliveries[:MAX_BOUNCES + 1] == [1] * (MAX_BOUNCES + 1)
    assert deliveries[-1] == 2


def test_a_timeout_fails_the_job_with_job_timeout() -> None:
    core = make(workers=1)
    enqueue(core, "a", timeout=2.0)
    credit(core, 0)
    core.from_worker(0, [WorkerDied(100, -15, "SIGTERM", WorkerDied.TIMEOUT, "a")])
    core.step()
    [f] = caller(core).take(JobFailed)
    assert type(to_exception(f.failure)).__name__ == "JobTimeout"


def test_release_puts_the_job_back_at_the_head_uncounted() -> None:
    core = make(workers=2)
    enqueue(core, "a", "b")
    credit(core, 0)
    [d] = dispatched(core, 0)
    core.from_worker(0, [Release(d.job_id)])
    credit(core, 1)
    assert [(d.job_id, d.deliveries) for d in dispatched(core, 1)] == [("a", 1)]


def test_no_worker_can_start_fails_the_queued_jobs() -> None:
    core = make(workers=2)
    enqueue(core, "a", "b")
    enqueue(core, "c", origin="")
    init = Failure.from_exception(RuntimeError("no db"), kind=Failure.INIT)
    for n in range(1, INIT_FAILURES_TO_GIVE_UP + 1):
        for slot in range(2):
            core.from_worker(slot, [WorkerInitFailed(n, False, failure_record(init))])
        core.step()
    failed = caller(core).take()
    assert sorted(m.job_id for m in failed if type(m) is JobFailed) == ["a", "b"]
    [down] = [m for m in failed if type(m) is WorkersDown]
    assert down.dropped == 3


# --------------------------------------------------------------------------- cancel, where is, status


def test_cancel_a_queued_job() -> None:
    core = make(count_settled=True)
    enqueue(core, "a")
    core.from_caller([Cancel("a", False, 5)])
    core.step()
    assert caller(core).take(JobState) == [JobState(5, "a", "cancelled")]
    assert len(core.backend) == 0


def test_cancel_lets_idle_workers_take_their_job_first() -> None:
    core = make()
    credit(core, 0)
    core.from_caller([Enqueue("a", b"p", TOKEN, 0.0), Cancel("a", False, 5)])
    assert caller(core).take(JobState) == [JobState(5, "a", "running")]


def test_cancel_with_terminate_stops_the_running_worker() -> None:
    core = make()
    enqueue(core, "a")
    credit(core, 1, pid=555)
    core.from_caller([Cancel("a", True, 6)])
    assert caller(core).take(JobState) == [JobState(6, "a", "running")]
    assert core.monitors[1].take() == [KillWorker(555, "a", WorkerDied.CANCELLED)]  # type: ignore[attr-defined]
    core.from_worker(1, [WorkerDied(555, -15, "SIGTERM", WorkerDied.CANCELLED, "a")])
    core.step()
    assert caller(core).take(JobFailed) == []  # the caller cancelled it: no failure to report
    assert core.backend.status()["reserved"] == 0


def test_where_is() -> None:
    core = make()
    enqueue(core, "a", "b")
    credit(core, 0)
    core.from_caller([WhereIs("a", 1), WhereIs("b", 2), WhereIs("zz", 3)])
    assert [s.state for s in caller(core).take(JobState)] == ["running", "queued", "gone"]


def test_status_reply() -> None:
    core = make()
    enqueue(core, "a", "b")
    credit(core, 0)
    core.from_caller([StatusRequest(9)])
    [r] = caller(core).take(StatusReply)
    assert r.req_id == 9 and r.info["pending"] == 1 and r.info["running"] == {0: ["a"]}


def test_settled_counts_jobs_that_reached_an_end() -> None:
    core = make(count_settled=True)
    enqueue(core, "a", "b")
    credit(core, 0)
    core.from_worker(0, [Done("a", True)])
    core.step()
    core.from_worker(0, [Failed("b", failure_record(RAISED), True)])
    core.step()
    assert sum(m.count for m in caller(core).take(Settled)) == 2


# --------------------------------------------------------------------------- ending


def test_drain_finishes_once_every_job_is_done() -> None:
    core = make()
    enqueue(core, "a")
    core.from_caller([Drain()])
    credit(core, 0)
    assert not core.finished()
    core.from_worker(0, [Done("a", True)])
    core.step()
    assert core.finished()
    core.stop_workers()
    assert worker(core, 0).take(StopWorker) == [StopWorker()]


def test_sigterm_lets_running_jobs_finish_and_reports_queued_ones_lost() -> None:
    core = make(workers=1)
    enqueue(core, "a", "b")
    credit(core, 0)
    core.terminate_requested()
    core.step()
    assert not core.finished()
    core.from_worker(0, [Done("a", True)])
    core.step()
    assert dispatched(core, 0) == [Dispatch("a", b"payload-a", TOKEN, 1, 0.0)]  # b is not started
    assert core.finished()
    [f] = caller(core).take(JobFailed)
    assert f.job_id == "b" and "SIGTERM" in f.failure[2]


def test_an_enqueue_only_pool_reports_its_jobs_lost_at_close() -> None:
    core = make(workers=0, has_workers=False)
    enqueue(core, "a")
    core.from_caller([Drain()])
    assert core.finished()
    [f] = caller(core).take(JobFailed)
    assert f.job_id == "a"


# --------------------------------------------------------------------------- durable and shared backends


@pytest.fixture
def store(tmp_path: Path) -> Any:
    def open_store(pool: str) -> SharedStore:
        s = SharedStore(tmp_path / "jobs.db")
        s.open(Owner(pool, 0, 0, os.getpid()))
        return s
    return open_store


def test_a_durable_queue_answers_stored_for_each_batch(store: Any) -> None:
    core = make(backend=store(TOKEN))
    core.from_caller([Enqueue("a", b"p", "", 0.0), Enqueue("b", b"p", "", 0.0), WhereIs("a", 1),
                      Enqueue("c", b"p", TOKEN, 0.0)])
    msgs = caller(core).take()
    assert msgs == [Stored(0, 2, ""), JobState(1, "a", "queued"), Stored(0, 1, "")]


def test_a_durable_queue_that_cannot_store_says_why(store: Any) -> None:
    class Full(SharedStore):
        def enqueue(self, jobs: Any, ready_at: float = 0.0) -> None:
            raise OSError(28, "No space left on device")

    backend = Full(store(TOKEN).path)
    backend.open(Owner(TOKEN, 0, 0, os.getpid()))
    core = make(backend=backend)
    core.from_caller([Enqueue("a", b"p", "", 0.0)])
    [s] = caller(core).take()
    assert s.count == 1 and "No space left on device" in s.error


def test_a_durable_queue_keeps_its_jobs_when_no_worker_can_start(store: Any) -> None:
    core = make(backend=store(TOKEN), workers=1)
    enqueue(core, "a")
    init = Failure.from_exception(RuntimeError("no db"), kind=Failure.INIT)
    for n in range(1, INIT_FAILURES_TO_GIVE_UP + 1):
        core.from_worker(0, [WorkerInitFailed(n, False, failure_record(init))])
        core.step()
    assert caller(core).take(JobFailed) == []
    assert len(core.backend) == 1


def test_the_outcome_of_another_pools_job_goes_to_the_backend(store: Any) -> None:
    sender = store("pool-b")
    sender.enqueue([Job("call-1", b"p", "pool-b"), Job("call-2", b"p", "pool-b"), Job("map-3", b"p", "pool-b")])
    core = make(backend=store(TOKEN), workers=1)
    credit(core, 0, count=3)
    assert len(dispatched(core, 0)) == 3
    core.from_worker(0, [Answer("call-1", b"the result", False), Done("call-1", True)])
    core.from_worker(0, [Failed("call-2", failure_record(RAISED), True)])
    core.from_worker(0, [Answer("map-3", b"items", True), Failed("map-3", failure_record(RAISED), True)])
    core.step()
    assert caller(core).take(JobFailed) == []  # not this pool's callers
    replies = {r.job_id: r for r in sender.take_replies()}
    assert replies["call-1"] == Reply("pool-b", "call-1", True, b"the result")
    assert replies["call-2"].ok is False and tuple(replies["call-2"].value) == failure_record(RAISED)
    # a given-up map chunk: its failure, and its items' outcomes
    assert replies["map-3"].ok is False and replies["map-3"].partial == b"items"
    assert tuple(replies["map-3"].value) == failure_record(RAISED)


def test_replies_for_this_pools_callers_are_passed_on(store: Any) -> None:
    core = make(backend=store(TOKEN), count_settled=True)
    runner = store("pool-b")
    runner.ack([], [Reply(TOKEN, "j1", True, b"value"), Reply(TOKEN, "j2", False, failure_record(RAISED)),
                    Reply(TOKEN, "j3", False, failure_record(RAISED), b"items")])
    core.collect_replies()
    core.step()
    msgs = caller(core).take()
    assert Result("j1", b"value") in msgs
    assert JobFailed("j2", failure_record(RAISED)) in msgs
    # a given-up map chunk's items' outcomes come first, as a worker of this pool would send them
    assert msgs.index(Partial("j3", b"items")) + 1 == msgs.index(JobFailed("j3", failure_record(RAISED)))
    assert Settled(3) in msgs


def test_the_backend_is_told_how_many_jobs_the_workers_can_hold(store: Any) -> None:
    backend = store(TOKEN)
    core = make(backend=backend)
    core.step()
    credit(core, 0, count=2)
    credit(core, 1, count=1)
    enqueue(core, "a")
    core.from_worker(0, [Done("a", False)])  # that worker leaves: its credit does not come back
    core.step()
    core.from_worker(0, [WorkerDied(100, 0, None, WorkerDied.LEFT, "")])
    core.step()
    assert backend.told_hold == [0, 2, 3, 2, 1]


def test_an_enqueue_only_durable_queue_drains_once_its_callers_have_their_outcomes(store: Any) -> None:
    """Its casts are stored, so they do not hold the drain; a job whose caller waits does, until
    the pool that ran it has replied (or the caller cancelled it)."""
    core = make(workers=0, has_workers=False, backend=store(TOKEN))
    core.from_caller([Enqueue("cast", b"p", "", 0.0), Enqueue("call", b"p", TOKEN, 0.0),
                      Enqueue("gone", b"p", TOKEN, 0.0), Drain()])
    core.step()
    assert not core.finished()
    core.from_caller([Cancel("gone", False, 1)])
    store("pool-b").ack([], [Reply(TOKEN, "call", True, b"value")])
    core.collect_replies()
    core.step()
    assert core.finished()
    assert Result("call", b"value") in caller(core).take()


def test_a_restarted_durable_queue_waits_for_what_the_caller_still_awaits(store: Any) -> None:
    """The caller's Resync names the jobs stored by the earlier generation that it still waits for;
    before it, the new queue passes on no reply (the caller would not know them yet)."""
    core = make(workers=0, has_workers=False, backend=store(TOKEN), gen=1)
    store("pool-b").ack([], [Reply(TOKEN, "old", True, b"value")])
    core.collect_replies()
    assert caller(core).take(Result) == []
    core.from_caller([Resync(1, ("old", "older")), Drain()])
    core.collect_replies()
    core.step()
    assert caller(core).take(Result) == [Result("old", b"value")]
    assert not core.finished()  # "older" has no outcome yet
    store("pool-b").ack([], [Reply(TOKEN, "older", False, failure_record(RAISED))])
    core.collect_replies()
    core.step()
    assert core.finished()


# --------------------------------------------------------------------------- job control


def test_a_suspended_queue_dispatches_nothing_until_resumed() -> None:
    core = make(workers=1)
    core.from_caller([Control(1, "suspend", None)])
    assert caller(core).take(ControlReply) == [ControlReply(1, True, True)]
    enqueue(core, "a")
    credit(core, 0)
    assert dispatched(core, 0) == [] and core.status()["suspended"] is True
    assert core.wait_for() is None  # no wake-up for a delayed job either
    core.from_caller([Control(2, "resume", None)])
    core.step()
    assert [d.job_id for d in dispatched(core, 0)] == ["a"]


def test_a_queue_that_starts_suspended_and_closes_runs_its_in_memory_jobs() -> None:
    """Closing while suspended would lose the in-memory jobs or wait for ever: it resumes."""
    core = make(workers=1, gen=0)
    core.suspended = True
    enqueue(core, "a")
    core.from_caller([Drain()])
    credit(core, 0)
    assert [d.job_id for d in dispatched(core, 0)] == ["a"]


def test_delayed_and_prioritised_jobs_are_dispatched_in_their_order() -> None:
    core = make(workers=1)
    clock: Clock = core.clock  # type: ignore[assignment]
    core.from_caller([Enqueue("later", b"p", "", 0.0, clock.now + 5, 0), Enqueue("low", b"p", "", 0.0, 0.0, -1),
                      Enqueue("plain", b"p", "", 0.0, 0.0, 0), Enqueue("urgent", b"p", "", 0.0, 0.0, 9)])
    order = []
    for _ in range(3):
        credit(core, 0)
        [d] = dispatched(core, 0)
        order.append(d.job_id)
        core.from_worker(0, [Done(d.job_id, False)])
    assert order == ["urgent", "plain", "low"]
    credit(core, 0)
    assert dispatched(core, 0) == [] and 0 < core.wait_for() <= 5  # type: ignore[operator]
    clock.now += 5
    core.step()
    assert [d.job_id for d in dispatched(core, 0)] == ["later"]


def test_move_keeps_the_job_for_the_operator_who_can_retry_or_purge_it() -> None:
    core = make(workers=1, failure_mode=Move())
    enqueue(core, "a", "b")
    for job_id in ("a", "b"):
        credit(core, 0)
        dispatched(core, 0)
        core.from_worker(0, [Failed(job_id, failure_record(RAISED), False)])
        core.step()
    assert [f.job_id for f in caller(core).take(JobFailed)] == ["a", "b"]  # the callers still learn it
    core.from_caller([Control(1, "failed", 10)])
    [reply] = caller(core).take(ControlReply)
    assert reply.ok and [row[0] for row in reply.value] == ["b", "a"]  # newest first
    core.from_caller([Control(2, "retry_failed", ["a", "unknown"]), Control(3, "purge_failed", None)])
    assert [(r.req_id, r.value) for r in caller(core).take(ControlReply)] == [(2, 1), (3, 1)]
    credit(core, 0)
    [d] = dispatched(core, 0)
    assert (d.job_id, d.deliveries) == ("a", 1)  # its count starts again


def test_a_backend_without_a_failed_store_says_so_and_move_still_gives_up(store: Any) -> None:
    core = make(workers=1, failure_mode=Move(), backend=store(TOKEN))
    enqueue(core, "a")
    credit(core, 0)
    dispatched(core, 0)
    core.from_worker(0, [Failed("a", failure_record(RAISED), False)])
    core.step()
    assert [f.job_id for f in caller(core).take(JobFailed)] == ["a"]
    core.from_caller([Control(1, "failed", 10), Control(2, "no such op", None)])
    replies = caller(core).take(ControlReply)
    assert [r.ok for r in replies] == [False, False]
    assert "no failed store" in replies[0].value and "unknown request" in replies[1].value


# --------------------------------------------------------------------------- a job's own failure mode


def _runs_until_given_up(core: QueueCore, job_id: str, mode: str, crash: bool = False) -> int:
    """Send ``job_id`` with failure-mode key ``mode`` to a one-worker queue and fail every delivery
    (a raise, or with ``crash`` its worker's death) until the queue gives it up; how many times it
    was dispatched."""
    if not len(core.dispatcher):
        credit(core, 0, pid=core.pids[0] or 500)
    core.from_caller([Enqueue(job_id, b"p", TOKEN, 0.0, mode=mode)])
    core.step()
    runs = 0
    while True:
        got = dispatched(core, 0)
        if not got:
            core.clock.now += 1_000  # type: ignore[attr-defined]  (past any back-off)
            core.step()
            got = dispatched(core, 0)
        if not got:
            break
        assert [d.job_id for d in got] == [job_id] and runs < 20
        runs += 1
        if crash:
            pid = core.pids[0]
            core.from_worker(0, [WorkerDied(pid, -9, "SIGKILL", WorkerDied.CRASHED, job_id)])
            credit(core, 0, pid=pid + 1)  # (its replacement)
        else:
            core.from_worker(0, [Failed(job_id, failure_record(RAISED), True)])
        core.step()
    assert [f.job_id for f in caller(core).take(JobFailed)] == [job_id]
    return runs


def test_a_jobs_own_failure_mode_beats_its_tasks_and_the_pools() -> None:
    core = make(workers=1, failure_mode=Abandon(), task_modes={"its_task": Retry(times=1, backoff=0)})
    assert _runs_until_given_up(core, "pool's", "") == 1
    assert _runs_until_given_up(core, "task's", "its_task") == 2
    assert _runs_until_given_up(core, "own", own_mode_key(Retry(times=2, backoff=0))) == 3
    assert _runs_until_given_up(core, "own requeue", own_mode_key(Requeue(max_deliveries=4)), crash=True) == 4
    # the job's own Abandon wins over a pool's and a task's Retry
    core = make(workers=1, failure_mode=Retry(times=5, backoff=0), task_modes={"its_task": Retry(times=5)})
    assert _runs_until_given_up(core, "own abandon", own_mode_key(Abandon())) == 1
    assert _runs_until_given_up(core, "pool's retry", "") == 6


def test_a_jobs_own_failure_mode_is_unpickled_once_however_often_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from honeydew import queue_core

    reads: list[str] = []
    real = queue_core.read_own_mode
    monkeypatch.setattr(queue_core, "read_own_mode", lambda key: (reads.append(key), real(key))[1])
    core = make(workers=1)
    key = own_mode_key(Retry(times=3, backoff=0))
    assert _runs_until_given_up(core, "a", key) == 4
    assert _runs_until_given_up(core, "b", key) == 4
    assert reads == [key]
    for i in range(queue_core.OWN_MODES_KEPT + 10):  # a bounded table
        core._own_mode(Job(f"j{i}", b"p", mode=own_mode_key(Retry(times=i))))
    assert len(core.own_modes) <= queue_core.OWN_MODES_KEPT


@pytest.mark.parametrize("key, why", [
    (OWN_MODE + base64.b64encode(b"cno_such_module_of_honeydew_tests\nGone\n.").decode(), "ModuleNotFoundError"),
    (OWN_MODE + "not base64 at all!", "not valid base64"),
    (OWN_MODE + base64.b64encode(pickle.dumps(42)).decode(), "not a honeydew.FailureMode"),
])
def test_a_jobs_own_failure_mode_that_will_not_unpickle_leaves_it_to_the_pools(
        key: str, why: str, caplog: pytest.LogCaptureFixture) -> None:
    """Neither lost nor looping: the pool's failure mode handles the job, and the error names the job and why."""
    core = make(workers=1, failure_mode=Retry(times=1, backoff=0))
    with caplog.at_level(logging.ERROR, logger="honeydew.queue.0"):
        assert _runs_until_given_up(core, "unreadable", key) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("job unreadable" in e and why in e and "Retry(times=1" in e for e in errors)
    assert _process.decoding == ""
    assert _runs_until_given_up(core, "fine", own_mode_key(Abandon())) == 1  # the queue goes on
