"""Automatic mixed precision: the smallest per-layer assignment of formats that meets a budget.

1. Sensitivity: every layer alone in every candidate format, KL divergence
   against the float model on calibration images (``sensitivity.py``).
2. Frontier: treating the layers' KL as additive, a multiple-choice knapsack
   (dynamic programming over bytes) gives, for any size, the assignment with
   the least predicted KL. Solving it for a ladder of sizes gives the
   frontier from "everything at the fewest bits" to "everything at the most".
3. Budget:
   - a size (MB or bits per weight): the frontier point at that size; its real
     KL (all layers quantized together) is measured and reported;
   - a maximum accuracy drop (points, on a validation split): a binary search
     along the frontier, measuring each probed model's validation accuracy,
     for the smallest model whose drop is within the budget.
Every probed assignment is in the trace with its predicted and measured numbers.

With ``methods`` beyond RTN (say rtn and gptq+bc), each layer's options are (format, method)
pairs: step 1 measures every layer alone in every format by every method
(``methods/sensitivity.py``, exact only), and as a format's size does not depend on the
method, each (layer, format) keeps the method that hurts least and the knapsack trades formats
as before. Every model built (probes and the result) runs ``quantize_with_method`` with the
per-layer choice: one sequential pass in which RTN layers are rounded to nearest and the
calibrated ones see the earlier layers already quantized.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.quant.apply import quantize_model
from engine.image.quant.calibration import LabelledImages, OutputChange, logits_of
from engine.image.quant.fisher import analyze_sensitivity_fisher
from engine.image.quant.formats import parse_spec
from engine.image.quant.methods.run import MethodSettings, quantize_with_method
from engine.image.quant.methods.sensitivity import analyze_sensitivity_methods, ordered_methods
from engine.image.quant.recipes import Recipe, exact_pattern
from engine.image.quant.sensitivity import SensitivityReport, analyze_sensitivity

MB = 1024 * 1024  # sizes are shown in binary megabytes, as everywhere in the app
DEFAULT_CANDIDATES = ("int2", "int3", "int4", "int5", "int6", "int8")
BUDGET_KINDS = ("bpw", "mb", "drop")
SENSITIVITY_MODES = ("fisher", "exact")
DEFAULT_METHODS = ("rtn",)


def default_sensitivity(methods) -> str:
    """Fisher for RTN alone (fast); exact as soon as a calibrated method is a candidate (see ``autoquant``)."""
    return "fisher" if tuple(methods) == DEFAULT_METHODS else "exact"


def method_counts(methods: tuple[tuple[str, str], ...]) -> dict[str, int]:
    """{method: number of layers} of a per-layer choice, most used first."""
    counts: dict[str, int] = {}
    for _, m in methods:
        counts[m] = counts.get(m, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class Budget:
    """``kind``: 'bpw' (bits per weight), 'mb' (weight bytes in MB) or 'drop' (max accuracy drop, points)."""

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in BUDGET_KINDS:
            raise UserError(f"budget kind must be one of {', '.join(BUDGET_KINDS)}, not '{self.kind}'")
        if not (self.value > 0 or (self.kind == "drop" and self.value == 0)):
            raise UserError(f"the {self.kind} budget must be positive, not {self.value}")

    def describe(self) -> str:
        return {
            "bpw": f"≤ {self.value:g} bits/weight",
            "mb": f"≤ {self.value:g} MB",
            "drop": f"accuracy drop ≤ {self.value:g} points",
        }[self.kind]


@dataclass(frozen=True)
class TraceStep:
    step: int
    action: str  # "frontier", "probe", "chosen"
    bytes: int
    bits_per_weight: float
    predicted_kl: float
    measured_kl: float | None
    flip_rate: float | None
    accuracy: float | None  # on the validation images (the budget's split)
    meets: bool | None
    assignment: tuple[tuple[str, str], ...]  # (layer, format)
    methods: tuple[tuple[str, str], ...] = ()  # (layer, method) of the same layers


@dataclass(frozen=True)
class AutoquantResult:
    budget: Budget
    recipe: Recipe
    assignment: tuple[tuple[str, str], ...]
    bytes: int
    params: int
    bits_per_weight: float
    met: bool
    float_accuracy: float | None  # validation
    accuracy: float | None  # validation
    measured_kl: float
    trace: tuple[TraceStep, ...]
    sensitivity: SensitivityReport
    seconds: float
    methods: tuple[tuple[str, str], ...] = ()  # (layer, method) of the assignment's layers

    @property
    def calibrated(self) -> bool:
        """Whether any layer's codes come from a calibrated method (the build needs calibration images)."""
        return any(m != "rtn" for _, m in self.methods)


# -- the knapsack ----------------------------------------------------------------------------


def _solve(costs: np.ndarray, sizes: np.ndarray, capacity: int, unit: int) -> list[int] | None:
    """Minimum-cost choice per layer with total size <= capacity (multiple-choice knapsack, DP).

    Sizes above each layer's smallest are rounded up to ``unit`` bytes, so a solution never
    exceeds the capacity.
    Returns one choice index per layer, or None when even the smallest choices do not fit.
    """
    n_layers, _ = costs.shape
    # Count bytes above each layer's smallest choice, so the smallest model is never lost to rounding.
    base = sizes.min(axis=1, keepdims=True)
    capacity -= int(base.sum())
    if capacity < 0:
        return None
    w = np.ceil((sizes - base) / unit).astype(np.int64)
    cap = int(capacity // unit)
    inf = np.inf
    best = np.full(cap + 1, inf)
    best[0] = 0.0
    picks = np.zeros((n_layers, cap + 1), dtype=np.int16)
    for layer in range(n_layers):
        new = np.full(cap + 1, inf)
        pick = np.zeros(cap + 1, dtype=np.int16)
        for c in range(costs.shape[1]):
            wc = w[layer, c]
            if wc > cap:
                continue
            cand = np.full(cap + 1, inf)
            cand[wc:] = best[: cap + 1 - wc] + costs[layer, c]
            better = cand < new
            new[better] = cand[better]
            pick[better] = c
        best, picks[layer] = new, pick
    end = int(np.argmin(best))
    if not np.isfinite(best[end]):
        return None
    choice = [0] * n_layers
    for layer in range(n_layers - 1, -1, -1):
        c = int(picks[layer, end])
        choice[layer] = c
        end -= w[layer, c]
    return choice


@dataclass(frozen=True)
class _Problem:
    paths: tuple[str, ...]
    formats: tuple[str, ...]
    costs: np.ndarray  # (layers, formats) KL of that layer alone in that format (by its best method)
    sizes: np.ndarray  # (layers, formats) bytes
    other_bytes: int
    params: int
    best_methods: tuple[tuple[str, ...], ...] = ()  # [layer][format]: the method of that cost

    @classmethod
    def from_report(cls, report: SensitivityReport, methods: tuple[str, ...] = DEFAULT_METHODS) -> _Problem:
        paths = tuple(i.path for i in report.layers)
        fmts = report.formats
        # (layers, formats, methods); a format's size is the same whatever the method, so the
        # (format, method) knapsack is the format knapsack over each pair's least-KL method.
        # ``methods`` is in METHODS' order, RTN first, so argmin's ties go to the cheaper method.
        kl = [[[report.row(p, f, m).kl for m in methods] for f in fmts] for p in paths]
        by_method = np.array(kl, dtype=np.float64).reshape(len(paths), len(fmts), len(methods))
        pick = np.argmin(by_method, axis=2)
        costs = np.take_along_axis(by_method, pick[..., None], axis=2)[..., 0]
        best = tuple(tuple(methods[int(k)] for k in row) for row in pick)
        sizes = np.array([[report.row(p, f, methods[0]).bytes for f in fmts] for p in paths], dtype=np.float64)
        # A whisker of size in the cost so equal-KL ties go to the smaller format.
        costs = costs + 1e-9 * sizes / max(1.0, sizes.max())
        params = sum(i.params for i in report.layers) + report.other_params
        return cls(paths, fmts, costs, sizes, report.other_bytes, params, best)

    def total_bytes(self, choice: list[int]) -> int:
        return int(sum(self.sizes[i, c] for i, c in enumerate(choice))) + self.other_bytes

    def predicted(self, choice: list[int]) -> float:
        return float(sum(self.costs[i, c] for i, c in enumerate(choice)))

    def assignment(self, choice: list[int]) -> tuple[tuple[str, str], ...]:
        return tuple((p, self.formats[c]) for p, c in zip(self.paths, choice, strict=True))

    def methods(self, choice: list[int]) -> tuple[tuple[str, str], ...]:
        return tuple((p, self.best_methods[i][c]) for i, (p, c) in enumerate(zip(self.paths, choice, strict=True)))

    def solve(self, total_bytes: float) -> list[int] | None:
        capacity = total_bytes - self.other_bytes
        unit = max(1, int(self.sizes.max(axis=1).sum() // 4000))
        return _solve(self.costs, self.sizes, int(capacity), unit)

    def frontier(self, points: int = 24) -> list[list[int]]:
        """Distinct optimal assignments for a ladder of sizes, smallest first."""
        lo = self.sizes.min(axis=1).sum() + self.other_bytes
        hi = self.sizes.max(axis=1).sum() + self.other_bytes
        out, seen = [], set()
        for t in np.linspace(0.0, 1.0, points):
            choice = self.solve(lo + t * (hi - lo) + 1)
            if choice is not None and tuple(choice) not in seen:
                seen.add(tuple(choice))
                out.append(choice)
        out.sort(key=self.total_bytes)
        return out


def recipe_for(assignment, name: str, fold_bn: bool, scale_dtype: str) -> Recipe:
    """A recipe that stores each layer exactly as assigned."""
    specs = tuple((exact_pattern(p), parse_spec(f)) for p, f in assignment)
    default = specs[0][1] if specs else parse_spec("int8")
    return Recipe(name, default, overrides=specs, fold_bn=fold_bn, scale_dtype=scale_dtype)


def build_variant(
    bundle,
    recipe: Recipe,
    methods: tuple[tuple[str, str], ...] = (),
    calibration: LabelledImages | None = None,
    settings: MethodSettings | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """A quantized copy of ``bundle`` (the bundle itself is untouched).

    ``methods``: (layer, method) pairs; when any is calibrated, the layers are quantized in one
    sequential ``quantize_with_method`` pass on ``calibration``'s images, each by its method.
    """
    work = bundle.clone()
    if any(m != "rtn" for _, m in methods):
        if calibration is None:
            raise UserError("calibrated methods need calibration images")
        work.quantization, _ = quantize_with_method(
            work.model,
            recipe,
            dict(methods),
            calibration.x,
            calibration.name,
            settings,
            should_stop=should_stop,
            input_shape=bundle.input_shape(),
        )
    else:
        work.quantization = quantize_model(work.model, recipe, input_shape=bundle.input_shape())
    return work


def autoquant(
    bundle,
    budget: Budget,
    calibration: LabelledImages,
    validation: LabelledImages | None = None,
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
    group_size: int | None = None,
    fold_bn: bool = True,
    scale_dtype: str = "float16",
    batch_size: int = 128,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[TraceStep], None] | None = None,
    report: SensitivityReport | None = None,
    sensitivity: str = "exact",
    methods: tuple[str, ...] = DEFAULT_METHODS,
    method_settings: MethodSettings | None = None,
) -> AutoquantResult:
    """Search per-layer formats (and methods) for the smallest model that meets ``budget``.

    Args:
        bundle: a float ModelBundle (not modified).
        budget: target size or maximum accuracy drop.
        calibration: images for the sensitivity analysis and the measured KL.
        validation: labelled images the accuracy budget is checked on (default:
            the calibration images).
        candidates: the formats a layer may take (format names).
        group_size: for intN candidates that carry none (default 64).
        report: a sensitivity report to reuse (same candidates, at least ``methods``), skipping step 1.
        sensitivity: "exact" (every layer alone in every format, run over the calibration
            images) or "fisher" (predicted from the Fisher information, ``fisher.py``: a few
            forward-equivalents whatever the number of layers and formats).
        methods: how a layer's codes may be chosen (names of METHODS); more than RTN makes each
            layer's options (format, method) pairs, which needs ``sensitivity="exact"``. The
            calibrated methods calibrate on ``calibration``'s images.
        method_settings: the calibrated methods' settings (default MethodSettings()).

    Raises:
        UserError: impossible budget (smaller than the smallest assignment), bad candidates or
            methods, or Fisher sensitivity with a calibrated method.
        Cancelled: should_stop() turned true.
    """
    t0 = time.perf_counter()
    specs = [parse_spec(c, group_size) for c in candidates]
    if not any(s.quantized for s in specs):
        raise UserError("autoquant needs at least one quantized candidate format")

    def stage(a, b):
        def report_(f, m):
            if progress is not None:
                progress(a + (b - a) * f, m)

        return report_

    methods = ordered_methods(methods)
    if not methods:
        raise UserError("autoquant needs at least one method")
    calibrated = methods != DEFAULT_METHODS
    # A report is reused when it has the candidates' rows for every method (it may have more methods).
    stale = (
        report is None or set(report.formats) != {s.name() for s in specs} or not set(methods) <= set(report.methods)
    )
    if stale:
        if sensitivity not in SENSITIVITY_MODES:
            raise UserError(f"sensitivity must be one of {', '.join(SENSITIVITY_MODES)}, not '{sensitivity}'")
        if calibrated and sensitivity == "fisher":
            # KL ~ 1/2 sum F_ii dw_i^2 has no cross terms, and on RTN's grid rounding to nearest
            # minimises every |dw_i|: the diagonal would rank RTN first by construction.
            raise UserError(
                "Fisher sensitivity cannot rank methods: it predicts a layer's KL from the diagonal of the "
                "Fisher information, under which round to nearest is best by construction (GPTQ and AdaRound "
                "win through the correlations between weights that a diagonal ignores); "
                f"use exact sensitivity with methods {', '.join(methods)}"
            )
        if calibrated:
            report = analyze_sensitivity_methods(
                bundle, specs, methods, calibration, fold_bn, scale_dtype, batch_size, stage(0.0, 0.7),
                should_stop, settings=method_settings,
            )  # fmt: skip
        else:
            analyze = analyze_sensitivity_fisher if sensitivity == "fisher" else analyze_sensitivity
            report = analyze(bundle, specs, calibration, fold_bn, scale_dtype, batch_size, stage(0.0, 0.7), should_stop)
    problem = _Problem.from_report(report, methods)
    validation = validation or calibration
    ref_cal = logits_of(bundle.model, calibration.x, batch_size, should_stop)
    ref_val = ref_cal if validation is calibration else logits_of(bundle.model, validation.x, batch_size, should_stop)
    float_acc = OutputChange.between(ref_val, ref_val, validation.y).accuracy
    trace: list[TraceStep] = []

    def bpw(nbytes: int) -> float:
        return 8.0 * nbytes / problem.params

    measured: dict[tuple[int, ...], TraceStep] = {}

    def measure(choice, action: str, meets_fn=None) -> TraceStep:
        if should_stop is not None and should_stop():
            raise Cancelled()
        known = measured.get(tuple(choice))
        if known is not None and (known.accuracy is not None or action != "chosen"):
            step = replace(known, step=len(trace) + 1, action=action)
            trace.append(step)
            if on_step is not None:
                on_step(step)
            return step
        assignment, layer_methods = problem.assignment(choice), problem.methods(choice)
        recipe = recipe_for(assignment, "probe", fold_bn, scale_dtype)
        variant = build_variant(bundle, recipe, layer_methods, calibration, method_settings, should_stop)
        cal = OutputChange.between(ref_cal, logits_of(variant.model, calibration.x, batch_size, should_stop))
        acc = None
        if budget.kind == "drop" or action == "chosen":
            val_logits = logits_of(variant.model, validation.x, batch_size, should_stop)
            acc = OutputChange.between(ref_val, val_logits, validation.y).accuracy
        nbytes = problem.total_bytes(choice)
        step = TraceStep(
            step=len(trace) + 1,
            action=action,
            bytes=nbytes,
            bits_per_weight=bpw(nbytes),
            predicted_kl=problem.predicted(choice),
            measured_kl=cal.kl,
            flip_rate=cal.flip_rate,
            accuracy=acc,
            meets=meets_fn(nbytes, acc) if meets_fn else None,
            assignment=assignment,
            methods=layer_methods,
        )
        trace.append(step)
        measured[tuple(choice)] = step
        if on_step is not None:
            on_step(step)
        return step

    if budget.kind in ("bpw", "mb"):
        target = budget.value * MB if budget.kind == "mb" else budget.value * problem.params / 8.0
        choice = problem.solve(target)
        if choice is None:
            smallest = problem.total_bytes([int(np.argmin(r)) for r in problem.sizes])
            raise UserError(
                f"budget {budget.describe()} is below the smallest possible model "
                f"({smallest / MB:.3f} MB, {bpw(smallest):.2f} bits/weight with {', '.join(candidates)})"
            )
        frontier = [c for c in problem.frontier() if problem.total_bytes(c) <= target]
        for i, c in enumerate(frontier[-4:-1]):  # a few smaller frontier points, for the trace
            measure(c, "frontier")
            stage(0.7, 0.95)((i + 1) / 4, "measuring the frontier")
        final = measure(choice, "chosen", lambda n, a: n <= target)
        met = True
    else:
        frontier = problem.frontier(points=40)

        def meets(_n, acc):
            return acc is not None and 100.0 * (float_acc - acc) <= budget.value + 1e-9

        lo, hi = 0, len(frontier) - 1
        best = None
        probes = 0
        max_probes = max(1, math.ceil(math.log2(len(frontier) + 1))) + 1
        while lo <= hi:
            mid = (lo + hi) // 2
            step = measure(frontier[mid], "probe", meets)
            probes += 1
            stage(0.7, 0.95)(min(1.0, probes / max_probes), f"probe {probes}: {step.bits_per_weight:.2f} bits/weight")
            if step.meets:
                best, hi = mid, mid - 1
            else:
                lo = mid + 1
        met = best is not None
        choice = frontier[best] if met else frontier[-1]
        final = measure(choice, "chosen", meets)
    assignment = problem.assignment(choice)
    name = f"auto-{budget.kind}{budget.value:g}"
    if progress is not None:
        progress(1.0, f"chose {final.bits_per_weight:.2f} bits/weight")
    return AutoquantResult(
        budget=budget,
        recipe=recipe_for(assignment, name, fold_bn, scale_dtype),
        assignment=assignment,
        bytes=final.bytes,
        params=problem.params,
        bits_per_weight=final.bits_per_weight,
        met=met,
        float_accuracy=float_acc,
        accuracy=final.accuracy,
        measured_kl=final.measured_kl or 0.0,
        trace=tuple(trace),
        sensitivity=report,
        seconds=time.perf_counter() - t0,
        methods=problem.methods(choice),
    )


def uniform_assignment_bytes(report: SensitivityReport, fmt: str) -> int:
    """Predicted weight bytes of every layer in ``fmt`` (a format the report measured)."""
    return sum(report.row(i.path, fmt).bytes for i in report.layers) + report.other_bytes
