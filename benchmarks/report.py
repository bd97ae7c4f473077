"""From raw trials to what is published: metrics (median and spread), targets, table, JSON, chart."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .systems import DRAMATIQ, FLOOR, HONEYDEW, HUEY, MP, PIKA, PPE, SERIAL, SYSTEMS, WORKERS

MiB = 1024 * 1024

Raw = dict[str, dict[str, list[dict[str, Any]]]]   # kind -> system -> one entry per repeat


@dataclass(frozen=True)
class Metric:
    id: str
    title: str
    unit: str
    better: str                    # "lower" or "higher"
    kind: str                      # the trial kind it comes from
    systems: tuple[str, ...]
    get: Callable[[dict[str, Any], int, Raw], float | None]   # (trial result, repeat index, raw) -> value


def _field(name: str, scale: float = 1.0) -> Callable[[dict[str, Any], int, Raw], float | None]:
    def get(r: dict[str, Any], i: int, raw: Raw) -> float | None:
        v = r.get(name)
        return None if v is None else v * scale
    return get


def _median_of(name: str, scale: float = 1.0) -> Callable[[dict[str, Any], int, Raw], float | None]:
    def get(r: dict[str, Any], i: int, raw: Raw) -> float | None:
        v = r.get(name)
        return None if not v else statistics.median(v) * scale
    return get


def _efficiency(r: dict[str, Any], i: int, raw: Raw) -> float | None:
    serial = raw.get("map_cpu", {}).get(SERIAL, [])
    if i >= len(serial) or not serial[i].get("ok"):
        return None
    return serial[i]["result"]["wall_s"] / (r["wall_s"] * WORKERS)


def _lost(r: dict[str, Any], i: int, raw: Raw) -> float | None:
    return float(r["lost_in_kill"] + r["stream_lost"])


ALL = SYSTEMS
CPU = (SERIAL, FLOOR, *SYSTEMS)
HD = (HONEYDEW,)
FIRE = (HONEYDEW, MP)
SCRIPT = (HONEYDEW, MP, PPE)   # the fresh-interpreter script trials
DURABLE = (HONEYDEW, HUEY)     # durable queues on SQLite (huey when installed)
BROKER = (HONEYDEW, DRAMATIQ)  # job queues on RabbitMQ (Dramatiq's figures: publisher confirms on unless said)
QUEUE_TYPES = ("quorum", "classic")


def _broker_floor() -> tuple[Metric, ...]:
    """Bare pika on each queue type: the floor of the RabbitMQ targets."""
    out = []
    for t in QUEUE_TYPES:
        out += [
            Metric(f"rmq_pika_publish_per_s_{t}", f"bare pika: confirmed, mandatory, persistent publishes to a durable "
                   f"{t} queue, 1 thread", "msgs/s", "higher", "rabbitmq", (PIKA,), _field(f"publish_per_s_{t}")),
            Metric(f"rmq_pika_round_trip_p50_us_{t}", f"bare pika round trip on a {t} queue: confirmed publish, "
                   f"echo consumer replies by correlation id, p50", "µs", "lower", "rabbitmq", (PIKA,),
                   _field(f"rt_p50_us_{t}")),
            Metric(f"rmq_pika_round_trip_p99_us_{t}", f"bare pika round trip on a {t} queue, p99", "µs", "lower",
                   "rabbitmq", (PIKA,), _field(f"rt_p99_us_{t}")),
            Metric(f"rmq_pika_round_trip_noconfirm_p50_us_{t}", f"bare pika round trip on a {t} queue without "
                   f"publisher confirms, p50", "µs", "lower", "rabbitmq", (PIKA,), _field(f"rt_noconfirm_p50_us_{t}")),
        ]
    out += [
        Metric(f"rmq_pika_drain_per_s_{n}t", f"bare pika at a 2-worker pool's prefetch: confirmed publishes from {n} "
               f"thread(s) until drained by 2 consumers of prefetch 1 that ack at once (quorum)", "msgs/s", "higher",
               "rabbitmq", (PIKA,), _field(f"drain_per_s_{n}t"))
        for n in (1, 8)]
    return tuple(out)


METRICS: tuple[Metric, ...] = (
    Metric("call_p50_us", "call latency p50 (no-op round trip)", "µs", "lower", "latency", ALL, _field("p50_us")),
    Metric("call_p99_us", "call latency p99", "µs", "lower", "latency", ALL, _field("p99_us")),
    Metric("floor_2hop_p50_us", "floor: raw pipe round trip caller -> worker -> caller, p50", "µs", "lower",
           "floor", (FLOOR,), _field("p50_us_2hop")),
    Metric("floor_3hop_p50_us", "floor: caller -> relay -> worker -> caller (honeydew's shape), p50", "µs",
           "lower", "floor", (FLOOR,), _field("p50_us_3hop")),
    Metric("floor_3hop_p99_us", "floor: 3 hops, p99", "µs", "lower", "floor", (FLOOR,), _field("p99_us_3hop")),
    Metric("call_cpu_us", "CPU per call (caller + every pool process)", "µs", "lower", "latency", ALL,
           _field("cpu_us_per_call")),
    Metric("submit_collect_jobs_per_s", "submit 50k no-ops then collect", "jobs/s", "higher", "throughput", ALL,
           _field("jobs_per_s")),
    Metric("submit_collect_cpu_us_per_job", "CPU per job, submit+collect (caller + every pool process)", "µs",
           "lower", "throughput", ALL, _field("cpu_us_per_job")),
    Metric("fire_and_forget_jobs_per_s", "fire-and-forget until drained (cast; mp: apply_async, close+join)",
           "jobs/s", "higher", "cast", FIRE, _field("jobs_per_s")),
    Metric("map_tiny_wall_s", "map over 200k tiny items, wall", "s", "lower", "map_tiny", ALL, _field("wall_s")),
    Metric("map_tiny_items_per_s", "map over tiny items, rate", "items/s", "higher", "map_tiny", ALL,
           _field("items_per_s")),
    Metric("map_cpu_wall_s", "map over 400 CPU-bound items (~20 ms), wall", "s", "lower", "map_cpu", CPU,
           _field("wall_s")),
    Metric("map_cpu_efficiency", "CPU efficiency = serial / (wall x 2 workers)", "", "higher", "map_cpu",
           (FLOOR, *ALL), _efficiency),
    Metric("first_result_ms", "Pool(...) to first result", "ms", "lower", "start_stop", ALL,
           _field("first_result_ms")),
    Metric("stop_ms", "leaving `with` to every pool process gone", "ms", "lower", "start_stop", ALL,
           _field("stop_ms")),
    Metric("recovery_serving_ms", "SIGKILL to the re-run starting on the replacement", "ms", "lower", "recovery",
           HD, _field("serving_ms")),
    Metric("recovery_rerun_done_ms", "SIGKILL to the re-run's result in the caller", "ms", "lower", "recovery", HD,
           _field("rerun_done_ms")),
    Metric("recovery_init_ms", "replacement worker's init time", "ms", "lower", "recovery", HD, _field("init_ms")),
    Metric("recovery_jobs_lost", "jobs lost (kill trial + stream with kills)", "jobs", "lower", "recovery", HD,
           _lost),
    Metric("worker_uss_mib", "idle worker USS (median of the workers)", "MiB", "lower", "memory", ALL,
           _median_of("worker_uss", 1 / MiB)),
    Metric("monitor_uss_mib", "idle monitor USS (honeydew)", "MiB", "lower", "memory", HD,
           _median_of("monitor_uss", 1 / MiB)),
    Metric("tree_uss_mib", "whole pool tree USS (every pool process)", "MiB", "lower", "memory", ALL,
           _field("tree_uss", 1 / MiB)),
    Metric("enqueue_rate_low", "enqueue rate from ~10k pending (cast until absorbed; median of 3 segments)",
           "jobs/s", "higher", "scale", HD, _field("rate_low")),
    Metric("enqueue_rate_high", "enqueue rate around ~1M pending (last 3 segments)", "jobs/s", "higher", "scale", HD,
           _field("rate_high")),
    Metric("bytes_per_pending_job", "queue process USS growth per pending job", "B", "lower", "scale", HD,
           _field("bytes_per_job")),
    Metric("main_globals_wall_s", "script with a 40 MB __main__ global: Pool() + 10 calls + map of 200 + exit, wall",
           "s", "lower", "main_globals", SCRIPT, _field("wall_s")),
    Metric("queue_uss_growth_mib", "queue process peak USS while the jobs run, 40 MB global minus 1 MB global "
           "(honeydew)", "MiB", "lower", "main_globals", HD, _field("queue_uss_growth_mib")),
    Metric("first_result_numpy_ms", "script that imported numpy: Pool(...) to first result", "ms", "lower",
           "numpy_first", SCRIPT, _field("first_result_ms")),
    Metric("big_payload_round_trip_ms", "50 MB bytes argument echoed back, round trip (median of 5)", "ms", "lower",
           "big_payload", SCRIPT, _field("round_trip_ms")),
    Metric("durable_jobs_per_s_1t", "durable (SQLite, fsync) cast+run+ack of no-ops until drained, 1 casting thread",
           "jobs/s", "higher", "durable", DURABLE, _field("jobs_per_s_1t")),
    Metric("durable_jobs_per_s_8t", "durable (SQLite, fsync) cast+run+ack of no-ops until drained, 8 casting threads",
           "jobs/s", "higher", "durable", DURABLE, _field("jobs_per_s_8t")),
    Metric("durable_cast_p50_us", "durable cast, 1 thread: p50 of the time to stored", "µs", "lower", "durable",
           DURABLE, _field("cast_p50_us")),
    Metric("durable_disk_commits_per_s", "this disk, same trial: single-row SQLite commits/s (WAL, synchronous=FULL)",
           "commits/s", "higher", "durable", DURABLE, _field("disk_commits_per_s")),
    Metric("rmq_jobs_per_s_1t", "RabbitMQ: cast no-ops until drained, 1 casting thread (Dramatiq: confirms on)",
           "jobs/s", "higher", "rabbitmq", BROKER, _field("jobs_per_s_1t")),
    Metric("rmq_jobs_per_s_8t", "RabbitMQ: cast no-ops until drained, 8 casting threads (Dramatiq: confirms on)",
           "jobs/s", "higher", "rabbitmq", BROKER, _field("jobs_per_s_8t")),
    Metric("rmq_jobs_per_s_1t_noconfirm", "RabbitMQ: Dramatiq without publisher confirms, 1 casting thread",
           "jobs/s", "higher", "rabbitmq", (DRAMATIQ,), _field("jobs_per_s_1t_noconfirm")),
    Metric("rmq_jobs_per_s_8t_noconfirm", "RabbitMQ: Dramatiq without publisher confirms, 8 casting threads",
           "jobs/s", "higher", "rabbitmq", (DRAMATIQ,), _field("jobs_per_s_8t_noconfirm")),
    Metric("rmq_cast_p50_us", "RabbitMQ: one thread's cast, p50 (Dramatiq: confirms on)", "µs", "lower", "rabbitmq",
           BROKER, _field("cast_p50_us")),
    Metric("rmq_call_p50_us", "RabbitMQ: call round trip p50 (Dramatiq: send + get_result through Redis, confirms on)",
           "µs", "lower", "rabbitmq", BROKER, _field("call_p50_us")),
    Metric("rmq_call_p99_us", "RabbitMQ: call round trip p99", "µs", "lower", "rabbitmq", BROKER,
           _field("call_p99_us")),
    Metric("rmq_call_p50_us_noconfirm", "RabbitMQ: Dramatiq send + get_result without publisher confirms, p50", "µs",
           "lower", "rabbitmq", (DRAMATIQ,), _field("call_p50_us_noconfirm")),
    *_broker_floor(),
)


def summarize(values: list[float]) -> dict[str, Any]:
    v = sorted(values)
    if not v:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None, "samples": []}
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q1, "q3": q3,
            "samples": values}


def metrics(raw: Raw) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        per: dict[str, Any] = {}
        for s in m.systems:
            entries = raw.get(m.kind, {}).get(s)
            if entries is None:
                continue
            values: list[float] = []
            errors: list[str] = []
            for i, e in enumerate(entries):
                if not e.get("ok"):
                    errors.append(e.get("error", "?").strip().splitlines()[-1][:300])
                    continue
                v = m.get(e["result"], i, raw)
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    errors.append("no value")
                    continue
                values.append(v)
            per[s] = summarize(values) | {"errors": errors}
        if per:
            out[m.id] = {"title": m.title, "unit": m.unit, "better": m.better, "systems": per}
    return out


# --------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class Target:
    id: str
    text: str
    op: str            # "<=" or ">="
    threshold: float


TARGETS = (
    Target("call_p50", "honeydew call p50 <= 0.5 x mp.Pool.apply p50", "<=", 0.5),
    Target("call_p99", "honeydew call p99 <= 0.5 x mp.Pool.apply p99", "<=", 0.5),
    Target("submit_vs_mp", "submit+collect >= 1.5 x mp.Pool.apply_async", ">=", 1.5),
    Target("submit_vs_ppe", "submit+collect >= 3 x ProcessPoolExecutor.submit", ">=", 3.0),
    Target("map_tiny", "map over tiny items >= 0.8 x mp.Pool.map (default chunking), by speed", ">=", 0.8),
    Target("cpu_efficiency", "CPU-bound map efficiency >= 0.95", ">=", 0.95),
    Target("first_result", "time to first result <= 2 x mp.Pool's", "<=", 2.0),
    Target("recovery", "Requeue: 0 lost and replacement serving <= 50 ms + init (ratio to that budget)", "<=", 1.0),
    Target("scale", "enqueue rate at 1M pending >= 0.8 x rate at 10k", ">=", 0.8),
    Target("worker_uss", "idle worker USS <= mp.Pool worker's", "<=", 1.0),
    Target("main_globals", "script with a 40 MB __main__ global <= 2 x mp.Pool's time", "<=", 2.0),
    Target("queue_uss_flat", "queue process USS independent of the global's size", "<=", 1.0),
    Target("first_result_numpy", "time to first result with numpy imported <= 2 x mp.Pool's", "<=", 2.0),
    Target("big_payload", "50 MB argument + result round trip <= 1.0 x ProcessPoolExecutor's", "<=", 1.0),
    Target("durable_8t", "durable cast+run+ack (SQLite, fsync) from 8 threads >= 10,000 jobs/s", ">=", 10_000.0),
    Target("durable_1t", "durable cast+run+ack (SQLite, fsync) from 1 thread >= 3,000 jobs/s", ">=", 3_000.0),
    Target("rmq_8t_vs_dramatiq", "RabbitMQ cast until drained, 8 threads >= 1.5 x Dramatiq's with publisher confirms",
           ">=", 1.5),
    Target("rmq_8t_vs_dramatiq_noconfirm", "RabbitMQ cast until drained, 8 threads >= 1.0 x Dramatiq's without "
           "publisher confirms", ">=", 1.0),
    Target("rmq_1t_vs_pika", "RabbitMQ cast until drained, 1 thread >= 0.8 x a bare pika loop of confirmed publishes "
           "(same queue type)", ">=", 0.8),
    Target("rmq_call_p50", "RabbitMQ call p50 <= 1.25 x a bare pika round trip (same queue type)", "<=", 1.25),
)
#: the targets measured on the RabbitMQ broker: SKIP (not FAIL) when honeydew's side did not run
BROKER_TARGETS = ("rmq_8t_vs_dramatiq", "rmq_8t_vs_dramatiq_noconfirm", "rmq_1t_vs_pika", "rmq_call_p50")


#: the trial kinds each target needs (a target whose kinds were not run is SKIP, not FAIL)
_INPUTS = {"call_p50": ("latency",), "call_p99": ("latency",), "submit_vs_mp": ("throughput",),
           "submit_vs_ppe": ("throughput",), "map_tiny": ("map_tiny",), "cpu_efficiency": ("map_cpu",),
           "first_result": ("start_stop",), "recovery": ("recovery",), "scale": ("scale",), "worker_uss": ("memory",),
           "main_globals": ("main_globals",), "queue_uss_flat": ("main_globals",),
           "first_result_numpy": ("numpy_first",), "big_payload": ("big_payload",), "durable_8t": ("durable",),
           "durable_1t": ("durable",), **dict.fromkeys(BROKER_TARGETS, ("rabbitmq",))}


def _med(ms: dict[str, Any], metric: str, system: str) -> float | None:
    return ms.get(metric, {}).get("systems", {}).get(system, {}).get("median")


def _samples(ms: dict[str, Any], metric: str, system: str) -> list[float]:
    return list(ms.get(metric, {}).get("systems", {}).get(system, {}).get("samples", []))


def _raw_median(raw: Raw, kind: str, system: str, field: str) -> float | None:
    """Median of a field of the successful trials of ``kind`` / ``system`` (None if none has it)."""
    values = [e["result"][field] for e in raw.get(kind, {}).get(system, [])
              if e.get("ok") and e["result"].get(field) is not None]
    return statistics.median(values) if values else None


def _raw_values(raw: Raw, kind: str, system: str, field: str) -> list[str]:
    """The distinct values of a field over the successful trials of ``kind`` / ``system``, as text."""
    return sorted({str(e["result"].get(field)) for e in raw.get(kind, {}).get(system, []) if e.get("ok")},
                  key=lambda v: (len(v), v))


def _mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:g} MB"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _paired(a: list[float], b: list[float], f: Callable[[float, float], float]) -> list[float]:
    return [f(x, y) for x, y in zip(a, b, strict=False) if y]


def _honeydew_queue_type(raw: Raw) -> tuple[str, str]:
    """(the queue type honeydew's RabbitMQ queue declared in this run, how it is known)."""
    seen = [v for v in _raw_values(raw, "rabbitmq", HONEYDEW, "queue_type") if v in QUEUE_TYPES]
    if len(seen) == 1:
        return seen[0], ""
    return "quorum", " (honeydew's queue type unknown: quorum assumed)"


def _broker_target(t: Target, ms: dict[str, Any], raw: Raw) -> tuple[float | None, list[float], str]:
    """(measured, paired ratios, detail) of a RabbitMQ target."""
    def ratio(a_key: str, a_sys: str, b_key: str, b_sys: str) -> tuple[float | None, list[float]]:
        value = _ratio(_med(ms, a_key, a_sys), _med(ms, b_key, b_sys))
        return value, _paired(_samples(ms, a_key, a_sys), _samples(ms, b_key, b_sys), lambda x, y: x / y)

    qt, assumed = _honeydew_queue_type(raw)
    if t.id in ("rmq_8t_vs_dramatiq", "rmq_8t_vs_dramatiq_noconfirm"):
        other = "rmq_jobs_per_s_8t" + ("_noconfirm" if t.id.endswith("noconfirm") else "")
        value, paired = ratio("rmq_jobs_per_s_8t", HONEYDEW, other, DRAMATIQ)
        detail = (f"honeydew {_fmt(_med(ms, 'rmq_jobs_per_s_8t', HONEYDEW))} jobs/s vs Dramatiq "
                  f"{_fmt(_med(ms, 'rmq_jobs_per_s_8t', DRAMATIQ))} with confirms, "
                  f"{_fmt(_med(ms, 'rmq_jobs_per_s_8t_noconfirm', DRAMATIQ))} without (2 worker processes each); "
                  f"bare pika held to the same prefetch (2 unacked), acking at once, "
                  f"{_fmt(_med(ms, 'rmq_pika_drain_per_s_8t', PIKA))}/s")
    elif t.id == "rmq_1t_vs_pika":
        value, paired = ratio("rmq_jobs_per_s_1t", HONEYDEW, f"rmq_pika_publish_per_s_{qt}", PIKA)
        detail = (f"honeydew {_fmt(_med(ms, 'rmq_jobs_per_s_1t', HONEYDEW))} jobs/s (cast p50 "
                  f"{_fmt(_med(ms, 'rmq_cast_p50_us', HONEYDEW))} µs) on a {qt} queue{assumed}; bare pika "
                  + ", ".join(f"{_fmt(_med(ms, f'rmq_pika_publish_per_s_{q}', PIKA))}/s on {q}" for q in QUEUE_TYPES)
                  + f"; bare pika publishing while a consumer held to the same prefetch drains, "
                  f"{_fmt(_med(ms, 'rmq_pika_drain_per_s_1t', PIKA))}/s"
                  + f"; Dramatiq {_fmt(_med(ms, 'rmq_jobs_per_s_1t', DRAMATIQ))} jobs/s with confirms, "
                  f"{_fmt(_med(ms, 'rmq_jobs_per_s_1t_noconfirm', DRAMATIQ))} without")
    else:
        value, paired = ratio("rmq_call_p50_us", HONEYDEW, f"rmq_pika_round_trip_p50_us_{qt}", PIKA)
        detail = (f"honeydew {_fmt(_med(ms, 'rmq_call_p50_us', HONEYDEW))} µs (p99 "
                  f"{_fmt(_med(ms, 'rmq_call_p99_us', HONEYDEW))}) on a {qt} queue{assumed}; bare pika round trip "
                  + ", ".join(f"{_fmt(_med(ms, f'rmq_pika_round_trip_p50_us_{q}', PIKA))} µs on {q}"
                              for q in QUEUE_TYPES)
                  + f"; Dramatiq send + get_result {_fmt(_med(ms, 'rmq_call_p50_us', DRAMATIQ))} µs (p99 "
                  f"{_fmt(_med(ms, 'rmq_call_p99_us', DRAMATIQ))}) with confirms")
    return value, paired, detail


def targets(ms: dict[str, Any], raw: Raw, notes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Each target as a ratio of medians from this run, with the per-repeat paired ratios.
    ``notes``: what the run said about a trial kind (why it was skipped, or run without honeydew),
    added to the detail of the targets that depend on it."""
    notes = notes or {}
    out = []
    for t in TARGETS:
        detail = ""
        paired: list[float] = []
        if t.id in ("call_p50", "call_p99"):
            key = "call_p50_us" if t.id == "call_p50" else "call_p99_us"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, MP)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, key, HONEYDEW), _samples(ms, key, MP), lambda x, y: x / y)
            detail = f"honeydew {_fmt(a)} µs vs mp.Pool {_fmt(b)} µs"
        elif t.id in ("submit_vs_mp", "submit_vs_ppe"):
            other = MP if t.id == "submit_vs_mp" else PPE
            key = "submit_collect_jobs_per_s"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, other)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, key, HONEYDEW), _samples(ms, key, other), lambda x, y: x / y)
            detail = f"honeydew {_fmt(a)} jobs/s vs {other} {_fmt(b)} jobs/s"
        elif t.id == "map_tiny":
            key = "map_tiny_wall_s"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, MP)
            value = _ratio(b, a)
            paired = _paired(_samples(ms, key, MP), _samples(ms, key, HONEYDEW), lambda x, y: x / y)
            detail = f"honeydew {_fmt(a)} s vs mp.Pool.map {_fmt(b)} s (speed ratio = mp wall / honeydew wall)"
        elif t.id == "cpu_efficiency":
            value = _med(ms, "map_cpu_efficiency", HONEYDEW)
            paired = _samples(ms, "map_cpu_efficiency", HONEYDEW)
            detail = (f"honeydew wall {_fmt(_med(ms, 'map_cpu_wall_s', HONEYDEW))} s, serial "
                      f"{_fmt(_med(ms, 'map_cpu_wall_s', SERIAL))} s; mp.Pool efficiency "
                      f"{_fmt(_med(ms, 'map_cpu_efficiency', MP))}; this machine's ceiling (2 bare forked "
                      f"processes) {_fmt(_med(ms, 'map_cpu_efficiency', FLOOR))}")
        elif t.id == "first_result":
            key = "first_result_ms"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, MP)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, key, HONEYDEW), _samples(ms, key, MP), lambda x, y: x / y)
            detail = f"honeydew {_fmt(a)} ms vs mp.Pool {_fmt(b)} ms"
        elif t.id == "recovery":
            serving = _med(ms, "recovery_serving_ms", HONEYDEW)
            init = _med(ms, "recovery_init_ms", HONEYDEW)
            lost = sum(_samples(ms, "recovery_jobs_lost", HONEYDEW))
            n_lost = len(_samples(ms, "recovery_jobs_lost", HONEYDEW))
            entries = [e for e in raw.get("recovery", {}).get(HONEYDEW, []) if e.get("ok")]
            on_replacement = all(e["result"]["rerun_on_replacement"] for e in entries) and bool(entries)
            budget = None if init is None else 50.0 + init
            value = _ratio(serving, budget)
            if value is not None and (lost > 0 or n_lost == 0 or not on_replacement):
                value = math.inf
            paired = _paired(_samples(ms, "recovery_serving_ms", HONEYDEW),
                             [50.0 + x for x in _samples(ms, "recovery_init_ms", HONEYDEW)], lambda x, y: x / y)
            detail = (f"serving {_fmt(serving)} ms (budget 50 + init {_fmt(init)} ms), re-run result "
                      f"{_fmt(_med(ms, 'recovery_rerun_done_ms', HONEYDEW))} ms, jobs lost {lost:g} over {n_lost} "
                      f"trials, re-run on the replacement: {on_replacement}")
        elif t.id == "scale":
            a, b = _med(ms, "enqueue_rate_high", HONEYDEW), _med(ms, "enqueue_rate_low", HONEYDEW)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, "enqueue_rate_high", HONEYDEW), _samples(ms, "enqueue_rate_low", HONEYDEW),
                             lambda x, y: x / y)
            detail = (f"{_fmt(a)} jobs/s at ~1M pending vs {_fmt(b)} jobs/s at ~10k; "
                      f"{_fmt(_med(ms, 'bytes_per_pending_job', HONEYDEW))} B per pending job")
        elif t.id == "worker_uss":
            key = "worker_uss_mib"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, MP)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, key, HONEYDEW), _samples(ms, key, MP), lambda x, y: x / y)
            detail = f"honeydew worker {_fmt(a)} MiB vs mp.Pool worker {_fmt(b)} MiB"
        elif t.id == "main_globals":
            key = "main_globals_wall_s"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, MP)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, key, HONEYDEW), _samples(ms, key, MP), lambda x, y: x / y)
            detail = (f"honeydew {_fmt(a)} s (10 calls {_fmt(_raw_median(raw, 'main_globals', HONEYDEW, 'calls_s'))} s,"
                      f" map {_fmt(_raw_median(raw, 'main_globals', HONEYDEW, 'map_s'))} s) vs mp.Pool {_fmt(b)} s; "
                      f"ProcessPoolExecutor {_fmt(_med(ms, key, PPE))} s; a "
                      f"{_mb(_raw_median(raw, 'main_globals', HONEYDEW, 'n'))} global")
        elif t.id == "queue_uss_flat":
            key = "queue_uss_growth_mib"
            value = _med(ms, key, HONEYDEW)
            paired = _samples(ms, key, HONEYDEW)
            g = {f: _raw_median(raw, "main_globals", HONEYDEW, f) for f in (
                "small_n", "n", "queue_uss_peak_small_mib", "queue_uss_peak_big_mib", "queue_uss_final_small_mib",
                "queue_uss_final_big_mib")}
            detail = (f"queue process peak USS while the jobs ran (read every 2 ms) "
                      f"{_fmt(g['queue_uss_peak_small_mib'])} MiB with a {_mb(g['small_n'])} __main__ global, "
                      f"{_fmt(g['queue_uss_peak_big_mib'])} MiB with {_mb(g['n'])} (measured: the growth of the peak, "
                      f"MiB); after the last job {_fmt(g['queue_uss_final_small_mib'])} and "
                      f"{_fmt(g['queue_uss_final_big_mib'])} MiB")
        elif t.id == "first_result_numpy":
            key = "first_result_numpy_ms"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, MP)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, key, HONEYDEW), _samples(ms, key, MP), lambda x, y: x / y)
            methods = "/".join(_raw_values(raw, "numpy_first", HONEYDEW, "pool_start_method"))
            threads = "/".join(_raw_values(raw, "numpy_first", HONEYDEW, "threads_before"))
            detail = (f"honeydew {_fmt(a)} ms (start method {methods}) vs mp.Pool {_fmt(b)} ms; "
                      f"the script's threads before the pool: {threads}")
        elif t.id == "big_payload":
            key = "big_payload_round_trip_ms"
            a, b = _med(ms, key, HONEYDEW), _med(ms, key, PPE)
            value = _ratio(a, b)
            paired = _paired(_samples(ms, key, HONEYDEW), _samples(ms, key, PPE), lambda x, y: x / y)
            detail = f"honeydew {_fmt(a)} ms vs ProcessPoolExecutor {_fmt(b)} ms; mp.Pool {_fmt(_med(ms, key, MP))} ms"
        elif t.id in ("durable_8t", "durable_1t"):
            key = "durable_jobs_per_s_8t" if t.id == "durable_8t" else "durable_jobs_per_s_1t"
            value = _med(ms, key, HONEYDEW)
            paired = _samples(ms, key, HONEYDEW)
            huey = _med(ms, key, HUEY)
            disk = _med(ms, "durable_disk_commits_per_s", HONEYDEW)
            detail = (f"honeydew {_fmt(value)} jobs/s (single-thread cast p50 "
                      f"{_fmt(_med(ms, 'durable_cast_p50_us', HONEYDEW))} µs)"
                      + (f"; huey SqliteHuey {_fmt(huey)} jobs/s (cast p50 "
                         f"{_fmt(_med(ms, 'durable_cast_p50_us', HUEY))} µs)" if huey is not None else "")
                      + (f"; this disk: {_fmt(disk)} single-row FULL commits/s in the same trials (the target was "
                         f"set where it gave about 6,800: {_fmt(value / disk)} jobs per commit-time, the target "
                         f"{_fmt((10_000 if t.id == 'durable_8t' else 3_000) / 6_800)})" if disk else ""))
        elif t.id in BROKER_TARGETS:
            value, paired, detail = _broker_target(t, ms, raw)
        else:  # pragma: no cover
            raise KeyError(t.id)
        ok = value is not None and (value <= t.threshold if t.op == "<=" else value >= t.threshold)
        inputs = _INPUTS[t.id]
        ran = all(any(e.get("ok") is not None for es in raw.get(kind, {}).values() for e in es) for kind in inputs)
        if t.id in BROKER_TARGETS:  # the peers may have run alone
            ran = ran and any(e.get("ok") is not None for kind in inputs for e in raw.get(kind, {}).get(HONEYDEW, []))
        said = "; ".join(notes[kind] for kind in inputs if kind in notes)
        status = "PASS" if ok else "FAIL" if ran else "SKIP"
        if status == "SKIP":  # nothing measured: only why, if the run said
            detail = said
        elif said:
            detail = f"{detail} ({said})"
        out.append({"id": t.id, "target": t.text, "op": t.op, "threshold": t.threshold,
                    "measured": None if value is None or math.isinf(value) else value,
                    "pass": bool(ok), "status": status, "paired_ratios": paired, "detail": detail})
    return out


# --------------------------------------------------------------------------- printing

def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 1e5:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def table_rows(ms: dict[str, Any]) -> list[list[str]]:
    rows = []
    for mid, m in ms.items():
        for s, st in m["systems"].items():
            spread = f"{_fmt(st['min'])}–{_fmt(st['max'])}" if st["n"] else "n/a"
            iqr = f"{_fmt(st['q1'])}–{_fmt(st['q3'])}" if st["n"] else "n/a"
            err = f" ({len(st['errors'])} failed)" if st["errors"] else ""
            rows.append([mid, s, _fmt(st["median"]), m["unit"], iqr, spread, f"{st['n']}{err}"])
    return rows


HEAD = ["measurement", "system", "median", "unit", "IQR", "min–max", "n"]


def text_table(ms: dict[str, Any]) -> str:
    rows = [HEAD, *table_rows(ms)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = []
    last = None
    for k, r in enumerate(rows):
        if k > 1 and r[0] != last:
            lines.append("")
        cells = [r[0] if r[0] != last or k == 0 else "", *r[1:]]
        lines.append("  ".join(c.ljust(w) if i < 2 or i == 3 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(cells, widths, strict=True))).rstrip())
        last = r[0]
    return "\n".join(lines)


def text_targets(ts: list[dict[str, Any]]) -> str:
    lines = []
    for t in ts:
        verdict = t["status"]
        if verdict == "SKIP":
            why = f" - {t['detail']}" if t["detail"] else ""
            lines.append(f"SKIP  {t['target']}: not measured in this run{why}")
            continue
        lines.append(f"{verdict}  {t['target']}: measured {_fmt(t['measured'])} (need {t['op']} {t['threshold']:g})"
                     f" - {t['detail']}")
    return "\n".join(lines)


def markdown(ms: dict[str, Any], ts: list[dict[str, Any]]) -> str:
    out = ["| target | measured | need | verdict | detail |", "| --- | --- | --- | --- | --- |"]
    for t in ts:
        out.append(f"| {t['target']} | {_fmt(t['measured'])} | {t['op']} {t['threshold']:g} | "
                   f"{t['status']} | {t['detail']} |")
    out += ["", "| " + " | ".join(HEAD) + " |", "|" + " --- |" * len(HEAD)]
    last = None
    for r in table_rows(ms):
        cells = [r[0] if r[0] != last else "", *r[1:]]
        out.append("| " + " | ".join(cells) + " |")
        last = r[0]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- chart

def chart(ms: dict[str, Any], ts: list[dict[str, Any]], raw: Raw, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("call_p50_us", "call p50 (µs, lower is better)", False),
              ("call_p99_us", "call p99 (µs)", False),
              ("submit_collect_jobs_per_s", "submit + collect (jobs/s, higher is better)", False),
              ("map_tiny_wall_s", "map 200k tiny items (s, log)", True),
              ("map_cpu_efficiency", "CPU-bound map efficiency", False),
              ("first_result_ms", "Pool() to first result (ms)", False),
              ("stop_ms", "leave `with` to all gone (ms)", False),
              ("worker_uss_mib", "idle worker USS (MiB)", False),
              ("main_globals_wall_s", "script with a 40 MB __main__ global: wall (s, log)", True),
              ("first_result_numpy_ms", "numpy imported: Pool() to first result (ms)", False),
              ("big_payload_round_trip_ms", "50 MB argument + result round trip (ms)", False)]
    fig, axes = plt.subplots(4, 4, figsize=(20, 16.5))
    flat = list(axes.flat)
    for ax, (mid, label, log) in zip(flat, panels, strict=False):
        m = ms.get(mid)
        ax.set_title(label, fontsize=10)
        if not m:
            ax.axis("off")
            continue
        names = [s for s in m["systems"] if m["systems"][s]["n"]]
        med = [m["systems"][s]["median"] for s in names]
        lo = [m["systems"][s]["median"] - m["systems"][s]["min"] for s in names]
        hi = [m["systems"][s]["max"] - m["systems"][s]["median"] for s in names]
        colors = ["#d98c00" if s == HONEYDEW else "#7a7a7a" if s == SERIAL else "#4c72b0" for s in names]
        ax.bar(range(len(names)), med, yerr=[lo, hi], color=colors, capsize=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace("ProcessPoolExecutor", "PPE") for n in names], rotation=30, fontsize=8)
        if log:
            ax.set_yscale("log")
    # tree USS
    ax = flat[11]
    m = ms.get("tree_uss_mib")
    ax.set_title("whole pool tree USS (MiB)", fontsize=10)
    if m:
        names = [s for s in m["systems"] if m["systems"][s]["n"]]
        ax.bar(range(len(names)), [m["systems"][s]["median"] for s in names],
               color=["#d98c00" if s == HONEYDEW else "#4c72b0" for s in names])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace("ProcessPoolExecutor", "PPE") for n in names], rotation=30, fontsize=8)
    else:
        ax.axis("off")
    # scale curve
    ax = flat[12]
    ax.set_title("honeydew enqueue rate vs pending jobs", fontsize=10)
    for k, e in enumerate(raw.get("scale", {}).get(HONEYDEW, [])):
        if e.get("ok"):
            segs = e["result"]["segments"]
            ax.plot([s["pending_before"] for s in segs], [s["rate"] for s in segs], marker=".", label=f"repeat {k + 1}")
    ax.set_xlabel("jobs pending before the segment")
    ax.set_ylabel("jobs/s")
    ax.set_ylim(bottom=0)
    if ax.lines:
        ax.legend(fontsize=8)
    # recovery
    ax = flat[13]
    ax.set_title("recovery after SIGKILL (ms)", fontsize=10)
    names = ["recovery_serving_ms", "recovery_rerun_done_ms"]
    vals = [_med(ms, n, HONEYDEW) or 0 for n in names]
    ax.bar([0, 1], vals, color="#d98c00")
    ax.axhline(50 + (_med(ms, "recovery_init_ms", HONEYDEW) or 0), color="red", ls="--", lw=1, label="50 ms + init")
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["serving", "re-run done"], fontsize=8)
    ax.legend(fontsize=8)
    # queue process USS with a small and a big __main__ global
    ax = flat[14]
    ax.set_title("honeydew queue process USS by __main__ global size (MiB)", fontsize=10)
    peaks = [_raw_median(raw, "main_globals", HONEYDEW, f"queue_uss_peak_{s}_mib") for s in ("small", "big")]
    finals = [_raw_median(raw, "main_globals", HONEYDEW, f"queue_uss_final_{s}_mib") for s in ("small", "big")]
    if None not in peaks and None not in finals:
        ax.bar([-0.2, 0.8], peaks, width=0.4, color="#d98c00", label="peak while the jobs run")
        ax.bar([0.2, 1.2], finals, width=0.4, color="#f2c27a", label="after the last job")
        ax.set_xticks([0, 1])
        ax.set_xticklabels([_mb(_raw_median(raw, "main_globals", HONEYDEW, "small_n")),
                            _mb(_raw_median(raw, "main_globals", HONEYDEW, "n"))], fontsize=8)
        ax.legend(fontsize=8)
    else:
        ax.axis("off")
    # targets
    ax = flat[15]
    ax.set_title("targets: measured / required (>= 1 passes)", fontsize=10)
    scores, labels, colors = [], [], []
    for t in ts:
        v = t["measured"]
        if v is None:
            s = 0.0
        elif t["op"] == "<=":  # a difference may be 0 or below (queue_uss_flat): the bar stops at 3
            s = t["threshold"] / max(v, t["threshold"] / 3)
        else:
            s = v / t["threshold"]
        scores.append(s)
        labels.append(t["id"])
        colors.append("#55a868" if t["pass"] else "#c44e52" if t["status"] == "FAIL" else "#bbbbbb")
    ax.barh(range(len(scores)), scores, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)
