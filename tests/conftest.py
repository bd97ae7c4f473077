"""The test kit's watchdog, shared by every suite.

* pytest-timeout (``timeout`` in pyproject.toml; ``@pytest.mark.timeout(N)`` per test) fails a test
  that hangs, after dumping this process's stacks.
* After every test, :func:`no_leftover_processes` asks any pool process still alive to dump its
  stacks (SIGUSR1, faulthandler), kills it, and fails the test: a test that leaves a process (or an
  unreaped zombie) behind has found a bug.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def _children() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(autouse=True)
def no_leftover_processes(request):  # type: ignore[no-untyped-def]
    before = {p.pid for p in _children()}
    yield
    if request.node.get_closest_marker("allow_leftovers"):
        return
    deadline = time.monotonic() + 3.0
    left: list[psutil.Process] = []
    while time.monotonic() < deadline:
        left = [p for p in _children() if p.pid not in before]
        if not left:
            return
        time.sleep(0.05)
    desc = []
    for p in left:
        try:
            desc.append(f"{p.pid} {p.name()} ({p.status()})")
        except psutil.Error:
            continue
    for p in left:
        if _alive(p):
            try:
                p.send_signal(signal.SIGUSR1)  # pool processes dump their stacks
            except psutil.Error:
                pass
    time.sleep(0.3)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    # reap our own zombies so later tests start clean
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    failed = getattr(request.node, "rep_call", None)
    if desc and not (failed is not None and failed.failed):
        pytest.fail(f"processes left behind by the test: {', '.join(desc)}")
