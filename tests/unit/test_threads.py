"""When forking the caller is safe (``_threads.fork_hazard``): every kind of thread told apart
without starting any process (the real cases, numpy's OpenBLAS and a Python thread, run in
tests/integration/test_main_tasks.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from honeydew import _threads

extra: list[threading.Thread] = []   # Python threads the fixture reports besides this one


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend this process runs ``n`` native threads beside the main one, with ``pools`` mapped."""

    def set_up(n: int, pools: dict[bytes, str], blas_threads: int = 0, layer: str = "pthreads") -> None:
        monkeypatch.setattr(_threads.os, "listdir", lambda path: ["1"] * (n + 1))
        monkeypatch.setattr(_threads, "loaded_pools", lambda: pools)
        # (other tests may leave daemon threads of their own pools running a moment longer)
        monkeypatch.setattr(_threads.threading, "enumerate", lambda: [threading.current_thread(), *extra])

        class FakeBLAS:
            def __init__(self, path: str) -> None:
                pass

            def threading_layer(self) -> str:
                return layer

            def num_threads(self) -> int:
                return blas_threads

        monkeypatch.setattr(_threads, "_OpenBLAS", FakeBLAS)

    return set_up


def test_a_single_thread_is_safe(native: Any) -> None:
    native(0, {})
    assert _threads.fork_hazard() == ""


def test_openblas_pthreads_pool_is_safe(native: Any) -> None:
    native(3, {b"libscipy_openblas": "/x/libscipy_openblas64_.so"}, blas_threads=4)
    assert _threads.fork_hazard() == ""


def test_more_native_threads_than_openblas_accounts_for(native: Any) -> None:
    native(3, {b"libopenblas": "/x/libopenblas.so"}, blas_threads=2)
    assert "3 native thread(s)" in _threads.fork_hazard()


def test_openblas_on_openmp_does_not_count_as_fork_safe(native: Any) -> None:
    native(1, {b"libopenblas": "/x/libopenblas.so"}, blas_threads=2, layer="openmp")
    assert "native thread" in _threads.fork_hazard()


def test_gnu_openmp_is_a_hazard(native: Any) -> None:
    native(1, {b"libgomp": "/x/libgomp.so.1", b"libopenblas": "/x/libopenblas.so"}, blas_threads=8)
    assert "libgomp" in _threads.fork_hazard()


@pytest.mark.parametrize("lib", [b"libmkl_rt", b"libiomp", b"libomp"])
def test_runtimes_with_their_own_fork_handlers_are_safe(native: Any, lib: bytes) -> None:
    native(5, {lib: "/x/lib.so"})
    assert _threads.fork_hazard() == ""


def test_unknown_native_threads_are_a_hazard(native: Any) -> None:
    native(1, {})
    assert "native thread" in _threads.fork_hazard()


def test_another_python_thread_is_a_hazard(native: Any) -> None:
    native(1, {b"libopenblas": "/x/libopenblas.so"}, blas_threads=8)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="someone-else")
    t.start()
    extra.append(t)
    try:
        assert "someone-else" in _threads.fork_hazard()
    finally:
        extra.clear()
        stop.set()
        t.join()
