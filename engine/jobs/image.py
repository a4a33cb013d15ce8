"""Jobs: the units of work the GUI's engine thread and the CLI both run.

A job is a frozen dataclass of settings with ``run(ctx, workspace)``. It
reports through ``ctx.progress(fraction, message)`` and ``ctx.partial(obj)``,
polls ``ctx.should_stop()`` between batches, layers or iterations, and returns
a frozen result. Jobs never print and never touch Qt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.core import paths
from engine.core.errors import UserError
from engine.core.fileio import check_output_dir
from engine.core.memory_guard import QUANTIZE_FACTOR, check_memory
from engine.image.benchmark import BenchmarkResult, BenchmarkSettings, IterationSample, run_benchmark
from engine.image.bundle import ModelBundle
from engine.image.coldload import cold_load
from engine.image.data.datasets import open_dataset
from engine.image.evaluation import EvaluationResult, evaluate_bundle
from engine.image.model_card import ModelCard, model_card
from engine.image.quant.apply import quantize_model
from engine.image.quant.recipes import Recipe, resolve_recipe
from engine.measure.evaluate.classification import Prediction, softmax, top_predictions
from engine.measure.results import RunRecord
from engine.runtime import JobContext, Workspace

# -- results ----------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizeOutcome:
    path: str
    recipe: str
    card: ModelCard
    source: ModelCard
    seconds: float
    record: RunRecord | None


@dataclass(frozen=True)
class EvaluateOutcome:
    result: EvaluationResult
    record: RunRecord | None


@dataclass(frozen=True)
class BenchmarkOutcome:
    result: BenchmarkResult
    record: RunRecord | None


@dataclass(frozen=True)
class PredictOutcome:
    """predictions[i][j]: top-k of input i under model j; logits[j] is (N, C) float32.

    ``thumbnails[i]`` is input i as (h, w, 3) uint8 at most 160 px a side, so the GUI shows it
    without decoding the file again on its own thread (empty for a tensor input).
    """

    inputs: tuple[str, ...]
    models: tuple[str, ...]
    predictions: tuple[tuple[tuple[Prediction, ...], ...], ...]
    logits: tuple[np.ndarray, ...]
    thumbnails: tuple[np.ndarray, ...] = ()


def thumbnail(img, size: int = 160) -> np.ndarray:
    """(h, w, 3) uint8 of a decoded image, at most ``size`` px a side."""
    small = img.convert("RGB")
    small.thumbnail((size, size))
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8))


# -- jobs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadModelJob:
    model: str
    title: str = "Load model"

    def run(self, ctx: JobContext, ws: Workspace) -> ModelCard:
        ctx.progress(0.0, f"loading {self.model}")
        card = model_card(ws.bundle(self.model))
        ctx.progress(1.0, f"loaded {card.name}")
        return card


@dataclass(frozen=True)
class ImportJob:
    """Import a checkpoint (state dict, Keras or ONNX file) into a bundle directory."""

    arch: str | None
    weights: str
    out: str
    num_classes: int | None = None
    labels: tuple[str, ...] | None = None
    name: str | None = None
    preprocess: str | None = None
    input_size: str | None = None
    overwrite: bool = False  # replace a folder this app wrote at ``out``
    title: str = "Import checkpoint"

    def run(self, ctx: JobContext, ws: Workspace) -> ModelCard:
        from engine.image.importers.dispatch import import_file

        check_output_dir(self.out, overwrite=self.overwrite, inputs=(self.weights,))
        ctx.progress(0.0, f"reading {self.weights}")
        labels = list(self.labels) if self.labels else None
        bundle = import_file(
            self.weights,
            self.arch,
            self.num_classes,
            labels,
            self.preprocess,
            self.input_size,
            self.name,
            progress=ctx.scaled(0.0, 0.8),
            should_stop=ctx.should_stop,
        )
        ctx.check()
        ctx.progress(0.8, f"saving {self.out}")
        bundle.save(self.out, overwrite=self.overwrite, inputs=(self.weights,))
        ws.forget(self.out)
        ctx.progress(1.0, f"imported {bundle.name}")
        return model_card(bundle)


def default_variant_path(source: ModelBundle, recipe_name: str) -> Path:
    return paths.variants_dir() / f"{source.name}-{recipe_name}"


@dataclass(frozen=True)
class QuantizeJob:
    model: str
    recipe: str | Recipe  # a format name, a named mixed recipe, a JSON recipe file, or a Recipe
    out: str | None = None
    group_size: int | None = None
    store: bool = True
    overwrite: bool = False  # replace a folder this app wrote at ``out``
    title: str = "Quantize"
    method: str = "rtn"  # how codes are chosen: engine.image.quant.methods.METHODS
    calib: str | None = None  # calibration images for a calibrated method (None: default-val)
    calib_size: int = 128

    def run(self, ctx: JobContext, ws: Workspace) -> QuantizeOutcome:
        recipe = resolve_recipe(self.recipe, self.group_size)
        label = recipe.name if self.method == "rtn" else f"{recipe.name}-{self.method}"
        source = ws.bundle(self.model)
        if source.quantization:
            raise UserError(
                f"model '{source.name}' is already quantized ({source.recipe_name}); start from a float model"
            )
        out = Path(self.out).expanduser() if self.out else default_variant_path(source, label)
        # The app's own default folder is the app's to replace; a folder the user named needs overwrite.
        overwrite = self.overwrite or not self.out
        check_output_dir(out, overwrite=overwrite, inputs=(source.path,))
        ctx.progress(0.0, f"quantizing {source.name} to {recipe.name}")
        t0 = time.perf_counter()
        # Quantize a fresh copy so the cached float model stays untouched. The source is already in
        # memory, so what is still needed is the working copy and the quantized result.
        check_memory(source.size_on_disk() or 0, QUANTIZE_FACTOR - 1.0, "quantize", source.path)
        work = source.clone()  # from the weights in memory: the source is read from disk once
        calibrated = None
        if self.method != "rtn":
            from engine.image.quant.methods.job import quantize_calibrated

            calibrated = quantize_calibrated(work, source, recipe, self.method, self.calib, self.calib_size, ctx)
            qconfig = calibrated.qconfig
        else:
            qconfig = quantize_model(
                work.model, recipe, ctx.scaled(0.0, 0.9), ctx.should_stop, input_shape=source.input_shape()
            )
        ctx.check()
        variant = ModelBundle(
            name=f"{source.name}-{label}",
            arch=source.arch,
            arch_config=source.arch_config,
            preprocessing=source.preprocessing,
            labels=source.labels,
            model=work.model,
            quantization=qconfig,
            source={
                "kind": "quantized",
                "parent": str(source.path),
                "parent_hash": source.content_hash(),
                "recipe": recipe.name,
                **(calibrated.source_fields() if calibrated else {"method": "rtn"}),
            },
        )
        variant.save(out, overwrite=overwrite, inputs=(source.path,))
        seconds = time.perf_counter() - t0
        ws.forget(out)
        card = model_card(ws.bundle(out))
        src_card = model_card(source)
        ctx.progress(1.0, f"saved {out}")
        record = None
        if self.store:
            record = ws.store.add(
                RunRecord(
                    kind="quantize",
                    model_name=card.name,
                    model_path=card.path,
                    model_hash=card.content_hash,
                    recipe=recipe.name,
                    metrics={
                        "seconds": seconds,
                        "size_on_disk_bytes": float(card.size_on_disk or 0),
                        "source_size_on_disk_bytes": float(src_card.size_on_disk or 0),
                        "compression_ratio": (src_card.size_on_disk or 0) / (card.size_on_disk or 1),
                        "bits_per_weight": card.bits_per_weight,
                        "params": float(card.params),
                        **(calibrated.metrics() if calibrated else {}),
                    },
                    settings={
                        "recipe": recipe.to_dict(),
                        "source": str(source.path),
                        "method": calibrated.settings() if calibrated else {"name": "rtn"},
                    },
                )
            )
        return QuantizeOutcome(card.path, recipe.name, card, src_card, seconds, record)


@dataclass(frozen=True)
class EvaluateJob:
    model: str
    data: str = "default"
    batch_size: int = 64
    limit: int | None = None
    store: bool = True
    title: str = "Evaluate"

    def run(self, ctx: JobContext, ws: Workspace) -> EvaluateOutcome:
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, not {self.batch_size}")
        bundle = ws.bundle(self.model)
        dataset = open_dataset(self.data)
        result = evaluate_bundle(bundle, dataset, self.batch_size, self.limit, ctx.progress, ctx.should_stop)
        record = None
        if self.store:
            from engine.measure.evaluate.metrics import evaluation_rows
            from engine.measure.evaluate.rows import evaluation_record

            rows = evaluation_rows(bundle.name, bundle.labels, result)
            dataset_label = self.data if self.data in ("default", "default-val") else dataset.name
            settings = {"batch_size": self.batch_size, "limit": self.limit, "data": str(self.data)}
            record = ws.store.add(evaluation_record(bundle, dataset_label, rows, settings))
        return EvaluateOutcome(result, record)


@dataclass(frozen=True)
class BenchmarkJob:
    model: str
    settings: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    cold_load: bool = True
    store: bool = True
    title: str = "Benchmark"

    def run(self, ctx: JobContext, ws: Workspace) -> BenchmarkOutcome:
        self.settings.validate()
        load = None
        if self.cold_load:
            # From disk: the cached copy is dropped and the OS page cache evicted where possible.
            bundle, load = cold_load(ws, self.model)
        else:
            bundle = ws.bundle(self.model)

        def on_sample(sample: IterationSample) -> None:
            ctx.partial(sample)

        result = run_benchmark(bundle, self.settings, None, on_sample, ctx.progress, ctx.should_stop, load=load)
        record = ws.store.add(benchmark_record(bundle, result)) if self.store else None
        return BenchmarkOutcome(result, record)


def benchmark_record(bundle: ModelBundle, result: BenchmarkResult, settings: dict | None = None) -> RunRecord:
    """The stored form of a benchmark run; ``settings`` adds to the recorded settings."""
    s = result.settings
    recorded = {"batch_size": s.batch_size, "iters": s.iters, "warmup": s.warmup, "cold_load": result.load is not None}
    if result.load is not None:
        recorded["page_cache_evicted"] = result.load.page_cache_evicted
        recorded["page_cache_resident_fraction"] = result.load.resident_fraction
    return RunRecord(
        kind="benchmark",
        model_name=bundle.name,
        model_path=str(bundle.path),
        model_hash=result.model_hash,
        recipe=bundle.recipe_name,
        metrics=result.summary(),
        settings={**recorded, **(settings or {})},
        environment=result.environment,
        samples=tuple((x.index, x.latency_ms, x.active_memory, x.rss) for x in result.samples),
    )


@dataclass(frozen=True)
class PredictJob:
    models: tuple[str, ...]
    images: tuple[str, ...] = ()
    tensor: str | None = None
    top_k: int = 5
    title: str = "Predict"

    def run(self, ctx: JobContext, ws: Workspace) -> PredictOutcome:
        if self.top_k < 1:
            raise UserError(f"top-k must be at least 1, not {self.top_k}")
        if not self.images and self.tensor is None:
            raise UserError("nothing to predict: give image files or --tensor")
        bundles = [ws.bundle(m) for m in self.models]
        all_logits, all_preds = [], []
        inputs = tuple(self.images) if self.tensor is None else (self.tensor,)
        for j, bundle in enumerate(bundles):
            ctx.check()
            x = self._inputs(bundle, ws)
            logits = bundle.predict_logits(x)
            probs = softmax(logits.astype(np.float64))
            preds = [top_predictions(row, bundle.labels, self.top_k) for row in probs]
            all_logits.append(logits.astype(np.float32))
            all_preds.append(preds)
            ctx.progress((j + 1) / len(bundles), f"predicted with {bundle.name}")
        n = all_logits[0].shape[0]
        if self.tensor is not None:
            inputs = tuple(f"{self.tensor}[{i}]" for i in range(n))
        per_input = tuple(tuple(all_preds[j][i] for j in range(len(bundles))) for i in range(n))
        thumbs = tuple(thumbnail(ws.image(p)) for p in self.images) if self.tensor is None else ()
        return PredictOutcome(inputs, tuple(b.name for b in bundles), per_input, tuple(all_logits), thumbs)

    def _inputs(self, bundle: ModelBundle, ws: Workspace) -> np.ndarray:
        prep = bundle.preprocessing
        if self.tensor is not None:
            return load_tensor(self.tensor, prep.input_size, prep.channels)
        return np.stack([prep(ws.image(p)) for p in self.images])  # each file decoded once for every model


def load_tensor(path: str, input_size: tuple[int, int], channels: int) -> np.ndarray:
    """An already-preprocessed float32 NHWC batch from .npy, checked against the model's input."""
    p = Path(path)
    if not p.exists():
        raise UserError("tensor file not found", p)
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"not a readable .npy array ({exc})", p) from None
    if x.ndim == 3:
        x = x[None]
    expected = (*input_size, channels)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected):
        raise UserError(f"tensor has shape {tuple(x.shape)}, the model takes (N, {', '.join(map(str, expected))})", p)
    if not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"tensor dtype is {x.dtype}, expected float32", p)
    return np.ascontiguousarray(x, dtype=np.float32)


def _env() -> dict:
    from engine.measure.environment import environment

    return environment()
