"""Per-layer quantization sensitivity of a language model, and a bit-budget search.

Sensitivity of a layer to a format = the mean KL divergence KL(p_float ‖ p_quant)
of the next-token distributions over a text sample when that layer alone is
quantized to that format (the rest stays float). The budget search
(:func:`allocate`) is model-agnostic: it takes a cost table
``{layer: {format_label: cost}}``, each layer's weight count and each format's
bits per weight, and greedily upgrades the layer whose upgrade buys the largest
cost reduction per extra bit until the average bits per weight would exceed the
budget. Costs of different layers are treated as additive, the usual first-order
assumption (HAWQ, llama.cpp's importance-guided mixes).
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.quant.formats import LayerSpec, quantized_spec
from engine.image.quant.recipes import Recipe
from engine.llm.loader import LanguageModel

DEFAULT_CANDIDATES = ("int2", "int3", "int4", "int6", "int8")


def parse_candidates(labels: tuple[str, ...] | list[str], group_size: int = 64) -> dict[str, LayerSpec]:
    out = {}
    for label in labels:
        key = label.strip().lower()
        if key.startswith("int") and key[3:].isdigit():
            out[key] = quantized_spec("affine", int(key[3:]), group_size)
        elif key in ("mxfp4", "mxfp8", "nvfp4"):
            out[key] = quantized_spec(key)
        else:
            raise UserError(f"unknown candidate format '{label}' (use int2…int8, mxfp4, mxfp8, nvfp4)")
    if not out:
        raise UserError("give at least one candidate format")
    return out


def spec_bits(spec: LayerSpec, scale_bits: int = 32) -> float:
    """Stored bits per weight of a format, scales and biases included."""
    if spec.mode == "affine":
        return spec.bits + 2 * scale_bits / spec.group_size
    return spec.bits + 8 / spec.group_size  # one 8-bit shared scale per group


def allocate(
    costs: dict[str, dict[str, float]],
    sizes: dict[str, int],
    bits: dict[str, float],
    budget_bits: float,
) -> dict[str, str]:
    """Choose one format per layer so the weighted mean bits stay within ``budget_bits``.

    Args:
        costs: {layer: {format: cost}}, lower is better (e.g. KL or a perplexity increase).
        sizes: {layer: number of weights}.
        bits: {format: bits per weight}.
        budget_bits: the average bits per weight allowed over these layers.

    Returns:
        {layer: format}. Raises UserError when even the smallest formats exceed the budget.
    """
    order = sorted(bits, key=lambda f: bits[f])
    total = sum(sizes[layer] for layer in costs)
    choice = {layer: min(costs[layer], key=lambda f: bits[f]) for layer in costs}
    used = sum(sizes[layer] * bits[choice[layer]] for layer in costs)
    if used > budget_bits * total + 1e-6:
        raise UserError(f"a budget of {budget_bits:.2f} bits/weight is below the smallest candidate format")
    while True:
        best, best_gain = None, 0.0
        for layer, fmt in choice.items():
            for up in order:
                if bits[up] <= bits[fmt] or up not in costs[layer]:
                    continue
                extra = sizes[layer] * (bits[up] - bits[fmt])
                if used + extra > budget_bits * total + 1e-6:
                    continue
                gain = (costs[layer][fmt] - costs[layer][up]) / extra
                if gain > best_gain:
                    best, best_gain = (layer, up, extra), gain
        if best is None:
            return choice
        layer, up, extra = best
        choice[layer] = up
        used += extra


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    params: int
    costs: tuple[tuple[str, float], ...]  # (format, mean KL in nats)


@dataclass(frozen=True)
class SensitivityReport:
    model_name: str
    tokens: int
    layers: tuple[LayerSensitivity, ...]
    bits: tuple[tuple[str, float], ...]  # (format, bits per weight)
    seconds: float

    def plan(self, budget_bits: float) -> dict[str, str]:
        costs = {r.layer: dict(r.costs) for r in self.layers}
        sizes = {r.layer: r.params for r in self.layers}
        return allocate(costs, sizes, dict(self.bits), budget_bits)

    def recipe(self, budget_bits: float, group_size: int = 64, name: str | None = None) -> Recipe:
        """A Recipe with one exact-path override per layer, the most common format as default."""
        plan = self.plan(budget_bits)
        specs = parse_candidates(sorted(set(plan.values())), group_size)
        counts: dict[str, int] = {}
        for fmt in plan.values():
            counts[fmt] = counts.get(fmt, 0) + 1
        default = max(counts, key=lambda f: counts[f])
        overrides = tuple((layer, specs[fmt]) for layer, fmt in plan.items() if fmt != default)
        return Recipe(name or f"auto-{budget_bits:g}b", specs[default], overrides=overrides)


def quantizable_layers(model: nn.Module, group_sizes: set[int]) -> list[tuple[str, nn.Module]]:
    """Linear and Embedding layers whose input width every candidate group size divides."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)) and all(m.weight.shape[-1] % g == 0 for g in group_sizes):
            out.append((name, m))
    return sorted(out, key=lambda nm: _natural_key(nm[0]))


def _natural_key(path: str):
    return [int(t) if t.isdigit() else t for t in path.split(".")]


def _swap(model: nn.Module, path: str, module: nn.Module) -> None:
    from mlx.utils import tree_unflatten

    model.update_modules(tree_unflatten([(path, module)]))


def _log_probs(model: nn.Module, batch: mx.array) -> mx.array:
    logits = model(batch).astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def measure_sensitivity(
    lm: LanguageModel,
    ids: np.ndarray,
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
    group_size: int = 64,
    sample_tokens: int = 512,
    window: int = 256,
    layers: tuple[str, ...] | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SensitivityReport:
    """KL(float ‖ one layer quantized) for every quantizable layer and candidate format.

    ``layers`` (glob patterns on layer paths) limits the search; the model must be
    float; it is modified one layer at a time and restored before returning.
    """
    if lm.config.get("quantization"):
        raise UserError(f"'{lm.name}' is already quantized; sensitivity needs the float model")
    specs = parse_candidates(candidates, group_size)
    n = min(len(ids), sample_tokens) // window * window
    if n < window:
        window = n = min(len(ids), sample_tokens)
    if n < 2:
        raise UserError("the text sample is too short for a sensitivity analysis")
    batch = mx.array(np.asarray(ids[:n], dtype=np.int32).reshape(-1, window))
    t0 = time.perf_counter()
    ref = _log_probs(lm.model, batch)
    p_ref = mx.exp(ref)
    mx.eval(ref, p_ref)
    found = quantizable_layers(lm.model, {s.group_size for s in specs.values()})
    if layers:
        found = [(p, m) for p, m in found if any(fnmatch.fnmatchcase(p, pat) for pat in layers)]
    if not found:
        raise UserError("no quantizable layer matches the layer patterns")
    scale_bits = 32 if _float_dtype(lm.model) == mx.float32 else 16
    rows = []
    steps = len(found) * len(specs)
    done = 0
    for path, module in found:
        costs = []
        for label, spec in specs.items():
            if should_stop and should_stop():
                raise Cancelled()
            _swap(lm.model, path, module.to_quantized(group_size=spec.group_size, bits=spec.bits, mode=spec.mode))
            try:
                lp = _log_probs(lm.model, batch)
                kl = (p_ref * (ref - lp)).sum(axis=-1).mean()
                costs.append((label, max(0.0, float(kl.item()))))
            finally:
                _swap(lm.model, path, module)
            done += 1
            if progress:
                progress(done / steps, f"{path} as {label}: KL {costs[-1][1]:.4g}")
        rows.append(LayerSensitivity(path, int(module.weight.size), tuple(costs)))
    bits = tuple((label, spec_bits(spec, scale_bits)) for label, spec in specs.items())
    return SensitivityReport(lm.name, int(n), tuple(rows), bits, time.perf_counter() - t0)


def _float_dtype(model: nn.Module):
    from mlx.utils import tree_flatten

    for _, v in tree_flatten(model.parameters()):
        if mx.issubdtype(v.dtype, mx.floating):
            return v.dtype
    return mx.float32


def mean_bits(plan: dict[str, str], sizes: dict[str, int], bits: dict[str, float]) -> float:
    total = sum(sizes[k] for k in plan)
    return sum(sizes[k] * bits[f] for k, f in plan.items()) / total if total else math.nan
