"""Processes the user did not expect: a pool used from a process other than the one that made it,
and a pool made while a pool process imports the user's code (a module-level pool in a module the
workers import would otherwise start a whole pool in every worker)."""

from __future__ import annotations

import json

import pytest
from support import integration_helpers as H

pytestmark = pytest.mark.timeout(120)

FOREIGN_SCRIPT = """
import json, os, sys
import honeydew

POOL = honeydew.Pool(num_workers=1)     # a module-level pool, as scripts have them

def use_the_module_pool(x):
    return POOL.call(abs, x)

if __name__ == "__main__":
    out = {}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                         # a forked child uses the parent's pool
        try:
            POOL.call(abs, -1)
            msg = "no error"
        except honeydew.HoneydewError as e:
            msg = f"{type(e).__name__}: {e}"
        os.write(w, msg.encode())
        os._exit(0)
    os.waitpid(pid, 0)
    out["child"] = os.read(r, 4096).decode()
    out["parent"] = POOL.call(abs, -2)
    with honeydew.Pool(num_workers=1) as other:   # a task of another pool reaches the module-level one
        try:
            other.call(use_the_module_pool, -3)
            out["task"] = "no error"
        except honeydew.HoneydewError as e:
            out["task"] = f"{type(e).__name__}: {e}"
    with POOL:
        pid = os.fork()
        if pid == 0:
            sys.exit(0)                   # leaves the inherited with-block (and runs atexit) in the child
        _, status = os.waitpid(pid, 0)
        out["child_exit"] = os.waitstatus_to_exitcode(status)
        out["after_child"] = POOL.call(abs, -4)
    print(json.dumps(out))
"""


def test_a_pool_used_outside_the_process_that_made_it_raises_at_once(tmp_path):
    proc = H.run_script(tmp_path, FOREIGN_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for where in ("child", "task"):
        assert out[where].startswith("HoneydewError: this pool was made by process "), out
        assert "inherited a copy of it when it was forked" in out[where]
    assert "Bad file descriptor" not in proc.stderr
    assert out["parent"] == 2 and out["after_child"] == 4, "the owner's pool was not disturbed"
    assert out["child_exit"] == 0, "a forked child leaving the inherited with-block exits quietly"


NESTED_MODULE = """
import honeydew

POOL = honeydew.Pool(num_workers=1)      # at the top level, without the __main__ guard

def work(x):
    return x * 2
"""

NESTED_SCRIPT = """
import json, sys
import honeydew
from support import integration_helpers as H

method = sys.argv[1]
out = {}
with honeydew.Pool(num_workers=1, start_method=method) as pool:
    if method == "spawn":
        import nested                    # made its own pool here, in the caller: that is allowed
    else:
        import nested                    # imported after the fork: the forked workers lack it
    try:
        out["result"] = pool.call(nested.work, 21)
    except honeydew.SerializationError as e:
        out["error"] = str(e)
    out["supervisors"] = len(H.by_name("hd-supervisor"))
    out["next"] = pool.call(abs, -5)
nested.POOL.close()
nested.POOL.join()
print(json.dumps(out))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_pool_made_while_a_worker_imports_a_module_is_refused(tmp_path, method):
    """The worker that imports ``nested`` to decode the job would make a pool of its own: it is
    refused with an error that names the module and the guard, the job fails with it, no nested
    tree is started, and the worker goes on serving."""
    (tmp_path / "nested.py").write_text(NESTED_MODULE)
    proc = H.run_script(tmp_path, NESTED_SCRIPT, args=[method])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "result" not in out, out
    assert "honeydew.Pool() was called at the top level of module 'nested' while hd-worker-0" in out["error"]
    assert 'if __name__ == "__main__":' in out["error"]
    assert out["supervisors"] == 2, "two pools (the script's and nested's), not a third one inside a worker"
    assert out["next"] == 5


SELF_POOL_MODULE = """
import os
import honeydew

def init():
    return "state"

@honeydew.task
def ping(state):
    return "pong"

if os.environ.get("MAKE_POOL_AT_IMPORT"):
    POOL = honeydew.Pool(num_workers=1)   # a pool made when the worker module is imported
"""

BOOT_SCRIPT = """
import os, sys
import honeydew
import selfpool                           # (no pool made here: the variable is not set yet)

os.environ["MAKE_POOL_AT_IMPORT"] = "1"  # the spawned supervisor inherits it and imports selfpool
with honeydew.Pool(selfpool, num_workers=1, start_method="spawn") as pool:
    try:
        pool.options(timeout=60).call("ping")
        print("RESULT no error")
    except honeydew.PoolClosed as e:
        print("RESULT", e)
"""


def test_a_spawned_supervisor_that_cannot_start_says_why(tmp_path):
    (tmp_path / "selfpool.py").write_text(SELF_POOL_MODULE)
    proc = H.run_script(tmp_path, BOOT_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    assert "its supervisor could not start" in line, line
    assert "module 'selfpool'" in line and "the pool's supervisor" in line, line
    assert "the pool's supervisor cannot start" in proc.stderr  # logged with its traceback
    assert H.pool_processes() == []
