"""Every metric the app stores, defined once: its label, unit and which direction is better.

Tables, CSV headers, comparisons and Pareto views read these; a metric missing here still
works (its key is its label, no unit, no direction).
"""

from __future__ import annotations

from dataclasses import dataclass

HIGHER = 1
LOWER = -1
NEITHER = 0


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    unit: str = ""
    better: int = NEITHER  # HIGHER, LOWER or NEITHER (counts, settings)


_SPECS = [
    MetricSpec("accuracy", "accuracy", "%", HIGHER),
    MetricSpec("balanced_accuracy", "balanced accuracy", "%", HIGHER),
    MetricSpec("macro_f1", "macro-F1", "", HIGHER),
    MetricSpec("weighted_f1", "weighted F1", "", HIGHER),
    MetricSpec("throughput_ips", "throughput", "images/s", HIGHER),
    MetricSpec("images_per_s", "evaluation speed", "images/s", HIGHER),
    MetricSpec("compression_ratio", "compression", "×", HIGHER),
    MetricSpec("latency_mean_ms", "mean latency", "ms", LOWER),
    MetricSpec("latency_p50_ms", "p50 latency", "ms", LOWER),
    MetricSpec("latency_p90_ms", "p90 latency", "ms", LOWER),
    MetricSpec("latency_p99_ms", "p99 latency", "ms", LOWER),
    MetricSpec("latency_std_ms", "latency std", "ms", NEITHER),
    MetricSpec("first_inference_ms", "first inference", "ms", LOWER),
    MetricSpec("load_time_s", "load time", "s", LOWER),
    MetricSpec("peak_memory_bytes", "peak memory (MLX)", "bytes", LOWER),
    MetricSpec("peak_rss_bytes", "peak memory (RSS)", "bytes", LOWER),
    MetricSpec("size_on_disk_bytes", "size on disk", "bytes", LOWER),
    MetricSpec("bits_per_weight", "bits per weight", "bits", LOWER),
    MetricSpec("perplexity", "perplexity", "", LOWER),
    MetricSpec("prompt_tps", "prompt speed", "tokens/s", HIGHER),
    MetricSpec("generation_tps", "generation speed", "tokens/s", HIGHER),
    MetricSpec("ttft_ms", "first token", "ms", LOWER),
]
SPECS: dict[str, MetricSpec] = {s.key: s for s in _SPECS}
# Families named by prefix (latency_p95_ms, peak_..., load_...) take their family's direction.
_PREFIXES = (("latency_", LOWER), ("peak_", LOWER), ("load_", LOWER), ("first_inference", LOWER))


def spec(key: str) -> MetricSpec:
    """The spec of ``key``; unknown metrics get their key as label and no direction."""
    if key in SPECS:
        return SPECS[key]
    for prefix, better in _PREFIXES:
        if key.startswith(prefix):
            return MetricSpec(key, key.replace("_", " "), "", better)
    return MetricSpec(key, key)


def direction(key: str) -> int:
    """+1 when larger is better, -1 when smaller is better, 0 when neither."""
    return spec(key).better


# Counts and sizes: stored as REAL in SQLite, written as integers (n=1000, not 1000.0).
INTEGER_METRICS = frozenset(
    {"n", "support", "params", "skipped", "tokens", "windows", "macs", "images", "calibration_images"}
)
_INTEGER_SUFFIXES = ("_bytes", "_count", "_tokens")


def as_written(key: str, value):
    """A stored value as exports write it: whole counts and byte sizes as integers, the rest raw."""
    if isinstance(value, float) and value.is_integer() and (key in INTEGER_METRICS or key.endswith(_INTEGER_SUFFIXES)):
        return int(value)
    return value
