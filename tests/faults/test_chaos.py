"""A model-based chaos test: hypothesis drives a real pool with random casts, calls, submits, task
exceptions, worker crashes, init failures and SIGKILLs of workers, monitors and the queue process,
under Abandon, Requeue(max_deliveries=3) and Retry(times=2) (one failure mode per example).

The model is deliberately coarse, so that every assertion is about outcomes, never timing:

* every accepted job ends completed (with its own value), failed through its failure mode (the
  task's ``ValueError``, or ``WorkerCrashed``), or, only if the queue process was killed while the
  job was pending, ``JobLost``; or, only if init had failed before its outcome, ``WorkerInitError``
  (every worker's init failed 3 times and none served: the job is dropped, and so is every job sent
  until a worker comes up again, after init recovered too; a cast then never runs, and ``join``
  raises it).  A ``WorkerCrashed`` for a job that does not crash
  its worker is accepted only if some process was killed while that job was pending;
* a job ran (one file per run, written by the task) at most its delivery limit, at least once if
  it completed or failed by itself, and exactly once if it completed with no process killed while
  it was pending.  (A job that always fails may run fewer times than its limit: honeydew charges a
  delivery to a worker that dies before reading the job, docs/architecture.md, so only the bounds
  are asserted there.);
* no wait lasts forever: every wait has a generous deadline and missing it fails the example;
* after close + join: no pool process, no zombie, and this process's descriptor count is back
  where it was (a small constant allowed).

``event()`` labels show which kinds of kill (and which failure modes) fired.  Sizes: at least 200
examples of up to 30 steps with ``CI=true``; ``HONEYDEW_CHAOS_EXAMPLES`` overrides (default 25
locally).
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from support import faults_helpers as F

import honeydew

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EXAMPLES = int(os.environ.get("HONEYDEW_CHAOS_EXAMPLES", "200" if IN_CI else "25"))
WAIT = 60.0        # the longest any single wait may take before it counts as a hang
NUM_WORKERS = 2
FD_SLACK = 3
# A process that keeps dying young is restarted after a growing delay (supervisor: 0.1 s doubling
# to 5 s); a few kills of each long-lived kind per example exercise every path without stalling.
MAX_QUEUE_KILLS = 2
MAX_MONITOR_KILLS = 3

MODES: dict[str, tuple[Any, int]] = {
    # name: (failure mode, the most times a job may run)
    "abandon": (honeydew.Abandon(), 1),
    "requeue": (honeydew.Requeue(max_deliveries=3), 3),
    "retry": (honeydew.Retry(times=2, backoff=0.01), 3),
}
KINDS = st.sampled_from(["ok", "ok", "ok", "raise", "crash"])
NAPS = st.sampled_from([0.0, 0.0, 0.005, 0.03])


class Job:
    __slots__ = ("id", "step", "kind", "value", "kills_at_start", "qkills_at_start", "future", "outcome", "kills_seen",
                 "qkills_seen", "init_exposed")

    def __init__(self, job_id: str, kind: str, value: int, kills: int, qkills: int) -> None:
        self.id = job_id
        self.step = 0
        self.kind = kind
        self.value = value
        self.kills_at_start = kills
        self.qkills_at_start = qkills
        self.future: honeydew.JobFuture | None = None
        self.outcome: Any = None          # ("ok", value) | ("exc", exception); None while unknown
        self.kills_seen = kills           # kill counters when the outcome was observed
        self.qkills_seen = qkills
        self.init_exposed = False         # init had failed at some point before its outcome

    @property
    def name(self) -> str:
        return f"{self.id or 'call'}/v{self.value}"


class ChaosPool(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fd_start = F.fd_count()
        self.tmp = Path(tempfile.mkdtemp(prefix="honeydew-chaos-"))
        self.runs_dir = self.tmp / "runs"
        self.runs_dir.mkdir()
        self.flag_dir = self.tmp / "flags"
        self.flag_dir.mkdir()
        self.pool: honeydew.Pool | None = None
        self.mode = "abandon"
        self.limit = 1
        self.jobs: list[Job] = []
        self.casts: list[Job] = []
        self.kills = 0      # every SIGKILL this test sent (workers, monitors, the queue)
        self.qkills = 0     # SIGKILLs of the queue process
        # preconditions may depend only on the rules drawn so far (never on what was alive), or
        # hypothesis sees a different set of enabled rules on replay
        self.queue_kill_rules = 0
        self.monitor_kill_rules = 0
        self.killed_queues: set[int] = set()
        self.queue_kill_steps: list[int] = []
        self.init_fails = 0  # init_starts_failing rules so far
        self.step = 0       # bumped by every acceptance and every kill: orders them
        self.values = iter(range(1, 10**9))

    # ------------------------------------------------------------------ set-up
    @initialize(mode=st.sampled_from(sorted(MODES)))
    def start(self, mode: str) -> None:
        self.mode = mode
        fm, self.limit = MODES[mode]
        event(f"mode {mode}")
        self.pool = honeydew.Pool(F, [str(self.flag_dir)], num_workers=NUM_WORKERS, init_retry_secs=0.05,
                                  init_retry_max_secs=0.2, failure_mode=fm)

    @property
    def init_failing(self) -> bool:
        return (self.flag_dir / "fail-init").exists()

    def _new(self, kind: str) -> Job:
        self.step += 1
        job = Job("", kind, next(self.values), self.kills, self.qkills)
        job.step = self.step
        job.init_exposed = self.init_failing
        return job

    def _observe(self, job: Job, outcome: Any) -> None:
        job.outcome = outcome
        job.kills_seen, job.qkills_seen = self.kills, self.qkills
        job.init_exposed = job.init_exposed or self.init_fails > 0

    # ------------------------------------------------------------------ jobs
    @rule(kind=KINDS, nap=NAPS)
    def cast(self, kind: str, nap: float) -> None:
        assert self.pool is not None
        job = self._new(kind)
        job.id = self.pool.cast(F.chaos_task, str(self.runs_dir), kind, job.value, nap)
        self.casts.append(job)

    @rule(kind=KINDS, nap=NAPS)
    def submit(self, kind: str, nap: float) -> None:
        assert self.pool is not None
        job = self._new(kind)
        job.future = self.pool.submit(F.chaos_task, str(self.runs_dir), kind, job.value, nap)
        job.id = job.future.job_id
        self.jobs.append(job)

    @precondition(lambda self: not self.init_failing)
    @rule(kind=KINDS, nap=NAPS)
    def call(self, kind: str, nap: float) -> None:
        assert self.pool is not None
        job = self._new(kind)
        try:
            value = self.pool.options(timeout=WAIT).call(F.chaos_task, str(self.runs_dir), kind, job.value, nap)
            outcome: Any = ("ok", value)
        except TimeoutError:
            raise AssertionError(f"a call waited more than {WAIT}s (a hang)") from None
        except Exception as e:  # noqa: BLE001 - judged with the other outcomes at teardown
            outcome = ("exc", e)
        self._observe(job, outcome)
        self.jobs.append(job)

    @rule(n=st.integers(1, 4))
    def wait_for_some(self, n: int) -> None:
        """Wait for the oldest unresolved futures (keeps the backlog small)."""
        waiting = [j for j in self.jobs if j.future is not None and j.outcome is None][:n]
        if waiting and self.init_failing:
            return  # they may wait for init to recover; the teardown collects them
        for job in waiting:
            self._collect(job, WAIT)

    def _collect(self, job: Job, timeout: float) -> None:
        assert job.future is not None
        try:
            exc = job.future.exception(timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"job {job.name} ({job.kind}) unresolved after {timeout}s (a hang)") from None
        self._observe(job, ("exc", exc) if exc is not None else ("ok", job.future.result(0)))

    # ------------------------------------------------------------------ faults
    def _kill(self, name: str, slot: int | None = None) -> bool:
        """SIGKILL the process called ``name``.  For a worker or a monitor of ``slot``, then wait
        until the slot's replacement worker has started its init (it logs every attempt): by then
        the queue holds the news of the death ahead of anything this test sends next, so a later
        job is never charged to the dead worker.  (A killed queue needs no such fence: jobs sent
        before the caller heard of its restart are reported lost, naming the killed queue.)"""
        # Every process of the slot and every init attempt so far, taken BEFORE the targets: a
        # worker may die by itself (a crash job) and be replaced between two snapshots, and a
        # replacement seen here but not killed would never be followed by another init.
        seen: set[int] = set()
        if slot is not None:
            seen = F.init_pids(self.flag_dir, slot) | {p.pid for n in (f"hd-worker-{slot}", f"hd-monitor-{slot}")
                                                        for p in F.by_name(n)}
        targets = F.by_name(name)
        if not targets:
            event(f"kill {name.rsplit('-', 1)[0]}: none alive")
            return False
        its_workers = {p.pid for p in F.by_name(f"hd-worker-{slot}")} if name.startswith("hd-monitor") else set()
        self.kills += 1
        self.step += 1
        for p in targets:
            if name.startswith("hd-queue"):
                self.killed_queues.add(p.pid)
                self.queue_kill_steps.append(self.step)
            F.signal_pid(p.pid, signal.SIGKILL)
        # the kill has taken effect (a SIGKILLed process may take a moment to die on a loaded
        # machine; a monitor's worker dies with it): only then may the next step begin
        doomed = {p.pid for p in targets} | its_workers
        F.wait_until(lambda: all(_dead(pid) for pid in doomed), WAIT, what=f"{name} dead")
        if slot is not None:
            # (a worker killed just after its fork may log its init after `seen` was taken)
            killed = {p.pid for p in targets} | its_workers
            try:
                F.wait_until(lambda: F.init_pids(self.flag_dir, slot) - seen - killed, WAIT,
                             what=f"a replacement worker in slot {slot}")
            except AssertionError as e:
                now = {p.pid: F.process_name(p) for p in F.pool_processes()}
                raise AssertionError(f"{e}; init attempts of the slot {sorted(F.init_pids(self.flag_dir, slot))}, "
                                     f"seen before the kill {sorted(seen)}, killed {sorted(killed)}, "
                                     f"pool processes now {now}") from None
        return True

    @rule(slot=st.integers(0, NUM_WORKERS - 1))
    def kill_worker(self, slot: int) -> None:
        if self._kill(f"hd-worker-{slot}", slot):
            event("kill worker")

    @precondition(lambda self: self.monitor_kill_rules < MAX_MONITOR_KILLS)
    @rule(slot=st.integers(0, NUM_WORKERS - 1))
    def kill_monitor(self, slot: int) -> None:
        self.monitor_kill_rules += 1
        if self._kill(f"hd-monitor-{slot}", slot):
            event("kill monitor")

    @precondition(lambda self: self.queue_kill_rules < MAX_QUEUE_KILLS)
    @rule()
    def kill_queue(self) -> None:
        self.queue_kill_rules += 1
        self.qkills += 1  # counted first: the caller may report JobLost before we return
        if self._kill("hd-queue-0"):
            event("kill queue")
        else:
            self.qkills -= 1

    @precondition(lambda self: not self.init_failing)
    @rule(slot=st.integers(0, NUM_WORKERS - 1))
    def init_starts_failing(self, slot: int) -> None:
        """From now on every init raises; a worker is killed so that its replacement's init fails."""
        (self.flag_dir / "fail-init").touch()
        self.init_fails += 1
        if self._kill(f"hd-worker-{slot}", slot):
            event("init failure (worker killed, replacement's init raises)")

    @precondition(lambda self: self.init_failing)
    @rule()
    def init_recovers(self) -> None:
        (self.flag_dir / "fail-init").unlink()

    # ------------------------------------------------------------------ the verdict
    def teardown(self) -> None:
        try:
            if self.pool is not None:
                self._finish()
        finally:
            if self.pool is not None:
                self.pool.terminate()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _finish(self) -> None:
        pool = self.pool
        assert pool is not None
        (self.flag_dir / "fail-init").unlink(missing_ok=True)
        for job in self.jobs:
            if job.outcome is None:
                self._collect(job, WAIT)
        pool.close()
        try:
            pool.join(timeout=WAIT)
        except TimeoutError:
            raise AssertionError(f"close + join took more than {WAIT}s (a hang)") from None
        except honeydew.WorkerInitError:
            assert self.init_fails, "jobs dropped for a failing init, but init never failed"
            event("join: WorkerInitError (jobs dropped while no worker could start)")
        runs = F.runs_by_value(self.runs_dir)
        for job in self.jobs:
            self._check(job, runs.get(job.value, 0))
        for job in self.casts:
            self._check_cast(job, runs.get(job.value, 0))
        unknown = set(runs) - {j.value for j in self.jobs} - {j.value for j in self.casts}
        assert not unknown, f"runs of jobs nobody submitted: {unknown}"
        event(f"jobs per example: {_bucket(len(self.jobs) + len(self.casts))}")
        event(f"processes killed per example: {_bucket(self.kills)}")
        # nothing left behind
        assert F.pool_processes() == [], F.pool_processes()
        F.wait_until(lambda: F.zombie_children() == [], WAIT, what="no zombie children")
        self.pool = None
        del pool
        gc.collect()
        fds = F.fd_count()
        assert fds <= self.fd_start + FD_SLACK, f"descriptors: {self.fd_start} before the pool, {fds} after"

    def _check(self, job: Job, runs: int) -> None:
        kind, outcome = job.kind, job.outcome
        killed = job.kills_seen > job.kills_at_start          # some process was killed while it was pending
        queue_killed = job.qkills_seen > job.qkills_at_start
        assert runs <= self.limit, f"job {job.name} ({kind}) ran {runs} times; limit {self.limit} ({self.mode})"
        what, value = outcome
        if what == "ok":
            assert kind == "ok", f"job {job.name} ({kind}) returned {value!r}"
            assert value == job.value, f"job {job.name} returned {value!r}, not its own value {job.value}"
            assert runs >= 1
            if not killed:
                assert runs == 1, f"job {job.name} ran {runs} times with no fault"
            event("outcome: completed")
            return
        exc = value
        if isinstance(exc, honeydew.JobLost):
            # lost with a queue we killed: pending when it died, or sent into its socket before the
            # caller heard of the restart (so the kill may predate the job's acceptance)
            named = re.search(r"queue \d+ \(pid (\d+)\)", str(exc))
            assert named and int(named.group(1)) in self.killed_queues, \
                f"job {job.name} ({kind}) lost without a queue kill: {exc!r}"
            assert queue_killed or self.qkills > 0
            event("outcome: JobLost (queue killed)")
            return
        if isinstance(exc, ValueError) and type(exc) is ValueError:
            assert kind == "raise", f"job {job.name} ({kind}) raised {exc!r}"
            assert str(exc) == f"chaos {job.value}"
            assert runs >= 1
            event("outcome: the task's exception")
            return
        if isinstance(exc, honeydew.WorkerCrashed):
            assert kind == "crash" or killed, f"job {job.name} ({kind}) crashed with no kill: {exc!r}"
            event("outcome: WorkerCrashed")
            return
        if isinstance(exc, honeydew.WorkerInitError):
            assert job.init_exposed, f"job {job.name} ({kind}) dropped for init, which was not failing: {exc!r}"
            assert "init fails on purpose" in str(exc.__cause__)
            event("outcome: WorkerInitError")
            return
        raise AssertionError(f"job {job.name} ({kind}) ended with an unexpected {exc!r}")

    def _check_cast(self, job: Job, runs: int) -> None:
        assert runs <= self.limit, f"cast {job.name} ({job.kind}) ran {runs} times; limit {self.limit}"
        if self.kills > job.kills_at_start:
            return  # something was killed while it was pending (casts are pending until join)
        if self.init_fails:
            return  # init failed at some point: it may have been dropped before a worker came up again
        if not self._reached_a_live_queue(job):
            event("cast maybe sent to a killed queue")
            return
        if job.kind == "ok":
            assert runs == 1, f"cast {job.name} (ok) ran {runs} times with no fault"
        else:
            assert runs >= 1, f"cast {job.name} ({job.kind}) never ran"

    def _reached_a_live_queue(self, cast: Job) -> bool:
        """A cast sent after a queue kill but before the caller heard of the restart is lost without
        a word.  It surely reached the new queue if a call or submit accepted between the kill and
        the cast completed (the caller had resumed the new queue before sending it)."""
        completed = [j.step for j in self.jobs if j.outcome is not None and j.outcome[0] == "ok"]
        return all(any(k < s < cast.step for s in completed) for k in self.queue_kill_steps if k < cast.step)


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _bucket(n: int) -> str:
    return "0" if n == 0 else "1-2" if n < 3 else "3-9" if n < 10 else "10-19" if n < 20 else "20+"


ChaosPool.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example costs real processes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.mark.slow
@pytest.mark.timeout(3600)
class TestChaos(ChaosPool.TestCase):  # type: ignore[misc,valid-type]
    pass
