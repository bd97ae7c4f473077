"""Issue #2, no orphans: when the calling process is SIGKILLed, every pool process is gone within
2 s, however the pool was started (fork, spawn, from a thread that exited, with busy threads)."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from support import integration_helpers as H

CALLER = """
import logging, os, sys, threading, time
import honeydew
from support import integration_helpers as H

variant = sys.argv[1]
logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))


def busy():
    log = logging.getLogger("busy")
    junk = []
    while True:          # allocate, log, take locks: what makes fork-after-threads dangerous
        junk.append(bytearray(1024))
        if len(junk) > 1000:
            junk.clear()
        log.info("busy %d", len(junk))


if variant == "fork":
    pool = honeydew.Pool(num_workers=2, start_method="fork")
elif variant == "spawn":
    pool = honeydew.Pool(num_workers=2, start_method="spawn")
elif variant in ("thread-auto", "thread-fork"):
    box = []
    method = "auto" if variant == "thread-auto" else "fork"
    t = threading.Thread(target=lambda: box.append(honeydew.Pool(num_workers=2, start_method=method)))
    t.start()
    t.join()
    pool = box[0]
elif variant == "busy":
    for _ in range(3):
        threading.Thread(target=busy, daemon=True).start()
    pool = honeydew.Pool(num_workers=2)
elif variant == "midcall":
    pool = honeydew.Pool(num_workers=2, start_method="fork")
else:
    raise SystemExit(f"unknown variant {variant}")

assert pool.call(H.echo, 1) == 1
H.wait_until(lambda: len(H.by_name("hd-worker-0") + H.by_name("hd-worker-1")) == 2, 20)
H.wait_until(lambda: len(H.pool_processes()) == 6, 20)
print("METHOD", pool.start_method, flush=True)
print("PIDS", " ".join(str(p.pid) for p in H.pool_processes()), flush=True)
if variant == "midcall":
    pool.submit(H.nap, 600)
    pool.call(H.nap, 600)
time.sleep(600)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant, method", [
    ("fork", "fork"),
    ("spawn", "spawn"),
    ("thread-auto", "spawn"),
    ("thread-fork", "fork"),
    ("busy", "spawn"),
    ("midcall", "fork"),
])
def test_killing_the_caller_leaves_no_pool_process(tmp_path, variant, method):
    proc = H.start_script(tmp_path, CALLER, args=[variant])
    pids: list[int] = []
    try:
        try:
            assert H.read_line_with(proc, "METHOD ", timeout=40) == method
            pids = [int(x) for x in H.read_line_with(proc, "PIDS ", timeout=10).split()]
        except AssertionError:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"the caller script failed; stderr:\n{err}") from None
        assert len(pids) == 6
        names = sorted(psutil.Process(pid).name() for pid in pids)
        assert names == ["hd-monitor-0", "hd-monitor-1", "hd-queue-0", "hd-supervisor", "hd-worker-0",
                         "hd-worker-1"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        left = H.wait_gone(pids, 2.0)
        assert left == [], f"pool processes outlived their caller by 2 s: {_describe(left)}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
        for pid in H.wait_gone(pids, 0):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out.append(f"{pid} {p.name()} ({p.status()})")
        except psutil.Error:
            continue
    return ", ".join(out)
