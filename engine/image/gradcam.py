"""Grad-CAM (Selvaraju et al., 2017) for any MLX classifier, float or quantized.

The target layer's output A gets an added zero tensor ``delta``; the gradient of the class
score with respect to ``delta`` is dScore/dA. So no architecture needs a hook API: the
layer is wrapped for the duration of the call and put back afterwards. Gradients flow
through quantized layers too (``mx.quantized_matmul`` has a vector-Jacobian product for
its input; quantized depthwise taps are dequantized constants).

    weights_k = mean over (h, w) of dScore/dA[h, w, k]
    cam       = ReLU(sum_k weights_k * A[..., k]), upsampled to the input, scaled to [0, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from PIL import Image

from engine.core.errors import UserError
from engine.image.bundle import ModelBundle
from engine.image.data.images import load_image
from engine.measure.evaluate.classification import softmax


class _Tap(nn.Module):
    """Wraps a module: records its output, and adds ``delta`` to it when one is set."""

    def __init__(self, inner: nn.Module, path: str, log: list | None):
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "delta", None)
        object.__setattr__(self, "output", None)

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        if isinstance(out, mx.array):
            if self.delta is not None:
                out = out + self.delta
            object.__setattr__(self, "output", out)
            if self._log is not None:
                self._log.append((self._path, tuple(out.shape)))
        return out


def _slots(model: nn.Module) -> list[tuple[str, object, object, nn.Module]]:
    """(path, container, key, module) for every submodule, resolved before anything is replaced."""
    out = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, nn.Module):
            items = value.items()
        elif isinstance(value, dict):
            items = value.items()
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            return
        for key, child in items:
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(child, nn.Module):
                if isinstance(value, tuple):
                    continue  # tuples cannot take a wrapper
                out.append((path, value, key, child))
                walk(path, child)
            elif isinstance(child, (dict, list, tuple)):
                walk(path, child)

    walk("", model)
    return out


class _Wrapped:
    """Context manager: wrap the given slots with taps, restore the originals on exit."""

    def __init__(self, slots, log: list | None):
        self.slots = slots
        self.log = log
        self.taps: dict[str, _Tap] = {}

    def __enter__(self) -> dict[str, _Tap]:
        for path, container, key, module in self.slots:
            tap = _Tap(module, path, self.log)
            container[key] = tap
            self.taps[path] = tap
        return self.taps

    def __exit__(self, *exc) -> None:
        for _path, container, key, module in self.slots:
            container[key] = module


def candidate_layers(bundle: ModelBundle) -> list[tuple[str, tuple[int, ...]]]:
    """Layers with a spatial (N, H, W, C) output, H and W > 1, in the order they run.

    The last one is the usual Grad-CAM target: the final convolutional feature map.
    """
    h, w = bundle.preprocessing.input_size
    x = mx.zeros((1, h, w, bundle.preprocessing.channels))
    log: list = []
    with _Wrapped(_slots(bundle.model), log):
        mx.eval(bundle.forward(x))
    seen, out = set(), []
    for path, shape in log:
        if len(shape) == 4 and shape[1] > 1 and shape[2] > 1 and path not in seen:
            seen.add(path)
            out.append((path, shape))
    return out


def default_layer(bundle: ModelBundle) -> str:
    layers = candidate_layers(bundle)
    if not layers:
        raise UserError(f"model '{bundle.name}' has no layer with a spatial output for Grad-CAM")
    # The last to finish is the outermost module around the last feature map; prefer it.
    return layers[-1][0]


@dataclass(frozen=True)
class LayerGradients:
    """A (N, h, w, C) activation and the gradient of the class score with respect to it."""

    activation: np.ndarray
    gradient: np.ndarray
    logits: np.ndarray


def layer_gradients(bundle: ModelBundle, x: np.ndarray, layer: str, classes: np.ndarray) -> LayerGradients:
    """dScore/dA at ``layer`` for inputs ``x`` (N, H, W, C float32) and one class per input.

    Raises:
        UserError: no such layer, or it has no spatial output.
    """
    slots = {path: slot for path, *slot in _slots(bundle.model)}
    if layer not in slots:
        known = ", ".join(p for p, _ in candidate_layers(bundle))
        raise UserError(f"model '{bundle.name}' has no layer '{layer}' (spatial layers: {known})")
    slot = [(layer, *slots[layer])]
    xa = mx.array(np.ascontiguousarray(x, dtype=np.float32))
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    onehot = np.zeros((len(classes), len(bundle.labels)), dtype=np.float32)
    onehot[np.arange(len(classes)), classes] = 1.0
    select = mx.array(onehot)
    with _Wrapped(slot, None) as taps:
        tap = taps[layer]
        probe = bundle.forward(xa)
        mx.eval(probe, tap.output)
        if tap.output is None or tap.output.ndim != 4:
            shape = None if tap.output is None else tuple(tap.output.shape)
            raise UserError(f"layer '{layer}' output {shape} is not a (N, H, W, C) feature map")
        shape, dtype = tap.output.shape, tap.output.dtype

        def score(delta):
            object.__setattr__(tap, "delta", delta)
            logits = bundle.forward(xa)
            return (logits * select).sum(), (tap.output, logits)

        (_, (activation, logits)), grad = mx.value_and_grad(score)(mx.zeros(shape, dtype=dtype))
        mx.eval(activation, logits, grad)
        object.__setattr__(tap, "delta", None)
    return LayerGradients(
        activation=np.array(activation.astype(mx.float32)),
        gradient=np.array(grad.astype(mx.float32)),
        logits=np.array(logits.astype(mx.float32)),
    )


def cam_from_gradients(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (N, h, w) at the layer's resolution, not yet normalised."""
    weights = gradient.mean(axis=(1, 2))  # (N, C)
    return np.maximum(np.einsum("nhwc,nc->nhw", activation, weights), 0.0)


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one (h, w) map to (H, W), then scale to [0, 1] (all zero stays zero)."""
    h, w = size
    img = Image.fromarray(np.asarray(cam, dtype=np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32)
    peak = float(out.max())
    return out / peak if peak > 0 else np.zeros_like(out)


def similarity(a: np.ndarray, b: np.ndarray, top: float = 0.2) -> tuple[float, float]:
    """(Pearson correlation, IoU of the top ``top`` share of pixels) of two maps."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        corr = 1.0 if np.allclose(a, b) else 0.0
    else:
        corr = float(np.corrcoef(a, b)[0, 1])
    k = max(1, int(round(top * len(a))))
    ta = set(np.argsort(-a, kind="stable")[:k].tolist())
    tb = set(np.argsort(-b, kind="stable")[:k].tolist())
    return corr, len(ta & tb) / len(ta | tb)


@dataclass(frozen=True)
class GradCamMap:
    model: str
    recipe: str
    layer: str
    class_index: int
    class_name: str
    top1_index: int
    top1_label: str
    top1_probability: float
    class_probability: float
    image: np.ndarray  # (H, W, C) uint8 model input
    heatmap: np.ndarray  # (H, W) float32 in [0, 1]
    layer_map: np.ndarray  # (h, w) at the layer's resolution


def gradcam(
    bundle: ModelBundle,
    image: str | Path | np.ndarray,
    class_index: int | None = None,
    layer: str | None = None,
) -> GradCamMap:
    """Grad-CAM of one image (a file, or a (H, W, C) uint8 array at any size).

    Args:
        class_index: the class to explain; None explains the model's own top-1.
        layer: a layer path (``candidate_layers``); None picks the last feature map.
    """
    prep = bundle.preprocessing
    if isinstance(image, np.ndarray):
        uint8 = prep.fit_array(image)
    elif isinstance(image, Image.Image):
        uint8 = prep.image_to_uint8(image)  # decoded once by the caller, reused for every model
    else:
        uint8 = prep.image_to_uint8(load_image(image))
    x = prep.normalize(uint8[None])
    layer = layer or default_layer(bundle)
    probs = softmax(bundle.predict_logits(x).astype(np.float64))[0]
    top1 = int(probs.argmax())
    cls = top1 if class_index is None else int(class_index)
    if not 0 <= cls < len(bundle.labels):
        raise UserError(f"class index {cls} is out of range for model '{bundle.name}' ({len(bundle.labels)} classes)")
    g = layer_gradients(bundle, x, layer, np.asarray([cls]))
    layer_map = cam_from_gradients(g.activation, g.gradient)[0]
    return GradCamMap(
        model=bundle.name,
        recipe=bundle.recipe_name,
        layer=layer,
        class_index=cls,
        class_name=bundle.labels[cls],
        top1_index=top1,
        top1_label=bundle.labels[top1],
        top1_probability=float(probs[top1]),
        class_probability=float(probs[cls]),
        image=uint8,
        heatmap=upsample(layer_map, prep.input_size),
        layer_map=layer_map,
    )


@dataclass(frozen=True)
class GradCamOutcome:
    """Grad-CAM of one image under each model (the first is the reference), same class and layer."""

    image_path: str
    maps: tuple[GradCamMap, ...]
    correlation: tuple[float, ...]  # of each map with the first
    top_iou: tuple[float, ...]
    layers: tuple[str, ...]  # the spatial layers the user can choose from
    labels: tuple[str, ...] = ()  # the reference model's class names


def compare_gradcam(
    bundles: list[ModelBundle],
    image: str | Path,
    class_index: int | None = None,
    layer: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    decoded: Image.Image | None = None,
) -> GradCamOutcome:
    """Grad-CAM of ``image`` under each bundle, explaining the same class at the same layer.

    The class defaults to the first (reference) model's top-1, so the maps answer "where
    does each model look for this class?".
    """
    from engine.core.errors import Cancelled

    layers = tuple(p for p, _ in candidate_layers(bundles[0]))
    layer = layer or default_layer(bundles[0])
    maps = []
    pixels = decoded if decoded is not None else load_image(image)  # one decode for every model
    for b in bundles:
        if should_stop is not None and should_stop():
            raise Cancelled()
        cls = class_index if class_index is not None or not maps else maps[0].class_index
        maps.append(gradcam(b, pixels, cls, layer))
    corr, iou = [], []
    for m in maps:
        c, i = similarity(maps[0].heatmap, m.heatmap) if m.heatmap.shape == maps[0].heatmap.shape else (np.nan, np.nan)
        corr.append(float(c))
        iou.append(float(i))
    return GradCamOutcome(str(image), tuple(maps), tuple(corr), tuple(iou), layers, tuple(bundles[0].labels))


@dataclass(frozen=True)
class GradCamJob:
    """Grad-CAM for the GUI's Inference tab and the ``gradcam`` command."""

    models: tuple[str, ...]
    image: str
    class_index: int | None = None
    layer: str | None = None
    title: str = "Grad-CAM"

    def run(self, ctx, ws) -> GradCamOutcome:
        if not self.models:
            raise UserError("no model for Grad-CAM")
        ctx.progress(0.0, f"Grad-CAM of {Path(self.image).name}")
        bundles = [ws.bundle(m) for m in self.models]
        out = compare_gradcam(
            bundles, self.image, self.class_index, self.layer, ctx.should_stop, decoded=ws.image(self.image)
        )
        ctx.progress(1.0, f"Grad-CAM at layer {out.maps[0].layer}")
        return out
