"""Seqpacket framing (:mod:`honeydew._wire`) over real socket pairs, in one process."""

from __future__ import annotations

import math
import pickle
import random
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from honeydew._wire import CHUNK, FIRST, LAST, Endpoint, Outbox, pack, socketpair
from honeydew.protocol import Credit, Done, Hello, Result, Settled, StopWorker, encode

TIMEOUT = 20.0


@pytest.fixture
def pair() -> Iterator[tuple[Endpoint, Endpoint]]:
    a, b = socketpair()
    yield Endpoint(a), Endpoint(b)
    a.close()
    b.close()


def recv_n(ep: Endpoint, n: int, timeout: float = TIMEOUT) -> list[Any]:
    """Read until ``n`` messages arrived (non-blocking reads, polled with a deadline)."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"got {len(out)} of {n} messages")
        ready, _, _ = select.select([ep], [], [], left)
        if ready:
            out.extend(ep.recv(block=False))
    return out


def assert_nothing_more(ep: Endpoint) -> None:
    assert ep.recv(block=False) == []


def send_raw(ep: Endpoint, header: int, data: bytes) -> None:
    ep.sock.sendmsg([bytes([header]), data])


class Sender(threading.Thread):
    """Sends frames from another thread (a frame may be bigger than the socket buffer)."""

    def __init__(self, ep: Endpoint, frames: list[list[Any]]) -> None:
        super().__init__(daemon=True)
        self.ep = ep
        self.frames = frames
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for frame in self.frames:
                self.ep.send(*frame)
        except BaseException as e:  # reported by finish()
            self.error = e

    def finish(self) -> None:
        self.join(TIMEOUT)
        assert not self.is_alive(), "sender still blocked"
        assert self.error is None, repr(self.error)


def frame_len(msgs: list[Any]) -> int:
    return len(pickle.dumps([encode(m) for m in msgs], protocol=5))


def result_with_frame_of(n: int) -> Result:
    """A Result whose frame is exactly ``n`` bytes long."""
    size = max(0, n - frame_len([Result("j", b"")]))
    for _ in range(10):
        got = frame_len([Result("j", b"x" * size)])
        if got == n:
            return Result("j", b"x" * size)
        size += n - got
    raise AssertionError(f"cannot make a frame of {n} bytes")


# --------------------------------------------------------------------------- basics


def test_several_messages_travel_in_one_frame(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    msgs = [Result("j1", b"payload"), Done("j2", True), StopWorker(), Credit(3, 12, 2), Hello(7), Settled(4)]
    assert len(pack(msgs)) == 1
    a.send(*msgs)
    got = b.recv()
    assert got == msgs
    assert [type(m) for m in got] == [type(m) for m in msgs]
    assert_nothing_more(b)


def test_several_frames_in_order(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    a.send(Done("1", True))
    a.send(Done("2", True), Done("3", True))
    a.send(Credit(0, 5, 2))
    assert recv_n(b, 4) == [Done("1", True), Done("2", True), Done("3", True), Credit(0, 5, 2)]


def test_both_directions(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    a.send(Done("a->b", True))
    b.send(Done("b->a", True))
    assert b.recv() == [Done("a->b", True)]
    assert a.recv() == [Done("b->a", True)]


def test_nonblocking_recv_on_empty_socket(pair: tuple[Endpoint, Endpoint]) -> None:
    _, b = pair
    assert b.recv(block=False) == []


def test_fileno(pair: tuple[Endpoint, Endpoint]) -> None:
    a, _ = pair
    assert a.fileno() == a.sock.fileno()


# --------------------------------------------------------------------------- big frames


def test_pack_splits_big_frames() -> None:
    msg = Result("big", random.Random(1).randbytes(3 * CHUNK + 100))
    frame = pickle.dumps([encode(msg)], protocol=5)
    packets = pack([msg])
    assert len(packets) == math.ceil(len(frame) / CHUNK)
    heads = [p[0][0] for p in packets]
    assert heads[0] == FIRST and heads[-1] == LAST and all(h == 0 for h in heads[1:-1])
    assert all(len(p[1]) <= CHUNK for p in packets)
    assert b"".join(bytes(p[1]) for p in packets) == frame


@pytest.mark.parametrize("n", [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 3 * CHUNK])
def test_frame_sizes_at_chunk_boundaries(pair: tuple[Endpoint, Endpoint], n: int) -> None:
    a, b = pair
    if n < frame_len([Result("j", b"")]):
        msg = Result("j", b"")
    else:
        msg = result_with_frame_of(n)
        assert frame_len([msg]) == n
        assert len(pack([msg])) == math.ceil(n / CHUNK)
    sender = Sender(a, [[msg], [Done("after", True)]])
    sender.start()
    assert recv_n(b, 2) == [msg, Done("after", True)]
    sender.finish()


def test_five_megabyte_result_reassembles(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    value = random.Random(5).randbytes(5 * 1024 * 1024)
    frames = [[Done("before", True)], [Result("big", value), Done("same frame", True)], [Done("after", True)]]
    sender = Sender(a, frames)
    sender.start()
    got = recv_n(b, 4)
    sender.finish()
    assert [type(m) for m in got] == [Done, Result, Done, Done]
    assert got[1].job_id == "big" and got[1].value == value
    assert got[2:] == [Done("same frame", True), Done("after", True)]


def test_blocking_recv_waits_for_the_whole_frame(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    value = random.Random(7).randbytes(2 * 1024 * 1024)
    sender = Sender(a, [[Result("big", value)]])
    sender.start()
    got: list[Any] = []
    deadline = time.monotonic() + TIMEOUT
    while not got and time.monotonic() < deadline:
        got = b.recv(block=True)
    sender.finish()
    assert got == [Result("big", value)]


# --------------------------------------------------------------------------- resync


def test_first_packet_without_the_rest_is_dropped(pair: tuple[Endpoint, Endpoint]) -> None:
    """A writer killed after the first packet of a frame: the next whole frame is read, the partial dropped."""
    a, b = pair
    send_raw(a, FIRST, b"half a pickle")
    a.send(Done("whole", True))
    assert recv_n(b, 1) == [Done("whole", True)]
    assert_nothing_more(b)


def test_partial_frame_then_new_multi_packet_frame(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    big = Result("big", random.Random(3).randbytes(2 * CHUNK))
    packets = pack([big])
    for p in packets[:-1]:  # all but the last packet of a frame: the writer died there
        a.sock.sendmsg(p)
    sender = Sender(a, [[Result("next", big.value)], [Done("x", True)]])
    sender.start()
    assert recv_n(b, 2) == [Result("next", big.value), Done("x", True)]
    sender.finish()


def test_partial_frame_dropped_while_reading_nonblocking(pair: tuple[Endpoint, Endpoint]) -> None:
    """The reader has started reassembling (non-blocking read mid-frame) when the writer dies."""
    a, b = pair
    send_raw(a, FIRST, b"a")
    send_raw(a, 0, b"b")
    assert b.recv(block=False) == []  # mid-frame: nothing complete yet
    a.send(Done("whole", True))
    assert recv_n(b, 1) == [Done("whole", True)]


def test_orphan_continuations_are_dropped(pair: tuple[Endpoint, Endpoint]) -> None:
    """A reader that died mid-frame: its successor sees continuation packets with no first one."""
    a, b = pair
    send_raw(a, 0, b"middle")
    send_raw(a, LAST, b"last")
    a.send(Done("1", True))
    send_raw(a, LAST, b"another orphan")
    a.send(Done("2", True))
    assert recv_n(b, 2) == [Done("1", True), Done("2", True)]
    assert_nothing_more(b)


def test_reader_resumes_after_losing_the_head_of_a_frame(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    packets = pack([Result("big", bytes(3 * CHUNK))])
    for p in packets[1:]:  # the first packet was read by a reader that then died
        a.sock.sendmsg(p)
    a.send(Done("ok", True))
    assert recv_n(b, 1) == [Done("ok", True)]


# --------------------------------------------------------------------------- end of file


def test_eof(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    a.sock.close()
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv(block=False)


def test_messages_before_eof_are_delivered(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    a.send(Done("1", True))
    a.send(Done("2", True))
    a.sock.close()
    assert b.recv() == [Done("1", True), Done("2", True)]
    with pytest.raises(EOFError):
        b.recv()


def test_send_to_a_closed_peer(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    b.sock.close()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        a.send(Done("x", True))


# --------------------------------------------------------------------------- Outbox


def test_outbox_sends_in_order(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    out = Outbox(a)
    assert not out
    assert out.flush() is True
    for i in range(5):
        out.put(Done(str(i), True))
    assert out
    assert out.flush() is True
    assert not out
    assert recv_n(b, 5) == [Done(str(i), True) for i in range(5)]


def test_outbox_never_blocks_and_completes_after_the_reader_drains(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    out = Outbox(a)
    value = bytes(100 * 1024)
    sent: list[Any] = []
    # fill the peer's buffer without reading: flush must return False, never block
    for batch in range(1000):
        for i in range(8):
            msg = Result(f"{batch}-{i}", value)
            out.put(msg)
            sent.append(msg)
        if out.flush() is False:
            break
    else:
        pytest.fail("the socket buffer never filled")
    assert out
    assert out.flush() is False  # still full: nobody read
    # more messages queue up behind the stuck frame
    for i in range(3):
        out.put(Done(f"late-{i}", True))
        sent.append(Done(f"late-{i}", True))
    # the reader drains; the writer flushes whenever the socket is writable
    got: list[Any] = []
    done = False
    deadline = time.monotonic() + TIMEOUT
    while (not done or len(got) < len(sent)) and time.monotonic() < deadline:
        got.extend(b.recv(block=False))
        if not done:
            done = out.flush()
        else:
            select.select([b], [], [], 0.5)
    assert done and not out
    assert len(got) == len(sent)
    assert [m.job_id for m in got] == [m.job_id for m in sent]
    assert got == sent


def test_outbox_to_a_closed_peer(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    b.sock.close()
    out = Outbox(a)
    out.put(Done("x", True))
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        out.flush()


# --------------------------------------------------------------------------- properties

job_ids = st.text(max_size=40)
values = st.one_of(
    st.binary(max_size=300),
    # big values, cheaply: a size (around the chunk boundaries) and a seed
    st.builds(lambda n, seed: random.Random(seed).randbytes(n), st.integers(0, 3 * CHUNK), st.integers(0, 9)),
)
results = st.builds(Result, job_id=job_ids, value=values)
frames = st.lists(st.lists(results, min_size=1, max_size=5), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(frames=frames)
def test_messages_round_trip(frames: list[list[Result]]) -> None:
    a, b = socketpair()
    try:
        ea, eb = Endpoint(a), Endpoint(b)
        sender = Sender(ea, frames)
        sender.start()
        expected = [m for f in frames for m in f]
        got = recv_n(eb, len(expected))
        sender.finish()
        assert got == expected
        assert eb.recv(block=False) == []
    finally:
        a.close()
        b.close()


@settings(max_examples=60, deadline=None)
@given(msgs=st.lists(results, min_size=1, max_size=5))
def test_pack_is_the_frame(msgs: list[Result]) -> None:
    frame = pickle.dumps([encode(m) for m in msgs], protocol=5)
    packets = pack(msgs)
    assert b"".join(bytes(p[1]) for p in packets) == frame
    assert len(packets) == max(1, math.ceil(len(frame) / CHUNK))
    if len(packets) == 1:
        assert packets[0][0][0] == FIRST | LAST
    else:
        assert [p[0][0] for p in packets] == [FIRST] + [0] * (len(packets) - 2) + [LAST]
