"""Shared bits of the bench scripts: a model by architecture name, a bare timing loop, formatting."""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def model_bundle(model: str | None, arch: str | None, input_size: int | None, num_classes: int | None, seed: int = 0):
    """A saved bundle (``model``) or a freshly initialised ``arch`` wrapped as a bundle (never saved)."""
    import mlx.core as mx

    from engine.image.bundle import ModelBundle, load_bundle
    from engine.image.models import registry

    if model:
        return load_bundle(model)
    spec = registry.get(arch)
    overrides = {"num_classes": num_classes} if num_classes else {}
    config = spec.default_config(**overrides)
    mx.random.seed(seed)
    net = spec.build(config)
    net.eval()
    mx.eval(net.parameters())
    prep = spec.default_preprocessing
    if input_size:
        prep = dataclasses.replace(prep, input_size=(input_size, input_size))
    labels = [str(i) for i in range(num_classes or config.get("num_classes", 10))]
    return ModelBundle(f"{arch}-random", arch, config, prep, labels, net)


def bare_loop(fn, x, iters: int) -> tuple[list[float], float]:
    """The least a timing loop can do: clock, forward + eval, clock. Returns (ms per iteration, wall seconds)."""
    import mlx.core as mx

    clock = time.perf_counter
    lat = []
    start = clock()
    for _ in range(iters):
        t0 = clock()
        mx.eval(fn(x))
        lat.append((clock() - t0) * 1000.0)
    return lat, clock() - start


def median(values) -> float:
    return statistics.median(values)


def pct(a: float, b: float) -> str:
    """(a - b) / b as a signed percentage."""
    return f"{100.0 * (a - b) / b:+.2f} %"
