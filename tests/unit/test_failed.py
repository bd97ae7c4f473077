"""The failed store's records, as ``pool.failed()`` and the command line show them."""

from __future__ import annotations

import importlib
import pickle
import sys
import time
from pathlib import Path

from honeydew.errors import Failure
from honeydew.failed import describe
from honeydew.protocol import call_payload, failure_record, map_payload
from honeydew.queues import FailedJob


def _kept(payload: bytes, failure: Failure, deliveries: int = 2) -> FailedJob:
    return FailedJob("job-1", payload, "", 0.0, failure_record(failure), deliveries, time.time())


def test_a_registered_tasks_record_names_it_and_shows_its_arguments_and_error() -> None:
    try:
        raise KeyError("bucket/key")
    except KeyError as e:
        failure = Failure.from_exception(e)
    record = describe(_kept(pickle.dumps(call_payload("get", ("bucket", "x" * 500), {"timeout": 5})), failure))
    assert record.task == "get" and record.id == "job-1" and record.deliveries == 2
    assert record.args.startswith("('bucket', 'xxx") and "timeout=5" in record.args and len(record.args) < 200
    assert record.error == "builtins.KeyError: 'bucket/key'" and "raise KeyError" in record.traceback


def test_a_map_chunk_shows_its_items() -> None:
    record = describe(_kept(pickle.dumps(map_payload("crunch", [(1,), (2,)], False)),
                            Failure.crash(-9, 123, "running job job-1")))
    assert record.task == "crunch" and record.args.startswith("map over [(1,), (2,)]")
    assert record.traceback == ""


def test_a_function_whose_module_is_not_importable_here_is_named_from_its_pickle(tmp_path: Path) -> None:
    (tmp_path / "elsewhere_mod.py").write_text("def the_task(x):\n    return x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        ref = pickle.dumps(importlib.import_module("elsewhere_mod").the_task)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("elsewhere_mod", None)
    record = describe(_kept(pickle.dumps(call_payload(ref, (1,), {})), Failure.from_exception(ValueError("x"))))
    assert record.task == "elsewhere_mod.the_task" and record.args == "(1)"


def test_a_payload_that_cannot_be_decoded_is_described_not_raised() -> None:
    record = describe(_kept(b"not a pickle", Failure.from_exception(ValueError("x"))))
    assert record.task == "<cannot be decoded here>" and record.args.startswith("<")
