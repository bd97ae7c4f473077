"""Protocol messages: unique tags and a lossless encode/decode round trip for every class."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from honeydew import protocol
from honeydew.errors import Failure
from honeydew.protocol import MESSAGES, decode, encode


def _message_classes() -> list[type[Any]]:
    return [obj for obj in vars(protocol).values()
            if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields") and hasattr(obj, "TAG")]


CLASSES = _message_classes()

failure_tuples = st.one_of(
    st.just(tuple(Failure.crash(-9, 12, "running job j"))),
    st.builds(lambda m: tuple(Failure.from_exception(ValueError(m))), st.text(max_size=20)),
)

BY_ANNOTATION: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(max_size=30),
    "bytes": st.binary(max_size=64),
    "int": st.integers(min_value=-(2**63), max_value=2**63),
    "bool": st.booleans(),
    "float": st.floats(allow_nan=False),
    "int | None": st.none() | st.integers(min_value=-255, max_value=255),
    "str | None": st.none() | st.text(max_size=10),
    "tuple[Any, ...]": failure_tuples,
    "tuple[str, ...]": st.lists(st.text(max_size=10), max_size=4).map(tuple),
    "Any": st.none() | st.integers() | st.booleans() | st.lists(st.text(max_size=5), max_size=3),
    "dict[str, Any]": st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=5),
}


def _annotation(cls: type[Any], field: str) -> str:
    ann = cls.__annotations__[field]
    return getattr(ann, "__forward_arg__", ann if isinstance(ann, str) else repr(ann))


def instances(cls: type[Any]) -> st.SearchStrategy[Any]:
    return st.builds(cls, **{f: BY_ANNOTATION[_annotation(cls, f)] for f in cls._fields})


def test_there_are_messages() -> None:
    assert len(CLASSES) >= 20


def test_tags_are_unique_and_registered() -> None:
    tags = [cls.TAG for cls in CLASSES]
    assert len(tags) == len(set(tags)), sorted(tags)
    assert set(MESSAGES) == set(tags)
    for cls in CLASSES:
        assert MESSAGES[cls.TAG] is cls
        assert isinstance(cls.TAG, int) and not isinstance(cls.TAG, bool)
        assert "TAG" not in cls._fields  # a class constant, not sent as a field


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_has_a_known_type(cls: type[Any]) -> None:
    for field in cls._fields:
        assert _annotation(cls, field) in BY_ANNOTATION, (cls.__name__, field)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_round_trip(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(instances(cls))
    raw = encode(msg)
    assert type(raw) is tuple  # plain tuple on the wire: no class lookup when unpickling
    assert raw[0] == cls.TAG
    assert raw[1:] == tuple(msg)
    wire = pickle.loads(pickle.dumps(raw, protocol=5))
    back = decode(wire)
    assert type(back) is cls
    assert back == msg


def test_failure_survives_inside_a_message() -> None:
    f = Failure.from_exception(KeyError("k"))
    back = decode(pickle.loads(pickle.dumps(encode(protocol.JobFailed("j1", tuple(f))))))
    assert Failure._make(back.failure) == f


def test_docstring_table_lists_every_message() -> None:
    """The module docstring's table says who writes and reads each message: it must list them all."""
    table = {line.split()[0] for line in (protocol.__doc__ or "").splitlines() if line.strip()}
    missing = sorted(cls.__name__ for cls in CLASSES if cls.__name__ not in table)
    assert not missing, f"not in honeydew.protocol's table: {missing}"


# --- the hot path's wire forms, built without a message object ------------------------------------

@pytest.mark.parametrize("wire, record", [
    (protocol.enqueue_wire("j1", b"payload", "origin", 2.5), protocol.Enqueue("j1", b"payload", "origin", 2.5, 0.0, 0)),
    (protocol.enqueue_wire("j1", b"p", "", 0.0, 1e9, -3), protocol.Enqueue("j1", b"p", "", 0.0, 1e9, -3)),
    (protocol.dispatch_wire("j1", b"payload", "", 3, 0.0), protocol.Dispatch("j1", b"payload", "", 3, 0.0)),
    (protocol.done_wire("j1", True), protocol.Done("j1", True)),
    (protocol.result_wire("j1", b"value"), protocol.Result("j1", b"value")),
    (protocol.partial_wire("j1", b"items"), protocol.Partial("j1", b"items")),
], ids=lambda v: type(v).__name__)
def test_each_wire_form_decodes_to_its_message(wire: tuple[Any, ...], record: Any) -> None:
    assert wire == encode(record)
    assert decode(wire) == record
    assert type(decode(wire)) is type(record)


def test_the_payload_and_the_failure_record_round_trip() -> None:
    call = protocol.read_payload(protocol.call_payload("task", (1, 2), {"k": 3}))
    assert call == protocol.CallJob("task", (1, 2), {"k": 3})
    mapped = protocol.read_payload(protocol.map_payload("task", [(1,), (2,)], True))
    assert isinstance(mapped, protocol.MapJob) and list(mapped.items) == [(1,), (2,)] and mapped.star
    failure = Failure.crash(-9, 12, "running job j")
    assert protocol.read_failure(protocol.failure_record(failure)) == failure
    with pytest.raises(ValueError, match="not a honeydew job payload"):
        protocol.read_payload(("something", "else"))
