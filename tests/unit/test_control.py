"""The control server without pool processes: request handling (``control.handle``) with stand-in
pools, the registry and the server thread in this process (a stand-in registered, asked through its
socket, unregistered, collected, forked over), and ``fork_hazard``'s view of the server thread."""

from __future__ import annotations

import gc
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.common import wait_until

from honeydew import _threads, control
from honeydew.failed import FailedRecord


class FakePool:
    """The public job-control methods of a pool, recording the calls."""

    def __init__(self, name: str = "fake", broken: str = "") -> None:
        self.name = name
        self.broken = broken
        self.calls: list[tuple[Any, ...]] = []

    def __repr__(self) -> str:
        return f"<FakePool {self.name}>"

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        if self.broken:
            raise RuntimeError(self.broken)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        self._called("status", timeout)
        return {"queues": [{"index": 0, "backend": "Memory()", "pending": 2}], "workers": [], "suspended": False}

    def failed(self, limit: int = 100, timeout: float = 5.0) -> list[FailedRecord]:
        self._called("failed", limit)
        return [FailedRecord("j-1", "mod.task", "(1)", "builtins.ValueError: no", "tb", 2, 1000.0)][:limit]

    def retry_failed(self, ids: list[str] | None = None, timeout: float = 5.0) -> int:
        self._called("retry_failed", ids)
        return 1 if ids is None else len(ids)

    def purge_failed(self, ids: list[str] | None = None, timeout: float = 5.0) -> int:
        self._called("purge_failed", ids)
        return 3

    def suspend(self, timeout: float = 5.0) -> None:
        self._called("suspend")

    def resume(self, timeout: float = 5.0) -> None:
        self._called("resume")


# --- handle(): one request, answered, never raised ------------------------------------------------

@pytest.mark.parametrize("request_, says", [
    ([], "a request is a JSON object"),
    ({"op": "shutdown"}, "unknown op 'shutdown'"),
    ({"op": "status", "pool": "0"}, "pool must be"),
    ({"op": "status", "pool": True}, "pool must be"),
    ({"op": "retry_failed", "ids": "abc"}, "ids must be a list"),
    ({"op": "retry_failed", "ids": [1]}, "ids must be a list"),
    ({"op": "failed", "limit": -1}, "limit must be"),
    ({"op": "status", "timeout": 0}, "timeout must be"),
    ({"op": "status", "timeout": 1e9}, "timeout must be"),
])
def test_a_malformed_request_is_answered_as_an_error(request_: Any, says: str) -> None:
    pool = FakePool()
    answer = control.handle(request_, lambda: [(0, pool)])
    assert answer["ok"] is False and says in answer["error"]
    assert pool.calls == []


def test_every_pool_answers_unless_one_is_chosen() -> None:
    a, b = FakePool("a"), FakePool("b")
    pools = lambda: [(0, a), (3, b)]  # noqa: E731
    answer = control.handle({"op": "suspend"}, pools)
    assert answer == {"ok": True, "value": [{"pool": 0, "repr": "<FakePool a>", "ok": True, "value": None},
                                            {"pool": 3, "repr": "<FakePool b>", "ok": True, "value": None}]}
    answer = control.handle({"op": "retry_failed", "pool": 3, "ids": ["x", "y"]}, pools)
    assert [e["value"] for e in answer["value"]] == [2]
    assert b.calls[-1] == ("retry_failed", ["x", "y"]) and a.calls == [("suspend",)]
    missing = control.handle({"op": "status", "pool": 1}, pools)
    assert missing["ok"] is False and "has no pool 1 (its pools: 0, 3)" in missing["error"]


def test_each_op_calls_the_public_method_and_answers_json() -> None:
    pool = FakePool()
    for op, value in [("status", {"queues": [{"index": 0, "backend": "Memory()", "pending": 2}], "workers": [],
                                  "suspended": False}),
                      ("failed", [{"id": "j-1", "task": "mod.task", "args": "(1)", "error": "builtins.ValueError: no",
                                   "traceback": "tb", "deliveries": 2, "failed_at": 1000.0}]),
                      ("retry_failed", 1), ("purge_failed", 3), ("resume", None),
                      ("pools", {"pid": os.getpid(), "backend": "Memory()"})]:
        answer = control.handle({"op": op}, lambda: [(0, pool)])
        assert json.loads(json.dumps(answer)) == answer
        assert answer["value"][0]["value"] == value, op
    assert control.handle({"op": "failed", "limit": 0}, lambda: [(0, pool)])["value"][0]["value"] == []


def test_a_pool_that_raises_is_an_error_entry_and_the_others_still_answer() -> None:
    good, bad = FakePool("good"), FakePool("bad", broken="the pool is closed")
    answer = control.handle({"op": "status"}, lambda: [(0, bad), (1, good)])
    assert answer["ok"] is True
    assert answer["value"][0] == {"pool": 0, "repr": "<FakePool bad>", "ok": False,
                                  "error": "RuntimeError: the pool is closed"}
    assert answer["value"][1]["ok"] is True


def test_no_pool_and_a_registry_that_raises_are_errors() -> None:
    assert control.handle({"op": "status"}, lambda: [])["ok"] is False

    def broken() -> list[tuple[int, Any]]:
        raise OSError("boom")

    answer = control.handle({"op": "status"}, broken)
    assert answer == {"ok": False, "error": "the request failed: OSError: boom"}


# --- the server in this process -------------------------------------------------------------------

@pytest.fixture
def served() -> Iterator[FakePool]:
    """A stand-in pool registered in this process (unregistered after the test)."""
    pool = FakePool("served")
    control.register(pool)
    try:
        yield pool
    finally:
        control.unregister(pool)


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "honeydew-control"]


@pytest.mark.timeout(30)
def test_a_registered_pool_is_served_on_a_private_socket_until_unregistered(served: FakePool) -> None:
    control.register(served)  # idempotent
    assert control.registered().count(served) == 1
    path = control.address()
    assert path is not None and path.endswith(f"/{os.getpid()}.sock")
    assert control.find_socket(os.getpid()) == (path, path[:-5] + ".key")
    directory = os.path.dirname(path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700 and os.stat(directory).st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(path[:-5] + ".key").st_mode) == 0o600
    answer = control.ask(os.getpid(), {"op": "resume"}, timeout=5.0)
    assert answer["ok"] and answer["value"][0]["repr"] == "<FakePool served>"
    assert served.calls == [("resume",)]
    assert os.getpid() in control.live_pids()
    control.unregister(served)
    control.unregister(served)  # idempotent
    assert control.address() is None and not os.path.exists(path) and not os.path.exists(path[:-5] + ".key")
    wait_until(lambda: not _server_threads(), 10, what="the server thread to end")
    with pytest.raises(control.ControlError, match=f"process {os.getpid()} holds no honeydew pool"):
        control.ask(os.getpid(), {"op": "status"})


@pytest.mark.timeout(30)
def test_a_collected_pool_leaves_the_registry_and_the_last_one_stops_the_server() -> None:
    pool: FakePool | None = FakePool("dropped")
    control.register(pool)
    path = control.address()
    assert path is not None and os.path.exists(path)
    del pool
    gc.collect()
    assert control.registered() == [] and control.address() is None
    assert not os.path.exists(path)
    wait_until(lambda: not _server_threads(), 10, what="the server thread to end")


@pytest.mark.timeout(30)
def test_a_new_registration_after_the_last_one_serves_again(served: FakePool) -> None:
    first = control.address()
    control.unregister(served)
    control.register(served)
    assert control.address() == first and first is not None and os.path.exists(first)
    assert control.ask(os.getpid(), {"op": "suspend"})["ok"]


@pytest.mark.timeout(30)
def test_the_server_thread_does_not_make_forking_unsafe_and_a_child_inherits_nothing(served: FakePool) -> None:
    (server,) = _server_threads()
    assert server.native_id in _threads.fork_safe_tids
    assert "honeydew-control" not in _threads.fork_hazard()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no registry, no server, the parent's files untouched
        try:
            os.close(r)
            seen = {"registered": len(control.registered()), "address": control.address(),
                    "threads": [t.name for t in _server_threads()]}
            os.write(w, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        seen = json.loads(f.read())
    os.waitpid(pid, 0)
    assert seen == {"registered": 0, "address": None, "threads": []}
    assert control.ask(os.getpid(), {"op": "status"})["ok"]  # the parent's server goes on


def test_fork_hazard_does_not_count_a_fork_safe_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="quiet-one")
    t.start()
    try:
        assert t.native_id is not None
        monkeypatch.setattr(_threads, "fork_safe_tids", {})
        monkeypatch.setattr(_threads.threading, "enumerate", lambda: [threading.current_thread(), t])
        monkeypatch.setattr(_threads.os, "listdir", lambda path: [str(threading.get_native_id()), str(t.native_id)])
        assert "quiet-one" in _threads.fork_hazard()
        _threads.fork_safe_tids[t.native_id] = time.monotonic()
        assert _threads.fork_hazard() == ""
        # gone from /proc/self/task: forgotten (a thread marked after the look is not)
        monkeypatch.setattr(_threads.os, "listdir", lambda path: [str(threading.get_native_id())])
        _threads.fork_safe_tids[-1] = time.monotonic() + 3600
        _threads.fork_hazard()
        assert list(_threads.fork_safe_tids) == [-1]
    finally:
        stop.set()
        t.join()


def test_a_directory_of_another_mode_is_made_private_and_a_symlink_is_refused(tmp_path: Any) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert control._private(str(loose), create=False) is False
    assert control._private(str(loose), create=True) is True
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(loose)
    assert control._private(str(link), create=True) is False
    fresh = tmp_path / "fresh"
    assert control._private(str(fresh), create=True) is True
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


@pytest.mark.timeout(30)
def test_shutdown_removes_the_files_and_no_server_starts_again() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # (in a child: shutdown is for good in its process)
        try:
            os.close(r)
            pool, later = FakePool("a"), FakePool("b")
            control.register(pool)
            path = control.address()
            control.shutdown()
            control.register(later)
            seen = {"had": bool(path), "exists": bool(path and os.path.exists(path)), "address": control.address(),
                    "registered": len(control.registered())}
            os.write(w, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        seen = json.loads(f.read())
    os.waitpid(pid, 0)
    assert seen == {"had": True, "exists": False, "address": None, "registered": 2}
