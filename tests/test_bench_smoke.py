"""The benchmark harness cannot rot: run its tiny smoke version and check what it writes.

No timing assertion here (speed lives in ``make bench`` and docs/performance.md): only that a run
completes, measures every measurement for honeydew and every peer, evaluates every target, and
writes the JSON, the Markdown table and the chart.  The RabbitMQ measurement needs the broker:
without one it is skipped, saying why (a failure when ``CI=true``: CI starts RabbitMQ), and it
leaves no queue behind.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

PEERS = {"mp.Pool", "ProcessPoolExecutor", "loky", "pebble", "mpire"}
EVERYONE = {"honeydew", *PEERS}
DURABLE = {"honeydew", "huey"} if importlib.util.find_spec("huey") else {"honeydew"}

#: measurement -> the systems it must have (the issue's list; honeydew-only ones have no peer)
EXPECTED = {
    "call_p50_us": EVERYONE,
    "call_p99_us": EVERYONE,
    "call_cpu_us": EVERYONE,
    "floor_2hop_p50_us": {"raw-pipes"},
    "floor_3hop_p50_us": {"raw-pipes"},
    "floor_3hop_p99_us": {"raw-pipes"},
    "submit_collect_jobs_per_s": EVERYONE,
    "submit_collect_cpu_us_per_job": EVERYONE,
    "fire_and_forget_jobs_per_s": {"honeydew", "mp.Pool"},
    "map_tiny_wall_s": EVERYONE,
    "map_tiny_items_per_s": EVERYONE,
    "map_cpu_wall_s": EVERYONE | {"serial", "raw-pipes"},
    "map_cpu_efficiency": EVERYONE | {"raw-pipes"},
    "first_result_ms": EVERYONE,
    "stop_ms": EVERYONE,
    "recovery_serving_ms": {"honeydew"},
    "recovery_rerun_done_ms": {"honeydew"},
    "recovery_init_ms": {"honeydew"},
    "recovery_jobs_lost": {"honeydew"},
    "worker_uss_mib": EVERYONE,
    "monitor_uss_mib": {"honeydew"},
    "tree_uss_mib": EVERYONE,
    "enqueue_rate_low": {"honeydew"},
    "enqueue_rate_high": {"honeydew"},
    "bytes_per_pending_job": {"honeydew"},
    "main_globals_wall_s": {"honeydew", "mp.Pool", "ProcessPoolExecutor"},
    "queue_uss_growth_mib": {"honeydew"},
    "first_result_numpy_ms": {"honeydew", "mp.Pool", "ProcessPoolExecutor"},
    "big_payload_round_trip_ms": {"honeydew", "mp.Pool", "ProcessPoolExecutor"},
    "durable_jobs_per_s_1t": DURABLE,
    "durable_jobs_per_s_8t": DURABLE,
    "durable_cast_p50_us": DURABLE,
}
TARGETS = {"call_p50", "call_p99", "submit_vs_mp", "submit_vs_ppe", "map_tiny", "cpu_efficiency", "first_result",
           "recovery", "scale", "worker_uss", "main_globals", "queue_uss_flat", "first_result_numpy", "big_payload",
           "durable_8t", "durable_1t"}
BROKER_TARGETS = {"rmq_8t_vs_dramatiq", "rmq_8t_vs_dramatiq_noconfirm", "rmq_1t_vs_pika", "rmq_call_p50"}


@functools.cache
def broker() -> dict[str, str]:
    """What the rabbitmq measurement can run here: '' or why not, for the broker, honeydew's side,
    Dramatiq and its Redis result backend."""
    from benchmarks import broker_trials, systems
    return {"broker": broker_trials.broker_missing(), "honeydew": broker_trials.honeydew_missing(),
            "dramatiq": "" if systems.HAVE_DRAMATIQ else "dramatiq is not installed",
            "redis": broker_trials.redis_missing()}


def broker_expected() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """The rabbitmq measurement's metrics -> the systems they must have, and the (metric, system)
    pairs that may hold no value (Dramatiq's send + get_result without Redis)."""
    why = broker()
    if why["broker"]:
        return {}, set()
    queues = {"honeydew"} if not why["honeydew"] else set()
    dramatiq = {"dramatiq"} if not why["dramatiq"] else set()
    expected = {name: queues | dramatiq for name in ("rmq_jobs_per_s_1t", "rmq_jobs_per_s_8t", "rmq_cast_p50_us",
                                                     "rmq_call_p50_us", "rmq_call_p99_us")}
    expected |= {name: dramatiq for name in ("rmq_jobs_per_s_1t_noconfirm", "rmq_jobs_per_s_8t_noconfirm",
                                             "rmq_call_p50_us_noconfirm") if dramatiq}
    for t in ("quorum", "classic"):
        expected |= {f"rmq_pika_publish_per_s_{t}": {"pika"}, f"rmq_pika_round_trip_p50_us_{t}": {"pika"},
                     f"rmq_pika_round_trip_p99_us_{t}": {"pika"}, f"rmq_pika_round_trip_noconfirm_p50_us_{t}": {"pika"}}
    expected |= {f"rmq_pika_drain_per_s_{n}t": {"pika"} for n in (1, 8)}
    empty = {(name, "dramatiq") for name in ("rmq_call_p50_us", "rmq_call_p99_us", "rmq_call_p50_us_noconfirm")
             } if dramatiq and why["redis"] else set()
    return {k: v for k, v in expected.items() if v}, empty


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    pytest.importorskip("loky", reason="the bench extra is not installed (make bench installs it)")
    pytest.importorskip("pebble")
    pytest.importorskip("mpire")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--repeats", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, f"the smoke run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((out / "results.json").read_text()), out, proc.stdout


@pytest.mark.timeout(180)
def test_every_measurement_has_every_system(smoke: tuple[dict, Path, str]) -> None:
    doc, _, _ = smoke
    metrics = doc["metrics"]
    on_broker, may_be_empty = broker_expected()
    expected = EXPECTED | on_broker
    assert set(expected) <= set(metrics), f"missing measurements: {set(expected) - set(metrics)}"
    for name, systems in expected.items():
        got = metrics[name]["systems"]
        assert set(got) == systems, f"{name}: systems {sorted(got)}, expected {sorted(systems)}"
        for system, stats in got.items():
            if (name, system) in may_be_empty:
                continue
            assert not stats["errors"], f"{name} / {system} failed: {stats['errors']}"
            assert stats["n"] >= 1 and stats["median"] is not None, f"{name} / {system}: no value"
            assert stats["min"] <= stats["median"] <= stats["max"]


@pytest.mark.timeout(180)
def test_every_target_is_evaluated_and_printed(smoke: tuple[dict, Path, str]) -> None:
    doc, _, stdout = smoke
    targets = {t["id"]: t for t in doc["targets"]}
    assert set(targets) == TARGETS | BROKER_TARGETS
    why = broker()
    for t in targets.values():
        if t["id"] in BROKER_TARGETS and (why["broker"] or why["honeydew"] or why["dramatiq"]):
            # not measured here: SKIP, saying why (pika alone would do for one, but they go together)
            if why["broker"] or why["honeydew"]:
                assert t["status"] == "SKIP" and t["detail"], t
                assert ("SKIP  " + t["target"]) in stdout
            continue
        assert isinstance(t["pass"], bool) and t["status"] in ("PASS", "FAIL")
        assert t["measured"] is not None, f"target {t['id']} was not measured: {t['detail']}"
        assert ("PASS  " + t["target"]) in stdout or ("FAIL  " + t["target"]) in stdout


@pytest.mark.timeout(180)
def test_the_broker_measurement_ran_or_says_why(smoke: tuple[dict, Path, str]) -> None:
    """Without a broker the rabbitmq measurement is skipped with the reason (a failure under CI,
    which starts RabbitMQ); without honeydew's RabbitMQ queue the peers run alone, and the results
    say so; every queue the run declared is gone from the broker afterwards."""
    doc, _, stdout = smoke
    why = broker()
    meta = doc["meta"]
    if why["broker"]:
        assert not IN_CI, f"the rabbitmq measurement needs RabbitMQ under CI: {why['broker']}"
        assert "no RabbitMQ broker" in meta["skipped"]["rabbitmq"] and "rabbitmq: skipped:" in stdout
        assert "rabbitmq" not in doc["raw"]
        pytest.skip(why["broker"])
    assert "rabbitmq" not in meta["skipped"]
    ran = set(doc["raw"]["rabbitmq"])
    if why["honeydew"]:
        assert "honeydew" not in ran and "the peers ran alone" in meta["notes"]["rabbitmq"]
    else:
        assert "honeydew" in ran
    assert "pika" in ran
    from benchmarks import broker_trials
    prefix = meta["broker_queue_prefix"]
    assert prefix.startswith(broker_trials.PREFIX)
    left = broker_trials.broker_queues(prefix)
    assert not left, f"queues left on the broker by the run: {left}"  # (None: no rabbitmqctl here to ask)


@pytest.mark.timeout(180)
def test_results_files_and_run_facts(smoke: tuple[dict, Path, str]) -> None:
    doc, out, _ = smoke
    assert (out / "results.png").stat().st_size > 10_000
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target |" in (out / "results.md").read_text()
    meta = doc["meta"]
    assert meta["smoke"] is True and meta["workers"] == 2
    assert meta["machine"]["nproc"] and meta["machine"]["python"]
    assert meta["honeydew_start_methods"] == ["fork"]  # hosts are single-threaded, like a user's script
    # the recovery trial really killed a worker and the job really ran again on its replacement
    for entry in doc["raw"]["recovery"]["honeydew"]:
        assert entry["result"]["rerun_on_replacement"] and entry["result"]["rerun_deliveries"] == 2
    # the script trials ran their scripts at the smoke sizes; honeydew's timed run had no USS sampler,
    # and its two sampled runs read the queue's USS while the jobs ran (peak >= what was read last)
    sizes = meta["sizes"]
    for system, entries in doc["raw"]["main_globals"].items():
        for entry in entries:
            assert entry["result"]["n"] == sizes["main_globals"]["n"], system
            assert entry["result"]["sampled"] is False, system
    for entry in doc["raw"]["main_globals"]["honeydew"]:
        r = entry["result"]
        assert r["small_n"] == sizes["main_globals"]["n_small"]
        assert r["honeydew_file"].endswith("honeydew/__init__.py")
        for size in ("small", "big"):
            assert r[f"uss_samples_{size}"] >= 2, size
            assert r[f"queue_uss_peak_{size}_mib"] >= r[f"queue_uss_final_{size}_mib"] > 0, size
        assert r["queue_uss_growth_mib"] == pytest.approx(r["queue_uss_peak_big_mib"] - r["queue_uss_peak_small_mib"])
    for entries in doc["raw"]["big_payload"].values():
        for entry in entries:
            assert entry["result"]["bytes"] == sizes["big_payload"]["bytes"]
            assert len(entry["result"]["samples_ms"]) == sizes["big_payload"]["round_trips"]
    assert meta["honeydew_script_start_methods"]
