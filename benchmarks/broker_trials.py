"""The ``rabbitmq`` measurement: honeydew's RabbitMQ queue, Dramatiq and bare pika on one broker.

One trial per system, each on queue names of its own (``hd-bench-<run>-<system>-<pid>-<n>...``),
each with worker processes of its own; whatever happens, a trial stops the processes it started
and deletes the queues it declared before it returns (and the runner deletes whatever a killed
host left behind: :func:`sweep`).

* ``pika``, the floor: a loop of confirmed publishes (publisher confirms, ``mandatory``,
  persistent messages) to a durable queue from one thread; and a round trip: a confirmed,
  persistent publish to a durable queue, an echo consumer process (:mod:`benchmarks.pika_echo`)
  answers on the caller's reply queue with the request's correlation id and acks, the caller waits
  for that answer.  On a quorum queue and on a classic one; the round trip without confirms too.
  And the most a pool of 2 workers could drain under honeydew's demand rule (its consumer prefetch
  equals its workers' credits, running jobs included: 2 unacknowledged messages): the same
  publishes, from 1 and from 8 threads (a connection each), until drained by a consumer process
  (:mod:`benchmarks.pika_drain`) holding 2 consumers of prefetch 1 on a quorum queue that ack
  each message at once, with no work and no hop to a worker.
* ``dramatiq``: ``RabbitmqBroker`` with its defaults (persistent messages, acks after the job),
  results through its Redis backend, a worker of 2 processes x 1 thread (the ``dramatiq``
  command on :mod:`benchmarks.dramatiq_app`).  With publisher confirms on, then off: casts
  (``send``) until drained from 1 and from 8 threads, then ``send`` + ``get_result`` round trips.
* ``honeydew``: ``Pool(worker, num_workers=2, queue=RabbitMQ(url, name=...))``: the same casts
  until drained, then ``call`` round trips.

Casting from 8 threads: each thread casts one job first (its connection, if it has its own, then
exists), the queue drains, and all start at once.  *Drained*: the job queue holds no ready message
any more (asked every millisecond on a connection of the trial's own); the jobs the workers have
prefetched (Dramatiq: 2 per process) may still be running then, as in the ``durable`` measurement.
The broker's CPU (``beam.smp``, ``redis-server``) during a trial is returned as ``broker_cpu_s``:
the runner counts it as the trial's own, not as interference from other programs.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psutil

from .systems import AMQP_URL, DRAMATIQ, HONEYDEW, PIKA, REDIS_URL, WORKERS, shown
from .trials import percentile, procs_cpu, single_threaded

ROOT = Path(__file__).resolve().parent.parent
#: every queue of this measurement starts with it (then the run's token: :func:`run_prefix`)
PREFIX = "hd-bench-"
QUEUE_TYPES = ("quorum", "classic")
#: the body of a bare pika message: about a small job's size
BODY = b"x" * 200
BROKER_PROCESSES = ("beam.smp", "redis-server")
DRAIN_DEADLINE_S = 300.0

_seq = itertools.count(1)


# --------------------------------------------------------------------------- availability

def broker_missing(url: str = AMQP_URL) -> str:
    """'' when a RabbitMQ broker answers at ``url``, else why not (for the runner's skip message)."""
    try:
        import pika
        import pika.exceptions
    except ImportError:
        return "pika is not installed (the bench extra has it: pip install -e '.[bench]')"
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = 3
    params.blocked_connection_timeout = 3
    try:
        pika.BlockingConnection(params).close()
    except (pika.exceptions.AMQPError, OSError) as e:
        return (f"no RabbitMQ broker answered at {shown(url)} ({type(e).__name__}); start one "
                f"(rabbitmq-server -detached) or point HONEYDEW_BENCH_AMQP_URL at one")
    return ""


def redis_missing(url: str = REDIS_URL) -> str:
    """'' when Redis answers at ``url`` (Dramatiq's results), else why not."""
    try:
        import redis
    except ImportError:
        return "the redis client is not installed (the bench extra has it: pip install -e '.[bench]')"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as e:
        return (f"no Redis answered at {shown(url)} ({type(e).__name__}), so Dramatiq has no result backend: "
                f"its send + get_result is not measured; start Redis or point HONEYDEW_BENCH_REDIS_URL at one")
    return ""


def honeydew_missing() -> str:
    """'' when ``honeydew.queues.RabbitMQ`` can be imported, else why not."""
    try:
        from honeydew.queues import RabbitMQ  # noqa: F401
    except ImportError as e:
        return f"honeydew.queues.RabbitMQ is not importable ({e})"
    return ""


def run_prefix() -> str:
    """The queue-name prefix of this run (the runner sets ``$HONEYDEW_BENCH_RUN`` for its hosts)."""
    return f"{PREFIX}{os.environ.get('HONEYDEW_BENCH_RUN') or 'manual'}-"


def _new_prefix(system: str) -> str:
    """A queue name no other trial uses, nor begins with (the random part ends it)."""
    return f"{run_prefix()}{system}-{os.getpid()}-{next(_seq)}-{os.urandom(3).hex()}"


# --------------------------------------------------------------------------- the broker

def _params() -> Any:
    import pika
    params = pika.URLParameters(AMQP_URL)
    params.connection_attempts = 3
    return params


class Admin:
    """The trial's own connection: declares its bare queues, asks how many messages are ready
    and how many consumers a queue has.  Queues are deleted by :func:`delete_queues`."""

    def __init__(self) -> None:
        import pika
        self.conn = pika.BlockingConnection(_params())
        self.ch = self.conn.channel()

    def declare(self, name: str, queue_type: str) -> None:
        self.ch.queue_declare(name, durable=True, arguments={"x-queue-type": queue_type})

    def counts(self, name: str) -> tuple[int, int]:
        """(ready messages, consumers) of queue ``name``."""
        m = self.ch.queue_declare(name, passive=True).method
        return m.message_count, m.consumer_count

    def wait_drained(self, name: str, deadline_s: float = DRAIN_DEADLINE_S) -> None:
        end = time.monotonic() + deadline_s
        while True:
            ready, consumers = self.counts(name)
            if not ready:
                return
            if time.monotonic() > end:
                raise TimeoutError(f"queue {name}: {ready} message(s) still ready after {deadline_s:.0f}s "
                                   f"({consumers} consumer(s))")
            time.sleep(0.001)

    def wait_consumers(self, name: str, n: int, proc: Process | None, deadline_s: float = 60.0) -> None:
        """Until queue ``name`` has ``n`` consumers (``proc``: the process that should consume it)."""
        end = time.monotonic() + deadline_s
        while self.counts(name)[1] < n:
            if proc is not None:
                proc.check()
            if time.monotonic() > end:
                raise TimeoutError(f"queue {name}: fewer than {n} consumer(s) after {deadline_s:.0f}s"
                                   + (f"; {proc.name}'s stderr:\n{proc.tail()}" if proc else ""))
            time.sleep(0.01)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # already closed by the broker: nothing to release
            pass


def delete_queues(names: list[str]) -> list[str]:
    """Delete these queues (a missing one is fine) on a fresh connection; the errors, as text."""
    import pika
    import pika.exceptions
    errors: list[str] = []
    if not names:
        return errors
    try:
        conn = pika.BlockingConnection(_params())
    except (pika.exceptions.AMQPError, OSError) as e:
        return [f"could not connect to delete queues {', '.join(names)}: {type(e).__name__}: {e}"]
    try:
        ch = conn.channel()
        for name in names:
            try:
                ch.queue_delete(name)
            except pika.exceptions.ChannelClosed as e:
                if e.reply_code != 404:
                    errors.append(f"queue {name} not deleted: {e.reply_code} {e.reply_text}")
                ch = conn.channel()
            except pika.exceptions.AMQPError as e:
                errors.append(f"queue {name} not deleted: {type(e).__name__}: {e}")
                break
    finally:
        try:
            conn.close()
        except Exception:  # the connection broke during the deletions: reported above
            pass
    return errors


def broker_queues(prefix: str) -> dict[str, str] | None:
    """The broker's queues whose names start with ``prefix``, with their types (from
    ``rabbitmqctl``; None when it is not available here)."""
    ctl = shutil.which("rabbitmqctl")
    if not ctl:
        return None
    try:
        r = subprocess.run([ctl, "list_queues", "-q", "name", "type"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith(prefix):
            out[fields[0]] = fields[1]
    return out


def sweep(prefix: str) -> tuple[list[str], list[str]]:
    """Delete every queue whose name starts with ``prefix`` (what a killed trial left behind):
    (the names found, the errors)."""
    found = broker_queues(prefix)
    if not found:
        return [], []
    names = sorted(found)
    return names, delete_queues(names)


class BrokerCpu:
    """CPU seconds used by the broker's processes (RabbitMQ, Redis) since this was made."""

    def __init__(self) -> None:
        self.procs = [p for p in psutil.process_iter(["name"]) if p.info["name"] in BROKER_PROCESSES]
        self.start = self._now()

    def _now(self) -> float:
        return procs_cpu(self.procs)

    def used(self) -> float:
        return self._now() - self.start


# --------------------------------------------------------------------------- processes

class Process:
    """A worker process a trial starts, in a session of its own, its stderr in a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.err: IO[bytes] = tempfile.TemporaryFile()
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)

    def tail(self, n: int = 20) -> str:
        self.err.seek(0)
        return "\n".join(self.err.read().decode(errors="replace").splitlines()[-n:])

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; its stderr:\n{self.tail()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to its whole session, SIGKILL after ``grace_s``; then nothing of it is left."""
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:  # its children too (a worker that outlived its parent is still in the session)
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.err.close()


@contextmanager
def cleanup(queues: list[str], procs: list[Process], prefix: str = "",
            found: dict[str, str] | None = None) -> Iterator[None]:
    """Whatever happens inside: stop ``procs`` and delete ``queues`` (both filled in as the trial
    goes) and every queue whose name starts with ``prefix`` (those a library declared for itself;
    with their types into ``found``); a failed deletion fails the trial unless it failed already."""
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        for p in reversed(procs):
            p.stop()
        if prefix:
            listed = broker_queues(prefix) or {}
            queues += listed
            if found is not None:
                found.update(listed)
        errors = delete_queues(sorted(set(queues)))
        if errors and not failed:
            raise RuntimeError("; ".join(errors))
        if errors:
            sys.stderr.write("broker clean-up: " + "; ".join(errors) + "\n")


# --------------------------------------------------------------------------- measuring

def cast_until_drained(threads: int, n: int, fire: Callable[[], Any], drained: Callable[[], None],
                       fence: Callable[[], Any] | None = None) -> tuple[float, list[float]]:
    """Cast ``n`` jobs (``fire()``) from ``threads`` threads, then wait until ``drained()``:
    (jobs per second, one thread's cast latencies in seconds).  Each thread casts one job before
    the clock starts (so its connection, if it has one of its own, exists); the queue drains;
    then every thread starts at once.  ``fence()``, called by each thread after its last cast,
    returns once the broker has routed what the thread published (for unconfirmed publishes:
    until then the queue may look drained while they are still on their way)."""
    clock = time.perf_counter
    if threads == 1:
        fire()
        drained()
        latencies = [0.0] * n
        t0 = clock()
        for i in range(n):
            t = clock()
            fire()
            latencies[i] = clock() - t
        if fence is not None:
            fence()
        drained()
        return n / (clock() - t0), latencies
    per = n // threads
    gate = threading.Barrier(threads + 1, timeout=120)
    errors: list[BaseException] = []

    def cast_some() -> None:
        try:
            fire()
            gate.wait()   # warmed up
            gate.wait()   # go
            for _ in range(per):
                fire()
            if fence is not None:
                fence()
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:
            errors.append(e)
            gate.abort()

    pool = [threading.Thread(target=cast_some, name=f"caster-{k}") for k in range(threads)]
    for t in pool:
        t.start()
    broken = False
    t0 = 0.0
    try:
        gate.wait()
        drained()
        t0 = clock()
        gate.wait()
    except threading.BrokenBarrierError:
        broken = True
    except BaseException:
        gate.abort()
        raise
    finally:
        for t in pool:
            t.join()
    if errors:
        raise errors[0]
    if broken:
        raise TimeoutError(f"the {threads} casting threads did not all start within {gate.timeout:.0f}s")
    drained()
    return per * threads / (clock() - t0), []


def round_trips(n: int, one: Callable[[], Any]) -> dict[str, float]:
    """``one()`` ``n`` times: p50 and p99 in µs."""
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t = clock()
        one()
        samples[i] = clock() - t
    samples.sort()
    us = [s / 1000.0 for s in samples]
    return {"p50_us": percentile(us, 50), "p99_us": percentile(us, 99)}


def _latency(latencies: list[float]) -> float:
    return percentile(sorted(latencies), 50) * 1e6


# --------------------------------------------------------------------------- pika, the floor

def _pika(p: dict[str, Any]) -> dict[str, Any]:
    import pika

    prefix = _new_prefix(PIKA)
    publish_to = {t: f"{prefix}.publish.{t}" for t in QUEUE_TYPES}
    request_to = {t: f"{prefix}.request.{t}" for t in QUEUE_TYPES}
    queues: list[str] = []
    procs: list[Process] = []
    out: dict[str, Any] = {"publishes": p["publishes"], "round_trips": p["round_trips"]}
    cpu = BrokerCpu()
    admin = Admin()
    try:
        with cleanup(queues, procs):
            for t in QUEUE_TYPES:
                queues += [publish_to[t], request_to[t]]
                admin.declare(publish_to[t], t)
                admin.declare(request_to[t], t)
            for t in QUEUE_TYPES:
                out[f"publish_per_s_{t}"] = _publish_loop(admin.conn, publish_to[t], p["publishes"])
            procs.append(Process("the pika echo consumer",
                                 [sys.executable, "-m", "benchmarks.pika_echo", *request_to.values()]))
            for t in QUEUE_TYPES:
                admin.wait_consumers(request_to[t], 1, procs[0])
            for t in QUEUE_TYPES:
                for confirm in (True, False):
                    rt = _pika_round_trips(pika, admin.conn, request_to[t], p["round_trips"], confirm)
                    tag = "" if confirm else "_noconfirm"
                    out[f"rt{tag}_p50_us_{t}"] = rt["p50_us"]
                    out[f"rt{tag}_p99_us_{t}"] = rt["p99_us"]
            drain_to = f"{prefix}.drain.quorum"
            queues.append(drain_to)
            admin.declare(drain_to, "quorum")
            procs.append(Process("the pika drain consumer",
                                 [sys.executable, "-m", "benchmarks.pika_drain", drain_to, str(WORKERS)]))
            admin.wait_consumers(drain_to, WORKERS, procs[-1])
            out.update(_pika_drains(pika, admin, drain_to, p))
    finally:
        admin.close()
    out["broker_cpu_s"] = cpu.used()
    return out


def _publish_loop(conn: Any, queue: str, n: int) -> float:
    """Confirmed, mandatory, persistent publishes to ``queue`` from this thread: per second."""
    import pika
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    publish = functools.partial(ch.basic_publish, "", queue, BODY, props, mandatory=True)
    for _ in range(min(50, n)):  # warm-up, not timed
        publish()
    t0 = time.perf_counter()
    for _ in range(n):
        publish()
    rate = n / (time.perf_counter() - t0)
    ch.close()
    return rate


def _pika_drains(pika: Any, admin: Admin, queue: str, p: dict[str, Any]) -> dict[str, float]:
    """Confirmed, mandatory, persistent publishes until drained by :mod:`benchmarks.pika_drain`
    (a consumer held to the prefetch of a honeydew pool of the same workers, acking at once), from 1
    and from 8 threads, each thread on a connection of its own: jobs per second."""
    local = threading.local()
    conns: list[Any] = []
    lock = threading.Lock()
    props = pika.BasicProperties(delivery_mode=2)

    def fire() -> None:
        ch = getattr(local, "ch", None)
        if ch is None:
            conn = pika.BlockingConnection(_params())
            with lock:
                conns.append(conn)
            ch = local.ch = conn.channel()
            ch.confirm_delivery()
        ch.basic_publish("", queue, BODY, props, mandatory=True)

    drained = functools.partial(admin.wait_drained, queue)
    try:
        return {"drain_per_s_1t": cast_until_drained(1, p["jobs_1"], fire, drained)[0],
                "drain_per_s_8t": cast_until_drained(8, p["jobs_8"], fire, drained)[0]}
    finally:
        for conn in conns:
            try:
                conn.close()
            except Exception:  # the broker closed it first: nothing left to release
                pass


def _pika_round_trips(pika: Any, conn: Any, queue: str, n: int, confirm: bool) -> dict[str, float]:
    """Publish a request (persistent, mandatory; confirmed or not) and wait for the echo's answer."""
    ch = conn.channel()
    if confirm:
        ch.confirm_delivery()
    reply_to = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    answered: set[str] = set()

    def on_answer(ch: Any, method: Any, props: Any, body: bytes) -> None:
        answered.add(props.correlation_id)

    ch.basic_consume(reply_to, on_answer, auto_ack=True)
    ids = itertools.count()

    def one() -> None:
        cid = str(next(ids))
        props = pika.BasicProperties(reply_to=reply_to, correlation_id=cid, delivery_mode=2)
        ch.basic_publish("", queue, BODY, props, mandatory=True)
        while cid not in answered:
            conn.process_data_events(time_limit=None)
        answered.discard(cid)

    for _ in range(min(50, n)):  # warm-up, not timed
        one()
    out = round_trips(n, one)
    ch.close()  # its exclusive reply queue goes with it
    return out


# --------------------------------------------------------------------------- Dramatiq

def _dramatiq(p: dict[str, Any]) -> dict[str, Any]:
    from . import dramatiq_app

    queue = _new_prefix(DRAMATIQ)
    # its queue, its delay queue and its dead-letter queue (Dramatiq declares the three)
    queues: list[str] = [queue, f"{queue}.DQ", f"{queue}.XQ"]
    procs: list[Process] = []
    no_redis = redis_missing()
    out: dict[str, Any] = {"jobs_1": p["jobs_1"], "jobs_8": p["jobs_8"], "calls": p["calls"], "queue_type": "classic",
                           "call_skipped": no_redis or None}
    cpu = BrokerCpu()
    admin = Admin()
    keys: list[str] = []   # the results stored in Redis, deleted at the end
    backend = None
    try:
        with cleanup(queues, procs):
            for confirm in (True, False):
                app = dramatiq_app.build(queue, confirm_delivery=confirm)
                backend = app.backend
                try:
                    app.broker.declare_queue(queue, ensure=True)
                    if not procs:
                        procs.append(Process("the dramatiq worker", [
                            sys.executable, "-m", "dramatiq", "benchmarks.dramatiq_app:broker", "--processes",
                            str(WORKERS), "--threads", "1", "--queues", queue, "--worker-shutdown-timeout", "5000"],
                            env=dict(os.environ, HONEYDEW_BENCH_DRAMATIQ_QUEUE=queue)))
                        admin.wait_consumers(queue, WORKERS, procs[0])
                    out.update(_dramatiq_measure(app, admin, queue, p, keys, no_redis, "" if confirm else "_noconfirm"))
                finally:
                    app.broker.close()
    finally:
        admin.close()
        if backend is not None and keys:
            try:
                for k in range(0, len(keys), 1000):
                    backend.client.delete(*keys[k:k + 1000])
            except Exception as e:  # Redis went away: the results expire by themselves (Dramatiq's TTL)
                sys.stderr.write(f"dramatiq results not deleted from Redis: {type(e).__name__}: {e}\n")
    out["broker_cpu_s"] = cpu.used()
    return out


def _dramatiq_measure(app: Any, admin: Admin, queue: str, p: dict[str, Any], keys: list[str], no_redis: str,
                      tag: str) -> dict[str, Any]:
    drained = functools.partial(admin.wait_drained, queue)
    send, backend = app.cast.send, app.backend

    def fence() -> None:
        """A synchronous request on the casting thread's own channel (its ``broker.channel``): the
        broker answers it after it has routed every message published before it on that channel."""
        app.broker.channel.queue_declare(queue, passive=True)

    def call() -> None:
        m = app.call.send()
        keys.append(backend.build_message_key(m))
        m.get_result(backend=backend, block=True, timeout=60_000)

    for _ in range(20):  # warm-up: every worker process runs the task
        if no_redis:
            send()
        else:
            call()
    drained()
    out: dict[str, Any] = {}
    rate, latencies = cast_until_drained(1, p["jobs_1"], send, drained, fence)
    out[f"jobs_per_s_1t{tag}"] = rate
    out[f"cast_p50_us{tag}"] = _latency(latencies)
    out[f"jobs_per_s_8t{tag}"] = cast_until_drained(8, p["jobs_8"], send, drained, fence)[0]
    if not no_redis:
        rt = round_trips(p["calls"], call)
        out[f"call_p50_us{tag}"] = rt["p50_us"]
        out[f"call_p99_us{tag}"] = rt["p99_us"]
    return out


# --------------------------------------------------------------------------- honeydew

def _honeydew(p: dict[str, Any]) -> dict[str, Any]:
    missing = honeydew_missing()
    if missing:
        raise RuntimeError(f"{missing}: the rabbitmq measurement has no honeydew side to run")
    import honeydew
    from honeydew.queues import RabbitMQ

    from . import hd_broker_worker

    single_threaded(HONEYDEW)
    name = _new_prefix(HONEYDEW)
    queues: list[str] = [name, f"{name}.failed"]
    procs: list[Process] = []
    out: dict[str, Any] = {"jobs_1": p["jobs_1"], "jobs_8": p["jobs_8"], "calls": p["calls"]}
    cpu = BrokerCpu()
    admin: Admin | None = None
    found: dict[str, str] = {}   # every queue honeydew declared (its reply queues too), with its type
    try:
        with cleanup(queues, procs, prefix=name, found=found):
            queue = RabbitMQ(AMQP_URL, name=name, signing_key=os.urandom(32))
            noop = hd_broker_worker.noop
            pool = honeydew.Pool(hd_broker_worker, num_workers=WORKERS, queue=queue)
            try:
                admin = Admin()  # after the pool's processes are forked: none of them holds its socket
                for _ in range(20):  # warm-up: every worker runs the task
                    pool.call(noop)
                for f in [pool.submit(noop) for _ in range(8 * WORKERS)]:
                    f.result()
                drained = functools.partial(admin.wait_drained, name)
                fire = functools.partial(pool.cast, noop)
                rate, latencies = cast_until_drained(1, p["jobs_1"], fire, drained)
                out["jobs_per_s_1t"] = rate
                out["cast_p50_us"] = _latency(latencies)
                out["jobs_per_s_8t"] = cast_until_drained(8, p["jobs_8"], fire, drained)[0]
                rt = round_trips(p["calls"], functools.partial(pool.call, noop))
                out["call_p50_us"], out["call_p99_us"] = rt["p50_us"], rt["p99_us"]
            except BaseException:
                pool.terminate()  # a failed trial stops at once (its queues are deleted below)
                raise
            pool.__exit__(None, None, None)  # leaving `with`: close + join
    finally:
        if admin is not None:
            admin.close()
    # the queue type honeydew declared: the pika floor it is compared with
    out["queue_type"] = getattr(queue, "queue_type", None) or found.get(name)
    out["broker_cpu_s"] = cpu.used()
    return out


RUN = {PIKA: _pika, DRAMATIQ: _dramatiq, HONEYDEW: _honeydew}


def rabbitmq(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """The ``rabbitmq`` trial of system ``name`` (see the module's docstring)."""
    if name not in RUN:
        raise ValueError(f"no rabbitmq measurement for {name}")
    return RUN[name](p)
