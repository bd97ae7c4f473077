"""Ctrl-C: SIGINT to the calling script's whole process group gives the script one
KeyboardInterrupt; pool processes ignore it, stop cleanly, print no tracebacks, leave no orphans.
A program that ends by that Ctrl-C stops its pools at once; one that caught it and ends normally
runs the jobs it sent first (as at any exit), and a second Ctrl-C stops them."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from support import integration_helpers as H

SCRIPT = """
import sys, time
import honeydew
from support import integration_helpers as H

method, handled, where = sys.argv[1], sys.argv[2] == "handled", sys.argv[3]
FLAG, RELEASE = "running.flag", "never.release"   # the job creates FLAG, then waits for RELEASE
pool = honeydew.Pool(num_workers=2, start_method=method)
assert pool.call(H.echo, 1) == 1
H.wait_until(lambda: len(H.pool_processes()) == 6, 20)
print("PIDS", " ".join(str(p.pid) for p in H.pool_processes()), flush=True)
try:
    if where == "call":
        with pool:
            print("READY", flush=True)
            pool.call(H.announce_then_wait, FLAG, RELEASE, 60)
    elif where == "map":
        with pool:
            print("READY", flush=True)
            list(pool.map(H.announce_then_wait, [FLAG] * 3, [RELEASE] * 3, [60] * 3, chunksize=1))
    elif where == "result":
        with pool:
            fut = pool.submit(H.announce_then_wait, FLAG, RELEASE, 60)
            print("READY", flush=True)
            fut.result()
    elif where == "join":
        with pool:
            pool.cast(H.announce_then_wait, FLAG, RELEASE, 60)
            print("READY", flush=True)
            # leaving the block joins: the interrupt lands inside join()
    elif where == "sleep":
        pool.cast(H.announce_then_wait, FLAG, RELEASE, 60)
        print("READY", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    print("CAUGHT KeyboardInterrupt", flush=True)
    if not handled:
        raise
print("EXITING", flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("handled", ["handled", "reraised"])
@pytest.mark.parametrize("method, where", [
    ("fork", "call"), ("spawn", "call"),
    ("fork", "map"),
    ("fork", "result"),
    ("fork", "join"), ("spawn", "join"),
    ("fork", "sleep"), ("spawn", "sleep"),
])
def test_ctrl_c_in_the_calling_script(tmp_path, method, handled, where):
    proc = H.start_script(tmp_path, SCRIPT, args=[method, handled, where], start_new_session=True)
    pids: list[int] = []
    try:
        try:
            pids = [int(x) for x in H.read_line_with(proc, "PIDS ", timeout=40).split()]
            H.read_line_with(proc, "READY", timeout=20)
        except AssertionError:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"the script failed; stderr:\n{err}") from None
        assert len(pids) == 6
        H.wait_until((tmp_path / "running.flag").exists, 10, what="the long job to start")
        os.killpg(proc.pid, signal.SIGINT)
        if where == "sleep" and handled == "handled":
            # the script caught it and ends normally: at exit the jobs it sent run to completion,
            # as ProcessPoolExecutor's do; a second Ctrl-C during that wait stops them at once
            H.read_line_with(proc, "EXITING", timeout=20)
            H.wait_until(lambda: _waits_in_poll(proc.pid), 20, what="the script's exit to wait for its job")
            os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the script did not exit after Ctrl-C; stderr:\n{err}") from None
        if not (where == "sleep" and handled == "handled"):  # (there, read above)
            assert out.count("CAUGHT KeyboardInterrupt") == 1, (out, err)
        tracebacks = err.count("Traceback")
        if handled == "handled":
            assert proc.returncode == 0, err
            assert "EXITING" in out or where == "sleep"   # (read above)
            assert tracebacks == 0, err
        else:
            assert proc.returncode != 0
            assert tracebacks == 1, err
            assert "KeyboardInterrupt" in err
        left = H.wait_gone(pids, 2.0)
        assert left == [], f"pool processes left after Ctrl-C: {left}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
        for pid in H.wait_gone(pids, 0):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _waits_in_poll(pid: int) -> bool:
    """Is the main thread of ``pid`` asleep in poll (where the pool waits at exit)?"""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "poll" in f.read()
    except OSError:
        return False
