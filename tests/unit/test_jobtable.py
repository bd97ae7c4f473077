"""The caller's job table and its inbox, without a pool: the inbox is given sockets and a stand-in
for the pool's events, and settles what arrives."""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from honeydew._inbox import Inbox, JobTable, PoolEvents, Unstored
from honeydew._wire import Endpoint, socketpair
from honeydew.errors import Failure, RemoteError
from honeydew.protocol import (
    BootFailed,
    JobFailed,
    JobState,
    Partial,
    QueueRestarted,
    Result,
    Settled,
    StatusReply,
    Stored,
    WorkersDown,
)


class Slot:
    """A call's bare result slot, as the pool makes them."""

    _is_async = False

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.outcome: tuple[bool, Any] | None = None

    def set_result(self, value: Any) -> None:
        self.outcome = (True, value)

    def set_exception(self, exc: BaseException) -> None:
        self.outcome = (False, exc)


class SubmitFuture(Future):  # type: ignore[type-arg]
    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self._is_async = True


# --- the table alone ----------------------------------------------------------------------------

def test_jobs_leave_the_table_by_queue_or_all_at_once() -> None:
    jobs = JobTable()
    a, b, c = Slot("a"), Slot("b"), Slot("c")
    jobs.pending.update({"a": (a, 0), "b": (b, 1), "c": (c, 0)})
    jobs.partials.update({"a": b"pa", "b": b"pb"})
    assert len(jobs) == 3 and "b" in jobs and jobs.slots() == [a, b, c]
    assert jobs.lose_queue(0) == [("a", a), ("c", c)]
    assert list(jobs.pending) == ["b"] and list(jobs.partials) == ["b"]
    assert jobs.take_all() == [("b", b)]
    assert not jobs.pending and not jobs.partials and "b" not in jobs


def test_submit_futures_are_counted_out_once() -> None:
    jobs = JobTable()
    futs = [SubmitFuture(str(i)) for i in range(3)]
    for f in futs:
        jobs.pending[f.job_id] = (f, 0)
        jobs.submit_opened()
    assert jobs.submits == 3 and jobs.submits_open.is_set()
    assert jobs.discard("0") is futs[0] and jobs.submits == 2
    assert jobs.discard("0") is None and jobs.submits == 2       # not pending any more: not counted again
    jobs.submits_settled(2)
    assert jobs.submits == 0 and not jobs.submits_open.is_set()


def test_answers_are_kept_by_request_until_taken() -> None:
    jobs = JobTable()
    r1, r2 = jobs.new_request(), jobs.new_request()
    assert r1 != r2
    jobs.record_state(r1, "queued")
    assert jobs.has_state(r1) and not jobs.has_state(r2)
    assert jobs.take_state(r1) == "queued" and jobs.take_state(r1) == "gone" and jobs.take_state(r2) == "gone"
    jobs.record_status(r2, "queue", {"index": 0})
    jobs.record_status(r2, "supervisor", {"workers": []})
    assert jobs.status_count(r2) == 2 and jobs.status_count(r1) == 0
    assert jobs.take_status(r2) == [("queue", {"index": 0}), ("supervisor", {"workers": []})]
    assert jobs.take_status(r2) == []


# --- the inbox, with sockets and a stand-in pool ------------------------------------------------

class Events:
    """What a pool does with the inbox's events, recorded."""

    def __init__(self, jobs: Callable[[], JobTable]) -> None:
        self.jobs = jobs
        self.seen: list[tuple[Any, ...]] = []

    def settled(self, queue: int, count: int) -> None:
        self.seen.append(("settled", queue, count))

    def workers_down(self, dropped: int, failure: tuple[Any, ...]) -> None:
        self.seen.append(("workers_down", dropped))

    def queue_restarted(self, index: int, gen: int, reason: str) -> list[tuple[Any, BaseException]]:
        self.seen.append(("queue_restarted", index, gen))
        return [(slot, LookupError(f"{jid} lost: {reason}")) for jid, slot in self.jobs().lose_queue(index)]

    def boot_failed(self, reason: str) -> None:
        self.seen.append(("boot_failed", reason))

    def not_stored(self, job_id: str, error: str) -> BaseException:
        return OSError(f"{job_id} not stored: {error}")

    def supervisor_exited(self) -> Callable[[str], BaseException]:
        self.seen.append(("supervisor_exited",))
        return lambda jid: EOFError(f"{jid}: gone")

    def exception_of(self, failure: tuple[Any, ...], job_id: str) -> BaseException:
        f = Failure._make(failure)
        return RemoteError(f.type_name, f.message, f.traceback)

    def unpickling_failed(self, message: str) -> BaseException:
        return TypeError(message)


class Rig:
    """An inbox over real sockets: ``queue``, ``reply`` and ``control`` are the far ends (the
    queue's, a worker's and the supervisor's); writing to ``pidfd_w`` stands for the supervisor's exit."""

    def __init__(self) -> None:
        q_near, q_far = socketpair()
        r_near, r_far = socketpair()
        c_near, c_far = socketpair()
        self.pidfd_r, self.pidfd_w = os.pipe()
        self.queue, self.reply, self.control = Endpoint(q_far), Endpoint(r_far), Endpoint(c_far)
        self.flushed = 0
        self.events = Events(lambda: self.inbox.jobs)
        events: PoolEvents = self.events
        self.inbox = Inbox(Endpoint(c_near), [Endpoint(q_near)], [Endpoint(r_near)], self.pidfd_r, events,
                           self.flush, threading.Condition())
        self.jobs = self.inbox.jobs

    def flush(self) -> None:
        self.flushed += 1

    def add(self, slot: Any, queue: int = 0) -> Any:
        self.jobs.pending[slot.job_id] = (slot, queue)
        if slot._is_async:
            self.jobs.submit_opened()
        return slot

    def close(self) -> None:
        self.inbox.close()
        for ep in (self.queue, self.reply, self.control, *self.inbox.queues, *self.inbox.replies,
                   self.inbox.control):
            ep.sock.close()
        os.close(self.pidfd_r)
        os.close(self.pidfd_w)


@pytest.fixture
def rig() -> Any:
    r = Rig()
    yield r
    r.close()


def _failure(message: str) -> tuple[Any, ...]:
    return tuple(Failure(kind="raised", type_name="ValueError", message=message, traceback="tb"))


def test_results_and_failures_settle_their_jobs(rig: Rig) -> None:
    call, fut = rig.add(Slot("j1")), rig.add(SubmitFuture("j2"))
    rig.reply.send(Result("j1", pickle.dumps(42)))
    rig.queue.send(JobFailed("j2", _failure("boom")))
    assert rig.inbox.wait(lambda: call.outcome is not None and fut.done(), 5)
    assert call.outcome == (True, 42)
    assert isinstance(fut.exception(), RemoteError) and "boom" in str(fut.exception())
    assert not rig.jobs.pending and rig.jobs.submits == 0 and rig.flushed >= 1


def test_a_result_that_will_not_unpickle_is_the_pools_error(rig: Rig) -> None:
    call = rig.add(Slot("j1"))
    rig.reply.send(Result("j1", b"not a pickle"))
    assert rig.inbox.wait(lambda: call.outcome is not None, 5)
    ok, exc = call.outcome  # type: ignore[misc]
    assert not ok and isinstance(exc, TypeError) and "could not be unpickled" in str(exc)


def test_answers_and_counts_are_recorded_or_handed_to_the_pool(rig: Rig) -> None:
    req = rig.jobs.new_request()
    rig.queue.send(JobState(req, "j9", "running"), Settled(3), WorkersDown(2, _failure("no db")),
                   StatusReply(req, {"index": 0}))
    rig.control.send(StatusReply(req, {"workers": []}), BootFailed("no module"))
    assert rig.inbox.wait(lambda: rig.jobs.status_count(req) == 2 and len(rig.events.seen) == 3, 5)
    assert rig.jobs.take_state(req) == "running"
    assert set(rig.events.seen) == {("settled", 0, 3), ("workers_down", 2), ("boot_failed", "no module")}


def test_a_replaced_queue_and_the_supervisors_exit_fail_what_is_pending(rig: Rig) -> None:
    lost, kept = rig.add(Slot("a"), queue=0), rig.add(Slot("b"), queue=1)
    rig.control.send(QueueRestarted(0, 2, "queue 0 died"))
    assert rig.inbox.wait(lambda: lost.outcome is not None, 5)
    assert isinstance(lost.outcome[1], LookupError) and "a" not in rig.jobs  # type: ignore[index]
    os.write(rig.pidfd_w, b"x")
    assert rig.inbox.wait(lambda: rig.inbox.supervisor_gone and kept.outcome is not None, 5)
    assert isinstance(kept.outcome[1], EOFError) and str(kept.outcome[1]) == "b: gone"  # type: ignore[index]
    assert rig.events.seen == [("queue_restarted", 0, 2), ("supervisor_exited",)]


def test_fail_all_settles_every_pending_job(rig: Rig) -> None:
    call, fut = rig.add(Slot("a")), rig.add(SubmitFuture("b"))
    done: list[Future] = []  # type: ignore[type-arg]
    fut.add_done_callback(done.append)
    rig.inbox.fail_all(lambda jid: RuntimeError(f"{jid} terminated"))
    assert call.outcome is not None and str(call.outcome[1]) == "a terminated"
    assert done == [fut] and str(fut.exception()) == "b terminated"
    assert not rig.jobs.pending and rig.jobs.submits == 0


# --- a durable backend's answers ----------------------------------------------------------------

def test_stored_answers_count_off_the_oldest_jobs_of_their_generation() -> None:
    jobs = JobTable(num_queues=2)
    a, b, c = (Unstored(jid, ("wire", jid), None) for jid in "abc")
    jobs.unstored[0].extend([a, b, c])
    assert jobs.mark_stored(0, 0, 1, "") == [] and a.done() and not b.done()
    jobs.gens[0] = 1                                   # the queue restarted: its old answers are stale
    assert jobs.mark_stored(0, 0, 2, "") == [] and not b.done()
    assert jobs.mark_stored(0, 1, 1, "disk full") == [b] and b.done() and b.error == "disk full"
    jobs.refuse_all("gone")
    assert c.done() and c.error == "gone" and not jobs.unstored[0]


def test_a_refused_job_fails_its_caller_and_gives_its_room_back(rig: Rig) -> None:
    kept, refused = rig.add(Slot("a")), rig.add(SubmitFuture("b"))
    rig.jobs.unstored[0].extend([Unstored("a", (), kept), Unstored("b", (), refused)])
    rig.queue.send(Stored(0, 1, ""), Stored(0, 1, "No space left on device"))
    assert rig.inbox.wait(refused.done, 5)
    assert str(refused.exception()) == "b not stored: No space left on device"
    assert "a" in rig.jobs and kept.outcome is None
    assert rig.events.seen == [("settled", 0, 1)] and rig.jobs.submits == 0


def test_the_outcome_of_a_job_another_pool_ran_comes_from_the_queue(rig: Rig) -> None:
    call, chunk = rig.add(Slot("a")), rig.add(Slot("m"))
    items = pickle.dumps(([1, None], [None, ("err",)]))
    rig.queue.send(Result("a", pickle.dumps("from pool b")), Partial("m", items))
    assert rig.inbox.wait(lambda: call.outcome is not None, 5)
    assert call.outcome == (True, "from pool b")
    assert rig.jobs.partials == {"m": items} and chunk.outcome is None
