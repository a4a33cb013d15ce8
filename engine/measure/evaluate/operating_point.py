"""Operating points: decision rules chosen on validation data, then applied to test data.

Two objectives:

- ``macro_f1``: per-class thresholds t_c; an image is given the class with the largest
  p_c / t_c (all t_c = 1 is the plain argmax; with two classes this is the decision
  threshold p_1 >= t_1 / (t_0 + t_1)). The t_c are found by exact coordinate ascent: for
  one class at a time every distinct decision change is scored in one vectorised sweep,
  so each step reaches that coordinate's best macro-F1 on the validation set. They are
  adopted only when 5-fold cross-validation on the validation set says they beat the
  argmax; otherwise the argmax is kept.
- ``sensitivity``: a threshold on one class (say melanoma): predict it when
  p_c >= tau, else the most probable other class. tau is the largest value whose
  validation recall (sensitivity) for that class reaches the target, which keeps the
  most specificity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from engine.core.errors import UserError
from engine.measure.evaluate.rows import Row

OBJECTIVES = ("macro_f1", "sensitivity")
MAX_PASSES = 10
CV_FOLDS = 5


@dataclass(frozen=True)
class OperatingPoint:
    """A decision rule fitted on validation data.

    Attributes:
        objective: "macro_f1" (per-class thresholds) or "sensitivity" (one class).
        thresholds: per-class t_c (objective macro_f1); all 1.0 for sensitivity.
        target_class: the class index the sensitivity target is for.
        threshold: tau on p(target_class) (objective sensitivity).
        val_value / val_baseline: the objective's value on validation data with this rule
            and with the plain argmax (macro-F1, or the target class's recall).
        cv_value / adopted: (macro_f1) the cross-validated macro-F1 of fitted thresholds,
            and whether it beat the argmax so the thresholds were adopted.
    """

    objective: str
    class_names: tuple[str, ...]
    thresholds: tuple[float, ...]
    target_class: int | None = None
    target_sensitivity: float | None = None
    threshold: float | None = None
    val_value: float = math.nan
    val_baseline: float = math.nan
    val_n: int = 0
    cv_value: float = math.nan
    adopted: bool = True

    def predict(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if self.objective == "sensitivity":
            c = int(self.target_class)
            others = probs.copy()
            others[:, c] = -np.inf
            pred = others.argmax(axis=1)
            pred[probs[:, c] >= self.threshold] = c
            return pred
        return (probs / np.asarray(self.thresholds)).argmax(axis=1)

    def long_rows(self, variant: str) -> list[Row]:
        rows: list[Row] = [
            (variant, "operating_point_val_value", "", self.val_value),
            (variant, "operating_point_val_baseline", "", self.val_baseline),
            (variant, "operating_point_val_n", "", float(self.val_n)),
        ]
        if self.objective == "macro_f1":
            rows += [
                (variant, "operating_point_cv_value", "", self.cv_value),
                (variant, "operating_point_adopted", "", 1.0 if self.adopted else 0.0),
            ]
        if self.objective == "sensitivity":
            name = self.class_names[self.target_class]
            rows += [
                (variant, "threshold", name, float(self.threshold)),
                (variant, "target_sensitivity", name, float(self.target_sensitivity)),
            ]
        else:
            rows += [(variant, "threshold", c, t) for c, t in zip(self.class_names, self.thresholds, strict=True)]
        return rows


def macro_f1_of(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(cm)
    den = cm.sum(axis=0) + cm.sum(axis=1)
    f1 = np.divide(2 * tp, den, out=np.zeros(k), where=den > 0)
    return float(f1.mean())


def _best_threshold_for(y: np.ndarray, probs: np.ndarray, t: np.ndarray, c: int) -> tuple[float, float]:
    """The t_c maximising macro-F1 with the other thresholds fixed; returns (t_c, macro-F1)."""
    n, k = probs.shape
    scaled = probs / t
    scaled[:, c] = -np.inf
    other = scaled.argmax(axis=1)
    other_val = scaled[np.arange(n), other]
    ratio = probs[:, c] / np.maximum(other_val, 1e-300)  # predicted c iff t_c < ratio
    order = np.argsort(-ratio, kind="mergesort")
    r_sorted = ratio[order]
    # Start with t_c = +inf (c never predicted), then switch images to c in descending ratio.
    tp = np.zeros(k)
    fp = np.zeros(k)
    fn = np.zeros(k)
    np.add.at(tp, other[y == other], 1)
    np.add.at(fp, other[y != other], 1)
    np.add.at(fn, y[y != other], 1)
    d_tp = np.zeros((n, k))
    d_fp = np.zeros((n, k))
    d_fn = np.zeros((n, k))
    rows = np.arange(n)
    ys, os_ = y[order], other[order]
    hit_before = ys == os_
    # Leaving the old prediction o: a hit loses tp_o and gains fn_o, a miss loses fp_o.
    d_tp[rows[hit_before], os_[hit_before]] -= 1
    d_fn[rows[hit_before], os_[hit_before]] += 1
    d_fp[rows[~hit_before], os_[~hit_before]] -= 1
    # Joining c: a true c gains tp_c and loses its fn, anything else is a false positive of c.
    is_c = ys == c
    d_tp[rows[is_c], c] += 1
    d_fn[rows[is_c & ~hit_before], c] -= 1
    d_fp[rows[~is_c], c] += 1
    tp_s = np.vstack([tp, tp + np.cumsum(d_tp, axis=0)])
    fp_s = np.vstack([fp, fp + np.cumsum(d_fp, axis=0)])
    fn_s = np.vstack([fn, fn + np.cumsum(d_fn, axis=0)])
    den = 2 * tp_s + fp_s + fn_s
    f1 = np.divide(2 * tp_s, den, out=np.zeros_like(den), where=den > 0)
    macro = f1.mean(axis=1)  # macro[s]: the s largest ratios predicted c
    # Only positions between distinct ratios are reachable thresholds.
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = r_sorted[:-1] != r_sorted[1:]
    macro = np.where(valid, macro, -np.inf)
    best = float(macro.max())
    # Every position within a hair of the best is optimal; of the runs of such positions,
    # take the widest in log(t) and put t_c in its middle, as far from the validation
    # images on either side as it can be (a margin that transfers better to test data).
    is_best = macro >= best - 1e-12
    runs, start = [], None
    for pos in range(n + 2):
        if pos <= n and is_best[pos]:
            start = pos if start is None else start
        elif start is not None:
            runs.append((start, pos - 1))
            start = None
    tiny = 1e-300

    def bounds(run):
        a, b = run
        upper = r_sorted[a - 1] if a > 0 else math.inf
        lower = r_sorted[b] if b < n else 0.0
        return lower, upper

    def width(run):
        lower, upper = bounds(run)
        return math.log(upper if math.isfinite(upper) else 1e300) - math.log(max(lower, tiny))

    lower, upper = bounds(max(runs, key=width))
    if not math.isfinite(upper):
        t_c = lower * 4.0 if lower > 0 else math.inf
    elif lower <= 0:
        t_c = upper / 4.0
    else:
        t_c = math.sqrt(lower * upper)
    return float(t_c), best


def optimize_thresholds(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class thresholds maximising macro-F1 on (y_true, probs) by exact coordinate ascent.

    Returns:
        (thresholds, macro-F1 reached); all-ones thresholds are the plain argmax.
    """
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    t = np.ones(k)
    current = macro_f1_of(y, probs.argmax(axis=1), k)
    for _ in range(MAX_PASSES):
        improved = False
        for c in range(k):
            t_c, value = _best_threshold_for(y, probs, t, c)
            if value > current + 1e-12 and math.isfinite(t_c) and t_c > 0:
                t[c] = t_c
                current = macro_f1_of(y, (probs / t).argmax(axis=1), k)
                improved = True
        if not improved:
            break
    return t, current


def cross_validated_macro_f1(y_true: np.ndarray, probs: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> float:
    """Macro-F1 of thresholds fitted on k-1 stratified folds and applied to the held-out one."""
    y = np.asarray(y_true, dtype=np.int64)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        fold[members[rng.permutation(len(members))]] = np.arange(len(members)) % folds
    pred = np.empty(len(y), dtype=np.int64)
    for f in range(folds):
        held = fold == f
        if not held.any():
            continue
        t, _ = optimize_thresholds(y[~held], probs[~held])
        pred[held] = (probs[held] / t).argmax(axis=1)
    return macro_f1_of(y, pred, probs.shape[1])


def fit_macro_f1(y_true: np.ndarray, probs: np.ndarray, class_names, seed: int = 0) -> OperatingPoint:
    """Per-class thresholds for macro-F1, adopted only if they pass cross-validation.

    Exact per-class thresholds overfit a small validation set easily (a well-calibrated
    model gains on validation and loses on test). So the thresholds are fitted on
    k-1 folds of the validation data and scored on the held-out fold; only when these
    out-of-fold predictions beat the plain argmax are the thresholds fitted on all the
    validation data adopted. Otherwise the operating point is the argmax (all t_c = 1).
    """
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    baseline = macro_f1_of(y, probs.argmax(axis=1), k)
    t, value = optimize_thresholds(y, probs)
    cv_value = cross_validated_macro_f1(y, probs, CV_FOLDS, seed)
    adopted = cv_value > baseline + 1e-12
    if not adopted:
        t, value = np.ones(k), baseline
    return OperatingPoint(
        objective="macro_f1",
        class_names=tuple(class_names),
        thresholds=tuple(float(v) for v in t),
        val_value=value,
        val_baseline=baseline,
        val_n=len(y),
        cv_value=cv_value,
        adopted=adopted,
    )


def fit_sensitivity(
    y_true: np.ndarray, probs: np.ndarray, class_names, target_class: int, target: float
) -> OperatingPoint:
    """The largest threshold on p(target_class) whose validation recall reaches ``target``.

    Raises:
        UserError: target outside (0, 1] or the class has no validation images.
    """
    if not 0.0 < target <= 1.0:
        raise UserError(f"sensitivity target must be in (0, 1], not {target}")
    y = np.asarray(y_true, dtype=np.int64)
    positives = np.sort(probs[y == target_class, target_class])[::-1]
    if len(positives) == 0:
        raise UserError(f"class '{class_names[target_class]}' has no images in the validation data")
    needed = max(1, math.ceil(target * len(positives) - 1e-9))
    tau = float(positives[needed - 1])
    point = OperatingPoint(
        objective="sensitivity",
        class_names=tuple(class_names),
        thresholds=tuple(1.0 for _ in class_names),
        target_class=target_class,
        target_sensitivity=target,
        threshold=tau,
        val_n=len(y),
    )
    mask = y == target_class
    recall = float((point.predict(probs)[mask] == target_class).mean())
    baseline = float((probs.argmax(axis=1)[mask] == target_class).mean())
    return replace(point, val_value=recall, val_baseline=baseline)


@dataclass(frozen=True)
class OperatingPointSpec:
    """What to optimise: "macro_f1", or "sensitivity" of ``target_class`` (a name) at ``target``."""

    objective: str = "macro_f1"
    target_class: str | None = None
    target: float = 0.95

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise UserError(f"unknown operating-point objective '{self.objective}' (use {', '.join(OBJECTIVES)})")
        if self.objective == "sensitivity" and not self.target_class:
            raise UserError("a sensitivity target needs a class, e.g. --sensitivity mel=0.95")

    @classmethod
    def parse(cls, text: str) -> OperatingPointSpec:
        """'macro_f1' or 'sensitivity:CLASS=0.95' (also 'CLASS=0.95')."""
        text = text.strip()
        if text in ("macro_f1", "macro-f1"):
            return cls("macro_f1")
        body = text.split(":", 1)[1] if text.startswith("sensitivity:") else text
        name, sep, value = body.rpartition("=")
        if not sep or not name:
            raise UserError(f"operating point '{text}': use macro_f1 or sensitivity:CLASS=TARGET (e.g. mel=0.95)")
        try:
            target = float(value)
        except ValueError:
            raise UserError(f"operating point '{text}': target '{value}' is not a number") from None
        return cls("sensitivity", name, target)

    def fit(self, y_true: np.ndarray, probs: np.ndarray, class_names) -> OperatingPoint:
        if self.objective == "macro_f1":
            return fit_macro_f1(y_true, probs, class_names)
        names = list(class_names)
        if self.target_class not in names:
            raise UserError(f"no class '{self.target_class}' (classes: {', '.join(names)})")
        return fit_sensitivity(y_true, probs, class_names, names.index(self.target_class), self.target)
