"""The RabbitMQ queue against the real broker: real pool processes, a queue name of its own per test.

Every test skips when no broker answers (``support.rabbit.require``), and fails instead under
``CI=true``.  The tasks are ``support.rabbit``'s (a module worker), so jobs name registered tasks,
as the broker's default (``allow_callables=False``) wants."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import integration_helpers as H
from support import rabbit as R

import honeydew
from honeydew.queues import Job, Owner

T = 30.0

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def name() -> Iterator[str]:
    R.require()
    queue = R.unique_name()
    yield queue
    R.delete_queues(queue)


def node_script(name: str, workers: int = 2, url: str = R.URL, failure_mode: str = "honeydew.Abandon()") -> str:
    """A worker node: a pool of ``workers`` on the queue until its stdin closes; prints 'ready'."""
    return f"""
        import sys
        import honeydew
        from support import rabbit as R
        q = R.queue({name!r}, url={url!r})
        with honeydew.Pool(R, num_workers={workers}, queue=q, failure_mode={failure_mode}) as pool:
            print("ready", flush=True)
            sys.stdin.read()
        print("closed", flush=True)
    """


def start_node(tmp_path: Path, name: str, tag: str, **options: object) -> subprocess.Popen[str]:
    """A worker node in a process group (a session) of its own, so the test can kill it whole."""
    script = H.write_script(tmp_path, node_script(name, **options), name=f"node-{tag}.py")  # type: ignore[arg-type]
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=H.script_env(), start_new_session=True)
    H.read_line_with(proc, "ready", timeout=T)
    return proc


def stop_node(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_the_round_trip_on_one_node(name: str, tmp_path: Path) -> None:
    q = R.queue(name)
    assert "guest" not in repr(q)
    out = tmp_path / "casts"
    with honeydew.Pool(R, num_workers=2, queue=q) as pool:
        assert pool.options(timeout=T).call(R.echo, "hello") == "hello"
        assert pool.submit(R.square, 7).result(timeout=T) == 49
        assert list(pool.map(R.square, range(20), timeout=T)) == [x * x for x in range(20)]
        with pytest.raises(R.TaskError, match="its own"):
            pool.options(timeout=T).call(R.fail, "its own")
        for i in range(30):
            pool.cast(R.record, str(out), f"c{i}")
        status = pool.status()
        assert "guest" not in repr(status)
    assert sorted(R.runs(out)) == sorted(f"c{i}" for i in range(30))  # (the pool drained the queue on close)
    assert R.ready_count(name) == 0


def test_a_producer_pool_and_a_worker_node_in_another_process(name: str, tmp_path: Path) -> None:
    node = start_node(tmp_path, name, "a")
    try:
        with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
            pid = producer.options(timeout=T).call(R.getpid)
            assert pid != os.getpid() and pid in {p.pid for p in psutil.Process(node.pid).children(recursive=True)}
            assert producer.submit(R.square, 9).result(timeout=T) == 81
            with pytest.raises(R.TaskError, match="from the node"):
                producer.options(timeout=T).call(R.fail, "from the node")
            assert list(producer.map(R.square, range(10), timeout=T)) == [x * x for x in range(10)]
    finally:
        stop_node(node)


def test_jobs_cast_before_any_worker_exists_run_after_the_producer_exited(name: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    H.run_script(tmp_path, f"""
        import honeydew
        from support import rabbit as R
        with honeydew.Pool(R, num_workers=0, queue=R.queue({name!r})) as pool:
            for i in range(25):
                pool.cast(R.record, {str(out)!r}, f"j{{i}}")
    """, timeout=T)
    assert R.ready_count(name) == 25 and not out.exists()  # stored, and nobody ran them yet
    with honeydew.Pool(R, num_workers=2, queue=R.queue(name)):
        H.wait_until(lambda: len(R.runs(out)) >= 25, T, what="the 25 casts to run")
    assert sorted(R.runs(out)) == sorted(f"j{i}" for i in range(25))


def test_a_node_killed_whole_mid_job_loses_nothing(name: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    started = Path(f"{out}.started")
    a = start_node(tmp_path, name, "a")
    b = None
    try:
        with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
            for i in range(8):
                producer.cast(R.slow_record, str(out), f"s{i}", 1.0)
        a_pids = {p.pid for p in psutil.Process(a.pid).children(recursive=True)}
        H.wait_until(lambda: started.exists() and len(started.read_text().split()) >= 2, T,
                     what="node a to start two jobs")
        os.killpg(a.pid, signal.SIGKILL)  # the whole node, mid-job
        a.wait(10)
        running_on_a = [line.split(":")[0] for line in started.read_text().split()
                        if int(line.split(":")[1]) in a_pids]
        assert running_on_a  # (node a was running jobs when it died)
        b = start_node(tmp_path, name, "b")
        H.wait_until(lambda: set(R.runs(out)) >= {f"s{i}" for i in range(8)}, T, what="every job to finish on b")
    finally:
        stop_node(a)
        if b is not None:
            stop_node(b)
    assert set(R.runs(out)) == {f"s{i}" for i in range(8)}


def test_a_long_job_holds_no_other_job_behind_it(name: str, tmp_path: Path) -> None:
    """A node's prefetch is its workers' credits, running jobs included: a node busy with a long
    job has taken nothing more, so a job cast meanwhile goes to the idle node at once."""
    out = tmp_path / "runs"
    started = Path(f"{out}.started")
    a = start_node(tmp_path, name, "a", workers=1)
    b = None
    try:
        with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
            producer.cast(R.slow_record, str(out), "long", 8.0)
            H.wait_until(started.exists, T, what="node a to start the long job")
            b = start_node(tmp_path, name, "b", workers=1)
            producer.cast(R.record, str(out), "short")
            H.wait_until(lambda: "short" in R.runs(out), T, what="the short job to run on node b")
            assert "long" not in R.runs(out)  # (it ran beside the long job, not behind it)
    finally:
        stop_node(a)
        if b is not None:
            stop_node(b)


def test_a_job_longer_than_the_heartbeat_runs_exactly_once(name: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    url = R.URL + ("&" if "?" in R.URL else "?") + "heartbeat=2"
    q = R.queue(name, url=url)
    with honeydew.Pool(R, num_workers=1, queue=q) as pool:
        assert pool.options(timeout=T).call(R.spin_record, str(out), "long", 7.0) == "long"
        assert pool.status()["queues"][0]["reconnects"] == 0  # (the connection stayed up throughout)
    assert R.runs(out) == ["long"]
    assert R.ready_count(name) == 0


def test_a_poison_job_under_requeue_runs_three_times_then_fails(name: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with honeydew.Pool(R, num_workers=1, queue=R.queue(name), failure_mode=honeydew.Requeue(max_deliveries=3)) as pool:
        with pytest.raises(honeydew.WorkerCrashed):
            pool.options(timeout=T).call(R.poison, str(out))
        assert pool.options(timeout=T).call(R.echo, "still serving") == "still serving"
    assert len(R.runs(out)) == 3


def test_demand_dropping_never_cancels_a_free_consumer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the workers' demand drops (a worker died, a pool shrinks), a consumer holding no job is
    not cancelled: the broker may be handing it a job at that moment, and would take that job back
    counting a delivery that never ran.  It is retired instead, and cancelled once it holds a job,
    which is then handed out as its first delivery."""
    q = R.queue(name)
    cancels: list[int] = []  # the jobs each cancelled consumer held when it was cancelled
    real_cancel = q._cancel_consumer
    monkeypatch.setattr(q, "_cancel_consumer", lambda tag: (cancels.append(q._live.get(tag, -1)), real_cancel(tag)))
    q.open(Owner("inspector", 0, 0, os.getpid()))
    try:
        q.hold(1)
        assert q.status()["consumers"] == 1
        q.hold(0)  # (the worker died: its consumer has no job)
        assert cancels == [] and q.status()["consumers"] == 0
        payload = pickle.dumps(("task", "support.rabbit.echo", ("x",), {}))
        q.enqueue([Job("retired-1", payload)])
        job = H.wait_until(lambda: q.reserve(time.time()), T, what="the job the retired consumer took")
        assert job.id == "retired-1" and job.deliveries == 1
        assert cancels == [1]  # (cancelled while it held the job: nothing in flight to take back)
        q.ack([job.id])
        q.hold(1)
        job2_id = "retired-2"
        q.enqueue([Job(job2_id, payload)])
        job = H.wait_until(lambda: q.reserve(time.time()), T, what="a job for the new consumer")
        assert job.id == job2_id and job.deliveries == 1
        q.ack([job.id])
    finally:
        q.close()
    assert R.ready_count(name) == 0


def test_a_job_that_kills_its_whole_node_is_capped_and_moved(name: str, tmp_path: Path) -> None:
    """Requeue(3) counts the deliveries whose whole node died (the broker's count): the job runs
    three times, then goes to the failed store with JobLost, its caller told."""
    out = tmp_path / "runs"
    with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
        producer.cast(R.poison_node, str(out))
    for attempt in range(1, 4):
        node = start_node(tmp_path, name, f"n{attempt}", failure_mode="honeydew.Requeue(max_deliveries=3)")
        try:
            H.wait_until(lambda n=attempt: len(R.runs(out)) >= n, T, what=f"run {attempt}")
            node.wait(T)
        finally:
            stop_node(node)
    node = start_node(tmp_path, name, "last", failure_mode="honeydew.Requeue(max_deliveries=3)")
    try:
        H.wait_until(lambda: R.ready_count(f"{name}.failed") == 1, T, what="the job to reach the failed store")
    finally:
        stop_node(node)
    assert len(R.runs(out)) == 3
    with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as pool:
        [kept] = pool.failed()
        assert "JobLost" in kept.error and "delivered 3" in kept.error


def test_retry_waits_on_the_broker_and_move_keeps_the_job(name: str, tmp_path: Path) -> None:
    """Retry's back-off waits in a delay queue (no worker, no prefetch slot held), then Move keeps
    the job in <name>.failed, where failed(), retry_failed() and purge_failed() work on it."""
    out = tmp_path / "runs"
    mode = honeydew.Retry(times=1, backoff=0.5, then=honeydew.Move())
    with honeydew.Pool(R, num_workers=1, queue=R.queue(name), failure_mode=mode) as pool:
        pool.cast(R.record_and_fail, str(out), "r")
        H.wait_until(lambda: len(R.runs(out)) >= 1, T, what="the first run")
        assert pool.options(timeout=T).call(R.echo, "while it waits") == "while it waits"
        H.wait_until(lambda: pool.failed(), T, what="the job to reach the failed store")
        [kept] = pool.failed()
        assert "TaskError" in kept.error and kept.deliveries == 2
        assert R.runs(out) == ["r", "r"]
        assert pool.retry_failed() == 1
        H.wait_until(lambda: len(R.runs(out)) == 4 and pool.failed(), T, what="the retried job to fail again")
        assert pool.purge_failed() == 1
        assert pool.failed() == []


def test_a_jobs_own_failure_mode_travels_to_the_node_that_runs_it(name: str, tmp_path: Path) -> None:
    """A producer's job with a Retry of its own (in its signed meta) is retried by a worker node in
    another process whose failure mode is Abandon; a job without one is given up at once."""
    own, plain = tmp_path / "own", tmp_path / "plain"
    node = start_node(tmp_path, name, "a", failure_mode="honeydew.Abandon()")
    try:
        with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
            retry = producer.options(timeout=T, failure_mode=honeydew.Retry(times=2, backoff=0.05))
            with pytest.raises(R.TaskError, match="r failed"):
                retry.call(R.record_and_fail, str(own), "r")
            assert R.runs(own) == ["r", "r", "r"]
            with pytest.raises(R.TaskError):
                producer.options(timeout=T).call(R.record_and_fail, str(plain), "p")
            assert R.runs(plain) == ["p"]
    finally:
        stop_node(node)


class _Bomb:
    """Unpickling this creates the file ``path``: proof that a message was opened."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def test_unsigned_and_forged_messages_are_never_unpickled(name: str, tmp_path: Path) -> None:
    opened = tmp_path / "opened"
    body = pickle.dumps((0, "echo", (_Bomb(str(opened)),), {}))
    good = R.queue(name)
    other = R.queue(name, signing_key="another key")
    from honeydew.queues import _amqp_envelope as env
    meta = {"k": "job", "q": name, "id": "forged", "o": "", "t": 0.0, "p": 0, "m": "", "d": 0, "f": 0, "b": 0,
            "r": ""}
    forged_headers = env.seal(other._key, meta, body)  # signed, with the wrong key
    tampered = dict(env.seal(good._key, meta, b"other body"))  # a right signature, of another body
    with honeydew.Pool(R, num_workers=2, queue=good) as pool:
        R.publish_raw(name, body, message_id="unsigned")
        R.publish_raw(name, body, forged_headers, message_id="forged")
        R.publish_raw(name, body, tampered, message_id="tampered")
        H.wait_until(lambda: R.ready_count(f"{name}.failed") == 3, T, what="the three messages to be set aside")
        assert pool.options(timeout=T).call(R.echo, "still serving") == "still serving"
        listed = pool.failed()
        assert sorted(f.id for f in listed) == ["forged", "tampered", "unsigned"]
        assert all("signature" in f.error for f in listed)
        with pytest.raises(honeydew.UnknownTask, match="allow_callables"):
            pool.options(timeout=T).call(lambda x: x + 1, 1)  # a callable by value, refused by default
    assert not opened.exists()
    kept = R.get_raw(f"{name}.failed")
    untouched = [(p.message_id, b) for p, b in kept if p.message_id in ("unsigned", "forged", "tampered")]
    assert sorted(untouched) == sorted([("unsigned", body), ("forged", body), ("tampered", body)])
    with honeydew.Pool(R, num_workers=1, queue=R.queue(name, allow_callables=True)) as pool:
        assert pool.options(timeout=T).call(lambda x: x + 1, 1) == 2


def test_the_broker_stopping_and_starting_while_jobs_run_loses_nothing(name: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    started = Path(f"{out}.started")
    jobs = {f"r{i}" for i in range(12)}
    with honeydew.Pool(R, num_workers=2, queue=R.queue(name)) as pool:
        for tag in sorted(jobs):
            pool.cast(R.slow_record, str(out), tag, 0.5)
        H.wait_until(started.exists, T, what="a job to start")
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        try:
            time.sleep(1.0)  # (an outage of a second or so while jobs run)
        finally:
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60)
            subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True, timeout=60)
        H.wait_until(lambda: set(R.runs(out)) >= jobs, 45, what="every job to run after the broker came back")
        assert pool.options(timeout=T).call(R.echo, "after") == "after"
    # each ran once: a job that ran through the outage was not run again when the broker delivered it anew
    assert sorted(R.runs(out)) == sorted(jobs)


def test_a_queue_deleted_under_the_consumer_is_declared_again(name: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with honeydew.Pool(R, num_workers=1, queue=R.queue(name)) as pool:
        assert pool.options(timeout=T).call(R.echo, 1) == 1
        subprocess.run(["rabbitmqctl", "delete_queue", name], check=True, capture_output=True, timeout=60)
        pool.cast(R.record, str(out), "after-delete")  # unroutable at first: declared again, sent again
        H.wait_until(lambda: R.runs(out) == ["after-delete"], T, what="the job cast after the delete to run")
        assert pool.options(timeout=T).call(R.echo, 2) == 2


def test_a_publish_the_broker_refuses_is_a_clear_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker nacks a publish (a full queue, a resource alarm): cast() raises, naming the queue
    and why, rather than returning as if the job were stored.  (Here every confirm is turned into a
    nack; the real broker's nack of a full queue is the test after this one.)"""
    import pika

    from honeydew.queues import _amqp_link

    real = _amqp_link.Link._on_confirm

    def refuse(self: _amqp_link.Link, frame: pika.frame.Method) -> None:
        method = frame.method
        frame.method = pika.spec.Basic.Nack(delivery_tag=method.delivery_tag, multiple=method.multiple)
        real(self, frame)

    monkeypatch.setattr(_amqp_link.Link, "_on_confirm", refuse)  # (the forked queue process inherits it)
    with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
        with pytest.raises(honeydew.HoneydewError, match=f"{name}.*refused by the broker.*nack"):
            producer.cast(R.echo, 1)


def test_a_queue_full_under_the_brokers_policy_refuses_a_cast_and_keeps_the_rest(name: str) -> None:
    """On the real broker: a policy caps the job queue at 2 messages, rejecting publishes past it
    (a quorum queue rejects once it is over the cap: the third may still go in).  The first cast it
    refuses raises, naming the queue and the nack; every cast before it is stored, once; once there
    is room again, the same pool's casts are stored again."""
    with honeydew.Pool(R, num_workers=0, queue=R.queue(name)) as producer:
        with R.queue_policy(name, {"max-length": 2, "overflow": "reject-publish"}):
            stored, refused = 0, None
            for i in range(6):
                try:
                    producer.cast(R.echo, i)
                except honeydew.HoneydewError as e:
                    refused = e
                    break
                stored += 1
            assert refused is not None, "the broker never refused a cast past the queue's cap"
            assert re.search(f"{name}.*refused by the broker.*nack", str(refused)), refused
            assert 2 <= stored <= 3
            assert len(R.get_raw(name)) == stored  # (each once; and now the queue has room again)
            producer.cast(R.echo, "after")
            assert R.ready_count(name) == 1


@pytest.mark.timeout(120)
def test_a_connection_the_broker_blocks_is_a_clear_error_then_works_again(name: str) -> None:
    """On the real broker: its memory alarm blocks every publishing connection.  A cast then raises
    once its confirm is overdue, saying the broker blocked the connection, rather than hanging or
    returning as if stored; once the alarm is over, casts are stored again (on a new connection)."""
    with honeydew.Pool(R, num_workers=0, queue=R.queue(name, confirm_timeout=3.0)) as producer:
        producer.cast(R.echo, 1)
        with R.memory_alarm():
            started = time.monotonic()
            with pytest.raises(honeydew.HoneydewError, match=f"did not confirm.*{name}.*blocked the connection"):
                producer.cast(R.echo, 2)
            assert time.monotonic() - started < 30
        H.wait_until(lambda: _cast_stored(producer), T, what="a cast to be stored once the alarm is over")
        assert R.ready_count(name) >= 2


def _cast_stored(pool: honeydew.Pool) -> bool:
    try:
        pool.cast(R.echo, "after the alarm")
        return True
    except honeydew.HoneydewError:
        return False


def test_a_queue_declared_with_other_arguments_is_a_clear_error(name: str) -> None:
    conn = R._connect()
    try:
        conn.channel().queue_declare(name, durable=True)  # a classic queue where honeydew wants a quorum one
    finally:
        conn.close()
    with pytest.raises(honeydew.HoneydewError, match=f"{name}.*other arguments.*delete it"):
        honeydew.Pool(R, num_workers=0, queue=R.queue(name))


def test_a_signing_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    from honeydew.queues import RabbitMQ

    monkeypatch.delenv("HONEYDEW_SIGNING_KEY", raising=False)
    with pytest.raises(ValueError, match="HONEYDEW_SIGNING_KEY"):
        RabbitMQ(R.URL, "any")
    monkeypatch.setenv("HONEYDEW_SIGNING_KEY", "from the environment")
    assert RabbitMQ(R.URL, "any")._key == b"from the environment"


def test_credentials_never_show(name: str) -> None:
    from honeydew.queues import RabbitMQ

    q = RabbitMQ("amqp://guest:guest@127.0.0.1:5672/%2F", name, signing_key=R.KEY)
    assert "guest" not in repr(q)
    bad = RabbitMQ("amqp://guest:s3cret-pw@127.0.0.1:1/%2F?connection_attempts=1", name, signing_key=R.KEY)
    with pytest.raises(honeydew.HoneydewError) as info:
        bad.check()
    assert "s3cret" not in str(info.value) and "guest" not in str(info.value)


def test_the_envelope_is_read_without_unpickling(tmp_path: Path) -> None:
    """(No broker needed.)  A payload's task is told from its opcodes; a signature covers the meta
    and the body; the broker's address is shown without credentials."""
    from honeydew._payload import cloudpickle_dumps
    from honeydew.protocol import call_payload, map_payload
    from honeydew.queues import _amqp_envelope as env

    opened = tmp_path / "opened"
    assert env.names_a_task(pickle.dumps(call_payload("echo", (_Bomb(str(opened)),), {}), protocol=5))
    assert env.names_a_task(cloudpickle_dumps(map_payload("square", [1, 2], False)))
    assert not env.names_a_task(pickle.dumps(call_payload(pickle.dumps(len), (1,), {}), protocol=5))
    assert not env.names_a_task(b"not a pickle")
    assert not opened.exists()
    key = env.signing_key("k")
    headers = env.seal(key, {"k": "job", "q": "jobs", "id": "1"}, b"body")
    assert env.open_envelope(key, headers, b"body", "job", "jobs")[0] == {"k": "job", "q": "jobs", "id": "1"}
    assert env.open_envelope(key, headers, b"other", "job", "jobs") == (None, "a wrong signature")
    assert env.open_envelope(key, headers, b"body", "job", "other queue")[0] is None
    assert env.open_envelope(key, headers, b"body", "reply", "jobs")[0] is None
    assert env.open_envelope(b"another key", headers, b"body", "job", "jobs")[0] is None
    assert env.open_envelope(key, {}, b"body", "job", "jobs") == (None, "no signature")
    assert env.redact("amqps://user:s3cret@broker.example:5671/vhost?heartbeat=5") == "amqps://broker.example:5671/vhost"


def test_without_pika_the_error_names_the_extra() -> None:
    """(No broker needed.)  ``import honeydew`` never loads pika; the RabbitMQ queue says what to install."""
    code = ("import sys; sys.modules['pika'] = None\n"
            "import honeydew\n"
            "try:\n    from honeydew.queues import RabbitMQ\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=H.script_env(), timeout=T)
    assert "pip install 'honeydew-pool[rabbitmq]'" in done.stdout, done.stderr
