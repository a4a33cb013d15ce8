"""Metric names, units and better-direction are defined once (engine.core.metrics) and compare uses them."""

from engine.core.metrics import HIGHER, LOWER, NEITHER, direction, spec
from engine.measure.compare import metric_direction


def test_directions_of_stored_metrics():
    assert direction("accuracy") == HIGHER and spec("accuracy").unit == "%"
    assert direction("latency_p50_ms") == LOWER and direction("latency_p95_ms") == LOWER  # family by prefix
    assert direction("latency_std_ms") == NEITHER  # spread is neither better nor worse
    assert direction("perplexity") == LOWER and direction("generation_tps") == HIGHER
    assert direction("params") == NEITHER and spec("params").label == "params"


def test_compare_reads_the_same_table():
    for key in ("accuracy", "size_on_disk_bytes", "latency_std_ms", "peak_rss_bytes", "n"):
        assert metric_direction(key) == direction(key)
