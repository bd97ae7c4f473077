"""Dispatchers (LRU, MRU): which idle worker gets the next job.  Properties against a credit model."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from honeydew.dispatchers import LRU, MRU, Dispatcher

KINDS = [pytest.param(LRU, id="LRU"), pytest.param(MRU, id="MRU")]
FAST = settings(max_examples=100, deadline=None)

workers = st.integers(min_value=0, max_value=5)
# a history of operations: ("in", worker, credits) | ("out",) | ("remove", worker)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("in"), workers, st.integers(min_value=1, max_value=4)),
        st.tuples(st.just("out")),
        st.tuples(st.just("remove"), workers),
    ),
    max_size=60,
)


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(history=ops)
def test_credits_are_conserved(kind: type[Dispatcher], history: list[tuple]) -> None:
    d = kind()
    model: Counter[int] = Counter()
    for op in history:
        if op[0] == "in":
            d.check_in(op[1], op[2])
            model[op[1]] += op[2]
        elif op[0] == "out":
            got = d.check_out()
            if sum(model.values()) == 0:
                assert got is None
            else:
                assert got is not None, "check_out returned None while a worker holds credit"
                assert model[got] > 0, f"check_out returned worker {got}, which holds no credit"
                model[got] -= 1
        else:
            assert d.remove(op[1]) == model[op[1]]
            model[op[1]] = 0
        assert len(d) == sum(model.values())
        for w in range(6):
            assert d.credits(w) == model[w]


@pytest.mark.parametrize("kind", KINDS)
def test_empty(kind: type[Dispatcher]) -> None:
    d = kind()
    assert d.check_out() is None
    assert len(d) == 0
    assert d.credits(3) == 0
    assert d.remove(3) == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("credits", [0, -1, -10])
def test_credits_below_one_rejected(kind: type[Dispatcher], credits: int) -> None:
    d = kind()
    with pytest.raises(ValueError):
        d.check_in(1, credits)
    assert len(d) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_remove_drops_every_credit_of_that_worker_only(kind: type[Dispatcher]) -> None:
    d = kind()
    d.check_in(1, 3)
    d.check_in(2)
    d.check_in(1)
    assert d.remove(1) == 4
    assert d.credits(1) == 0
    assert len(d) == 1
    assert d.check_out() == 2
    assert d.check_out() is None


@FAST
@given(n=st.integers(min_value=1, max_value=8), rounds=st.integers(min_value=1, max_value=5))
def test_lru_round_robins_among_equal_workers(n: int, rounds: int) -> None:
    """Each worker checks in one credit; a worker that got a job checks back in when done (a job
    takes the same time everywhere): every worker gets a job before any gets a second."""
    d = LRU()
    for w in range(n):
        d.check_in(w)
    seen = []
    for _ in range(n * rounds):
        w = d.check_out()
        seen.append(w)
        d.check_in(w)
    for r in range(rounds):
        assert sorted(seen[r * n:(r + 1) * n]) == list(range(n))


@FAST
@given(n=st.integers(min_value=2, max_value=6), prefetch=st.integers(min_value=2, max_value=4))
def test_lru_spreads_over_idle_workers_with_prefetch(n: int, prefetch: int) -> None:
    """With ``prefetch > 1`` each worker checks in ``prefetch`` credits at once (``Credit(count)``).
    LRU must still spread the first ``n`` jobs over the ``n`` idle workers ("jobs spread evenly over
    the idle workers"; "a job never waits behind a busy worker while another is idle"), not hand all
    of one worker's credits out before the next worker's."""
    d = LRU()
    for w in range(n):
        d.check_in(w, prefetch)
    first = [d.check_out() for _ in range(n)]
    assert sorted(first) == list(range(n)), f"{n} idle workers with {prefetch} credits each got jobs {first}"


@FAST
@given(order=st.permutations(list(range(6))))
def test_mru_returns_the_most_recent(order: list[int]) -> None:
    d = MRU()
    for w in order:
        d.check_in(w)
    assert d.check_out() == order[-1]
    # a worker that comes back is again the most recent, and stays the warmest while it has credit
    d.check_in(order[0])
    assert d.check_out() == order[0]
    assert [d.check_out() for _ in range(len(order) - 1)] == [order[0]] + list(reversed(order[1:-1]))


def test_mru_keeps_the_warm_worker_busy() -> None:
    d = MRU()
    for w in range(4):
        d.check_in(w)
    for _ in range(10):
        w = d.check_out()
        assert w == 3
        d.check_in(w)


@FAST
@given(order=st.permutations(list(range(6))))
def test_lru_returns_the_least_recent(order: list[int]) -> None:
    d = LRU()
    for w in order:
        d.check_in(w)
    assert [d.check_out() for _ in order] == order


class DispatcherMachine(RuleBasedStateMachine):
    """Credits as a multiset; check_out only ever names a worker with credit."""

    kind: type[Dispatcher] = LRU

    def __init__(self) -> None:
        super().__init__()
        self.d = self.kind()
        self.model: Counter[int] = Counter()

    @rule(w=workers, n=st.integers(min_value=1, max_value=3))
    def check_in(self, w: int, n: int) -> None:
        self.d.check_in(w, n)
        self.model[w] += n

    @rule()
    def check_out(self) -> None:
        got = self.d.check_out()
        if not +self.model:
            assert got is None
        else:
            assert got is not None and self.model[got] > 0
            self.model[got] -= 1

    @rule(w=workers)
    def remove(self, w: int) -> None:
        assert self.d.remove(w) == self.model.pop(w, 0)

    @invariant()
    def totals(self) -> None:
        assert len(self.d) == sum(self.model.values())


@pytest.mark.parametrize("kind", KINDS)
def test_dispatcher_machine(kind: type[Dispatcher]) -> None:
    machine = type(f"{kind.__name__}Machine", (DispatcherMachine,), {"kind": kind})
    run_state_machine_as_test(machine, settings=settings(max_examples=30, stateful_step_count=30, deadline=None))
