"""Pareto frontier and run comparison: hand-computed cases and a brute-force dominance reference."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.measure.compare import differing_keys, metric_deltas, metric_direction, pareto_front, variant_points
from engine.measure.results import RunRecord


def dominated_brute_force(i: int, xs, ys) -> bool:
    """Definition: some j is no worse on both (smaller x, larger y) and strictly better on one."""
    return any(
        (xs[j] <= xs[i] and ys[j] >= ys[i]) and (xs[j] < xs[i] or ys[j] > ys[i]) for j in range(len(xs)) if j != i
    )


def test_hand_computed_frontier_latency_vs_accuracy():
    # fp32 fastest and as accurate as int8 -> int8 dominated; int4 most accurate; int2 useless; fp16 slow.
    names = ["fp32", "fp16", "int8", "int4", "int2"]
    lat = [2.8, 7.1, 4.2, 4.3, 4.5]
    acc = [0.965, 0.965, 0.965, 0.970, 0.18]
    assert [names[i] for i in pareto_front(lat, acc)] == ["fp32", "int4"]


def test_directions_flip_the_frontier():
    xs, ys = [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]
    assert pareto_front(xs, ys) == [0, 1, 2]  # cheaper and worse, dearer and better: all trade-offs
    assert pareto_front(xs, ys, minimize_x=False) == [2]  # (3, 3) beats both others
    assert pareto_front(xs, ys, maximize_y=False) == [0]  # (1, 1) beats both others
    assert pareto_front(xs, ys, minimize_x=False, maximize_y=False) == [2, 1, 0]  # ordered best x first


def test_missing_values_never_on_the_frontier_and_duplicates_kept():
    xs = [1.0, None, 1.0, math.nan, 2.0]
    ys = [0.9, 0.99, 0.9, 1.0, 0.95]
    assert pareto_front(xs, ys) == [0, 2, 4]
    with pytest.raises(ValueError):
        pareto_front([1.0], [1.0, 2.0])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6)),  # small ranges force ties
        min_size=0,
        max_size=25,
    )
)
def test_frontier_matches_brute_force_dominance(points):
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    front = pareto_front(xs, ys)
    expected = {i for i in range(len(xs)) if not dominated_brute_force(i, xs, ys)}
    assert set(front) == expected
    assert [xs[i] for i in front] == sorted(xs[i] for i in front)  # ordered by x


def test_metric_deltas_hand_values():
    a = {"accuracy": 0.96, "latency_p50_ms": 4.0, "only_a": 1.0}
    b = {"accuracy": 0.90, "latency_p50_ms": 2.0, "only_b": 5.0, "bad": math.nan}
    d = {x.metric: x for x in metric_deltas(a, b)}
    assert list(d) == ["accuracy", "latency_p50_ms", "only_a", "only_b", "bad"]
    assert d["accuracy"].delta == pytest.approx(-0.06)
    assert d["latency_p50_ms"].ratio == pytest.approx(0.5)
    assert d["only_a"].b is None and d["only_a"].delta is None
    assert d["only_b"].a is None and d["only_b"].ratio is None
    assert d["bad"].b is None
    assert metric_direction("accuracy") == 1
    assert metric_direction("latency_p99_ms") == -1
    assert metric_direction("size_on_disk_bytes") == -1
    assert metric_direction("params") == 0
    assert differing_keys({"device": "cpu", "mlx": "0.32"}, {"device": "gpu", "mlx": "0.32", "x": 1}) == ["device", "x"]


def test_variant_points_join_runs_of_one_model_by_hash_and_keep_batch_sizes_apart():
    ev = RunRecord("evaluate", "m-int4", {"accuracy": 0.9}, model_hash="h1", recipe="int4", id=1)
    bm1 = RunRecord("benchmark", "m-int4", {"latency_p50_ms": 3.0, "batch_size": 1.0}, model_hash="h1", id=2)
    bm64 = RunRecord("benchmark", "m-int4", {"latency_p50_ms": 90.0, "batch_size": 64.0}, model_hash="h1", id=3)
    newer = RunRecord("evaluate", "m-int4", {"accuracy": 0.91}, model_hash="h1", recipe="int4", id=4)
    other = RunRecord("sweep", "m", {"accuracy": 0.95, "latency_p50_ms": 2.0, "batch_size": 1.0}, model_hash="h0", id=5)
    points = {p.model_hash: p for p in variant_points([newer, bm64, other, bm1, ev])}
    assert points["h1"].metrics == {"accuracy": 0.91, "latency_p50_ms": 3.0, "batch_size": 1.0}
    assert points["h1"].run_ids == (1, 2, 4)
    assert points["h1"].recipe == "int4"
    assert points["h0"].metrics["accuracy"] == 0.95
    any_batch = {p.model_hash: p for p in variant_points([ev, bm1, bm64], batch_size=None)}
    assert any_batch["h1"].metrics["latency_p50_ms"] == 90.0
