"""Per-layer sensitivity in a few forward-equivalents: a Fisher-weighted quantization error.

The exact analysis (``sensitivity.py``) runs the whole network over the calibration images
for every (layer, format) pair: O(layers x formats) forwards. Here, as HAWQ does with the
Hessian trace, the KL divergence a layer's quantization causes is predicted to second
order. The Hessian of KL(p_float || p_model) at the float weights is the Fisher information
of the model's output distribution, so with the weight change ``dw`` of a format,

    KL ~= 1/2 * sum_i F_ii * dw_i ** 2,   F_ii = E_x E_{y ~ p(.|x)} [ (d log p(y|x) / d w_i) ** 2 ].

F's diagonal comes from ``repeats`` backward passes over the calibration set: labels are
sampled from the float model's own softmax, and the per-image log-likelihoods are summed
with random signs, so the squared batch gradient is an unbiased estimate of the sum of the
per-image squared gradients (the cross terms vanish in expectation; each layer's cost sums
thousands of weights, which averages the noise out). Cost: one forward for the
reference plus ``repeats`` forward+backward passes, whatever the number of formats;
each candidate then costs only its weights' quantize/dequantize.
``bench/sensitivity_cost.py`` checks the prediction against the exact KL.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import Cancelled
from engine.image.quant.apply import LayerInfo, quantize_layer
from engine.image.quant.calibration import LabelledImages, OutputChange, logits_of
from engine.image.quant.formats import FLOAT_DTYPES, LayerSpec, float_spec
from engine.image.quant.inventory import prepare_float_model
from engine.image.quant.sensitivity import LayerSensitivity, SensitivityReport, finished_report
from engine.image.quant.sizing import layer_bytes

DEFAULT_REPEATS = 2


def fisher_diagonal(
    model: nn.Module,
    layers: list[LayerInfo],
    x: np.ndarray,
    ref_logits: np.ndarray,
    batch_size: int = 32,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, mx.array]:
    """The diagonal of the output distribution's Fisher information for each layer's weight.

    Args:
        model: a float model in eval mode (not modified).
        layers: the quantizable layers whose weights to cover.
        x: calibration images (N, H, W, C).
        ref_logits: the model's float32 logits on ``x`` (labels are sampled from them).
        repeats: independent sign/label draws; more lowers the estimate's variance.

    Returns:
        {layer path: array shaped like its weight}, averaged over images.
    """
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    probs = np.exp(ref_logits - ref_logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    modules = dict(model.named_modules())
    weights = {i.path: modules[i.path].weight for i in layers}

    def loss_fn(ws, xb, yb, sb):
        for path, w in ws.items():
            modules[path].weight = w
        logp = nn.log_softmax(model(xb), axis=-1)
        picked = mx.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
        return mx.sum(sb * picked)

    grad_fn = mx.grad(loss_fn)
    acc = {p: mx.zeros(w.shape, dtype=mx.float32) for p, w in weights.items()}
    steps = repeats * ((n + batch_size - 1) // batch_size)
    done = 0
    try:
        for r in range(repeats):
            labels = np.array([rng.choice(probs.shape[1], p=p) for p in probs], dtype=np.int32)
            signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
            for start in range(0, n, batch_size):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                sl = slice(start, start + batch_size)
                grads = grad_fn(weights, mx.array(x[sl]), mx.array(labels[sl]), mx.array(signs[sl]))
                # one batch's signed sum: its square estimates the batch's sum of squared per-image gradients
                acc = {p: acc[p] + mx.square(grads[p]) for p in acc}
                mx.eval(acc)
                done += 1
                if progress is not None:
                    shown = min(start + batch_size, n)
                    progress(done / steps, f"Fisher information: pass {r + 1}/{repeats}, {shown}/{n} images")
    finally:
        for path, w in weights.items():
            modules[path].weight = w
    return {p: a / (n * repeats) for p, a in acc.items()}


def dequantized_weight(module: nn.Module, original: nn.Module) -> mx.array:
    """The weight a layer computes with after quantization, in ``original``'s layout (float32)."""
    if module is original:
        return original.weight
    if isinstance(module, nn.QuantizedLinear):
        return mx.dequantize(
            module.weight,
            module.scales,
            module.get("biases"),
            group_size=module.group_size,
            bits=module.bits,
            mode=module.mode,
        )
    return module.dequantized_weight()


def weight_change(original: nn.Module, kind: str, spec: LayerSpec, scale_dtype: str) -> mx.array:
    """Stored-and-restored weight minus the float weight, for ``spec`` (float specs round to their dtype)."""
    w = original.weight
    if not spec.quantized:
        return w.astype(FLOAT_DTYPES[spec.dtype]).astype(mx.float32) - w
    new, entry = quantize_layer(original, kind, spec, scale_dtype)
    if "mode" not in entry:  # the layer cannot take the format and stays float16
        return w.astype(mx.float16).astype(mx.float32) - w
    return dequantized_weight(new, original).astype(mx.float32) - w


def analyze_sensitivity_fisher(
    bundle,
    specs: list[LayerSpec],
    images: LabelledImages,
    fold_bn: bool = True,
    scale_dtype: str = "float16",
    batch_size: int = 32,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_row: Callable[[LayerSensitivity], None] | None = None,
    repeats: int = DEFAULT_REPEATS,
) -> SensitivityReport:
    """``analyze_sensitivity`` with each row's KL predicted from the Fisher information.

    Rows carry the predicted KL; their flip rate is NaN and their accuracy None (nothing is
    run per candidate). Arguments as ``analyze_sensitivity``'s.

    Raises:
        UserError: the model is quantized; Cancelled: should_stop() turned true.
    """
    t0 = time.perf_counter()

    def stage(a, b):
        return None if progress is None else (lambda f, m: progress(a + (b - a) * f, m))

    work, layers, folded = prepare_float_model(bundle, fold_bn)
    model = work.model
    ref = logits_of(model, images.x, 128, should_stop)
    float_acc = OutputChange.between(ref, ref, images.y).accuracy
    fisher = fisher_diagonal(
        model, layers, images.x, ref, min(batch_size, 32), repeats, progress=stage(0.0, 0.8), should_stop=should_stop
    )
    modules = dict(model.named_modules())
    rows = []
    for li, info in enumerate(layers):
        if should_stop is not None and should_stop():
            raise Cancelled()
        original = modules[info.path]
        float_bytes = layer_bytes(info.kind, info.shape, float_spec("float32"), info.has_bias)
        f = fisher[info.path]
        costs = [0.5 * mx.sum(f * mx.square(weight_change(original, info.kind, s, scale_dtype))) for s in specs]
        mx.eval(costs)
        for spec, cost in zip(specs, costs, strict=True):
            row = LayerSensitivity(
                path=info.path,
                kind=info.kind,
                params=info.params,
                format=spec.name(),
                bytes=layer_bytes(info.kind, info.shape, spec, info.has_bias, scale_dtype),
                float_bytes=float_bytes,
                kl=max(float(cost), 0.0),
                flip_rate=float("nan"),
                accuracy=None,
            )
            rows.append(row)
            if on_row is not None:
                on_row(row)
        if progress is not None:
            progress(0.8 + 0.2 * (li + 1) / len(layers), f"{info.path}: predicted KL for {len(specs)} formats")
    return finished_report(bundle, images, specs, float_acc, model, layers, rows, folded, t0)
