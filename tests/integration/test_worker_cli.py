"""``honeydew worker``: a worker node from the command line, on the real broker (skips without
RabbitMQ, fails under ``CI=true``).  The worker module is ``support.rabbit``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import integration_helpers as H
from support import rabbit as R

import honeydew
from honeydew.failure_modes import Abandon, Move, Requeue, Retry
from honeydew.worker_node import UsageError, failure_mode

T = 30.0

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def name() -> Iterator[str]:
    R.require()
    queue = R.unique_name("hdcli")
    yield queue
    R.delete_queues(queue)


def start_worker(name: str, *extra: str, key: str = R.KEY) -> subprocess.Popen[str]:
    env = H.script_env()
    env["HONEYDEW_SIGNING_KEY"] = key
    proc = subprocess.Popen([sys.executable, "-m", "honeydew", "worker", "support.rabbit", "--queue", R.URL,
                             "--name", name, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    H.read_line_with(proc, "honeydew worker: serving", timeout=T)
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=T)
    return proc.returncode, out, err


def test_the_failure_mode_spec() -> None:
    assert failure_mode("abandon") == Abandon() and failure_mode("move") == Move()
    requeue = failure_mode("requeue:4+move")
    assert isinstance(requeue, Requeue) and requeue.max_deliveries == 4 and requeue.then == Move()
    retry = failure_mode("retry:2:0.5")
    assert isinstance(retry, Retry) and (retry.times, retry.backoff) == (2, 0.5)
    with pytest.raises(UsageError, match="not a failure mode"):
        failure_mode("sometimes")


def test_a_worker_node_serves_a_producer_and_warm_stops_on_sigterm(name: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    started = Path(f"{out}.started")
    node = start_worker(name, "--workers", "2", "--failure-mode", "requeue:3")
    try:
        with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
            assert producer.options(timeout=T).call(R.echo, "via the cli") == "via the cli"
            for i in range(4):
                producer.cast(R.slow_record, str(out), f"w{i}", 1.5)
        H.wait_until(lambda: started.exists() and len(started.read_text().split()) >= 2, T,
                     what="the node to start two jobs")
        node.send_signal(signal.SIGTERM)  # warm: the two running jobs finish; the other two stay on the broker
        code, stdout, stderr = finish_warm(node)
        assert code == -signal.SIGTERM, stderr
        assert len(R.runs(out)) == 2
        assert R.ready_count(name) == 2
        assert "guest" not in stdout + stderr
    finally:
        finish(node)
    other = start_worker(name, "--workers", "2")
    try:
        H.wait_until(lambda: len(R.runs(out)) >= 4, T, what="the two jobs left to run on another node")
    finally:
        finish(other)
    assert sorted(R.runs(out)) == ["w0", "w1", "w2", "w3"]


def finish_warm(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=T)
    return proc.returncode, out, err


def test_usage_errors_say_what_to_do(name: str) -> None:
    env = H.script_env()
    env.pop("HONEYDEW_SIGNING_KEY", None)
    done = subprocess.run([sys.executable, "-m", "honeydew", "worker", "support.rabbit", "--queue", R.URL,
                           "--name", name], capture_output=True, text=True, env=env, timeout=T)
    assert done.returncode == 2 and "HONEYDEW_SIGNING_KEY" in done.stderr
    env["HONEYDEW_SIGNING_KEY"] = R.KEY
    done = subprocess.run([sys.executable, "-m", "honeydew", "worker", "no_such_module_here", "--queue", R.URL,
                           "--name", name], capture_output=True, text=True, env=env, timeout=T)
    assert done.returncode == 2 and "cannot import" in done.stderr and "e.g." in done.stderr
