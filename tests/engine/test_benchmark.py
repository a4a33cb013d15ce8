"""Benchmark harness: record fields, statistics and cancellation."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import Cancelled, UserError
from engine.image.benchmark import BenchmarkSettings, run_benchmark
from engine.image.bundle import load_bundle
from engine.jobs.image import BenchmarkJob
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace


def test_benchmark_record_fields_and_statistics(default_bundle_path):
    bundle = load_bundle(default_bundle_path)
    seen = []
    res = run_benchmark(bundle, BenchmarkSettings(batch_size=2, iters=12, warmup=2), on_sample=seen.append)
    lat = np.asarray(res.latencies_ms)
    s = res.summary()
    assert len(lat) == 12 and len(seen) == 12 and [x.index for x in seen] == list(range(12))
    assert s["latency_mean_ms"] == pytest.approx(lat.mean())
    assert s["latency_p50_ms"] == pytest.approx(np.median(lat))
    assert s["latency_p90_ms"] == pytest.approx(np.percentile(lat, 90))
    assert s["latency_p99_ms"] == pytest.approx(np.percentile(lat, 99))
    assert s["latency_min_ms"] <= s["latency_p50_ms"] <= s["latency_p99_ms"]
    assert s["throughput_ips"] == pytest.approx(2 / (lat.mean() / 1000))
    assert s["peak_rss_bytes"] > 0 and s["peak_memory_bytes"] > 0
    assert s["size_on_disk_bytes"] == sum(f.stat().st_size for f in default_bundle_path.iterdir())
    assert s["params"] == 95274
    assert s["bits_per_weight"] == pytest.approx(32.0)
    assert s["compression_ratio"] == pytest.approx(1.0)
    assert res.environment["mlx_version"] and res.environment["device"]


def test_benchmark_cancels_within_one_iteration(default_bundle_path):
    bundle = load_bundle(default_bundle_path)
    seen = []
    stop_after = 3
    with pytest.raises(Cancelled):
        run_benchmark(
            bundle,
            BenchmarkSettings(iters=1000, warmup=0),
            on_sample=seen.append,
            should_stop=lambda: len(seen) >= stop_after,
        )
    assert len(seen) == stop_after


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"iters": 0}, {"warmup": -1}])
def test_impossible_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        BenchmarkSettings(**kwargs).validate()


def test_benchmark_job_stores_samples_and_cold_load(default_bundle_path, tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite3")
    out = BenchmarkJob("default", BenchmarkSettings(iters=5, warmup=1)).run(JobContext(), Workspace(store))
    rec = store.get(out.record.id)
    assert rec.kind == "benchmark" and rec.recipe == "fp32"
    assert len(rec.samples) == 5
    assert rec.metrics["load_time_s"] > 0
    assert rec.model_hash == out.result.model_hash
