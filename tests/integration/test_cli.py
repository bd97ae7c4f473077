"""The operator's command line against real processes: ``python -m honeydew ...`` reaching a running
program's pools through its control socket (``--pid``), or a durable queue file (``--sqlite``); its
errors, exit codes and output; the socket's files and who may use them."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import AuthenticationError, Client
from pathlib import Path
from typing import Any

import pytest
from support import integration_helpers as H

import honeydew
from honeydew import control

T = 30.0

PROGRAM = """
import os, sys
import honeydew
from honeydew import control
from support import integration_helpers as H


def fail(message, *_state):
    raise ValueError(message)


if __name__ == "__main__":
    pools = [honeydew.Pool(num_workers=1, failure_mode=honeydew.Move()) for _ in range(int(sys.argv[1]))]
    assert all(p in control.registered() for p in pools)  # a pool registers itself
    for pool in pools:
        try:
            pool.call(fail, "on purpose")
        except ValueError:
            pass
    print("PID", os.getpid(), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "cast":
            print("CAST", pools[0].cast(H.touch, arg), flush=True)
        elif command == "join":
            for pool in pools:
                pool.close()
                pool.join()
            assert not control.registered()  # and join() unregisters it
            print("JOINED", control.address(), flush=True)
        elif command == "exit":
            break
"""


class Program:
    """The program above, running: ``pid``; ``send`` a line to it."""

    def __init__(self, tmp_path: Path, pools: int = 1) -> None:
        self.proc = H.start_script(tmp_path, PROGRAM, args=[str(pools)], stdin=subprocess.PIPE)
        self.pid = int(H.read_line_with(self.proc, "PID", T))

    def send(self, line: str, answer: str = "") -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return H.read_line_with(self.proc, answer, T) if answer else ""

    def end(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
                self.proc.wait(T)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(T)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Program]:
    p = Program(tmp_path)
    try:
        yield p
    finally:
        p.end()


def hd(*args: Any, timeout: float = T) -> subprocess.CompletedProcess[str]:
    """``python -m honeydew ARGS``, its output captured."""
    return subprocess.run([sys.executable, "-m", "honeydew", *map(str, args)], capture_output=True, text=True,
                          env=H.script_env(), timeout=timeout)


def hd_json(*args: Any) -> dict[str, Any]:
    proc = hd(*args, "--json")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def short_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The error of a command that failed as it should: its exit code, one or two lines, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


# --- what it shows and does ------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_status_as_a_table_and_as_json(program: Program) -> None:
    def serving() -> bool:  # (the supervisor's view of the slot may lag the job it served)
        return [w["state"] for w in hd_json("status", "--pid", program.pid)["results"][0]["value"]["workers"]] == [
            "serving"]

    H.wait_until(serving, T, what="the worker to be serving")
    proc = hd("status", "--pid", program.pid)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("pool 0  <honeydew.Pool")
    assert "suspended: no" in lines[1] and "Memory()" in lines[1]
    queue_head = next(i for i, line in enumerate(lines) if line.startswith("QUEUE"))
    assert lines[queue_head].split() == ["QUEUE", "PID", "STATE", "PENDING", "DELAYED", "RUNNING", "DONE", "FAILED",
                                         "SUSPENDED"]
    assert lines[queue_head + 1].split()[2:] == ["running", "0", "0", "0", "0", "1", "no"]
    assert lines[queue_head + 2].startswith("WORKER") and lines[queue_head + 3].split()[2] == "serving"
    out = hd_json("status", "--pid", program.pid)
    assert out["ok"] is True and out["target"] == {"pid": program.pid} and out["op"] == "status"
    (entry,) = out["results"]
    st = entry["value"]
    assert entry["pool"] == 0 and entry["ok"] is True
    assert st["queues"][0]["failed"] == 1 and st["suspended"] is False
    assert [w["state"] for w in st["workers"]] == ["serving"]
    assert str(st["queues"][0]["pid"]) == lines[queue_head + 1].split()[1]


@pytest.mark.timeout(60)
def test_failed_list_retry_and_purge(program: Program) -> None:
    proc = hd("failed", "list", "--pid", program.pid)
    assert proc.returncode == 0, proc.stderr
    head, row = proc.stdout.splitlines()
    assert head.split() == ["ID", "TASK", "ERROR", "DELIVERIES", "AGE"]
    (record,) = hd_json("failed", "list", "--pid", program.pid)["results"][0]["value"]
    assert record["task"] == "__main__.fail" and record["error"].endswith("ValueError: on purpose")
    assert "raise ValueError(message)" in record["traceback"] and record["deliveries"] == 1
    assert row.split()[:2] == [record["id"], "__main__.fail"] and "ValueError: on purpose" in row

    # retried: it runs again, fails again, and is kept again
    proc = hd("failed", "retry", "--pid", program.pid, record["id"])
    assert (proc.returncode, proc.stdout.strip()) == (0, "retried 1 failed job(s)"), proc.stderr
    H.wait_until(lambda: hd_json("failed", "list", "--pid", program.pid)["results"][0]["value"], T,
                 what="the retried job to fail again")

    # ids that are not kept: exit 1, and says so
    proc = hd("failed", "retry", "--pid", program.pid, "no-such-job")
    assert "1 of the 1 given job id(s) are not in the failed store" in short_error(proc, 1)
    out = json.loads(hd("failed", "purge", "--pid", program.pid, "no-such-job", "--json").stdout)
    assert out["ok"] is False and out["count"] == 0

    proc = hd("failed", "purge", "--pid", program.pid)
    assert (proc.returncode, proc.stdout.strip()) == (0, "purged 1 failed job(s)"), proc.stderr
    proc = hd("failed", "list", "--pid", program.pid)
    assert (proc.returncode, proc.stdout.strip()) == (0, "no failed jobs")


@pytest.mark.timeout(60)
def test_a_job_sent_while_suspended_waits_for_resume(program: Program, tmp_path: Path) -> None:
    proc = hd("suspend", "--pid", program.pid)
    assert proc.returncode == 0 and proc.stdout.startswith("suspended: pool 0"), proc.stderr
    assert hd_json("status", "--pid", program.pid)["results"][0]["value"]["suspended"] is True
    ran = tmp_path / "ran"
    program.send(f"cast {ran}", "CAST")

    def queued() -> bool:
        return hd_json("status", "--pid", program.pid)["results"][0]["value"]["queues"][0]["pending"] == 1

    H.wait_until(queued, T, what="the cast to wait in the queue")
    assert not ran.exists()
    proc = hd("resume", "--pid", program.pid)
    assert proc.returncode == 0 and proc.stdout.startswith("resumed: pool 0"), proc.stderr
    H.wait_until(ran.exists, T, what="the job to run once resumed")
    assert hd_json("status", "--pid", program.pid)["results"][0]["value"]["suspended"] is False


@pytest.mark.timeout(60)
def test_several_pools_are_listed_and_one_can_be_chosen(tmp_path: Path) -> None:
    program = Program(tmp_path, pools=2)
    try:
        proc = hd("pools", "--pid", program.pid)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].split()[:3] == ["POOL", "PID", "QUEUE"]
        assert [line.split()[:3] for line in lines[1:]] == [["0", str(program.pid), "Memory()"],
                                                           ["1", str(program.pid), "Memory()"]]
        out = hd_json("failed", "list", "--pid", program.pid)
        assert [len(e["value"]) for e in out["results"]] == [1, 1]
        assert hd("failed", "list", "--pid", program.pid).stdout.split()[0] == "POOL"
        out = hd_json("status", "--pid", program.pid, "--pool", 1)
        assert [e["pool"] for e in out["results"]] == [1]
        proc = hd("failed", "purge", "--pid", program.pid, "--pool", 1)
        assert proc.stdout.strip() == "purged 1 failed job(s)"
        assert [len(e["value"]) for e in hd_json("failed", "list", "--pid", program.pid)["results"]] == [1, 0]
        err = short_error(hd("status", "--pid", program.pid, "--pool", 7))
        assert f"process {program.pid} has no pool 7 (its pools: 0, 1)" in err
        assert f"honeydew pools --pid {program.pid}" in err
    finally:
        program.end()


# --- errors ------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_dead_pid_a_pid_without_a_pool_and_no_target_are_clear_errors() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(T)
    err = short_error(hd("status", "--pid", gone.pid))
    assert f"honeydew: no process {gone.pid}" in err and "honeydew status --pid" in err
    out = json.loads(hd("status", "--pid", gone.pid, "--json").stdout)
    assert out == {"ok": False, "target": {"pid": gone.pid}, "op": "status", "error": f"no process {gone.pid}"}

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        err = short_error(hd("failed", "list", "--pid", other.pid))
        assert f"process {other.pid} holds no honeydew pool (or it is another user's)" in err
        assert "honeydew failed list --pid" in err
    finally:
        other.kill()
        other.wait(T)

    err = short_error(hd("suspend"))
    assert "give a target: --pid PID" in err and "honeydew suspend --pid" in err
    err = short_error(hd("status", "--pid", "abc"))
    assert "invalid int value: 'abc'" in err and "e.g. honeydew status --pid 12345" in err
    err = short_error(hd("failed"))
    assert "give an action: list, retry or purge" in err
    assert short_error(hd()).startswith("honeydew: give a command")
    err = short_error(hd("status", "--pid", 1, "--sqlite", "x.db"))
    assert "not allowed with argument" in err


def test_a_bad_sqlite_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "jobs.db"
    err = short_error(hd("failed", "list", "--sqlite", missing))
    assert f"no queue file {missing}" in err and "honeydew failed list --sqlite" in err
    assert not missing.parent.exists()  # nothing made at a mistyped path
    err = short_error(hd("status", "--sqlite", tmp_path))
    assert f"{tmp_path} is not a queue file" in err
    err = short_error(hd("status", "--pid", 1, "--pool", 0, "--sqlite", tmp_path / "x.db"))
    assert "not allowed with argument" in err


def test_python_m_honeydew_and_the_console_script_are_one_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11+)
    pyproject = tomllib.loads((H.REPO_DIR / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["honeydew"] == "honeydew.cli:main"
    proc = hd("--help")
    assert proc.returncode == 0 and "status" in proc.stdout and "exit status: 0" in proc.stdout
    assert hd("--version").stdout.strip() == f"honeydew {honeydew.__version__}"


# --- the socket, its files, and who may use it -------------------------------------------------------

@pytest.mark.timeout(60)
def test_the_socket_is_private_and_its_files_go_with_the_last_pool_and_at_exit(tmp_path: Path) -> None:
    program = Program(tmp_path)
    try:
        found = control.find_socket(program.pid)
        assert found is not None
        sock, key = found
        directory = os.path.dirname(sock)
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700 and os.stat(directory).st_uid == os.getuid()
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(sock).st_mode)
        assert program.send("join", "JOINED") == "None"
        assert not os.path.exists(sock) and not os.path.exists(key)
        err = short_error(hd("status", "--pid", program.pid))
        assert f"process {program.pid} holds no honeydew pool" in err
    finally:
        program.end()

    program = Program(tmp_path)  # exits with its pool running: the exit removes the files
    found = control.find_socket(program.pid)
    assert found is not None
    program.end()
    assert program.proc.returncode == 0
    assert not any(os.path.exists(path) for path in found)


@pytest.mark.timeout(60)
def test_a_killed_program_leaves_stale_files_that_are_refused_and_then_swept(tmp_path: Path) -> None:
    program = Program(tmp_path)
    found = control.find_socket(program.pid)
    assert found is not None
    os.kill(program.pid, signal.SIGKILL)
    program.proc.wait(T)
    H.wait_until(lambda: H.pool_processes() == [], T, what="the killed program's pool to stop")
    err = short_error(hd("status", "--pid", program.pid))
    assert f"no process {program.pid}" in err
    program.end()
    sweeper = Program(tmp_path)  # a new server sweeps the files of dead pids
    try:
        assert not any(os.path.exists(path) for path in found)
    finally:
        sweeper.end()


@pytest.mark.timeout(60)
def test_a_wrong_key_is_refused_and_the_server_goes_on(program: Program) -> None:
    found = control.find_socket(program.pid)
    assert found is not None

    def connect_with_wrong_key() -> None:
        Client(found[0], family="AF_UNIX", authkey=b"not the key").close()

    with pytest.raises(AuthenticationError):
        H.call_with_deadline(connect_with_wrong_key, T, "a client with a wrong key")
    assert hd("status", "--pid", program.pid).returncode == 0


@pytest.mark.timeout(60)
def test_a_client_that_says_nothing_does_not_wedge_the_server(program: Program) -> None:
    found = control.find_socket(program.pid)
    assert found is not None
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.connect(found[0])
        started = time.monotonic()
        proc = hd("status", "--pid", program.pid, "--json")  # served once the silent one times out
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < control.IO_TIMEOUT + T
    finally:
        silent.close()


@pytest.mark.timeout(60)
def test_garbage_after_the_handshake_is_answered_as_an_error(program: Program) -> None:
    found = control.find_socket(program.pid)
    assert found is not None
    key = Path(found[1]).read_bytes()

    def ask_garbage() -> Any:
        with Client(found[0], family="AF_UNIX", authkey=key) as conn:
            conn.send_bytes(b"\x80not json")
            return json.loads(conn.recv_bytes())

    answer = H.call_with_deadline(ask_garbage, T, "a request that is not JSON")
    assert answer["ok"] is False and "JSON" in answer["error"]
    assert hd("status", "--pid", program.pid).returncode == 0


# --- --sqlite: the queue file ----------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_sqlite_queue_file_shows_its_counts_and_failed_jobs(tmp_path: Path) -> None:
    sqlite = pytest.importorskip("honeydew.queues.sqlite")
    path = tmp_path / "jobs.db"
    runs = tmp_path / "runs"
    runs.mkdir()
    with honeydew.Pool(num_workers=1, queue=sqlite.SQLite(path), failure_mode=honeydew.Move()) as pool:
        with pytest.raises(ValueError):
            pool.options(timeout=T).call(H.fail_counted, str(runs), ValueError)
    proc = hd("status", "--sqlite", path)
    assert proc.returncode == 0, proc.stderr
    head, row = proc.stdout.splitlines()
    assert head.split()[:5] == ["QUEUE", "FILE", "PENDING", "DELAYED", "RESERVED"]
    st = hd_json("status", "--sqlite", path)["results"][0]["value"]
    assert (st["pending"], st["failed_store"]) == (0, 1)
    (record,) = hd_json("failed", "list", "--sqlite", path)["results"][0]["value"]
    assert record["task"] == "support.integration_helpers.fail_counted"
    assert record["error"].endswith("ValueError: run 1")
    proc = hd("failed", "retry", "--sqlite", path, record["id"])
    assert (proc.returncode, proc.stdout.strip()) == (0, "retried 1 failed job(s)"), proc.stderr
    st = hd_json("status", "--sqlite", path)["results"][0]["value"]
    assert (st["pending"], st["failed_store"]) == (1, 0)  # waiting for a pool on the file
    proc = hd("suspend", "--sqlite", path)
    assert proc.returncode == 0 and proc.stdout.startswith("suspended: SQLite(") and "every pool" in proc.stdout, \
        proc.stdout + proc.stderr
    assert hd_json("status", "--sqlite", path)["results"][0]["value"]["file_suspended"] is True
    assert hd("resume", "--sqlite", path).returncode == 0
    assert hd_json("status", "--sqlite", path)["results"][0]["value"]["file_suspended"] is False


@pytest.mark.timeout(90)
def test_suspending_a_queue_file_stops_every_pool_on_it_until_resume(tmp_path: Path) -> None:
    """``honeydew suspend --sqlite`` is in force when it returns: no pool on the file starts a job
    (a running one finishes); a pool that closes meanwhile leaves its jobs in the file; ``resume``
    lets them run."""
    sqlite = pytest.importorskip("honeydew.queues.sqlite")
    path = tmp_path / "jobs.db"
    release, before, after = tmp_path / "release", tmp_path / "before", tmp_path / "after"
    with honeydew.Pool(num_workers=1, queue=sqlite.SQLite(path)) as a, \
            honeydew.Pool(num_workers=1, queue=sqlite.SQLite(path)) as b:
        assert a.options(timeout=T).call(H.echo, 1) == 1 and b.options(timeout=T).call(H.echo, 2) == 2
        running = a.submit(H.wait_for_file, str(release), 60)
        H.wait_until(lambda: a.status()["queues"][0]["running"], T, what="the job to start")
        proc = hd("suspend", "--sqlite", path)
        assert proc.returncode == 0 and "not yet confirmed" not in proc.stdout, proc.stdout + proc.stderr
        for pool, marker in ((a, before), (b, after)):
            pool.cast(H.touch, str(marker))
        release.touch()
        assert running.result(timeout=T) > 0  # (the running job finished)
        time.sleep(1.0)  # (fifty polls of the file: nothing may start)
        assert not before.exists() and not after.exists()
        assert a.status()["queues"][0]["file_suspended"] is True
        b.close()
        b.join(T)  # (closing while the file is suspended leaves the jobs there: no hang)
        assert hd("resume", "--sqlite", path).returncode == 0
        H.wait_until(lambda: before.exists() and after.exists(), T, what="both jobs to run after resume")
