"""The benchmark harness cannot rot: run its tiny smoke version and check what it writes.

No timing assertion here (speed lives in ``make bench`` and docs/performance.md): only that a run
completes, measures every measurement for honeydew and every peer, evaluates every target, and
writes the JSON, the Markdown table and the chart.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

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
    assert set(EXPECTED) <= set(metrics), f"missing measurements: {set(EXPECTED) - set(metrics)}"
    for name, systems in EXPECTED.items():
        got = metrics[name]["systems"]
        assert set(got) == systems, f"{name}: systems {sorted(got)}, expected {sorted(systems)}"
        for system, stats in got.items():
            assert not stats["errors"], f"{name} / {system} failed: {stats['errors']}"
            assert stats["n"] >= 1 and stats["median"] is not None, f"{name} / {system}: no value"
            assert stats["min"] <= stats["median"] <= stats["max"]


@pytest.mark.timeout(180)
def test_every_target_is_evaluated_and_printed(smoke: tuple[dict, Path, str]) -> None:
    doc, _, stdout = smoke
    targets = {t["id"]: t for t in doc["targets"]}
    assert set(targets) == TARGETS
    for t in targets.values():
        assert isinstance(t["pass"], bool) and t["status"] in ("PASS", "FAIL")
        assert t["measured"] is not None, f"target {t['id']} was not measured: {t['detail']}"
        assert ("PASS  " + t["target"]) in stdout or ("FAIL  " + t["target"]) in stdout


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
