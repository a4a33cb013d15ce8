"""The benchmark harness: warm-up, timed iterations with forced evaluation, memory.

Each iteration runs the forward pass and ``mx.eval`` on its output, so lazy
evaluation never moves work out of the timed region.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.bundle import ModelBundle
from engine.image.coldload import LoadMeasurement
from engine.image.model_card import model_card
from engine.measure.environment import environment, peak_rss_bytes, rss_bytes


@dataclass(frozen=True)
class BenchmarkSettings:
    batch_size: int = 1
    iters: int = 50
    warmup: int = 5
    seed: int = 0

    def validate(self) -> BenchmarkSettings:
        if not 1 <= self.batch_size <= 4096:
            raise UserError(f"batch size must be between 1 and 4096, not {self.batch_size}")
        if not 1 <= self.iters <= 1_000_000:
            raise UserError(f"iterations must be at least 1, not {self.iters}")
        if self.warmup < 0:
            raise UserError(f"warm-up iterations must be 0 or more, not {self.warmup}")
        return self


@dataclass(frozen=True)
class IterationSample:
    """One timed iteration, streamed to the GUI while the run goes."""

    index: int
    latency_ms: float
    active_memory: int
    rss: int


def percentile(values: np.ndarray, q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    return float(np.percentile(values, q)) if len(values) else math.nan


@dataclass(frozen=True)
class BenchmarkResult:
    model_name: str
    recipe: str
    model_hash: str
    settings: BenchmarkSettings
    latencies_ms: tuple[float, ...]
    samples: tuple[IterationSample, ...]
    first_inference_ms: float
    load_time_s: float | None
    peak_memory: int  # MLX's peak from the first inference on
    peak_rss: int  # largest RSS sampled during the run
    size_on_disk: int | None
    params: int
    bits_per_weight: float
    float_bytes: int  # the float model's size, for the compression ratio
    environment: dict = field(default_factory=dict)
    # Wall time of the whole timed loop; minus the timed regions it is the harness's own cost.
    loop_seconds: float = math.nan
    load: LoadMeasurement | None = None
    process_peak_rss: int = 0  # the process's lifetime peak (includes everything before this run)

    @property
    def harness_overhead_ms(self) -> float:
        """Mean time per iteration spent outside the timed region (sampling, callbacks)."""
        if not self.latencies_ms or math.isnan(self.loop_seconds):
            return math.nan
        return (1000.0 * self.loop_seconds - sum(self.latencies_ms)) / len(self.latencies_ms)

    def summary(self) -> dict[str, float]:
        lat = np.asarray(self.latencies_ms)
        p50 = percentile(lat, 50)
        out = {
            "batch_size": float(self.settings.batch_size),
            "iters": float(len(lat)),
            "latency_mean_ms": float(lat.mean()),
            "latency_std_ms": float(lat.std(ddof=1)) if len(lat) > 1 else 0.0,
            "latency_min_ms": float(lat.min()),
            "latency_p50_ms": p50,
            "latency_p90_ms": percentile(lat, 90),
            "latency_p99_ms": percentile(lat, 99),
            "throughput_ips": float(self.settings.batch_size / (lat.mean() / 1000.0)),
            "first_inference_ms": self.first_inference_ms,
            "peak_memory_bytes": float(self.peak_memory),
            "peak_rss_bytes": float(self.peak_rss),
            "params": float(self.params),
            "bits_per_weight": self.bits_per_weight,
            "harness_overhead_ms": self.harness_overhead_ms,
            "process_peak_rss_bytes": float(self.process_peak_rss),
        }
        if self.load_time_s is not None:
            out["load_time_s"] = self.load_time_s
        if self.load is not None:
            out["load_peak_memory_bytes"] = float(self.load.peak_memory)
            out["load_peak_rss_bytes"] = float(self.load.peak_rss)
        if self.size_on_disk is not None:
            out["size_on_disk_bytes"] = float(self.size_on_disk)
            out["compression_ratio"] = self.float_bytes / self.size_on_disk if self.size_on_disk else math.nan
            out["float_reference_bytes"] = float(self.float_bytes)
        return out


def benchmark_input(bundle: ModelBundle, batch_size: int, seed: int = 0) -> np.ndarray:
    """A fixed-seed float32 batch of the model's input shape (content does not affect speed)."""
    h, w = bundle.preprocessing.input_size
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch_size, h, w, bundle.preprocessing.channels)).astype(np.float32)


def float_reference_bytes(bundle: ModelBundle, params: int) -> int:
    """Size the compression ratio is taken against: the float parent bundle when known.

    A float32 bundle is its own reference; a variant made by quantizing a
    bundle still on disk uses that bundle's size; otherwise 4 bytes a parameter.
    """
    if bundle.recipe_name == "fp32" and bundle.size_on_disk():
        return int(bundle.size_on_disk())
    parent = bundle.source.get("parent") if bundle.source else None
    if parent:
        from pathlib import Path

        p = Path(parent)
        if p.is_dir():
            return sum(f.stat().st_size for f in p.iterdir() if f.is_file())
    return 4 * params


def run_benchmark(
    bundle: ModelBundle,
    settings: BenchmarkSettings,
    load_time_s: float | None = None,
    on_sample: Callable[[IterationSample], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    load: LoadMeasurement | None = None,
) -> BenchmarkResult:
    """Time ``settings.iters`` forward passes after ``settings.warmup`` untimed ones.

    Only the forward pass and its ``mx.eval`` sit between the two clock reads;
    sampling memory, callbacks and progress happen outside the timed region,
    and their cost is measured too (``harness_overhead_ms``).

    Args:
        bundle: the model; it runs in its own compute dtype.
        settings: batch size, iterations, warm-up.
        load_time_s: cold load time measured by the caller, recorded as is.
        on_sample: called after every timed iteration (the GUI throttles it).
        progress: (fraction, message), at most every 1 % of the iterations.
        should_stop: polled every iteration; Cancelled is raised within one iteration.
        load: the cold load measurement, when the caller made one (its seconds win
            over ``load_time_s``).

    Raises:
        Cancelled: should_stop() turned true.
    """
    settings.validate()
    if load is not None:
        load_time_s = load.seconds
    x = mx.array(benchmark_input(bundle, settings.batch_size, settings.seed))
    mx.eval(x)
    mx.reset_peak_memory()
    forward = bundle.forward
    clock = time.perf_counter

    t0 = clock()
    mx.eval(forward(x))
    first_ms = (clock() - t0) * 1000.0

    for i in range(settings.warmup):
        if should_stop is not None and should_stop():
            raise Cancelled()
        mx.eval(forward(x))
        if progress is not None:
            progress(0.0, f"warm-up {i + 1}/{settings.warmup}")

    n = settings.iters
    report_every = max(1, n // 100)
    latencies: list[float] = []
    samples: list[IterationSample] = []
    loop_start = clock()
    for i in range(n):
        if should_stop is not None and should_stop():
            raise Cancelled()
        t0 = clock()
        mx.eval(forward(x))
        dt = (clock() - t0) * 1000.0
        latencies.append(dt)
        sample = IterationSample(i, dt, mx.get_active_memory(), rss_bytes())
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)
        if progress is not None and ((i + 1) % report_every == 0 or i + 1 == n):
            progress((i + 1) / n, f"iteration {i + 1}/{n}: {dt:.2f} ms")
    loop_seconds = clock() - loop_start

    card = model_card(bundle)
    return BenchmarkResult(
        model_name=bundle.name,
        recipe=bundle.recipe_name,
        model_hash=bundle.content_hash(),
        settings=settings,
        latencies_ms=tuple(latencies),
        samples=tuple(samples),
        first_inference_ms=first_ms,
        load_time_s=load_time_s,
        peak_memory=int(mx.get_peak_memory()),
        peak_rss=max([rss_bytes(), *(s.rss for s in samples)]),
        size_on_disk=bundle.size_on_disk(),
        params=card.params,
        bits_per_weight=card.bits_per_weight,
        float_bytes=float_reference_bytes(bundle, card.params),
        environment=environment(),
        loop_seconds=loop_seconds,
        load=load,
        process_peak_rss=peak_rss_bytes(),
    )
