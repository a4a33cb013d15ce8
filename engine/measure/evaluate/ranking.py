"""Ranking metrics from predicted probabilities: one-vs-rest ROC-AUC and top-k accuracy."""

from __future__ import annotations

import math

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (``scipy.stats.rankdata``)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def binary_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); NaN if one class is absent."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(score)
    u = ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> tuple[tuple[float, ...], float]:
    """One-vs-rest ROC-AUC per class and their unweighted mean.

    A class absent from ``y_true`` (or the only class present) has no AUC: its entry is
    NaN and the macro mean is taken over the classes that have one (scikit-learn refuses
    such inputs instead).
    """
    y_true = np.asarray(y_true)
    per_class = tuple(binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1]))
    defined = [a for a in per_class if not math.isnan(a)]
    return per_class, (float(np.mean(defined)) if defined else math.nan)


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the k highest probabilities.

    Ties are broken like scikit-learn's ``top_k_accuracy_score`` (stable sort, reversed).
    """
    if len(y_true) == 0:
        return math.nan
    top = np.argsort(probs, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())
