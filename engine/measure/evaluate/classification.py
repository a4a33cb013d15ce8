"""Classification metrics computed from labels and predicted probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass(frozen=True)
class ClassificationReport:
    """Overall and per-class metrics of one model on one dataset."""

    class_names: tuple[str, ...]
    n: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    weighted_f1: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]

    def overall(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "n": float(self.n),
        }

    def long_rows(self, variant: str) -> list[tuple[str, str, str, float]]:
        """(variant, metric, class, value) rows; class is '' for overall metrics."""
        rows = [(variant, name, "", value) for name, value in self.overall().items()]
        for i, cname in enumerate(self.class_names):
            rows.append((variant, "precision", cname, self.precision[i]))
            rows.append((variant, "recall", cname, self.recall[i]))
            rows.append((variant, "f1", cname, self.f1[i]))
            rows.append((variant, "support", cname, float(self.support[i])))
        return rows


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> ClassificationReport:
    """Accuracy, balanced accuracy, macro/weighted F1 and per-class P/R/F1.

    Classes absent from both truth and predictions still appear with zeros
    (scikit-learn's ``labels=range(n)``, ``zero_division=0``).
    """
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    n = int(cm.sum())
    present = support > 0
    return ClassificationReport(
        class_names=tuple(class_names),
        n=n,
        accuracy=float(tp.sum() / n) if n else 0.0,
        balanced_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        macro_f1=float(f1.mean()),
        weighted_f1=float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
        precision=tuple(float(x) for x in precision),
        recall=tuple(float(x) for x in recall),
        f1=tuple(float(x) for x in f1),
        support=tuple(int(x) for x in support),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


def top_predictions(probs: np.ndarray, labels: list[str], k: int) -> tuple[Prediction, ...]:
    """The k most probable classes of one probability row, best first (ties keep class order)."""
    order = np.argsort(-probs, kind="stable")[: min(k, probs.shape[0])]
    return tuple(Prediction(int(i), labels[i], float(probs[i])) for i in order)
