"""The tests' RabbitMQ kit: is the broker there (skip on a laptop without it, fail under ``CI=true``),
unique queue names and their removal, raw pika for messages honeydew did not sign, and the tasks
the broker tests run (this module is also the worker: ``honeydew.Pool(rabbit, ..., queue=...)``).

The broker is ``$HONEYDEW_TEST_AMQP_URL``, by default RabbitMQ on 127.0.0.1:5672 as guest."""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import honeydew

URL = os.environ.get("HONEYDEW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
KEY = "tests-signing-key"

_available: bool | None = None
_declared: set[str] = set()


def _connect(url: str = URL) -> Any:
    import pika

    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 3
    params.blocked_connection_timeout = 10
    return pika.BlockingConnection(params)


def available() -> bool:
    global _available
    if _available is None:
        try:
            _connect().close()
            _available = True
        except Exception:
            _available = False
    return _available


def require() -> None:
    """Skip the test when no broker answers, unless ``CI=true``: then fail it."""
    if available():
        return
    message = f"RabbitMQ is not reachable at {URL.split('@')[-1]} (set HONEYDEW_TEST_AMQP_URL)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it (.ci/run starts it)")
    pytest.skip(message)


def unique_name(prefix: str = "hdtest") -> str:
    """A queue name no other test (or run) uses; its queues are deleted at the end of the session."""
    name = f"{prefix}-{os.getpid()}-{time.time_ns() % 10**12}"
    _declared.add(name)
    return name


def delete_queues(name: str) -> None:
    """Delete ``name`` and ``name.failed`` (delay and reply queues expire by themselves)."""
    try:
        conn = _connect()
    except Exception:
        return
    try:
        for queue in (name, f"{name}.failed"):
            ch = conn.channel()
            try:
                ch.queue_delete(queue)
            except Exception:
                pass
            finally:
                if ch.is_open:
                    ch.close()
    finally:
        conn.close()


@atexit.register
def _cleanup() -> None:
    if _available:
        for name in list(_declared):
            delete_queues(name)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl`` on this machine's broker; its output (raises if it fails)."""
    done = subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=timeout)
    return done.stdout


@contextmanager
def queue_policy(name: str, definition: dict[str, Any]) -> Iterator[None]:
    """A policy on the queue ``name`` alone (a full queue, say), in force when this enters and gone
    when it leaves (the broker applies and lifts a policy in the background: both wait until the
    queue shows it)."""
    policy = f"hdtest-{name}"

    def shown() -> bool:
        return policy in rabbitmqctl("list_queues", "--no-table-headers", "name", "policy")

    def wait(until_shown: bool, what: str) -> None:
        deadline = time.monotonic() + 30
        while shown() != until_shown:
            if time.monotonic() > deadline:
                raise AssertionError(f"the broker did not {what} the policy {policy} on queue {name} within 30 s")
            time.sleep(0.1)

    rabbitmqctl("set_policy", "--apply-to", "queues", "--priority", "100", policy, f"^{re.escape(name)}$",
                json.dumps(definition))
    try:
        wait(True, "apply")
        yield
    finally:
        rabbitmqctl("clear_policy", policy)
        wait(False, "lift")


@contextmanager
def memory_alarm() -> Iterator[None]:
    """The broker's memory alarm, raised for as long as this is entered: every connection that
    publishes is blocked (the whole broker's; restored to its earlier watermark when this leaves)."""
    earlier = rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().").strip()
    absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", earlier)
    if absolute is None:
        float(earlier)  # (a relative watermark, as RabbitMQ's default; anything else: do not touch it)
    rabbitmqctl("set_vm_memory_high_watermark", "0")
    try:
        yield
    finally:
        if absolute is not None:
            rabbitmqctl("set_vm_memory_high_watermark", "absolute", absolute.group(1))
        else:
            rabbitmqctl("set_vm_memory_high_watermark", earlier)


def queue(name: str, **options: Any) -> honeydew.queues.RabbitMQ:
    from honeydew.queues import RabbitMQ

    return RabbitMQ(options.pop("url", URL), name, signing_key=options.pop("signing_key", KEY), **options)


def ready_count(queue_name: str) -> int:
    """The broker's count of ready messages in ``queue_name`` (-1 if it does not exist)."""
    conn = _connect()
    try:
        return int(conn.channel().queue_declare(queue_name, passive=True).method.message_count)
    except Exception:
        return -1
    finally:
        if conn.is_open:
            conn.close()


def publish_raw(queue_name: str, body: bytes, headers: dict[str, Any] | None = None, message_id: str = "") -> None:
    """Publish with plain pika, confirmed: a message honeydew did not sign (or forged headers)."""
    import pika

    conn = _connect()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue_name, body, pika.BasicProperties(delivery_mode=2, headers=headers,
                                                                    message_id=message_id or None),
                         mandatory=True)
    finally:
        conn.close()


def get_raw(queue_name: str) -> list[tuple[Any, bytes]]:
    """Every message of ``queue_name`` (properties, body), taken off the queue."""
    conn = _connect()
    out = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue_name, auto_ack=True)
            if method is None:
                return out
            out.append((props, body))
    finally:
        conn.close()


def runs(path: str | Path) -> list[str]:
    """The lines the tasks below appended to ``path`` (one per run)."""
    try:
        return Path(path).read_text().split()
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- the tasks (a module worker)


class TaskError(Exception):
    """A task's own exception type (the caller gets it back, across the broker)."""


def _append(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


@honeydew.task
def echo(value: Any) -> Any:
    return value


@honeydew.task
def square(x: int) -> int:
    return x * x


@honeydew.task
def fail(message: str) -> None:
    raise TaskError(message)


@honeydew.task
def record(path: str, tag: str) -> str:
    """Append ``tag`` to ``path`` (one line per run); returns it."""
    _append(path, tag)
    return tag


@honeydew.task
def slow_record(path: str, tag: str, secs: float) -> str:
    """Announce the start in ``path + '.started'``, sleep ``secs``, then record ``tag``."""
    _append(f"{path}.started", f"{tag}:{os.getpid()}")
    time.sleep(secs)
    _append(path, tag)
    return tag


@honeydew.task
def spin_record(path: str, tag: str, secs: float) -> str:
    """Busy for ``secs`` seconds of CPU (no sleep, no I/O), then record ``tag``."""
    _append(f"{path}.started", tag)
    end = time.process_time() + secs
    n = 0
    while time.process_time() < end:
        n += 1
    _append(path, tag)
    return tag


@honeydew.task
def poison(path: str) -> None:
    """Record the run, then kill this worker."""
    _append(path, str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


@honeydew.task
def getpid() -> int:
    return os.getpid()


# --------------------------------------------------------------------------- the contract suite's entry


class ContractBackend:
    """``tests/unit/test_queue_contract.py``'s factory: a RabbitMQ queue of its own per store
    directory (one per test; a second backend on the same directory shares it).  ``cannot``
    names the contract tests a broker's queue cannot pass by its nature, with why."""

    _FAKE_CLOCK = ("its delays run on the broker's clock (message TTLs), and the suite's clock is fake; "
                   "tests/integration/test_rabbitmq.py tests them for real")
    _MIDDLE = ("a broker cannot take a job out of the middle of its queue or look one up by id: only a job "
               "this queue process holds unstarted can be cancelled (cancel() answers False otherwise)")
    _IDS = "a broker does not refuse an id it already holds (a job sent again may run twice: at-least-once)"
    _RECOVERY = ("the broker gives a reservation back when its owner's connection closes, not when another "
                 "owner opens (tests/integration/test_rabbitmq.py kills nodes for real)")
    _OTHERS = ("a broker does not tell one consumer how many messages other consumers hold unacknowledged: "
               "status()['reserved'] counts this queue process's")
    _PRIORITY = "a quorum queue has no priorities (the backend lacks them; this test assumes them)"
    _KEPT_ONCE = "a broker's queue cannot replace a kept message by id: each give-up of the same id is kept"
    cannot: dict[str, str] = {
        "test_len_and_status_count_pending_not_reserved": _FAKE_CLOCK,
        "test_nack_with_delay": _FAKE_CLOCK,
        "test_delayed_job_waits_for_its_time": _FAKE_CLOCK,
        "test_delayed_jobs_come_out_by_ready_time": _FAKE_CLOCK,
        "test_ready_jobs_do_not_wait_behind_delayed_ones": _FAKE_CLOCK,
        "test_cancel_delayed": _FAKE_CLOCK,
        "test_cancel_delayed_leaves_no_timer": _FAKE_CLOCK,
        "test_an_id_already_delayed_is_not_stored_twice": _FAKE_CLOCK,
        "test_jobs_outlive_the_backend_instance": _FAKE_CLOCK,
        "test_delays_survive_close_and_open": _FAKE_CLOCK,
        "test_model": _FAKE_CLOCK,
        "test_model_next_ready_in": _FAKE_CLOCK,
        "test_an_earlier_generations_reservations_come_back_counted": _RECOVERY,
        "test_recovered_jobs_keep_their_delivery_count": _RECOVERY,
        "test_a_dead_owners_reservations_come_back": _RECOVERY,
        "test_a_dead_owners_jobs_come_back_with_every_count": _RECOVERY,
        "test_a_job_whose_owner_keeps_dying_goes_to_the_failed_store": _RECOVERY,
        "test_a_live_siblings_reservations_are_never_touched": _OTHERS,
        "test_retry_failed_resets_counts_and_the_job_is_reservable": _PRIORITY,
        "test_the_same_id_failed_twice_is_kept_once": _KEPT_ONCE,
        "test_cancel_pending": _MIDDLE,
        "test_is_pending": _MIDDLE,
        "test_cancel_then_same_id_again": _MIDDLE,
        "test_take_pending": _MIDDLE,
        "test_an_id_already_pending_is_not_stored_twice": _IDS,
        "test_an_id_already_reserved_is_not_stored_twice": _IDS,
    }

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def __call__(self, directory: Path) -> Any:
        require()
        name = self._names.get(str(directory))
        if name is None:
            name = self._names[str(directory)] = unique_name("hdcontract")
        return queue(name, allow_callables=True)  # (the suite's payloads are opaque bytes, not task calls)


@honeydew.task
def poison_node(path: str) -> None:
    """Record the run, then kill this worker's whole node (the process group of the pool's program)."""
    _append(path, str(os.getpid()))
    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


@honeydew.task
def record_and_fail(path: str, tag: str) -> None:
    """Record the run, then raise :class:`TaskError`."""
    _append(path, tag)
    raise TaskError(f"{tag} failed")
