"""Issue #2: what workers print and log reaches the user, and log records name the pool process
(queue, monitor N, worker N) that wrote them."""

from __future__ import annotations

import pytest
from support import integration_helpers as H

PRINT_SCRIPT = """
import sys
import honeydew
from support import integration_helpers as H

with honeydew.Pool(num_workers=1, start_method=sys.argv[1]) as pool:
    pid = pool.call(H.print_and_return, "hello-from-call")
    pool.cast(H.print_and_return, "hello-from-cast")
    list(pool.map(H.print_and_return, ["hello-from-map"]))
print("CALLER-DONE", pid, flush=True)
"""

LOG_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="REC|%(processName)s|%(name)s|%(levelname)s|%(message)s")
import honeydew
from support import integration_helpers as H

with honeydew.Pool(num_workers=1, start_method=sys.argv[1], init_retry_secs=0.05) as pool:
    pool.call(H.log_and_return, "worker-says-hi")
    try:
        pool.call(H.always_crash, ".")
    except honeydew.WorkerCrashed:
        pass
    pool.call(H.log_and_return, "after-crash")
logging.getLogger("caller").info("caller-done")
"""


def _records(err: str) -> list[list[str]]:
    return [line.split("|", 4)[1:] for line in err.splitlines() if line.startswith("REC|")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_prints_reach_the_callers_stdout_and_stderr(tmp_path, method):
    proc = H.run_script(tmp_path, PRINT_SCRIPT, timeout=40, args=[method])
    assert proc.returncode == 0, proc.stderr
    for what in ("call", "cast", "map"):
        assert f"hello-from-{what}\n" in proc.stdout, (proc.stdout, proc.stderr)
        assert f"hello-from-{what}-err\n" in proc.stderr, (proc.stdout, proc.stderr)
    assert "CALLER-DONE" in proc.stdout
    # the worker's output came before the caller's last line: nothing lost at join
    assert proc.stdout.index("hello-from-cast") < proc.stdout.index("CALLER-DONE")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_log_records_name_the_process(tmp_path, method):
    proc = H.run_script(tmp_path, LOG_SCRIPT, timeout=40, args=[method])
    assert proc.returncode == 0, proc.stderr
    recs = _records(proc.stderr)
    by_message = {r[3]: r for r in recs}
    assert "worker-says-hi" in by_message, proc.stderr
    assert by_message["worker-says-hi"][0] == "hd-worker-0"
    assert by_message["worker-says-hi"][1] == "integration.worker"
    assert by_message["after-crash"][0] == "hd-worker-0"
    assert by_message["caller-done"][0] == "MainProcess"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_process_log_records_name_monitor_and_queue(tmp_path, method):
    """The crash is logged by the monitor (worker replaced) and by the queue (job given up)."""
    proc = H.run_script(tmp_path, LOG_SCRIPT, timeout=40, args=[method])
    assert proc.returncode == 0, proc.stderr
    writers = {r[0] for r in _records(proc.stderr)}
    assert "hd-monitor-0" in writers, proc.stderr
    assert "hd-queue-0" in writers, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


QUIET_SCRIPT = """
import sys
import honeydew
from support import integration_helpers as H

with honeydew.Pool(num_workers=2, start_method=sys.argv[1]) as pool:
    assert pool.call(H.echo, 1) == 1
    assert list(pool.map(H.echo, range(10))) == list(range(10))
print("OK", flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_healthy_pool_writes_nothing_to_stderr(tmp_path, method):
    """Nothing went wrong, so the user's stderr stays empty (no warnings from starting the pool)."""
    proc = H.run_script(tmp_path, QUIET_SCRIPT, timeout=40, args=[method])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "OK\n"
    assert proc.stderr == ""
