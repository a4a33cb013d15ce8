"""How far a quantized variant moved from its float reference, image by image and class by class."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.measure.evaluate.metrics import VariantMetrics
from engine.measure.evaluate.rows import Row, with_condition

KL_EPS = 1e-12


@dataclass(frozen=True)
class Agreement:
    """Agreement of a variant with the reference model on the same images.

    Attributes:
        flip_rate: share of images whose top-1 class differs.
        mean_kl: mean KL(reference || variant) of the predicted distributions (nats).
        class_flip_rate: flip rate among the images of each true class.
        deltas: (metric, class) -> variant minus reference, overall and per class.
    """

    reference: str
    n: int
    flip_rate: float
    mean_kl: float
    max_kl: float
    class_flip_rate: tuple[float, ...]
    class_names: tuple[str, ...]
    deltas: tuple[tuple[str, str, float], ...]

    def long_rows(self, variant: str, condition: str | None = None) -> list[Row]:
        def m(name: str) -> str:
            return with_condition(name, condition)

        rows: list[Row] = [
            (variant, m("flip_rate"), "", self.flip_rate),
            (variant, m("top1_agreement"), "", 1.0 - self.flip_rate),
            (variant, m("mean_kl"), "", self.mean_kl),
            (variant, m("max_kl"), "", self.max_kl),
        ]
        rows += [(variant, m("flip_rate"), c, v) for c, v in zip(self.class_names, self.class_flip_rate, strict=True)]
        rows += [(variant, m(f"delta_{metric}"), cls, value) for metric, cls, value in self.deltas]
        return rows


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q) in nats; q is clipped at 1e-12 so a zero never gives infinity."""
    p = np.asarray(p, dtype=np.float64)
    q = np.clip(np.asarray(q, dtype=np.float64), KL_EPS, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.clip(p, KL_EPS, None)) - np.log(q)), 0.0)
    return terms.sum(axis=1)


DELTA_SKIP = {"n", "support"}


def align(ids_a: tuple[str, ...], ids_b: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the images both runs scored, in the first run's order."""
    if ids_a == ids_b:
        idx = np.arange(len(ids_a))
        return idx, idx
    where_b = {k: i for i, k in enumerate(ids_b)}
    pairs = [(i, where_b[k]) for i, k in enumerate(ids_a) if k in where_b]
    a = np.asarray([p[0] for p in pairs], dtype=np.int64)
    b = np.asarray([p[1] for p in pairs], dtype=np.int64)
    return a, b


def agreement(
    reference: str,
    y_true: np.ndarray,
    ref_probs: np.ndarray,
    probs: np.ndarray,
    ref_metrics: VariantMetrics,
    metrics: VariantMetrics,
    ref_pred: np.ndarray | None = None,
    pred: np.ndarray | None = None,
) -> Agreement:
    """Flip rate, KL divergence and per-class metric deltas of ``probs`` against ``ref_probs``.

    Both arrays hold the same images in the same order (see ``align``); predictions
    default to the argmax.
    """
    y_true = np.asarray(y_true)
    ref_pred = ref_probs.argmax(axis=1) if ref_pred is None else ref_pred
    pred = probs.argmax(axis=1) if pred is None else pred
    flips = ref_pred != pred
    kl = kl_divergence(ref_probs, probs)
    names = metrics.class_names
    class_flip = tuple(float(flips[y_true == c].mean()) if np.any(y_true == c) else math.nan for c in range(len(names)))
    ref_vals, vals = ref_metrics.scalars(), metrics.scalars()
    deltas = tuple(
        (metric, cls, vals[(metric, cls)] - ref_vals[(metric, cls)])
        for (metric, cls) in vals
        if metric not in DELTA_SKIP and (metric, cls) in ref_vals
    )
    return Agreement(
        reference=reference,
        n=len(y_true),
        flip_rate=float(flips.mean()) if len(flips) else math.nan,
        mean_kl=float(kl.mean()) if len(kl) else math.nan,
        max_kl=float(kl.max()) if len(kl) else math.nan,
        class_flip_rate=class_flip,
        class_names=tuple(names),
        deltas=deltas,
    )
