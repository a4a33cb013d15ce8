"""The full evaluation of a float model and its variants: one job for the GUI and the CLI.

For every variant: classification, ranking and calibration metrics (optionally with
bootstrap intervals); for every variant after the first, agreement with the first (the
reference, normally the float model); optionally the same under corruptions and under
an operating point chosen on validation data. Every number leaves as long rows
(``engine.measure.evaluate.rows``) and each variant is stored as one run in the results store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.core.errors import UserError
from engine.image.bundle import ModelBundle
from engine.image.data.corruptions import SEVERITIES, Corruption
from engine.image.data.datasets import ImageDataset, open_dataset
from engine.image.data.splits import DEFAULT_FRACTIONS
from engine.image.evaluation import EvaluationResult, evaluate_bundle
from engine.image.model_card import model_card
from engine.measure.evaluate.agreement import Agreement, agreement, align
from engine.measure.evaluate.calibration import DEFAULT_BINS
from engine.measure.evaluate.metrics import (
    DEFAULT_TOP_K,
    VariantMetrics,
    bootstrap_intervals,
    compute_metrics,
    with_intervals,
)
from engine.measure.evaluate.operating_point import OperatingPoint, OperatingPointSpec
from engine.measure.evaluate.rows import OPERATING_POINT, Row, evaluation_record
from engine.measure.results import RunRecord
from engine.runtime import JobContext, Workspace

VAL_FROM_DATA = "val"  # thresholds_from="val": the val split of the evaluation data


@dataclass(frozen=True)
class EvaluationSettings:
    """What to evaluate on and which extra analyses to run.

    Attributes:
        data, split, seed, label_pattern, fractions: the dataset (see ``open_dataset``).
        batch_size, limit: batches of the model; evaluate only the first ``limit`` images.
        top_k, bins: top-k accuracies; bins of the reliability diagram / ECE.
        bootstrap, bootstrap_seed: resamples for 95 % intervals (0: none).
        corruptions, severities, corruption_seed: robustness passes.
        operating_point: objective to fit on validation data (None: none).
        thresholds_from, thresholds_split: the validation data for the operating point;
            "val" means the val split of ``data``.
        workers, prefetch: decode-ahead threads and batches.
    """

    data: str = "default"
    split: str | None = None
    seed: int = 0
    label_pattern: str | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    batch_size: int = 64
    limit: int | None = None
    top_k: tuple[int, ...] = DEFAULT_TOP_K
    bins: int = DEFAULT_BINS
    bootstrap: int = 0
    bootstrap_seed: int = 0
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = SEVERITIES
    corruption_seed: int = 0
    operating_point: OperatingPointSpec | None = None
    thresholds_from: str | None = None
    thresholds_split: str | None = None
    workers: int = 1
    prefetch: int = 2

    def validate(self) -> EvaluationSettings:
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, not {self.batch_size}")
        if self.bins < 2:
            raise UserError(f"reliability bins must be at least 2, not {self.bins}")
        if self.bootstrap < 0:
            raise UserError(f"bootstrap resamples must be 0 or more, not {self.bootstrap}")
        if any(k < 1 for k in self.top_k):
            raise UserError(f"top-k values must be at least 1, not {self.top_k}")
        for name in self.corruptions:
            for sev in self.severities:
                Corruption(name, sev)  # raises on an unknown name or severity
        if self.operating_point is not None and not self.thresholds_from:
            raise UserError("an operating point needs validation data (--thresholds-from VAL, or 'val')")
        return self

    def val_source(self) -> tuple[str, str | None]:
        """(dataset spec, split) of the validation data for the operating point."""
        if self.thresholds_from == VAL_FROM_DATA:
            if self.split == "val":
                raise UserError("thresholds chosen on the val split cannot be tested on the val split")
            return self.data, "val"
        split = self.thresholds_split
        if self.thresholds_from == self.data and split is None and self.split not in (None, "all"):
            split = "val"
        if self.thresholds_from == self.data and split == self.split:
            raise UserError("thresholds must be chosen on other data than the test data; give another split")
        return str(self.thresholds_from), split


@dataclass(frozen=True)
class VariantRows:
    """Partial result: every metric row of one variant, as soon as that variant is evaluated."""

    variant: str
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class VariantOutcome:
    """One variant's evaluation: the clean result, its metrics, rows and stored record."""

    name: str
    recipe: str
    path: str
    result: EvaluationResult
    metrics: VariantMetrics
    agreement: Agreement | None
    operating_point: OperatingPoint | None
    rows: tuple[Row, ...]
    record: RunRecord | None = None


@dataclass(frozen=True)
class SuiteOutcome:
    dataset: str
    reference: str
    variants: tuple[VariantOutcome, ...]
    skipped: tuple[tuple[str, str], ...]
    settings: EvaluationSettings = field(default_factory=EvaluationSettings)

    @property
    def rows(self) -> list[Row]:
        return [r for v in self.variants for r in v.rows]


def _unique_names(bundles: list[ModelBundle]) -> list[str]:
    names: list[str] = []
    for b in bundles:
        name = b.name
        if name in names:
            name = f"{b.name} [{b.recipe_name}]"
        i = 2
        while name in names:
            name = f"{b.name} #{i}"
            i += 1
        names.append(name)
    return names


@dataclass(frozen=True)
class EvaluationSuiteJob:
    """Evaluate ``models`` (the first is the reference) with ``settings``; see the module docstring."""

    models: tuple[str, ...]
    settings: EvaluationSettings = field(default_factory=EvaluationSettings)
    store: bool = True
    title: str = "Evaluate"

    def run(self, ctx: JobContext, ws: Workspace) -> SuiteOutcome:
        s = self.settings.validate()
        if not self.models:
            raise UserError("no model to evaluate")
        bundles = [ws.bundle(m) for m in self.models]
        names = _unique_names(bundles)
        dataset = open_dataset(s.data, s.split, s.seed, s.label_pattern, s.fractions)
        val = None
        if s.operating_point is not None:
            spec, split = s.val_source()
            val = open_dataset(spec, split, s.seed, s.label_pattern if spec == s.data else None, s.fractions)
        conditions = [Corruption(c, sev, s.corruption_seed) for c in s.corruptions for sev in s.severities]
        passes = len(bundles) * (1 + len(conditions) + (1 if val is not None else 0))
        done = [0]

        def evaluate(bundle: ModelBundle, data: ImageDataset, label: str, transform=None) -> EvaluationResult:
            k = done[0]
            res = evaluate_bundle(
                bundle,
                data,
                s.batch_size,
                s.limit,
                ctx.scaled(k / passes, (k + 1) / passes),
                ctx.should_stop,
                transform,
                s.prefetch,
                s.workers,
                label=label,
            )
            done[0] += 1
            return res

        clean: list[EvaluationResult] = []
        metrics: list[VariantMetrics] = []
        rows: list[list[Row]] = [[] for _ in bundles]
        agreements: list[Agreement | None] = []
        points: list[OperatingPoint | None] = []
        for i, (bundle, name) in enumerate(zip(bundles, names, strict=True)):
            res = evaluate(bundle, dataset, name)
            vm = compute_metrics(res.y_true, res.probs, list(bundle.labels), top_k=s.top_k, n_bins=s.bins)
            if s.bootstrap:
                ctx.progress(done[0] / passes, f"{name}: bootstrap ({s.bootstrap} resamples)")
                iv = bootstrap_intervals(
                    res.y_true,
                    res.probs,
                    list(bundle.labels),
                    s.bootstrap,
                    s.bootstrap_seed,
                    top_k=s.top_k,
                    n_bins=s.bins,
                    should_stop=ctx.should_stop,
                )
                vm = with_intervals(vm, iv, s.bootstrap)
            clean.append(res)
            metrics.append(vm)
            rows[i] += vm.long_rows(name)
            rows[i] += [(name, "images_per_s", "", res.images_per_s), (name, "skipped", "", float(len(res.skipped)))]
            # Methods are compared at equal bits per weight: the table says what each variant stores.
            rows[i].append((name, "bits_per_weight", "", model_card(bundle).bits_per_weight))
            ag = None
            if i > 0:
                ag = _agreement(names[0], clean[0], metrics[0], res, vm)
                rows[i] += ag.long_rows(name)
            agreements.append(ag)
            ctx.partial(VariantRows(name, tuple(rows[i])))

        for corruption in conditions:
            ref_res = ref_vm = None
            for i, (bundle, name) in enumerate(zip(bundles, names, strict=True)):
                ctx.check()
                res = evaluate(bundle, dataset, f"{name} {corruption.label}", corruption)
                vm = compute_metrics(res.y_true, res.probs, list(bundle.labels), top_k=s.top_k, n_bins=s.bins)
                rows[i] += vm.long_rows(name, corruption.label, confusion=False, reliability=False)
                if i == 0:
                    ref_res, ref_vm = res, vm
                else:
                    rows[i] += _agreement(names[0], ref_res, ref_vm, res, vm).long_rows(name, corruption.label)

        for i, (bundle, name) in enumerate(zip(bundles, names, strict=True)):
            point = None
            if val is not None:
                vres = evaluate(bundle, val, f"{name} validation")
                point = s.operating_point.fit(vres.y_true, vres.probs, list(bundle.labels))
                res = clean[i]
                pred = point.predict(res.probs)
                vm = compute_metrics(res.y_true, res.probs, list(bundle.labels), pred, s.top_k, s.bins)
                rows[i] += point.long_rows(name)
                rows[i] += vm.long_rows(name, OPERATING_POINT, reliability=False)
            points.append(point)

        outcomes = []
        for i, (bundle, name) in enumerate(zip(bundles, names, strict=True)):
            record = self._store(ws, bundle, name, dataset, rows[i], s) if self.store else None
            outcomes.append(
                VariantOutcome(
                    name=name,
                    recipe=bundle.recipe_name,
                    path=str(bundle.path),
                    result=clean[i],
                    metrics=metrics[i],
                    agreement=agreements[i],
                    operating_point=points[i],
                    rows=tuple(rows[i]),
                    record=record,
                )
            )
        ctx.progress(1.0, f"evaluated {len(bundles)} variant(s) on {dataset.name}")
        return SuiteOutcome(dataset.name, names[0], tuple(outcomes), clean[0].skipped, s)

    def _store(
        self, ws: Workspace, bundle: ModelBundle, name: str, dataset: ImageDataset, rows: list[Row], s
    ) -> RunRecord:
        settings = {
            "data": s.data,
            "split": s.split,
            "seed": s.seed,
            "label_pattern": s.label_pattern,
            "batch_size": s.batch_size,
            "limit": s.limit,
            "bootstrap": s.bootstrap,
            "corruptions": list(s.corruptions),
            "severities": list(s.severities),
            "operating_point": None if s.operating_point is None else s.operating_point.__dict__,
            "thresholds_from": s.thresholds_from,
            "reference": self.models[0],
            "variant": name,
        }
        return ws.store.add(evaluation_record(bundle, dataset.name, rows, settings))


def _agreement(
    reference: str, ref: EvaluationResult, ref_vm: VariantMetrics, res: EvaluationResult, vm: VariantMetrics
) -> Agreement:
    a, b = align(ref.ids, res.ids)
    if len(a) == len(ref.ids) == len(res.ids):
        return agreement(reference, res.y_true, ref.probs, res.probs, ref_vm, vm)
    # Different images were readable in the two runs: compare on the common ones.
    names = list(vm.class_names)
    ref_sub = compute_metrics(ref.y_true[a], ref.probs[a], names)
    sub = compute_metrics(res.y_true[b], res.probs[b], names)
    return agreement(reference, res.y_true[b], ref.probs[a], res.probs[b], ref_sub, sub)
