"""One job through the worker's job path (``worker._run_one``), without processes: the payload
read, the result and the failure records, and progress held back to the job's end."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import honeydew
from honeydew import protocol, worker
from honeydew.errors import Failure, SerializationError, to_exception
from honeydew.protocol import Dispatch
from honeydew.tasks import make_spec

TOKEN = "this-pool"
SPEC = make_spec(None, None)


def _halve(x: int) -> float:
    if x == 3:
        raise ValueError("three is odd")
    return x / 2


def _add(a: int, b: int, *, c: int = 0) -> int:
    return a + b + c


def _two_reports() -> str:
    honeydew.progress(0.25, "a quarter")
    honeydew.progress(0.5, "half")  # (within 0.1 s of the first as a rule: held back until the job ends)
    return "done"


def _job(payload: Any, origin: str = TOKEN) -> Dispatch:
    return Dispatch("job-1", pickle.dumps(payload, protocol=5), origin, 1, 0.0)


def _run(payload: Any, origin: str = TOKEN) -> tuple[Failure | None, bytes | None]:
    return worker._run_one(_job(payload, origin), SPEC, None, TOKEN, 0)


def _ref(fn: Any) -> bytes:
    return pickle.dumps(fn, protocol=5)


def test_a_call_returns_its_pickled_result() -> None:
    failure, blob = _run(protocol.call_payload(_ref(_add), (1, 2), {"c": 4}))
    assert failure is None and blob is not None and pickle.loads(blob) == 7


def test_a_cast_returns_no_result() -> None:
    assert _run(protocol.call_payload(_ref(_add), (1, 2), {}), origin="") == (None, None)


def test_a_map_chunk_with_a_failing_item_is_failed_and_carries_every_outcome() -> None:
    failure, blob = _run(protocol.map_payload(_ref(_halve), [2, 3, 4], False))
    assert failure is not None and failure.partial and failure.type_name == "builtins.ValueError"
    assert blob is not None
    values, errors = pickle.loads(blob)
    assert values == [1.0, None, 2.0] and list(errors) == [1]
    star_failure, star_blob = _run(protocol.map_payload(_ref(_add), [(1, 2), (3, 4)], True))
    assert star_failure is None and star_blob is not None and pickle.loads(star_blob) == ([3, 7], {})


@pytest.mark.parametrize("payload", [("not", "a", "payload"), (7, "task", (), {}), ["a", "list"], None])
def test_what_is_no_job_payload_fails_the_job_as_bad_arguments(payload: Any) -> None:
    failure, blob = _run(payload)
    assert blob is None and failure is not None and failure.kind == Failure.BAD_ARGUMENTS
    assert "job-1 could not be unpickled in the worker" in failure.message
    assert "not a honeydew job payload" in failure.message
    assert isinstance(to_exception(failure), SerializationError)


class _Reply:
    """Stands for the worker's reply socket: what ``honeydew.progress`` sends to the caller."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)


def test_progress_held_back_goes_out_at_the_end_and_the_next_job_starts_afresh() -> None:
    reply = _Reply()
    honeydew.context._progress_sink, worker._PROGRESS.reply = worker._PROGRESS, reply  # as worker._loop sets them
    try:
        for _ in range(2):
            reply.sent.clear()
            failure, blob = _run(protocol.call_payload(_ref(_two_reports), (), {}))
            assert failure is None and blob is not None and pickle.loads(blob) == "done"
            # the first report went at once (a job's first is never held back by the job before);
            # the last one always arrives, when the job ends
            assert reply.sent[0] == protocol.Progress("job-1", 0.25, "a quarter")
            assert reply.sent[-1] == protocol.Progress("job-1", 0.5, "half")
            assert worker._PROGRESS.job_id == "" and worker._PROGRESS.held is None
        reply.sent.clear()
        _run(protocol.call_payload(_ref(_two_reports), (), {}), origin="another-pool")
        assert reply.sent == []  # a job of another pool's caller reports to nobody here
    finally:
        honeydew.context._progress_sink, worker._PROGRESS.reply = None, None
