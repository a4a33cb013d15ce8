"""The benchmark harness: statistics, forced evaluation, cancellation, cold loads, memory and sizes."""

from __future__ import annotations

import mmap
import os
import statistics
import sys
import threading
import time

import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from engine.core.errors import Cancelled
from engine.image.benchmark import BenchmarkSettings, run_benchmark
from engine.image.bundle import load_bundle
from engine.image.coldload import bundle_files, cold_load, evict_page_cache, resident_fraction
from engine.jobs.image import BenchmarkJob, QuantizeJob
from engine.measure.environment import rss_bytes
from engine.measure.memory import MemorySampler
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("default")


def test_statistics_match_the_standard_library(bundle):
    seen = []
    r = run_benchmark(bundle, BenchmarkSettings(batch_size=2, iters=12, warmup=1), on_sample=seen.append)
    lat = list(r.latencies_ms)
    s = r.summary()
    assert len(lat) == 12 and [x.latency_ms for x in seen] == lat  # every timed iteration streamed
    assert s["latency_mean_ms"] == pytest.approx(statistics.fmean(lat))
    assert s["latency_std_ms"] == pytest.approx(statistics.stdev(lat))
    assert s["latency_min_ms"] == min(lat)
    q = statistics.quantiles(lat, n=100, method="inclusive")  # numpy's linear percentile
    assert s["latency_p50_ms"] == pytest.approx(statistics.median(lat))
    assert s["latency_p90_ms"] == pytest.approx(q[89])
    assert s["latency_p99_ms"] == pytest.approx(q[98])
    assert s["throughput_ips"] == pytest.approx(2 / (statistics.fmean(lat) / 1000))
    # The loop's wall time covers the timed regions; the remainder is the harness's own cost.
    assert 1000 * r.loop_seconds >= sum(lat)
    assert 0 <= s["harness_overhead_ms"] < s["latency_p50_ms"]
    assert s["peak_memory_bytes"] > 0 and s["peak_rss_bytes"] >= max(x.rss for x in seen)


def test_each_iteration_is_evaluated_inside_the_timed_region(bundle, monkeypatch):
    """mx.eval runs between the two clock reads of every iteration (lazy work cannot escape)."""
    import mlx.core as mx

    import engine.image.benchmark as harness

    events = []
    real_eval, real_clock = mx.eval, time.perf_counter
    monkeypatch.setattr(harness.mx, "eval", lambda *a: (events.append("eval"), real_eval(*a))[1])
    monkeypatch.setattr(harness.time, "perf_counter", lambda: (events.append("clock"), real_clock())[1])
    run_benchmark(bundle, BenchmarkSettings(iters=3, warmup=0))
    timed = "".join("c" if e == "clock" else "e" for e in events)
    # input eval, first inference (c e c), then loop start c and per iteration (c e c), then the loop end c.
    assert timed.endswith("c" + "cec" * 3 + "c")


def test_cancel_from_another_thread_stops_within_one_iteration(bundle):
    """At most the iteration already running when the flag is set completes after it."""
    stop = threading.Event()
    after = []

    def on_sample(s):
        if stop.is_set():
            after.append(s.index)

    timer = threading.Timer(0.05, stop.set)
    timer.start()
    try:
        with pytest.raises(Cancelled):
            run_benchmark(
                bundle, BenchmarkSettings(iters=100000, warmup=0), on_sample=on_sample, should_stop=stop.is_set
            )
    finally:
        timer.cancel()
    assert len(after) <= 1


def test_cold_load_reads_from_disk_not_a_cache(tmp_path):
    ws = Workspace(ResultsStore(tmp_path / "r.sqlite3"))
    cached = ws.bundle("default")
    for f in bundle_files(cached.path):  # make sure the files are in the page cache
        f.read_bytes()
    bundle, load = cold_load(ws, "default")
    assert bundle is not cached  # the workspace's copy was dropped and the bundle rebuilt
    assert load.seconds > 0 and load.peak_memory > 0 and load.peak_rss > 0
    assert len(load.timeline) >= 2 and all(p.rss > 0 for p in load.timeline)
    if sys.platform.startswith("linux"):
        assert load.page_cache_evicted
        assert load.resident_fraction == pytest.approx(0.0, abs=0.05)  # measured with mincore before the load
        assert resident_fraction(bundle_files(bundle.path)) == pytest.approx(1.0)  # and the load read them back


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-cache residency is measured with mincore")
def test_page_cache_eviction_and_residency(tmp_path):
    f = tmp_path / "blob.bin"
    with open(f, "wb") as fh:
        fh.write(os.urandom(1 << 20))
        fh.flush()
        os.fsync(fh.fileno())  # dirty pages are not evicted
    f.read_bytes()
    assert resident_fraction([f]) == pytest.approx(1.0)
    assert evict_page_cache([f])
    assert resident_fraction([f]) < 0.05
    f.read_bytes()
    assert resident_fraction([f]) == pytest.approx(1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status as the reference")
def test_rss_matches_the_kernels_figure():
    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return int(next(x for x in f if x.startswith(key + ":")).split()[1])

    # statm and status both read the kernel's RSS counters, which Linux keeps per thread and folds
    # in lazily (up to 64 pages a thread), so in a process with many threads (torch's pool, a
    # prefetching loader) two reads may differ by that much without anything moving.
    slack = max(1 << 20, status("Threads") * 64 * os.sysconf("SC_PAGE_SIZE"))
    for _ in range(20):
        before = status("VmRSS") * 1024
        ours = rss_bytes()
        after = status("VmRSS") * 1024
        if abs(after - before) <= slack:
            break
    assert min(before, after) - slack <= ours <= max(before, after) + slack
    # 64 MiB of fresh pages, touched: RSS must follow. (An mmap, not np.ones: in a process that
    # freed that much before, malloc reuses pages that are resident already.)
    blob = mmap.mmap(-1, 64 << 20)
    np.frombuffer(blob, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
    deadline = time.monotonic() + 2.0
    while rss_bytes() - ours <= 48 << 20 and time.monotonic() < deadline:
        time.sleep(0.01)  # the thread's pending counter updates are folded in when it is switched out
    assert rss_bytes() - ours > 48 << 20
    blob.close()


def test_memory_sampler_timeline():
    with MemorySampler(interval_s=0.001) as s:
        time.sleep(0.03)
    pts = s.points
    assert len(pts) >= 3
    assert [p.t_ms for p in pts] == sorted(p.t_ms for p in pts)
    assert s.peak_rss == max(p.rss for p in pts) > 0


def test_benchmark_job_records_size_bits_and_compression_against_the_float_model(tmp_path):
    ws = Workspace(ResultsStore(tmp_path / "r.sqlite3"))
    q = QuantizeJob("default", "int4", str(tmp_path / "int4"), store=False).run(JobContext(), ws)
    out = BenchmarkJob(q.path, BenchmarkSettings(iters=3, warmup=0)).run(JobContext(), ws)
    s = out.result.summary()

    def disk(d):
        return sum(p.stat().st_size for p in os.scandir(d) if p.is_file())

    float_size = disk(load_bundle("default").path)
    assert s["size_on_disk_bytes"] == disk(q.path)
    assert s["compression_ratio"] == pytest.approx(float_size / disk(q.path))
    # The default model has 95,274 parameters; quantization folds its BatchNorms into the convs.
    bn = sum(
        v.size
        for _, m in load_bundle("default").model.named_modules()
        if isinstance(m, nn.BatchNorm)
        for _, v in tree_flatten(m.parameters())
    )
    # Each folded BatchNorm (4 arrays per channel) leaves one bias per channel on its conv.
    assert bn > 0 and s["params"] == 95274 - bn + bn // 4
    assert 4 < s["bits_per_weight"] < 6  # 4-bit codes plus float32 scale and bias per 64 weights
    assert s["load_time_s"] > 0 and s["first_inference_ms"] > 0
    rec = ws.store.get(out.record.id)
    assert rec.settings["cold_load"] is True and "page_cache_evicted" in rec.settings
    assert rec.environment["mlx_version"] and rec.environment["device"] and rec.environment["machine"]
    assert len(rec.samples) == 3
