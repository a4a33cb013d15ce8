"""Jobs of the quantization engine, run by the GUI's engine thread and the CLI alike.

Each is a frozen dataclass with ``run(ctx, ws)``; partial results (sensitivity
rows, search steps, training points, sweep rows) stream through ``ctx.partial``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.core.errors import UserError
from engine.core.fileio import check_output_dir
from engine.core.memory_guard import check_memory
from engine.image.bundle import ModelBundle, resolve_model_path
from engine.image.evaluation import EvaluationResult, evaluate_bundle
from engine.image.model_card import ModelCard, model_card
from engine.image.quant.actsim import (
    ActCalibration,
    ActSimSettings,
    SimRow,
    calibrate,
    calibration_sweep,
    simulated_activations,
)
from engine.image.quant.autoquant import (
    DEFAULT_CANDIDATES,
    DEFAULT_METHODS,
    AutoquantResult,
    Budget,
    autoquant,
    build_variant,
    default_sensitivity,
    method_counts,
)
from engine.image.quant.calibration import DEFAULT_CALIBRATION, LabelledImages, load_calibration, load_images
from engine.image.quant.formats import parse_spec
from engine.image.quant.from_quantized import stored_recipe
from engine.image.quant.inventory import LayerInventory, inventory
from engine.image.quant.methods.run import memory_estimate
from engine.image.quant.recover import FinetuneResult, FinetuneSettings, finetune
from engine.image.quant.sensitivity import SensitivityReport, analyze_sensitivity, write_sensitivity_csv
from engine.jobs.image import default_variant_path
from engine.measure.results import RunRecord
from engine.runtime import JobContext, Workspace


def _float_source(ws: Workspace, model: str) -> ModelBundle:
    bundle = ws.bundle(model)
    if bundle.quantization:
        raise UserError(f"model '{bundle.name}' is already quantized ({bundle.recipe_name}); start from a float model")
    return bundle


def _check_out(out: str | None, overwrite: bool, source: str) -> None:
    """Fail before any work when ``out`` (a folder the user named) may not be written."""
    if out:
        check_output_dir(out, overwrite=overwrite, inputs=(resolve_model_path(source),))


def _save_variant(
    ws: Workspace,
    bundle: ModelBundle,
    out: str | None,
    name: str,
    source: ModelBundle,
    extra: dict,
    overwrite: bool = False,
):
    """Save a new variant beside the user's models (or at ``out``) and return (path, card)."""
    bundle.name = f"{source.name}-{name}"
    bundle.source = {"parent": str(source.path), "parent_hash": source.content_hash(), **extra}
    path = Path(out).expanduser() if out else default_variant_path(source, name)
    bundle.save(path, overwrite=overwrite or not out, inputs=(source.path,))
    ws.forget(path)
    return str(path), model_card(ws.bundle(path))


# -- layers of a model (the recipe editor) ------------------------------------------------------


@dataclass(frozen=True)
class InspectLayersJob:
    """The quantizable layers of a float model, for sizing recipes as they are edited."""

    model: str
    fold_bn: bool = True
    title: str = "Read layers"

    def run(self, ctx: JobContext, ws: Workspace) -> LayerInventory:
        ctx.progress(0.0, f"reading the layers of {self.model}")
        inv = inventory(_float_source(ws, self.model), self.fold_bn)
        ctx.progress(1.0, f"{len(inv.layers)} quantizable layers")
        return inv


# -- sensitivity --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SensitivityOutcome:
    report: SensitivityReport
    csv: str | None


@dataclass(frozen=True)
class SensitivityJob:
    model: str
    formats: tuple[str, ...] = ("int4",)
    data: str = DEFAULT_CALIBRATION
    calib: int = 256
    group_size: int | None = None
    fold_bn: bool = True
    csv: str | None = None
    title: str = "Sensitivity"

    def run(self, ctx: JobContext, ws: Workspace) -> SensitivityOutcome:
        specs = [parse_spec(f, self.group_size) for f in self.formats]
        if not specs:
            raise UserError("give at least one format to measure")
        bundle = _float_source(ws, self.model)
        ctx.progress(0.0, f"loading {self.calib} calibration images from {self.data}")
        images = load_calibration(bundle, self.data, self.calib, should_stop=ctx.should_stop)
        report = analyze_sensitivity(
            bundle, specs, images, self.fold_bn, progress=ctx.progress, should_stop=ctx.should_stop, on_row=ctx.partial
        )
        csv = str(write_sensitivity_csv(self.csv, report)) if self.csv else None
        return SensitivityOutcome(report, csv)


# -- budget search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoquantOutcome:
    result: AutoquantResult
    path: str
    card: ModelCard
    source: ModelCard
    record: RunRecord | None


@dataclass(frozen=True)
class AutoquantJob:
    model: str
    budget: Budget
    data: str = DEFAULT_CALIBRATION  # calibration images for the sensitivity analysis
    val_data: str | None = None  # labelled; an accuracy budget is checked on it (default: default-val)
    calib: int = 256
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    group_size: int | None = None
    fold_bn: bool = True
    out: str | None = None
    overwrite: bool = False  # replace a folder this app wrote at ``out``
    store: bool = True
    # "fisher", or "exact": every layer alone in every format (O(layers x formats) forwards);
    # None: fisher for RTN alone, exact with calibrated methods (which fisher cannot rank)
    sensitivity: str | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS  # how a layer's codes may be chosen: a (format, method) search
    title: str = "Autoquant"

    def run(self, ctx: JobContext, ws: Workspace) -> AutoquantOutcome:
        _check_out(self.out, self.overwrite, self.model)
        bundle = _float_source(ws, self.model)
        ctx.progress(0.0, "loading calibration and validation images")
        cal = load_calibration(bundle, self.data, self.calib, should_stop=ctx.should_stop)
        # A size target needs no labels; an accuracy budget needs a labelled validation set.
        if self.budget.kind == "drop":
            val = load_images(bundle, self.val_data or DEFAULT_CALIBRATION, should_stop=ctx.should_stop)
        elif self.val_data and self.val_data != self.data:
            val = load_images(bundle, self.val_data, should_stop=ctx.should_stop)
        else:
            val = cal if cal.y is not None else None
        if tuple(self.methods) != DEFAULT_METHODS:
            check_memory(memory_estimate(bundle.model, cal.x), 1.0, "autoquant with methods", bundle.path)
        result = autoquant(
            bundle,
            self.budget,
            cal,
            val,
            self.candidates,
            self.group_size,
            self.fold_bn,
            progress=ctx.scaled(0.0, 0.97),
            should_stop=ctx.should_stop,
            on_step=ctx.partial,
            sensitivity=self.sensitivity or default_sensitivity(self.methods),
            methods=self.methods,
        )
        ctx.check()
        variant = build_variant(bundle, result.recipe, result.methods, cal, should_stop=ctx.should_stop)
        source = {"kind": "autoquant", "budget": {"kind": self.budget.kind, "value": self.budget.value}}
        source["met"] = result.met
        if result.calibrated:
            source.update(method="per-layer", methods=method_counts(result.methods), calibration=cal.name)
            source["calibration_size"] = len(cal)
        path, card = _save_variant(ws, variant, self.out, result.recipe.name, bundle, source, self.overwrite)
        src = model_card(bundle)
        record = None
        if self.store:
            metrics = {
                "size_on_disk_bytes": float(card.size_on_disk or 0),
                "source_size_on_disk_bytes": float(src.size_on_disk or 0),
                "compression_ratio": (src.size_on_disk or 0) / (card.size_on_disk or 1),
                "bits_per_weight": card.bits_per_weight,
                "params": float(card.params),
                "measured_kl": result.measured_kl,
                "budget_met": float(result.met),
                "seconds": result.seconds,
            }
            if result.accuracy is not None:
                metrics["val_accuracy"] = result.accuracy
                metrics["val_accuracy_float"] = result.float_accuracy or 0.0
            record = ws.store.add(
                RunRecord(
                    kind="quantize",
                    model_name=card.name,
                    model_path=card.path,
                    model_hash=card.content_hash,
                    recipe=result.recipe.name,
                    dataset=(val or cal).name,
                    metrics=metrics,
                    settings={
                        "calibration": {"data": str(self.data), "images": len(cal), "labelled": cal.y is not None},
                        "recipe": result.recipe.to_dict(),
                        "source": str(bundle.path),
                        "budget": self.budget.describe(),
                        "candidates": list(self.candidates),
                        "methods": list(self.methods),
                        "layer_methods": dict(result.methods),
                    },
                )
            )
        ctx.progress(1.0, f"saved {path}")
        return AutoquantOutcome(result, path, card, src, record)


# -- activation simulation ----------------------------------------------------------------------


@dataclass(frozen=True)
class ActSimOutcome:
    """``weight_only``: the model as stored (float activations); ``simulated``: with int8 activations."""

    weight_only: EvaluationResult
    simulated: EvaluationResult
    calibration: ActCalibration
    records: tuple[RunRecord, ...]


@dataclass(frozen=True)
class ActSimJob:
    model: str
    data: str = "default"
    calib_data: str = DEFAULT_CALIBRATION
    settings: ActSimSettings = field(default_factory=ActSimSettings)
    batch_size: int = 64
    limit: int | None = None
    store: bool = True
    title: str = "Simulate int8 activations"

    def run(self, ctx: JobContext, ws: Workspace) -> ActSimOutcome:
        from engine.image.data.datasets import open_dataset

        self.settings.validate()
        bundle = ws.bundle(self.model)
        ctx.progress(0.0, f"calibrating on {self.settings.calib} images of {self.calib_data}")
        images = load_calibration(bundle, self.calib_data, self.settings.calib, self.settings.seed, ctx.should_stop)
        cal = calibrate(bundle.model, images, self.settings, progress=ctx.scaled(0.0, 0.2), should_stop=ctx.should_stop)
        dataset = open_dataset(self.data)
        plain = evaluate_bundle(
            bundle, dataset, self.batch_size, self.limit, ctx.scaled(0.2, 0.6, "weight-only: "), ctx.should_stop
        )
        dataset.skipped.clear()
        with simulated_activations(bundle.model, cal):
            sim = evaluate_bundle(
                bundle, dataset, self.batch_size, self.limit, ctx.scaled(0.6, 1.0, "activations: "), ctx.should_stop
            )
        records = ()
        if self.store:
            records = tuple(
                ws.store.add(_eval_record(bundle, res, self.data, dataset.name, label, extra))
                for res, label, extra in (
                    (plain, bundle.recipe_name, {"activations": "float32 (weight-only quantization)"}),
                    (
                        sim,
                        f"{bundle.recipe_name}+a{self.settings.bits}",
                        {
                            "activations": cal.settings.label(),
                            "observer": self.settings.observer,
                            "calibration_images": cal.n_images,
                            "calibration_data": self.calib_data,
                        },
                    ),
                )
            )
        return ActSimOutcome(plain, sim, cal, records)


def _eval_record(bundle, res: EvaluationResult, data: str, dataset_name: str, recipe: str, extra: dict) -> RunRecord:
    rep = res.report
    per_class = tuple((m, c, float(v)) for (_, m, c, v) in rep.long_rows(bundle.name) if c != "")
    return RunRecord(
        kind="evaluate",
        model_name=bundle.name,
        model_path=str(bundle.path),
        model_hash=bundle.content_hash(),
        recipe=recipe,
        dataset=data if data in ("default", "default-val") else dataset_name,
        metrics={**rep.overall(), "images_per_s": res.images_per_s},
        per_class=per_class,
        settings={"data": str(data), **extra},
    )


@dataclass(frozen=True)
class CalibrationSweepJob:
    """Accuracy with simulated activations per observer and calibration-set size."""

    model: str
    data: str = "default"
    calib_data: str = DEFAULT_CALIBRATION
    observers: tuple[str, ...] = ("minmax", "percentile", "mse")
    sizes: tuple[int, ...] = (1, 8, 64, 256)
    draws: int = 1
    bits: int = 8
    limit: int | None = None
    title: str = "Calibration sweep"

    def run(self, ctx: JobContext, ws: Workspace) -> tuple[SimRow, ...]:
        bundle = ws.bundle(self.model)
        ctx.progress(0.0, "loading images")
        cal = load_calibration(bundle, self.calib_data, should_stop=ctx.should_stop)
        ev = load_images(bundle, self.data, self.limit, should_stop=ctx.should_stop)
        return calibration_sweep(
            bundle.model,
            cal,
            ev,
            self.observers,
            self.sizes,
            self.draws,
            ActSimSettings(bits=self.bits),
            progress=ctx.progress,
            should_stop=ctx.should_stop,
            on_row=ctx.partial,
        )


# -- accuracy recovery --------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneOutcome:
    result: FinetuneResult
    path: str
    card: ModelCard
    record: RunRecord | None
    teacher: str | None = None  # the teacher's path, None without one
    note: str | None = None  # what was chosen for the user (a teacher defaulted to the float parent)


def split_train_val(images: LabelledImages, fraction: float = 0.2, seed: int = 0):
    """A seeded split of one labelled set into training and validation images."""
    import numpy as np

    n = len(images)
    n_val = max(1, int(round(fraction * n)))
    if n - n_val < 1:
        raise UserError(f"dataset '{images.name}' has too few images ({n}) to hold out a validation split")
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (
        LabelledImages(f"{images.name} (train)", images.x[train], images.y[train]),
        LabelledImages(f"{images.name} (validation)", images.x[val], images.y[val]),
    )


@dataclass(frozen=True)
class FinetuneJob:
    """QAT / distillation. ``student_config`` re-initialises the student's architecture (a smaller model).

    ``model`` may be a quantized bundle (any method): it is fine-tuned on its own formats and
    grid (``engine.image.quant.from_quantized``). Without a ``teacher``, and with
    ``teacher_from_parent``, such a model is distilled from the float model it was quantized
    from when its config records one that is still there unchanged (same content hash); the
    outcome's ``note`` says which.
    """

    model: str
    settings: FinetuneSettings = field(default_factory=FinetuneSettings)
    teacher: str | None = None
    data: str = DEFAULT_CALIBRATION
    val_data: str | None = None  # default: 20 % of ``data`` held out
    limit: int | None = None
    student_config: tuple[tuple[str, object], ...] = ()
    out: str | None = None
    overwrite: bool = False  # replace a folder this app wrote at ``out``
    store: bool = True
    teacher_from_parent: bool = True  # a quantized model without a teacher: distil from its float parent
    title: str = "Fine-tune"

    def run(self, ctx: JobContext, ws: Workspace) -> FinetuneOutcome:
        from dataclasses import replace

        _check_out(self.out, self.overwrite, self.model)
        source = ws.bundle(self.model)
        quantized = bool(source.quantization)
        if quantized:
            stored_recipe(source, self.settings.recipe)  # a recipe that disagrees fails before any work
        student, settings = source, self.settings
        if self.student_config:
            if quantized:
                raise UserError(
                    f"model '{source.name}' is quantized; a fresh student (student config) starts from a float model"
                )
            student = _fresh_student(source, dict(self.student_config), settings.seed)
            settings = replace(settings, train_bn=True)
        note = None
        teacher = _float_source(ws, self.teacher) if self.teacher else None
        if teacher is None and quantized and self.teacher_from_parent:
            teacher, note = _float_parent(ws, source)
        ctx.progress(0.0, f"loading {self.data}")
        data = load_images(source, self.data, self.limit, should_stop=ctx.should_stop)
        if self.val_data:
            train, val = data, load_images(source, self.val_data, should_stop=ctx.should_stop)
        else:
            train, val = split_train_val(data)
        trained, result = finetune(
            student, train, val, settings, teacher, ctx.scaled(0.0, 0.97), ctx.should_stop, ctx.partial
        )
        ctx.check()
        kind = "ft" if teacher is None else "kd"
        label = kind if quantized else f"{result.recipe}-{kind}"  # a quantized model's name says its recipe
        started = {}
        if quantized:
            started = {
                "from_quantized": {
                    "path": str(source.path),
                    "recipe": source.recipe_name,
                    "method": result.from_method,
                    "parent": source.source.get("parent"),
                }
            }
        path, card = _save_variant(
            ws,
            trained,
            self.out,
            label,
            source,
            {
                "kind": "finetuned",
                "teacher": str(teacher.path) if teacher else None,
                "data": str(self.data),
                "steps": result.steps,
                "student_config": dict(self.student_config) or None,
                **started,
            },
            self.overwrite,
        )
        record = None
        if self.store:
            record = ws.store.add(
                RunRecord(
                    kind="finetune",
                    model_name=card.name,
                    model_path=card.path,
                    model_hash=card.content_hash,
                    recipe=label,
                    dataset=val.name,
                    metrics={
                        "val_accuracy_before": result.before_accuracy,
                        "val_accuracy_after": result.after_accuracy,
                        **(
                            {"val_accuracy_teacher": result.teacher_accuracy}
                            if result.teacher_accuracy is not None
                            else {}
                        ),
                        "steps": float(result.steps),
                        "seconds": result.seconds,
                        "bits_per_weight": card.bits_per_weight,
                        "size_on_disk_bytes": float(card.size_on_disk or 0),
                    },
                    settings={
                        "recipe": result.recipe
                        if not hasattr(settings.recipe, "to_dict")
                        else settings.recipe.to_dict(),
                        "from_quantized": str(source.path) if quantized else None,
                        "epochs": settings.epochs,
                        "batch_size": settings.batch_size,
                        "lr": settings.lr,
                        "temperature": settings.temperature,
                        "alpha": settings.alpha,
                        "attention": [list(p) for p in settings.attention],
                        "teacher": str(teacher.path) if teacher else None,
                        "data": str(self.data),
                    },
                )
            )
        ctx.progress(1.0, f"saved {path}")
        return FinetuneOutcome(result, path, card, record, str(teacher.path) if teacher else None, note)


def _float_parent(ws: Workspace, q: ModelBundle) -> tuple[ModelBundle | None, str]:
    """The float model ``q`` was quantized from, if its config names one that is there unchanged; and a note."""
    parent, want = q.source.get("parent"), q.source.get("parent_hash")
    if not parent:
        return None, f"no teacher: '{q.name}' records no float parent (give --teacher to distil)"
    if not Path(parent).is_dir():
        return None, f"no teacher: the float parent {parent} recorded by '{q.name}' is not there"
    try:
        found = ws.bundle(parent)
    except UserError as exc:
        return None, f"no teacher: the float parent recorded by '{q.name}' does not load ({exc})"
    if found.quantization or (want and found.content_hash() != want):
        return None, f"no teacher: the float parent {parent} has changed since '{q.name}' was made from it"
    return found, f"teacher: {parent}, the float model '{q.name}' was quantized from"


def _fresh_student(source: ModelBundle, config: dict, seed: int) -> ModelBundle:
    """A randomly initialised model of ``source``'s architecture with ``config`` overriding its config."""
    import mlx.core as mx

    from engine.image.models import registry

    arch = registry.get(source.arch)
    cfg = {**source.arch_config, **config}
    mx.random.seed(seed)
    try:
        model = arch.build(cfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"student config {config} does not build a {source.arch} ({exc})") from None
    mx.eval(model.parameters())
    model.eval()
    return ModelBundle(
        name=f"{source.name}-student",
        arch=source.arch,
        arch_config=arch.config_cls.from_dict(cfg).to_dict(),
        preprocessing=source.preprocessing,
        labels=list(source.labels),
        model=model,
        source={"kind": "student", "config": config},
    )
