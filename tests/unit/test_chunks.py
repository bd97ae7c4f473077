"""pool.map's default chunking: mp.Pool.map's chunk size for the first three quarters of the
items, then guided chunks that shrink towards the end (so workers finish together)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from honeydew.pool import _chunks


@given(n=st.integers(0, 50_000), workers=st.integers(0, 64), chunksize=st.none() | st.integers(1, 10_000))
def test_chunks_cover_the_items_once_in_order(n, workers, chunksize):
    chunks = _chunks(n, workers, chunksize)
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(chunks[:-1], chunks[1:], strict=True))  # contiguous
    assert ((chunks[0][0], chunks[-1][1]) == (0, n)) if n else chunks == []
    assert all(b > a for a, b in chunks)
    if chunksize is not None:
        assert all(b - a == chunksize for a, b in chunks[:-1])


@given(n=st.integers(1, 1_000_000), workers=st.integers(1, 64))
def test_default_chunks_start_at_mp_size_shrink_and_stay_few(n, workers):
    chunks = _chunks(n, workers, None)
    sizes = [b - a for a, b in chunks]
    big = math.ceil(n / (4 * workers))
    assert sizes[0] == min(big, n) or n < 4 * workers
    assert all(x >= y for x, y in zip(sizes[:-1], sizes[1:], strict=True))  # they only shrink
    assert max(sizes) <= big
    # mp.Pool.map makes about 4 * workers chunks; the guided tail adds a few dozen at most
    assert len(chunks) <= 4 * workers + 2 + 2 * workers * math.log(64 * 4 * workers) + 64


def test_cpu_batch_tail_ends_in_single_items():
    sizes = [b - a for a, b in _chunks(400, 2, None)]
    assert sizes[:6] == [50] * 6 and sizes[-1] == 1 and sum(sizes) == 400
