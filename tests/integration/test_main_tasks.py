"""Tasks, globals and exceptions defined in the calling script (``__main__``), as a new user writes
them: code and captured globals reach each worker once, not with every job; what a worker sees when
the script rebinds a global; ``except MyError`` catches ``MyError`` in fork and spawn mode alike."""

from __future__ import annotations

import json

import pytest
from support import integration_helpers as H

pytestmark = pytest.mark.timeout(120)

GLOBALS_SCRIPT = """
import json, os, sys
import honeydew

BIG = bytearray(3_000_000)          # a global the task reads: a loaded model, a big array
SMALL = "before"

def f(i):
    return len(BIG) + i

def g():
    return SMALL

if __name__ == "__main__":
    out = {}
    with honeydew.Pool(num_workers=2, start_method=sys.argv[1]) as pool:
        SMALL = "after"                 # rebound once the pool runs
        out["calls"] = [pool.call(f, i) for i in range(10)]
        out["map"] = sum(pool.map(f, range(200)))
        out["g"] = pool.call(g)
        def late():                     # defined after the pool started
            return SMALL
        out["late"] = pool.call(late)
        ref = pool._encoder.callable_ref(f)
        out["ref"] = [type(ref).__name__, len(ref) if isinstance(ref, bytes) else None]
        out["spool"] = sorted(os.listdir(pool._spool)) if os.path.isdir(pool._spool) else []
        out["method"] = pool.start_method
    out["spool_after"] = os.path.exists(pool._spool)
    print(json.dumps(out))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_script_task_with_a_big_global_travels_once(tmp_path, method):
    """A forked pool's workers already have every function the script defined before the pool
    started: it goes by reference (a few bytes), with the globals as they were when the pool started,
    as with multiprocessing's fork.  A spawned pool's workers do not: the function goes by value once,
    through the spool, and each worker keeps it; the queue never carries it."""
    proc = H.run_script(tmp_path, GLOBALS_SCRIPT, args=[method])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["method"] == method
    assert out["calls"] == [3_000_000 + i for i in range(10)]
    assert out["map"] == sum(3_000_000 + i for i in range(200))
    assert out["late"] == "after"  # a function the workers lack is captured when first sent
    if method == "fork":
        assert out["g"] == "before", "a forked worker sees the script as it was when the pool started"
        assert out["ref"][0] == "bytes" and out["ref"][1] < 100, out["ref"]  # __main__.f, by reference
        assert out["spool"] == []
    else:
        assert out["g"] == "after", "a spawned pool captures a function when it is first sent"
        assert out["ref"][0] == "Shipped", out["ref"]
        assert out["spool"] == ["code-1"], "f and its 3 MB global were written once, for 210 jobs"
    assert out["spool_after"] is False, "the spool directory outlived the pool"


ERRORS_SCRIPT = """
import json, sys
import honeydew
import errmod

class MyError(Exception):
    pass

def raise_main():
    raise MyError("custom")

def make_closure():
    class LocalError(Exception):
        pass
    def raise_local():
        raise LocalError("local")
    return LocalError, raise_local

if __name__ == "__main__":
    first = sys.argv[1]
    out = {}
    for method in (first, {"fork": "spawn", "spawn": "fork"}[first]):  # both orders of pool creation
        with honeydew.Pool(num_workers=1, start_method=method) as pool:
            class LateError(Exception):             # a __main__ class defined after the pool started
                pass
            def raise_late():
                raise LateError("late")
            LocalError, raise_local = make_closure()
            for name, fn, cls in [("main", raise_main, MyError), ("late", raise_late, LateError),
                                  ("closure", raise_local, LocalError), ("module", errmod.raise_it, errmod.ModError)]:
                try:
                    pool.call(fn)
                    out[f"{method}-{name}"] = "no exception"
                except cls as e:
                    out[f"{method}-{name}"] = f"caught {type(e).__name__}: {e}; cause {type(e.__cause__).__name__}"
                except BaseException as e:
                    out[f"{method}-{name}"] = f"missed {type(e).__module__}.{type(e).__qualname__}: {e}"
            exc = pool.submit(raise_main).exception(timeout=30)
            out[f"{method}-future"] = type(exc) is MyError
    print(json.dumps(out))
"""

ERRMOD = """
class ModError(Exception):
    pass

def raise_it():
    raise ModError("module")
"""


@pytest.mark.parametrize("first", ["fork", "spawn"])
def test_except_my_error_catches_my_error(tmp_path, first):
    """The caller gets the task's own exception class, whatever the start method, whatever the order
    the pools were made in, for classes defined in ``__main__`` (before or after the pool started),
    in closures and in modules; the remote traceback hangs on ``__cause__``."""
    (tmp_path / "errmod.py").write_text(ERRMOD)
    proc = H.run_script(tmp_path, ERRORS_SCRIPT, args=[first])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {"main": "MyError: custom", "late": "LateError: late", "closure": "LocalError: local",
                "module": "ModError: module"}
    for method in ("fork", "spawn"):
        for name, what in expected.items():
            assert out[f"{method}-{name}"] == f"caught {what}; cause RemoteTraceback", (method, name, out)
        assert out[f"{method}-future"] is True


NUMPY_SCRIPT = """
import json, os, sys, threading
import numpy
import honeydew

def blas(n):
    a = numpy.ones((n, n))
    return float((a @ a)[0, 0])

if __name__ == "__main__":
    out = {"threads": len(os.listdir("/proc/self/task"))}
    with honeydew.Pool(num_workers=2) as pool:
        out.update(method=pool.start_method, reason=pool.spawn_reason, blas=pool.call(blas, 100),
                   status_reason=pool.status()["spawn_reason"])
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="user-thread")
    t.start()
    with honeydew.Pool(num_workers=1) as pool:
        out.update(thread_method=pool.start_method, thread_reason=pool.spawn_reason)
    stop.set()
    t.join()
    print(json.dumps(out))
"""


def test_numpy_imported_the_pool_still_forks(tmp_path):
    """OpenBLAS's thread pool (started when numpy is imported) resets itself across a fork, so it
    does not make the pool spawn its supervisor; a Python thread does, and status() says why."""
    pytest.importorskip("numpy")
    proc = H.run_script(tmp_path, NUMPY_SCRIPT, env={"OPENBLAS_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["threads"] >= 2, "numpy's OpenBLAS started its threads at import"
    assert (out["method"], out["reason"], out["status_reason"]) == ("fork", "", ""), out
    assert out["blas"] == 100.0
    assert out["thread_method"] == "spawn" and "user-thread" in out["thread_reason"], out
