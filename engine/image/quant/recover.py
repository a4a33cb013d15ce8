"""Accuracy recovery: quantization-aware fine-tuning and knowledge distillation.

Fake quantization with a straight-through estimator: during the forward pass
each quantized layer computes with ``w + stop_gradient(fq(w) - w)``, where
``fq`` is exactly the quantize -> dequantize the final model will store (same
layout, group size and scale rounding), so the gradient reaches the float
weight unchanged. The weight is swapped in by a call hook for the duration of
the layer's call, so the parameter tree (names, optimizer state, saved file)
stays that of the float model. After training the float weights are quantized
for real with the same recipe; the result computes what training saw.

Distillation from a float teacher: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T))
+ (1 - alpha) * CE(s, y)``, plus optional attention transfer (Zagoruyko &
Komodakis): for chosen (teacher layer, student layer) pairs, the channel-mean
of squared activations, flattened and L2-normalised, matched with a squared
error weighted ``beta / 2``. The student is the quantized model itself or a
smaller float model of the same architecture.

A student that is already quantized (by any method) is fine-tuned on its own grid: its
dequantized weights are the latent float weights and each layer is fake-quantized with the
student's stored scales and biases, fixed (``engine.image.quant.from_quantized``); the result
stores codes on that same grid.

BatchNorm: folded first when the recipe folds it (then nothing is left to
update); otherwise its statistics stay frozen (eval mode) while its affine
parameters train, unless ``train_bn`` (a student trained from scratch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.quant.apply import quantizable_layers, quantize_model
from engine.image.quant.calibration import LabelledImages, accuracy, logits_of
from engine.image.quant.fold import fold_batchnorm
from engine.image.quant.formats import FLOAT_DTYPES, LayerSpec
from engine.image.quant.from_quantized import (
    GridLayer,
    float_student,
    grid_fake_weight,
    method_of,
    store_on_grid,
    stored_recipe,
)
from engine.image.quant.hooks import hooked
from engine.image.quant.layers import conv_matrix, depthwise_matrix, fake_quantize
from engine.image.quant.recipes import Recipe, resolve_recipe
from engine.image.quant.sizing import FALLBACK_FLOAT, choose_layout


@dataclass(frozen=True)
class FinetuneSettings:
    """Training settings.

    Attributes:
        recipe: what the student is quantized to (a recipe name, JSON file or Recipe);
            "fp32" trains a float student (distillation into a smaller model). None: int4
            for a float student; a quantized student keeps its own recipe (one given that
            differs from it is refused).
        epochs, batch_size, lr: Adam with a cosine decay over all steps.
        temperature, alpha: distillation temperature and the weight of the distillation
            term (1 - alpha goes to cross-entropy with the labels); without a teacher
            the loss is cross-entropy alone.
        attention: (teacher layer, student layer) pairs for attention transfer.
        beta: attention-transfer weight.
        augment: random shifts of up to ``shift`` pixels.
        train_bn: update BatchNorm statistics (for students trained from scratch).
        max_steps: stop after this many steps (tests, quick looks).
        seed: shuffling, augmentation and initialisation.
    """

    recipe: str | Recipe | None = None
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-4  # 1e-3 diverges when fine-tuning the pretrained default model at int3
    temperature: float = 4.0
    alpha: float = 0.7
    attention: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    beta: float = 1000.0
    augment: bool = True
    shift: int = 2
    train_bn: bool = False
    max_steps: int | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError("epochs and batch size must be at least 1")
        if not self.lr > 0:
            raise UserError(f"learning rate must be positive, not {self.lr}")
        if not self.temperature > 0:
            raise UserError(f"temperature must be positive, not {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"alpha must lie in [0, 1], not {self.alpha}")


@dataclass(frozen=True)
class TrainPoint:
    """One training step (``val_accuracy`` set at the end of each epoch)."""

    step: int
    epoch: float
    loss: float
    ce: float
    kd: float
    at: float
    batch_accuracy: float
    val_accuracy: float | None = None


@dataclass(frozen=True)
class FinetuneResult:
    recipe: str
    steps: int
    epochs_done: float
    history: tuple[TrainPoint, ...]
    teacher_accuracy: float | None  # on the validation images
    before_accuracy: float  # the student quantized without training
    after_accuracy: float  # the student after training, quantized for real
    quantize_gap: float  # max |logit| difference between the fake-quantized and the stored model
    seconds: float
    from_method: str | None = None  # the method of a quantized student (its grid was kept), else None


# -- fake quantization -------------------------------------------------------------------------


def _fake_weight(w: mx.array, kind: str, spec: LayerSpec, scale_dtype: str, adapt: bool) -> mx.array:
    """The weight the stored layer will compute with (quantized, or cast to its float dtype)."""
    if not spec.quantized:
        return w.astype(FLOAT_DTYPES[spec.dtype]).astype(w.dtype)
    layout = choose_layout(kind, tuple(w.shape), spec, scale_dtype, adapt)
    if layout is None:
        return w.astype(FLOAT_DTYPES[FALLBACK_FLOAT]).astype(w.dtype)
    if kind == "depthwise":
        m = fake_quantize(depthwise_matrix(w), layout.group_size, layout.bits, layout.mode, scale_dtype)
        c, kh, kw, _ = w.shape
        return m.T.reshape(c, kh, kw, 1)
    m = w if kind == "linear" else conv_matrix(w)
    return fake_quantize(m, layout.group_size, layout.bits, layout.mode, scale_dtype).reshape(w.shape)


def fake_quant_plan(model: nn.Module, recipe: Recipe, input_shape) -> dict[str, tuple[str, LayerSpec]]:
    """{layer path: (kind, spec)} of the layers whose weights the recipe changes."""
    layers = quantizable_layers(model, input_shape)
    plan = recipe.plan(layers)
    return {i.path: (i.kind, plan[i.path]) for i in layers if plan[i.path].quantized or plan[i.path].dtype != "float32"}


def _student_hooks(model, plan, recipe: Recipe, capture: set[str], feats: dict, fakes: dict | None = None):
    """Call hooks: fake quantization (``fakes[path](w)`` where given, else ``plan``'s format) and captures."""
    modules = dict(model.named_modules())
    fakes = fakes or {}

    def make(path):
        kind_spec = plan.get(path)
        fake = fakes.get(path)
        if fake is None and kind_spec is not None:

            def fake(w, kind=kind_spec[0], spec=kind_spec[1]):
                return _fake_weight(w, kind, spec, recipe.scale_dtype, recipe.adapt_layout)

        def hook(p, forward, x, *args, **kwargs):
            if fake is not None:
                m = modules[p]
                w = m.weight
                fq = fake(w)
                m.weight = w + mx.stop_gradient(fq - w)  # straight-through estimator
                try:
                    out = forward(x, *args, **kwargs)
                finally:
                    m.weight = w
            else:
                out = forward(x, *args, **kwargs)
            if p in capture:
                feats[p] = out
            return out

        return hook

    return {p: make(p) for p in set(plan) | set(fakes) | capture}


# -- losses ------------------------------------------------------------------------------------


def attention_map(f: mx.array) -> mx.array:
    """Channel-mean of squared activations, flattened and L2-normalised: (N, H*W)."""
    a = mx.mean(f.astype(mx.float32) ** 2, axis=-1).reshape(f.shape[0], -1)
    return a / mx.maximum(mx.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def distillation_loss(student_logits: mx.array, teacher_logits: mx.array, temperature: float) -> mx.array:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, mean over the batch."""
    t = teacher_logits / temperature
    s = student_logits / temperature
    log_pt = t - mx.logsumexp(t, axis=1, keepdims=True)
    log_ps = s - mx.logsumexp(s, axis=1, keepdims=True)
    return temperature**2 * mx.mean(mx.sum(mx.exp(log_pt) * (log_pt - log_ps), axis=1))


def _shift_batch(x: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    if shift <= 0:
        return x
    out = np.empty_like(x)
    for i, img in enumerate(x):
        dy, dx = rng.integers(-shift, shift + 1, size=2)
        out[i] = np.roll(np.roll(img, dy, axis=0), dx, axis=1)
    return out


# -- training ----------------------------------------------------------------------------------


def finetune(
    student,
    train: LabelledImages,
    val: LabelledImages,
    settings: FinetuneSettings,
    teacher=None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_point: Callable[[TrainPoint], None] | None = None,
):
    """Fine-tune (and optionally distil into) ``student`` under fake quantization, then quantize it.

    Args:
        student: a float ModelBundle, or a quantized one (fine-tuned on its own formats and
            grid; see ``engine.image.quant.from_quantized``). Not modified; a copy is trained.
        train, val: labelled images (validation accuracy after every epoch).
        settings: see FinetuneSettings.
        teacher: a float ModelBundle with the same classes, or None.
        on_point: called with every TrainPoint (live curves).

    Returns:
        (quantized ModelBundle, FinetuneResult). On cancel, Cancelled propagates and
        nothing is returned.

    Raises:
        UserError: bad settings, a quantized teacher, a recipe that disagrees with a
            quantized student's, mismatched classes or attention maps; Cancelled.
    """
    settings.validate()
    t0 = time.perf_counter()
    from_quantized = bool(student.quantization)
    if from_quantized:
        recipe = stored_recipe(student, settings.recipe)
    else:
        recipe = resolve_recipe(settings.recipe if settings.recipe is not None else "int4")
    if teacher is not None:
        if teacher.quantization:
            raise UserError(f"teacher '{teacher.name}' is quantized; distil from a float model")
        if len(teacher.labels) != len(student.labels):
            raise UserError(f"teacher has {len(teacher.labels)} classes, student {len(student.labels)}")
    shape = student.input_shape()
    grid: dict[str, GridLayer] = {}
    if from_quantized:
        work, grid, plan = float_student(student)
    else:
        work = student.clone()
        if recipe.fold_bn and recipe.quantized:
            fold_batchnorm(work.model, shape)
        plan = fake_quant_plan(work.model, recipe, shape)
    model = work.model
    fakes = {path: partial(grid_fake_weight, layer=layer) for path, layer in grid.items()}
    modules = dict(model.named_modules())
    t_capture = {t for t, _ in settings.attention}
    s_capture = {s for _, s in settings.attention}
    missing = [p for p in s_capture if p not in modules]
    if teacher is not None:
        t_modules = dict(teacher.model.named_modules())
        missing += [p for p in t_capture if p not in t_modules]
    elif settings.attention:
        raise UserError("attention transfer needs a teacher")
    if missing:
        raise UserError(f"no layer named {', '.join(sorted(missing))} for attention transfer")

    s_feats: dict[str, mx.array] = {}
    t_feats: dict[str, mx.array] = {}
    s_hooks = _student_hooks(model, plan, recipe, s_capture, s_feats, fakes)

    def evaluate(images: LabelledImages) -> float:
        model.eval()
        return accuracy(logits_of(model, images.x, 128, should_stop), images.y)

    teacher_acc = accuracy(logits_of(teacher.model, val.x, 128, should_stop), val.y) if teacher is not None else None

    def teacher_logits(x: mx.array):
        def capture(p, forward, inp, *a, **k):
            out = forward(inp, *a, **k)
            t_feats[p] = out
            return out

        with hooked(teacher.model, {p: capture for p in t_capture}):
            logits = teacher.model(x)
        mx.eval(logits, *t_feats.values())
        return logits

    def loss_fn(m, x, y, t_logits):
        logits = m(x)
        ce = nn.losses.cross_entropy(logits, y, reduction="mean")
        kd = mx.array(0.0)
        at = mx.array(0.0)
        if t_logits is not None:
            kd = distillation_loss(logits, t_logits, settings.temperature)
            for tp, sp in settings.attention:
                a_s, a_t = attention_map(s_feats[sp]), attention_map(mx.stop_gradient(t_feats[tp]))
                if a_s.shape != a_t.shape:
                    raise UserError(
                        f"attention maps differ in size: teacher {tp} {a_t.shape[1]} vs student {sp} {a_s.shape[1]} positions"
                    )
                at = at + settings.beta / 2 * mx.mean((a_s - a_t) ** 2)
            loss = settings.alpha * kd + (1 - settings.alpha) * ce + at
        else:
            loss = ce
        return loss, (ce, kd, at, logits)

    with hooked(model, s_hooks):
        history, before, step = _train(
            model,
            loss_fn,
            train,
            val,
            settings,
            teacher_logits if teacher is not None else None,
            evaluate,
            progress,
            should_stop,
            on_point,
        )
        model.eval()
        trained_logits = logits_of(model, val.x, 128, should_stop)
    steps_per_epoch = int(np.ceil(len(train) / settings.batch_size))
    if from_quantized:
        work = store_on_grid(student, model, grid, step)
    elif recipe.name != "fp32":
        work.quantization = quantize_model(model, recipe, input_shape=shape)
    final_logits = logits_of(work.model, val.x, 128, should_stop)
    after = accuracy(final_logits, val.y)
    result = FinetuneResult(
        recipe=recipe.name,
        steps=step,
        epochs_done=step / steps_per_epoch,
        history=tuple(history),
        teacher_accuracy=teacher_acc,
        before_accuracy=before,
        after_accuracy=after,
        quantize_gap=float(np.abs(final_logits - trained_logits).max()),
        seconds=time.perf_counter() - t0,
        from_method=method_of(student) if from_quantized else None,
    )
    return work, result


def _train(model, loss_fn, train, val, settings, teacher_forward, evaluate, progress, should_stop, on_point):
    """The training loop (fake-quantization hooks installed by the caller); returns (history, before, steps)."""
    before = evaluate(val)
    grad_fn = nn.value_and_grad(model, loss_fn)
    steps_per_epoch = int(np.ceil(len(train) / settings.batch_size))
    total = settings.epochs * steps_per_epoch
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    schedule = optim.cosine_decay(settings.lr, max(1, total), end=settings.lr * 0.05)
    optimizer = optim.Adam(learning_rate=schedule)
    rng = np.random.default_rng(settings.seed)
    history: list[TrainPoint] = []
    step = 0
    model.train() if settings.train_bn else model.eval()
    for _epoch in range(settings.epochs):
        order = rng.permutation(len(train))
        for start in range(0, len(order), settings.batch_size):
            if step >= total:
                break
            if should_stop is not None and should_stop():
                raise Cancelled()
            idx = order[start : start + settings.batch_size]
            xb = train.x[idx]
            if settings.augment:
                xb = _shift_batch(xb, rng, settings.shift)
            x, y = mx.array(xb), mx.array(train.y[idx])
            t_logits = teacher_forward(x) if teacher_forward is not None else None
            (loss, (ce, kd, at, logits)), grads = grad_fn(model, x, y, t_logits)
            optimizer.update(model, grads)
            mx.eval(model.parameters(), optimizer.state, loss)
            step += 1
            point = TrainPoint(
                step=step,
                epoch=step / steps_per_epoch,
                loss=float(loss.item()),
                ce=float(ce.item()),
                kd=float(kd.item()),
                at=float(at.item()),
                batch_accuracy=float(mx.mean(mx.argmax(logits, axis=1) == y).item()),
            )
            end_of_epoch = start + settings.batch_size >= len(order) or step >= total
            if end_of_epoch:
                point = replace(point, val_accuracy=evaluate(val))
                if settings.train_bn:
                    model.train()
            history.append(point)
            if on_point is not None:
                on_point(point)
            if progress is not None:
                msg = f"step {step}/{total}: loss {point.loss:.4f}"
                if point.val_accuracy is not None:
                    msg += f", validation {100 * point.val_accuracy:.2f}%"
                progress(step / total, msg)
        if step >= total:
            break
    return history, before, step
